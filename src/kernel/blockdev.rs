//! Block devices: from a mount's source to the whole disks underneath it, and the raw facts
//! each disk states about itself (its serial, its controller's Identify data, its udev by-id
//! link names). What those facts mean to a cloud is for `crate::cloud` to say.
//!
//! Everything is read through a [`SysfsRoot`] directory (`/` in production), so that layouts this
//! machine's kernel cannot make (device-mapper/LVM, md RAID, NVMe) are tested on fixture trees
//! laid out as sysfs documents them:
//! - `/sys/dev/block/MAJ:MIN` links to the device's directory, named by its kernel name;
//! - a partition's directory has a `partition` file, and its parent directory is the disk;
//! - device-mapper and md devices list what they are built on in `slaves/`;
//! - an NVMe namespace's controller serial is `device/serial`; the same serial, the model and a
//!   vendor-specific area are in the controller's Identify data (an ioctl on the device, or a
//!   fixture file `identify/<name>` under a test root); udev's `/dev/disk/by-id/` link names
//!   carry the model and serial too;
//! - a multi-device btrfs lists its members in `/sys/fs/btrfs/<fsid>/devices/`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// A sysfs-and-/dev root: where sysfs, `/dev` and the NVMe Identify data are read from
/// (`/` in production, a fixture tree in tests).
#[derive(Debug, Clone)]
pub struct SysfsRoot(PathBuf);

impl Default for SysfsRoot {
    fn default() -> Self {
        Self(PathBuf::from("/"))
    }
}

impl SysfsRoot {
    /// A root directory other than `/` (fixture trees in tests).
    pub fn at(path: impl Into<PathBuf>) -> Self {
        Self(path.into())
    }

    fn is_live(&self) -> bool {
        self.0 == Path::new("/")
    }

    /// The path of absolute path `abs` under this root.
    pub fn path(&self, abs: &str) -> PathBuf {
        self.0.join(abs.trim_start_matches('/'))
    }

    fn read(&self, abs: &str) -> Option<String> {
        std::fs::read_to_string(self.path(abs))
            .ok()
            .map(|s| s.trim().to_string())
    }

    /// The serial number sysfs shows for disk `name` (`/sys/class/block/<name>/device/serial`,
    /// trimmed), if it shows one.
    pub fn serial(&self, name: &str) -> Option<String> {
        self.read(&format!("/sys/class/block/{name}/device/serial"))
    }

    /// The Identify Controller data of NVMe disk `name`: from the device itself, or from a
    /// fixture file under a test root. `None` for anything else, or when it cannot be read
    /// (not root, not NVMe).
    pub fn identify(&self, name: &str) -> Option<Identify> {
        if !name.starts_with("nvme") {
            return None;
        }
        let data = if self.is_live() {
            let dev = std::fs::File::open(Path::new("/dev").join(name)).ok()?;
            super::ioctl::nvme_identify_controller(std::os::fd::AsFd::as_fd(&dev)).ok()?
        } else {
            std::fs::read(self.path(&format!("/identify/{name}"))).ok()?
        };
        parse_identify(&data)
    }

    /// The names of the `/dev/disk/by-id/` links that point at disk `name`
    /// (`nvme-<model>_<serial>`, with udev's underscores for spaces), sorted.
    pub fn by_id_links(&self, name: &str) -> Vec<String> {
        let Ok(links) = std::fs::read_dir(self.path("/dev/disk/by-id")) else {
            return Vec::new();
        };
        let mut found: Vec<String> = links
            .flatten()
            .filter(|l| {
                std::fs::read_link(l.path())
                    .is_ok_and(|target| target.file_name().is_some_and(|f| f == name))
            })
            .map(|l| l.file_name().to_string_lossy().into_owned())
            .collect();
        found.sort();
        found
    }

    /// The file behind loop device `name` (`/sys/block/loopN/loop/backing_file`), if it is
    /// one.
    pub fn loop_backing_file(&self, name: &str) -> Option<PathBuf> {
        if !name.starts_with("loop") {
            return None;
        }
        self.read(&format!("/sys/block/{name}/loop/backing_file"))
            .filter(|f| !f.is_empty())
            .map(PathBuf::from)
    }

