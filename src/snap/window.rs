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
use crate::watchdog::Watchdog;

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
    /// From the first freeze (or unmount) called to the last thaw (or remount) done.
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
    // The window opens when the first FIFREEZE (or unmount) that works is *called*: the
    // kernel blocks writers early in the call, not when it returns.
    let mut first_called: Option<Instant> = None;

    // 1. Quiesce, wave by wave: a filesystem that lives on another (mounted below it, or a
    //    loop device over a file on it) is in an earlier wave. The freezes of a wave are made
    //    at once, so the window does not grow by one FIFREEZE per disk.
    let waves = filesystems
        .iter()
        .map(|f| f.wave)
        .max()
        .map_or(0, |w| w + 1);
    for wave in 0..waves {
        let members: Vec<usize> = (0..filesystems.len())
            .filter(|&i| filesystems[i].wave == wave && filesystems[i].quiesce.is_some())
            .collect();
        let freezing: Vec<(usize, &std::path::Path)> = members
            .iter()
            .filter(|&&i| filesystems[i].quiesce == Some(Quiesce::Freeze))
            .map(|&i| (i, filesystems[i].located.mount.mount_point.as_path()))
            .collect();
        let called = Instant::now();
        let mut frozen = if freezing.is_empty() {
            Vec::new()
        } else {
            match watchdog.freeze(&freezing) {
                Ok(answers) => answers,
                Err(e) => {
                    // The watchdog died mid-freeze: these may be frozen. Thaw them ourselves.
                    undo.extend(freezing.iter().map(|&(i, _)| (i, Quiesce::Freeze)));
                    failure = Some(e);
                    break;
                }
            }
        }
        .into_iter();
        for i in members {
            let fs = &filesystems[i];
            let attempt = match fs.quiesce {
                Some(Quiesce::Freeze) => frozen.next().expect("one answer per freeze"),
                _ => Ok(()),
            };
            let method = fs.quiesce.expect("members are quiesced");
            match quiesce(i, fs, method, attempt, watchdog, settings) {
                Ok(used) => {
                    first_called.get_or_insert(called);
                    undo.push((i, used));
                    achieved[i] = match used {
                        Quiesce::Freeze => Consistency::Frozen,
                        Quiesce::Unmount => Consistency::Unmounted,
                    };
                }
                Err(e) if settings.allow_crash_consistent => {
                    tracing::warn!(
                        "{e:#}; going on without pausing writes (--allow-crash-consistent)"
                    );
                    achieved[i] = Consistency::Crash;
                }
                // Go on through the wave: what it froze must be in `undo`.
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        if failure.is_some() {
            break;
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
            let spent = first_called.map(|t| t.elapsed()).unwrap_or_default();
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
                // Past the deadline the watchdog may have mounted it again itself (a second
                // mount on top would succeed): look before mounting, but only then.
                let past_deadline = first_called.is_some_and(|t| t.elapsed() >= settings.deadline);
                let mounted = past_deadline && unmount::is_back(mount).unwrap_or(false);
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
    let window = first_called.map(|t| t.elapsed()).unwrap_or_default();
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

/// Quiesces one target given how its freeze went (`Ok` for an unmount target): frozen, or
/// unmounted instead where the filesystem cannot be frozen and that is allowed, or unmounted
/// as planned. Returns the method that worked; an error means nothing is quiesced.
fn quiesce(
    i: usize,
    fs: &Filesystem,
    method: Quiesce,
    freeze: Result<(), FreezeError>,
    watchdog: &mut Watchdog,
    settings: &Settings<'_>,
) -> Result<Quiesce> {
    let mount = &fs.located.mount;
    if method == Quiesce::Freeze {
        match freeze {
            Ok(()) => return Ok(Quiesce::Freeze),
            Err(FreezeError::NotSupported(_)) if settings.unmount_fallback => {
                tracing::warn!(
                    "{} ({}) cannot be frozen; unmounting it for the snapshot instead",
                    mount.mount_point.display(),
                    mount.fstype
                );
                watchdog
                    .release(i)
                    .map_err(|e| e.context("the watchdog is gone"))?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    // The filesystem is synced by the unmount itself.
    unmount::unmount(mount, settings.mounts)?;
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
