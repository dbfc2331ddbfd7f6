//! The rehearsal on the scripted Lightsail and a scripted machine: the order of the steps and
//! of their undoing, whatever ends it; leftovers; timeouts; stop requests.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use super::fs::{Found, FsType, Superblock};
use super::host::{Check, Host};
use super::*;
use crate::cloud::lightsail::fake::FakeLightsail;
use crate::cloud::lightsail::{ApiErrorKind, DiskState};
use crate::signals::Never;

/// The machine, scripted: every call logged in the fake's log, so the order of API calls and
/// local steps is one list.
struct Scripted<'a> {
    fake: &'a FakeLightsail,
    clean: bool,
    device_hangs: bool,
    hook_fails: bool,
    mount_fails: bool,
    /// Notified, then hangs, when the check starts (a stop request arriving there).
    stop_in_check: Option<&'a tokio::sync::Notify>,
    /// The check replays a journal (mounts at the replay path it is given), then hangs.
    replay_then_hang: bool,
    /// The checker is not installed.
    no_checker: bool,
    /// What the disk holds (default: one ext4 filesystem).
    found: Option<Vec<Found>>,
    /// Why the device is in use, when it is (an operator's mount).
    busy: Option<String>,
    /// Mounts of the device outside `<mount dir>/<disk>` (an older run's journal replay).
    device_mounts: Vec<PathBuf>,
    mounted: Mutex<Vec<PathBuf>>,
    /// What importing the disk's LVM group gives: its volumes, or why not.
    lvm: Option<Result<Vec<Found>, String>>,
    /// The clones imported and not put away yet (a killed run's, when set from the start).
    clones: Mutex<Vec<String>>,
    /// Putting a clone away fails (a volume of it mounted by someone).
    lvm_busy: bool,
}

impl<'a> Scripted<'a> {
    fn new(fake: &'a FakeLightsail) -> Self {
        Self {
            fake,
            clean: true,
            device_hangs: false,
            hook_fails: false,
            mount_fails: false,
            stop_in_check: None,
            replay_then_hang: false,
            no_checker: false,
            found: None,
            busy: None,
            device_mounts: Vec::new(),
            mounted: Mutex::default(),
            lvm: None,
            clones: Mutex::default(),
            lvm_busy: false,
        }
    }

    fn note(&self, line: String) {
        self.fake.log.lock().unwrap().push(line);
    }
}

impl Host for Scripted<'_> {
    async fn device(&self, disk: &DiskState, path: &str) -> anyhow::Result<PathBuf> {
        self.note(format!("device {} {path}", disk.name));
        if self.device_hangs {
            std::future::pending::<()>().await;
        }
        Ok(PathBuf::from("/dev/nvme9n1"))
    }

    fn device_now(&self, _disk: &DiskState, _path: &str) -> anyhow::Result<Option<PathBuf>> {
        Ok(Some(PathBuf::from("/dev/nvme8n1")))
    }

    fn in_use(&self, _device: &Path) -> Option<String> {
        self.busy.clone()
    }

    fn mounts_of(&self, _device: &Path) -> Vec<PathBuf> {
        let m = self.mounted.lock().unwrap();
        self.device_mounts
            .iter()
            .filter(|p| m.contains(p))
            .cloned()
            .collect()
    }

    fn release(&self, device: &Path) -> anyhow::Result<()> {
        self.note(format!("release {}", device.display()));
        Ok(())
    }

    fn filesystems(&self, device: &Path) -> Vec<Found> {
        if let Some(found) = &self.found {
            return found.clone();
        }
        vec![ext4(device)]
    }

    async fn import_lvm(&self, pvs: &[PathBuf], clone: &str) -> anyhow::Result<Vec<Found>> {
        let pvs: Vec<String> = pvs.iter().map(|p| p.display().to_string()).collect();
        self.note(format!("import {} as {clone}", pvs.join(",")));
        self.clones.lock().unwrap().push(clone.to_string());
        match self.lvm.clone().expect("an LVM answer scripted") {
            Ok(v) => Ok(v),
            Err(why) => Err(super::host::CouldNotCheck(why).into()),
        }
    }

    async fn put_away_lvm(&self, _pvs: &[PathBuf], clone: &str) -> anyhow::Result<()> {
        if !self.clones.lock().unwrap().iter().any(|c| c == clone) {
            return Ok(());
        }
        anyhow::ensure!(
            !self.lvm_busy,
            "deactivating {clone}: Logical volume {clone}/lv in use"
        );
        self.clones.lock().unwrap().retain(|c| c != clone);
        self.note(format!("put away {clone}"));
        Ok(())
    }

    async fn check(&self, fs: &Found, replay_at: &Path) -> Check {
        self.note(format!("check {}", fs.device.display()));
        if let Some(n) = self.stop_in_check {
            n.notify_one();
            std::future::pending::<()>().await;
        }
        if self.replay_then_hang {
            self.note(format!("mount {}", replay_at.display()));
            self.mounted.lock().unwrap().push(replay_at.to_path_buf());
            std::future::pending::<()>().await;
        }
        let device = fs.device.clone();
        if let Some(layout) = fs.layout {
            return Check::unchecked(device, None, "not checked".into(), layout.describe().into());
        }
        if self.no_checker {
            return Check::unchecked(
                device,
                fs.fstype(),
                "e2fsck -f -n".into(),
                "e2fsck could not be started: No such file or directory".into(),
            );
        }
        if self.clean {
            Check::clean(device, fs.fstype(), "e2fsck -f -n".into())
        } else {
            Check::failed(
                device,
                fs.fstype(),
                "e2fsck -f -n".into(),
                "Inode 12 has a bad extent".into(),
            )
        }
    }

    async fn mount(&self, _fs: &Found, at: &Path) -> anyhow::Result<()> {
        self.note(format!("mount {}", at.display()));
        anyhow::ensure!(!self.mount_fails, "mount: wrong fs type, bad superblock");
        self.mounted.lock().unwrap().push(at.to_path_buf());
        Ok(())
    }

    fn unmount(&self, at: &Path) -> anyhow::Result<()> {
        let mut m = self.mounted.lock().unwrap();
        if m.contains(&at.to_path_buf()) {
            m.retain(|p| p != at);
            drop(m);
            self.note(format!("unmount {}", at.display()));
        }
        Ok(())
    }

    fn unmount_leftover(&self, at: &Path) -> anyhow::Result<()> {
        self.unmount(at)
    }

    fn mounts_below(&self, dir: &Path) -> Vec<PathBuf> {
        self.mounted
            .lock()
            .unwrap()
            .iter()
            .filter(|p| p.starts_with(dir))
            .cloned()
            .collect()
    }

    fn system_copy_attaching(&self, record: &super::bootcopy::Record) -> anyhow::Result<()> {
        self.note(format!(
            "record system copy {} {}",
            record.disk,
            record.serial.as_deref().unwrap_or("-")
        ));
        Ok(())
    }

    fn system_copy_detached(&self, disk: &str) {
        self.note(format!("clear system copy {disk}"));
    }

    fn system_copy_attached(&self, name: &str, device: &Path) {
        self.note(format!("system copy {name} {}", device.display()));
    }

    async fn hooks(&self, env: &HookEnv) -> anyhow::Result<()> {
        let at = env.verify_mount.as_ref().unwrap();
        self.note(format!("hooks {}", at.display()));
        anyhow::ensure!(
            !self.hook_fails,
            "hook /etc/lightsnap/verify.d/pg verify failed (exit status: 1)"
        );
        Ok(())
    }
}