    /// The kernel name of block device `major:minor`.
    pub fn name_of(&self, dev: (u32, u32)) -> Result<String> {
        let link = self.path(&format!("/sys/dev/block/{}:{}", dev.0, dev.1));
        let target = std::fs::read_link(&link)
            .with_context(|| format!("{}: not a block device known to sysfs", link.display()))?;
        Ok(target
            .file_name()
            .context("empty sysfs link")?
            .to_string_lossy()
            .into_owned())
    }

    /// The whole disks `name` is on: itself for a disk, the parent of a partition, and for
    /// device-mapper and md devices every disk under their `slaves`, recursively.
    pub fn disks_under(&self, name: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        self.collect_disks(name, &mut out, 0)?;
        Ok(out)
    }

    fn collect_disks(&self, name: &str, out: &mut Vec<String>, depth: usize) -> Result<()> {
        anyhow::ensure!(
            depth < 16,
            "block device stack under {name} is too deep (a loop?)"
        );
        let class = self.path(&format!("/sys/class/block/{name}"));
        anyhow::ensure!(
            class.exists(),
            "{}: no such block device in sysfs",
            class.display()
        );
        if class.join("partition").exists() {
            let real = std::fs::canonicalize(&class).unwrap_or(class.clone());
            let parent = real
                .parent()
                .and_then(|p| p.file_name())
                .context("partition without a parent disk")?
                .to_string_lossy()
                .into_owned();
            return self.collect_disks(&parent, out, depth + 1);
        }
        let mut slaves: Vec<String> = std::fs::read_dir(class.join("slaves"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        slaves.sort();
        if slaves.is_empty() {
            if !out.contains(&name.to_string()) {
                out.push(name.to_string());
            }
            return Ok(());
        }
        for s in slaves {
            self.collect_disks(&s, out, depth + 1)?;
        }
        Ok(())
    }

    /// The kernel names of the whole disks sysfs lists (`/sys/class/block` without
    /// partitions, and without the per-path nodes of NVMe multipath such as `nvme1c1n1`),
    /// sorted.
    pub fn whole_disks(&self) -> Vec<String> {
        let Ok(names) = std::fs::read_dir(self.path("/sys/class/block")) else {
            return Vec::new();
        };
        let mut out: Vec<String> = names
            .flatten()
            .filter(|e| !e.path().join("partition").exists())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !(n.starts_with("nvme") && n.contains('c')))
            .collect();
        out.sort();
        out
    }

    /// The partitions of disk `name`, each with its number (sysfs `partition`), in order.
    pub fn partitions_of(&self, name: &str) -> Vec<(String, u32)> {
        let dir = self.path(&format!("/sys/class/block/{name}"));
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut out: Vec<(String, u32)> = entries
            .flatten()
            .filter_map(|e| {
                let number = std::fs::read_to_string(e.path().join("partition")).ok()?;
                Some((
                    e.file_name().to_string_lossy().into_owned(),
                    number.trim().parse().ok()?,
                ))
            })
            .collect();
        out.sort_by_key(|(_, n)| *n);
        out
    }

    /// The `major:minor` of block device `name` (sysfs `dev`).
    pub fn dev_of(&self, name: &str) -> Option<(u32, u32)> {
        let text = self.read(&format!("/sys/class/block/{name}/dev"))?;
        let (major, minor) = text.split_once(':')?;
        Some((major.parse().ok()?, minor.parse().ok()?))
    }

    /// What is built on block device `name` (sysfs `holders/`: device-mapper, md), sorted.
    pub fn holders_of(&self, name: &str) -> Vec<String> {
        let mut out: Vec<String> =
            std::fs::read_dir(self.path(&format!("/sys/class/block/{name}/holders")))
                .map(|d| {
                    d.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
        out.sort();
        out
    }

    /// The members of a multi-device btrfs that `member` (a kernel name) belongs to; just
    /// `member` when it is not in one.
    pub fn btrfs_members(&self, member: &str) -> Vec<String> {
        let Ok(fss) = std::fs::read_dir(self.path("/sys/fs/btrfs")) else {
            return vec![member.to_string()];
        };
        for fs in fss.flatten() {
            let Ok(devices) = std::fs::read_dir(fs.path().join("devices")) else {
                continue;
            };
            let mut names: Vec<String> = devices
                .flatten()
                .map(|d| d.file_name().to_string_lossy().into_owned())
                .collect();
            if names.iter().any(|n| n == member) {
                names.sort();
                return names;
            }
        }
        vec![member.to_string()]
    }
}

/// Offsets in the 4096-byte NVMe Identify Controller data (NVMe base spec, figure "Identify
/// Controller Data Structure"): serial number bytes 4..24, model number 24..64, and the
/// vendor-specific area 3072..4096, whose layout is the vendor's.
pub const SERIAL: std::ops::Range<usize> = 4..24;
/// See [`SERIAL`].
pub const MODEL: std::ops::Range<usize> = 24..64;
/// See [`SERIAL`].
pub const VENDOR_SPECIFIC: std::ops::Range<usize> = 3072..4096;

/// What an NVMe controller's Identify data says, as the spec lays it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identify {
    /// Serial number, as text ([`ascii_field`]).
    pub serial: String,
    /// Model number, as text ([`ascii_field`]).
    pub model: String,
    /// The vendor-specific area, bytes 3072..4096, as they are.
    pub vendor_specific: Vec<u8>,
}

/// The size of Identify Controller data.
pub const IDENTIFY_LEN: usize = 4096;

/// Parses Identify Controller data; `None` when it is not the whole 4096 bytes. Only the
/// first 4096 bytes count.
pub fn parse_identify(data: &[u8]) -> Option<Identify> {
    let data = data.get(..IDENTIFY_LEN)?;
    Some(Identify {
        serial: ascii_field(&data[SERIAL]),
        model: ascii_field(&data[MODEL]),
        vendor_specific: data[VENDOR_SPECIFIC].to_vec(),
    })
}

/// An ASCII text field of NVMe data: up to the first NUL, each byte that is not printable
/// ASCII shown as `?`, space padding trimmed.
pub fn ascii_field(bytes: &[u8]) -> String {
    let s: String = bytes
        .iter()
        .take_while(|&&b| b != 0)
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '?'
            }
        })
        .collect();
    s.trim().to_string()
}

