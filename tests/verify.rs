//! `lightsnap verify` end to end, as root: a snapshot taken by `freeze-and-snap` of a loop
//! filesystem, restored by the fake Lightsail in attach mode (a loop device over a copy of the
//! snapshot image, linked at `DIR/<basename of the attachment path>`; lightsnap is told where
//! with the test-only `LIGHTSNAP_DEV_DIR`), checked, detached, deleted, tagged. And copies to
//! another region.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

/// A one-disk set-up whose fake attaches restored disks as loop devices in `<scratch>/dev`.
struct Restore {
    fake: Fake,
    fs: LoopFs,
    scratch: Scratch,
}

impl Restore {
    fn new(test: &str, kind: FsKind, regions: &[&str]) -> Option<Self> {
        Self::with(test, kind, regions, false)
    }

    /// With `system`, the loop filesystem is the instance's system volume (`web-1-system`):
    /// its snapshots restore to copies of the system disk.
    fn with(test: &str, kind: FsKind, regions: &[&str], system: bool) -> Option<Self> {
        if !root_or_skip(test) || !tool_or_skip(test, kind.mkfs_tool()) {
            return None;
        }
        let scratch = Scratch::new();
        let fs = LoopFs::create(&scratch, "data", kind);
        let mut seed = if system {
            seed(&[], Some(&fs.device))
        } else {
            seed(&[("data-1", &fs.device)], None)
        };
        seed.regions = regions.iter().map(|r| r.to_string()).collect();
        let dir = scratch.path().join("snapshots");
        std::fs::create_dir_all(&dir).unwrap();
        let mut opts = Options::new(seed, dir);
        opts.snapshot_duration = Duration::ZERO;
        opts.page_size = 3;
        opts.attach_dir = Some(scratch.path().join("dev"));
        let fake = Fake::start(opts).expect("fake lightsail in attach mode");
        Some(Self { fake, fs, scratch })
    }

    /// lightsnap, configured, finding attached disks in `<scratch>/dev`, polling quickly.
    fn lightsnap(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = configured_lightsnap(&self.scratch, &self.fake);
        cmd.env("LIGHTSNAP_DEV_DIR", self.scratch.path().join("dev"))
            .env("LIGHTSNAP_VERIFY_POLL_MS", "20")
            .args(args);
        cmd
    }

    fn run(&self, args: &[&str]) -> RunResult {
        finish(&mut self.lightsnap(args))
    }

    /// A file on the filesystem, then a snapshot of it named `name`.
    fn snapshot(&self, name: &str) {
        std::fs::write(self.fs.mount_point.join("hello.txt"), "restored\n").unwrap();
        let mp = self.fs.mount_point.display().to_string();
        let r = self.run(&["freeze-and-snap", &mp, "--snapshot-name", name]);
        assert_eq!(r.code, 0, "{r:?}");
    }

    /// The verify hook directory, with one hook logging what it saw to `<scratch>/hook.log`.
    fn verify_hook(&self, extra: &str) -> PathBuf {
        let dir = self.scratch.path().join("verify.d");
        write_conf(
            &self.scratch,
            "etc/lightsnap/config.toml",
            &format!("verify_hook_dir = \"{}\"\n", dir.display()),
        );
        let log = self.scratch.path().join("hook.log");
        hook(
            &dir,
            "10-check",
            &format!(
                "echo \"$1 mount=$LIGHTSNAP_VERIFY_MOUNT snapshots=$LIGHTSNAP_SNAPSHOTS $(cat \"$LIGHTSNAP_VERIFY_MOUNT/hello.txt\")\" >> {}\n{extra}",
                log.display()
            ),
        );
        log
    }

    fn tags_of(&self, snapshot: &str) -> serde_json::Value {
        let all = self.fake.snapshots();
        let s = all["diskSnapshots"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == snapshot)
            .unwrap_or_else(|| panic!("no snapshot {snapshot}: {all}"))
            .clone();
        let mut tags = serde_json::Map::new();
        for t in s["tags"].as_array().unwrap() {
            tags.insert(t["key"].as_str().unwrap().into(), t["value"].clone());
        }
        tags.into()
    }

    /// The disks the fake holds (block storage only; the seeded data disk included).
    fn disk_names(&self) -> Vec<String> {
        let d = self.fake.disks();
        let list = d
            .as_array()
            .or_else(|| d["disks"].as_array())
            .cloned()
            .unwrap_or_default();
        list.iter()
            .filter(|d| d["isSystemDisk"] != true)
            .map(|d| d["name"].as_str().unwrap().to_string())
            .collect()
    }

    fn operations(&self) -> Vec<String> {
        self.fake
            .calls()
            .into_iter()
            .map(|c| c.operation)
            .filter(|o| !o.starts_with("IMDS"))
            .collect()
    }
}

impl Drop for Restore {
    /// A test that failed half-way may leave a restored disk's loop device read-only
    /// (BLKROSET outlives the loop's detach): set every loop device over a file of this test
    /// read-write again before the fake detaches them, so the next user of the device is not
    /// handed a read-only one.
    fn drop(&mut self) {
        let out = std::process::Command::new("losetup")
            .args(["-n", "-O", "NAME,BACK-FILE"])
            .output();
        let Ok(out) = out else { return };
        let scratch = self.scratch.path().display().to_string();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some((dev, file)) = line.split_once(' ') {
                if file.trim().starts_with(&scratch) {
                    let _ = lightsnap::kernel::set_read_only(Path::new(dev), false);
                }
            }
        }
    }
}

/// The scratch disk a report names: `<snapshot>-verify-<8 hex digits>`, new at each
/// rehearsal.
fn scratch_name(doc: &serde_json::Value) -> String {
    let name = doc["scratch_disk"].as_str().unwrap_or_default().to_string();
    let snapshot = doc["snapshot"].as_str().unwrap_or_default();
    let unique = name
        .strip_prefix(&format!("{snapshot}-verify-"))
        .unwrap_or_else(|| panic!("scratch disk {name} of {snapshot}: {doc}"));
    assert!(
        unique.len() == 8 && unique.chars().all(|c| c.is_ascii_hexdigit()),
        "{name}"
    );
    name
}

