//! Restores, attachments and copies as the real `aws-sdk-lightsail` sees them:
//! CreateDiskFromSnapshot (`pending` → `available`), AttachDisk (`in-use`), DetachDisk,
//! DeleteDisk with the service's refusals; the test-only attach mode (a loop device over a
//! copy of the snapshot image, as root) and its corruption on request; and CopySnapshot sent
//! to another region's endpoint, served from that region's own state.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use aws_sdk_lightsail::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_lightsail::error::ProvideErrorMetadata;
use aws_sdk_lightsail::types::{
    DiskSnapshotState, DiskState, Operation, OperationStatus, OperationType, RegionName,
    ResourceType, Tag,
};
use aws_sdk_lightsail::Client;
use fake_lightsail::{Fake, Fault, Options, Seed};

const REGION: &str = "eu-west-2";
const OTHER: &str = "us-west-2";
const ZONE: &str = "eu-west-2b";

/// Deterministic bytes, with a run of zeros (a hole in a copy).
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
    let hole = len / 2;
    out[hole..hole + len / 4].fill(0);
    out
}

struct Harness {
    fake: Fake,
    client: Client,
    /// Holds the backing images until the fake is gone.
    _dir: tempfile::TempDir,
}

/// A fake with web-1 (zone b, data-1 backed by an image at /dev/xvdf), web-2 (zone a),
/// a spare disk, `OTHER` as a second region; snapshots complete at once.
async fn start(configure: impl FnOnce(&mut Options)) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data-1.img");
    std::fs::write(&data, image_bytes("data-1", (3 << 20) + 512)).unwrap();
    let seed = Seed::from_toml_str(&format!(
        r#"
region = "{REGION}"
regions = ["{OTHER}"]
[[instances]]
name = "web-1"
instance_id = "i-0123456789abcdef0"
zone = "{ZONE}"
system_disk = {{ name = "web-1-root", path = "/dev/xvda", size_gb = 40 }}
[[instances]]
name = "web-2"
instance_id = "i-0fedcba9876543210"
[[disks]]
name = "data-1"
path = "/dev/xvdf"
attached_to = "web-1"
size_gb = 16
backing = "{}"
[[disks]]
name = "spare-1"
[[disk_snapshots]]
name = "still-pending"
disk = "data-1"
state = "pending"
[[region_disk_snapshots.{OTHER}]]
name = "old-copy"
disk = "data-1"
age = "40d"
tags = {{ "lightsnap:version" = "0" }}
"#,
        data.display()
    ))
    .unwrap();
    let mut options = Options::new(seed, dir.path().join("snapshots"));
    options.snapshot_duration = Duration::ZERO;
    options.disk_pending_reads = 0;
    configure(&mut options);
    let fake = Fake::start(options).unwrap();
    let client = client(&fake, REGION).await;
    Harness {
        fake,
        client,
        _dir: dir,
    }
}

async fn client(fake: &Fake, region: &'static str) -> Client {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(fake.endpoint())
        .region(Region::new(region))
        .credentials_provider(Credentials::new(
            fake_lightsail::DEFAULT_ACCESS_KEY,
            fake_lightsail::DEFAULT_SECRET_KEY,
            None,
            None,
            "fake-lightsail-tests",
        ))
        .load()
        .await;
    Client::new(&config)
}

fn tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build()
}

/// `refused!(call)`: sends a call that must fail; gives `(code, message)`.
macro_rules! refused {
    ($call:expr) => {{
        let e = $call
            .send()
            .await
            .expect_err("refused")
            .into_service_error();
        (
            e.code().unwrap_or_default().to_string(),
            e.message().unwrap_or_default().to_string(),
        )
    }};
}

async fn snapshot(h: &Harness, name: &str) {
    h.client
        .create_disk_snapshot()
        .disk_name("data-1")
        .disk_snapshot_name(name)
        .send()
        .await
        .unwrap();
}

async fn restore(h: &Harness, disk: &str, snapshot: &str) -> Vec<Operation> {
    h.client
        .create_disk_from_snapshot()
        .disk_name(disk)
        .disk_snapshot_name(snapshot)
        .availability_zone(ZONE)
        .size_in_gb(16)
        .tags(tag("lightsnap:scratch", "true"))
        .send()
        .await
        .unwrap()
        .operations()
        .to_vec()
}

async fn disk_state(h: &Harness, disk: &str) -> DiskState {
    let out = h.client.get_disk().disk_name(disk).send().await.unwrap();
    out.disk().unwrap().state().unwrap().clone()
}

async fn attach(h: &Harness, disk: &str, path: &str) -> Vec<Operation> {
    h.client
        .attach_disk()
        .disk_name(disk)
        .instance_name("web-1")
        .disk_path(path)
        .send()
        .await
        .unwrap()
        .operations()
        .to_vec()
}

// ---------------------------------------------------------------------------------------------
// CreateDiskFromSnapshot.

