//! A copy of the system disk attached to this instance, kept from outliving the run that
//! attached it. A copy of `<instance>-system` carries the root filesystem's UUID, LABEL and
//! PARTUUID: should the machine boot while it is attached (a run killed, the power lost), the
//! boot could take it for `/`, or mount its filesystems in place of the original's.
//!
//! Two halves, joined by a persistent record:
//! - **The record**: before AttachDisk of such a copy (`verify` of a system-volume snapshot,
//!   `restore --mount` of one) lightsnap writes `<disk>.json` into [`RECORD_DIR`] naming the
//!   copy (disk name, volume id, its NVMe serial) and this instance's own system disk (the
//!   serial of the disk holding the running `/`); the file goes once the copy is detached (the
//!   rehearsal's undo, `restore --release`, or the next run's leftover clean-up, which detaches
//!   and deletes the copy through the API after reading its tags).
//! - **The boot step** (`lightsnap thaw --recover --boot`, run by
//!   `lightsnap-system-copy.service` before `local-fs-pre.target`, with no network): for each
//!   record, the block device whose serial is the copy's is removed from the kernel (its NVMe
//!   controller's PCI function: `remove`; a SCSI disk: `delete`) unless it holds the running
//!   `/`, so that nothing mounts its filesystems by UUID or LABEL; said at crit. When the
//!   running `/` *is* the copy (the boot picked it) nothing is removed, the operator is told
//!   exactly what happened and what to do (at emerg), and the record stays.
//!
//! Why `/etc/lightsnap/system-copies/`: the boot step runs before local filesystems are
//! mounted, where only the root filesystem is there (mounted by the initramfs). `/run` is a
//! tmpfs (the record must survive the reboot), `/var` (where `/var/lib/lightsnap` lives) may
//! be a filesystem of its own, mounted later; `/etc` is on the root filesystem by systemd's
//! own rule (it must be there when the initramfs hands over). The record is a file of its own
//! per copy, written atomically and synced ([`crate::files::write_atomically`]), in a
//! directory root's alone (0700).
//!
//! What the record cannot cover: the record is written on the original root filesystem after
//! the snapshot the copy was made from, so a copy picked as `/` carries no record of itself.
//! The boot step can only say "the running `/` is the copy" when the record is on it (a
//! snapshot taken while an older record was there); the lab boots by serial so that this
//! never happens there, and the branch is covered by unit tests.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::kernel::blockdev::SysfsRoot;

/// Where the records are kept: on the root filesystem, readable before local filesystems are
/// mounted (see the module's documentation).
pub const RECORD_DIR: &str = "/etc/lightsnap/system-copies";

/// The test-only variable naming another record directory (the integration tests run
/// `verify` of system-volume snapshots, whose records must not land in the machine's `/etc`).
pub const RECORD_DIR_ENV: &str = "LIGHTSNAP_SYSTEM_COPY_DIR";

/// The record directory in use.
pub fn record_dir() -> PathBuf {
    crate::test_switch!(RECORD_DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(RECORD_DIR))
}

/// How long the boot step waits for a recorded copy's device to appear (NVMe controllers are
/// probed asynchronously; a hot-plugged one may come after the root disk).
pub const DEVICE_WAIT: Duration = Duration::from_secs(20);

/// The test-only variable that shortens [`DEVICE_WAIT`] (milliseconds).
pub const DEVICE_WAIT_ENV: &str = "LIGHTSNAP_SYSTEM_COPY_WAIT_MS";

/// The wait in use.
pub fn device_wait() -> Duration {
    crate::test_switch!(DEVICE_WAIT_ENV)
        .and_then(|v| v.to_str().and_then(|v| v.parse().ok()))
        .map(Duration::from_millis)
        .unwrap_or(DEVICE_WAIT)
}

/// One copy of the system disk attached here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The copy's Lightsail disk name (a scratch or restored disk).
    pub disk: String,
    /// The snapshot it was made from.
    pub snapshot: String,
    /// What attached it: `verify` or `restore`.
    pub by: String,
    /// The device path it was attached at (`/dev/xvdf`).
    pub path: String,
    /// Its EBS volume id (`vol-0abc...`), when Lightsail said.
    pub volume_id: Option<String>,
    /// The NVMe serial it shows (`vol0abc...`: the volume id without its dash).
    pub serial: Option<String>,
    /// The serial of the disk that held `/` when the copy was attached: this instance's own
    /// system disk.
    pub system_serial: Option<String>,
    /// When (RFC 3339, UTC).
    pub time_utc: String,
}

