//! The unmount fallback for filesystems that cannot be frozen: unmount, and later mount again
//! with exactly the same source, type, flags and options as before.
//!
//! Kernel filesystems are remounted with the bare syscall (through `sys-mount`); FUSE block
//! filesystems (ntfs-3g shows up as `fuseblk`) need their userspace helper, so those go through
//! `mount -t <helper>`.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use sys_mount::{FilesystemType, MountFlags, UnmountFlags};

use super::guard::{self, OutsideConfinement};
use super::holders::{holders, Holder};
use super::mountinfo::{self, Mount};

/// Why an unmount failed.
#[derive(Debug, thiserror::Error)]
pub enum UnmountError {
    /// EBUSY: something holds the mount; nothing was changed.
    #[error("{mount_point} is busy, so it was left mounted and no snapshot was taken; stop these first:\n{}", list(.holders, .submounts))]
    Busy {
        /// The mount point.
        mount_point: PathBuf,
        /// Processes holding it.
        holders: Vec<Holder>,
        /// Mounts below it, which keep it busy too.
        submounts: Vec<PathBuf>,
    },
    /// The confinement guard refused it.
    #[error(transparent)]
    Outside(#[from] OutsideConfinement),
    /// Anything else.
    #[error("unmounting {0}: {1}")]
    Other(PathBuf, std::io::Error),
}

fn list(holders: &[Holder], submounts: &[PathBuf]) -> String {
    let mut lines: Vec<String> = holders.iter().map(|h| format!("  {h}")).collect();
    lines.extend(
        submounts
            .iter()
            .map(|m| format!("  mount below it: {}", m.display())),
    );
    if lines.is_empty() {
        lines.push("  (no process found; a kernel user such as swap or a loop device?)".into());
    }
    lines.join("\n")
}

/// Unmounts `mount` (not lazily: a lazy unmount would let writers carry on). On EBUSY the
/// error lists the holders, read after the failed attempt.
pub fn unmount(mount: &Mount, all_mounts: &[Mount]) -> Result<(), UnmountError> {
    guard::check(&mount.mount_point)?;
    let dev = std::fs::metadata(&mount.mount_point)
        .map(|m| m.dev())
        .map_err(|e| UnmountError::Other(mount.mount_point.clone(), e))?;
    match sys_mount::unmount(&mount.mount_point, UnmountFlags::empty()) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Err(UnmountError::Busy {
            mount_point: mount.mount_point.clone(),
            holders: holders(&mount.mount_point, dev),
            submounts: all_mounts
                .iter()
                .filter(|m| m.parent_id == mount.id)
                .map(|m| m.mount_point.clone())
                .collect(),
        }),
        Err(e) => Err(UnmountError::Other(mount.mount_point.clone(), e)),
    }
}

/// Mounts `mount`'s source on its mount point again, as it was, and checks the result against
/// the mount table. Errors say what was tried, so an operator can do it by hand.
pub fn remount(mount: &Mount) -> Result<()> {
    guard::check(&mount.mount_point)?;
    if mount.is_fuse() {
        remount_with_helper(mount)?;
    } else {
        let (flags, data) = syscall_arguments(mount);
        let mut builder = sys_mount::Mount::builder()
            .fstype(FilesystemType::Manual(&mount.fstype))
            .flags(flags);
        if !data.is_empty() {
            builder = builder.data(&data);
        }
        builder
            .mount(&mount.source, &mount.mount_point)
            .with_context(|| {
                format!(
                    "mounting {} on {} again (type {}, options {}); mount it by hand: mount -t {} -o {} {} {}",
                    mount.source,
                    mount.mount_point.display(),
                    mount.fstype,
                    mount.mount_options,
                    mount.fstype,
                    mount.mount_options,
                    mount.source,
                    mount.mount_point.display()
                )
            })?;
    }
    Ok(())
}

/// Whether `mount`'s source is mounted on its mount point now (mounted again after an
/// unmount, by whoever did it).
pub fn is_back(mount: &Mount) -> Result<bool> {
    Ok(current(&mount.mount_point)?.is_some_and(|m| m.source == mount.source))
}

/// The mount as it is now in the mount table at the same point, if any, for checking a remount.
pub fn current(mount_point: &Path) -> Result<Option<Mount>> {
    Ok(mountinfo::read()?
        .into_iter()
        .rev()
        .find(|m| m.mount_point == mount_point))
}

