//! `lightsnap run`: what the systemd timer and deploy hooks call — snapshot every path the
//! configuration names (`[[snapshot]]`), as one consistency group, then apply `[retention]`
//! to the disks it snapshotted, in this region and the copy region, and only to this instance's
//! snapshots of them (their `lightsnap:owner` tag: another instance's snapshots of a same-named
//! disk, copies arriving from other regions, and untagged snapshots are never touched).

use anyhow::Result;
use clap::Args;

use super::prune::{self, Pruned};
use super::snap_args::{conclude, report_json, SnapArgs};
use super::{Globals, Output};
use crate::budget::{self, Deadline};
use crate::cloud::lightsail::{Lightsail, SnapshotInfo, SnapshotKind, Source};
use crate::exit_code::{ExitCode, Failure};
use crate::fail;
use crate::retention::{self, Rule, Scope};
use crate::signals::Signals;
use crate::snap::{self, Report};

/// Snapshot what the configuration names, then prune by its retention.
#[derive(Debug, Args)]
pub struct Run {
    /// Options shared with freeze-and-snap.
    #[command(flatten)]
    pub snap: SnapArgs,
}

impl Run {
    /// Runs it.
    pub fn run(self, globals: &Globals) -> Result<ExitCode> {
        let started = std::time::Instant::now();
        let (opts, settings) = self.snap.options(globals, Vec::new(), None)?;
        if settings.snapshots.is_empty() {
            fail!(
                ExitCode::Usage,
                "the configuration names nothing to snapshot: add [[snapshot]] path = \"/data\" to /etc/lightsnap/config.toml"
            );
        }
        // The waits must fit in the run's budget (and so in the unit's TimeoutStartSec=)
        // before anything is done.
        budget::check_run(
            settings.run_budget,
            &budget::Before {
                auto_snapshot_wait: opts.auto_snapshot_wait,
                hooks: crate::hooks::discover(&opts.hook_dir)?.len(),
                hook_timeout: opts.hook_timeout,
                freeze_timeout: opts.freeze_timeout,
            },
        )?;
        let deadline = Deadline::since(started, settings.run_budget);
        let opts = snap::Options {
            paths: settings.snapshots.iter().map(|e| e.path.clone()).collect(),
            ..opts
        };
        let output = globals.output;
        let snap = &self.snap;
        // The waits after the snapshot take what is left of the budget, at most.
        let capped = || SnapArgs {
            wait_timeout: deadline.cap(snap.wait_timeout),
            ..snap.clone()
        };
        snap.freeze_and_snap(output, &opts, &settings, async |api, report, signals| {
            let waited = capped()
                .report_and_wait(api, &report, output, signals)
                .await;
            let (mut doc, mut result) = report_json(&report, waited)?;
            // Scratch disks a killed verify left, after the snapshots (never delaying them).
            if let Some(l) = super::verify::leftovers_at_run(api, &settings, &opts.run_dir).await {
                if !l.removed.is_empty() || !l.kept.is_empty() {
                    doc["scratch_leftovers"] = serde_json::to_value(&l)?;
                }
            }
            capped()
                .copy(
                    api,
                    &report,
                    &settings,
                    output,
                    signals,
                    &mut doc,
                    &mut result,
                )
                .await;
            let rule = Rule::from_config(&settings.retention);
            if rule != Rule::default() {
                let (mut pruned, mut pruning) =
                    apply_retention(api, rule, &report, output, signals).await;
                // The copies in the copy region are a series of their own there.
                if let Some(to) = snap.copy_region(&settings) {
                    let copies = match api.for_region(&to) {
                        Ok(target) => {
                            apply_retention(&target, rule, &report, output, signals).await
                        }
                        Err(e) => (
                            Pruned {
                                deleted: Vec::new(),
                                failed: Vec::new(),
                            },
                            Err(e),
                        ),
                    };
                    pruned.deleted.extend(copies.0.deleted);
                    pruned.failed.extend(copies.0.failed);
                    pruning = pruning.and(copies.1);
                }
                doc["pruned"] = serde_json::to_value(&pruned)?;
                if let Err(e) = pruning {
                    let taken: Vec<&str> =
                        report.snapshots.iter().map(|s| s.name.as_str()).collect();
                    let e = Failure::new(
                        ExitCode::Partial,
                        format!(
                            "snapshot {} taken, but the retention could not be applied: {e:#}",
                            taken.join(", ")
                        ),
                    );
                    // A failed wait says more (about the snapshot itself): it keeps its code.
                    if result.is_ok() {
                        result = Err(e.into());
                    } else {
                        tracing::warn!("{e}");
                    }
                }
            }
            if let Some((verified, verifying)) = super::verify::scheduled(
                api,
                &settings,
                &report,
                &opts.run_dir,
                output,
                signals,
                deadline,
            )
            .await
            {
                doc["verified"] = serde_json::Value::Array(verified);
                if let Err(e) = verifying {
                    if result.is_ok() {
                        result = Err(e);
                    } else {
                        tracing::warn!("{e:#}");
                    }
                }
            }
            conclude(doc, result, output)
        })
    }
}

/// `[retention]` over this instance's snapshots (the owner of the run's own) of the disks this
/// run snapshotted.
async fn apply_retention<A: Lightsail>(
    api: &A,
    rule: Rule,
    report: &Report,
    output: Output,
    signals: &mut Signals,
) -> (Pruned, Result<()>) {
    let empty = Pruned {
        deleted: Vec::new(),
        failed: Vec::new(),
    };
    let all = match api.get_snapshots(SnapshotKind::Disk).await {
        Ok(all) => all,
        Err(e) => return (empty, Err(e.into())),
    };
    let Some(owner) = report.owner.clone() else {
        tracing::warn!("retention not applied: the run's snapshots name no owner");
        return (empty, Ok(()));
    };
    let disks = disks_of(report, &all);
    let ours: Vec<SnapshotInfo> = all
        .into_iter()
        .filter(|s| s.from.as_ref().is_some_and(|d| disks.contains(d)))
        .collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let doomed = retention::select(&ours, rule, None, &Scope::Owner(owner), now);
    prune::delete(api, &doomed, false, output, signals).await
}

/// The disks (as snapshots name them) a run's snapshots are of: what Lightsail says each new
/// snapshot is from, and the disks the run named.
fn disks_of(report: &Report, all: &[SnapshotInfo]) -> Vec<String> {
    let mut disks: Vec<String> = Vec::new();
    for taken in &report.snapshots {
        let from = all
            .iter()
            .find(|s| s.name == taken.name)
            .and_then(|s| s.from.clone());
        let named = match &taken.source {
            Source::Disk(d) => Some(d.clone()),
            Source::SystemVolume(i) => Some(format!("{i}-system")),
            Source::Instance(_) => None,
        };
        for d in [from, named].into_iter().flatten() {
            if !disks.contains(&d) {
                disks.push(d);
            }
        }
    }
    disks
}
