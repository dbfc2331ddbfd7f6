//! `lightsnap check -w DURATION -c DURATION [PATH|--disk NAME]...`: a freshness check in the
//! monitoring-plugins (Nagios, Icinga, Naemon, Sensu) style. Exit 0 and a first line starting
//! `OK` when every target has a success younger than the warning threshold; 1 (`WARNING`)
//! when one is older than that but not the critical one; 2 (`CRITICAL`) past the critical
//! one; 3 (`UNKNOWN`) when the check itself could not be made — a bad command line, a
//! configuration or state it cannot read, nothing to check. The first line carries
//! performance data (`| 'age_/data'=3600s;90000;176400;0`), then one line per target not OK.
//! Reads the state files only: no network, no lock, safe to run as often as a monitoring
//! system likes. `--max-age` is the critical threshold's older name.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use serde::Serialize;

use super::status::{ago, now};
use super::{Globals, Output};
use crate::config;
use crate::exit_code::ExitCode;
use crate::monitor::{self, state};

/// WARNING: 1 (lightsnap's "unexpected failure" number elsewhere).
pub const WARNING: ExitCode = ExitCode::Failure;

/// CRITICAL: 2, what Nagios and the monitoring plugins read as such (the number lightsnap's
/// other commands use for a usage error; `check` says which on its first line, and its own
/// usage errors are UNKNOWN).
pub const CRITICAL: ExitCode = ExitCode::Usage;

/// UNKNOWN: 3, the check could not be made (lightsnap's "not found" number elsewhere).
pub const UNKNOWN: ExitCode = ExitCode::NotFound;

/// The exit code of UNKNOWN, for a command line clap refused (`main` has no [`Check`] then).
pub const UNKNOWN_CODE: i32 = 3;

/// Exit non-zero unless every target has a recent successful snapshot.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("threshold").required(true).multiple(true).args(["warning", "critical"]))]
pub struct Check {
    /// WARNING (exit 1) when a target's last success is older than this (such as 25h).
    #[arg(short = 'w', long, value_name = "DURATION", value_parser = super::parse_duration)]
    pub warning: Option<Duration>,
    /// CRITICAL (exit 2) when a target's last success is older than this (such as 26h, 2d).
    #[arg(
        short = 'c',
        long,
        visible_alias = "max-age",
        value_name = "DURATION",
        value_parser = super::parse_duration
    )]
    pub critical: Option<Duration>,
    /// Paths to check, as given to freeze-and-snap or in [[snapshot]] (default: the
    /// configured ones and those that ever succeeded, as `status` lists them).
    pub paths: Vec<PathBuf>,
    /// A Lightsail disk (or instance) to check, by name; repeatable.
    #[arg(long = "disk", value_name = "NAME")]
    pub disks: Vec<String>,
}

/// The `check` document: the verdict.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct CheckDoc {
    /// Whether every target is fresh.
    pub(crate) ok: bool,
    /// `OK`, `WARNING` or `CRITICAL`.
    #[schemars(extend("enum" = ["OK", "WARNING", "CRITICAL"]))]
    pub(crate) status: &'static str,
    /// The limit of CRITICAL, else of WARNING, in seconds.
    pub(crate) max_age_seconds: Option<f64>,
    /// `-w`, in seconds.
    pub(crate) warning_seconds: Option<f64>,
    /// `-c` (`--max-age`), in seconds.
    pub(crate) critical_seconds: Option<f64>,
    /// Each target's verdict.
    pub(crate) targets: Vec<CheckTarget>,
    /// Scratch disks a killed verify left that are in use, when there are any.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Vec<String>")]
    pub(crate) scratch_leftovers: Option<Vec<String>>,
}

/// One target's verdict in `check`'s document.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct CheckTarget {
    /// The path, or `disk NAME`.
    pub(crate) target: String,
    /// Whether its last success is younger than the limits.
    pub(crate) fresh: bool,
    /// `OK`, `WARNING` or `CRITICAL`.
    #[schemars(extend("enum" = ["OK", "WARNING", "CRITICAL"]))]
    pub(crate) status: &'static str,
    /// Seconds since its last success (`null`: never).
    pub(crate) last_success_age_seconds: Option<f64>,
    /// Why it is not fresh.
    pub(crate) reason: Option<String>,
}

