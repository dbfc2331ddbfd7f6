//! `lightsnap freeze-and-snap` end to end on real loop-device filesystems, against the fake
//! Lightsail whose disks are backed by the same loop devices (so its snapshot images are real
//! point-in-time copies). Root only; CI runs them as root.

mod common;

use std::time::Duration;

use common::*;

/// The consistency test for one filesystem kind: a separate writer appends fsynced records all
/// through the run; the image the fake copied at the call is fsck-clean and holds every record
/// acknowledged before the call; the filesystem takes writes again afterwards.
/// Over TLS (`tls`), the endpoint is `https://localhost:PORT`, trusted through `SSL_CERT_FILE`,
/// and the call inside the window must come on a connection opened before it.
fn consistent_snapshot(kind: FsKind, tls: bool, test: &str) {
    if !root_or_skip(test) || !tool_or_skip(test, kind.mkfs_tool()) {
        return;
    }
    let scratch = Scratch::new();
    let fs = LoopFs::create(&scratch, "data", kind);
    let seeded = seed(&[("data-1", &fs.device)], None);
    let fake = if tls {
        fake_tls(&scratch, seeded)
    } else {
        fake(&scratch, seeded)
    };
    let mut writer = Writer::start(&fs.mount_point.join("records.log"), 20);

    let result = finish(
        lightsnap(&scratch, &fake)
            .args([
                "freeze-and-snap",
                "--disk-name",
                "data-1",
                "--snapshot-name",
                "snap-1",
            ])
            .arg(&fs.mount_point),
    );
    assert_eq!(result.code, 0, "{result:?}");
    assert!(
        result.stdout.contains("snapshot snap-1 of disk data-1"),
        "{result:?}"
    );
    assert!(
        result.stdout.contains("frozen, writes paused"),
        "{result:?}"
    );

    // Thawed: the writer goes on.
    writer.next_ack(Duration::from_secs(10));
    assert!(!fs.is_frozen());
    let acks = writer.stop();

    let calls = create_calls(&fake);
    assert_eq!(calls.len(), 1, "one CreateDiskSnapshot call");
    let conn = calls[0].connection.as_ref().expect("connection recorded");
    assert_eq!(conn.tls, tls, "{conn:?}");
    assert!(
        conn.requests_before > 0,
        "the call inside the window came on a fresh connection: {conn:?}"
    );
    assert_eq!(calls[0].body["diskName"], "data-1");
    assert_eq!(calls[0].body["diskSnapshotName"], "snap-1");
    let tags = calls[0].body["tags"].as_array().expect("tags sent");
    assert!(
        tags.iter()
            .any(|t| t["key"] == "lightsnap:consistency" && t["value"] == "frozen"),
        "{tags:?}"
    );
    let records = verify_image(
        &scratch,
        kind,
        &fake.snapshot_image("snap-1"),
        &acks,
        calls[0].received_at_ms,
    );
    assert!(records > 0);
    let snap = fake.disk_snapshot("snap-1").expect("snapshot exists");
    assert_eq!(snap["fromDiskName"], "data-1");
}

#[test]
fn ext4_snapshot_is_consistent() {
    consistent_snapshot(FsKind::Ext4, false, "ext4_snapshot_is_consistent");
}

#[test]
fn xfs_snapshot_is_consistent() {
    consistent_snapshot(FsKind::Xfs, false, "xfs_snapshot_is_consistent");
}

#[test]
fn ext4_snapshot_over_tls_is_consistent() {
    consistent_snapshot(FsKind::Ext4, true, "ext4_snapshot_over_tls_is_consistent");
}

#[test]
fn xfs_snapshot_over_tls_is_consistent() {
    consistent_snapshot(FsKind::Xfs, true, "xfs_snapshot_over_tls_is_consistent");
}

/// Remounted as before: same source, type, per-mount and per-superblock options.
fn assert_same_mount(
    before: &lightsnap::kernel::mountinfo::Mount,
    after: &lightsnap::kernel::mountinfo::Mount,
) {
    assert_eq!(before.source, after.source);
    assert_eq!(before.fstype, after.fstype);
    assert_eq!(before.mount_options, after.mount_options);
    assert_eq!(before.super_options, after.super_options);
    assert_eq!(before.mount_point, after.mount_point);
}

