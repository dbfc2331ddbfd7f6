//! `lightsnap check --max-age DURATION [PATH|--disk NAME]...`: a freshness check in the
//! monitoring-plugins (Nagios) style — exit 0 and a first line starting `OK` when every target
//! has a success younger than DURATION, else exit 2 (Nagios's CRITICAL) and a first line
//! starting `CRITICAL`, then one line per stale target. Reads the state files only: no network,
//! no lock, safe to run as often as a monitoring system likes.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use serde_json::json;

use super::status::{ago, now};
use super::{Globals, Output};
use crate::config;
use crate::exit_code::ExitCode;
use crate::monitor::{self, state};

/// The exit code of a stale target: 2, what Nagios and the monitoring plugins read as
/// CRITICAL (the number lightsnap's other commands use for a usage error; `check` says which
/// on its first line).
pub const CRITICAL: ExitCode = ExitCode::Usage;

/// Exit non-zero unless every target has a recent successful snapshot.
#[derive(Debug, Args)]
pub struct Check {
    /// The oldest a last success may be (such as 26h, 2d).
    #[arg(long, value_name = "DURATION", value_parser = super::parse_duration)]
    pub max_age: Duration,
    /// Paths to check, as given to freeze-and-snap or in [[snapshot]] (default: every
    /// configured one, or every target with a state file when none is configured).
    pub paths: Vec<PathBuf>,
    /// A Lightsail disk (or instance) to check, by name; repeatable.
    #[arg(long = "disk", value_name = "NAME")]
    pub disks: Vec<String>,
}

/// One target's verdict.
struct Verdict {
    target: String,
    age: Option<f64>,
    stale: Option<String>,
}

impl Check {
    /// Runs it.
    pub fn run(self, globals: &Globals) -> Result<ExitCode> {
        let settings = config::load(&globals.config_root)?;
        let dir = monitor::state_dir(&settings);
        let states = state::read_all(&dir)?;
        let now = now();
        let max = self.max_age.as_secs_f64();
        let mut wanted: Vec<String> = monitor::path_targets(&self.paths);
        if self.paths.is_empty() && self.disks.is_empty() {
            let configured: Vec<PathBuf> =
                settings.snapshots.iter().map(|e| e.path.clone()).collect();
            wanted = if configured.is_empty() {
                states.iter().map(|s| s.target.clone()).collect()
            } else {
                monitor::path_targets(&configured)
            };
        }
        let mut verdicts: Vec<Verdict> = wanted
            .iter()
            .map(|t| {
                let s = states.iter().find(|s| &s.target == t);
                verdict(t.clone(), s, now, max)
            })
            .collect();
        for d in &self.disks {
            let of_disk: Vec<_> = states
                .iter()
                .filter(|s| s.disk.as_deref() == Some(d.as_str()))
                .collect();
            // The disk is fresh if any target on it is (one snapshot covers them all).
            let best = of_disk.iter().max_by(|a, b| {
                let t = |s: &&&state::TargetState| s.last_success.as_ref().map_or(0.0, |x| x.time);
                t(a).total_cmp(&t(b))
            });
            let mut v = verdict(format!("disk {d}"), best.copied(), now, max);
            if best.is_none() {
                v.stale = Some(format!("no run recorded for disk {d}"));
            }
            verdicts.push(v);
        }
        let stale: Vec<&Verdict> = verdicts.iter().filter(|v| v.stale.is_some()).collect();
        let ok = !verdicts.is_empty() && stale.is_empty();
        let max_text = humantime::format_duration(self.max_age);
        // Scratch disks of a killed verify left alone (in use): said after the verdict, which
        // is about snapshots and stays as it is.
        let kept = crate::restore::scratch::read_kept(&dir);
        if globals.output == Output::Json {
            let targets: Vec<_> = verdicts
                .iter()
                .map(|v| {
                    json!({
                        "target": v.target,
                        "fresh": v.stale.is_none(),
                        "last_success_age_seconds": v.age.map(f64::round),
                        "reason": v.stale,
                    })
                })
                .collect();
            let mut doc = json!({
                "ok": ok,
                "max_age_seconds": max,
                "targets": targets,
            });
            if !kept.is_empty() {
                doc["scratch_leftovers"] = json!(kept);
            }
            super::print_json(doc)?;
        } else if verdicts.is_empty() {
            println!(
                "CRITICAL: nothing to check: no target configured and no run recorded in {}",
                dir.display()
            );
        } else if ok {
            println!(
                "OK: {} target(s) snapshotted within {max_text}",
                verdicts.len()
            );
        } else {
            println!(
                "CRITICAL: {} of {} target(s) without a snapshot within {max_text}",
                stale.len(),
                verdicts.len()
            );
            for v in &stale {
                println!("{}: {}", v.target, v.stale.as_deref().unwrap_or_default());
            }
        }
        if globals.output != Output::Json {
            for k in &kept {
                println!("left by verify: {k}");
            }
        }
        Ok(if ok { ExitCode::Success } else { CRITICAL })
    }
}

fn verdict(target: String, s: Option<&state::TargetState>, now: f64, max: f64) -> Verdict {
    let last = s.and_then(|s| s.last_success.as_ref());
    let age = last.map(|x| (now - x.time).max(0.0));
    let stale = match (s, last, age) {
        (None, _, _) => Some("no run recorded".to_string()),
        (Some(s), None, _) => Some(format!(
            "never succeeded ({} failure(s) in a row)",
            s.consecutive_failures
        )),
        (Some(s), Some(x), Some(a)) if a > max => Some(format!(
            "last success {} ago ({}), {} failure(s) since",
            ago(now, x.time),
            x.time_utc,
            s.consecutive_failures
        )),
        _ => None,
    };
    Verdict { target, age, stale }
}
