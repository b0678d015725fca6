# clustcontrol engine, the copy methods: the exclusions as rsync filter rules (and the tar and
# grep forms derived from them), one rsync run (whole tree, contents compared, or a delta's
# list) and the tar stream that fills a blank root. Which one a boot uses: cc_copy_decision.
# shellcheck shell=sh
# shellcheck disable=SC3043 # local: busybox ash and dash have it
# shellcheck disable=SC2034 # CC_LAST_RSYNC_RC, CC_TAR are read by the caller

# cc_rsync_flags: -aHAXx minus what this rsync build lacks ($CC_RSYNC_FLAGS replaces it).
cc_rsync_flags()
{
	local v flags="-aH"
	if [ -n "${CC_RSYNC_FLAGS:-}" ]; then
		echo "${CC_RSYNC_FLAGS}"
		return 0
	fi
	v=$("${CC_RSYNC}" --version 2>/dev/null)
	case "${v}" in
	*"no ACLs"*) ;;
	*ACLs*) flags="${flags}A" ;;
	esac
	case "${v}" in
	*"no xattrs"*) ;;
	*xattrs*) flags="${flags}X" ;;
	esac
	echo "${flags}x"
}

# cc_write_filter ROOT FILE: the rsync filter rules. Excluded paths (cc_exclusions, the data
# partitions' mount points, the persistent paths) are neither copied nor deleted (no
# --delete-excluded). A persistent path is protected once a complete sync left it on the node
# (cc_seeded); until then it is seeded from the standard, again after an interrupted seed.
# Every excluded path also gets a "PATH/**" rule: a delta sync names paths directly
# (--files-from), and rsync matches such a name against the rules without looking at its
# parents.
cc_write_filter()
{
	local root="$1" f="$2" kind p w
	{
		cc_exclusions | while read -r kind p; do
			[ "${kind}" = contents ] || echo "- /${p}"
			echo "- /${p}/**"
		done
		for w in ${CC_PARTITIONS:-}; do
			cc_partition_word "${w}"
			if [ "${CC_PART_USE}" = data ] && [ -n "${CC_PART_MOUNT}" ]; then
				echo "- ${CC_PART_MOUNT%/}/**"
			fi
		done
		set -f
		for p in ${CC_PERSISTENT:-}; do
			if cc_seeded "${root}" "${p}"; then
				echo "- ${p%/}"
				echo "- ${p%/}/**"
			fi
		done
		set +f
	} >"${f}"
}

# cc_tar_excludes FILTER: the rules of FILTER as GNU tar exclude patterns for an archive made
# with "-C SOURCE ." (anchored names ./etc/...): "- /etc/fstab" -> ./etc/fstab,
# "- /proc/**" -> ./proc/*.
cc_tar_excludes()
{
	sed -n -e 's|^- /\(.*\)$|./\1|' -e 's|/\*\*$|/*|' -e 's|/$||' -e '\|^\./|p' "$1"
}

# cc_filter_regex FILTER: basic regular expressions matching the relative paths FILTER
# excludes ("- /etc/fstab" -> ^etc/fstab$, "- /proc/**" -> ^proc/.*$, * stays in one name).
# A delta's list goes through them: rsync's receiver refuses an excluded name in a file list
# instead of skipping it.
cc_filter_regex()
{
	sed -n -e 's|^- /||' -e 't anchored' -e 'd' -e ': anchored' -e 's|[].[^$\\]|\\&|g' \
		-e 's|\*\*|@@|g' -e 's|\*|[^/]*|g' -e 's|@@|.*|g' -e 's|/$||' -e 's|.*|^&$|p' "$1"
}

# cc_stats_value "Label" FILE: a number from rsync --stats output (commas removed).
cc_stats_value()
{
	local v
	v=$(sed -n "s/^$1: *\\([0-9,]*\\).*/\\1/p" "$2" | tr -d ',' | head -n 1)
	echo "${v:-0}"
}

# cc_rsync_once SOURCE ROOT MODE FILTER STATS [LIST]: one rsync run; its exit status.
# MODE full compares contents (--checksum) instead of size and time; MODE delta transfers
# only the paths in LIST (what a generation delta copies) and, from the rsync daemon,
# compressed: what moves is close to what changed.
cc_rsync_once()
{
	local src="$1" root="$2" mode="$3" filter="$4" stats="$5" list="${6:-}" flags rc=0
	flags=$(cc_rsync_flags)
	set --
	case "${mode}" in
	full) set -- --delete --checksum ;;
	delta)
		# --ignore-times: every listed file changed on the master, even one whose size and
		# mtime second look the same (two commits within a second: the generation file).
		set -- --relative --files-from="${list}" --force --ignore-times
		[ "${CC_DELTA_BLOCK_SIZE:-0}" -gt 0 ] 2>/dev/null && set -- "$@" --block-size="${CC_DELTA_BLOCK_SIZE}"
		case "${src}" in rsync://*) set -- "$@" --compress ;; esac
		;;
	*) set -- --delete ;;
	esac
	# --sparse: holes stay holes (a sparse /var/log/lastlog of a high uid is hundreds of MB).
	set -- --sparse "$@"
	cc_log "rsync ${flags} $* ${src} -> ${root}/"
	# shellcheck disable=SC2086 # flags and extra options are word lists
	"${CC_RSYNC}" ${flags} --numeric-ids --stats "$@" ${CC_RSYNC_EXTRA:-} \
		--filter="merge ${filter}" "${src}" "${root}/" >"${stats}" 2>&1 || rc=$?
	[ -z "${CC_LOG:-}" ] || cat "${stats}" >>"${CC_LOG}" 2>/dev/null
	case "${rc}" in
	0) CC_LAST_RSYNC_RC=0; return 0 ;;
	24) # A generation's tree never changes: files vanish only when the master removed it.
		CC_LAST_RSYNC_RC=24
		cc_warn "rsync: files vanished on the master: generation ${CC_STD_GENERATION:-?} was removed during the copy"
		return 24 ;;
	*) CC_LAST_RSYNC_RC="${rc}"; cc_warn "rsync exit status ${rc}"; tail -n 5 "${stats}" | sed 's/^/clustcontrol:   /' >&2; return "${rc}" ;;
	esac
}

