//! Copies to another region (`--copy-to-region`, `copy_to_region`): once a snapshot is
//! `completed`, CopySnapshot made through a client signed for the target region (with
//! `sourceRegion` this one), then its tags re-applied there with TagResource (CopySnapshot
//! takes none), plus `lightsnap:copy-of` naming the original. A copy failure never undoes the
//! snapshot: it is reported with its own exit code.

use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::cloud::lightsail::{Lightsail, SnapshotRequest};
use crate::exit_code::{ExitCode, Failure};
use crate::signals::Stop;

/// The tag a copy carries: `<source region>/<snapshot>`. It also keeps copies a series of
/// their own in retention, apart from snapshots taken in that region.
pub const COPY_OF_TAG: &str = "lightsnap:copy-of";

/// One copy made.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Copied {
    /// The snapshot copied.
    pub snapshot: String,
    /// The region it was copied to.
    pub region: String,
    /// The copy's name there.
    pub copy: String,
    /// The CopySnapshot operation.
    pub operation_id: Option<String>,
    /// How many tags were re-applied to it.
    pub tags: usize,
}

/// Waits (up to `wait`) for each snapshot of `requests` to be completed in the source
/// region, then copies each to the region `target` is signed for. Every failure is a
/// [`ExitCode::CopyFailed`]: the snapshots themselves stay.
pub async fn copy_all<A: Lightsail, B: Lightsail, S: Stop>(
    source: &A,
    source_region: &str,
    target: &B,
    target_region: &str,
    requests: &[SnapshotRequest],
    wait: Duration,
    stop: &mut S,
) -> (Vec<Copied>, Result<()>) {
    let mut copied = Vec::new();
    let waited =
        crate::snap::wait::wait(source, requests, wait, Duration::from_secs(2), stop).await;
    if let Err(e) = waited.result {
        let e = Failure::new(
            ExitCode::CopyFailed,
            format!("the snapshot was taken, but it cannot be copied to {target_region} until it is completed: {e:#}"),
        );
        return (copied, Err(e.into()));
    }
    for r in requests {
        match copy_one(source, source_region, target, target_region, r).await {
            Ok(c) => copied.push(c),
            Err(e) => {
                let e = Failure::new(
                    ExitCode::CopyFailed,
                    format!(
                        "snapshot {} was taken and is kept, but copying it to {target_region} failed: {e:#}",
                        r.name
                    ),
                );
                return (copied, Err(e.into()));
            }
        }
    }
    (copied, Ok(()))
}

async fn copy_one<A: Lightsail, B: Lightsail>(
    source: &A,
    source_region: &str,
    target: &B,
    target_region: &str,
    r: &SnapshotRequest,
) -> Result<Copied> {
    let kind = r.source.kind();
    let original = source
        .get_snapshot(kind, &r.name)
        .await?
        .with_context(|| format!("snapshot {} is gone", r.name))?;
    let op = target
        .copy_snapshot(source_region, &r.name, &r.name)
        .await
        .with_context(|| {
            format!(
                "CopySnapshot of {source_region}/{} to {target_region}",
                r.name
            )
        })?;
    let mut tags: Vec<(String, String)> = original
        .tags
        .iter()
        .filter(|(k, _)| k != COPY_OF_TAG)
        .cloned()
        .collect();
    tags.push((COPY_OF_TAG.into(), format!("{source_region}/{}", r.name)));
    target
        .tag_resource(&r.name, &tags)
        .await
        .with_context(|| format!("tagging the copy {} in {target_region}", r.name))?;
    tracing::info!("snapshot {} copied to {target_region}", r.name);
    Ok(Copied {
        snapshot: r.name.clone(),
        region: target_region.to_string(),
        copy: r.name.clone(),
        operation_id: op.id,
        tags: tags.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::lightsail::fake::FakeLightsail;
    use crate::cloud::lightsail::{ApiErrorKind, SnapshotInfo, Source};
    use crate::signals::Never;

    fn source() -> FakeLightsail {
        let fake = FakeLightsail::default();
        fake.snapshots.lock().unwrap().push(SnapshotInfo {
            name: "s1".into(),
            state: "completed".into(),
            progress: Some("100%".into()),
            tags: vec![
                ("lightsnap:consistency".into(), "frozen".into()),
                ("team".into(), "ops".into()),
            ],
            created_at: Some(1.0),
            from: Some("data-1".into()),
            size_gb: Some(8),
            is_from_auto_snapshot: false,
            instance: false,
        });
        fake
    }

    fn copy(target: &FakeLightsail) -> (Vec<Copied>, Result<()>) {
        let requests = [SnapshotRequest {
            source: Source::Disk("data-1".into()),
            name: "s1".into(),
            tags: Vec::new(),
        }];
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(copy_all(
            &source(),
            "us-east-1",
            target,
            "eu-west-2",
            &requests,
            Duration::from_secs(60),
            &mut Never,
        ))
    }

    /// CopySnapshot goes to the target's client with the source region, then the source's
    /// tags (and `lightsnap:copy-of`) are applied there.
    #[test]
    fn a_copy_is_made_in_the_target_region_and_tagged_there() {
        let target = FakeLightsail::default();
        let (copied, result) = copy(&target);
        result.unwrap();
        assert_eq!(copied[0].region, "eu-west-2");
        assert_eq!(
            target.log(),
            [
                "CopySnapshot us-east-1/s1 s1",
                "TagResource s1 lightsnap:consistency=frozen,team=ops,lightsnap:copy-of=us-east-1/s1",
            ]
        );
    }

    #[test]
    fn a_failed_copy_has_its_own_exit_code() {
        let target = FakeLightsail::default().failing("CopySnapshot", ApiErrorKind::Rejected);
        let (copied, result) = copy(&target);
        assert!(copied.is_empty());
        let err = result.unwrap_err();
        assert_eq!(ExitCode::of(&err), ExitCode::CopyFailed);
        assert!(
            err.to_string().contains("s1 was taken and is kept"),
            "{err}"
        );
    }
}
