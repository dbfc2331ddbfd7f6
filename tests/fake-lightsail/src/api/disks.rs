//! Restores and attachments: CreateDiskFromSnapshot, AttachDisk, DetachDisk and DeleteDisk
//! over the fake's state, with the service's states (`pending` → `available` → `in-use`) and
//! refusals. In attach mode ([`crate::attach`]) an attached restored disk also becomes a loop
//! device on the test machine, or is handed to the attach command.
//!
//! Error codes follow one rule where the service does not document its own: bad input
//! (names, zones, paths, sizes, names in use) is `InvalidInputException`, an unknown resource
//! `NotFoundException`, a resource in the wrong state for the call (attached, not attached,
//! pending, a snapshot not completed) `OperationFailureException`.

use std::path::PathBuf;
use std::time::SystemTime;

use serde_json::{json, Value};

use crate::attach::{Device, Mode};

use super::{check_name, image_file_name, parse_tags, required, ApiError, Disk, Outcome, World};

/// Availability zone letters a region is taken to have.
const ZONE_LETTERS: &str = "abcdef";

fn conflict(message: impl Into<String>) -> ApiError {
    ApiError::new("OperationFailureException", message)
}

impl World {
    /// Attach mode and how long a restored disk stays pending.
    pub(crate) fn configure_disks(&mut self, attach: crate::attach::Mode, pending_reads: u32) {
        self.attach = attach;
        self.disk_pending_reads = pending_reads;
    }

    /// Whether `zone` is one of this region's: `<region>a` … `<region>f`, or a seeded
    /// instance's.
    pub(super) fn valid_zone(&self, zone: &str) -> bool {
        let letter = zone
            .strip_prefix(self.region.as_str())
            .is_some_and(|l| l.len() == 1 && ZONE_LETTERS.contains(l));
        letter || self.instances.iter().any(|i| i.zone == zone)
    }

    /// A disk by name, with the refusals shared by attach, detach and delete.
    fn block_disk(&self, name: &str, verb: &str) -> Result<usize, ApiError> {
        let i = self
            .disks
            .iter()
            .position(|d| d.name == name)
            .ok_or_else(|| ApiError::not_found(format!("The Disk does not exist: {name}")))?;
        if self.disks[i].system {
            return Err(ApiError::invalid(format!(
                "The disk {name} is a system disk: it cannot be {verb}"
            )));
        }
        Ok(i)
    }

    /// Two operations, of the disk and of the instance, as attach and detach answer.
    fn disk_and_instance_ops(
        &mut self,
        disk: &str,
        instance: &str,
        kind: &'static str,
        now: SystemTime,
    ) -> Value {
        let a = self.record_operation(disk, "Disk", kind, instance, "Succeeded", now);
        let b = self.record_operation(instance, "Instance", kind, disk, "Succeeded", now);
        json!({ "operations": [a["operations"][0], b["operations"][0]] })
    }

    pub(super) fn create_disk_from_snapshot(
        &mut self,
        body: &Value,
        now: SystemTime,
    ) -> Result<Outcome, ApiError> {
        let name = required(body, "diskName")?;
        check_name("diskName", name)?;
        for auto in [
            "sourceDiskName",
            "restoreDate",
            "useLatestRestorableAutoSnapshot",
        ] {
            if body.get(auto).is_some() {
                return Err(ApiError::invalid(format!(
                    "{auto}: the fake restores manual disk snapshots only (diskSnapshotName)"
                )));
            }
        }
        let snapshot = required(body, "diskSnapshotName")?;
        check_name("diskSnapshotName", snapshot)?;
        let zone = required(body, "availabilityZone")?;
        let size_gb = body
            .get("sizeInGb")
            .and_then(Value::as_i64)
            .ok_or_else(|| ApiError::invalid("sizeInGb is required"))?;
        let tags = parse_tags(body)?;
        if !self.valid_zone(zone) {
            return Err(ApiError::invalid(format!(
                "The availability zone {zone} is not valid in region {}",
                self.region
            )));
        }
        if self.disks.iter().any(|d| d.name == name) {
            return Err(ApiError::invalid(format!(
                "Some names are already in use: {name}"
            )));
        }
        let Some(s) = self.disk_snapshots.iter().find(|s| s.name == snapshot) else {
            if self.instance_snapshots.iter().any(|s| s.name == snapshot) {
                return Err(ApiError::not_found(format!(
                    "The DiskSnapshot does not exist: {snapshot} is an instance snapshot \
                     (instance snapshots restore with CreateInstancesFromSnapshot)"
                )));
            }
            return Err(ApiError::not_found(format!(
                "The DiskSnapshot does not exist: {snapshot}"
            )));
        };
        let (state, _) = self.progress(s, "completed", now);
        if state != "completed" {
            return Err(conflict(format!(
                "The disk snapshot {snapshot} is {state}: only a completed snapshot can be restored"
            )));
        }
        if size_gb < s.size_gb {
            return Err(ApiError::invalid(format!(
                "sizeInGb {size_gb} is smaller than the snapshot {snapshot} ({} GB)",
                s.size_gb
            )));
        }
        let image = self.disk_image(snapshot);
        let disk = Disk {
            name: name.to_string(),
            path: None,
            attached_to: None,
            size_gb,
            backing: None,
            volume_id: self.volume_id(name),
            system: false,
            created_at: now,
            tags,
            zone: zone.to_string(),
            pending_reads: self.disk_pending_reads,
            source_image: image.is_file().then_some(image),
            copy: None,
            corrupt: self.corrupt_next,
            device: None,
        };
        self.disks.push(disk);
        Ok(self
            .record_operation(name, "Disk", "CreateDiskFromSnapshot", "", "Started", now)
            .into())
    }

