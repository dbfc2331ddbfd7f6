//! The kernel side: everything lightsnap asks of the Linux kernel directly.
//!
//! Mount table parsing ([`mountinfo`]), the disks under a mount and the raw facts they state
//! about themselves ([`blockdev`]), FIFREEZE/FITHAW ([`freeze`], built on the raw ioctls in a
//! private module), the unmount/remount fallback ([`unmount`]), finding who holds a mount
//! ([`holders`]), the `rcu_expedited` switch ([`rcu`]), and the confinement guard ([`guard`]) every freeze, thaw and unmount passes.
//! Nothing here talks to the network or knows which cloud it runs in: what a disk's serial or
//! vendor data mean there is for `crate::cloud` to say.

pub mod blockdev;
pub mod freeze;
pub mod guard;
pub mod holders;
mod ioctl;
pub mod mountinfo;
pub mod rcu;
pub mod unmount;

use std::path::Path;

/// `syncfs(2)` on the filesystem holding `path`: flush its dirty data before freezing, so the
/// freeze itself has little left to write and the frozen window stays short.
pub fn syncfs(path: &Path) -> std::io::Result<()> {
    let dir = std::fs::File::open(path)?;
    nix::unistd::syncfs(&dir).map_err(std::io::Error::from)
}

/// BLKROSET: the block device at `device` refuses every write, whoever asks (`read_only`), or
/// takes them again. For a restored scratch disk under check (`crate::restore`).
pub fn set_read_only(device: &Path, read_only: bool) -> std::io::Result<()> {
    let f = std::fs::File::open(device)?;
    ioctl::set_read_only(std::os::fd::AsFd::as_fd(&f), read_only).map_err(std::io::Error::from)
}