/// No loop device is left over a file under `dir`.
fn loops_under(dir: &Path) -> Vec<String> {
    let out = run(std::process::Command::new("losetup").args(["-n", "-O", "NAME,BACK-FILE"]));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&dir.display().to_string()) && l.contains("disk"))
        .map(str::to_string)
        .collect()
}

/// Fails unless every loop device lightsnap attached under `dir` is gone. A released loop
/// device (autoclear) is detached by the kernel only when its last opener has closed it,
/// which can be a moment after lightsnap has let go (seen once under load): polled until
/// gone, up to a deadline.
fn assert_no_loops_under(dir: &Path) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let left = loops_under(dir);
        if left.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "loop devices left attached: {left:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn a_good_snapshot_verifies_clean_and_is_tagged() {
    let Some(s) = Restore::new(
        "a_good_snapshot_verifies_clean_and_is_tagged",
        FsKind::Ext4,
        &[],
    ) else {
        return;
    };
    s.snapshot("s1");
    let log = s.verify_hook("");
    let r = s.run(&["verify", "s1", "--output", "json"]);
    assert_eq!(r.code, 0, "{r:?}");
    let mut doc = json_doc(&r);
    assert_eq!(doc["result"], "clean", "{doc}");
    let scratch_disk = scratch_name(&doc);
    assert_eq!(doc["checks"][0]["fstype"], "ext4");
    assert!(doc["checks"][0]["checker"]
        .as_str()
        .unwrap()
        .starts_with("e2fsck -f -n /dev/loop"));
    doc["scratch_disk"] = "s1-verify-<unique>".into();
    golden("verify", &doc, &s.scratch);
    // The hook saw the restored file, mounted read-only where it was told.
    let seen = std::fs::read_to_string(&log).unwrap();
    let mount = s.scratch.path().join("run/verify").join(&scratch_disk);
    assert_eq!(
        seen,
        format!("verify mount={} snapshots=s1 restored\n", mount.display())
    );
    assert!(!mount.exists(), "unmounted and removed");
    let tags = s.tags_of("s1");
    assert_eq!(tags["lightsnap:verified"], "clean", "{tags}");
    assert!(tags["lightsnap:verified-at"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    assert_eq!(s.disk_names(), ["data-1"], "the scratch disk is deleted");
    assert_no_loops_under(s.scratch.path());
    // The calls, in order: restored in this instance's zone, attached here, undone.
    let ops = s.operations();
    let pos = |op: &str| {
        ops.iter()
            .position(|o| o == op)
            .unwrap_or_else(|| panic!("{op}: {ops:?}"))
    };
    assert!(pos("CreateDiskFromSnapshot") < pos("AttachDisk"));
    assert!(pos("AttachDisk") < pos("DetachDisk"));
    assert!(pos("DetachDisk") < pos("DeleteDisk"));
    assert!(pos("DeleteDisk") < ops.iter().rposition(|o| o == "TagResource").unwrap());
    let create = s
        .fake
        .calls()
        .into_iter()
        .find(|c| c.operation == "CreateDiskFromSnapshot")
        .unwrap();
    assert_eq!(create.body["availabilityZone"], "us-east-1a");
    let tags: Vec<String> = create.body["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            format!(
                "{}={}",
                t["key"].as_str().unwrap(),
                t["value"].as_str().unwrap()
            )
        })
        .collect();
    assert!(
        tags.contains(&"lightsnap:scratch=true".to_string()),
        "{tags:?}"
    );
    assert!(
        tags.contains(&"lightsnap:scratch-instance=web-1".to_string()),
        "{tags:?}"
    );
    // The human report says the same; --latest finds the same snapshot.
    let mp = s.fs.mount_point.display().to_string();
    let r = s.run(&["verify", "--latest", &mp]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.starts_with("verify s1 (disk data-1): clean\n"),
        "{r:?}"
    );
    assert!(
        r.stdout.contains("tagged lightsnap:verified=clean"),
        "{r:?}"
    );
}

