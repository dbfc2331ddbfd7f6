# shellcheck shell=bash disable=SC1091,SC2153 # lab.sh and disks.env (DATA, ...) are in the guest
# The one boot of tests/vm_verify.rs (bookworm, `scripts/vm --hotplug`): `lightsnap verify`
# end to end on a booted guest, the scratch disk hot-plugged as a real NVMe device with its EBS
# serial, and found by that serial alone (no LIGHTSNAP_DEV_DIR). /opt/lab/disks.env names ROOT
# and DATA. What the guest saw goes to /out/verify; the test decides what passes.
. /opt/lab/lab.sh
. /opt/lab/disks.env
set -eu

out=/out/verify
mkdir -p "$out"
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
mkdir -p /etc/lightsnap/verify.d
cat >/etc/lightsnap/verify.d/10-lab <<'EOF'
#!/bin/bash
set -u
d=/out/verify/hook
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
EOF
chmod 755 /etc/lightsnap/verify.d/10-lab

# The data disk: ext4 with a file, snapshotted by lightsnap (found by its serial too).
data=$(disk_by_serial "$DATA")
mkfs.ext4 -q "$data"
mkdir -p /data
mount "$data" /data
echo "restored from snapshot v-data" >/data/hello.txt
sync /data/hello.txt
{
  seed_head "$ROOT"
  seed_disk data-1 "$DATA" /dev/xvdf
} >/run/lab/seed.toml
start_fake /run/lab/seed.toml --attach-command /usr/local/sbin/lab-hotplug
# (`|| true`: lightsnap_to records a failure's code and output; set -e would stop at it.)
lightsnap_to "$out/snap" freeze-and-snap /data --snapshot-name v-data || true

serials >"$out/serials-before"
unset LIGHTSNAP_DEV_DIR
# --timeout: a disk the host failed to plug in is a quick, undone failure (exit 20), not a
# wait until scripts/vm's own timeout.
lightsnap_to "$out/run" verify v-data -v --timeout 5m || true

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
admin /__admin/calls >"$out/calls.json"
admin /__admin/disks >"$out/disks.json"
find "$SNAPS" -type f | sort >"$out/files-after"
dmesg | grep -iE 'nvme|pci' >"$out/dmesg" || true
stop_fake
cp /run/lab/fake.err "$out/fake.err"