/// The `check` document when it could not check (UNKNOWN).
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct CheckUnknown {
    /// Always false.
    #[schemars(extend("const" = false))]
    pub(crate) ok: bool,
    /// `UNKNOWN`.
    #[schemars(extend("const" = "UNKNOWN"))]
    pub(crate) status: &'static str,
    /// Why it could not check.
    pub(crate) error: String,
}

impl CheckUnknown {
    /// UNKNOWN, and why.
    pub(crate) fn new(error: String) -> Self {
        Self {
            ok: false,
            status: "UNKNOWN",
            error,
        }
    }
}

/// How a target stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Ok,
    Warning,
    Critical,
}

/// One target's verdict.
struct Verdict {
    target: String,
    age: Option<f64>,
    level: Level,
    why: Option<String>,
}

impl Check {
    /// Runs it: whatever goes wrong is UNKNOWN, never CRITICAL.
    pub fn run(self, globals: &Globals) -> Result<ExitCode> {
        match self.check(globals) {
            Ok(code) => Ok(code),
            Err(e) => {
                if globals.output == Output::Json {
                    super::print_json(CheckUnknown::new(format!("{e:#}")))?;
                } else {
                    println!("UNKNOWN: {}", one_line(&format!("{e:#}")));
                }
                Ok(UNKNOWN)
            }
        }
    }

    fn check(&self, globals: &Globals) -> Result<ExitCode> {
        let settings = config::load(&globals.config_root)?;
        let dir = monitor::state_dir(&settings);
        let states = state::read_all(&dir)?;
        let now = now();
        let warn = self.warning.map(|d| d.as_secs_f64());
        let crit = self.critical.map(|d| d.as_secs_f64());
        let mut wanted: Vec<String> = monitor::path_targets(&self.paths);
        if self.paths.is_empty() && self.disks.is_empty() {
            let configured: Vec<PathBuf> =
                settings.snapshots.iter().map(|e| e.path.clone()).collect();
            wanted = state::watched(&states, &monitor::path_targets(&configured), now);
        }
        let mut verdicts: Vec<Verdict> = wanted
            .iter()
            .map(|t| {
                let s = states.iter().find(|s| &s.target == t);
                verdict(t.clone(), s, now, warn, crit)
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
            let mut v = verdict(format!("disk {d}"), best.copied(), now, warn, crit);
            if best.is_none() {
                v.why = Some(format!("no run recorded for disk {d}"));
            }
            verdicts.push(v);
        }
        if verdicts.is_empty() {
            anyhow::bail!(
                "nothing to check: no target configured and no success recorded in {}; name PATHs or --disk",
                dir.display()
            );
        }
        let level = verdicts.iter().map(|v| v.level).max().unwrap_or(Level::Ok);
        let perf = perfdata(&verdicts, warn, crit);
        // Scratch disks of a killed verify left alone (in use): said after the verdict, which
        // is about snapshots and stays as it is.
        let kept = crate::restore::scratch::read_kept(&dir);
        if globals.output == Output::Json {
            let targets: Vec<CheckTarget> = verdicts
                .iter()
                .map(|v| CheckTarget {
                    target: v.target.clone(),
                    fresh: v.level == Level::Ok,
                    status: name(v.level),
                    last_success_age_seconds: v.age.map(f64::round),
                    reason: v.why.clone(),
                })
                .collect();
            let doc = CheckDoc {
                ok: level == Level::Ok,
                status: name(level),
                max_age_seconds: crit.or(warn),
                warning_seconds: warn,
                critical_seconds: crit,
                targets,
                scratch_leftovers: (!kept.is_empty()).then(|| kept.clone()),
            };
            super::print_json(doc)?;
        } else {
            let bad: Vec<&Verdict> = verdicts.iter().filter(|v| v.level != Level::Ok).collect();
            let within = self
                .warning
                .or(self.critical)
                .map(|d| humantime::format_duration(d).to_string())
                .unwrap_or_default();
            if bad.is_empty() {
                println!(
                    "OK: {} target(s) snapshotted within {within} | {perf}",
                    verdicts.len()
                );
            } else {
                let limit = match level {
                    Level::Critical => self.critical.or(self.warning),
                    _ => self.warning,
                }
                .map(|d| humantime::format_duration(d).to_string())
                .unwrap_or_default();
                let n = verdicts.iter().filter(|v| v.level == level).count();
                println!(
                    "{}: {n} of {} target(s) without a snapshot within {limit} | {perf}",
                    name(level),
                    verdicts.len()
                );
                for v in &bad {
                    println!("{}: {}", v.target, v.why.as_deref().unwrap_or_default());
                }
            }
        }
        if globals.output != Output::Json {
            for k in &kept {
                println!("left by verify: {k}");
            }
        }
        Ok(match level {
            Level::Ok => ExitCode::Success,
            Level::Warning => WARNING,
            Level::Critical => CRITICAL,
        })
    }
}

fn name(level: Level) -> &'static str {
    match level {
        Level::Ok => "OK",
        Level::Warning => "WARNING",
        Level::Critical => "CRITICAL",
    }
}