#[test]
fn a_corrupted_restore_fails_is_tagged_failed_and_its_disk_is_deleted() {
    let Some(s) = Restore::new(
        "a_corrupted_restore_fails_is_tagged_failed_and_its_disk_is_deleted",
        FsKind::Ext4,
        &[],
    ) else {
        return;
    };
    s.snapshot("s1");
    let log = s.verify_hook("");
    s.fake
        .add_fault(Fault::parse("CreateDiskFromSnapshot=corrupt-disk@1").unwrap());
    let r = s.run(&["verify", "s1", "--output", "json"]);
    assert_eq!(r.code, 18, "{r:?}");
    let doc = json_doc(&r);
    assert_eq!(doc["result"], "failed");
    assert_eq!(doc["error"]["exit_code"], 18);
    assert!(
        doc["failures"][0]
            .as_str()
            .unwrap()
            .contains("no ext4, XFS, btrfs or FAT superblock"),
        "{doc}"
    );
    assert_eq!(s.tags_of("s1")["lightsnap:verified"], "failed");
    assert_eq!(s.disk_names(), ["data-1"], "the scratch disk is deleted");
    assert_no_loops_under(s.scratch.path());
    assert!(
        !log.exists(),
        "no hook runs against a disk that failed its check"
    );
    // The snapshot itself is untouched: verified clean once the fault is used up.
    let r = s.run(&["verify", "s1"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(s.tags_of("s1")["lightsnap:verified"], "clean");
    // What cannot be verified is refused before anything is made.
    let made = s
        .fake
        .calls()
        .iter()
        .filter(|c| c.operation == "CreateDiskFromSnapshot")
        .count();
    for (args, code, says) in [
        (vec!["verify"], 2, "name the snapshot to verify"),
        (
            vec!["verify", "--latest"],
            2,
            "--latest needs a PATH or --disk NAME",
        ),
        (vec!["verify", "nope"], 3, "there is no snapshot named nope"),
        (
            vec!["verify", "--latest", "--disk", "data-9"],
            3,
            "no completed snapshot of disk data-9",
        ),
    ] {
        let r = s.run(&args);
        assert_eq!(r.code, code, "{args:?}: {r:?}");
        assert!(r.stderr.contains(says), "{args:?}: {r:?}");
    }
    let after = s
        .fake
        .calls()
        .iter()
        .filter(|c| c.operation == "CreateDiskFromSnapshot")
        .count();
    assert_eq!(made, after);
}

/// A run killed (SIGKILL) while its verify hook runs leaves its scratch disk attached and
/// mounted; the next verify unmounts, detaches and deletes it first.
#[test]
fn a_killed_run_leaves_a_scratch_disk_the_next_one_removes() {
    let Some(s) = Restore::new(
        "a_killed_run_leaves_a_scratch_disk_the_next_one_removes",
        FsKind::Ext4,
        &[],
    ) else {
        return;
    };
    s.snapshot("s1");
    let pid_file = s.scratch.path().join("hook.pid");
    s.verify_hook(&format!(
        "if [ ! -e {p}.done ]; then echo $$ > {p}; touch {p}.done; exec sleep 600; fi",
        p = pid_file.display()
    ));
    let child = spawn(&mut s.lightsnap(&["verify", "s1"]));
    wait_until("the verify hook runs", Duration::from_secs(60), || {
        std::fs::read_to_string(&pid_file).is_ok_and(|t| t.ends_with('\n'))
    });
    kill(child.id(), nix::sys::signal::Signal::SIGKILL);
    // The hook holds lightsnap's stderr open: it goes before lightsnap's output is read.
    let hook_pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    kill(hook_pid, nix::sys::signal::Signal::SIGKILL);
    let killed = wait_result(child);
    assert_eq!(killed.code, -1, "{killed:?}");
    let names = s.disk_names();
    assert_eq!(names.len(), 2, "the killed run left its scratch disk");
    let left = names.iter().find(|n| *n != "data-1").unwrap().clone();
    assert!(left.starts_with("s1-verify-"), "{left}");
    let mount = s.scratch.path().join("run/verify").join(&left);
    assert!(
        lightsnap::kernel::mountinfo::read()
            .unwrap()
            .iter()
            .any(|m| m.mount_point == mount),
        "the killed run left its mount"
    );
    // status --refresh and plan list it.
    let r = s.run(&["status", "--refresh"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains(&format!("scratch disk {left}")), "{r:?}");
    let mp = s.fs.mount_point.display().to_string();
    let r = s.run(&["plan", &mp, "--output", "json"]);
    assert_eq!(r.code, 0, "{r:?}");
    let listed = &json_doc_of("plan", &r)["scratch_disks"][0];
    assert_eq!(listed["name"], left.as_str(), "{r:?}");
    assert_eq!(listed["instance"], "web-1");
    assert_eq!(listed["snapshot"], "s1");

    let r = s.run(&["verify", "s1", "--output", "json"]);
    assert_eq!(r.code, 0, "{r:?}");
    let doc = json_doc(&r);
    assert_eq!(doc["leftovers_removed"], serde_json::json!([left]), "{doc}");
    assert_eq!(doc["result"], "clean");
    assert!(
        !lightsnap::kernel::mountinfo::read()
            .unwrap()
            .iter()
            .any(|m| m.mount_point.starts_with(&mount)),
        "unmounted"
    );
    assert_eq!(s.disk_names(), ["data-1"]);
    assert_no_loops_under(s.scratch.path());
}

/// A copy of the system disk is recorded for the boot step (`restore::bootcopy`) before
/// AttachDisk, the record is there while it is attached (the hook sees it) and gone once it
/// is detached; a run SIGKILLed while it is attached leaves the record, and the next
/// verify's leftover clean-up detaches and deletes the copy and clears it.
#[test]
fn a_system_copy_is_recorded_while_attached_and_cleared_when_detached() {
    let Some(s) = Restore::with(
        "a_system_copy_is_recorded_while_attached_and_cleared_when_detached",
        FsKind::Ext4,
        &[],
        true,
    ) else {
        return;
    };
    s.snapshot("sys1");
    let records = s.scratch.path().join("system-copies");
    let seen = s.scratch.path().join("records-seen");
    let pid_file = s.scratch.path().join("hook.pid");
    s.verify_hook(&format!(
        "ls {r} > {seen}\nif [ -e {p}.kill ] && [ ! -e {p}.done ]; then echo $$ > {p}; touch {p}.done; exec sleep 600; fi",
        r = records.display(),
        seen = seen.display(),
        p = pid_file.display()
    ));
    let r = s.run(&["verify", "sys1", "--output", "json"]);
    assert_eq!(r.code, 0, "{r:?}");
    let doc = json_doc(&r);
    let copy = doc["scratch_disk"].as_str().unwrap().to_string();
    assert_eq!(doc["disk"], "web-1-system", "{doc}");
    assert_eq!(
        std::fs::read_to_string(&seen).unwrap().trim(),
        format!("{copy}.json"),
        "the hook saw the record"
    );
    assert!(r.stderr.contains("is a copy of the system disk"), "{r:?}");
    let left: Vec<_> = std::fs::read_dir(&records).unwrap().collect();
    assert!(left.is_empty(), "the record is cleared: {left:?}");

    // Killed while the copy is attached: the record stays, naming it.
    std::fs::write(format!("{}.kill", pid_file.display()), "").unwrap();
    let child = spawn(&mut s.lightsnap(&["verify", "sys1"]));
    wait_until("the verify hook runs", Duration::from_secs(60), || {
        std::fs::read_to_string(&pid_file).is_ok_and(|t| t.ends_with('\n'))
    });
    kill(child.id(), nix::sys::signal::Signal::SIGKILL);
    let hook_pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    kill(hook_pid, nix::sys::signal::Signal::SIGKILL);
    assert_eq!(wait_result(child).code, -1);
    let names: Vec<String> = std::fs::read_dir(&records)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(records.join(&names[0])).unwrap()).unwrap();
    let killed_copy = record["disk"].as_str().unwrap().to_string();
    assert_eq!(names[0], format!("{killed_copy}.json"));
    assert_eq!(record["by"], "verify");
    assert_eq!(record["snapshot"], "sys1");
    assert!(
        record["serial"]
            .as_str()
            .is_some_and(|v| v.starts_with("vol")),
        "{record}"
    );
    assert!(s.disk_names().contains(&killed_copy));

    // The next verify removes the leftover first and clears its record.
    let r = s.run(&["verify", "sys1", "--output", "json"]);
    assert_eq!(r.code, 0, "{r:?}");
    let doc = json_doc(&r);
    assert_eq!(
        doc["leftovers_removed"],
        serde_json::json!([killed_copy]),
        "{doc}"
    );
    let left: Vec<_> = std::fs::read_dir(&records).unwrap().collect();
    assert!(left.is_empty(), "the record is cleared: {left:?}");
    assert_no_loops_under(s.scratch.path());
}

/// `thaw --recover --boot` (the boot step's command, as its unit runs it): nothing recorded,
/// nothing to do; a recorded copy whose disk is not here has its record cleared with a note;
/// a record that names no serial is kept and said (exit 1: the unit shows failed).
#[test]
fn the_boot_step_clears_the_record_of_a_copy_that_is_not_here() {
    let test = "the_boot_step_clears_the_record_of_a_copy_that_is_not_here";
    if !root_or_skip(test) {
        return;
    }
    let scratch = Scratch::new();
    let fake = fake(&scratch, seed(&[], None));
    let records = scratch.path().join("system-copies");
    let boot = || {
        let mut cmd = lightsnap(&scratch, &fake);
        cmd.env("LIGHTSNAP_SYSTEM_COPY_WAIT_MS", "200").args([
            "thaw",
            "--recover",
            "--boot",
            "--output",
            "json",
        ]);
        finish(&mut cmd)
    };
    let r = boot();
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        json_doc_of("thaw-boot", &r)["system_copies"],
        serde_json::json!([])
    );

    std::fs::create_dir_all(&records).unwrap();
    let record = |disk: &str, serial: Option<&str>| {
        serde_json::json!({
            "disk": disk, "snapshot": "sys1", "by": "verify", "path": "/dev/xvdf",
            "volume_id": serial.map(|s| s.replacen("vol", "vol-", 1)), "serial": serial,
            "system_serial": "vol0000000000000000a", "time_utc": "2026-12-07T10:00:00Z",
        })
    };
    std::fs::write(
        records.join("gone-verify.json"),
        record("gone-verify", Some("vol0dead0dead0dead0de")).to_string(),
    )
    .unwrap();
    let r = boot();
    assert_eq!(r.code, 0, "{r:?}");
    let doc = json_doc_of("thaw-boot", &r);
    assert_eq!(doc["system_copies"][0]["action"], "absent", "{doc}");
    assert_eq!(doc["system_copies"][0]["disk"], "gone-verify", "{doc}");
    assert!(r.stderr.contains("its record is cleared"), "{r:?}");
    assert!(!records.join("gone-verify.json").exists());

    std::fs::write(
        records.join("blind-verify.json"),
        record("blind-verify", None).to_string(),
    )
    .unwrap();
    let r = boot();
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(
        json_doc_of("thaw-boot", &r)["system_copies"][0]["action"],
        "kept",
        "{r:?}"
    );
    assert!(records.join("blind-verify.json").exists());
}

/// A disk that is not a scratch disk of this instance is never touched: another instance's
/// scratch disk, and an operator's disk that happens to carry the scratch tag alone.
#[test]
fn verify_never_touches_a_disk_it_did_not_create() {
    let Some(s) = Restore::new(
        "verify_never_touches_a_disk_it_did_not_create",
        FsKind::Ext4,
        &[],
    ) else {
        return;
    };
    s.snapshot("s1");
    let sdk = sdk(&s.fake, "us-east-1");
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        sdk.create_disk_from_snapshot()
            .disk_name("their-verify")
            .disk_snapshot_name("s1")
            .availability_zone("us-east-1a")
            .size_in_gb(8)
            .tags(tag("lightsnap:scratch", "true"))
            .tags(tag("lightsnap:scratch-instance", "web-2"))
            .send()
            .await
            .unwrap();
        sdk.tag_resource()
            .resource_name("data-1")
            .tags(tag("lightsnap:scratch", "true"))
            .send()
            .await
            .unwrap();
    });
    let r = s.run(&["verify", "s1", "--output", "json"]);
    assert_eq!(r.code, 0, "{r:?}");
    let mine = scratch_name(&json_doc(&r));
    let touched: Vec<String> = s
        .fake
        .calls()
        .into_iter()
        .filter(|c| {
            matches!(
                c.operation.as_str(),
                "DeleteDisk" | "DetachDisk" | "AttachDisk"
            )
        })
        .map(|c| format!("{} {}", c.operation, c.body["diskName"].as_str().unwrap()))
        .collect();
    assert_eq!(
        touched,
        [
            format!("AttachDisk {mine}"),
            format!("DetachDisk {mine}"),
            format!("DeleteDisk {mine}")
        ],
        "only its own scratch disk"
    );
    let mut names = s.disk_names();
    names.sort();
    assert_eq!(names, ["data-1", "their-verify"]);
}

