//! `lightsnap restore` end to end, as root: snapshots taken by `freeze-and-snap` of a loop
//! filesystem, restored by the fake Lightsail in attach mode (a loop device over a copy of
//! the snapshot image, linked at `DIR/<basename of the attachment path>`; lightsnap is told
//! where with the test-only `LIGHTSNAP_DEV_DIR`): files read back from a read-only mount,
//! released; a data disk rolled back; an instance snapshot made into a new instance.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

/// A one-disk set-up: the data disk `data-1` is seeded at `/dev/xvdf`, backed by the test's
/// loop filesystem (named in the configuration, as Lightsail's path is not the loop's), and
/// the fake attaches restored disks as loop devices in `<scratch>/dev`.
struct Restore {
    fake: Fake,
    fs: LoopFs,
    scratch: Scratch,
}

impl Restore {
    fn new(test: &str, kind: FsKind) -> Option<Self> {
        Self::with(test, kind, "")
    }

    fn with(test: &str, kind: FsKind, config: &str) -> Option<Self> {
        Self::built(test, kind, config, true)
    }

    /// `owned`: the live disk `data-1` carries this instance's ownership tag, as an
    /// administrator tags it for `restore --replace`; else it is untagged, as a user made it.
    fn built(test: &str, kind: FsKind, config: &str, owned: bool) -> Option<Self> {
        if !root_or_skip(test) || !tool_or_skip(test, kind.mkfs_tool()) {
            return None;
        }
        let scratch = Scratch::new();
        let fs = LoopFs::create(&scratch, "data", kind);
        let tags = if owned {
            format!("tags = {{ \"lightsnap:owner\" = \"us-east-1/{INSTANCE}\" }}\n")
        } else {
            String::new()
        };
        let toml = format!(
            "self_instance = \"{INSTANCE}\"\n[[instances]]\nname = \"{INSTANCE}\"\ninstance_id = \"{INSTANCE_ID}\"\n\
             [[disks]]\nname = \"data-1\"\npath = \"/dev/xvdf\"\nattached_to = \"{INSTANCE}\"\nsize_gb = 1\nbacking = \"{}\"\n{tags}",
            fs.device.display()
        );
        let seed = fake_lightsail::Seed::from_toml_str(&toml).expect("seed");
        let dir = scratch.path().join("snapshots");
        std::fs::create_dir_all(&dir).unwrap();
        let mut opts = fake_lightsail::Options::new(seed, dir);
        opts.snapshot_duration = Duration::ZERO;
        opts.attach_dir = Some(scratch.path().join("dev"));
        let fake = Fake::start(opts).expect("fake lightsail in attach mode");
        write_conf(
            &scratch,
            "etc/lightsnap/config.toml",
            &format!(
                "{config}\n[[snapshot]]\npath = \"{}\"\ndisk = \"data-1\"\n",
                fs.mount_point.display()
            ),
        );
        Some(Self { fake, fs, scratch })
    }

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
    fn snapshot(&self, name: &str, text: &str) {
        std::fs::write(self.fs.mount_point.join("hello.txt"), text).unwrap();
        let mp = self.fs.mount_point.display().to_string();
        let r = self.run(&["freeze-and-snap", &mp, "--snapshot-name", name]);
        assert_eq!(r.code, 0, "{r:?}");
    }

