//! Which of the read-only Lightsail calls lightsnap makes the credentials may make: each tried
//! once. Missing or rejected credentials stop `setup` at once; a call refused with
//! AccessDenied is listed, and `setup` stops naming `lightsnap iam-policy` (the write calls
//! cannot be tried without writing: the first snapshot tries them).

use anyhow::Result;
use serde::Serialize;

use crate::cloud::lightsail::{ApiError, ApiErrorKind, InstanceInfo, Lightsail, SnapshotKind};

/// The outcome of one call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Call {
    /// The operation (`GetInstances`).
    pub operation: &'static str,
    /// Whether the credentials may make it (a refusal for any reason but permission counts
    /// as allowed: the call got past authorization).
    pub allowed: bool,
    /// The error code of a refusal.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub refused_with: Option<String>,
}

/// Whether an error is a permission refusal (the credentials are valid, the policy does not
/// allow the action).
pub fn is_access_denied(e: &ApiError) -> bool {
    e.kind == ApiErrorKind::AccessDenied
        || (e.kind == ApiErrorKind::Auth
            && e.code
                .as_deref()
                .is_some_and(|c| c.starts_with("AccessDenied")))
}

/// One call's outcome; `Err` for what is no answer about permissions at all (no credentials,
/// keys Lightsail does not know, the network).
fn outcome<T>(operation: &'static str, r: Result<T, ApiError>) -> Result<(Call, Option<T>)> {
    match r {
        Ok(v) => Ok((
            Call {
                operation,
                allowed: true,
                refused_with: None,
            },
            Some(v),
        )),
        Err(e) if is_access_denied(&e) => Ok((
            Call {
                operation,
                allowed: false,
                refused_with: e.code.clone(),
            },
            None,
        )),
        Err(e)
            if matches!(
                e.kind,
                ApiErrorKind::Rejected | ApiErrorKind::NotFound | ApiErrorKind::OperationFailed
            ) =>
        {
            Ok((
                Call {
                    operation,
                    allowed: true,
                    refused_with: None,
                },
                None,
            ))
        }
        Err(e) => Err(anyhow::Error::new(e.clone()).context(format!(
            "checking the AWS credentials with Lightsail {operation}: {}",
            e.advice()
        ))),
    }
}

/// Tries GetInstances, GetDisks, GetDiskSnapshots, GetInstanceSnapshots and (once this
/// instance is known, through `find_me`) GetAutoSnapshots. Returns the calls, this instance
/// (when GetInstances was allowed) and every disk snapshot (when GetDiskSnapshots was).
pub async fn probe<A: Lightsail>(
    api: &A,
    find_me: impl FnOnce(&[InstanceInfo]) -> Result<InstanceInfo>,
) -> Result<(
    Vec<Call>,
    Option<InstanceInfo>,
    Vec<crate::cloud::lightsail::SnapshotInfo>,
)> {
    let mut calls = Vec::new();
    let (call, instances) = outcome("GetInstances", api.get_instances().await)?;
    calls.push(call);
    let me = match instances {
        Some(all) => Some(find_me(&all)?),
        None => None,
    };
    let (call, _) = outcome("GetDisks", api.get_disks().await)?;
    calls.push(call);
    let (call, snapshots) = outcome(
        "GetDiskSnapshots",
        api.get_snapshots(SnapshotKind::Disk).await,
    )?;
    calls.push(call);
    let (call, _) = outcome(
        "GetInstanceSnapshots",
        api.get_snapshots(SnapshotKind::Instance).await,
    )?;
    calls.push(call);
    if let Some(me) = &me {
        let (call, _) = outcome(
            "GetAutoSnapshots",
            api.auto_snapshot_in_progress(&me.name).await,
        )?;
        calls.push(call);
    }
    Ok((calls, me, snapshots.unwrap_or_default()))
}
