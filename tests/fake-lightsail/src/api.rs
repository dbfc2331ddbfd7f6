//! The Lightsail operations the fake serves, over its state: instances, disks, snapshots and
//! operations, shaped as the service model and the reference documents in `shared/seeds/`
//! describe them (camelCase members, epoch-second timestamps, `operations` arrays).
//!
//! Everything here is plain data in, JSON out, under the caller's lock. Copying a disk's
//! bytes for a snapshot is slow, so a create only *plans* its copies ([`CopyJob`]); the server
//! runs them outside the lock and before it answers.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::auto::AutoSnapshots;
use crate::seed::{Seed, SeedAutoSnapshot};

mod access;
mod disks;
mod instances;
mod regions;

pub(crate) use regions::Worlds;

/// An error as the service returns it: `__type`/`x-amzn-ErrorType`, message, HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The error name (`NotFoundException`).
    pub code: String,
    /// What went wrong.
    pub message: String,
    /// HTTP status: 400, or 500 for `ServiceException`.
    pub status: u16,
}

impl ApiError {
    /// An error with the status the service documents for it.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        let code = code.into();
        let status = if code == "ServiceException" { 500 } else { 400 };
        Self {
            code,
            message: message.into(),
            status,
        }
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::new("InvalidInputException", message)
    }

    fn not_found(message: impl Into<String>) -> Self {
        Self::new("NotFoundException", message)
    }

    /// The JSON body: `__type` and `message` as the JSON protocol has them, and Lightsail's own
    /// `code`, `docs` and `tip` members.
    pub fn body(&self) -> Value {
        let short = self.code.trim_end_matches("Exception");
        json!({
            "__type": self.code,
            "code": short,
            "message": self.message,
            "docs": "https://docs.aws.amazon.com/lightsail/2016-11-28/api-reference/",
            "tip": "This is lightsnap's fake Lightsail; see tests/fake-lightsail/README.md",
        })
    }
}

/// Bytes to copy before a create call answers: a disk's backing into a snapshot image.
#[derive(Debug, Clone)]
pub(crate) struct CopyJob {
    /// The block device or image file.
    pub from: PathBuf,
    /// The snapshot image.
    pub to: PathBuf,
}

/// What a successful call produced.
pub(crate) struct Outcome {
    /// The response body.
    pub body: Value,
    /// Copies to make before answering.
    pub copies: Vec<CopyJob>,
    /// The snapshot it created, if any: `(is_instance_snapshot, name)`.
    pub created: Option<(bool, String)>,
}

impl From<Value> for Outcome {
    fn from(body: Value) -> Self {
        Self {
            body,
            copies: Vec::new(),
            created: None,
        }
    }
}

struct Instance {
    name: String,
    instance_id: String,
    zone: String,
    created_at: SystemTime,
    tags: Vec<(String, String)>,
}

struct Disk {
    name: String,
    path: Option<String>,
    attached_to: Option<String>,
    size_gb: i64,
    backing: Option<PathBuf>,
    volume_id: String,
    system: bool,
    created_at: SystemTime,
    tags: Vec<(String, String)>,
    /// Its availability zone: the instance's for a seeded attached disk, the one asked for
    /// by CreateDiskFromSnapshot.
    zone: String,
    /// A disk restored from a snapshot: how many more GetDisk/GetDisks reads show it
    /// `pending` before it is `available`.
    pending_reads: u32,
    /// A restored disk: the snapshot image its bytes come from (`None`: the snapshot had no
    /// bytes).
    source_image: Option<PathBuf>,
    /// A restored disk's own copy of those bytes, made at its first attach (attach mode).
    copy: Option<PathBuf>,
    /// Corrupt the copy before it is next exposed (fault injection).
    corrupt: bool,
    /// How it is exposed while attached (attach mode): a loop device and its symlink, or
    /// plugged in by the attach command.
    device: Option<crate::attach::Device>,
}

struct Snapshot {
    name: String,
    /// For a disk snapshot: the disk; for an instance snapshot: the instance.
    from: String,
    /// A disk snapshot of a system volume: the instance.
    from_instance: Option<String>,
    size_gb: i64,
    created_at: SystemTime,
    tags: Vec<(String, String)>,
    auto: bool,
    /// `error`, or a seeded state that never changes.
    fixed_state: Option<String>,
    /// Instance snapshots: the attached disks it holds.
    disks: Vec<String>,
}

struct Operation {
    id: String,
    resource_name: String,
    resource_type: &'static str,
    operation_type: &'static str,
    details: String,
    created_at: SystemTime,
    status: &'static str,
    error: Option<(String, String)>,
}

/// The fake's state.
pub(crate) struct World {
    account: String,
    region: String,
    self_instance: Option<String>,
    imds_instance_id: Option<String>,
    instances: Vec<Instance>,
    disks: Vec<Disk>,
    disk_snapshots: Vec<Snapshot>,
    instance_snapshots: Vec<Snapshot>,
    operations: Vec<Operation>,
    snapshot_dir: PathBuf,
    snapshot_duration: Duration,
    page_size: usize,
    counter: u64,
    auto: AutoSnapshots,
    /// Attach mode: how attached restored disks appear (`Off`: no devices).
    attach: crate::attach::Mode,
    /// How many reads a restored disk stays `pending` for.
    disk_pending_reads: u32,
    /// Set by the server for one call: the disk that call restores or attaches is corrupted.
    pub(crate) corrupt_next: bool,
}

/// The file a snapshot's image is kept in: `<name>.img`, or for names too long for a file
/// name (the API allows 255 characters), a digest of the name.
pub(crate) fn image_file_name(name: &str) -> String {
    if name.len() <= 200 {
        format!("{name}.img")
    } else {
        format!("{}.img", hex::encode(Sha256::digest(name)))
    }
}

/// Seconds since the epoch, as the JSON protocol writes timestamps.
pub(crate) fn epoch(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

fn str_member<'a>(body: &'a Value, name: &str) -> Option<&'a str> {
    body.get(name).and_then(Value::as_str)
}

fn required<'a>(body: &'a Value, name: &str) -> Result<&'a str, ApiError> {
    str_member(body, name).ok_or_else(|| ApiError::invalid(format!("{name} is required")))
}

/// The API's name pattern `\w[\w\-]*\w` (ASCII `\w`), 255 characters at most.
fn check_name(what: &str, name: &str) -> Result<(), ApiError> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let chars: Vec<char> = name.chars().collect();
    let ok = chars.len() >= 2
        && chars.len() <= 255
        && word(chars[0])
        && word(chars[chars.len() - 1])
        && chars.iter().all(|&c| word(c) || c == '-');
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "{what} {name:?} is not valid: it must match the pattern \\w[\\w\\-]*\\w"
        )))
    }
}

