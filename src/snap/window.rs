//! The frozen window: quiesce every target, make the snapshot calls, undo, newest first.
//!
//! One function, [`run`], that reads top to bottom through its three phases: [`quiesce`]
//! (wave by wave), [`call`] (all calls at once, bounded by the deadline and stop requests)
//! and [`undo`] (newest first). What it asks of the machine goes through the [`Quiescer`]
//! seam — the watchdog and the kernel in production ([`super::machine::Machine`]), a
//! recording fake in the tests — so every path through the window is tested without root.
//!
//! Between the first freeze and the last thaw nothing here writes to disk: log output is held
//! in memory ([`crate::logbuf`]), the recovery record was written before and is cleared after,
//! and the watchdog makes the ioctls.

use std::time::{Duration, Instant};

use anyhow::Result;
use futures_util::future::join_all;

use super::plan::{Consistency, CONSISTENCY_TAG};
use super::Plan;
use crate::cloud::lightsail::{ApiError, Lightsail, OperationInfo, SnapshotRequest};
use crate::exit_code::ExitCode;
use crate::kernel::freeze::FreezeError;
use crate::logbuf;
use crate::runstate::Quiesce;
use crate::signals::Stop;

#[cfg(test)]
mod tests;

/// What the window asks of the machine, for the filesystems of a plan (by index). Each call
/// either does what it says or reports why not; none of them logs to disk.
pub(crate) trait Quiescer {
    /// Freezes filesystems `wave` at once; for each, in order, the kernel's answer. `Err`: the
    /// freezer is gone, and any of them may or may not be frozen.
    fn freeze(&mut self, wave: &[usize]) -> Result<Vec<Result<(), FreezeError>>>;
    /// Thaws filesystem `i`. `Ok(true)` when the deadline had thawed it before it was asked.
    /// `Err`: it may still be frozen.
    fn thaw(&mut self, i: usize) -> Result<bool>;
    /// Lets go of every descriptor of filesystem `i`, which is about to be unmounted instead
    /// of frozen: an open descriptor would keep the unmount busy.
    fn release(&mut self, i: usize) -> Result<()>;
    /// Unmounts filesystem `i` (the unmount syncs it).
    fn unmount(&mut self, i: usize) -> Result<()>;
    /// Mounts filesystem `i` again as it was. `past_deadline`: the watchdog may already have.
    fn remount(&mut self, i: usize, past_deadline: bool) -> Result<()>;
}

/// What the API calls came to.
#[derive(Debug)]
pub(crate) enum Calls {
    /// Quiescing failed, so no call was made.
    NotMade(anyhow::Error),
    /// Every call returned, in target order.
    Returned(Vec<Result<OperationInfo, ApiError>>),
    /// The freeze deadline passed first; the calls were abandoned.
    Deadline,
    /// A stop request came first; the calls were abandoned.
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
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    /// How long anything may stay quiesced.
    pub deadline: Duration,
    /// Whether a filesystem that cannot be frozen may be unmounted instead.
    pub unmount_fallback: bool,
    /// Whether a failed freeze may go on without pausing writes.
    pub allow_crash_consistent: bool,
}

