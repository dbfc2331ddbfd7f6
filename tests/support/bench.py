#!/usr/bin/env python3
"""The measuring half of scripts/bench (which builds, installs, makes the scratch directory and
cleans up after everything, even on failure). Stdlib only.

    bench.py --scratch DIR --bin DIR --aws AWS --out BENCHMARKS.md [--quick] [--runs N] ...

Measures how long writes are paused by `lightsnap freeze-and-snap` (as it runs, and with
--expedite-freeze) and by the naive
`fsfreeze -f; aws lightsail create-disk-snapshot; fsfreeze -u` script, on loop-device
filesystems it makes under DIR, against the bundled fake Lightsail with injected
CreateDiskSnapshot latency, while a writer process appends and fsyncs and records the latency
of every write; and FIFREEZE by itself (called from here, plain and with rcu_expedited on, and
inside lightsnap's watchdog under strace) to tell the kernel's share of the window from
lightsnap's. /sys/kernel/rcu_expedited is checked after every --expedite-freeze run and left as
found. It measures, it does not judge: a failed run is counted and reported, a missed
goal is reported, and the exit status is 0 unless the set-up itself could not be made.
"""
import argparse
import datetime
import fcntl
import gzip
import json
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from bisect import bisect_left
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
MIB = 1024 * 1024

# The goals the issue sets; BENCHMARKS.md says for each whether this run met it.
GOAL_WINDOW_MINUS_L_MS = 15.0
GOAL_RATIO_AT_50 = 20.0
GOAL_STALL_SLACK_MS = 20.0
GOAL_DISKS_RATIO = 1.5
GOAL_RSS_MB = 30.0

# <linux/fs.h>: _IOWR('X', 119, int) and _IOWR('X', 120, int).
FIFREEZE = 0xC0045877
FITHAW = 0xC0045878

# The two lightsnap configurations: as it runs by default, and with --expedite-freeze (opt-in:
# its watchdog turns the kernel's system-wide rcu_expedited switch on for the freeze calls).
EXP = "lightsnap-exp"
EXP_FLAG = "--expedite-freeze"
CONFIGS = (("lightsnap", "lightsnap"), (EXP, f"lightsnap {EXP_FLAG}"))
RCU_EXPEDITED = Path("/sys/kernel/rcu_expedited")


def rcu_expedited():
    """The kernel's rcu_expedited switch as it reads now ("0", "1"), or None."""
    try:
        return RCU_EXPEDITED.read_text().strip()
    except OSError:
        return None


class RcuGuard:
    """The switch as this benchmark found it, and the check that it is so again: after every
    `lightsnap --expedite-freeze` run (which must put it back itself: a run that did not is
    counted and reported) and on the way out, whatever happened."""

    def __init__(self):
        self.initial = rcu_expedited()
        self.left_on = []  # (tag, the value found) of runs that did not put it back

    def check(self, r):
        now = rcu_expedited()
        r["rcu_after"] = now
        if self.initial is not None and now != self.initial:
            self.left_on.append((r.get("tag"), now))
            log(f"{r.get('tag')} run left /sys/kernel/rcu_expedited at {now} (found at {self.initial}): putting it back")
            self.restore()

    def restore(self):
        if self.initial is not None and rcu_expedited() != self.initial:
            try:
                RCU_EXPEDITED.write_text(self.initial)
            except OSError as e:
                log(f"could not put /sys/kernel/rcu_expedited back to {self.initial}: {e}")


RCU = None  # the RcuGuard of this run, made in main()


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


class Stop(Exception):
    """SIGTERM/SIGHUP: unwind, clean up, exit."""


def on_stop(signum, _frame):
    raise Stop(signal.Signals(signum).name)


# ---------------------------------------------------------------------------------------------
# statistics


def pct(values, p):
    """The p-th percentile, linear between closest ranks (numpy's default)."""
    vs = sorted(v for v in values if v is not None)
    if not vs:
        return None
    k = (len(vs) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(vs) - 1)
    return vs[lo] + (vs[hi] - vs[lo]) * (k - lo)


def med(values):
    return pct(values, 50)


def fmt(v, digits=1):
    return "–" if v is None else f"{v:.{digits}f}"


def fmt_ratio(a, b):
    if a is None or b is None or b <= 0:
        return "–"
    return f"{a / b:.0f}×" if a / b >= 10 else f"{a / b:.1f}×"


# ---------------------------------------------------------------------------------------------
# the machine under test: filesystems, the fake, the writer


def sh(*args, check=True, quiet=True, **kw):
    return subprocess.run(
        [str(a) for a in args],
        check=check,
        stdout=subprocess.PIPE if quiet else None,
        stderr=subprocess.PIPE if quiet else None,
        text=True,
        **kw,
    )


class Scratch:
    """Everything the benchmark makes, so it can all be undone."""

    def __init__(self, root: Path, bindir: Path, aws: Path):
        self.root = root
        self.bin = bindir
        self.aws = aws
        self.filesystems = []
        self.procs = []
        self.counter = 0
        (root / "run").mkdir(exist_ok=True)
        (root / "hooks").mkdir(exist_ok=True)
        (root / "config/etc/lightsnap").mkdir(parents=True, exist_ok=True)
        (root / "logs").mkdir(exist_ok=True)

    def register_pid(self, proc):
        self.procs.append(proc)
        with open(self.root / "pids", "a") as f:
            f.write(f"{proc.pid}\n")

    def next_id(self) -> int:
        self.counter += 1
        return self.counter

    def make_fs(self, name: str, fstype: str, size: str):
        img = self.root / f"{name}.img"
        mnt = self.root / "mnt" / name
        mnt.mkdir(parents=True, exist_ok=True)
        sh("truncate", "-s", size, img)
        if fstype == "ext4":
            sh("mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", img)
        elif fstype == "xfs":
            sh("mkfs.xfs", "-q", "-f", img)
        else:
            raise ValueError(fstype)
        dev = sh("losetup", "--find", "--show", img).stdout.strip()
        fs = {"name": name, "fstype": fstype, "img": img, "mnt": mnt, "dev": dev, "mounted": False}
        self.filesystems.append(fs)
        sh("mount", "-t", fstype, dev, mnt)
        fs["mounted"] = True
        return fs

    def destroy_fs(self, fs):
        sh("fsfreeze", "-u", fs["mnt"], check=False)  # ours; "not frozen" is the normal answer
        if fs["mounted"]:
            if sh("umount", fs["mnt"], check=False).returncode != 0:
                time.sleep(0.5)
                sh("umount", "-l", fs["mnt"], check=False)
            fs["mounted"] = False
        if fs["dev"]:
            sh("losetup", "-d", fs["dev"], check=False)
            fs["dev"] = None
        try:
            fs["img"].unlink()
        except FileNotFoundError:
            pass
        if fs in self.filesystems:
            self.filesystems.remove(fs)

    def stop_proc(self, proc, sig=signal.SIGTERM, timeout=10.0):
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc in self.procs:
            self.procs.remove(proc)

    def cleanup(self):
        # Once cleaning up, finish it: a second Ctrl-C or the wrapper's SIGTERM must not cut it short.
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        # Thaw first: a writer blocked on a frozen filesystem cannot even be killed.
        for fs in list(self.filesystems):
            sh("fsfreeze", "-u", fs["mnt"], check=False)
        for proc in list(self.procs):
            self.stop_proc(proc, timeout=5.0)
        for fs in list(reversed(self.filesystems)):
            self.destroy_fs(fs)


class Fake:
    """fake-lightsail with the given disks attached to the instance it says we are."""

    def __init__(self, scratch: Scratch, label: str, filesystems):
        self.scratch = scratch
        seed = scratch.root / f"seed-{label}.toml"
        lines = [
            'self_instance = "bench-1"',
            "[[instances]]",
            'name = "bench-1"',
            'instance_id = "i-0be4c11a2b3c4d5e6"',
        ]
        for fs in filesystems:
            # No `backing`: the fake copies nothing, so the copy's time is not counted as API
            # latency; the only delay in the call is the injected one.
            lines += [
                "[[disks]]",
                f'name = "{fs["disk"]}"',
                f'path = "{fs["dev"]}"',
                'attached_to = "bench-1"',
                "size_gb = 8",
            ]
        seed.write_text("\n".join(lines) + "\n")
        snapdir = scratch.root / "snapshots"
        snapdir.mkdir(exist_ok=True)
        self.proc = subprocess.Popen(
            [
                scratch.bin / "fake-lightsail",
                "--listen", "127.0.0.1:0",
                "--state", seed,
                "--snapshot-dir", snapdir,
                "--snapshot-duration-ms", "1000",
            ],
            stdout=subprocess.PIPE,
            stderr=open(scratch.root / "logs" / f"fake-{label}.log", "w"),
            text=True,
        )
        scratch.register_pid(self.proc)
        line = self.proc.stdout.readline().strip()
        if not line.startswith("listening on "):
            raise RuntimeError(f"fake-lightsail did not start: {line!r}")
        self.endpoint = line.removeprefix("listening on ")
        self.latency_ms = None

    def admin(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.endpoint}/__admin/{path}", data=data, method=method)
        req.add_header("content-type", "application/json")
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read() or b"null")

    def set_latency(self, ms: int):
        if ms == self.latency_ms:
            return
        self.admin("DELETE", "faults")
        if ms > 0:
            self.admin(
                "POST",
                "faults",
                {"operation": "CreateDiskSnapshot", "kind": {"type": "latency", "ms": ms}, "count": None},
            )
        self.latency_ms = ms
        self.admin("DELETE", "calls")  # keep the fake's memory small

    def stop(self):
        self.scratch.stop_proc(self.proc)