/// Tags as sent (`[{"key": .., "value": ..}]`), checked against the documented limits.
fn parse_tags(body: &Value) -> Result<Vec<(String, String)>, ApiError> {
    let Some(list) = body.get("tags") else {
        return Ok(Vec::new());
    };
    let list = list
        .as_array()
        .ok_or_else(|| ApiError::invalid("tags must be a list"))?;
    if list.len() > 50 {
        return Err(ApiError::invalid(
            "A resource can have at most 50 tags (tags)",
        ));
    }
    let allowed = |c: char| c.is_alphanumeric() || c == ' ' || "+-=._:/@".contains(c);
    let mut tags: Vec<(String, String)> = Vec::new();
    for t in list {
        let key = str_member(t, "key").ok_or_else(|| ApiError::invalid("a tag has no key"))?;
        let value = str_member(t, "value").unwrap_or_default();
        if key.is_empty() || key.chars().count() > 128 || !key.chars().all(allowed) {
            return Err(ApiError::invalid(format!(
                "Tag key {key:?} is not valid: 1 to 128 letters, numbers, spaces or + - = . _ : / @"
            )));
        }
        if value.chars().count() > 256 || !value.chars().all(allowed) {
            return Err(ApiError::invalid(format!(
                "Tag value {value:?} is not valid: at most 256 letters, numbers, spaces or + - = . _ : / @"
            )));
        }
        if tags.iter().any(|(k, _)| k == key) {
            return Err(ApiError::invalid(format!("Tag key {key:?} is duplicated")));
        }
        tags.push((key.to_string(), value.to_string()));
    }
    Ok(tags)
}

fn tags_json(tags: &[(String, String)]) -> Value {
    tags.iter()
        .map(|(k, v)| json!({"key": k, "value": v}))
        .collect()
}

impl World {
    pub(crate) fn new(
        seed: &Seed,
        snapshot_dir: PathBuf,
        snapshot_duration: Duration,
        page_size: usize,
    ) -> Self {
        let now = SystemTime::now();
        let mut world = World {
            account: seed.account.clone(),
            region: seed.region.clone(),
            self_instance: seed
                .self_instance
                .clone()
                .or_else(|| seed.instances.first().map(|i| i.name.clone())),
            imds_instance_id: seed.imds_instance_id.clone(),
            instances: Vec::new(),
            disks: Vec::new(),
            disk_snapshots: Vec::new(),
            instance_snapshots: Vec::new(),
            operations: Vec::new(),
            snapshot_dir,
            snapshot_duration,
            page_size: page_size.max(1),
            counter: 0,
            auto: AutoSnapshots::default(),
            attach: crate::attach::Mode::Off,
            disk_pending_reads: 0,
            corrupt_next: false,
        };
        for i in &seed.instances {
            let zone = i
                .zone
                .clone()
                .unwrap_or_else(|| format!("{}a", seed.region));
            let system = i.system_disk.clone();
            let (name, path, size_gb, backing, volume_id) = match system {
                Some(s) => (s.name, s.path, s.size_gb, s.backing, s.volume_id),
                None => (
                    format!("{}-system-disk", i.name),
                    "/dev/xvda".to_string(),
                    40,
                    None,
                    None,
                ),
            };
            let volume_id = volume_id.unwrap_or_else(|| world.volume_id(&name));
            world.disks.push(Disk {
                name,
                path: Some(path),
                attached_to: Some(i.name.clone()),
                size_gb,
                backing,
                volume_id,
                system: true,
                created_at: now,
                tags: Vec::new(),
                zone: zone.clone(),
                pending_reads: 0,
                source_image: None,
                copy: None,
                corrupt: false,
                device: None,
            });
            world.instances.push(Instance {
                name: i.name.clone(),
                instance_id: i.instance_id.clone(),
                zone,
                created_at: now,
                tags: Vec::new(),
            });
        }
        for d in &seed.disks {
            let volume_id = d
                .volume_id
                .clone()
                .unwrap_or_else(|| world.volume_id(&d.name));
            let zone = world
                .zone_of(d.attached_to.as_deref())
                .map_or_else(|| format!("{}a", world.region), str::to_string);
            world.disks.push(Disk {
                name: d.name.clone(),
                path: d.path.clone(),
                attached_to: d.attached_to.clone(),
                size_gb: d.size_gb,
                backing: d.backing.clone(),
                volume_id,
                system: false,
                created_at: now,
                tags: d.tags.clone().into_iter().collect(),
                zone,
                pending_reads: 0,
                source_image: None,
                copy: None,
                corrupt: false,
                device: None,
            });
        }
        for s in &seed.disk_snapshots {
            let age = humantime::parse_duration(&s.age).unwrap_or_default();
            let size_gb = world.disk(&s.disk).map_or(8, |d| d.size_gb);
            world.disk_snapshots.push(Snapshot {
                name: s.name.clone(),
                from: s.disk.clone(),
                from_instance: None,
                size_gb,
                created_at: now - age,
                tags: s.tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                auto: s.auto,
                fixed_state: (s.state != "completed").then(|| s.state.clone()),
                disks: Vec::new(),
            });
        }
        let with_add_on = seed
            .instances
            .iter()
            .map(|i| (&i.name, &i.auto_snapshot))
            .chain(seed.disks.iter().map(|d| (&d.name, &d.auto_snapshot)));
        for (name, auto) in with_add_on {
            if let Some(a) = auto {
                world.seed_auto_snapshot(name, a, now);
            }
        }
        world
    }

    /// The add-on from the seed (checked when the seed was read), and a run in progress.
    fn seed_auto_snapshot(&mut self, resource: &str, a: &SeedAutoSnapshot, now: SystemTime) {
        self.auto
            .enable(resource, &a.time_of_day, &a.history, now)
            .expect("a checked seed");
        if let Some(d) = &a.in_progress {
            let duration = SeedAutoSnapshot::in_progress_duration(d).expect("a checked seed");
            self.start_auto_snapshot(resource, now, duration)
                .expect("a checked seed");
        }
    }

    fn volume_id(&self, name: &str) -> String {
        let digest = hex::encode(Sha256::digest(format!("volume/{name}")));
        format!("vol-0{}", &digest[..16])
    }