#[tokio::test]
async fn a_restored_disk_is_pending_for_the_reads_asked_then_available() {
    let h = start(|o| o.disk_pending_reads = 2).await;
    snapshot(&h, "snap-1").await;
    let ops = restore(&h, "scratch-1", "snap-1").await;
    assert_eq!(ops.len(), 1, "{ops:?}");
    let op = &ops[0];
    assert_eq!(op.resource_name(), Some("scratch-1"));
    assert_eq!(op.resource_type(), Some(&ResourceType::Disk));
    assert_eq!(
        op.operation_type(),
        Some(&OperationType::CreateDiskFromSnapshot)
    );
    assert_eq!(op.status(), Some(&OperationStatus::Started));
    assert_eq!(op.is_terminal(), Some(false));
    let id = op.id().unwrap().to_string();

    let first = h.client.get_disk().disk_name("scratch-1").send().await;
    let d = first.unwrap().disk.unwrap();
    assert_eq!(d.state(), Some(&DiskState::Pending));
    assert_eq!(d.is_attached(), Some(false));
    assert_eq!(d.size_in_gb(), Some(16));
    assert_eq!(d.location().unwrap().availability_zone(), Some(ZONE));
    let tags: Vec<_> = d.tags().iter().map(|t| (t.key(), t.value())).collect();
    assert_eq!(tags, [(Some("lightsnap:scratch"), Some("true"))]);
    let op = h.client.get_operation().operation_id(&id).send().await;
    assert_eq!(
        op.unwrap().operation().unwrap().status(),
        Some(&OperationStatus::Started)
    );
    // GetDisks counts as a read too.
    let all = h.client.get_disks().send().await.unwrap();
    let listed = all.disks().iter().find(|d| d.name() == Some("scratch-1"));
    assert_eq!(listed.unwrap().state(), Some(&DiskState::Pending));
    assert_eq!(disk_state(&h, "scratch-1").await, DiskState::Available);
    assert_eq!(disk_state(&h, "scratch-1").await, DiskState::Available);
    let op = h.client.get_operation().operation_id(&id).send().await;
    assert_eq!(
        op.unwrap().operation().unwrap().status(),
        Some(&OperationStatus::Succeeded)
    );
}

#[tokio::test]
async fn restores_refuse_bad_zones_names_in_use_and_unready_snapshots() {
    let h = start(|_| {}).await;
    snapshot(&h, "snap-1").await;
    h.client
        .create_instance_snapshot()
        .instance_name("web-1")
        .instance_snapshot_name("whole-1")
        .send()
        .await
        .unwrap();
    let call = |disk: &str, snap: &str, zone: &str, size: i32| {
        h.client
            .create_disk_from_snapshot()
            .disk_name(disk)
            .disk_snapshot_name(snap)
            .availability_zone(zone)
            .size_in_gb(size)
    };
    let cases = [
        (
            call("r1", "snap-1", "us-west-2a", 16),
            "InvalidInputException",
            "availability zone",
        ),
        (
            call("r1", "snap-1", "eu-west-2z", 16),
            "InvalidInputException",
            "availability zone",
        ),
        (
            call("data-1", "snap-1", ZONE, 16),
            "InvalidInputException",
            "already in use",
        ),
        (
            call("r1", "nope", ZONE, 16),
            "NotFoundException",
            "does not exist",
        ),
        (
            call("r1", "whole-1", ZONE, 16),
            "NotFoundException",
            "instance snapshot",
        ),
        (
            call("r1", "still-pending", ZONE, 16),
            "OperationFailureException",
            "pending",
        ),
        (
            call("r1", "snap-1", ZONE, 8),
            "InvalidInputException",
            "smaller",
        ),
        (
            call("-r1", "snap-1", ZONE, 16),
            "InvalidInputException",
            "pattern",
        ),
    ];
    for (c, code, words) in cases {
        let (got, message) = refused!(c);
        assert_eq!(got, code, "{message}");
        assert!(message.contains(words), "{words:?} not in {message:?}");
    }
    let (code, _) = refused!(h.client.get_disk().disk_name("r1"));
    assert_eq!(code, "NotFoundException", "nothing was created");
}

#[tokio::test]
async fn a_system_disk_snapshot_restores_to_a_block_storage_disk() {
    let h = start(|_| {}).await;
    h.client
        .create_disk_snapshot()
        .instance_name("web-1")
        .disk_snapshot_name("root-snap")
        .send()
        .await
        .unwrap();
    let (code, message) = refused!(h
        .client
        .create_disk_from_snapshot()
        .disk_name("root-copy")
        .disk_snapshot_name("root-snap")
        .availability_zone(ZONE)
        .size_in_gb(16));
    assert_eq!(code, "InvalidInputException", "40 GB snapshot: {message}");
    h.client
        .create_disk_from_snapshot()
        .disk_name("root-copy")
        .disk_snapshot_name("root-snap")
        .availability_zone(ZONE)
        .size_in_gb(40)
        .send()
        .await
        .unwrap();
    let d = h.client.get_disk().disk_name("root-copy").send().await;
    let d = d.unwrap().disk.unwrap();
    assert_eq!(d.is_system_disk(), Some(false));
    assert_eq!(d.state(), Some(&DiskState::Available));
    assert_eq!(d.size_in_gb(), Some(40));
}

