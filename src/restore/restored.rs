//! Restores for real (`lightsnap restore`): a disk snapshot made into a disk of this
//! instance's zone, attached here, found by its volume id (as verify finds its scratch disk),
//! and mounted read-only at a directory the operator names (`--mount DIR`), until
//! `restore --release DIR` unmounts, detaches and deletes it. LVM on it is imported as a
//! renamed clone, as verify does ([`super::lvm`]), each logical volume mounted; `--release`
//! puts the clone away before the detach.
//!
//! A restored disk carries `lightsnap:restore-of` (the snapshot), `lightsnap:restore-instance`
//! (this instance), `lightsnap:owner` and `lightsnap:scratch` = `restore` (what lets the
//! instance policy delete it; never `true`, so verify and run never take it for one of their
//! scratch disks). A restored disk about to take a live disk's place (`restore --replace`) is
//! tagged `lightsnap:replaces` first: from then on it is no restored copy but a live disk,
//! which neither lightsnap nor the instance policy ever deletes. Every DetachDisk and
//! DeleteDisk of one follows a GetDisk whose tags say it is a disk lightsnap restored for this
//! instance. The steps of a restore are recorded once taken
//! (the disk once CreateDiskFromSnapshot succeeded) and undone in reverse whatever ends it
//! before the files are handed over — a failure, the timeout, a stop request.

use std::cell::RefCell;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use super::host::{Check, Host};
use super::{fs, scratch, Me, Settings};
use crate::cloud::lightsail::{ApiErrorKind, DiskState, Lightsail, NewDisk, SnapshotInfo};
use crate::exit_code::{ExitCode, Failure};
use crate::fail;
use crate::signals::{unless_stopped, Stop};

/// The snapshot a restored disk was made from.
pub const RESTORE_OF_TAG: &str = "lightsnap:restore-of";
/// The instance a disk was restored for: only that instance's lightsnap releases it.
pub const RESTORE_INSTANCE_TAG: &str = "lightsnap:restore-instance";
/// On a live disk a roll-back replaced: the restored disk now in its place.
pub const REPLACED_BY_TAG: &str = "lightsnap:replaced-by";
/// On a live disk a roll-back replaced: when (RFC 3339, UTC).
pub const REPLACED_AT_TAG: &str = "lightsnap:replaced-at";
/// On a restored disk that takes (or took) a live disk's place: the live disk's name. Set just
/// before the live disk is detached; the instance policy never lets a disk carrying it be
/// deleted, and no key of the instance's can remove it (no UntagResource).
pub const REPLACES_TAG: &str = "lightsnap:replaces";

/// A restored disk's name: `<snapshot>-restore-<8 hex digits>`, new at each restore, within
/// Lightsail's 255 characters.
pub fn name_for(snapshot: &str) -> String {
    let suffix = format!("-restore-{}", scratch::unique());
    let keep = snapshot.len().min(255 - suffix.len());
    let base = snapshot[..keep].trim_end_matches(['-', '_']);
    format!("{base}{suffix}")
}

/// The tags a restored disk is made with.
pub fn tags(me: &Me, snapshot: &str) -> Vec<(String, String)> {
    vec![
        (RESTORE_OF_TAG.into(), snapshot.to_string()),
        (RESTORE_INSTANCE_TAG.into(), me.instance.clone()),
        (super::SCRATCH_TAG.into(), super::SCRATCH_RESTORE.into()),
        me.owner().tag(),
    ]
}

/// Whether a disk is a restored copy lightsnap made for this instance (and not one that took a
/// live disk's place).
pub fn is_ours(d: &DiskState, me: &Me) -> bool {
    is_restored_for(d, me) && d.tag(REPLACES_TAG).is_none()
}

/// Whether a disk was restored by lightsnap for this instance, whatever became of it.
pub fn is_restored_for(d: &DiskState, me: &Me) -> bool {
    d.tag(RESTORE_OF_TAG).is_some() && d.tag(RESTORE_INSTANCE_TAG) == Some(me.instance.as_str())
}