    /// A stable, unique id (uuid-shaped).
    fn next_id(&mut self, what: &str) -> String {
        self.counter += 1;
        let h = hex::encode(Sha256::digest(format!("{what}/{}", self.counter)));
        format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }

    fn arn(&self, kind: &str, name: &str) -> String {
        let h = hex::encode(Sha256::digest(format!("{kind}/{name}")));
        format!(
            "arn:aws:lightsail:{}:{}:{kind}/{}-{}-{}-{}-{}",
            self.region,
            self.account,
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }

    fn location(&self, zone: Option<&str>) -> Value {
        json!({
            "availabilityZone": zone.map_or_else(|| format!("{}a", self.region), str::to_string),
            "regionName": self.region,
        })
    }

    fn instance(&self, name: &str) -> Option<&Instance> {
        self.instances.iter().find(|i| i.name == name)
    }

    fn disk(&self, name: &str) -> Option<&Disk> {
        self.disks.iter().find(|d| d.name == name)
    }

    fn zone_of(&self, instance: Option<&str>) -> Option<&str> {
        instance
            .and_then(|i| self.instance(i))
            .map(|i| i.zone.as_str())
    }

    // ---- the metadata service's view ----

    /// What the metadata service says: (instance id, region, zone).
    pub(crate) fn identity(&self) -> Option<(String, String, String)> {
        let me = self.instance(self.self_instance.as_deref()?)?;
        Some((
            self.imds_instance_id
                .clone()
                .unwrap_or_else(|| me.instance_id.clone()),
            self.region.clone(),
            me.zone.clone(),
        ))
    }

    /// `REGION/INSTANCE` of the instance the metadata service describes, when that is one of
    /// this world's instances (what lightsnap finds itself to be); `None` otherwise.
    pub(crate) fn caller(&self) -> Option<String> {
        let me = self.instance(self.self_instance.as_deref()?)?;
        if self
            .imds_instance_id
            .as_ref()
            .is_some_and(|id| *id != me.instance_id)
        {
            return None;
        }
        Some(format!("{}/{}", self.region, me.name))
    }

    /// This world's region.
    pub(crate) fn home_region(&self) -> &str {
        &self.region
    }

    /// The account id, for the identity document.
    pub(crate) fn account(&self) -> &str {
        &self.account
    }

    // ---- JSON shapes ----

    fn disk_json(&self, d: &Disk) -> Value {
        let attached = d.attached_to.is_some();
        json!({
            "name": d.name,
            "arn": self.arn("Disk", &d.name),
            "supportCode": format!("{}/{}", self.account, d.volume_id),
            "createdAt": epoch(d.created_at),
            "location": self.location(Some(&d.zone)),
            "resourceType": "Disk",
            "tags": tags_json(&d.tags),
            "addOns": if d.system { json!([]) } else { self.auto.add_ons(&d.name) },
            "sizeInGb": d.size_gb,
            "isSystemDisk": d.system,
            "iops": 100,
            "path": d.path,
            "state": if attached {
                "in-use"
            } else if d.pending_reads > 0 {
                "pending"
            } else {
                "available"
            },
            "attachedTo": d.attached_to,
            "isAttached": attached,
            "attachmentState": if attached { "attached" } else { "detached" },
        })
    }

    fn instance_json(&self, i: &Instance) -> Value {
        let disks: Vec<Value> = self
            .disks
            .iter()
            .filter(|d| d.attached_to.as_deref() == Some(i.name.as_str()))
            .map(|d| self.disk_json(d))
            .collect();
        json!({
            "name": i.name,
            "arn": self.arn("Instance", &i.name),
            "supportCode": format!("{}/{}", self.account, i.instance_id),
            "createdAt": epoch(i.created_at),
            "location": self.location(Some(&i.zone)),
            "resourceType": "Instance",
            "tags": tags_json(&i.tags),
            "addOns": self.auto.add_ons(&i.name),
            "blueprintId": "debian_12",
            "blueprintName": "Debian",
            "bundleId": "micro_3_0",
            "isStaticIp": false,
            "privateIpAddress": "172.26.0.10",
            "publicIpAddress": "192.0.2.10",
            "ipAddressType": "ipv4",
            "hardware": { "cpuCount": 2, "ramSizeInGb": 1.0, "disks": disks },
            "state": { "code": 16, "name": "running" },
            "username": "admin",
            "sshKeyName": "LightsailDefaultKeyPair",
        })
    }

    /// `(state, progress)` of a snapshot now.
    fn progress(&self, s: &Snapshot, done: &str, now: SystemTime) -> (String, String) {
        let elapsed = now.duration_since(s.created_at).unwrap_or_default();
        let pct = if self.snapshot_duration.is_zero() {
            100
        } else {
            ((elapsed.as_secs_f64() / self.snapshot_duration.as_secs_f64()) * 100.0).min(100.0)
                as u32
        };
        match s.fixed_state.as_deref() {
            Some("error") => ("error".into(), format!("{}%", pct.min(99))),
            Some("pending") => ("pending".into(), "0%".into()),
            Some(other) => (other.into(), "100%".into()),
            None if pct >= 100 => (done.into(), "100%".into()),
            None => ("pending".into(), format!("{pct}%")),
        }
    }

    fn disk_snapshot_json(&self, s: &Snapshot, now: SystemTime) -> Value {
        let (state, progress) = self.progress(s, "completed", now);
        let zone = self.disk(&s.from).map(|d| d.zone.as_str());
        let mut v = json!({
            "name": s.name,
            "arn": self.arn("DiskSnapshot", &s.name),
            "supportCode": format!("{}/snap-0{}", self.account, &hex::encode(Sha256::digest(&s.name))[..16]),
            "createdAt": epoch(s.created_at),
            "location": self.location(zone),
            "resourceType": "DiskSnapshot",
            "tags": tags_json(&s.tags),
            "sizeInGb": s.size_gb,
            "state": state,
            "progress": progress,
            "fromDiskName": s.from,
            "fromDiskArn": self.arn("Disk", &s.from),
            "isFromAutoSnapshot": s.auto,
        });
        if let Some(i) = &s.from_instance {
            v["fromInstanceName"] = json!(i);
            v["fromInstanceArn"] = json!(self.arn("Instance", i));
        }
        v
    }

    fn instance_snapshot_json(&self, s: &Snapshot, now: SystemTime) -> Value {
        let (state, progress) = self.progress(s, "available", now);
        let disks: Vec<Value> = s
            .disks
            .iter()
            .filter_map(|d| self.disk(d))
            .map(|d| self.disk_json(d))
            .collect();
        json!({
            "name": s.name,
            "arn": self.arn("InstanceSnapshot", &s.name),
            "supportCode": format!("{}/ami-0{}", self.account, &hex::encode(Sha256::digest(&s.name))[..16]),
            "createdAt": epoch(s.created_at),
            "location": self.location(self.zone_of(Some(&s.from))),
            "resourceType": "InstanceSnapshot",
            "tags": tags_json(&s.tags),
            "state": state,
            "progress": progress,
            "fromAttachedDisks": disks,
            "fromInstanceName": s.from,
            "fromInstanceArn": self.arn("Instance", &s.from),
            "fromBlueprintId": "debian_12",
            "fromBundleId": "micro_3_0",
            "isFromAutoSnapshot": s.auto,
            "sizeInGb": s.size_gb,
        })
    }

    fn operation_json(&self, op: &Operation, now: SystemTime) -> Value {
        // A create's operation follows its snapshot: Started while pending, then Succeeded
        // (or Failed) from the moment the snapshot got there, which does not move on reads.
        let mut status = op.status;
        let mut changed_at = op.created_at;
        if op.status == "Started" && op.resource_type == "Disk" {
            // A restore is Started while its disk is pending.
            if !self
                .disks
                .iter()
                .any(|d| d.name == op.resource_name && d.pending_reads > 0)
            {
                status = "Succeeded";
            }
        } else if op.status == "Started" {
            let snapshot = match op.resource_type {
                "DiskSnapshot" => self
                    .disk_snapshots
                    .iter()
                    .find(|s| s.name == op.resource_name)
                    .map(|s| (s, self.progress(s, "completed", now).0)),
                "InstanceSnapshot" => self
                    .instance_snapshots
                    .iter()
                    .find(|s| s.name == op.resource_name)
                    .map(|s| (s, self.progress(s, "available", now).0)),
                _ => None,
            };
            match snapshot {
                Some((_, state)) if state == "pending" => {}
                Some((s, state)) => {
                    status = if state == "error" {
                        "Failed"
                    } else {
                        "Succeeded"
                    };
                    if s.fixed_state.is_none() {
                        changed_at = (s.created_at + self.snapshot_duration).min(now);
                    }
                }
                // Deleted since: it got there at some point.
                None => status = "Succeeded",
            }
        }
        let mut v = json!({
            "id": op.id,
            "resourceName": op.resource_name,
            "resourceType": op.resource_type,
            "createdAt": epoch(op.created_at),
            "location": self.location(None),
            "isTerminal": status != "Started",
            "operationDetails": op.details,
            "operationType": op.operation_type,
            "status": status,
            "statusChangedAt": epoch(changed_at),
        });
        if let Some((code, details)) = &op.error {
            v["errorCode"] = json!(code);
            v["errorDetails"] = json!(details);
        }
        v
    }

    fn record_operation(
        &mut self,
        resource_name: &str,
        resource_type: &'static str,
        operation_type: &'static str,
        details: &str,
        status: &'static str,
        now: SystemTime,
    ) -> Value {
        let op = Operation {
            id: self.next_id("operation"),
            resource_name: resource_name.to_string(),
            resource_type,
            operation_type,
            details: details.to_string(),
            created_at: now,
            status,
            error: None,
        };
        let v = self.operation_json(&op, now);
        self.operations.push(op);
        json!({ "operations": [v] })
    }

    /// The answer to a create call the fault injection says failed: status `Failed`.
    pub(crate) fn failed_operation(
        &mut self,
        operation: &str,
        body: &Value,
        code: &str,
        details: &str,
        now: SystemTime,
    ) -> Value {
        let (resource_type, operation_type, name_member) = match operation {
            "CreateInstanceSnapshot" => (
                "InstanceSnapshot",
                "CreateInstanceSnapshot",
                "instanceSnapshotName",
            ),
            "DeleteDiskSnapshot" => ("DiskSnapshot", "DeleteDiskSnapshot", "diskSnapshotName"),
            _ => ("DiskSnapshot", "CreateDiskSnapshot", "diskSnapshotName"),
        };
        let op = Operation {
            id: self.next_id("operation"),
            resource_name: str_member(body, name_member)
                .unwrap_or_default()
                .to_string(),
            resource_type,
            operation_type,
            details: String::new(),
            created_at: now,
            status: "Failed",
            error: Some((code.to_string(), details.to_string())),
        };
        let v = self.operation_json(&op, now);
        self.operations.push(op);
        json!({ "operations": [v] })
    }

    /// One page of `items` after `token`.
    fn page(&self, len: usize, body: &Value) -> Result<(usize, usize, Option<String>), ApiError> {
        let start = match str_member(body, "pageToken") {
            None | Some("") => 0,
            Some(t) => t
                .strip_prefix("page-")
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|&n| n <= len)
                .ok_or_else(|| ApiError::invalid(format!("The pageToken {t:?} is not valid")))?,
        };
        let end = (start + self.page_size).min(len);
        let next = (end < len).then(|| format!("page-{end}"));
        Ok((start, end, next))
    }