// ---------------------------------------------------------------------------------------------
// AttachDisk, DetachDisk, DeleteDisk.

#[tokio::test]
async fn attach_detach_and_delete_move_the_disk_through_its_states() {
    let h = start(|_| {}).await;
    snapshot(&h, "snap-1").await;
    restore(&h, "scratch-1", "snap-1").await;
    let ops = attach(&h, "scratch-1", "/dev/xvdk").await;
    let kinds: Vec<_> = ops
        .iter()
        .map(|o| {
            (
                o.resource_name().unwrap(),
                o.resource_type().unwrap().clone(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("scratch-1", ResourceType::Disk),
            ("web-1", ResourceType::Instance)
        ]
    );
    assert!(ops
        .iter()
        .all(|o| o.operation_type() == Some(&OperationType::AttachDisk)));
    assert_eq!(ops[0].operation_details(), Some("web-1"));
    let d = h.client.get_disk().disk_name("scratch-1").send().await;
    let d = d.unwrap().disk.unwrap();
    assert_eq!(d.state(), Some(&DiskState::InUse));
    assert_eq!(d.is_attached(), Some(true));
    assert_eq!(d.attached_to(), Some("web-1"));
    assert_eq!(d.path(), Some("/dev/xvdk"));
    let i = h.client.get_instance().instance_name("web-1").send().await;
    let i = i.unwrap().instance.unwrap();
    let paths: Vec<_> = i
        .hardware()
        .unwrap()
        .disks()
        .iter()
        .map(|d| d.path().unwrap())
        .collect();
    assert!(paths.contains(&"/dev/xvdk"), "{paths:?}");

    let (code, message) = refused!(h.client.delete_disk().disk_name("scratch-1"));
    assert_eq!(code, "OperationFailureException", "{message}");
    assert!(message.contains("attached"), "{message}");
    let ops = h
        .client
        .detach_disk()
        .disk_name("scratch-1")
        .send()
        .await
        .unwrap();
    assert_eq!(ops.operations().len(), 2);
    assert_eq!(
        ops.operations()[0].operation_type(),
        Some(&OperationType::DetachDisk)
    );
    let d = h.client.get_disk().disk_name("scratch-1").send().await;
    let d = d.unwrap().disk.unwrap();
    assert_eq!(d.state(), Some(&DiskState::Available));
    assert_eq!(d.is_attached(), Some(false));
    assert_eq!(d.attached_to(), None);
    let (code, _) = refused!(h.client.detach_disk().disk_name("scratch-1"));
    assert_eq!(code, "OperationFailureException");

    let ops = h
        .client
        .delete_disk()
        .disk_name("scratch-1")
        .send()
        .await
        .unwrap();
    let op = &ops.operations()[0];
    assert_eq!(op.operation_type(), Some(&OperationType::DeleteDisk));
    assert_eq!(op.status(), Some(&OperationStatus::Succeeded));
    let (code, _) = refused!(h.client.get_disk().disk_name("scratch-1"));
    assert_eq!(code, "NotFoundException");
    let (code, _) = refused!(h.client.delete_disk().disk_name("scratch-1"));
    assert_eq!(code, "NotFoundException");
}

#[tokio::test]
async fn attach_refuses_as_the_service_does() {
    let h = start(|o| o.disk_pending_reads = 1).await;
    snapshot(&h, "snap-1").await;
    restore(&h, "scratch-1", "snap-1").await;
    let attach_to = |disk: &str, instance: &str, path: &str| {
        h.client
            .attach_disk()
            .disk_name(disk)
            .instance_name(instance)
            .disk_path(path)
    };
    let (code, message) = refused!(attach_to("scratch-1", "web-1", "/dev/xvdk"));
    assert_eq!(code, "OperationFailureException", "pending: {message}");
    assert_eq!(disk_state(&h, "scratch-1").await, DiskState::Pending);
    assert_eq!(disk_state(&h, "scratch-1").await, DiskState::Available);
    let cases = [
        (
            attach_to("scratch-1", "nobody", "/dev/xvdk"),
            "NotFoundException",
            "Instance",
        ),
        (
            attach_to("nope", "web-1", "/dev/xvdk"),
            "NotFoundException",
            "Disk",
        ),
        (
            attach_to("scratch-1", "web-1", "/dev/xvdf"),
            "InvalidInputException",
            "in use",
        ),
        (
            attach_to("scratch-1", "web-1", "/dev/xcdg"),
            "InvalidInputException",
            "disk path is invalid",
        ),
        (
            attach_to("scratch-1", "web-2", "/dev/xvdk"),
            "InvalidInputException",
            "same Availability Zone",
        ),
        (
            attach_to("data-1", "web-1", "/dev/xvdk"),
            "OperationFailureException",
            "already attached",
        ),
        (
            attach_to("web-1-root", "web-1", "/dev/xvdk"),
            "InvalidInputException",
            "system disk",
        ),
    ];
    for (c, code, words) in cases {
        let (got, message) = refused!(c);
        assert_eq!(got, code, "{message}");
        assert!(message.contains(words), "{words:?} not in {message:?}");
    }
    let (code, _) = refused!(h.client.detach_disk().disk_name("web-1-root"));
    assert_eq!(code, "InvalidInputException");
    let (code, _) = refused!(h.client.delete_disk().disk_name("web-1-root"));
    assert_eq!(code, "InvalidInputException");
    assert_eq!(disk_state(&h, "scratch-1").await, DiskState::Available);
    // A seeded disk detaches too (no device of the fake's behind it).
    h.client
        .detach_disk()
        .disk_name("data-1")
        .send()
        .await
        .unwrap();
    assert_eq!(disk_state(&h, "data-1").await, DiskState::Available);
}

// ---------------------------------------------------------------------------------------------
// Attach mode: loop devices (root).

/// Whether loop devices can be set up here (root); in CI they must.
fn can_attach() -> bool {
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs as root: attach mode needs losetup"
        );
        eprintln!("skipping: attach mode needs root (losetup)");
    }
    root
}