#[test]
fn a_filesystem_that_cannot_freeze_is_unmounted_and_mounted_again() {
    let test = "a_filesystem_that_cannot_freeze_is_unmounted_and_mounted_again";
    if !root_or_skip(test) || !tool_or_skip(test, "mkntfs") || !tool_or_skip(test, "ntfs-3g") {
        return;
    }
    let scratch = Scratch::new();
    let fs = LoopFs::create(&scratch, "ntfs", FsKind::Ntfs);
    let before = fs.mountinfo().expect("mounted");
    assert_eq!(before.fstype, "fuseblk");
    std::fs::write(fs.mount_point.join("hello.txt"), "written before").unwrap();
    let fake = fake(&scratch, seed(&[("win-1", &fs.device)], None));

    let result = finish(
        lightsnap(&scratch, &fake)
            .args([
                "freeze-and-snap",
                "--disk-name",
                "win-1",
                "--snapshot-name",
                "ntfs-snap",
            ])
            .arg(&fs.mount_point),
    );
    assert_eq!(result.code, 0, "{result:?}");
    assert!(
        result.stdout.contains("unmounted (could not freeze)"),
        "{result:?}"
    );
    assert!(
        result.stderr.contains("cannot be frozen"),
        "the fallback is logged: {result:?}"
    );
    assert_same_mount(&before, &fs.mountinfo().expect("mounted again"));
    assert_eq!(
        std::fs::read_to_string(fs.mount_point.join("hello.txt")).unwrap(),
        "written before"
    );
    let calls = create_calls(&fake);
    assert_eq!(calls.len(), 1);
    let tags = calls[0].body["tags"].as_array().unwrap();
    assert!(tags
        .iter()
        .any(|t| t["key"] == "lightsnap:consistency" && t["value"] == "unmounted"));
    assert!(fake.snapshot_image("ntfs-snap").exists());
}

#[test]
fn method_unmount_is_honoured_on_ext4() {
    let test = "method_unmount_is_honoured_on_ext4";
    if !root_or_skip(test) {
        return;
    }
    let scratch = Scratch::new();
    let fs = LoopFs::create(&scratch, "data", FsKind::Ext4);
    std::fs::write(fs.mount_point.join("records.log"), "").unwrap();
    let before = fs.mountinfo().unwrap();
    let fake = fake(&scratch, seed(&[("data-1", &fs.device)], None));

    let result = finish(
        lightsnap(&scratch, &fake)
            .args([
                "freeze-and-snap",
                "--method",
                "unmount",
                "--disk-name",
                "data-1",
            ])
            .args(["--snapshot-name", "by-unmount"])
            .arg(&fs.mount_point),
    );
    assert_eq!(result.code, 0, "{result:?}");
    assert!(result.stdout.contains("unmounted"), "{result:?}");
    assert_same_mount(&before, &fs.mountinfo().expect("mounted again"));
    // The image of an unmounted ext4 is clean.
    run(std::process::Command::new("e2fsck")
        .arg("-fn")
        .arg(fake.snapshot_image("by-unmount")));
}

#[test]
fn a_busy_mount_is_left_mounted_and_its_holders_named() {
    let test = "a_busy_mount_is_left_mounted_and_its_holders_named";
    if !root_or_skip(test) {
        return;
    }
    let scratch = Scratch::new();
    let fs = LoopFs::create(&scratch, "data", FsKind::Ext4);
    let fake = fake(&scratch, seed(&[("data-1", &fs.device)], None));
    // A process whose working directory is on the mount keeps it busy.
    let mut holder = std::process::Command::new("sleep")
        .arg("600")
        .current_dir(&fs.mount_point)
        .spawn()
        .unwrap();

    let result = finish(
        lightsnap(&scratch, &fake)
            .args([
                "freeze-and-snap",
                "--method",
                "unmount",
                "--disk-name",
                "data-1",
            ])
            .arg(&fs.mount_point),
    );
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(result.code, 5, "{result:?}");
    assert!(result.stderr.contains("busy"), "{result:?}");
    assert!(
        result
            .stderr
            .contains(&format!("pid {} (sleep)", holder.id())),
        "names the holder: {result:?}"
    );
    assert!(fs.is_mounted(), "still mounted");
    assert!(create_calls(&fake).is_empty(), "no snapshot taken");
}

#[test]
fn an_api_error_while_frozen_thaws_and_names_the_error() {
    let test = "an_api_error_while_frozen_thaws_and_names_the_error";
    if !root_or_skip(test) {
        return;
    }
    let scratch = Scratch::new();
    let fs = LoopFs::create(&scratch, "data", FsKind::Ext4);
    let fake = fake(&scratch, seed(&[("data-1", &fs.device)], None));
    fake.add_fault(Fault {
        operation: Some("CreateDiskSnapshot".into()),
        kind: FaultKind::Error {
            code: "OperationFailureException".into(),
            message: Some("the disk is busy elsewhere".into()),
            status: None,
        },
        count: None,
    });
    let mut writer = Writer::start(&fs.mount_point.join("records.log"), 5);

    let result = finish(
        lightsnap(&scratch, &fake)
            .args(["freeze-and-snap", "--disk-name", "data-1"])
            .arg(&fs.mount_point),
    );
    assert_eq!(result.code, 10, "{result:?}");
    assert!(
        result.stderr.contains("OperationFailureException"),
        "{result:?}"
    );
    assert!(
        result.stderr.contains("no snapshot was taken"),
        "{result:?}"
    );
    writer.next_ack(Duration::from_secs(10));
    drop(writer);
    assert!(!fs.is_frozen(), "thawed after the error");
    assert!(
        !create_calls(&fake).is_empty(),
        "the call was made while frozen"
    );
}