/// A Lightsail client of the test's own, signed for `region`.
fn sdk(fake: &Fake, region: &str) -> aws_sdk_lightsail::Client {
    let creds = aws_sdk_lightsail::config::Credentials::new(
        fake_lightsail::DEFAULT_ACCESS_KEY,
        fake_lightsail::DEFAULT_SECRET_KEY,
        None,
        None,
        "test",
    );
    let config = aws_sdk_lightsail::Config::builder()
        .behavior_version(aws_sdk_lightsail::config::BehaviorVersion::latest())
        .region(aws_sdk_lightsail::config::Region::new(region.to_string()))
        .endpoint_url(fake.endpoint())
        .credentials_provider(creds)
        .build();
    aws_sdk_lightsail::Client::from_conf(config)
}

fn tag(k: &str, v: &str) -> aws_sdk_lightsail::types::Tag {
    aws_sdk_lightsail::types::Tag::builder()
        .key(k)
        .value(v)
        .build()
}

/// `--copy-to-region`: CopySnapshot signed for the target region, the source's tags
/// re-applied there; `run`'s retention and `prune --region` treat the copies as a series of
/// their own; a failed copy keeps the snapshot and exits 19.
#[test]
fn copies_to_another_region_are_tagged_there_and_pruned_as_their_own_series() {
    let Some(s) = Restore::new(
        "copies_to_another_region_are_tagged_there_and_pruned_as_their_own_series",
        FsKind::Ext4,
        &["eu-west-2"],
    ) else {
        return;
    };
    let mp = s.fs.mount_point.display().to_string();
    let r = s.run(&[
        "freeze-and-snap",
        &mp,
        "--snapshot-name",
        "s1",
        "--tag",
        "team=ops",
        "--copy-to-region",
        "eu-west-2",
        "--output",
        "json",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let doc = json_doc(&r);
    assert_eq!(doc["copies"][0]["region"], "eu-west-2", "{doc}");
    assert_eq!(doc["copies"][0]["copy"], "s1");
    let copy = s
        .fake
        .calls()
        .into_iter()
        .find(|c| c.operation == "CopySnapshot")
        .expect("a CopySnapshot call");
    assert_eq!(
        copy.region.as_deref(),
        Some("eu-west-2"),
        "signed for the target region"
    );
    assert_eq!(copy.body["sourceRegion"], "us-east-1");
    assert_eq!(copy.body["sourceSnapshotName"], "s1");
    let tagged = s
        .fake
        .calls()
        .into_iter()
        .filter(|c| c.operation == "TagResource" && c.region.as_deref() == Some("eu-west-2"))
        .count();
    assert_eq!(tagged, 1);
    let there = s.fake.snapshots_in("eu-west-2");
    let copied = &there["diskSnapshots"][0];
    assert_eq!(copied["name"], "s1", "{there}");
    let tags: Vec<String> = copied["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            format!(
                "{}={}",
                t["key"].as_str().unwrap(),
                t["value"].as_str().unwrap()
            )
        })
        .collect();
    for want in [
        "team=ops",
        "lightsnap:consistency=frozen",
        "lightsnap:copy-of=us-east-1/s1",
    ] {
        assert!(tags.contains(&want.to_string()), "{want}: {tags:?}");
    }
    // list shows the copy in its region, as lightsnap's own.
    let r = s.run(&["list", "--region", "eu-west-2", "--output", "json"]);
    assert_eq!(r.code, 0, "{r:?}");
    let listed = json_doc(&r);
    assert_eq!(listed["snapshots"][0]["name"], "s1");
    assert_eq!(listed["snapshots"][0]["own"], true);

    // `run` with a retention of 1 and copy_to_region: each region keeps its newest.
    write_conf(
        &s.scratch,
        "etc/lightsnap/config.toml",
        &format!(
            "copy_to_region = \"eu-west-2\"\n[retention]\nkeep = 1\n[[snapshot]]\npath = \"{mp}\"\n"
        ),
    );
    for name in ["r1", "r2"] {
        let r = s.run(&["run", "--snapshot-name", name, "--output", "json"]);
        assert_eq!(r.code, 0, "{r:?}");
    }
    let names = |v: serde_json::Value| -> Vec<String> {
        let mut n: Vec<String> = v["diskSnapshots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_string())
            .collect();
        n.sort();
        n
    };
    assert_eq!(names(s.fake.snapshots()), ["r2"]);
    assert_eq!(names(s.fake.snapshots_in("eu-west-2")), ["r2"]);

    // A copy that fails: the snapshot stays, exit 19.
    s.fake
        .add_fault(Fault::parse("CopySnapshot=error:InvalidInputException:nope@1").unwrap());
    let r = s.run(&[
        "freeze-and-snap",
        &mp,
        "--snapshot-name",
        "s9",
        "--copy-to-region",
        "eu-west-2",
    ]);
    assert_eq!(r.code, 19, "{r:?}");
    assert!(r.stderr.contains("s9 was taken and is kept"), "{r:?}");
    assert!(names(s.fake.snapshots()).contains(&"s9".to_string()));
}

/// `verify_every = 2`: `run` verifies the newest snapshot of its targets every second run;
/// `status` and the metrics show the last verification.
#[test]
fn run_verifies_every_n_runs_and_status_and_metrics_show_it() {
    let Some(s) = Restore::new(
        "run_verifies_every_n_runs_and_status_and_metrics_show_it",
        FsKind::Ext4,
        &[],
    ) else {
        return;
    };
    let mp = s.fs.mount_point.display().to_string();
    let metrics = s.scratch.path().join("lightsnap.prom");
    write_conf(
        &s.scratch,
        "etc/lightsnap/config.toml",
        &format!(
            "verify_every = 2\nmetrics_file = \"{}\"\n[[snapshot]]\npath = \"{mp}\"\n",
            metrics.display()
        ),
    );
    let r = s.run(&["run", "--snapshot-name", "r1", "--output", "json"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        json_doc(&r).get("verified").is_none(),
        "not due at the first run: {r:?}"
    );
    assert!(!s
        .operations()
        .contains(&"CreateDiskFromSnapshot".to_string()));
    let r = s.run(&["run", "--snapshot-name", "r2", "--output", "json"]);
    assert_eq!(r.code, 0, "{r:?}");
    let doc = json_doc_of("run", &r);
    assert_eq!(doc["verified"][0]["snapshot"], "r2", "{doc}");
    assert_eq!(doc["verified"][0]["result"], "clean");
    assert_eq!(s.tags_of("r2")["lightsnap:verified"], "clean");
    assert_eq!(s.disk_names(), ["data-1"]);

    let r = s.run(&["status", "--output", "json"]);
    let st = json_doc(&r);
    let v = &st["targets"][0]["last_verification"];
    assert_eq!(
        (v["snapshot"].as_str(), v["result"].as_str()),
        (Some("r2"), Some("clean")),
        "{st}"
    );
    assert_eq!(st["targets"][0]["runs_since_verification"], 0);
    let r = s.run(&["status"]);
    assert!(r.stdout.contains("last verification"), "{r:?}");
    assert!(r.stdout.contains("snapshot r2 clean"), "{r:?}");
    let text = std::fs::read_to_string(&metrics).unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("lightsnap_last_verification_clean{") && l.ends_with(" 1")),
        "{text}"
    );
    // The third run is not due again.
    let r = s.run(&["run", "--snapshot-name", "r3", "--output", "json"]);
    assert!(json_doc(&r).get("verified").is_none(), "{r:?}");
}