/// An error on one line (a plugin's output is its first line).
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Performance data, one `'age_TARGET'=AGEs;WARN;CRIT;0` per target (the age of its last
/// success; empty for none, as the plugin guidelines write an unknown value: `U`).
fn perfdata(verdicts: &[Verdict], warn: Option<f64>, crit: Option<f64>) -> String {
    let num = |x: Option<f64>| {
        x.map(|v| format!("{}", v.round() as u64))
            .unwrap_or_default()
    };
    verdicts
        .iter()
        .map(|v| {
            // Labels are quoted; a quote in one is doubled, `=` left out.
            let label = format!("age_{}", v.target)
                .replace('\'', "''")
                .replace('=', "_");
            let value = v
                .age
                .map(|a| format!("{}s", a.round() as u64))
                .unwrap_or_else(|| "U".into());
            format!("'{label}'={value};{};{};0", num(warn), num(crit))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn verdict(
    target: String,
    s: Option<&state::TargetState>,
    now: f64,
    warn: Option<f64>,
    crit: Option<f64>,
) -> Verdict {
    let last = s.and_then(|s| s.last_success.as_ref());
    let age = last.map(|x| (now - x.time).max(0.0));
    // Never a success is as bad as can be: CRITICAL when a critical threshold is set.
    let worst = if crit.is_some() {
        Level::Critical
    } else {
        Level::Warning
    };
    let (level, why) = match (s, last, age) {
        (None, _, _) => (worst, Some("no run recorded".to_string())),
        (Some(s), None, _) => (
            worst,
            Some(format!(
                "never succeeded ({} failure(s) in a row)",
                s.consecutive_failures
            )),
        ),
        (Some(s), Some(x), Some(a)) => {
            let level = if crit.is_some_and(|c| a > c) {
                Level::Critical
            } else if warn.is_some_and(|w| a > w) {
                Level::Warning
            } else {
                Level::Ok
            };
            let why = (level != Level::Ok).then(|| {
                format!(
                    "last success {} ago ({}), {} failure(s) since",
                    ago(now, x.time),
                    x.time_utc,
                    s.consecutive_failures
                )
            });
            (level, why)
        }
        _ => (worst, None),
    };
    Verdict {
        target,
        age,
        level,
        why,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state_aged(target: &str, age: f64, now: f64) -> state::TargetState {
        state::TargetState {
            target: target.into(),
            last_success: Some(state::Success {
                time: now - age,
                time_utc: "t".into(),
                snapshot: "s".into(),
                consistency: "frozen".into(),
                window_ms: 1.0,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn thresholds_give_ok_warning_critical() {
        let now = 1_000_000.0;
        let (w, c) = (Some(100.0), Some(200.0));
        let level =
            |age: f64| verdict("/d".into(), Some(&state_aged("/d", age, now)), now, w, c).level;
        assert_eq!(level(50.0), Level::Ok);
        assert_eq!(level(150.0), Level::Warning);
        assert_eq!(level(250.0), Level::Critical);
        // Warning alone: never critical.
        let v = verdict(
            "/d".into(),
            Some(&state_aged("/d", 250.0, now)),
            now,
            w,
            None,
        );
        assert_eq!(v.level, Level::Warning);
        assert_eq!(verdict("/x".into(), None, now, w, c).level, Level::Critical);
    }

    #[test]
    fn perfdata_follows_the_plugin_guidelines() {
        let now = 1_000_000.0;
        let v = vec![
            verdict(
                "/data".into(),
                Some(&state_aged("/data", 3600.4, now)),
                now,
                Some(90000.0),
                Some(176400.0),
            ),
            verdict("/it's".into(), None, now, None, Some(10.0)),
        ];
        assert_eq!(
            perfdata(&v, Some(90000.0), Some(176400.0)),
            "'age_/data'=3600s;90000;176400;0 'age_/it''s'=U;90000;176400;0"
        );
    }
}
