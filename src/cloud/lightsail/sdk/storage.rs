//! The calls of a restore rehearsal and of a copy to another region, on the SDK: disks made
//! from snapshots, attached, detached and deleted, and CopySnapshot; and a client for another
//! region.

use aws_sdk_lightsail::types::RegionName;

use super::convert::{operation_result, sdk_tags, tags_of};
use super::{every_page, SdkLightsail};
use crate::cloud::lightsail::ApiError;
use crate::cloud::lightsail::{
    ApiErrorKind, DiskState, InstanceSnapshotDetails, NewDisk, NewInstance, OperationInfo,
};

/// A [`DiskState`] from the SDK's `Disk`.
fn disk_state(d: &aws_sdk_lightsail::types::Disk) -> DiskState {
    DiskState {
        name: d.name().unwrap_or_default().to_string(),
        state: d
            .state()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        path: d.path().map(str::to_string),
        attached_to: d.attached_to().map(str::to_string),
        is_attached: d.is_attached().unwrap_or(false),
        support_code: d.support_code().map(str::to_string),
        availability_zone: d
            .location()
            .and_then(|l| l.availability_zone())
            .map(str::to_string),
        size_gb: d.size_in_gb(),
        tags: tags_of(d.tags()),
    }
}

impl SdkLightsail {
    /// The same client, signed for and sent to `region` (the endpoint override, where there
    /// is one, stays: a test's fake serves every region at one address).
    pub fn for_region(&self, region: &str) -> anyhow::Result<SdkLightsail> {
        crate::cloud::validate::region(region)?;
        let config = aws_sdk_lightsail::config::Builder::from(&self.config)
            .region(aws_config::Region::new(region.to_string()))
            .build();
        let endpoint = match self.config.endpoint_url() {
            Some(_) => self.endpoint.clone(),
            None if self.endpoint.starts_with("https://lightsail.") => {
                format!("https://lightsail.{region}.amazonaws.com")
            }
            None => self.endpoint.clone(),
        };
        Ok(SdkLightsail {
            client: aws_sdk_lightsail::Client::from_conf(config),
            config: self
                .config
                .clone()
                .into_builder()
                .region(aws_config::Region::new(region.to_string()))
                .build(),
            lanes: Default::default(),
            endpoint,
        })
    }

    /// The region this client signs for.
    pub fn region(&self) -> Option<String> {
        self.config.region().map(|r| r.to_string())
    }