/// A disk that is not one lightsnap restored for this instance (or one that took a live
/// disk's place): never detached nor deleted.
#[derive(Debug, thiserror::Error)]
#[error("disk {0} does not carry this instance's restore tags ({RESTORE_OF_TAG}, {RESTORE_INSTANCE_TAG}={1}), or carries {REPLACES_TAG} (it took a live disk's place): not lightsnap's to detach or delete, left alone")]
pub struct NotOurs(pub String, pub String);

/// A file restore's report (`restore --mount`).
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Restored {
    /// The snapshot.
    pub snapshot: String,
    /// The disk it is of (`<instance>-system` for a system volume).
    pub disk: Option<String>,
    /// The disk made from it.
    pub restored_disk: String,
    /// Where it is attached.
    pub attached_at: Option<String>,
    /// Its block device here.
    pub device: Option<PathBuf>,
    /// Where its filesystems are mounted read-only (DIR, or `DIR/<partition>` for several).
    pub mounted_at: Vec<PathBuf>,
    /// Each filesystem's check (its checker in no-change mode, after its journal replay).
    pub checks: Vec<Check>,
    /// What could not be mounted or checked, in plain words (the rest is mounted).
    pub warnings: Vec<String>,
    /// The command that releases it.
    pub release: String,
    /// What could not be undone after a failure.
    pub left_behind: Vec<String>,
    /// How long it took.
    pub elapsed_s: f64,
}

/// A step taken, to be undone on failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Step {
    /// CreateDiskFromSnapshot made this disk.
    Created(String),
    /// AttachDisk was called.
    Attached(String),
    /// Its device was found (and may have been set read-only).
    Device(PathBuf),
    /// A lightsnap mount (a journal replay): unmounted and its directory removed.
    Mounted(PathBuf),
    /// The operator's directory, mounted; `made`: lightsnap made it (removed again).
    MountedAt(PathBuf, bool),
    /// The LVM group on these physical volumes was (being) imported as this clone.
    Lvm(Vec<PathBuf>, String),
}

/// Refuses a `--mount` directory that is not an empty directory, before anything is made;
/// makes it (mode 0700) when missing. Returns whether it was made.
pub fn prepare_dir(dir: &Path) -> Result<bool> {
    crate::kernel::guard::check(dir)?;
    match std::fs::symlink_metadata(dir) {
        Ok(m) if !m.is_dir() => fail!(
            ExitCode::Usage,
            "--mount {}: not a directory; name an empty directory (or one that does not exist yet)",
            dir.display()
        ),
        Ok(_) => {
            let mut entries =
                std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
            if entries.next().is_some() {
                fail!(
                    ExitCode::Usage,
                    "--mount {}: the directory is not empty; name an empty directory (or one that does not exist yet)",
                    dir.display()
                );
            }
            Ok(false)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_context(|| format!("creating {}", dir.display()))?;
            // The mode asked for is cut by the umask: set it.
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("setting {} to 0700", dir.display()))?;
            Ok(true)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", dir.display())),
    }
}

/// CreateDiskFromSnapshot, waited for until the disk is available.
pub(super) async fn make<A: Lightsail>(
    api: &A,
    me: &Me,
    snapshot: &SnapshotInfo,
    name: &str,
    size_gb: i32,
    settings: &Settings,
    steps: &RefCell<Vec<Step>>,
) -> Result<()> {
    let request = NewDisk {
        name: name.to_string(),
        snapshot: snapshot.name.clone(),
        availability_zone: me.availability_zone.clone(),
        size_gb: snapshot.size_gb.unwrap_or(8).max(8).max(size_gb),
        tags: tags(me, &snapshot.name),
    };
    let context = || format!("restoring snapshot {} to disk {name}", snapshot.name);
    match api.create_disk_from_snapshot(&request).await {
        Ok(_) => steps.borrow_mut().push(Step::Created(name.to_string())),
        Err(e) if e.is_ambiguous() => {
            if let Ok(Some(d)) = api.disk_state(name).await {
                if is_ours(&d, me) && d.tag(RESTORE_OF_TAG) == Some(snapshot.name.as_str()) {
                    steps.borrow_mut().push(Step::Created(name.to_string()));
                }
            }
            return Err(e).with_context(context);
        }
        Err(e) => return Err(e).with_context(context),
    }
    scratch::wait_for(api, name, settings.poll, "available", |d| {
        d.state == "available"
    })
    .await
    .map(drop)
}

