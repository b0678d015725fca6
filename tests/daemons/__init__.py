"""Tests that run the real daemons (dhcpd, Kea, dnsmasq, named, in.tftpd) on rendered configs."""
