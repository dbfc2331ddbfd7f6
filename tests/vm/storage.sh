# shellcheck shell=bash disable=SC1091,SC2153 # lab.sh and disks.env (DATA, ...) are in the guest
# One boot of tests/vm.rs (bookworm): scenarios 1-4 on the guest's NVMe disks, with one fake
# Lightsail seeded with all of them. /opt/lab/disks.env (written by the test) names the
# serials: ROOT, DATA, LVM_A, LVM_B, MD_A, MD_B, VFAT, MINIX.
. /opt/lab/lab.sh
. /opt/lab/disks.env
set -u

# 1. NVMe discovery: the data disk is found from its serial alone (no --disk-name).
s1_nvme() {
  local dir=$1
  set -e
  start_writer /data/records.log "$dir/acks"
  lightsnap_to "$dir" freeze-and-snap /data --snapshot-name s1-data
  stop_writer
  ext4_records "$SNAPS/s1-data.img" "$dir" data
}

# 2. The root filesystem is the instance's system volume; the guest carries on after it.
s2_root() {
  local dir=$1
  set -e
  lightsnap_to "$dir" freeze-and-snap / --snapshot-name s2-root
  # A write to / that blocks would mean root stayed frozen: bounded, the status says.
  set +e
  timeout 60 sh -c 'echo after >/root/after-s2 && sync /root/after-s2'
  echo $? >"$dir/write.code"
  systemctl is-system-running >"$dir/system-state"
  findmnt -no SOURCE / >"$dir/root-source"
  # The serial of the NVMe disk under / (the subsystem's with native multipath).
  local disk
  disk=$(lsblk -no PKNAME "$(findmnt -no SOURCE /)")
  cat "/sys/block/$disk/device/serial" >"$dir/root-serial"
  return 0
}

# The snapshot names of a JSON report, one "source-name snapshot-name" per line.
snapshot_names() {
  python3 -c 'import json,sys
for s in json.load(open(sys.argv[1]))["snapshots"]:
    print(s["source"]["name"], s["name"])' "$1"
}

snapshot_of() { snapshot_names "$1" | awk -v d="$2" '$1 == d { print $2 }'; }

# 3. LVM striped over two NVMe disks and md RAID1 over two more: two consistency groups of
# two disks each, in one run; each pair's images attached back give a clean filesystem.
s3_groups() {
  local dir=$1
  set -e
  start_writer /lvm/records.log "$dir/acks-lvm"
  local lvm_writer=$WRITER_PID
  start_writer /md/records.log "$dir/acks-md"
  lightsnap_to "$dir" freeze-and-snap /lvm /md
  stop_writer
  WRITER_PID=$lvm_writer stop_writer
  umount /lvm /md
  vgchange -an labvg >/dev/null
  mdadm --stop /dev/md0
  # LVM: the two images are a clone of the volume group (same PV and VG UUIDs as the disks):
  # vgimportclone gives them new ones, as one does with snapshot volumes.
  local la lb
  la=$(losetup -f --show "$SNAPS/$(snapshot_of "$dir/report.json" lvm-a).img")
  lb=$(losetup -f --show "$SNAPS/$(snapshot_of "$dir/report.json" lvm-b).img")
  vgimportclone --basevgname labsnap "$la" "$lb" >"$dir/vgimportclone.txt" 2>&1
  vgchange -ay labsnap >/dev/null
  ext4_records /dev/labsnap/data "$dir" lvm
  vgchange -an labsnap >/dev/null
  # md: the two images assembled as one RAID1 (udev may have started assembling them
  # already: that is stopped first, so the assembly below is of both, by name).
  local lc ld h
  lc=$(losetup -f --show "$SNAPS/$(snapshot_of "$dir/report.json" md-a).img")
  ld=$(losetup -f --show "$SNAPS/$(snapshot_of "$dir/report.json" md-b).img")
  udevadm settle
  for h in "/sys/block/${lc##*/}/holders/"* "/sys/block/${ld##*/}/holders/"*; do
    [ -e "$h" ] && mdadm --stop "/dev/${h##*/}"
  done
  mdadm --assemble /dev/md9 --run "$lc" "$ld" >"$dir/assemble.txt" 2>&1
  cat /proc/mdstat >"$dir/mdstat"
  ext4_records /dev/md9 "$dir" md
}

