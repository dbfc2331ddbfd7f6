//! The Lightsail API as lightsnap uses it: a small trait ([`Lightsail`]) over plain types, so
//! the orchestration can be tested without a network, and its implementation on the real SDK
//! ([`SdkLightsail`]), with every SDK error sorted into the classes callers branch on
//! ([`ApiErrorKind`]).

#[cfg(test)]
pub(crate) mod fake;
mod sdk;
mod storage;

use std::time::Duration;

pub use sdk::{NoRegion, SdkLightsail, FLEET_OPERATIONS, OPERATIONS};
pub use storage::{DiskState, InstanceSnapshotDetails, NewDisk, NewInstance};

/// A Lightsail disk, as far as lightsnap cares.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DiskInfo {
    /// Disk name.
    pub name: String,
    /// The device path Lightsail reports (`/dev/xvdf`).
    pub path: Option<String>,
    /// The instance it is attached to.
    pub attached_to: Option<String>,
    /// Whether it is attached.
    pub is_attached: bool,
    /// Whether it is an instance's system disk.
    pub is_system_disk: bool,
    /// `<account>/vol-...`.
    pub support_code: Option<String>,
    /// Its automatic snapshot add-on, if it has one.
    pub auto_snapshot: Option<AutoSnapshotAddOn>,
}

/// The AutoSnapshot add-on of a disk or instance: a daily snapshot, made from its hour for up
/// to 45 minutes, during which Lightsail refuses manual snapshots of that resource.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct AutoSnapshotAddOn {
    /// `Enabled`, `Disabled`, ...
    pub status: String,
    /// `HH:00`, UTC.
    pub time_of_day: Option<String>,
}

impl AutoSnapshotAddOn {
    /// Whether it makes snapshots.
    pub fn is_enabled(&self) -> bool {
        self.status.eq_ignore_ascii_case("enabled")
    }
}

/// A Lightsail instance, as far as lightsnap cares.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InstanceInfo {
    /// Instance name.
    pub name: String,
    /// `<account>/<ec2 instance id>`.
    pub support_code: Option<String>,
    /// Its disks, the system disk included.
    pub disks: Vec<DiskInfo>,
    /// Its automatic snapshot add-on (which covers its system volume), if it has one.
    pub auto_snapshot: Option<AutoSnapshotAddOn>,
}

/// What a disk snapshot is taken of.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", tag = "kind", content = "name")]
pub enum Source {
    /// A block storage disk, by name (`diskName`).
    Disk(String),
    /// An instance's system volume (`instanceName`).
    SystemVolume(String),
    /// A whole instance, every disk (CreateInstanceSnapshot).
    Instance(String),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Disk(d) => write!(f, "disk {d}"),
            Source::SystemVolume(i) => write!(f, "system volume of instance {i}"),
            Source::Instance(i) => write!(f, "instance {i}"),
        }
    }
}

impl Source {
    /// The kind of snapshot it makes.
    pub fn kind(&self) -> SnapshotKind {
        match self {
            Source::Instance(_) => SnapshotKind::Instance,
            Source::Disk(_) | Source::SystemVolume(_) => SnapshotKind::Disk,
        }
    }
}

/// Lightsail's two kinds of snapshot, each with its own Get/Get...s/Delete operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotKind {
    /// A disk snapshot (of a disk or a system volume).
    Disk,
    /// An instance snapshot (every disk of an instance).
    Instance,
}

/// One CreateDiskSnapshot call (CreateInstanceSnapshot for [`Source::Instance`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SnapshotRequest {
    /// What to snapshot.
    pub source: Source,
    /// The snapshot name.
    pub name: String,
    /// Tags, already validated.
    pub tags: Vec<(String, String)>,
}

/// A disk snapshot as GetDiskSnapshot describes it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SnapshotInfo {
    /// Snapshot name.
    pub name: String,
    /// `pending`, `completed`, `error`.
    pub state: String,
    /// `"42%"`.
    pub progress: Option<String>,
    /// Its tags.
    pub tags: Vec<(String, String)>,
    /// Created, seconds since the epoch.
    pub created_at: Option<f64>,
    /// The disk it is of (`fromDiskName`), or `<instance>-system` for a system volume.
    pub from: Option<String>,
    /// Size in GB.
    pub size_gb: Option<i32>,
    /// Whether Lightsail's automatic snapshots made it.
    pub is_from_auto_snapshot: bool,
    /// Whether it is an instance snapshot (`from` is then the instance; done is `available`).
    pub instance: bool,
}