/// AttachDisk at `path` (a free one when `None`), waited for, and the device found by its
/// volume id.
pub(super) async fn attach<A: Lightsail, H: Host>(
    api: &A,
    host: &H,
    me: &Me,
    name: &str,
    path: Option<&str>,
    settings: &Settings,
    steps: &RefCell<Vec<Step>>,
) -> Result<(String, PathBuf)> {
    let path = match path {
        Some(p) => p.to_string(),
        None => {
            let dev_dir = crate::test_switch!(super::host::DEV_DIR_ENV).map(PathBuf::from);
            let exists = |p: &str| match &dev_dir {
                Some(dir) => dir.join(p.trim_start_matches("/dev/")).exists(),
                None => Path::new(p).exists(),
            };
            scratch::free_path(me, exists)?.to_string()
        }
    };
    steps.borrow_mut().push(Step::Attached(name.to_string()));
    api.attach_disk(name, &me.instance, &path)
        .await
        .with_context(|| format!("attaching restored disk {name} at {path}"))?;
    let disk = scratch::wait_for(api, name, settings.poll, "attached", |d| {
        d.is_attached && d.attached_to.as_deref() == Some(me.instance.as_str())
    })
    .await?;
    let device = host.device(&disk, &path).await?;
    tracing::info!("restored disk {name} is {} here", device.display());
    steps.borrow_mut().push(Step::Device(device.clone()));
    Ok((path, device))
}

