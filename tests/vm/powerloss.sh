# shellcheck shell=bash disable=SC1091,SC2153 # lab.sh and disks.env (DATA, ...) are in the guest
# Scenario 6 of tests/vm.rs: power loss while frozen. Run by `scripts/vm --reset-on frozen`:
# on boot 1 the data filesystem is frozen by lightsnap while the fake hangs CreateDiskSnapshot,
# and the host resets the guest (QMP system_reset) when told `frozen`; on boot 2 the
# filesystem is mounted, checked, and snapshotted again. /opt/lab/disks.env names ROOT and DATA.
. /opt/lab/lab.sh
. /opt/lab/disks.env
set -eu

data=$(disk_by_serial "$DATA")
mkdir -p /data
write_seed() {
  {
    seed_head "$ROOT"
    seed_disk data-1 "$DATA" /dev/xvdf
  } >/run/lab/seed.toml
}

if [ "$LAB_BOOT" = 1 ]; then
  out=/out/boot1
  mkdir -p "$out"
  mkfs.ext4 -q "$data"
  mount "$data" /data
  write_seed
  start_fake /run/lab/seed.toml --fault CreateDiskSnapshot=hang
  start_writer /data/records.log "$out/acks"
  "$LAB/bin/lightsnap" freeze-and-snap /data --freeze-timeout 5m --output json \
    >"$out/report.json" 2>"$out/stderr" &
  wait_for_call CreateDiskSnapshot
  frozen_state /data >"$out/state"
  admin /__admin/calls >"$out/calls.json"
  # The writer is blocked in a write to the frozen filesystem: what it acknowledged so far is
  # in $out/acks (9p: on the host already). Now the power goes.
  echo frozen >"$LAB_EVENTS"
  # Not a synchronisation: the reset comes long before this ends; if it never comes, boot 2
  # never runs and scripts/vm fails the run.
  sleep 300
  echo "no reset came" >&2
  exit 1
fi

out=/out/boot2
mkdir -p "$out"
# The filesystem as the power loss left it: mounted (ext4 replays its journal if it needs to),
# then checked unmounted.
set +e
mount "$data" /data 2>"$out/mount.err"
echo $? >"$out/mount.code"
cp /data/records.log "$out/records-live.log"
umount /data
e2fsck -fn "$data" >"$out/fsck-live.txt" 2>&1
echo $? >"$out/fsck-live.code"
dmesg | grep -i 'ext4-fs' >"$out/dmesg-ext4"
set -e
mount "$data" /data
ls -la /run/lightsnap /var/lib/lightsnap >"$out/state-dirs" 2>&1 || true
# The next run, against a fake without the fault.
write_seed
start_fake /run/lab/seed.toml
lightsnap_to "$out/next" freeze-and-snap /data --snapshot-name after-reset
ext4_records "$SNAPS/after-reset.img" "$out" next
admin /__admin/calls >"$out/calls.json"
stop_fake