impl Record {
    /// A record of `disk` (made from `snapshot` by `by`, to be attached at `path`), with the
    /// serial of the disk now holding `/`.
    pub fn new(disk: &str, snapshot: &str, by: &str, path: &str, volume_id: Option<&str>) -> Self {
        Self {
            disk: disk.to_string(),
            snapshot: snapshot.to_string(),
            by: by.to_string(),
            path: path.to_string(),
            volume_id: volume_id.map(String::from),
            serial: volume_id.map(|v| v.replacen('-', "", 1)),
            system_serial: root_serials(&SysfsRoot::default()).into_iter().next(),
            time_utc: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        }
    }
}

fn file_of(dir: &Path, disk: &str) -> Result<PathBuf> {
    anyhow::ensure!(
        !disk.is_empty() && !disk.contains('/') && !disk.starts_with('.'),
        "disk name {disk:?} cannot name a record file"
    );
    Ok(dir.join(format!("{disk}.json")))
}

/// Writes `record` into `dir` (made 0700 if missing), atomically and synced, never through a
/// link.
pub fn write(dir: &Path, record: &Record) -> Result<()> {
    crate::files::private_dir(dir)?;
    let path = file_of(dir, &record.disk)?;
    let text = serde_json::to_string_pretty(record)?;
    crate::files::write_atomically(&path, text.as_bytes()).with_context(|| {
        format!(
            "recording that a copy of the system disk ({}) is about to be attached",
            record.disk
        )
    })
}

/// Removes the record of `disk` if there is one; whether there was.
pub fn clear(dir: &Path, disk: &str) -> Result<bool> {
    let path = file_of(dir, disk)?;
    match std::fs::remove_file(&path) {
        Ok(()) => {
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}

/// The records in `dir`, by file name; a file that is not a record is said and skipped.
pub fn read_all(dir: &Path) -> Vec<Record> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "json")
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    paths.sort();
    paths
        .into_iter()
        .filter_map(|p| {
            let read = std::fs::read_to_string(&p)
                .map_err(anyhow::Error::from)
                .and_then(|t| serde_json::from_str::<Record>(&t).map_err(Into::into));
            match read {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::warn!("{}: not a system-copy record: {e:#}", p.display());
                    None
                }
            }
        })
        .collect()
}

/// The serials of the whole disks under the running `/` (normally one: the system disk).
pub fn root_serials(root: &SysfsRoot) -> Vec<String> {
    let Ok(mounts) = crate::kernel::mountinfo::read() else {
        return Vec::new();
    };
    let Some(m) = mounts
        .iter()
        .rev()
        .find(|m| m.mount_point == Path::new("/"))
    else {
        return Vec::new();
    };
    serials_under(root, m.dev)
}

/// The serials of the whole disks under block device `dev`.
fn serials_under(root: &SysfsRoot, dev: (u32, u32)) -> Vec<String> {
    let Ok(name) = root.name_of(dev) else {
        return Vec::new();
    };
    root.disks_under(&name)
        .unwrap_or_default()
        .iter()
        .filter_map(|d| root.serial(d))
        .collect()
}

/// What the boot step did for one record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum BootAction {
    /// The copy's device was removed from the kernel (these sysfs files written); the record
    /// stays until the next run detaches and deletes the copy.
    Removed {
        /// The copy.
        disk: String,
        /// Its serial.
        serial: String,
        /// The block devices that were the copy (`nvme1n1`).
        devices: Vec<String>,
        /// The sysfs files written (`.../0000:01:00.0/remove`).
        removed_through: Vec<PathBuf>,
    },
    /// The running `/` is on the copy: nothing removed, the record kept.
    CopyIsRoot {
        /// The copy.
        disk: String,
        /// Its serial.
        serial: String,
        /// The original system disk's serial (from the record), and its device here if found.
        original_serial: Option<String>,
        /// The original's block device here, if it is there.
        original_device: Option<String>,
    },
    /// The copy's device is not here (detached, or never appeared): the record is cleared.
    Absent {
        /// The copy.
        disk: String,
        /// Its serial, if the record knew one.
        serial: Option<String>,
    },
    /// The copy is here but could not be removed (in use, no way to remove it on this bus,
    /// the write refused): said, the record kept.
    Kept {
        /// The copy.
        disk: String,
        /// Why.
        why: String,
    },
}