    /// The block storage disks the fake holds, with their tags.
    fn disks(&self) -> Vec<serde_json::Value> {
        let d = self.fake.disks();
        d.as_array()
            .or_else(|| d["disks"].as_array())
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|d| d["isSystemDisk"] != true)
            .collect()
    }

    fn disk(&self, name: &str) -> serde_json::Value {
        self.disks()
            .into_iter()
            .find(|d| d["name"] == name)
            .unwrap_or_else(|| panic!("no disk {name}"))
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
    /// Loop devices over this test's files set read-write again (a failed test may leave
    /// one read-only), so their next user is not handed a read-only device.
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

fn tag(d: &serde_json::Value, key: &str) -> Option<String> {
    d["tags"]
        .as_array()?
        .iter()
        .find(|t| t["key"] == key)
        .and_then(|t| t["value"].as_str())
        .map(str::to_string)
}

fn is_mount_point(p: &Path) -> bool {
    lightsnap::kernel::mountinfo::read()
        .unwrap()
        .iter()
        .any(|m| m.mount_point == p)
}

/// Restores the snapshot of a `kind` filesystem read-only beside its original (same UUID),
/// reads the file back, releases it.
fn files_back(test: &str, kind: FsKind) {
    let Some(s) = Restore::new(test, kind) else {
        return;
    };
    s.snapshot("s1", "as it was\n");
    std::fs::write(s.fs.mount_point.join("hello.txt"), "changed since\n").unwrap();
    let files = s.scratch.path().join("files");
    let f = files.display().to_string();
    let r = s.run(&["restore", "s1", "--mount", &f, "--output", "json"]);
    assert_eq!(r.code, 0, "{r:?}");
    let doc = json_doc_of("restore", &r);
    let name = doc["restored_disk"].as_str().unwrap().to_string();
    assert!(name.starts_with("s1-restore-"), "{doc}");
    assert_eq!(doc["mounted_at"][0], f.as_str(), "{doc}");
    assert_eq!(doc["release"], format!("lightsnap restore --release {f}"));
    assert_eq!(doc["checks"][0]["clean"], true, "{doc}");
    let _guard = Unmount(files.clone());
    assert_eq!(
        std::fs::read_to_string(files.join("hello.txt")).unwrap(),
        "as it was\n"
    );
    assert_eq!(
        std::fs::read_to_string(s.fs.mount_point.join("hello.txt")).unwrap(),
        "changed since\n",
        "the original is untouched"
    );
    // Read-only, and a directory of root's alone.
    let err = std::fs::write(files.join("new"), "x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    let d = s.disk(&name);
    assert_eq!(tag(&d, "lightsnap:restore-of").as_deref(), Some("s1"));
    assert_eq!(
        tag(&d, "lightsnap:restore-instance").as_deref(),
        Some(INSTANCE)
    );
    assert_eq!(
        tag(&d, "lightsnap:owner").as_deref(),
        Some(format!("us-east-1/{INSTANCE}").as_str())
    );
    // status --refresh lists it while it is attached.
    let st = s.run(&["status", "--refresh", "--output", "json"]);
    assert_eq!(st.code, 0, "{st:?}");
    let listed = json_doc_of("status", &st)["restored_disks"].clone();
    assert_eq!(listed[0]["name"], name.as_str(), "{listed}");

    let r = s.run(&["restore", "--release", &f, "--output", "json"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(json_doc_of("restore", &r)["restored_disk"], name.as_str());
    assert!(!is_mount_point(&files));
    assert!(
        s.disks().iter().all(|d| d["name"] != name.as_str()),
        "deleted"
    );
    let ops = s.operations();
    let detach = ops.iter().position(|o| o == "DetachDisk").unwrap();
    assert_eq!(
        ops[detach - 1],
        "GetDisk",
        "read before the detach: {ops:?}"
    );
    assert_eq!(ops.last().map(String::as_str), Some("DeleteDisk"));
}

#[test]
fn ext4_files_come_back_read_only_and_are_released() {
    files_back(
        "ext4_files_come_back_read_only_and_are_released",
        FsKind::Ext4,
    );
}

#[test]
fn xfs_files_come_back_beside_the_original() {
    files_back("xfs_files_come_back_beside_the_original", FsKind::Xfs);
}

#[test]
fn btrfs_files_come_back_beside_the_original() {
    files_back("btrfs_files_come_back_beside_the_original", FsKind::Btrfs);
}

/// A directory that is not empty is refused before anything is made; `--release` of a
/// directory that is no restored disk (the original's mount) is refused, nothing detached.
#[test]
fn a_busy_directory_and_a_foreign_release_are_refused() {
    let Some(s) = Restore::new(
        "a_busy_directory_and_a_foreign_release_are_refused",
        FsKind::Ext4,
    ) else {
        return;
    };
    s.snapshot("s1", "x\n");
    let full = s.scratch.path().join("full");
    std::fs::create_dir_all(&full).unwrap();
    std::fs::write(full.join("keep"), "mine").unwrap();
    let r = s.run(&["restore", "s1", "--mount", &full.display().to_string()]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("not empty"), "{r:?}");
    assert!(!s
        .operations()
        .contains(&"CreateDiskFromSnapshot".to_string()));
    let mp = s.fs.mount_point.display().to_string();
    let r = s.run(&["restore", "--release", &mp]);
    assert_eq!(r.code, 3, "{r:?}");
    assert!(r.stderr.contains("not a disk lightsnap restored"), "{r:?}");
    assert!(s.fs.is_mounted());
    assert!(!s.operations().contains(&"DetachDisk".to_string()));
}

/// The system volume is never replaced from inside: refused with the steps that do it,
/// before anything is asked of Lightsail.
#[test]
fn replacing_the_system_volume_is_refused_with_the_steps() {
    let Some(s) = Restore::new(
        "replacing_the_system_volume_is_refused_with_the_steps",
        FsKind::Ext4,
    ) else {
        return;
    };
    let r = s.run(&["restore", "s1", "--replace", "/", "--yes"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains("never replaces the system volume"),
        "{r:?}"
    );
    assert!(r.stderr.contains("create-instances-from-snapshot"), "{r:?}");
    assert!(s.operations().is_empty(), "{:?}", s.operations());
}

/// A data disk rolled back under a writer: the pre-restore hook stops the writer, the live
/// disk is swapped for the restored one at the same path and mounted at the same place; the
/// records there end at the snapshot's point; the live disk is kept and tagged; the
/// post-restore hook runs.
#[test]
fn a_data_disk_is_rolled_back_under_a_writer() {
    let Some(s) = Restore::with(
        "a_data_disk_is_rolled_back_under_a_writer",
        FsKind::Ext4,
        "",
    ) else {
        return;
    };
    let hooks = s.scratch.path().join("hooks");
    write_conf(
        &s.scratch,
        "etc/lightsnap/config.toml",
        &format!(
            "hook_dir = \"{}\"\n[[snapshot]]\npath = \"{}\"\ndisk = \"data-1\"\n",
            hooks.display(),
            s.fs.mount_point.display()
        ),
    );
    let pidfile = s.scratch.path().join("writer.pid");
    let log = s.scratch.path().join("hooks.log");
    hook(
        &hooks,
        "10-writer",
        &format!(
            "echo \"$1 $LIGHTSNAP_RESULT\" >> {log}\np=$(cat {pid})\ncase \"$1\" in pre-restore) kill $p; while [ -e /proc/$p ] && [ \"$(awk '{{print $3}}' /proc/$p/stat)\" != Z ]; do sleep 0.05; done;; esac\n",
            log = log.display(),
            pid = pidfile.display()
        ),
    );
    let records = s.fs.mount_point.join("records");
    let mut writer = Writer::start(&records, 5);
    std::fs::write(&pidfile, writer_pid(&writer).to_string()).unwrap();
    let mp = s.fs.mount_point.display().to_string();
    let r = s.run(&["freeze-and-snap", &mp, "--snapshot-name", "s1"]);
    assert_eq!(r.code, 0, "{r:?}");
    // More records after the snapshot: these must be gone after the roll-back.
    for _ in 0..5 {
        writer.next_ack(Duration::from_secs(30));
    }
    let before = std::fs::read_to_string(&records).unwrap().lines().count();
    let r = s.run(&[
        "restore",
        "s1",
        "--replace",
        &mp,
        "--yes",
        "--output",
        "json",
    ]);
    let acks = writer.stop();
    assert_eq!(r.code, 0, "{r:?}");
    let doc = json_doc_of("restore", &r);
    let restored = doc["restored_disk"].as_str().unwrap().to_string();
    assert_eq!(doc["replaced_disk"], "data-1");
    assert_eq!(doc["attached_at"], "/dev/xvdf");
    assert_eq!(doc["checks"][0]["clean"], true, "{doc}");
    // PATH is now the restored disk's device, mounted where the original was.
    let m = lightsnap::kernel::mountinfo::read()
        .unwrap()
        .into_iter()
        .rev()
        .find(|m| m.mount_point == s.fs.mount_point)
        .expect("PATH is mounted again");
    assert_ne!(m.source, s.fs.device.display().to_string(), "{m:?}");
    assert_eq!(
        s.fake
            .attached_device(&restored)
            .map(|(d, _)| d.display().to_string()),
        Some(m.source.clone())
    );
    let text = std::fs::read_to_string(&records).unwrap();
    let after = text.lines().count();
    let cut = snapshot_time_ms(&s, "s1");
    let n = check_records(&text, &acks, cut);
    assert_eq!(n, after);
    assert!(
        after < before,
        "records written after the snapshot are gone: {after} < {before}"
    );
    // Every record there was acknowledged before the snapshot's call answered.
    assert!(
        acks.iter()
            .filter(|(seq, _)| (*seq as usize) < after)
            .all(|(_, t)| *t <= cut + 1.0),
        "records after the snapshot's point survived"
    );
    // The original disk: detached, kept, tagged.
    let live = s.disk("data-1");
    assert_eq!(live["isAttached"], false, "{live}");
    assert_eq!(
        tag(&live, "lightsnap:replaced-by").as_deref(),
        Some(restored.as_str())
    );
    assert!(tag(&live, "lightsnap:replaced-at").is_some_and(|t| t.ends_with('Z')));
    // The disk now live says whose place it took: never deletable by the instance's key.
    assert_eq!(
        tag(&s.disk(&restored), "lightsnap:replaces").as_deref(),
        Some("data-1")
    );
    assert!(!s.operations().iter().any(|o| o == "DeleteDisk"));
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "pre-freeze \npost-thaw success\npre-restore \npost-restore success\n"
    );
    let _ = std::process::Command::new("umount")
        .arg(&s.fs.mount_point)
        .status();
}

/// A failed attach of the restored disk (the fake's fault) puts the original back: attached
/// at its path, mounted as it was; the restored disk removed; exit 22.
#[test]
fn a_failed_attach_puts_the_original_back() {
    let Some(s) = Restore::new("a_failed_attach_puts_the_original_back", FsKind::Ext4) else {
        return;
    };
    s.snapshot("s1", "as it was\n");
    std::fs::write(s.fs.mount_point.join("hello.txt"), "now\n").unwrap();
    s.fake
        .add_fault(Fault::parse("AttachDisk=error:OperationFailureException:no@1").unwrap());
    let mp = s.fs.mount_point.display().to_string();
    let r = s.run(&[
        "restore",
        "s1",
        "--replace",
        &mp,
        "--yes",
        "--output",
        "json",
    ]);
    assert_eq!(r.code, 22, "{r:?}");
    assert!(r.stdout.contains("original disk data-1 is back"), "{r:?}");
    assert!(s.fs.is_mounted());
    assert_eq!(
        std::fs::read_to_string(s.fs.mount_point.join("hello.txt")).unwrap(),
        "now\n"
    );
    let live = s.disk("data-1");
    assert_eq!(live["isAttached"], true, "{live}");
    assert_eq!(live["path"], "/dev/xvdf");
    assert_eq!(tag(&live, "lightsnap:replaced-by"), None);
    left_detached_for_an_administrator(&s, &r);
}

/// After a swap that failed once begun: the restored disk, tagged `lightsnap:replaces` before
/// the live disk was detached, is left detached (no key of the instance's may delete it), and
/// the message names the command that deletes it.
fn left_detached_for_an_administrator(s: &Restore, r: &RunResult) {
    let restored: Vec<serde_json::Value> = s
        .disks()
        .into_iter()
        .filter(|d| d["name"] != "data-1")
        .collect();
    assert_eq!(restored.len(), 1, "{restored:?}");
    let d = &restored[0];
    let name = d["name"].as_str().unwrap();
    assert!(name.starts_with("s1-restore-"), "{d}");
    assert_eq!(d["isAttached"], false, "{d}");
    assert_eq!(tag(d, "lightsnap:replaces").as_deref(), Some("data-1"));
    let said = format!("{}{}", r.stdout, r.stderr);
    assert!(
        said.contains(&format!("aws lightsail delete-disk --disk-name {name}")),
        "{r:?}"
    );
    assert!(
        !s.operations().iter().any(|o| o == "DeleteDisk"),
        "{:?}",
        s.operations()
    );
}

/// A live disk the user made carries no ownership tag: `restore --replace` refuses it up
/// front (exit 25) with the administrator's command that tags it, and nothing is changed —
/// no mutating call, the filesystem mounted as it was; once tagged, the roll-back goes on.
#[test]
fn an_untagged_live_disk_is_refused_up_front_with_the_command_that_tags_it() {
    let Some(s) = Restore::built(
        "an_untagged_live_disk_is_refused_up_front_with_the_command_that_tags_it",
        FsKind::Ext4,
        "",
        false,
    ) else {
        return;
    };
    s.snapshot("s1", "as it was\n");
    std::fs::write(s.fs.mount_point.join("hello.txt"), "now\n").unwrap();
    let before = s.fake.calls().len();
    let mp = s.fs.mount_point.display().to_string();
    let r = s.run(&["restore", "s1", "--replace", &mp, "--yes"]);
    assert_eq!(r.code, 25, "{r:?}");
    let command = format!(
        "aws lightsail tag-resource --resource-name data-1 --tags key=lightsnap:owner,value=us-east-1/{INSTANCE} --region us-east-1"
    );
    assert!(r.stderr.contains(&command), "{r:?}");
    assert!(r.stderr.contains("Nothing was changed"), "{r:?}");
    let mutating: Vec<String> = s.fake.calls()[before..]
        .iter()
        .map(|c| c.operation.clone())
        .filter(|o| !o.starts_with("IMDS") && !o.starts_with("Get"))
        .collect();
    assert_eq!(mutating, Vec::<String>::new());
    assert!(s.fs.is_mounted());
    assert_eq!(
        std::fs::read_to_string(s.fs.mount_point.join("hello.txt")).unwrap(),
        "now\n"
    );
    assert_eq!(s.disks().len(), 1, "{:?}", s.disks());
    assert_eq!(tag(&s.disk("data-1"), "lightsnap:owner"), None);
}

fn writer_pid(w: &Writer) -> u32 {
    w.pid()
}

/// When the fake answered CreateDiskSnapshot for `name` (unix ms): the snapshot's point.
fn snapshot_time_ms(s: &Restore, name: &str) -> f64 {
    let call = s
        .fake
        .calls()
        .into_iter()
        .find(|c| c.operation == "CreateDiskSnapshot" && c.body.to_string().contains(name))
        .expect("the snapshot call");
    call.received_at_ms
}

/// `--new-instance`: printed first (nothing called), then with `--yes`
/// CreateInstancesFromSnapshot with the snapshot's bundle, zone and attached-disk mapping;
/// the running instance untouched. A disk snapshot is refused (exit 4).
#[test]
fn a_new_instance_is_printed_then_made_from_an_instance_snapshot() {
    let test = "a_new_instance_is_printed_then_made_from_an_instance_snapshot";
    if !root_or_skip(test) {
        return;
    }
    let scratch = Scratch::new();
    let root = LoopFs::create(&scratch, "root", FsKind::Ext4);
    let data = LoopFs::create(&scratch, "data", FsKind::Ext4);
    let fake = fake(
        &scratch,
        seed(&[("data-1", &data.device)], Some(&root.device)),
    );
    let r =
        finish(lightsnap(&scratch, &fake).args(["snap-instance", "--snapshot-name", "whole-1"]));
    assert_eq!(r.code, 0, "{r:?}");
    let dev = data.device.display().to_string();
    let r = finish(lightsnap(&scratch, &fake).args([
        "restore",
        "whole-1",
        "--new-instance",
        "web-2",
        "--output",
        "json",
    ]));
    assert_eq!(r.code, 0, "{r:?}");
    let doc = json_doc_of("restore", &r);
    assert_eq!(doc["created"], false, "{doc}");
    assert_eq!(doc["bundle_id"], "micro_3_0");
    assert_eq!(doc["availability_zone"], "us-east-1a");
    assert_eq!(
        doc["disk_mapping"],
        serde_json::json!([{"disk": "data-1", "original_disk_path": dev, "new_disk_name": "web-2-data-1"}])
    );
    assert!(doc["command"]
        .as_str()
        .unwrap()
        .starts_with("aws lightsail create-instances-from-snapshot --instance-snapshot-name whole-1 --instance-names web-2"));
    let made = |fake: &Fake| {
        fake.calls()
            .into_iter()
            .filter(|c| c.operation == "CreateInstancesFromSnapshot")
            .collect::<Vec<_>>()
    };
    assert!(made(&fake).is_empty(), "printed only");

    let r = finish(lightsnap(&scratch, &fake).args([
        "restore",
        "whole-1",
        "--new-instance",
        "web-2",
        "--yes",
        "--output",
        "json",
    ]));
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(json_doc_of("restore", &r)["created"], true);
    let calls = made(&fake);
    assert_eq!(calls.len(), 1);
    let body = &calls[0].body;
    assert_eq!(body["instanceSnapshotName"], "whole-1");
    assert_eq!(body["instanceNames"], serde_json::json!(["web-2"]));
    assert_eq!(body["bundleId"], "micro_3_0");
    assert_eq!(body["availabilityZone"], "us-east-1a");
    assert_eq!(
        body["attachedDiskMapping"],
        serde_json::json!({"data-1": [{"originalDiskPath": dev, "newDiskName": "web-2-data-1"}]})
    );
    assert_eq!(calls[0].status, Some(200), "{:?}", calls[0]);
    assert_eq!(
        body["tags"],
        serde_json::json!([
            {"key": "lightsnap:restore-of", "value": "whole-1"},
            {"key": "lightsnap:owner", "value": format!("us-east-1/{INSTANCE}")},
        ])
    );
    // The running instance: nothing detached, stopped or changed.
    assert!(fake.calls().iter().all(|c| !matches!(
        c.operation.as_str(),
        "DetachDisk" | "AttachDisk" | "DeleteDisk" | "CreateDiskFromSnapshot"
    )));
    assert!(root.is_mounted() && data.is_mounted());

    // A disk snapshot is not an instance snapshot.
    let mp = data.mount_point.display().to_string();
    let r =
        finish(lightsnap(&scratch, &fake).args(["freeze-and-snap", &mp, "--snapshot-name", "d1"]));
    assert_eq!(r.code, 0, "{r:?}");
    let r = finish(lightsnap(&scratch, &fake).args(["restore", "d1", "--new-instance", "web-3"]));
    assert_eq!(r.code, 4, "{r:?}");
    assert!(r.stderr.contains("is a disk snapshot"), "{r:?}");
}

/// A roll-back of a mount in use is refused with the process holding it: nothing replaced
/// (exit 5), the restored disk made for it deleted, the post-restore hook told `failure`.
#[test]
fn a_busy_mount_is_not_rolled_back_and_its_holder_is_named() {
    let Some(s) = Restore::new(
        "a_busy_mount_is_not_rolled_back_and_its_holder_is_named",
        FsKind::Ext4,
    ) else {
        return;
    };
    s.snapshot("s1", "as it was\n");
    let mut holder = std::process::Command::new("sleep")
        .arg("600")
        .current_dir(&s.fs.mount_point)
        .spawn()
        .unwrap();
    let mp = s.fs.mount_point.display().to_string();
    let r = s.run(&["restore", "s1", "--replace", &mp, "--yes"]);
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(r.code, 5, "{r:?}");
    assert!(r.stderr.contains("disk data-1 was not replaced"), "{r:?}");
    assert!(
        r.stderr
            .contains(&format!("pid {} (sleep): cwd", holder.id())),
        "{r:?}"
    );
    assert!(s.fs.is_mounted());
    assert_eq!(s.disk("data-1")["isAttached"], true);
    assert_eq!(
        s.disks().len(),
        1,
        "the restored disk is deleted: {:?}",
        s.disks()
    );
    let ops = s.operations();
    assert!(
        !ops.iter().any(|o| o == "AttachDisk"),
        "nothing attached: {ops:?}"
    );
}

/// Without a terminal and without --yes a roll-back asks nobody: refused (exit 2), nothing
/// made.
#[test]
fn a_roll_back_without_yes_and_without_a_terminal_is_refused() {
    let Some(s) = Restore::new(
        "a_roll_back_without_yes_and_without_a_terminal_is_refused",
        FsKind::Ext4,
    ) else {
        return;
    };
    s.snapshot("s1", "x\n");
    let mp = s.fs.mount_point.display().to_string();
    let r = finish(
        s.lightsnap(&["restore", "s1", "--replace", &mp])
            .stdin(std::process::Stdio::null()),
    );
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("--yes"), "{r:?}");
    assert!(
        r.stderr.contains("detach disk data-1 from /dev/xvdf"),
        "{r:?}"
    );
    assert!(!s.operations().iter().any(|o| o == "CreateDiskFromSnapshot"));
}

/// A file restore whose attach fails leaves nothing: the disk made for it deleted, the
/// directory lightsnap made removed.
#[test]
fn a_failed_file_restore_leaves_nothing() {
    let Some(s) = Restore::new("a_failed_file_restore_leaves_nothing", FsKind::Ext4) else {
        return;
    };
    s.snapshot("s1", "x\n");
    s.fake
        .add_fault(Fault::parse("AttachDisk=error:OperationFailureException:no@1").unwrap());
    let files = s.scratch.path().join("files");
    let r = s.run(&["restore", "s1", "--mount", &files.display().to_string()]);
    assert_ne!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("attaching restored disk"), "{r:?}");
    assert_eq!(s.disks().len(), 1, "{:?}", s.disks());
    assert!(s.operations().contains(&"DeleteDisk".to_string()));
    assert!(!files.exists());
}

/// `--at TIME`: the newest of this instance's snapshots of the disk taken at or before it.
#[test]
fn at_picks_the_newest_snapshot_taken_at_or_before_the_moment() {
    let Some(s) = Restore::new(
        "at_picks_the_newest_snapshot_taken_at_or_before_the_moment",
        FsKind::Ext4,
    ) else {
        return;
    };
    s.snapshot("s1", "first\n");
    let between = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    s.snapshot("s2", "second\n");
    let files = s.scratch.path().join("files");
    let f = files.display().to_string();
    let r = s.run(&[
        "restore", "--disk", "data-1", "--at", &between, "--mount", &f, "--output", "json",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let _guard = Unmount(files.clone());
    assert_eq!(json_doc(&r)["snapshot"], "s1", "{r:?}");
    assert_eq!(
        std::fs::read_to_string(files.join("hello.txt")).unwrap(),
        "first\n"
    );
    let r = s.run(&["restore", "--release", &f]);
    assert_eq!(r.code, 0, "{r:?}");
    let r = s.run(&[
        "restore",
        "--disk",
        "data-1",
        "--at",
        "2000-01-01T00:00:00Z",
        "--mount",
        &f,
    ]);
    assert_eq!(r.code, 3, "{r:?}");
    assert!(
        r.stderr.contains("at or before 2000-01-01T00:00:00Z"),
        "{r:?}"
    );
}

/// Past `--timeout` (an AttachDisk that never answers) everything made is undone.
#[test]
fn a_restore_past_its_timeout_is_undone() {
    let Some(s) = Restore::new("a_restore_past_its_timeout_is_undone", FsKind::Ext4) else {
        return;
    };
    s.snapshot("s1", "x\n");
    s.fake.add_fault(Fault::parse("AttachDisk=hang@1").unwrap());
    let files = s.scratch.path().join("files");
    let r = s.run(&[
        "restore",
        "s1",
        "--mount",
        &files.display().to_string(),
        "--timeout",
        "2s",
    ]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("did not finish within --timeout 2s"),
        "{r:?}"
    );
    assert_eq!(s.disks().len(), 1, "{:?}", s.disks());
    assert!(!files.exists());
}

/// A restored disk that fails its check (the fake corrupts it) is never handed back: it is
/// detached from the path, the original attached there again and mounted as it was (exit 22).
#[test]
fn a_corrupt_restore_is_not_handed_back_and_the_original_returns() {
    let Some(s) = Restore::new(
        "a_corrupt_restore_is_not_handed_back_and_the_original_returns",
        FsKind::Ext4,
    ) else {
        return;
    };
    s.snapshot("s1", "as it was\n");
    std::fs::write(s.fs.mount_point.join("hello.txt"), "now\n").unwrap();
    s.fake
        .add_fault(Fault::parse("CreateDiskFromSnapshot=corrupt-disk@1").unwrap());
    let mp = s.fs.mount_point.display().to_string();
    let r = s.run(&["restore", "s1", "--replace", &mp, "--yes"]);
    assert_eq!(r.code, 22, "{r:?}");
    assert!(r.stderr.contains("is not clean"), "{r:?}");
    assert!(r.stderr.contains("original disk data-1 is back"), "{r:?}");
    let m = s.fs.mountinfo().expect("mounted again");
    assert_eq!(
        std::fs::canonicalize(&m.source).unwrap(),
        std::fs::canonicalize(&s.fs.device).unwrap()
    );
    assert_eq!(
        std::fs::read_to_string(s.fs.mount_point.join("hello.txt")).unwrap(),
        "now\n"
    );
    let live = s.disk("data-1");
    assert_eq!(
        (live["isAttached"].clone(), live["path"].clone()),
        (true.into(), "/dev/xvdf".into())
    );
    left_detached_for_an_administrator(&s, &r);
    let attaches: Vec<String> = s
        .fake
        .calls()
        .into_iter()
        .filter(|c| c.operation == "AttachDisk")
        .map(|c| {
            format!(
                "{} {}",
                c.body["diskName"]
                    .as_str()
                    .unwrap_or("")
                    .split("-restore-")
                    .next()
                    .unwrap(),
                c.body["diskPath"]
            )
        })
        .collect();
    assert_eq!(attaches, ["s1 \"/dev/xvdf\"", "data-1 \"/dev/xvdf\""]);
}
