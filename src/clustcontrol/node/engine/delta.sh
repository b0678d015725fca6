# clustcontrol engine, generation deltas: a node one or more committed generations behind
# fetches the master's list of what changed since its generation (`clustcontrol image commit`
# writes CC_DELTAS_DIR/FROM), deletes the removed paths itself and lets rsync copy
# only the listed ones.
# shellcheck shell=sh
# shellcheck disable=SC3043 # local: busybox ash and dash have it
# shellcheck disable=SC2034 # CC_BATCH_FILE, CC_LAST_RSYNC_RC are read by the caller

# cc_outside_root: true when a line of stdin (a path, relative to the root) is empty, absolute
# or has a .. component: a list of the master's that names one is not used.
cc_outside_root()
{
	grep -q -e '^/' -e '^\.\./' -e '/\.\./' -e '/\.\.$' -e '^\.\.$' -e '^$'
}

# cc_fetch_delta TRANSPORT SRC FILTER LIST: the standard's delta from the node's generation
# to the current one (CC_DELTAS_DIR/FROM, written by `clustcontrol image commit`): the paths to copy as an rsync --files-from LIST, the paths to delete in
# LIST.removed, both without the paths FILTER excludes. Fails (the caller walks the whole
# tree) when there is none, when it is not from CC_REC_GENERATION to CC_STD_GENERATION, is
# truncated, or names a path outside the root. cc_copy_decision chose a delta first.
cc_fetch_delta()
{
	local filter="$3" list="$4" from="${CC_REC_GENERATION}" to="${CC_STD_GENERATION}" f
	f="${list}.fetched"
	cc_fetch_file "$1" "$2" "${CC_DELTAS_DIR}/${from}" "${f}" || return 1
	if [ ! -f "${f}" ]; then
		cc_log "no delta from generation ${from} to ${to} on the master: comparing the whole tree"
		return 1
	fi
	if [ "$(head -n 1 "${f}")" != "# ${CC_DELTA_FORMAT} ${from} ${to}" ] \
		|| [ "$(tail -n 1 "${f}")" != "# end" ] || [ "$(grep -c '^# removed$' "${f}")" != 1 ]; then
		cc_warn "the delta from generation ${from} is not one to ${to} or is truncated: comparing the whole tree"
		return 1
	fi
	if sed -e '1d' -e '$d' -e '/^# removed$/d' "${f}" | cc_outside_root; then
		cc_warn "the delta from generation ${from} names paths outside the root: comparing the whole tree"
		return 1
	fi
	cc_filter_regex "${filter}" >"${list}.exclude" || return 1
	{
		sed -e '1d' -e '/^# removed$/,$d' "${f}" | grep -v -f "${list}.exclude"
		echo "${CC_GENERATION_FILE}"
	} >"${list}" || return 1
	sed -e '1,/^# removed$/d' -e '$d' "${f}" | grep -v -f "${list}.exclude" >"${list}.removed"
	rm -f "${f}" "${list}.exclude"
	cc_log "generation ${from} -> ${to}: delta of $(($(wc -l <"${list}") - 1)) path(s) to copy," \
		"$(wc -l <"${list}.removed" | tr -d ' ') to delete"
}

# cc_delete_removed ROOT LIST: delete the paths of LIST (relative to ROOT) on the node, keeping
# the persistent paths inside them (cc_delete_keeping). A path is deleted only where its
# directory is the real one inside ROOT: an absolute symlink on the way would lead out of the
# node's root, into the initramfs (the next whole-tree comparison deals with such a node).
cc_delete_removed()
{
	local root="$1" real p dir kept=0 last="" safe=yes
	real=$(readlink -f "${root}") || return 1
	while IFS= read -r p || [ -n "${p}" ]; do
		case "${p}" in */*) dir="${p%/*}" ;; *) dir="" ;; esac
		[ -z "${dir}" ] || [ -d "${root}/${dir}" ] || continue # nothing there to delete
		if [ -n "${dir}" ] && [ "${dir}" != "${last}" ]; then # the list is sorted: once per dir
			last="${dir}"
			safe=yes
			[ "$(readlink -f "${root}/${dir}" 2>/dev/null)" = "${real}/${dir}" ] || safe=no
		fi
		if [ -n "${dir}" ] && [ "${safe}" = no ]; then
			kept=$((kept + 1))
			continue
		fi
		if [ -e "${root}/${p}" ] || [ -L "${root}/${p}" ]; then
			cc_delete_keeping "${root}" "${p}" || return 1
		fi
	done <"$2"
	[ "${kept}" -eq 0 ] || cc_warn "${kept} removed path(s) not deleted: a symlink on the way on this node"
	return 0
}

# cc_delete_keeping ROOT PATH: delete ROOT/PATH except the node's own paths in it (its state,
# logs and identity, the persistent paths it holds: CC_OWN_PATHS, else cc_own_paths) and the
# directories leading to them: a standard that removes /opt/app never takes the node's
# /opt/app/data with it, nor one that removes /etc/ssh the node's host keys. Says so once per
# kept persistent path.
cc_delete_keeping()
{
	local root="$1" rel="$2" q keep="" e own
	if [ -n "${CC_OWN_PATHS+set}" ]; then own="${CC_OWN_PATHS}"; else own=$(cc_own_paths "${root}"); fi
	set -f
	for q in ${own}; do
		case "${q}" in
		"${rel}" | "${rel}"/*) keep="${keep} ${q}" ;;
		esac
	done
	set +f
	case "${keep} " in
	" ") rm -rf -- "${root:?}/${rel}"; return ;;
	*" ${rel} "*)
		case " ${CC_PERSISTENT:-} " in
		*" /${rel} "*) cc_warn "persistent /${rel} kept: the standard removed it or a directory above it" ;;
		esac
		return 0
		;;
	esac
	if [ -L "${root}/${rel}" ] || [ ! -d "${root}/${rel}" ]; then
		rm -f -- "${root:?}/${rel}" # not the directory the persistent path is in
		return
	fi
	for e in "${root}/${rel}"/* "${root}/${rel}"/.[!.]* "${root}/${rel}"/..?*; do
		[ -e "${e}" ] || [ -L "${e}" ] || continue
		cc_delete_keeping "${root}" "${rel}/${e##*/}" || return 1
	done
}