class Writer:
    """tests/support/latency_writer.py appending and fsyncing on a filesystem."""

    def __init__(self, scratch: Scratch, fs, label: str):
        self.out = scratch.root / "logs" / f"writes-{label}.txt"
        self.scratch = scratch
        self.proc = subprocess.Popen(
            [sys.executable, HERE / "latency_writer.py", fs["mnt"] / "writer.log", self.out, "--period-ms", "2"],
            stdin=subprocess.DEVNULL,
        )
        scratch.register_pid(self.proc)
        time.sleep(0.5)  # steady state before the first run
        self.starts = []
        self.durations = []

    def stop(self):
        self.scratch.stop_proc(self.proc)
        rows = []
        try:
            with open(self.out) as f:
                for line in f:
                    s, d = line.split()
                    rows.append((float(s), float(d)))
        except FileNotFoundError:
            pass
        rows.sort()
        self.starts = [r[0] for r in rows]
        self.durations = [r[1] for r in rows]
        return self

    def longest_stall(self, start: float, end: float):
        """The longest write (write + fsync, ms) that was in progress at any time in [start, end]."""
        if not self.starts:
            return None
        i = max(0, bisect_left(self.starts, start - 60.0))
        j = bisect_left(self.starts, end)
        best = None
        for k in range(i, j):
            if self.starts[k] + self.durations[k] / 1000.0 >= start:
                best = self.durations[k] if best is None else max(best, self.durations[k])
        return best

    def typical(self):
        return med(self.durations)


# ---------------------------------------------------------------------------------------------
# the two contenders


def base_env(fake: Fake, scratch: Scratch):
    env = dict(os.environ)
    env.update(
        AWS_ENDPOINT_URL_LIGHTSAIL=fake.endpoint,
        AWS_EC2_METADATA_SERVICE_ENDPOINT=fake.endpoint,
        AWS_REGION="us-east-1",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ACCESS_KEY_ID="AKIDLIGHTSNAPTEST",
        AWS_SECRET_ACCESS_KEY="lightsnap-fake-secret",
        AWS_CONFIG_FILE="/dev/null",
        AWS_SHARED_CREDENTIALS_FILE="/dev/null",
        LIGHTSNAP_CONFINE_TO=str(scratch.root),
        LIGHTSNAP_RUN_DIR=str(scratch.root / "run"),
        LIGHTSNAP_CONFIG_ROOT=str(scratch.root / "config"),
        LC_ALL="C",
    )
    env.pop("AWS_PROFILE", None)
    env.pop("AWS_SESSION_TOKEN", None)
    env["PATH"] = "/usr/local/sbin:/usr/sbin:/sbin:" + env.get("PATH", "/usr/bin:/bin")
    return env


def peak_rss_kb(path: Path):
    try:
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", path.read_text())
        return int(m.group(1)) if m else None
    except FileNotFoundError:
        return None


