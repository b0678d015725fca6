# clustcontrol engine, dense files: the generation's regular files that are fully allocated on
# the master and hold blocks of zero bytes (`clustcontrol image commit` lists them in
# CC_DENSE_LIST, image/dense.py). rsync --sparse and tar --sparse leave every such block a hole
# on the node: a swap file with holes fails swapon(8), a preallocated database or VM image
# loses its preallocation. After the copy, each listed file it may have written is allocated
# again (fallocate(1): unwritten extents, nothing written; swapon accepts them), then gets back
# the time and the file capability that fallocate moved and dropped (file_modified() in the
# kernel): rsync --size-only from the copy's own source, which moves no data.
# shellcheck shell=sh
# shellcheck disable=SC3043 # local: busybox ash and dash have it

# cc_dense_list TRANSPORT SRC LIST: the generation's dense files (CC_DENSE_LIST of its tree, SRC
# a cc_source value) into LIST, "SIZE PATH" lines; LIST is empty when the tree has none (a
# master before this list) or a list that is not of generation CC_STD_GENERATION, truncated,
# malformed or naming a path outside the root (said). Fails only when the master could not be
# asked.
cc_dense_list()
{
	local f="$3.fetched"
	: >"$3" || return 1
	cc_fetch_file "$1" "$2" "${CC_DENSE_LIST}" "${f}" || return 1
	[ -f "${f}" ] || return 0
	if [ "$(head -n 1 "${f}")" != "# ${CC_DENSE_FORMAT} ${CC_STD_GENERATION}" ] \
		|| [ "$(tail -n 1 "${f}")" != "# end" ]; then
		cc_warn "the list of dense files of generation ${CC_STD_GENERATION} is not of it or is" \
			"truncated: they keep the holes the copy makes"
	elif sed -e '1d' -e '$d' "${f}" | grep -q -v -E '^(1024|2048|4096) .'; then
		cc_warn "the list of dense files of generation ${CC_STD_GENERATION} is malformed:" \
			"they keep the holes the copy makes"
	elif [ "$(wc -l <"${f}")" -gt 2 ] && sed -e '1d' -e '$d' -e 's/^[0-9]* //' "${f}" | cc_outside_root; then
		cc_warn "the list of dense files of generation ${CC_STD_GENERATION} names paths outside" \
			"the root: they keep the holes the copy makes"
	else
		sed -e '1d' -e '$d' "${f}" >"$3"
	fi
	rm -f "${f}"
}

# cc_dense_wanted ROOT LIST FILTER WANTED: the paths of LIST (cc_dense_list) that can get a hole
# on ROOT's file system (SIZE at least its block size, or 4096) and that FILTER does not keep
# out of the sync, into WANTED, one a line.
cc_dense_wanted()
{
	local block
	block=$(stat -f -c %S "$1" 2>/dev/null) || block=1024
	[ "${block}" -le 4096 ] 2>/dev/null || block=4096
	cc_filter_regex "$3" >"$4.exclude" || return 1
	awk -v block="${block}" '$1 >= block { print substr($0, index($0, " ") + 1) }' "$2" \
		| grep -v -f "$4.exclude" >"$4" || :
	rm -f "$4.exclude"
}

# cc_dense_fill ROOT SRC FILTER METHOD LIST [DELTA]: allocate the dense files (LIST, see
# cc_dense_list) that this boot's copy (METHOD: tar, tree, delta or batch) may have written:
# every one a whole-tree copy takes, those among the paths of the DELTA list for a delta or a
# batch; only regular files reached without a symbolic link (cc_confined). Then their times
# and attributes from SRC again (cc_dense_attrs). Keeps the wanted paths in
# CC_RUN_DIR/dense.wanted for cc_separate_seeded. Says so and does nothing more when there is
# no fallocate. Fails when a file cannot be allocated or its attributes restored.
cc_dense_fill()
{
	local root="$1" src="$2" filter="$3" work="${CC_RUN_DIR}/dense" opt="" line size rel n=0
	: >"${work}.wanted"
	[ -s "$5" ] || return 0
	cc_dense_wanted "${root}" "$5" "${filter}" "${work}.wanted" || return 1
	case "$4" in
	delta | batch)
		awk 'NR == FNR { copied[$0] = 1; next } ($0 in copied)' "$6" "${work}.wanted" >"${work}.copied"
		;;
	*) cp "${work}.wanted" "${work}.copied" ;;
	esac
	: >"${work}.files"
	while IFS= read -r rel; do
		if [ -f "${root}/${rel}" ] && [ ! -L "${root}/${rel}" ] && cc_confined "${root}" "${rel}"; then
			echo "${rel}" >>"${work}.files"
		fi
	done <"${work}.copied"
	[ -s "${work}.files" ] || return 0
	if ! command -v fallocate >/dev/null 2>&1; then
		cc_warn "no fallocate in the initramfs: $(wc -l <"${work}.files" | tr -d ' ') file(s)" \
			"fully allocated in the standard keep the holes the copy made (a swap file fails swapon)"
		return 0
	fi
	# util-linux's -x (posix_fallocate(3)) writes where a file system cannot preallocate (ext2,
	# ext3); busybox's fallocate does so anyway and has no -x.
	if fallocate --help 2>&1 | grep -q -e '--posix'; then opt=-x; fi
	# One stat for all (names as ./PATH: one may start with -).
	(cd "${root}" && sed 's|^|./|' "${work}.files" | tr '\n' '\0' | xargs -0 stat -c '%s %n') \
		>"${work}.sizes" || return 1
	while IFS= read -r line; do
		size="${line%% *}"
		rel="${line#* ./}"
		[ "${size}" -gt 0 ] || continue
		# shellcheck disable=SC2086 # opt is empty or one option
		if ! fallocate ${opt} -l "${size}" "${root}/${rel}"; then
			cc_err "cannot allocate /${rel} (${size} bytes)"
			return 1
		fi
		n=$((n + 1))
	done <"${work}.sizes"
	cc_retry "${CC_RETRIES:-0}" "restoring the times of the dense files from ${src}" \
		cc_dense_attrs "${src}" "${root}" "${filter}" "${work}.files" || return 1
	cc_log "dense files allocated: ${n} (fallocate), times and attributes restored"
	rm -f "${work}.copied" "${work}.files" "${work}.sizes"
}

# cc_dense_attrs SRC ROOT FILTER FILES: the generation's times and attributes (owner, mode,
# extended attributes: the file capability fallocate dropped) for the paths of FILES, from SRC:
# rsync --size-only moves no data, the files have the size of the source's. Over NFS, which
# carries no extended attributes, cc_restore_xattrs gives them back afterwards.
cc_dense_attrs()
{
	local out="${CC_RUN_DIR}/dense.out" flags rc=0
	flags=$(cc_rsync_flags)
	# shellcheck disable=SC2086 # flags and extra options are word lists
	"${CC_RSYNC}" ${flags} --numeric-ids --relative --no-implied-dirs --size-only \
		--modify-window=-1 --files-from="$4" ${CC_RSYNC_EXTRA:-} --filter="merge $3" \
		"$1" "$2/" >"${out}" 2>&1 || rc=$?
	[ -z "${CC_LOG:-}" ] || cat "${out}" >>"${CC_LOG}" 2>/dev/null
	if [ "${rc}" -ne 0 ]; then
		cc_warn "rsync exit status ${rc}"
		tail -n 3 "${out}" | sed 's/^/clustcontrol:   /' >&2
	fi
	return "${rc}"
}
