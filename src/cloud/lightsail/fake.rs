//! A scripted [`Lightsail`] for unit tests: canned instances and snapshots, an answer chosen
//! per snapshot name for each create call, and a log of every call, so the orchestration is
//! tested without a network. (The black-box tests use the fake *service* in
//! `tests/fake-lightsail` through the real SDK instead.)

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use super::{
    ApiError, ApiErrorKind, DiskInfo, DiskState, InstanceInfo, InstanceSnapshotDetails, Lightsail,
    NewDisk, NewInstance, OperationInfo, SnapshotInfo, SnapshotKind, SnapshotRequest,
};

/// How a create call answers.
#[derive(Debug, Clone)]
pub(crate) enum Answer {
    /// The operation starts; the snapshot then exists.
    Ok,
    /// The call fails; `lands` says whether the snapshot exists anyway (an ambiguous failure
    /// whose request reached the service).
    Fail(ApiErrorKind, bool),
    /// No answer, ever (the snapshot lands all the same).
    Hang,
}

/// The scripted service.
#[derive(Debug, Default)]
pub(crate) struct FakeLightsail {
    /// What GetInstances answers.
    pub instances: Vec<InstanceInfo>,
    /// Create answers by snapshot name (default: [`Answer::Ok`]).
    pub answers: HashMap<String, Answer>,
    /// Snapshots that exist, by name.
    pub snapshots: Mutex<Vec<SnapshotInfo>>,
    /// Every call, as `Operation argument`, in order; a create call logs `start` and `end`.
    pub log: Mutex<Vec<String>>,
    /// The budget each create call was given.
    pub budgets: Mutex<Vec<Duration>>,
    /// Notified when a create call starts (a permit is kept if nobody waits yet).
    pub started: tokio::sync::Notify,
    /// Resources with an automatic snapshot in progress: how many more looks see it so.
    pub auto_in_progress: Mutex<HashMap<String, u32>>,
    /// Block storage disks made by CreateDiskFromSnapshot (or put there by a test).
    pub disks: Mutex<Vec<DiskState>>,
    /// Operations (`AttachDisk`, ...) that fail, with their class.
    pub failing: HashMap<&'static str, ApiErrorKind>,
    /// Operations that never answer.
    pub hanging: Vec<&'static str>,
    /// CreateDiskFromSnapshot races another creator: a disk of the requested name, with
    /// these tags, appears just before the call, which is then refused (name in use).
    pub disk_name_race: Option<Vec<(String, String)>>,
    /// CreateDiskFromSnapshot makes the disk, but its answer is lost: this error instead.
    pub create_disk_answer_lost: Option<ApiErrorKind>,
}

impl FakeLightsail {
    /// A service that answers `name` with `answer`.
    pub fn answering(mut self, name: &str, answer: Answer) -> Self {
        self.answers.insert(name.to_string(), answer);
        self
    }

    /// A service whose `operation` fails with `kind`.
    pub fn failing(mut self, operation: &'static str, kind: ApiErrorKind) -> Self {
        self.failing.insert(operation, kind);
        self
    }

    /// A service whose `operation` never answers.
    pub fn hanging(mut self, operation: &'static str) -> Self {
        self.hanging.push(operation);
        self
    }

    /// Logs a call, then hangs or fails it as scripted.
    async fn scripted(&self, operation: &'static str, line: String) -> Result<(), ApiError> {
        self.note(line);
        if self.hanging.contains(&operation) {
            std::future::pending::<()>().await;
        }
        match self.failing.get(operation) {
            Some(kind) => Err(error(
                operation,
                *kind,
                format!("scripted failure of {operation}"),
            )),
            None => Ok(()),
        }
    }

    fn with_disk<T>(&self, name: &str, f: impl FnOnce(&mut DiskState) -> T) -> Option<T> {
        self.disks
            .lock()
            .unwrap()
            .iter_mut()
            .find(|d| d.name == name)
            .map(f)
    }

    /// The log so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    fn note(&self, line: String) {
        self.log.lock().unwrap().push(line);
    }

    fn land(&self, request: &SnapshotRequest) {
        self.snapshots.lock().unwrap().push(SnapshotInfo {
            name: request.name.clone(),
            state: "pending".into(),
            progress: None,
            tags: request.tags.clone(),
            created_at: None,
            from: None,
            size_gb: None,
            is_from_auto_snapshot: false,
            instance: request.source.kind() == SnapshotKind::Instance,
        });
    }
}

