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
//! `ro,rescue=nologreplay`, or `ro,nologreplay` on kernels before 5.9).
//!
//! What is not a filesystem lightsnap checks is said, never passed over: a partition of
//! unknown content, an LVM physical volume, an md RAID member or a LUKS container makes the
//! verdict "could not check" ([`Layout`]); a disk with no partition and no known superblock
//! at all is a failed restore (zeroed or damaged). The one partition skipped is a GPT BIOS
//! boot partition, which holds boot code and no filesystem.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::Serialize;

/// A filesystem kind lightsnap can check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FsType {
    /// ext2, ext3 or ext4.
    Ext4,
    /// XFS.
    Xfs,
    /// btrfs.
    Btrfs,
    /// FAT (an EFI system partition).
    Vfat,
}

impl FsType {
    /// The type given to mount(2).
    pub fn mount_type(self) -> &'static str {
        match self {
            FsType::Ext4 => "ext4",
            FsType::Xfs => "xfs",
            FsType::Btrfs => "btrfs",
            FsType::Vfat => "vfat",
        }
    }

    /// The checker, in no-change mode, as a command line (program, then arguments before the
    /// device).
    pub fn checker(self) -> (&'static str, &'static [&'static str]) {
        match self {
            FsType::Ext4 => ("e2fsck", &["-f", "-n"]),
            FsType::Xfs => ("xfs_repair", &["-n"]),
            FsType::Btrfs => ("btrfs", &["check", "--readonly"]),
            FsType::Vfat => ("fsck.vfat", &["-n"]),
        }
    }

    /// The options of the read-only mount the hooks see: nothing replayed, nothing written.
    /// `kernel` is the running kernel's release (`uname -r`): btrfs says "no log replay"
    /// as `rescue=nologreplay` from 5.9, as `nologreplay` from 4.6, and not at all before
    /// (`None`: the filesystem cannot be mounted without a write, so it is not).
    pub fn read_only_options(self, kernel: &str) -> Option<&'static str> {
        match self {
            FsType::Ext4 => Some("noload"),
            FsType::Xfs => Some("nouuid,norecovery"),
            FsType::Btrfs => match kernel_version(kernel) {
                Some(v) if v >= (5, 9) => Some("rescue=nologreplay"),
                Some(v) if v >= (4, 6) => Some("nologreplay"),
                _ => None,
            },
            FsType::Vfat => Some(""),
        }
    }
}

/// `(major, minor)` of a kernel release string (`6.1.0-28-cloud-amd64` → `(6, 1)`).
pub fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// A layout on a restored disk that lightsnap does not check: said as such, never passed and
/// never failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// An LVM physical volume (`LABELONE` … `LVM2 001`).
    Lvm,
    /// An md RAID member (an md superblock at the start or at 4 KiB).
    Md,
    /// A LUKS container (`LUKS\xba\xbe`).
    Luks,
    /// A partition whose content lightsnap does not recognise.
    Unknown,
}

