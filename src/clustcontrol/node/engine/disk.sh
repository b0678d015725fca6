# clustcontrol engine, the disk: compare the disk with its layout, partition and format when
# they differ (or on clustcontrol.repartition=yes), check the root, mount and unmount.
# Persistent partitions are formatted only when the layout itself changed, after a loud warning.
# shellcheck shell=sh
# shellcheck disable=SC3043 # local: busybox ash and dash have it
# shellcheck disable=SC2034 # CC_DISK_ACTION, CC_ROOT_REMADE are read by the caller

# cc_disk_size DISK: size in bytes of a block device or an image file.
cc_disk_size()
{
	local name
	if [ -b "$1" ]; then
		if blockdev --getsize64 "$1" 2>/dev/null; then
			return 0
		fi
		name="${1##*/}"
		[ -r "/sys/class/block/${name}/size" ] || return 1
		echo $(($(cat "/sys/class/block/${name}/size") * 512))
	elif [ -f "$1" ]; then
		wc -c <"$1" | tr -d ' '
	else
		return 1
	fi
}

# cc_sector_size DISK: its logical sector size in bytes (512 for an image file).
cc_sector_size()
{
	if [ -b "$1" ]; then
		blockdev --getss "$1" 2>/dev/null || echo 512
	else
		echo 512
	fi
}

# cc_normalize_dump: stdin `sfdisk --dump` -> the layout only: no label-id, device, device
# names (which may hold ':', as udev's by-path names do), partition UUIDs (random per run).
cc_normalize_dump()
{
	sed -e '/^label-id:/d' -e '/^device:/d' -e '/^[[:space:]]*$/d' \
		-e 's/^[^ ]*[^0-9]\([0-9][0-9]*\)[[:space:]]*:/\1 :/' \
		-e 's/,[[:space:]]*uuid=[^,]*//'
}

# cc_dump_disk DISK: normalized layout of the disk; fails for a disk without partition table.
cc_dump_disk()
{
	local out
	out=$(sfdisk --dump "$1" 2>/dev/null) || return 1
	[ -n "${out}" ] || return 1
	printf '%s\n' "${out}" | cc_normalize_dump
}

# cc_expected_dump DISK SFDISK_SCRIPT SCRATCH_DIR: normalized layout the script gives on a disk
# of DISK's size and sector size (applied to a sparse scratch file).
cc_expected_dump()
{
	local disk="$1" script="$2" scratch="$3/layout-scratch.img" size ss rc=0
	size=$(cc_disk_size "${disk}") || { cc_err "cannot read the size of ${disk}"; return 1; }
	ss=$(cc_sector_size "${disk}")
	rm -f "${scratch}"
	dd if=/dev/zero of="${scratch}" bs=1 count=0 seek="${size}" 2>/dev/null || return 1
	if [ "${ss}" = 512 ]; then
		cc_quiet sfdisk --no-reread --no-tell-kernel -q "${scratch}" <"${script}" || rc=$?
	else
		cc_quiet sfdisk --sector-size "${ss}" --no-reread --no-tell-kernel -q "${scratch}" \
			<"${script}" || rc=$?
	fi
	if [ "${rc}" -eq 0 ]; then
		cc_dump_disk "${scratch}" || rc=1
	else
		cc_err "the sfdisk script ${script} does not apply to a disk of ${size} bytes"
	fi
	rm -f "${scratch}"
	return "${rc}"
}

# cc_layout_state DISK SFDISK_SCRIPT SCRATCH_DIR: prints blank | same | different.
cc_layout_state()
{
	local want have
	want=$(cc_expected_dump "$1" "$2" "$3") || return 1
	if ! have=$(cc_dump_disk "$1"); then
		echo blank
	elif [ "${want}" = "${have}" ]; then
		echo same
	else
		echo different
	fi
}

# cc_fs_type DEV: the file system signature on DEV (ext4, swap, ...) or nothing.
cc_fs_type()
{
	blkid -p -s TYPE -o value "$1" 2>/dev/null || true
}

