# clustcontrol engine, parameters: the kernel command line, the node's identity and the
# control directory's KEY='value' files. The keys and switches are those of the contract
# (contract.sh, generated from the master's table).
# shellcheck shell=sh
# shellcheck disable=SC3043 # local: busybox ash and dash have it
# shellcheck disable=SC2034 # CC_* variables are read by the other modules

# cc_arg_enum VAR SWITCH DEFAULT "CHOICES": VAR's value must be one of CHOICES (or empty);
# else a warning and DEFAULT.
cc_arg_enum()
{
	local value choice
	eval "value=\"\${$1}\""
	[ -n "${value}" ] || { eval "$1=\"\$3\""; return 0; }
	for choice in $4; do
		[ "${value}" = "${choice}" ] && return 0
	done
	if [ -n "$3" ]; then
		cc_warn "unknown $2=${value}; using $3"
	else
		cc_warn "unknown $2=${value}; ignored"
	fi
	eval "$1=\"\$3\""
}

# cc_arg_uint VAR SWITCH: VAR must be a number (or empty); else a warning and empty.
cc_arg_uint()
{
	local value
	eval "value=\"\${$1}\""
	case "${value}" in
	"") ;;
	*[!0-9]*) cc_warn "bad $2=${value}; ignored"; eval "$1=''" ;;
	esac
	return 0
}

# cc_arg_path VAR SWITCH DEFAULT: VAR must be an absolute path of the characters the master
# accepts (CC_PATH_CHARACTERS and /) without a ".." component; else a warning and DEFAULT
# (an empty value: DEFAULT without a warning).
cc_arg_path()
{
	local value
	eval "value=\"\${$1}\""
	case "${value}" in
	"") eval "$1=\"\$3\""; return 0 ;;
	*/../* | */.. | *[!/${CC_PATH_CHARACTERS}]* | [!/]*) ;;
	*) return 0 ;;
	esac
	cc_warn "bad $2=${value}; ${3:+using }${3:-ignored}"
	eval "$1=\"\$3\""
}

# cc_arg_bool VAR: yes, 1 or true -> yes; anything else -> no.
cc_arg_bool()
{
	local value
	eval "value=\"\${$1}\""
	case "${value}" in
	yes | 1 | true) eval "$1=yes" ;;
	*) eval "$1=no" ;;
	esac
}

# cc_arg_bootif VAR: pxelinux's BOOTIF (IPAPPEND 2: the ARP hardware type, then the MAC) as a
# MAC: 01-52-54-00-AB-CD-EF -> 52:54:00:ab:cd:ef. Anything else: a warning and empty.
cc_arg_bootif()
{
	local value hex='[0-9A-Fa-f][0-9A-Fa-f]'
	eval "value=\"\${$1}\""
	[ -n "${value}" ] || return 0
	# shellcheck disable=SC2254 # the pattern is built from ${hex} on purpose
	case "${value}" in
	${hex}-${hex}-${hex}-${hex}-${hex}-${hex}-${hex}) ;;
	*) cc_warn "bad BOOTIF=${value}; ignored"; eval "$1=''"; return 0 ;;
	esac
	value=$(echo "${value#??-}" | tr 'A-F-' 'a-f:')
	eval "$1=\"\${value}\""
}

# cc_identity: CC_NODE_HOSTNAME, CC_NODE_IP and CC_NODE_MAC from ipconfig's net-*.conf and
# BOOTIF where not set already.
cc_identity()
{
	local f
	if [ -z "${CC_NODE_HOSTNAME}" ] || [ -z "${CC_NODE_IP}" ]; then
		for f in "${CC_NET_CONF_DIR}"/net-*.conf; do
			[ -f "${f}" ] || continue
			# shellcheck disable=SC1090,SC3028 # HOSTNAME comes from ipconfig's file
			CC_NODE_HOSTNAME="${CC_NODE_HOSTNAME:-$(. "${f}"; echo "${HOSTNAME:-}")}"
			# shellcheck disable=SC1090
			CC_NODE_IP="${CC_NODE_IP:-$(. "${f}"; echo "${IPV4ADDR:-}")}"
			if [ -z "${CC_NODE_MAC}" ]; then
				# shellcheck disable=SC1090
				f=$(. "${f}"; echo "${DEVICE:-}")
				[ -n "${f}" ] && CC_NODE_MAC=$(cat "/sys/class/net/${f}/address" 2>/dev/null)
			fi
			break
		done
	fi
	[ -n "${CC_ARG_BOOTIF:-}" ] && CC_NODE_MAC="${CC_ARG_BOOTIF}"
	return 0
}

