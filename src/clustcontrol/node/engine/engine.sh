# clustcontrol engine: the boot sync of a regular node.                   -*- shell-script -*-
#
# Sourced (POSIX sh: busybox ash in the initramfs, dash elsewhere) by the initramfs-tools
# scripts local-top/clustcontrol and local-bottom/clustcontrol after the conf.d file, which
# sets CC_ENGINE_DIR. It sources the step modules in the order a boot runs them and defines
# cc_run, the whole sync. Every function works on variables and arguments only (no hard-coded
# disk, mount point or control directory), so the tests run each one on loop devices and
# scratch trees.
#
# cc_run returns (CC_RC_* in fallback.sh) 0 = disk synced, root ready and unmounted; 2 = master or sync unavailable
# but the disk holds a complete earlier sync: boot it; 1 = nothing bootable: the caller drops
# to the initramfs shell. It sets CC_RESULT: synced | skipped | old-copy | failed.
# shellcheck shell=sh
# shellcheck disable=SC2034 # CC_* variables are read by the modules and the callers
# shellcheck disable=SC3043 # local: busybox ash and dash have it

# contract  the master<->node contract: defaults, kernel switches, partition names, exclusions
# log       console and log file
# params    kernel command line, identity, the control directory's files
# net       reaching the master: NFS or the rsync daemon, retries
# disk      layout check, partitioning, mkfs, mounts
# copy      the copy methods: filter, rsync, tar
# delta     generation deltas
# dense     the files that must stay fully allocated: allocated again after the copy
# secrets   the files no served tree holds: their list, the archive over NFS, the install
# record    marker, sync record, generations, verify
# sync      the copy decision and the sync step
# nodefiles the node's own files
# fallback  booting the earlier copy
for cc_module in contract log params net disk copy delta dense secrets record sync nodefiles fallback; do
	# shellcheck disable=SC1090 # the modules are linted one by one
	. "${CC_ENGINE_DIR:?CC_ENGINE_DIR is not set}/${cc_module}.sh" || return 1
done
unset cc_module

# cc_run: the whole boot sync. Leaves nothing mounted. See the return codes above.
cc_run()
{
	local mode
	CC_RESULT=failed
	cc_defaults
	mkdir -p "${CC_RUN_DIR}" || return "${CC_RC_FAIL}"
	cc_parse_cmdline "${CC_CMDLINE_FILE}"
	mode="${CC_SYNC_MODE:-${CC_ARG_SYNC}}"
	cc_identity
	cc_log "boot sync: mode ${mode}, server ${CC_ARG_SERVER:-?}, image ${CC_ARG_IMAGE:-?}," \
		"transport ${CC_ARG_TRANSPORT:-?}, host ${CC_NODE_HOSTNAME:-?}, mac ${CC_NODE_MAC:-?}"
	if [ "${mode}" = skip ]; then
		cc_run_skip
		return $?
	fi
	cc_run_reach || return $?
	cc_run_params || return $?
	cc_run_disk || return $?
	cc_run_sync "${mode}"
}

# cc_run_skip: clustcontrol.sync=skip: boot the earlier copy as it is.
cc_run_skip()
{
	local rc=0
	cc_fallback "$(cc_fallback_device)" "clustcontrol.sync=skip: no sync wanted" quiet || rc=$?
	if [ "${rc}" = "${CC_RC_OLD}" ]; then
		CC_RESULT=skipped
		rc="${CC_RC_OK}"
	fi
	return "${rc}"
}

# cc_run_reach: 1. reach the master and fetch the control directory (with retries).
cc_run_reach()
{
	cc_early_params
	CC_REACHED="${CC_IMAGE} ${CC_TRANSPORT}"
	if [ -z "${CC_SERVER}" ]; then
		cc_fallback "$(cc_fallback_device)" "no clustcontrol.server= on the kernel command line"
		return $?
	fi
	if ! cc_retry "${CC_RETRIES}" "reaching master ${CC_SERVER} (${CC_TRANSPORT})" \
		cc_reach_master "${CC_TRANSPORT}" "${CC_SERVER}" "${CC_IMAGE}" "${CC_CONTROL}"; then
		cc_umount "${CC_SOURCE_MNT}"
		cc_fallback "$(cc_fallback_device)" "master ${CC_SERVER} is unreachable over ${CC_TRANSPORT}"
		return $?
	fi
	return "${CC_RC_OK}"
}

