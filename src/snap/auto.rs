//! Lightsail's automatic snapshots: while the AutoSnapshot add-on is creating a snapshot of a
//! disk or an instance (from its hour, for up to 45 minutes), Lightsail refuses manual
//! snapshots of it. Freezing, calling and being refused would pause writes for nothing, so a
//! run waits it out before anything is frozen — outside the window, polling, bounded by
//! `--auto-snapshot-wait` — and, refused all the same (one began in between), thaws, waits,
//! and tries once more.

use std::time::Duration;

// tokio's clock: the same as std's when running, and the one paused tests move.
use tokio::time::Instant;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::lightsail::fake::FakeLightsail;
    use crate::cloud::lightsail::{ApiErrorKind, AutoSnapshotAddOn, SnapshotRequest};
    use crate::runstate::Quiesce;
    use crate::signals::Never;
    use crate::snap::testing::filesystem;
    use crate::snap::Snapshot;

    /// A plan of one snapshot of `source`, whose add-on is `enabled` or absent.
    fn plan(source: Source, enabled: bool) -> Plan {
        Plan {
            filesystems: vec![filesystem(
                "/data",
                "/dev/xvdf",
                "ext4",
                0,
                Some(Quiesce::Freeze),
            )],
            snapshots: vec![Snapshot {
                request: SnapshotRequest {
                    source,
                    name: "s-1".into(),
                    tags: Vec::new(),
                },
                filesystems: vec![0],
                devices: Vec::new(),
                auto_snapshot: enabled.then(|| AutoSnapshotAddOn {
                    status: "Enabled".into(),
                    time_of_day: Some("06:00".into()),
                }),
            }],
        }
    }

    fn busy(api: &FakeLightsail, resource: &str, looks: u32) {
        api.auto_in_progress
            .lock()
            .unwrap()
            .insert(resource.into(), looks);
    }

    fn looks(api: &FakeLightsail) -> Vec<String> {
        api.log()
            .into_iter()
            .filter(|l| l.starts_with("GetAutoSnapshots"))
            .collect()
    }

    const LIMIT: Duration = Duration::from_secs(50 * 60);

    #[tokio::test(start_paused = true)]
    async fn auto_wait_polls_until_the_automatic_snapshot_is_done() {
        let api = FakeLightsail::default();
        busy(&api, "data-1", 3);
        let p = plan(Source::Disk("data-1".into()), true);
        wait_out(&api, &p, false, LIMIT, &mut Never).await.unwrap();
        assert_eq!(looks(&api).len(), 4, "three busy looks, then done");
    }

    #[tokio::test(start_paused = true)]
    async fn auto_wait_of_zero_fails_at_once_with_its_exit_code() {
        let api = FakeLightsail::default();
        busy(&api, "web-1", 1);
        let p = plan(Source::SystemVolume("web-1".into()), true);
        let e = wait_out(&api, &p, false, Duration::ZERO, &mut Never)
            .await
            .unwrap_err();
        assert_eq!(ExitCode::of(&e), ExitCode::AutoSnapshot);
        assert!(e.to_string().contains("automatic snapshot of web-1"), "{e}");
        assert!(e.to_string().contains("--auto-snapshot-wait is 0"), "{e}");
        assert_eq!(looks(&api), ["GetAutoSnapshots web-1"], "the instance's");
    }

    #[tokio::test(start_paused = true)]
    async fn auto_wait_gives_up_at_its_limit() {
        let api = FakeLightsail::default();
        busy(&api, "data-1", u32::MAX);
        let p = plan(Source::Disk("data-1".into()), true);
        let started = tokio::time::Instant::now();
        let e = wait_out(&api, &p, false, Duration::from_secs(600), &mut Never)
            .await
            .unwrap_err();
        assert_eq!(ExitCode::of(&e), ExitCode::AutoSnapshot);
        assert!(e.to_string().contains("waited 10m"), "{e}");
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(600),
            "to the limit, not past it"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn auto_wait_asks_only_where_the_add_on_is_on_unless_refused() {
        let api = FakeLightsail::default();
        let p = plan(Source::Disk("data-1".into()), false);
        wait_out(&api, &p, false, LIMIT, &mut Never).await.unwrap();
        assert!(looks(&api).is_empty());
        // After a refusal every resource is asked about, add-on known or not.
        wait_out(&api, &p, true, LIMIT, &mut Never).await.unwrap();
        assert_eq!(looks(&api), ["GetAutoSnapshots data-1"]);
    }

    #[test]
    fn auto_refusal_is_told_from_other_rejections() {
        let refusal = |message: &str| -> anyhow::Error {
            anyhow::Error::new(ApiError {
                operation: "CreateDiskSnapshot",
                kind: ApiErrorKind::Rejected,
                code: Some("OperationFailureException".into()),
                message: message.into(),
            })
            .context("no snapshot was taken")
        };
        let e = refusal(
            "You cannot create manual snapshots when an automatic snapshot is being created",
        );
        assert!(is_refusal(&e));
        assert_eq!(ExitCode::of(&e), ExitCode::AutoSnapshot);
        assert!(!is_refusal(&refusal("bad tag")));
    }
}
