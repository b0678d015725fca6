# clustcontrol engine, network and transport: reach the master over NFS or the rsync daemon,
# fetch the control directory and single files of the standard, retry with back-off.
# shellcheck shell=sh
# shellcheck disable=SC3043 # local: busybox ash and dash have it

# cc_bounded SECONDS CMD...: CMD, killed after SECONDS where the timeout applet exists.
cc_bounded()
{
	local seconds="$1"
	shift
	if command -v timeout >/dev/null 2>&1; then
		timeout "${seconds}" "$@"
	else
		"$@"
	fi
}

# cc_nfs_mount SERVER PATH MOUNTPOINT: the standard, read-only. $CC_NFS_MOUNT replaces the
# mount command (called as: $CC_NFS_MOUNT SERVER:PATH MOUNTPOINT).
cc_nfs_mount()
{
	local spec="$1:$2" mnt="$3"
	mkdir -p "${mnt}" || return 1
	cc_is_mounted "${mnt}" && return 0
	if [ -n "${CC_NFS_MOUNT:-}" ]; then
		# shellcheck disable=SC2086 # a command with arguments
		${CC_NFS_MOUNT} "${spec}" "${mnt}"
	elif command -v nfsmount >/dev/null 2>&1; then
		# klibc's nfsmount retries an unreachable portmapper for minutes, flooding the
		# console: bound it and keep its output for the log (shown when it fails).
		cc_quiet cc_bounded "${CC_NFS_TIMEOUT}" nfsmount -o nolock -o ro -o "${CC_NFS_OPTS}" \
			"${spec}" "${mnt}"
	else
		cc_quiet cc_bounded "${CC_NFS_TIMEOUT}" mount -t nfs -o "ro,nolock,${CC_NFS_OPTS}" \
			"${spec}" "${mnt}"
	fi
}

# cc_served TRANSPORT: the image's generation roots on the master as the copy tools name them
# (with a trailing slash): the NFS mount or the rsync module. They hold CC_CURRENT_FILE (the
# current generation's id) and one tree per generation, which never changes.
cc_served()
{
	case "$1" in
	nfs) echo "${CC_SOURCE_MNT}/" ;;
	rsync) echo "rsync://${CC_SERVER}:${CC_RSYNC_PORT}/${CC_RSYNC_MODULE:-${CC_IMAGE}}/" ;;
	esac
}

# cc_source TRANSPORT: where the sync reads the standard: the tree of generation
# CC_STD_GENERATION (cc_current_generation), with a trailing slash.
cc_source()
{
	echo "$(cc_served "$1")${CC_STD_GENERATION:?no generation chosen}/"
}

# cc_current_generation TRANSPORT: read the image's current generation (CC_CURRENT_FILE of the
# generation roots) into CC_STD_GENERATION. Fails, saying why, when the master has none or
# the file does not name a generation (SEQ-HASH: digits, a dash, letters and digits).
cc_current_generation()
{
	local f="${CC_RUN_DIR}/current-generation" g=""
	CC_STD_GENERATION=""
	cc_fetch_file "$1" "$(cc_served "$1")" "${CC_CURRENT_FILE}" "${f}" || return 1
	if [ ! -f "${f}" ]; then
		cc_err "image ${CC_IMAGE} has no committed generation on the master" \
			"(clustcontrol image commit ${CC_IMAGE})"
		return 1
	fi
	g=$(head -n 1 "${f}")
	case "${g}" in
	[0-9]*-[0-9a-zA-Z]*) ;;
	*) g="" ;;
	esac
	case "${g}" in *[!0-9A-Za-z-]*) g="" ;; esac
	if [ -z "${g}" ]; then
		cc_err "the master's ${CC_CURRENT_FILE} of image ${CC_IMAGE} names no generation"
		return 1
	fi
	CC_STD_GENERATION="${g}"
	cc_log "image ${CC_IMAGE}: generation ${g}"
}

# cc_image_root IMAGE: the image's path on the master for NFS: clustcontrol.imageroot=, else
# the control directory baked into the initramfs.
cc_image_root()
{
	local f="${CC_BAKED_CONTROL}/images/$1"
	if [ -n "${CC_ARG_IMAGEROOT:-}" ]; then
		echo "${CC_ARG_IMAGEROOT}"
	elif [ -f "${f}" ]; then
		cc_param_value "${f}" CC_IMAGE_ROOT
	else
		return 1
	fi
}