/// Per-mount flags from the mount options; per-superblock options as the data string, less
/// the generic ones the kernel takes as flags.
fn syscall_arguments(mount: &Mount) -> (MountFlags, String) {
    let mut flags = MountFlags::empty();
    for opt in mount.mount_options.split(',') {
        flags |= match opt {
            "ro" => MountFlags::RDONLY,
            "nosuid" => MountFlags::NOSUID,
            "nodev" => MountFlags::NODEV,
            "noexec" => MountFlags::NOEXEC,
            "noatime" => MountFlags::NOATIME,
            "nodiratime" => MountFlags::NODIRATIME,
            "relatime" => MountFlags::RELATIME,
            "strictatime" => MountFlags::STRICTATIME,
            "sync" => MountFlags::SYNCHRONOUS,
            "dirsync" => MountFlags::DIRSYNC,
            _ => MountFlags::empty(),
        };
    }
    if mountinfo::has_option(&mount.super_options, "ro") {
        flags |= MountFlags::RDONLY;
    }
    let generic = [
        "rw", "ro", "sync", "dirsync", "lazytime", "mand", "seclabel",
    ];
    let data: Vec<&str> = mount
        .super_options
        .split(',')
        .filter(|o| !o.is_empty() && !generic.contains(o))
        .collect();
    (flags, data.join(","))
}

/// FUSE options that the kernel shows but the helper sets itself (or refuses).
const FUSE_OWN_OPTIONS: [&str; 5] = ["rw", "ro", "user_id", "group_id", "blksize"];

fn remount_with_helper(mount: &Mount) -> Result<()> {
    let helper = fuse_helper_type(mount)?;
    let mut options: Vec<&str> = mount.mount_options.split(',').collect();
    for o in mount.super_options.split(',') {
        let key = o.split('=').next().unwrap_or(o);
        if !o.is_empty() && !FUSE_OWN_OPTIONS.contains(&key) && !options.contains(&o) {
            options.push(o);
        }
    }
    let options = options.join(",");
    let status = Command::new("mount")
        .args(["-t", &helper, "-o", &options, &mount.source])
        .arg(&mount.mount_point)
        .status()
        .with_context(|| format!("running mount -t {helper} for {}", mount.source))?;
    if !status.success() {
        bail!(
            "`mount -t {helper} -o {options} {} {}` failed ({status}); mount it again by hand",
            mount.source,
            mount.mount_point.display()
        );
    }
    Ok(())
}

/// The `mount -t` type that brings a FUSE block filesystem back: `fuseblk.ntfs-3g` style
/// subtypes name it; plain `fuseblk` is ntfs-3g's, told by the device's signature.
fn fuse_helper_type(mount: &Mount) -> Result<String> {
    if let Some(sub) = mount
        .fstype
        .strip_prefix("fuseblk.")
        .or_else(|| mount.fstype.strip_prefix("fuse."))
    {
        return Ok(sub.to_string());
    }
    let out = Command::new("blkid")
        .args(["-p", "-o", "value", "-s", "TYPE", &mount.source])
        .output()
        .with_context(|| format!("running blkid on {} to find its FUSE helper", mount.source))?;
    let kind = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Ok(match kind.as_str() {
        "ntfs" => "ntfs-3g".to_string(),
        "" => bail!(
            "{}: cannot tell which FUSE helper mounts it (blkid found no signature)",
            mount.source
        ),
        other => other.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(fstype: &str, mount_options: &str, super_options: &str) -> Mount {
        Mount {
            id: 1,
            parent_id: 0,
            dev: (7, 0),
            root: "/".into(),
            mount_point: "/mnt".into(),
            mount_options: mount_options.into(),
            fstype: fstype.into(),
            source: "/dev/loop0".into(),
            super_options: super_options.into(),
        }
    }

    #[test]
    fn flags_come_from_the_mount_and_data_from_the_superblock() {
        let m = mount(
            "ext4",
            "rw,nosuid,nodev,noatime",
            "rw,errors=remount-ro,data=ordered",
        );
        let (flags, data) = syscall_arguments(&m);
        assert_eq!(
            flags,
            MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOATIME
        );
        assert_eq!(data, "errors=remount-ro,data=ordered");
        let (flags, data) = syscall_arguments(&mount("xfs", "ro,relatime", "ro,attr2"));
        assert_eq!(flags, MountFlags::RDONLY | MountFlags::RELATIME);
        assert_eq!(data, "attr2");
    }

    #[test]
    fn fuse_subtypes_name_their_helper() {
        let m = mount("fuse.sshfs", "rw", "rw");
        assert_eq!(fuse_helper_type(&m).unwrap(), "sshfs");
        assert!(m.is_fuse());
    }
}
