//! The restore rehearsal's side of this machine ([`Host`]): finding the attached disk's block
//! device, checking its filesystems, mounting them read-only, running the `verify` hooks. The
//! real one ([`Machine`]) runs the tools; tests inject a scripted one.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};

use super::fs::{self, Found, FsType};
use crate::cloud::ebs;
use crate::cloud::lightsail::DiskState;
use crate::hooks::{HookEnv, Hooks};
use crate::kernel::blockdev::SysfsRoot;

/// The test-only variable naming the directory where an attached disk appears, as
/// `DIR/<basename of its device path>` (a link to its block device), instead of `/dev` and
/// sysfs: the fake Lightsail's `--attach-dir`. Like `LIGHTSNAP_CONFINE_TO`, for tests.
pub const DEV_DIR_ENV: &str = "LIGHTSNAP_DEV_DIR";

/// What one filesystem's check came to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct Check {
    /// Its block device.
    pub device: PathBuf,
    /// Its filesystem, if known.
    pub fstype: Option<FsType>,
    /// The command run (`e2fsck -f -n /dev/...`), or what was done instead.
    pub checker: String,
    /// Whether it found it clean.
    pub clean: bool,
    /// Whether it could not be checked at all (a missing checker, one that did not start or
    /// finish, a layout lightsnap does not check): neither clean nor failed.
    pub unchecked: bool,
    /// What it said when it was not clean.
    pub detail: String,
    /// The LVM logical volume it is, as the live group names it (`VG/LV`), for a volume of a
    /// group on the restored disk imported as a clone.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub volume: Option<String>,
}

impl Check {
    /// A check that found `device` clean.
    pub fn clean(device: PathBuf, fstype: Option<FsType>, checker: String) -> Self {
        Self {
            device,
            fstype,
            checker,
            clean: true,
            unchecked: false,
            detail: String::new(),
            volume: None,
        }
    }

    /// A check that found something wrong.
    pub fn failed(
        device: PathBuf,
        fstype: Option<FsType>,
        checker: String,
        detail: String,
    ) -> Self {
        Self {
            device,
            fstype,
            checker,
            clean: false,
            unchecked: false,
            detail,
            volume: None,
        }
    }

    /// A check that could not be made, and why.
    pub fn unchecked(
        device: PathBuf,
        fstype: Option<FsType>,
        checker: String,
        detail: String,
    ) -> Self {
        Self {
            device,
            fstype,
            checker,
            clean: false,
            unchecked: true,
            detail,
            volume: None,
        }
    }

    /// The check of `fs`, named by its logical volume when it is one.
    pub fn of(mut self, fs: &Found) -> Self {
        self.volume = fs.volume.clone();
        self
    }

    /// One line for the report's `failures` or `unchecked`.
    pub fn line(&self) -> String {
        let volume = self
            .volume
            .as_deref()
            .map(|v| format!(" (logical volume {v})"))
            .unwrap_or_default();
        format!(
            "{}{volume}: {}: {}",
            self.device.display(),
            self.checker,
            self.detail
        )
    }
}

/// A step of the rehearsal that could not be made for a reason that says nothing of the
/// snapshot (a filesystem module the kernel lacks, a mount option it is too old for): the
/// verdict is "could not check", never "failed".
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CouldNotCheck(pub String);

