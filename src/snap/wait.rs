//! `--wait`: after the thaw, follow the snapshots until Lightsail says `completed` (or
//! `error`), with a progress bar at a terminal and plain periodic lines otherwise (the
//! journal).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::Result;
use serde::Serialize;

use crate::cloud::lightsail::{Lightsail, SnapshotRequest, Source};
use crate::exit_code::{ExitCode, Failure};
use crate::signals::{unless_stopped, Stop};

/// One snapshot as `--wait` last saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Seen {
    /// Snapshot name.
    pub name: String,
    /// `pending`, `completed` (`available` for an instance snapshot), `error`.
    pub state: String,
    /// `"42%"`; `None` for an instance snapshot, which has no progress to show.
    pub progress: Option<String>,
}

/// The `wait` member of a snapshot run's document.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct WaitDoc {
    /// Whether every snapshot is done.
    pub completed: bool,
    /// How long it followed them, in seconds.
    pub elapsed_s: f64,
    /// Every snapshot, as last seen.
    pub snapshots: Vec<Seen>,
}

/// What `--wait` came to.
#[derive(Debug)]
pub struct Waited {
    /// Every snapshot, as last seen (empty if the first look failed).
    pub snapshots: Vec<Seen>,
    /// How long it followed them.
    pub elapsed: Duration,
    /// `Ok` once every snapshot is done; else why it stopped (a snapshot in state `error`,
    /// the timeout, an API error), with its exit code.
    pub result: Result<()>,
}

impl Waited {
    /// The `wait` member of the JSON report.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(WaitDoc {
            completed: self.result.is_ok(),
            elapsed_s: self.elapsed.as_secs_f64(),
            snapshots: self.snapshots.clone(),
        })
        .unwrap_or_default()
    }
}

/// Polls every `interval` until every snapshot is done (`completed`, or `available` for an
/// instance snapshot), one is in state `error`, or `timeout` passes.
/// A stop request ends the wait at once (the snapshots go on in Lightsail).
pub async fn wait<A: Lightsail, S: Stop>(
    api: &A,
    requests: &[SnapshotRequest],
    timeout: Duration,
    interval: Duration,
    stop: &mut S,
) -> Waited {
    let started = Instant::now();
    let tty = std::io::stderr().is_terminal();
    let mut last_line: Option<Instant> = None;
    let mut seen: Vec<Seen> = Vec::new();
    let result = loop {
        match unless_stopped(stop, STOPPED_WAITING, look(api, requests)).await {
            Ok(now) => seen = now,
            Err(e) => break Err(e),
        }
        let elapsed = started.elapsed();
        let failed: Vec<&str> = names(&seen, |s| s == "error");
        let pending: Vec<&str> =
            names(&seen, |s| !matches!(s, "completed" | "available" | "error"));
        let timed_out = !pending.is_empty() && elapsed >= timeout;
        let last = !failed.is_empty() || pending.is_empty() || timed_out;
        if tty {
            show_at_terminal(&seen, elapsed, last);
        } else if last || last_line.is_none_or(|t| t.elapsed() >= PLAIN_EVERY) {
            for s in &seen {
                eprintln!("{}", plain_line(s, elapsed));
            }
            last_line = Some(Instant::now());
        }
        if !failed.is_empty() {
            break Err(Failure::new(
                ExitCode::ApiRejected,
                format!(
                    "Lightsail reports snapshot {} in state error",
                    failed.join(", ")
                ),
            )
            .into());
        }
        if pending.is_empty() {
            break Ok(());
        }
        if timed_out {
            break Err(Failure::new(
                ExitCode::WaitTimeout,
                format!(
                    "snapshot {} still pending after --wait-timeout {}; it goes on in Lightsail: see `lightsnap list`",
                    pending.join(", "),
                    humantime::format_duration(timeout)
                ),
            )
            .into());
        }
        // Never past the timeout: the last look is at the timeout, not an interval later.
        let nap = tokio::time::sleep(interval.min(timeout - elapsed));
        let napped = async {
            nap.await;
            Ok(())
        };
        if let Err(e) = unless_stopped(stop, STOPPED_WAITING, napped).await {
            break Err(e);
        }
    };
    Waited {
        snapshots: seen,
        elapsed: started.elapsed(),
        result,
    }
}

/// What a stop request while waiting means.
const STOPPED_WAITING: &str =
    "while waiting; the snapshot was taken and goes on in Lightsail: see `lightsnap list`";

/// How often a plain line is written when stderr is not a terminal (the journal).
const PLAIN_EVERY: Duration = Duration::from_secs(10);

async fn look<A: Lightsail>(api: &A, requests: &[SnapshotRequest]) -> Result<Vec<Seen>> {
    let mut seen = Vec::new();
    for request in requests {
        let name = &request.name;
        let Some(state) = super::find_snapshot(api, request).await? else {
            return Err(
                Failure::new(ExitCode::NotFound, format!("snapshot {name} is gone")).into(),
            );
        };
        let instance = matches!(request.source, Source::Instance(_));
        seen.push(Seen {
            name: name.clone(),
            state: state.state,
            progress: if instance { None } else { state.progress },
        });
    }
    Ok(seen)
}

fn names(seen: &[Seen], state: impl Fn(&str) -> bool) -> Vec<&str> {
    seen.iter()
        .filter(|s| state(&s.state))
        .map(|s| s.name.as_str())
        .collect()
}

/// `snapshot NAME: STATE [PROGRESS] (ELAPSEDs)`.
fn plain_line(s: &Seen, elapsed: Duration) -> String {
    match &s.progress {
        Some(p) => format!(
            "snapshot {}: {} {p} ({}s)",
            s.name,
            s.state,
            elapsed.as_secs()
        ),
        None => format!("snapshot {}: {} ({}s)", s.name, s.state, elapsed.as_secs()),
    }
}

/// One line, redrawn in place: each snapshot's state and bar (or state alone).
fn show_at_terminal(seen: &[Seen], elapsed: Duration, last: bool) {
    let parts: Vec<String> = seen
        .iter()
        .map(|s| match &s.progress {
            Some(p) => format!("{} {} {} {p}", s.name, s.state, bar(p)),
            None => format!("{} {}", s.name, s.state),
        })
        .collect();
    eprint!("\r{} ({}s)\x1b[K", parts.join("  "), elapsed.as_secs());
    if last {
        eprintln!();
    }
    let _ = std::io::stderr().flush();
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
    use super::*;

    #[test]
    fn plain_lines_show_progress_only_where_there_is_some() {
        let disk = Seen {
            name: "s1".into(),
            state: "pending".into(),
            progress: Some("42%".into()),
        };
        let whole = Seen {
            name: "i1".into(),
            state: "pending".into(),
            progress: None,
        };
        let t = Duration::from_millis(12_700);
        assert_eq!(plain_line(&disk, t), "snapshot s1: pending 42% (12s)");
        assert_eq!(plain_line(&whole, t), "snapshot i1: pending (12s)");
    }

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