def timed(scratch: Scratch, argv, env, tag: str):
    """Runs argv under /usr/bin/time -v; returns its result with wall time and peak RSS."""
    rss_file = scratch.root / "logs" / "time.txt"
    start = time.time()
    t0 = time.monotonic()
    p = subprocess.run(
        ["/usr/bin/time", "-v", "-o", str(rss_file), *map(str, argv)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wall = (time.monotonic() - t0) * 1000.0
    end = time.time()
    return {
        "tag": tag,
        "rc": p.returncode,
        "start": start,
        "end": end,
        "wall_ms": wall,
        "rss_kb": peak_rss_kb(rss_file),
        "stdout": p.stdout,
        "stderr": p.stderr,
    }


def fresh_names(scratch: Scratch) -> int:
    """A name per run from the configuration's template (two runs in one second would collide
    with the default {disk}-<yyyymmdd-hhmmss>; --snapshot-name only names one disk)."""
    n = scratch.next_id()
    (scratch.root / "config/etc/lightsnap/config.toml").write_text(
        f'name_template = "{{disk}}-ls{n:05d}"\nhook_dir = "{scratch.root / "hooks"}"\n'
    )
    return n


def run_lightsnap(scratch: Scratch, fake: Fake, filesystems, latency: int, extra=(), tag="lightsnap", wrap=()):
    n = fresh_names(scratch)
    argv = [*wrap, scratch.bin / "lightsnap", "--output", "json", "freeze-and-snap", *extra, *[fs["mnt"] for fs in filesystems]]
    r = timed(scratch, argv, base_env(fake, scratch), tag)
    r["latency"] = latency
    r["window_ms"] = None
    if EXP_FLAG in extra and RCU is not None:
        RCU.check(r)
    if r["rc"] == 0:
        try:
            r["window_ms"] = float(json.loads(r["stdout"])["window_ms"])
        except (ValueError, KeyError, TypeError):
            r["rc"] = -1
    if r["rc"] != 0:
        log(f"lightsnap run {n} failed (exit {r['rc']}): {(r['stderr'] or r['stdout']).strip()[-300:]}")
    return r


def run_naive(scratch: Scratch, fake: Fake, fs, latency: int):
    n = scratch.next_id()
    argv = [
        "bash", HERE / "naive_snapshot.sh", fs["mnt"], fs["disk"], f"{fs['disk']}-nv{n:05d}",
        fake.endpoint, scratch.aws,
    ]
    r = timed(scratch, argv, base_env(fake, scratch), "naive")
    r["latency"] = latency
    r["window_ms"] = r["freeze_call_ms"] = r["frozen_ms"] = None
    m = re.search(r"naive: freeze_call_ms=([\d.]+) frozen_ms=([\d.]+) window_ms=([\d.]+) api_rc=(\d+)", r["stderr"])
    if m:
        r["freeze_call_ms"] = float(m.group(1))
        r["frozen_ms"] = float(m.group(2))
        r["window_ms"] = float(m.group(3))
    if r["rc"] != 0 or not m:
        log(f"naive run {n} failed (exit {r['rc']}): {r['stderr'].strip()[-300:]}")
        if r["rc"] == 0:
            r["rc"] = -1
    return r


def freeze_alone(filesystems, tag="alone", expedite=False):
    """FIFREEZE on each of `filesystems` at once (a thread each, as lightsnap's watchdog does),
    straight from this process (no process started, no API call), then FITHAW each right away:
    what the kernel's FIFREEZE costs by itself. Only ever on filesystems this script made.

    With `expedite`, the floor of `lightsnap --expedite-freeze`: rcu_expedited is turned on just
    before the calls and back off as soon as they have returned (before the thaw), as its
    watchdog does; only when it was off (as found: it is never left on).

    While the calls are in progress, samples their kernel stacks (/proc/self/task/TID/stack,
    root only) every half millisecond: `rcu_share` is the share of samples inside freeze_super
    that were waiting in synchronize_rcu (rcu_sync_enter of the sb_writers locks), `flush_share`
    those writing out (sync_filesystem, or the filesystem's own freeze_fs)."""
    n = len(filesystems)
    fds = [os.open(fs["mnt"], os.O_RDONLY | os.O_DIRECTORY) for fs in filesystems]
    tids = [None] * n
    ends = [None] * n
    errors = [None] * n
    go = threading.Event()
    cancelled = threading.Event()
    ready = threading.Barrier(n + 1)

    def one(k):
        tids[k] = threading.get_native_id()
        try:
            ready.wait()
        except threading.BrokenBarrierError:
            return
        go.wait()
        if cancelled.is_set():
            return
        try:
            fcntl.ioctl(fds[k], FIFREEZE, 0)
        except OSError as e:
            errors[k] = e
        ends[k] = time.monotonic()

    threads = [threading.Thread(target=one, args=(k,), daemon=True) for k in range(n)]
    samples = rcu = flush = 0
    start_wall = time.time()
    t0 = None
    expedited = False
    try:
        for t in threads:
            t.start()
        ready.wait()
        if expedite and rcu_expedited() == "0":
            RCU_EXPEDITED.write_text("1")
            expedited = True
        t0 = time.monotonic()
        go.set()
        while any(t.is_alive() for t in threads):
            for k in range(n):
                if ends[k] is not None:
                    continue
                try:
                    with open(f"/proc/self/task/{tids[k]}/stack") as f:
                        stack = f.read()
                except OSError:
                    continue
                if "freeze_super" not in stack:
                    continue
                samples += 1
                if "rcu_sync_enter" in stack or "synchronize_rcu" in stack:
                    rcu += 1
                elif "sync_filesystem" in stack or "_freeze" in stack:
                    flush += 1
            time.sleep(0.0005)
    finally:
        if not go.is_set():  # stopped before the calls: make none of them
            cancelled.set()
            ready.abort()
            go.set()
        for t in threads:
            t.join()
        if expedited:
            RCU_EXPEDITED.write_text("0")
        for k in range(n):
            if errors[k] is None and ends[k] is not None:
                try:
                    fcntl.ioctl(fds[k], FITHAW, 0)
                except OSError as e:
                    errors[k] = errors[k] or e
            os.close(fds[k])
    thawed = time.monotonic()
    failed = [e for e in errors if e is not None]
    if failed:
        log(f"FIFREEZE alone failed: {failed[0]}")
    return {
        "tag": tag,
        "rc": 1 if failed else 0,
        "start": start_wall,
        "end": time.time(),
        "disks": n,
        "expedited": expedited,
        "freeze_call_ms": (max(ends) - t0) * 1000.0 if t0 is not None and None not in ends else None,
        "window_ms": (thawed - t0) * 1000.0 if t0 is not None else None,
        "wall_ms": (thawed - t0) * 1000.0 if t0 is not None else None,
        "rss_kb": None,
        "samples": samples,
        "rcu_share": rcu / samples if samples else None,
        "flush_share": flush / samples if samples else None,
    }


def summarise(runs, latency=0):
    ok = [r for r in runs if r["rc"] == 0]
    w = [r["window_ms"] for r in ok]
    return {
        "n": len(runs),
        "failed": len(runs) - len(ok),
        "window": (med(w), pct(w, 95)),
        "window_minus_l": (
            None if med(w) is None else med(w) - latency,
            None if pct(w, 95) is None else pct(w, 95) - latency,
        ),
        "stall": (med([r.get("stall_ms") for r in ok]), pct([r.get("stall_ms") for r in ok], 95)),
        "wall": (med([r["wall_ms"] for r in ok]), pct([r["wall_ms"] for r in ok], 95)),
        "rss_mb": (
            med([r["rss_kb"] / 1024 for r in ok if r["rss_kb"]]),
            max([r["rss_kb"] / 1024 for r in ok if r["rss_kb"]], default=None),
        ),
        "freeze_call": (
            med([r.get("freeze_call_ms") for r in ok]),
            pct([r.get("freeze_call_ms") for r in ok], 95),
        ),
    }


# ---------------------------------------------------------------------------------------------
# the three experiments


# Other work on the machine that would show in the figures (compilers, fuzzers), looked for
# before every run: {section: {name: checks it was seen in}}, and the checks made per section.
OTHERS = {"section": "", "seen": {}, "checks": {}}
BUSY_COMMS = {"cargo", "rustc", "cc1", "cc1plus", "ld", "cargo-fuzz"}


def look_for_others():
    names = set()
    me = os.getpid()
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == me:
            continue
        try:
            with open(f"/proc/{pid}/comm") as f:
                comm = f.read().strip()
            if comm in BUSY_COMMS:
                names.add(comm)
                continue
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read()
            if b"cargo-fuzz" in cmd or b"fuzz/target" in cmd:
                names.add("fuzzer")
        except OSError:
            continue
    sec = OTHERS["section"]
    OTHERS["checks"][sec] = OTHERS["checks"].get(sec, 0) + 1
    for n in names:
        OTHERS["seen"].setdefault(sec, {})
        OTHERS["seen"][sec][n] = OTHERS["seen"][sec].get(n, 0) + 1


def settle(cfg):
    look_for_others()
    time.sleep(cfg.gap)


def latency_matrix(scratch: Scratch, cfg, results):
    """lightsnap, lightsnap --expedite-freeze and the naive script, interleaved, at each injected
    latency, per filesystem; and once a round, FIFREEZE + FITHAW alone from here (the kernel's own
    cost), plain and expedited."""
    for fstype in cfg.fstypes:
        log(f"latency: {fstype}, L = {cfg.latencies} ms, {cfg.runs} lightsnap + {cfg.exp_runs} {EXP_FLAG} + "
            f"{cfg.naive_runs} naive runs each")
        fs = scratch.make_fs(f"lat-{fstype}", fstype, "1G")
        fs["disk"] = f"bench-{fstype}"
        fake = Fake(scratch, f"lat-{fstype}", [fs])
        writer = Writer(scratch, fs, f"lat-{fstype}")
        runs = []
        # One discarded warm-up of each (first start-up of the AWS CLI compiles and caches).
        fake.set_latency(0)
        run_lightsnap(scratch, fake, [fs], 0)
        if cfg.exp_runs:
            run_lightsnap(scratch, fake, [fs], 0, extra=[EXP_FLAG], tag=EXP)
        run_naive(scratch, fake, fs, 0)
        for i in range(cfg.runs):
            order = list(cfg.latencies)
            random.shuffle(order)
            for lat in order:
                fake.set_latency(lat)
                # The two lightsnap configurations in shuffled order, then the naive script.
                tools = ["lightsnap"] + ([EXP] if i < cfg.exp_runs else [])
                random.shuffle(tools)
                for tool in tools:
                    settle(cfg)
                    if tool == EXP:
                        runs.append(run_lightsnap(scratch, fake, [fs], lat, extra=[EXP_FLAG], tag=EXP))
                    else:
                        runs.append(run_lightsnap(scratch, fake, [fs], lat))
                if i < cfg.naive_runs:
                    settle(cfg)
                    runs.append(run_naive(scratch, fake, fs, lat))
            alones = ["alone"] + (["alone-exp"] if i < cfg.exp_runs else [])
            random.shuffle(alones)
            for tag in alones:
                settle(cfg)
                runs.append(freeze_alone([fs], tag=tag, expedite=tag == "alone-exp"))
            if (i + 1) % 10 == 0:
                log(f"  {fstype}: {i + 1}/{cfg.runs} rounds")
        writer.stop()
        for r in runs:
            r["stall_ms"] = writer.longest_stall(r["start"], r["end"])
        fake.stop()
        scratch.destroy_fs(fs)
        results["latency"][fstype] = {"runs": runs, "typical_write_ms": writer.typical()}


DIRTY_TOOLS = ("lightsnap", "lightsnap-nosyncfs", "naive", "sync")


def make_dirty(fs, mib: int, chunk: bytes):
    path = fs["mnt"] / "dirty.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for _ in range(mib):
            os.write(fd, chunk)
    finally:
        os.close(fd)
    return path


def dirty_data(scratch: Scratch, cfg, results):
    """The window with dirty data: lightsnap as it runs (syncfs before the freeze) and with
    --no-syncfs (FIFREEZE flushes it all, writes already blocked); the naive script (which has
    no syncfs either, and reports its FIFREEZE call's length); syncfs alone as the control."""
    need = max(cfg.dirty_sizes) * MIB * 2 + 512 * MIB
    free = shutil.disk_usage(scratch.root).free
    if free < need + 2 * 1024 * MIB:
        log(f"dirty: skipped, {free // MIB} MiB free under {scratch.root}, {need // MIB} MiB needed")
        results["dirty"] = {"skipped": f"only {free // MIB} MiB free on the scratch filesystem"}
        return
    size_gib = max(1, -(-(max(cfg.dirty_sizes) * 2 + 512) // 1024))
    lat = cfg.dirty_latency
    log(f"dirty: ext4, L = {lat} ms, dirty {cfg.dirty_sizes} MiB, {cfg.dirty_runs} runs each")
    fs = scratch.make_fs("dirty", "ext4", f"{size_gib}G")
    fs["disk"] = "bench-dirty"
    fake = Fake(scratch, "dirty", [fs])
    fake.set_latency(lat)
    writer = Writer(scratch, fs, "dirty")
    chunk = os.urandom(MIB)
    runs = []
    run_lightsnap(scratch, fake, [fs], lat)  # warm-up
    run_lightsnap(scratch, fake, [fs], lat, extra=["--no-syncfs"])
    run_naive(scratch, fake, fs, lat)
    for i in range(cfg.dirty_runs):
        for mib in cfg.dirty_sizes:
            for tool in DIRTY_TOOLS:
                settle(cfg)
                path = make_dirty(fs, mib, chunk) if mib else None
                if tool == "lightsnap":
                    r = run_lightsnap(scratch, fake, [fs], lat)
                elif tool == "lightsnap-nosyncfs":
                    r = run_lightsnap(scratch, fake, [fs], lat, extra=["--no-syncfs"], tag=tool)
                elif tool == "naive":
                    r = run_naive(scratch, fake, fs, lat)
                else:
                    # The control: the flush alone, no freeze, no call.
                    r = timed(scratch, ["sync", "-f", fs["mnt"]], base_env(fake, scratch), "sync")
                    r["latency"] = lat
                    r["window_ms"] = None
                r["dirty_mib"] = mib
                runs.append(r)
                if path:
                    path.unlink()
                sh("sync", "-f", fs["mnt"], check=False)
        log(f"  dirty: {i + 1}/{cfg.dirty_runs} rounds; {shutil.disk_usage(scratch.root).free // MIB} MiB free")
    writer.stop()
    for r in runs:
        r["stall_ms"] = writer.longest_stall(r["start"], r["end"])
    fake.stop()
    scratch.destroy_fs(fs)
    results["dirty"] = {"runs": runs, "typical_write_ms": writer.typical()}


def independence(scratch: Scratch, fake: Fake, fss):
    """Whether the group's filesystems are independent of each other: as set up (each loop
    device's backing file, and which mount it lives on) and as lightsnap sees it (`plan`'s
    freezing waves: one wave is frozen all at once)."""
    mounts = {str(fs["mnt"]) for fs in fss}
    backing, homes = {}, set()
    for fs in fss:
        name = Path(fs["dev"]).name
        try:
            b = Path(Path(f"/sys/block/{name}/loop/backing_file").read_text().strip())
        except OSError:
            b = None
        backing[str(fs["mnt"])] = b
        if b is not None:
            homes.add(first_line(["findmnt", "-no", "TARGET", "-T", str(b)]))
    nested = sorted(
        f"{a['mnt'].name} on {b['mnt'].name}"
        for a in fss for b in fss
        if a is not b and (a["mnt"].is_relative_to(b["mnt"])
                           or (backing[str(a["mnt"])] or Path("/")).is_relative_to(b["mnt"]))
    )
    fresh_names(scratch)  # plan refuses names that are taken
    p = subprocess.run(
        [str(scratch.bin / "lightsnap"), "--output", "json", "plan", *map(str, (fs["mnt"] for fs in fss))],
        env=base_env(fake, scratch), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    waves = None
    try:
        waves = sorted(f["wave"] for f in json.loads(p.stdout)["filesystems"] if str(f["mount_point"]) in mounts)
    except (ValueError, KeyError, TypeError):
        log(f"disks: lightsnap plan failed (exit {p.returncode}): {p.stderr.strip()[-300:]}")
    return {
        "filesystems": len(fss),
        "backing_missing": sum(1 for b in backing.values() if b is None),
        "backing_homes": sorted(homes),
        "host_of_scratch": first_line(["findmnt", "-no", "TARGET", "-T", str(scratch.root)]),
        "nested": nested,
        "waves": waves,
    }


def several_disks(scratch: Scratch, cfg, results):
    """One lightsnap run freezing 1, 2, 4, 8 filesystems as one group, one fake disk each; and,
    for each count, FIFREEZE on all of them at once from here (the kernel's floor)."""
    most = max(cfg.disk_counts)
    log(f"disks: {cfg.disk_counts} ext4 filesystems, L = {cfg.disk_latencies} ms, {cfg.disk_runs} lightsnap + "
        f"{cfg.disk_exp_runs} {EXP_FLAG} runs each")
    fss = []
    for k in range(most):
        fs = scratch.make_fs(f"disk{k + 1}", "ext4", "256M")
        fs["disk"] = f"bench-disk{k + 1}"
        fss.append(fs)
    fake = Fake(scratch, "disks", fss)
    writer = Writer(scratch, fss[0], "disks")  # on the first: frozen first, thawed last
    fake.set_latency(0)
    run_lightsnap(scratch, fake, fss[:most], 0)  # warm-up
    if cfg.disk_exp_runs:
        run_lightsnap(scratch, fake, fss[:most], 0, extra=[EXP_FLAG], tag=EXP)
    indep = independence(scratch, fake, fss)
    log(f"disks: independence {indep}")
    runs = []
    for i in range(cfg.disk_runs):
        tools = ["lightsnap"] + ([EXP] if i < cfg.disk_exp_runs else [])
        order = [(lat, k, tool) for lat in cfg.disk_latencies for k in cfg.disk_counts for tool in tools]
        random.shuffle(order)
        for lat, k, tool in order:
            fake.set_latency(lat)
            fake.admin("DELETE", "calls")
            settle(cfg)
            if tool == EXP:
                r = run_lightsnap(scratch, fake, fss[:k], lat, extra=[EXP_FLAG], tag=EXP)
            else:
                r = run_lightsnap(scratch, fake, fss[:k], lat)
            r["disks"] = k
            arrivals = [c["received_at_ms"] for c in fake.admin("GET", "calls") if c["operation"] == "CreateDiskSnapshot"]
            r["calls_spread_ms"] = (max(arrivals) - min(arrivals)) if len(arrivals) == k else None
            runs.append(r)
        alones = [(k, tag) for k in cfg.disk_counts for tag in ["alone"] + (["alone-exp"] if i < cfg.disk_exp_runs else [])]
        random.shuffle(alones)
        for k, tag in alones:
            settle(cfg)
            r = freeze_alone(fss[:k], tag=tag, expedite=tag == "alone-exp")
            r["latency"] = None
            runs.append(r)
    writer.stop()
    for r in runs:
        r["stall_ms"] = writer.longest_stall(r["start"], r["end"])
    fake.stop()
    for fs in reversed(fss):
        scratch.destroy_fs(fs)
    results["disks"] = {"runs": runs, "typical_write_ms": writer.typical(), "independence": indep}


def strace_ioctl_ms(path: Path, name: str):
    """How long each `name` ioctl took (strace -T), in the order they were made; a call
    strace printed in two halves (<unfinished ...> / <... ioctl resumed>) matched by pid."""
    open_calls, out = {}, []
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        pid = line.split(None, 1)[0] if line[:1].isdigit() else ""
        if "ioctl(" in line and name in line and "<unfinished" in line:
            open_calls[pid] = True
            continue
        m = re.search(r"<([\d.]+)>\s*$", line)
        if not m:
            continue
        if ("ioctl(" in line and name in line) or ("<... ioctl resumed>" in line and open_calls.pop(pid, False)):
            out.append(float(m.group(1)) * 1000.0)
    return out


def breakdown(scratch: Scratch, cfg, results):
    """Where lightsnap's window goes (ext4, L = 0): lightsnap under strace, which stops it only at
    its ioctls (--seccomp-bpf), for how long its watchdog's FIFREEZE syscall took against the
    window it reports; interleaved with `fsfreeze -f` under strace and FIFREEZE alone."""
    if not shutil.which("strace"):
        log("breakdown: skipped, strace is not installed")
        results["breakdown"] = {"skipped": "strace is not installed"}
        return
    log(f"breakdown: ext4, L = 0, {cfg.breakdown_runs} runs each, lightsnap (and {EXP_FLAG}) and fsfreeze under strace")
    fs = scratch.make_fs("breakdown", "ext4", "1G")
    fs["disk"] = "bench-breakdown"
    fake = Fake(scratch, "breakdown", [fs])
    fake.set_latency(0)
    writer = Writer(scratch, fs, "breakdown")
    trace = scratch.root / "logs" / "strace.txt"
    strace = ["strace", "--seccomp-bpf", "-f", "-T", "-e", "trace=ioctl", "-o", trace]
    run_lightsnap(scratch, fake, [fs], 0, wrap=strace)  # warm-up
    runs = []
    for _ in range(cfg.breakdown_runs):
        tools = ["lightsnap-strace"] + ([f"{EXP}-strace"] if cfg.exp_runs else [])
        random.shuffle(tools)
        for tool in tools:
            settle(cfg)
            extra = [EXP_FLAG] if tool.startswith(EXP) else []
            r = run_lightsnap(scratch, fake, [fs], 0, extra=extra, tag=tool, wrap=strace)
            calls = strace_ioctl_ms(trace, "FIFREEZE")
            r["fifreeze_ms"] = calls[0] if len(calls) == 1 else None
            runs.append(r)
        settle(cfg)
        r = timed(scratch, [*strace, "fsfreeze", "-f", fs["mnt"]], base_env(fake, scratch), "fsfreeze-strace")
        sh("fsfreeze", "-u", fs["mnt"], check=False)
        calls = strace_ioctl_ms(trace, "FIFREEZE")
        r["fifreeze_ms"] = calls[0] if len(calls) == 1 else None
        r["window_ms"] = None
        runs.append(r)
        for tag in random.sample(["alone"] + (["alone-exp"] if cfg.exp_runs else []), 1 + bool(cfg.exp_runs)):
            settle(cfg)
            runs.append(freeze_alone([fs], tag=tag, expedite=tag == "alone-exp"))
    writer.stop()
    for r in runs:
        r["stall_ms"] = writer.longest_stall(r["start"], r["end"])
    fake.stop()
    scratch.destroy_fs(fs)
    results["breakdown"] = {"runs": runs}


# ---------------------------------------------------------------------------------------------
# the report


def first_line(cmd):
    try:
        out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True).stdout
        return out.strip().splitlines()[0] if out.strip() else "?"
    except OSError:
        return "?"


def machine_facts(scratch: Scratch):
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) // 1024} MiB"
    except OSError:
        pass
    os_name = "?"
    try:
        for line in open("/etc/os-release"):
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    hz = "?"
    try:
        with gzip.open("/proc/config.gz", "rt") as f:
            for line in f:
                if line.startswith("CONFIG_HZ="):
                    hz = line.split("=", 1)[1].strip()
    except OSError:
        pass
    try:
        rcu_expedited = Path("/sys/kernel/rcu_expedited").read_text().strip()
    except OSError:
        rcu_expedited = "?"
    host_fs = " ".join(first_line(["findmnt", "-no", "FSTYPE,SOURCE", "-T", str(scratch.root)]).split())
    git = first_line(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = first_line(["git", "-C", str(REPO), "status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock"])
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory": mem,
        "kernel": platform.release(),
        "os": os_name,
        "host_fs": host_fs,
        "loadavg": open("/proc/loadavg").read().split()[:3],
        "lightsnap": first_line([str(scratch.bin / "lightsnap"), "--version"]) + f" (git {git}{', src modified' if dirty not in ('', '?') else ''})",
        "aws": first_line([str(scratch.aws), "--version"]),
        "python": platform.python_version(),
        "mkfs.ext4": first_line(["mkfs.ext4", "-V"]),
        "mkfs.xfs": first_line(["mkfs.xfs", "-V"]),
        "hz": hz,
        "rcu_expedited": rcu_expedited,
        "dirty_ratio": first_line(["sysctl", "-n", "vm.dirty_ratio"]) + " / " + first_line(["sysctl", "-n", "vm.dirty_background_ratio"]),
    }


def others_seen():
    if not OTHERS["checks"]:
        return "not looked for"
    if not OTHERS["seen"]:
        return f"none, in {sum(OTHERS['checks'].values())} looks"
    return "; ".join(
        f"section {sec}: " + ", ".join(f"{n} in {c}" for n, c in sorted(names.items())) + f" of {OTHERS['checks'][sec]} looks"
        for sec, names in sorted(OTHERS["seen"].items()))


def pair(t):
    return f"{fmt(t[0])} / {fmt(t[1])}"


def render(cfg, facts, facts_end, results, started, elapsed):
    out = []
    w = out.append
    mode = "quick mode: CI-size, few runs, small dirty sizes — not the figures to quote" if cfg.quick else "full run"
    w("# Benchmarks: how long writes are paused\n")
    w(f"Written by `scripts/bench{' --quick' if cfg.quick else ''}` on {started} in {elapsed:.0f} s "
      f"({mode}). Regenerate it with `sudo scripts/bench`; do not edit by hand.\n")
    w("The number lightsnap lives by is the **frozen window**: how long applications cannot write. "
      "Each run below is one `lightsnap freeze-and-snap` (or one run of the naive script) on a loop-device "
      "filesystem, against the bundled fake Lightsail answering `CreateDiskSnapshot` after an injected "
      "latency **L**, while a separate writer process appends 128-byte records and fsyncs each one "
      "(every 2 ms) and records how long every write took. The window is counted from the first FIFREEZE *called* "
      "(the kernel blocks writers during the call, not only once it returns) to the last FITHAW returned, for lightsnap "
      "and for the naive script alike.\n")

    # machine
    w("## Machine\n")
    w("| | |\n| --- | --- |")
    w(f"| cores | {facts['cores']} × {facts['cpu']} |")
    w(f"| memory | {facts['memory']} |")
    w(f"| kernel | {facts['kernel']} ({facts['os']}) |")
    w(f"| filesystems | ext4 ({facts['mkfs.ext4']}), xfs ({facts['mkfs.xfs']}), on loop devices (buffered) over sparse image files on {facts['host_fs']} |")
    w(f"| dirty_ratio / dirty_background_ratio | {facts['dirty_ratio']} % |")
    w(f"| timer frequency / `rcu_expedited` at start, end | CONFIG_HZ={facts['hz']} / {facts['rcu_expedited']}, "
      f"{facts_end.get('rcu_expedited', '?')} (FIFREEZE waits for RCU grace periods: see the goals; `{EXP_FLAG}` turns the "
      "switch on for its freeze calls, and the benchmark for its expedited FIFREEZE-alone calls) |")
    w(f"| load average at start / end | {' '.join(facts['loadavg'])} / {' '.join(facts_end['loadavg'])} |")
    w(f"| other work seen (compilers, fuzzers; looked for before every run) | {others_seen()} |")
    w(f"| lightsnap | {facts['lightsnap']}, release build |")
    w(f"| naive script | `fsfreeze -f; aws lightsail create-disk-snapshot --endpoint-url ...; fsfreeze -u` with {facts['aws']} |")
    w(f"| writer | Python {facts['python']}, [`tests/support/latency_writer.py`](tests/support/latency_writer.py) |")
    w("")

    h = headline(cfg, results)
    if h:
        w(f"**Headline** (ext4, L = 50 ms, medians): lightsnap paused writes for **{h['lightsnap_ms']:.1f} ms** by its own "
          f"window (FIFREEZE called → FITHAW returned; the FIFREEZE call alone takes {fmt(h['alone_ms'])} ms here), the naive script "
          f"for **{h['naive_ms']:.0f} ms**: **{h['ratio']:.0f}× shorter**. Seen by the writer "
          f"(longest stall): {fmt(h['stall_lightsnap_ms'])} ms against {fmt(h['stall_naive_ms'])} ms, "
          f"{fmt_ratio(h['stall_naive_ms'], h['stall_lightsnap_ms'])}."
          + (f" With `{EXP_FLAG}` (opt-in, see below): **{h['exp_ms']:.1f} ms**, **{fmt_ratio(h['naive_ms'], h['exp_ms'])} shorter** "
             f"than the naive script (the FIFREEZE call alone, expedited: {fmt(h['alone_exp_ms'], 2)} ms); longest stall "
             f"{fmt(h['stall_exp_ms'])} ms." if h["exp_ms"] else "") + "\n")
    goals = evaluate(cfg, results)
    w("## Goals\n")
    w(f"Each goal for both configurations. **lightsnap** is lightsnap as it runs by default. **lightsnap {EXP_FLAG}** is opt-in "
      f"(the flag, or `expedite_freeze = true` in the configuration): its watchdog turns on `/sys/kernel/rcu_expedited`, a "
      "system-wide kernel switch — while it is on, every RCU grace period on the machine is expedited, by interrupting all CPUs, "
      "not only the freeze's — for the freeze calls only, and puts it back before the API call. lightsnap never touches it "
      "otherwise.\n")
    w(f"| goal | lightsnap (default) | met | lightsnap {EXP_FLAG} (opt-in) | met |\n| --- | --- | --- | --- | --- |")
    for g in goals:
        d, e = g["by"]["lightsnap"], g["by"][EXP]
        w(f"| {g['goal']} | {d['measured']} | {met_cell(d['met'])} | {e['measured']} | {met_cell(e['met'])} |")
    w("")
    if RCU is not None and measured(results, EXP):
        n_exp = sum(1 for sec in (list(results["latency"].values()) + [results.get("disks") or {"runs": []}])
                    for r in sec["runs"] if r["tag"] == EXP)
        w(f"`rcu_expedited` after each `{EXP_FLAG}` run: "
          + (f"back at {RCU.initial} after all {n_exp}." if not RCU.left_on else
             f"**left at {', '.join(sorted(set(v or '?' for _, v in RCU.left_on)))} after {len(RCU.left_on)} of {n_exp}** "
             f"(found at {RCU.initial}; the benchmark put it back each time).") + "\n")
    notes = goal_notes(cfg, results, goals, facts)
    if notes:
        w("Where a goal was missed, what the figures say about why:\n")
        for n in notes:
            w(f"- {n}")
        w("")

    # latency
    w("## 1. The window against API latency\n")
    w(f"{cfg.runs} runs of lightsnap, {cfg.exp_runs} of lightsnap {EXP_FLAG} and {cfg.naive_runs} of the naive script per row, "
      "interleaved (the two lightsnap configurations in shuffled order, then the naive script), latencies in shuffled order each "
      "round, after one discarded warm-up of each; and once a round, FIFREEZE alone, plain and expedited. "
      "Every figure is **median / p95**, in ms unless marked.\n")
    w("- **window**: FIFREEZE called → FITHAW returned. lightsnap's own figure (`window_ms` of `--output json`: from just before it asks "
      "its watchdog to freeze to the thaw's answer); for the naive script the same two instants, taken with bash's `$EPOCHREALTIME` "
      "before `fsfreeze -f` and after `fsfreeze -u` (its share includes starting the `fsfreeze` process, a millisecond or two).")
    w("- **FIFREEZE alone**: FIFREEZE then FITHAW on the same filesystem, called straight from the benchmark (Python's `fcntl.ioctl`: "
      "no process started, no API call): the kernel's own cost, which every tool pays inside its window. **rcu wait**: the share "
      "of the call's kernel-stack samples (`/proc/TID/stack`, every 0.5 ms) spent in `synchronize_rcu` under `rcu_sync_enter` in "
      f"`freeze_super`. **Expedited**: the same with `/sys/kernel/rcu_expedited` turned on just before the call and off as soon "
      f"as it returns, as `{EXP_FLAG}` does: that configuration's floor.")
    w("- **beyond L and FIFREEZE alone**: window − L − FIFREEZE alone (medians), the expedited FIFREEZE alone for the "
      f"`{EXP_FLAG}` rows.")
    w("- **writer's longest stall**: the longest single write + fsync of the writer that was in progress at any time during the run "
      "— what an application saw, measured outside either tool.")
    w("- **wall**: the whole command, start to exit. **RSS**: peak resident set size from `/usr/bin/time -v` (the largest process of the run: "
      "lightsnap or its watchdog; for the naive script, the AWS CLI), median / max, MB. **naive ÷ this**: the naive script's "
      "median / p95 over this row's, at the same L.\n")
    for fstype, data in results["latency"].items():
        w(f"### {fstype}\n")
        nv_all = summarise(runs_of(data, "naive"))

        def alone_txt(tag):
            al = [r for r in data["runs"] if r["tag"] == tag and r["rc"] == 0]
            rcu = [r["rcu_share"] * 100 for r in al if r.get("rcu_share") is not None]
            flush = [r["flush_share"] * 100 for r in al if r.get("flush_share") is not None]
            calls = [r["freeze_call_ms"] for r in al]
            return (f"({len(al)} runs): the call {pair((med(calls), pct(calls, 95)))} ms, "
                    f"FIFREEZE called → FITHAW returned {pair((med([r['window_ms'] for r in al]), pct([r['window_ms'] for r in al], 95)))} ms, "
                    f"writer's longest stall {pair((med([r.get('stall_ms') for r in al]), pct([r.get('stall_ms') for r in al], 95)))} ms; "
                    f"rcu wait {fmt(med(rcu), 0)} %, writing out {fmt(med(flush), 0)} % of the call (median)")
        w(f"The writer's typical write + fsync, outside any freeze: {fmt(data['typical_write_ms'], 2)} ms. "
          f"**FIFREEZE alone** {alone_txt('alone')}. "
          + (f"**Expedited** {alone_txt('alone-exp')}. " if runs_of(data, "alone-exp") else "")
          + f"The naive script's `fsfreeze -f` took {pair(nv_all['freeze_call'])} ms (process start-up included).\n")
        w("| tool | L | runs (failed) | window | window − L | beyond L and FIFREEZE alone (median) | writer's longest stall | wall | RSS MB | naive ÷ this (window) | naive ÷ this (stall) |")
        w("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for lat in cfg.latencies:
            nv = summarise(runs_of(data, "naive", lat), lat)
            for tag, name in (*CONFIGS, ("naive", "naive")):
                rs = runs_of(data, tag, lat)
                if not rs:
                    continue
                s = nv if tag == "naive" else summarise(rs, lat)
                alone = alone_ms(data, "lightsnap" if tag == "naive" else tag)
                if tag == "naive":
                    ratio = ("", "")
                else:
                    ratio = (f"{fmt_ratio(nv['window'][0], s['window'][0])} / {fmt_ratio(nv['window'][1], s['window'][1])}",
                             f"{fmt_ratio(nv['stall'][0], s['stall'][0])} / {fmt_ratio(nv['stall'][1], s['stall'][1])}")
                beyond = None if None in (s["window_minus_l"][0], alone) else s["window_minus_l"][0] - alone
                w(f"| {name} | {lat} | {s['n']} ({s['failed']}) | {pair(s['window'])} | {pair(s['window_minus_l'])} | {fmt(beyond)} | "
                  f"{pair(s['stall'])} | {pair(s['wall'])} | {pair(s['rss_mb'])} | {ratio[0]} | {ratio[1]} |")
        w("")

    # dirty
    w("## 2. Dirty data\n")
    d = results.get("dirty", {})
    if "skipped" in d:
        w(f"Skipped: {d['skipped']}.\n")
    elif d:
        w(f"ext4, L = {cfg.dirty_latency} ms, {cfg.dirty_runs} run{'s' if cfg.dirty_runs > 1 else ''} per row. Just before each run, a file of the given size is written "
          "to the filesystem and not flushed (page cache only: well under the dirty thresholds above, so the kernel does not start "
          "writing it back by itself); it is deleted and the filesystem synced after the run. The writer keeps writing throughout.\n")
        w("- **lightsnap** calls `syncfs` before the freeze (writes go on meanwhile), so FIFREEZE has little left to flush.")
        w("- **lightsnap --no-syncfs** is the same run without that flush: FIFREEZE writes out all the dirty data itself, with writes "
          "already blocked, and the window (which opens when FIFREEZE is called) counts it. Like for like: the difference between the two "
          "rows is what the flush saves.")
        w("- **naive** (`fsfreeze -f`, which has no flush before it either) reports how long its FIFREEZE call took, the part of the "
          "window lightsnap does not report separately: **freeze call**, from starting `fsfreeze -f` to its return.")
        w("- **control**: `sync -f` (syncfs) alone on the same dirty data, no freeze and no API call: what the flush by itself "
          "costs the writer, whose fsyncs queue behind it. lightsnap's longest stall with dirty data is to be read against it.\n")
        w(f"The writer's typical write + fsync: {fmt(d['typical_write_ms'], 2)} ms.\n")
        w("| dirty | tool | runs (failed) | window | window − L | freeze call | writer's longest stall | wall |")
        w("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for mib in cfg.dirty_sizes:
            for tool, label in (("lightsnap", "lightsnap (syncfs first)"), ("lightsnap-nosyncfs", "lightsnap --no-syncfs"),
                                ("naive", "naive (no syncfs)"), ("sync", "control: `sync -f` alone")):
                rs = [r for r in d["runs"] if r["tag"] == tool and r["dirty_mib"] == mib]
                s = summarise(rs, cfg.dirty_latency)
                if tool == "naive":
                    fc = pair(s["freeze_call"])
                elif tool.startswith("lightsnap"):
                    fc = "in the window"
                else:
                    fc = "–"
                win, wml = (pair(s["window"]), pair(s["window_minus_l"])) if tool != "sync" else ("–", "–")
                w(f"| {size_label(mib)} | {label} | {s['n']} ({s['failed']}) | {win} | {wml} | {fc} | "
                  f"{pair(s['stall'])} | {pair(s['wall'])} |")
        w("")

    # disks
    w("## 3. Several disks as one group\n")
    dk = results.get("disks")
    if dk:
        ind = dk.get("independence") or {}
        w(f"`lightsnap freeze-and-snap /a /b ...`: k ext4 filesystems on k loop devices, one fake Lightsail disk each "
          f"(found by device path through the fake's metadata service), frozen at once (one wave: a watchdog thread each), the k `CreateDiskSnapshot` calls made together, "
          f"thawed newest first. **calls' arrival spread**: from the first to the last of the k `CreateDiskSnapshot` requests reaching the fake (median / p95, ms). "
          f"{cfg.disk_runs} runs per row of lightsnap and {cfg.disk_exp_runs} of lightsnap {EXP_FLAG}, counts, latencies and the two "
          "configurations shuffled each round. The writer is on the first "
          f"filesystem. **k FIFREEZE alone**: FIFREEZE on the k filesystems at once (a thread each) and FITHAW, straight from the benchmark, "
          f"once a round per count, plain and (for the `{EXP_FLAG}` rows) expedited: the kernel's floor for freezing k filesystems in "
          "parallel (median / p95, ms). **vs 1 disk** and **added per extra disk**: against the same configuration's one-disk row.\n")
        if ind:
            waves = ind.get("waves")
            wave_txt = ("`lightsnap plan` could not be read" if waves is None else
                        f"`lightsnap plan` on all {ind['filesystems']} puts them in wave{'s' if len(set(waves)) > 1 else ''} "
                        f"{', '.join(str(x) for x in sorted(set(waves)))}" + (" (all frozen at once)" if len(set(waves)) == 1 else " (**not** all frozen at once)"))
            w(f"Independent filesystems, checked before the runs: their {ind['filesystems']} image files are in the scratch directory, on "
              f"`{', '.join(ind['backing_homes']) or '?'}` (the host filesystem holding the scratch directory is `{ind['host_of_scratch']}`), "
              f"{'none' if not ind['nested'] else ', '.join(ind['nested'])} inside another's mount or mounted below another; {wave_txt}.\n")
        w("| L | tool | disks | runs (failed) | window | window − L | vs 1 disk (median) | added per extra disk (median) | k FIFREEZE alone | calls' arrival spread | writer's longest stall | wall | RSS MB |")
        w("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for lat in cfg.disk_latencies:
            for tag, name in CONFIGS:
                tagged = runs_of(dk, tag, lat)
                if not tagged:
                    continue
                one = summarise([r for r in tagged if r["disks"] == 1], lat)
                for k in cfg.disk_counts:
                    rs = [r for r in tagged if r["disks"] == k]
                    s = summarise(rs, lat)
                    sp = [r.get("calls_spread_ms") for r in rs if r["rc"] == 0]
                    spread = pair((med(sp), pct(sp, 95))) if k > 1 else "–"
                    extra = "–" if k == 1 or None in (s["window"][0], one["window"][0]) else fmt((s["window"][0] - one["window"][0]) / (k - 1))
                    al = [r["freeze_call_ms"] for r in dk["runs"] if r["tag"] == ALONE[tag] and r["disks"] == k and r["rc"] == 0]
                    w(f"| {lat} | {name} | {k} | {s['n']} ({s['failed']}) | {pair(s['window'])} | {pair(s['window_minus_l'])} | "
                      f"{fmt_ratio(s['window'][0], one['window'][0])} | {extra} | {pair((med(al), pct(al, 95)))} | {spread} | {pair(s['stall'])} | {pair(s['wall'])} | {pair(s['rss_mb'])} |")
        w("")

    # breakdown
    bd = results.get("breakdown")
    if bd:
        w("## 4. Where lightsnap's window goes\n")
    if bd and "skipped" in bd:
        w(f"Skipped: {bd['skipped']}.\n")
    elif bd:
        w(f"ext4, L = 0, {cfg.breakdown_runs} rounds of: one lightsnap run under `strace --seccomp-bpf -f -T -e trace=ioctl` (which stops "
          "it only at its ioctls), for how long its watchdog's FIFREEZE syscall itself took against the window lightsnap reports"
          + (f", and one of lightsnap {EXP_FLAG} the same way (the two in shuffled order)" if cfg.exp_runs else "")
          + "; `fsfreeze -f` under the same strace; FIFREEZE alone (as in section 1"
          + (", plain and expedited" if cfg.exp_runs else "") + "). The writer runs throughout. Median / p95, ms.\n")
        rs = bd["runs"]
        ff = [r for r in rs if r["tag"] == "fsfreeze-strace" and r["rc"] == 0 and r.get("fifreeze_ms") is not None]

        def mp(vals):
            return pair((med(vals), pct(vals, 95)))
        w("| | runs | window | FIFREEZE syscall | window − FIFREEZE syscall | writer's longest stall |")
        w("| --- | --- | --- | --- | --- | --- |")
        for tag, name in CONFIGS:
            ls = [r for r in rs if r["tag"] == f"{tag}-strace" and r["rc"] == 0 and r.get("fifreeze_ms") is not None]
            if ls:
                w(f"| {name} (its watchdog's FIFREEZE{', expedited' if tag == EXP else ''}) | {len(ls)} | {mp([r['window_ms'] for r in ls])} | "
                  f"{mp([r['fifreeze_ms'] for r in ls])} | {mp([r['window_ms'] - r['fifreeze_ms'] for r in ls])} | {mp([r.get('stall_ms') for r in ls])} |")
        w(f"| `fsfreeze -f` | {len(ff)} | – | {mp([r['fifreeze_ms'] for r in ff])} | – | {mp([r.get('stall_ms') for r in ff])} |")
        for tag, name in (("alone", "FIFREEZE alone (from the benchmark's own process)"), ("alone-exp", "FIFREEZE alone, expedited")):
            al = [r for r in rs if r["tag"] == tag and r["rc"] == 0]
            if al:
                w(f"| {name} | {len(al)} | {mp([r['window_ms'] for r in al])} | "
                  f"{mp([r['freeze_call_ms'] for r in al])} | {mp([r['window_ms'] - r['freeze_call_ms'] for r in al])} | {mp([r.get('stall_ms') for r in al])} |")
        w("")
        w("**window − FIFREEZE syscall** is lightsnap's own share of its window: asking the watchdog, the watchdog's thread, "
          "the answers, the thaw. Where the FIFREEZE syscall made by lightsnap's watchdog or by `fsfreeze` is longer than FIFREEZE "
          "alone, that is the kernel's call taking longer, not anything lightsnap does around it: almost all of the call is waiting "
          "for RCU grace periods (section 1), whose length varies with what the CPUs are doing when they are asked for. Why it is "
          "longer when made by a freshly started process than by the benchmark's long-running one is not pinned down."
          + (f" With `{EXP_FLAG}`, lightsnap's own share also holds the watchdog turning `rcu_expedited` on before the call and "
             "off after it (two writes to sysfs)." if cfg.exp_runs else "") + "\n")

    w("## Caveats\n")
    w("- The API is a local fake: the latency is injected (`--fault CreateDiskSnapshot=latency:Lms`), on top of a loopback round trip. "
      "Its disks have no `backing`, so it copies nothing and the copy's time is not counted as API latency.")
    w("- Loop devices are buffered by the host's page cache, so flushes are cheaper than on a real EBS volume; the dirty-data rows "
      "understate what 1 GiB costs there.")
    w("- lightsnap's window opens just before it asks its watchdog (another process) to freeze, so the request's trip and the "
      "watchdog starting a thread per filesystem are counted in it; the writers are blocked only part of the FIFREEZE call.")
    w("- The machine may be shared (see the load average): other work on its cores shows up as spread in the p95 column.")
    w("- Raw per-run figures of the last run: `target/bench/results.json`.")
    w("")
    return "\n".join(out)


def size_label(mib):
    if mib == 0:
        return "0"
    return f"{mib // 1024} GiB" if mib % 1024 == 0 else f"{mib} MiB"


ALONE = {"lightsnap": "alone", EXP: "alone-exp"}
LABEL = dict(CONFIGS)


def runs_of(data, tag, latency=None):
    return [r for r in data["runs"] if r["tag"] == tag and (latency is None or r.get("latency") == latency)]


def alone_ms(data, tag="lightsnap"):
    """The median FIFREEZE-alone call of a section-1 filesystem: expedited for --expedite-freeze."""
    return med([r["freeze_call_ms"] for r in data["runs"] if r["tag"] == ALONE[tag] and r["rc"] == 0])


def disk_window(dk, tag, k, latency):
    return med([r["window_ms"] for r in dk["runs"]
                if r["tag"] == tag and r["disks"] == k and r["latency"] == latency and r["rc"] == 0])


def disk_alone(dk, tag, k):
    return med([r["freeze_call_ms"] for r in dk["runs"] if r["tag"] == ALONE[tag] and r["disks"] == k and r["rc"] == 0])


def measured(results, tag):
    """Whether this run measured the configuration at all (section 1 or 3)."""
    return any(runs_of(d, tag) for d in results["latency"].values()) or bool(
        results.get("disks") and runs_of(results["disks"], tag))


def disk_goal_latency(cfg):
    return 50 if 50 in cfg.disk_latencies else cfg.disk_latencies[0]


def evaluate(cfg, results):
    """Each goal, for each lightsnap configuration: {"goal", "by": {tag: {"measured", "met"}}}
    (met None: that configuration was not measured for it)."""
    lat = results["latency"]
    dk = results.get("disks")

    def window(tag):
        rows = [(f, L, summarise(runs_of(d, tag, L), L)["window_minus_l"][0]) for f, d in lat.items() for L in cfg.latencies]
        vals = [v for _, _, v in rows if v is not None]
        if not vals:
            return "not measured", None
        alone = "; ".join(f"{f} {fmt(alone_ms(d, tag))} ms" for f, d in lat.items())
        return ("; ".join(f"{f} L={L}: {fmt(v)} ms" for f, L, v in rows)
                + f" (FIFREEZE alone{', expedited' if tag == EXP else ''}: {alone})",
                len(vals) == len(rows) and max(vals) <= GOAL_WINDOW_MINUS_L_MS)

    def ratio(tag):
        rows = []
        for f, d in lat.items():
            if 50 not in cfg.latencies:
                continue
            ls = summarise(runs_of(d, tag, 50), 50)["window"][0]
            nv = summarise(runs_of(d, "naive", 50), 50)["window"][0]
            rows.append((f, None if not (ls and nv) else nv / ls, ls, nv))
        if not any(ls for _, _, ls, _ in rows):
            return "not measured", None
        return ("; ".join(f"{f}: {fmt(n)} / {fmt(l)} ms = {fmt(r, 0) if r is not None else '–'}×" for f, r, l, n in rows),
                all(r is not None and r >= GOAL_RATIO_AT_50 for _, r, _, _ in rows))

    def stall(tag):
        runs = [r for d in lat.values() for r in runs_of(d, tag) if r["rc"] == 0 and r.get("stall_ms") is not None]
        if not runs:
            return "not measured", None
        excess = [r["stall_ms"] - r["window_ms"] for r in runs]
        bad = [e for e in excess if e > GOAL_STALL_SLACK_MS]
        return (f"{len(runs) - len(bad)}/{len(runs)} runs; stall − window median {fmt(med(excess))}, "
                f"p95 {fmt(pct(excess, 95))}, worst {fmt(max(excess))} ms", not bad)

    def disks(tag):
        if not dk:
            return "not measured", None
        L, top = disk_goal_latency(cfg), max(cfg.disk_counts)
        one, many = disk_window(dk, tag, 1, L), disk_window(dk, tag, top, L)
        if not (one and many):
            return "not measured", None
        return f"L={L}: {fmt(many)} / {fmt(one)} ms = {fmt(many / one, 2)}×", many / one <= GOAL_DISKS_RATIO

    def rss(tag):
        runs = [r for d in lat.values() for r in runs_of(d, tag)]
        if dk:
            runs += runs_of(dk, tag)
        if tag == "lightsnap":  # section 2's runs are the default configuration (and --no-syncfs)
            runs += [r for r in results.get("dirty", {}).get("runs", []) if r["tag"].startswith("lightsnap")]
        vals = [r["rss_kb"] / 1024 for r in runs if r.get("rss_kb")]
        if not vals:
            return "not measured", None
        return f"median {fmt(med(vals))} MB, max {fmt(max(vals))} MB over {len(vals)} runs", max(vals) <= GOAL_RSS_MB

    specs = [
        ("window", f"window − L ≤ {GOAL_WINDOW_MINUS_L_MS:.0f} ms (median), at every L and filesystem", window),
        ("ratio", f"window ≥ {GOAL_RATIO_AT_50:.0f}× shorter than the naive script's at L = 50 ms (medians)", ratio),
        ("stall", f"writer's longest stall ≤ window + {GOAL_STALL_SLACK_MS:.0f} ms, in every run of section 1", stall),
        ("disks", f"{max(cfg.disk_counts)} disks' window ≤ {GOAL_DISKS_RATIO}× one disk's (medians, L = 50 ms)", disks),
        ("rss", f"peak RSS ≤ {GOAL_RSS_MB:.0f} MB (largest of all the configuration's runs)", rss),
    ]
    goals = []
    for key, text, fn in specs:
        by = {}
        for tag, _ in CONFIGS:
            m, ok = fn(tag)
            by[tag] = {"measured": m, "met": ok}
        goals.append({"key": key, "goal": text, "by": by})
    return goals


def met_cell(ok):
    return "–" if ok is None else yes(ok)


def breakdown_note(results, tag="lightsnap"):
    bd = results.get("breakdown")
    if not bd or "runs" not in bd:
        return ""
    ls = [r for r in bd["runs"] if r["tag"] == f"{tag}-strace" and r["rc"] == 0 and r.get("fifreeze_ms") is not None]
    al = [r["freeze_call_ms"] for r in bd["runs"] if r["tag"] == ALONE[tag] and r["rc"] == 0]
    if not ls or not al:
        return ""
    return (f"; section 4 splits that (ext4, L = 0): lightsnap's own share (its window − its watchdog's FIFREEZE syscall, under strace) is "
            f"{fmt(med([r['window_ms'] - r['fifreeze_ms'] for r in ls]))} ms, and the rest is the kernel's call itself, "
            f"{fmt(med([r['fifreeze_ms'] for r in ls]))} ms made by lightsnap's watchdog against {fmt(med(al))} ms alone"
            f"{', expedited both' if tag == EXP else ''}, interleaved")


def beyond_alone(cfg, lat, tag):
    """window − L − FIFREEZE alone (the configuration's own: expedited for --expedite-freeze), the
    medians of section 1's rows."""
    out = []
    for f, d in lat.items():
        a = alone_ms(d, tag)
        for L in cfg.latencies:
            s = summarise(runs_of(d, tag, L), L)
            if None not in (s["window_minus_l"][0], a):
                out.append(s["window_minus_l"][0] - a)
    return out


def goal_notes(cfg, results, goals, facts):
    notes = []
    g = {x["key"]: x["by"] for x in goals}
    missed = {k: {t for t, v in by.items() if v["met"] is False} for k, by in g.items()}
    lat = results["latency"]

    if missed["window"] and lat:
        parts = []
        if "lightsnap" in missed["window"]:
            als = {f: runs_of(d, "alone") for f, d in lat.items()}
            rcu = [r["rcu_share"] * 100 for rs in als.values() for r in rs if r["rc"] == 0 and r.get("rcu_share") is not None]
            flush = [r["flush_share"] * 100 for rs in als.values() for r in rs if r["rc"] == 0 and r.get("flush_share") is not None]
            stall_alone = [r["stall_ms"] - r["window_ms"] for rs in als.values() for r in rs
                           if r["rc"] == 0 and r.get("stall_ms") is not None]
            own = beyond_alone(cfg, lat, "lightsnap")
            over = all((alone_ms(d) or 0) > GOAL_WINDOW_MINUS_L_MS for d in lat.values())
            exp_alone = " and ".join(f"{fmt(alone_ms(d, EXP), 2)} ms on {f}" for f, d in lat.items())
            parts.append(
                "lightsnap (default): the window opens when FIFREEZE is called, so it includes the call, "
                "and the call alone — straight from the benchmark, no process started, next to nothing to flush — takes "
                + " and ".join(f"{fmt(alone_ms(d))} ms on {f}" for f, d in lat.items())
                + f" (median){', more than the goal by itself' if over else ''}. Its kernel stacks, sampled, are in `synchronize_rcu` "
                f"under `rcu_sync_enter` in `freeze_super` {fmt(med(rcu), 0)} % of the time (median; writing out, {fmt(med(flush), 0)} %): "
                "the kernel waits for one RCU grace period for each of the three `sb_writers` levels it takes (write, page fault, "
                f"internal), a few timer ticks each at CONFIG_HZ={facts.get('hz', '?')}. Expedited grace periods all but remove the "
                f"wait: with `/sys/kernel/rcu_expedited` turned on for the call (what `{EXP_FLAG}` does), FIFREEZE alone took "
                f"{exp_alone} in this run (median). Beyond L and FIFREEZE alone, lightsnap's windows have "
                f"{fmt(min(own, default=None))} to {fmt(max(own, default=None))} ms (medians, the rows of section 1)"
                + breakdown_note(results) + ". Writers are not blocked during the first of the three waits (the write level is "
                "only locked once it is over), so the window somewhat overstates the pause: in the FIFREEZE-alone runs the writer's "
                f"longest stall was {fmt(med([-x for x in stall_alone]))} ms shorter than FIFREEZE called → FITHAW returned (median).")
        if EXP in missed["window"]:
            own = beyond_alone(cfg, lat, EXP)
            worst = max(((f, L, summarise(runs_of(d, EXP, L), L)["window_minus_l"][0]) for f, d in lat.items()
                         for L in cfg.latencies), key=lambda x: x[2] or 0)
            def flushing(d):
                v = [r["flush_share"] * 100 for r in runs_of(d, "alone-exp") if r["rc"] == 0 and r.get("flush_share") is not None]
                return fmt(med(v), 0)
            parts.append(
                f"lightsnap {EXP_FLAG}: FIFREEZE alone, expedited, takes "
                + " and ".join(f"{fmt(alone_ms(d, EXP), 2)} ms on {f}" for f, d in lat.items())
                + " (median; p95 " + " and ".join(f"{fmt(pct([r['freeze_call_ms'] for r in runs_of(d, 'alone-exp') if r['rc'] == 0], 95))} ms"
                                                  for d in lat.values())
                + "), with no RCU wait left: its stack samples are writing out ("
                + " and ".join(f"{flushing(d)} % on {f}" for f, d in lat.items())
                + ", median; on ext4 that is the journal's flush, on the host's disk under the loop device)"
                + f"; beyond L and that, its windows have {fmt(min(own, default=None))} to {fmt(max(own, default=None))} ms "
                f"(medians, the rows of section 1), the most at {worst[0]} L = {worst[1]} ms ({fmt(worst[2])} ms over L)"
                + breakdown_note(results, EXP) + ".")
        elif g["window"][EXP]["met"]:
            parts.append(
                f"lightsnap {EXP_FLAG} meets it — an opt-in: the switch is system-wide (while it is on, every RCU grace period on "
                "the machine is expedited, by interrupting all CPUs, not only the freeze's), so lightsnap leaves it alone unless "
                "asked.")
        notes.append(f"**window − L ≤ {GOAL_WINDOW_MINUS_L_MS:.0f} ms**: " + " ".join(parts))

    if missed["ratio"] and "ext4" in lat and 50 in cfg.latencies:
        data = lat["ext4"]
        nv0 = summarise(runs_of(data, "naive", 0), 0)["window"][0] if 0 in cfg.latencies else None
        nv = summarise(runs_of(data, "naive", 50), 50)["window"][0]
        parts, floors = [], []
        for tag, label in CONFIGS:
            ls = summarise(runs_of(data, tag, 50), 50)
            a = alone_ms(data, tag)
            if not (ls["window"][0] and a):
                continue
            parts.append(
                f"{label}'s window is L + {fmt(ls['window_minus_l'][0])} ms ({fmt(a)} ms of it the FIFREEZE call"
                f"{', expedited' if tag == EXP else ''}), so {GOAL_RATIO_AT_50:.0f}× would need the naive script to pause writes for "
                f"{fmt(GOAL_RATIO_AT_50 * ls['window'][0], 0)} ms or more")
            floors.append((tag, a, ls["window_minus_l"][0] - a))
        if nv and parts:
            notes.append(
                f"**{GOAL_RATIO_AT_50:.0f}× at L = 50 ms** (ext4): " + "; ".join(parts) + f". The naive script paused them for "
                f"{fmt(nv, 0)} ms, of which {fmt(nv0, 0)} ms is there even at L = 0 (FIFREEZE, then the AWS CLI starting inside the "
                "window). Even a tool adding nothing at all to the kernel's call would pause writes for L + FIFREEZE = "
                + " or ".join(f"{fmt(50 + a, 0)} ms{' (expedited)' if t == EXP else ''}" for t, a, _ in floors)
                + ", and the naive script's pause is only "
                + " or ".join(f"{fmt_ratio(nv, 50 + a)}" for _, a, _ in floors)
                + " that: the ratio is bounded by the CLI's start-up time (and, by default, the kernel's FIFREEZE) on this machine, "
                "not by what lightsnap's windows have beyond L and FIFREEZE alone ("
                + ", ".join(f"{fmt(b)} ms{' expedited' if t == EXP else ''}" for t, _, b in floors)
                + "; see section 4 for how much of the default's is lightsnap's own).")

    for tag in (t for t, _ in CONFIGS if t in missed["stall"]):
        runs = [r for d in lat.values() for r in runs_of(d, tag) if r["rc"] == 0 and r.get("stall_ms") is not None]
        excess = sorted(r["stall_ms"] - r["window_ms"] for r in runs)
        typical = med([d["typical_write_ms"] for d in lat.values()])
        notes.append(
            f"**Stall ≤ window + {GOAL_STALL_SLACK_MS:.0f} ms**, {LABEL[tag]}: the window opens when FIFREEZE is called, so nothing "
            f"before the freeze is missing from it; what a stall has beyond it comes after the thaw: the writer blocked in the kernel "
            f"has to be woken and scheduled and its fsync done (typically {fmt(typical, 2)} ms), on {os.cpu_count()} cores shared with "
            f"lightsnap, its watchdog and the fake. stall − window: median {fmt(med(excess))}, p95 {fmt(pct(excess, 95))}, "
            f"worst {fmt(max(excess, default=None))} ms.")

    dk = results.get("disks")
    for tag in (t for t, _ in CONFIGS if t in missed["disks"] and dk):
        L, top = disk_goal_latency(cfg), max(cfg.disk_counts)
        one, many = disk_window(dk, tag, 1, L), disk_window(dk, tag, top, L)
        a1, ak = disk_alone(dk, tag, 1), disk_alone(dk, tag, top)
        waves = (dk.get("independence") or {}).get("waves")
        spread = med([r.get("calls_spread_ms") for r in runs_of(dk, tag) if r["disks"] == top and r["rc"] == 0])
        notes.append(
            f"**{top} disks**, {LABEL[tag]}: the {top} filesystems are independent and lightsnap puts them in "
            f"{'one wave' if waves and len(set(waves)) == 1 else 'waves ' + str(sorted(set(waves or [])))}, frozen at once; still each "
            f"filesystem after the first adds {fmt((many - one) / (top - 1))} ms to the window (median, L = {L} ms). "
            f"{top} FIFREEZE calls at once{' (expedited)' if tag == EXP else ''} straight from the benchmark take {fmt(ak)} ms against "
            f"{fmt(a1)} ms for one ({fmt_ratio(ak, a1)}): the kernel's own floor for freezing {top} filesystems in parallel on "
            f"{os.cpu_count()} cores, which puts {top} disks at {fmt_ratio(L + ak, L + a1) if a1 and ak else '–'} of one at best at "
            f"L = {L} ms. The snapshot calls themselves are made together ({top} arrived within {fmt(spread)} ms of each other, median).")

    for tag in (t for t, _ in CONFIGS if t in missed["rss"]):
        notes.append(f"**Peak RSS**, {LABEL[tag]}: {g['rss'][tag]['measured']}.")
    return notes


def yes(b):
    return "**yes**" if b else "**no**"


def headline(cfg, results):
    data = results["latency"].get("ext4")
    if not data or 50 not in cfg.latencies:
        return None
    ls = summarise(runs_of(data, "lightsnap", 50), 50)
    ex = summarise(runs_of(data, EXP, 50), 50)
    nv = summarise(runs_of(data, "naive", 50), 50)
    if not (ls["window"][0] and nv["window"][0]):
        return None
    return {
        "lightsnap_ms": ls["window"][0],
        "naive_ms": nv["window"][0],
        "ratio": nv["window"][0] / ls["window"][0],
        "stall_lightsnap_ms": ls["stall"][0],
        "stall_naive_ms": nv["stall"][0],
        "alone_ms": alone_ms(data),
        "exp_ms": ex["window"][0],
        "exp_ratio": nv["window"][0] / ex["window"][0] if ex["window"][0] else None,
        "stall_exp_ms": ex["stall"][0],
        "alone_exp_ms": alone_ms(data, EXP),
    }


# ---------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scratch", type=Path, required=True)
    ap.add_argument("--bin", type=Path, required=True)
    ap.add_argument("--aws", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--results", type=Path)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--runs", type=int)
    ap.add_argument("--naive-runs", type=int)
    ap.add_argument("--expedite-runs", type=int, help=f"lightsnap {EXP_FLAG} runs per row (sections 1 and 3; 0: none)")
    ap.add_argument("--only", choices=["latency", "dirty", "disks", "breakdown"], action="append")
    cfg = ap.parse_args()
    if cfg.quick:
        defaults = dict(runs=3, naive_runs=2, dirty_runs=1, dirty_sizes=[0, 16, 64], disk_runs=3, disk_latencies=[50],
                        breakdown_runs=3)
    else:
        defaults = dict(runs=30, naive_runs=30, dirty_runs=3, dirty_sizes=[0, 256, 1024], disk_runs=15, disk_latencies=[0, 50],
                        breakdown_runs=20)
    cfg.runs = cfg.runs or defaults["runs"]
    cfg.naive_runs = min(cfg.runs, cfg.naive_runs or defaults["naive_runs"])
    # --expedite-freeze: as many runs as lightsnap's own in each section unless told otherwise.
    cfg.exp_runs = min(cfg.runs, cfg.runs if cfg.expedite_runs is None else cfg.expedite_runs)
    cfg.dirty_runs = defaults["dirty_runs"]
    cfg.dirty_sizes = defaults["dirty_sizes"]
    cfg.disk_runs = defaults["disk_runs"]
    cfg.disk_exp_runs = min(cfg.disk_runs, cfg.disk_runs if cfg.expedite_runs is None else cfg.expedite_runs)
    cfg.disk_latencies = defaults["disk_latencies"]
    cfg.breakdown_runs = defaults["breakdown_runs"]
    cfg.disk_counts = [1, 2, 4, 8]
    cfg.latencies = [0, 50, 200]
    cfg.fstypes = ["ext4", "xfs"]
    cfg.dirty_latency = 50
    cfg.gap = 0.1
    only = set(cfg.only or ["latency", "dirty", "disks", "breakdown"])

    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_stop)
    # Started in the background by scripts/bench, this process inherits SIGINT ignored; Ctrl-C
    # should stop it (and the programs it starts) all the same.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    random.seed(1)
    global RCU
    RCU = RcuGuard()
    scratch = Scratch(cfg.scratch, cfg.bin, cfg.aws)
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    t0 = time.monotonic()
    facts = machine_facts(scratch)
    results = {"latency": {}}
    try:
        if "latency" in only:
            OTHERS["section"] = "1"
            latency_matrix(scratch, cfg, results)
        if "dirty" in only:
            OTHERS["section"] = "2"
            dirty_data(scratch, cfg, results)
        if "disks" in only:
            OTHERS["section"] = "3"
            several_disks(scratch, cfg, results)
        if "breakdown" in only:
            OTHERS["section"] = "4"
            breakdown(scratch, cfg, results)
    except (Stop, KeyboardInterrupt) as e:
        log(f"stopped ({str(e) or 'SIGINT'}): cleaning up, no report")
        return 130
    except Exception as e:  # noqa: BLE001 - the set-up broke: say so, clean up, no report
        import traceback
        traceback.print_exc()
        log(f"failed: {e}: cleaning up, no report")
        return 1
    finally:
        scratch.cleanup()
        RCU.restore()  # as found, whatever happened (scripts/bench checks again on its way out)
    facts_end = {"loadavg": open("/proc/loadavg").read().split()[:3], "rcu_expedited": rcu_expedited() or "?"}
    elapsed = time.monotonic() - t0
    text = render(cfg, facts, facts_end, results, started, elapsed)
    cfg.out.write_text(text)
    if cfg.results:
        cfg.results.parent.mkdir(parents=True, exist_ok=True)
        slim = json.loads(json.dumps(results, default=str))
        for sec in slim.values():
            for data in ([sec] if "runs" in sec else sec.values()):
                for r in data.get("runs", []) if isinstance(data, dict) else []:
                    r.pop("stdout", None)
                    r.pop("stderr", None)
        cfg.results.write_text(json.dumps({"facts": facts, "quick": cfg.quick, "results": slim}, indent=1))
    h = headline(cfg, results)
    print(text.split("## 1.")[0].split("## Goals")[1].strip() if "## Goals" in text else "", file=sys.stderr)
    if h:
        log(f"headline (ext4, L = 50 ms, medians): lightsnap {h['lightsnap_ms']:.1f} ms, naive {h['naive_ms']:.1f} ms, "
            f"{h['ratio']:.0f}× shorter; writer's longest stall {fmt(h['stall_lightsnap_ms'])} vs {fmt(h['stall_naive_ms'])} ms"
            + (f"; {EXP_FLAG} {h['exp_ms']:.1f} ms, {fmt_ratio(h['naive_ms'], h['exp_ms'])} shorter, stall {fmt(h['stall_exp_ms'])} ms"
               if h["exp_ms"] else ""))
    if RCU.left_on:
        log(f"{len(RCU.left_on)} {EXP_FLAG} run(s) left /sys/kernel/rcu_expedited changed (put back by the benchmark)")
    log(f"wrote {cfg.out} in {elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
