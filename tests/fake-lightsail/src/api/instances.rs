//! `CreateInstancesFromSnapshot`: new instance records in the home region, made from an
//! instance snapshot, as the service documents the call (`instanceNames`,
//! `instanceSnapshotName`, `availabilityZone`, `bundleId`, `attachedDiskMapping`, `tags`).
//! The new instances are `running` at once and hold no disks: what a test checks is the call
//! and its mapping (in the call record), and that the snapshotted instance is untouched.

use std::time::SystemTime;

use serde_json::{json, Value};

use super::{check_name, parse_tags, required, ApiError, Instance, Outcome, World};

impl World {
    pub(super) fn create_instances_from_snapshot(
        &mut self,
        body: &Value,
        now: SystemTime,
    ) -> Result<Outcome, ApiError> {
        let snapshot = required(body, "instanceSnapshotName")?;
        let zone = required(body, "availabilityZone")?;
        let bundle = required(body, "bundleId")?;
        let names: Vec<String> = body
            .get("instanceNames")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if names.is_empty() || bundle.is_empty() {
            return Err(ApiError::invalid("instanceNames and bundleId are required"));
        }
        for n in &names {
            check_name("instanceNames", n)?;
        }
        let tags = parse_tags(body)?;
        let Some(s) = self.instance_snapshots.iter().find(|s| s.name == snapshot) else {
            return Err(ApiError::not_found(format!(
                "The InstanceSnapshot does not exist: {snapshot}"
            )));
        };
        let (state, _) = self.progress(s, "available", now);
        if state != "available" {
            return Err(ApiError::new(
                "OperationFailureException",
                format!("The InstanceSnapshot {snapshot} is {state}, not available"),
            ));
        }
        // Each mapped disk must be one the snapshot holds, at the path it had.
        let held: Vec<(String, Option<String>)> = s
            .disks
            .iter()
            .map(|d| (d.clone(), self.disk(d).and_then(|x| x.path.clone())))
            .collect();
        if let Some(map) = body.get("attachedDiskMapping").and_then(Value::as_object) {
            for (disk, maps) in map {
                let Some((_, path)) = held.iter().find(|(n, _)| n == disk) else {
                    return Err(ApiError::invalid(format!(
                        "The disk {disk} is not in instance snapshot {snapshot}"
                    )));
                };
                for m in maps.as_array().into_iter().flatten() {
                    let original = m.get("originalDiskPath").and_then(Value::as_str);
                    if original != path.as_deref() {
                        return Err(ApiError::invalid(format!(
                            "originalDiskPath {} of {disk} is not its path in the snapshot ({})",
                            original.unwrap_or("-"),
                            path.as_deref().unwrap_or("-")
                        )));
                    }
                    let new = m.get("newDiskName").and_then(Value::as_str).unwrap_or("");
                    check_name("newDiskName", new)?;
                }
            }
        }
        if !self.valid_zone(zone) {
            return Err(ApiError::invalid(format!(
                "The availability zone {zone} is not valid"
            )));
        }
        let taken: Vec<&String> = names
            .iter()
            .filter(|n| self.instance(n).is_some())
            .collect();
        if !taken.is_empty() {
            return Err(ApiError::invalid(format!(
                "Some names are already in use: {}",
                taken
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let mut ops = Vec::new();
        for n in names {
            let id = self.next_id("instance");
            self.instances.push(Instance {
                name: n.clone(),
                instance_id: format!("i-0{}", &id.replace('-', "")[..16]),
                zone: zone.to_string(),
                created_at: now,
                tags: tags.clone(),
            });
            let mut op = self.record_operation(
                &n,
                "Instance",
                "CreateInstancesFromSnapshot",
                snapshot,
                "Started",
                now,
            );
            ops.push(op["operations"][0].take());
        }
        Ok(json!({ "operations": ops }).into())
    }
}