/// This machine, as the rehearsal uses it.
#[allow(async_fn_in_trait)]
pub trait Host {
    /// The block device of `disk` once it has appeared, attached at `path`; polls until it
    /// does (the caller bounds it). Refused when it cannot be told apart (two devices match).
    async fn device(&self, disk: &DiskState, path: &str) -> Result<PathBuf> {
        loop {
            if let Some(dev) = self.device_now(disk, path)? {
                return Ok(dev);
            }
            tokio::time::sleep(DEVICE_POLL).await;
        }
    }
    /// The block device of `disk`, attached at `path`, if it is there now: by its volume id
    /// (the NVMe serial) whenever the device tells one, by the attachment path only for a
    /// device that tells none and is not in use; an error when two match.
    fn device_now(&self, disk: &DiskState, path: &str) -> Result<Option<PathBuf>>;
    /// Why `device` (or one of its partitions) is in use here — mounted, held by
    /// device-mapper or md, open in a process — in plain words; `None` when it is not.
    fn in_use(&self, device: &Path) -> Option<String>;
    /// The mount points of `device`, of its partitions and of what is built on them (the
    /// logical volumes of an imported LVM clone), wherever they are.
    fn mounts_of(&self, device: &Path) -> Vec<PathBuf>;
    /// Sets a device read-write again (undoing the check's BLKROSET) before it is detached:
    /// a device node that outlives the detach (a loop device) must not stay read-only for
    /// its next user.
    fn release(&self, device: &Path) -> Result<()>;
    /// The filesystems (and layouts) on a whole disk.
    fn filesystems(&self, device: &Path) -> Vec<Found>;
    /// Imports the LVM physical volumes `pvs` of the restored disk as the renamed clone
    /// `clone` ([`super::lvm`]: confined to those devices, the live group never seen) and
    /// activates its logical volumes: each one as a filesystem found, named by its volume.
    /// [`CouldNotCheck`] when it cannot (a PV on another disk, no lvm2), naming why. The
    /// caller has recorded [`Host::put_away_lvm`] as a step before.
    async fn import_lvm(&self, pvs: &[PathBuf], clone: &str) -> Result<Vec<Found>>;
    /// Puts the clone `clone` on `pvs` away: deactivated, its device-mapper nodes removed;
    /// nothing there is fine. Also for a killed run's import (the clone's name comes from the
    /// disk's).
    async fn put_away_lvm(&self, pvs: &[PathBuf], clone: &str) -> Result<()>;
    /// Checks one: journal replay where a restore would make one (mounted at `replay_at`,
    /// which the caller has recorded as a step to undo), the device set read-only, the
    /// checker in no-change mode.
    async fn check(&self, fs: &Found, replay_at: &Path) -> Check;
    /// Mounts it read-only at `at` (made if missing); [`CouldNotCheck`] when this machine
    /// cannot (no such filesystem in its kernel, too old for a read-only option).
    async fn mount(&self, fs: &Found, at: &Path) -> Result<()>;
    /// Unmounts `at` if something is mounted there, and removes the directory; a busy mount
    /// of this run's is detached lazily (its hooks' processes have been ended).
    fn unmount(&self, at: &Path) -> Result<()>;
    /// Unmounts a killed run's mount at `at`, never lazily: a mount someone uses (an operator
    /// recovering files from it) stays, and the error says so.
    fn unmount_leftover(&self, at: &Path) -> Result<()>;
    /// The mount points at or below `dir` (a killed run's mounts), deepest first.
    fn mounts_below(&self, dir: &Path) -> Vec<PathBuf>;
    /// Runs the `verify` phase of the hooks.
    async fn hooks(&self, env: &HookEnv) -> Result<()>;
    /// Records, where the boot step finds it after a reboot, that a copy of the system disk
    /// is about to be attached ([`super::bootcopy`]); an error stops the attach.
    fn system_copy_attaching(&self, record: &super::bootcopy::Record) -> Result<()>;
    /// A copy of the system disk (or any disk: a disk without a record is nothing) is
    /// detached or gone: its record goes. A failure is a warning (the boot step clears a
    /// record whose disk is not there).
    fn system_copy_detached(&self, disk: &str);
    /// Said at priority crit while a copy of the system disk is attached (see
    /// [`crate::restore`]).
    fn system_copy_attached(&self, name: &str, device: &Path) {
        tracing::error!(
            priority = 2,
            "scratch disk {name} ({}) is a copy of the system disk, attached here: it carries the root filesystem's UUID, LABEL and PARTUUID, and a boot now could take it for /; it is removed before this run ends",
            device.display()
        );
    }
}

/// The real machine.
#[derive(Debug, Clone)]
pub struct Machine {
    /// Where verify hooks live.
    pub hook_dir: PathBuf,
    /// How long one may run.
    pub hook_timeout: Duration,
    /// How long one checker may run.
    pub tool_timeout: Duration,
    /// Where the restored filesystems are mounted.
    pub mount_dir: PathBuf,
}

/// How often the device is looked for.
const DEVICE_POLL: Duration = Duration::from_millis(200);