    pub(super) fn attach_disk(
        &mut self,
        body: &Value,
        now: SystemTime,
    ) -> Result<Outcome, ApiError> {
        let name = required(body, "diskName")?;
        check_name("diskName", name)?;
        let instance = required(body, "instanceName")?;
        check_name("instanceName", instance)?;
        let path = required(body, "diskPath")?;
        let i = self.block_disk(name, "attached")?;
        let Some(target_zone) = self.instance(instance).map(|x| x.zone.clone()) else {
            return Err(ApiError::not_found(format!(
                "The Instance does not exist: {instance}"
            )));
        };
        if !crate::attach::valid_disk_path(path) {
            return Err(ApiError::invalid(
                "The disk path is invalid. You must specify a valid disk path.",
            ));
        }
        let d = &self.disks[i];
        if let Some(to) = &d.attached_to {
            return Err(conflict(format!(
                "The disk {name} is already attached to instance {to}"
            )));
        }
        if d.pending_reads > 0 {
            return Err(conflict(format!(
                "The disk {name} is pending: it can be attached once it is available"
            )));
        }
        if d.zone != target_zone {
            return Err(ApiError::invalid(format!(
                "The disk {name} ({}) and the instance {instance} ({target_zone}) must be in the same Availability Zone",
                d.zone
            )));
        }
        if self
            .disks
            .iter()
            .any(|o| o.attached_to.as_deref() == Some(instance) && o.path.as_deref() == Some(path))
        {
            return Err(ApiError::invalid(format!(
                "The disk path {path} is already in use on instance {instance}"
            )));
        }
        let device = self.expose(i, path)?;
        let d = &mut self.disks[i];
        d.device = device;
        d.attached_to = Some(instance.to_string());
        d.path = Some(path.to_string());
        Ok(self
            .disk_and_instance_ops(name, instance, "AttachDisk", now)
            .into())
    }