/// XFS and btrfs: the journal replayed on the scratch copy (XFS, by a mount with `nouuid`:
/// its twin is mounted here), then `xfs_repair -n` / `btrfs check --readonly`, and the
/// read-only mount the hook reads.
#[test]
fn xfs_and_btrfs_snapshots_verify_clean() {
    for (kind, checker) in [
        (FsKind::Xfs, "xfs_repair -n"),
        (FsKind::Btrfs, "btrfs check --readonly"),
    ] {
        let test = format!("xfs_and_btrfs_snapshots_verify_clean ({kind:?})");
        let Some(s) = Restore::new(&test, kind, &[]) else {
            return;
        };
        s.snapshot("s1");
        let log = s.verify_hook("");
        let r = s.run(&["verify", "s1", "--output", "json"]);
        assert_eq!(r.code, 0, "{kind:?}: {r:?}");
        let doc = json_doc(&r);
        assert!(
            doc["checks"][0]["checker"]
                .as_str()
                .unwrap()
                .starts_with(checker),
            "{doc}"
        );
        assert!(
            std::fs::read_to_string(&log)
                .unwrap()
                .ends_with(" restored\n"),
            "{kind:?}"
        );
        assert_eq!(s.tags_of("s1")["lightsnap:verified"], "clean");
        assert_eq!(s.disk_names(), ["data-1"]);
    }
}

