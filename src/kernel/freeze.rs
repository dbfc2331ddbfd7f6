//! FIFREEZE and FITHAW on a mount, with the kernel's answers turned into typed errors,
//! because callers branch on them: EBUSY means someone else already froze the filesystem
//! (refuse, never thaw it), EOPNOTSUPP means it cannot be frozen (take the unmount fallback),
//! EINVAL on thaw means it was not frozen.

use std::fs::{File, OpenOptions};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use super::guard::{self, OutsideConfinement};
use super::ioctl;

/// Why a freeze failed.
#[derive(Debug, thiserror::Error)]
pub enum FreezeError {
    /// EBUSY: the filesystem is already frozen, by someone else (or by an earlier freeze of
    /// the same superblock through another mount).
    #[error("{0} is already frozen by someone else; lightsnap will not take it over or thaw it (thaw it with `fsfreeze -u {0}` once whoever froze it is done)")]
    AlreadyFrozen(PathBuf),
    /// EOPNOTSUPP / ENOTTY: the filesystem has no freeze support.
    #[error("{0}: this filesystem cannot be frozen")]
    NotSupported(PathBuf),
    /// EPERM / EACCES: freezing needs CAP_SYS_ADMIN.
    #[error("{0}: permission denied: freezing a filesystem needs root (CAP_SYS_ADMIN)")]
    PermissionDenied(PathBuf),
    /// The confinement guard refused the mount.
    #[error(transparent)]
    Outside(#[from] OutsideConfinement),
    /// The mount point could not be opened.
    #[error("{0}: cannot open the mount point: {1}")]
    Open(PathBuf, std::io::Error),
    /// Anything else the kernel said.
    #[error("{0}: FIFREEZE failed: {1}")]
    Other(PathBuf, String),
}

/// Why a thaw failed.
#[derive(Debug, thiserror::Error)]
pub enum ThawError {
    /// EINVAL: the filesystem was not frozen.
    #[error("{0} was not frozen")]
    NotFrozen(PathBuf),
    /// EPERM / EACCES.
    #[error("{0}: permission denied: thawing a filesystem needs root (CAP_SYS_ADMIN)")]
    PermissionDenied(PathBuf),
    /// The confinement guard refused the mount.
    #[error(transparent)]
    Outside(#[from] OutsideConfinement),
    /// The mount point could not be opened.
    #[error("{0}: cannot open the mount point: {1}")]
    Open(PathBuf, std::io::Error),
    /// Anything else the kernel said.
    #[error("{0}: FITHAW failed: {1}")]
    Other(PathBuf, Errno),
}

/// An open descriptor of a mount point, through which its filesystem is frozen and thawed.
///
/// Opening happens before any freeze (opening a directory read-only never blocks, even on a
/// frozen filesystem, but there is no reason to do it inside the window), and the descriptor
/// keeps working if the path is later hidden by another mount.
#[derive(Debug)]
pub struct MountHandle {
    path: PathBuf,
    dir: File,
}

impl MountHandle {
    /// Opens `mount_point` read-only, after the confinement guard has agreed to it.
    pub fn open(mount_point: &Path) -> Result<Self, OutsideOrOpen> {
        guard::check(mount_point)?;
        let dir = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(mount_point)
            .map_err(|e| OutsideOrOpen::Open(mount_point.to_path_buf(), e))?;
        Ok(Self {
            path: mount_point.to_path_buf(),
            dir,
        })
    }

    /// The mount point this handle was opened on.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// FIFREEZE.
    pub fn freeze(&self) -> Result<(), FreezeError> {
        ioctl::freeze(self.dir.as_fd()).map_err(|errno| match errno {
            Errno::EBUSY => FreezeError::AlreadyFrozen(self.path.clone()),
            Errno::EOPNOTSUPP | Errno::ENOTTY => FreezeError::NotSupported(self.path.clone()),
            Errno::EPERM | Errno::EACCES => FreezeError::PermissionDenied(self.path.clone()),
            other => FreezeError::Other(self.path.clone(), other.desc().to_string()),
        })
    }

    /// FITHAW.
    pub fn thaw(&self) -> Result<(), ThawError> {
        ioctl::thaw(self.dir.as_fd()).map_err(|errno| match errno {
            Errno::EINVAL => ThawError::NotFrozen(self.path.clone()),
            Errno::EPERM | Errno::EACCES => ThawError::PermissionDenied(self.path.clone()),
            other => ThawError::Other(self.path.clone(), other),
        })
    }
}

/// Why a mount point could not be opened for freezing or thawing.
#[derive(Debug, thiserror::Error)]
pub enum OutsideOrOpen {
    /// The confinement guard refused it.
    #[error(transparent)]
    Outside(#[from] OutsideConfinement),
    /// `open(2)` failed.
    #[error("{0}: cannot open the mount point: {1}")]
    Open(PathBuf, std::io::Error),
}

impl From<OutsideOrOpen> for FreezeError {
    fn from(e: OutsideOrOpen) -> Self {
        match e {
            OutsideOrOpen::Outside(o) => FreezeError::Outside(o),
            OutsideOrOpen::Open(p, e) => FreezeError::Open(p, e),
        }
    }
}

impl From<OutsideOrOpen> for ThawError {
    fn from(e: OutsideOrOpen) -> Self {
        match e {
            OutsideOrOpen::Outside(o) => ThawError::Outside(o),
            OutsideOrOpen::Open(p, e) => ThawError::Open(p, e),
        }
    }
}

/// FITHAW on the filesystem at `mount_point`, by hand (`lightsnap thaw PATH`); `Ok(true)`
/// when it was frozen, `Ok(false)` when it was not.
pub fn thaw_path(mount_point: &Path) -> Result<bool, ThawError> {
    let handle = MountHandle::open(mount_point)?;
    match handle.thaw() {
        Ok(()) => Ok(true),
        Err(ThawError::NotFrozen(_)) => Ok(false),
        Err(e) => Err(e),
    }
}