/// How much of a checker's output is kept: its first and its last lines, this many bytes
/// each (an `e2fsck -fn` of a badly damaged filesystem says millions of lines).
pub const OUTPUT_KEPT: usize = 16 * 1024;

impl Host for Machine {
    fn system_copy_attaching(&self, record: &super::bootcopy::Record) -> Result<()> {
        super::bootcopy::write(&super::bootcopy::record_dir(), record)
    }

    fn system_copy_detached(&self, disk: &str) {
        match super::bootcopy::clear(&super::bootcopy::record_dir(), disk) {
            Ok(true) => tracing::info!(
                "copy of the system disk {disk} detached: its boot-time record is cleared"
            ),
            Ok(false) => {}
            Err(e) => tracing::warn!("{e:#}"),
        }
    }

    fn device_now(&self, disk: &DiskState, path: &str) -> Result<Option<PathBuf>> {
        let Some(base) = Path::new(path).file_name() else {
            return Ok(None);
        };
        match crate::test_switch!(DEV_DIR_ENV) {
            Some(dir) => Ok(Path::new(&dir).join(base).canonicalize().ok()),
            None => {
                let root = SysfsRoot::default();
                find_device(&root, disk, path, |name| {
                    in_use(&root, name, &Path::new("/dev").join(name))
                })
            }
        }
    }

    fn in_use(&self, device: &Path) -> Option<String> {
        let name = device.file_name()?.to_string_lossy().into_owned();
        in_use(&SysfsRoot::default(), &name, device)
    }

