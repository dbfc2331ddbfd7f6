//! Block devices: from a mount's source to the whole disks underneath it, and what identifies
//! each disk to Lightsail.
//!
//! Everything is read through a [`Root`] directory (`/` in production), so that layouts this
//! machine's kernel cannot make (device-mapper/LVM, md RAID, NVMe) are tested on fixture trees
//! laid out as sysfs documents them:
//! - `/sys/dev/block/MAJ:MIN` links to the device's directory, named by its kernel name;
//! - a partition's directory has a `partition` file, and its parent directory is the disk;
//! - device-mapper and md devices list what they are built on in `slaves/`;
//! - an NVMe namespace's controller serial is `device/serial`: on Nitro, EBS volumes show
//!   `vol0abc...` for volume `vol-0abc...`; the same serial, and the device name the volume
//!   was attached as, are in the controller's Identify data (an ioctl on the device, or a
//!   fixture file `identify/<name>` under a test root); udev's `/dev/disk/by-id/` links name
//!   the serial too;
//! - a multi-device btrfs lists its members in `/sys/fs/btrfs/<fsid>/devices/`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Where sysfs and /dev are read from.
#[derive(Debug, Clone)]
pub struct Root(PathBuf);

impl Default for Root {
    fn default() -> Self {
        Self(PathBuf::from("/"))
    }
}

impl Root {
    fn is_live(&self) -> bool {
        self.0 == Path::new("/")
    }

    /// The Identify Controller data of NVMe disk `name`: from the device itself, or from a
    /// fixture file under a test root. `None` for anything else, or when it cannot be read
    /// (not root, not NVMe).
    fn identify(&self, name: &str) -> Option<Identify> {
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

    /// The EBS volume id a `/dev/disk/by-id/` link to disk `name` carries
    /// (`nvme-Amazon_Elastic_Block_Store_vol0abc...`).
    fn volume_id_by_link(&self, name: &str) -> Option<String> {
        let links = std::fs::read_dir(self.path("/dev/disk/by-id")).ok()?;
        links.flatten().find_map(|l| {
            let target = std::fs::read_link(l.path()).ok()?;
            if target.file_name()? != name {
                return None;
            }
            let link = l.file_name().to_string_lossy().into_owned();
            let serial = link.rsplit('_').next()?;
            volume_id_from_serial(serial)
        })
    }
}

/// What identifies a whole disk to Lightsail.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DiskIds {
    /// Kernel name (`xvdf`, `nvme1n1`, `loop3`).
    pub name: String,
    /// `/dev/<name>`.
    pub dev_path: PathBuf,
    /// The EBS volume id, where the device says (`vol-0abc...`, from an NVMe serial).
    pub volume_id: Option<String>,
    /// The device name the EBS NVMe controller reports in its vendor data (`/dev/xvdf`).
    pub ebs_device_name: Option<String>,
}

impl Root {
    /// A root directory other than `/` (fixture trees in tests).
    pub fn at(path: impl Into<PathBuf>) -> Self {
        Self(path.into())
    }

    fn path(&self, abs: &str) -> PathBuf {
        self.0.join(abs.trim_start_matches('/'))
    }

    fn read(&self, abs: &str) -> Option<String> {
        std::fs::read_to_string(self.path(abs))
            .ok()
            .map(|s| s.trim().to_string())
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

    /// What identifies disk `name`: the volume id from the sysfs serial, else from the
    /// Identify data, else from a by-id link; the attachment name from the Identify data.
    pub fn ids(&self, name: &str) -> DiskIds {
        let serial = self.read(&format!("/sys/class/block/{name}/device/serial"));
        let identify = self.identify(name);
        let volume_id = serial
            .as_deref()
            .and_then(volume_id_from_serial)
            .or_else(|| {
                identify
                    .as_ref()
                    .and_then(|i| volume_id_from_serial(&i.serial))
            })
            .or_else(|| self.volume_id_by_link(name));
        DiskIds {
            name: name.to_string(),
            dev_path: PathBuf::from("/dev").join(name),
            volume_id,
            ebs_device_name: identify.and_then(|i| i.device_name),
        }
    }
}

/// `vol0abc...` (an EBS NVMe serial) → `vol-0abc...`.
pub fn volume_id_from_serial(serial: &str) -> Option<String> {
    let s = serial.trim();
    let rest = s.strip_prefix("vol")?;
    let rest = rest.strip_prefix('-').unwrap_or(rest);
    (!rest.is_empty() && rest.chars().all(|c| c.is_ascii_alphanumeric()))
        .then(|| format!("vol-{rest}"))
}

/// Offsets in the 4096-byte NVMe Identify Controller data (NVMe base spec, figure "Identify
/// Controller Data Structure"): serial number bytes 4..24, model number 24..64; the EBS
/// controller puts the block device name it was attached as at the start of the
/// vendor-specific area, byte 3072, 32 bytes.
const SERIAL: std::ops::Range<usize> = 4..24;
const MODEL: std::ops::Range<usize> = 24..64;
const VENDOR_NAME: std::ops::Range<usize> = 3072..3104;

/// What the Identify Controller data of an EBS NVMe device says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identify {
    /// Serial number (`vol0abc...`).
    pub serial: String,
    /// Model (`Amazon Elastic Block Store`).
    pub model: String,
    /// The attachment device name from the vendor-specific area (`/dev/xvdf` or `sdf`).
    pub device_name: Option<String>,
}

