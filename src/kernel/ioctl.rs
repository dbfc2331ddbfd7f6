//! The raw ioctls, built from nix macros; the only `unsafe` in the kernel module.
//!
//! Request codes as in `<linux/fs.h>`: `FIFREEZE = _IOWR('X', 119, int)`,
//! `FITHAW = _IOWR('X', 120, int)`. The kernel ignores the argument, but the macros want one.
//! And from `<linux/nvme_ioctl.h>`: `NVME_IOCTL_ADMIN_CMD = _IOWR('N', 0x41, struct
//! nvme_admin_cmd)`, for the Identify Controller data of an NVMe device. And from
//! `<linux/fs.h>`: `BLKROSET = _IO(0x12, 93)`, which reads an int (1: read-only).

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

nix::ioctl_write_ptr_bad!(blkroset, nix::request_code_none!(0x12, 93), libc::c_int);

/// BLKROSET on the block device open as `fd`: it refuses writes (`true`) or takes them again.
pub(super) fn set_read_only(fd: BorrowedFd<'_>, read_only: bool) -> Result<(), Errno> {
    let flag: libc::c_int = read_only.into();
    // SAFETY: the kernel reads one int through the pointer, which outlives the call; the
    // descriptor is open for its duration.
    unsafe { blkroset(fd.as_raw_fd(), &flag) }.map(drop)
}

/// `struct nvme_admin_cmd` (= `nvme_passthru_cmd`) from `<linux/nvme_ioctl.h>`, 72 bytes.
#[repr(C)]
#[derive(Default)]
pub(super) struct NvmeAdminCmd {
    opcode: u8,
    flags: u8,
    rsvd1: u16,
    nsid: u32,
    cdw2: u32,
    cdw3: u32,
    metadata: u64,
    addr: u64,
    metadata_len: u32,
    data_len: u32,
    cdw10: u32,
    cdw11: u32,
    cdw12: u32,
    cdw13: u32,
    cdw14: u32,
    cdw15: u32,
    timeout_ms: u32,
    result: u32,
}

nix::ioctl_readwrite!(nvme_admin_cmd, b'N', 0x41, NvmeAdminCmd);

/// The admin opcode Identify, and CNS 1: the controller's data structure.
const NVME_ADMIN_IDENTIFY: u8 = 0x06;
const NVME_ID_CNS_CTRL: u32 = 1;

/// Identify Controller on the NVMe device open as `fd`: its 4096 bytes.
pub(super) fn nvme_identify_controller(fd: BorrowedFd<'_>) -> Result<Vec<u8>, Errno> {
    let mut data = vec![0u8; 4096];
    let mut cmd = NvmeAdminCmd {
        opcode: NVME_ADMIN_IDENTIFY,
        addr: data.as_mut_ptr() as u64,
        data_len: data.len() as u32,
        cdw10: NVME_ID_CNS_CTRL,
        ..Default::default()
    };
    // SAFETY: `cmd` points the kernel at `data`, 4096 writable bytes that outlive the call;
    // the descriptor is open for its duration.
    unsafe { nvme_admin_cmd(fd.as_raw_fd(), &mut cmd) }?;
    Ok(data)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_nvme_command_has_the_kernels_layout() {
        assert_eq!(std::mem::size_of::<super::NvmeAdminCmd>(), 72);
        // _IOWR('N', 0x41, 72 bytes): dir 3 << 30 | size << 16 | 'N' << 8 | 0x41.
        let code = (3u64 << 30) | (72 << 16) | ((b'N' as u64) << 8) | 0x41;
        assert_eq!(code, 0xc048_4e41);
        assert_eq!(
            u64::from(nix::request_code_readwrite!(b'N', 0x41, 72) as u32),
            code
        );
    }
}