    fn mounts_of(&self, device: &Path) -> Vec<PathBuf> {
        let Some(name) = device.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            return Vec::new();
        };
        let root = SysfsRoot::default();
        let mut devs = devices_of(&root, &name);
        // And what is built on them (the logical volumes of an imported LVM clone).
        let holders: Vec<String> = devs.iter().flat_map(|(n, _)| root.holders_of(n)).collect();
        devs.extend(holders.into_iter().map(|h| {
            let dev = root.dev_of(&h);
            (h, dev)
        }));
        crate::kernel::mountinfo::read()
            .unwrap_or_default()
            .into_iter()
            .filter(|m| {
                devs.iter()
                    .any(|(n, d)| Some(m.dev) == *d || m.source == format!("/dev/{n}"))
            })
            .map(|m| m.mount_point)
            .collect()
    }

    fn release(&self, device: &Path) -> Result<()> {
        set_read_only(device, false)
    }

    fn filesystems(&self, device: &Path) -> Vec<Found> {
        fs::filesystems(device, &partitions(device))
    }

    async fn import_lvm(&self, pvs: &[PathBuf], clone: &str) -> Result<Vec<Found>> {
        let tools = Tools(self.tool_timeout);
        let volumes = super::lvm::import(&tools, pvs, clone)
            .await
            .map_err(CouldNotCheck)?;
        tracing::info!(
            "LVM on the restored disk imported as {clone}: {}",
            volumes
                .iter()
                .map(|v| format!("{} ({})", v.name, v.device.display()))
                .collect::<Vec<_>>()
                .join(", ")
        );
        Ok(volumes
            .into_iter()
            .map(|v| {
                let mut found = fs::look_at(&v.device);
                found.volume = Some(v.name);
                found
            })
            .collect())
    }

    async fn put_away_lvm(&self, pvs: &[PathBuf], clone: &str) -> Result<()> {
        let tools = Tools(self.tool_timeout);
        super::lvm::put_away(&tools, pvs, clone, || {
            super::lvm::mappings(Path::new("/sys/block"))
        })
        .await
    }

    async fn check(&self, found: &Found, replay_at: &Path) -> Check {
        let device = found.device.clone();
        let Some(sb) = found.superblock else {
            return match found.layout {
                Some(layout) => Check::unchecked(
                    device,
                    None,
                    "not checked".into(),
                    layout.describe().into(),
                ),
                None => Check::failed(
                    device,
                    None,
                    "superblock".into(),
                    "no ext4, XFS, btrfs or FAT superblock, and no partition: the disk holds no filesystem lightsnap knows (zeroed or damaged?)".into(),
                ),
            };
        };
        let fstype = Some(sb.fstype);
        // The replay a restore makes first, on the scratch copy.
        let replay = match sb.fstype {
            FsType::Xfs => true,
            FsType::Ext4 => sb.needs_recovery,
            FsType::Btrfs | FsType::Vfat => false,
        };
        if replay {
            if let Err(e) = crate::files::private_dir(&self.mount_dir) {
                return Check::unchecked(
                    device,
                    fstype,
                    "mount (journal replay)".into(),
                    format!("{e:#}"),
                );
            }
            let replayed = mount(
                &device,
                replay_at,
                sb.fstype,
                replay_options(sb.fstype),
                false,
            )
            .map_err(|e| ("mount (journal replay)", e))
            .and_then(|()| umount(replay_at).map_err(|e| ("umount (journal replay)", e)));
            let _ = std::fs::remove_dir(replay_at);
            if let Err((what, e)) = replayed {
                return if e.is::<CouldNotCheck>() {
                    Check::unchecked(device, fstype, what.into(), format!("{e:#}"))
                } else {
                    Check::failed(device, fstype, what.into(), format!("{e:#}"))
                };
            }
        }
        if let Err(e) = tool(
            Command::new("blockdev").arg("--setro").arg(&device),
            self.tool_timeout,
        )
        .await
        {
            return Check::unchecked(device, fstype, "blockdev --setro".into(), e.to_string());
        }
        let (program, args) = sb.fstype.checker();
        let line = format!("{program} {} {}", args.join(" "), device.display());
        let mut cmd = Command::new(program);
        cmd.args(args).arg(&device);
        match tool(&mut cmd, self.tool_timeout).await {
            Ok(_) => Check::clean(device, fstype, line),
            Err(ToolError::Failed(said)) => Check::failed(device, fstype, line, said),
            Err(e @ ToolError::NotRun(_)) => Check::unchecked(device, fstype, line, e.to_string()),
        }
    }

    async fn mount(&self, found: &Found, at: &Path) -> Result<()> {
        let fstype = found.fstype().context("no filesystem to mount")?;
        let release = nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default();
        let Some(options) = fstype.read_only_options(&release) else {
            return Err(CouldNotCheck(format!(
                "kernel {release} cannot mount {} read-only without replaying its log (it needs 4.6 or later): {} not mounted",
                fstype.mount_type(),
                found.device.display()
            ))
            .into());
        };
        // Root's alone: a restored copy may hold files other users must not read.
        crate::files::private_dir(&self.mount_dir)?;
        crate::files::create_private(at)?;
        mount(&found.device, at, fstype, options, true)
    }

    fn unmount(&self, at: &Path) -> Result<()> {
        if is_mount_point(at) {
            umount(at)?;
        }
        remove_dir(at)
    }

    fn unmount_leftover(&self, at: &Path) -> Result<()> {
        if is_mount_point(at) {
            crate::kernel::guard::check(at)?;
            nix::mount::umount(at).with_context(|| {
                format!(
                    "unmounting {} (left by a killed verify; in use: left as it is)",
                    at.display()
                )
            })?;
        }
        remove_dir(at)
    }

    fn mounts_below(&self, dir: &Path) -> Vec<PathBuf> {
        let mut found: Vec<PathBuf> = crate::kernel::mountinfo::read()
            .unwrap_or_default()
            .into_iter()
            .map(|m| m.mount_point)
            .filter(|p| p.starts_with(dir))
            .collect();
        // Deepest first.
        found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        found
    }

    async fn hooks(&self, env: &HookEnv) -> Result<()> {
        Hooks::load(&self.hook_dir, self.hook_timeout)?
            .verify(env)
            .await
    }
}

fn remove_dir(at: &Path) -> Result<()> {
    match std::fs::remove_dir(at) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", at.display())),
    }
}

/// A disk and its partitions: kernel names and device numbers.
fn devices_of(root: &SysfsRoot, name: &str) -> Vec<(String, Option<(u32, u32)>)> {
    std::iter::once(name.to_string())
        .chain(root.partitions_of(name).into_iter().map(|(p, _)| p))
        .map(|n| {
            let dev = root.dev_of(&n);
            (n, dev)
        })
        .collect()
}

