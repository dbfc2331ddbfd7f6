//! The fake Lightsail is faithful enough for the real `aws-sdk-lightsail`: every operation
//! lightsnap uses, driven over real HTTP with real SigV4 signatures, answers in shapes the SDK
//! parses (timestamps, enums, error types), errors arrive as the SDK's typed variants, and
//! injected faults look to the SDK as the real ones would. Also here: the snapshot bytes, the
//! instance metadata service (hand-rolled HTTP and the SDK's own IMDS client), the admin
//! endpoint and the `fake-lightsail` binary.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_lightsail::config::retry::RetryConfig;
use aws_sdk_lightsail::config::timeout::TimeoutConfig;
use aws_sdk_lightsail::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_lightsail::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_lightsail::operation::create_disk_snapshot::CreateDiskSnapshotError;
use aws_sdk_lightsail::operation::create_instance_snapshot::CreateInstanceSnapshotError;
use aws_sdk_lightsail::operation::delete_disk_snapshot::DeleteDiskSnapshotError;
use aws_sdk_lightsail::operation::delete_instance_snapshot::DeleteInstanceSnapshotError;
use aws_sdk_lightsail::operation::get_auto_snapshots::GetAutoSnapshotsError;
use aws_sdk_lightsail::operation::get_disk::GetDiskError;
use aws_sdk_lightsail::operation::get_disk_snapshot::GetDiskSnapshotError;
use aws_sdk_lightsail::operation::get_disk_snapshots::GetDiskSnapshotsError;
use aws_sdk_lightsail::operation::get_instance::GetInstanceError;
use aws_sdk_lightsail::operation::get_instance_snapshot::GetInstanceSnapshotError;
use aws_sdk_lightsail::operation::get_operation::GetOperationError;
use aws_sdk_lightsail::operation::tag_resource::TagResourceError;
use aws_sdk_lightsail::primitives::DateTime;
use aws_sdk_lightsail::types::{
    AutoSnapshotStatus, Disk, DiskSnapshotState, InstanceSnapshotState, Operation, OperationStatus,
    OperationType, RegionName, ResourceType, Tag,
};
use aws_sdk_lightsail::Client;
use fake_lightsail::{Fake, Fault, FaultKind, ImdsMode, Options, Seed, TlsOptions};

const ACCOUNT: &str = "210987654321";
const REGION: &str = "eu-west-2";
const WEB1_ID: &str = "i-0123456789abcdef0";
const WEB2_ID: &str = "i-0fedcba9876543210";
const DATA1_VOLUME: &str = "vol-0aaaabbbbccccdddd";
/// Attempts the SDK makes per call (first try plus retries).
const ATTEMPTS: u32 = 3;
/// Every wait on the fake is bounded by this.
const DEADLINE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// The world the tests start in.

/// Deterministic, incompressible-looking bytes, with a run of zeros (a hole in the copy) and
/// a length that is no multiple of the block size.
fn image_bytes(label: &str, len: usize) -> Vec<u8> {
    let mut x = label.bytes().fold(0x9e37_79b9_7f4a_7c15u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    let mut out: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    let hole = len / 3;
    out[hole..hole + (1 << 20).min(len / 3)].fill(0);
    out
}

fn seed_toml(dir: &Path) -> String {
    format!(
        r#"
account = "{ACCOUNT}"
region = "{REGION}"
self_instance = "web-1"

[[instances]]
name = "web-1"
instance_id = "{WEB1_ID}"
zone = "{REGION}b"
system_disk = {{ name = "web-1-root", path = "/dev/nvme0n1", size_gb = 40, backing = "{root}" }}

[[instances]]
name = "web-2"
instance_id = "{WEB2_ID}"

[[disks]]
name = "data-1"
path = "/dev/xvdf"
attached_to = "web-1"
size_gb = 16
backing = "{data}"
volume_id = "{DATA1_VOLUME}"

[[disks]]
name = "logs-1"
path = "/dev/xvdg"
attached_to = "web-1"

[[disks]]
name = "spare-1"
"#,
        root = dir.join("root.img").display(),
        data = dir.join("data-1.img").display(),
    )
}

/// A running fake, the real SDK pointed at it, and the backing images of its disks.
struct Harness {
    fake: Fake,
    client: Client,
    dir: tempfile::TempDir,
}

impl Harness {
    fn data_image(&self) -> PathBuf {
        self.dir.path().join("data-1.img")
    }

    fn root_image(&self) -> PathBuf {
        self.dir.path().join("root.img")
    }

    /// How many calls of `operation` the fake received.
    fn calls_of(&self, operation: &str) -> usize {
        self.fake
            .calls()
            .iter()
            .filter(|c| c.operation == operation)
            .count()
    }
}

/// Starts a fake on the test seed (snapshots complete at once unless `configure` says
/// otherwise) and a client for it.
async fn start(configure: impl FnOnce(&mut Options)) -> Harness {
    start_with(&[], configure).await
}

/// Like [`start`], with disk snapshots that exist before the run (TOML appended to the seed).
async fn start_with(extra_seed: &[&str], configure: impl FnOnce(&mut Options)) -> Harness {
    start_edited(extra_seed, |s| s, configure).await
}

/// Like [`start_with`], the seed's text passed through `edit` first.
async fn start_edited(
    extra_seed: &[&str],
    edit: impl FnOnce(String) -> String,
    configure: impl FnOnce(&mut Options),
) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("root.img"),
        image_bytes("root", 3 << 20 | 777),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("data-1.img"),
        image_bytes("data-1", 5 << 20 | 4097),
    )
    .unwrap();
    let mut text = edit(seed_toml(dir.path()));
    for s in extra_seed {
        text.push_str(s);
    }
    let seed = Seed::from_toml_str(&text).unwrap();
    let mut options = Options::new(seed, dir.path().join("snapshots"));
    options.snapshot_duration = Duration::ZERO;
    configure(&mut options);
    if let Some(tls) = &mut options.tls {
        tls.ca_file = Some(dir.path().join("ca.pem"));
    }
    let fake = Fake::start(options).unwrap();
    let client = sdk(&fake.endpoint(), fake_lightsail::DEFAULT_SECRET_KEY, None).await;
    Harness { fake, client, dir }
}

/// The real SDK, through the standard configuration loader, pointed at `endpoint`, with small
/// retry backoffs so retried faults take milliseconds.
async fn sdk(endpoint: &str, secret: &str, attempt_timeout: Option<Duration>) -> Client {
    sdk_as(
        endpoint,
        fake_lightsail::DEFAULT_ACCESS_KEY,
        secret,
        attempt_timeout,
    )
    .await
}

async fn sdk_as(
    endpoint: &str,
    access_key: &str,
    secret: &str,
    attempt_timeout: Option<Duration>,
) -> Client {
    sdk_in(REGION, endpoint, access_key, secret, attempt_timeout).await
}

async fn sdk_in(
    region: &'static str,
    endpoint: &str,
    access_key: &str,
    secret: &str,
    attempt_timeout: Option<Duration>,
) -> Client {
    let mut timeouts = TimeoutConfig::builder().operation_timeout(DEADLINE);
    if let Some(t) = attempt_timeout {
        timeouts = timeouts.operation_attempt_timeout(t);
    }
    let config = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new(region))
        .credentials_provider(Credentials::new(
            access_key,
            secret,
            None,
            None,
            "fake-lightsail-tests",
        ))
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(ATTEMPTS)
                .with_initial_backoff(Duration::from_millis(5))
                .with_max_backoff(Duration::from_millis(50)),
        )
        .timeout_config(timeouts.build())
        .load()
        .await;
    Client::new(&config)
}

fn tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build()
}

