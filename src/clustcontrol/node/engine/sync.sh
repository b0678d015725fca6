# clustcontrol engine, the sync step: decide what this boot copies (cc_copy_decision, the one
# place that chooses), then marker, copy, flush, record.
# shellcheck shell=sh
# shellcheck disable=SC3043 # local: busybox ash and dash have it
# shellcheck disable=SC2034 # CC_COPY_*, CC_SYNC_* are read by the caller and the record

# cc_copy_decision MARKER MODE STD REC VERIFY_DUE BLANK TAR DELTA: what this boot copies, from
# facts only (no disk, no network):
#   MARKER      yes: the previous sync did not finish (its marker is on the root)
#   MODE        normal | full (clustcontrol.sync=full: every file's content compared)
#   STD, REC    the standard's committed generation, the node's recorded one (may be empty)
#   VERIFY_DUE  yes: this boot must compare the whole tree (verify_every)
#   BLANK       yes: the root holds nothing but lost+found
#   TAR         yes: a tar stream can fill it (NFS, CC_FIRST_COPY=tar, GNU tar present)
#   DELTA       yes: delta syncs are on (CC_DELTA_SYNC)
# Sets CC_COPY_METHOD (skip | tar | delta | tree; a delta replayed from the master's batch is
# recorded as batch), CC_COPY_MODE (normal | full) and CC_COPY_WHY
# (a line for the log, or empty). In order:
#   1. an interrupted sync:                      the whole tree, contents compared (full)
#   2. the node holds the standard's generation: skip, unless a whole-tree comparison is due
#   3. a blank root:                             first copy, one tar stream
#   4. an earlier committed generation:          the delta from it, unless a comparison is due
#   5. anything else:                            the whole tree (rsync --delete)
# A whole-tree copy onto a root that is not blank compares every file's content (full).
cc_copy_decision()
{
	local marker="$1" std="$3" rec="$4" due="$5" blank="$6" tar="$7" delta="$8"
	CC_COPY_MODE="$2"
	CC_COPY_WHY=""
	if [ "${marker}" = yes ]; then
		CC_COPY_MODE=full
		CC_COPY_WHY="the previous sync did not finish: full re-sync (contents compared)"
	elif [ "${CC_COPY_MODE}" = normal ] && [ -n "${std}" ] && [ "${std}" = "${rec}" ]; then
		if [ "${due}" != yes ]; then
			CC_COPY_METHOD=skip
			return 0
		fi
		CC_COPY_WHY="generation ${std} unchanged; every $(cc_verify_every)th boot compares the whole tree: now"
	fi
	if [ "${blank}" = yes ] && [ "${tar}" = yes ]; then
		CC_COPY_METHOD=tar
	elif [ "${CC_COPY_MODE}" = normal ] && [ "${delta}" = yes ] && [ -n "${std}" ] \
		&& [ -n "${rec}" ] && [ "${rec}" != uncommitted ] && [ "${std}" != "${rec}" ]; then
		if [ "${due}" = yes ]; then
			CC_COPY_METHOD=tree
			CC_COPY_WHY="generation ${std}: every $(cc_verify_every)th boot compares the whole tree: now"
		else
			CC_COPY_METHOD="delta"
		fi
	else
		CC_COPY_METHOD=tree
	fi
	# A comparison of the whole tree compares every file's content (--checksum): size and mtime
	# miss content changed without them, and the node records the generation as its own after
	# it. Only a blank root has nothing to compare.
	if [ "${CC_COPY_METHOD}" = tree ] && [ "${blank}" != yes ]; then
		CC_COPY_MODE=full
	fi
	return 0
}

