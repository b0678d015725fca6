# clustcontrol engine, secrets: the files of the standard no served tree holds (/etc/shadow,
# /etc/gshadow, munge.key, the image's own list; `clustcontrol image commit`,
# image/secrets.py). The generation's tree lists their paths (CC_SECRETS_LIST): the sync keeps
# them, and the node installs them from the generation's archive on the image's secrets export,
# which the master exports over NFS to its nodes' addresses alone, to root (a privileged source
# port), whatever the transport.
# shellcheck shell=sh
# shellcheck disable=SC3043 # local: busybox ash and dash have it
# shellcheck disable=SC2034 # CC_SECRETS_ARCHIVE is read by the caller

# cc_secret_list TRANSPORT SRC LIST: the generation's secret paths (CC_SECRETS_LIST of its
# tree, SRC a cc_source value) into LIST, one a line; LIST is empty when the tree has none, or
# no list (a master before secrets were kept apart). Fails, saying why, when the list cannot
# be read, is not of generation CC_STD_GENERATION, is truncated or names a path outside the
# root.
cc_secret_list()
{
	local f="$3.fetched" first
	: >"$3" || return 1
	cc_fetch_file "$1" "$2" "${CC_SECRETS_LIST}" "${f}" || return 1
	[ -f "${f}" ] || return 0
	first=$(head -n 1 "${f}")
	if [ "${first}" != "# ${CC_SECRETS_FORMAT} ${CC_STD_GENERATION}" ] || [ "$(tail -n 1 "${f}")" != "# end" ]; then
		cc_err "the secret paths of generation ${CC_STD_GENERATION} on the master are not of it or are truncated"
		return 1
	fi
	if [ "$(wc -l <"${f}")" -gt 2 ] && sed -e '1d' -e '$d' "${f}" | cc_outside_root; then
		cc_err "the secret paths of generation ${CC_STD_GENERATION} name paths outside the root"
		return 1
	fi
	sed -e '1d' -e '$d' "${f}" >"$3" && rm -f "${f}"
}

# cc_secrets_wanted LIST FILTER WANTED: the paths of LIST this node installs into WANTED: all
# but those FILTER excludes (the node's own paths: its identity, the persistent paths it
# holds, data partitions). True when there is any.
cc_secrets_wanted()
{
	cc_filter_regex "$2" >"$3.exclude" || return 1
	grep -v -f "$3.exclude" "$1" >"$3" || :
	rm -f "$3.exclude"
	[ -s "$3" ]
}

# cc_protect_secrets LIST FILTER: FILTER keeps every path of LIST as it is on the node (neither
# copied nor deleted): the served tree has no file there. The names are exact: the master
# lists none with one of rsync's wildcard characters.
cc_protect_secrets()
{
	sed 's|^|- /|' "$1" >>"$2"
}

# cc_secrets_export: the image's secrets export as NFS names it, SERVER:PATH.
cc_secrets_export()
{
	echo "${CC_SERVER}:${CC_SECRETS_ROOT}"
}

# cc_fetch_secrets ARCHIVE: the generation's secrets archive (CC_STD_GENERATION then
# CC_SECRETS_SUFFIX) from the image's secrets export (CC_SECRETS_ROOT, over NFS whatever the
# transport, mounted read-only at CC_SECRETS_MNT for the copy alone) into ARCHIVE, in the
# initramfs' memory. Retried like reaching the master. Fails when it cannot be had.
cc_fetch_secrets()
{
	local name="${CC_STD_GENERATION}${CC_SECRETS_SUFFIX}" rc=0
	if [ -z "${CC_SECRETS_ROOT:-}" ]; then
		cc_err "the control files name no secrets export for image ${CC_IMAGE} (CC_SECRETS_ROOT)"
		return 1
	fi
	cc_retry "${CC_RETRIES}" "mounting the secrets of image ${CC_IMAGE} ($(cc_secrets_export))" \
		cc_nfs_mount "${CC_SERVER}" "${CC_SECRETS_ROOT}" "${CC_SECRETS_MNT}" || return 1
	if [ ! -f "${CC_SECRETS_MNT}/${name}" ]; then
		cc_err "no secrets archive ${name} of image ${CC_IMAGE} on the master"
		rc=1
	elif ! cp "${CC_SECRETS_MNT}/${name}" "$1"; then
		cc_err "cannot copy the secrets archive ${name} from the master"
		rc=1
	fi
	cc_umount "${CC_SECRETS_MNT}"
	return "${rc}"
}