fn error(operation: &'static str, kind: ApiErrorKind, message: String) -> ApiError {
    ApiError {
        operation,
        kind,
        code: None,
        message,
    }
}

impl Lightsail for FakeLightsail {
    async fn get_disk(&self, name: &str) -> Result<DiskInfo, ApiError> {
        self.note(format!("GetDisk {name}"));
        self.instances
            .iter()
            .flat_map(|i| i.disks.iter())
            .find(|d| d.name == name)
            .cloned()
            .ok_or_else(|| {
                error(
                    "GetDisk",
                    ApiErrorKind::NotFound,
                    format!("{name} not found"),
                )
            })
    }

    async fn get_instances(&self) -> Result<Vec<InstanceInfo>, ApiError> {
        self.note("GetInstances".into());
        Ok(self.instances.clone())
    }

    async fn get_snapshot(
        &self,
        kind: SnapshotKind,
        name: &str,
    ) -> Result<Option<SnapshotInfo>, ApiError> {
        self.note(format!("Get{kind:?}Snapshot {name}"));
        let all = self.snapshots.lock().unwrap();
        Ok(all
            .iter()
            .find(|s| s.name == name && s.kind() == kind)
            .cloned())
    }

    async fn create_snapshot(
        &self,
        request: &SnapshotRequest,
        budget: Duration,
    ) -> Result<OperationInfo, ApiError> {
        self.note(format!("start {}", request.name));
        self.started.notify_one();
        self.budgets.lock().unwrap().push(budget);
        // Let every other call start before this one answers: calls made together all start
        // before any ends; calls made one after another do not.
        tokio::task::yield_now().await;
        let answer = self
            .answers
            .get(&request.name)
            .cloned()
            .unwrap_or(Answer::Ok);
        let result = match answer {
            Answer::Ok => {
                self.land(request);
                Ok(OperationInfo {
                    id: Some(format!("op-{}", request.name)),
                    status: Some("Started".into()),
                })
            }
            Answer::Fail(kind, lands) => {
                if lands {
                    self.land(request);
                }
                Err(error(
                    "CreateDiskSnapshot",
                    kind,
                    format!("scripted failure of {}", request.name),
                ))
            }
            Answer::Hang => {
                self.land(request);
                std::future::pending::<()>().await;
                unreachable!("pending never ends")
            }
        };
        self.note(format!("end {}", request.name));
        result
    }

