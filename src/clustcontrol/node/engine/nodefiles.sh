# clustcontrol engine, the node's own files, written into the synced root at every boot:
# hostname, hosts, machine-id (made once, kept), interfaces (the boot interface stays as the
# kernel configured it), fstab (the layout's partitions by UUID). The sync never copies these
# from the standard (cc_exclusions).
# shellcheck shell=sh
# shellcheck disable=SC3043 # local: busybox ash and dash have it

# cc_write_hostname ROOT: CC_HOSTNAME into ROOT/etc/hostname (left alone for an unknown node).
cc_write_hostname()
{
	[ -n "${CC_HOSTNAME:-}" ] || { cc_warn "unknown node: /etc/hostname left alone"; return 0; }
	cc_confined "$1" etc/hostname || return 0
	echo "${CC_HOSTNAME}" >"$1/etc/hostname"
}

# cc_write_hosts ROOT: drop earlier clustcontrol lines and Debian's 127.0.1.1 line, add node and master.
cc_write_hosts()
{
	local f="$1/etc/hosts" tag="# clustcontrol-node"
	cc_confined "$1" etc/hosts.tmp && cc_confined "$1" etc/hosts || return 0
	[ -f "${f}" ] || printf '127.0.0.1\tlocalhost\n' >"${f}"
	grep -v -e "${tag}\$" -e '^127\.0\.1\.1[[:space:]]' "${f}" >"${f}.tmp" || true
	{
		if [ -n "${CC_IP:-}" ] && [ -n "${CC_HOSTNAME:-}" ]; then
			printf '%s\t%s %s\t%s\n' "${CC_IP}" "${CC_FQDN:-${CC_HOSTNAME}}" "${CC_HOSTNAME}" "${tag}"
		fi
		if [ -n "${CC_MASTER_IP:-}" ] && [ -n "${CC_MASTER_NAME:-}" ]; then
			printf '%s\t%s %s\t%s\n' "${CC_MASTER_IP}" \
				"${CC_MASTER_NAME}${CC_DOMAIN:+.${CC_DOMAIN}}" "${CC_MASTER_NAME}" "${tag}"
		fi
	} >>"${f}.tmp"
	mv "${f}.tmp" "${f}"
}

# cc_write_machine_id ROOT: /etc/machine-id (and D-Bus's link to it) generated once per node,
# kept across syncs (excluded from the sync; a copy in the state directory restores it should it
# go missing).
cc_write_machine_id()
{
	local f="$1/etc/machine-id" saved id
	saved="$1${CC_STATE_DIR}/machine-id"
	cc_confined "$1" etc/machine-id && cc_confined "$1" "${CC_STATE_DIR#/}/machine-id" || return 0
	id=$(cat "${f}" 2>/dev/null)
	case "${id}" in
	"" | uninitialized | *[!0-9a-f]*) id="" ;;
	esac
	[ "${#id}" -eq 32 ] || id=""
	if [ -z "${id}" ]; then
		id=$(cat "${saved}" 2>/dev/null)
		[ "${#id}" -eq 32 ] || id=""
	fi
	if [ -z "${id}" ]; then
		id=$(tr -d -- '-\n' <"${CC_UUID_SOURCE}" | tr 'A-F' 'a-f')
		cc_log "new machine-id ${id}"
	fi
	echo "${id}" >"${f}" || return 1
	# D-Bus's copy is a link to it (as Debian's dbus makes it), never the standard's.
	# (the link itself is replaced, never followed: only its directory is checked)
	if [ -d "$1/var/lib/dbus" ] && cc_confined "$1" var/lib/dbus && [ "$(readlink "$1/var/lib/dbus/machine-id")" != /etc/machine-id ]; then
		rm -f "$1/var/lib/dbus/machine-id"
		ln -s /etc/machine-id "$1/var/lib/dbus/machine-id" || return 1
	fi
	mkdir -p "${saved%/*}" && echo "${id}" >"${saved}"
}

# cc_check_ssh_keys ROOT: say whether the booted system will make its SSH host keys.
cc_check_ssh_keys()
{
	if [ -d "$1/etc/ssh" ] && ! ls "$1"/etc/ssh/ssh_host_*_key >/dev/null 2>&1; then
		if [ -x "$1/usr/bin/ssh-keygen" ]; then
			cc_log "no SSH host keys yet: the booted system generates them (ssh-keygen -A)"
		else
			cc_warn "no SSH host keys and no ssh-keygen in the image"
		fi
	fi
	return 0
}