fn tag_pairs(tags: &[Tag]) -> Vec<(String, String)> {
    tags.iter()
        .map(|t| {
            (
                t.key().unwrap_or_default().to_string(),
                t.value().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn system_time(t: Option<&DateTime>) -> SystemTime {
    SystemTime::try_from(*t.expect("a timestamp")).expect("a representable timestamp")
}

/// `t` lies in `[from, to]`, give or take the millisecond a float timestamp may round by.
fn assert_between(t: SystemTime, from: SystemTime, to: SystemTime, what: &str) {
    let slack = Duration::from_millis(1);
    assert!(
        t + slack >= from && t <= to + slack,
        "{what}: {t:?} is not within {from:?}..{to:?}"
    );
}

fn only_operation(ops: &[Operation]) -> &Operation {
    assert_eq!(ops.len(), 1, "one operation: {ops:?}");
    &ops[0]
}

/// Checks an operation's fields, as a create/delete/tag call of `name` returns them.
fn assert_operation(
    op: &Operation,
    name: &str,
    resource_type: ResourceType,
    operation_type: OperationType,
    sent: SystemTime,
    answered: SystemTime,
) {
    assert!(!op.id().unwrap_or_default().is_empty(), "an id: {op:?}");
    assert_eq!(op.resource_name(), Some(name));
    assert_eq!(op.resource_type(), Some(&resource_type));
    assert_eq!(op.operation_type(), Some(&operation_type));
    assert_between(system_time(op.created_at()), sent, answered, "createdAt");
    let location = op.location().expect("a location");
    assert_eq!(location.region_name(), Some(&RegionName::from(REGION)));
    let terminal = op.is_terminal().expect("isTerminal");
    assert_eq!(
        terminal,
        op.status() != Some(&OperationStatus::Started),
        "isTerminal agrees with the status: {op:?}"
    );
}

fn disk<'a>(disks: &'a [Disk], name: &str) -> &'a Disk {
    disks
        .iter()
        .find(|d| d.name() == Some(name))
        .unwrap_or_else(|| panic!("disk {name} in {disks:?}"))
}

/// `refused!(call)`: sends a call that must fail, and gives its typed service error.
macro_rules! refused {
    ($call:expr) => {
        $call
            .send()
            .await
            .expect_err("refused")
            .into_service_error()
    };
}

// ---------------------------------------------------------------------------------------------
// Disks and instances.

#[tokio::test]
async fn disks_and_instances_read_as_seeded() {
    let before = SystemTime::now();
    let h = start(|_| {}).await;
    let c = &h.client;

    let out = c.get_disks().send().await.unwrap();
    assert_eq!(out.next_page_token(), None);
    let names: Vec<_> = out.disks().iter().filter_map(Disk::name).collect();
    assert_eq!(
        names,
        ["data-1", "logs-1", "spare-1"],
        "system disks are not listed"
    );
    let data = disk(out.disks(), "data-1");
    assert_eq!(
        data.support_code(),
        Some(format!("{ACCOUNT}/{DATA1_VOLUME}").as_str())
    );
    assert_eq!(data.path(), Some("/dev/xvdf"));
    assert_eq!(data.attached_to(), Some("web-1"));
    assert_eq!(data.is_attached(), Some(true));
    assert_eq!(data.is_system_disk(), Some(false));
    assert_eq!(data.size_in_gb(), Some(16));
    assert_eq!(data.resource_type(), Some(&ResourceType::Disk));
    assert!(data
        .arn()
        .unwrap()
        .starts_with(&format!("arn:aws:lightsail:{REGION}:{ACCOUNT}:Disk/")));
    let location = data.location().unwrap();
    assert_eq!(
        location.availability_zone(),
        Some(format!("{REGION}b").as_str())
    );
    assert_eq!(location.region_name(), Some(&RegionName::EuWest2));
    assert_between(
        system_time(data.created_at()),
        before,
        SystemTime::now(),
        "disk createdAt",
    );
    let spare = disk(out.disks(), "spare-1");
    assert_eq!(spare.is_attached(), Some(false));
    assert_eq!(spare.attached_to(), None);
    let support = spare.support_code().unwrap();
    assert!(
        support.starts_with(&format!("{ACCOUNT}/vol-")),
        "an EBS volume id in {support}"
    );

    let one = c.get_disk().disk_name("logs-1").send().await.unwrap();
    let logs = one.disk().unwrap();
    assert_eq!(logs.path(), Some("/dev/xvdg"));
    assert_eq!(logs.attached_to(), Some("web-1"));
    assert_eq!(logs.size_in_gb(), Some(8), "the seed's default size");
    let err = refused!(c.get_disk().disk_name("no-such-disk"));
    assert!(matches!(err, GetDiskError::NotFoundException(_)), "{err:?}");

    let out = c.get_instances().send().await.unwrap();
    let names: Vec<_> = out.instances().iter().filter_map(|i| i.name()).collect();
    assert_eq!(names, ["web-1", "web-2"]);
    let web2 = &out.instances()[1];
    assert_eq!(
        web2.support_code(),
        Some(format!("{ACCOUNT}/{WEB2_ID}").as_str())
    );
    let web2_disks = web2.hardware().unwrap().disks();
    assert_eq!(web2_disks.len(), 1, "only its default system disk");
    assert_eq!(web2_disks[0].name(), Some("web-2-system-disk"));
    assert_eq!(web2_disks[0].is_system_disk(), Some(true));

    let out = c
        .get_instance()
        .instance_name("web-1")
        .send()
        .await
        .unwrap();
    let web1 = out.instance().unwrap();
    assert_eq!(web1.name(), Some("web-1"));
    assert_eq!(
        web1.support_code(),
        Some(format!("{ACCOUNT}/{WEB1_ID}").as_str())
    );
    assert_eq!(web1.resource_type(), Some(&ResourceType::Instance));
    assert_eq!(
        web1.location().unwrap().availability_zone(),
        Some(format!("{REGION}b").as_str())
    );
    let disks = web1.hardware().unwrap().disks();
    let names: Vec<_> = disks.iter().filter_map(Disk::name).collect();
    assert_eq!(names, ["web-1-root", "data-1", "logs-1"]);
    let root = disk(disks, "web-1-root");
    assert_eq!(root.is_system_disk(), Some(true));
    assert_eq!(root.path(), Some("/dev/nvme0n1"));
    assert_eq!(root.size_in_gb(), Some(40));
    assert_eq!(root.attached_to(), Some("web-1"));
    assert_eq!(root.is_attached(), Some(true));
    assert!(root
        .support_code()
        .unwrap()
        .starts_with(&format!("{ACCOUNT}/vol-")));
    assert_eq!(disk(disks, "data-1").is_system_disk(), Some(false));
    let err = refused!(c.get_instance().instance_name("web-9"));
    assert!(
        matches!(err, GetInstanceError::NotFoundException(_)),
        "{err:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Disk snapshots.

#[tokio::test]
async fn create_disk_snapshot_of_a_disk_with_tags() {
    let h = start(|_| {}).await;
    let c = &h.client;
    let sent = SystemTime::now();
    let out = c
        .create_disk_snapshot()
        .disk_name("data-1")
        .disk_snapshot_name("data-1-snap")
        .tags(tag("lightsnap:consistency", "frozen"))
        .tags(tag("owner", "ops team"))
        .send()
        .await
        .unwrap();
    let answered = SystemTime::now();
    let op = only_operation(out.operations());
    assert_operation(
        op,
        "data-1-snap",
        ResourceType::DiskSnapshot,
        OperationType::CreateDiskSnapshot,
        sent,
        answered,
    );
    // Snapshots complete at once here: the operation says so.
    assert_eq!(op.status(), Some(&OperationStatus::Succeeded));
    assert_eq!(op.is_terminal(), Some(true));

    let got = c
        .get_disk_snapshot()
        .disk_snapshot_name("data-1-snap")
        .send()
        .await
        .unwrap();
    let s = got.disk_snapshot().unwrap();
    assert_eq!(s.name(), Some("data-1-snap"));
    assert_eq!(s.from_disk_name(), Some("data-1"));
    assert_eq!(s.from_instance_name(), None);
    assert_eq!(s.state(), Some(&DiskSnapshotState::Completed));
    assert_eq!(s.progress(), Some("100%"));
    assert_eq!(s.size_in_gb(), Some(16));
    assert_eq!(s.resource_type(), Some(&ResourceType::DiskSnapshot));
    assert_eq!(s.is_from_auto_snapshot(), Some(false));
    assert_eq!(
        tag_pairs(s.tags()),
        pairs(&[("lightsnap:consistency", "frozen"), ("owner", "ops team")])
    );
    assert_eq!(s.created_at(), op.created_at(), "taken when the call came");
}

#[tokio::test]
async fn create_disk_snapshot_of_the_system_volume_by_instance_name() {
    let h = start(|_| {}).await;
    let c = &h.client;
    let sent = SystemTime::now();
    let out = c
        .create_disk_snapshot()
        .instance_name("web-1")
        .disk_snapshot_name("web-1-root-snap")
        .tags(tag("k", "v"))
        .send()
        .await
        .unwrap();
    let op = only_operation(out.operations());
    assert_operation(
        op,
        "web-1-root-snap",
        ResourceType::DiskSnapshot,
        OperationType::CreateDiskSnapshot,
        sent,
        SystemTime::now(),
    );
    let got = c
        .get_disk_snapshot()
        .disk_snapshot_name("web-1-root-snap")
        .send()
        .await
        .unwrap();
    let s = got.disk_snapshot().unwrap();
    assert_eq!(s.from_instance_name(), Some("web-1"));
    assert_eq!(s.from_disk_name(), Some("web-1-root"));
    assert!(s.from_instance_arn().unwrap().contains(":Instance/"));
    assert_eq!(s.size_in_gb(), Some(40));
    assert_eq!(tag_pairs(s.tags()), pairs(&[("k", "v")]));
}

#[tokio::test]
async fn disk_snapshot_progresses_from_pending_to_completed() {
    let duration = Duration::from_secs(3);
    let h = start(|o| o.snapshot_duration = duration).await;
    let c = &h.client;
    // A disk with no backing: no bytes to copy, so the call answers at once.
    let sent = Instant::now();
    let out = c
        .create_disk_snapshot()
        .disk_name("logs-1")
        .disk_snapshot_name("slow")
        .send()
        .await
        .unwrap();
    let created = Instant::now();
    let op = only_operation(out.operations()).clone();
    assert_eq!(op.status(), Some(&OperationStatus::Started));
    assert_eq!(op.is_terminal(), Some(false));
    let id = op.id().unwrap();
    let pending_op = c.get_operation().operation_id(id).send().await.unwrap();
    let pending_op = pending_op.operation().unwrap();
    assert_eq!(pending_op.id(), Some(id));
    assert_eq!(pending_op.status(), Some(&OperationStatus::Started));

    // Poll until completed, within the deadline.
    let mut seen = Vec::new();
    loop {
        let got = c
            .get_disk_snapshot()
            .disk_snapshot_name("slow")
            .send()
            .await
            .unwrap();
        let s = got.disk_snapshot().unwrap();
        let state = s.state().unwrap().clone();
        let pct: u32 = s
            .progress()
            .unwrap()
            .strip_suffix('%')
            .expect("a percentage")
            .parse()
            .unwrap();
        seen.push((state.clone(), pct));
        if state == DiskSnapshotState::Completed {
            break;
        }
        assert_eq!(state, DiskSnapshotState::Pending, "{seen:?}");
        assert!(created.elapsed() < DEADLINE, "never completed: {seen:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        seen[0].0,
        DiskSnapshotState::Pending,
        "pending right after the call: {seen:?}"
    );
    assert!(seen[0].1 < 100, "{seen:?}");
    assert!(
        seen.windows(2).all(|w| w[0].1 <= w[1].1),
        "progress never goes back: {seen:?}"
    );
    assert_eq!(seen.last().unwrap().1, 100);
    assert!(
        sent.elapsed() + Duration::from_millis(50) >= duration,
        "completed no sooner than the snapshot duration"
    );

    let done = c.get_operation().operation_id(id).send().await.unwrap();
    let done = done.operation().unwrap();
    assert_eq!(done.status(), Some(&OperationStatus::Succeeded));
    assert_eq!(done.is_terminal(), Some(true));
    let took = system_time(done.status_changed_at())
        .duration_since(system_time(done.created_at()))
        .unwrap();
    assert!(took + Duration::from_millis(1) >= duration, "{took:?}");
}

#[tokio::test]
async fn disk_snapshots_page_through_small_pages() {
    let seeded = [
        "\n[[disk_snapshots]]\nname = \"old-1\"\ndisk = \"data-1\"\nage = \"40d\"\nauto = true\n",
        "\n[[disk_snapshots]]\nname = \"old-2\"\ndisk = \"data-1\"\nage = \"2h\"\ntags = { \"lightsnap:version\" = \"0.1.0\" }\n",
        "\n[[disk_snapshots]]\nname = \"old-3\"\ndisk = \"logs-1\"\nstate = \"error\"\n",
    ];
    let page_size = 2;
    let h = start_with(&seeded, |o| o.page_size = page_size).await;
    let c = &h.client;
    for name in ["new-1", "new-2"] {
        c.create_disk_snapshot()
            .disk_name("spare-1")
            .disk_snapshot_name(name)
            .send()
            .await
            .unwrap();
    }
    let mut names = Vec::new();
    let mut snapshots = Vec::new();
    let mut pages = 0;
    let mut token: Option<String> = None;
    loop {
        let out = c
            .get_disk_snapshots()
            .set_page_token(token.clone())
            .send()
            .await
            .unwrap();
        pages += 1;
        assert!(out.disk_snapshots().len() <= page_size, "{out:?}");
        for s in out.disk_snapshots() {
            names.push(s.name().unwrap().to_string());
            snapshots.push(s.clone());
        }
        match out.next_page_token() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
        assert!(pages < 10, "pagination never ends");
    }
    assert_eq!(names, ["old-1", "old-2", "old-3", "new-1", "new-2"]);
    assert_eq!(pages, names.len().div_ceil(page_size));

    let now = SystemTime::now();
    let old1 = &snapshots[0];
    assert_eq!(old1.is_from_auto_snapshot(), Some(true));
    let age = now.duration_since(system_time(old1.created_at())).unwrap();
    let forty_days = Duration::from_secs(40 * 86400);
    assert!(age >= forty_days && age < forty_days + DEADLINE, "{age:?}");
    assert_eq!(
        tag_pairs(snapshots[1].tags()),
        pairs(&[("lightsnap:version", "0.1.0")])
    );
    assert_eq!(snapshots[2].state(), Some(&DiskSnapshotState::Error));
    assert_eq!(snapshots[2].from_disk_name(), Some("logs-1"));
    assert_eq!(snapshots[3].state(), Some(&DiskSnapshotState::Completed));

    let disks = c.get_disks().send().await.unwrap();
    assert_eq!(disks.disks().len(), page_size);
    let rest = c
        .get_disks()
        .set_page_token(disks.next_page_token().map(str::to_string))
        .send()
        .await
        .unwrap();
    let names: Vec<_> = disks
        .disks()
        .iter()
        .chain(rest.disks())
        .filter_map(Disk::name)
        .collect();
    assert_eq!(names, ["data-1", "logs-1", "spare-1"]);
    assert_eq!(rest.next_page_token(), None);

    let err = refused!(c.get_disk_snapshots().page_token("not-a-token"));
    assert!(
        matches!(err, GetDiskSnapshotsError::InvalidInputException(_)),
        "{err:?}"
    );
}

#[tokio::test]
async fn delete_disk_snapshot_removes_it_and_its_image() {
    let h = start(|_| {}).await;
    let c = &h.client;
    c.create_disk_snapshot()
        .disk_name("data-1")
        .disk_snapshot_name("doomed")
        .send()
        .await
        .unwrap();
    let image = h.fake.snapshot_image("doomed");
    assert!(image.exists());
    let sent = SystemTime::now();
    let out = c
        .delete_disk_snapshot()
        .disk_snapshot_name("doomed")
        .send()
        .await
        .unwrap();
    let op = only_operation(out.operations());
    assert_operation(
        op,
        "doomed",
        ResourceType::DiskSnapshot,
        OperationType::DeleteDiskSnapshot,
        sent,
        SystemTime::now(),
    );
    assert_eq!(op.status(), Some(&OperationStatus::Succeeded));
    assert!(!image.exists(), "the image goes with the snapshot");
    let err = refused!(c.get_disk_snapshot().disk_snapshot_name("doomed"));
    assert!(
        matches!(err, GetDiskSnapshotError::NotFoundException(_)),
        "{err:?}"
    );
    let err = refused!(c.delete_disk_snapshot().disk_snapshot_name("doomed"));
    assert!(
        matches!(err, DeleteDiskSnapshotError::NotFoundException(_)),
        "{err:?}"
    );
    // The name is free again.
    c.create_disk_snapshot()
        .disk_name("data-1")
        .disk_snapshot_name("doomed")
        .send()
        .await
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// Instance snapshots, operations, tags.

#[tokio::test]
async fn instance_snapshots_are_created_listed_and_deleted() {
    let h = start(|_| {}).await;
    let c = &h.client;
    let sent = SystemTime::now();
    let out = c
        .create_instance_snapshot()
        .instance_name("web-1")
        .instance_snapshot_name("web-1-whole")
        .tags(tag("lightsnap:consistency", "frozen"))
        .send()
        .await
        .unwrap();
    let op = only_operation(out.operations());
    assert_operation(
        op,
        "web-1-whole",
        ResourceType::InstanceSnapshot,
        OperationType::CreateInstanceSnapshot,
        sent,
        SystemTime::now(),
    );

    let got = c
        .get_instance_snapshot()
        .instance_snapshot_name("web-1-whole")
        .send()
        .await
        .unwrap();
    let s = got.instance_snapshot().unwrap();
    assert_eq!(s.name(), Some("web-1-whole"));
    assert_eq!(s.from_instance_name(), Some("web-1"));
    assert_eq!(s.state(), Some(&InstanceSnapshotState::Available));
    assert_eq!(s.resource_type(), Some(&ResourceType::InstanceSnapshot));
    assert_eq!(s.size_in_gb(), Some(40), "the system disk's size");
    let attached: Vec<_> = s
        .from_attached_disks()
        .iter()
        .filter_map(Disk::name)
        .collect();
    assert_eq!(attached, ["data-1", "logs-1"]);
    assert_eq!(
        tag_pairs(s.tags()),
        pairs(&[("lightsnap:consistency", "frozen")])
    );

    c.create_instance_snapshot()
        .instance_name("web-2")
        .instance_snapshot_name("web-2-whole")
        .send()
        .await
        .unwrap();
    let list = c.get_instance_snapshots().send().await.unwrap();
    let names: Vec<_> = list
        .instance_snapshots()
        .iter()
        .filter_map(|s| s.name())
        .collect();
    assert_eq!(names, ["web-1-whole", "web-2-whole"]);
    assert!(list.instance_snapshots()[1]
        .from_attached_disks()
        .is_empty());

    let err = refused!(c
        .create_instance_snapshot()
        .instance_name("web-1")
        .instance_snapshot_name("web-1-whole"));
    assert!(
        matches!(err, CreateInstanceSnapshotError::InvalidInputException(_)),
        "duplicate: {err:?}"
    );
    let err = refused!(c
        .create_instance_snapshot()
        .instance_name("web-7")
        .instance_snapshot_name("web-7-whole"));
    assert!(
        matches!(err, CreateInstanceSnapshotError::NotFoundException(_)),
        "{err:?}"
    );
    let err = refused!(c
        .create_instance_snapshot()
        .instance_name("web-1")
        .instance_snapshot_name("bad name"));
    assert!(
        matches!(err, CreateInstanceSnapshotError::InvalidInputException(_)),
        "{err:?}"
    );

    let sent = SystemTime::now();
    let out = c
        .delete_instance_snapshot()
        .instance_snapshot_name("web-1-whole")
        .send()
        .await
        .unwrap();
    assert_operation(
        only_operation(out.operations()),
        "web-1-whole",
        ResourceType::InstanceSnapshot,
        OperationType::DeleteInstanceSnapshot,
        sent,
        SystemTime::now(),
    );
    assert!(!h.fake.snapshot_dir().join("web-1-whole").exists());
    let err = refused!(c
        .get_instance_snapshot()
        .instance_snapshot_name("web-1-whole"));
    assert!(
        matches!(err, GetInstanceSnapshotError::NotFoundException(_)),
        "{err:?}"
    );
    let err = refused!(c
        .delete_instance_snapshot()
        .instance_snapshot_name("web-1-whole"));
    assert!(
        matches!(err, DeleteInstanceSnapshotError::NotFoundException(_)),
        "{err:?}"
    );
}

#[tokio::test]
async fn tag_resource_merges_tags_and_get_operation_finds_it() {
    let h = start(|_| {}).await;
    let c = &h.client;
    c.create_disk_snapshot()
        .disk_name("data-1")
        .disk_snapshot_name("tagged")
        .tags(tag("a", "1"))
        .tags(tag("b", "2"))
        .send()
        .await
        .unwrap();
    let sent = SystemTime::now();
    let out = c
        .tag_resource()
        .resource_name("tagged")
        .tags(tag("b", "two"))
        .tags(tag("lightsnap:consistency", "unverified"))
        .send()
        .await
        .unwrap();
    let op = only_operation(out.operations());
    assert_operation(
        op,
        "tagged",
        ResourceType::DiskSnapshot,
        // Not in the model's enum, but what the service answers: the SDK keeps it as unknown.
        OperationType::from("TagResource"),
        sent,
        SystemTime::now(),
    );
    assert_eq!(op.status(), Some(&OperationStatus::Succeeded));
    let got = c
        .get_disk_snapshot()
        .disk_snapshot_name("tagged")
        .send()
        .await
        .unwrap();
    assert_eq!(
        tag_pairs(got.disk_snapshot().unwrap().tags()),
        pairs(&[
            ("a", "1"),
            ("b", "two"),
            ("lightsnap:consistency", "unverified")
        ])
    );

    let again = c
        .get_operation()
        .operation_id(op.id().unwrap())
        .send()
        .await
        .unwrap();
    let again = again.operation().unwrap();
    assert_eq!(again.id(), op.id());
    assert_eq!(
        again.operation_type().map(OperationType::as_str),
        Some("TagResource")
    );
    assert_eq!(again.created_at(), op.created_at());
    assert_eq!(again.status_changed_at(), op.status_changed_at());

    let err = refused!(c.get_operation().operation_id("no-such-operation"));
    assert!(
        matches!(err, GetOperationError::NotFoundException(_)),
        "{err:?}"
    );
    let err = refused!(c.tag_resource().resource_name("nobody").tags(tag("a", "b")));
    assert!(
        matches!(err, TagResourceError::NotFoundException(_)),
        "{err:?}"
    );
    let err = refused!(c
        .tag_resource()
        .resource_name("tagged")
        .tags(tag("a", &"v".repeat(257))));
    assert!(
        matches!(err, TagResourceError::InvalidInputException(_)),
        "{err:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Refusals.

#[tokio::test]
async fn create_disk_snapshot_refuses_bad_input_as_the_service_does() {
    let h = start(|_| {}).await;
    let c = &h.client;
    c.create_disk_snapshot()
        .disk_name("data-1")
        .disk_snapshot_name("taken")
        .send()
        .await
        .unwrap();

    let many_tags: Vec<Tag> = (0..51).map(|i| tag(&format!("k{i}"), "v")).collect();
    let cases = [
        (
            "bad snapshot name",
            c.create_disk_snapshot()
                .disk_name("data-1")
                .disk_snapshot_name("-bad-"),
            "invalid",
        ),
        (
            "one-character name",
            c.create_disk_snapshot()
                .disk_name("data-1")
                .disk_snapshot_name("x"),
            "invalid",
        ),
        (
            "bad disk name",
            c.create_disk_snapshot()
                .disk_name("data.1")
                .disk_snapshot_name("s1"),
            "invalid",
        ),
        (
            "bad instance name",
            c.create_disk_snapshot()
                .instance_name("web 1")
                .disk_snapshot_name("s1"),
            "invalid",
        ),
        (
            "both names",
            c.create_disk_snapshot()
                .disk_name("data-1")
                .instance_name("web-1")
                .disk_snapshot_name("s1"),
            "invalid",
        ),
        (
            "no disk or instance",
            c.create_disk_snapshot().disk_snapshot_name("s1"),
            "invalid",
        ),
        (
            "no snapshot name",
            c.create_disk_snapshot().disk_name("data-1"),
            "invalid",
        ),
        (
            "unknown disk",
            c.create_disk_snapshot()
                .disk_name("data-9")
                .disk_snapshot_name("s1"),
            "not found",
        ),
        (
            "unknown instance",
            c.create_disk_snapshot()
                .instance_name("web-9")
                .disk_snapshot_name("s1"),
            "not found",
        ),
        (
            "duplicate name",
            c.create_disk_snapshot()
                .disk_name("data-1")
                .disk_snapshot_name("taken"),
            "invalid",
        ),
        (
            "too-long tag key",
            c.create_disk_snapshot()
                .disk_name("data-1")
                .disk_snapshot_name("s1")
                .tags(tag(&"k".repeat(129), "v")),
            "invalid",
        ),
        (
            "too-long tag value",
            c.create_disk_snapshot()
                .disk_name("data-1")
                .disk_snapshot_name("s1")
                .tags(tag("k", &"v".repeat(257))),
            "invalid",
        ),
        (
            "tag with a bad character",
            c.create_disk_snapshot()
                .disk_name("data-1")
                .disk_snapshot_name("s1")
                .tags(tag("k", "a;b")),
            "invalid",
        ),
        (
            "51 tags",
            c.create_disk_snapshot()
                .disk_name("data-1")
                .disk_snapshot_name("s1")
                .set_tags(Some(many_tags)),
            "invalid",
        ),
    ];
    for (what, call, expected) in cases {
        let err = refused!(call);
        let ok = match expected {
            "invalid" => matches!(err, CreateDiskSnapshotError::InvalidInputException(_)),
            _ => matches!(err, CreateDiskSnapshotError::NotFoundException(_)),
        };
        assert!(ok, "{what}: expected {expected}, got {err:?}");
        assert!(
            !err.message().unwrap_or_default().is_empty(),
            "{what}: a message"
        );
    }
    // Longest legal tag: accepted.
    c.create_disk_snapshot()
        .disk_name("data-1")
        .disk_snapshot_name("long-tags")
        .tags(tag(&"k".repeat(128), &"v".repeat(256)))
        .send()
        .await
        .unwrap();
    let all = c.get_disk_snapshots().send().await.unwrap();
    let names: Vec<_> = all
        .disk_snapshots()
        .iter()
        .filter_map(|s| s.name())
        .collect();
    assert_eq!(names, ["taken", "long-tags"], "nothing refused was created");
}

#[tokio::test]
async fn bad_credentials_are_refused_with_the_services_codes() {
    let h = start(|_| {}).await;
    let wrong_secret = sdk(&h.fake.endpoint(), "not-the-secret", None).await;
    let err = wrong_secret.get_disks().send().await.unwrap_err();
    assert_eq!(err.code(), Some("InvalidSignatureException"), "{err:?}");
    let unknown_key = sdk_as(
        &h.fake.endpoint(),
        "AKIDNOBODYKNOWS",
        fake_lightsail::DEFAULT_SECRET_KEY,
        None,
    )
    .await;
    let err = unknown_key
        .create_disk_snapshot()
        .disk_name("data-1")
        .disk_snapshot_name("s1")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("UnrecognizedClientException"), "{err:?}");
    assert_eq!(
        h.calls_of("CreateDiskSnapshot"),
        1,
        "refused credentials are not retried"
    );
    assert!(h.fake.disk_snapshot("s1").is_none());
    // Right credentials, signed for a region this endpoint does not serve.
    let elsewhere = sdk_in(
        "us-west-2",
        &h.fake.endpoint(),
        fake_lightsail::DEFAULT_ACCESS_KEY,
        fake_lightsail::DEFAULT_SECRET_KEY,
        None,
    )
    .await;
    let err = elsewhere.get_disks().send().await.unwrap_err();
    assert_eq!(err.code(), Some("InvalidSignatureException"), "{err:?}");
    assert!(err.message().unwrap().contains("us-west-2"), "{err:?}");
    // The right ones, to the same fake, work.
    h.client.get_disks().send().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Injected faults.

fn error_fault(code: &str, count: Option<u32>) -> Fault {
    Fault {
        operation: Some("CreateDiskSnapshot".into()),
        kind: FaultKind::Error {
            code: code.into(),
            message: Some(format!("injected {code} for the test")),
            status: None,
        },
        count,
    }
}

#[tokio::test]
async fn injected_errors_arrive_as_the_sdks_typed_errors() {
    let h = start(|_| {}).await;
    let c = &h.client;
    type Check = fn(&CreateDiskSnapshotError) -> bool;
    let cases: [(&str, Check); 7] = [
        ("InvalidInputException", |e| {
            matches!(e, CreateDiskSnapshotError::InvalidInputException(_))
        }),
        ("NotFoundException", |e| {
            matches!(e, CreateDiskSnapshotError::NotFoundException(_))
        }),
        ("OperationFailureException", |e| {
            matches!(e, CreateDiskSnapshotError::OperationFailureException(_))
        }),
        ("AccessDeniedException", |e| {
            matches!(e, CreateDiskSnapshotError::AccessDeniedException(_))
        }),
        ("UnauthenticatedException", |e| {
            matches!(e, CreateDiskSnapshotError::UnauthenticatedException(_))
        }),
        ("AccountSetupInProgressException", |e| {
            matches!(
                e,
                CreateDiskSnapshotError::AccountSetupInProgressException(_)
            )
        }),
        ("RegionSetupInProgressException", |e| {
            matches!(
                e,
                CreateDiskSnapshotError::RegionSetupInProgressException(_)
            )
        }),
    ];
    for (code, check) in cases {
        h.fake.add_fault(error_fault(code, Some(1)));
        let err = refused!(c
            .create_disk_snapshot()
            .disk_name("data-1")
            .disk_snapshot_name("s1"));
        assert!(check(&err), "{code}: {err:?}");
        assert_eq!(err.code(), Some(code));
        assert_eq!(
            err.message(),
            Some(format!("injected {code} for the test").as_str())
        );
        assert!(
            h.fake.disk_snapshot("s1").is_none(),
            "{code}: nothing taken"
        );
    }

    // ServiceException is a 500: the SDK retries it, and gives up as the service said.
    h.fake.clear_faults();
    let before = h.calls_of("CreateDiskSnapshot");
    h.fake.add_fault(error_fault("ServiceException", None));
    let err = c
        .create_disk_snapshot()
        .disk_name("data-1")
        .disk_snapshot_name("s1")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        err.raw_response().map(|r| r.status().as_u16()),
        Some(500),
        "{err:?}"
    );
    let err = err.into_service_error();
    assert!(
        matches!(err, CreateDiskSnapshotError::ServiceException(_)),
        "{err:?}"
    );
    assert_eq!(
        h.calls_of("CreateDiskSnapshot") - before,
        ATTEMPTS as usize,
        "retried"
    );

    // Once: the retry goes through.
    h.fake.clear_faults();
    h.fake.add_fault(error_fault("ServiceException", Some(1)));
    let before = h.calls_of("CreateDiskSnapshot");
    c.create_disk_snapshot()
        .disk_name("data-1")
        .disk_snapshot_name("s1")
        .send()
        .await
        .unwrap();
    assert_eq!(h.calls_of("CreateDiskSnapshot") - before, 2);
    assert!(h.fake.disk_snapshot("s1").is_some());
}

#[tokio::test]
async fn throttling_is_retried_then_surfaces_as_throttling_exception() {
    let h = start(|_| {}).await;
    let c = &h.client;
    let throttle = |count| Fault {
        operation: Some("CreateDiskSnapshot".into()),
        kind: FaultKind::Throttle,
        count,
    };
    // Throttled fewer times than the SDK tries: it gets through.
    h.fake.add_fault(throttle(Some(ATTEMPTS - 1)));
    c.create_disk_snapshot()
        .disk_name("data-1")
        .disk_snapshot_name("after-throttling")
        .send()
        .await
        .unwrap();
    assert_eq!(h.calls_of("CreateDiskSnapshot"), ATTEMPTS as usize);
    assert!(h.fake.disk_snapshot("after-throttling").is_some());

    // Throttled for good: the SDK's last answer is the throttling error.
    h.fake.add_fault(throttle(None));
    let err = c
        .create_disk_snapshot()
        .disk_name("data-1")
        .disk_snapshot_name("never")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        h.calls_of("CreateDiskSnapshot"),
        2 * ATTEMPTS as usize,
        "{err:?}"
    );
    let err = err.into_service_error();
    assert_eq!(err.code(), Some("ThrottlingException"), "{err:?}");
    assert_eq!(err.message(), Some("Rate exceeded"));
    assert!(h.fake.disk_snapshot("never").is_none());
    // Only the operation named is throttled.
    c.get_disks().send().await.unwrap();
}

#[tokio::test]
async fn failed_operation_is_a_200_with_status_failed() {
    let h = start(|_| {}).await;
    let c = &h.client;
    h.fake.add_fault(Fault {
        operation: Some("CreateDiskSnapshot".into()),
        kind: FaultKind::FailedOperation {
            code: "DiskBusy".into(),
            details: "the disk is busy".into(),
        },
        count: Some(1),
    });
    let sent = SystemTime::now();
    let out = c
        .create_disk_snapshot()
        .disk_name("data-1")
        .disk_snapshot_name("failed-op")
        .send()
        .await
        .unwrap();
    let op = only_operation(out.operations());
    assert_operation(
        op,
        "failed-op",
        ResourceType::DiskSnapshot,
        OperationType::CreateDiskSnapshot,
        sent,
        SystemTime::now(),
    );
    assert_eq!(op.status(), Some(&OperationStatus::Failed));
    assert_eq!(op.is_terminal(), Some(true));
    assert_eq!(op.error_code(), Some("DiskBusy"));
    assert_eq!(op.error_details(), Some("the disk is busy"));
    let err = refused!(c.get_disk_snapshot().disk_snapshot_name("failed-op"));
    assert!(
        matches!(err, GetDiskSnapshotError::NotFoundException(_)),
        "nothing was created: {err:?}"
    );
    assert!(!h.fake.snapshot_image("failed-op").exists());
}

#[tokio::test]
async fn snapshot_error_fault_ends_the_snapshot_in_state_error() {
    let h = start(|_| {}).await;
    let c = &h.client;
    h.fake.add_fault(Fault {
        operation: Some("CreateDiskSnapshot".into()),
        kind: FaultKind::SnapshotError,
        count: Some(1),
    });
    let out = c
        .create_disk_snapshot()
        .disk_name("data-1")
        .disk_snapshot_name("broken")
        .send()
        .await
        .unwrap();
    let id = only_operation(out.operations()).id().unwrap().to_string();
    let got = c
        .get_disk_snapshot()
        .disk_snapshot_name("broken")
        .send()
        .await
        .unwrap();
    let s = got.disk_snapshot().unwrap();
    assert_eq!(s.state(), Some(&DiskSnapshotState::Error));
    assert_ne!(s.progress(), Some("100%"));
    let op = c.get_operation().operation_id(id).send().await.unwrap();
    let op = op.operation().unwrap();
    assert_eq!(op.status(), Some(&OperationStatus::Failed));
    assert_eq!(op.is_terminal(), Some(true));
}

#[tokio::test]
async fn latency_hang_reset_and_bare_500_look_like_network_trouble() {
    let h = start(|_| {}).await;
    let c = &h.client;
    let fault = |kind, count| Fault {
        operation: Some("CreateDiskSnapshot".into()),
        kind,
        count,
    };

    // Latency: the snapshot is taken on receipt, the answer comes late.
    h.fake
        .add_fault(fault(FaultKind::Latency { ms: 300 }, Some(1)));
    let started = Instant::now();
    c.create_disk_snapshot()
        .disk_name("data-1")
        .disk_snapshot_name("slow-answer")
        .send()
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));

    // A bare 500 with no error type: retried, then unmodelled, status 500.
    h.fake.add_fault(fault(FaultKind::Status500, None));
    let err = c
        .create_disk_snapshot()
        .disk_name("data-1")
        .disk_snapshot_name("s-500")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(500));
    let err = err.into_service_error();
    assert!(err.code().is_none(), "no error type: {err:?}");
    h.fake.clear_faults();

    // Reset: the connection closes without an answer.
    h.fake.add_fault(fault(FaultKind::Reset, None));
    let err = c
        .create_disk_snapshot()
        .disk_name("data-1")
        .disk_snapshot_name("s-reset")
        .send()
        .await
        .unwrap_err();
    assert!(matches!(err, SdkError::DispatchFailure(_)), "{err:?}");
    h.fake.clear_faults();

    // Hang: no answer at all; the attempt timeout ends it.
    h.fake.add_fault(fault(FaultKind::Hang, Some(1)));
    let impatient = sdk(
        &h.fake.endpoint(),
        fake_lightsail::DEFAULT_SECRET_KEY,
        Some(Duration::from_millis(300)),
    )
    .await;
    let err = impatient
        .create_disk_snapshot()
        .disk_name("data-1")
        .disk_snapshot_name("s-hang")
        .customize()
        .config_override(aws_sdk_lightsail::Config::builder().retry_config(RetryConfig::disabled()))
        .send()
        .await
        .unwrap_err();
    assert!(matches!(err, SdkError::TimeoutError(_)), "{err:?}");
    // The hang is used up: the fake answers again.
    impatient.get_disks().send().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Snapshot bytes.

#[tokio::test]
async fn snapshot_images_hold_the_disk_bytes_at_the_call() {
    let h = start(|_| {}).await;
    let c = &h.client;
    let first = std::fs::read(h.data_image()).unwrap();
    c.create_disk_snapshot()
        .disk_name("data-1")
        .disk_snapshot_name("before")
        .send()
        .await
        .unwrap();
    let image = h.fake.snapshot_image("before");
    assert!(std::fs::read(&image).unwrap() == first, "identical bytes");

    // Later writes to the disk are not in the snapshot, and are in the next one.
    let second = image_bytes("data-1, rewritten", first.len());
    std::fs::write(h.data_image(), &second).unwrap();
    c.create_disk_snapshot()
        .disk_name("data-1")
        .disk_snapshot_name("after")
        .send()
        .await
        .unwrap();
    assert!(std::fs::read(&image).unwrap() == first, "point in time");
    assert!(std::fs::read(h.fake.snapshot_image("after")).unwrap() == second);

    // The system volume, by instance name.
    c.create_disk_snapshot()
        .instance_name("web-1")
        .disk_snapshot_name("root")
        .send()
        .await
        .unwrap();
    let root = std::fs::read(h.root_image()).unwrap();
    assert!(std::fs::read(h.fake.snapshot_image("root")).unwrap() == root);

    // A disk with nothing behind it: a snapshot, and no image.
    c.create_disk_snapshot()
        .disk_name("logs-1")
        .disk_snapshot_name("no-bytes")
        .send()
        .await
        .unwrap();
    assert!(h.fake.disk_snapshot("no-bytes").is_some());
    assert!(!h.fake.snapshot_image("no-bytes").exists());

    // An instance snapshot copies each of its backed disks.
    c.create_instance_snapshot()
        .instance_name("web-1")
        .instance_snapshot_name("whole")
        .send()
        .await
        .unwrap();
    assert!(std::fs::read(h.fake.instance_snapshot_image("whole", "web-1-root")).unwrap() == root);
    assert!(std::fs::read(h.fake.instance_snapshot_image("whole", "data-1")).unwrap() == second);
    assert!(!h.fake.instance_snapshot_image("whole", "logs-1").exists());
}

#[tokio::test]
async fn an_unreadable_backing_is_a_service_exception_and_no_snapshot() {
    let h = start(|_| {}).await;
    std::fs::remove_file(h.data_image()).unwrap();
    let err = h
        .client
        .create_disk_snapshot()
        .disk_name("data-1")
        .disk_snapshot_name("lost")
        .customize()
        .config_override(aws_sdk_lightsail::Config::builder().retry_config(RetryConfig::disabled()))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(err, CreateDiskSnapshotError::ServiceException(_)),
        "{err:?}"
    );
    assert!(h.fake.disk_snapshot("lost").is_none());
}

// ---------------------------------------------------------------------------------------------
// The instance metadata service and the admin endpoint, over plain HTTP.

struct HttpAnswer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl HttpAnswer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`), read to the end.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> HttpAnswer {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a header block");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a status line in {raw:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    HttpAnswer {
        status,
        headers,
        body: body.to_string(),
    }
}

const TTL: (&str, &str) = ("X-aws-ec2-metadata-token-ttl-seconds", "21600");

fn imds_token(addr: SocketAddr) -> HttpAnswer {
    http(addr, "PUT", "/latest/api/token", &[TTL], "")
}

fn imds_get(addr: SocketAddr, path: &str, token: Option<&str>) -> HttpAnswer {
    let headers: Vec<(&str, &str)> = token
        .map(|t| ("X-aws-ec2-metadata-token", t))
        .into_iter()
        .collect();
    http(addr, "GET", path, &headers, "")
}

#[tokio::test]
async fn imds_optional_offers_tokens_and_accepts_v1() {
    let h = start(|o| o.imds = ImdsMode::Optional).await;
    let addr = h.fake.addr();
    let token = imds_token(addr);
    assert_eq!(token.status, 200);
    assert!(!token.body.is_empty());
    assert_eq!(
        token.header("x-aws-ec2-metadata-token-ttl-seconds"),
        Some("21600"),
        "the token's lifetime, as the real service says it"
    );
    let t = Some(token.body.as_str());
    let id = imds_get(addr, "/latest/meta-data/instance-id", t);
    assert_eq!((id.status, id.body.as_str()), (200, WEB1_ID));
    let region = imds_get(addr, "/latest/meta-data/placement/region", t);
    assert_eq!((region.status, region.body.as_str()), (200, REGION));
    let zone = imds_get(addr, "/latest/meta-data/placement/availability-zone", t);
    assert_eq!(zone.body, format!("{REGION}b"));
    let doc = imds_get(addr, "/latest/dynamic/instance-identity/document", t);
    assert_eq!(doc.status, 200);
    let doc: serde_json::Value = serde_json::from_str(&doc.body).unwrap();
    assert_eq!(doc["instanceId"], WEB1_ID);
    assert_eq!(doc["accountId"], ACCOUNT);
    assert_eq!(doc["region"], REGION);
    assert_eq!(doc["availabilityZone"], format!("{REGION}b"));

    // IMDSv1: no token, same answer.
    let v1 = imds_get(addr, "/latest/meta-data/instance-id", None);
    assert_eq!((v1.status, v1.body.as_str()), (200, WEB1_ID));
    // A token it never gave: refused.
    let forged = imds_get(addr, "/latest/meta-data/instance-id", Some("forged"));
    assert_eq!(forged.status, 401);
    // The token call wants PUT and a TTL in range.
    assert_eq!(http(addr, "PUT", "/latest/api/token", &[], "").status, 400);
    let too_long = ("X-aws-ec2-metadata-token-ttl-seconds", "21601");
    assert_eq!(
        http(addr, "PUT", "/latest/api/token", &[too_long], "").status,
        400
    );
    assert_eq!(imds_get(addr, "/latest/api/token", None).status, 405);
    assert_eq!(imds_get(addr, "/latest/meta-data/nothing", t).status, 404);

    // The fake saw each of those, and whether it carried a token.
    let calls = h.fake.calls();
    let first = calls
        .iter()
        .find(|c| c.operation.starts_with("IMDS "))
        .unwrap();
    assert_eq!(first.operation, "IMDS PUT /latest/api/token");
    assert!(calls.iter().any(|c| {
        c.operation == "IMDS GET /latest/meta-data/instance-id" && c.body["token"] == false
    }));

    // The SDK's own IMDS client (IMDSv2 only) works against it too.
    let sdk_imds = aws_config::imds::Client::builder()
        .endpoint(h.fake.endpoint())
        .unwrap()
        .build();
    let id = sdk_imds.get("/latest/meta-data/instance-id").await.unwrap();
    assert_eq!(id.as_ref(), WEB1_ID);
}

#[tokio::test]
async fn imds_required_refuses_requests_without_a_token() {
    let h = start(|o| o.imds = ImdsMode::Required).await;
    let addr = h.fake.addr();
    assert_eq!(
        imds_get(addr, "/latest/meta-data/instance-id", None).status,
        401
    );
    let token = imds_token(addr);
    assert_eq!(token.status, 200);
    let id = imds_get(addr, "/latest/meta-data/instance-id", Some(&token.body));
    assert_eq!((id.status, id.body.as_str()), (200, WEB1_ID));
    let sdk_imds = aws_config::imds::Client::builder()
        .endpoint(h.fake.endpoint())
        .unwrap()
        .build();
    let region = sdk_imds
        .get("/latest/meta-data/placement/region")
        .await
        .unwrap();
    assert_eq!(region.as_ref(), REGION);
}

#[tokio::test]
async fn imds_v1_only_has_no_token_endpoint() {
    let h = start(|o| o.imds = ImdsMode::V1Only).await;
    let addr = h.fake.addr();
    assert_eq!(imds_token(addr).status, 403);
    let id = imds_get(addr, "/latest/meta-data/instance-id", None);
    assert_eq!((id.status, id.body.as_str()), (200, WEB1_ID));
}

#[tokio::test]
async fn imds_off_answers_nothing() {
    let h = start(|o| o.imds = ImdsMode::Off).await;
    let addr = h.fake.addr();
    assert_eq!(imds_token(addr).status, 404);
    assert_eq!(
        imds_get(addr, "/latest/meta-data/instance-id", None).status,
        404
    );
    // The API is still there.
    h.client.get_disks().send().await.unwrap();
}

#[test]
fn imds_can_report_an_instance_that_is_not_in_the_account() {
    // Top-level keys come before the seed's tables.
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "imds_instance_id = \"i-0000000000000beef\"\n{}",
        seed_toml(dir.path())
    );
    let fake = Fake::start(Options::new(
        Seed::from_toml_str(&text).unwrap(),
        dir.path().join("snapshots"),
    ))
    .unwrap();
    let id = imds_get(fake.addr(), "/latest/meta-data/instance-id", None);
    assert_eq!((id.status, id.body.as_str()), (200, "i-0000000000000beef"));
}

#[tokio::test]
async fn admin_endpoint_lists_calls_and_sets_faults() {
    let h = start(|_| {}).await;
    let addr = h.fake.addr();
    let c = &h.client;
    c.get_disks().send().await.unwrap();
    c.get_disk().disk_name("data-1").send().await.unwrap();

    let calls = http(addr, "GET", "/__admin/calls", &[], "");
    assert_eq!(calls.status, 200);
    let calls: Vec<fake_lightsail::Call> = serde_json::from_str(&calls.body).unwrap();
    let ops: Vec<_> = calls.iter().map(|c| c.operation.as_str()).collect();
    assert_eq!(ops, ["GetDisks", "GetDisk"]);
    assert_eq!(calls[1].body["diskName"], "data-1");
    assert!(calls[0].received_at_ms <= calls[1].received_at_ms);

    // A fault from JSON, as the type serialises.
    let fault = Fault {
        operation: Some("GetDisk".into()),
        kind: FaultKind::Error {
            code: "NotFoundException".into(),
            message: Some("gone for the test".into()),
            status: None,
        },
        count: Some(1),
    };
    let posted = http(
        addr,
        "POST",
        "/__admin/faults",
        &[("Content-Type", "application/json")],
        &serde_json::to_string(&fault).unwrap(),
    );
    assert_eq!(posted.status, 200, "{}", posted.body);
    let listed = http(addr, "GET", "/__admin/faults", &[], "");
    let listed: Vec<Fault> = serde_json::from_str(&listed.body).unwrap();
    assert_eq!(listed, [fault]);
    let err = refused!(c.get_disk().disk_name("data-1"));
    assert!(matches!(err, GetDiskError::NotFoundException(_)), "{err:?}");
    assert_eq!(err.message(), Some("gone for the test"));
    c.get_disk().disk_name("data-1").send().await.unwrap();

    // A hand-written one, for every operation, until cleared.
    let posted = http(
        addr,
        "POST",
        "/__admin/faults",
        &[],
        r#"{"operation": null, "kind": {"type": "error", "code": "AccessDeniedException"}, "count": null}"#,
    );
    assert_eq!(posted.status, 200, "{}", posted.body);
    let err = c.get_instances().send().await.unwrap_err();
    assert_eq!(err.code(), Some("AccessDeniedException"));
    assert_eq!(http(addr, "DELETE", "/__admin/faults", &[], "").status, 200);
    c.get_instances().send().await.unwrap();
    assert_eq!(
        http(addr, "POST", "/__admin/faults", &[], "{not json").status,
        400
    );

    c.create_disk_snapshot()
        .disk_name("data-1")
        .disk_snapshot_name("via-admin")
        .send()
        .await
        .unwrap();
    let text = http(addr, "GET", "/__admin/snapshots", &[], "").body;
    let snaps: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(snaps["diskSnapshots"][0]["name"], "via-admin");
    assert_eq!(snaps["diskSnapshots"][0]["state"], "completed");
    // As text: JSON floats need not survive a parse bit for bit.
    assert_eq!(text, h.fake.snapshots().to_string());

    assert_eq!(http(addr, "DELETE", "/__admin/calls", &[], "").status, 200);
    let calls = http(addr, "GET", "/__admin/calls", &[], "");
    assert_eq!(calls.body, "[]");
    assert_eq!(http(addr, "GET", "/__admin/nothing", &[], "").status, 404);
}

// ---------------------------------------------------------------------------------------------
// Automatic snapshots.

/// The seed with the AutoSnapshot add-on on web-1 (one earlier run) and on data-1 (two
/// earlier runs and one in progress until a test ends it).
fn with_auto_snapshots(seed: String) -> String {
    seed.replacen(
        &format!("instance_id = \"{WEB1_ID}\"\n"),
        &format!(
            "instance_id = \"{WEB1_ID}\"\nauto_snapshot = {{ time_of_day = \"06:00\", history = [\"Success\"] }}\n"
        ),
        1,
    )
    .replacen(
        &format!("volume_id = \"{DATA1_VOLUME}\"\n"),
        &format!(
            "volume_id = \"{DATA1_VOLUME}\"\nauto_snapshot = {{ time_of_day = \"07:00\", history = [\"Success\", \"Failed\"], in_progress = \"until-ended\" }}\n"
        ),
        1,
    )
}

/// The UTC date of a timestamp, as `YYYY-MM-DD`.
fn utc_date(t: &DateTime) -> String {
    t.fmt(aws_sdk_lightsail::primitives::DateTimeFormat::DateTime)
        .unwrap()[..10]
        .to_string()
}

#[tokio::test]
async fn auto_snapshots_add_ons_and_refusals_as_the_sdk_reads_them() {
    let h = start_edited(&[], with_auto_snapshots, |_| {}).await;
    let c = &h.client;
    let addr = h.fake.addr();

    // The add-on, where the service shows it.
    let d = c.get_disk().disk_name("data-1").send().await.unwrap();
    let add_on = &d.disk().unwrap().add_ons()[0];
    assert_eq!(add_on.name(), Some("AutoSnapshot"));
    assert_eq!(add_on.status(), Some("Enabled"));
    assert_eq!(add_on.snapshot_time_of_day(), Some("07:00"));
    let i = c
        .get_instance()
        .instance_name("web-1")
        .send()
        .await
        .unwrap();
    assert_eq!(
        i.instance().unwrap().add_ons()[0].snapshot_time_of_day(),
        Some("06:00")
    );
    let disks = c.get_disks().send().await.unwrap();
    assert!(disk(disks.disks(), "spare-1").add_ons().is_empty());

    // A disk's automatic snapshots, newest first: one in progress, two before it.
    let before = SystemTime::now();
    let out = c
        .get_auto_snapshots()
        .resource_name("data-1")
        .send()
        .await
        .unwrap();
    assert_eq!(out.resource_name(), Some("data-1"));
    assert_eq!(out.resource_type(), Some(&ResourceType::Disk));
    let runs = out.auto_snapshots();
    let statuses: Vec<_> = runs.iter().filter_map(|r| r.status()).collect();
    assert_eq!(
        statuses,
        [
            &AutoSnapshotStatus::InProgress,
            &AutoSnapshotStatus::Success,
            &AutoSnapshotStatus::Failed
        ]
    );
    for r in runs {
        assert_eq!(r.date(), Some(utc_date(r.created_at().unwrap()).as_str()));
        assert!(r.from_attached_disks().is_empty(), "a disk's: {r:?}");
    }
    assert!(system_time(runs[0].created_at()) <= before);
    assert!(runs[1].created_at().unwrap().secs() - runs[2].created_at().unwrap().secs() == 86_400);

    // Meanwhile a manual snapshot of the disk is refused, and recorded as refused.
    let err = refused!(c
        .create_disk_snapshot()
        .disk_name("data-1")
        .disk_snapshot_name("manual-1"));
    assert!(
        matches!(err, CreateDiskSnapshotError::OperationFailureException(_)),
        "{err:?}"
    );
    assert!(
        err.message().unwrap().contains(
            "You cannot create manual snapshots when an automatic snapshot is being created"
        ),
        "{err:?}"
    );
    let refusal = h.fake.calls().pop().unwrap();
    assert_eq!(refusal.operation, "CreateDiskSnapshot");
    assert_eq!(refusal.status, Some(400));
    assert_eq!(refusal.error.as_deref(), Some("OperationFailureException"));
    assert!(h.fake.disk_snapshot("manual-1").is_none());

    // The admin endpoint ends it: Success, and the manual snapshot goes through.
    let state: serde_json::Value =
        serde_json::from_str(&http(addr, "GET", "/__admin/auto-snapshots", &[], "").body).unwrap();
    let data1 = state
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resourceName"] == "data-1")
        .unwrap();
    assert_eq!(data1["inProgress"], true);
    let ended = http(
        addr,
        "POST",
        "/__admin/auto-snapshots",
        &[],
        r#"{"resource": "data-1", "action": "end"}"#,
    );
    assert_eq!(ended.status, 200, "{}", ended.body);
    let out = c
        .get_auto_snapshots()
        .resource_name("data-1")
        .send()
        .await
        .unwrap();
    assert_eq!(
        out.auto_snapshots()[0].status(),
        Some(&AutoSnapshotStatus::Success)
    );
    c.create_disk_snapshot()
        .disk_name("data-1")
        .disk_snapshot_name("manual-1")
        .send()
        .await
        .unwrap();

    // A run of zero seconds is over as soon as it starts: no waiting in tests.
    let zero = http(
        addr,
        "POST",
        "/__admin/auto-snapshots",
        &[],
        r#"{"resource": "data-1", "action": "start", "seconds": 0}"#,
    );
    assert_eq!(zero.status, 200, "{}", zero.body);
    let out = c
        .get_auto_snapshots()
        .resource_name("data-1")
        .send()
        .await
        .unwrap();
    assert_eq!(out.auto_snapshots().len(), 4);
    assert_eq!(
        out.auto_snapshots()[0].status(),
        Some(&AutoSnapshotStatus::Success)
    );
    let bad = http(
        addr,
        "POST",
        "/__admin/auto-snapshots",
        &[],
        r#"{"resource": "spare-1", "action": "start"}"#,
    );
    assert_eq!(bad.status, 400, "spare-1 has no add-on: {}", bad.body);

    // The instance's run holds up its system volume and instance snapshots, lists the disks
    // attached to it, and leaves its block storage disks alone.
    h.fake.start_auto_snapshot("web-1", None).unwrap();
    let out = c
        .get_auto_snapshots()
        .resource_name("web-1")
        .send()
        .await
        .unwrap();
    assert_eq!(out.resource_type(), Some(&ResourceType::Instance));
    let run = &out.auto_snapshots()[0];
    assert_eq!(run.status(), Some(&AutoSnapshotStatus::InProgress));
    let attached: Vec<_> = run
        .from_attached_disks()
        .iter()
        .map(|d| (d.path().unwrap(), d.size_in_gb().unwrap()))
        .collect();
    assert_eq!(attached, [("/dev/xvdf", 16), ("/dev/xvdg", 8)]);
    let err = refused!(c
        .create_disk_snapshot()
        .instance_name("web-1")
        .disk_snapshot_name("root-1"));
    assert!(
        matches!(err, CreateDiskSnapshotError::OperationFailureException(_)),
        "{err:?}"
    );
    let err = refused!(c
        .create_instance_snapshot()
        .instance_name("web-1")
        .instance_snapshot_name("whole-1"));
    assert!(
        matches!(
            err,
            CreateInstanceSnapshotError::OperationFailureException(_)
        ),
        "{err:?}"
    );
    c.create_disk_snapshot()
        .disk_name("data-1")
        .disk_snapshot_name("manual-2")
        .send()
        .await
        .unwrap();
    h.fake.end_auto_snapshot("web-1", "Failed").unwrap();
    c.create_instance_snapshot()
        .instance_name("web-1")
        .instance_snapshot_name("whole-1")
        .send()
        .await
        .unwrap();
    let refused: Vec<_> = h
        .fake
        .calls()
        .into_iter()
        .filter(|c| c.error.as_deref() == Some("OperationFailureException"))
        .map(|c| c.operation)
        .collect();
    assert_eq!(
        refused,
        [
            "CreateDiskSnapshot",
            "CreateDiskSnapshot",
            "CreateInstanceSnapshot"
        ]
    );

    // Unknown resources, and system disks (no resource of their own), are not found.
    for name in ["nope", "web-1-root"] {
        let err = refused!(c.get_auto_snapshots().resource_name(name));
        assert!(
            matches!(err, GetAutoSnapshotsError::NotFoundException(_)),
            "{name}: {err:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Connections and TLS.

#[tokio::test]
async fn every_request_records_the_connection_it_came_on() {
    let h = start(|_| {}).await;
    let c = &h.client;
    c.get_disk().disk_name("data-1").send().await.unwrap();
    c.create_disk_snapshot()
        .disk_name("data-1")
        .disk_snapshot_name("warm-1")
        .send()
        .await
        .unwrap();
    let other = sdk(&h.fake.endpoint(), fake_lightsail::DEFAULT_SECRET_KEY, None).await;
    other.get_instances().send().await.unwrap();

    let calls = h.fake.calls();
    let on = |op: &str| {
        let call = calls.iter().find(|c| c.operation == op).unwrap();
        assert_eq!((call.status, call.error.as_deref()), (Some(200), None));
        (call.connection.clone().unwrap(), call.received_mono_us)
    };
    let (warm, _) = on("GetDisk");
    let (create, create_at) = on("CreateDiskSnapshot");
    let (fresh, _) = on("GetInstances");
    assert_eq!(warm.requests_before, 0);
    assert!(!warm.reused(), "the first call opened its connection");
    assert_eq!(create.id, warm.id, "the create came on the warm connection");
    assert_eq!(create.client_port, warm.client_port);
    assert_eq!(create.requests_before, 1);
    assert!(create.reused());
    assert!(create.accepted_mono_us <= create_at);
    assert_ne!(fresh.id, warm.id, "another client, another connection");
    assert!(!fresh.reused());
    assert!(!warm.tls && warm.handshake_mono_us.is_none() && warm.handshake_unix_us.is_none());
    assert_ne!(warm.client_port, h.fake.addr().port());
    assert_eq!(
        h.fake.connection_stats(),
        fake_lightsail::ConnectionStats {
            connections: 2,
            tls_handshakes: 0,
            failed_handshakes: 0
        }
    );

    // The admin endpoint says the same, its own connection included.
    let v: serde_json::Value =
        serde_json::from_str(&http(h.fake.addr(), "GET", "/__admin/connections", &[], "").body)
            .unwrap();
    assert_eq!(v["connections"], 3);
    assert_eq!(v["tls_handshakes"], 0);
    assert_eq!(v["list"][0]["id"], warm.id);
    assert_eq!(v["list"][0]["requests"], 2);
    assert_eq!(v["list"][1]["requests"], 1);
    let calls: Vec<fake_lightsail::Call> =
        serde_json::from_str(&http(h.fake.addr(), "GET", "/__admin/calls", &[], "").body).unwrap();
    assert_eq!(calls[1].connection.as_ref(), Some(&create));
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let idle = Duration::from_millis(150);
    let h = start(|o| o.idle_timeout = Some(idle)).await;
    let c = &h.client;
    c.get_disk().disk_name("data-1").send().await.unwrap();
    // Observed, not assumed: wait (bounded) for the fake to have closed it.
    let started = Instant::now();
    let closed = loop {
        if let Some(t) = h.fake.connections()[0].closed_mono_us {
            break t;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the idle connection was not closed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let first = h.fake.calls()[0].clone();
    assert!(closed >= first.received_mono_us + idle.as_micros() as u64);
    c.get_disk().disk_name("data-1").send().await.unwrap();
    let calls = h.fake.calls();
    let again = calls.last().unwrap().connection.clone().unwrap();
    assert_eq!(again.requests_before, 0, "a new connection after the close");
    assert_ne!(again.id, first.connection.unwrap().id);
}

/// Environment of the [`tls_client`] child.
const TLS_ENDPOINT: &str = "FAKE_LIGHTSAIL_TLS_ENDPOINT";
const TLS_EXPECT: &str = "FAKE_LIGHTSAIL_TLS_EXPECT";

/// Runs [`tls_client`] in a child process of this test binary, trusting `ca_file` through
/// `SSL_CERT_FILE`: the SDK's HTTPS client reads that variable once per process (rustls-native-
/// certs, cached), so setting it in this process would race the other tests.
fn run_tls_client(endpoint: &str, ca_file: &Path, expect: &str) -> u32 {
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "tls_client", "--ignored", "--nocapture"])
        .args(["--test-threads", "1"])
        .env("SSL_CERT_FILE", ca_file)
        .env_remove("SSL_CERT_DIR")
        .env(TLS_ENDPOINT, endpoint)
        .env(TLS_EXPECT, expect)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "tls_client ({expect}) failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    pid
}

/// Whether fanotify can be used here (root); in CI it must.
fn can_watch_lookups() -> bool {
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs as root: watching lookups needs it"
        );
        eprintln!("not checking name lookups: fanotify needs root");
    }
    root
}

/// The opens of /etc/hosts by `pid` the fake saw, once it has seen everything before now:
/// this process opens the file as a marker and waits (bounded) for that event, which
/// fanotify queues after every earlier one.
fn hosts_lookups_by(fake: &Fake, pid: u32) -> Vec<fake_lightsail::Lookup> {
    let me = std::process::id();
    let before = fake.lookups().iter().filter(|l| l.pid == me).count();
    drop(std::fs::File::open("/etc/hosts").unwrap());
    let started = Instant::now();
    while fake.lookups().iter().filter(|l| l.pid == me).count() <= before {
        assert!(started.elapsed() < DEADLINE, "the marker open was not seen");
        std::thread::sleep(Duration::from_millis(5));
    }
    fake.lookups()
        .into_iter()
        .filter(|l| l.pid == pid && l.path == "/etc/hosts")
        .collect()
}

/// The child half of [`sdk_over_https_trusts_the_fake_through_ssl_cert_file`]; run alone it
/// has nothing to talk to.
#[tokio::test]
#[ignore = "run by sdk_over_https_trusts_the_fake_through_ssl_cert_file, in a child process"]
async fn tls_client() {
    let endpoint = std::env::var(TLS_ENDPOINT).expect("the endpoint from the parent test");
    let c = sdk(&endpoint, fake_lightsail::DEFAULT_SECRET_KEY, None).await;
    match std::env::var(TLS_EXPECT).as_deref() {
        Ok("trusted") => {
            c.get_disk().disk_name("data-1").send().await.unwrap();
            c.create_disk_snapshot()
                .disk_name("data-1")
                .disk_snapshot_name("over-tls")
                .send()
                .await
                .unwrap();
        }
        Ok("untrusted") => {
            let err = c.get_disk().disk_name("data-1").send().await.unwrap_err();
            assert!(matches!(err, SdkError::DispatchFailure(_)), "{err:?}");
        }
        other => panic!("{TLS_EXPECT}: {other:?}"),
    }
}

#[tokio::test]
async fn sdk_over_https_trusts_the_fake_through_ssl_cert_file() {
    let tls = TlsOptions {
        names: vec!["localhost".into(), "lightsail.test".into()],
        ca_file: None,
    };
    let watch = can_watch_lookups();
    let h = start(|o| {
        o.tls = Some(tls);
        o.watch_lookups = watch;
    })
    .await;
    let port = h.fake.addr().port();
    assert_eq!(h.fake.endpoint(), format!("https://localhost:{port}"));
    assert_eq!(h.fake.imds_endpoint(), format!("http://127.0.0.1:{port}"));
    let ca_file = h.fake.ca_file().unwrap().to_path_buf();
    assert_eq!(
        std::fs::read_to_string(&ca_file).unwrap(),
        h.fake.ca_pem().unwrap()
    );

    let child = run_tls_client(&h.fake.endpoint(), &ca_file, "trusted");
    let calls = h.fake.calls();
    let ops: Vec<_> = calls.iter().map(|c| c.operation.as_str()).collect();
    assert_eq!(ops, ["GetDisk", "CreateDiskSnapshot"]);
    let warm = calls[0].connection.clone().unwrap();
    let create = calls[1].connection.clone().unwrap();
    assert!(warm.tls && !warm.reused());
    let shook = warm.handshake_mono_us.unwrap();
    assert!(warm.accepted_mono_us <= shook && shook <= calls[0].received_mono_us);
    assert!(warm.handshake_unix_us.unwrap() >= warm.accepted_unix_us);
    assert_eq!(create.id, warm.id, "no new connection for the create");
    assert!(create.reused() && create.tls);
    assert_eq!(calls[1].status, Some(200));
    assert!(h.fake.snapshot_image("over-tls").is_file());
    if watch {
        // `localhost` is resolved through /etc/hosts: once, for the one connection, and not
        // again for the create that came on it.
        let lookups = hosts_lookups_by(&h.fake, child);
        assert_eq!(lookups.len(), 1, "{lookups:?}");
        assert!(lookups[0].mono_us < calls[1].received_mono_us);
    }
    assert_eq!(
        h.fake.connection_stats(),
        fake_lightsail::ConnectionStats {
            connections: 1,
            tls_handshakes: 1,
            failed_handshakes: 0
        }
    );

    // Trusting another CA, the client gets nowhere: the trust came from SSL_CERT_FILE.
    let other = start(|o| o.tls = Some(TlsOptions::default())).await;
    run_tls_client(
        &h.fake.endpoint(),
        other.fake.ca_file().unwrap(),
        "untrusted",
    );
    let stats = h.fake.connection_stats();
    assert!(stats.failed_handshakes >= 1, "{stats:?}");
    assert_eq!(stats.tls_handshakes, 1);
    assert_eq!(h.fake.calls().len(), 2, "nothing reached the API");

    // Plain HTTP: the metadata service (and the admin endpoint), not the API.
    let addr = h.fake.addr();
    let id = imds_get(addr, "/latest/meta-data/instance-id", None);
    assert_eq!((id.status, id.body.as_str()), (200, WEB1_ID));
    let plain = sdk(
        &h.fake.imds_endpoint(),
        fake_lightsail::DEFAULT_SECRET_KEY,
        None,
    )
    .await;
    let err = plain
        .get_disk()
        .disk_name("data-1")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(400));
    let last = h.fake.calls().pop().unwrap();
    assert_eq!(last.operation, "GetDisk");
    assert_eq!(last.status, Some(400));
    assert!(!last.connection.unwrap().tls);
}

// ---------------------------------------------------------------------------------------------
// The binary.

/// A child process killed if the test ends before it does.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[tokio::test]
async fn the_binary_serves_until_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("seed.toml");
    std::fs::write(&seed, seed_toml(dir.path())).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_fake-lightsail"))
        .args(["--listen", "127.0.0.1:0", "--state"])
        .arg(&seed)
        .arg("--snapshot-dir")
        .arg(dir.path().join("snapshots"))
        .args(["--fault", "GetDisk=error:NotFoundException:gone by flag@1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let child = &mut child.0;
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(DEADLINE)
        .unwrap_or_else(|e| panic!("no first line from fake-lightsail: {e}"));
    let endpoint = line
        .trim_end()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    assert!(endpoint.starts_with("http://127.0.0.1:"), "{endpoint}");

    let client = sdk(&endpoint, fake_lightsail::DEFAULT_SECRET_KEY, None).await;
    let disks = client.get_disks().send().await.unwrap();
    let names: Vec<_> = disks.disks().iter().filter_map(Disk::name).collect();
    assert_eq!(names, ["data-1", "logs-1", "spare-1"]);
    let err = refused!(client.get_disk().disk_name("data-1"));
    assert_eq!(err.message(), Some("gone by flag"), "{err:?}");

    let pid = child.id() as libc::pid_t;
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "fake-lightsail did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "exit status {status:?}");
}

#[tokio::test]
async fn the_binary_serves_tls_with_the_metadata_service_plain() {
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("seed.toml");
    std::fs::write(&seed, seed_toml(dir.path())).unwrap();
    let ca_file = dir.path().join("ca.pem");
    let child = Command::new(env!("CARGO_BIN_EXE_fake-lightsail"))
        .args(["--listen", "127.0.0.1:0", "--state"])
        .arg(&seed)
        .arg("--snapshot-dir")
        .arg(dir.path().join("snapshots"))
        .args(["--tls", "--tls-name", "lightsail.test", "--ca-file"])
        .arg(&ca_file)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        for _ in 0..2 {
            let _ = tx.send(lines.next().and_then(Result::ok).unwrap_or_default());
        }
    });
    let first = rx.recv_timeout(DEADLINE).expect("a first line");
    let second = rx.recv_timeout(DEADLINE).expect("a second line");
    let port = first
        .strip_prefix("listening on https://lightsail.test:")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"));
    assert_eq!(second, format!("metadata on http://127.0.0.1:{port}"));
    assert!(std::fs::read_to_string(&ca_file)
        .unwrap()
        .starts_with("-----BEGIN CERTIFICATE-----"));
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let id = imds_get(addr, "/latest/meta-data/instance-id", None);
    assert_eq!((id.status, id.body.as_str()), (200, WEB1_ID));
}

/// A create call retried while the first attempt's copy is still running (the client gave up
/// on that attempt) is answered "already exists" only once that copy is over: the fake's point
/// in time is its copy, and a client that thaws on the retry's answer must find the bytes
/// taken. The disk's backing is a FIFO here, so the first copy lasts until the test closes it.
#[tokio::test]
async fn a_retried_create_is_answered_after_the_first_attempts_copy() {
    let h = start(|_| {}).await;
    std::fs::remove_file(h.data_image()).unwrap();
    let made = Command::new("mkfifo").arg(h.data_image()).status().unwrap();
    assert!(made.success());
    let released = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let create = |client: Client| {
        let released = released.clone();
        tokio::spawn(async move {
            let result = client
                .create_disk_snapshot()
                .disk_name("data-1")
                .disk_snapshot_name("slow-1")
                .send()
                .await;
            (result, released.load(std::sync::atomic::Ordering::SeqCst))
        })
    };
    let h = &h;
    let calls_arrived = |n: usize| {
        let deadline = Instant::now() + DEADLINE;
        async move {
            while h.calls_of("CreateDiskSnapshot") < n {
                assert!(Instant::now() < deadline, "{n} calls never arrived");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    };
    let first = create(h.client.clone());
    calls_arrived(1).await;
    // The "retry": the same request from another client, as the SDK's retry would send it.
    let retry = create(sdk(&h.fake.endpoint(), fake_lightsail::DEFAULT_SECRET_KEY, None).await);
    calls_arrived(2).await;
    assert!(
        !retry.is_finished(),
        "the retry was answered during the copy"
    );

    released.store(true, std::sync::atomic::Ordering::SeqCst);
    let image = image_bytes("data-1", 3 << 20);
    let writer = std::thread::spawn({
        let path = h.data_image();
        // Read and write: the fake opens its source twice (O_DIRECT, refused on a FIFO once
        // paired, then plain), and between the two a write-only end would get EPIPE.
        move || {
            let mut fifo = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .unwrap();
            fifo.write_all(&image).unwrap();
        }
    });
    let (first, _) = first.await.unwrap();
    let (retry, after_copy) = retry.await.unwrap();
    writer.join().unwrap();
    first.expect("the first attempt takes the snapshot");
    let err = retry.expect_err("the retry finds the name taken");
    assert_eq!(err.code(), Some("InvalidInputException"), "{err:?}");
    assert!(
        after_copy,
        "the retry was answered before the copy was over"
    );
    let copy = h.fake.snapshot_image("slow-1");
    assert_eq!(std::fs::metadata(copy).unwrap().len(), 3 << 20);
}