/// Fixture sysfs trees and Identify data, for the tests here and of what reads through a
/// [`SysfsRoot`].
#[cfg(test)]
pub(crate) mod fixture {
    use std::os::unix::fs::symlink;
    use std::path::PathBuf;

    use super::{SysfsRoot, MODEL, SERIAL, VENDOR_SPECIFIC};

    /// A fixture sysfs tree: `/sys/devices/...` directories, `/sys/class/block` and
    /// `/sys/dev/block` links, as the kernel lays them out.
    pub(crate) struct Tree(tempfile::TempDir);

    impl Tree {
        pub(crate) fn new() -> Self {
            Self(tempfile::tempdir().unwrap())
        }
        pub(crate) fn root(&self) -> SysfsRoot {
            SysfsRoot::at(self.0.path())
        }
        pub(crate) fn p(&self, abs: &str) -> PathBuf {
            self.0.path().join(abs.trim_start_matches('/'))
        }
        /// A block device whose sysfs directory is `dir` (absolute, under /sys/devices).
        pub(crate) fn device(&self, name: &str, dir: &str, dev: &str) {
            std::fs::create_dir_all(self.p(dir)).unwrap();
            std::fs::create_dir_all(self.p("/sys/class/block")).unwrap();
            std::fs::create_dir_all(self.p("/sys/dev/block")).unwrap();
            symlink(self.p(dir), self.p(&format!("/sys/class/block/{name}"))).unwrap();
            symlink(self.p(dir), self.p(&format!("/sys/dev/block/{dev}"))).unwrap();
        }
        pub(crate) fn partition(&self, name: &str, disk_dir: &str, dev: &str) {
            let dir = format!("{disk_dir}/{name}");
            self.device(name, &dir, dev);
            std::fs::write(self.p(&format!("{dir}/partition")), "1\n").unwrap();
        }
        pub(crate) fn slave(&self, dir: &str, of: &str) {
            std::fs::create_dir_all(self.p(&format!("{dir}/slaves"))).unwrap();
            symlink(
                self.p(&format!("/sys/class/block/{of}")),
                self.p(&format!("{dir}/slaves/{of}")),
            )
            .unwrap();
        }
        pub(crate) fn write(&self, abs: &str, data: impl AsRef<[u8]>) {
            std::fs::create_dir_all(self.p(abs).parent().unwrap()).unwrap();
            std::fs::write(self.p(abs), data).unwrap();
        }
        /// A `/dev/disk/by-id/<link>` symlink to disk `name`, relative as udev makes it.
        pub(crate) fn by_id(&self, link: &str, name: &str) {
            std::fs::create_dir_all(self.p("/dev/disk/by-id")).unwrap();
            symlink(
                format!("../../{name}"),
                self.p(&format!("/dev/disk/by-id/{link}")),
            )
            .unwrap();
        }
    }