/// The machine as the boot step sees it: sysfs, and a way to tell whether a disk is in use.
pub struct BootHost<'a> {
    /// sysfs (and /dev) root.
    pub sysfs: &'a SysfsRoot,
    /// The serials of the disks holding the running `/`.
    pub root_serials: Vec<String>,
    /// Why a whole disk (kernel name) is in use (mounted, held, open), if it is.
    pub in_use: &'a dyn Fn(&str) -> Option<String>,
}

/// The whole disks whose serial is `serial`.
fn disks_with_serial(sysfs: &SysfsRoot, serial: &str) -> Vec<String> {
    sysfs
        .whole_disks()
        .into_iter()
        .filter(|d| sysfs.serial(d).as_deref() == Some(serial))
        .collect()
}

/// The sysfs files that remove the disks with `serial` from the kernel: the PCI function of
/// each NVMe controller with that serial (`/sys/class/nvme/*/serial`) is removed through its
/// `remove`; a disk on another bus through its device's `delete` (SCSI), where it has one.
fn removers(sysfs: &SysfsRoot, serial: &str, disks: &[String]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let class = sysfs_path(sysfs, "/sys/class/nvme");
    if let Ok(ctrls) = std::fs::read_dir(&class) {
        let mut ctrls: Vec<PathBuf> = ctrls.flatten().map(|e| e.path()).collect();
        ctrls.sort();
        for c in ctrls {
            let Ok(s) = std::fs::read_to_string(c.join("serial")) else {
                continue;
            };
            if s.trim() != serial {
                continue;
            }
            if let Ok(pci) = std::fs::canonicalize(c.join("device")) {
                let remove = pci.join("remove");
                if remove.exists() && !out.contains(&remove) {
                    out.push(remove);
                }
            }
        }
    }
    if out.is_empty() {
        for d in disks {
            let delete = sysfs_path(sysfs, &format!("/sys/class/block/{d}/device/delete"));
            if delete.exists() {
                out.push(delete);
            }
        }
    }
    out
}

fn sysfs_path(sysfs: &SysfsRoot, abs: &str) -> PathBuf {
    sysfs.path(abs)
}

