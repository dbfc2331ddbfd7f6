//! EBS: what the facts the kernel layer reads about a whole disk mean on Lightsail, whose
//! disks are EBS volumes. Owns the EBS conventions, and nothing here reads a device itself:
//! - on Nitro, an EBS volume is an NVMe controller whose serial is the volume id without its
//!   dash (`vol0abc...` for `vol-0abc...`), in sysfs, in the Identify data, and at the end of
//!   udev's `/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0abc...` link;
//! - the EBS controller puts the block device name the volume was attached as (`/dev/xvdf` or
//!   `sdf`) in the first 32 bytes of the Identify data's vendor-specific area;
//! - a Lightsail `Disk.path` names that attachment (`/dev/xvdf`), and ends its `supportCode`
//!   with the volume id.

use std::path::{Path, PathBuf};

use crate::kernel::blockdev::{ascii_field, SysfsRoot};

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

/// What identifies disk `name` (a kernel name) under `root`: the volume id from the sysfs
/// serial, else from the Identify data, else from a by-id link; the attachment name from the
/// Identify data.
pub fn disk_ids(root: &SysfsRoot, name: &str) -> DiskIds {
    let identify = root.identify(name);
    let volume_id = root
        .serial(name)
        .as_deref()
        .and_then(volume_id_from_serial)
        .or_else(|| {
            identify
                .as_ref()
                .and_then(|i| volume_id_from_serial(&i.serial))
        })
        .or_else(|| {
            root.by_id_links(name)
                .iter()
                .find_map(|link| volume_id_from_by_id_link(link))
        });
    DiskIds {
        name: name.to_string(),
        dev_path: PathBuf::from("/dev").join(name),
        volume_id,
        ebs_device_name: identify.and_then(|i| attachment_name(&i.vendor_specific)),
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

/// The volume id a by-id link name carries: udev joins model and serial with `_`, so the
/// serial is the last part (`nvme-Amazon_Elastic_Block_Store_vol0abc...`).
fn volume_id_from_by_id_link(link: &str) -> Option<String> {
    volume_id_from_serial(link.rsplit('_').next()?)
}

/// Where the EBS controller writes the attachment name: the start of the vendor-specific
/// area, 32 bytes.
pub const ATTACHMENT_NAME: std::ops::Range<usize> = 0..32;

/// The attachment name (`/dev/xvdf` or `sdf`) in the vendor-specific area of an EBS NVMe
/// controller's Identify data; `None` where it is empty or not plain text.
pub fn attachment_name(vendor_specific: &[u8]) -> Option<String> {
    let name = ascii_field(vendor_specific.get(ATTACHMENT_NAME)?);
    (!name.is_empty() && !name.contains('?')).then_some(name)
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
    use crate::kernel::blockdev::fixture::{identify, Tree};
    use crate::kernel::blockdev::parse_identify;

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

    #[test]
    fn identify_data_as_ebs_lays_it_out() {
        let data = identify(
            "vol0123456789abcdef0",
            "Amazon Elastic Block Store",
            b"/dev/xvdf",
        );
        let id = parse_identify(&data).unwrap();
        assert_eq!(
            volume_id_from_serial(&id.serial).as_deref(),
            Some("vol-0123456789abcdef0")
        );
        assert_eq!(
            attachment_name(&id.vendor_specific).as_deref(),
            Some("/dev/xvdf")
        );
        let bare = identify("vol0aa", "Amazon Elastic Block Store", b"sdf");
        let id = parse_identify(&bare).unwrap();
        let name = attachment_name(&id.vendor_specific).unwrap();
        assert_eq!(as_dev_path(&name), Path::new("/dev/sdf"));
        let none = identify("vol0aa", "Amazon EC2 NVMe Instance Storage", b"");
        let id = parse_identify(&none).unwrap();
        assert_eq!(attachment_name(&id.vendor_specific), None);
        assert_eq!(attachment_name(b"/dev/x\x01"), None, "not plain text");
        assert_eq!(attachment_name(b"short"), None, "not the whole field");
    }

    #[test]
    fn xen_disks_are_known_by_their_path_alone() {
        let t = Tree::new();
        t.device("xvdf", "/sys/devices/vbd-51792/block/xvdf", "202:80");
        let ids = disk_ids(&t.root(), "xvdf");
        assert_eq!(ids.dev_path, Path::new("/dev/xvdf"));
        assert_eq!((ids.volume_id, ids.ebs_device_name), (None, None));
    }

    #[test]
    fn nvme_serials_in_sysfs_give_volume_ids() {
        let t = Tree::new();
        for (i, serial) in [(1, "vol0123456789abcdef0"), (2, "vol0fedcba9876543210")] {
            let dir = format!("/sys/devices/pci0000:00/nvme/nvme{i}/nvme{i}n1");
            t.device(&format!("nvme{i}n1"), &dir, &format!("259:{i}"));
            t.write(&format!("{dir}/device/serial"), format!("{serial}\n"));
        }
        let r = t.root();
        assert_eq!(
            disk_ids(&r, "nvme1n1").volume_id.as_deref(),
            Some("vol-0123456789abcdef0")
        );
        assert_eq!(
            disk_ids(&r, "nvme2n1").volume_id.as_deref(),
            Some("vol-0fedcba9876543210")
        );
    }

    /// A Nitro instance whose sysfs shows no serial: the Identify data gives the volume id
    /// and the name the volume was attached as; a disk with neither is found by its by-id link.
    #[test]
    fn nitro_ids_from_identify_data_and_by_id_links() {
        let t = Tree::new();
        t.device("nvme1n1", "/sys/devices/pci/nvme/nvme1/nvme1n1", "259:1");
        t.device("nvme2n1", "/sys/devices/pci/nvme/nvme2/nvme2n1", "259:2");
        t.write(
            "/identify/nvme1n1",
            identify(
                "vol0123456789abcdef0",
                "Amazon Elastic Block Store",
                b"/dev/xvdf",
            ),
        );
        t.by_id(
            "nvme-Amazon_Elastic_Block_Store_vol0fedcba9876543210",
            "nvme2n1",
        );
        let r = t.root();
        let one = disk_ids(&r, "nvme1n1");
        assert_eq!(one.volume_id.as_deref(), Some("vol-0123456789abcdef0"));
        assert_eq!(one.ebs_device_name.as_deref(), Some("/dev/xvdf"));
        let two = disk_ids(&r, "nvme2n1");
        assert_eq!(two.volume_id.as_deref(), Some("vol-0fedcba9876543210"));
        assert_eq!(two.ebs_device_name, None);
        let xen = disk_ids(&r, "xvdg");
        assert_eq!((xen.volume_id, xen.ebs_device_name), (None, None));
    }

    /// A cheap fuzz: arbitrary text and bytes never make the interpreters panic, and a volume
    /// id is always `vol-` and something.
    #[test]
    fn interpreters_survive_arbitrary_bytes() {
        let mut next = crate::testing::xorshift();
        for round in 0..2000 {
            let len = (next() % 64) as usize;
            let data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let text = String::from_utf8_lossy(&data).into_owned();
            if let Some(v) = volume_id_from_serial(&text) {
                assert!(v.len() > 4 && v.starts_with("vol-"), "round {round}: {v:?}");
            }
            let _ = volume_id_from_by_id_link(&text);
            if let Some(n) = attachment_name(&data) {
                assert!(as_dev_path(&n).is_absolute(), "round {round}: {n:?}");
            }
        }
    }
}