/// `restore SNAPSHOT --mount DIR`: the snapshot restored to a disk of its own, attached, each
/// filesystem's journal replayed and checked, mounted read-only at `dir`. On failure,
/// timeout or stop request everything is undone and the error returned.
pub async fn mount<A: Lightsail, H: Host, S: Stop>(
    api: &A,
    host: &H,
    me: &Me,
    snapshot: &SnapshotInfo,
    dir: &Path,
    settings: &Settings,
    stop: &mut S,
) -> Result<Restored> {
    super::check_snapshot(snapshot)?;
    let started = Instant::now();
    let made_dir = prepare_dir(dir)?;
    let name = name_for(&snapshot.name);
    let steps = RefCell::new(Vec::new());
    let report = RefCell::new(Restored {
        snapshot: snapshot.name.clone(),
        disk: snapshot.from.clone(),
        restored_disk: name.clone(),
        attached_at: None,
        device: None,
        mounted_at: Vec::new(),
        checks: Vec::new(),
        warnings: Vec::new(),
        release: format!("lightsnap restore --release {}", dir.display()),
        left_behind: Vec::new(),
        elapsed_s: 0.0,
    });
    let work = async {
        make(api, me, snapshot, &name, 0, settings, &steps).await?;
        if super::is_system_copy(snapshot) {
            // Before AttachDisk: a boot while it is attached must find the record (bootcopy).
            let volume = api.disk_state(&name).await.ok().flatten();
            let record = super::bootcopy::Record::new(
                &name,
                &snapshot.name,
                "restore",
                "(a free path)",
                volume.as_ref().and_then(|d| d.volume_id()),
            );
            host.system_copy_attaching(&record)?;
        }
        let (path, device) = attach(api, host, me, &name, None, settings, &steps).await?;
        {
            let mut r = report.borrow_mut();
            r.attached_at = Some(path);
            r.device = Some(device.clone());
        }
        if super::is_system_copy(snapshot) {
            // It stays attached until released: said now, and in the report.
            let said = format!(
                "restored disk {name} ({}) is a copy of the system disk: it carries the root filesystem's UUID, LABEL and PARTUUID, and a boot with it attached could take it for /; release it before rebooting",
                device.display()
            );
            tracing::error!(priority = 2, "{said}");
            report.borrow_mut().warnings.push(said);
        }
        // LVM: the group imported as a renamed clone (as verify does), its logical volumes
        // mounted; put away again by `--release`, or by the undo.
        let (pvs, mut found) = super::lvm_split(host.filesystems(&device));
        if !pvs.is_empty() {
            let clone = super::lvm::vg_name(&name);
            steps
                .borrow_mut()
                .push(Step::Lvm(pvs.clone(), clone.clone()));
            match super::import_volumes(host, &pvs, &clone).await {
                Ok(volumes) => found.extend(volumes),
                Err(checks) => {
                    let mut r = report.borrow_mut();
                    for check in checks {
                        r.warnings.push(check.line());
                        r.checks.push(check);
                    }
                }
            }
        }
        let base = settings.mount_dir.join(&name);
        for fs in &found {
            let dev_name = fs.device.file_name().unwrap_or_default().to_string_lossy();
            let replay_at = base.join(format!(".replay-{dev_name}"));
            steps.borrow_mut().push(Step::Mounted(replay_at.clone()));
            let check = host.check(fs, &replay_at).await.of(fs);
            if !check.clean {
                report.borrow_mut().warnings.push(check.line());
            }
            report.borrow_mut().checks.push(check);
        }
        let _ = host.unmount(&base);
        let mountable: Vec<&fs::Found> = found.iter().filter(|f| f.fstype().is_some()).collect();
        for fs in &mountable {
            let at = if found.len() == 1 {
                dir.to_path_buf()
            } else if let Some(volume) = &fs.volume {
                // A logical volume under the live group's names: DIR/datavg-home.
                dir.join(volume.replace('/', "-"))
            } else {
                dir.join(fs.device.file_name().unwrap_or_default())
            };
            steps
                .borrow_mut()
                .push(Step::MountedAt(at.clone(), made_dir || at != dir));
            match host.mount(fs, &at).await {
                Ok(()) => report.borrow_mut().mounted_at.push(at),
                Err(e) => report
                    .borrow_mut()
                    .warnings
                    .push(format!("{}: {e:#}", fs.device.display())),
            }
        }
        if report.borrow().mounted_at.is_empty() {
            fail!(
                ExitCode::Failure,
                "nothing of snapshot {} could be mounted: {}",
                snapshot.name,
                report.borrow().warnings.join("; ")
            );
        }
        Ok(())
    };
    let bounded = async {
        match tokio::time::timeout(settings.timeout, work).await {
            Ok(r) => r,
            Err(_) => fail!(
                ExitCode::Failure,
                "restore of {} did not finish within --timeout {}; what it made is removed",
                snapshot.name,
                humantime::format_duration(settings.timeout)
            ),
        }
    };
    let worked = unless_stopped(
        stop,
        "during restore; the restored disk is removed",
        bounded,
    )
    .await;
    let mut report = report.into_inner();
    report.elapsed_s = started.elapsed().as_secs_f64();
    match worked {
        Ok(()) => Ok(report),
        Err(e) => {
            let left = undo(api, host, me, steps.take(), settings).await;
            if made_dir {
                // Made for this restore: gone with it (only when empty, as it is).
                let _ = std::fs::remove_dir(dir);
            } else {
                // The operator's empty directory stays as it was.
                let _ = std::fs::create_dir_all(dir);
            }
            if left.is_empty() {
                Err(e)
            } else {
                Err(e.context(format!("left behind: {}", left.join("; "))))
            }
        }
    }
}

/// GetDisk and the tags checked: the disk if it exists and is one lightsnap restored for this
/// instance, `None` when it is gone, [`NotOurs`] otherwise.
pub(super) async fn read_ours<A: Lightsail>(
    api: &A,
    me: &Me,
    name: &str,
) -> Result<Option<DiskState>> {
    let Some(disk) = api
        .disk_state(name)
        .await
        .with_context(|| format!("reading restored disk {name} before touching it"))?
    else {
        return Ok(None);
    };
    if !is_ours(&disk, me) {
        return Err(NotOurs(name.to_string(), me.instance.clone()).into());
    }
    Ok(Some(disk))
}

