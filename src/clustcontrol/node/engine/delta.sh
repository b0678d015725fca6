# clustcontrol engine, generation deltas: a node one or more committed generations behind
# fetches the master's list of what changed since its generation (`clustcontrol image commit`
# writes CC_DELTAS_DIR/FROM), deletes the removed paths itself and lets rsync copy
# only the listed ones.
# shellcheck shell=sh
# shellcheck disable=SC3043 # local: busybox ash and dash have it

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
	if sed -e '1d' -e '$d' -e '/^# removed$/d' "${f}" \
		| grep -q -e '^/' -e '^\.\./' -e '/\.\./' -e '/\.\.$' -e '^\.\.$' -e '^$'; then
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
