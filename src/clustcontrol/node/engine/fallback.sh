# clustcontrol engine, fallback: when the master cannot be used (or clustcontrol.sync=skip),
# boot the local copy if its last sync completed; an interrupted or never-made copy is not
# bootable.
# shellcheck shell=sh
# shellcheck disable=SC3043 # local: busybox ash and dash have it
# shellcheck disable=SC2034 # CC_RESULT and CC_RC_* are read by the caller

# What a boot sync ends with (cc_run's status): synced; nothing bootable; the earlier copy.
CC_RC_OK=0
CC_RC_FAIL=1
CC_RC_OLD=2

# cc_fallback ROOT_DEVICE REASON [loud|quiet]: the master cannot be used. Boot the earlier
# copy when it is complete (returns 2; a loud warning unless quiet), else fail (returns 1).
cc_fallback()
{
	local dev="$1" reason="$2" how="${3:-loud}" age fstype
	if [ -z "${dev}" ] || ! cc_wait_for_dev "${dev}" "${CC_DISK_WAIT:-30}"; then
		cc_err "${reason}; and no local root device (${dev:-none}) to fall back to"
		cc_err "cannot boot this node: fix the master or the network and reboot"
		return "${CC_RC_FAIL}"
	fi
	mkdir -p "${CC_TARGET}"
	# Name the type: early in the initramfs the ext4 module is not loaded yet, and a mount
	# without -t only tries the file systems the kernel already knows.
	fstype=$(cc_fs_type "${dev}")
	if [ -z "${fstype}" ] || ! mount -t "${fstype}" -o ro "${dev}" "${CC_TARGET}" 2>/dev/null; then
		cc_err "${reason}; the local root ${dev} holds no file system"
		cc_err "cannot boot this node: it has never been synced. Fix the master or the network and reboot"
		return "${CC_RC_FAIL}"
	fi
	if cc_has_complete_sync "${CC_TARGET}"; then
		age=$(cc_sync_age "${CC_TARGET}")
		if [ "${how}" = quiet ]; then
			cc_log "${reason}: booting the copy on ${dev}, last complete sync ${age}"
		else
			cc_loud "${reason}." \
				"BOOTING THE EARLIER COPY ON ${dev}: last complete sync ${age}" \
				"($(sed -n "s/^CC_SYNC_IMAGE='\\(.*\\)'/image \\1/p" "$(cc_record "${CC_TARGET}")"))."
		fi
		cc_umount "${CC_TARGET}"
		CC_RESULT=old-copy
		return "${CC_RC_OLD}"
	fi
	if [ -e "$(cc_marker "${CC_TARGET}")" ]; then
		cc_err "${reason}; the local root ${dev} holds an UNFINISHED sync (interrupted) and cannot be booted"
	else
		cc_err "${reason}; the local root ${dev} was never synced completely"
	fi
	cc_umount "${CC_TARGET}"
	cc_err "cannot boot this node: fix the master or the network and reboot"
	return "${CC_RC_FAIL}"
}

# cc_fallback_device: the root device when the control directory is not available: the
# root= kernel argument (its partition number on CC_DISK_OVERRIDE when that is set).
cc_fallback_device()
{
	local part
	if [ -n "${CC_DISK_OVERRIDE:-}" ]; then
		part=$(echo "${CC_ARG_ROOT:-}" | sed -n 's/.*[^0-9]\([0-9][0-9]*\)$/\1/p')
		cc_partition_device "${CC_DISK_OVERRIDE}" "${part:-2}"
		return 0
	fi
	case "${CC_ARG_ROOT:-}" in
	/dev/*) echo "${CC_ARG_ROOT}" ;;
	UUID=* | LABEL=*) blkid -l -o device -t "${CC_ARG_ROOT}" 2>/dev/null ;;
	esac
}