impl SnapshotInfo {
    /// Whether it is finished and usable: `completed` (`available` for an instance).
    pub fn is_done(&self) -> bool {
        matches!(self.state.as_str(), "completed" | "available")
    }

    /// Whether it is a disk or an instance snapshot.
    pub fn kind(&self) -> SnapshotKind {
        if self.instance {
            SnapshotKind::Instance
        } else {
            SnapshotKind::Disk
        }
    }

    /// The value of tag `key`.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The operation a create call started.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OperationInfo {
    /// Operation id.
    pub id: Option<String>,
    /// Operation status (`Succeeded`, `Started`, ...).
    pub status: Option<String>,
}

/// The classes of API failure, each with its own exit code and advice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiErrorKind {
    /// The service refused the request as invalid (InvalidInputException, ...).
    Rejected,
    /// The named disk, instance or snapshot does not exist.
    NotFound,
    /// Credentials missing, wrong, or expired.
    Auth,
    /// The credentials are good, but their IAM policy does not allow this call on this
    /// resource (AccessDeniedException).
    AccessDenied,
    /// Throttled, even after retries.
    Throttled,
    /// The service failed or is not ready (ServiceException, 5xx, setup in progress).
    Unavailable,
    /// No answer in time.
    Timeout,
    /// No connection, or the connection broke.
    Network,
    /// The call was accepted but its operation reports `Failed`.
    OperationFailed,
}

/// An API call that failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("Lightsail {operation} failed: {}{message}", .code.as_deref().map(|c| format!("{c}: ")).unwrap_or_default())]
pub struct ApiError {
    /// The operation (`CreateDiskSnapshot`).
    pub operation: &'static str,
    /// Its class.
    pub kind: ApiErrorKind,
    /// The service's error code, when it sent one.
    pub code: Option<String>,
    /// What was said.
    pub message: String,
}

impl ApiError {
    /// Whether the service says the snapshot name is taken: on our own retry, proof that an
    /// earlier attempt of the same call landed.
    pub fn name_exists(&self) -> bool {
        self.kind == ApiErrorKind::Rejected && self.message.contains("already exist")
    }

    /// Whether the service refused a manual snapshot because an automatic snapshot of the same
    /// resource is being created.
    pub fn auto_snapshot_in_progress(&self) -> bool {
        matches!(
            self.kind,
            ApiErrorKind::Rejected | ApiErrorKind::OperationFailed
        ) && self.message.contains("automatic snapshot")
    }

    /// Whether the request may have reached the service and taken effect anyway.
    pub fn is_ambiguous(&self) -> bool {
        matches!(
            self.kind,
            ApiErrorKind::Timeout | ApiErrorKind::Network | ApiErrorKind::Unavailable
        )
    }

    /// What an operator should do about it.
    pub fn advice(&self) -> &'static str {
        match self.kind {
            ApiErrorKind::Rejected => "check the names and tags given",
            ApiErrorKind::NotFound => {
                "check the disk or instance name, and that the region (AWS_REGION) is the instance's"
            }
            ApiErrorKind::Auth => {
                "check the credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID) and that they allow lightsail:CreateDiskSnapshot"
            }
            ApiErrorKind::AccessDenied => {
                "`lightsnap iam-policy` prints the policy lightsnap needs; attach it to the key's IAM user"
            }
            ApiErrorKind::Throttled => "the account is being throttled; try again in a minute",
            ApiErrorKind::Unavailable => "Lightsail is failing or not ready; try again later",
            ApiErrorKind::Timeout => {
                "Lightsail did not answer in time; check the network, or raise --freeze-timeout"
            }
            ApiErrorKind::Network => "Lightsail could not be reached; check the network and endpoint",
            ApiErrorKind::OperationFailed => "Lightsail could not take the snapshot; see the error details",
        }
    }
}