impl Layout {
    /// In plain words.
    pub fn describe(self) -> &'static str {
        match self {
            Layout::Lvm => "an LVM physical volume (its logical volumes are not checked)",
            Layout::Md => "an md RAID member (the array is not assembled and checked)",
            Layout::Luks => "a LUKS container (encrypted: its content cannot be checked)",
            Layout::Unknown => "a partition of unknown content (no filesystem lightsnap checks)",
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
    // FAT: the boot sector's signature, and the type string FAT12/16 or FAT32 keep.
    let signed = read_at(r, 510, 2).is_some_and(|m| m == [0x55, 0xAA]);
    let fat = read_at(r, 54, 3).is_some_and(|m| m == b"FAT")
        || read_at(r, 82, 5).is_some_and(|m| m == b"FAT32");
    if signed && fat {
        return Some(Superblock {
            fstype: FsType::Vfat,
            needs_recovery: false,
        });
    }
    None
}

/// LUKS 1 and 2: the magic at the very start.
const LUKS_MAGIC: &[u8] = b"LUKS\xba\xbe";
/// md superblock magic (0xa92b4efc, little-endian): at 0 (metadata 1.1) or 4 KiB (1.2).
const MD_MAGIC: [u8; 4] = [0xfc, 0x4e, 0x2b, 0xa9];

/// An md member whose superblock is at the end of the device (metadata 0.90: the last 64 KiB
/// boundary but one; 1.0: 8 KiB before the end, on a 4 KiB boundary). Its data starts at 0,
/// so the filesystem of a mirror — or the first stripe of a RAID 0 — shows through: looked
/// for before the filesystems, so such a member is never checked as if it were one.
pub fn md_at_end(r: &mut (impl Read + Seek)) -> bool {
    let Ok(size) = r.seek(SeekFrom::End(0)) else {
        return false;
    };
    let sectors = size / 512;
    let v090 = (sectors & !127).checked_sub(128);
    let v10 = sectors.checked_sub(16).map(|s| s & !7);
    [v090, v10]
        .into_iter()
        .flatten()
        .any(|sector| read_at(r, sector * 512, 4).is_some_and(|m| m == MD_MAGIC))
}

/// A layout lightsnap does not check, from its signature at the start of a device (LUKS, an
/// LVM label, md metadata 1.1 and 1.2; see [`md_at_end`] for 0.90 and 1.0); `None` when
/// there is none of those.
pub fn layout(r: &mut (impl Read + Seek)) -> Option<Layout> {
    if read_at(r, 0, 6).is_some_and(|m| m == LUKS_MAGIC) {
        return Some(Layout::Luks);
    }
    for sector in 0..4u64 {
        let at = sector * 512;
        if read_at(r, at, 8).is_some_and(|m| m == b"LABELONE")
            && read_at(r, at + 24, 8).is_some_and(|m| m == b"LVM2 001")
        {
            return Some(Layout::Lvm);
        }
    }
    if [0, 4096]
        .iter()
        .any(|&at| read_at(r, at, 4).is_some_and(|m| m == MD_MAGIC))
    {
        return Some(Layout::Md);
    }
    None
}

/// The GPT partition type of a BIOS boot partition (21686148-6449-6E6F-744E-656564454649),
/// as its bytes lie on disk.
const BIOS_BOOT: &[u8; 16] = b"Hah!IdontNeedEFI";

/// Whether partition `number` (1-based) of a GPT disk is a BIOS boot partition: boot code,
/// no filesystem. Sectors of 512 bytes and of 4 KiB are both looked at.
pub fn is_bios_boot(disk: &mut (impl Read + Seek), number: u32) -> bool {
    let le32 = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    for sector in [512u64, 4096] {
        let Some(header) = read_at(disk, sector, 92) else {
            continue;
        };
        if &header[..8] != b"EFI PART" {
            continue;
        }
        let entries_lba = u64::from_le_bytes(header[72..80].try_into().unwrap_or_default());
        let count = le32(&header[80..84]);
        let size = u64::from(le32(&header[84..88]));
        if number == 0 || number > count || size < 16 {
            return false;
        }
        let at = entries_lba * sector + u64::from(number - 1) * size;
        return read_at(disk, at, 16).is_some_and(|t| t == BIOS_BOOT);
    }
    false
}

/// One filesystem found on a restored disk (the whole disk, or one of its partitions).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Found {
    /// Its block device.
    pub device: PathBuf,
    /// What its superblock says; `None`: no filesystem lightsnap knows.
    #[serde(skip)]
    pub superblock: Option<Superblock>,
    /// A layout lightsnap does not check (with `superblock` `None`): could not check. Neither
    /// a superblock nor a layout: a damaged or zeroed disk, a failed check.
    #[serde(skip)]
    pub layout: Option<Layout>,
}

/// A partition of a restored disk: its device and its number (sysfs `partition`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// Its block device.
    pub device: PathBuf,
    /// Its number in the partition table (1-based).
    pub number: u32,
}

impl Found {
    /// The filesystem type, if known.
    pub fn fstype(&self) -> Option<FsType> {
        self.superblock.map(|s| s.fstype)
    }
}

