//! The two raw ioctls, built from nix macros; the only `unsafe` in the kernel module.
//!
//! Request codes as in `<linux/fs.h>`: `FIFREEZE = _IOWR('X', 119, int)`,
//! `FITHAW = _IOWR('X', 120, int)`. The kernel ignores the argument, but the macros want one.

use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;

nix::ioctl_readwrite!(fifreeze, b'X', 119, libc::c_int);
nix::ioctl_readwrite!(fithaw, b'X', 120, libc::c_int);

/// FIFREEZE on the filesystem holding the open directory `fd`.
pub(super) fn freeze(fd: BorrowedFd<'_>) -> Result<(), Errno> {
    let mut arg: libc::c_int = 0;
    // SAFETY: the descriptor is open for the duration of the call and `arg` outlives it.
    unsafe { fifreeze(fd.as_raw_fd(), &mut arg) }.map(drop)
}

/// FITHAW on the filesystem holding the open directory `fd`.
pub(super) fn thaw(fd: BorrowedFd<'_>) -> Result<(), Errno> {
    let mut arg: libc::c_int = 0;
    // SAFETY: as above.
    unsafe { fithaw(fd.as_raw_fd(), &mut arg) }.map(drop)
}
