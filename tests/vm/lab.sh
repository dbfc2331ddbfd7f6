# shellcheck shell=bash
# Sourced by the guest scripts of tests/vm.rs, inside a scripts/vm guest. The test copies a
# directory to /opt/lab: bin/ (lightsnap, lightsnap-writer, fake-lightsail, as the test has
# them), hostlib/ (the build machine's dynamic loader and the libraries the fake needs) and
# these scripts. Everything a scenario finds goes under /out/<scenario>/, for the test to
# assert on: the test, not this script, decides what passes.

LAB=/opt/lab
FAKE=http://127.0.0.1:8080
SNAPS=/var/lib/lab/snaps
ACCOUNT=123456789012
export AWS_ENDPOINT_URL_LIGHTSAIL=$FAKE AWS_EC2_METADATA_SERVICE_ENDPOINT=$FAKE
export AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=AKIDLIGHTSNAPTEST
export AWS_SECRET_ACCESS_KEY=lightsnap-fake-secret
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
mkdir -p /run/lab "$SNAPS"

log() { echo "lab: $*" >&2; }

# The whole-disk device (/dev/nvmeXn1) whose NVMe serial is $1. With native multipath (on in
# Debian's kernels) /sys/block/nvmeXn1/device is the subsystem, which has the serial too; the
# per-path nodes (nvmeXcYn1) are skipped.
disk_by_serial() {
  local b name
  for b in /sys/block/nvme*n1; do
    name=${b##*/}
    case $name in *c*) continue ;; esac
    if [ "$(tr -d ' ' <"$b/device/serial")" = "$1" ]; then
      echo "/dev/$name"
      return 0
    fi
  done
  log "no NVMe disk with serial $1"
  return 1
}

# The volume id of an EBS-style serial: vol0abc... -> vol-0abc...
volume_id() { echo "vol-${1#vol}"; }

# Starts the fake (the build machine's binary on the build machine's glibc, through its own
# dynamic loader: the fake is a test fixture, not what is under test, and the guests' glibc may
# be older than the one it was built against) with the seed $1 and any extra options; returns
# once it serves. Its output stays on /run (tmpfs): it must never write to a frozen root.
start_fake() {
  local seed=$1
  shift
  exec 7< <(exec "$LAB/hostlib/ld-linux-x86-64.so.2" --library-path "$LAB/hostlib" \
    "$LAB/bin/fake-lightsail" --listen 127.0.0.1:8080 --state "$seed" \
    --snapshot-dir "$SNAPS" --snapshot-duration-ms 0 "$@" 2>/run/lab/fake.err)
  FAKE_PID=$!
  local line
  if ! IFS= read -r line <&7; then
    log "the fake did not start: $(cat /run/lab/fake.err)"
    return 1
  fi
  log "fake: $line"
}

stop_fake() {
  kill "$FAKE_PID" 2>/dev/null
  wait "$FAKE_PID" 2>/dev/null || true
  exec 7<&-
}

# GET (or with a body, POST) on the fake's admin endpoint; prints the answer.
admin() {
  python3 - "$FAKE$1" "${2:-}" <<'PY'
import sys, urllib.request
url, body = sys.argv[1], sys.argv[2]
req = urllib.request.Request(url, data=body.encode() if body else None,
                             headers={"Content-Type": "application/json"})
print(urllib.request.urlopen(req, timeout=30).read().decode())
PY
}

# Waits (bounded, 60 s) until the fake has received a call of operation $1.
wait_for_call() {
  local _
  for _ in $(seq 600); do
    admin /__admin/calls | python3 -c "import json,sys; sys.exit(0 if any(c['operation']=='$1' for c in json.load(sys.stdin)) else 1)" && return 0
    sleep 0.1
  done
  log "no $1 call within 60 s"
  return 1
}

# The seed's first lines: instance web-1, whose system disk is the root disk (serial $1).
seed_head() {
  cat <<EOF
account = "$ACCOUNT"
self_instance = "web-1"
[[instances]]
name = "web-1"
instance_id = "i-0123456789abcdef0"
system_disk = { name = "web-1-system", path = "/dev/xvda", size_gb = 20, volume_id = "$(volume_id "$1")" }
EOF
}

# A seed [[disks]] entry: name, serial (its volume id), the Lightsail path, attached to web-1,
# its bytes read from the guest's NVMe disk with that serial.
seed_disk() {
  local dev
  dev=$(disk_by_serial "$2") || return 1
  cat <<EOF
[[disks]]
name = "$1"
path = "$3"
attached_to = "web-1"
size_gb = 1
volume_id = "$(volume_id "$2")"
backing = "$dev"
EOF
}

# Starts the fsync writer on $1 (a file on the filesystem under test), its acknowledgements
# in $2; returns once it has acknowledged 5 records (bounded: 60 s).
start_writer() {
  : >"$2"
  "$LAB/bin/lightsnap-writer" acks "$1" >"$2" &
  WRITER_PID=$!
  local _
  for _ in $(seq 600); do
    [ "$(wc -l <"$2")" -ge 5 ] && return 0
    sleep 0.1
  done
  log "the writer acknowledged fewer than 5 records within 60 s"
  return 1
}

stop_writer() {
  kill "$WRITER_PID" 2>/dev/null
  wait "$WRITER_PID" 2>/dev/null || true
  return 0
}

# Runs lightsnap with its JSON report in $1/report.json, its stderr in $1/stderr, its exit
# code in $1/code. Output goes to /out (9p), never to a filesystem it may freeze.
lightsnap_to() {
  local dir=$1
  shift
  mkdir -p "$dir"
  "$LAB/bin/lightsnap" "$@" --output json >"$dir/report.json" 2>"$dir/stderr"
  echo $? >"$dir/code"
}

# Checks an ext4 filesystem image or device $1 (e2fsck -fn, output and code in $2/fsck-$3.*)
# and copies its records.log out to $2/records-$3.log (mounted read-only, nothing replayed).
ext4_records() {
  local what=$1 dir=$2 name=$3
  e2fsck -fn "$what" >"$dir/fsck-$name.txt" 2>&1
  echo $? >"$dir/fsck-$name.code"
  mkdir -p "/run/lab/ro-$name"
  if mount -o ro,noload "$what" "/run/lab/ro-$name" 2>"$dir/mount-$name.err"; then
    cp "/run/lab/ro-$name/records.log" "$dir/records-$name.log"
    umount "/run/lab/ro-$name"
  fi
}

# Whether the filesystem mounted at $1 is frozen: FIFREEZE answers EBUSY when it is; when it
# is not, the probe froze it and thaws it at once. Prints frozen or thawed.
frozen_state() {
  python3 - "$1" <<'PY'
import errno, fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
try:
    fcntl.ioctl(fd, 0xC0045877, 0)  # FIFREEZE
except OSError as e:
    if e.errno != errno.EBUSY:
        raise
    print("frozen")
else:
    fcntl.ioctl(fd, 0xC0045878, 0)  # FITHAW
    print("thawed")
PY
}

# Runs scenario function $1 with its output directory /out/$1 made; a scenario that fails
# says so in /out/$1/failed and the next one still runs.
scenario() {
  mkdir -p "/out/$1"
  log "scenario $1"
  # Not in a condition: there bash would ignore the scenario's own `set -e`.
  ("$1" "/out/$1") >"/out/$1/log" 2>&1
  local code=$?
  if [ "$code" != 0 ]; then
    echo "scenario $1 failed with $code: see its log" >"/out/$1/failed"
    log "scenario $1 failed"
  fi
}
