# clustcontrol engine, the sync record: the in-progress marker written before a copy touches
# the root, the record that replaces it once the copy is complete and flushed, the generations
# of the standard and of the node, and when a whole-tree comparison is due. All in
# ROOT$CC_STATE_DIR on the node's disk.
# shellcheck shell=sh
# shellcheck disable=SC3043 # local: busybox ash and dash have it
# shellcheck disable=SC2034 # CC_STD_GENERATION, CC_REC_GENERATION are read by the caller

# cc_marker ROOT, cc_record ROOT, cc_skips ROOT: the paths of the marker, the record and the
# count of boots since the last whole-tree comparison.
cc_marker() { echo "$1${CC_STATE_DIR}/sync-in-progress"; }
cc_record() { echo "$1${CC_STATE_DIR}/last-sync"; }
cc_skips() { echo "$1${CC_STATE_DIR}/generation-skips"; }

# cc_write_state FILE: stdin into FILE (in ROOT$CC_STATE_DIR) atomically: a temporary file,
# renamed, then flushed.
cc_write_state()
{
	mkdir -p "${1%/*}" || return 1
	cat >"$1.tmp" && mv "$1.tmp" "$1" || return 1
	cc_flush "$1"
}

# cc_state_dir_path ROOT SRC: make the directories leading to CC_STATE_DIR on ROOT what the
# standard (SRC, the generation's tree) has there, before the marker is written. A component
# the node lacks is copied from SRC alone (a directory empty, a symlink as it is), and a
# relative symlink on the way is followed inside ROOT: a blank node whose standard has
# /var/lib -> ../usr/varlib keeps its state in usr/varlib, and the copy finds var/lib as the
# standard has it (a directory made there first would stay, for the state in it, and hide
# the standard's /var/lib). A symlink that leads out of ROOT (absolute, or .. above it), or
# links nested deeper than 8, are replaced by a directory, with a warning: the state is
# never written outside the node's root.
cc_state_dir_path()
{
	local root="$1" todo="${CC_STATE_DIR#/}" done="" c p t n=0
	todo="${todo%/*}"
	while [ -n "${todo}" ]; do
		c="${todo%%/*}"
		case "${todo}" in */*) todo="${todo#*/}" ;; *) todo="" ;; esac
		case "${c}" in
		"" | .) continue ;;
		..)
			case "${done}" in */*) done="${done%/*}" ;; *) done="" ;; esac
			continue
			;;
		esac
		p="${done:+${done}/}${c}"
		if [ ! -e "${root}/${p}" ] && [ ! -L "${root}/${p}" ]; then
			printf '%s\n' "${p}" | "${CC_RSYNC}" -dlptgoDq --numeric-ids --files-from=- "$2" "${root}/" \
				2>/dev/null || true
		fi
		if [ -L "${root}/${p}" ]; then
			t=$(readlink "${root}/${p}") || return 1
			n=$((n + 1))
			case "${t}" in
			/*) ;;
			*)
				if [ "${n}" -le 8 ] && ! cc_climbs_out "${done}" "${t}"; then
					todo="${t}${todo:+/${todo}}"
					continue
				fi
				;;
			esac
			cc_warn "/${p} is a symbolic link to ${t}, out of the root: a directory on this node" \
				"(its state, ${CC_STATE_DIR}, is kept there)"
			rm -f "${root:?}/${p}" && mkdir "${root}/${p}" || return 1
		fi
		[ -e "${root}/${p}" ] || return 0 # not in the standard either: mkdir -p makes the rest
		[ -d "${root}/${p}" ] || { cc_err "/${p} is not a directory: no place for ${CC_STATE_DIR}"; return 1; }
		done="${p}"
	done
}

# cc_climbs_out DIR TARGET: true when the relative symlink TARGET, in directory DIR (relative
# to the root, "" for the root), leads above the root.
cc_climbs_out()
{
	local depth=0 c rest="$2/"
	[ -z "$1" ] || depth=$(($(printf '%s' "$1" | tr -cd / | wc -c) + 1))
	while [ -n "${rest}" ]; do
		c="${rest%%/*}"
		rest="${rest#*/}"
		case "${c}" in
		"" | .) ;;
		..) depth=$((depth - 1)); [ "${depth}" -ge 0 ] || return 0 ;;
		*) depth=$((depth + 1)) ;;
		esac
	done
	return 1
}

# cc_write_marker ROOT IMAGE SOURCE: "a sync is running"; on disk before rsync touches a file.
# It names the persistent paths that are the node's own as the sync starts (CC_MARK_SEEDED):
# should the sync not finish, they are the only ones (cc_seeded); a path it was seeding is
# seeded again.
cc_write_marker()
{
	local p seeded=""
	set -f
	for p in ${CC_PERSISTENT:-}; do
		if cc_seeded "$1" "${p}"; then seeded="${seeded:+${seeded} }${p}"; fi
	done
	set +f
	{
		echo "CC_MARK_IMAGE='$2'"
		echo "CC_MARK_SOURCE='$3'"
		echo "CC_MARK_START='$(cc_now)'"
		echo "CC_MARK_SEEDED='${seeded}'"
	} | cc_write_state "$(cc_marker "$1")"
}

