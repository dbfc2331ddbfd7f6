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
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Check {
    /// Its block device.
    pub device: PathBuf,
    /// Its filesystem, if known.
    pub fstype: Option<FsType>,
    /// The command run (`e2fsck -f -n /dev/...`), or what was done instead.
    pub checker: String,
    /// Whether it found it clean.
    pub clean: bool,
    /// What it said when it was not.
    pub detail: String,
}

/// This machine, as the rehearsal uses it.
#[allow(async_fn_in_trait)]
pub trait Host {
    /// The block device of `disk` once it has appeared, attached at `path`; polls until it
    /// does (the caller bounds it).
    async fn device(&self, disk: &DiskState, path: &str) -> Result<PathBuf> {
        loop {
            if let Some(dev) = self.device_now(disk, path) {
                return Ok(dev);
            }
            tokio::time::sleep(DEVICE_POLL).await;
        }
    }
    /// The block device of `disk`, attached at `path`, if it is there now.
    fn device_now(&self, disk: &DiskState, path: &str) -> Option<PathBuf>;
    /// Sets a device read-write again (undoing the check's BLKROSET) before it is detached:
    /// a device node that outlives the detach (a loop device) must not stay read-only for
    /// its next user.
    fn release(&self, device: &Path) -> Result<()>;
    /// The filesystems on a whole disk.
    fn filesystems(&self, device: &Path) -> Vec<Found>;
    /// Checks one: journal replay where a restore would make one, the device set read-only,
    /// the checker in no-change mode.
    async fn check(&self, fs: &Found) -> Check;
    /// Mounts it read-only at `at` (made if missing).
    async fn mount(&self, fs: &Found, at: &Path) -> Result<()>;
    /// Unmounts `at` if something is mounted there, and removes the directory.
    fn unmount(&self, at: &Path) -> Result<()>;
    /// The mount points below `dir` (a killed run's mounts).
    fn mounts_below(&self, dir: &Path) -> Vec<PathBuf>;
    /// Runs the `verify` phase of the hooks.
    async fn hooks(&self, env: &HookEnv) -> Result<()>;
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
    /// Where the journal-replay mounts are made (beside the read-only ones).
    pub mount_dir: PathBuf,
}

/// How often the device is looked for.
const DEVICE_POLL: Duration = Duration::from_millis(200);

impl Host for Machine {
    fn device_now(&self, disk: &DiskState, path: &str) -> Option<PathBuf> {
        let base = Path::new(path).file_name()?;
        match crate::test_switch!(DEV_DIR_ENV) {
            Some(dir) => Path::new(&dir).join(base).canonicalize().ok(),
            None => find_device(&SysfsRoot::default(), disk, path),
        }
    }

    fn release(&self, device: &Path) -> Result<()> {
        set_read_only(device, false)
    }

    fn filesystems(&self, device: &Path) -> Vec<Found> {
        fs::filesystems(device, &partitions(device))
    }

    async fn check(&self, found: &Found) -> Check {
        let device = found.device.clone();
        let Some(sb) = found.superblock else {
            return Check {
                device,
                fstype: None,
                checker: "superblock".into(),
                clean: false,
                detail: "no ext4, XFS or btrfs superblock found: the disk holds no filesystem lightsnap knows (zeroed or damaged?)".into(),
            };
        };
        let fstype = sb.fstype;
        let failed = |checker: String, detail: String| Check {
            device: device.clone(),
            fstype: Some(fstype),
            checker,
            clean: false,
            detail,
        };
        // The replay a restore makes first, on the scratch copy.
        let replay = match fstype {
            FsType::Xfs => true,
            FsType::Ext4 => sb.needs_recovery,
            FsType::Btrfs => false,
        };
        if replay {
            let dir = self.mount_dir.join(format!(
                ".replay-{}",
                device.file_name().unwrap_or_default().to_string_lossy()
            ));
            if let Err(e) = crate::files::private_dir(&self.mount_dir) {
                return failed("mount (journal replay)".into(), format!("{e:#}"));
            }
            let replayed = mount(&device, &dir, fstype, replay_options(fstype), false)
                .map_err(|e| ("mount (journal replay)", e))
                .and_then(|()| umount(&dir).map_err(|e| ("umount (journal replay)", e)));
            let _ = std::fs::remove_dir(&dir);
            if let Err((what, e)) = replayed {
                return failed(what.into(), format!("{e:#}"));
            }
        }
        if let Err(e) = tool(
            Command::new("blockdev").arg("--setro").arg(&device),
            self.tool_timeout,
        )
        .await
        {
            return failed("blockdev --setro".into(), format!("{e:#}"));
        }
        let (program, args) = fstype.checker();
        let line = format!("{program} {} {}", args.join(" "), device.display());
        let mut cmd = Command::new(program);
        cmd.args(args).arg(&device);
        match tool(&mut cmd, self.tool_timeout).await {
            Ok(_) => Check {
                device,
                fstype: Some(fstype),
                checker: line,
                clean: true,
                detail: String::new(),
            },
            Err(e) => failed(line, format!("{e:#}")),
        }
    }