/// Detaches a disk from this instance (if attached here) and waits until it is detached;
/// `disk` is the GetDisk-and-tags read that must pass first.
pub(super) async fn detach_checked<A: Lightsail>(
    api: &A,
    me: &Me,
    disk: &DiskState,
    poll: Duration,
) -> Result<()> {
    scratch::detach_here(api, me, disk, poll).await
}

/// Deletes a restored disk of this instance (detaching it first); gone already is fine.
pub(super) async fn remove<A: Lightsail>(
    api: &A,
    me: &Me,
    name: &str,
    poll: Duration,
) -> Result<()> {
    let Some(disk) = read_ours(api, me, name).await? else {
        return Ok(());
    };
    if disk.is_attached {
        detach_checked(api, me, &disk, poll)
            .await
            .with_context(|| format!("detaching restored disk {name}"))?;
        if read_ours(api, me, name).await?.is_none() {
            return Ok(());
        }
    }
    match api.delete_disk(name).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind == ApiErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("deleting restored disk {name}")),
    }
}

/// Undoes `steps` in reverse; what could not be undone, in plain words.
pub(super) async fn undo<A: Lightsail, H: Host>(
    api: &A,
    host: &H,
    me: &Me,
    steps: Vec<Step>,
    settings: &Settings,
) -> Vec<String> {
    let mut left = Vec::new();
    let all = async {
        for step in steps.into_iter().rev() {
            let done = match &step {
                Step::Mounted(at) => host.unmount(at),
                Step::MountedAt(at, made) => {
                    let r = host.unmount(at);
                    if !made {
                        let _ = std::fs::create_dir_all(at);
                    }
                    r
                }
                Step::Device(dev) => host.release(dev),
                Step::Lvm(pvs, clone) => host.put_away_lvm(pvs, clone).await,
                Step::Attached(name) => {
                    let detached = match read_ours(api, me, name).await {
                        Ok(Some(d)) => detach_checked(api, me, &d, settings.poll).await,
                        Ok(None) => Ok(()),
                        Err(e) => Err(e),
                    };
                    if detached.is_ok() {
                        // A copy of the system disk's boot-time record, if it was one.
                        host.system_copy_detached(name);
                    }
                    detached
                }
                Step::Created(name) => remove(api, me, name, settings.poll).await,
            };
            if let Err(e) = done {
                let what = match &step {
                    Step::Mounted(at) | Step::MountedAt(at, _) => {
                        format!("mount {}", at.display())
                    }
                    Step::Device(dev) => format!("device {}", dev.display()),
                    Step::Lvm(_, clone) => format!("LVM clone {clone}"),
                    Step::Attached(n) | Step::Created(n) => format!("restored disk {n}"),
                };
                tracing::error!("could not undo {what}: {e:#}");
                left.push(format!("{what}: {e:#}"));
                if matches!(step, Step::Attached(_)) {
                    break;
                }
            }
        }
    };
    if tokio::time::timeout(settings.undo_timeout, all)
        .await
        .is_err()
    {
        left.push(format!(
            "the undo did not finish within {}",
            humantime::format_duration(settings.undo_timeout)
        ));
    }
    left
}

/// What `restore --release DIR` did.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Released {
    /// The directory it was mounted at.
    pub released: PathBuf,
    /// The restored disk, detached and deleted.
    pub restored_disk: String,
    /// The snapshot it was restored from.
    pub snapshot: Option<String>,
    /// The mounts undone.
    pub unmounted: Vec<PathBuf>,
}

