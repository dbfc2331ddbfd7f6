//! Lightsail's automatic snapshots: while the AutoSnapshot add-on is creating a snapshot of a
//! disk or an instance (from its hour, for up to 45 minutes), Lightsail refuses manual
//! snapshots of it. Freezing, calling and being refused would pause writes for nothing, so a
//! run waits it out before anything is frozen — outside the window, polling, bounded by
//! `--auto-snapshot-wait` — and, refused all the same (one began in between), thaws, waits,
//! and tries once more.

use std::time::{Duration, Instant};

use anyhow::Result;

use super::Plan;
use crate::cloud::lightsail::{ApiError, Lightsail, Source};
use crate::exit_code::ExitCode;
use crate::fail;
use crate::signals::{unless_stopped, Stop, BEFORE_FREEZE};

/// The longest pause between two looks.
const MAX_NAP: Duration = Duration::from_secs(30);

/// How often the wait says it is still waiting.
const SAY_EVERY: Duration = Duration::from_secs(300);

/// The Lightsail resource whose automatic snapshots a snapshot of `source` competes with: the
/// disk, or the instance for its system volume and for a whole-instance snapshot.
pub fn resource(source: &Source) -> &str {
    match source {
        Source::Disk(d) => d,
        Source::SystemVolume(i) | Source::Instance(i) => i,
    }
}

/// Whether an API error is Lightsail refusing a manual snapshot during an automatic one.
pub fn is_refusal(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<ApiError>())
        .any(ApiError::auto_snapshot_in_progress)
}

/// Waits while an automatic snapshot of any resource of `plan` is being created: of those
/// whose add-on is enabled, or of every one (`all`: after a refusal). Polls with a growing
/// pause; fails with [`ExitCode::AutoSnapshot`] at once when `limit` is zero, or once `limit`
/// has passed.
pub async fn wait_out<A: Lightsail, S: Stop>(
    api: &A,
    plan: &Plan,
    all: bool,
    limit: Duration,
    stop: &mut S,
) -> Result<()> {
    let mut resources: Vec<&str> = Vec::new();
    for s in &plan.snapshots {
        let enabled = s.auto_snapshot.as_ref().is_some_and(|a| a.is_enabled());
        let r = resource(&s.request.source);
        if (all || enabled) && !resources.contains(&r) {
            resources.push(r);
        }
    }
    let started = Instant::now();
    let mut nap = Duration::from_secs(1);
    let mut said: Option<Instant> = None;
    loop {
        let mut busy = Vec::new();
        for r in &resources {
            if api.auto_snapshot_in_progress(r).await? {
                busy.push(*r);
            }
        }
        if busy.is_empty() {
            if said.is_some() {
                tracing::warn!(
                    "the automatic snapshot of {} is done after {}; going on",
                    resources.join(", "),
                    humantime::format_duration(round(started.elapsed()))
                );
            }
            return Ok(());
        }
        let waited = started.elapsed();
        if waited >= limit {
            fail!(
                ExitCode::AutoSnapshot,
                "Lightsail is creating an automatic snapshot of {} and refuses manual snapshots until it is done (up to 45 minutes from its hour); {}; nothing was frozen: try again later, or raise --auto-snapshot-wait",
                busy.join(", "),
                if limit.is_zero() {
                    "--auto-snapshot-wait is 0".to_string()
                } else {
                    format!("waited {}", humantime::format_duration(round(waited)))
                }
            );
        }
        if said.is_none_or(|t| t.elapsed() >= SAY_EVERY) {
            tracing::warn!(
                "Lightsail is creating an automatic snapshot of {}; waiting for it before freezing (at most {})",
                busy.join(", "),
                humantime::format_duration(limit)
            );
            said = Some(Instant::now());
        }
        let pause = nap.min(limit - waited);
        unless_stopped(stop, BEFORE_FREEZE, async {
            tokio::time::sleep(pause).await;
            Ok(())
        })
        .await?;
        nap = (nap * 2).min(MAX_NAP);
    }
}

/// A duration to the second, for messages.
fn round(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs())
}
