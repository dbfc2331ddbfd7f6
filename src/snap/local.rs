//! What can be known without the network: the options checked, and the paths resolved to
//! filesystems (one per superblock) in freezing waves.

use std::path::PathBuf;

use anyhow::Result;

use super::plan::{self, Method, CONSISTENCY_TAG};
use super::{Filesystem, Options};
use crate::cloud::validate;
use crate::exit_code::ExitCode;
use crate::fail;
use crate::kernel::{blockdev, guard, mountinfo};
use crate::runstate::{self, Quiesce};

/// Validates what can be validated without looking at anything.
pub fn validate_options(opts: &Options) -> Result<()> {
    if let Some(name) = &opts.snapshot_name {
        validate::name("snapshot name", name)?;
    }
    if let Some(name) = &opts.disk_name {
        validate::name("disk name", name)?;
    }
    if opts.tags.iter().any(|(k, _)| k == CONSISTENCY_TAG) {
        fail!(
            ExitCode::Usage,
            "tag {CONSISTENCY_TAG} is lightsnap's own and cannot be set with --tag"
        );
    }
    for (k, v) in &opts.tags {
        validate::parse_tag(&format!("{k}={v}"))?;
    }
    let mut all = opts.tags.clone();
    all.push((CONSISTENCY_TAG.into(), String::new()));
    all.push((crate::cloud::owner::OWNER_TAG.into(), String::new()));
    validate::tags(&all)?;
    validate::freeze_timeout("--freeze-timeout", opts.freeze_timeout)?;
    if opts.paths.is_empty() {
        fail!(ExitCode::Usage, "give at least one path");
    }
    Ok(())
}

/// What can be known about the targets without the network: checked before the AWS
/// configuration is even loaded, so bad input fails fast and touches nothing.
#[derive(Debug, Clone)]
pub struct LocalPlan {
    pub(super) filesystems: Vec<Filesystem>,
    pub(super) mounts: Vec<mountinfo::Mount>,
}

/// Validates the options and resolves the paths to filesystems: several paths on one
/// filesystem (bind mounts, a second mount of the same device) are one filesystem, frozen
/// once; mounts below others come first, so a parent is never frozen while a child still
/// has to be reached through it.
pub fn plan_local(opts: &Options) -> Result<LocalPlan> {
    validate_options(opts)?;
    runstate::check_stale(&opts.run_dir, false)?;
    let mounts = mountinfo::read()?;
    let mut filesystems: Vec<Filesystem> = Vec::new();
    for path in &opts.paths {
        let located = plan::locate(path, &mounts)?;
        let mount = &located.mount;
        if located.path != mount.mount_point {
            tracing::info!(
                "{} is on the filesystem mounted at {}: snapshotting that",
                located.path.display(),
                mount.mount_point.display()
            );
        }
        // Freezing is per superblock: one device number, one freeze.
        if let Some(same) = filesystems
            .iter_mut()
            .find(|f| f.located.mount.dev == mount.dev)
        {
            same.paths.push(located.path.clone());
            continue;
        }
        let quiesce = plan::first_method(mount, opts.method)?;
        if opts.method == Method::Auto && quiesce == Some(Quiesce::Unmount) {
            tracing::warn!(
                "{} ({}) cannot be frozen; it will be unmounted for the snapshot instead",
                mount.mount_point.display(),
                mount.fstype
            );
        }
        if quiesce.is_some() {
            // Fail before any API call if the guard would refuse the mount later.
            guard::check(&mount.mount_point)?;
        } else {
            tracing::info!(
                "{} is mounted read-only: nothing can write to it, no freeze needed",
                mount.mount_point.display()
            );
        }
        filesystems.push(Filesystem {
            paths: vec![located.path.clone()],
            located,
            quiesce,
            wave: 0,
        });
    }
    filesystems
        .sort_by_key(|f| std::cmp::Reverse(f.located.mount.mount_point.components().count()));
    assign_waves(&mut filesystems, &blockdev::SysfsRoot::default());
    Ok(LocalPlan {
        filesystems,
        mounts,
    })
}

/// Sets each filesystem's freezing wave. Freezing one flushes it to its device; if that device
/// is a file on another filesystem of the group (a loop device), or the filesystem is reached
/// through another's mount, the other must still take writes: it goes in a later wave.
fn assign_waves(filesystems: &mut [Filesystem], root: &blockdev::SysfsRoot) {
    let homes: Vec<Option<PathBuf>> = filesystems
        .iter()
        .map(|f| {
            let name = f
                .located
                .block_device
                .file_name()?
                .to_string_lossy()
                .into_owned();
            root.loop_backing_file(&name)
        })
        .collect();
    // `before(j, i)`: j must be frozen before i.
    let before = |j: usize, i: usize| {
        let above = &filesystems[i].located.mount.mount_point;
        let below = &filesystems[j].located.mount.mount_point;
        (below != above && below.starts_with(above))
            || homes[j].as_ref().is_some_and(|h| h.starts_with(above))
    };
    let n = filesystems.len();
    let mut waves = vec![0usize; n];
    // Longest path over a small graph; n rounds bound it even if the relation had a cycle.
    for _ in 0..n {
        let mut changed = false;
        for i in 0..n {
            for j in 0..n {
                if i != j && before(j, i) && waves[i] <= waves[j] {
                    waves[i] = waves[j] + 1;
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    for (f, w) in filesystems.iter_mut().zip(waves) {
        f.wave = w;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snap::testing::filesystem;

    fn fs(mount_point: &str, device: &str) -> Filesystem {
        filesystem(mount_point, device, "ext4", 0, Some(Quiesce::Freeze))
    }

    /// Independent filesystems freeze together; one below another, or on a loop device over
    /// a file in another, goes first.
    #[test]
    fn waves_put_what_lives_on_a_filesystem_before_it() {
        let sys = tempfile::tempdir().unwrap();
        let backing = sys.path().join("sys/block/loop7/loop/backing_file");
        std::fs::create_dir_all(backing.parent().unwrap()).unwrap();
        std::fs::write(&backing, "/srv/images/db.img\n").unwrap();
        let root = blockdev::SysfsRoot::at(sys.path());

        let mut group = vec![
            fs("/data/www", "/dev/xvdg"),
            fs("/data", "/dev/xvdf"),
            fs("/logs", "/dev/xvdh"),
            fs("/db", "/dev/loop7"),
            fs("/srv", "/dev/xvdi"),
            fs("/", "/dev/xvda1"),
        ];
        assign_waves(&mut group, &root);
        let waves: Vec<(&str, usize)> = group
            .iter()
            .map(|f| (f.located.mount.mount_point.to_str().unwrap(), f.wave))
            .collect();
        assert_eq!(
            waves,
            [
                ("/data/www", 0),
                ("/data", 1),
                ("/logs", 0),
                ("/db", 0),
                ("/srv", 1),
                ("/", 2),
            ]
        );
    }
}
