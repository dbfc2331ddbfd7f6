//! This instance's disks as `setup` offers them: each Lightsail disk (or the system volume)
//! with the filesystems mounted on it, found as `snap-instance` finds them (the mount table,
//! sysfs, the instance's disks as Lightsail lists them), and whether lightsnap already has a
//! snapshot of it that verified clean.

use std::path::PathBuf;

use serde::Serialize;

use crate::cloud::ebs;
use crate::cloud::lightsail::{InstanceInfo, SnapshotInfo};
use crate::kernel::{blockdev, mountinfo::Mount};
use crate::snap::plan;

/// A disk of this instance with filesystems mounted on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Target {
    /// The disk as snapshots name it (`<instance>-system` for the system volume).
    pub disk: String,
    /// Whether it is the system volume.
    pub system: bool,
    /// The mount points of the filesystems on it, one per filesystem, sorted.
    pub mount_points: Vec<PathBuf>,
    /// The automatic snapshot add-on's hour (`HH:00` UTC), when one is enabled on it (the
    /// instance's, for the system volume).
    pub auto_snapshot: Option<String>,
    /// A snapshot lightsnap took of it that verified clean, if there is one.
    pub verified: Option<String>,
}

/// The targets of `me` among `mounts` (data disks by name, then the system volume), and the
/// mounts on block devices left out with why.
pub fn targets(me: &InstanceInfo, mounts: &[Mount]) -> (Vec<Target>, Vec<String>) {
    let root = blockdev::SysfsRoot::default();
    let confine = crate::kernel::guard::confinement();
    let mut targets: Vec<Target> = Vec::new();
    let mut left_out = Vec::new();
    let mut seen: Vec<(u32, u32)> = Vec::new();
    for m in mounts {
        let point = &m.mount_point;
        let Ok(located) = plan::locate(point, mounts) else {
            continue; // not on a block device: nothing to offer
        };
        if located.mount.id != m.id {
            continue; // hidden by a later mount on the same point
        }
        if confine
            .as_ref()
            .is_some_and(|c| !point.starts_with(c) || point == c)
        {
            continue;
        }
        // One filesystem, one entry: a bind mount of it is the same freeze.
        if seen.contains(&m.dev) {
            continue;
        }
        let disks = match plan::whole_disks(&root, &located) {
            Ok(d) => d,
            Err(e) => {
                left_out.push(format!("{} ({e:#})", point.display()));
                continue;
            }
        };
        let ours: Vec<&ebs::DiskIds> = disks
            .iter()
            .filter(|ids| me.disks.iter().any(|d| plan::is_disk(d, ids)))
            .collect();
        if ours.is_empty() {
            left_out.push(format!(
                "{} ({} on {}: not a disk of {})",
                point.display(),
                m.fstype,
                located.block_device.display(),
                me.name
            ));
            continue;
        }
        seen.push(m.dev);
        for ids in ours {
            let Some(disk) = me.disks.iter().find(|d| plan::is_disk(d, ids)) else {
                continue;
            };
            let (name, add_on) = if disk.is_system_disk {
                (format!("{}-system", me.name), me.auto_snapshot.as_ref())
            } else {
                (disk.name.clone(), disk.auto_snapshot.as_ref())
            };
            let auto_snapshot = add_on
                .filter(|a| a.is_enabled())
                .and_then(|a| a.time_of_day.clone());
            match targets.iter_mut().find(|t| t.disk == name) {
                Some(t) => {
                    if !t.mount_points.contains(point) {
                        t.mount_points.push(point.clone());
                    }
                }
                None => targets.push(Target {
                    disk: name,
                    system: disk.is_system_disk,
                    mount_points: vec![point.clone()],
                    auto_snapshot,
                    verified: None,
                }),
            }
        }
    }
    for t in &mut targets {
        t.mount_points.sort();
    }
    targets.sort_by(|a, b| (a.system, &a.disk).cmp(&(b.system, &b.disk)));
    (targets, left_out)
}

/// Marks each target that has a snapshot lightsnap took of it, completed and tagged
/// `lightsnap:verified=clean` (copies from other regions aside).
pub fn mark_verified(targets: &mut [Target], snapshots: &[SnapshotInfo]) {
    for t in targets {
        t.verified = snapshots
            .iter()
            .filter(|s| s.is_done() && crate::retention::is_own(s))
            .filter(|s| s.from.as_deref() == Some(t.disk.as_str()))
            .filter(|s| s.tag(crate::restore::copy::COPY_OF_TAG).is_none())
            .filter(|s| s.tag(crate::restore::VERIFIED_TAG) == Some("clean"))
            .max_by(|a, b| {
                a.created_at
                    .unwrap_or(0.0)
                    .total_cmp(&b.created_at.unwrap_or(0.0))
            })
            .map(|s| s.name.clone());
    }
}
