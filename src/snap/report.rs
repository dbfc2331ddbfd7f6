//! After the window: the report of what was taken, or the error with the exit code its
//! outcome calls for — checking with the API, where a call's outcome is ambiguous, whether its
//! snapshot exists anyway (and labelling it `unverified`).

use std::path::PathBuf;

use anyhow::Result;
use serde::Serialize;

use super::plan::{Consistency, CONSISTENCY_TAG};
use super::window::{Calls, Outcome};
use super::{Options, Plan};
use crate::cloud::lightsail::{
    ApiError, ApiErrorKind, Lightsail, SnapshotInfo, SnapshotRequest, Source,
};
use crate::cloud::owner::Owner;
use crate::exit_code::ExitCode;
use crate::fail;
use crate::signals;

#[cfg(test)]
mod tests;

/// One snapshot's line in the report.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct SnapshotReport {
    /// Snapshot name.
    pub name: String,
    /// What it is of.
    pub source: Source,
    /// The mount points of the filesystems on it.
    pub mount_points: Vec<PathBuf>,
    /// Their types.
    pub fstypes: Vec<String>,
    /// How it was made consistent.
    pub consistency: Consistency,
    /// Operation id.
    pub operation_id: Option<String>,
}

/// What a successful run did.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Report {
    /// The snapshots taken.
    pub snapshots: Vec<SnapshotReport>,
    /// How long writes were paused, in milliseconds.
    pub window_ms: f64,
    /// Post-thaw hooks that failed after the snapshot was taken: the run fails (the
    /// snapshot stays, and is reported).
    #[serde(skip)]
    pub post_thaw_failure: Option<String>,
    /// Whose the snapshots are (their `lightsnap:owner` tag): what `run`'s retention keeps to.
    #[serde(skip)]
    pub owner: Option<Owner>,
}

impl Report {
    /// Each snapshot taken, as a request to follow or copy it (no tags).
    pub fn requests(&self) -> Vec<SnapshotRequest> {
        self.snapshots
            .iter()
            .map(|s| SnapshotRequest {
                source: s.source.clone(),
                name: s.name.clone(),
                tags: Vec::new(),
            })
            .collect()
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for s in &self.snapshots {
            let how = match s.consistency {
                Consistency::Frozen => format!("frozen, writes paused {:.1} ms", self.window_ms),
                Consistency::Unmounted => format!(
                    "unmounted (could not freeze), offline {:.1} ms",
                    self.window_ms
                ),
                Consistency::Readonly => "read-only, no freeze needed".to_string(),
                Consistency::Crash => "NOT paused: crash-consistent only".to_string(),
                Consistency::Unverified => "unverified".to_string(),
            };
            let on: Vec<String> = s
                .mount_points
                .iter()
                .zip(&s.fstypes)
                .map(|(m, t)| format!("{} ({t})", m.display()))
                .collect();
            writeln!(
                f,
                "snapshot {} of {} from {}: {how}",
                s.name,
                s.source,
                on.join(", ")
            )?;
        }
        Ok(())
    }
}