# cc_root_blank ROOT: true when ROOT holds nothing but lost+found (a freshly made file system).
cc_root_blank()
{
	local e
	for e in "$1"/* "$1"/.[!.]* "$1"/..?*; do
		[ -e "${e}" ] || [ -L "${e}" ] || continue
		[ "${e##*/}" = lost+found ] && continue
		return 1
	done
	return 0
}

# cc_tar_usable: sets CC_TAR to GNU tar (excludes, xattrs, numeric owners); busybox tar is not
# enough. By its path: busybox sh runs its own applet for a plain "tar".
cc_tar_usable()
{
	local t
	for t in ${CC_TAR:-/usr/bin/tar /bin/tar}; do
		if "${t}" --version 2>/dev/null | head -n 1 | grep -q 'GNU tar'; then
			CC_TAR="${t}"
			return 0
		fi
	done
	return 1
}

# cc_tar_copy SOURCE_DIR ROOT FILTER STATS: fill a blank ROOT with one tar stream (about twice
# as fast as rsync's three processes on a first copy). Hard links, symlinks, numeric owners,
# modes, times and every extended attribute (ACLs, file capabilities) travel; the filter's
# exclusions apply. Writes "Total bytes sent: N" to STATS.
cc_tar_copy()
{
	local src="$1" root="$2" filter="$3" stats="$4" excludes rc=0 crc
	excludes="${filter}.tar"
	cc_tar_excludes "${filter}" >"${excludes}" || return 1
	cc_log "tar ${src} -> ${root}/ (blank root: one stream, no comparison)"
	# 64 KiB records (tar's default is 10 KiB): a pipe round trip per record costs a context
	# switch; on a one-CPU node under QEMU this made the first copy 35-42 s instead of 51 s.
	{
		crc=0
		"${CC_TAR}" -C "${src}" --create --file=- --blocking-factor=128 --one-file-system \
			--sparse --numeric-owner --xattrs --xattrs-include='*' --totals --anchored --exclude-from="${excludes}" \
			. 2>"${stats}.create" || crc=$?
		echo "${crc}" >"${stats}.create-rc"
	} | "${CC_TAR}" -C "${root}" --extract --file=- --blocking-factor=128 --numeric-owner --xattrs \
		--xattrs-include='*' --preserve-permissions 2>"${stats}.extract" || rc=$?
	crc=$(cat "${stats}.create-rc" 2>/dev/null) || crc=2
	cat "${stats}.create" "${stats}.extract" >"${stats}" 2>/dev/null
	[ -z "${CC_LOG:-}" ] || cat "${stats}" >>"${CC_LOG}" 2>/dev/null
	# GNU tar: 1 = a file changed or vanished while it was read (like rsync's 24), 2 = fatal. A
	# generation's tree never changes: either means the master removed it during the copy.
	if [ "${rc}" -ne 0 ] || [ "${crc:-2}" -ne 0 ]; then
		cc_warn "tar failed (create status ${crc:-?}, extract status ${rc})"
		grep -v '^Total bytes' "${stats}" | tail -n 5 | sed 's/^/clustcontrol:   /' >&2
		return 1
	fi
	CC_LAST_RSYNC_RC=0
	sed -n 's/^Total bytes written: \([0-9]*\).*/Total bytes sent: \1/p' "${stats}.create" >"${stats}"
	rm -f "${stats}.create" "${stats}.extract" "${stats}.create-rc" "${excludes}"
	return 0
}

# cc_restore_xattrs SOURCE_DIR ROOT FILTER: NFSv3 carries no extended attributes (NFSv4.2 only
# user.*, RFC 8276), so a copy over NFS leaves the generation's file capabilities, POSIX ACLs,
# trusted.* and security.* attributes behind (rsync -X even removes the node's). The master
# archives the files that have any (CC_XATTRS_FILE, `clustcontrol image commit`); extracting it
# onto ROOT gives them back, the filter's exclusions kept. No archive: nothing has any.
cc_restore_xattrs()
{
	local archive="$1${CC_XATTRS_FILE}" excludes="$3.xattrs" rc=0
	[ -f "${archive}" ] || return 0
	if ! cc_tar_usable; then
		cc_err "no GNU tar: the generation's extended attributes cannot be restored"
		return 1
	fi
	cc_tar_excludes "$3" >"${excludes}" || return 1
	"${CC_TAR}" -C "$2" --extract --file="${archive}" --numeric-owner --preserve-permissions \
		--xattrs --xattrs-include='*' --acls --anchored --exclude-from="${excludes}" \
		>"${excludes}.out" 2>&1 || rc=$?
	if [ "${rc}" -ne 0 ]; then
		cc_warn "restoring extended attributes failed (tar status ${rc})"
		tail -n 5 "${excludes}.out" | sed 's/^/clustcontrol:   /' >&2
		return 1
	fi
	cc_log "extended attributes restored: $("${CC_TAR}" --list --file="${archive}" | wc -l | tr -d ' ') path(s)"
	rm -f "${excludes}" "${excludes}.out"
}
