//! The measuring half of `scripts/bench` (which builds, installs, makes the scratch directory
//! and cleans up after everything, even on failure).
//!
//! ```text
//! window --scratch DIR --bin DIR --aws AWS --out BENCHMARKS.md [--results FILE] [--quick]
//!        [--runs N] [--naive-runs N] [--expedite-runs N]
//!        [--only latency|dirty|disks|breakdown|tls]
//! ```
//!
//! Measures how long writes are paused by `lightsnap freeze-and-snap` (as it runs, and with
//! `--expedite-freeze`) and by the naive `fsfreeze -f; aws lightsail create-disk-snapshot;
//! fsfreeze -u` script (`tests/support/naive_snapshot.sh`), on loop-device filesystems made
//! with `tests/common` under DIR, against the fake Lightsail (`tests/common`'s, in this
//! process) with injected CreateDiskSnapshot latency, while `lightsnap-writer latencies`
//! appends and fsyncs and records the latency of every write; and FIFREEZE by itself (called
//! from here, plain and with rcu_expedited on, and inside lightsnap's watchdog under strace) to
//! tell the kernel's share of the window from lightsnap's; and lightsnap's window with the
//! endpoint over TLS against plain HTTP. `/sys/kernel/rcu_expedited` is
//! checked after every `--expedite-freeze` run and left as found. It measures, it does not
//! judge: a failed run is counted and reported, a missed goal is reported, and the exit status
//! is 0 unless the set-up itself could not be made.
//!
//! Modules: `stats` (percentiles, formatting), `rig` (the machine under test: the contenders,
//! the writer, FIFREEZE alone, the rcu guard), `sections` (the five experiments), `goals` (the
//! goals, the headline, why a goal was missed), `report` (BENCHMARKS.md).
//!
//! Run without `--scratch` (as `cargo test --all-targets` runs every bench target) it only
//! says so and exits: it needs root and makes loop devices.

#[path = "../../tests/common/mod.rs"]
mod common;
mod goals;
mod report;
mod rig;
mod sections;
mod stats;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{bail, Context, Result};

/// The sections `--only` may name, in the order they run.
pub const SECTIONS: [&str; 5] = ["latency", "dirty", "disks", "breakdown", "tls"];

/// What to measure and how often.
#[derive(Debug, Clone)]
pub struct Cfg {
    pub scratch: PathBuf,
    pub bin: PathBuf,
    pub aws: PathBuf,
    pub out: PathBuf,
    pub results: Option<PathBuf>,
    pub quick: bool,
    pub runs: usize,
    pub naive_runs: usize,
    pub exp_runs: usize,
    pub dirty_runs: usize,
    pub dirty_sizes: Vec<u64>,
    pub disk_runs: usize,
    pub disk_exp_runs: usize,
    pub disk_latencies: Vec<u64>,
    pub breakdown_runs: usize,
    pub disk_counts: Vec<usize>,
    /// Section 5: runs per endpoint (plain HTTP, TLS) of lightsnap and of lightsnap
    /// --expedite-freeze, and the injected latency.
    pub tls_runs: usize,
    pub tls_exp_runs: usize,
    pub tls_latency: u64,
    pub latencies: Vec<u64>,
    pub fstypes: Vec<common::FsKind>,
    pub dirty_latency: u64,
    pub gap: std::time::Duration,
    pub only: Vec<String>,
}

/// SIGTERM, SIGHUP or SIGINT arrived: unwind, clean up, no report.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// The error a stop request unwinds with.
#[derive(Debug, thiserror::Error)]
#[error("stopped by a signal")]
pub struct Stopped;

/// Errors out when a stop was asked for; called between runs.
pub fn check_stop() -> Result<()> {
    if STOP.load(Ordering::SeqCst) {
        return Err(Stopped.into());
    }
    Ok(())
}

pub fn log(msg: &str) {
    eprintln!("bench: {msg}");
}

