//! The filesystems on a restored disk, and how each is checked without being changed: which
//! filesystem a device holds (read from its superblock, so a zeroed or foreign one is told
//! apart from a known one), the checker in no-change mode, and the read-only mount options.
//!
//! What "read-only" means, per filesystem. The scratch disk is a throw-away copy (the
//! snapshot itself is never written), so the one write allowed is the one every restore
//! makes first: replaying the journal (ext4, only when the superblock says it needs
//! recovery; XFS, whose `xfs_repair -n` refuses to judge a log that holds changes, by a
//! mount and unmount). Then the block device is set read-only (BLKROSET), so neither a
//! checker nor a hook can change what is judged; the checkers run in no-change mode
//! (`e2fsck -fn`, `xfs_repair -n`, `btrfs check --readonly`); and the mount for the hooks is
//! read-only without log replay (ext4 `ro,noload`; XFS `ro,nouuid,norecovery` — `nouuid`
//! because the disk it was taken of is likely mounted here with the same UUID; btrfs
//! `ro,rescue=nologreplay`).

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::Serialize;

/// A filesystem kind lightsnap can check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FsType {
    /// ext2, ext3 or ext4.
    Ext4,
    /// XFS.
    Xfs,
    /// btrfs.
    Btrfs,
}

impl FsType {
    /// The type given to mount(2).
    pub fn mount_type(self) -> &'static str {
        match self {
            FsType::Ext4 => "ext4",
            FsType::Xfs => "xfs",
            FsType::Btrfs => "btrfs",
        }
    }

    /// The checker, in no-change mode, as a command line (program, then arguments before the
    /// device).
    pub fn checker(self) -> (&'static str, &'static [&'static str]) {
        match self {
            FsType::Ext4 => ("e2fsck", &["-f", "-n"]),
            FsType::Xfs => ("xfs_repair", &["-n"]),
            FsType::Btrfs => ("btrfs", &["check", "--readonly"]),
        }
    }

    /// The options of the read-only mount the hooks see: nothing replayed, nothing written.
    pub fn read_only_options(self) -> &'static str {
        match self {
            FsType::Ext4 => "noload",
            FsType::Xfs => "nouuid,norecovery",
            FsType::Btrfs => "rescue=nologreplay",
        }
    }
}

/// What a device's superblock says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Superblock {
    /// Its filesystem.
    pub fstype: FsType,
    /// ext4 only: the journal holds changes not yet applied (`needs_recovery`).
    pub needs_recovery: bool,
}

/// ext2/3/4: the superblock starts at 1024; `s_magic` (0xEF53, little-endian) at 56 in it,
/// `s_feature_incompat` at 96, whose bit 0x4 is `RECOVER` (the journal needs replaying).
const EXT_MAGIC_AT: u64 = 1024 + 56;
const EXT_INCOMPAT_AT: u64 = 1024 + 96;
const EXT_RECOVER: u32 = 0x4;
/// XFS: `XFSB` at the very start.
const XFS_MAGIC: &[u8] = b"XFSB";
/// btrfs: `_BHRfS_M` at 64 KiB + 64.
const BTRFS_MAGIC_AT: u64 = 65536 + 64;
const BTRFS_MAGIC: &[u8] = b"_BHRfS_M";

fn read_at(r: &mut (impl Read + Seek), at: u64, len: usize) -> Option<Vec<u8>> {
    let mut buf = vec![0; len];
    r.seek(SeekFrom::Start(at)).ok()?;
    r.read_exact(&mut buf).ok()?;
    Some(buf)
}