# cc_copy_facts ROOT TRANSPORT MODE: gather the facts of cc_copy_decision and decide. The
# generations compared are the one this boot copies (CC_STD_GENERATION) and the node's record
# (CC_REC_GENERATION), unless the previous sync was interrupted or the mode is full.
cc_copy_facts()
{
	local root="$1" marker=no due=no blank=no tar=no std=""
	CC_REC_GENERATION=""
	if [ -e "$(cc_marker "${root}")" ]; then
		marker=yes
	elif [ "$3" = normal ]; then
		std="${CC_STD_GENERATION}"
		cc_recorded_generation "${root}"
	fi
	cc_verify_due "${root}" && due=yes
	cc_root_blank "${root}" && blank=yes
	if [ "${blank}" = yes ] && [ "$2" = nfs ] && [ "${CC_FIRST_COPY}" = tar ] && cc_tar_usable; then
		tar=yes
	fi
	cc_copy_decision "${marker}" "$3" "${std}" "${CC_REC_GENERATION}" "${due}" \
		"${blank}" "${tar}" "${CC_DELTA_SYNC}"
}

# cc_sync ROOT TRANSPORT MODE(normal|full): decide, then the secrets' archive and the list of
# dense files, marker, copy (with retries), dense files allocated, extended attributes (NFS),
# secrets, record. A failed tar stream or delta falls back to the whole tree.
# Sets CC_SYNC_BYTES (bytes moved), CC_SYNC_FILES, CC_SYNC_FILE_BYTES and CC_SYNC_METHOD.
# Returns non-zero when the sync did not complete: when CC_SYNC_STARTED is no, nothing was
# written (the secrets or the dense files' list could not be had; CC_SYNC_WHY says so), else
# the marker stays and the next boot re-syncs fully.
cc_sync()
{
	local root="$1" transport="$2" src filter stats list dense start end rc=0 gen="${CC_STD_GENERATION}" bytes method mode
	CC_SYNC_STARTED=no
	CC_SYNC_WHY=""
	src=$(cc_source "${transport}")
	filter="${CC_RUN_DIR}/rsync-filter"
	stats="${CC_RUN_DIR}/rsync-stats"
	list="${CC_RUN_DIR}/delta-list"
	dense="${CC_RUN_DIR}/dense-list"
	cc_copy_facts "${root}" "${transport}" "$3"
	method="${CC_COPY_METHOD}"
	mode="${CC_COPY_MODE}"
	if [ -n "${CC_COPY_WHY}" ]; then
		if [ "${mode}" != "$3" ]; then cc_warn "${CC_COPY_WHY}"; else cc_log "${CC_COPY_WHY}"; fi
	fi
	if [ "${method}" = skip ]; then
		cc_count_unverified "${root}" || return 1
		CC_SYNC_BYTES=0
		cc_log "standard generation ${CC_STD_GENERATION} unchanged since the last sync: no transfer" \
			"(skipped $(cc_unverified "${root}") time(s); full comparison every $(cc_verify_every) boots, 0 = never)"
		return 0
	fi
	cc_write_filter "${root}" "${filter}" || return 1
	# The secrets first: a node that cannot have them must not start a copy that needs them.
	if ! cc_prepare_secrets "${transport}" "${src}" "${filter}"; then
		CC_SYNC_WHY="the secrets of generation ${gen} are not available from ${CC_SERVER}"
		return 1
	fi
	if ! cc_dense_list "${transport}" "${src}" "${dense}"; then
		CC_SYNC_WHY="the list of dense files of generation ${gen} cannot be read from ${CC_SERVER}"
		return 1
	fi
	if [ "${method}" = delta ] && ! cc_fetch_delta "${transport}" "${src}" "${filter}" "${list}"; then
		method=tree
		mode=full # the whole tree onto a root that is not blank: contents compared
	fi
	start=$(cc_now)
	CC_SYNC_STARTED=yes
	cc_state_dir_path "${root}" "${src}" || { cc_err "no place for the sync marker"; return 1; }
	cc_write_marker "${root}" "${CC_IMAGE}" "${transport}:${src}" || { cc_err "cannot write the sync marker"; return 1; }
	CC_OWN_PATHS=$(cc_own_paths "${root}" | tr '\n' ' ')
	cc_log "syncing image ${CC_IMAGE} from ${src} (${mode}, ${method})"
	CC_LAST_RSYNC_RC=0
	case "${method}" in
	tar)
		if ! cc_tar_copy "${src}" "${root}" "${filter}" "${stats}"; then
			cc_warn "the tar copy failed: comparing the whole tree with rsync"
			method=tree
			mode=full
		fi
		;;
	delta)
		if ! cc_delete_removed "${root}" "${list}.removed"; then
			cc_warn "deleting the removed paths failed: comparing the whole tree"
			method=tree
			mode=full
		elif [ "${CC_DELTA_BATCH}" = yes ] && cc_fetch_batch "${transport}" "${src}" "${list}" "${root}" \
			&& cc_apply_batch "${root}" "${list}" "${stats}" "${filter}"; then
			method="batch"
		elif ! cc_retry "${CC_RETRIES}" "delta sync from ${src}" cc_rsync_tree "${src}" \
			"${root}" delta "${filter}" "${stats}" "${list}"; then
			cc_warn "the delta sync failed: comparing the whole tree"
			method=tree
			mode=full
		fi
		;;
	esac
	if [ "${method}" = tree ]; then
		cc_retry "${CC_RETRIES}" "sync from ${src}" cc_rsync_tree "${src}" "${root}" "${mode}" \
			"${filter}" "${stats}" || rc=1
	fi
	# The dense files before the attributes' archive: their times come from the source, which
	# over NFS has no extended attributes; the archive brings those last.
	if [ "${rc}" -eq 0 ]; then
		cc_dense_fill "${root}" "${src}" "${filter}" "${method}" "${dense}" "${list}" || rc=1
	fi
	# Extracting the attributes' archive again gives the same tree: a tar that dies (killed,
	# out of memory) is retried like the copy itself.
	if [ "${rc}" -eq 0 ] && [ "${transport}" = nfs ]; then
		cc_retry "${CC_RETRIES}" "extended attributes from ${src}" cc_restore_xattrs "${src}" \
			"${root}" "${filter}" || rc=1
	fi
	# The copy is of the generation chosen only if the tree's own generation file came along:
	# a tree the master removed during the copy leaves a partial copy without it.
	if [ "${rc}" -eq 0 ] && [ "$(cc_generation "${root}")" != "${gen}" ]; then
		cc_err "the copy is not of generation ${gen}: its tree changed or went away on the master"
		rc=1
	fi
	if [ "${rc}" -eq 0 ]; then
		cc_install_secrets "${root}" "${filter}" || rc=1
	fi
	if [ "${rc}" -eq 0 ]; then
		cc_separate_seeded "${root}" || rc=1
	fi
	if [ "${rc}" -ne 0 ]; then
		cc_err "the sync of ${root} from ${src} did not complete"
		return 1
	fi
	cc_flush "${root}"
	end=$(cc_now)
	# Bytes over the wire (daemon), the pipe between the local rsync processes or the tar
	# stream (NFS).
	bytes=$(($(cc_stats_value "Total bytes sent" "${stats}") + $(cc_stats_value "Total bytes received" "${stats}")))
	CC_SYNC_BYTES="${bytes:-0}"
	CC_SYNC_FILE_BYTES=$(cc_stats_value "Total transferred file size" "${stats}")
	CC_SYNC_FILES=$(cc_stats_value "Number of regular files transferred" "${stats}")
	CC_SYNC_METHOD="${method}"
	cc_write_record "${root}" "${CC_IMAGE}" "${CC_SERVER} ${transport}" "${gen}" "${start}" \
		"${end}" "${CC_SYNC_BYTES}" "${CC_LAST_RSYNC_RC}" "${mode}" || { cc_err "cannot write the sync record"; return 1; }
	# Boots since the last comparison of every file's content: a tar first copy and a full
	# comparison start the count again, any other copy is one more.
	if [ "${method}" = tar ] || [ "${mode}" = full ]; then
		cc_verified "${root}"
	else
		cc_count_unverified "${root}" || return 1
	fi
	cc_log "sync done (${method}): ${CC_SYNC_FILES:-0} file(s) updated (${CC_SYNC_FILE_BYTES:-0} bytes of" \
		"file data), ${CC_SYNC_BYTES} bytes moved, generation ${gen}"
	return 0
}