fn parse_args() -> Result<Option<Cfg>> {
    let mut args = std::env::args().skip(1);
    let (mut scratch, mut bin, mut aws, mut out, mut results) = (None, None, None, None, None);
    let (mut quick, mut runs, mut naive_runs, mut expedite_runs) = (false, None, None, None);
    let mut only = Vec::new();
    let number = |v: Option<String>, name: &str| -> Result<usize> {
        v.with_context(|| format!("{name} needs a value"))?
            .parse()
            .with_context(|| format!("{name} takes a number"))
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--scratch" => scratch = args.next().map(PathBuf::from),
            "--bin" => bin = args.next().map(PathBuf::from),
            "--aws" => aws = args.next().map(PathBuf::from),
            "--out" => out = args.next().map(PathBuf::from),
            "--results" => results = args.next().map(PathBuf::from),
            "--quick" => quick = true,
            "--runs" => runs = Some(number(args.next(), "--runs")?),
            "--naive-runs" => naive_runs = Some(number(args.next(), "--naive-runs")?),
            "--expedite-runs" => expedite_runs = Some(number(args.next(), "--expedite-runs")?),
            "--only" => {
                let v = args.next().context("--only needs a value")?;
                if !SECTIONS.contains(&v.as_str()) {
                    bail!("--only takes one of {}", SECTIONS.join(", "));
                }
                only.push(v);
            }
            // What `cargo bench` passes to every bench target.
            "--bench" => {}
            other => bail!("unknown argument {other}"),
        }
    }
    let Some(scratch) = scratch else {
        return Ok(None);
    };
    let (Some(bin), Some(aws), Some(out)) = (bin, aws, out) else {
        bail!("--scratch needs --bin, --aws and --out too (scripts/bench passes them)");
    };
    // (runs, naive runs, dirty runs, dirty sizes, disk runs, disk latencies, breakdown runs)
    let (d_runs, d_naive, dirty_runs, dirty_sizes, disk_runs, disk_latencies, breakdown_runs) =
        if quick {
            (3, 2, 1, vec![0, 16, 64], 3, vec![50], 3)
        } else {
            (30, 30, 3, vec![0, 256, 1024], 15, vec![0, 50], 20)
        };
    // Section 5 compares two medians 2 ms apart: a few more runs than section 1's rows in
    // quick mode (each is cheap), as many as section 1's otherwise; --runs sets both.
    let tls_runs = runs
        .filter(|&n| n > 0)
        .unwrap_or(if quick { 5 } else { d_runs });
    let runs = runs.filter(|&n| n > 0).unwrap_or(d_runs);
    let naive_runs = runs.min(naive_runs.filter(|&n| n > 0).unwrap_or(d_naive));
    // --expedite-freeze: as many runs as lightsnap's own in each section unless told otherwise.
    let exp_runs = runs.min(expedite_runs.unwrap_or(runs));
    let disk_exp_runs = disk_runs.min(expedite_runs.unwrap_or(disk_runs));
    let tls_exp_runs = tls_runs.min(expedite_runs.unwrap_or(tls_runs));
    if only.is_empty() {
        only = SECTIONS.iter().map(|s| s.to_string()).collect();
    }
    Ok(Some(Cfg {
        scratch,
        bin,
        aws,
        out,
        results,
        quick,
        runs,
        naive_runs,
        exp_runs,
        dirty_runs,
        dirty_sizes,
        disk_runs,
        disk_exp_runs,
        disk_latencies,
        breakdown_runs,
        disk_counts: vec![1, 2, 4, 8],
        tls_runs,
        tls_exp_runs,
        tls_latency: 50,
        latencies: vec![0, 50, 200],
        fstypes: vec![common::FsKind::Ext4, common::FsKind::Xfs],
        dirty_latency: 50,
        gap: std::time::Duration::from_millis(100),
        only,
    }))
}

fn install_signals() -> Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(
        SigHandler::Handler(on_stop),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    // Started in the background by scripts/bench, this process inherits SIGINT ignored; Ctrl-C
    // should stop it all the same.
    for sig in [Signal::SIGTERM, Signal::SIGHUP, Signal::SIGINT] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { sigaction(sig, &action) }?;
    }
    Ok(())
}

fn main() {
    let cfg = match parse_args() {
        Ok(Some(cfg)) => cfg,
        Ok(None) => {
            // `cargo test --all-targets`: check the parts that need no root, measure nothing.
            self_check();
            eprintln!(
                "window: parsing and statistics checked; nothing measured: run `sudo scripts/bench` (root, loop devices, a few minutes)"
            );
            return;
        }
        Err(e) => {
            eprintln!("window: {e:#}");
            std::process::exit(2);
        }
    };
    std::process::exit(match measure(&cfg) {
        Ok(()) => 0,
        Err(e) if e.is::<Stopped>() => {
            log("stopped: cleaned up, no report");
            130
        }
        Err(e) => {
            log(&format!("failed: {e:#}: cleaned up, no report"));
            1
        }
    });
}