/// Waits (up to `wait`) until a disk with `serial` appears; the disks found.
fn wait_for_serial(sysfs: &SysfsRoot, serial: &str, wait: Duration) -> Vec<String> {
    let deadline = Instant::now() + wait;
    loop {
        let found = disks_with_serial(sysfs, serial);
        if !found.is_empty() || Instant::now() >= deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The boot step on one record (see the module's documentation). Says what it does, at crit
/// (or emerg when the running `/` is the copy).
pub fn at_boot(host: &BootHost, dir: &Path, record: &Record, wait: Duration) -> BootAction {
    let disk = record.disk.clone();
    let Some(serial) = record.serial.clone() else {
        tracing::error!(
            priority = 2,
            "a copy of the system disk ({disk}, attached at {} by `lightsnap {}`) may still be attached, but its record names no serial to find it by: nothing removed; the next `lightsnap verify` or `lightsnap run` detaches and deletes it through the API",
            record.path,
            record.by
        );
        return BootAction::Kept {
            disk,
            why: "the record names no serial".into(),
        };
    };
    if host.root_serials.contains(&serial) {
        let original = record.system_serial.clone();
        let original_device = original
            .as_deref()
            .and_then(|s| disks_with_serial(host.sysfs, s).into_iter().next());
        tracing::error!(
            priority = 0,
            "this boot mounted / from {disk} (serial {serial}), a copy of the system disk restored from snapshot {} that a killed `lightsnap {}` left attached, not from the instance's own system disk (serial {}{}): nothing was removed. Write nothing here you mean to keep: it goes with the copy. Stop the instance, detach disk {disk} (Lightsail console, or `aws lightsail detach-disk --disk-name {disk}`), start it again; then `lightsnap verify` or `lightsnap run` deletes the copy",
            record.snapshot,
            record.by,
            original.as_deref().unwrap_or("unknown"),
            original_device
                .as_deref()
                .map(|d| format!(", now /dev/{d}"))
                .unwrap_or_default()
        );
        return BootAction::CopyIsRoot {
            disk,
            serial,
            original_serial: original,
            original_device,
        };
    }
    let devices = wait_for_serial(host.sysfs, &serial, wait);
    if devices.is_empty() {
        tracing::warn!(
            "the copy of the system disk {disk} (serial {serial}) that a `lightsnap {}` attached is not here (detached since): nothing to remove; its record is cleared",
            record.by
        );
        if let Err(e) = clear(dir, &disk) {
            tracing::warn!("{e:#}");
        }
        return BootAction::Absent {
            disk,
            serial: Some(serial),
        };
    }
    for d in &devices {
        if let Some(why) = (host.in_use)(d) {
            let why = format!("/dev/{d}: {why}");
            tracing::error!(
                priority = 2,
                "a copy of the system disk ({disk}, serial {serial}) is attached and in use ({why}): not removed; it carries the root filesystem's UUID, LABEL and PARTUUID"
            );
            return BootAction::Kept { disk, why };
        }
    }
    let through = removers(host.sysfs, &serial, &devices);
    if through.is_empty() {
        let why = format!(
            "{} has no PCI function or SCSI device lightsnap can remove it through",
            devices
                .iter()
                .map(|d| format!("/dev/{d}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        tracing::error!(
            priority = 2,
            "a copy of the system disk ({disk}, serial {serial}) is attached and could not be removed from the kernel ({why}): it carries the root filesystem's UUID, LABEL and PARTUUID; the next `lightsnap verify` or `lightsnap run` detaches and deletes it through the API"
        );
        return BootAction::Kept { disk, why };
    }
    for f in &through {
        // Under LIGHTSNAP_CONFINE_TO (the tests) nothing outside it is removed: a test's
        // record must never take a device of the machine running it.
        if let Err(e) = crate::kernel::guard::check(f) {
            let why = e.to_string();
            tracing::error!(priority = 2, "{why}");
            return BootAction::Kept { disk, why };
        }
        if let Err(e) = std::fs::write(f, "1") {
            let why = format!("writing 1 to {}: {e}", f.display());
            tracing::error!(
                priority = 2,
                "a copy of the system disk ({disk}, serial {serial}) is attached and could not be removed from the kernel ({why}); the next `lightsnap verify` or `lightsnap run` detaches and deletes it through the API"
            );
            return BootAction::Kept { disk, why };
        }
    }
    tracing::error!(
        priority = 2,
        "removed {} from the kernel before local filesystems are mounted: {disk} (serial {serial}) is a copy of the system disk, restored from snapshot {}, that a killed `lightsnap {}` left attached, and it carries the root filesystem's UUID, LABEL and PARTUUID; the next `lightsnap verify` or `lightsnap run` detaches and deletes it through the API",
        devices
            .iter()
            .map(|d| format!("/dev/{d}"))
            .collect::<Vec<_>>()
            .join(", "),
        record.snapshot,
        record.by
    );
    BootAction::Removed {
        disk,
        serial,
        devices,
        removed_through: through,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::blockdev::fixture::Tree;

    const ROOT: &str = "vol0000000000000000a";
    const COPY: &str = "vol0c0b7c0b7c0b7c0b7";

    /// An NVMe disk as the kernel lays it out: PCI function, controller (serial), namespace.
    fn nvme(t: &Tree, n: u32, serial: &str, dev: &str) {
        let pci = format!("/sys/devices/pci0000:00/0000:00:0{n}.0/0000:0{n}:00.0");
        let ctrl = format!("{pci}/nvme/nvme{n}");
        t.write(&format!("{pci}/remove"), "");
        t.write(&format!("{ctrl}/serial"), format!("{serial}\n"));
        std::fs::create_dir_all(t.p("/sys/class/nvme")).unwrap();
        std::os::unix::fs::symlink(t.p(&pci), t.p(&format!("{ctrl}/device"))).unwrap();
        std::os::unix::fs::symlink(t.p(&ctrl), t.p(&format!("/sys/class/nvme/nvme{n}"))).unwrap();
        let ns = format!("{ctrl}/nvme{n}n1");
        t.device(&format!("nvme{n}n1"), &ns, dev);
        t.write(&format!("{ns}/device/serial"), format!("{serial}\n"));
    }

    fn record(serial: Option<&str>) -> Record {
        Record {
            disk: "s1-verify-0a1b2c3d".into(),
            snapshot: "s1".into(),
            by: "verify".into(),
            path: "/dev/xvdf".into(),
            volume_id: serial.map(|s| s.replacen("vol", "vol-", 1)),
            serial: serial.map(String::from),
            system_serial: Some(ROOT.into()),
            time_utc: "2026-12-07T10:00:00Z".into(),
        }
    }

    fn machine(t: &Tree) -> (SysfsRoot, tempfile::TempDir) {
        nvme(t, 1, ROOT, "259:0");
        (t.root(), tempfile::tempdir().unwrap())
    }

    fn free(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn an_attached_copy_that_is_not_root_is_removed_and_its_record_kept() {
        let t = Tree::new();
        let (sysfs, dir) = machine(&t);
        nvme(&t, 2, COPY, "259:2");
        let r = record(Some(COPY));
        write(dir.path(), &r).unwrap();
        let host = BootHost {
            sysfs: &sysfs,
            root_serials: vec![ROOT.into()],
            in_use: &free,
        };
        let did = at_boot(&host, dir.path(), &r, Duration::ZERO);
        let remove = t.p("/sys/devices/pci0000:00/0000:00:02.0/0000:02:00.0/remove");
        assert_eq!(
            did,
            BootAction::Removed {
                disk: r.disk.clone(),
                serial: COPY.into(),
                devices: vec!["nvme2n1".into()],
                removed_through: vec![remove.clone()],
            }
        );
        assert_eq!(std::fs::read_to_string(&remove).unwrap(), "1");
        // The root disk's controller is untouched.
        let root_remove = t.p("/sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0/remove");
        assert_eq!(std::fs::read_to_string(root_remove).unwrap(), "");
        // The record stays for the next run's API clean-up.
        assert_eq!(read_all(dir.path()), vec![r]);
    }

    #[test]
    fn a_copy_that_is_root_is_left_and_said() {
        let t = Tree::new();
        let (sysfs, dir) = machine(&t);
        nvme(&t, 2, COPY, "259:2");
        let r = record(Some(COPY));
        write(dir.path(), &r).unwrap();
        let host = BootHost {
            sysfs: &sysfs,
            root_serials: vec![COPY.into()],
            in_use: &free,
        };
        let did = at_boot(&host, dir.path(), &r, Duration::ZERO);
        assert_eq!(
            did,
            BootAction::CopyIsRoot {
                disk: r.disk.clone(),
                serial: COPY.into(),
                original_serial: Some(ROOT.into()),
                original_device: Some("nvme1n1".into()),
            }
        );
        for n in 1..=2 {
            let remove = t.p(&format!(
                "/sys/devices/pci0000:00/0000:00:0{n}.0/0000:0{n}:00.0/remove"
            ));
            assert_eq!(
                std::fs::read_to_string(remove).unwrap(),
                "",
                "nothing removed"
            );
        }
        assert_eq!(read_all(dir.path()), vec![r]);
    }

    #[test]
    fn no_record_means_nothing_to_do() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_all(dir.path()).is_empty());
        assert!(read_all(&dir.path().join("missing")).is_empty());
    }

    #[test]
    fn an_absent_copy_clears_its_record() {
        let t = Tree::new();
        let (sysfs, dir) = machine(&t);
        let r = record(Some(COPY));
        write(dir.path(), &r).unwrap();
        let host = BootHost {
            sysfs: &sysfs,
            root_serials: vec![ROOT.into()],
            in_use: &free,
        };
        let started = Instant::now();
        let did = at_boot(&host, dir.path(), &r, Duration::from_millis(300));
        assert!(started.elapsed() >= Duration::from_millis(300), "waited");
        assert_eq!(
            did,
            BootAction::Absent {
                disk: r.disk.clone(),
                serial: Some(COPY.into())
            }
        );
        assert!(read_all(dir.path()).is_empty());
    }

    #[test]
    fn a_copy_in_use_is_kept() {
        let t = Tree::new();
        let (sysfs, dir) = machine(&t);
        nvme(&t, 2, COPY, "259:2");
        let r = record(Some(COPY));
        let busy = |d: &str| (d == "nvme2n1").then(|| "mounted at /srv".to_string());
        let host = BootHost {
            sysfs: &sysfs,
            root_serials: vec![ROOT.into()],
            in_use: &busy,
        };
        let did = at_boot(&host, dir.path(), &r, Duration::ZERO);
        assert!(
            matches!(did, BootAction::Kept { ref why, .. } if why.contains("/srv")),
            "{did:?}"
        );
        let remove = t.p("/sys/devices/pci0000:00/0000:00:02.0/0000:02:00.0/remove");
        assert_eq!(std::fs::read_to_string(remove).unwrap(), "");
    }

    #[test]
    fn records_are_files_of_their_own_and_clear_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("system-copies");
        let r = record(Some(COPY));
        write(&d, &r).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&d).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(read_all(&d), vec![r.clone()]);
        assert!(clear(&d, &r.disk).unwrap());
        assert!(!clear(&d, &r.disk).unwrap());
        assert!(file_of(&d, "../x").is_err());
    }

    #[test]
    fn the_serial_is_the_volume_id_without_its_dash() {
        let r = Record::new("c", "s", "verify", "/dev/xvdf", Some("vol-0abc"));
        assert_eq!(r.serial.as_deref(), Some("vol0abc"));
    }
}