/// A stop request (SIGTERM) while a verify hook runs, and a `--timeout` that passes there:
/// the hook's process group is ended, everything undone, nothing tagged; 143, then 20.
#[test]
fn a_stop_request_or_the_timeout_undoes_everything() {
    let Some(s) = Restore::new(
        "a_stop_request_or_the_timeout_undoes_everything",
        FsKind::Ext4,
        &[],
    ) else {
        return;
    };
    s.snapshot("s1");
    let pid_file = s.scratch.path().join("hook.pid");
    // The hook holds a file open on the restored filesystem, so the unmount must wait for
    // its group to be gone.
    s.verify_hook(&format!(
        "exec 3< \"$LIGHTSNAP_VERIFY_MOUNT/hello.txt\"; echo $$ > {p}.tmp; mv {p}.tmp {p}; exec sleep 600",
        p = pid_file.display()
    ));
    let child = spawn(&mut s.lightsnap(&["verify", "s1"]));
    wait_until("the verify hook runs", Duration::from_secs(60), || {
        pid_file.exists()
    });
    let hook_pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    kill(child.id(), nix::sys::signal::Signal::SIGTERM);
    let r = wait_result(child);
    assert_eq!(r.code, 143, "{r:?}");
    assert!(
        r.stderr.contains("stopped by SIGTERM during verify"),
        "{r:?}"
    );
    wait_until("the hook's group is gone", Duration::from_secs(10), || {
        !alive(hook_pid)
    });
    let untagged = |s: &Restore| s.tags_of("s1").get("lightsnap:verified").is_none();
    assert!(untagged(&s));
    assert_eq!(s.disk_names(), ["data-1"]);
    assert_no_loops_under(s.scratch.path());
    let mount = s.scratch.path().join("run/verify");
    let mounted = || {
        lightsnap::kernel::mountinfo::read()
            .unwrap()
            .iter()
            .any(|m| m.mount_point.starts_with(&mount))
    };
    assert!(!mounted());

    std::fs::remove_file(&pid_file).unwrap();
    let r = s.run(&["verify", "s1", "--timeout", "3s", "--output", "json"]);
    assert_eq!(r.code, 20, "{r:?}");
    let doc = json_doc(&r);
    assert_eq!(doc["result"], "incomplete");
    assert!(doc["error"]["message"]
        .as_str()
        .unwrap()
        .contains("did not finish within --timeout 3s"));
    let hook_pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    wait_until("the hook's group is gone", Duration::from_secs(10), || {
        !alive(hook_pid)
    });
    assert!(untagged(&s));
    assert_eq!(s.disk_names(), ["data-1"]);
    assert!(!mounted());
}

impl Restore {
    /// A scratch disk of snapshot `s1` as a killed rehearsal of this instance leaves it:
    /// made with this instance's scratch tags, attached to it at `/dev/xvdg` (the fake's
    /// loop device over its copy, linked at `<scratch>/dev/xvdg`). Returns that loop device.
    fn leftover(&self, name: &str) -> PathBuf {
        let sdk = sdk(&self.fake, "us-east-1");
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            sdk.create_disk_from_snapshot()
                .disk_name(name)
                .disk_snapshot_name("s1")
                .availability_zone("us-east-1a")
                .size_in_gb(8)
                .tags(tag("lightsnap:scratch", "true"))
                .tags(tag("lightsnap:scratch-instance", "web-1"))
                .tags(tag("lightsnap:scratch-of", "s1"))
                .tags(tag("lightsnap:owner", "us-east-1/web-1"))
                .send()
                .await
                .unwrap();
            // Pending at the first look, as in Lightsail.
            loop {
                let d = sdk.get_disk().disk_name(name).send().await.unwrap();
                if d.disk().and_then(|d| d.state()).map(|s| s.as_str()) == Some("available") {
                    break;
                }
            }
            sdk.attach_disk()
                .disk_name(name)
                .instance_name("web-1")
                .disk_path("/dev/xvdg")
                .send()
                .await
                .unwrap();
        });
        let (device, _) = self
            .fake
            .attached_device(name)
            .expect("attached as a loop device");
        device
    }

    /// The calls that detach or delete `disk`.
    fn changes_of(&self, disk: &str) -> Vec<String> {
        self.fake
            .calls()
            .into_iter()
            .filter(|c| matches!(c.operation.as_str(), "DetachDisk" | "DeleteDisk"))
            .filter(|c| c.body["diskName"] == disk)
            .map(|c| c.operation)
            .collect()
    }
}

