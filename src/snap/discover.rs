//! Discovery: the Lightsail disk (or system volume, or instance) behind the filesystems, the
//! snapshot names, and the calls to make. Read-only API calls only, which double as the
//! warm-up: connection, DNS and credentials are ready before any freeze.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};

use super::local::plan_local;
use super::plan::{self};
use super::report::find_snapshot;
use super::{LocalPlan, Options, Plan, Snapshot};
use crate::cloud::ebs;
use crate::cloud::imds;
use crate::cloud::lightsail::{Lightsail, SnapshotRequest, Source};
use crate::cloud::validate;
use crate::exit_code::ExitCode;
use crate::fail;
use crate::kernel::{blockdev, mountinfo};

/// Discovery: the Lightsail disk (or system volume) behind each filesystem, the snapshot
/// names, and the calls to make, one per disk. Read-only API calls only (they double as the
/// warm-up: connection, DNS and credentials are ready before any freeze, so the call inside
/// the window is one round trip). Shared by `freeze-and-snap` and `plan`.
pub async fn plan<A: Lightsail>(api: &A, opts: &Options, local: &LocalPlan) -> Result<Plan> {
    let mut discovery = plan::Discovery::new(api, async {
        Ok(imds::identity(Duration::from_secs(2)).await?)
    });
    let mut snapshots: Vec<Snapshot> = Vec::new();
    for (index, fs) in local.filesystems.iter().enumerate() {
        let located = &fs.located;
        let mount = &located.mount;
        let configured = opts
            .disk_map
            .iter()
            .find(|e| fs.paths.contains(&e.path) || e.path == mount.mount_point)
            .and_then(|e| e.disk.as_deref());
        let named = opts.disk_name.as_deref().or(configured);
        let disks = match plan::whole_disks(&blockdev::SysfsRoot::default(), located) {
            Ok(d) if !d.is_empty() => d,
            // No sysfs view of it: the mount's own device is all there is to go on.
            _ => vec![ebs::DiskIds {
                name: located.block_device.display().to_string(),
                dev_path: located.block_device.clone(),
                volume_id: None,
                ebs_device_name: None,
            }],
        };
        if named.is_some() && disks.len() > 1 {
            fail!(
                ExitCode::Usage,
                "{} spans {} disks; a single --disk cannot name them all: leave it out to find them",
                mount.mount_point.display(),
                disks.len()
            );
        }
        for ids in &disks {
            let (source, disk) = discovery.source(named, ids).await?;
            tracing::info!(
                "{} is on {} (Lightsail {}, path {})",
                mount.mount_point.display(),
                ids.dev_path.display(),
                source,
                disk.path.as_deref().unwrap_or("?")
            );
            match snapshots.iter_mut().find(|s| s.request.source == source) {
                Some(s) => {
                    if !s.filesystems.contains(&index) {
                        s.filesystems.push(index);
                    }
                    if !s.devices.contains(&ids.dev_path) {
                        s.devices.push(ids.dev_path.clone());
                    }
                }
                None => {
                    // A system volume's automatic snapshots are its instance's.
                    let auto_snapshot = match &source {
                        Source::Disk(_) => disk.auto_snapshot.clone(),
                        _ => discovery.instance().await?.auto_snapshot.clone(),
                    };
                    snapshots.push(Snapshot {
                        request: SnapshotRequest {
                            source,
                            name: String::new(),
                            tags: opts.tags.clone(),
                        },
                        filesystems: vec![index],
                        devices: vec![ids.dev_path.clone()],
                        auto_snapshot,
                    })
                }
            }
        }
    }
    // Whose they are: every snapshot carries this instance's owner tag (resolved during
    // discovery above, before anything is frozen).
    if !snapshots.is_empty() {
        let owner = discovery.owner().await?.tag();
        for s in &mut snapshots {
            s.request.tags.push(owner.clone());
        }
    }
    if opts.snapshot_name.is_some() && snapshots.len() > 1 {
        fail!(
            ExitCode::Usage,
            "--snapshot-name names one snapshot, but these paths are on {} disks; leave it out to use the name template",
            snapshots.len()
        );
    }
    let now = SystemTime::now();
    for s in &mut snapshots {
        s.request.name = match &opts.snapshot_name {
            Some(n) => n.clone(),
            None => crate::config::render_name(
                &opts.name_template,
                &plan::source_label(&s.request.source),
                now,
            )?,
        };
        validate::name("snapshot name", &s.request.name)?;
        if find_snapshot(api, &s.request)
            .await
            .context("checking the snapshot name is free")?
            .is_some()
        {
            fail!(
                ExitCode::Usage,
                "a disk snapshot named {} already exists; choose another --snapshot-name",
                s.request.name
            );
        }
    }
    Ok(Plan {
        filesystems: local.filesystems.clone(),
        snapshots,
    })
}