fn ext4(device: &Path) -> Found {
    Found {
        device: device.to_path_buf(),
        superblock: Some(Superblock {
            fstype: FsType::Ext4,
            needs_recovery: false,
        }),
        layout: None,
        volume: None,
    }
}

fn me() -> Me {
    Me {
        instance: "web-1".into(),
        availability_zone: "us-east-1a".into(),
        used_paths: vec!["/dev/xvda".into(), "/dev/xvdf".into()],
    }
}

fn snapshot(name: &str) -> SnapshotInfo {
    SnapshotInfo {
        name: name.into(),
        state: "completed".into(),
        progress: Some("100%".into()),
        // This instance's (me()): the verdict goes only on its own snapshots.
        tags: vec![
            ("lightsnap:consistency".into(), "frozen".into()),
            me().owner().tag(),
        ],
        created_at: Some(1.0),
        from: Some("data-1".into()),
        size_gb: Some(32),
        is_from_auto_snapshot: false,
        instance: false,
    }
}

fn settings() -> Settings {
    Settings {
        timeout: Duration::from_secs(1800),
        poll: Duration::from_millis(10),
        mount_dir: PathBuf::from("/run/lightsnap/verify"),
        undo_timeout: Duration::from_secs(600),
    }
}

fn run<S: crate::signals::Stop>(
    fake: &FakeLightsail,
    host: &Scripted,
    stop: &mut S,
) -> Verification {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(verify(
        fake,
        host,
        &me(),
        &snapshot("s1"),
        &settings(),
        stop,
    ))
    .unwrap()
}

/// The calls after the leftover search, the repeated GetDisk looks collapsed, the scratch
/// disk's unique name said as `s1-verify`.
fn steps(fake: &FakeLightsail) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for l in fake.log() {
        let l = unique_said_plain(&l);
        if out.last() == Some(&l) && l.starts_with("GetDisk ") {
            continue;
        }
        out.push(l);
    }
    out
}

/// `s1-verify-0a1b2c3d` → `s1-verify`.
fn unique_said_plain(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(i) = rest.find("s1-verify-") {
        out.push_str(&rest[..i + "s1-verify".len()]);
        let after = &rest[i + "s1-verify-".len()..];
        let hex = after.chars().take_while(|c| c.is_ascii_hexdigit()).count();
        rest = if hex == 8 {
            &after[8..]
        } else {
            &rest[i + "s1-verify".len()..]
        };
    }
    out.push_str(rest);
    out
}

const UNDO: [&str; 4] = [
    "GetDisk s1-verify",
    "DetachDisk s1-verify",
    "GetDisk s1-verify",
    "DeleteDisk s1-verify",
];