# cc_connect TRANSPORT SERVER IMAGE: make the standard reachable (mount it for NFS, probe the
# module for rsync). One attempt.
cc_connect()
{
	local root
	case "$1" in
	nfs)
		if ! root=$(cc_image_root "$3"); then
			cc_err "no NFS path for image $3: no clustcontrol.imageroot= and no" \
				"${CC_BAKED_CONTROL}/images/$3 in the initramfs"
			return 1
		fi
		cc_nfs_mount "$2" "${root}" "${CC_SOURCE_MNT}" || return 1
		;;
	rsync)
		cc_quiet "${CC_RSYNC}" --list-only "rsync://$2:${CC_RSYNC_PORT}/$3/" || return 1
		;;
	*) cc_err "unknown transport $1"; return 1 ;;
	esac
}

# cc_fetch_control TRANSPORT SERVER IMAGE DEST: copy the control directory (CC_CONTROL_DIR in
# the image's generation roots, where the master bind-mounts it) to DEST.
cc_fetch_control()
{
	local dest="$4" ctl="${CC_CONTROL_DIR#/}"
	rm -rf "${dest}"
	mkdir -p "${dest}" || return 1
	case "$1" in
	nfs)
		[ -f "${CC_SOURCE_MNT}/${ctl}/default" ] || { cc_err "no ${ctl} on the master's export"; return 1; }
		cp -a "${CC_SOURCE_MNT}/${ctl}/." "${dest}/"
		;;
	rsync)
		cc_quiet "${CC_RSYNC}" -rlt "rsync://$2:${CC_RSYNC_PORT}/$3/${ctl}/" "${dest}/"
		;;
	esac || { cc_err "cannot copy the control directory from $2"; return 1; }
	[ -f "${dest}/default" ] || { cc_err "the control directory from $2 has no 'default'"; return 1; }
}

# cc_reach_master TRANSPORT SERVER IMAGE DEST: connect and fetch the control directory (one
# attempt).
cc_reach_master()
{
	cc_connect "$1" "$2" "$3" && cc_fetch_control "$1" "$2" "$3" "$4"
}

# cc_random N: a random number from 0 to N.
cc_random()
{
	local r
	r=$(od -An -N2 -tu2 /dev/urandom 2>/dev/null | tr -d ' ')
	echo $((${r:-0} % ($1 + 1)))
}

# cc_backoff_delay ATTEMPT: seconds before the next attempt: CC_RETRY_BASE * 2^(ATTEMPT-1),
# capped at CC_RETRY_MAX, plus up to half of it as jitter (nodes booted together spread out).
cc_backoff_delay()
{
	local d="${CC_RETRY_BASE}" i=1
	while [ "${i}" -lt "$1" ] && [ "${d}" -lt "${CC_RETRY_MAX}" ]; do
		d=$((d * 2))
		i=$((i + 1))
	done
	[ "${d}" -le "${CC_RETRY_MAX}" ] || d="${CC_RETRY_MAX}"
	[ "${d}" -gt 0 ] || { echo 0; return 0; }
	echo $((d + $(cc_random $((d / 2)))))
}

# cc_retry RETRIES WHAT CMD ARGS...: run CMD until it succeeds, at most RETRIES+1 times.
cc_retry()
{
	local retries="$1" what="$2" attempt=0 delay
	shift 2
	while :; do
		if "$@"; then
			return 0
		fi
		attempt=$((attempt + 1))
		if [ "${attempt}" -gt "${retries}" ]; then
			cc_err "${what}: failed after ${attempt} attempt(s)"
			return 1
		fi
		delay=$(cc_backoff_delay "${attempt}")
		cc_warn "${what}: attempt ${attempt} of $((retries + 1)) failed; next in ${delay}s"
		sleep "${delay}"
	done
}

# cc_fetch_file TRANSPORT SRC PATH DEST: copy PATH (relative to SRC, a cc_served or cc_source
# value) to DEST; 0 when copied or when there is no such file (DEST absent then); non-zero when the master
# could not be asked. From the rsync daemon, retried with back-off like the sync itself (a
# busy daemon refuses: max connections).
cc_fetch_file()
{
	rm -f "$4"
	case "$1" in
	nfs)
		[ -f "$2$3" ] || return 0
		cp "$2$3" "$4"
		;;
	rsync) cc_retry "${CC_RETRIES:-5}" "reading $3 from the master" cc_fetch_rsync "$2$3" "$4" ;;
	esac
}

# cc_fetch_rsync URL DEST: one attempt; rsync's 23 (no such file) is not a failure.
cc_fetch_rsync()
{
	local rc=0
	"${CC_RSYNC}" -q "$1" "$2" 2>/dev/null || rc=$?
	case "${rc}" in
	0) return 0 ;;
	23) rm -f "$2"; return 0 ;;
	*) return "${rc}" ;;
	esac
}