#[test]
fn the_disk_is_found_through_the_metadata_service() {
    let test = "the_disk_is_found_through_the_metadata_service";
    if !root_or_skip(test) {
        return;
    }
    let scratch = Scratch::new();
    let fs = LoopFs::create(&scratch, "data", FsKind::Ext4);
    let fake = fake(&scratch, seed(&[("data-1", &fs.device)], None));
    // A path below the mount point: lightsnap says which mount it snapshots.
    std::fs::create_dir(fs.mount_point.join("sub")).unwrap();

    let result = finish(
        lightsnap(&scratch, &fake)
            .args(["-v", "freeze-and-snap"])
            .arg(fs.mount_point.join("sub")),
    );
    assert_eq!(result.code, 0, "{result:?}");
    assert!(
        result.stderr.contains(&format!(
            "is on the filesystem mounted at {}",
            fs.mount_point.display()
        )),
        "{result:?}"
    );
    let calls = create_calls(&fake);
    assert_eq!(calls[0].body["diskName"], "data-1");
    let name = calls[0].body["diskSnapshotName"].as_str().unwrap();
    assert!(name.starts_with("data-1-"), "default name: {name}");
}

#[test]
fn the_system_disk_is_snapshotted_by_instance_name() {
    let test = "the_system_disk_is_snapshotted_by_instance_name";
    if !root_or_skip(test) {
        return;
    }
    let scratch = Scratch::new();
    // A loop filesystem the fake declares to be the instance's system disk; never the host's /.
    let fs = LoopFs::create(&scratch, "root", FsKind::Ext4);
    let fake = fake(&scratch, seed(&[], Some(&fs.device)));

    let result = finish(
        lightsnap(&scratch, &fake)
            .args(["freeze-and-snap", "--snapshot-name", "sys-1"])
            .arg(&fs.mount_point),
    );
    assert_eq!(result.code, 0, "{result:?}");
    assert!(
        result.stdout.contains("system volume of instance web-1"),
        "{result:?}"
    );
    let calls = create_calls(&fake);
    assert_eq!(calls[0].body["instanceName"], INSTANCE);
    assert!(calls[0].body.get("diskName").is_none());
    run(std::process::Command::new("e2fsck")
        .arg("-fn")
        .arg(fake.snapshot_image("sys-1")));
}

/// Bad input: a clear error, its own exit code, and the filesystem never frozen.
#[test]
fn bad_input_is_refused_before_anything_is_frozen() {
    let test = "bad_input_is_refused_before_anything_is_frozen";
    if !root_or_skip(test) {
        return;
    }
    let scratch = Scratch::new();
    let fs = LoopFs::create(&scratch, "data", FsKind::Ext4);
    let fake = fake(&scratch, seed(&[("data-1", &fs.device)], None));
    let tmpfs = scratch.path().join("tmpfs");
    std::fs::create_dir(&tmpfs).unwrap();
    run(std::process::Command::new("mount")
        .args(["-t", "tmpfs", "tmpfs"])
        .arg(&tmpfs));
    let _unmount_tmpfs = Unmount(tmpfs.clone());
    let mnt = fs.mount_point.to_str().unwrap().to_string();
    let missing = scratch.path().join("missing").to_str().unwrap().to_string();
    let tmpfs_s = tmpfs.to_str().unwrap().to_string();

    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (
            vec![&missing, "--disk-name", "data-1"],
            3,
            "no such file or directory",
        ),
        (
            vec![&tmpfs_s, "--disk-name", "data-1"],
            4,
            "not a filesystem on a block device",
        ),
        (
            vec![&mnt, "--snapshot-name=-bad-"],
            2,
            "not a valid Lightsail name",
        ),
        (
            vec![&mnt, "--snapshot-name", "a.b"],
            2,
            "not a valid Lightsail name",
        ),
        (vec![&mnt, "--tag", "k=semi;colon"], 2, "is not allowed"),
        (vec![&mnt, "--tag", "=v"], 2, "the key is empty"),
        (vec![&mnt, "--freeze-timeout", "ten"], 2, "duration"),
        (
            vec![&mnt, "--disk-name", "nope-1"],
            3,
            "no Lightsail disk named nope-1",
        ),
    ];
    for (args, code, needle) in cases {
        let result = finish(
            lightsnap(&scratch, &fake)
                .arg("freeze-and-snap")
                .args(&args),
        );
        assert_eq!(result.code, code, "{args:?}: {result:?}");
        assert!(
            result.stderr.contains(needle),
            "{args:?} should say {needle:?}: {result:?}"
        );
        assert!(!fs.is_frozen());
    }
    assert!(create_calls(&fake).is_empty(), "no snapshot was attempted");
}
