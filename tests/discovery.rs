//! Discovery and consistency groups on what this kernel really has: btrfs RAID1 over two loop
//! devices (one filesystem, two Lightsail disks), bind mounts, nested mounts, several paths at
//! once, whole-instance snapshots, `plan` touching nothing, and the errors of "who am I".
//! (LVM, md and NVMe, which this kernel lacks, are tested on sysfs fixture trees in
//! `src/kernel/blockdev.rs`, and what NVMe serials and vendor data mean on EBS in
//! `src/cloud/ebs.rs`.) Root only; CI runs them as root.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// A seed: instance `web-1` (EC2 id [`INSTANCE_ID`]), optionally with its system disk at
/// `system`, and block storage disks `(name, device)` attached to it; every disk is backed
/// by its device, so snapshots are real copies. `imds_id` overrides the id IMDS reports.
fn seed_toml(disks: &[(&str, &Path)], system: Option<&Path>, imds_id: Option<&str>) -> Seed {
    let mut toml = format!("self_instance = \"{INSTANCE}\"\n");
    if let Some(id) = imds_id {
        toml.push_str(&format!("imds_instance_id = \"{id}\"\n"));
    }
    toml.push_str(&format!(
        "[[instances]]\nname = \"{INSTANCE}\"\ninstance_id = \"{INSTANCE_ID}\"\n"
    ));
    if let Some(dev) = system {
        toml.push_str(&format!(
            "system_disk = {{ name = \"{INSTANCE}-system\", path = \"{d}\", backing = \"{d}\" }}\n",
            d = dev.display()
        ));
    }
    for (name, dev) in disks {
        toml.push_str(&format!(
            "[[disks]]\nname = \"{name}\"\npath = \"{d}\"\nattached_to = \"{INSTANCE}\"\nbacking = \"{d}\"\n",
            d = dev.display()
        ));
    }
    Seed::from_toml_str(&toml).expect("seed")
}

/// A btrfs RAID1 (data and metadata) over two loop devices, mounted in the scratch dir.
struct Raid1 {
    images: [PathBuf; 2],
    devices: [PathBuf; 2],
    mount_point: PathBuf,
}