/// Mounts `device` at `at` (made if missing) with `options`, by the mount command.
fn mount_at(device: &Path, at: &Path, options: &str) {
    std::fs::create_dir_all(at).unwrap();
    let out = run(std::process::Command::new("mount")
        .args(["-o", options])
        .arg(device)
        .arg(at));
    assert!(out.status.success(), "mount {}: {out:?}", at.display());
}

fn umount_at(at: &Path) {
    let out = run(std::process::Command::new("umount").arg(at));
    assert!(out.status.success(), "umount {}: {out:?}", at.display());
}

fn is_mounted(at: &Path) -> bool {
    lightsnap::kernel::mountinfo::read()
        .unwrap()
        .iter()
        .any(|m| m.mount_point == at)
}

/// A disk someone named like the old fixed scratch name (`s1-verify`, no tags) is never
/// detached nor deleted: `lightsnap verify s1` used to restore to that very name, be refused,
/// and delete the other disk in its undo.
#[test]
fn a_disk_named_like_the_scratch_disk_is_never_touched() {
    let Some(s) = Restore::new(
        "a_disk_named_like_the_scratch_disk_is_never_touched",
        FsKind::Ext4,
        &[],
    ) else {
        return;
    };
    s.snapshot("s1");
    let sdk = sdk(&s.fake, "us-east-1");
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        sdk.create_disk_from_snapshot()
            .disk_name("s1-verify")
            .disk_snapshot_name("s1")
            .availability_zone("us-east-1a")
            .size_in_gb(8)
            .send()
            .await
            .unwrap();
    });
    let r = s.run(&["verify", "s1", "--output", "json"]);
    assert_eq!(r.code, 0, "{r:?}");
    let mine = scratch_name(&json_doc(&r));
    assert!(s.changes_of("s1-verify").is_empty(), "{r:?}");
    assert_eq!(s.changes_of(&mine), ["DetachDisk", "DeleteDisk"]);
    let mut names = s.disk_names();
    names.sort();
    assert_eq!(names, ["data-1", "s1-verify"]);
}