/// Reads the window's outcome: the report, or the error with the right exit code.
pub(super) async fn report<A: Lightsail>(
    api: &A,
    opts: &Options,
    plan: &Plan,
    outcome: Outcome,
) -> Result<Report> {
    let window_ms = outcome.window.as_secs_f64() * 1000.0;
    tracing::debug!("window: {window_ms:.3} ms");
    let report_of = |i: usize, operation_id: Option<String>| {
        let s = &plan.snapshots[i];
        let fss = s.filesystems.iter().map(|&f| &plan.filesystems[f]);
        SnapshotReport {
            name: s.request.name.clone(),
            source: s.request.source.clone(),
            mount_points: fss
                .clone()
                .map(|f| f.located.mount.mount_point.clone())
                .collect(),
            fstypes: fss.map(|f| f.located.mount.fstype.clone()).collect(),
            consistency: outcome.consistency[i],
            operation_id,
        }
    };
    match outcome.calls {
        Calls::NotMade(e) => Err(e.context("no snapshot was taken")),
        Calls::Signal(code) => {
            let unverified = mark_unverified(api, &outcome.requests).await;
            fail!(
                code,
                "stopped by {} after thawing; {}",
                signals::name(code),
                unverified_note(&unverified)
            )
        }
        Calls::Deadline => deadline_passed(api, opts, &outcome.requests).await,
        Calls::Returned(results) => {
            let mut snapshots = Vec::new();
            let mut errors: Vec<ApiError> = Vec::new();
            let mut ambiguous = Vec::new();
            for (i, result) in results.into_iter().enumerate() {
                match result {
                    Ok(op) => snapshots.push(report_of(i, op.id)),
                    // The name was free before the freeze: our own earlier attempt landed,
                    // and it was sent inside the window.
                    Err(e) if e.name_exists() => snapshots.push(report_of(i, None)),
                    Err(e) => {
                        if e.is_ambiguous() {
                            ambiguous.push(outcome.requests[i].clone());
                        }
                        errors.push(e);
                    }
                }
            }
            let Some(first) = errors.into_iter().next() else {
                return Ok(Report {
                    snapshots,
                    window_ms,
                    post_thaw_failure: None,
                    owner: plan
                        .snapshots
                        .iter()
                        .find_map(|s| Owner::of_tags(&s.request.tags)),
                });
            };
            // The SDK's own operation timeout is the deadline too (it is set to the time left):
            // whichever fires first, it is the same event.
            if snapshots.is_empty() && first.kind == ApiErrorKind::Timeout {
                return deadline_passed(api, opts, &outcome.requests).await;
            }
            let unverified = mark_unverified(api, &ambiguous).await;
            if !snapshots.is_empty() || !unverified.is_empty() {
                let taken: Vec<&str> = snapshots.iter().map(|s| s.name.as_str()).collect();
                fail!(
                    ExitCode::Partial,
                    "{first}; taken: {}; {}",
                    if taken.is_empty() {
                        "none".to_string()
                    } else {
                        taken.join(", ")
                    },
                    unverified_note(&unverified)
                );
            }
            let advice = first.advice();
            Err(anyhow::Error::new(first).context(format!("no snapshot was taken; {advice}")))
        }
    }
}

/// The freeze deadline passed with the calls unanswered: the filesystems are thawed; says
/// whether the snapshots landed anyway (and labels them `unverified`).
async fn deadline_passed<A: Lightsail>(
    api: &A,
    opts: &Options,
    requests: &[SnapshotRequest],
) -> Result<Report> {
    let unverified = mark_unverified(api, requests).await;
    fail!(
        ExitCode::DeadlineExceeded,
        "Lightsail did not answer within --freeze-timeout {}, so the filesystem was thawed and the call abandoned; {}; raise --freeze-timeout or check the network",
        humantime::format_duration(opts.freeze_timeout),
        unverified_note(&unverified)
    )
}

/// The snapshot a request makes, if it exists: a disk snapshot, or an instance snapshot.
pub async fn find_snapshot<A: Lightsail>(
    api: &A,
    request: &SnapshotRequest,
) -> Result<Option<SnapshotInfo>, ApiError> {
    api.get_snapshot(request.source.kind(), &request.name).await
}

/// After an abandoned or failed call: asks whether each snapshot exists anyway and, where it
/// does, relabels it `unverified` (it may have been taken after the thaw). Returns their names.
async fn mark_unverified<A: Lightsail>(api: &A, requests: &[SnapshotRequest]) -> Vec<String> {
    let mut found = Vec::new();
    for r in requests {
        match find_snapshot(api, r).await {
            Ok(Some(_)) => {
                let tag = [(
                    CONSISTENCY_TAG.to_string(),
                    Consistency::Unverified.as_str().to_string(),
                )];
                if let Err(e) = api.tag_resource(&r.name, &tag).await {
                    tracing::warn!("could not tag {} as unverified: {e}", r.name);
                }
                found.push(r.name.clone());
            }
            Ok(None) => {}
            Err(e) => tracing::warn!("could not check whether snapshot {} exists: {e}", r.name),
        }
    }
    found
}

fn unverified_note(names: &[String]) -> String {
    if names.is_empty() {
        "no snapshot was taken".to_string()
    } else {
        format!(
            "snapshot {} exists but may have been taken after the thaw: tagged {CONSISTENCY_TAG}=unverified; delete it or take another",
            names.join(", ")
        )
    }
}