/// Loop devices backed by `file` (`losetup -j`).
fn loops_over(file: &Path) -> Vec<String> {
    let out = Command::new("losetup")
        .arg("-j")
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split(':').next().unwrap().to_string())
        .collect()
}

fn is_block_device(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_block_device())
}

/// What a block device holds, read the way a checker reads it (no cache of an earlier read).
fn device_bytes(dev: &Path, len: usize) -> Vec<u8> {
    let mut f = std::fs::File::open(dev).unwrap();
    let mut out = vec![0u8; len];
    std::io::Read::read_exact(&mut f, &mut out).unwrap();
    out
}

#[tokio::test]
async fn attach_mode_exposes_a_loop_device_over_a_copy_and_cleans_up() {
    if !can_attach() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let devdir = dir.path().join("dev");
    let h = start(|o| o.attach_dir = Some(devdir.clone())).await;
    snapshot(&h, "snap-1").await;
    let image = h.fake.snapshot_image("snap-1");
    let before = std::fs::read(&image).unwrap();
    restore(&h, "scratch-1", "snap-1").await;
    assert!(
        h.fake.disk_copy("scratch-1").is_none(),
        "copied at the first attach"
    );
    attach(&h, "scratch-1", "/dev/xvdk").await;

    let link = devdir.join("xvdk");
    let (loopdev, linked) = h.fake.attached_device("scratch-1").unwrap();
    assert_eq!(linked, link);
    assert_eq!(std::fs::read_link(&link).unwrap(), loopdev);
    assert!(
        is_block_device(&link),
        "{} is a block device",
        link.display()
    );
    let copy = h.fake.disk_copy("scratch-1").unwrap();
    assert_ne!(copy, image);
    assert_eq!(loops_over(&copy), [loopdev.display().to_string()]);
    assert_eq!(
        device_bytes(&link, before.len()),
        before,
        "the snapshot's bytes"
    );

    // Writing to the restored disk leaves the snapshot as it was.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&link)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"scribble"))
        .unwrap();
    assert_eq!(std::fs::read(&image).unwrap(), before);

    h.client
        .detach_disk()
        .disk_name("scratch-1")
        .send()
        .await
        .unwrap();
    assert!(
        !link.exists() && link.symlink_metadata().is_err(),
        "link gone"
    );
    assert!(loops_over(&copy).is_empty(), "loop device gone");
    assert!(copy.is_file(), "the disk keeps its bytes while it exists");

    // Attached again: the same disk, its own bytes (the scribble included).
    attach(&h, "scratch-1", "/dev/xvdm").await;
    let again = devdir.join("xvdm");
    assert_eq!(&device_bytes(&again, 8), b"scribble");
    h.client
        .detach_disk()
        .disk_name("scratch-1")
        .send()
        .await
        .unwrap();
    h.client
        .delete_disk()
        .disk_name("scratch-1")
        .send()
        .await
        .unwrap();
    assert!(!copy.exists(), "DeleteDisk deletes the copy");

    // Stopping the fake with a disk attached leaves no loop device behind.
    restore(&h, "scratch-2", "snap-1").await;
    attach(&h, "scratch-2", "/dev/xvdn").await;
    let copy = h.fake.disk_copy("scratch-2").unwrap();
    assert_eq!(loops_over(&copy).len(), 1);
    // One directory stands for every instance's /dev: a second disk at the same path on
    // another instance is refused rather than sharing the link.
    h.client
        .create_disk_from_snapshot()
        .disk_name("elsewhere")
        .disk_snapshot_name("snap-1")
        .availability_zone("eu-west-2a")
        .size_in_gb(16)
        .send()
        .await
        .unwrap();
    let (code, message) = refused!(h
        .client
        .attach_disk()
        .disk_name("elsewhere")
        .instance_name("web-2")
        .disk_path("/dev/xvdn"));
    assert_eq!(code, "InvalidInputException", "{message}");
    assert!(message.contains("attach mode"), "{message}");
    assert_eq!(
        std::fs::read_link(devdir.join("xvdn")).unwrap(),
        h.fake.attached_device("scratch-2").unwrap().0
    );
    drop(h.fake);
    assert!(loops_over(&copy).is_empty(), "released on drop");
    assert!(devdir.join("xvdn").symlink_metadata().is_err());
    assert_eq!(std::fs::read(&image).unwrap(), before);
}

