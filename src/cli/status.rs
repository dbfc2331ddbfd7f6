//! `lightsnap status`: what the state files say of each run target — its last success and how
//! old it is, its last attempt and how it ended, the newest snapshot lightsnap knows of; with
//! `--refresh`, also the newest snapshot Lightsail has of each that is this instance's (its
//! `lightsnap:owner` tag; read-only calls).

use anyhow::Result;
use clap::Args;
use serde::Serialize;

use super::{Globals, Output};
use crate::cloud::lightsail::{Lightsail, SdkLightsail, SnapshotInfo, SnapshotKind};
use crate::cloud::owner::Owner;
use crate::config;
use crate::exit_code::ExitCode;
use crate::monitor::{self, state, state::TargetState};

/// Show the last success and the last attempt of each snapshot target.
#[derive(Debug, Args)]
pub struct Status {
    /// Also ask Lightsail for the newest snapshot of each target (read-only calls).
    #[arg(long)]
    pub refresh: bool,
    /// The AWS region for --refresh (default: AWS_REGION, the profile, or the instance
    /// metadata).
    #[arg(long, requires = "refresh")]
    pub region: Option<String>,
    /// Drop what is recorded of PATH (a mistyped path, or one no longer snapshotted):
    /// `status` and `check` forget it. Repeatable.
    #[arg(long, value_name = "PATH")]
    pub forget: Vec<std::path::PathBuf>,
    /// Every target with a state file, not only those watched (the configured ones and
    /// those that succeeded within the last 30 days).
    #[arg(long)]
    pub all: bool,
}

/// The `status` document.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct StatusDoc {
    /// The directory of the state files.
    pub(crate) state_dir: std::path::PathBuf,
    /// One per state file watched (or every one, with `--all`).
    pub(crate) targets: Vec<StatusTarget>,
    /// `--refresh`: the scratch disks of restore rehearsals that exist, every instance's.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Vec<crate::restore::scratch::ScratchDisk>")]
    pub(crate) scratch_disks: Option<Vec<crate::restore::scratch::ScratchDisk>>,
    /// `--refresh`: the disks `restore --mount` made for this instance that are still there.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Vec<crate::restore::restored::RestoredDisk>")]
    pub(crate) restored_disks: Option<Vec<crate::restore::restored::RestoredDisk>>,
    /// Scratch disks a killed verify left that the last search left alone (in use), when
    /// there are any.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Vec<String>")]
    pub(crate) scratch_leftovers: Option<Vec<String>>,
}

/// One target in `status`: its state file, and what follows from it.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct StatusTarget {
    /// The state file's contents.
    #[serde(flatten)]
    pub(crate) state: TargetState,
    /// Seconds since the last success (`null`: it never succeeded).
    pub(crate) last_success_age_seconds: Option<f64>,
    /// `--refresh`: the newest snapshot of it Lightsail has that is this instance's (`null`:
    /// none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) lightsail_newest: Option<Option<LightsailNewest>>,
}

/// The newest snapshot of a target in Lightsail.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct LightsailNewest {
    /// Its name.
    pub(crate) name: String,
    /// Its state.
    pub(crate) state: String,
    /// When it was taken, seconds since the epoch.
    pub(crate) created_at: Option<f64>,
}

/// Seconds since the epoch, now.
pub(super) fn now() -> f64 {
    state::now().0
}

/// How long ago `time` was, for people: `3h 2m`.
pub(super) fn ago(now: f64, time: f64) -> String {
    let secs = (now - time).max(0.0) as u64;
    humantime::format_duration(std::time::Duration::from_secs(secs)).to_string()
}