/// The Lightsail operations lightsnap calls. Implemented on the SDK, and by fakes in tests.
#[allow(async_fn_in_trait)]
pub trait Lightsail {
    /// GetDisk.
    async fn get_disk(&self, name: &str) -> Result<DiskInfo, ApiError>;
    /// GetInstances, every page.
    async fn get_instances(&self) -> Result<Vec<InstanceInfo>, ApiError>;
    /// GetDiskSnapshot or GetInstanceSnapshot; `Ok(None)` when there is no such snapshot.
    async fn get_snapshot(
        &self,
        kind: SnapshotKind,
        name: &str,
    ) -> Result<Option<SnapshotInfo>, ApiError>;
    /// The last calls before the window, one per request, all at once: whether each snapshot
    /// exists already, and connections ready for the create calls that follow (an
    /// implementation may route each create call along the path its warm-up opened).
    async fn warm_up(
        &self,
        requests: &[SnapshotRequest],
    ) -> Result<Vec<Option<SnapshotInfo>>, ApiError> {
        let mut found = Vec::new();
        for r in requests {
            found.push(self.get_snapshot(r.source.kind(), &r.name).await?);
        }
        Ok(found)
    }
    /// CreateDiskSnapshot (CreateInstanceSnapshot for a whole instance), every attempt within
    /// `budget`.
    async fn create_snapshot(
        &self,
        request: &SnapshotRequest,
        budget: Duration,
    ) -> Result<OperationInfo, ApiError>;
    /// GetAutoSnapshots: whether an automatic snapshot of `resource` (a disk, or an instance)
    /// is being created now.
    async fn auto_snapshot_in_progress(&self, resource: &str) -> Result<bool, ApiError>;
    /// TagResource.
    async fn tag_resource(&self, name: &str, tags: &[(String, String)]) -> Result<(), ApiError>;
    /// GetDiskSnapshots or GetInstanceSnapshots, every page.
    async fn get_snapshots(&self, kind: SnapshotKind) -> Result<Vec<SnapshotInfo>, ApiError>;
    /// DeleteDiskSnapshot or DeleteInstanceSnapshot.
    async fn delete_snapshot(&self, kind: SnapshotKind, name: &str) -> Result<(), ApiError>;
    /// GetDisk, with the state and tags a restore follows; `Ok(None)` when there is no such
    /// disk.
    async fn disk_state(&self, name: &str) -> Result<Option<DiskState>, ApiError>;
    /// GetDisks, every page.
    async fn get_disks(&self) -> Result<Vec<DiskState>, ApiError>;
    /// CreateDiskFromSnapshot.
    async fn create_disk_from_snapshot(&self, disk: &NewDisk) -> Result<OperationInfo, ApiError>;
    /// AttachDisk of `disk` to `instance` at `path` (`/dev/xvdg`).
    async fn attach_disk(
        &self,
        disk: &str,
        instance: &str,
        path: &str,
    ) -> Result<OperationInfo, ApiError>;
    /// DetachDisk.
    async fn detach_disk(&self, disk: &str) -> Result<OperationInfo, ApiError>;
    /// DeleteDisk.
    async fn delete_disk(&self, disk: &str) -> Result<OperationInfo, ApiError>;
    /// CopySnapshot, made *to* the region this client is for, of snapshot `source` in
    /// `source_region`, named `target`.
    async fn copy_snapshot(
        &self,
        source_region: &str,
        source: &str,
        target: &str,
    ) -> Result<OperationInfo, ApiError>;
    /// GetInstanceSnapshot, with what a new instance is made from; `Ok(None)` when there is
    /// no such instance snapshot.
    async fn instance_snapshot_details(
        &self,
        name: &str,
    ) -> Result<Option<InstanceSnapshotDetails>, ApiError>;
    /// CreateInstancesFromSnapshot of one instance.
    async fn create_instances_from_snapshot(
        &self,
        new: &NewInstance,
    ) -> Result<OperationInfo, ApiError>;
}

/// Every disk and instance snapshot in the region.
pub async fn all_snapshots<A: Lightsail>(api: &A) -> Result<Vec<SnapshotInfo>, ApiError> {
    let mut all = api.get_snapshots(SnapshotKind::Disk).await?;
    all.extend(api.get_snapshots(SnapshotKind::Instance).await?);
    Ok(all)
}

/// Deletes a disk or instance snapshot.
pub async fn delete_snapshot<A: Lightsail>(api: &A, s: &SnapshotInfo) -> Result<(), ApiError> {
    api.delete_snapshot(s.kind(), &s.name).await
}