    async fn auto_snapshot_in_progress(&self, resource: &str) -> Result<bool, ApiError> {
        self.note(format!("GetAutoSnapshots {resource}"));
        let mut busy = self.auto_in_progress.lock().unwrap();
        Ok(match busy.get_mut(resource) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        })
    }

    async fn tag_resource(&self, name: &str, tags: &[(String, String)]) -> Result<(), ApiError> {
        let text: Vec<String> = tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        self.note(format!("TagResource {name} {}", text.join(",")));
        Ok(())
    }

    async fn get_snapshots(&self, kind: SnapshotKind) -> Result<Vec<SnapshotInfo>, ApiError> {
        self.note(format!("Get{kind:?}Snapshots"));
        let all = self.snapshots.lock().unwrap();
        Ok(all.iter().filter(|s| s.kind() == kind).cloned().collect())
    }

    async fn delete_snapshot(&self, kind: SnapshotKind, name: &str) -> Result<(), ApiError> {
        self.note(format!("Delete{kind:?}Snapshot {name}"));
        self.snapshots
            .lock()
            .unwrap()
            .retain(|s| !(s.name == name && s.kind() == kind));
        Ok(())
    }
    async fn disk_state(&self, name: &str) -> Result<Option<DiskState>, ApiError> {
        self.scripted("GetDisk", format!("GetDisk {name}")).await?;
        // A new disk is pending at the first look, available at the next.
        Ok(self.with_disk(name, |d| {
            let seen = d.clone();
            if d.state == "pending" {
                d.state = "available".into();
            }
            seen
        }))
    }

    async fn get_disks(&self) -> Result<Vec<DiskState>, ApiError> {
        self.scripted("GetDisks", "GetDisks".into()).await?;
        Ok(self.disks.lock().unwrap().clone())
    }

    async fn create_disk_from_snapshot(&self, disk: &NewDisk) -> Result<OperationInfo, ApiError> {
        let line = format!("CreateDiskFromSnapshot {} {}", disk.name, disk.snapshot);
        self.scripted("CreateDiskFromSnapshot", line).await?;
        if let Some(tags) = &self.disk_name_race {
            self.disks.lock().unwrap().push(DiskState {
                name: disk.name.clone(),
                state: "available".into(),
                path: None,
                attached_to: None,
                is_attached: false,
                support_code: None,
                availability_zone: Some(disk.availability_zone.clone()),
                size_gb: Some(disk.size_gb),
                tags: tags.clone(),
            });
        }
        // Names are unique, as in Lightsail.
        if self
            .disks
            .lock()
            .unwrap()
            .iter()
            .any(|d| d.name == disk.name)
        {
            return Err(error(
                "CreateDiskFromSnapshot",
                ApiErrorKind::Rejected,
                format!("Some names are already in use: {}", disk.name),
            ));
        }
        self.disks.lock().unwrap().push(DiskState {
            name: disk.name.clone(),
            state: "pending".into(),
            path: None,
            attached_to: None,
            is_attached: false,
            support_code: Some(format!("123456789012/vol-0{}", disk.name.len())),
            availability_zone: Some(disk.availability_zone.clone()),
            size_gb: Some(disk.size_gb),
            tags: disk.tags.clone(),
        });
        if let Some(kind) = self.create_disk_answer_lost {
            return Err(error(
                "CreateDiskFromSnapshot",
                kind,
                "the answer was lost".into(),
            ));
        }
        Ok(op("CreateDiskFromSnapshot"))
    }

    async fn attach_disk(
        &self,
        disk: &str,
        instance: &str,
        path: &str,
    ) -> Result<OperationInfo, ApiError> {
        let line = format!("AttachDisk {disk} {instance} {path}");
        self.scripted("AttachDisk", line).await?;
        self.with_disk(disk, |d| {
            d.state = "in-use".into();
            d.is_attached = true;
            d.attached_to = Some(instance.to_string());
            d.path = Some(path.to_string());
        });
        Ok(op("AttachDisk"))
    }

    async fn detach_disk(&self, disk: &str) -> Result<OperationInfo, ApiError> {
        self.scripted("DetachDisk", format!("DetachDisk {disk}"))
            .await?;
        self.with_disk(disk, |d| {
            d.state = "available".into();
            d.is_attached = false;
            d.attached_to = None;
            d.path = None;
        });
        Ok(op("DetachDisk"))
    }

    async fn delete_disk(&self, disk: &str) -> Result<OperationInfo, ApiError> {
        self.scripted("DeleteDisk", format!("DeleteDisk {disk}"))
            .await?;
        self.disks.lock().unwrap().retain(|d| d.name != disk);
        Ok(op("DeleteDisk"))
    }

    async fn copy_snapshot(
        &self,
        source_region: &str,
        source: &str,
        target: &str,
    ) -> Result<OperationInfo, ApiError> {
        let line = format!("CopySnapshot {source_region}/{source} {target}");
        self.scripted("CopySnapshot", line).await?;
        Ok(op("CopySnapshot"))
    }

    async fn instance_snapshot_details(
        &self,
        name: &str,
    ) -> Result<Option<InstanceSnapshotDetails>, ApiError> {
        self.scripted("GetInstanceSnapshot", format!("GetInstanceSnapshot {name}"))
            .await?;
        Ok(None)
    }

    async fn create_instances_from_snapshot(
        &self,
        new: &NewInstance,
    ) -> Result<OperationInfo, ApiError> {
        let line = format!("CreateInstancesFromSnapshot {} {}", new.snapshot, new.name);
        self.scripted("CreateInstancesFromSnapshot", line).await?;
        Ok(op("CreateInstancesFromSnapshot"))
    }
}

fn op(name: &str) -> OperationInfo {
    OperationInfo {
        id: Some(format!("op-{name}")),
        status: Some("Started".into()),
    }
}