/// The size of Identify Controller data.
pub const IDENTIFY_LEN: usize = 4096;

/// Parses Identify Controller data; `None` when it is not the whole 4096 bytes.
pub fn parse_identify(data: &[u8]) -> Option<Identify> {
    if data.len() < IDENTIFY_LEN {
        return None;
    }
    let text = |r: std::ops::Range<usize>| -> Option<String> {
        let bytes = data.get(r)?;
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
        Some(s.trim().to_string())
    };
    let serial = text(SERIAL)?;
    let model = text(MODEL)?;
    let device_name = text(VENDOR_NAME).filter(|n| !n.is_empty() && !n.contains('?'));
    Some(Identify {
        serial,
        model,
        device_name,
    })
}

/// The `/dev/...` path a Lightsail `Disk.path` means for a vendor device name: `sdf` and
/// `/dev/sdf` both mean `/dev/sdf`.
pub fn as_dev_path(name: &str) -> PathBuf {
    if name.starts_with('/') {
        PathBuf::from(name)
    } else {
        Path::new("/dev").join(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A fixture sysfs tree: `/sys/devices/...` directories, `/sys/class/block` and
    /// `/sys/dev/block` links, as the kernel lays them out.
    struct Tree(tempfile::TempDir);

    impl Tree {
        fn new() -> Self {
            Self(tempfile::tempdir().unwrap())
        }
        fn root(&self) -> Root {
            Root::at(self.0.path())
        }
        fn p(&self, abs: &str) -> PathBuf {
            self.0.path().join(abs.trim_start_matches('/'))
        }
        /// A block device whose sysfs directory is `dir` (absolute, under /sys/devices).
        fn device(&self, name: &str, dir: &str, dev: &str) {
            std::fs::create_dir_all(self.p(dir)).unwrap();
            std::fs::create_dir_all(self.p("/sys/class/block")).unwrap();
            std::fs::create_dir_all(self.p("/sys/dev/block")).unwrap();
            symlink(self.p(dir), self.p(&format!("/sys/class/block/{name}"))).unwrap();
            symlink(self.p(dir), self.p(&format!("/sys/dev/block/{dev}"))).unwrap();
        }
        fn partition(&self, name: &str, disk_dir: &str, dev: &str) {
            let dir = format!("{disk_dir}/{name}");
            self.device(name, &dir, dev);
            std::fs::write(self.p(&format!("{dir}/partition")), "1\n").unwrap();
        }
        fn slave(&self, dir: &str, of: &str) {
            std::fs::create_dir_all(self.p(&format!("{dir}/slaves"))).unwrap();
            symlink(
                self.p(&format!("/sys/class/block/{of}")),
                self.p(&format!("{dir}/slaves/{of}")),
            )
            .unwrap();
        }
        fn write(&self, abs: &str, text: &str) {
            std::fs::create_dir_all(self.p(abs).parent().unwrap()).unwrap();
            std::fs::write(self.p(abs), text).unwrap();
        }
    }

    #[test]
    fn xen_disk_and_partition() {
        let t = Tree::new();
        t.device("xvdf", "/sys/devices/vbd-51792/block/xvdf", "202:80");
        t.partition("xvdf1", "/sys/devices/vbd-51792/block/xvdf", "202:81");
        let r = t.root();
        assert_eq!(r.name_of((202, 81)).unwrap(), "xvdf1");
        assert_eq!(r.disks_under("xvdf1").unwrap(), vec!["xvdf"]);
        assert_eq!(r.disks_under("xvdf").unwrap(), vec!["xvdf"]);
        assert_eq!(r.ids("xvdf").dev_path, Path::new("/dev/xvdf"));
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
    fn md_raid1_over_nvme_with_volume_ids() {
        let t = Tree::new();
        for (i, serial) in [(1, "vol0123456789abcdef0"), (2, "vol0fedcba9876543210")] {
            let dir = format!("/sys/devices/pci0000:00/nvme/nvme{i}/nvme{i}n1");
            t.device(&format!("nvme{i}n1"), &dir, &format!("259:{i}"));
            t.write(
                &format!("/sys/devices/pci0000:00/nvme/nvme{i}/nvme{i}n1/device/serial"),
                &format!("{serial}\n"),
            );
        }
        t.device("md0", "/sys/devices/virtual/block/md0", "9:0");
        t.slave("/sys/devices/virtual/block/md0", "nvme1n1");
        t.slave("/sys/devices/virtual/block/md0", "nvme2n1");
        let r = t.root();
        let disks = r.disks_under("md0").unwrap();
        assert_eq!(disks, vec!["nvme1n1", "nvme2n1"]);
        assert_eq!(
            r.ids("nvme1n1").volume_id.as_deref(),
            Some("vol-0123456789abcdef0")
        );
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
    fn serials_become_volume_ids() {
        assert_eq!(
            volume_id_from_serial("vol0abc123"),
            Some("vol-0abc123".into())
        );
        assert_eq!(
            volume_id_from_serial("vol-0abc123"),
            Some("vol-0abc123".into())
        );
        assert_eq!(
            volume_id_from_serial("  vol0abc  "),
            Some("vol-0abc".into())
        );
        assert_eq!(volume_id_from_serial("AWS1234"), None);
        assert_eq!(volume_id_from_serial("vol"), None);
    }

    fn identify_fixture(serial: &str, model: &str, name: &[u8]) -> Vec<u8> {
        let mut data = vec![0u8; 4096];
        let pad = |r: std::ops::Range<usize>, s: &[u8], d: &mut Vec<u8>| {
            d[r.clone()].fill(b' ');
            d[r.start..r.start + s.len()].copy_from_slice(s);
        };
        pad(SERIAL, serial.as_bytes(), &mut data);
        pad(MODEL, model.as_bytes(), &mut data);
        data[VENDOR_NAME.start..VENDOR_NAME.start + name.len()].copy_from_slice(name);
        data
    }

    #[test]
    fn identify_data_as_ebs_lays_it_out() {
        let data = identify_fixture(
            "vol0123456789abcdef0",
            "Amazon Elastic Block Store",
            b"/dev/xvdf",
        );
        let id = parse_identify(&data).unwrap();
        assert_eq!(id.serial, "vol0123456789abcdef0");
        assert_eq!(id.model, "Amazon Elastic Block Store");
        assert_eq!(id.device_name.as_deref(), Some("/dev/xvdf"));
        let bare = identify_fixture("vol0aa", "Amazon Elastic Block Store", b"sdf");
        let id = parse_identify(&bare).unwrap();
        assert_eq!(
            as_dev_path(id.device_name.as_deref().unwrap()),
            Path::new("/dev/sdf")
        );
        assert!(parse_identify(&data[..100]).is_none());
        let none = identify_fixture("vol0aa", "Amazon EC2 NVMe Instance Storage", b"");
        assert_eq!(parse_identify(&none).unwrap().device_name, None);
    }

    /// A Nitro instance whose sysfs shows no serial: the Identify data gives the volume id
    /// and the name the volume was attached as; a disk with neither is found by its by-id link.
    #[test]
    fn nitro_ids_from_identify_data_and_by_id_links() {
        let t = Tree::new();
        t.device("nvme1n1", "/sys/devices/pci/nvme/nvme1/nvme1n1", "259:1");
        t.device("nvme2n1", "/sys/devices/pci/nvme/nvme2/nvme2n1", "259:2");
        t.write("/identify/nvme1n1", "");
        std::fs::write(
            t.p("/identify/nvme1n1"),
            identify_fixture(
                "vol0123456789abcdef0",
                "Amazon Elastic Block Store",
                b"/dev/xvdf",
            ),
        )
        .unwrap();
        std::fs::create_dir_all(t.p("/dev/disk/by-id")).unwrap();
        symlink(
            "../../nvme2n1",
            t.p("/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0fedcba9876543210"),
        )
        .unwrap();
        let r = t.root();
        let one = r.ids("nvme1n1");
        assert_eq!(one.volume_id.as_deref(), Some("vol-0123456789abcdef0"));
        assert_eq!(one.ebs_device_name.as_deref(), Some("/dev/xvdf"));
        let two = r.ids("nvme2n1");
        assert_eq!(two.volume_id.as_deref(), Some("vol-0fedcba9876543210"));
        assert_eq!(two.ebs_device_name, None);
        let xen = r.ids("xvdg");
        assert_eq!((xen.volume_id, xen.ebs_device_name), (None, None));
    }

    /// A cheap fuzz: arbitrary bytes of every length never make the parsers panic.
    #[test]
    fn parsers_survive_arbitrary_bytes() {
        let mut state: u64 = 0x9e3779b97f4a7c15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..2000 {
            let len = (next() % 4200) as usize;
            let data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let parsed = parse_identify(&data);
            assert_eq!(parsed.is_some(), len >= IDENTIFY_LEN, "round {round}");
            let text = String::from_utf8_lossy(&data[..len.min(40)]).into_owned();
            let _ = volume_id_from_serial(&text);
            let _ = crate::kernel::mountinfo::parse(&text);
        }
    }
}
