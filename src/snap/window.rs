//! The frozen window: quiesce every target, make the snapshot calls, undo, newest first.
//!
//! One function, [`run`], that reads top to bottom. Between the first freeze and the last thaw
//! nothing here writes to disk: log output is held in memory ([`crate::logbuf`]), the recovery
//! record was written before and is cleared after, and the watchdog makes the ioctls.

use std::time::{Duration, Instant};

use anyhow::Result;
use futures_util::future::join_all;

use super::plan::{Consistency, CONSISTENCY_TAG};
use super::{Filesystem, Plan};
use crate::cloud::lightsail::{ApiError, Lightsail, OperationInfo, SnapshotRequest};
use crate::exit_code::ExitCode;
use crate::kernel::freeze::{FreezeError, MountHandle, ThawError};
use crate::kernel::mountinfo::Mount;
use crate::kernel::unmount;
use crate::logbuf;
use crate::runstate::Quiesce;
use crate::signals::Signals;
use crate::watchdog::{FreezeOrLost, Watchdog};

/// What the API calls came to.
#[derive(Debug)]
pub(crate) enum Calls {
    /// Quiescing failed, so no call was made.
    NotMade(anyhow::Error),
    /// Every call returned, in target order.
    Returned(Vec<Result<OperationInfo, ApiError>>),
    /// The freeze deadline passed first; the calls were abandoned.
    Deadline,
    /// A stop signal came first; the calls were abandoned.
    Signal(ExitCode),
}

/// What happened in the window.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// How each snapshot was actually made consistent.
    pub consistency: Vec<Consistency>,
    /// The snapshot requests as sent (with their consistency tag), in plan order.
    pub requests: Vec<SnapshotRequest>,
    /// The calls.
    pub calls: Calls,
    /// From the first freeze (or unmount) done to the last thaw (or remount) done.
    pub window: Duration,
    /// Thaws or remounts that failed: those filesystems may still be frozen or unmounted.
    pub undo_errors: Vec<anyhow::Error>,
    /// Whether the watchdog's deadline thawed something before the agent did.
    pub thawed_by_watchdog: bool,
}

/// Settings of one window.
pub(crate) struct Settings<'a> {
    /// How long anything may stay quiesced.
    pub deadline: Duration,
    /// Whether a filesystem that cannot be frozen may be unmounted instead.
    pub unmount_fallback: bool,
    /// Whether a failed freeze may go on without pausing writes.
    pub allow_crash_consistent: bool,
    /// The mount table, for the unmount's list of mounts below.
    pub mounts: &'a [Mount],
}

/// Quiesces, calls, undoes. Never returns with anything still frozen by it unless a thaw
/// itself failed, which is reported in `undo_errors`.
pub(crate) async fn run<A: Lightsail>(
    api: &A,
    plan: &Plan,
    watchdog: &mut Watchdog,
    own_handles: &[Option<MountHandle>],
    settings: &Settings<'_>,
    signals: &mut Signals,
) -> Outcome {
    let filesystems = &plan.filesystems;
    logbuf::hold();
    let mut undo: Vec<(usize, Quiesce)> = Vec::new();
    let mut achieved = vec![Consistency::Readonly; filesystems.len()];
    let mut failure = None;
    let mut first_done: Option<Instant> = None;

    // 1. Quiesce, in order.
    for (i, fs) in filesystems.iter().enumerate() {
        let Some(method) = fs.quiesce else {
            continue;
        };
        match quiesce(i, fs, method, watchdog, settings) {
            Ok(used) => {
                first_done.get_or_insert_with(Instant::now);
                undo.push((i, used));
                achieved[i] = match used {
                    Quiesce::Freeze => Consistency::Frozen,
                    Quiesce::Unmount => Consistency::Unmounted,
                };
            }
            Err(QuiesceError::Lost(e)) => {
                // The watchdog died mid-freeze: the filesystem may be frozen. Thaw it ourselves.
                undo.push((i, Quiesce::Freeze));
                failure = Some(e);
                break;
            }
            Err(QuiesceError::Refused(e)) if settings.allow_crash_consistent => {
                tracing::warn!("{e:#}; going on without pausing writes (--allow-crash-consistent)");
                achieved[i] = Consistency::Crash;
            }
            Err(QuiesceError::Refused(e)) => {
                failure = Some(e);
                break;
            }
        }
    }
    // A snapshot is as consistent as the least consistent filesystem on its disk.
    let consistency: Vec<Consistency> = plan
        .snapshots
        .iter()
        .map(|s| weakest(s.filesystems.iter().map(|&f| achieved[f])))
        .collect();
    let requests: Vec<SnapshotRequest> = plan
        .snapshots
        .iter()
        .zip(&consistency)
        .map(|(s, c)| {
            let mut request = s.request.clone();
            request
                .tags
                .push((CONSISTENCY_TAG.to_string(), c.as_str().to_string()));
            request
        })
        .collect();

    // 2. The calls, all at once, bounded by the deadline and by stop signals.
    let calls = match failure {
        Some(e) => Calls::NotMade(e),
        None => {
            let spent = first_done.map(|t| t.elapsed()).unwrap_or_default();
            let budget = settings.deadline.saturating_sub(spent);
            let all = join_all(requests.iter().map(|r| api.create_snapshot(r, budget)));
            tokio::select! {
                biased;
                code = signals.recv() => Calls::Signal(code),
                done = tokio::time::timeout(budget, all) => match done {
                    Ok(results) => Calls::Returned(results),
                    Err(_) => Calls::Deadline,
                },
            }
        }
    };

    // 3. Undo, newest first.
    let mut undo_errors = Vec::new();
    let mut thawed_by_watchdog = false;
    for (i, method) in undo.into_iter().rev() {
        match method {
            Quiesce::Freeze => match watchdog.thaw(i) {
                Ok(t) => thawed_by_watchdog |= t.by_deadline,
                Err(lost) => {
                    if let Err(e) = thaw_ourselves(own_handles[i].as_ref()) {
                        undo_errors.push(lost.context(e));
                    }
                }
            },
            Quiesce::Unmount => {
                let mount = &filesystems[i].located.mount;
                // The watchdog mounts it again itself at its deadline.
                let mounted = unmount::current(&mount.mount_point)
                    .ok()
                    .flatten()
                    .is_some_and(|m| m.source == mount.source);
                if !mounted {
                    if let Err(e) = unmount::remount(mount) {
                        undo_errors.push(e);
                        continue;
                    }
                }
                if let Err(e) = watchdog.note_remounted(i) {
                    tracing::warn!("{e:#}");
                }
            }
        }
    }
    let window = first_done.map(|t| t.elapsed()).unwrap_or_default();
    logbuf::release();

    Outcome {
        consistency,
        requests,
        calls,
        window,
        undo_errors,
        thawed_by_watchdog,
    }
}