# cc_run_params: 2. this node's parameters; reach the master again when they name another
# image or transport than the one reached; the image's current generation. Unusable
# parameters or no generation: the earlier copy, if any.
cc_run_params()
{
	local node
	if node=$(cc_find_node "${CC_CONTROL}" "${CC_NODE_HOSTNAME}" "${CC_NODE_MAC}" "${CC_NODE_IP}"); then
		cc_log "this is node ${node}"
	else
		node=""
		cc_warn "node not found by host name '${CC_NODE_HOSTNAME}', MAC '${CC_NODE_MAC}'" \
			"or address '${CC_NODE_IP}': using the defaults of image ${CC_IMAGE}"
	fi
	if ! cc_load_params "${CC_CONTROL}" "${node}"; then
		cc_umount "${CC_SOURCE_MNT}"
		cc_fallback "$(cc_fallback_device)" "the control directory from ${CC_SERVER} is unusable"
		return $?
	fi
	if [ "${CC_IMAGE} ${CC_TRANSPORT}" != "${CC_REACHED}" ]; then
		cc_umount "${CC_SOURCE_MNT}"
		cc_log "image ${CC_IMAGE} over ${CC_TRANSPORT}"
		if ! cc_retry "${CC_RETRIES}" "reaching master ${CC_SERVER} (${CC_TRANSPORT})" \
			cc_connect "${CC_TRANSPORT}" "${CC_SERVER}" "${CC_IMAGE}"; then
			cc_fallback "${CC_ROOT_DEVICE}" "image ${CC_IMAGE} is unreachable over ${CC_TRANSPORT}"
			return $?
		fi
	fi
	if ! cc_current_generation "${CC_TRANSPORT}"; then
		cc_umount "${CC_SOURCE_MNT}"
		cc_fallback "${CC_ROOT_DEVICE}" "no generation of image ${CC_IMAGE} to sync"
		return $?
	fi
	if [ "${CC_DISK}" != "${CC_DISK_NAME:-${CC_DISK}}" ]; then
		cc_log "layout ${CC_DISK_LAYOUT} on ${CC_DISK_NAME} (${CC_DISK}), root ${CC_ROOT_DEVICE}"
	else
		cc_log "layout ${CC_DISK_LAYOUT} on ${CC_DISK}, root ${CC_ROOT_DEVICE}"
	fi
	return "${CC_RC_OK}"
}

# cc_run_disk: 3. partition and format when the layout differs; mount the local root. A
# failure before anything was written to the disk boots the earlier copy, if any.
cc_run_disk()
{
	if ! cc_prepare_disk "${CC_DISK}" "${CC_SFDISK}" "${CC_RUN_DIR}" "${CC_ARG_REPARTITION}"; then
		cc_umount "${CC_SOURCE_MNT}"
		if [ "${CC_DISK_WRITTEN}" = no ]; then # nothing changed on the disk yet
			cc_fallback "${CC_ROOT_DEVICE}" "cannot check the disk ${CC_DISK}"
			return $?
		fi
		cc_err "cannot prepare the disk ${CC_DISK}"
		return "${CC_RC_FAIL}"
	fi
	if ! cc_mount_root "${CC_ROOT_DEVICE}" "${CC_TARGET}" "${CC_ROOT_FS}"; then
		cc_umount "${CC_SOURCE_MNT}"
		return "${CC_RC_FAIL}"
	fi
	return "${CC_RC_OK}"
}

# cc_run_sync MODE: 4. the sync, then the node's own files; unmount everything.
cc_run_sync()
{
	local rc=0
	if ! cc_sync "${CC_TARGET}" "${CC_TRANSPORT}" "$1"; then
		if [ "${CC_SYNC_STARTED}" = no ]; then # nothing written: the earlier copy, if any
			cc_umount "${CC_TARGET}"
			cc_umount "${CC_SOURCE_MNT}"
			cc_fallback "${CC_ROOT_DEVICE}" "${CC_SYNC_WHY:-the sync could not start}"
			return $?
		fi
		cc_save_log "${CC_TARGET}"
		cc_umount "${CC_TARGET}"
		cc_umount "${CC_SOURCE_MNT}"
		cc_err "the local root ${CC_ROOT_DEVICE} holds an UNFINISHED sync and cannot be booted"
		cc_err "cannot boot this node: fix the master or the network and reboot"
		return "${CC_RC_FAIL}"
	fi
	# The standard's fstab (never synced: the node writes its own) for the lines the node keeps.
	cc_fetch_file "${CC_TRANSPORT}" "$(cc_source "${CC_TRANSPORT}")" etc/fstab \
		"${CC_RUN_DIR}/standard-fstab" || cc_warn "cannot read the standard's etc/fstab: the" \
		"node's fstab holds its local disk only"
	cc_umount "${CC_SOURCE_MNT}"
	cc_write_node_files "${CC_TARGET}" "${CC_DISK_NAME:-${CC_DISK}}" "${CC_RUN_DIR}/standard-fstab" || rc=1
	cc_save_log "${CC_TARGET}"
	cc_umount "${CC_TARGET}"
	if [ "${rc}" -ne 0 ]; then
		cc_err "writing the node files failed"
		return "${CC_RC_FAIL}"
	fi
	cc_log "local root ${CC_ROOT_DEVICE} is in sync with image ${CC_IMAGE}"
	CC_RESULT=synced
	return "${CC_RC_OK}"
}