#[test]
fn a_clean_rehearsal_is_undone_in_reverse_and_tagged_clean() {
    let fake = FakeLightsail::default();
    let host = Scripted::new(&fake);
    let v = run(&fake, &host, &mut Never);
    assert_eq!(v.result, Outcome::Clean, "{v:?}");
    let mut want = vec![
        "GetDisks",
        "CreateDiskFromSnapshot s1-verify s1",
        "GetDisk s1-verify",
        // xvdf is the instance's: the next free path.
        "AttachDisk s1-verify web-1 /dev/xvdg",
        "GetDisk s1-verify",
        "device s1-verify /dev/xvdg",
        "check /dev/nvme9n1",
        "mount /run/lightsnap/verify/s1-verify",
        "hooks /run/lightsnap/verify/s1-verify",
        "unmount /run/lightsnap/verify/s1-verify",
        "release /dev/nvme9n1",
        // Undo of the attach, then of the create (which finds it detached already).
        "GetDisk s1-verify",
        "DetachDisk s1-verify",
        "GetDisk s1-verify",
        "DeleteDisk s1-verify",
    ];
    want.push("TagResource s1 lightsnap:verified=clean,lightsnap:verified-at=");
    let got = steps(&fake);
    assert_eq!(got.len(), want.len(), "{got:#?}");
    for (g, w) in got.iter().zip(&want) {
        assert!(g.starts_with(w), "{g} is not {w}: {got:#?}");
    }
    assert!(
        fake.disks.lock().unwrap().is_empty(),
        "the scratch disk is gone"
    );
    // The scratch disk carried the tags that make a leftover findable, and only this
    // instance's.
    assert!(v.left_behind.is_empty() && v.hooks_ran && v.tagged.as_deref() == Some("clean"));
}

#[test]
fn a_failed_check_is_tagged_failed_and_everything_is_undone() {
    let fake = FakeLightsail::default();
    let mut host = Scripted::new(&fake);
    host.clean = false;
    let v = run(&fake, &host, &mut Never);
    assert_eq!(v.result, Outcome::Failed);
    assert!(v.failures[0].contains("Inode 12 has a bad extent"), "{v:?}");
    assert!(!v.hooks_ran, "nothing is mounted after a failed check");
    let log = steps(&fake);
    assert!(!log.iter().any(|l| l.starts_with("mount")), "{log:#?}");
    let tail: Vec<&str> = log
        .iter()
        .rev()
        .skip(1)
        .take(4)
        .rev()
        .map(String::as_str)
        .collect();
    assert_eq!(tail, UNDO, "{log:#?}");
    assert!(log
        .last()
        .unwrap()
        .starts_with("TagResource s1 lightsnap:verified=failed"));
    assert!(fake.disks.lock().unwrap().is_empty());
}

#[test]
fn a_failing_mount_or_hook_fails_the_verification_and_is_unmounted() {
    for (mount_fails, hook_fails) in [(true, false), (false, true)] {
        let fake = FakeLightsail::default();
        let mut host = Scripted::new(&fake);
        host.mount_fails = mount_fails;
        host.hook_fails = hook_fails;
        let v = run(&fake, &host, &mut Never);
        assert_eq!(v.result, Outcome::Failed, "{v:?}");
        let log = steps(&fake);
        assert_eq!(
            log.iter().any(|l| l.starts_with("hooks")),
            hook_fails,
            "{log:#?}"
        );
        assert!(host.mounted.lock().unwrap().is_empty(), "{log:#?}");
        assert!(fake.disks.lock().unwrap().is_empty());
        assert!(log.last().unwrap().contains("verified=failed"), "{log:#?}");
    }
}

/// The timeout ends the rehearsal wherever it is (here: waiting for the device), and the
/// undo still runs in full; nothing is tagged.
#[test]
fn the_timeout_undoes_everything_and_tags_nothing() {
    let fake = FakeLightsail::default();
    let mut host = Scripted::new(&fake);
    host.device_hangs = true;
    let v = run(&fake, &host, &mut Never);
    assert_eq!(v.result, Outcome::Incomplete);
    let err = v.error.as_ref().unwrap();
    assert_eq!(
        crate::exit_code::ExitCode::of(err),
        crate::exit_code::ExitCode::VerifyIncomplete
    );
    assert!(
        err.to_string()
            .contains("did not finish within --timeout 30m"),
        "{err}"
    );
    let log = steps(&fake);
    let tail: Vec<&str> = log.iter().rev().take(4).rev().map(String::as_str).collect();
    assert_eq!(tail, UNDO, "{log:#?}");
    assert!(!log.iter().any(|l| l.starts_with("TagResource")));
    assert!(fake.disks.lock().unwrap().is_empty());
}

/// A stop request in the middle of a check: undone in full, exit code of the signal.
#[test]
fn a_stop_request_undoes_everything() {
    struct Fires<'a>(&'a tokio::sync::Notify);
    impl crate::signals::Stop for Fires<'_> {
        async fn recv(&mut self) -> crate::exit_code::ExitCode {
            self.0.notified().await;
            crate::exit_code::ExitCode::Terminated
        }
    }
    let fake = FakeLightsail::default();
    let notify = tokio::sync::Notify::new();
    let mut host = Scripted::new(&fake);
    host.stop_in_check = Some(&notify);
    let v = run(&fake, &host, &mut Fires(&notify));
    assert_eq!(v.result, Outcome::Incomplete);
    let err = v.error.as_ref().unwrap();
    assert_eq!(
        crate::exit_code::ExitCode::of(err),
        crate::exit_code::ExitCode::Terminated
    );
    let log = steps(&fake);
    let tail: Vec<&str> = log.iter().rev().take(4).rev().map(String::as_str).collect();
    assert_eq!(tail, UNDO, "{log:#?}");
}