/// `restore --release DIR`: the restored disk mounted at (or below) `dir` — only one lightsnap
/// restored for this instance — unmounted (never lazily: a busy mount is refused with its
/// holders), detached and deleted.
pub async fn release<A: Lightsail, H: Host>(
    api: &A,
    host: &H,
    me: &Me,
    dir: &Path,
    settings: &Settings,
) -> Result<Released> {
    let dir = dir
        .canonicalize()
        .map_err(|e| Failure::new(ExitCode::NotFound, format!("{}: {e}", dir.display())))?;
    let below = host.mounts_below(&dir);
    if below.is_empty() {
        fail!(
            ExitCode::NotFound,
            "nothing is mounted at {}: no restored disk to release there (lightsnap status --refresh lists restored disks)",
            dir.display()
        );
    }
    let disks = api
        .get_disks()
        .await
        .context("listing disks to find the restored disk to release")?;
    let mut found = None;
    for d in disks.into_iter().filter(|d| is_ours(d, me)) {
        if d.attached_to.as_deref() != Some(me.instance.as_str()) {
            continue;
        }
        let Some(path) = d.path.clone() else { continue };
        let Ok(Some(dev)) = host.device_now(&d, &path) else {
            continue;
        };
        let mounts = host.mounts_of(&dev);
        if mounts.iter().any(|m| m.starts_with(&dir)) {
            found = Some((d, dev, mounts));
            break;
        }
    }
    let Some((disk, device, mounts)) = found else {
        fail!(
            ExitCode::NotFound,
            "{} is not a disk lightsnap restored for this instance ({}): nothing released (only a disk tagged {RESTORE_INSTANCE_TAG}={} is)",
            dir.display(),
            me.instance,
            me.instance
        );
    };
    let elsewhere: Vec<String> = mounts
        .iter()
        .filter(|m| !m.starts_with(&dir))
        .map(|m| m.display().to_string())
        .collect();
    if !elsewhere.is_empty() {
        fail!(
            ExitCode::Busy,
            "restored disk {} is mounted elsewhere too ({}): unmount those first; nothing released",
            disk.name,
            elsewhere.join(", ")
        );
    }
    let all = crate::kernel::mountinfo::read()?;
    let mut ours: Vec<PathBuf> = mounts.clone();
    ours.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for at in &ours {
        let Some(m) = all.iter().rev().find(|m| &m.mount_point == at) else {
            continue;
        };
        crate::kernel::unmount::unmount(m, &all)
            .with_context(|| format!("releasing restored disk {}: nothing detached", disk.name))?;
        if at != &dir {
            let _ = std::fs::remove_dir(at);
        }
    }
    // Its LVM clone, if it has one: put away (deactivated, its device-mapper nodes gone).
    let (pvs, _) = super::lvm_split(host.filesystems(&device));
    host.put_away_lvm(&pvs, &super::lvm::vg_name(&disk.name))
        .await
        .with_context(|| {
            format!(
                "releasing restored disk {}: unmounted, its LVM group not put away, not detached",
                disk.name
            )
        })?;
    if let Some(why) = host.in_use(&device) {
        fail!(
            ExitCode::Busy,
            "restored disk {} ({}) is in use: {why}; unmounted, not detached",
            disk.name,
            device.display()
        );
    }
    host.release(&device)?;
    // Read again: the tags must still say it is ours.
    match tokio::time::timeout(
        settings.timeout,
        remove(api, me, &disk.name, settings.poll),
    )
    .await
    {
        Ok(Err(e)) if is_access_denied(&e) => fail!(
            ExitCode::AccessDenied,
            "restored disk {} was unmounted, but these AWS credentials may not detach or delete it ({e:#}); an append-only key (lightsnap iam-policy --append-only) deletes no restored copy, and an instance key only one tagged lightsnap:scratch (a copy made by an older lightsnap is not). Delete it from an administrator's machine: aws lightsail delete-disk --disk-name {} --region {} (detach it first if it is still attached: aws lightsail detach-disk --disk-name {} --region {})",
            disk.name,
            disk.name,
            me.owner().region,
            disk.name,
            me.owner().region
        ),
        Ok(done) => {
            done?;
            host.system_copy_detached(&disk.name);
        }
        Err(_) => fail!(
            ExitCode::Failure,
            "restored disk {} was unmounted, but it was not detached and deleted within --timeout {}; once it is detached, delete it (aws lightsail delete-disk --disk-name {}); lightsnap status --refresh lists it meanwhile",
            disk.name,
            humantime::format_duration(settings.timeout),
            disk.name
        ),
    }
    Ok(Released {
        released: dir,
        snapshot: disk.tag(RESTORE_OF_TAG).map(str::to_string),
        restored_disk: disk.name,
        unmounted: ours,
    })
}