# cc_write_record ROOT IMAGE SOURCE GENERATION START END BYTES RSYNC_RC MODE: the sync record
# replaces the marker (record first, then marker removal, each flushed). The count of boots
# since the last whole-tree comparison is the caller's (cc_count_unverified, cc_verified).
cc_write_record()
{
	{
		echo "CC_SYNC_IMAGE='$2'"
		echo "CC_SYNC_SOURCE='$3'"
		echo "CC_SYNC_GENERATION='$4'"
		echo "CC_SYNC_START='$5'"
		echo "CC_SYNC_END='$6'"
		echo "CC_SYNC_BYTES='$7'"
		echo "CC_SYNC_RSYNC_EXIT='$8'"
		echo "CC_SYNC_MODE='$9'"
		echo "CC_SYNC_FILES='${CC_SYNC_FILES:-0}'"
		echo "CC_SYNC_FILE_BYTES='${CC_SYNC_FILE_BYTES:-0}'"
		echo "CC_SYNC_METHOD='${CC_SYNC_METHOD:-tree}'"
		echo "CC_SYNC_SEEDED='${CC_PERSISTENT:-}'"
	} | cc_write_state "$(cc_record "$1")" || return 1
	rm -f "$(cc_marker "$1")"
	cc_flush "$1"
}

# cc_seeded ROOT PATH: true when the persistent PATH is the node's own: the last complete sync
# (the record) held it complete (CC_SYNC_SEEDED), and, after a sync that did not finish (its
# marker), it was the node's own when that sync started (CC_MARK_SEEDED). Before that, it is
# seeded from the standard like any other path: a sync cut half-way, the first or a later one
# that brought the path, leaves no half-filled persistent path behind. A record of an earlier
# version (no CC_SYNC_SEEDED) counts every existing path.
cc_seeded()
{
	local r m seeded
	r=$(cc_record "$1")
	m=$(cc_marker "$1")
	[ -f "${r}" ] || return 1
	[ -e "$1$2" ] || [ -L "$1$2" ] || return 1
	if [ -f "${m}" ] && grep -q "^CC_MARK_SEEDED=" "${m}"; then
		seeded=$(cc_param_value "${m}" CC_MARK_SEEDED) || return 1
		case " ${seeded} " in
		*" $2 "*) ;;
		*) return 1 ;;
		esac
	fi
	grep -q "^CC_SYNC_SEEDED=" "${r}" || return 0
	seeded=$(cc_param_value "${r}" CC_SYNC_SEEDED) || return 1
	case " ${seeded} " in
	*" $2 "*) return 0 ;;
	esac
	return 1
}

# cc_has_complete_sync ROOT: a record and no marker.
cc_has_complete_sync()
{
	[ -f "$(cc_record "$1")" ] && [ ! -e "$(cc_marker "$1")" ]
}

# cc_sync_age ROOT: "3 days 2 hours" since the end of the recorded sync.
cc_sync_age()
{
	local end now s
	end=$(sed -n "s/^CC_SYNC_END='\\{0,1\\}\\([0-9]*\\).*/\\1/p" "$(cc_record "$1")" 2>/dev/null)
	[ -n "${end}" ] || { echo "unknown age"; return 0; }
	now=$(cc_now)
	s=$((now - end))
	[ "${s}" -ge 0 ] || s=0
	if [ "${s}" -ge 86400 ]; then
		echo "$((s / 86400)) day(s) $((s % 86400 / 3600)) hour(s) old"
	elif [ "${s}" -ge 3600 ]; then
		echo "$((s / 3600)) hour(s) $((s % 3600 / 60)) minute(s) old"
	else
		echo "$((s / 60)) minute(s) old"
	fi
}

# cc_generation ROOT: the generation id in ROOT's CC_GENERATION_FILE (what the copy brought),
# or "uncommitted" when there is none.
cc_generation()
{
	local g=""
	if [ -f "$1/${CC_GENERATION_FILE}" ]; then
		g=$(head -n 1 "$1/${CC_GENERATION_FILE}" | tr -cd 'A-Za-z0-9._:+-')
	fi
	echo "${g:-uncommitted}"
}

# cc_recorded_generation ROOT: CC_REC_GENERATION, the generation of the node's last complete
# sync (empty when there is none).
cc_recorded_generation()
{
	CC_REC_GENERATION=$(cc_param_value "$(cc_record "$1")" CC_SYNC_GENERATION) || CC_REC_GENERATION=""
}

# cc_unverified ROOT: boots since the node last compared every file's content (a full
# comparison or a tar first copy); skips, deltas and whole-tree syncs by size and time count.
cc_unverified()
{
	local n
	n=$(cat "$(cc_skips "$1")" 2>/dev/null) || n=0
	case "${n}" in "" | *[!0-9]*) n=0 ;; esac
	echo "${n}"
}

# cc_verify_every: compare the whole tree every N-th boot that would not (CC_VERIFY_EVERY, the
# image's verify_every; clustcontrol.verify=N overrides; 0 = never).
cc_verify_every()
{
	echo "${CC_ARG_VERIFY:-${CC_VERIFY_EVERY}}"
}

# cc_verify_due ROOT: true when this boot must compare the whole tree, contents included.
cc_verify_due()
{
	local every
	every=$(cc_verify_every)
	[ "${every}" -gt 0 ] && [ $(($(cc_unverified "$1") + 1)) -ge "${every}" ]
}

# cc_verified ROOT: this boot compared every file's content: the count starts again.
cc_verified()
{
	rm -f "$(cc_skips "$1")"
}

# cc_count_unverified ROOT: one more boot without a whole-tree comparison.
cc_count_unverified()
{
	echo $(($(cc_unverified "$1") + 1)) >"$(cc_skips "$1")" || return 1
	cc_flush "$1"
}