    /// Answers one operation. `now` is when the call was received.
    pub(crate) fn call(
        &mut self,
        operation: &str,
        body: &Value,
        now: SystemTime,
    ) -> Result<Outcome, ApiError> {
        if !body.is_object() {
            return Err(ApiError::new(
                "SerializationException",
                "the request body must be a JSON object",
            ));
        }
        match operation {
            "CreateDiskSnapshot" => self.create_disk_snapshot(body, now),
            "CreateInstanceSnapshot" => self.create_instance_snapshot(body, now),
            "GetDisk" => {
                let name = required(body, "diskName")?;
                let i = self
                    .disks
                    .iter()
                    .position(|d| d.name == name && !d.system)
                    .ok_or_else(|| {
                        ApiError::not_found(format!("The Disk does not exist: {name}"))
                    })?;
                let v = json!({ "disk": self.disk_json(&self.disks[i]) });
                self.disks[i].pending_reads = self.disks[i].pending_reads.saturating_sub(1);
                Ok(v.into())
            }
            "GetDisks" => {
                let disks: Vec<usize> = (0..self.disks.len())
                    .filter(|&i| !self.disks[i].system)
                    .collect();
                let (a, b, next) = self.page(disks.len(), body)?;
                let page: Vec<Value> = disks[a..b]
                    .iter()
                    .map(|&i| self.disk_json(&self.disks[i]))
                    .collect();
                for &i in &disks[a..b] {
                    self.disks[i].pending_reads = self.disks[i].pending_reads.saturating_sub(1);
                }
                Ok(json!({ "disks": page, "nextPageToken": next }).into())
            }
            "CreateDiskFromSnapshot" => self.create_disk_from_snapshot(body, now),
            "CreateInstancesFromSnapshot" => self.create_instances_from_snapshot(body, now),
            "AttachDisk" => self.attach_disk(body, now),
            "DetachDisk" => self.detach_disk(body, now),
            "DeleteDisk" => self.delete_disk(body, now),
            "GetInstance" => {
                let name = required(body, "instanceName")?;
                let i = self.instance(name).ok_or_else(|| {
                    ApiError::not_found(format!("The Instance does not exist: {name}"))
                })?;
                Ok(json!({ "instance": self.instance_json(i) }).into())
            }
            "GetInstances" => {
                let (a, b, next) = self.page(self.instances.len(), body)?;
                let page: Vec<Value> = self.instances[a..b]
                    .iter()
                    .map(|i| self.instance_json(i))
                    .collect();
                Ok(json!({ "instances": page, "nextPageToken": next }).into())
            }
            "GetDiskSnapshot" => {
                let name = required(body, "diskSnapshotName")?;
                let s = self
                    .disk_snapshots
                    .iter()
                    .find(|s| s.name == name)
                    .ok_or_else(|| {
                        ApiError::not_found(format!("The DiskSnapshot does not exist: {name}"))
                    })?;
                Ok(json!({ "diskSnapshot": self.disk_snapshot_json(s, now) }).into())
            }
            "GetDiskSnapshots" => {
                let (a, b, next) = self.page(self.disk_snapshots.len(), body)?;
                let page: Vec<Value> = self.disk_snapshots[a..b]
                    .iter()
                    .map(|s| self.disk_snapshot_json(s, now))
                    .collect();
                Ok(json!({ "diskSnapshots": page, "nextPageToken": next }).into())
            }
            "GetInstanceSnapshot" => {
                let name = required(body, "instanceSnapshotName")?;
                let s = self
                    .instance_snapshots
                    .iter()
                    .find(|s| s.name == name)
                    .ok_or_else(|| {
                        ApiError::not_found(format!("The InstanceSnapshot does not exist: {name}"))
                    })?;
                Ok(json!({ "instanceSnapshot": self.instance_snapshot_json(s, now) }).into())
            }
            "GetInstanceSnapshots" => {
                let (a, b, next) = self.page(self.instance_snapshots.len(), body)?;
                let page: Vec<Value> = self.instance_snapshots[a..b]
                    .iter()
                    .map(|s| self.instance_snapshot_json(s, now))
                    .collect();
                Ok(json!({ "instanceSnapshots": page, "nextPageToken": next }).into())
            }
            "DeleteDiskSnapshot" => {
                let name = required(body, "diskSnapshotName")?;
                let i = self
                    .disk_snapshots
                    .iter()
                    .position(|s| s.name == name)
                    .ok_or_else(|| {
                        ApiError::not_found(format!("The DiskSnapshot does not exist: {name}"))
                    })?;
                self.disk_snapshots.remove(i);
                let _ = std::fs::remove_file(self.disk_image(name));
                Ok(self
                    .record_operation(
                        name,
                        "DiskSnapshot",
                        "DeleteDiskSnapshot",
                        "",
                        "Succeeded",
                        now,
                    )
                    .into())
            }
            "DeleteInstanceSnapshot" => {
                let name = required(body, "instanceSnapshotName")?;
                let i = self
                    .instance_snapshots
                    .iter()
                    .position(|s| s.name == name)
                    .ok_or_else(|| {
                        ApiError::not_found(format!("The InstanceSnapshot does not exist: {name}"))
                    })?;
                self.instance_snapshots.remove(i);
                let _ = std::fs::remove_dir_all(
                    self.snapshot_dir
                        .join(image_file_name(name).trim_end_matches(".img")),
                );
                Ok(self
                    .record_operation(
                        name,
                        "InstanceSnapshot",
                        "DeleteInstanceSnapshot",
                        "",
                        "Succeeded",
                        now,
                    )
                    .into())
            }
            "GetOperation" => {
                let id = required(body, "operationId")?;
                let op = self.operations.iter().find(|o| o.id == id).ok_or_else(|| {
                    ApiError::not_found(format!("The Operation does not exist: {id}"))
                })?;
                Ok(json!({ "operation": self.operation_json(op, now) }).into())
            }
            "TagResource" => self.tag_resource(body, now),
            "GetAutoSnapshots" => {
                let name = required(body, "resourceName")?;
                let kind = self.auto_resource_type(name).ok_or_else(|| {
                    ApiError::not_found(format!("The resource does not exist: {name}"))
                })?;
                Ok(json!({
                    "resourceName": name,
                    "resourceType": kind,
                    "autoSnapshots": self.auto.list(name, now),
                })
                .into())
            }
            other => Err(ApiError::new(
                "UnknownOperationException",
                format!("The operation {other} is not one the fake Lightsail serves"),
            )),
        }
    }

