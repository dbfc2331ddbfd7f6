//! Planning: from the paths an operator typed to what will be quiesced and which API call will
//! be made, with every check that can fail done here, before anything is touched.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::cloud::ebs::{self, DiskIds};
use crate::cloud::imds::Identity;
use crate::cloud::lightsail::{ApiErrorKind, DiskInfo, InstanceInfo, Lightsail, Source};
use crate::cloud::owner::Owner;
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
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
pub fn whole_disks(root: &blockdev::SysfsRoot, located: &Located) -> Result<Vec<DiskIds>> {
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
    /// This instance's region, by the metadata service, once asked.
    region: Option<String>,
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
            region: None,
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
                .context("finding which Lightsail instance this is (give --disk to skip this)")?;
            let instances = self
                .api
                .get_instances()
                .await
                .context("listing Lightsail instances to find this one")?;
            self.me = Some(this_instance(&instances, &identity)?.clone());
            self.region = Some(identity.region);
        }
        Ok(self.me.as_ref().expect("set above"))
    }

    /// This instance as the owner of what lightsnap makes (`lightsnap:owner`): its region by
    /// the metadata service, its Lightsail name.
    pub async fn owner(&mut self) -> Result<Owner> {
        let name = self.instance().await?.name.clone();
        let region = self
            .region
            .clone()
            .context("the instance's region is known")?;
        Ok(Owner::new(region, name))
    }

    /// The source behind a whole disk, or the disk named `disk_name`.
    pub async fn source(
        &mut self,
        disk_name: Option<&str>,
        ids: &DiskIds,
    ) -> Result<(Source, DiskInfo)> {
        let block_device = &ids.dev_path;
        if let Some(name) = disk_name {
            return self.named(name, ids).await;
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
                "no disk of Lightsail instance {} is at {}; its disks: {}; name the disk with --disk",
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

impl<'a, A, F> Discovery<'a, A, F>
where
    A: Lightsail,
    F: std::future::Future<Output = Result<Identity>>,
{
    /// The disk an operator named for a whole disk: it must be attached to this instance, and
    /// where discovery can tell which disk `ids` is, it must be that one. Where it cannot
    /// (hardware it does not know), the name is taken with a warning.
    async fn named(&mut self, name: &str, ids: &DiskIds) -> Result<(Source, DiskInfo)> {
        let block_device = &ids.dev_path;
        let me = self.instance().await?.clone();
        let Some(disk) = me.disks.iter().find(|d| d.name == name).cloned() else {
            // Not one of this instance's disks: say where it is, if it is anywhere.
            let disk = match self.api.get_disk(name).await {
                Ok(d) => d,
                Err(e) if e.kind == ApiErrorKind::NotFound => fail!(
                    ExitCode::NotFound,
                    "there is no Lightsail disk named {name} in this region; check --disk and AWS_REGION ({})",
                    e.message
                ),
                Err(e) => return Err(e).context(format!("looking up disk {name}")),
            };
            let where_ = match (&disk.attached_to, disk.is_attached) {
                (Some(other), true) => format!("attached to instance {other}"),
                _ => "not attached to any instance".to_string(),
            };
            fail!(
                ExitCode::WrongDisk,
                "Lightsail disk {name} is {where_}, not to this instance ({}), so it cannot be behind {}; leave --disk out to find the disk by itself",
                me.name,
                block_device.display()
            );
        };
        // Where several disks claim the device (the same path reported twice), any of them
        // is taken.
        let behind: Vec<&DiskInfo> = me.disks.iter().filter(|d| is_disk(d, ids)).collect();
        match behind.first() {
            Some(found) if !behind.iter().any(|d| d.name == name) => fail!(
                ExitCode::WrongDisk,
                "{} is Lightsail disk {} of this instance, not {name}: --disk (or the configuration's disk) names another disk; leave it out to snapshot {}",
                block_device.display(),
                found.name,
                found.name
            ),
            Some(_) => {}
            None => tracing::warn!(
                "which Lightsail disk {} is could not be verified (no device path, volume id or NVMe name matched a disk of {}): taking {name} as given",
                block_device.display(),
                me.name
            ),
        }
        let source = if disk.is_system_disk {
            Source::SystemVolume(me.name.clone())
        } else {
            Source::Disk(name.to_string())
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
mod tests;