/// A killed rehearsal's scratch disk that an operator has mounted elsewhere (recovering
/// files from it) is reported and left attached, and the mount stays; once unmounted, the
/// next verify removes it.
#[test]
fn a_leftover_mounted_elsewhere_is_reported_not_detached() {
    let Some(s) = Restore::new(
        "a_leftover_mounted_elsewhere_is_reported_not_detached",
        FsKind::Ext4,
        &[],
    ) else {
        return;
    };
    s.snapshot("s1");
    let device = s.leftover("s1-verify-dead0001");
    let recovering = s.scratch.path().join("recovering");
    mount_at(&device, &recovering, "ro,noload");
    let r = s.run(&["verify", "s1", "--output", "json"]);
    // Read, then let go, before asserting: a failure leaves nothing mounted.
    let still = is_mounted(&recovering);
    let changes = s.changes_of("s1-verify-dead0001");
    let names = s.disk_names();
    umount_at(&recovering);
    assert_eq!(r.code, 0, "{r:?}");
    let doc = json_doc(&r);
    let kept = doc["leftovers_kept"][0].as_str().unwrap_or_default();
    assert!(
        kept.contains("s1-verify-dead0001") && kept.contains(&recovering.display().to_string()),
        "{doc}"
    );
    assert_eq!(doc["leftovers_removed"], serde_json::json!([]), "{doc}");
    assert!(still, "the operator's mount stays");
    assert!(changes.is_empty(), "{changes:?}");
    assert!(names.contains(&"s1-verify-dead0001".to_string()));
    // status and check say so (check's verdict, about snapshots, stays OK).
    let r = s.run(&["status"]);
    assert!(
        r.stdout
            .contains("left by verify: scratch disk s1-verify-dead0001"),
        "{r:?}"
    );
    let r = s.run(&["check", "--max-age", "1d"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout
            .contains("left by verify: scratch disk s1-verify-dead0001"),
        "{r:?}"
    );
    // Unmounted: the next run (no verification configured) removes it.
    let mp = s.fs.mount_point.display().to_string();
    write_conf(
        &s.scratch,
        "etc/lightsnap/config.toml",
        &format!("[[snapshot]]\npath = \"{mp}\"\n"),
    );
    let r = s.run(&["run", "--snapshot-name", "r1", "--output", "json"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        json_doc_of("run", &r)["scratch_leftovers"]["removed"],
        serde_json::json!(["s1-verify-dead0001"]),
        "{r:?}"
    );
    assert_eq!(s.disk_names(), ["data-1"]);
    assert_no_loops_under(s.scratch.path());
    let r = s.run(&["status"]);
    assert!(!r.stdout.contains("left by verify"), "{r:?}");
}

/// A rehearsal killed while its journal-replay mount was up (`<run>/verify/.replay-loopN`,
/// where lightsnap made it) leaves that mount on the scratch disk's device: the next verify
/// unmounts it, then removes the disk.
#[test]
fn a_replay_mount_left_by_a_kill_is_cleaned_by_the_next_verify() {
    let Some(s) = Restore::new(
        "a_replay_mount_left_by_a_kill_is_cleaned_by_the_next_verify",
        FsKind::Ext4,
        &[],
    ) else {
        return;
    };
    s.snapshot("s1");
    let device = s.leftover("s1-verify-dead0002");
    let replay = s.scratch.path().join("run/verify").join(format!(
        ".replay-{}",
        device.file_name().unwrap().to_string_lossy()
    ));
    mount_at(&device, &replay, "rw,nosuid,nodev,noexec");
    let r = s.run(&["verify", "s1", "--output", "json"]);
    let left_mounted = is_mounted(&replay);
    if left_mounted {
        umount_at(&replay);
    }
    assert_eq!(r.code, 0, "{r:?}");
    assert!(!left_mounted, "the replay mount is unmounted: {r:?}");
    assert_eq!(
        json_doc(&r)["leftovers_removed"],
        serde_json::json!(["s1-verify-dead0002"]),
        "{r:?}"
    );
    assert!(!replay.exists());
    assert_eq!(s.disk_names(), ["data-1"]);
    assert_no_loops_under(s.scratch.path());
}

/// A checker that is not installed, and a restored disk holding a layout lightsnap does not
/// check (a LUKS header where the filesystem was): "could not check" — exit 21, tagged
/// `unchecked`, naming what was not checked; never clean, never failed.
#[test]
fn what_cannot_be_checked_exits_21_tagged_unchecked() {
    let Some(s) = Restore::new(
        "what_cannot_be_checked_exits_21_tagged_unchecked",
        FsKind::Ext4,
        &[],
    ) else {
        return;
    };
    s.snapshot("s1");
    // A PATH with blockdev and without e2fsck.
    let bin = s.scratch.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let blockdev = ["/usr/sbin/blockdev", "/sbin/blockdev", "/usr/bin/blockdev"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("blockdev (util-linux)");
    std::os::unix::fs::symlink(blockdev, bin.join("blockdev")).unwrap();
    let r = finish(
        s.lightsnap(&["verify", "s1", "--output", "json"])
            .env("PATH", &bin),
    );
    assert_eq!(r.code, 21, "{r:?}");
    let doc = json_doc(&r);
    assert_eq!(doc["result"], "unchecked", "{doc}");
    assert_eq!(doc["error"]["exit_code"], 21);
    assert!(
        doc["unchecked"][0].as_str().unwrap().contains("e2fsck"),
        "{doc}"
    );
    assert_eq!(doc["checks"][0]["unchecked"], true);
    assert_eq!(s.tags_of("s1")["lightsnap:verified"], "unchecked");
    assert_eq!(s.disk_names(), ["data-1"]);
    // status says what was not checked.
    let r = s.run(&["status"]);
    assert!(r.stdout.contains("snapshot s1 unchecked: "), "{r:?}");
    assert!(r.stdout.contains("e2fsck"), "{r:?}");

    // A LUKS header over the snapshot's first MiB: nothing lightsnap checks.
    let image = s.fake.snapshot_image("s1");
    let mut head = vec![0u8; 1 << 20];
    head[..6].copy_from_slice(b"LUKS\xba\xbe");
    use std::io::{Seek, Write};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&image)
        .unwrap();
    f.rewind().unwrap();
    f.write_all(&head).unwrap();
    drop(f);
    let r = s.run(&["verify", "s1"]);
    assert_eq!(r.code, 21, "{r:?}");
    assert!(r.stdout.contains(": COULD NOT CHECK\n"), "{r:?}");
    assert!(r.stdout.contains("LUKS"), "{r:?}");
    assert!(r.stderr.contains("could not be checked in full"), "{r:?}");
    assert_eq!(s.tags_of("s1")["lightsnap:verified"], "unchecked");
    assert_eq!(s.disk_names(), ["data-1"]);
}

/// A timer `run` while a `verify` runs: the snapshots are taken and the run succeeds; its
/// due verification waits for a later run (it used to fail at once on the run lock).
#[test]
fn a_run_does_not_fail_while_a_verify_runs() {
    let Some(s) = Restore::new("a_run_does_not_fail_while_a_verify_runs", FsKind::Ext4, &[]) else {
        return;
    };
    s.snapshot("s1");
    let pid_file = s.scratch.path().join("hook.pid");
    s.verify_hook(&format!(
        "if [ -e {p} ]; then exit 0; fi; echo $$ > {p}.tmp; mv {p}.tmp {p}; exec sleep 600",
        p = pid_file.display()
    ));
    let mp = s.fs.mount_point.display().to_string();
    let verify = spawn(&mut s.lightsnap(&["verify", "s1"]));
    wait_until("the verify hook runs", Duration::from_secs(60), || {
        pid_file.exists()
    });
    write_conf(
        &s.scratch,
        "etc/lightsnap/config.toml",
        &format!(
            "verify_hook_dir = \"{}\"\nverify_every = 1\n[[snapshot]]\npath = \"{mp}\"\n",
            s.scratch.path().join("verify.d").display()
        ),
    );
    let r = s.run(&["run", "--snapshot-name", "r1", "--output", "json"]);
    kill(verify.id(), nix::sys::signal::Signal::SIGTERM);
    let stopped = wait_result(verify);
    assert_eq!(r.code, 0, "{r:?}");
    let doc = json_doc(&r);
    assert!(doc.get("verified").is_none(), "{doc}");
    assert!(
        r.stderr.contains("a verification is running already"),
        "{r:?}"
    );
    assert!(s.tags_of("r1").get("lightsnap:consistency").is_some());
    assert_eq!(stopped.code, 143, "{stopped:?}");
    assert_eq!(s.disk_names(), ["data-1"]);
    // Still due: the next run verifies.
    let r = s.run(&["run", "--snapshot-name", "r2", "--output", "json"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(json_doc(&r)["verified"][0]["snapshot"], "r2", "{r:?}");
}

/// Issue 22: the directory verify mounts restored copies under is root's alone (0700), made so
/// even if it was there before with a looser mode: a restored disk may hold files other users
/// must not read.
#[test]
fn the_verify_mount_directory_is_roots_alone() {
    use std::os::unix::fs::PermissionsExt;
    let Some(s) = Restore::new(
        "the_verify_mount_directory_is_roots_alone",
        FsKind::Ext4,
        &[],
    ) else {
        return;
    };
    s.snapshot("s1");
    let mounts = s.scratch.path().join("run/verify");
    std::fs::create_dir_all(&mounts).unwrap();
    std::fs::set_permissions(&mounts, std::fs::Permissions::from_mode(0o755)).unwrap();
    let seen = s.scratch.path().join("mode-seen");
    s.verify_hook(&format!(
        "stat -c %a \"$(dirname \"$LIGHTSNAP_VERIFY_MOUNT\")\" > {}",
        seen.display()
    ));
    let r = s.run(&["verify", "s1"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        std::fs::read_to_string(&seen).unwrap().trim(),
        "700",
        "while the copy was mounted: {r:?}"
    );
    let mode = std::fs::metadata(&mounts).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o700);
}