# cc_wait_for_dev DEV [SECONDS]: wait for a device node (udev, or partx as fallback).
cc_wait_for_dev()
{
	local dev="$1" n="${2:-10}"
	while [ "${n}" -gt 0 ]; do
		[ -b "${dev}" ] && return 0
		sleep 1
		n=$((n - 1))
	done
	[ -b "${dev}" ]
}

# cc_reread_partitions DISK: make the kernel see the new table and the partition nodes appear.
cc_reread_partitions()
{
	local disk="$1" p first
	[ -b "${disk}" ] || return 0
	blockdev --rereadpt "${disk}" >/dev/null 2>&1 || true
	if command -v partx >/dev/null 2>&1; then
		# Kernels without this partition-table type, or a busy disk: tell the kernel ourselves.
		partx -u "${disk}" >/dev/null 2>&1 || partx -a "${disk}" >/dev/null 2>&1 || true
	fi
	if command -v udevadm >/dev/null 2>&1; then
		udevadm settle --timeout=10 >/dev/null 2>&1 || true
	fi
	first=$(cc_dump_disk "${disk}" | sed -n 's/^\([0-9][0-9]*\) :.*/\1/p' | head -n 1)
	[ -n "${first}" ] || return 0
	p=$(cc_partition_device "${disk}" "${first}")
	cc_wait_for_dev "${p}" 10 || cc_warn "partition ${p} did not appear"
	return 0
}

# cc_partition DISK SFDISK_SCRIPT: write the partition table.
cc_partition()
{
	cc_log "partitioning $1 (sfdisk script $2)"
	if ! cc_quiet sfdisk --wipe always --wipe-partitions always -q "$1" <"$2"; then
		# A kernel that refused the re-read makes sfdisk fail after writing; check the result.
		if ! cc_dump_disk "$1" >/dev/null; then
			cc_err "sfdisk could not partition $1"
			return 1
		fi
	fi
	cc_reread_partitions "$1"
}

# cc_fs_label_for USE N: the file system label clustcontrol gives partition N.
cc_fs_label_for()
{
	case "$1" in
	root) echo "ccroot" ;;
	swap) echo "ccswap$2" ;;
	*) echo "ccdata$2" ;;
	esac
}

# cc_mkfs DEV FS LABEL: make a file system (ext2/3/4 or swap).
cc_mkfs()
{
	local dev="$1" fs="$2" label="$3"
	CC_DISK_WRITTEN=yes
	cc_wait_for_dev "${dev}" 10 || { cc_err "device ${dev} did not appear"; return 1; }
	cc_log "making ${fs} on ${dev} (label ${label})"
	case "${fs}" in
	swap) cc_quiet mkswap -L "${label}" "${dev}" ;;
	ext2 | ext3 | ext4) cc_quiet "mkfs.${fs}" -F -q -L "${label}" "${dev}" ;;
	*) cc_err "unknown file system ${fs} for ${dev}"; return 1 ;;
	esac || { cc_err "mkfs ${fs} on ${dev} failed"; return 1; }
}

# cc_check_root DEV: e2fsck -p; 0 when the file system is usable.
cc_check_root()
{
	local rc=0
	[ -n "$(cc_fs_type "$1")" ] || { cc_log "no file system on $1"; return 1; }
	cc_quiet e2fsck -p "$1" || rc=$?
	if [ "${rc}" -ge 4 ]; then
		cc_warn "e2fsck -p $1 failed (exit ${rc})"
		return 1
	fi
	[ "${rc}" -eq 0 ] || cc_log "e2fsck -p $1 repaired the file system (exit ${rc})"
	return 0
}

# cc_persistent_words: the persistent partitions of the layout (their CC_PARTITIONS words).
cc_persistent_words()
{
	local w
	for w in ${CC_PARTITIONS:-}; do
		cc_partition_word "${w}"
		[ "${CC_PART_PERSISTENT}" != 1 ] || echo "${w}"
	done
}