    pub(super) async fn sdk_disk_state(&self, name: &str) -> Result<Option<DiskState>, ApiError> {
        match self.client.get_disk().disk_name(name).send().await {
            Ok(out) => Ok(out.disk().map(disk_state)),
            Err(e) => {
                let e = self.classify("GetDisk", e);
                if e.kind == ApiErrorKind::NotFound {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }

    pub(super) async fn sdk_get_disks(&self) -> Result<Vec<DiskState>, ApiError> {
        every_page(|token| async {
            let out = self
                .client
                .get_disks()
                .set_page_token(token)
                .send()
                .await
                .map_err(|e| self.classify("GetDisks", e))?;
            let items = out.disks().iter().map(disk_state).collect();
            Ok((items, out.next_page_token().map(str::to_string)))
        })
        .await
    }

    pub(super) async fn sdk_create_disk_from_snapshot(
        &self,
        disk: &NewDisk,
    ) -> Result<OperationInfo, ApiError> {
        let out = self
            .client
            .create_disk_from_snapshot()
            .disk_name(&disk.name)
            .disk_snapshot_name(&disk.snapshot)
            .availability_zone(&disk.availability_zone)
            .size_in_gb(disk.size_gb)
            .set_tags(Some(sdk_tags(&disk.tags)))
            .send()
            .await
            .map_err(|e| self.classify("CreateDiskFromSnapshot", e))?;
        operation_result("CreateDiskFromSnapshot", out.operations())
    }

    pub(super) async fn sdk_instance_snapshot_details(
        &self,
        name: &str,
    ) -> Result<Option<InstanceSnapshotDetails>, ApiError> {
        let out = match self
            .client
            .get_instance_snapshot()
            .instance_snapshot_name(name)
            .send()
            .await
            .map_err(|e| self.classify("GetInstanceSnapshot", e))
        {
            Ok(o) => o,
            Err(e) if e.kind == ApiErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let Some(s) = out.instance_snapshot() else {
            return Ok(None);
        };
        Ok(Some(InstanceSnapshotDetails {
            name: s.name().unwrap_or_default().to_string(),
            state: s
                .state()
                .map(|x| x.as_str().to_string())
                .unwrap_or_default(),
            bundle_id: s.from_bundle_id().map(str::to_string),
            availability_zone: s
                .location()
                .and_then(|l| l.availability_zone())
                .map(str::to_string),
            from_instance: s.from_instance_name().map(str::to_string),
            disks: s
                .from_attached_disks()
                .iter()
                .filter(|d| !d.is_system_disk().unwrap_or(false))
                .map(|d| {
                    (
                        d.name().unwrap_or_default().to_string(),
                        d.path().unwrap_or_default().to_string(),
                    )
                })
                .collect(),
        }))
    }

    pub(super) async fn sdk_create_instances_from_snapshot(
        &self,
        new: &NewInstance,
    ) -> Result<OperationInfo, ApiError> {
        use aws_sdk_lightsail::types::DiskMap;
        let mut call = self
            .client
            .create_instances_from_snapshot()
            .instance_names(&new.name)
            .instance_snapshot_name(&new.snapshot)
            .availability_zone(&new.availability_zone)
            .bundle_id(&new.bundle_id)
            .set_tags(Some(sdk_tags(&new.tags)));
        for (disk, path, new_name) in &new.disk_mapping {
            call = call.attached_disk_mapping(
                disk,
                vec![DiskMap::builder()
                    .original_disk_path(path)
                    .new_disk_name(new_name)
                    .build()],
            );
        }
        let out = call
            .send()
            .await
            .map_err(|e| self.classify("CreateInstancesFromSnapshot", e))?;
        operation_result("CreateInstancesFromSnapshot", out.operations())
    }

    pub(super) async fn sdk_attach_disk(
        &self,
        disk: &str,
        instance: &str,
        path: &str,
    ) -> Result<OperationInfo, ApiError> {
        let out = self
            .client
            .attach_disk()
            .disk_name(disk)
            .instance_name(instance)
            .disk_path(path)
            // The agent mounts it itself, read-only: Lightsail must not mount it read-write.
            .auto_mounting(false)
            .send()
            .await
            .map_err(|e| self.classify("AttachDisk", e))?;
        operation_result("AttachDisk", out.operations())
    }

    pub(super) async fn sdk_detach_disk(&self, disk: &str) -> Result<OperationInfo, ApiError> {
        let out = self
            .client
            .detach_disk()
            .disk_name(disk)
            .send()
            .await
            .map_err(|e| self.classify("DetachDisk", e))?;
        operation_result("DetachDisk", out.operations())
    }

    pub(super) async fn sdk_delete_disk(&self, disk: &str) -> Result<OperationInfo, ApiError> {
        let out = self
            .client
            .delete_disk()
            .disk_name(disk)
            .send()
            .await
            .map_err(|e| self.classify("DeleteDisk", e))?;
        operation_result("DeleteDisk", out.operations())
    }

    pub(super) async fn sdk_copy_snapshot(
        &self,
        source_region: &str,
        source: &str,
        target: &str,
    ) -> Result<OperationInfo, ApiError> {
        let out = self
            .client
            .copy_snapshot()
            .source_region(RegionName::from(source_region))
            .source_snapshot_name(source)
            .target_snapshot_name(target)
            .send()
            .await
            .map_err(|e| self.classify("CopySnapshot", e))?;
        operation_result("CopySnapshot", out.operations())
    }
}