/// AttachDisk refused: the disk made is deleted (there is nothing to detach), the API's
/// error is the rehearsal's.
#[test]
fn an_api_failure_deletes_what_was_made() {
    let fake = FakeLightsail::default().failing("AttachDisk", ApiErrorKind::Rejected);
    let host = Scripted::new(&fake);
    let v = run(&fake, &host, &mut Never);
    assert_eq!(v.result, Outcome::Incomplete);
    assert_eq!(
        crate::exit_code::ExitCode::of(v.error.as_ref().unwrap()),
        crate::exit_code::ExitCode::ApiRejected
    );
    let log = steps(&fake);
    assert!(!log.iter().any(|l| l.starts_with("DetachDisk")), "{log:#?}");
    assert_eq!(log.last().unwrap(), "DeleteDisk s1-verify");
    assert!(fake.disks.lock().unwrap().is_empty());
}

/// A DeleteDisk that fails leaves the disk, said in the report, for the next run.
#[test]
fn what_cannot_be_undone_is_reported() {
    let fake = FakeLightsail::default().failing("DeleteDisk", ApiErrorKind::Unavailable);
    let host = Scripted::new(&fake);
    let v = run(&fake, &host, &mut Never);
    assert_eq!(v.result, Outcome::Clean);
    assert!(
        v.left_behind[0].starts_with("scratch disk s1-verify"),
        "{v:?}"
    );
    assert_eq!(fake.disks.lock().unwrap().len(), 1);
}