/// Why disk `name` (at `device`) or one of its partitions is in use: mounted (mountinfo),
/// held (sysfs `holders/`), or open in a process (`/proc/*/fd`, this one's aside).
pub fn in_use(root: &SysfsRoot, name: &str, device: &Path) -> Option<String> {
    let devs = devices_of(root, name);
    let mounts = crate::kernel::mountinfo::read().unwrap_or_default();
    for (n, dev) in &devs {
        if let Some(m) = mounts
            .iter()
            .find(|m| Some(m.dev) == *dev || m.source == format!("/dev/{n}"))
        {
            return Some(format!(
                "/dev/{n} is mounted at {}",
                m.mount_point.display()
            ));
        }
        let holders = root.holders_of(n);
        if !holders.is_empty() {
            return Some(format!("/dev/{n} is held by {}", holders.join(", ")));
        }
    }
    let mut paths: Vec<PathBuf> = devs
        .iter()
        .map(|(n, _)| Path::new("/dev").join(n))
        .collect();
    paths.push(device.to_path_buf());
    open_by(&paths)
}

/// The first process (other than this one) with one of `paths` open.
fn open_by(paths: &[PathBuf]) -> Option<String> {
    let me = std::process::id() as i32;
    let procs = procfs::process::all_processes().ok()?;
    for p in procs.flatten() {
        if p.pid() == me {
            continue;
        }
        let Ok(fds) = p.fd() else { continue };
        for fd in fds.flatten() {
            if let procfs::process::FDTarget::Path(target) = &fd.target {
                if paths.iter().any(|w| w == target) {
                    let command = p.stat().map(|s| s.comm).unwrap_or_default();
                    return Some(format!(
                        "{} is open in pid {} ({command})",
                        target.display(),
                        p.pid()
                    ));
                }
            }
        }
    }
    None
}

/// The whole disk of a scratch disk on a real instance. By volume id: the NVMe disk whose
/// serial is the disk's (Nitro) — two such disks are refused. By the attachment path only
/// for a disk that tells no volume id (Xen, where the device is the path itself), and only
/// when it is not in use (`in_use` of its kernel name): a device that lingers at the path
/// from a disk just detached, or the instance's own disk, is never taken for the scratch
/// disk; two such candidates are refused.
pub fn find_device(
    root: &SysfsRoot,
    disk: &DiskState,
    path: &str,
    in_use: impl Fn(&str) -> Option<String>,
) -> Result<Option<PathBuf>> {
    let ours = disk.volume_id();
    let base = Path::new(path)
        .file_name()
        .map(|b| b.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut by_volume = Vec::new();
    let mut by_path = Vec::new();
    for name in root.whole_disks() {
        let ids = ebs::disk_ids(root, &name);
        match (ids.volume_id.as_deref(), ours) {
            (Some(v), Some(o)) if v == o => by_volume.push(name),
            // Another volume: whatever path it claims, it is not this disk.
            (Some(_), _) => {}
            (None, _) => {
                let named = ids
                    .ebs_device_name
                    .as_deref()
                    .is_some_and(|n| ebs::as_dev_path(n) == Path::new(path));
                if named || name == base {
                    by_path.push(name);
                }
            }
        }
    }
    let refuse = |names: &[String], how: &str| -> anyhow::Error {
        anyhow::anyhow!(
            "scratch disk {} cannot be told apart here: {} all match {how}; nothing of them is checked",
            disk.name,
            names
                .iter()
                .map(|n| format!("/dev/{n}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    match by_volume.as_slice() {
        [one] => return Ok(Some(Path::new("/dev").join(one))),
        [] => {}
        many => {
            return Err(refuse(
                many,
                &format!("its volume id {}", ours.unwrap_or_default()),
            ))
        }
    }
    let free: Vec<String> = by_path
        .into_iter()
        .filter(|n| match in_use(n) {
            Some(why) => {
                tracing::debug!("/dev/{n} matches path {path} but is in use ({why}): not it");
                false
            }
            None => true,
        })
        .collect();
    match free.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(Path::new("/dev").join(one))),
        many => Err(refuse(many, &format!("its attachment path {path}"))),
    }
}

/// The partitions of a whole disk, from sysfs, in order.
fn partitions(device: &Path) -> Vec<fs::Partition> {
    let Some(name) = device.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return Vec::new();
    };
    SysfsRoot::default()
        .partitions_of(&name)
        .into_iter()
        .map(|(p, number)| fs::Partition {
            device: Path::new("/dev").join(p),
            number,
        })
        .collect()
}

fn replay_options(fstype: FsType) -> &'static str {
    match fstype {
        // Its twin (the disk it was taken of) is likely mounted here, with the same UUID.
        FsType::Xfs => "nouuid",
        FsType::Ext4 | FsType::Btrfs | FsType::Vfat => "",
    }
}