    async fn mount(&self, found: &Found, at: &Path) -> Result<()> {
        let fstype = found.fstype().context("no filesystem to mount")?;
        // Root's alone: a restored copy may hold files other users must not read.
        crate::files::private_dir(&self.mount_dir)?;
        crate::files::create_private(at)?;
        mount(&found.device, at, fstype, fstype.read_only_options(), true)
    }

    fn unmount(&self, at: &Path) -> Result<()> {
        if is_mount_point(at) {
            umount(at)?;
        }
        match std::fs::remove_dir(at) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("removing {}", at.display())),
        }
    }

    fn mounts_below(&self, dir: &Path) -> Vec<PathBuf> {
        let mut found: Vec<PathBuf> = crate::kernel::mountinfo::read()
            .unwrap_or_default()
            .into_iter()
            .map(|m| m.mount_point)
            .filter(|p| p.starts_with(dir) && p != dir)
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

/// The whole disk of a scratch disk on a real instance: the NVMe disk whose serial is its
/// volume id (Nitro), or the device at its attachment path (Xen), as discovery finds disks.
pub fn find_device(root: &SysfsRoot, disk: &DiskState, path: &str) -> Option<PathBuf> {
    let names = std::fs::read_dir("/sys/class/block").ok()?;
    for entry in names.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        // Partitions, and the per-path nodes of NVMe multipath (`nvme1c1n1`), are not disks.
        if entry.path().join("partition").exists()
            || (name.starts_with("nvme") && name.contains('c'))
        {
            continue;
        }
        let ids = ebs::disk_ids(root, &name);
        let by_volume = ids.volume_id.is_some() && ids.volume_id.as_deref() == disk.volume_id();
        let by_name = ids
            .ebs_device_name
            .as_deref()
            .is_some_and(|n| ebs::as_dev_path(n) == Path::new(path));
        if by_volume || by_name {
            return Some(ids.dev_path);
        }
    }
    // Xen: the path itself.
    Path::new(path).exists().then(|| PathBuf::from(path))
}

/// The partitions of a whole disk, from sysfs, in order.
fn partitions(device: &Path) -> Vec<PathBuf> {
    let Some(name) = device.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return Vec::new();
    };
    let mut parts: Vec<PathBuf> = std::fs::read_dir(format!("/sys/class/block/{name}"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().join("partition").exists())
                .map(|e| Path::new("/dev").join(e.file_name()))
                .collect()
        })
        .unwrap_or_default();
    parts.sort();
    parts
}

fn replay_options(fstype: FsType) -> &'static str {
    match fstype {
        // Its twin (the disk it was taken of) is likely mounted here, with the same UUID.
        FsType::Xfs => "nouuid",
        _ => "",
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
    nix::mount::mount(Some(device), at, Some(fstype.mount_type()), flags, data).with_context(|| {
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

/// Runs a tool in its own process group, bounded by `timeout`; killed with its group when the
/// caller gives up (dropped) or the time is up. Its output is the error when it fails.
async fn tool(cmd: &mut Command, timeout: Duration) -> Result<String> {
    let line = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let child = cmd.spawn().with_context(|| format!("starting {line}"))?;
    let group = KillGroup(nix::unistd::Pid::from_raw(child.id() as i32));
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = tokio::time::timeout(timeout, rx)
        .await
        .with_context(|| {
            format!(
                "{line} did not finish within {}",
                humantime::format_duration(timeout)
            )
        })?
        .context("the tool's waiter thread is gone")??;
    std::mem::forget(group);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        let tail: Vec<&str> = text.lines().rev().take(12).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        anyhow::bail!("{line} exited with {}: {}", out.status, tail.join(" / "));
    }
    Ok(text)
}

/// Kills a process group when dropped (a tool whose caller gave up).
struct KillGroup(nix::unistd::Pid);

impl Drop for KillGroup {
    fn drop(&mut self) {
        let _ = nix::sys::signal::killpg(self.0, nix::sys::signal::Signal::SIGKILL);
    }
}
