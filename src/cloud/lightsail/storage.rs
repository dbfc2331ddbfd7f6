//! Block storage disks as a restore rehearsal (`lightsnap verify`) sees them: their state,
//! zone and tags, and the request that makes one from a snapshot.

use serde::Serialize;

/// A block storage disk, with what a restore follows (GetDisk, GetDisks).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiskState {
    /// Disk name.
    pub name: String,
    /// `pending`, `available`, `in-use`, `error`, `unknown`.
    pub state: String,
    /// The device path it is attached at (`/dev/xvdg`).
    pub path: Option<String>,
    /// The instance it is attached to.
    pub attached_to: Option<String>,
    /// Whether it is attached.
    pub is_attached: bool,
    /// `<account>/vol-...`: the volume id, which an NVMe controller shows as its serial.
    pub support_code: Option<String>,
    /// Its availability zone.
    pub availability_zone: Option<String>,
    /// Size in GB.
    pub size_gb: Option<i32>,
    /// Its tags.
    pub tags: Vec<(String, String)>,
}

impl DiskState {
    /// The value of tag `key`.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The EBS volume id its support code ends in (`vol-...`), if any.
    pub fn volume_id(&self) -> Option<&str> {
        self.support_code
            .as_deref()
            .and_then(|c| c.rsplit('/').next())
            .filter(|v| v.starts_with("vol-"))
    }
}

/// One CreateDiskFromSnapshot call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewDisk {
    /// The new disk's name.
    pub name: String,
    /// The disk snapshot it is made from.
    pub snapshot: String,
    /// Where: this instance's availability zone (a disk attaches only in its own zone).
    pub availability_zone: String,
    /// Its size in GB (at least the snapshot's).
    pub size_gb: i32,
    /// Its tags.
    pub tags: Vec<(String, String)>,
}

/// An instance snapshot as a new instance is made from it (GetInstanceSnapshot).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstanceSnapshotDetails {
    /// The snapshot.
    pub name: String,
    /// `pending`, `available`, `error`.
    pub state: String,
    /// The bundle of the instance it was taken of.
    pub bundle_id: Option<String>,
    /// Its availability zone.
    pub availability_zone: Option<String>,
    /// The instance it was taken of.
    pub from_instance: Option<String>,
    /// The block storage disks it holds: name and the path each was attached at.
    pub disks: Vec<(String, String)>,
}

/// One CreateInstancesFromSnapshot call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewInstance {
    /// The new instance's name.
    pub name: String,
    /// The instance snapshot.
    pub snapshot: String,
    /// Where.
    pub availability_zone: String,
    /// Its bundle.
    pub bundle_id: String,
    /// Each disk of the snapshot: (its name, the path it was attached at, the new disk's
    /// name) — Lightsail's `attachedDiskMapping`.
    pub disk_mapping: Vec<(String, String, String)>,
    /// Its tags.
    pub tags: Vec<(String, String)>,
}