/// BLKROSET on a device, said with its name.
fn set_read_only(device: &Path, read_only: bool) -> Result<()> {
    crate::kernel::set_read_only(device, read_only).with_context(|| {
        format!(
            "setting {} {}",
            device.display(),
            if read_only {
                "read-only (BLKROSET 1)"
            } else {
                "read-write (BLKROSET 0)"
            }
        )
    })
}

/// mount(2) of a block device (within `LIGHTSNAP_CONFINE_TO`, where set).
fn mount(device: &Path, at: &Path, fstype: FsType, options: &str, read_only: bool) -> Result<()> {
    use nix::mount::MsFlags;
    crate::kernel::guard::check(at)?;
    crate::files::create_private(at)?;
    let flags = if read_only {
        MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC
    } else {
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC
    };
    let data = (!options.is_empty()).then_some(options);
    let mounted = nix::mount::mount(Some(device), at, Some(fstype.mount_type()), flags, data);
    if mounted == Err(nix::errno::Errno::ENODEV) {
        let _ = std::fs::remove_dir(at);
        return Err(CouldNotCheck(format!(
            "this kernel does not know the {} filesystem (ENODEV): {} not mounted",
            fstype.mount_type(),
            device.display()
        ))
        .into());
    }
    mounted.with_context(|| {
        format!(
            "mounting {} ({}{}{}) at {}",
            device.display(),
            fstype.mount_type(),
            if read_only { ", ro" } else { "" },
            if options.is_empty() {
                String::new()
            } else {
                format!(", {options}")
            },
            at.display()
        )
    })
}

/// umount(2), waiting a little while the mount is busy (a hook's process group just killed
/// lets go of it asynchronously), then detaching it lazily, said as a warning: the scratch
/// disk must go whatever holds it.
fn umount(at: &Path) -> Result<()> {
    crate::kernel::guard::check(at)?;
    for _ in 0..20 {
        match nix::mount::umount(at) {
            Err(nix::errno::Errno::EBUSY) => std::thread::sleep(Duration::from_millis(100)),
            other => return other.with_context(|| format!("unmounting {}", at.display())),
        }
    }
    tracing::warn!(
        "{} is still busy after 2 s: detaching it lazily (it goes when the last user lets go)",
        at.display()
    );
    nix::mount::umount2(at, nix::mount::MntFlags::MNT_DETACH)
        .with_context(|| format!("unmounting {} lazily", at.display()))
}

fn is_mount_point(p: &Path) -> bool {
    crate::kernel::mountinfo::read()
        .unwrap_or_default()
        .iter()
        .any(|m| m.mount_point == p)
}

/// Why a tool did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// It did not start (missing, not executable) or did not finish in time: it said
    /// nothing of the disk.
    #[error("{0}")]
    NotRun(String),
    /// It ran and exited non-zero: what it said (head and tail).
    #[error("{0}")]
    Failed(String),
}