# cc_prepare_secrets TRANSPORT SRC FILTER: before the copy writes anything: read the
# generation's secret paths, fetch the archive when this node takes any of them (into
# CC_SECRETS_ARCHIVE; empty when it takes none), then add the paths to FILTER (kept on the
# node). Fails when the list or the archive cannot be had: the node must not sync without them.
cc_prepare_secrets()
{
	local list="${CC_RUN_DIR}/secrets-list" archive="${CC_RUN_DIR}/secrets${CC_SECRETS_SUFFIX}"
	CC_SECRETS_ARCHIVE=""
	rm -f "${archive}"
	cc_secret_list "$1" "$2" "${list}" || return 1
	[ -s "${list}" ] || return 0
	if cc_secrets_wanted "${list}" "$3" "${list}.wanted"; then
		cc_fetch_secrets "${archive}" || return 1
		CC_SECRETS_ARCHIVE="${archive}"
	fi
	cc_protect_secrets "${list}" "$3"
}

# cc_install_secrets ROOT FILTER: install the wanted secret paths (cc_prepare_secrets) onto
# ROOT from CC_SECRETS_ARCHIVE, exactly (owner, mode, times, extended attributes, ACLs, hard
# links) and each atomically: GNU tar extracts the archive into a directory on ROOT's file
# system (in the node's state directory, which no sync touches), rsync moves each wanted path
# into place (a temporary file, then rename(2)), then the archive's entries of the directories
# on the way (those FILTER does not exclude) give them the generation's metadata again: the
# renames moved their times.
cc_install_secrets()
{
	local root="$1" stage="$1${CC_STATE_DIR}/secrets.new" out="${CC_RUN_DIR}/secrets.out"
	local wanted="${CC_RUN_DIR}/secrets-list.wanted" dirs="${CC_RUN_DIR}/secrets-dirs" flags rc=0
	[ -n "${CC_SECRETS_ARCHIVE:-}" ] || return 0
	if ! cc_tar_usable; then
		cc_err "no GNU tar: the secrets cannot be installed"
		return 1
	fi
	rm -rf "${stage}"
	mkdir -p "${stage}" && chmod 0700 "${stage}" || return 1
	"${CC_TAR}" -C "${stage}" --extract --file="${CC_SECRETS_ARCHIVE}" --numeric-owner \
		--preserve-permissions --xattrs --xattrs-include='*' --acls >"${out}" 2>&1 || rc=$?
	if [ "${rc}" -eq 0 ]; then
		flags=$(cc_rsync_flags)
		# shellcheck disable=SC2086 # the flags are a word list
		"${CC_RSYNC}" ${flags} --numeric-ids --ignore-times --files-from="${wanted}" \
			"${stage}/" "${root}/" >>"${out}" 2>&1 || rc=$?
	fi
	if [ "${rc}" -eq 0 ]; then
		cc_filter_regex "$2" >"${dirs}.exclude" || rc=1
		awk -F/ '{ p = $1; for (i = 2; i <= NF; i++) { print p; p = p "/" $i } }' "${wanted}" \
			| sort -u | grep -v -f "${dirs}.exclude" | sed 's|^|./|' >"${dirs}" || :
	fi
	if [ "${rc}" -eq 0 ] && [ -s "${dirs}" ]; then
		"${CC_TAR}" -C "${root}" --extract --file="${CC_SECRETS_ARCHIVE}" --no-recursion \
			--numeric-owner --preserve-permissions --xattrs --xattrs-include='*' --acls \
			--files-from="${dirs}" >>"${out}" 2>&1 || rc=$?
	fi
	rm -rf "${stage}" "${CC_SECRETS_ARCHIVE}" "${dirs}" "${dirs}.exclude"
	[ -z "${CC_LOG:-}" ] || cat "${out}" >>"${CC_LOG}" 2>/dev/null
	if [ "${rc}" -ne 0 ]; then
		cc_err "installing the secrets of generation ${CC_STD_GENERATION} failed (status ${rc})"
		tail -n 5 "${out}" | sed 's/^/clustcontrol:   /' >&2
		return 1
	fi
	cc_log "secrets installed: $(wc -l <"${wanted}" | tr -d ' ') path(s) from the image's secrets export"
}
