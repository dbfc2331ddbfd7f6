//! `lightsnap-writer`: a separate writer process for lightsnap's tests and benchmark. Never
//! shipped (the packages take only `target/release/lightsnap`); a bin of the `lightsnap`
//! package so the tests find it through `CARGO_BIN_EXE_lightsnap-writer`.
//!
//! ```text
//! lightsnap-writer acks FILE
//! lightsnap-writer latencies FILE OUT [--period-ms 2]
//! ```
//!
//! `acks` (the consistency tests, `scripts/demo`): appends checksummed records to FILE
//! (`record.rs`), fsyncing each one, and after each fsync returns prints `<seq> <unix ms>` on
//! stdout: an acknowledgement that the record is on disk. Runs until killed. A snapshot is
//! consistent when every record acknowledged before the snapshot call is in it, whole.
//!
//! `latencies` (`scripts/bench`): appends a 128-byte record to FILE and fsyncs it once every
//! `--period-ms` (or back to back when a write takes longer), and remembers for every write when
//! it started and how long write + fsync took. A write to a frozen filesystem blocks until the
//! thaw, so its duration is the stall an application saw. Runs until SIGTERM or SIGINT, then
//! writes OUT: one line per write, `<start, unix s> <duration, ms>`. Nothing is written to OUT
//! while it runs (FILE is on the filesystem being frozen, OUT need not be), and nothing on stdout.

#[path = "record.rs"]
mod record;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const USAGE: &str =
    "usage: lightsnap-writer acks FILE | lightsnap-writer latencies FILE OUT [--period-ms MS]";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["acks", file] => acks(file),
        ["latencies", file, out] => latencies(file, out, 2.0),
        ["latencies", file, out, "--period-ms", ms] => match ms.parse() {
            Ok(ms) => latencies(file, out, ms),
            Err(_) => usage(),
        },
        _ => usage(),
    };
    if let Err(e) = result {
        eprintln!("lightsnap-writer: {e}");
        std::process::exit(1);
    }
}

fn usage() -> std::io::Result<()> {
    eprintln!("{USAGE}");
    std::process::exit(2);
}

fn open_append(path: &str) -> std::io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o644)
        .open(path)
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// The consistency tests' writer: records, each acknowledged once fsynced. Runs until killed.
fn acks(path: &str) -> std::io::Result<()> {
    let mut file = open_append(path)?;
    let stdout = std::io::stdout();
    for seq in 0u64.. {
        file.write_all(record::line(seq).as_bytes())?;
        file.sync_all()?;
        let mut out = stdout.lock();
        writeln!(out, "{seq} {:.3}", unix_now() * 1000.0)?;
        out.flush()?;
    }
    Ok(())
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// The benchmark's writer: every write's start and length, written to `out` once stopped.
fn latencies(path: &str, out: &str, period_ms: f64) -> std::io::Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { sigaction(sig, &action) }.map_err(std::io::Error::from)?;
    }
    let mut file = open_append(path)?;
    // Kept in memory until the end: nothing else is written while the filesystem may be frozen.
    let mut rows: Vec<(f64, f64)> = Vec::with_capacity(1 << 16);
    let period = Duration::from_secs_f64(period_ms / 1000.0);
    let mut next_start = Instant::now();
    let mut seq = 0u64;
    while !STOP.load(Ordering::SeqCst) {
        let mut line = format!("{seq:012} ").into_bytes();
        line.extend_from_slice(&[b'x'; 114]);
        line.push(b'\n');
        let started = unix_now();
        let t0 = Instant::now();
        file.write_all(&line)?;
        file.sync_all()?;
        rows.push((started, t0.elapsed().as_secs_f64() * 1000.0));
        seq += 1;
        next_start += period;
        let now = Instant::now();
        if next_start > now {
            std::thread::sleep(next_start - now);
        } else {
            next_start = now;
        }
    }
    drop(file);
    let mut text = String::with_capacity(rows.len() * 28);
    for (start, ms) in rows {
        text.push_str(&format!("{start:.6} {ms:.3}\n"));
    }
    std::fs::write(out, text)
}
