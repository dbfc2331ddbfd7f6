//! Planning: from the paths an operator typed to what will be quiesced and which API call will
//! be made, with every check that can fail done here, before anything is touched.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::cloud::ebs::{self, DiskIds};
use crate::cloud::imds::Identity;
use crate::cloud::lightsail::{ApiErrorKind, DiskInfo, InstanceInfo, Lightsail, Source};
use crate::exit_code::{ExitCode, Failure};
use crate::fail;
use crate::kernel::blockdev;
use crate::kernel::mountinfo::{self, Mount};

/// How a target is made consistent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum, Default)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Freeze where the filesystem can be frozen, else unmount.
    #[default]
    Auto,
    /// Freeze, and fail where that is not possible.
    Freeze,
    /// Unmount and remount, even where freezing would work.
    Unmount,
}

/// What a target's consistency rests on; also the value of its `lightsnap:consistency` tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Consistency {
    /// Frozen with FIFREEZE around the call.
    Frozen,
    /// Unmounted around the call.
    Unmounted,
    /// The superblock is read-only: nothing could write.
    Readonly,
    /// Nothing paused writes (`--allow-crash-consistent`).
    Crash,
    /// A snapshot exists, but whether it was taken inside the frozen window is not known.
    Unverified,
}

impl Consistency {
    /// The tag value.
    pub fn as_str(self) -> &'static str {
        match self {
            Consistency::Frozen => "frozen",
            Consistency::Unmounted => "unmounted",
            Consistency::Readonly => "readonly",
            Consistency::Crash => "crash",
            Consistency::Unverified => "unverified",
        }
    }
}

/// The tag key that labels a snapshot's consistency.
pub const CONSISTENCY_TAG: &str = "lightsnap:consistency";

/// Filesystem types known to have no freeze support: planned as unmounts from the start.
const UNFREEZABLE: &[&str] = &["vfat", "msdos", "exfat", "fuseblk", "ntfs3", "ntfs"];

/// Filesystems that are never on a block device of this instance, whatever their source says.
const NETWORK_OR_VIRTUAL: &[&str] = &[
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "ceph",
    "glusterfs",
    "9p",
    "virtiofs",
    "overlay",
    "tmpfs",
    "ramfs",
    "proc",
    "sysfs",
    "devtmpfs",
    "squashfs",
];

/// A path resolved to a mount on a block device.
#[derive(Debug, Clone, Serialize)]
pub struct Located {
    /// The path as given.
    pub path: PathBuf,
    /// The mount it is on.
    pub mount: Mount,
    /// The block device behind the mount.
    pub block_device: PathBuf,
}

/// Resolves `path` to its mount and block device, refusing what lightsnap cannot snapshot.
pub fn locate(path: &Path, mounts: &[Mount]) -> Result<Located> {
    if !path.exists() {
        fail!(
            ExitCode::NotFound,
            "{}: no such file or directory; give a path on the filesystem to snapshot",
            path.display()
        );
    }
    let resolved = mountinfo::resolve(path, mounts)?;
    let mount = resolved.mount;
    let fs = &mount.fstype;
    let block_device = mount.block_device();
    let network =
        NETWORK_OR_VIRTUAL.contains(&fs.as_str()) || (mount.is_fuse() && mount.fstype != "fuseblk");
    let Some(block_device) = block_device.filter(|_| !network) else {
        fail!(
            ExitCode::Unsupported,
            "{} is on {} ({} from {}), which is not a filesystem on a block device of this instance: there is no Lightsail disk behind it to snapshot",
            path.display(),
            mount.mount_point.display(),
            fs,
            mount.source
        );
    };
    Ok(Located {
        path: path.to_path_buf(),
        mount,
        block_device,
    })
}

/// The method that will be tried first for a mount.
pub fn first_method(mount: &Mount, asked: Method) -> Result<Option<crate::runstate::Quiesce>> {
    use crate::runstate::Quiesce;
    if mount.is_read_only() {
        return Ok(None);
    }
    Ok(Some(match asked {
        Method::Unmount => Quiesce::Unmount,
        Method::Freeze => Quiesce::Freeze,
        Method::Auto if UNFREEZABLE.contains(&mount.fstype.as_str()) => Quiesce::Unmount,
        Method::Auto => Quiesce::Freeze,
    }))
}