# cc_prepare_disk DISK SFDISK_SCRIPT SCRATCH_DIR FORCE(yes|no): partition and format when the
# disk is blank or its layout differs (or FORCE); otherwise check the root and give data
# partitions without a file system one. Uses CC_PARTITIONS. Sets CC_DISK_ACTION
# (partitioned|kept), CC_ROOT_REMADE (yes|no) and CC_DISK_WRITTEN (yes once anything was written
# to the disk: a failure before that leaves the earlier copy bootable).
cc_prepare_disk()
{
	local disk="$1" script="$2" scratch="$3" force="${4:-no}" state w n use fs
	local dev lost=""
	CC_DISK_ACTION=kept
	CC_ROOT_REMADE=no
	CC_DISK_WRITTEN=no
	if [ ! -f "${disk}" ] && ! cc_wait_for_dev "${disk}" "${CC_DISK_WAIT:-30}"; then
		cc_err "disk ${disk} not found"
		return 1
	fi
	state=$(cc_layout_state "${disk}" "${script}" "${scratch}") || return 1
	cc_log "disk ${disk}: layout ${state}"
	if [ "${state}" = same ] && [ "${force}" = yes ]; then
		state=forced
	fi
	if [ "${state}" != same ]; then
		if [ "${state}" != blank ]; then
			for w in $(cc_persistent_words); do
				cc_partition_word "${w}"
				lost="${lost} ${CC_PART_NUMBER}(${CC_PART_MOUNT})"
			done
			if [ "${state}" = forced ]; then
				cc_loud "RE-PARTITIONING ${disk}: clustcontrol.repartition=yes on the kernel command line." \
					"ALL DATA ON ${disk} IS LOST, persistent partitions included:${lost:- none}"
			else
				cc_loud "THE DISK LAYOUT OF ${disk} CHANGED: RE-PARTITIONING AND FORMATTING ALL PARTITIONS." \
					"DATA ON PERSISTENT PARTITIONS IS LOST:${lost:- none}" \
					"old layout: $(cc_dump_disk "${disk}" | sed -n 's/^\([0-9][0-9]* :.*\)/[\1]/p' | tr '\n' ' ')"
			fi
		fi
		CC_DISK_WRITTEN=yes
		cc_partition "${disk}" "${script}" || return 1
		CC_DISK_ACTION=partitioned
		CC_ROOT_REMADE=yes
	fi
	for w in ${CC_PARTITIONS:-}; do
		cc_partition_word "${w}"
		n="${CC_PART_NUMBER}" use="${CC_PART_USE}" fs="${CC_PART_FS}"
		dev=$(cc_partition_device "${disk}" "${n}")
		if [ "${CC_DISK_ACTION}" = partitioned ]; then
			cc_mkfs "${dev}" "${fs}" "$(cc_fs_label_for "${use}" "${n}")" || return 1
			continue
		fi
		cc_wait_for_dev "${dev}" 10 || { cc_err "partition ${dev} not found"; return 1; }
		case "${use}" in
		root)
			if ! cc_check_root "${dev}"; then
				cc_warn "root file system on ${dev} is damaged: re-making it (full sync follows)"
				cc_mkfs "${dev}" "${fs}" "$(cc_fs_label_for root "${n}")" || return 1
				CC_ROOT_REMADE=yes
			fi
			;;
		*)
			if [ -z "$(cc_fs_type "${dev}")" ]; then
				cc_log "partition ${dev} (${use}) has no file system yet"
				cc_mkfs "${dev}" "${fs}" "$(cc_fs_label_for "${use}" "${n}")" || return 1
			elif [ "${CC_PART_PERSISTENT}" = 1 ]; then
				cc_log "persistent partition ${dev} kept untouched"
			fi
			;;
		esac
	done
	return 0
}

# cc_mount_root DEV DIR [FS]: mount the local root for the sync.
cc_mount_root()
{
	mkdir -p "$2" || return 1
	mount -t "${3:-ext4}" "$1" "$2" || { cc_err "cannot mount $1 on $2"; return 1; }
}

# cc_is_mounted DIR: true when something is mounted on DIR.
cc_is_mounted()
{
	grep -q " $1 " /proc/mounts 2>/dev/null
}

# cc_umount DIR: unmount DIR if mounted (lazily as a last resort).
cc_umount()
{
	cc_is_mounted "$1" || return 0
	umount "$1" 2>/dev/null || { sleep 1; umount "$1"; } || umount -l "$1"
}
