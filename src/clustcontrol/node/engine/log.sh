# clustcontrol engine, logging: console messages, the boot's log, helpers every step uses.
#
# Console messages go to stderr, prefixed "clustcontrol:", and into $CC_LOG with a time stamp.
# Functions that produce a value print it on stdout; 0 is success.
# shellcheck shell=sh
# shellcheck disable=SC3043 # local: busybox ash and dash have it (initramfs-tools relies on it)

cc_log()
{
	printf 'clustcontrol: %s\n' "$*" >&2
	if [ -n "${CC_LOG:-}" ] && [ -d "${CC_LOG%/*}" ]; then
		printf '%s clustcontrol: %s\n' "$(date '+%Y-%m-%d %H:%M:%S' 2>/dev/null)" "$*" \
			2>/dev/null >>"${CC_LOG}" || true
	fi
	return 0
}

cc_warn()
{
	cc_log "WARNING: $*"
}

cc_err()
{
	cc_log "ERROR: $*"
}

# cc_loud LINE...: a warning nobody can miss: a framed block, then CC_WARN_PAUSE seconds so a
# human at the console reads it.
cc_loud()
{
	local line
	cc_log "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
	for line in "$@"; do
		cc_log "!!! ${line}"
	done
	cc_log "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
	if [ "${CC_WARN_PAUSE:-0}" -gt 0 ] 2>/dev/null; then
		sleep "${CC_WARN_PAUSE}"
	fi
	return 0
}

# cc_quiet CMD ARGS...: run a command with its output into the log only (rsync, mkfs, sfdisk
# chatter); when it fails, its last five lines go to the console too. Returns its status.
cc_quiet()
{
	local out rc=0
	out="${CC_RUN_DIR:-/tmp}/quiet.$$"
	[ -d "${out%/*}" ] || out="${TMPDIR:-/tmp}/clustcontrol-quiet.$$"
	"$@" >"${out}" 2>&1 || rc=$?
	if [ -n "${CC_LOG:-}" ] && [ -d "${CC_LOG%/*}" ]; then
		cat "${out}" >>"${CC_LOG}" 2>/dev/null || true
	fi
	if [ "${rc}" -ne 0 ]; then
		echo "clustcontrol:   $* (status ${rc}):" >&2
		tail -n 5 "${out}" 2>/dev/null | sed 's/^/clustcontrol:     /' >&2
	fi
	rm -f "${out}"
	return "${rc}"
}

# cc_now: seconds since the epoch (CC_NOW when set: tests).
cc_now()
{
	if [ -n "${CC_NOW:-}" ]; then
		echo "${CC_NOW}"
	else
		date +%s
	fi
}

# cc_confined ROOT REL: true when writing ROOT/REL stays inside ROOT: no component of REL (a
# relative path; the last one included) is a symbolic link, which would be followed on this
# side of the root (an absolute link in the standard, /etc/network -> /somewhere, names the
# initramfs' or, in a rehearsal, the master's file). Says so when one is, and is false.
cc_confined()
{
	local p="$1" rest="$2/" c
	while [ -n "${rest}" ]; do
		c="${rest%%/*}"
		rest="${rest#*/}"
		[ -n "${c}" ] || continue
		p="${p}/${c}"
		if [ -L "${p}" ]; then
			cc_warn "/${p#"$1"/} is a symbolic link: /$2 not written (it could lead out of the root)"
			return 1
		fi
		[ -e "${p}" ] || return 0
	done
}

# cc_save_log ROOT [rotate|update]: keep this boot's log on the node's disk, in ROOT$CC_LOG_DIR;
# rotate (the default) first moves the previous boot's log to boot-sync.log.1.
cc_save_log()
{
	local d="$1${CC_LOG_DIR}"
	[ -n "${CC_LOG:-}" ] && [ -f "${CC_LOG}" ] || return 0
	cc_confined "$1" "${CC_LOG_DIR#/}/boot-sync.log.1" || return 0
	mkdir -p "${d}" || return 1
	if [ "${2:-rotate}" = rotate ] && [ -f "${d}/boot-sync.log" ]; then
		mv -f "${d}/boot-sync.log" "${d}/boot-sync.log.1"
	fi
	cp "${CC_LOG}" "${d}/boot-sync.log"
	cc_flush "${d}"
}

# cc_flush [PATH]: write to disk (before a marker or record counts) what was written to the file
# system holding PATH (sync -f: syncfs(2)); without PATH, or a sync without -f, every file
# system. A rehearsal or a benchmark on the master flushes only the node's disk.
cc_flush()
{
	if [ -n "${1:-}" ] && sync -f "$1" 2>/dev/null; then
		return 0
	fi
	sync 2>/dev/null || true
}