/// What `cargo test` runs of this target (a `harness = false` target has no `#[test]`s): the
/// percentiles against numpy's, strace's two ways of printing an ioctl, and section 5's counts.
fn self_check() {
    use stats::{fmt_ratio, pct};
    let v = [4.0, 1.0, 3.0, 2.0].map(Some);
    assert_eq!(pct(v, 50.0), Some(2.5));
    assert_eq!(pct(v, 95.0), Some(3.85));
    assert_eq!(pct([None, Some(7.0)], 95.0), Some(7.0));
    assert_eq!(pct([None], 50.0), None);
    assert_eq!(fmt_ratio(Some(588.0), Some(84.5)), "7.0×");
    assert_eq!(fmt_ratio(Some(588.0), Some(54.5)), "11×");
    let trace = "\
100 ioctl(3, FIFREEZE, 0) = 0 <0.031250>
101 ioctl(4, FIFREEZE, 0 <unfinished ...>
100 ioctl(3, FITHAW, 0) = 0 <0.000100>
101 <... ioctl resumed>) = 0 <0.002500>
";
    let got = sections::strace_ioctl_ms(trace, "FIFREEZE");
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(
        (got[0] - 31.25).abs() < 1e-9 && (got[1] - 2.5).abs() < 1e-9,
        "{got:?}"
    );
    // Section 5: windows from the runs that succeeded, the pre-opened count over every run (a
    // failed one, or one whose call came on a fresh connection, is not counted).
    let run = |tag: &str, rc: i32, window: Option<f64>, preopened: Option<bool>| rig::Run {
        tag: tag.into(),
        rc,
        window_ms: window,
        preopened,
        create_tls: preopened.map(|_| tag.ends_with("tls")),
        ..rig::Run::default()
    };
    let tag = |endpoint: usize| sections::tls_tag("lightsnap", sections::TLS_ENDPOINTS[endpoint].0);
    let (http, tls) = (tag(0), tag(1));
    let results = sections::Results {
        tls: Some(sections::Section {
            runs: vec![
                run(&http, 0, Some(50.0), Some(true)),
                run(&tls, 0, Some(51.0), Some(true)),
                run(&tls, 0, Some(55.0), Some(false)),
                run(&http, 0, Some(52.0), Some(true)),
                run(&tls, 1, None, None),
            ],
            typical_write_ms: None,
        }),
        ..sections::Results::default()
    };
    assert!(goals::tls_rows(&results, rig::EXP).is_none());
    let rows = goals::tls_rows(&results, "lightsnap").expect("section 5 rows");
    let counts = |r: &goals::TlsRow| (r.n, r.failed, r.preopened, r.over_tls);
    assert_eq!(counts(&rows[0]), (2, 0, 2, 0));
    assert_eq!(counts(&rows[1]), (3, 1, 1, 2));
    assert_eq!(rows[1].window.0, Some(53.0));
    assert_eq!(goals::tls_difference(&rows), Some(2.0));
}

fn measure(cfg: &Cfg) -> Result<()> {
    install_signals()?;
    let mut rig = rig::Rig::new(cfg)?;
    let started = report::utc_now();
    let t0 = Instant::now();
    let facts = rig::machine_facts(&rig);
    let mut results = sections::Results::default();
    let outcome = sections::run_all(&mut rig, &mut results);
    // As found, whatever happened (scripts/bench checks again on its way out).
    rig.rcu.restore();
    outcome?;
    let facts_end = rig::EndFacts::now();
    let elapsed = t0.elapsed().as_secs_f64();
    let text = report::render(&rig, &facts, &facts_end, &results, &started, elapsed);
    if let Some(parent) = cfg.out.parent() {
        std::fs::create_dir_all(parent).ok();
    }
    std::fs::write(&cfg.out, &text).with_context(|| format!("writing {}", cfg.out.display()))?;
    if let Some(path) = &cfg.results {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let json = serde_json::json!({ "facts": facts, "quick": cfg.quick, "results": results });
        std::fs::write(path, serde_json::to_string_pretty(&json)?)?;
    }
    // The goals section: up to the next heading.
    if let Some(goals) = text
        .split("## Goals")
        .nth(1)
        .and_then(|t| t.split("\n## ").next())
    {
        eprintln!("{}", goals.trim());
    }
    if let Some(h) = goals::headline(cfg, &results) {
        log(&goals::headline_log(&h));
    }
    if !rig.rcu.left_on.is_empty() {
        log(&format!(
            "{} {} run(s) left /sys/kernel/rcu_expedited changed (put back by the benchmark)",
            rig.rcu.left_on.len(),
            rig::EXP_FLAG
        ));
    }
    log(&format!("wrote {} in {elapsed:.0} s", cfg.out.display()));
    Ok(())
}
