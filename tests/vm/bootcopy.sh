# shellcheck shell=bash disable=SC1091,SC2153 # lab.sh and disks.env (ROOT) are in the guest
# The two boots of tests/vm_bootcopy.rs (bookworm, `scripts/vm --hotplug --reset-on reset
# --root-by-serial`): a copy of the system disk left attached by a killed `lightsnap verify`
# is removed from the kernel at the next boot, before local filesystems, by the packaged
# lightsnap-system-copy.service; the next `lightsnap run` detaches and deletes it through the
# fake and clears the record. What the guest saw goes to /out/bootcopy/boot<N>; the test
# decides what passes.
. /opt/lab/lab.sh
. /opt/lab/disks.env
set -eu

top=/out/bootcopy
out=$top/boot$LAB_BOOT
mkdir -p "$out"
# The fake's snapshot images and restored copies, on the share (the host plugs them in).
SNAPS=/lab/snaps
mkdir -p "$SNAPS"
RECORDS=/etc/lightsnap/system-copies

# The NVMe serials the guest's kernel sees, one a line.
serials() {
  local f
  for f in /sys/class/nvme/*/serial; do
    [ -e "$f" ] || continue
    tr -d ' \n' <"$f"
    echo
  done | sort
}

# The serial of the disk holding the running /.
root_serial() {
  local disk
  disk=$(lsblk -no PKNAME "$(findmnt -no SOURCE /)")
  tr -d ' \n' <"/sys/block/$disk/device/serial"
}

if [ "$LAB_BOOT" = 1 ]; then
  apt-get install -y "$(ls /opt/lab/lightsnap_*.deb)" >"$out/install.txt" 2>&1
  systemctl is-enabled lightsnap-system-copy.service >"$out/is-enabled" 2>&1 || true
  systemctl show -p Wants --value local-fs.target >"$out/local-fs-wants"
  root_serial >"$out/root-serial"
  ls /dev/disk/by-id >"$out/by-id"
  tr ' ' '\n' </proc/cmdline | grep '^root=' >"$out/cmdline-root"

  # The attach command, as in verify.sh: the fake runs it on AttachDisk and DetachDisk, and
  # it hands the copy to the host through the event port (scripts/vm plugs it in as NVMe).
  cat >/usr/local/sbin/lab-hotplug <<'EOF'
#!/bin/sh
echo "$*" >>/out/bootcopy/attach-calls
case $1 in
attach) echo "attach $2 $3" >"$LAB_EVENTS" ;;
detach) echo "detach $2" >"$LAB_EVENTS" ;;
*) echo "hotplug: attach or detach, not $1" >&2; exit 2 ;;
esac
EOF
  chmod 755 /usr/local/sbin/lab-hotplug

  # The system disk's bytes as the fake's snapshot copies them: /opt/lab/system.img, made by
  # the test from the image's root disk identity (see tests/vm_bootcopy.rs).
  img=/opt/lab/system.img
  blkid -o export "$(findmnt -no SOURCE /)" >"$out/root-blkid"

  # Verify holds the copy attached in its hook, which says so and waits to be killed.
  mkdir -p /etc/lightsnap/verify.d
  cat >/etc/lightsnap/verify.d/10-hold <<'EOF'
#!/bin/sh
echo $$ >/out/bootcopy/boot1/hook-pid.tmp
mv /out/bootcopy/boot1/hook-pid.tmp /out/bootcopy/boot1/hook-pid
exec sleep 600
EOF
  chmod 755 /etc/lightsnap/verify.d/10-hold

  cat >/run/lab/seed.toml <<EOF
account = "$ACCOUNT"
self_instance = "web-1"
[[instances]]
name = "web-1"
instance_id = "i-0123456789abcdef0"
system_disk = { name = "web-1-system", path = "/dev/xvda", size_gb = 1, volume_id = "$(volume_id "$ROOT")", backing = "$img" }
EOF
  start_fake /run/lab/seed.toml --attach-command /usr/local/sbin/lab-hotplug
  set +e
  /usr/bin/lightsnap freeze-and-snap / --snapshot-name sys-1 --output json \
    >"$out/snap.json" 2>"$out/snap.err"
  echo $? >"$out/snap.code"
  serials >"$out/serials-before"
  /usr/bin/lightsnap verify sys-1 -v --timeout 10m --output json \
    >"$out/verify.json" 2>"$out/verify.err" &
  pid=$!
  set -e
  # Until the hook runs (the copy attached, checked and mounted), 5 min at most.
  for _ in $(seq 3000); do
    [ -s "$out/hook-pid" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  serials >"$out/serials-attached"
  # What the copy's partition says of itself while attached, and where udev's labels point.
  copy_serial=$(awk '$1 == "attach" { print $3 }' "$top/attach-calls" | tail -n1)
  copy_disk=$(disk_by_serial "$copy_serial" || true)
  if [ -n "$copy_disk" ]; then
    blkid -o export "${copy_disk}p1" >"$out/copy-blkid" 2>&1 || true
  fi
  ls -l /dev/disk/by-label/ >"$out/by-label" 2>&1 || true
  ls -A "$RECORDS" >"$out/records" 2>&1 || true
  cat "$RECORDS"/*.json >"$out/record.json" 2>/dev/null || true
  # A killed run: lightsnap and its hook, at once.
  kill -9 "$pid" 2>/dev/null || true
  if [ -s "$out/hook-pid" ]; then
    kill -9 "$(cat "$out/hook-pid")" 2>/dev/null || true
  fi
  set +e
  wait "$pid" 2>/dev/null
  echo $? >"$out/verify.code"
  set -e
  admin /__admin/disks >"$out/fake-disks.json"
  admin /__admin/calls >"$out/calls.json"
  cp /run/lab/fake.err "$out/fake.err"
  sync
  echo reset >"$LAB_EVENTS"
  # Not a synchronisation: the reset comes long before this ends; if it never comes, boot 2
  # does not happen and the test says so.
  sleep 300
  echo "no reset came" >&2
  exit 1
fi

# Boot 2: what the boot step did, before anything else touches the disks.
serials >"$out/serials"
root_serial >"$out/root-serial"
tr ' ' '\n' </proc/cmdline | grep '^root=' >"$out/cmdline-root"
ls -A "$RECORDS" >"$out/records-at-boot" 2>&1 || true
# lightsnap's own entries so far (the boot step's; journald may not tie a short-lived
# process's datagrams to its unit, so by identifier), and the unit's.
journalctl -b -o json -t lightsnap --no-pager >"$out/lightsnap-journal.json"
journalctl -b -o short-monotonic -u lightsnap-system-copy.service --no-pager >"$out/unit-journal.txt"
systemctl show lightsnap-system-copy.service -p Result -p ExecMainStatus \
  -p ExecMainExitTimestampMonotonic -p InactiveEnterTimestampMonotonic >"$out/unit-show"
systemctl show local-fs-pre.target -p ActiveEnterTimestampMonotonic >"$out/local-fs-pre-show"
journalctl -b -o short-monotonic --no-pager | grep -E 'lightsnap|Local File Systems|nvme' \
  >"$out/journal.txt" || true
dmesg | grep -iE 'nvme|pci' >"$out/dmesg" || true

# The next run: the fake starts again from the state the killed run left (the copy attached
# to web-1 with its scratch tags), and `lightsnap run` finds it among the leftovers.
python3 - "$top/boot1/fake-disks.json" "$(volume_id "$ROOT")" "$ACCOUNT" >/run/lab/seed.toml <<'PY'
import json, sys
disks, root_volume, account = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
print(f'account = "{account}"\nself_instance = "web-1"')
print('[[instances]]\nname = "web-1"\ninstance_id = "i-0123456789abcdef0"')
print('system_disk = { name = "web-1-system", path = "/dev/xvda", size_gb = 1, '
      f'volume_id = "{root_volume}", backing = "/opt/lab/system.img" }}')
for d in disks:
    tags = {t["key"]: t.get("value", "") for t in d.get("tags", [])}
    if tags.get("lightsnap:scratch") != "true":
        continue
    print('[[disks]]')
    print(f'name = "{d["name"]}"')
    print(f'path = "{d["path"]}"')
    print(f'attached_to = "{d["attachedTo"]}"')
    print(f'volume_id = "{d["supportCode"].rsplit("/", 1)[-1]}"')
    print('tags = { ' + ", ".join(f'"{k}" = "{v}"' for k, v in tags.items()) + ' }')
PY
cp /run/lab/seed.toml "$out/seed.toml"
start_fake /run/lab/seed.toml
cat >>/etc/lightsnap/config.toml <<'EOF'

[[snapshot]]
path = "/"
EOF
set +e
/usr/bin/lightsnap run -v --output json >"$out/run.json" 2>"$out/run.err"
echo $? >"$out/run.code"
set -e
ls -A "$RECORDS" >"$out/records-after-run" 2>&1 || true
admin /__admin/calls >"$out/calls.json"
admin /__admin/disks >"$out/fake-disks.json"
stop_fake
cp /run/lab/fake.err "$out/fake.err"
