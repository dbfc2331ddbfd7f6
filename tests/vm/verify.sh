# shellcheck shell=bash disable=SC1091,SC2153 # lab.sh and disks.env (DATA, ...) are in the guest
# The one boot of tests/vm_verify.rs (bookworm, `scripts/vm --hotplug`): `lightsnap verify`
# end to end on a booted guest, the scratch disk hot-plugged as a real NVMe device with its EBS
# serial, and found by that serial alone (no LIGHTSNAP_DEV_DIR); then a file restore
# (`restore --mount`, `--release`) on the same kind of device, and a verify of a disk holding
# LVM (its group imported as a renamed clone beside the live one), and a file restore of XFS
# mounted beside its original; a group spanning two disks, of which a copy of one is "could not
# check". /opt/lab/disks.env names ROOT, DATA, LVM, XFS, SPANA and SPANB. What the guest saw goes to /out/verify; the test decides what passes.
. /opt/lab/lab.sh
. /opt/lab/disks.env
set -eu

out=/out/verify
mkdir -p "$out"
# The fake's pipe (descriptor 7) is inherited by every LVM command: LVM would warn of it.
export LVM_SUPPRESS_FD_WARNINGS=1
# The fake's snapshot images, and so the restored disks' copies (<snapshots>/disks/), on the
# share: the host opens a copy to plug it in, and scripts/vm maps /lab/X to its own share
# directory. A file on the guest's own disks is nothing the host can open.
SNAPS=/lab/snaps
mkdir -p "$SNAPS"

# The NVMe serials the guest's kernel sees, one a line.
serials() {
  local f
  for f in /sys/class/nvme/*/serial; do
    tr -d ' \n' <"$f"
    echo
  done | sort
}

# The attach command: the fake runs it on AttachDisk (`attach COPY SERIAL PATH`) and DetachDisk
# (`detach SERIAL`); it records the call and hands it to the host through the event port, where
# scripts/vm plugs the copy in (or out) as an NVMe disk. It returns at once: the device appears
# later, as after a real AttachDisk.
# (Not on /run: the guest mounts it noexec.)
cat >/usr/local/sbin/lab-hotplug <<'EOF'
#!/bin/sh
echo "$*" >>/out/verify/attach-calls
case $1 in
attach) echo "attach $2 $3" >"$LAB_EVENTS" ;;
detach) echo "detach $2" >"$LAB_EVENTS" ;;
*) echo "hotplug: attach or detach, not $1" >&2; exit 2 ;;
esac
EOF
chmod 755 /usr/local/sbin/lab-hotplug

# A verify hook: what the guest looks like while the scratch disk is attached and mounted —
# the NVMe serials, which disk has the scratch disk's serial, the restored file, the mount,
# and the fake's view of the disk (its supportCode, the serial it plugged in).
# (LAB_HOOK_OUT, from the run's environment, says where: one directory per rehearsal.)
mkdir -p /etc/lightsnap/verify.d
cat >/etc/lightsnap/verify.d/10-lab <<'EOF'
#!/bin/bash
set -u
d=${LAB_HOOK_OUT:-/out/verify/hook}
mkdir -p "$d"
echo "$*" >"$d/args"
echo "$LIGHTSNAP_VERIFY_MOUNT" >"$d/mount"
cat "$LIGHTSNAP_VERIFY_MOUNT/hello.txt" >"$d/hello.txt"
findmnt -no SOURCE,FSTYPE,OPTIONS "$LIGHTSNAP_VERIFY_MOUNT" >"$d/findmnt"
for b in /sys/block/nvme*n1; do
  case ${b##*/} in *c*) continue ;; esac
  echo "/dev/${b##*/} $(tr -d ' ' <"$b/device/serial")"
done | sort >"$d/disks"
python3 -c 'import sys, urllib.request
print(urllib.request.urlopen(sys.argv[1], timeout=30).read().decode())' \
  http://127.0.0.1:8080/__admin/disks >"$d/fake-disks.json"
# LVM while the copy is imported: every group, every device-mapper node.
vgs --noheadings -o vg_name,vg_uuid 2>/dev/null | awk '{ print $1, $2 }' | sort >"$d/vgs"
dmsetup ls 2>/dev/null | awk '{ print $1 }' | sort >"$d/dm"
# LAB_HOOK_KILL: the run is killed here (SIGKILL to lightsnap, the hook's parent), its scratch
# disk attached, its LVM clone active and mounted: a leftover for the next run.
if [ -n "${LAB_HOOK_KILL:-}" ]; then kill -KILL "$PPID"; fi
EOF
chmod 755 /etc/lightsnap/verify.d/10-lab

