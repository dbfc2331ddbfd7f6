#!/usr/bin/env bash
# The naive script operators use today, as scripts/bench runs it for comparison with lightsnap:
#
#   fsfreeze -f MNT; aws lightsail create-disk-snapshot ...; fsfreeze -u MNT
#
#   naive_snapshot.sh MNT DISK SNAPSHOT ENDPOINT [AWS]
#
# Timestamps are taken with bash's $EPOCHREALTIME (no process started for them) so the window
# is measured the way lightsnap measures its own: from `fsfreeze -f` called (the kernel blocks
# writers during the FIFREEZE call, not only after it returns) to `fsfreeze -u` returned; the
# call's own share includes starting the fsfreeze process, a millisecond or two. Prints one line
# on stderr: "naive: freeze_call_ms=F frozen_ms=Z window_ms=W api_rc=R" (F: `fsfreeze -f`
# called → returned; Z: returned → `fsfreeze -u` returned; W = F + Z).
# Thaws even when the CLI fails, as any sane version of this script does.
mnt=$1 disk=$2 snapshot=$3 endpoint=$4 aws=${5:-aws}

t_call=$EPOCHREALTIME
fsfreeze -f "$mnt" || exit 1
t_frozen=$EPOCHREALTIME
"$aws" lightsail create-disk-snapshot --disk-name "$disk" --disk-snapshot-name "$snapshot" \
  --endpoint-url "$endpoint" > /dev/null
api_rc=$?
fsfreeze -u "$mnt"
thaw_rc=$?
t_thawed=$EPOCHREALTIME

ms() { echo "$1 $2" | awk '{ printf "%.3f", ($2 - $1) * 1000 }'; }
echo "naive: freeze_call_ms=$(ms "$t_call" "$t_frozen") frozen_ms=$(ms "$t_frozen" "$t_thawed")" \
  "window_ms=$(ms "$t_call" "$t_thawed") api_rc=$api_rc" >&2
[ "$api_rc" = 0 ] && [ "$thaw_rc" = 0 ]