impl Status {
    /// Runs it.
    pub fn run(self, globals: &Globals) -> Result<ExitCode> {
        let settings = config::load(&globals.config_root)?;
        let dir = monitor::state_dir(&settings);
        if !self.forget.is_empty() {
            return forget(&dir, &self.forget);
        }
        let all = state::read_all(&dir)?;
        let states: Vec<TargetState> = if self.all {
            all
        } else {
            let configured: Vec<std::path::PathBuf> =
                settings.snapshots.iter().map(|e| e.path.clone()).collect();
            state::watched(&all, &monitor::path_targets(&configured), now())
                .into_iter()
                .map(|t| {
                    all.iter()
                        .find(|s| s.target == t)
                        .cloned()
                        .unwrap_or(TargetState {
                            target: t,
                            ..TargetState::default()
                        })
                })
                .collect()
        };
        let (newest, (scratch, restored)) = if self.refresh {
            crate::runtime()?.block_on(async {
                let api = SdkLightsail::from_env(
                    self.region.clone().or(settings.region.clone()),
                    settings.profile.clone(),
                )
                .await?;
                let owner = super::owner::this_owner(&api).await?;
                let newest = newest_snapshots(&api, &owner, &states).await?;
                let restored = crate::restore::restored::listing(&api, &owner).await?;
                Ok::<_, anyhow::Error>((
                    newest,
                    (crate::restore::scratch::listing(&api).await?, restored),
                ))
            })?
        } else {
            (vec![None; states.len()], (Vec::new(), Vec::new()))
        };
        // Scratch disks of a killed verify that the last search left alone (in use).
        let kept = crate::restore::scratch::read_kept(&dir);
        let now = now();
        if globals.output == Output::Json {
            let targets: Vec<StatusTarget> = states
                .iter()
                .zip(&newest)
                .map(|(s, n)| StatusTarget {
                    state: s.clone(),
                    last_success_age_seconds: s
                        .last_success
                        .as_ref()
                        .map(|x| (now - x.time).max(0.0).round()),
                    lightsail_newest: self.refresh.then(|| {
                        n.as_ref().map(|i| LightsailNewest {
                            name: i.name.clone(),
                            state: i.state.clone(),
                            created_at: i.created_at,
                        })
                    }),
                })
                .collect();
            let doc = StatusDoc {
                state_dir: dir.clone(),
                targets,
                scratch_disks: self.refresh.then_some(scratch),
                restored_disks: self.refresh.then_some(restored),
                scratch_leftovers: (!kept.is_empty()).then_some(kept),
            };
            super::print_json(doc)?;
            return Ok(ExitCode::Success);
        }
        if states.is_empty() {
            println!("no snapshot run recorded in {}", dir.display());
        }
        for (s, n) in states.iter().zip(&newest) {
            println!("{}", line(s, now));
            if let Some(v) = &s.last_verification {
                println!(
                    "  last verification {}: snapshot {} {}{}",
                    v.time_utc,
                    v.snapshot,
                    v.result,
                    if v.message.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", v.message)
                    }
                );
            }
            if let Some(i) = n {
                println!("  newest in Lightsail: {} ({})", i.name, i.state);
            } else if self.refresh {
                println!("  newest in Lightsail: none found");
            }
        }
        for d in &restored {
            println!("{}", crate::restore::restored::listing_line(d));
        }
        for d in &scratch {
            println!("{}", crate::restore::scratch::listing_line(d));
        }
        for k in &kept {
            println!("left by verify: {k}");
        }
        Ok(ExitCode::Success)
    }
}

/// `status --forget PATH...`: each path's state file removed, as given and as resolved.
fn forget(dir: &std::path::Path, paths: &[std::path::PathBuf]) -> Result<ExitCode> {
    let _lock = state::lock(dir);
    for (given, resolved) in paths.iter().zip(monitor::path_targets(paths)) {
        let given_text = given.display().to_string();
        let mut dropped = state::forget(dir, &resolved)?;
        if given_text != resolved {
            dropped |= state::forget(dir, &given_text)?;
        }
        if dropped {
            println!("{resolved}: forgotten");
        } else {
            println!("{resolved}: nothing recorded");
        }
    }
    Ok(ExitCode::Success)
}

/// One target's line.
fn line(s: &TargetState, now: f64) -> String {
    let what = match &s.disk {
        Some(d) => format!("{} ({} {d})", s.target, s.kind),
        None => s.target.clone(),
    };
    let success = match &s.last_success {
        Some(x) => format!(
            "last success {} ({} ago), snapshot {} ({})",
            x.time_utc,
            ago(now, x.time),
            x.snapshot,
            x.consistency
        ),
        None => "never succeeded".to_string(),
    };
    let attempt = match &s.last_attempt {
        Some(a) if a.result == "success" => format!("last attempt {}: success", a.time_utc),
        Some(a) => format!(
            "last attempt {}: FAILED (exit {}): {}; {} failure(s) in a row",
            a.time_utc, a.exit_code, a.message, s.consecutive_failures
        ),
        None => "no run recorded".to_string(),
    };
    format!("{what}: {success}; {attempt}")
}

/// The newest snapshot of `owner`'s that Lightsail has of each target whose disk is known.
async fn newest_snapshots<A: Lightsail>(
    api: &A,
    owner: &Owner,
    states: &[TargetState],
) -> Result<Vec<Option<SnapshotInfo>>> {
    let mut disks: Option<Vec<SnapshotInfo>> = None;
    let mut instances: Option<Vec<SnapshotInfo>> = None;
    let mut out = Vec::new();
    for s in states {
        let Some(disk) = &s.disk else {
            out.push(None);
            continue;
        };
        let (kind, cache) = if s.kind == "instance" {
            (SnapshotKind::Instance, &mut instances)
        } else {
            (SnapshotKind::Disk, &mut disks)
        };
        if cache.is_none() {
            *cache = Some(api.get_snapshots(kind).await?);
        }
        let newest = cache
            .as_ref()
            .into_iter()
            .flatten()
            .filter(|i| i.from.as_deref() == Some(disk.as_str()) && owner.owns(i))
            .max_by(|a, b| {
                a.created_at
                    .unwrap_or(0.0)
                    .total_cmp(&b.created_at.unwrap_or(0.0))
            })
            .cloned();
        out.push(newest);
    }
    Ok(out)
}