/// The filesystem a device (or image) holds, from its superblock; `None` when it is none of
/// those lightsnap checks (or unreadable, or zeroed).
pub fn identify(r: &mut (impl Read + Seek)) -> Option<Superblock> {
    if read_at(r, 0, 4).is_some_and(|m| m == XFS_MAGIC) {
        return Some(Superblock {
            fstype: FsType::Xfs,
            needs_recovery: false,
        });
    }
    if read_at(r, EXT_MAGIC_AT, 2).is_some_and(|m| m == [0x53, 0xEF]) {
        let incompat = read_at(r, EXT_INCOMPAT_AT, 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .unwrap_or(0);
        return Some(Superblock {
            fstype: FsType::Ext4,
            needs_recovery: incompat & EXT_RECOVER != 0,
        });
    }
    if read_at(r, BTRFS_MAGIC_AT, 8).is_some_and(|m| m == BTRFS_MAGIC) {
        return Some(Superblock {
            fstype: FsType::Btrfs,
            needs_recovery: false,
        });
    }
    None
}

/// One filesystem found on a restored disk (the whole disk, or one of its partitions).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Found {
    /// Its block device.
    pub device: PathBuf,
    /// What its superblock says; `None`: no filesystem lightsnap knows.
    #[serde(skip)]
    pub superblock: Option<Superblock>,
}

impl Found {
    /// The filesystem type, if known.
    pub fn fstype(&self) -> Option<FsType> {
        self.superblock.map(|s| s.fstype)
    }
}

/// The filesystems of a whole disk: the disk itself when it holds one, else each partition
/// that does (a system disk's). `partitions` are the partitions' devices, in order.
pub fn filesystems(disk: &Path, partitions: &[PathBuf]) -> Vec<Found> {
    let look = |p: &Path| {
        std::fs::File::open(p)
            .ok()
            .and_then(|mut f| identify(&mut f))
    };
    if let Some(sb) = look(disk) {
        return vec![Found {
            device: disk.to_path_buf(),
            superblock: Some(sb),
        }];
    }
    let found: Vec<Found> = partitions
        .iter()
        .filter_map(|p| {
            look(p).map(|sb| Found {
                device: p.clone(),
                superblock: Some(sb),
            })
        })
        .collect();
    if found.is_empty() {
        // Nothing known: reported as such (a zeroed disk, or a filesystem lightsnap cannot
        // check), never passed.
        return vec![Found {
            device: disk.to_path_buf(),
            superblock: None,
        }];
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn image(at: u64, bytes: &[u8]) -> Cursor<Vec<u8>> {
        let mut v = vec![0u8; 128 * 1024];
        v[at as usize..at as usize + bytes.len()].copy_from_slice(bytes);
        Cursor::new(v)
    }

    #[test]
    fn superblocks_are_told_apart() {
        assert_eq!(
            identify(&mut image(0, b"XFSB")).map(|s| s.fstype),
            Some(FsType::Xfs)
        );
        let ext = identify(&mut image(EXT_MAGIC_AT, &[0x53, 0xEF])).unwrap();
        assert_eq!((ext.fstype, ext.needs_recovery), (FsType::Ext4, false));
        let mut dirty = image(EXT_MAGIC_AT, &[0x53, 0xEF]);
        dirty.get_mut()[EXT_INCOMPAT_AT as usize] = 0x46;
        assert!(identify(&mut dirty).unwrap().needs_recovery);
        assert_eq!(
            identify(&mut image(BTRFS_MAGIC_AT, BTRFS_MAGIC)).map(|s| s.fstype),
            Some(FsType::Btrfs)
        );
        assert_eq!(identify(&mut image(0, b"")), None, "zeroed");
        assert_eq!(identify(&mut Cursor::new(vec![0u8; 10])), None, "too short");
    }

    #[test]
    fn a_disk_without_a_known_filesystem_is_reported_not_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("disk");
        std::fs::write(&disk, vec![0u8; 4096]).unwrap();
        let part = dir.path().join("part1");
        std::fs::write(&part, image(0, b"XFSB").into_inner()).unwrap();
        let none = filesystems(&disk, &[]);
        assert_eq!(none.len(), 1);
        assert_eq!(none[0].fstype(), None);
        let parts = filesystems(&disk, std::slice::from_ref(&part));
        assert_eq!(parts.len(), 1);
        assert_eq!(
            (parts[0].device.clone(), parts[0].fstype()),
            (part, Some(FsType::Xfs))
        );
    }
}