/// Runs a tool in its own process group, bounded by `timeout`; killed with its group when the
/// caller gives up (dropped) or the time is up. Its output is read as it comes and only its
/// head and tail are kept ([`OUTPUT_KEPT`] bytes each): the error when it fails.
pub(super) async fn tool(cmd: &mut Command, timeout: Duration) -> Result<String, ToolError> {
    let line = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd
        .spawn()
        .map_err(|e| ToolError::NotRun(format!("{line} could not be started: {e}")))?;
    let group = KillGroup(nix::unistd::Pid::from_raw(child.id() as i32));
    let (tx, rx) = tokio::sync::oneshot::channel();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    std::thread::spawn(move || {
        // stderr on a thread of its own, so that neither pipe fills while the other is read.
        let err = std::thread::spawn(move || stderr.map(|e| Capped::read(e, OUTPUT_KEPT)));
        let out = stdout.map(|o| Capped::read(o, OUTPUT_KEPT));
        let err = err.join().ok().flatten();
        let status = child.wait();
        let _ = tx.send((status, out, err));
    });
    let (status, out, err) = tokio::time::timeout(timeout, rx)
        .await
        .map_err(|_| {
            ToolError::NotRun(format!(
                "{line} did not finish within {}",
                humantime::format_duration(timeout)
            ))
        })?
        .map_err(|_| ToolError::NotRun(format!("{line}: its waiter thread is gone")))?;
    std::mem::forget(group);
    let status = status.map_err(|e| ToolError::NotRun(format!("waiting for {line}: {e}")))?;
    let text = format!(
        "{}{}",
        out.map(|c| c.text()).unwrap_or_default(),
        err.map(|c| c.text()).unwrap_or_default()
    );
    if !status.success() {
        let tail: Vec<&str> = text.lines().rev().take(12).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(ToolError::Failed(format!(
            "{line} exited with {status}: {}",
            tail.join(" / ")
        )));
    }
    Ok(text)
}

/// A stream's first and last `cap` bytes, and how many were dropped between them.
#[derive(Debug, Default)]
pub struct Capped {
    head: Vec<u8>,
    tail: std::collections::VecDeque<u8>,
    dropped: u64,
    cap: usize,
}