# cc_fetch_batch TRANSPORT SRC LIST ROOT: the master's rsync batch from the node's generation
# (CC_DELTAS_DIR/FROM.batch, `clustcontrol image commit`, image/batches.py) when it covers exactly
# the paths of LIST (this node's delta list, FROM.list) and comes with the sums of the results
# (FROM.sums, to LIST.sums). Sets CC_BATCH_FILE: on the NFS mount, or fetched from the rsync
# daemon onto the node's disk (ROOT's state directory, not the initramfs' memory). Fails (the
# caller runs rsync's delta algorithm) when there is none or it does not fit.
cc_fetch_batch()
{
	local d="${CC_DELTAS_DIR}/${CC_REC_GENERATION}" f="$3.batch-list"
	CC_BATCH_FILE=""
	cc_fetch_file "$1" "$2" "${d}.list" "${f}" || return 1
	[ -f "${f}" ] || return 1
	if ! cmp -s "${f}" "$3"; then
		cc_log "the master's batch from ${CC_REC_GENERATION} covers other paths than this node syncs"
		return 1
	fi
	cc_fetch_file "$1" "$2" "${d}.sums" "$3.sums" && [ -f "$3.sums" ] || return 1
	case "$1" in
	nfs) CC_BATCH_FILE="$2${d}.batch" ;;
	rsync)
		mkdir -p "$4${CC_STATE_DIR}" || return 1
		CC_BATCH_FILE="$4${CC_STATE_DIR}/delta.batch"
		cc_fetch_file "$1" "$2" "${d}.batch" "${CC_BATCH_FILE}" || return 1
		;;
	esac
	[ -f "${CC_BATCH_FILE}" ]
}

# cc_apply_batch ROOT LIST STATS FILTER: replay CC_BATCH_FILE onto ROOT (rsync --read-batch with
# CC_BATCH_OPTIONS, the options the master wrote it with, and the node's FILTER: a directory
# the generation replaces by a symlink or a file is deleted with --force, and only the filter
# keeps the node's own paths in it; rsync then fails with status 23 and the caller's delta sync
# keeps that directory, cc_keep_own_dirs), then make sure the node got exactly
# the generation's files: rsync replays onto whatever the node holds. A file it rebuilt is
# checked by rsync itself against the batch's whole-file checksum ("failed verification" when
# the node's copy was not the batch's basis); every other file of LIST.sums (hard links, files
# rsync left alone) is checked against its sha256. Any difference: the caller syncs the delta
# the usual way. STATS gets rsync's statistics, with the bytes read from the master (the
# batch, its list and sums) as "Total bytes received".
cc_apply_batch()
{
	local root="$1" sums="$2.sums" out="$3.batch" rc=0 size
	cc_log "replaying the master's batch from generation ${CC_REC_GENERATION} ($(wc -c <"${CC_BATCH_FILE}" | tr -d ' ') bytes)"
	# shellcheck disable=SC2086 # the options are a word list
	"${CC_RSYNC}" ${CC_BATCH_OPTIONS} --stats --itemize-changes --filter="merge $4" \
		--read-batch="${CC_BATCH_FILE}" "${root}/" >"${out}" 2>&1 || rc=$?
	[ -z "${CC_LOG:-}" ] || cat "${out}" >>"${CC_LOG}" 2>/dev/null
	if [ "${rc}" -ne 0 ]; then
		cc_warn "the batch did not apply (rsync status ${rc}): rsync's delta algorithm instead"
		grep -v '^[>ch.*][fdLDS]' "${out}" | tail -n 3 | sed 's/^/clustcontrol:   /' >&2
		rc=1
	elif grep -q 'failed verification' "${out}"; then
		cc_warn "files differ from generation ${CC_REC_GENERATION} on this node (rsync: failed" \
			"verification): rsync's delta algorithm instead"
		rc=1
	else
		# The files rsync did not rebuild itself: their sums (path from column 67 on).
		sed -n 's/^>f[^ ]* //p' "${out}" >"${sums}.rebuilt"
		awk 'NR == FNR { rebuilt[$0] = 1; next } !(substr($0, 67) in rebuilt)' \
			"${sums}.rebuilt" "${sums}" >"${sums}.rest"
		if [ -s "${sums}.rest" ] && ! (cd "${root}" && sha256sum -c -s "${sums}.rest") 2>/dev/null; then
			cc_warn "files differ from the generation after the batch: rsync's delta algorithm instead"
			rc=1
		fi
	fi
	size=$(($(wc -c <"${CC_BATCH_FILE}") + $(wc -c <"$2") + $(wc -c <"${sums}")))
	case "${CC_BATCH_FILE}" in "${root}"/*) rm -f "${CC_BATCH_FILE}" ;; esac
	[ "${rc}" -eq 0 ] || return 1
	{
		grep -v -e '^Total bytes' -e '^[>ch.*][fdLDS]' "${out}"
		echo "Total bytes sent: 0"
		echo "Total bytes received: ${size}"
	} >"$3"
	CC_LAST_RSYNC_RC=0
}