    /// Identify Controller data with this serial and model (space-padded, as controllers
    /// write them) and `vendor` at the start of the vendor-specific area.
    pub(crate) fn identify(serial: &str, model: &str, vendor: &[u8]) -> Vec<u8> {
        let mut data = vec![0u8; 4096];
        let pad = |r: std::ops::Range<usize>, s: &[u8], d: &mut Vec<u8>| {
            d[r.clone()].fill(b' ');
            d[r.start..r.start + s.len()].copy_from_slice(s);
        };
        pad(SERIAL, serial.as_bytes(), &mut data);
        pad(MODEL, model.as_bytes(), &mut data);
        data[VENDOR_SPECIFIC.start..VENDOR_SPECIFIC.start + vendor.len()].copy_from_slice(vendor);
        data
    }
}

#[cfg(test)]
mod tests {
    use super::fixture::{identify, Tree};
    use super::*;

    #[test]
    fn xen_disk_and_partition() {
        let t = Tree::new();
        t.device("xvdf", "/sys/devices/vbd-51792/block/xvdf", "202:80");
        t.partition("xvdf1", "/sys/devices/vbd-51792/block/xvdf", "202:81");
        let r = t.root();
        assert_eq!(r.name_of((202, 81)).unwrap(), "xvdf1");
        assert_eq!(r.disks_under("xvdf1").unwrap(), vec!["xvdf"]);
        assert_eq!(r.disks_under("xvdf").unwrap(), vec!["xvdf"]);
        assert_eq!(r.serial("xvdf"), None);
        assert!(r.name_of((1, 1)).is_err());
    }

    #[test]
    fn lvm_over_two_partitioned_disks() {
        let t = Tree::new();
        t.device("xvdf", "/sys/devices/vbd-1/block/xvdf", "202:80");
        t.partition("xvdf1", "/sys/devices/vbd-1/block/xvdf", "202:81");
        t.device("xvdg", "/sys/devices/vbd-2/block/xvdg", "202:96");
        t.device("dm-0", "/sys/devices/virtual/block/dm-0", "253:0");
        t.slave("/sys/devices/virtual/block/dm-0", "xvdf1");
        t.slave("/sys/devices/virtual/block/dm-0", "xvdg");
        assert_eq!(t.root().disks_under("dm-0").unwrap(), vec!["xvdf", "xvdg"]);
    }

    #[test]
    fn md_raid1_over_nvme_with_serials() {
        let t = Tree::new();
        for (i, serial) in [(1, "SERIAL-ONE"), (2, "serial two")] {
            let dir = format!("/sys/devices/pci0000:00/nvme/nvme{i}/nvme{i}n1");
            t.device(&format!("nvme{i}n1"), &dir, &format!("259:{i}"));
            t.write(&format!("{dir}/device/serial"), format!("{serial}  \n"));
        }
        t.device("md0", "/sys/devices/virtual/block/md0", "9:0");
        t.slave("/sys/devices/virtual/block/md0", "nvme1n1");
        t.slave("/sys/devices/virtual/block/md0", "nvme2n1");
        let r = t.root();
        let disks = r.disks_under("md0").unwrap();
        assert_eq!(disks, vec!["nvme1n1", "nvme2n1"]);
        assert_eq!(r.serial("nvme1n1").as_deref(), Some("SERIAL-ONE"));
        assert_eq!(r.serial("nvme2n1").as_deref(), Some("serial two"));
        assert_eq!(r.serial("md0"), None);
    }

