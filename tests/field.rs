//! What the field sees that plain HTTP on localhost hides (issue 13): over TLS, with the
//! endpoint a host name, the calls made inside the frozen window travel on connections opened
//! and used before the first freeze — no new connection, no TLS handshake, no name lookup
//! while writes are paused. Also: `--disk-name` must name this instance's disk behind the
//! path, and Lightsail's automatic snapshots are waited out before freezing.

mod common;

use std::time::Duration;

use common::*;

/// Waits until the lookup watch has seen everything up to now (its own marker lookup).
fn lookups_settled(fake: &Fake) {
    let me = std::process::id();
    let before = fake.lookups().iter().filter(|l| l.pid == me).count();
    drop(std::fs::File::open("/etc/hosts").unwrap());
    wait_until(
        "the lookup watch to catch up",
        Duration::from_secs(10),
        || fake.lookups().iter().filter(|l| l.pid == me).count() > before,
    );
}

/// One freeze-and-snap of every filesystem in `fss` over TLS; checks that nothing network
/// happened between the last call before the window and the end of the run.
fn snap_over_tls_and_check_the_window(scratch: &Scratch, fake: &Fake, round: u32, fss: &[&LoopFs]) {
    // Names of their own: default names have a resolution of one second.
    write_conf(
        scratch,
        "etc/lightsnap/config.toml",
        &format!("name_template = \"{{disk}}-round{round}\"\n"),
    );
    let mut cmd = configured_lightsnap(scratch, fake);
    cmd.arg("freeze-and-snap");
    for fs in fss {
        cmd.arg(&fs.mount_point);
    }
    let earlier = fake.calls().len();
    let child = spawn(&mut cmd);
    let pid = child.id();
    let r = wait_result(child);
    assert_eq!(r.code, 0, "{r:?}");
    lookups_settled(fake);

    let calls: Vec<fake_lightsail::Call> = fake.calls().split_off(earlier);
    let creates: Vec<&fake_lightsail::Call> = calls
        .iter()
        .filter(|c| c.operation == "CreateDiskSnapshot")
        .collect();
    assert_eq!(creates.len(), fss.len(), "one call per disk: {r:?}");
    let first_create = creates.iter().map(|c| c.received_mono_us).min().unwrap();
    // The window opens after the last call before it returned: nothing may be opened or
    // looked up after that call was received.
    let last_before = calls
        .iter()
        .filter(|c| c.received_mono_us < first_create && !c.operation.starts_with("__"))
        .map(|c| c.received_mono_us)
        .max()
        .expect("warm-up calls before the window");
    // Each call on a connection opened (TCP and TLS) before the window: one the warm-up used,
    // or one the pool opened for a warm-up call and kept.
    for c in &creates {
        let conn = c.connection.as_ref().expect("connection recorded");
        assert!(conn.tls, "over TLS: {conn:?}");
        let opened_before = conn.accepted_mono_us < last_before
            && conn.handshake_mono_us.is_some_and(|h| h < last_before);
        assert!(
            opened_before,
            "CreateDiskSnapshot {} came on a connection opened in the window: {conn:?} (last call before it at {last_before})",
            c.body["diskSnapshotName"]
        );
    }
    assert!(
        creates
            .iter()
            .any(|c| c.connection.as_ref().is_some_and(|k| k.requests_before > 0)),
        "no call on a connection the warm-up used: {creates:?}"
    );
    let late: Vec<_> = fake
        .connections()
        .into_iter()
        .filter(|k| {
            k.accepted_mono_us > last_before || k.handshake_mono_us.is_some_and(|h| h > last_before)
        })
        .collect();
    assert!(
        late.is_empty(),
        "connections opened in the window: {late:?}"
    );
    let looked_up: Vec<_> = fake
        .lookups()
        .into_iter()
        .filter(|l| l.pid == pid && l.mono_us > last_before)
        .collect();
    assert!(
        looked_up.is_empty(),
        "name lookups in the window: {looked_up:?}"
    );
    // It did look the name up, before: the watch sees lightsnap's lookups at all.
    assert!(
        fake.lookups().iter().any(|l| l.pid == pid),
        "lightsnap resolved localhost through /etc/hosts before the window"
    );
}

#[test]
fn over_tls_the_calls_in_the_window_need_no_new_connection_handshake_or_lookup() {
    let test = "over_tls_the_calls_in_the_window_need_no_new_connection_handshake_or_lookup";
    if !root_or_skip(test) {
        return;
    }
    let scratch = Scratch::new();
    let a = LoopFs::create(&scratch, "a", FsKind::Ext4);
    let b = LoopFs::create(&scratch, "b", FsKind::Ext4);
    let fake = fake_tls(
        &scratch,
        seed(&[("a-1", &a.device), ("b-1", &b.device)], None),
    );
    // One disk, then two called together (a warm connection each).
    snap_over_tls_and_check_the_window(&scratch, &fake, 1, &[&a]);
    snap_over_tls_and_check_the_window(&scratch, &fake, 2, &[&a, &b]);
    assert!(!a.is_frozen() && !b.is_frozen());
}

