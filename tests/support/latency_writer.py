#!/usr/bin/env python3
"""A writer that records how long each of its writes took, for scripts/bench.

    latency_writer.py FILE OUT [--period-ms 2]

Appends a 128-byte record to FILE and fsyncs it, once every --period-ms (or back to back when a
write takes longer), and remembers for every write when it started and how long write + fsync
took. A write to a frozen filesystem blocks until the thaw, so its duration is the stall an
application saw. Runs until SIGTERM or SIGINT, then writes OUT: one line per write,
"<start, unix s> <duration, ms>". Nothing is written to OUT while it runs (OUT may be anywhere,
but FILE is the filesystem being frozen), and it never writes anything on stdout.
"""
import argparse
import os
import signal
import sys
import time
from array import array


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("file")
    parser.add_argument("out")
    parser.add_argument("--period-ms", type=float, default=2.0)
    args = parser.parse_args()

    stop = False

    def on_signal(_sig, _frame):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    fd = os.open(args.file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    starts = array("d")
    durations = array("d")
    period = args.period_ms / 1000.0
    clock = time.time
    seq = 0
    next_start = clock()
    while not stop:
        record = f"{seq:012d} ".encode() + b"x" * 114 + b"\n"
        t0 = clock()
        os.write(fd, record)
        os.fsync(fd)
        t1 = clock()
        starts.append(t0)
        durations.append((t1 - t0) * 1000.0)
        seq += 1
        next_start += period
        pause = next_start - clock()
        if pause > 0:
            time.sleep(pause)
        else:
            next_start = clock()
    os.close(fd)
    with open(args.out, "w") as out:
        for s, d in zip(starts, durations):
            out.write(f"{s:.6f} {d:.3f}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
