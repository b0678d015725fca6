# clustcontrol: a node's boot sync rehearsed on the master (`clustcontrol node rehearse`).
#
# Run by src/clustcontrol/rehearse.py under busybox sh, as the first process of a mount and PID
# namespace of its own (unshare --mount --propagation slave --pid --fork): every mount made here,
# and the rsync daemon, end with this shell. Not part of the initramfs. It sources the real
# engine, stands in for the master's transport, runs cc_run, then writes what the node did.
# Everything comes from the environment (set by rehearse.py):
#   CC_ENGINE_DIR             the engine's modules (the installed package's node/engine)
#   CC_REHEARSE_ROOTS         the image's generation roots on the master (STATE_DIR/images/NAME/roots)
#   CC_REHEARSE_SCRATCH       the scratch directory: layer/ holds the rendered control directory
#                             at its place in the standard (layer/etc/clustcontrol); roots/ and
#                             served/ are empty mount points; out/ receives the facts, the sync
#                             record and the daemon's log
#   CC_REHEARSE_SPEC          SERVER:PATH the node must ask for over NFS
#   CC_REHEARSE_SECRETS       the image's secrets directory on the master (its archives)
#   CC_REHEARSE_SECRETS_PATH  PATH of the secrets export the node asks for (any server: the
#                             rsync transport names 127.0.0.1)
#   CC_REHEARSE_RSYNCD_CONF   the daemon's configuration (rsync transport), empty for NFS
#   CC_REHEARSE_RSYNC_PORT    the daemon's port on 127.0.0.1 (rsync transport)
# and the engine's own settings (CC_CMDLINE_FILE, CC_RUN_DIR, CC_DISK_OVERRIDE, ...).
# Exit status 0 once cc_run ran (whatever it returned: see facts), 3 when the stand-in for the
# master could not be set up.
# shellcheck shell=sh
# shellcheck disable=SC3043 # local: busybox ash has it
set -u

# shellcheck source=engine/engine.sh
. "${CC_ENGINE_DIR:?}/engine.sh" || exit 3

# cc_rehearse_serve: the served view in served/, what the master exports and its rsync module
# serve: the generation roots read-only, with the rendered control directory where the master
# bind-mounts its own. One read-only overlay (relative paths: no escaping), so that the node's
# "NFS mount" is a single mount, which it unmounts as it would unmount NFS.
cc_rehearse_serve()
{
	(
		cd "${CC_REHEARSE_SCRATCH}" || exit 1
		mount -o bind "${CC_REHEARSE_ROOTS}" roots || exit 1
		mount -o remount,ro,bind roots || exit 1
		mount -t overlay overlay -o ro,lowerdir=layer:roots served
	)
}

# cc_rehearse_nfs SERVER:PATH MOUNTPOINT: the engine's NFS mount (CC_NFS_MOUNT): the served
# view, read-only, when the node asks for the export the master serves; the image's secrets,
# read-only, when it asks for their export.
# shellcheck disable=SC2317 # called by the engine, through CC_NFS_MOUNT
cc_rehearse_nfs()
{
	if [ "${1#*:}" = "${CC_REHEARSE_SECRETS_PATH}" ]; then
		mount -o bind "${CC_REHEARSE_SECRETS}" "$2" && mount -o remount,ro,bind "$2"
		return
	fi
	if [ "$1" != "${CC_REHEARSE_SPEC}" ]; then
		cc_err "rehearse: the master exports ${CC_REHEARSE_SPEC}, not $1"
		return 1
	fi
	mount -o bind "${CC_REHEARSE_SCRATCH}/served" "$2" && mount -o remount,ro,bind "$2"
}

# cc_rehearse_daemon: the master's rsync daemon, serving the view on 127.0.0.1; waits until it
# lists its modules (10 s at most).
cc_rehearse_daemon()
{
	local n=100
	rsync --daemon --no-detach --config="${CC_REHEARSE_RSYNCD_CONF}" --address=127.0.0.1 \
		--port="${CC_REHEARSE_RSYNC_PORT}" --log-file="${CC_REHEARSE_SCRATCH}/out/rsyncd.log" &
	CC_REHEARSE_DAEMON=$!
	while [ "${n}" -gt 0 ]; do
		rsync "rsync://127.0.0.1:${CC_REHEARSE_RSYNC_PORT}/" >/dev/null 2>&1 && return 0
		kill -0 "${CC_REHEARSE_DAEMON}" 2>/dev/null || break
		sleep 0.1
		n=$((n - 1))
	done
	echo "clustcontrol: rehearse: the rsync daemon did not start" >&2
	cat "${CC_REHEARSE_SCRATCH}/out/rsyncd.log" >&2 2>/dev/null
	return 1
}

# cc_uptime: seconds since the system started, to the hundredth.
cc_uptime()
{
	local up
	read -r up _ </proc/uptime
	echo "${up}"
}

# cc_rehearse_facts RC END: what cc_run left (its status RC, ended at uptime END), KEY=value per line, for rehearse.py; the node's sync
# record (read-only mount of its root) beside them.
cc_rehearse_facts()
{
	local out="${CC_REHEARSE_SCRATCH}/out" dev="${CC_ROOT_DEVICE:-}" mnt="${CC_REHEARSE_SCRATCH}/out/root" fs
	{
		echo "status=$1"
		echo "result=${CC_RESULT:-failed}"
		echo "disk_action=${CC_DISK_ACTION:-}"
		echo "root_remade=${CC_ROOT_REMADE:-}"
		echo "method=${CC_COPY_METHOD:-}"
		echo "sync_method=${CC_SYNC_METHOD:-}"
		echo "mode=${CC_COPY_MODE:-}"
		echo "offered=${CC_STD_GENERATION:-}"
		echo "uptime_start=${CC_REHEARSE_START}"
		echo "uptime_end=$2"
	} >"${out}/facts.tmp" && mv "${out}/facts.tmp" "${out}/facts"
	[ -n "${dev}" ] && [ -b "${dev}" ] || return 0
	fs=$(cc_fs_type "${dev}")
	[ -n "${fs}" ] && [ "${fs}" != swap ] || return 0
	mkdir -p "${mnt}"
	mount -t "${fs}" -o ro "${dev}" "${mnt}" 2>/dev/null || return 0
	cp "$(cc_record "${mnt}")" "${out}/last-sync" 2>/dev/null
	umount "${mnt}"
}

cc_rehearse_serve || exit 3
CC_REHEARSE_DAEMON=""
if [ -n "${CC_REHEARSE_RSYNCD_CONF}" ]; then
	cc_rehearse_daemon || exit 3
fi
rc=0
CC_REHEARSE_START=$(cc_uptime)
cc_run || rc=$?
cc_rehearse_facts "${rc}" "$(cc_uptime)"
[ -z "${CC_REHEARSE_DAEMON}" ] || kill "${CC_REHEARSE_DAEMON}" 2>/dev/null
exit 0