    /// Attach mode: the restored disk `i` as a loop device at `<attach dir>/<basename of
    /// path>`, or handed to the attach command, its copy made (and corrupted, when asked)
    /// first. `None` outside attach mode and for disks without snapshot bytes (seeded disks,
    /// restores of byte-less snapshots).
    fn expose(&mut self, i: usize, path: &str) -> Result<Option<Device>, ApiError> {
        let mode = self.attach.clone();
        if matches!(mode, Mode::Off) {
            return Ok(None);
        }
        let failed = |what: String| {
            ApiError::new(
                "ServiceException",
                format!("the fake could not attach: {what}"),
            )
        };
        let copy = match (&self.disks[i].copy, &self.disks[i].source_image) {
            (Some(c), _) => c.clone(),
            (None, Some(source)) => {
                let copy = self
                    .snapshot_dir
                    .join("disks")
                    .join(image_file_name(&self.disks[i].name));
                crate::copy::copy_image(source, &copy).map_err(|e| {
                    failed(format!(
                        "copying {} to {}: {e}",
                        source.display(),
                        copy.display()
                    ))
                })?;
                self.disks[i].copy = Some(copy.clone());
                copy
            }
            (None, None) => {
                // A seeded disk backed by a block device, attached again (a roll-back puts
                // the original back): its own device, linked where the path says.
                let backing = self.disks[i].backing.clone();
                return match (&mode, backing) {
                    (Mode::Dir(dir), Some(b)) if is_block_device(&b) => {
                        let base = path.rsplit('/').next().unwrap_or(path);
                        crate::attach::link(&b, &dir.join(base))
                            .map(|l| Some(Device::Linked(l)))
                            .map_err(failed)
                    }
                    _ => Ok(None),
                };
            }
        };
        if self.disks[i].corrupt || self.corrupt_next {
            crate::attach::corrupt(&copy)
                .map_err(|e| failed(format!("corrupting {}: {e}", copy.display())))?;
            self.disks[i].corrupt = false;
        }
        let dir = match mode {
            Mode::Off => return Ok(None),
            Mode::Dir(dir) => dir,
            Mode::Command(command) => {
                let serial = crate::attach::nvme_serial(&self.disks[i].volume_id);
                return crate::attach::plug(&command, &copy, &serial, path)
                    .map(|p| Some(Device::Plugged(p)))
                    .map_err(failed);
            }
        };
        let base = path.rsplit('/').next().unwrap_or(path);
        let link = dir.join(base);
        // One directory stands for every instance's /dev: two disks at one path on two
        // instances would share a link.
        if let Some(other) = self
            .disks
            .iter()
            .find(|d| matches!(&d.device, Some(Device::Loop(e)) if e.link == link))
        {
            return Err(ApiError::invalid(format!(
                "the fake's attach mode: {} is the device of disk {} already (attach mode has one device directory for \
                 every instance)",
                link.display(),
                other.name
            )));
        }
        crate::attach::expose(&copy, &link)
            .map(|e| Some(Device::Loop(e)))
            .map_err(failed)
    }

    pub(super) fn detach_disk(
        &mut self,
        body: &Value,
        now: SystemTime,
    ) -> Result<Outcome, ApiError> {
        let name = required(body, "diskName")?;
        check_name("diskName", name)?;
        let i = self.block_disk(name, "detached")?;
        let d = &mut self.disks[i];
        let Some(instance) = d.attached_to.take() else {
            return Err(conflict(format!(
                "The disk {name} is not attached to an instance"
            )));
        };
        // Dropping the device removes its link and its loop device, or runs the attach
        // command's detach.
        d.device = None;
        d.path = None;
        Ok(self
            .disk_and_instance_ops(name, &instance, "DetachDisk", now)
            .into())
    }

    pub(super) fn delete_disk(
        &mut self,
        body: &Value,
        now: SystemTime,
    ) -> Result<Outcome, ApiError> {
        let name = required(body, "diskName")?;
        check_name("diskName", name)?;
        let i = self.block_disk(name, "deleted")?;
        if let Some(to) = &self.disks[i].attached_to {
            return Err(conflict(format!(
                "The disk {name} is attached to instance {to}: detach it before deleting it"
            )));
        }
        // forceDeleteAddOns: the fake's restored disks have no add-ons to delete.
        let disk = self.disks.remove(i);
        if let Some(copy) = &disk.copy {
            let _ = std::fs::remove_file(copy);
        }
        Ok(self
            .record_operation(name, "Disk", "DeleteDisk", "", "Succeeded", now)
            .into())
    }

    /// A disk (block storage or system) as GetDisk shows it, without counting as a read.
    pub(crate) fn disk_view(&self, name: &str) -> Option<Value> {
        self.disk(name).map(|d| self.disk_json(d))
    }

    /// Attach mode: the loop device and the link of an attached restored disk.
    pub(crate) fn attached_device(&self, name: &str) -> Option<(PathBuf, PathBuf)> {
        match self.disk(name)?.device.as_ref()? {
            Device::Loop(e) => Some((e.device.clone(), e.link.clone())),
            Device::Plugged(_) | Device::Linked(_) => None,
        }
    }

    /// Attach mode: a restored disk's own copy of its snapshot's bytes, once made.
    pub(crate) fn disk_copy(&self, name: &str) -> Option<PathBuf> {
        self.disk(name)?.copy.clone()
    }

    /// Removes every link and loop device (the fake is stopping); the copies stay until
    /// their disks are deleted or the snapshot directory is.
    pub(crate) fn release_devices(&mut self) {
        for d in &mut self.disks {
            d.device = None;
        }
    }
}

fn is_block_device(p: &std::path::Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(p).is_ok_and(|m| m.file_type().is_block_device())
}
