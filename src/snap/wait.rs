//! `--wait`: after the thaw, follow the snapshots until Lightsail says `completed` (or
//! `error`), with a progress bar at a terminal and plain periodic lines otherwise (the
//! journal).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::cloud::lightsail::{Lightsail, SnapshotRequest};
use crate::exit_code::ExitCode;
use crate::fail;

/// Polls every `interval` until every snapshot is done (`completed`, or `available` for an
/// instance snapshot) or `timeout` passes.
pub async fn wait<A: Lightsail>(
    api: &A,
    requests: &[SnapshotRequest],
    timeout: Duration,
    interval: Duration,
) -> Result<()> {
    let started = Instant::now();
    let tty = std::io::stderr().is_terminal();
    let mut last_line = Instant::now() - Duration::from_secs(3600);
    loop {
        let mut pending = Vec::new();
        let mut failed = Vec::new();
        let mut shown = Vec::new();
        for request in requests {
            let name = &request.name;
            let state = match super::find_snapshot(api, request).await? {
                Some(s) => s,
                None => fail!(ExitCode::NotFound, "snapshot {name} is gone"),
            };
            let progress = state.progress.clone().unwrap_or_default();
            shown.push((name.clone(), state.state.clone(), progress));
            match state.state.as_str() {
                "completed" | "available" => {}
                "error" => failed.push(name.clone()),
                _ => pending.push(name.clone()),
            }
        }
        let elapsed = started.elapsed().as_secs();
        if tty {
            let parts: Vec<String> = shown
                .iter()
                .map(|(n, s, p)| format!("{n} {s} {} {p}", bar(p)))
                .collect();
            eprint!("\r{} ({elapsed}s)\x1b[K", parts.join("  "));
            let _ = std::io::stderr().flush();
        } else if last_line.elapsed() >= Duration::from_secs(10) || pending.is_empty() {
            for (n, s, p) in &shown {
                eprintln!("snapshot {n}: {s} {p} ({elapsed}s)");
            }
            last_line = Instant::now();
        }
        if !failed.is_empty() {
            if tty {
                eprintln!();
            }
            fail!(
                ExitCode::ApiRejected,
                "Lightsail reports snapshot {} in state error",
                failed.join(", ")
            );
        }
        if pending.is_empty() {
            if tty {
                eprintln!();
            }
            return Ok(());
        }
        if started.elapsed() >= timeout {
            if tty {
                eprintln!();
            }
            fail!(
                ExitCode::WaitTimeout,
                "snapshot {} still pending after --wait-timeout {}; it goes on in Lightsail: see `lightsnap list`",
                pending.join(", "),
                humantime::format_duration(timeout)
            );
        }
        tokio::time::sleep(interval).await;
    }
}

/// A 20-column bar for a progress string such as `"42%"`.
fn bar(progress: &str) -> String {
    let pct: usize = progress
        .trim_end_matches('%')
        .parse::<f64>()
        .map(|p| p.clamp(0.0, 100.0) as usize)
        .unwrap_or(0);
    let full = pct / 5;
    format!("[{}{}]", "#".repeat(full), ".".repeat(20 - full))
}

#[cfg(test)]
mod tests {
    #[test]
    fn bars() {
        assert_eq!(super::bar("0%"), format!("[{}]", ".".repeat(20)));
        assert_eq!(
            super::bar("50%"),
            format!("[{}{}]", "#".repeat(10), ".".repeat(10))
        );
        assert_eq!(super::bar("100%"), format!("[{}]", "#".repeat(20)));
        assert_eq!(super::bar("junk"), format!("[{}]", ".".repeat(20)));
    }
}