fn disk(name: &str, tags: &[(&str, &str)], attached_to: Option<&str>) -> DiskState {
    DiskState {
        name: name.into(),
        state: if attached_to.is_some() {
            "in-use"
        } else {
            "available"
        }
        .into(),
        path: attached_to.map(|_| "/dev/xvdg".into()),
        attached_to: attached_to.map(str::to_string),
        is_attached: attached_to.is_some(),
        support_code: None,
        availability_zone: Some("us-east-1a".into()),
        size_gb: Some(8),
        tags: tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

/// A killed run's scratch disk (attached here, mounted) is unmounted, detached and deleted
/// first; another instance's scratch disk and a disk without the tag are never touched.
#[test]
fn leftovers_of_this_instance_only_are_removed_first() {
    let fake = FakeLightsail::default();
    let ours = [(SCRATCH_TAG, "true"), (SCRATCH_INSTANCE_TAG, "web-1")];
    let theirs = [(SCRATCH_TAG, "true"), (SCRATCH_INSTANCE_TAG, "web-2")];
    fake.disks.lock().unwrap().extend([
        disk("old-verify", &ours, Some("web-1")),
        disk("their-verify", &theirs, Some("web-2")),
        disk("data-2", &[], None),
    ]);
    let host = Scripted::new(&fake);
    let left_mount = PathBuf::from("/run/lightsnap/verify/old-verify");
    host.mounted.lock().unwrap().push(left_mount.clone());
    let v = run(&fake, &host, &mut Never);
    assert_eq!(v.leftovers_removed, vec!["old-verify"]);
    assert_eq!(v.result, Outcome::Clean);
    let log = steps(&fake);
    let first: Vec<&str> = log.iter().take(7).map(String::as_str).collect();
    assert_eq!(
        first,
        [
            "GetDisks",
            "unmount /run/lightsnap/verify/old-verify",
            "release /dev/nvme8n1",
            "GetDisk old-verify",
            "DetachDisk old-verify",
            "GetDisk old-verify",
            "DeleteDisk old-verify",
        ],
        "{log:#?}"
    );
    assert!(
        !log.iter()
            .any(|l| l.contains("their-verify") || l.contains("data-2")),
        "{log:#?}"
    );
    let names: Vec<String> = fake
        .disks
        .lock()
        .unwrap()
        .iter()
        .map(|d| d.name.clone())
        .collect();
    assert_eq!(names, ["their-verify", "data-2"]);
}

#[test]
fn instance_snapshots_and_unfinished_ones_are_refused_before_anything() {
    let mut s = snapshot("i1");
    s.instance = true;
    let err = check_snapshot(&s).unwrap_err();
    assert_eq!(
        crate::exit_code::ExitCode::of(&err),
        crate::exit_code::ExitCode::Unsupported
    );
    assert!(
        err.to_string().contains("CreateInstancesFromSnapshot"),
        "{err}"
    );
    let mut s = snapshot("p1");
    s.state = "pending".into();
    let err = check_snapshot(&s).unwrap_err();
    assert_eq!(
        crate::exit_code::ExitCode::of(&err),
        crate::exit_code::ExitCode::Usage
    );
}

/// An undo that hangs (DetachDisk never answers) is bounded too, and says what it left.
#[test]
fn a_hanging_undo_is_bounded_and_reported() {
    let fake = FakeLightsail::default().hanging("DetachDisk");
    let host = Scripted::new(&fake);
    let v = run(&fake, &host, &mut Never);
    assert_eq!(v.result, Outcome::Clean);
    assert!(
        v.left_behind
            .iter()
            .any(|l| l.contains("did not finish within 10m")),
        "{v:?}"
    );
    assert_eq!(fake.disks.lock().unwrap().len(), 1, "left for the next run");
}

/// The operations that change a disk, with their disk.
fn disk_changes(fake: &FakeLightsail) -> Vec<String> {
    fake.log()
        .into_iter()
        .filter(|l| l.starts_with("DetachDisk ") || l.starts_with("DeleteDisk "))
        .collect()
}

/// A disk named like the old fixed scratch name (`s1-verify`) is never touched: the
/// rehearsal's disk has a name of its own.
#[test]
fn a_disk_named_like_the_old_scratch_name_is_never_touched() {
    let fake = FakeLightsail::default();
    fake.disks
        .lock()
        .unwrap()
        .push(disk("s1-verify", &[("team", "ops")], None));
    let host = Scripted::new(&fake);
    let v = run(&fake, &host, &mut Never);
    assert_eq!(v.result, Outcome::Clean, "{v:?}");
    assert_ne!(v.scratch_disk, "s1-verify");
    assert!(v.scratch_disk.starts_with("s1-verify-"), "{v:?}");
    assert!(
        !disk_changes(&fake)
            .iter()
            .any(|l| l.ends_with(" s1-verify")),
        "{:#?}",
        fake.log()
    );
    let names: Vec<String> = fake
        .disks
        .lock()
        .unwrap()
        .iter()
        .map(|d| d.name.clone())
        .collect();
    assert_eq!(names, ["s1-verify"]);
}

/// Another creator takes the name in the instant before CreateDiskFromSnapshot (which is
/// then refused): nothing was made, so nothing is undone — the other disk is neither
/// detached nor deleted. (The step used to be recorded before the call, and its undo
/// deleted the other disk.)
#[test]
fn a_name_taken_in_a_race_is_not_undone() {
    let fake = FakeLightsail {
        disk_name_race: Some(vec![(SCRATCH_TAG.into(), "true".into())]),
        ..Default::default()
    };
    let host = Scripted::new(&fake);
    let v = run(&fake, &host, &mut Never);
    assert_eq!(v.result, Outcome::Incomplete, "{v:?}");
    assert!(
        format!("{:#}", v.error.as_ref().unwrap()).contains("already in use"),
        "{v:?}"
    );
    assert!(disk_changes(&fake).is_empty(), "{:#?}", fake.log());
    assert_eq!(fake.disks.lock().unwrap().len(), 1, "the other disk stays");
    assert!(v.left_behind.is_empty(), "{v:?}");
}

/// An ambiguous answer (the call may have landed): the disk is this rehearsal's, and undone,
/// only when it carries this rehearsal's tags.
#[test]
fn an_ambiguous_create_is_undone_only_when_the_disk_is_ours() {
    let fake = FakeLightsail {
        create_disk_answer_lost: Some(ApiErrorKind::Timeout),
        ..Default::default()
    };
    let host = Scripted::new(&fake);
    let v = run(&fake, &host, &mut Never);
    assert_eq!(v.result, Outcome::Incomplete);
    assert!(fake.disks.lock().unwrap().is_empty(), "{:#?}", fake.log());
    assert_eq!(steps(&fake).last().unwrap(), "DeleteDisk s1-verify");
}

/// Before any DetachDisk or DeleteDisk the disk is read and its tags checked: a disk whose
/// tags say it is not this instance's scratch disk is refused, said, and left.
#[test]
fn the_undo_reads_the_tags_before_deleting() {
    let fake = FakeLightsail::default();
    let me = me();
    let d = disk(
        "s1-verify",
        &[(SCRATCH_TAG, "true"), (SCRATCH_INSTANCE_TAG, "web-2")],
        None,
    );
    fake.disks.lock().unwrap().push(d);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    let err = rt
        .block_on(scratch::remove(
            &fake,
            &me,
            "s1-verify",
            Duration::from_millis(10),
        ))
        .unwrap_err();
    assert!(err.downcast_ref::<scratch::NotOurs>().is_some(), "{err:#}");
    let err = rt
        .block_on(scratch::detach(
            &fake,
            &me,
            "s1-verify",
            Duration::from_millis(10),
        ))
        .unwrap_err();
    assert!(err.to_string().contains("left alone"), "{err:#}");
    assert_eq!(fake.log(), ["GetDisk s1-verify", "GetDisk s1-verify"]);
}

/// A killed run's scratch disk whose device is mounted elsewhere (an operator recovering
/// files from it) is reported and left attached; the rehearsal goes on.
#[test]
fn a_leftover_in_use_is_reported_not_detached() {
    let fake = FakeLightsail::default();
    let ours = [(SCRATCH_TAG, "true"), (SCRATCH_INSTANCE_TAG, "web-1")];
    fake.disks
        .lock()
        .unwrap()
        .push(disk("old-verify", &ours, Some("web-1")));
    let mut host = Scripted::new(&fake);
    host.busy = Some("/dev/nvme8n1 is mounted at /root/recovered".into());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    let left = rt
        .block_on(scratch::remove_leftovers(
            &fake,
            &host,
            &me(),
            Path::new("/run/lightsnap/verify"),
            Duration::from_millis(10),
        ))
        .unwrap();
    assert!(left.removed.is_empty());
    assert!(
        left.kept[0].contains("old-verify") && left.kept[0].contains("/root/recovered"),
        "{left:?}"
    );
    assert!(disk_changes(&fake).is_empty(), "{:#?}", fake.log());
    assert!(!fake.log().iter().any(|l| l.starts_with("release")));
    assert_eq!(
        fake.disks.lock().unwrap()[0].attached_to.as_deref(),
        Some("web-1")
    );
}

/// The journal-replay mount is a step: a rehearsal ended while it is mounted (here by the
/// timeout) unmounts it in its undo, before the disk is detached.
#[test]
fn the_replay_mount_is_undone_like_any_step() {
    let fake = FakeLightsail::default();
    let mut host = Scripted::new(&fake);
    host.replay_then_hang = true;
    let v = run(&fake, &host, &mut Never);
    assert_eq!(v.result, Outcome::Incomplete);
    let log = steps(&fake);
    let replay = "/run/lightsnap/verify/s1-verify/.replay-nvme9n1";
    let unmounted = log
        .iter()
        .position(|l| *l == format!("unmount {replay}"))
        .unwrap_or_else(|| panic!("{log:#?}"));
    let detached = log
        .iter()
        .position(|l| l.starts_with("DetachDisk"))
        .unwrap();
    assert!(unmounted < detached, "{log:#?}");
    assert!(host.mounted.lock().unwrap().is_empty());
}

/// A killed run's journal replay of the leftover's device, beside the other mounts (where an
/// older lightsnap made it), is unmounted before the leftover is removed.
#[test]
fn a_leftover_replay_mount_is_unmounted_first() {
    let fake = FakeLightsail::default();
    let ours = [(SCRATCH_TAG, "true"), (SCRATCH_INSTANCE_TAG, "web-1")];
    fake.disks
        .lock()
        .unwrap()
        .push(disk("old-verify", &ours, Some("web-1")));
    let mut host = Scripted::new(&fake);
    let replay = PathBuf::from("/run/lightsnap/verify/.replay-nvme8n1");
    host.device_mounts = vec![replay.clone()];
    host.mounted.lock().unwrap().push(replay.clone());
    let v = run(&fake, &host, &mut Never);
    assert_eq!(v.leftovers_removed, ["old-verify"], "{v:?}");
    let log = steps(&fake);
    assert_eq!(log[1], format!("unmount {}", replay.display()), "{log:#?}");
    assert!(host.mounted.lock().unwrap().is_empty());
}

/// A partition of unknown content beside a clean filesystem, or a checker not installed:
/// "could not check", tagged `unchecked`, naming what was not checked — never clean, never
/// failed.
#[test]
fn what_could_not_be_checked_is_neither_clean_nor_failed() {
    let fake = FakeLightsail::default();
    let mut host = Scripted::new(&fake);
    host.found = Some(vec![
        ext4(Path::new("/dev/nvme9n1p1")),
        Found {
            device: PathBuf::from("/dev/nvme9n1p2"),
            superblock: None,
            layout: Some(super::fs::Layout::Unknown),
            volume: None,
        },
    ]);
    let v = run(&fake, &host, &mut Never);
    assert_eq!(v.result, Outcome::Unchecked, "{v:?}");
    assert!(v.failures.is_empty());
    assert!(
        v.unchecked[0].contains("/dev/nvme9n1p2") && v.unchecked[0].contains("unknown content"),
        "{v:?}"
    );
    assert_eq!(v.tagged.as_deref(), Some("unchecked"));
    assert!(fake
        .log()
        .last()
        .unwrap()
        .starts_with("TagResource s1 lightsnap:verified=unchecked"));
    assert!(
        v.hooks_ran,
        "the filesystem that was checked is still mounted for the hooks"
    );

    let fake = FakeLightsail::default();
    let mut host = Scripted::new(&fake);
    host.no_checker = true;
    let v = run(&fake, &host, &mut Never);
    assert_eq!(v.result, Outcome::Unchecked, "{v:?}");
    assert!(v.unchecked[0].contains("could not be started"), "{v:?}");
    assert_eq!(v.tagged.as_deref(), Some("unchecked"));
}

/// A copy of a system disk is said (at crit, by the real machine) as soon as its device is
/// known, and is detached and deleted before the rehearsal ends.
#[test]
fn a_system_disk_copy_is_said_while_attached_and_removed() {
    let fake = FakeLightsail::default();
    let host = Scripted::new(&fake);
    let mut snap = snapshot("s1");
    snap.from = Some("web-1-system".into());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    let v = rt
        .block_on(verify(&fake, &host, &me(), &snap, &settings(), &mut Never))
        .unwrap();
    assert_eq!(v.result, Outcome::Clean);
    let log = steps(&fake);
    let said = log
        .iter()
        .position(|l| l == "system copy s1-verify /dev/nvme9n1")
        .unwrap_or_else(|| panic!("{log:#?}"));
    let deleted = log
        .iter()
        .position(|l| l == "DeleteDisk s1-verify")
        .unwrap();
    assert!(said < deleted);
    // Recorded for the boot step before AttachDisk, the record cleared once it is detached
    // (bootcopy).
    let at = |line: &str| {
        log.iter()
            .position(|l| l.starts_with(line))
            .unwrap_or_else(|| panic!("{line} in {log:#?}"))
    };
    assert!(at("record system copy s1-verify") < at("AttachDisk s1-verify"));
    assert!(at("DetachDisk s1-verify") < at("clear system copy s1-verify"));
    assert!(at("clear system copy s1-verify") < deleted);
    assert!(fake.disks.lock().unwrap().is_empty());
}

/// An LVM physical volume on the restored disk, as the superblock reader finds it.
fn pv(device: &str) -> Found {
    Found {
        device: PathBuf::from(device),
        superblock: None,
        layout: Some(super::fs::Layout::Lvm),
        volume: None,
    }
}

/// A logical volume of the imported clone holding ext4.
fn lv(device: &str, volume: &str) -> Found {
    Found {
        volume: Some(volume.into()),
        ..ext4(Path::new(device))
    }
}

/// LVM on the restored disk: the group imported as a clone named from the scratch disk (its
/// put-away recorded first), each logical volume checked and mounted, named in the report by
/// the live group's names; the clone put away after the unmounts, before the device is
/// released and the disk detached.
#[test]
fn lvm_volumes_are_checked_each_and_put_away_before_the_detach() {
    let fake = FakeLightsail::default();
    let mut host = Scripted::new(&fake);
    host.found = Some(vec![pv("/dev/nvme9n1")]);
    host.lvm = Some(Ok(vec![
        lv("/dev/mapper/c-lv", "datavg/lv"),
        lv("/dev/mapper/c-home", "datavg/home"),
    ]));
    let v = run(&fake, &host, &mut Never);
    assert_eq!(v.result, Outcome::Clean, "{v:?}");
    let named: Vec<(String, Option<String>, bool)> = v
        .checks
        .iter()
        .map(|c| (c.device.display().to_string(), c.volume.clone(), c.clean))
        .collect();
    assert_eq!(
        named,
        [
            ("/dev/mapper/c-lv".into(), Some("datavg/lv".into()), true),
            (
                "/dev/mapper/c-home".into(),
                Some("datavg/home".into()),
                true
            ),
        ]
    );
    let json = serde_json::to_value(&v.checks).unwrap();
    assert_eq!(json[1]["volume"], "datavg/home", "{json}");
    let log = steps(&fake);
    let at = |prefix: &str| {
        log.iter()
            .position(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in {log:#?}"))
    };
    assert!(log[at("import")].starts_with("import /dev/nvme9n1 as lightsnap_verify_"));
    assert!(at("import") < at("check /dev/mapper/c-lv"), "{log:#?}");
    let base = "/run/lightsnap/verify/s1-verify";
    assert!(log.contains(&format!("mount {base}/c-lv")), "{log:#?}");
    assert!(log.contains(&format!("mount {base}/c-home")), "{log:#?}");
    assert!(at("hooks") < at("put away"), "{log:#?}");
    assert!(
        at(&format!("unmount {base}/c-lv")) < at("put away"),
        "{log:#?}"
    );
    assert!(at("put away") < at("release"), "{log:#?}");
    assert!(at("put away") < at("DetachDisk"), "{log:#?}");
    assert!(host.clones.lock().unwrap().is_empty());
    assert_eq!(v.tagged.as_deref(), Some("clean"));
}

/// A group that cannot be imported (a PV on another disk) is "could not check", naming the
/// group; whatever was begun is put away all the same.
#[test]
fn a_group_that_cannot_be_imported_could_not_be_checked() {
    let fake = FakeLightsail::default();
    let mut host = Scripted::new(&fake);
    host.found = Some(vec![
        ext4(Path::new("/dev/nvme9n1p1")),
        pv("/dev/nvme9n1p2"),
    ]);
    host.lvm = Some(Err(
        "volume group datavg spans 2 physical volumes and 1 of them are not on this disk".into(),
    ));
    let v = run(&fake, &host, &mut Never);
    assert_eq!(v.result, Outcome::Unchecked, "{v:?}");
    assert_eq!(v.tagged.as_deref(), Some("unchecked"));
    assert!(v.failures.is_empty(), "{v:?}");
    assert!(
        v.unchecked.len() == 1
            && v.unchecked[0].contains("/dev/nvme9n1p2")
            && v.unchecked[0].contains("volume group datavg spans 2"),
        "{v:?}"
    );
    // The ext4 beside it was checked.
    assert!(v
        .checks
        .iter()
        .any(|c| c.clean && c.device.ends_with("nvme9n1p1")));
    let log = steps(&fake);
    let put = log.iter().position(|l| l.starts_with("put away")).unwrap();
    let detach = log
        .iter()
        .position(|l| l.starts_with("DetachDisk"))
        .unwrap();
    assert!(put < detach, "{log:#?}");
}

/// A killed run's clone is put away by the next run before its disk goes; one whose volume
/// someone has mounted keeps the disk here, said.
#[test]
fn a_killed_runs_clone_is_put_away_before_its_disk_goes() {
    let ours = [(SCRATCH_TAG, "true"), (SCRATCH_INSTANCE_TAG, "web-1")];
    for busy in [false, true] {
        let fake = FakeLightsail::default();
        fake.disks
            .lock()
            .unwrap()
            .push(disk("old-verify-0a1b2c3d", &ours, Some("web-1")));
        let mut host = Scripted::new(&fake);
        host.found = Some(vec![pv("/dev/nvme8n1")]);
        host.lvm_busy = busy;
        host.clones
            .lock()
            .unwrap()
            .push("lightsnap_verify_0a1b2c3d".into());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        let left = rt
            .block_on(scratch::remove_leftovers(
                &fake,
                &host,
                &me(),
                Path::new("/run/lightsnap/verify"),
                Duration::from_millis(10),
            ))
            .unwrap();
        let log = fake.log();
        if busy {
            assert!(left.removed.is_empty(), "{left:?}");
            assert!(
                left.kept[0].contains("old-verify-0a1b2c3d") && left.kept[0].contains("in use"),
                "{left:?}"
            );
            assert!(disk_changes(&fake).is_empty(), "{log:#?}");
        } else {
            assert_eq!(left.removed, ["old-verify-0a1b2c3d"], "{left:?}");
            let put = log
                .iter()
                .position(|l| l == "put away lightsnap_verify_0a1b2c3d")
                .unwrap_or_else(|| panic!("{log:#?}"));
            let detach = log
                .iter()
                .position(|l| l.starts_with("DetachDisk"))
                .unwrap();
            assert!(put < detach, "{log:#?}");
        }
    }
}

/// `restore --mount` of a disk holding LVM: the group imported as a clone named from the
/// restored disk, each logical volume checked and mounted read-only at DIR/<vg>-<lv>, and the
/// clone left active until `--release`; a failure puts it away before the disk is detached.
#[test]
fn a_file_restore_mounts_each_logical_volume_and_its_undo_puts_the_clone_away() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    for fails in [false, true] {
        let fake = FakeLightsail::default();
        let mut host = Scripted::new(&fake);
        host.found = Some(vec![pv("/dev/nvme9n1")]);
        host.lvm = Some(Ok(vec![
            lv("/dev/mapper/c-lv", "datavg/lv"),
            lv("/dev/mapper/c-home", "datavg/home"),
        ]));
        host.mount_fails = fails;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("files");
        let got = rt.block_on(restored::mount(
            &fake,
            &host,
            &me(),
            &snapshot("s1"),
            &dir,
            &settings(),
            &mut Never,
        ));
        let log = fake.log();
        let at = |prefix: &str| {
            log.iter()
                .position(|l| l.starts_with(prefix))
                .unwrap_or_else(|| panic!("no {prefix} in {log:#?}"))
        };
        assert!(
            log[at("import")].starts_with("import /dev/nvme9n1 as lightsnap_restore_"),
            "{log:#?}"
        );
        if !fails {
            let r = got.unwrap();
            assert_eq!(
                r.mounted_at,
                [dir.join("datavg-lv"), dir.join("datavg-home")]
            );
            let volumes: Vec<Option<&str>> = r.checks.iter().map(|c| c.volume.as_deref()).collect();
            assert_eq!(volumes, [Some("datavg/lv"), Some("datavg/home")]);
            assert!(r.warnings.is_empty(), "{r:?}");
            assert!(!log.iter().any(|l| l.starts_with("put away")), "{log:#?}");
            assert_eq!(
                host.clones.lock().unwrap().len(),
                1,
                "active until released"
            );
        } else {
            got.unwrap_err();
            assert!(at("put away") < at("DetachDisk"), "{log:#?}");
            assert!(host.clones.lock().unwrap().is_empty());
        }
    }
}

/// The disk is one PV whose group cannot be imported: one "could not check", naming the
/// group — not also "no filesystem found".
#[test]
fn a_lone_pv_that_cannot_be_imported_is_said_once() {
    let fake = FakeLightsail::default();
    let mut host = Scripted::new(&fake);
    host.found = Some(vec![pv("/dev/nvme9n1")]);
    host.lvm = Some(Err("volume group spanvg spans 2 physical volumes".into()));
    let v = run(&fake, &host, &mut Never);
    assert_eq!(v.result, Outcome::Unchecked, "{v:?}");
    assert_eq!(v.unchecked.len(), 1, "{v:?}");
    assert!(v.unchecked[0].contains("spanvg"), "{v:?}");
}

/// A data disk's rehearsal writes no boot-time record, and clears none.
#[test]
fn a_data_disk_copy_is_not_recorded() {
    let fake = FakeLightsail::default();
    let host = Scripted::new(&fake);
    run(&fake, &host, &mut Never);
    let log = steps(&fake);
    assert!(!log.iter().any(|l| l.contains("system copy")), "{log:#?}");
}

/// A killed run's leftover, detached and deleted by the next run, has its boot-time record
/// (if it was a copy of the system disk) cleared.
#[test]
fn a_removed_leftover_clears_its_record() {
    let fake = FakeLightsail::default();
    let ours = [(SCRATCH_TAG, "true"), (SCRATCH_INSTANCE_TAG, "web-1")];
    fake.disks
        .lock()
        .unwrap()
        .push(disk("old-verify", &ours, Some("web-1")));
    let host = Scripted::new(&fake);
    run(&fake, &host, &mut Never);
    let log = steps(&fake);
    let deleted = log
        .iter()
        .position(|l| l == "DeleteDisk old-verify")
        .unwrap();
    let cleared = log
        .iter()
        .position(|l| l == "clear system copy old-verify")
        .unwrap_or_else(|| panic!("{log:#?}"));
    assert!(deleted < cleared, "{log:#?}");
}
