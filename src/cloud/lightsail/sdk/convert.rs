//! From the SDK's types to lightsnap's plain ones, and back (tags).

use aws_sdk_lightsail::types::{OperationStatus, Tag};

use crate::cloud::lightsail::{
    ApiError, ApiErrorKind, AutoSnapshotAddOn, DiskInfo, OperationInfo, SnapshotInfo,
};

/// A [`DiskInfo`] from the SDK's `Disk`.
pub(super) fn disk_info(d: &aws_sdk_lightsail::types::Disk) -> DiskInfo {
    DiskInfo {
        name: d.name().unwrap_or_default().to_string(),
        path: d.path().map(str::to_string),
        attached_to: d.attached_to().map(str::to_string),
        is_attached: d.is_attached().unwrap_or(false),
        is_system_disk: d.is_system_disk().unwrap_or(false),
        support_code: d.support_code().map(str::to_string),
        auto_snapshot: auto_snapshot_add_on(d.add_ons()),
    }
}

/// The AutoSnapshot add-on among a resource's add-ons.
pub(super) fn auto_snapshot_add_on(
    add_ons: &[aws_sdk_lightsail::types::AddOn],
) -> Option<AutoSnapshotAddOn> {
    add_ons
        .iter()
        .find(|a| a.name() == Some("AutoSnapshot"))
        .map(|a| AutoSnapshotAddOn {
            status: a.status().unwrap_or_default().to_string(),
            time_of_day: a.snapshot_time_of_day().map(str::to_string),
        })
}

/// A create call's operations: the first one's id and status, or the error of one that
/// reports `Failed`.
pub(super) fn operation_result(
    operation: &'static str,
    ops: &[aws_sdk_lightsail::types::Operation],
) -> Result<OperationInfo, ApiError> {
    if let Some(failed) = ops
        .iter()
        .find(|o| o.status() == Some(&OperationStatus::Failed))
    {
        return Err(ApiError {
            operation,
            kind: ApiErrorKind::OperationFailed,
            code: failed.error_code().map(str::to_string),
            message: failed
                .error_details()
                .unwrap_or("the operation reports status Failed")
                .to_string(),
        });
    }
    let op = ops.first();
    Ok(OperationInfo {
        id: op.and_then(|o| o.id()).map(str::to_string),
        status: op.and_then(|o| o.status()).map(|s| s.as_str().to_string()),
    })
}

/// A [`SnapshotInfo`] from the SDK's `DiskSnapshot` or `InstanceSnapshot`, which share these
/// accessors but no trait.
macro_rules! snapshot_info {
    ($s:expr, from: $from:expr, instance: $instance:expr) => {{
        let s = $s;
        SnapshotInfo {
            name: s.name().unwrap_or_default().to_string(),
            state: s
                .state()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default(),
            progress: s.progress().map(str::to_string),
            tags: tags_of(s.tags()),
            created_at: s.created_at().map(|t| t.as_secs_f64()),
            from: $from,
            size_gb: s.size_in_gb(),
            is_from_auto_snapshot: s.is_from_auto_snapshot().unwrap_or(false),
            instance: $instance,
        }
    }};
}

pub(super) fn snapshot_info(s: &aws_sdk_lightsail::types::DiskSnapshot) -> SnapshotInfo {
    snapshot_info!(
        s,
        // A system volume's snapshot names its instance: that is what `{disk}` and `--disk`
        // call `<instance>-system` (its own disk name is Lightsail's, not the operator's).
        from: s
            .from_instance_name()
            .map(|i| format!("{i}-system"))
            .or_else(|| s.from_disk_name().map(str::to_string)),
        instance: false
    )
}

pub(super) fn instance_snapshot_info(
    s: &aws_sdk_lightsail::types::InstanceSnapshot,
) -> SnapshotInfo {
    snapshot_info!(s, from: s.from_instance_name().map(str::to_string), instance: true)
}

pub(super) fn tags_of(tags: &[Tag]) -> Vec<(String, String)> {
    tags.iter()
        .map(|t| {
            (
                t.key().unwrap_or_default().to_string(),
                t.value().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

pub(super) fn sdk_tags(tags: &[(String, String)]) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}