#[tokio::test]
async fn corrupt_disk_fault_corrupts_the_restore_never_the_snapshot() {
    if !can_attach() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let devdir = dir.path().join("dev");
    let h = start(|o| o.attach_dir = Some(devdir.clone())).await;
    snapshot(&h, "snap-1").await;
    let image = h.fake.snapshot_image("snap-1");
    let before = std::fs::read(&image).unwrap();
    const MIB: usize = 1 << 20;

    for (n, fault) in [
        "CreateDiskFromSnapshot=corrupt-disk@1",
        "AttachDisk=corrupt-disk@1",
    ]
    .into_iter()
    .enumerate()
    {
        h.fake.add_fault(Fault::parse(fault).unwrap());
        let disk = format!("bad-{n}");
        restore(&h, &disk, "snap-1").await;
        attach(&h, &disk, &format!("/dev/xvd{}", ['k', 'l'][n])).await;
        let (dev, _) = h.fake.attached_device(&disk).unwrap();
        let got = device_bytes(&dev, before.len());
        assert!(got[..MIB].iter().all(|&b| b == 0), "{fault}: head zeroed");
        assert_eq!(got[MIB..], before[MIB..], "{fault}: the rest intact");
        assert_ne!(got, before, "{fault}");
    }
    // The fault was used up: the next restore is sound.
    restore(&h, "good", "snap-1").await;
    attach(&h, "good", "/dev/xvdm").await;
    let (dev, _) = h.fake.attached_device("good").unwrap();
    assert_eq!(device_bytes(&dev, before.len()), before);
    assert_eq!(std::fs::read(&image).unwrap(), before, "snapshot untouched");
}

/// An attach command that appends its arguments to `<dir>/calls`, one call a line, and
/// refuses (exit 3) while `<dir>/refuse` exists.
fn attach_command(dir: &Path) -> (PathBuf, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let calls = dir.join("calls");
    let command = dir.join("plug");
    std::fs::write(
        &command,
        format!(
            "#!/bin/sh\nif [ -e '{}' ]; then echo 'no free slot' >&2; exit 3; fi\necho \"$*\" >>'{}'\n",
            dir.join("refuse").display(),
            calls.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&command, std::fs::Permissions::from_mode(0o755)).unwrap();
    (command, calls)
}

fn lines(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

/// The NVMe serial of a disk as a Nitro instance would show it: the volume id of its
/// `supportCode` (`account/vol-0…`) without the dash.
async fn serial_of(h: &Harness, disk: &str) -> String {
    let out = h.client.get_disk().disk_name(disk).send().await.unwrap();
    let code = out.disk().unwrap().support_code().unwrap().to_string();
    let volume = code.split_once('/').unwrap().1;
    assert!(volume.starts_with("vol-0"), "{code}");
    volume.replacen('-', "", 1)
}

#[tokio::test]
async fn attach_command_is_told_the_copy_serial_and_path_and_detach() {
    let dir = tempfile::tempdir().unwrap();
    let (command, calls) = attach_command(dir.path());
    let h = start(|o| o.attach_command = Some(command.clone())).await;
    snapshot(&h, "snap-1").await;
    let image = h.fake.snapshot_image("snap-1");
    let before = std::fs::read(&image).unwrap();
    restore(&h, "scratch-1", "snap-1").await;
    assert!(lines(&calls).is_empty(), "not run by a restore");

    attach(&h, "scratch-1", "/dev/xvdk").await;
    let copy = h.fake.disk_copy("scratch-1").unwrap();
    assert!(copy.is_absolute() && copy != image, "{}", copy.display());
    assert_eq!(
        std::fs::read(&copy).unwrap(),
        before,
        "the snapshot's bytes"
    );
    let serial = serial_of(&h, "scratch-1").await;
    assert_eq!(serial.len(), 20, "{serial}");
    assert_eq!(
        lines(&calls),
        [format!("attach {} {serial} /dev/xvdk", copy.display())]
    );
    assert_eq!(disk_state(&h, "scratch-1").await, DiskState::InUse);
    assert!(
        h.fake.attached_device("scratch-1").is_none(),
        "no loop device"
    );
    let listed = h.fake.disks();
    let entry = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "scratch-1")
        .unwrap();
    assert_eq!(entry["plugged"], serial.as_str(), "{entry}");

    h.client
        .detach_disk()
        .disk_name("scratch-1")
        .send()
        .await
        .unwrap();
    assert_eq!(lines(&calls)[1..], [format!("detach {serial}")]);
    assert!(copy.is_file(), "the disk keeps its bytes while it exists");
    h.client
        .delete_disk()
        .disk_name("scratch-1")
        .send()
        .await
        .unwrap();
    assert!(!copy.exists(), "DeleteDisk deletes the copy");
    assert_eq!(lines(&calls).len(), 2, "DeleteDisk runs nothing");
    assert_eq!(std::fs::read(&image).unwrap(), before, "snapshot untouched");

    // A command that fails fails the attach, with what it said; the disk stays detached.
    restore(&h, "scratch-2", "snap-1").await;
    std::fs::write(dir.path().join("refuse"), "").unwrap();
    let (code, message) = refused!(h
        .client
        .attach_disk()
        .disk_name("scratch-2")
        .instance_name("web-1")
        .disk_path("/dev/xvdl"));
    assert_eq!(code, "ServiceException", "{message}");
    assert!(message.contains("no free slot"), "{message}");
    assert_eq!(disk_state(&h, "scratch-2").await, DiskState::Available);
    assert_eq!(lines(&calls).len(), 2);

    // Stopping the fake with a disk attached runs its detach.
    std::fs::remove_file(dir.path().join("refuse")).unwrap();
    attach(&h, "scratch-2", "/dev/xvdl").await;
    let serial2 = serial_of(&h, "scratch-2").await;
    assert_ne!(serial2, serial);
    drop(h);
    assert_eq!(lines(&calls).last().unwrap(), &format!("detach {serial2}"));
}

#[test]
fn attach_dir_and_attach_command_are_one_or_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = Options::new(
        Seed::from_toml_str("").unwrap(),
        dir.path().join("snapshots"),
    );
    options.attach_dir = Some(dir.path().join("dev"));
    options.attach_command = Some(dir.path().join("plug"));
    let e = Fake::start(options).err().expect("refused");
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e}");
}