# 4. vfat (known not to freeze) and minix (FIFREEZE answers EOPNOTSUPP at run time): the
# unmount fallback, remounted with the same options.
s4_unmount() {
  local dir=$1 fs
  set -e
  for fs in vfat minix; do
    findmnt -no OPTIONS "/$fs" >"$dir/options-before-$fs"
    lightsnap_to "$dir/$fs" freeze-and-snap "/$fs" --snapshot-name "s4-$fs"
    findmnt -no OPTIONS "/$fs" >"$dir/options-after-$fs" || true
    cat "/$fs/hello" >"$dir/content-after-$fs" || true
  done
  fsck.vfat -n "$SNAPS/s4-vfat.img" >"$dir/fsck-vfat.txt" 2>&1 && echo 0 >"$dir/fsck-vfat.code" || echo $? >"$dir/fsck-vfat.code"
  fsck.minix -f "$SNAPS/s4-minix.img" >"$dir/fsck-minix.txt" 2>&1 && echo 0 >"$dir/fsck-minix.code" || echo $? >"$dir/fsck-minix.code"
}

# The disks and filesystems, made once for all four scenarios.
setup() {
  set -e
  local data lvm_a lvm_b md_a md_b vfat minix
  data=$(disk_by_serial "$DATA")
  lvm_a=$(disk_by_serial "$LVM_A") lvm_b=$(disk_by_serial "$LVM_B")
  md_a=$(disk_by_serial "$MD_A") md_b=$(disk_by_serial "$MD_B")
  vfat=$(disk_by_serial "$VFAT") minix=$(disk_by_serial "$MINIX")
  mkdir -p /data /lvm /md /vfat /minix
  mkfs.ext4 -q "$data"
  mount "$data" /data
  pvcreate -q "$lvm_a" "$lvm_b"
  vgcreate -q labvg "$lvm_a" "$lvm_b"
  lvcreate -q -y -n data -i 2 -I 64k -l 100%FREE labvg
  mkfs.ext4 -q /dev/labvg/data
  mount /dev/labvg/data /lvm
  # --assume-clean: no resync writing to the disks while the scenario runs (both halves
  # are zeros to start with).
  mdadm --create /dev/md0 --run --quiet --assume-clean --level=1 --raid-devices=2 \
    --metadata=1.2 "$md_a" "$md_b"
  mkfs.ext4 -q /dev/md0
  mount /dev/md0 /md
  mkfs.vfat "$vfat" >/dev/null
  mount -o umask=0022,flush,noatime "$vfat" /vfat
  echo hello >/vfat/hello
  modprobe minix
  mkfs.minix "$minix" >/dev/null
  mount -o noatime "$minix" /minix
  echo hello >/minix/hello
  sync
  {
    seed_head "$ROOT"
    seed_disk data-1 "$DATA" /dev/xvdf
    seed_disk lvm-a "$LVM_A" /dev/xvdg
    seed_disk lvm-b "$LVM_B" /dev/xvdh
    seed_disk md-a "$MD_A" /dev/xvdi
    seed_disk md-b "$MD_B" /dev/xvdj
    seed_disk vfat-1 "$VFAT" /dev/xvdk
    seed_disk minix-1 "$MINIX" /dev/xvdl
  } >/run/lab/seed.toml
  cp /run/lab/seed.toml /out/seed.toml
}

mkdir -p /out/setup
# Not in a condition: there bash would ignore setup's own `set -e`.
(setup) >/out/setup/log 2>&1
code=$?
if [ "$code" != 0 ]; then
  echo "setup failed" >&2
  cat /out/setup/log >&2
  exit 1
fi
start_fake /run/lab/seed.toml || exit 1
scenario s1_nvme
scenario s2_root
scenario s3_groups
scenario s4_unmount
admin /__admin/calls >/out/calls.json
stop_fake
uname -r >/out/kernel
ls /out