# The data disk: ext4 with a file, snapshotted by lightsnap (found by its serial too).
data=$(disk_by_serial "$DATA")
mkfs.ext4 -q "$data"
mkdir -p /data
mount "$data" /data
echo "restored from snapshot v-data" >/data/hello.txt
sync /data/hello.txt
# The LVM disk: one PV, group datavg, one LV with ext4 and a file, mounted, as a user has it.
lvmdisk=$(disk_by_serial "$LVM")
pvcreate -q "$lvmdisk"
vgcreate -q datavg "$lvmdisk"
lvcreate -q -y -l 100%FREE -n lv datavg
mkfs.ext4 -q /dev/datavg/lv
mkdir -p /lvdata
mount /dev/datavg/lv /lvdata
echo "restored from snapshot v-lvm" >/lvdata/hello.txt
sync /lvdata/hello.txt
# The XFS disk (XFS wants 300 MB at least; the fake's images are sparse, so it costs little).
xfsdisk=$(disk_by_serial "$XFS")
mkfs.xfs -q "$xfsdisk"
mkdir -p /xfsdata
mount "$xfsdisk" /xfsdata
echo "restored from snapshot v-xfs" >/xfsdata/hello.txt
sync /xfsdata/hello.txt
# A group across two disks, mounted.
spana=$(disk_by_serial "$SPANA") spanb=$(disk_by_serial "$SPANB")
pvcreate -q "$spana" "$spanb"
vgcreate -q spanvg "$spana" "$spanb"
lvcreate -q -y -l 100%FREE -n lv spanvg
mkfs.ext4 -q /dev/spanvg/lv
mkdir -p /spandata
mount /dev/spanvg/lv /spandata
{
  seed_head "$ROOT"
  seed_disk data-1 "$DATA" /dev/xvdf
  seed_disk data-2 "$LVM" /dev/xvdg
  seed_disk data-3 "$XFS" /dev/xvdh
  seed_disk span-a "$SPANA" /dev/xvdi
  seed_disk span-b "$SPANB" /dev/xvdj
} >/run/lab/seed.toml
start_fake /run/lab/seed.toml --attach-command /usr/local/sbin/lab-hotplug
# (`|| true`: lightsnap_to records a failure's code and output; set -e would stop at it.)
lightsnap_to "$out/snap" freeze-and-snap /data --snapshot-name v-data || true
lightsnap_to "$out/snap-lvm" freeze-and-snap /lvdata --snapshot-name v-lvm || true
lightsnap_to "$out/snap-xfs" freeze-and-snap /xfsdata --snapshot-name v-xfs || true
lightsnap_to "$out/snap-span" freeze-and-snap /spandata || true
# Written after the snapshot: a restore must not have it.
echo "written after the snapshot" >/data/after-snapshot.txt
sync /data/after-snapshot.txt

serials >"$out/serials-before"
unset LIGHTSNAP_DEV_DIR
# --timeout: a disk the host failed to plug in is a quick, undone failure (exit 20), not a
# wait until scripts/vm's own timeout.
LAB_HOOK_OUT=$out/hook lightsnap_to "$out/run" verify v-data -v --timeout 5m || true

# verify is done once DetachDisk and DeleteDisk answered; the device goes when the host has
# unplugged it and the guest's kernel let go, as after a real DetachDisk: wait for that,
# bounded (60 s).
wait_unplugged() {
  local serial
  serial=$(awk '$1 == "attach" { print $3 }' "$out/attach-calls" | tail -n1)
  for _ in $(seq 600); do
    serials | grep -qx "$serial" || return 0
    sleep 0.1
  done
}
wait_unplugged
serials >"$out/serials-after"

# The failed path on the same kind of device: the next restore comes corrupted (the fake zeroes
# the head of the disk's copy before handing it over), plugged in on the port the first one
# left free, with the same serial (the same scratch disk name).
admin /__admin/faults '{"operation": "AttachDisk", "kind": {"type": "corrupt_disk"}, "count": 1}' >/dev/null
lightsnap_to "$out/corrupt" verify v-data -v --timeout 5m || true
wait_unplugged
serials >"$out/serials-after-corrupt"