    /// Where a disk snapshot's bytes go.
    pub(crate) fn disk_image(&self, name: &str) -> PathBuf {
        self.snapshot_dir.join(image_file_name(name))
    }

    fn name_taken(&self, name: &str) -> bool {
        self.disk_snapshots.iter().any(|s| s.name == name)
            || self.instance_snapshots.iter().any(|s| s.name == name)
    }

    fn create_disk_snapshot(&mut self, body: &Value, now: SystemTime) -> Result<Outcome, ApiError> {
        let name = required(body, "diskSnapshotName")?;
        check_name("diskSnapshotName", name)?;
        let tags = parse_tags(body)?;
        let (disk, from_instance) = match (
            str_member(body, "diskName"),
            str_member(body, "instanceName"),
        ) {
            (Some(_), Some(_)) => {
                return Err(ApiError::invalid(
                    "diskName and instanceName are mutually exclusive: give one of them",
                ))
            }
            (None, None) => return Err(ApiError::invalid("diskName or instanceName is required")),
            (Some(d), None) => {
                check_name("diskName", d)?;
                let disk = self
                    .disks
                    .iter()
                    .find(|x| x.name == d && !x.system)
                    .ok_or_else(|| ApiError::not_found(format!("The Disk does not exist: {d}")))?;
                (disk, None)
            }
            (None, Some(i)) => {
                check_name("instanceName", i)?;
                if self.instance(i).is_none() {
                    return Err(ApiError::not_found(format!(
                        "The Instance does not exist: {i}"
                    )));
                }
                let disk = self
                    .disks
                    .iter()
                    .find(|x| x.system && x.attached_to.as_deref() == Some(i))
                    .ok_or_else(|| {
                        ApiError::new(
                            "ServiceException",
                            format!("instance {i} has no system disk"),
                        )
                    })?;
                (disk, Some(i.to_string()))
            }
        };
        // The automatic snapshot that blocks it is the disk's, or for a system volume the
        // instance's.
        self.auto
            .refuse_manual(from_instance.as_deref().unwrap_or(&disk.name), now)?;
        if self.name_taken(name) {
            return Err(ApiError::invalid(format!(
                "A snapshot named {name} already exists"
            )));
        }
        let copies = disk
            .backing
            .iter()
            .map(|b| CopyJob {
                from: b.clone(),
                to: self.disk_image(name),
            })
            .collect();
        let snapshot = Snapshot {
            name: name.to_string(),
            from: disk.name.clone(),
            from_instance,
            size_gb: disk.size_gb,
            created_at: now,
            tags,
            auto: false,
            fixed_state: None,
            disks: Vec::new(),
        };
        let details = snapshot.from.clone();
        self.disk_snapshots.push(snapshot);
        let body = self.record_operation(
            name,
            "DiskSnapshot",
            "CreateDiskSnapshot",
            &details,
            "Started",
            now,
        );
        Ok(Outcome {
            body,
            copies,
            created: Some((false, name.to_string())),
        })
    }