# cc_write_interfaces ROOT: the boot interface is configured by the kernel (ip=dhcp) and must stay up: 'manual' for
# ifupdown, option lines of its old stanza dropped.
cc_write_interfaces()
{
	local f="$1/etc/network/interfaces" ifc="${CC_BOOT_INTERFACE:-}" line skip=0 found=0 word1 rest
	[ -n "${ifc}" ] || return 0
	cc_confined "$1" etc/network/interfaces.tmp && cc_confined "$1" etc/network/interfaces || return 0
	[ -f "${f}" ] || return 0
	: >"${f}.tmp"
	while IFS= read -r line || [ -n "${line}" ]; do
		set -f
		# shellcheck disable=SC2086 # split the line into words
		set -- ${line}
		set +f
		word1="${1:-}"
		rest="${2:-}"
		case "${line}" in
		[[:space:]]*)
			[ "${skip}" = 1 ] && [ -n "${word1}" ] && case "${word1}" in \#*) ;; *) continue ;; esac
			;;
		*) skip=0 ;;
		esac
		if [ "${word1}" = iface ] && [ "${rest}" = "${ifc}" ] && [ "${3:-}" = inet ]; then
			echo "iface ${ifc} inet manual" >>"${f}.tmp"
			skip=1
			found=1
			continue
		fi
		printf '%s\n' "${line}" >>"${f}.tmp"
	done <"${f}"
	if [ "${found}" = 0 ]; then
		printf '\n# clustcontrol: configured by the kernel at boot (ip=dhcp)\niface %s inet manual\n' \
			"${ifc}" >>"${f}.tmp"
	fi
	mv "${f}.tmp" "${f}"
}

# cc_standard_fstab FILE: the standard's fstab lines a node keeps: all but its root and swap
# lines, the lines of the layout's data mount points and an earlier clustcontrol block. The
# admin's NFS /home, tmpfs and bind lines stay.
cc_standard_fstab()
{
	local file="$1" line skip=no w drop
	while IFS= read -r line || [ -n "${line}" ]; do
		case "${line}" in
		"# BEGIN clustcontrol"*) skip=yes; continue ;;
		"# END clustcontrol"*) skip=no; continue ;;
		esac
		[ "${skip}" = no ] || continue
		case "${line#"${line%%[![:space:]]*}"}" in # without leading blanks
		"" | "#"*) printf '%s\n' "${line}"; continue ;;
		esac
		set -f
		# shellcheck disable=SC2086 # the line's fields
		set -- ${line}
		set +f
		drop=no
		[ "${2:-}" = / ] || [ "${3:-}" = swap ] && drop=yes
		for w in ${CC_PARTITIONS:-}; do
			cc_partition_word "${w}"
			[ -n "${CC_PART_MOUNT}" ] && [ "${2:-}" = "${CC_PART_MOUNT}" ] && drop=yes
		done
		[ "${drop}" = yes ] || printf '%s\n' "${line}"
	done <"${file}"
}

# cc_write_fstab ROOT DISK [STANDARD_FSTAB]: /etc/fstab of the node: the standard's lines it
# keeps (cc_standard_fstab), then clustcontrol's block for the local disk, by UUID: root, swap,
# data partitions.
cc_write_fstab()
{
	local root="$1" disk="$2" f="$1/etc/fstab" w n use fs mount dev uuid
	cc_confined "$1" etc/fstab.tmp && cc_confined "$1" etc/fstab || return 0
	{
		echo "# /etc/fstab: the standard's lines, then this node's local disk (clustcontrol's block),"
		echo "# rewritten at every boot sync: change the standard's /etc/fstab instead."
		if [ -n "${3:-}" ] && [ -f "$3" ]; then
			cc_standard_fstab "$3"
		fi
		echo "# BEGIN clustcontrol: this node's local disk"
		echo "# <file system> <mount point> <type> <options> <dump> <pass>"
		for w in ${CC_PARTITIONS:-}; do
			cc_partition_word "${w}"
			n="${CC_PART_NUMBER}" use="${CC_PART_USE}" fs="${CC_PART_FS}" mount="${CC_PART_MOUNT}"
			dev=$(cc_partition_device "${disk}" "${n}")
			uuid=$(blkid -s UUID -o value "${dev}" 2>/dev/null)
			if [ -n "${uuid}" ]; then uuid="UUID=${uuid}"; else uuid="LABEL=$(cc_fs_label_for "${use}" "${n}")"; fi
			case "${use}" in
			root) printf '%s\t/\t%s\terrors=remount-ro\t0\t1\n' "${uuid}" "${fs}" ;;
			swap) printf '%s\tnone\tswap\tsw\t0\t0\n' "${uuid}" ;;
			data)
				printf '%s\t%s\t%s\tdefaults,nofail\t0\t2\n' "${uuid}" "${mount}" "${fs}"
				! cc_confined "${root}" "${mount#/}" || mkdir -p "${root}${mount}"
				;;
			esac
		done
		echo "# END clustcontrol"
	} >"${f}.tmp" && mv "${f}.tmp" "${f}"
}

# cc_write_node_files ROOT DISK [STANDARD_FSTAB]: all of the above, then flush.
cc_write_node_files()
{
	local root="$1"
	cc_confined "${root}" etc || return 0
	mkdir -p "${root}/etc" || return 1
	cc_write_hostname "${root}" || return 1
	cc_write_hosts "${root}" || return 1
	cc_write_machine_id "${root}" || return 1
	cc_check_ssh_keys "${root}"
	cc_write_interfaces "${root}" || return 1
	cc_write_fstab "${root}" "$2" "${3:-}" || return 1
	cc_log "node files written: hostname ${CC_HOSTNAME:-?}, hosts, machine-id, interfaces, fstab"
	cc_flush "${root}"
}