enum QuiesceError {
    /// The kernel refused: nothing is quiesced.
    Refused(anyhow::Error),
    /// The watchdog is gone: the filesystem may or may not be frozen.
    Lost(anyhow::Error),
}

/// Freezes or unmounts one target, falling back from freeze to unmount where the filesystem
/// cannot be frozen and that is allowed. Returns the method that worked.
fn quiesce(
    i: usize,
    fs: &Filesystem,
    method: Quiesce,
    watchdog: &mut Watchdog,
    settings: &Settings<'_>,
) -> Result<Quiesce, QuiesceError> {
    let mount = &fs.located.mount;
    if method == Quiesce::Freeze {
        match watchdog.freeze(i, &mount.mount_point) {
            Ok(()) => return Ok(Quiesce::Freeze),
            Err(FreezeOrLost::Freeze(FreezeError::NotSupported(_)))
                if settings.unmount_fallback =>
            {
                tracing::warn!(
                    "{} ({}) cannot be frozen; unmounting it for the snapshot instead",
                    mount.mount_point.display(),
                    mount.fstype
                );
                watchdog
                    .release(i)
                    .map_err(|e| QuiesceError::Refused(e.context("the watchdog is gone")))?;
            }
            Err(FreezeOrLost::Freeze(e)) => return Err(QuiesceError::Refused(e.into())),
            Err(FreezeOrLost::Lost(e)) => return Err(QuiesceError::Lost(e)),
        }
    }
    // The filesystem is synced by the unmount itself.
    unmount::unmount(mount, settings.mounts).map_err(|e| QuiesceError::Refused(e.into()))?;
    // Should the agent die now, the watchdog mounts it again; if the watchdog is gone, the
    // agent still does in its undo, and the recovery record has it.
    if let Err(e) = watchdog.note_unmounted(i, mount) {
        tracing::warn!("{e:#}");
    }
    Ok(Quiesce::Unmount)
}

/// The weakest of several consistencies: crash, then unmounted/frozen, then read-only.
fn weakest(all: impl Iterator<Item = Consistency>) -> Consistency {
    let rank = |c: &Consistency| match c {
        Consistency::Crash | Consistency::Unverified => 0,
        Consistency::Unmounted => 1,
        Consistency::Frozen => 2,
        Consistency::Readonly => 3,
    };
    all.min_by_key(rank).unwrap_or(Consistency::Readonly)
}

/// The last resort when the watchdog is gone: thaw with our own descriptor. "Not frozen" is
/// fine (the watchdog thawed it on its way out).
fn thaw_ourselves(handle: Option<&MountHandle>) -> Result<()> {
    let Some(handle) = handle else {
        anyhow::bail!("no descriptor of the mount to thaw it with");
    };
    match handle.thaw() {
        Ok(()) | Err(ThawError::NotFrozen(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