# A file restore on the same kind of device: the copy hot-plugged, found by its serial alone,
# mounted read-only at the directory named; listed by status; released (unmounted, detached:
# unplugged, deleted).
lightsnap_to "$out/restore" restore v-data --mount /restore/data -v --timeout 5m || true
r=$out/restore/seen
mkdir -p "$r"
cat /restore/data/hello.txt >"$r/hello.txt" 2>&1 || true
if [ -e /restore/data/after-snapshot.txt ]; then echo present; else echo absent; fi >"$r/after-snapshot"
findmnt -no SOURCE,FSTYPE,OPTIONS /restore/data >"$r/findmnt" || true
for b in /sys/block/nvme*n1; do
  case ${b##*/} in *c*) continue ;; esac
  echo "/dev/${b##*/} $(tr -d ' ' <"$b/device/serial")"
done | sort >"$r/disks"
# A write to the read-only mount is refused.
if touch /restore/data/new 2>"$r/write.err"; then echo written; else echo refused; fi >"$r/write"
lightsnap_to "$out/status" status --refresh || true
lightsnap_to "$out/release" restore --release /restore/data -v --timeout 5m || true
wait_unplugged
serials >"$out/serials-after-restore"
findmnt -no SOURCE /restore/data >"$out/restore-mounted-after" || true

# LVM on the restored disk: the live group, its LV and mount before and after; the verify in
# between imports the copy as a renamed clone, checks its LV, puts it away.
lvm_state() {
  local d=$1
  mkdir -p "$d"
  vgs --noheadings -o vg_name,vg_uuid | awk '{ print $1, $2 }' | sort >"$d/vgs"
  lvs --noheadings -o vg_name,lv_name,lv_uuid,lv_active | awk '{ print $1, $2, $3, $4 }' | sort >"$d/lvs"
  dmsetup ls | awk '{ print $1 }' | sort >"$d/dm"
  findmnt -no SOURCE,TARGET /lvdata >"$d/findmnt" || true
  lvmconfig --typeconfig full devices/use_devicesfile >"$d/use_devicesfile" 2>&1 || true
  sha256sum /etc/lvm/devices/system.devices >"$d/devicesfile" 2>&1 || true
}
lvm_state "$out/lvm-before"
# First a rehearsal killed in its hook: its clone stays active and mounted; the next verify
# puts it away and removes its disk before its own rehearsal.
LAB_HOOK_OUT=$out/hook-killed LAB_HOOK_KILL=1 lightsnap_to "$out/lvm-killed" verify v-lvm -v --timeout 5m || true
dmsetup ls | awk '{ print $1 }' | sort >"$out/lvm-killed/dm"
LAB_HOOK_OUT=$out/hook-lvm lightsnap_to "$out/lvm" verify v-lvm -v --timeout 5m || true
wait_unplugged
serials >"$out/serials-after-lvm"
lvm_state "$out/lvm-after"
cat /lvdata/hello.txt >"$out/lvm-after/hello.txt"

# A file restore of the LVM disk: its logical volume mounted read-only from the clone, then
# released (the clone put away before the disk goes); the live group as it was.
lightsnap_to "$out/restore-lvm" restore v-lvm --mount /restore/lvm -v --timeout 5m || true
r=$out/restore-lvm/seen
mkdir -p "$r"
cat /restore/lvm/hello.txt >"$r/hello.txt" 2>&1 || true
findmnt -no SOURCE,FSTYPE,OPTIONS /restore/lvm >"$r/findmnt" || true
lightsnap_to "$out/release-lvm" restore --release /restore/lvm -v --timeout 5m || true
wait_unplugged
serials >"$out/serials-after-restore-lvm"
lvm_state "$out/lvm-after-restore"

# XFS restored beside its original: the copy has the live filesystem's UUID, and mounts all
# the same (nouuid), read-only, while the original stays mounted.
lightsnap_to "$out/restore-xfs" restore v-xfs --mount /restore/xfs -v --timeout 5m || true
r=$out/restore-xfs/seen
mkdir -p "$r"
cat /restore/xfs/hello.txt >"$r/hello.txt" 2>&1 || true
findmnt -no SOURCE,FSTYPE,OPTIONS /restore/xfs >"$r/findmnt" || true
findmnt -no SOURCE,FSTYPE /xfsdata >"$r/original" || true
blkid -o value -s UUID "$xfsdisk" >"$r/uuid-original" || true
blkid -o value -s UUID "$(awk '{ print $1 }' "$r/findmnt")" >"$r/uuid-copy" || true
lightsnap_to "$out/release-xfs" restore --release /restore/xfs -v --timeout 5m || true
wait_unplugged
serials >"$out/serials-after-restore-xfs"

# The copy of one disk of the spanning group: its group is not imported (a PV is missing on
# it), said as "could not check", naming the group; the live group as it was.
span_state() {
  mkdir -p "$1"
  vgs --noheadings -o vg_name,vg_uuid spanvg | awk '{ print $1, $2 }' >"$1/vgs"
  dmsetup ls | awk '{ print $1 }' | sort >"$1/dm"
  findmnt -no SOURCE,TARGET /spandata >"$1/findmnt" || true
}
span_a=$(python3 -c 'import json,sys
print(next(s["name"] for s in json.load(open(sys.argv[1]))["snapshots"] if s["source"]["name"] == "span-a"))' \
  "$out/snap-span/report.json")
span_state "$out/span-before"
lightsnap_to "$out/span" verify "$span_a" -v --timeout 5m || true
wait_unplugged
span_state "$out/span-after"
serials >"$out/serials-after-span"

admin /__admin/calls >"$out/calls.json"
admin /__admin/disks >"$out/disks.json"
find "$SNAPS" -type f | sort >"$out/files-after"
dmesg | grep -iE 'nvme|pci' >"$out/dmesg" || true
stop_fake
cp /run/lab/fake.err "$out/fake.err"