/// The whole disks under a located filesystem: its source device, every member of a
/// multi-device btrfs, through partitions, device-mapper and md down to the disks.
pub fn whole_disks(root: &blockdev::Root, located: &Located) -> Result<Vec<DiskIds>> {
    let meta = std::fs::metadata(&located.block_device)
        .with_context(|| format!("reading {}", located.block_device.display()))?;
    let rdev = std::os::unix::fs::MetadataExt::rdev(&meta);
    let dev = (
        nix::sys::stat::major(rdev) as u32,
        nix::sys::stat::minor(rdev) as u32,
    );
    let name = root.name_of(dev)?;
    let members = if located.mount.fstype == "btrfs" {
        root.btrfs_members(&name)
    } else {
        vec![name]
    };
    let mut disks: Vec<String> = Vec::new();
    for m in members {
        for d in root.disks_under(&m)? {
            if !disks.contains(&d) {
                disks.push(d);
            }
        }
    }
    Ok(disks.iter().map(|d| ebs::disk_ids(root, d)).collect())
}

/// Finds the Lightsail disks behind block devices: the disk named by the operator, else the
/// disk of this instance whose `path` is the device (the system disk meaning the system
/// volume). Who this instance is is asked once, and only when it is needed.
pub struct Discovery<'a, A, F> {
    api: &'a A,
    identity: Option<F>,
    me: Option<InstanceInfo>,
}

impl<'a, A, F> Discovery<'a, A, F>
where
    A: Lightsail,
    F: std::future::Future<Output = Result<Identity>>,
{
    /// Discovery through `api`; `identity` says who this instance is, if asked.
    pub fn new(api: &'a A, identity: F) -> Self {
        Self {
            api,
            identity: Some(identity),
            me: None,
        }
    }

    /// This instance, as Lightsail describes it.
    pub async fn instance(&mut self) -> Result<&InstanceInfo> {
        if self.me.is_none() {
            let identity = self
                .identity
                .take()
                .context("the instance identity was asked for twice")?
                .await
                .context(
                    "finding which Lightsail instance this is (give --disk-name to skip this)",
                )?;
            let instances = self
                .api
                .get_instances()
                .await
                .context("listing Lightsail instances to find this one")?;
            self.me = Some(this_instance(&instances, &identity)?.clone());
        }
        Ok(self.me.as_ref().expect("set above"))
    }

    /// The source behind a whole disk, or the disk named `disk_name`.
    pub async fn source(
        &mut self,
        disk_name: Option<&str>,
        ids: &DiskIds,
    ) -> Result<(Source, DiskInfo)> {
        let block_device = &ids.dev_path;
        if let Some(name) = disk_name {
            let disk = match self.api.get_disk(name).await {
                Ok(d) => d,
                Err(e) if e.kind == ApiErrorKind::NotFound => fail!(
                    ExitCode::NotFound,
                    "there is no Lightsail disk named {name} in this region; check --disk-name and AWS_REGION ({})",
                    e.message
                ),
                Err(e) => return Err(e).context(format!("looking up disk {name}")),
            };
            if !disk.is_attached {
                fail!(
                    ExitCode::NotFound,
                    "Lightsail disk {name} is not attached to any instance, so it cannot be behind {}; check --disk-name",
                    block_device.display()
                );
            }
            return Ok((Source::Disk(name.to_string()), disk));
        }
        let me = self.instance().await?;
        let Some(disk) = me.disks.iter().find(|d| is_disk(d, ids)).cloned() else {
            let known: Vec<String> = me
                .disks
                .iter()
                .map(|d| format!("{} at {}", d.name, d.path.as_deref().unwrap_or("?")))
                .collect();
            fail!(
                ExitCode::NotFound,
                "no disk of Lightsail instance {} is at {}; its disks: {}; name the disk with --disk-name",
                me.name,
                block_device.display(),
                known.join(", ")
            );
        };
        let source = if disk.is_system_disk {
            Source::SystemVolume(me.name.clone())
        } else {
            Source::Disk(disk.name.clone())
        };
        Ok((source, disk))
    }
}

/// The Lightsail instance whose `supportCode` ends in this EC2 instance id.
pub fn this_instance<'a>(
    instances: &'a [InstanceInfo],
    identity: &Identity,
) -> Result<&'a InstanceInfo> {
    let suffix = format!("/{}", identity.instance_id);
    instances
        .iter()
        .find(|i| i.support_code.as_deref().is_some_and(|c| c.ends_with(&suffix)))
        .ok_or_else(|| {
            Failure::new(
                ExitCode::NotFound,
                format!(
                    "no Lightsail instance in this region and account has instance id {} (region {} by the metadata service); check AWS_REGION and the credentials' account",
                    identity.instance_id, identity.region
                ),
            )
            .into()
        })
}