/// What is on a whole disk: the disk itself when it holds a filesystem (or a layout lightsnap
/// does not check), else every partition but a BIOS boot one — each a filesystem, or a
/// layout (a partition of unknown content included), never skipped. A disk with neither a
/// partition nor anything known is one entry with neither (a failed restore).
pub fn filesystems(disk: &Path, partitions: &[Partition]) -> Vec<Found> {
    let look = |p: &Path| -> (Option<Superblock>, Option<Layout>) {
        let Ok(mut f) = std::fs::File::open(p) else {
            return (None, None);
        };
        if md_at_end(&mut f) {
            return (None, Some(Layout::Md));
        }
        match identify(&mut f) {
            Some(sb) => (Some(sb), None),
            None => (None, layout(&mut f)),
        }
    };
    let found = |device: &Path, (superblock, layout): (Option<Superblock>, Option<Layout>)| Found {
        device: device.to_path_buf(),
        superblock,
        layout,
    };
    let whole = look(disk);
    if whole != (None, None) || partitions.is_empty() {
        return vec![found(disk, whole)];
    }
    let mut table = std::fs::File::open(disk).ok();
    let all: Vec<Found> = partitions
        .iter()
        .filter(|p| !table.as_mut().is_some_and(|t| is_bios_boot(t, p.number)))
        .map(|p| match look(&p.device) {
            (None, None) => found(&p.device, (None, Some(Layout::Unknown))),
            known => found(&p.device, known),
        })
        .collect();
    if all.is_empty() {
        // Boot code only: nothing was checked, and that is said.
        return vec![found(disk, (None, Some(Layout::Unknown)))];
    }
    all
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

    fn part(device: &Path, number: u32) -> Partition {
        Partition {
            device: device.to_path_buf(),
            number,
        }
    }

    #[test]
    fn a_disk_without_a_known_filesystem_is_reported_not_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("disk");
        std::fs::write(&disk, vec![0u8; 4096]).unwrap();
        let p1 = dir.path().join("part1");
        std::fs::write(&p1, image(0, b"XFSB").into_inner()).unwrap();
        let none = filesystems(&disk, &[]);
        assert_eq!(none.len(), 1);
        assert_eq!((none[0].fstype(), none[0].layout), (None, None));
        let parts = filesystems(&disk, &[part(&p1, 1)]);
        assert_eq!(parts.len(), 1);
        assert_eq!(
            (parts[0].device.clone(), parts[0].fstype()),
            (p1, Some(FsType::Xfs))
        );
    }

    /// A partition lightsnap does not recognise is one of the disk's entries, as "unknown"
    /// (it used to be dropped, and the disk's other filesystems made the verdict clean); LVM,
    /// md and LUKS signatures are named; a GPT BIOS boot partition holds no filesystem.
    #[test]
    fn unknown_partitions_and_layouts_are_kept_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, img: Cursor<Vec<u8>>| {
            let p = dir.path().join(name);
            std::fs::write(&p, img.into_inner()).unwrap();
            p
        };
        // A GPT disk: header at LBA 1, entries at LBA 2, 128 bytes each; entry 3 BIOS boot.
        let mut gpt = vec![0u8; 128 * 1024];
        gpt[512..520].copy_from_slice(b"EFI PART");
        gpt[512 + 72..512 + 80].copy_from_slice(&2u64.to_le_bytes());
        gpt[512 + 80..512 + 84].copy_from_slice(&128u32.to_le_bytes());
        gpt[512 + 84..512 + 88].copy_from_slice(&128u32.to_le_bytes());
        let e3 = 1024 + 2 * 128;
        gpt[e3..e3 + 16].copy_from_slice(BIOS_BOOT);
        let disk = write("disk", Cursor::new(gpt));
        let ext = write("p1", image(EXT_MAGIC_AT, &[0x53, 0xEF]));
        let unknown = write("p2", image(0, b""));
        let boot = write("p3", image(0, b""));
        let mut lvm = image(512, b"LABELONE");
        lvm.get_mut()[512 + 24..512 + 32].copy_from_slice(b"LVM2 001");
        let lvm = write("p4", lvm);
        let luks = write("p5", image(0, b"LUKS\xba\xbe"));
        let md = write("p6", image(4096, &MD_MAGIC));
        let all = filesystems(
            &disk,
            &[
                part(&ext, 1),
                part(&unknown, 2),
                part(&boot, 3),
                part(&lvm, 4),
                part(&luks, 5),
                part(&md, 6),
            ],
        );
        let got: Vec<(PathBuf, Option<FsType>, Option<Layout>)> = all
            .iter()
            .map(|f| (f.device.clone(), f.fstype(), f.layout))
            .collect();
        assert_eq!(
            got,
            [
                (ext, Some(FsType::Ext4), None),
                (unknown, None, Some(Layout::Unknown)),
                (lvm, None, Some(Layout::Lvm)),
                (luks, None, Some(Layout::Luks)),
                (md, None, Some(Layout::Md)),
            ]
        );
        // An md 1.0 member whose mirrored ext4 shows through: an md member, not an ext4.
        let mut member = image(EXT_MAGIC_AT, &[0x53, 0xEF]);
        let sectors = member.get_ref().len() as u64 / 512;
        let at = ((sectors - 16) & !7) as usize * 512;
        member.get_mut()[at..at + 4].copy_from_slice(&MD_MAGIC);
        let member = write("p7", member);
        let found = filesystems(&member, &[]);
        assert_eq!(
            (found[0].fstype(), found[0].layout),
            (None, Some(Layout::Md))
        );
        // Boot code alone: nothing checked, said as such.
        let only_boot = filesystems(&disk, &[part(&boot, 3)]);
        assert_eq!(only_boot[0].layout, Some(Layout::Unknown));
    }

    #[test]
    fn btrfs_read_only_options_follow_the_kernel() {
        assert_eq!(
            FsType::Btrfs.read_only_options("6.1.0-28-cloud-amd64"),
            Some("rescue=nologreplay")
        );
        assert_eq!(
            FsType::Btrfs.read_only_options("5.4.0-1103-aws"),
            Some("nologreplay")
        );
        assert_eq!(FsType::Btrfs.read_only_options("4.4.0-210"), None);
        assert_eq!(FsType::Ext4.read_only_options("3.10.0"), Some("noload"));
        let mut fat = image(510, &[0x55, 0xAA]);
        fat.get_mut()[82..87].copy_from_slice(b"FAT32");
        assert_eq!(identify(&mut fat).map(|s| s.fstype), Some(FsType::Vfat));
    }
}