# cc_source_params FILE: source one control file, refusing anything that is not CC_KEY=value.
cc_source_params()
{
	if [ ! -f "$1" ]; then
		cc_err "parameter file $1 is missing"
		return 1
	fi
	if grep -v -e '^[[:space:]]*$' -e '^[[:space:]]*#' -e '^CC_[A-Z0-9_]*=' "$1" | grep -q .; then
		cc_err "parameter file $1 has lines that are not CC_KEY=value"
		return 1
	fi
	# shellcheck disable=SC1090
	. "$1"
}

# cc_param_value FILE KEY: one value of a control file, or its default (in a subshell: nothing
# leaks). Fails when FILE is missing or unusable.
cc_param_value()
{
	[ -f "$1" ] || return 1
	(
		cc_source_params "$1" >/dev/null 2>&1 || exit 1
		eval "printf '%s\\n' \"\${$2:-}\""
	)
}

# cc_early_params: what the engine needs to reach the master, before the control directory is
# there: kernel switches, else the control directory baked into the initramfs, else defaults.
# Sets CC_SERVER, CC_IMAGE, CC_TRANSPORT, CC_RSYNC_PORT, CC_RSYNC_MODULE, CC_RETRIES and
# CC_CONTROL_DIR.
cc_early_params()
{
	local baked="${CC_BAKED_CONTROL}/default" value
	value=$(cc_param_value "${baked}" CC_MASTER_IP) || value=""
	CC_SERVER="${CC_ARG_SERVER:-${value}}"
	value=$(cc_param_value "${baked}" CC_DEFAULT_IMAGE) || value=""
	CC_IMAGE="${CC_ARG_IMAGE:-${value:-${CC_DEFAULT_IMAGE}}}"
	value=$(cc_param_value "${CC_BAKED_CONTROL}/images/${CC_IMAGE}" CC_IMAGE_TRANSPORT) || value=""
	CC_TRANSPORT="${CC_ARG_TRANSPORT:-${value:-${CC_TRANSPORT}}}"
	value=$(cc_param_value "${baked}" CC_RSYNC_PORT) || value=""
	CC_RSYNC_PORT="${CC_ARG_RSYNCPORT:-${value:-${CC_RSYNC_PORT}}}"
	CC_RSYNC_MODULE="${CC_IMAGE}"
	value=$(cc_param_value "${baked}" CC_SYNC_RETRIES) || value=""
	CC_RETRIES="${CC_ARG_RETRIES:-${value:-${CC_SYNC_RETRIES}}}"
	CC_CONTROL_DIR="${CC_ARG_CONTROL}"
}

# cc_find_node CONTROL_DIR HOSTNAME MAC IP: prints the node's name (its file under nodes/).
# Tries the short host name, then the MAC in nodes.by-mac, then CC_IP in the node files.
cc_find_node()
{
	local ctl="$1" host="${2%%.*}" mac ip="${4:-}" f name
	mac=$(echo "${3:-}" | tr 'A-F' 'a-f')
	if [ -n "${host}" ] && [ -f "${ctl}/nodes/${host}" ]; then
		echo "${host}"
		return 0
	fi
	if [ -n "${mac}" ] && [ -f "${ctl}/nodes.by-mac" ]; then
		name=$(sed -n "s/^${mac} \\([^ ]*\\).*/\\1/p" "${ctl}/nodes.by-mac" | head -n 1)
		if [ -n "${name}" ] && [ -f "${ctl}/nodes/${name}" ]; then
			echo "${name}"
			return 0
		fi
	fi
	if [ -n "${ip}" ]; then
		for f in "${ctl}"/nodes/*; do
			[ -f "${f}" ] || continue
			if grep -q "^CC_IP='\\{0,1\\}${ip}'\\{0,1\\}\$" "${f}"; then
				echo "${f##*/}"
				return 0
			fi
		done
	fi
	return 1
}

