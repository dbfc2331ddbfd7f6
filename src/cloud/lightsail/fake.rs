//! A scripted [`Lightsail`] for unit tests: canned instances and snapshots, an answer chosen
//! per snapshot name for each create call, and a log of every call, so the orchestration is
//! tested without a network. (The black-box tests use the fake *service* in
//! `tests/fake-lightsail` through the real SDK instead.)

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use super::{
    ApiError, ApiErrorKind, DiskInfo, InstanceInfo, Lightsail, OperationInfo, SnapshotInfo,
    SnapshotKind, SnapshotRequest,
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
}

impl FakeLightsail {
    /// A service that answers `name` with `answer`.
    pub fn answering(mut self, name: &str, answer: Answer) -> Self {
        self.answers.insert(name.to_string(), answer);
        self
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
}