/// The whole point: a filesystem checker run on the attached device finds a good restore
/// clean and a corrupted one not.
#[tokio::test]
async fn e2fsck_finds_a_restore_clean_and_a_corrupted_one_not() {
    if !can_attach() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let fs = dir.path().join("fs.img");
    std::fs::File::create(&fs)
        .unwrap()
        .set_len(32 << 20)
        .unwrap();
    let mkfs = Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(&fs)
        .output()
        .expect("mkfs.ext4 (e2fsprogs)");
    assert!(mkfs.status.success(), "{mkfs:?}");
    let devdir = dir.path().join("dev");
    let fs2 = fs.clone();
    let h = start(move |o| {
        o.attach_dir = Some(devdir);
        let mut seed = o.seed.clone();
        seed.disks[0].backing = Some(fs2);
        o.seed = seed;
    })
    .await;
    snapshot(&h, "snap-fs").await;
    let fsck = |dev: &Path| {
        Command::new("e2fsck")
            .arg("-fn")
            .arg(dev)
            .output()
            .unwrap()
            .status
            .code()
    };
    restore(&h, "good", "snap-fs").await;
    attach(&h, "good", "/dev/xvdk").await;
    let (dev, _) = h.fake.attached_device("good").unwrap();
    assert_eq!(fsck(&dev), Some(0));
    h.fake
        .add_fault(Fault::parse("CreateDiskFromSnapshot=corrupt-disk@1").unwrap());
    restore(&h, "bad", "snap-fs").await;
    attach(&h, "bad", "/dev/xvdl").await;
    let (dev, _) = h.fake.attached_device("bad").unwrap();
    let code = fsck(&dev);
    assert!(code.is_some_and(|c| c != 0), "e2fsck exit {code:?}");
    let snap = h.fake.snapshot_image("snap-fs");
    assert_eq!(fsck(&snap), Some(0), "the snapshot image stays clean");
}

// ---------------------------------------------------------------------------------------------
// CopySnapshot across regions.

