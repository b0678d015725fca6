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

# cc_own_paths ROOT: the node's own paths on ROOT, relative, one a line: the exclusions that
# exist there (its state, logs and identity: cc_exclusions' "path" lines, * expanded) and the
# persistent paths it holds (cc_seeded). No sync deletes or replaces them, nor the directories
# they are in.
cc_own_paths()
{
	local root="$1" kind p q
	cc_exclusions | while read -r kind p; do
		[ "${kind}" = path ] || continue
		# shellcheck disable=SC2086 # p may hold a * within one name (etc/ssh/ssh_host_*)
		for q in "${root}/"${p}; do
			if [ -e "${q}" ] || [ -L "${q}" ]; then echo "${q#"${root}/"}"; fi
		done
	done
	set -f
	for p in ${CC_PERSISTENT:-}; do
		if cc_seeded "${root}" "${p}"; then echo "${p#/}"; fi
	done
	set +f
}

# cc_keep_own_dirs ROOT FILTER CANDIDATES: the directories of ROOT named in the file CANDIDATES
# (one a line, relative) that a copy could not replace by what the standard has there (a
# symlink, a file) because they hold the node's own paths (CC_OWN_PATHS, see cc_own_paths).
# Each such DIR stays a directory, the node's: FILTER excludes it from now on and everything in
# it but the node's own paths is deleted (the standard has nothing below it). Says so once per
# DIR. False when there is none.
cc_keep_own_dirs()
{
	local root="$1" filter="$2" d o kept=no
	while IFS= read -r d; do
		if [ -z "${d}" ] || [ -L "${root}/${d}" ] || [ ! -d "${root}/${d}" ]; then continue; fi
		for o in ${CC_OWN_PATHS:-}; do
			case "${o}" in "${d}"/*) ;; *) continue ;; esac
			if ! grep -q -x -F -e "- /${d}" "${filter}"; then
				{
					echo "- /${d}"
					echo "- /${d}/**"
				} >>"${filter}"
				cc_warn "the standard has no directory /${d} (it has a symlink or a file there):" \
					"the node keeps its own, for /${o}"
				cc_delete_keeping "${root}" "${d}" || return 1
			fi
			kept=yes
			break
		done
	done <"$3"
	[ "${kept}" = yes ]
}

# cc_rsync_tree SOURCE ROOT MODE FILTER STATS [LIST]: cc_rsync_once (the whole tree, or a
# delta's LIST); when it fails with status 23 (some files not transferred) because of what the
# node holds, once more after dealing with it: a directory of the node's own paths that the
# standard replaced ("cannot delete non-empty directory: DIR") is kept (cc_keep_own_dirs), and
# immutable or append-only flags set on the node ("Operation not permitted") are cleared
# (cc_clear_flags). Neither goes away by retrying as it is.
cc_rsync_tree()
{
	local rc=0 fixed=no
	cc_rsync_once "$@" || rc=$?
	[ "${rc}" -eq 23 ] || return "${rc}"
	sed -n 's/^cannot delete non-empty directory: //p' "$5" >"$5.kept"
	if cc_keep_own_dirs "$2" "$4" "$5.kept"; then fixed=yes; fi
	if grep -q 'Operation not permitted' "$5" && cc_clear_flags "$2" "$4"; then fixed=yes; fi
	[ "${fixed}" = yes ] || return "${rc}"
	cc_rsync_once "$@"
}

# cc_clear_flags ROOT FILTER: clear the immutable and append-only flags (chattr -i -a,
# chattr(1)) of every path of ROOT the sync manages; the node's own paths (FILTER's exclusions)
# keep theirs. A generation holds no inode flags (image commit leaves them out), so such a flag
# was set on the node, and rsync can neither replace nor delete the file ("Operation not
# permitted") at any boot. Says which paths. False when none was found, or without e2fsprogs'
# lsattr and chattr.
cc_clear_flags()
{
	local root="$1" list="$2.flags" n
	if ! command -v lsattr >/dev/null 2>&1 || ! command -v chattr >/dev/null 2>&1; then
		cc_warn "no lsattr/chattr: immutable or append-only files on the node cannot be cleared"
		return 1
	fi
	cc_filter_regex "$2" >"${list}.excluded"
	# lsattr -R -a lists "FLAGS ./PATH" for everything below ., . and .. of each directory too.
	(cd "${root}" && lsattr -R -a . 2>/dev/null) \
		| sed -n 's|^[-A-Za-z]*[ia][-A-Za-z]* \./||p' \
		| grep -v -e '^\.$' -e '^\.\.$' -e '/\.$' -e '/\.\.$' \
		| grep -v -f "${list}.excluded" >"${list}"
	n=$(wc -l <"${list}" | tr -d ' ')
	[ "${n}" -gt 0 ] || return 1
	cc_warn "clearing immutable/append-only flags set on the node: ${n} path(s)," \
		"$(head -n 3 "${list}" | tr '\n' ' ')"
	while IFS= read -r p; do
		chattr -i -a "${root}/${p}" || return 1
	done <"${list}"
	rm -f "${list}" "${list}.excluded"
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
	# --modify-window=-1: times compare to the nanosecond; rsync's default compares whole
	# seconds, and a file rewritten with its size within the second of its old mtime, or a
	# directory's time moved within its second, would stay as they are.
	set -- --sparse --modify-window=-1 "$@"
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
	# --hole-detection=raw: the holes of a file that st_blocks shows sparse are found by reading
	# it; NFSv3 has no SEEK_HOLE (lseek finds one data extent), and tar's default method would
	# write such a file in full.
	{
		crc=0
		"${CC_TAR}" -C "${src}" --create --file=- --blocking-factor=128 --one-file-system \
			--sparse --hole-detection=raw --numeric-owner --xattrs --xattrs-include='*' --totals \
			--anchored --exclude-from="${excludes}" . 2>"${stats}.create" || crc=$?
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
	cc_extract_xattrs "${archive}" "$2" "$3" || rc=$?
	if [ "${rc}" -ne 0 ]; then
		# A directory the node keeps for its own paths where the standard has a file (with
		# attributes): keep it (cc_keep_own_dirs), then extract again.
		sed -n 's|^.*: \./\(.*\): Cannot open: File exists$|\1|p' "${excludes}.out" >"${excludes}.kept"
		if cc_keep_own_dirs "$2" "$3" "${excludes}.kept"; then
			rc=0
			cc_extract_xattrs "${archive}" "$2" "$3" || rc=$?
		fi
	fi
	if [ "${rc}" -ne 0 ]; then
		cc_warn "restoring extended attributes failed (tar status ${rc})"
		tail -n 5 "${excludes}.out" | sed 's/^/clustcontrol:   /' >&2
		return 1
	fi
	cc_log "extended attributes restored: $("${CC_TAR}" --list --file="${archive}" | sort -u | wc -l | tr -d ' ') path(s)"
	rm -f "${excludes}" "${excludes}.out" "${excludes}.kept"
}

# cc_extract_xattrs ARCHIVE ROOT FILTER: extract the attribute archive onto ROOT, the filter's
# exclusions kept; tar's messages in FILTER.xattrs.out.
cc_extract_xattrs()
{
	local excludes="$3.xattrs"
	cc_tar_excludes "$3" >"${excludes}" || return 1
	# tar replaces each file (a new inode, linked again to the others of its group: the
	# archive's first name of a group holds the data, and image commit puts the names a node
	# may own last, so a name is never linked to one of the node's own excluded files); the
	# directories they are in are in the archive too, and get their times back after.
	"${CC_TAR}" -C "$2" --extract --file="$1" --numeric-owner --preserve-permissions \
		--xattrs --xattrs-include='*' --acls --anchored --exclude-from="${excludes}" \
		>"${excludes}.out" 2>&1
}

# cc_separate_seeded ROOT: the persistent paths this sync seeded (not the node's own when it
# started: CC_OWN_PATHS) share no inode with a file outside them. The standard may hard-link a
# file there to one elsewhere; a later sync that changes the other name in place (owner, mode,
# attributes), or the node writing into its own file, would change both. Their files with
# more than one link are made anew (GNU tar: content, holes and attributes kept, links among
# them too; the dense files of cc_dense_fill by rsync, which writes their zero blocks where
# tar --sparse would leave holes), their directories keep their times.
cc_separate_seeded()
{
	local root="$1" p list="${CC_RUN_DIR}/separate-list" flags rc=0
	: >"${list}"
	: >"${list}.linked"
	: >"${list}.skip"
	: >"${list}.err"
	set -f
	for p in ${CC_PERSISTENT:-}; do
		case " ${CC_OWN_PATHS:-} " in *" ${p#/} "*) continue ;; esac
		if [ -L "${root}${p}" ] || [ ! -e "${root}${p}" ]; then continue; fi
		if [ -n "$(cd "${root}" && find ".${p}" -type f -links +1 | head -n 1)" ]; then
			(cd "${root}" && find ".${p}" \( -type d -o -type f -links +1 \) -print0) >>"${list}"
			(cd "${root}" && find ".${p}" -type f -links +1) | sed 's|^\./||' >>"${list}.linked"
		fi
	done
	set +f
	[ -s "${list}" ] || return 0
	if ! cc_tar_usable; then
		cc_warn "no GNU tar: seeded persistent files stay hard-linked to files outside them"
		return 0
	fi
	touch "${CC_RUN_DIR}/dense.wanted"
	awk 'NR == FNR { dense[$0] = 1; next } ($0 in dense)' "${CC_RUN_DIR}/dense.wanted" \
		"${list}.linked" >"${list}.dense"
	if [ -s "${list}.dense" ]; then
		flags=$(cc_rsync_flags)
		# shellcheck disable=SC2086 # the flags are a word list
		"${CC_RSYNC}" ${flags} --numeric-ids --ignore-times --relative \
			--files-from="${list}.dense" "${root}/" "${root}/" >"${list}.err" 2>&1 || rc=$?
		sed 's|^|./|' "${list}.dense" >"${list}.skip"
	fi
	{
		"${CC_TAR}" -C "${root}" --create --file=- --no-recursion --no-wildcards --anchored \
			--exclude-from="${list}.skip" --null --files-from="${list}" --sparse --numeric-owner \
			--xattrs --xattrs-include='*' --acls 2>>"${list}.err" || rc=$?
	} | "${CC_TAR}" -C "${root}" --extract --file=- --numeric-owner --preserve-permissions \
		--xattrs --xattrs-include='*' --acls 2>>"${list}.err" || rc=$?
	if [ "${rc}" -ne 0 ]; then
		cc_warn "separating the seeded persistent files from the rest failed"
		tail -n 5 "${list}.err" | sed 's/^/clustcontrol:   /' >&2
		return 1
	fi
	cc_log "seeded persistent files hard-linked to files outside them: made separate files"
	rm -f "${list}" "${list}.err" "${list}.linked" "${list}.dense" "${list}.skip"
}