    fn create_instance_snapshot(
        &mut self,
        body: &Value,
        now: SystemTime,
    ) -> Result<Outcome, ApiError> {
        let name = required(body, "instanceSnapshotName")?;
        check_name("instanceSnapshotName", name)?;
        let instance = required(body, "instanceName")?;
        check_name("instanceName", instance)?;
        let tags = parse_tags(body)?;
        if self.instance(instance).is_none() {
            return Err(ApiError::not_found(format!(
                "The Instance does not exist: {instance}"
            )));
        }
        self.auto.refuse_manual(instance, now)?;
        if self.name_taken(name) {
            return Err(ApiError::invalid(format!(
                "A snapshot named {name} already exists"
            )));
        }
        let disks: Vec<&Disk> = self
            .disks
            .iter()
            .filter(|d| d.attached_to.as_deref() == Some(instance))
            .collect();
        let copies = disks
            .iter()
            .filter_map(|d| {
                d.backing.as_ref().map(|b| CopyJob {
                    from: b.clone(),
                    to: self
                        .snapshot_dir
                        .join(image_file_name(name).trim_end_matches(".img"))
                        .join(format!("{}.img", d.name)),
                })
            })
            .collect();
        let snapshot = Snapshot {
            name: name.to_string(),
            from: instance.to_string(),
            from_instance: None,
            size_gb: disks.iter().filter(|d| d.system).map(|d| d.size_gb).sum(),
            created_at: now,
            tags,
            auto: false,
            fixed_state: None,
            disks: disks
                .iter()
                .filter(|d| !d.system)
                .map(|d| d.name.clone())
                .collect(),
        };
        self.instance_snapshots.push(snapshot);
        let body = self.record_operation(
            name,
            "InstanceSnapshot",
            "CreateInstanceSnapshot",
            instance,
            "Started",
            now,
        );
        Ok(Outcome {
            body,
            copies,
            created: Some((true, name.to_string())),
        })
    }

    fn tag_resource(&mut self, body: &Value, now: SystemTime) -> Result<Outcome, ApiError> {
        let name = required(body, "resourceName")?;
        let tags = parse_tags(body)?;
        let merge = |into: &mut Vec<(String, String)>| {
            for (k, v) in &tags {
                match into.iter_mut().find(|(key, _)| key == k) {
                    Some(slot) => slot.1 = v.clone(),
                    None => into.push((k.clone(), v.clone())),
                }
            }
        };
        let kind = if let Some(s) = self.disk_snapshots.iter_mut().find(|s| s.name == name) {
            merge(&mut s.tags);
            "DiskSnapshot"
        } else if let Some(s) = self.instance_snapshots.iter_mut().find(|s| s.name == name) {
            merge(&mut s.tags);
            "InstanceSnapshot"
        } else if let Some(d) = self.disks.iter_mut().find(|d| d.name == name) {
            merge(&mut d.tags);
            "Disk"
        } else if let Some(i) = self.instances.iter_mut().find(|i| i.name == name) {
            merge(&mut i.tags);
            "Instance"
        } else {
            return Err(ApiError::not_found(format!(
                "The resource does not exist: {name}"
            )));
        };
        Ok(self
            .record_operation(name, kind, "TagResource", "", "Succeeded", now)
            .into())
    }