impl Raid1 {
    fn create(scratch: &Scratch) -> Self {
        let images = [0, 1].map(|i| scratch.path().join(format!("raid-{i}.img")));
        let mut devices = Vec::new();
        for image in &images {
            let f = std::fs::File::create(image).unwrap();
            f.set_len(256 << 20).unwrap();
            drop(f);
            let out = run(Command::new("losetup")
                .args(["--find", "--show"])
                .arg(image));
            devices.push(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
        }
        let devices: [PathBuf; 2] = devices.try_into().unwrap();
        let mount_point = scratch.path().join("raid");
        std::fs::create_dir_all(&mount_point).unwrap();
        let raid = Self {
            images,
            devices,
            mount_point,
        };
        run(Command::new("mkfs.btrfs")
            .args(["-q", "-f", "-d", "raid1", "-m", "raid1"])
            .args(&raid.devices));
        run(Command::new("mount")
            .arg(&raid.devices[0])
            .arg(&raid.mount_point));
        raid
    }

    fn teardown(&self) {
        let _ = Command::new("fsfreeze")
            .arg("-u")
            .arg(&self.mount_point)
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("umount")
            .arg(&self.mount_point)
            .stderr(Stdio::null())
            .status();
        for d in &self.devices {
            let _ = Command::new("losetup")
                .arg("-d")
                .arg(d)
                .stderr(Stdio::null())
                .status();
        }
        // The kernel remembers btrfs members it has seen; forget the detached ones, so the
        // snapshot copies (same filesystem id) are not mistaken for them.
        let _ = Command::new("btrfs")
            .args(["device", "scan", "--forget"])
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Raid1 {
    fn drop(&mut self) {
        self.teardown();
        let _ = &self.images;
    }
}

/// Loop devices over snapshot images, read-only, detached on drop.
struct Attached(Vec<PathBuf>);

impl Attached {
    fn images(images: &[PathBuf]) -> Self {
        Self(
            images
                .iter()
                .map(|i| {
                    let out = run(Command::new("losetup")
                        .args(["--find", "--show", "--read-only"])
                        .arg(i));
                    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
                })
                .collect(),
        )
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        for d in &self.0 {
            let _ = Command::new("umount").arg(d).stderr(Stdio::null()).status();
            let _ = Command::new("losetup")
                .arg("-d")
                .arg(d)
                .stderr(Stdio::null())
                .status();
        }
        let _ = Command::new("btrfs")
            .args(["device", "scan", "--forget"])
            .stderr(Stdio::null())
            .status();
    }
}

#[test]
fn btrfs_raid1_over_two_disks_is_one_consistency_group() {
    let test = "btrfs_raid1_over_two_disks_is_one_consistency_group";
    if !root_or_skip(test) || !tool_or_skip(test, "mkfs.btrfs") {
        return;
    }
    let scratch = Scratch::new();
    let raid = Raid1::create(&scratch);
    let fake = fake(
        &scratch,
        seed_toml(
            &[("raid-a", &raid.devices[0]), ("raid-b", &raid.devices[1])],
            None,
            None,
        ),
    );
    let mut writer = Writer::start(&raid.mount_point.join("records.log"), 20);

    // The plan shows one filesystem on two disks, two calls.
    let plan = finish(
        lightsnap(&scratch, &fake)
            .args(["plan", "--output", "json"])
            .arg(&raid.mount_point),
    );
    assert_eq!(plan.code, 0, "{plan:?}");
    let doc: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
    assert_eq!(doc["filesystems"].as_array().unwrap().len(), 1, "{doc}");
    let devices: Vec<String> = doc["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["block_devices"].as_array().unwrap().clone())
        .map(|d| d.as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        devices,
        raid.devices
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
    );

    let result = finish(
        lightsnap(&scratch, &fake)
            .arg("freeze-and-snap")
            .arg(&raid.mount_point),
    );
    assert_eq!(result.code, 0, "{result:?}");
    writer.next_ack(Duration::from_secs(10));
    let acks = writer.stop();
    let calls = create_calls(&fake);
    let mut disks: Vec<&str> = calls
        .iter()
        .map(|c| c.body["diskName"].as_str().unwrap())
        .collect();
    disks.sort();
    assert_eq!(disks, ["raid-a", "raid-b"], "one snapshot per member disk");
    let names: Vec<String> = calls
        .iter()
        .map(|c| c.body["diskSnapshotName"].as_str().unwrap().to_string())
        .collect();
    let cut = calls
        .iter()
        .map(|c| c.received_at_ms)
        .fold(f64::INFINITY, f64::min);
    assert!(!is_frozen(&raid.mount_point), "thawed");

    // Both copies were taken while frozen: together they are one clean filesystem holding
    // every record acknowledged before the first call. Check them with the live one gone.
    raid.teardown();
    let images: Vec<PathBuf> = names.iter().map(|n| fake.snapshot_image(n)).collect();
    let attached = Attached::images(&images);
    run(Command::new("btrfs")
        .args(["device", "scan"])
        .args(&attached.0));
    run(Command::new("btrfs")
        .args(["check", "--readonly"])
        .arg(&attached.0[0]));
    let verify = scratch.path().join("verify");
    std::fs::create_dir_all(&verify).unwrap();
    run(Command::new("mount")
        .args(["-o", "ro"])
        .arg(&attached.0[0])
        .arg(&verify));
    let text = std::fs::read_to_string(verify.join("records.log"));
    let _ = Command::new("umount").arg(&verify).status();
    check_records(&text.unwrap(), &acks, cut);
    drop(attached);
}

#[test]
fn a_bind_mount_and_its_source_are_frozen_once() {
    let test = "a_bind_mount_and_its_source_are_frozen_once";
    if !root_or_skip(test) {
        return;
    }
    let scratch = Scratch::new();
    let fs = LoopFs::create(&scratch, "data", FsKind::Ext4);
    std::fs::create_dir(fs.mount_point.join("www")).unwrap();
    let bind = scratch.path().join("bind");
    std::fs::create_dir(&bind).unwrap();
    run(Command::new("mount")
        .arg("--bind")
        .arg(fs.mount_point.join("www"))
        .arg(&bind));
    let _unbind = Unmount(bind.clone());
    let fake = fake(&scratch, seed(&[("data-1", &fs.device)], None));

    let plan = finish(
        lightsnap(&scratch, &fake)
            .args(["plan", "--output", "json"])
            .arg(&fs.mount_point)
            .arg(&bind),
    );
    assert_eq!(plan.code, 0, "{plan:?}");
    let doc: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
    let fss = doc["filesystems"].as_array().unwrap();
    assert_eq!(fss.len(), 1, "one superblock, one freeze: {doc}");
    assert_eq!(fss[0]["paths"].as_array().unwrap().len(), 2);

    // Freezing the bind mount after the source would answer EBUSY — from ourselves.
    let result = finish(
        lightsnap(&scratch, &fake)
            .args(["freeze-and-snap", "--snapshot-name", "bound"])
            .arg(&bind)
            .arg(&fs.mount_point),
    );
    assert_eq!(result.code, 0, "{result:?}");
    assert_eq!(create_calls(&fake).len(), 1);
    assert!(!fs.is_frozen());
    run(Command::new("e2fsck")
        .arg("-fn")
        .arg(fake.snapshot_image("bound")));
}

#[test]
fn nested_mounts_are_frozen_child_first_and_snapshotted_together() {
    let test = "nested_mounts_are_frozen_child_first_and_snapshotted_together";
    if !root_or_skip(test) {
        return;
    }
    let scratch = Scratch::new();
    let outer = LoopFs::create(&scratch, "outer", FsKind::Ext4);
    // The inner filesystem is mounted inside the outer one (made there by the test, before
    // anything is frozen).
    let inner = LoopFs::create(&scratch, "outer/inner", FsKind::Ext4);
    let fake = fake(
        &scratch,
        seed(
            &[("outer-1", &outer.device), ("inner-1", &inner.device)],
            None,
        ),
    );

    let plan = finish(
        lightsnap(&scratch, &fake)
            .args(["plan", "--output", "json"])
            .arg(&outer.mount_point)
            .arg(&inner.mount_point),
    );
    assert_eq!(plan.code, 0, "{plan:?}");
    let doc: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
    let order: Vec<&str> = doc["filesystems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["mount_point"].as_str().unwrap())
        .collect();
    assert_eq!(
        order,
        [
            inner.mount_point.to_str().unwrap(),
            outer.mount_point.to_str().unwrap()
        ],
        "the child first"
    );

    let result = finish(
        lightsnap(&scratch, &fake)
            .arg("freeze-and-snap")
            .arg(&outer.mount_point)
            .arg(&inner.mount_point),
    );
    assert_eq!(result.code, 0, "{result:?}");
    let calls = create_calls(&fake);
    assert_eq!(calls.len(), 2);
    assert!(!inner.is_frozen() && !outer.is_frozen());
    for c in &calls {
        let name = c.body["diskSnapshotName"].as_str().unwrap();
        run(Command::new("e2fsck")
            .arg("-fn")
            .arg(fake.snapshot_image(name)));
    }
}

#[test]
fn several_disks_are_called_at_once_not_one_after_another() {
    let test = "several_disks_are_called_at_once_not_one_after_another";
    if !root_or_skip(test) {
        return;
    }
    let scratch = Scratch::new();
    let a = LoopFs::create(&scratch, "a", FsKind::Ext4);
    let b = LoopFs::create(&scratch, "b", FsKind::Ext4);
    let fake = fake(
        &scratch,
        seed(&[("disk-a", &a.device), ("disk-b", &b.device)], None),
    );
    // Each answer takes a second: had the calls been made one after the other, the second
    // would arrive only after the first was answered.
    let latency_ms = 1000;
    fake.add_fault(Fault {
        operation: Some("CreateDiskSnapshot".into()),
        kind: FaultKind::Latency { ms: latency_ms },
        count: None,
    });
    let result = finish(
        lightsnap(&scratch, &fake)
            .args(["freeze-and-snap", "--freeze-timeout", "30s"])
            .arg(&a.mount_point)
            .arg(&b.mount_point),
    );
    assert_eq!(result.code, 0, "{result:?}");
    let calls = create_calls(&fake);
    assert_eq!(calls.len(), 2, "{result:?}");
    let apart = (calls[0].received_at_ms - calls[1].received_at_ms).abs();
    assert!(
        apart < latency_ms as f64,
        "the second call came {apart} ms after the first: it waited for its answer"
    );
    assert!(!a.is_frozen() && !b.is_frozen());
}

#[test]
fn snap_instance_freezes_every_filesystem_on_the_instances_disks() {
    let test = "snap_instance_freezes_every_filesystem_on_the_instances_disks";
    if !root_or_skip(test) {
        return;
    }
    let scratch = Scratch::new();
    // A loop filesystem the fake declares to be the system disk; never the host's /.
    let root = LoopFs::create(&scratch, "root", FsKind::Ext4);
    let data = LoopFs::create(&scratch, "data", FsKind::Xfs);
    let fake = fake(
        &scratch,
        seed_toml(&[("data-1", &data.device)], Some(&root.device), None),
    );
    let mut writer = Writer::start(&data.mount_point.join("records.log"), 10);

    let plan = finish(
        lightsnap(&scratch, &fake)
            .args(["snap-instance", "--dry-run", "--output", "json"])
            .args(["--snapshot-name", "whole-1"]),
    );
    assert_eq!(plan.code, 0, "{plan:?}");
    assert!(plan.stdout.contains("CreateInstanceSnapshot"), "{plan:?}");
    assert!(fake
        .calls()
        .iter()
        .all(|c| c.operation != "CreateInstanceSnapshot"));

    let result =
        finish(lightsnap(&scratch, &fake).args(["snap-instance", "--snapshot-name", "whole-1"]));
    assert_eq!(result.code, 0, "{result:?}");
    writer.next_ack(Duration::from_secs(10));
    let acks = writer.stop();
    let call = fake
        .calls()
        .into_iter()
        .find(|c| c.operation == "CreateInstanceSnapshot")
        .expect("one CreateInstanceSnapshot call");
    assert_eq!(call.body["instanceName"], INSTANCE);
    assert!(create_calls(&fake).is_empty(), "no disk snapshots");
    let tags = call.body["tags"].as_array().unwrap();
    assert!(tags
        .iter()
        .any(|t| t["key"] == "lightsnap:consistency" && t["value"] == "frozen"));
    assert!(!root.is_frozen() && !data.is_frozen());
    run(Command::new("e2fsck")
        .arg("-fn")
        .arg(fake.instance_snapshot_image("whole-1", &format!("{INSTANCE}-system"))));
    verify_image(
        &scratch,
        FsKind::Xfs,
        &fake.instance_snapshot_image("whole-1", "data-1"),
        &acks,
        call.received_at_ms,
    );
}

#[test]
fn plan_and_dry_run_touch_nothing() {
    let test = "plan_and_dry_run_touch_nothing";
    if !root_or_skip(test) {
        return;
    }
    let scratch = Scratch::new();
    let fs = LoopFs::create(&scratch, "data", FsKind::Ext4);
    let fake = fake(&scratch, seed(&[("data-1", &fs.device)], None));

    let human = finish(lightsnap(&scratch, &fake).arg("plan").arg(&fs.mount_point));
    assert_eq!(human.code, 0, "{human:?}");
    // path → mount → filesystem → method; mount → device → Lightsail disk → the call.
    let text = &human.stdout;
    for needle in [
        fs.mount_point.to_str().unwrap(),
        "ext4",
        "freeze",
        fs.device.to_str().unwrap(),
        "disk data-1",
        "CreateDiskSnapshot",
    ] {
        assert!(
            text.contains(needle),
            "plan should show {needle:?}: {human:?}"
        );
    }
    let dry = finish(
        lightsnap(&scratch, &fake)
            .args(["freeze-and-snap", "--dry-run", "--output", "json"])
            .arg(&fs.mount_point),
    );
    assert_eq!(dry.code, 0, "{dry:?}");
    let doc: serde_json::Value = serde_json::from_str(&dry.stdout).unwrap();
    assert_eq!(doc["snapshots"][0]["api_call"]["diskName"], "data-1");

    let writes: Vec<String> = fake
        .calls()
        .into_iter()
        .map(|c| c.operation)
        .filter(|op| !op.starts_with("Get") && !op.starts_with("IMDS"))
        .collect();
    assert!(writes.is_empty(), "only reads: {writes:?}");
    assert!(
        !scratch.path().join("run").exists(),
        "no lock, no recovery record"
    );
    assert!(!fs.is_frozen());
}

/// The metadata service at an IPv6 endpoint written as the standard one is
/// (`http://[fd00:ec2::254]`, no port): here `http://[::1]`, the fake on [::1]:80 — which the
/// hand-written client could not parse. Found, through IMDSv2.
#[test]
fn the_metadata_service_answers_at_an_ipv6_endpoint() {
    let test = "the_metadata_service_answers_at_an_ipv6_endpoint";
    if !root_or_skip(test) {
        return;
    }
    let scratch = Scratch::new();
    let fs = LoopFs::create(&scratch, "data", FsKind::Ext4);
    let dir = scratch.path().join("snapshots");
    let mut opts = Options::new(seed(&[("data-1", &fs.device)], None), &dir);
    opts.listen = "[::1]:80".parse().unwrap();
    opts.snapshot_duration = Duration::ZERO;
    let v6 = match Fake::start(opts) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("skipping {test}: cannot listen on [::1]:80 ({e})");
            return;
        }
    };
    let r = finish(
        lightsnap(&scratch, &v6)
            .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://[::1]")
            .arg("freeze-and-snap")
            .arg(&fs.mount_point),
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(create_calls(&v6).len(), 1);
    let imds: Vec<(String, bool)> = v6
        .calls()
        .into_iter()
        .filter(|c| c.operation.starts_with("IMDS GET"))
        .map(|c| (c.operation, c.body["token"].as_bool().unwrap_or(false)))
        .collect();
    assert!(!imds.is_empty(), "IMDS never asked");
    assert!(
        imds.iter().all(|(_, token)| *token),
        "IMDSv2 tokens: {imds:?}"
    );
}

#[test]
fn who_am_i_fails_clearly() {
    let test = "who_am_i_fails_clearly";
    if !root_or_skip(test) {
        return;
    }
    let scratch = Scratch::new();
    let fs = LoopFs::create(&scratch, "data", FsKind::Ext4);
    let snap = |fake: &Fake| {
        finish(
            lightsnap(&scratch, fake)
                .arg("freeze-and-snap")
                .arg(&fs.mount_point),
        )
    };

    // Not on an instance: no metadata.
    let dir = scratch.path().join("snapshots-off");
    let mut opts = Options::new(seed(&[("data-1", &fs.device)], None), &dir);
    opts.imds = fake_lightsail::ImdsMode::Off;
    let off = Fake::start(opts).unwrap();
    let r = snap(&off);
    assert_eq!(r.code, 3, "{r:?}");
    assert!(r.stderr.contains("metadata service"), "{r:?}");
    assert!(r.stderr.contains("--disk"), "says what to do: {r:?}");
    drop(off);

    // A metadata service that refuses IMDSv2 tokens (Lightsail serves v2): a clear error,
    // nothing frozen, nothing created.
    let dir = scratch.path().join("snapshots-v1");
    let mut opts = Options::new(seed(&[("data-1", &fs.device)], None), &dir);
    opts.imds = fake_lightsail::ImdsMode::V1Only;
    opts.snapshot_duration = Duration::ZERO;
    let v1 = Fake::start(opts).unwrap();
    let r = snap(&v1);
    assert_eq!(r.code, 3, "{r:?}");
    assert!(r.stderr.contains("IMDSv2"), "{r:?}");
    assert!(create_calls(&v1).is_empty());
    drop(v1);

    // The metadata says an instance this account and region do not have.
    let other = fake(
        &scratch,
        seed_toml(&[("data-1", &fs.device)], None, Some("i-0aaaaaaaaaaaaaaaa")),
    );
    let r = snap(&other);
    assert_eq!(r.code, 3, "{r:?}");
    assert!(r.stderr.contains("i-0aaaaaaaaaaaaaaaa"), "{r:?}");
    assert!(r.stderr.contains("AWS_REGION"), "{r:?}");
    drop(other);

    // Credentials that may not list instances.
    let denied = fake(&scratch, seed(&[("data-1", &fs.device)], None));
    denied.add_fault(Fault {
        operation: Some("GetInstances".into()),
        kind: FaultKind::Error {
            code: "AccessDeniedException".into(),
            message: Some("not allowed to GetInstances".into()),
            status: None,
        },
        count: None,
    });
    let r = snap(&denied);
    assert_eq!(r.code, 23, "{r:?}");
    assert!(r.stderr.contains("AccessDeniedException"), "{r:?}");
    assert!(r.stderr.contains("lightsail:GetInstances"), "{r:?}");
    assert!(r.stderr.contains("lightsnap iam-policy"), "{r:?}");
    assert!(create_calls(&denied).is_empty());

    // A disk of the instance, but not the one behind the path.
    let elsewhere = fake(&scratch, seed(&[("data-1", Path::new("/dev/xvdz"))], None));
    let r = snap(&elsewhere);
    assert_eq!(r.code, 3, "{r:?}");
    assert!(
        r.stderr.contains("no disk of Lightsail instance web-1"),
        "{r:?}"
    );
    assert!(!fs.is_frozen());
}

/// An ext4 filesystem on a fresh zram device (a block device that is no loop device over a
/// file, and no disk of the fake instance), mounted in the scratch directory; removed on drop.
struct Zram {
    index: String,
    mount_point: PathBuf,
}

impl Zram {
    fn create(scratch: &Scratch, name: &str) -> Option<Self> {
        let index = std::fs::read_to_string("/sys/class/zram-control/hot_add").ok()?;
        let index = index.trim().to_string();
        let zram = Zram {
            index,
            mount_point: scratch.path().join(name),
        };
        std::fs::write(format!("/sys/block/zram{}/disksize", zram.index), "64M").unwrap();
        run(Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(zram.device()));
        std::fs::create_dir_all(&zram.mount_point).unwrap();
        run(Command::new("mount")
            .arg(zram.device())
            .arg(&zram.mount_point));
        Some(zram)
    }

    fn device(&self) -> PathBuf {
        PathBuf::from(format!("/dev/zram{}", self.index))
    }
}

impl Drop for Zram {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mount_point).status();
        let _ = std::fs::write("/sys/class/zram-control/hot_remove", &self.index);
    }
}

#[test]
fn snap_instance_refuses_a_mount_it_cannot_trace_unless_excluded() {
    let test = "snap_instance_refuses_a_mount_it_cannot_trace_unless_excluded";
    if !root_or_skip(test) {
        return;
    }
    let scratch = Scratch::new();
    let data = LoopFs::create(&scratch, "data", FsKind::Ext4);
    let fake = fake(&scratch, seed_toml(&[("data-1", &data.device)], None, None));
    let Some(stray) = Zram::create(&scratch, "stray") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test} needs zram (/sys/class/zram-control), which CI's kernel has"
        );
        eprintln!("skipping {test}: this kernel has no zram");
        return;
    };
    let stray_point = stray.mount_point.display().to_string();
    let r =
        finish(lightsnap(&scratch, &fake).args(["snap-instance", "--snapshot-name", "whole-1"]));
    assert_eq!(r.code, 4, "{r:?}");
    assert!(
        r.stderr.contains(&stray_point) && r.stderr.contains("--exclude"),
        "names the mount and what to do: {r:?}"
    );
    assert!(fake
        .calls()
        .iter()
        .all(|c| c.operation != "CreateInstanceSnapshot"));
    assert!(!data.is_frozen());

    // Excluded on the command line: the rest is snapshotted.
    let r = finish(lightsnap(&scratch, &fake).args([
        "snap-instance",
        "--snapshot-name",
        "whole-2",
        "--exclude",
        &format!("{}/st*", scratch.path().display()),
    ]));
    assert_eq!(r.code, 0, "{r:?}");
    let call = fake
        .calls()
        .into_iter()
        .find(|c| c.operation == "CreateInstanceSnapshot")
        .expect("the instance snapshot");
    assert_eq!(call.body["instanceSnapshotName"], "whole-2");
    assert!(
        r.stdout.contains(&data.mount_point.display().to_string()),
        "{r:?}"
    );
    assert!(!r.stdout.contains(&stray_point), "{r:?}");
    // A bad pattern is a usage error.
    let r = finish(lightsnap(&scratch, &fake).args(["snap-instance", "--exclude", "relative/*"]));
    assert_eq!(r.code, 2, "{r:?}");
}