/// The plan of `snap-instance`: every mount on a block device whose disks are this
/// instance's, frozen together around one CreateInstanceSnapshot. Also returns the mount table
/// it was made from.
pub(super) async fn instance_plan<A: Lightsail>(
    api: &A,
    opts: &Options,
) -> Result<(Plan, Vec<mountinfo::Mount>)> {
    let mut discovery = plan::Discovery::new(api, async {
        Ok(imds::identity(Duration::from_secs(2)).await?)
    });
    let me = discovery.instance().await?.clone();
    let owner = discovery.owner().await?;
    let mounts = mountinfo::read()?;
    let root = blockdev::SysfsRoot::default();
    let patterns: Vec<glob::Pattern> = opts
        .exclude
        .iter()
        .map(|p| crate::config::exclude_pattern(p))
        .collect::<Result<_>>()?;
    let confine = crate::kernel::guard::confinement();
    // Every mount on a block device whose disks are this instance's. A mount on a block
    // device that cannot be traced to one of them is refused (it could be on a disk of this
    // instance that discovery does not recognise: left out, it would be inconsistent in the
    // snapshot), unless excluded; what is plainly on no Lightsail disk is only listed.
    let mut paths = Vec::new();
    let mut devices: Vec<PathBuf> = Vec::new();
    let mut untraceable: Vec<String> = Vec::new();
    let mut elsewhere: Vec<String> = Vec::new();
    for m in &mounts {
        let point = &m.mount_point;
        if crate::config::excluded(point, &patterns) {
            continue;
        }
        // A `lightsnap verify` running meanwhile: its read-only mounts of a scratch disk are
        // a copy of a snapshot, not this instance's data.
        if point.starts_with(opts.run_dir.join("verify")) {
            elsewhere.push(format!("{} (a verify's scratch disk)", point.display()));
            continue;
        }
        let Ok(located) = plan::locate(point, &mounts) else {
            elsewhere.push(format!(
                "{} ({}, not on a block device)",
                point.display(),
                m.fstype
            ));
            continue;
        };
        if located.mount.id != m.id {
            continue; // hidden by a later mount on the same point
        }
        if confine.as_ref().is_some_and(|c| !point.starts_with(c)) {
            elsewhere.push(format!(
                "{} (outside LIGHTSNAP_CONFINE_TO)",
                point.display()
            ));
            continue;
        }
        let disks = match plan::whole_disks(&root, &located) {
            Ok(d) => d,
            Err(e) => {
                untraceable.push(format!("{} ({:#})", point.display(), e));
                continue;
            }
        };
        let ours: Vec<&ebs::DiskIds> = disks
            .iter()
            .filter(|ids| me.disks.iter().any(|d| plan::is_disk(d, ids)))
            .collect();
        if !ours.is_empty() {
            paths.push(point.clone());
            for ids in ours {
                if !devices.contains(&ids.dev_path) {
                    devices.push(ids.dev_path.clone());
                }
            }
            continue;
        }
        let device = located.block_device.display().to_string();
        let name = located
            .block_device
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(file) = root.loop_backing_file(&name) {
            elsewhere.push(format!(
                "{} (a loop device over {})",
                point.display(),
                file.display()
            ));
            continue;
        }
        let on: Vec<String> = disks
            .iter()
            .map(|d| d.dev_path.display().to_string())
            .collect();
        untraceable.push(format!(
            "{} ({} on {}, which is none of {}'s disks as far as lightsnap can tell)",
            point.display(),
            m.fstype,
            if on.is_empty() {
                device
            } else {
                on.join(" + ")
            },
            me.name
        ));
    }
    if !elsewhere.is_empty() {
        tracing::info!(
            "not on a Lightsail disk, left out: {}",
            elsewhere.join(", ")
        );
    }
    if !untraceable.is_empty() {
        fail!(
            ExitCode::Unsupported,
            "snap-instance cannot tell which Lightsail disk these mounts are on, so it cannot make them consistent in the instance snapshot: {}; if they are not on this instance's disks, leave them out with --exclude GLOB (or exclude = [...] in the configuration)",
            untraceable.join("; ")
        );
    }
    if paths.is_empty() {
        fail!(
            ExitCode::NotFound,
            "no mounted filesystem is on a disk of instance {}: nothing to make consistent",
            me.name
        );
    }
    let local = plan_local(&Options {
        paths,
        ..opts.clone()
    })?;
    let name = match &opts.snapshot_name {
        Some(n) => n.clone(),
        None => crate::config::render_name(&opts.name_template, &me.name, SystemTime::now())?,
    };
    validate::name("snapshot name", &name)?;
    let request = SnapshotRequest {
        source: Source::Instance(me.name.clone()),
        name,
        tags: opts.tags.iter().cloned().chain([owner.tag()]).collect(),
    };
    if find_snapshot(api, &request).await?.is_some() {
        fail!(
            ExitCode::Usage,
            "an instance snapshot named {} already exists; choose another --snapshot-name",
            request.name
        );
    }
    let plan = Plan {
        snapshots: vec![Snapshot {
            request,
            filesystems: (0..local.filesystems.len()).collect(),
            devices,
            auto_snapshot: me.auto_snapshot.clone(),
        }],
        filesystems: local.filesystems,
    };
    Ok((plan, mounts))
}