    #[test]
    fn btrfs_members_come_from_its_sysfs_directory() {
        let t = Tree::new();
        t.write("/sys/fs/btrfs/1234-abcd/devices/loop3", "");
        t.write("/sys/fs/btrfs/1234-abcd/devices/loop4", "");
        assert_eq!(t.root().btrfs_members("loop4"), vec!["loop3", "loop4"]);
        assert_eq!(t.root().btrfs_members("loop9"), vec!["loop9"]);
    }

    #[test]
    fn identify_data_as_the_spec_lays_it_out() {
        let data = identify("S123 ", "Some Vendor NVMe", b"vendor\0bytes");
        let id = parse_identify(&data).unwrap();
        assert_eq!(id.serial, "S123");
        assert_eq!(id.model, "Some Vendor NVMe");
        assert_eq!(id.vendor_specific.len(), 1024);
        assert_eq!(&id.vendor_specific[..12], b"vendor\0bytes");
        assert!(parse_identify(&data[..100]).is_none());
        assert!(parse_identify(&data[..IDENTIFY_LEN - 1]).is_none());
        let mut longer = data.clone();
        longer.extend_from_slice(b"ignored");
        assert_eq!(parse_identify(&longer), Some(id));
    }

    #[test]
    fn ascii_fields_stop_at_nul_and_mark_the_unprintable() {
        assert_eq!(ascii_field(b"  abc  "), "abc");
        assert_eq!(ascii_field(b"ab\0cd"), "ab");
        assert_eq!(ascii_field(b"a\x01b\xff"), "a?b?");
        assert_eq!(ascii_field(b""), "");
    }

    /// On a test root, Identify data comes from `identify/<name>`, and only for NVMe names;
    /// by-id links are found by where they point.
    #[test]
    fn identify_data_and_by_id_links_from_a_fixture_root() {
        let t = Tree::new();
        t.device("nvme1n1", "/sys/devices/pci/nvme/nvme1/nvme1n1", "259:1");
        t.write("/identify/nvme1n1", identify("S1", "Model One", b"v"));
        t.write("/identify/xvdg", identify("S2", "Model Two", b""));
        t.by_id("nvme-Model_One_S1", "nvme1n1");
        t.by_id("nvme-Model_One_S1_1", "nvme1n1");
        t.by_id("nvme-Model_Two_S2", "nvme2n1");
        let r = t.root();
        let one = r.identify("nvme1n1").unwrap();
        assert_eq!(
            (one.serial.as_str(), one.model.as_str()),
            ("S1", "Model One")
        );
        assert_eq!(r.identify("nvme2n1"), None, "no data for it");
        assert_eq!(r.identify("xvdg"), None, "not an NVMe name");
        assert_eq!(
            r.by_id_links("nvme1n1"),
            vec!["nvme-Model_One_S1", "nvme-Model_One_S1_1"]
        );
        assert_eq!(r.by_id_links("nvme2n1"), vec!["nvme-Model_Two_S2"]);
        assert!(r.by_id_links("xvdg").is_empty());
    }

    /// A cheap fuzz: arbitrary bytes of every length never make the parsers panic.
    #[test]
    fn parsers_survive_arbitrary_bytes() {
        let mut next = crate::testing::xorshift();
        for round in 0..2000 {
            let len = (next() % 4200) as usize;
            let data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let parsed = parse_identify(&data);
            assert_eq!(parsed.is_some(), len >= IDENTIFY_LEN, "round {round}");
            let text = String::from_utf8_lossy(&data[..len.min(40)]).into_owned();
            let _ = crate::kernel::mountinfo::parse(&text);
        }
    }
}