/// Quiesces, calls, undoes. Never returns with anything still quiesced by it unless an undo
/// itself failed, which is reported in `undo_errors`.
pub(crate) async fn run<A: Lightsail, Q: Quiescer, S: Stop>(
    api: &A,
    plan: &Plan,
    machine: &mut Q,
    settings: &Settings,
    stop: &mut S,
) -> Outcome {
    logbuf::hold();
    let quiesced = quiesce(plan, machine, settings);
    let consistency = consistency(plan, &quiesced.achieved);
    let requests = requests(plan, &consistency);
    let calls = match quiesced.failure {
        Some(e) => Calls::NotMade(e),
        None => {
            let spent = quiesced.opened.map(|t| t.elapsed()).unwrap_or_default();
            call(
                api,
                &requests,
                settings.deadline.saturating_sub(spent),
                stop,
            )
            .await
        }
    };
    let past_deadline = quiesced
        .opened
        .is_some_and(|t| t.elapsed() >= settings.deadline);
    let (undo_errors, thawed_by_watchdog) = undo(machine, quiesced.undo, past_deadline);
    let window = quiesced.opened.map(|t| t.elapsed()).unwrap_or_default();
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

/// What quiescing came to.
struct Quiesced {
    /// What to undo, in the order it was done.
    undo: Vec<(usize, Quiesce)>,
    /// How each filesystem was made consistent.
    achieved: Vec<Consistency>,
    /// Why quiescing stopped, if it did: then no call is made.
    failure: Option<anyhow::Error>,
    /// When the window opened: the first FIFREEZE (or unmount) that worked was *called* (the
    /// kernel blocks writers early in the call, not when it returns).
    opened: Option<Instant>,
}

/// Phase 1: quiesce, wave by wave. A filesystem that lives on another (mounted below it, or a
/// loop device over a file on it) is in an earlier wave. The freezes of a wave are made at
/// once, so the window does not grow by one FIFREEZE per disk. Stops at the first wave with a
/// failure, after going through that whole wave (what it froze must be undone).
fn quiesce<Q: Quiescer>(plan: &Plan, machine: &mut Q, settings: &Settings) -> Quiesced {
    let filesystems = &plan.filesystems;
    let mut done = Quiesced {
        undo: Vec::new(),
        achieved: vec![Consistency::Readonly; filesystems.len()],
        failure: None,
        opened: None,
    };
    let waves = filesystems.iter().map(|f| f.wave + 1).max().unwrap_or(0);
    for wave in 0..waves {
        let members: Vec<usize> = (0..filesystems.len())
            .filter(|&i| filesystems[i].wave == wave && filesystems[i].quiesce.is_some())
            .collect();
        let freezing: Vec<usize> = members
            .iter()
            .copied()
            .filter(|&i| filesystems[i].quiesce == Some(Quiesce::Freeze))
            .collect();
        let called = Instant::now();
        let mut answers = if freezing.is_empty() {
            Vec::new()
        } else {
            match machine.freeze(&freezing) {
                Ok(answers) => answers,
                Err(e) => {
                    // The freezer died mid-freeze: these may be frozen. Thaw them.
                    done.opened.get_or_insert(called);
                    done.undo
                        .extend(freezing.iter().map(|&i| (i, Quiesce::Freeze)));
                    done.failure = Some(e);
                    break;
                }
            }
        }
        .into_iter();
        for i in members {
            let planned = filesystems[i].quiesce.expect("members are quiesced");
            let attempt = match planned {
                Quiesce::Freeze => answers.next().unwrap_or_else(|| {
                    Err(FreezeError::Other(
                        filesystems[i].located.mount.mount_point.clone(),
                        "no answer from the freezer".into(),
                    ))
                }),
                Quiesce::Unmount => Ok(()),
            };
            match quiesce_one(i, planned, attempt, machine, settings) {
                Ok(used) => {
                    done.opened.get_or_insert(called);
                    done.undo.push((i, used));
                    done.achieved[i] = match used {
                        Quiesce::Freeze => Consistency::Frozen,
                        Quiesce::Unmount => Consistency::Unmounted,
                    };
                }
                Err(e) if settings.allow_crash_consistent => {
                    tracing::warn!(
                        "{e:#}; going on without pausing writes (--allow-crash-consistent)"
                    );
                    done.achieved[i] = Consistency::Crash;
                }
                Err(e) => {
                    done.failure.get_or_insert(e);
                }
            }
        }
        if done.failure.is_some() {
            break;
        }
    }
    done
}

/// Quiesces one filesystem given how its freeze went (`Ok` for a planned unmount): frozen, or
/// unmounted instead where it cannot be frozen and that is allowed, or unmounted as planned.
/// Returns the method that worked; an error means nothing is quiesced.
fn quiesce_one<Q: Quiescer>(
    i: usize,
    planned: Quiesce,
    freeze: Result<(), FreezeError>,
    machine: &mut Q,
    settings: &Settings,
) -> Result<Quiesce> {
    if planned == Quiesce::Freeze {
        match freeze {
            Ok(()) => return Ok(Quiesce::Freeze),
            Err(FreezeError::NotSupported(path)) if settings.unmount_fallback => {
                tracing::warn!(
                    "{} cannot be frozen; unmounting it for the snapshot instead",
                    path.display()
                );
                machine.release(i)?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    machine.unmount(i)?;
    Ok(Quiesce::Unmount)
}

/// A snapshot is as consistent as the least consistent filesystem on its disk.
fn consistency(plan: &Plan, achieved: &[Consistency]) -> Vec<Consistency> {
    plan.snapshots
        .iter()
        .map(|s| weakest(s.filesystems.iter().map(|&f| achieved[f])))
        .collect()
}

/// The requests as sent: the plan's, each with its consistency tag.
fn requests(plan: &Plan, consistency: &[Consistency]) -> Vec<SnapshotRequest> {
    plan.snapshots
        .iter()
        .zip(consistency)
        .map(|(s, c)| {
            let mut request = s.request.clone();
            request
                .tags
                .push((CONSISTENCY_TAG.to_string(), c.as_str().to_string()));
            request
        })
        .collect()
}

/// Phase 2: the calls, all at once, bounded by what is left of the deadline and by stop
/// requests.
async fn call<A: Lightsail, S: Stop>(
    api: &A,
    requests: &[SnapshotRequest],
    budget: Duration,
    stop: &mut S,
) -> Calls {
    let all = join_all(requests.iter().map(|r| api.create_snapshot(r, budget)));
    tokio::select! {
        biased;
        code = stop.recv() => Calls::Signal(code),
        done = tokio::time::timeout(budget, all) => match done {
            Ok(results) => Calls::Returned(results),
            Err(_) => Calls::Deadline,
        },
    }
}

/// Phase 3: undo, newest first. Every undo is tried; the failures are returned (never
/// dropped), with whether the deadline had thawed anything first.
fn undo<Q: Quiescer>(
    machine: &mut Q,
    done: Vec<(usize, Quiesce)>,
    past_deadline: bool,
) -> (Vec<anyhow::Error>, bool) {
    let mut errors = Vec::new();
    let mut thawed_by_deadline = false;
    for (i, method) in done.into_iter().rev() {
        let undone = match method {
            Quiesce::Freeze => machine.thaw(i).map(|late| thawed_by_deadline |= late),
            Quiesce::Unmount => machine.remount(i, past_deadline),
        };
        if let Err(e) = undone {
            errors.push(e);
        }
    }
    (errors, thawed_by_deadline)
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