# cc_kernel_device DEV: the kernel's name of a disk named by a link (/dev/disk/by-id/wwn-0x5...,
# by-path, a link of the site's own): its partitions are found by the kernel's naming
# (/dev/sda2, /dev/nvme0n1p2), whether or not udev made links for them. A name that is no link
# (yet) is kept: its partitions then follow cc_partition_device's rules for it.
cc_kernel_device()
{
	local real
	if [ -L "$1" ] && real=$(readlink -f "$1") && [ -b "${real}" ]; then
		echo "${real}"
	else
		echo "$1"
	fi
}

# cc_load_params CONTROL_DIR NODE: the effective parameters. NODE may be empty (an unknown
# node: the image's defaults). Needs cc_parse_cmdline first. Sources default, nodes/NODE,
# images/IMAGE and layouts/LAYOUT, then sets CC_SERVER, CC_IMAGE, CC_TRANSPORT, CC_RETRIES,
# CC_RSYNC_PORT, CC_DISK_NAME (the disk as the layout or CC_DISK_OVERRIDE names it), CC_DISK
# (its kernel device, cc_kernel_device), CC_ROOT_PARTITION, CC_ROOT_DEVICE, CC_ROOT_FS (from
# the layout's root partition) and CC_SFDISK (the layout's script).
cc_load_params()
{
	local ctl="$1" node="${2:-}" node_image="" node_layout="" root
	cc_source_params "${ctl}/default" || return 1
	if [ "${CC_CONTRACT:-1}" != "${CC_ENGINE_CONTRACT}" ]; then
		cc_warn "the control files are of contract ${CC_CONTRACT:-1}, this initramfs of" \
			"${CC_ENGINE_CONTRACT}: rebuild it (clustcontrol image prepare --rebuild-initramfs, image commit, image publish)"
	fi
	if [ -n "${node}" ]; then
		cc_source_params "${ctl}/nodes/${node}" || return 1
		node_image="${CC_IMAGE:-}"
		node_layout="${CC_DISK_LAYOUT:-}"
	else
		CC_HOSTNAME=""
		CC_FQDN=""
		CC_IP=""
	fi
	CC_IMAGE="${CC_ARG_IMAGE:-${node_image:-${CC_DEFAULT_IMAGE:-}}}"
	if [ -n "${node_image}" ] && [ "${node_image}" != "${CC_IMAGE}" ]; then
		cc_warn "node ${node} belongs to image ${node_image}, the kernel command line says" \
			"${CC_IMAGE}: following the command line"
	fi
	cc_source_params "${ctl}/images/${CC_IMAGE}" || return 1
	if [ -n "${node_layout}" ] && [ "${node_layout}" != "${CC_DISK_LAYOUT:-}" ] \
		&& [ "${node_image}" = "${CC_IMAGE}" ]; then
		CC_DISK_LAYOUT="${node_layout}"
	fi
	cc_source_params "${ctl}/layouts/${CC_DISK_LAYOUT}" || return 1
	CC_SFDISK="${ctl}/sfdisk-${CC_DISK_LAYOUT}"
	[ -f "${CC_SFDISK}" ] || { cc_err "sfdisk script ${CC_SFDISK} is missing"; return 1; }
	CC_SERVER="${CC_ARG_SERVER:-${CC_MASTER_IP:-}}"
	CC_TRANSPORT="${CC_ARG_TRANSPORT:-${CC_IMAGE_TRANSPORT:-${CC_TRANSPORT}}}"
	CC_RETRIES="${CC_ARG_RETRIES:-${CC_SYNC_RETRIES}}"
	CC_RSYNC_PORT="${CC_ARG_RSYNCPORT:-${CC_RSYNC_PORT}}"
	CC_DISK_NAME="${CC_DISK_OVERRIDE:-${CC_DISK_DEVICE}}"
	CC_DISK=$(cc_kernel_device "${CC_DISK_NAME}")
	for root in ${CC_PARTITIONS:-}; do
		cc_partition_word "${root}"
		[ "${CC_PART_USE}" = root ] || continue
		CC_ROOT_PARTITION="${CC_PART_NUMBER}"
		CC_ROOT_FS="${CC_PART_FS}"
		CC_ROOT_DEVICE=$(cc_partition_device "${CC_DISK}" "${CC_ROOT_PARTITION}")
		return 0
	done
	cc_err "layout ${CC_DISK_LAYOUT} has no root partition"
	return 1
}