#[tokio::test]
async fn copies_go_to_the_region_the_request_is_signed_for() {
    let h = start(|_| {}).await;
    let west = client(&h.fake, OTHER).await;
    h.client
        .create_disk_snapshot()
        .disk_name("data-1")
        .disk_snapshot_name("snap-1")
        .tags(tag("lightsnap:version", "1"))
        .send()
        .await
        .unwrap();
    let out = west
        .copy_snapshot()
        .source_snapshot_name("snap-1")
        .source_region(RegionName::from(REGION))
        .target_snapshot_name("snap-1-copy")
        .send()
        .await
        .unwrap();
    let op = &out.operations()[0];
    assert_eq!(op.resource_name(), Some("snap-1-copy"));
    assert_eq!(op.resource_type(), Some(&ResourceType::DiskSnapshot));
    assert_eq!(
        op.operation_type().map(|t| t.as_str()),
        Some("CopySnapshot")
    );
    assert_eq!(
        op.operation_details(),
        Some(format!("{REGION}:snap-1").as_str())
    );
    let location = op.location().unwrap();
    assert_eq!(location.region_name(), Some(&RegionName::from(OTHER)));

    let copy = h
        .fake
        .calls()
        .into_iter()
        .find(|c| c.operation == "CopySnapshot");
    assert_eq!(
        copy.unwrap().region.as_deref(),
        Some(OTHER),
        "signed for the target"
    );
    let create = h
        .fake
        .calls()
        .into_iter()
        .find(|c| c.operation == "CreateDiskSnapshot");
    assert_eq!(create.unwrap().region.as_deref(), Some(REGION));

    // The copy is the target region's, without the tags, with the bytes.
    let s = west
        .get_disk_snapshot()
        .disk_snapshot_name("snap-1-copy")
        .send()
        .await;
    let s = s.unwrap().disk_snapshot.unwrap();
    assert_eq!(s.state(), Some(&DiskSnapshotState::Completed));
    assert_eq!(s.from_disk_name(), Some("data-1"));
    assert!(s.tags().is_empty(), "CopySnapshot copies no tags: {s:?}");
    assert_eq!(
        std::fs::read(h.fake.snapshot_image_in(OTHER, "snap-1-copy")).unwrap(),
        std::fs::read(h.fake.snapshot_image("snap-1")).unwrap()
    );
    let (code, _) = refused!(h
        .client
        .get_disk_snapshot()
        .disk_snapshot_name("snap-1-copy"));
    assert_eq!(code, "NotFoundException", "not in the source region");
    let listed = west.get_disk_snapshots().send().await.unwrap();
    let names: Vec<_> = listed
        .disk_snapshots()
        .iter()
        .map(|s| s.name().unwrap())
        .collect();
    assert_eq!(
        names,
        ["old-copy", "snap-1-copy"],
        "the seeded copy, then the new one"
    );
    let old = &listed.disk_snapshots()[0];
    let age = std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::try_from(*old.created_at().unwrap()).unwrap())
        .unwrap();
    assert!(age > Duration::from_secs(39 * 86400), "{age:?}");
    west.tag_resource()
        .resource_name("snap-1-copy")
        .tags(tag("lightsnap:version", "1"))
        .send()
        .await
        .unwrap();
    let s = h.fake.disk_snapshot_in(OTHER, "snap-1-copy").unwrap();
    assert_eq!(s["tags"][0]["key"], "lightsnap:version");
    assert!(h.fake.disk_snapshot("snap-1").unwrap()["tags"][0]["key"] == "lightsnap:version");

    // An instance snapshot copies too; and a copy within one region.
    h.client
        .create_instance_snapshot()
        .instance_name("web-1")
        .instance_snapshot_name("whole-1")
        .send()
        .await
        .unwrap();
    let out = west
        .copy_snapshot()
        .source_snapshot_name("whole-1")
        .source_region(RegionName::from(REGION))
        .target_snapshot_name("whole-1-copy")
        .send()
        .await
        .unwrap();
    assert_eq!(
        out.operations()[0].resource_type(),
        Some(&ResourceType::InstanceSnapshot)
    );
    assert!(h.fake.instance_snapshot_in(OTHER, "whole-1-copy").is_some());
    h.client
        .copy_snapshot()
        .source_snapshot_name("snap-1")
        .source_region(RegionName::from(REGION))
        .target_snapshot_name("snap-1-local")
        .send()
        .await
        .unwrap();
    assert!(h.fake.disk_snapshot("snap-1-local").is_some());
}