/// Whether a Lightsail disk is this whole disk: by device path (Xen `xvdf`, and plain paths
/// such as the tests' loop devices), by EBS volume id (Nitro NVMe serial ↔ `supportCode`), or
/// by the device name the NVMe controller reports.
pub fn is_disk(disk: &DiskInfo, ids: &DiskIds) -> bool {
    if same_device(disk.path.as_deref(), &ids.dev_path) {
        return true;
    }
    if let (Some(vol), Some(code)) = (&ids.volume_id, &disk.support_code) {
        if code.rsplit('/').next() == Some(vol.as_str()) {
            return true;
        }
    }
    if let (Some(name), Some(path)) = (&ids.ebs_device_name, &disk.path) {
        return ebs::as_dev_path(name) == Path::new(path);
    }
    false
}

/// Whether Lightsail's device path names the same device as the mount's block device.
fn same_device(lightsail_path: Option<&str>, block_device: &Path) -> bool {
    let Some(p) = lightsail_path else {
        return false;
    };
    let p = Path::new(p);
    p == block_device || p.canonicalize().is_ok_and(|c| c == block_device)
}

/// What `{disk}` stands for in a name template: the disk name, or `<instance>-system`.
pub fn source_label(source: &Source) -> String {
    match source {
        Source::Disk(d) => d.clone(),
        Source::SystemVolume(i) => format!("{i}-system"),
        Source::Instance(i) => i.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(name: &str, code: &str, disks: &[(&str, &str, bool)]) -> InstanceInfo {
        InstanceInfo {
            name: name.into(),
            support_code: Some(code.into()),
            disks: disks
                .iter()
                .map(|(n, p, sys)| DiskInfo {
                    name: n.to_string(),
                    path: Some(p.to_string()),
                    attached_to: Some(name.into()),
                    is_attached: true,
                    is_system_disk: *sys,
                    support_code: None,
                })
                .collect(),
        }
    }

    #[test]
    fn the_instance_is_found_by_support_code_suffix() {
        let list = vec![
            instance("a", "1234/i-0aaa", &[]),
            instance("b", "1234/i-0bbb", &[]),
        ];
        let id = Identity {
            instance_id: "i-0bbb".into(),
            region: "us-east-1".into(),
            availability_zone: "us-east-1a".into(),
        };
        assert_eq!(this_instance(&list, &id).unwrap().name, "b");
        let other = Identity {
            instance_id: "i-0ccc".into(),
            ..id
        };
        let err = this_instance(&list, &other).unwrap_err();
        assert_eq!(ExitCode::of(&err), ExitCode::NotFound);
    }

    /// A Lightsail with canned answers: enough to test discovery without a network.
    struct Canned {
        instances: Vec<InstanceInfo>,
    }

    impl Lightsail for Canned {
        async fn get_disk(
            &self,
            name: &str,
        ) -> Result<DiskInfo, crate::cloud::lightsail::ApiError> {
            self.instances
                .iter()
                .flat_map(|i| i.disks.iter())
                .find(|d| d.name == name)
                .cloned()
                .ok_or(crate::cloud::lightsail::ApiError {
                    operation: "GetDisk",
                    kind: ApiErrorKind::NotFound,
                    code: Some("NotFoundException".into()),
                    message: format!("{name} not found"),
                })
        }
        async fn get_instances(
            &self,
        ) -> Result<Vec<InstanceInfo>, crate::cloud::lightsail::ApiError> {
            Ok(self.instances.clone())
        }
        async fn get_disk_snapshot(
            &self,
            _: &str,
        ) -> Result<Option<crate::cloud::lightsail::SnapshotInfo>, crate::cloud::lightsail::ApiError>
        {
            Ok(None)
        }
        async fn get_instance_snapshot(
            &self,
            _: &str,
        ) -> Result<Option<crate::cloud::lightsail::SnapshotInfo>, crate::cloud::lightsail::ApiError>
        {
            Ok(None)
        }
        async fn create_snapshot(
            &self,
            _: &crate::cloud::lightsail::SnapshotRequest,
            _: std::time::Duration,
        ) -> Result<crate::cloud::lightsail::OperationInfo, crate::cloud::lightsail::ApiError>
        {
            unreachable!("discovery never creates")
        }
        async fn tag_resource(
            &self,
            _: &str,
            _: &[(String, String)],
        ) -> Result<(), crate::cloud::lightsail::ApiError> {
            unreachable!("discovery never tags")
        }
        async fn get_disk_snapshots(
            &self,
        ) -> Result<Vec<crate::cloud::lightsail::SnapshotInfo>, crate::cloud::lightsail::ApiError>
        {
            unreachable!("discovery never lists snapshots")
        }
        async fn delete_disk_snapshot(
            &self,
            _: &str,
        ) -> Result<(), crate::cloud::lightsail::ApiError> {
            unreachable!("discovery never deletes")
        }
        async fn get_instance_snapshots(
            &self,
        ) -> Result<Vec<crate::cloud::lightsail::SnapshotInfo>, crate::cloud::lightsail::ApiError>
        {
            unreachable!("discovery never lists snapshots")
        }
        async fn delete_instance_snapshot(
            &self,
            _: &str,
        ) -> Result<(), crate::cloud::lightsail::ApiError> {
            unreachable!("discovery never deletes")
        }
    }

    fn identity() -> Identity {
        Identity {
            instance_id: "i-0bbb".into(),
            region: "us-east-1".into(),
            availability_zone: "us-east-1a".into(),
        }
    }

    fn canned() -> Canned {
        Canned {
            instances: vec![
                instance("a", "1234/i-0aaa", &[("a-data", "/dev/xvdf", false)]),
                instance(
                    "b",
                    "1234/i-0bbb",
                    &[
                        ("b-system", "/dev/xvda", true),
                        ("b-data", "/dev/xvdf", false),
                    ],
                ),
            ],
        }
    }

    fn discover(disk: Option<&str>, dev: &str) -> Result<(Source, DiskInfo)> {
        let api = canned();
        crate::runtime().unwrap().block_on(async {
            let mut discovery = Discovery::new(&api, async { Ok(identity()) });
            let ids = DiskIds {
                name: dev.trim_start_matches("/dev/").into(),
                dev_path: dev.into(),
                volume_id: None,
                ebs_device_name: None,
            };
            discovery.source(disk, &ids).await
        })
    }

    #[test]
    fn discovery_matches_this_instances_disk_by_path() {
        let (source, disk) = discover(None, "/dev/xvdf").unwrap();
        assert_eq!(
            source,
            Source::Disk("b-data".into()),
            "b is this instance, not a"
        );
        assert_eq!(disk.name, "b-data");
        let (source, _) = discover(None, "/dev/xvda").unwrap();
        assert_eq!(source, Source::SystemVolume("b".into()));
        let err = discover(None, "/dev/xvdz").unwrap_err();
        assert_eq!(ExitCode::of(&err), ExitCode::NotFound);
        assert!(err.to_string().contains("b-data at /dev/xvdf"), "{err}");
    }

    /// Nitro: the kernel calls the disk `nvme1n1`, Lightsail calls it `/dev/xvdf`; the
    /// volume id (NVMe serial ↔ `supportCode`) or the attachment name (Identify data ↔
    /// `path`) tie them together.
    #[test]
    fn nvme_disks_match_by_volume_id_or_attachment_name() {
        let disk = DiskInfo {
            name: "data-1".into(),
            path: Some("/dev/xvdf".into()),
            attached_to: Some("b".into()),
            is_attached: true,
            is_system_disk: false,
            support_code: Some("123456789012/vol-0123456789abcdef0".into()),
        };
        let nvme = |volume_id: Option<&str>, name: Option<&str>| DiskIds {
            name: "nvme1n1".into(),
            dev_path: "/dev/nvme1n1".into(),
            volume_id: volume_id.map(str::to_string),
            ebs_device_name: name.map(str::to_string),
        };
        assert!(is_disk(&disk, &nvme(Some("vol-0123456789abcdef0"), None)));
        assert!(is_disk(&disk, &nvme(None, Some("/dev/xvdf"))));
        assert!(!is_disk(&disk, &nvme(Some("vol-0fffffffffffffff0"), None)));
        assert!(!is_disk(&disk, &nvme(None, Some("/dev/xvdg"))));
        assert!(!is_disk(&disk, &nvme(None, None)));
        let sdf = DiskInfo {
            path: Some("/dev/sdf".into()),
            support_code: None,
            ..disk.clone()
        };
        assert!(is_disk(&sdf, &nvme(None, Some("sdf"))));
    }

    #[test]
    fn a_named_disk_is_looked_up_not_discovered() {
        let (source, _) = discover(Some("a-data"), "/dev/whatever").unwrap();
        assert_eq!(source, Source::Disk("a-data".into()));
        let err = discover(Some("nope"), "/dev/xvdf").unwrap_err();
        assert_eq!(ExitCode::of(&err), ExitCode::NotFound);
    }
}
