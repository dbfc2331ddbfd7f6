//! Regions: one [`World`] per region the fake serves, chosen by the region a request is
//! signed for (its SigV4 credential scope), as each real regional endpoint has its own
//! resources. The seed's region is the home one (instances, disks, the metadata service);
//! the seed's `regions` are served too, empty at the start, so snapshots can be copied to
//! them with CopySnapshot, which is sent to the target region's endpoint.

use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::{check_name, image_file_name, required, ApiError, CopyJob, Outcome, Snapshot, World};
use crate::seed::Seed;

/// The region names of the service model (`RegionName`): what `sourceRegion` may be.
const LIGHTSAIL_REGIONS: &[&str] = &[
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "eu-central-1",
    "eu-north-1",
    "eu-south-2",
    "ca-central-1",
    "ap-east-1",
    "ap-south-1",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-southeast-3",
    "ap-southeast-5",
    "sa-east-1",
];

/// Every region's state. Dereferences to the home region's, which is what the metadata
/// service, the admin endpoint and the single-region accessors of [`crate::Fake`] see.
pub(crate) struct Worlds {
    home: World,
    others: BTreeMap<String, World>,
}

impl Deref for Worlds {
    type Target = World;
    fn deref(&self) -> &World {
        &self.home
    }
}

impl DerefMut for Worlds {
    fn deref_mut(&mut self) -> &mut World {
        &mut self.home
    }
}

impl Worlds {
    /// The home region from the seed, and an empty world for each of its other `regions`,
    /// whose snapshot images go to `<snapshot dir>/<region>/`.
    pub(crate) fn new(
        seed: &Seed,
        snapshot_dir: PathBuf,
        snapshot_duration: Duration,
        page_size: usize,
        attach: crate::attach::Mode,
        disk_pending_reads: u32,
    ) -> Self {
        let mut home = World::new(seed, snapshot_dir.clone(), snapshot_duration, page_size);
        home.configure_disks(attach.clone(), disk_pending_reads);
        let mut others = BTreeMap::new();
        for region in &seed.regions {
            // Only its snapshots: instances, disks and the metadata service are the home
            // region's.
            let mut empty = match seed.region_seeds.get(region) {
                // A region with instances of its own (a fleet).
                Some(own) => {
                    let mut own = own.clone();
                    own.account = seed.account.clone();
                    own.region = region.clone();
                    own.regions.clear();
                    own
                }
                None => Seed::from_toml_str(&format!(
                    "account = {:?}\nregion = {region:?}",
                    seed.account
                ))
                .expect("a valid empty seed"),
            };
            empty.disk_snapshots.extend(
                seed.region_disk_snapshots
                    .get(region)
                    .cloned()
                    .unwrap_or_default(),
            );
            let mut w = World::new(
                &empty,
                snapshot_dir.join(region),
                snapshot_duration,
                page_size,
            );
            w.configure_disks(attach.clone(), disk_pending_reads);
            others.insert(region.clone(), w);
        }
        Self { home, others }
    }

    /// The state of `region`, if the fake serves it.
    pub(crate) fn region(&self, region: &str) -> Option<&World> {
        if region == self.home.region {
            Some(&self.home)
        } else {
            self.others.get(region)
        }
    }

    /// The state of `region`, if the fake serves it, for a change.
    pub(crate) fn region_mut(&mut self, region: &str) -> Option<&mut World> {
        if region == self.home.region {
            Some(&mut self.home)
        } else {
            self.others.get_mut(region)
        }
    }

    /// Every region served, the home one first.
    pub(crate) fn served(&self) -> Vec<String> {
        std::iter::once(self.home.region.clone())
            .chain(self.others.keys().cloned())
            .collect()
    }

    /// Answers `operation` as the endpoint of `region` (which must be served).
    pub(crate) fn call(
        &mut self,
        region: &str,
        operation: &str,
        body: &Value,
        now: SystemTime,
    ) -> Result<Outcome, ApiError> {
        if operation == "CopySnapshot" && body.is_object() {
            return self.copy_snapshot(region, body, now);
        }
        if operation == "GetRegions" && self.region(region).is_some() {
            // Every region this fake serves (the real service lists all of Lightsail's).
            let regions: Vec<Value> = self
                .served()
                .into_iter()
                .map(|name| {
                    serde_json::json!({
                        "name": name,
                        "displayName": name,
                        "continentCode": "NA",
                        "description": format!("the fake's {name}"),
                    })
                })
                .collect();
            return Ok(serde_json::json!({ "regions": regions }).into());
        }
        match self.region_mut(region) {
            Some(w) => w.call(operation, body, now),
            None => Err(ApiError::new(
                "InvalidSignatureException",
                format!("this fake does not serve region {region}"),
            )),
        }
    }