/// Whether Lightsail refused a call of `e`'s to these credentials (AccessDeniedException).
pub(super) fn is_access_denied(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<crate::cloud::lightsail::ApiError>()
            .is_some_and(|a| a.kind == ApiErrorKind::AccessDenied)
    })
}

/// An unmount that failed, said for a restore: a busy mount (exit 5) with the processes
/// holding it and `what` stayed as it was.
pub fn busy(e: crate::kernel::unmount::UnmountError, what: &str) -> anyhow::Error {
    use crate::kernel::unmount::UnmountError;
    match e {
        UnmountError::Busy {
            mount_point,
            holders,
            submounts,
        } => {
            let mut lines: Vec<String> = holders.iter().map(|h| format!("  {h}")).collect();
            lines.extend(
                submounts
                    .iter()
                    .map(|m| format!("  mount below it: {}", m.display())),
            );
            if lines.is_empty() {
                lines.push(
                    "  (no process found; a kernel user such as swap or a loop device?)".into(),
                );
            }
            Failure::new(
                ExitCode::Busy,
                format!(
                    "{} is busy, so it was left mounted and {what}; stop these first:\n{}",
                    mount_point.display(),
                    lines.join("\n")
                ),
            )
            .into()
        }
        other => other.into(),
    }
}

/// One restored disk still attached, as `status --refresh` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct RestoredDisk {
    /// The disk's name.
    pub name: String,
    /// Its Lightsail state.
    pub state: String,
    /// The snapshot it was restored from (its `lightsnap:restore-of`).
    pub snapshot: Option<String>,
    /// The instance it was restored for.
    pub instance: Option<String>,
    /// The instance it is attached to.
    pub attached_to: Option<String>,
    /// The device path it is attached at.
    pub path: Option<String>,
}

/// The disks lightsnap restored for `owner`'s instance still attached, as `status --refresh`
/// lists them.
pub async fn listing<A: Lightsail>(
    api: &A,
    owner: &crate::cloud::owner::Owner,
) -> Result<Vec<RestoredDisk>> {
    let (key, value) = owner.tag();
    Ok(api
        .get_disks()
        .await?
        .into_iter()
        .filter(|d| d.tag(RESTORE_OF_TAG).is_some() && d.tag(REPLACES_TAG).is_none())
        .filter(|d| d.tag(&key) == Some(value.as_str()))
        .filter(|d| d.is_attached)
        .map(|d| RestoredDisk {
            snapshot: d.tag(RESTORE_OF_TAG).map(str::to_string),
            instance: d.tag(RESTORE_INSTANCE_TAG).map(str::to_string),
            name: d.name,
            state: d.state,
            attached_to: d.attached_to,
            path: d.path,
        })
        .collect())
}

/// One listed restored disk, for people.
pub fn listing_line(d: &RestoredDisk) -> String {
    format!(
        "restored disk {} (from {}, for instance {}, attached at {}): lightsnap restore --release DIR releases it",
        d.name,
        d.snapshot.as_deref().unwrap_or("?"),
        d.instance.as_deref().unwrap_or("?"),
        d.path.as_deref().unwrap_or("?"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restored_names_are_unique_and_valid() {
        let a = name_for("data-1-20261207");
        let b = name_for("data-1-20261207");
        assert_ne!(a, b);
        assert!(a.starts_with("data-1-20261207-restore-"), "{a}");
        let long = name_for(&"a".repeat(255));
        assert_eq!(long.len(), 255);
        crate::cloud::validate::name("disk name", &long).unwrap();
    }

    #[test]
    fn a_mount_directory_must_be_empty_or_missing() {
        let dir = tempfile::tempdir().unwrap();
        let new = dir.path().join("a/b");
        assert!(prepare_dir(&new).unwrap());
        let mode = std::fs::metadata(&new).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        assert!(!prepare_dir(&new).unwrap());
        std::fs::write(new.join("x"), "x").unwrap();
        let err = prepare_dir(&new).unwrap_err();
        assert_eq!(ExitCode::of(&err), ExitCode::Usage);
        assert!(err.to_string().contains("not empty"), "{err}");
        let err = prepare_dir(&new.join("x")).unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
    }
}