/// An instance `web-1` (this one) with data disk `data-1` behind the test's filesystem and a
/// system disk at another device; an instance `web-2` with its own disk `web2-data`.
fn two_instances(fs: &LoopFs) -> Seed {
    Seed::from_toml_str(&format!(
        "self_instance = \"{INSTANCE}\"\n\
         [[instances]]\nname = \"{INSTANCE}\"\ninstance_id = \"{INSTANCE_ID}\"\n\
         system_disk = {{ name = \"{INSTANCE}-system\", path = \"/dev/xvda\", size_gb = 1 }}\n\
         [[instances]]\nname = \"web-2\"\ninstance_id = \"i-0fedcba9876543210\"\n\
         [[disks]]\nname = \"data-1\"\npath = \"{d}\"\nattached_to = \"{INSTANCE}\"\nsize_gb = 1\nbacking = \"{d}\"\n\
         [[disks]]\nname = \"web2-data\"\npath = \"/dev/xvdf\"\nattached_to = \"web-2\"\nsize_gb = 1\n",
        d = fs.device.display()
    ))
    .expect("seed")
}

#[test]
fn a_disk_name_that_is_not_the_disk_behind_the_path_is_refused_before_anything_is_frozen() {
    let test =
        "a_disk_name_that_is_not_the_disk_behind_the_path_is_refused_before_anything_is_frozen";
    if !root_or_skip(test) {
        return;
    }
    let scratch = Scratch::new();
    let fs = LoopFs::create(&scratch, "data", FsKind::Ext4);
    let fake = fake(&scratch, two_instances(&fs));
    let cases = [
        // Another instance's disk: snapshotting it would freeze this filesystem for nothing.
        (
            "web2-data",
            "attached to instance web-2, not to this instance (web-1)",
        ),
        // This instance's system disk, not the disk behind the path.
        (
            "web-1-system",
            "is Lightsail disk data-1 of this instance, not web-1-system",
        ),
    ];
    for (disk, says) in cases {
        for command in ["freeze-and-snap", "plan"] {
            let r = finish(
                configured_lightsnap(&scratch, &fake)
                    .args([command, "--disk-name", disk])
                    .arg(&fs.mount_point),
            );
            assert_eq!(r.code, 8, "{command} --disk-name {disk}: {r:?}");
            assert!(
                r.stderr.contains(says),
                "{command} --disk-name {disk}: {r:?}"
            );
            assert!(!fs.is_frozen());
            assert!(create_calls(&fake).is_empty(), "{r:?}");
        }
    }
    // The same from the configuration's mapping, for the timer's `run`.
    write_conf(
        &scratch,
        "etc/lightsnap/config.toml",
        &format!(
            "[[snapshot]]\npath = \"{}\"\ndisk = \"web2-data\"\n",
            fs.mount_point.display()
        ),
    );
    let r = finish(configured_lightsnap(&scratch, &fake).arg("run"));
    assert_eq!(r.code, 8, "{r:?}");
    assert!(create_calls(&fake).is_empty(), "{r:?}");
    // The right one is taken.
    let r = finish(
        configured_lightsnap(&scratch, &fake)
            .args(["freeze-and-snap", "--disk-name", "data-1"])
            .arg(&fs.mount_point),
    );
    assert_eq!(r.code, 0, "{r:?}");
}

/// This instance with disk `data-1` behind the test's filesystem, its automatic snapshot
/// add-on on (daily at 06:00 UTC).
fn auto_snapshotted(fs: &LoopFs) -> Seed {
    Seed::from_toml_str(&format!(
        "self_instance = \"{INSTANCE}\"\n\
         [[instances]]\nname = \"{INSTANCE}\"\ninstance_id = \"{INSTANCE_ID}\"\n\
         [[disks]]\nname = \"data-1\"\npath = \"{d}\"\nattached_to = \"{INSTANCE}\"\nsize_gb = 1\nbacking = \"{d}\"\n\
         auto_snapshot = {{ time_of_day = \"06:00\" }}\n",
        d = fs.device.display()
    ))
    .expect("seed")
}

/// The create calls the fake answered, and those it refused.
fn creates(fake: &Fake) -> (usize, usize) {
    let calls = create_calls(fake);
    let refused = calls.iter().filter(|c| c.error.is_some()).count();
    (calls.len() - refused, refused)
}