#[tokio::test]
async fn copies_are_pending_first_and_refused_as_the_service_does() {
    let h = start(|o| o.snapshot_duration = Duration::from_secs(3600)).await;
    let west = client(&h.fake, OTHER).await;
    snapshot(&h, "fresh").await;
    let copy = |source: &str, region: &str, target: &str| {
        west.copy_snapshot()
            .source_snapshot_name(source)
            .source_region(RegionName::from(region))
            .target_snapshot_name(target)
    };
    let cases = [
        (
            copy("fresh", REGION, "c1"),
            "OperationFailureException",
            "pending",
        ),
        (
            copy("still-pending", REGION, "c1"),
            "OperationFailureException",
            "pending",
        ),
        (
            copy("nope", REGION, "c1"),
            "NotFoundException",
            "does not exist",
        ),
        (
            copy("fresh", "ap-south-1", "c1"),
            "NotFoundException",
            "does not exist",
        ),
        (
            copy("fresh", "mars-1", "c1"),
            "InvalidInputException",
            "not a Lightsail region",
        ),
    ];
    for (c, code, words) in cases {
        let (got, message) = refused!(c);
        assert_eq!(got, code, "{message}");
        assert!(message.contains(words), "{words:?} not in {message:?}");
    }
    let west_names: Vec<_> = h.fake.snapshots_in(OTHER)["diskSnapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(west_names, ["old-copy"], "nothing was copied");
    // A region the seed does not list is not served at all.
    let east = client(&h.fake, "us-east-1").await;
    let (code, _) = refused!(east.get_disk_snapshots());
    assert_eq!(code, "InvalidSignatureException");
}

#[tokio::test]
async fn a_copy_starts_pending_and_takes_its_name_at_once() {
    // Snapshots take an hour; the seeded one is two hours old, so completed. (Completed
    // copies: see copies_go_to_the_region_the_request_is_signed_for.)
    let h = start(|o| {
        o.snapshot_duration = Duration::from_secs(3600);
        let mut seed = o.seed.clone();
        seed.disk_snapshots[0].state = "completed".into();
        seed.disk_snapshots[0].age = "2h".into();
        o.seed = seed;
    })
    .await;
    let west = client(&h.fake, OTHER).await;
    west.copy_snapshot()
        .source_snapshot_name("still-pending")
        .source_region(RegionName::from(REGION))
        .target_snapshot_name("copy")
        .send()
        .await
        .unwrap();
    let s = west
        .get_disk_snapshot()
        .disk_snapshot_name("copy")
        .send()
        .await;
    assert_eq!(
        s.unwrap().disk_snapshot.unwrap().state(),
        Some(&DiskSnapshotState::Pending)
    );
    let (code, message) = refused!(west
        .copy_snapshot()
        .source_snapshot_name("still-pending")
        .source_region(RegionName::from(REGION))
        .target_snapshot_name("copy"));
    assert_eq!(code, "InvalidInputException", "{message}");
    assert!(message.contains("already exists"), "{message}");
}

/// Kills the child if the test fails before it stops it.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `GET path` on the fake's admin endpoint, as JSON.
fn admin_get(endpoint: &str, path: &str) -> serde_json::Value {
    use std::io::{Read, Write};
    let addr = endpoint.strip_prefix("http://").unwrap();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    serde_json::from_str(body).unwrap()
}

#[tokio::test]
async fn the_binary_in_attach_mode_releases_its_loop_devices_on_sigterm() {
    use std::io::BufRead;
    if !can_attach() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data-1.img");
    std::fs::write(&data, image_bytes("bin", 1 << 20)).unwrap();
    let seed = dir.path().join("seed.toml");
    std::fs::write(
        &seed,
        format!(
            "region = \"{REGION}\"\nregions = [\"{OTHER}\"]\n[[instances]]\nname = \"web-1\"\n\
             instance_id = \"i-0123456789abcdef0\"\nzone = \"{ZONE}\"\n[[disks]]\n\
             name = \"data-1\"\npath = \"/dev/xvdf\"\nattached_to = \"web-1\"\nbacking = \"{}\"\n",
            data.display()
        ),
    )
    .unwrap();
    let devdir = dir.path().join("dev");
    let child = Command::new(env!("CARGO_BIN_EXE_fake-lightsail"))
        .arg("--state")
        .arg(&seed)
        .arg("--snapshot-dir")
        .arg(dir.path().join("snapshots"))
        .args(["--snapshot-duration-ms", "0", "--disk-pending-reads", "0"])
        .arg("--attach-dir")
        .arg(&devdir)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let stdout = child.0.stdout.take().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .unwrap();
    let endpoint = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_string();
    let config = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(&endpoint)
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new(
            fake_lightsail::DEFAULT_ACCESS_KEY,
            fake_lightsail::DEFAULT_SECRET_KEY,
            None,
            None,
            "fake-lightsail-tests",
        ))
        .load()
        .await;
    let client = Client::new(&config);
    client
        .create_disk_snapshot()
        .disk_name("data-1")
        .disk_snapshot_name("s1")
        .send()
        .await
        .unwrap();
    client
        .create_disk_from_snapshot()
        .disk_name("r1")
        .disk_snapshot_name("s1")
        .availability_zone(ZONE)
        .size_in_gb(8)
        .send()
        .await
        .unwrap();
    client
        .attach_disk()
        .disk_name("r1")
        .instance_name("web-1")
        .disk_path("/dev/xvdg")
        .send()
        .await
        .unwrap();
    let disks = admin_get(&endpoint, "/__admin/disks");
    let r1 = disks
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "r1")
        .unwrap()
        .clone();
    assert_eq!(r1["region"], REGION);
    assert_eq!(r1["state"], "in-use");
    assert_eq!(r1["link"], devdir.join("xvdg").display().to_string());
    let copy = PathBuf::from(r1["copy"].as_str().unwrap());
    assert_eq!(loops_over(&copy), [r1["device"].as_str().unwrap()]);
    assert!(is_block_device(&devdir.join("xvdg")));
    let west = admin_get(&endpoint, &format!("/__admin/snapshots/{OTHER}"));
    assert_eq!(west["diskSnapshots"], serde_json::json!([]));

    assert_eq!(
        unsafe { libc::kill(child.0.id() as libc::pid_t, libc::SIGTERM) },
        0
    );
    // No sleep: the exit is waited for on a thread of its own, within a bound.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.0.wait());
    });
    let status = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("fake-lightsail stops on SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(loops_over(&copy).is_empty(), "no loop device left");
    assert!(
        devdir.join("xvdg").symlink_metadata().is_err(),
        "no link left"
    );
}