impl Capped {
    /// Reads `r` to its end, keeping its head and tail.
    pub fn read(mut r: impl std::io::Read, cap: usize) -> Self {
        let mut c = Capped {
            cap,
            ..Default::default()
        };
        let mut buf = [0u8; 8192];
        loop {
            match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => c.push(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        c
    }

    fn push(&mut self, mut bytes: &[u8]) {
        let room = self.cap.saturating_sub(self.head.len());
        let take = room.min(bytes.len());
        self.head.extend_from_slice(&bytes[..take]);
        bytes = &bytes[take..];
        self.tail.extend(bytes);
        while self.tail.len() > self.cap {
            self.tail.pop_front();
            self.dropped += 1;
        }
    }

    /// The head, a line saying how much was left out, and the tail.
    pub fn text(&self) -> String {
        let tail: Vec<u8> = self.tail.iter().copied().collect();
        let mut s = String::from_utf8_lossy(&self.head).into_owned();
        if self.dropped > 0 {
            s.push_str(&format!("\n[... {} bytes left out ...]\n", self.dropped));
        }
        s.push_str(&String::from_utf8_lossy(&tail));
        s
    }

    /// How many bytes were kept.
    pub fn kept(&self) -> usize {
        self.head.len() + self.tail.len()
    }
}

/// The real tools, each bounded by this timeout, for [`super::lvm`].
struct Tools(Duration);

impl super::lvm::Commands for Tools {
    async fn run(&self, program: &str, args: &[String]) -> Result<String, ToolError> {
        tool(Command::new(program).args(args), self.0).await
    }
}

/// Kills a process group when dropped (a tool whose caller gave up).
struct KillGroup(nix::unistd::Pid);

impl Drop for KillGroup {
    fn drop(&mut self) {
        let _ = nix::sys::signal::killpg(self.0, nix::sys::signal::Signal::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::blockdev::fixture::{identify, Tree};

    fn scratch(support_code: Option<&str>) -> DiskState {
        DiskState {
            name: "s1-verify-0a1b2c3d".into(),
            state: "in-use".into(),
            path: Some("/dev/xvdg".into()),
            attached_to: Some("web-1".into()),
            is_attached: true,
            support_code: support_code.map(str::to_string),
            availability_zone: Some("us-east-1a".into()),
            size_gb: Some(8),
            tags: Vec::new(),
        }
    }

    /// An NVMe disk `name` with this serial, whose controller names `path` as its attachment.
    fn nvme(t: &Tree, name: &str, n: u32, serial: &str, path: &[u8]) {
        let dir = format!("/sys/devices/pci0000:00/0000:00:0{n}.0/nvme/nvme{n}/{name}");
        t.device(name, &dir, &format!("259:{n}"));
        t.write(&format!("{dir}/device/serial"), serial);
        t.write(
            &format!("/identify/{name}"),
            identify(serial, "Amazon Elastic Block Store", path),
        );
    }

    /// A device that lingers at the attachment path (a disk just detached from /dev/xvdg,
    /// another volume) comes first in sysfs order: the scratch disk is still found by its
    /// serial. Two devices with its serial are refused.
    #[test]
    fn the_scratch_device_is_matched_by_serial_not_by_a_stale_path() {
        let t = Tree::new();
        nvme(&t, "nvme1n1", 1, "vol0aaaaaaaaaaaaaaaa", b"/dev/xvdg");
        nvme(&t, "nvme2n1", 2, "vol0bbbbbbbbbbbbbbbb", b"/dev/xvdg");
        let disk = scratch(Some("123456789012/vol-0bbbbbbbbbbbbbbbb"));
        let found = find_device(&t.root(), &disk, "/dev/xvdg", |_| None).unwrap();
        assert_eq!(found, Some(PathBuf::from("/dev/nvme2n1")));
        // Not there yet: the stale device is not taken in its place.
        let absent = scratch(Some("123456789012/vol-0cccccccccccccccc"));
        assert_eq!(
            find_device(&t.root(), &absent, "/dev/xvdg", |_| None).unwrap(),
            None
        );
        nvme(&t, "nvme3n1", 3, "vol0bbbbbbbbbbbbbbbb", b"");
        let err = find_device(&t.root(), &disk, "/dev/xvdg", |_| None).unwrap_err();
        assert!(
            err.to_string()
                .contains("/dev/nvme2n1, /dev/nvme3n1 all match its volume id"),
            "{err}"
        );
    }

    /// Without a volume id on the device (Xen), the path decides, but never for a device in
    /// use; two free candidates are refused.
    #[test]
    fn the_path_decides_only_for_a_device_that_is_not_in_use() {
        let t = Tree::new();
        t.device("xvdg", "/sys/devices/vbd-51808/block/xvdg", "202:96");
        let disk = scratch(Some("123456789012/vol-0bbbbbbbbbbbbbbbb"));
        let free = find_device(&t.root(), &disk, "/dev/xvdg", |_| None).unwrap();
        assert_eq!(free, Some(PathBuf::from("/dev/xvdg")));
        let busy = find_device(&t.root(), &disk, "/dev/xvdg", |n| {
            (n == "xvdg").then(|| "/dev/xvdg is mounted at /srv".to_string())
        })
        .unwrap();
        assert_eq!(busy, None);
        // An NVMe controller without a serial that names the same path: two candidates.
        nvme(&t, "nvme4n1", 4, "", b"/dev/xvdg");
        let err = find_device(&t.root(), &disk, "/dev/xvdg", |_| None).unwrap_err();
        assert!(err.to_string().contains("its attachment path"), "{err}");
    }

    #[test]
    fn a_checkers_output_is_capped_head_and_tail() {
        let mut text = String::from("Pass 1: Checking inodes\n");
        for i in 0..200_000 {
            text.push_str(&format!("Inode {i} has an invalid extent\n"));
        }
        text.push_str("e2fsck: 200000 errors\n");
        let c = Capped::read(text.as_bytes(), 1024);
        assert_eq!(c.kept(), 2048);
        let kept = c.text();
        assert!(kept.starts_with("Pass 1: Checking inodes\n"), "{kept}");
        assert!(kept.ends_with("e2fsck: 200000 errors\n"), "{kept}");
        assert!(kept.contains("bytes left out"), "{kept}");
    }

    /// A checker that is not installed is "not run", not a failed check.
    #[test]
    fn a_missing_checker_is_not_a_failure() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let err = rt
            .block_on(tool(
                &mut Command::new("lightsnap-no-such-checker"),
                Duration::from_secs(10),
            ))
            .unwrap_err();
        assert!(matches!(err, ToolError::NotRun(_)), "{err}");
        let err = rt
            .block_on(tool(&mut Command::new("false"), Duration::from_secs(10)))
            .unwrap_err();
        assert!(matches!(err, ToolError::Failed(_)), "{err}");
    }
}