    /// CopySnapshot, received by the target region's endpoint: a completed manual snapshot
    /// of `sourceRegion` copied here (bytes included), `pending` then `completed` (instance
    /// snapshots `available`) as a new snapshot would be. Tags are not copied.
    fn copy_snapshot(
        &mut self,
        target: &str,
        body: &Value,
        now: SystemTime,
    ) -> Result<Outcome, ApiError> {
        let name = required(body, "targetSnapshotName")?;
        check_name("targetSnapshotName", name)?;
        let source_region = required(body, "sourceRegion")?;
        for auto in [
            "sourceResourceName",
            "restoreDate",
            "useLatestRestorableAutoSnapshot",
        ] {
            if body.get(auto).is_some() {
                return Err(ApiError::invalid(format!(
                    "{auto}: the fake copies manual snapshots only (sourceSnapshotName)"
                )));
            }
        }
        let source_name = required(body, "sourceSnapshotName")?;
        check_name("sourceSnapshotName", source_name)?;
        if !LIGHTSAIL_REGIONS.contains(&source_region) {
            return Err(ApiError::invalid(format!(
                "sourceRegion {source_region:?} is not a Lightsail region"
            )));
        }
        let missing = || {
            ApiError::not_found(format!(
                "The snapshot does not exist in {source_region}: {source_name}"
            ))
        };
        let source = self.region(source_region).ok_or_else(missing)?;
        let (instance, s) = match source.disk_snapshots.iter().find(|s| s.name == source_name) {
            Some(s) => (false, s),
            None => (
                true,
                source
                    .instance_snapshots
                    .iter()
                    .find(|s| s.name == source_name)
                    .ok_or_else(missing)?,
            ),
        };
        let done = if instance { "available" } else { "completed" };
        let (state, _) = source.progress(s, done, now);
        if state != done {
            return Err(ApiError::new(
                "OperationFailureException",
                format!(
                    "The snapshot {source_name} is {state}: only a {done} snapshot can be copied"
                ),
            ));
        }
        let copy = Snapshot {
            name: name.to_string(),
            from: s.from.clone(),
            from_instance: s.from_instance.clone(),
            size_gb: s.size_gb,
            created_at: now,
            tags: Vec::new(),
            auto: false,
            fixed_state: None,
            disks: s.disks.clone(),
        };
        // The bytes: a disk snapshot's image, or each disk image of an instance snapshot.
        let (from_image, from_dir) = (
            source.disk_image(source_name),
            source
                .snapshot_dir
                .join(image_file_name(source_name).trim_end_matches(".img")),
        );
        let target_world = self.region_mut(target).expect("a served region");
        if target_world.name_taken(name) {
            return Err(ApiError::invalid(format!(
                "A snapshot named {name} already exists"
            )));
        }
        let mut copies = Vec::new();
        if !instance && from_image.is_file() {
            copies.push(CopyJob {
                from: from_image,
                to: target_world.disk_image(name),
            });
        }
        if instance {
            let to_dir = target_world
                .snapshot_dir
                .join(image_file_name(name).trim_end_matches(".img"));
            for entry in std::fs::read_dir(&from_dir).into_iter().flatten().flatten() {
                copies.push(CopyJob {
                    from: entry.path(),
                    to: to_dir.join(entry.file_name()),
                });
            }
        }
        let details = format!("{source_region}:{source_name}");
        let (kind, list) = if instance {
            ("InstanceSnapshot", &mut target_world.instance_snapshots)
        } else {
            ("DiskSnapshot", &mut target_world.disk_snapshots)
        };
        list.push(copy);
        let body =
            target_world.record_operation(name, kind, "CopySnapshot", &details, "Started", now);
        Ok(Outcome {
            body,
            copies,
            created: Some((instance, name.to_string())),
        })
    }

    /// Every disk of every region, for the admin endpoint: as GetDisk shows it (system disks
    /// too), with `region`, and in attach mode `device` (the loop device), `link` and
    /// `copy` (`null` when there are none).
    pub(crate) fn all_disks(&self) -> Value {
        let mut out = Vec::new();
        for region in self.served() {
            let w = self.region(&region).expect("served");
            for d in &w.disks {
                let mut v = w.disk_json(d);
                v["region"] = Value::from(region.as_str());
                let e = match &d.device {
                    Some(crate::attach::Device::Loop(e)) => Some(e),
                    _ => None,
                };
                v["device"] = e.map_or(Value::Null, |e| e.device.display().to_string().into());
                v["link"] = e.map_or(Value::Null, |e| e.link.display().to_string().into());
                v["plugged"] = match &d.device {
                    Some(crate::attach::Device::Plugged(p)) => p.serial.clone().into(),
                    _ => Value::Null,
                };
                v["copy"] = d
                    .copy
                    .as_ref()
                    .map_or(Value::Null, |c| c.display().to_string().into());
                out.push(v);
            }
        }
        Value::Array(out)
    }

    /// Removes every link and loop device of every region (the fake is stopping).
    pub(crate) fn release_devices(&mut self) {
        self.home.release_devices();
        for w in self.others.values_mut() {
            w.release_devices();
        }
    }
}