#[test]
fn an_automatic_snapshot_in_progress_is_waited_out_before_the_one_freeze() {
    let test = "an_automatic_snapshot_in_progress_is_waited_out_before_the_one_freeze";
    if !root_or_skip(test) {
        return;
    }
    let scratch = Scratch::new();
    let fs = LoopFs::create(&scratch, "data", FsKind::Ext4);
    let fake = fake(&scratch, auto_snapshotted(&fs));
    // plan says when the add-on runs.
    let r = finish(
        configured_lightsnap(&scratch, &fake)
            .arg("plan")
            .arg(&fs.mount_point),
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout
            .contains("automatic snapshots of data-1 daily at 06:00 UTC"),
        "{r:?}"
    );
    // One in progress for a few seconds: waited out, then one freeze, one call.
    fake.start_auto_snapshot("data-1", Some(Duration::from_secs(2)))
        .unwrap();
    let r = finish(
        configured_lightsnap(&scratch, &fake)
            .arg("freeze-and-snap")
            .arg(&fs.mount_point),
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("waiting for it before freezing"), "{r:?}");
    assert_eq!(
        creates(&fake),
        (1, 0),
        "exactly one call, none refused: {r:?}"
    );
    let looks = fake
        .calls()
        .iter()
        .filter(|c| c.operation == "GetAutoSnapshots")
        .count();
    assert!(
        looks >= 2,
        "it looked until the automatic snapshot was done: {looks}"
    );
    assert_eq!(r.stdout.matches("writes paused").count(), 1, "{r:?}");
    assert!(!fs.is_frozen());
}

#[test]
fn an_automatic_snapshot_with_auto_snapshot_wait_0_fails_at_once_with_nothing_frozen() {
    let test = "an_automatic_snapshot_with_auto_snapshot_wait_0_fails_at_once_with_nothing_frozen";
    if !root_or_skip(test) {
        return;
    }
    let scratch = Scratch::new();
    let fs = LoopFs::create(&scratch, "data", FsKind::Ext4);
    let fake = fake(&scratch, auto_snapshotted(&fs));
    fake.start_auto_snapshot("data-1", None).unwrap();
    let r = finish(
        configured_lightsnap(&scratch, &fake)
            .args(["freeze-and-snap", "--auto-snapshot-wait", "0"])
            .arg(&fs.mount_point),
    );
    assert_eq!(r.code, 17, "{r:?}");
    assert!(r.stderr.contains("nothing was frozen"), "{r:?}");
    assert_eq!(creates(&fake), (0, 0));
    assert!(!fs.is_frozen());
}

#[test]
fn refused_for_an_automatic_snapshot_begun_meanwhile_it_thaws_waits_and_tries_once_more() {
    let test =
        "refused_for_an_automatic_snapshot_begun_meanwhile_it_thaws_waits_and_tries_once_more";
    let Some(s) = OneDisk::new(test) else {
        return;
    };
    s.fake.add_fault(Fault {
        operation: Some("CreateDiskSnapshot".into()),
        kind: FaultKind::Error {
            code: "OperationFailureException".into(),
            message: Some(
                "You cannot create manual snapshots when an automatic snapshot is being created"
                    .into(),
            ),
            status: None,
        },
        count: Some(1),
    });
    let r = finish(
        configured_lightsnap(&s.scratch, &s.fake)
            .args(["freeze-and-snap", "--disk-name", "data-1"])
            .arg(&s.fs.mount_point),
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("began meanwhile"), "{r:?}");
    assert_eq!(creates(&s.fake), (1, 1), "refused once, then taken: {r:?}");
    assert!(!s.fs.is_frozen());
}

/// `plan` asks systemd when the timer fires (here a stand-in `systemctl` answering as for a
/// drop-in that moved `OnCalendar=` to 05:50 with a 20-minute random delay): a window that
/// meets the automatic snapshot's hour (06:00 UTC) is warned of; the packaged schedule
/// (midnight) is not.
#[test]
fn plan_warns_of_a_timer_drop_in_that_meets_the_automatic_snapshot() {
    let test = "plan_warns_of_a_timer_drop_in_that_meets_the_automatic_snapshot";
    if !root_or_skip(test) {
        return;
    }
    let scratch = Scratch::new();
    let fs = LoopFs::create(&scratch, "data", FsKind::Ext4);
    let fake = fake(&scratch, auto_snapshotted(&fs));
    let bin = scratch.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let systemctl = |calendar: &str, delay: &str| {
        let script = format!(
            "#!/bin/sh\n\
             [ \"$1\" = show ] || exit 1\n\
             case \" $* \" in *\" lightsnap-snapshot.timer \"*) ;; *) exit 1 ;; esac\n\
             [ \"$TZ\" = UTC ] || {{ echo 'timestamps asked in local time' >&2; exit 1; }}\n\
             printf '%s\\n' 'LoadState=loaded' \
             'TimersCalendar={{ OnCalendar={calendar} ; next_elapse=Tue 2026-12-08 {time} UTC }}' \
             'RandomizedDelayUSec={delay}' 'NextElapseUSecRealtime=n/a'\n",
            time = calendar.split_whitespace().nth(1).unwrap(),
        );
        let path = bin.join("systemctl");
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
    };
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let plan = || {
        finish(
            configured_lightsnap(&scratch, &fake)
                .env("PATH", &path)
                .arg("plan")
                .arg(&fs.mount_point),
        )
    };
    systemctl("*-*-* 05:50:00", "20min");
    let r = plan();
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains(
            "warning: lightsnap-snapshot.timer may fire then (05:50 UTC plus up to 20 min)"
        ),
        "{r:?}"
    );
    systemctl("*-*-* 00:00:00", "1h");
    let r = plan();
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("automatic snapshots of data-1"), "{r:?}");
    assert!(!r.stdout.contains("may fire then"), "{r:?}");
}