    /// `Instance` or `Disk` (block storage) for a resource automatic snapshots can be of.
    fn auto_resource_type(&self, name: &str) -> Option<&'static str> {
        if self.instance(name).is_some() {
            Some("Instance")
        } else if self.disks.iter().any(|d| d.name == name && !d.system) {
            Some("Disk")
        } else {
            None
        }
    }

    /// Starts an automatic snapshot of `resource` at `now`, for `duration` or until ended.
    pub(crate) fn start_auto_snapshot(
        &mut self,
        resource: &str,
        now: SystemTime,
        duration: Option<Duration>,
    ) -> Result<(), String> {
        if self.auto_resource_type(resource).is_none() {
            return Err(format!("{resource} is no instance or block storage disk"));
        }
        // An instance's automatic snapshot lists the block storage disks attached to it.
        let attached = self
            .disks
            .iter()
            .filter(|d| !d.system && d.attached_to.as_deref() == Some(resource))
            .map(|d| (d.path.clone().unwrap_or_default(), d.size_gb))
            .collect();
        self.auto.start(resource, now, duration, attached)
    }

    /// Ends the automatic snapshot of `resource` in progress, with `status`.
    pub(crate) fn end_auto_snapshot(
        &mut self,
        resource: &str,
        now: SystemTime,
        status: &str,
    ) -> Result<(), String> {
        self.auto.end(resource, now, status)
    }

    /// Every resource with the add-on and its runs, for the admin endpoint.
    pub(crate) fn auto_snapshots(&self, now: SystemTime) -> Value {
        self.auto.all(now)
    }

    /// Lets a snapshot end in state `error` (fault injection).
    pub(crate) fn fail_snapshot(&mut self, instance: bool, name: &str) {
        let list = if instance {
            &mut self.instance_snapshots
        } else {
            &mut self.disk_snapshots
        };
        if let Some(s) = list.iter_mut().find(|s| s.name == name) {
            s.fixed_state = Some("error".into());
        }
    }

    /// Forgets a snapshot whose bytes could not be copied.
    pub(crate) fn forget_snapshot(&mut self, instance: bool, name: &str) {
        if instance {
            self.instance_snapshots.retain(|s| s.name != name);
        } else {
            self.disk_snapshots.retain(|s| s.name != name);
        }
    }

    /// A disk snapshot as GetDiskSnapshot shows it.
    pub(crate) fn disk_snapshot(&self, name: &str) -> Option<Value> {
        let s = self.disk_snapshots.iter().find(|s| s.name == name)?;
        Some(self.disk_snapshot_json(s, SystemTime::now()))
    }

    /// An instance snapshot as GetInstanceSnapshot shows it.
    pub(crate) fn instance_snapshot(&self, name: &str) -> Option<Value> {
        let s = self.instance_snapshots.iter().find(|s| s.name == name)?;
        Some(self.instance_snapshot_json(s, SystemTime::now()))
    }

    /// Every snapshot, for the admin endpoint.
    pub(crate) fn snapshots(&self) -> Value {
        let now = SystemTime::now();
        let mut v = Map::new();
        v.insert(
            "diskSnapshots".into(),
            self.disk_snapshots
                .iter()
                .map(|s| self.disk_snapshot_json(s, now))
                .collect(),
        );
        v.insert(
            "instanceSnapshots".into(),
            self.instance_snapshots
                .iter()
                .map(|s| self.instance_snapshot_json(s, now))
                .collect(),
        );
        Value::Object(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn world(page_size: usize) -> World {
        let seed = Seed::from_toml_str(
            r#"
self_instance = "web-1"
[[instances]]
name = "web-1"
instance_id = "i-0123456789abcdef0"
[[instances]]
name = "web-2"
instance_id = "i-0fedcba9876543210"
[[disks]]
name = "data-1"
path = "/dev/xvdf"
attached_to = "web-1"
[[disks]]
name = "spare-1"
"#,
        )
        .unwrap();
        World::new(
            &seed,
            PathBuf::from("/nonexistent"),
            Duration::ZERO,
            page_size,
        )
    }

    fn create(w: &mut World, body: Value) -> Result<Outcome, ApiError> {
        w.call("CreateDiskSnapshot", &body, SystemTime::now())
    }

    #[test]
    fn create_disk_snapshot_checks_its_input_as_documented() {
        let mut w = world(10);
        let cases = [
            (json!({"diskName": "data-1"}), "InvalidInputException"),
            (
                json!({"diskName": "data-1", "diskSnapshotName": "-x-"}),
                "InvalidInputException",
            ),
            (
                json!({"diskName": "data-1", "instanceName": "web-1", "diskSnapshotName": "s1"}),
                "InvalidInputException",
            ),
            (json!({"diskSnapshotName": "s1"}), "InvalidInputException"),
            (
                json!({"diskName": "nope", "diskSnapshotName": "s1"}),
                "NotFoundException",
            ),
            (
                json!({"diskName": "data-1", "diskSnapshotName": "s1", "tags": [{"key": "k".repeat(129), "value": ""}]}),
                "InvalidInputException",
            ),
            (
                json!({"diskName": "data-1", "diskSnapshotName": "s1", "tags": [{"key": "k", "value": "a;b"}]}),
                "InvalidInputException",
            ),
        ];
        for (body, code) in cases {
            let err = create(&mut w, body.clone()).err().expect("refused");
            assert_eq!(err.code, code, "{body}");
        }
        assert!(w.disk_snapshot("s1").is_none(), "nothing created");
    }

    #[test]
    fn snapshots_of_disks_and_system_volumes() {
        let mut w = world(10);
        let out = create(
            &mut w,
            json!({"diskName": "data-1", "diskSnapshotName": "s1", "tags": [{"key": "a", "value": "b"}]}),
        )
        .unwrap();
        let op = &out.body["operations"][0];
        assert_eq!(op["operationType"], "CreateDiskSnapshot");
        assert_eq!(op["resourceName"], "s1");
        assert_eq!(op["resourceType"], "DiskSnapshot");
        let s = w.disk_snapshot("s1").unwrap();
        assert_eq!(s["fromDiskName"], "data-1");
        assert_eq!(s["state"], "completed");
        assert_eq!(s["tags"][0]["key"], "a");
        let dup = create(
            &mut w,
            json!({"diskName": "data-1", "diskSnapshotName": "s1"}),
        );
        assert!(dup.err().unwrap().message.contains("already exists"));

        create(
            &mut w,
            json!({"instanceName": "web-1", "diskSnapshotName": "sys"}),
        )
        .unwrap();
        let s = w.disk_snapshot("sys").unwrap();
        assert_eq!(s["fromInstanceName"], "web-1");
        assert_eq!(s["fromDiskName"], "web-1-system-disk");
        // System disks are no block storage disks.
        let err = w
            .call(
                "GetDisk",
                &json!({"diskName": "web-1-system-disk"}),
                SystemTime::now(),
            )
            .err()
            .unwrap();
        assert_eq!(err.code, "NotFoundException");
    }

    #[test]
    fn lists_paginate() {
        let mut w = world(1);
        let mut names = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let body = match &token {
                Some(t) => json!({"pageToken": t}),
                None => json!({}),
            };
            let out = w
                .call("GetInstances", &body, SystemTime::now())
                .unwrap()
                .body;
            for i in out["instances"].as_array().unwrap() {
                names.push(i["name"].as_str().unwrap().to_string());
            }
            match out["nextPageToken"].as_str() {
                Some(t) => token = Some(t.to_string()),
                None => break,
            }
        }
        assert_eq!(names, ["web-1", "web-2"]);
        let err = w
            .call(
                "GetDisks",
                &json!({"pageToken": "bogus"}),
                SystemTime::now(),
            )
            .err()
            .unwrap();
        assert_eq!(err.code, "InvalidInputException");
    }

    #[test]
    fn snapshots_progress_then_complete() {
        let seed = Seed::from_toml_str("[[disks]]\nname = \"d1\"").unwrap();
        let mut w = World::new(&seed, PathBuf::from("/x"), Duration::from_secs(100), 10);
        let t0 = SystemTime::now();
        w.call(
            "CreateDiskSnapshot",
            &json!({"diskName": "d1", "diskSnapshotName": "s1"}),
            t0,
        )
        .unwrap();
        let s = &w.disk_snapshots[0];
        assert_eq!(
            w.progress(s, "completed", t0 + Duration::from_secs(42)),
            ("pending".to_string(), "42%".to_string())
        );
        assert_eq!(
            w.progress(s, "completed", t0 + Duration::from_secs(100)),
            ("completed".to_string(), "100%".to_string())
        );
        let op_id = w.operations[0].id.clone();
        let op = w
            .call("GetOperation", &json!({"operationId": op_id}), t0)
            .unwrap()
            .body;
        assert_eq!(op["operation"]["status"], "Started");
        assert_eq!(op["operation"]["isTerminal"], false);
        assert_eq!(op["operation"]["statusChangedAt"], epoch(t0));
        // Once done, the operation says when it got there, however late it is asked.
        for later in [150, 300] {
            let op = w
                .call(
                    "GetOperation",
                    &json!({"operationId": op_id}),
                    t0 + Duration::from_secs(later),
                )
                .unwrap()
                .body;
            assert_eq!(op["operation"]["status"], "Succeeded");
            assert_eq!(op["operation"]["isTerminal"], true);
            assert_eq!(
                op["operation"]["statusChangedAt"],
                epoch(t0 + Duration::from_secs(100))
            );
        }
    }

    #[test]
    fn tags_merge_and_instance_snapshots_list_attached_disks() {
        let mut w = world(10);
        w.call(
            "CreateInstanceSnapshot",
            &json!({"instanceName": "web-1", "instanceSnapshotName": "whole"}),
            SystemTime::now(),
        )
        .unwrap();
        w.call(
            "TagResource",
            &json!({"resourceName": "whole", "tags": [{"key": "k", "value": "v"}]}),
            SystemTime::now(),
        )
        .unwrap();
        let s = w.instance_snapshot("whole").unwrap();
        assert_eq!(s["state"], "available");
        assert_eq!(s["fromAttachedDisks"][0]["name"], "data-1");
        assert_eq!(s["tags"][0]["value"], "v");
    }

    #[test]
    fn an_automatic_snapshot_in_progress_refuses_manual_ones_of_its_resource() {
        let seed = Seed::from_toml_str(
            r#"
[[instances]]
name = "web-1"
instance_id = "i-0123456789abcdef0"
auto_snapshot = { time_of_day = "06:00" }
[[disks]]
name = "data-1"
path = "/dev/xvdf"
attached_to = "web-1"
size_gb = 16
auto_snapshot = { time_of_day = "07:00", history = ["Failed"], in_progress = "10m" }
[[disks]]
name = "spare-1"
"#,
        )
        .unwrap();
        let t0 = SystemTime::now();
        let mut w = World::new(&seed, PathBuf::from("/nonexistent"), Duration::ZERO, 10);
        let during = t0 + Duration::from_secs(599);
        let disk = |n: &str| json!({"diskName": "data-1", "diskSnapshotName": n});
        let err = w
            .call("CreateDiskSnapshot", &disk("s1"), during)
            .err()
            .unwrap();
        assert_eq!(
            (err.code.as_str(), err.status),
            ("OperationFailureException", 400)
        );
        assert!(err.message.contains("automatic snapshot is being created"));
        // Other resources are not held up: the system volume, the instance.
        let sys = json!({"instanceName": "web-1", "diskSnapshotName": "sys-1"});
        w.call("CreateDiskSnapshot", &sys, during).unwrap();
        let auto = w
            .call(
                "GetAutoSnapshots",
                &json!({"resourceName": "data-1"}),
                during,
            )
            .unwrap()
            .body;
        assert_eq!(auto["resourceType"], "Disk");
        assert_eq!(auto["autoSnapshots"][0]["status"], "InProgress");
        assert_eq!(auto["autoSnapshots"][1]["status"], "Failed");
        let after = t0 + Duration::from_secs(601);
        w.call("CreateDiskSnapshot", &disk("s1"), after).unwrap();

        // The instance's run holds up its system volume and instance snapshots.
        w.start_auto_snapshot("web-1", after, None).unwrap();
        let sys = json!({"instanceName": "web-1", "diskSnapshotName": "sys-2"});
        let err = w.call("CreateDiskSnapshot", &sys, after).err().unwrap();
        assert_eq!(err.code, "OperationFailureException");
        let whole = json!({"instanceName": "web-1", "instanceSnapshotName": "whole"});
        let err = w
            .call("CreateInstanceSnapshot", &whole, after)
            .err()
            .unwrap();
        assert_eq!(err.code, "OperationFailureException");
        let auto = w
            .call("GetAutoSnapshots", &json!({"resourceName": "web-1"}), after)
            .unwrap()
            .body;
        assert_eq!(auto["resourceType"], "Instance");
        assert_eq!(
            auto["autoSnapshots"][0]["fromAttachedDisks"][0]["sizeInGb"],
            16
        );
        w.end_auto_snapshot("web-1", after, "Success").unwrap();
        w.call("CreateInstanceSnapshot", &whole, after).unwrap();

        // The add-on shows where the service shows it; system disks and unknown names have
        // no automatic snapshots of their own.
        let i = w.call("GetInstance", &json!({"instanceName": "web-1"}), after);
        let i = i.unwrap().body;
        assert_eq!(i["instance"]["addOns"][0]["snapshotTimeOfDay"], "06:00");
        let d = w
            .call("GetDisk", &json!({"diskName": "data-1"}), after)
            .unwrap()
            .body;
        assert_eq!(d["disk"]["addOns"][0]["snapshotTimeOfDay"], "07:00");
        let d = w
            .call("GetDisk", &json!({"diskName": "spare-1"}), after)
            .unwrap()
            .body;
        assert_eq!(d["disk"]["addOns"], json!([]));
        for name in ["web-1-system-disk", "nope"] {
            let err = w
                .call("GetAutoSnapshots", &json!({"resourceName": name}), after)
                .err()
                .unwrap();
            assert_eq!(err.code, "NotFoundException", "{name}");
        }
        assert!(
            w.start_auto_snapshot("spare-1", after, None).is_err(),
            "no add-on"
        );
    }

    #[test]
    fn errors_carry_the_documented_shape() {
        let e = ApiError::new("ServiceException", "boom");
        assert_eq!(e.status, 500);
        let b = e.body();
        assert_eq!(b["__type"], "ServiceException");
        assert_eq!(b["code"], "Service");
        assert_eq!(ApiError::new("NotFoundException", "x").status, 400);
    }
}
