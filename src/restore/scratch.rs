//! The scratch disk of a rehearsal: its name and tags, the device path it is attached at,
//! following its state, and removing it — the rehearsal's own, and those a killed run left
//! (found by their tags, and only this instance's: never a disk lightsnap did not create).
//!
//! Every DetachDisk and DeleteDisk here follows a GetDisk of the disk whose tags say it is a
//! scratch disk of this instance; a name alone is never trusted (scratch disk names are
//! unique per rehearsal, but any disk may be given any name). A leftover whose device is
//! mounted, held or open outside lightsnap's mount directory is in someone's hands (an
//! operator recovering files from it): reported, never detached.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use super::host::Host;
use super::{Me, Settings, SCRATCH_INSTANCE_TAG, SCRATCH_OF_TAG, SCRATCH_TAG, SCRATCH_VERIFY};
use crate::cloud::lightsail::{ApiErrorKind, DiskState, Lightsail};
use crate::exit_code::{ExitCode, Failure};

/// A scratch disk's name for `snapshot`: `<snapshot>-verify-<8 hex digits>`, the digits new
/// for each rehearsal (two instances verifying one snapshot, or a disk someone named
/// `<snapshot>-verify`, never share it), within Lightsail's 255 characters.
pub fn name_for(snapshot: &str) -> String {
    name_with(snapshot, &unique())
}

fn name_with(snapshot: &str, unique: &str) -> String {
    let suffix = format!("-verify-{unique}");
    let keep = snapshot.len().min(255 - suffix.len());
    let base = snapshot[..keep].trim_end_matches(['-', '_']);
    format!("{base}{suffix}")
}

/// Eight hex digits, different at each call: the time and process id through the standard
/// library's randomly keyed hasher (seeded from the OS).
pub(super) fn unique() -> String {
    use std::hash::BuildHasher;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let h = std::collections::hash_map::RandomState::new().hash_one((now, std::process::id()));
    format!("{:08x}", h as u32)
}

/// The tags a scratch disk is made with: what makes it findable as this instance's, and of
/// which snapshot.
pub fn tags(me: &Me, snapshot: &str) -> Vec<(String, String)> {
    vec![
        (SCRATCH_TAG.into(), SCRATCH_VERIFY.into()),
        (SCRATCH_INSTANCE_TAG.into(), me.instance.clone()),
        (SCRATCH_OF_TAG.into(), snapshot.to_string()),
        me.owner().tag(),
    ]
}

/// The device paths Lightsail attaches block storage disks at, in the order tried.
pub const PATHS: [&str; 11] = [
    "/dev/xvdf",
    "/dev/xvdg",
    "/dev/xvdh",
    "/dev/xvdi",
    "/dev/xvdj",
    "/dev/xvdk",
    "/dev/xvdl",
    "/dev/xvdm",
    "/dev/xvdn",
    "/dev/xvdo",
    "/dev/xvdp",
];

/// A free attachment path: none of the instance's disks uses it, and no device of that name
/// exists here (`exists`).
pub fn free_path(me: &Me, exists: impl Fn(&str) -> bool) -> Result<&'static str> {
    PATHS
        .iter()
        .copied()
        .find(|p| !me.used_paths.iter().any(|u| u == p) && !exists(p))
        .ok_or_else(|| {
            Failure::new(
                ExitCode::Busy,
                format!(
                    "instance {} has no free device path to attach a scratch disk at (all of {} to {} are in use)",
                    me.instance, PATHS[0], PATHS[PATHS.len() - 1]
                ),
            )
            .into()
        })
}

/// Follows a disk until `done` says so, looking every `poll`; a disk in state `error` is a
/// failed restore. The caller bounds it.
pub async fn wait_for<A: Lightsail>(
    api: &A,
    name: &str,
    poll: Duration,
    what: &str,
    done: impl Fn(&DiskState) -> bool,
) -> Result<DiskState> {
    loop {
        let disk = api
            .disk_state(name)
            .await
            .with_context(|| format!("following scratch disk {name}"))?
            .ok_or_else(|| {
                Failure::new(ExitCode::NotFound, format!("scratch disk {name} is gone"))
            })?;
        if disk.state == "error" {
            return Err(RestoreFailed(format!(
                "Lightsail reports scratch disk {name} in state error while waiting for it to be {what}"
            ))
            .into());
        }
        if done(&disk) {
            return Ok(disk);
        }
        tokio::time::sleep(poll).await;
    }
}

/// The restore itself did not work (a disk made from the snapshot ended in `error`): a failed
/// verification, not an incomplete one.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RestoreFailed(pub String);

/// A disk that is not a scratch disk of this instance: never detached nor deleted.
#[derive(Debug, thiserror::Error)]
#[error("disk {0} does not carry this instance's scratch tags ({SCRATCH_TAG}=true, {SCRATCH_INSTANCE_TAG}={1}): not lightsnap's to detach or delete, left alone")]
pub struct NotOurs(pub String, pub String);

/// GetDisk, and the tags checked: the disk if it exists and is this instance's scratch disk,
/// `None` when it is gone, [`NotOurs`] otherwise.
async fn read_ours<A: Lightsail>(api: &A, me: &Me, name: &str) -> Result<Option<DiskState>> {
    let Some(disk) = api
        .disk_state(name)
        .await
        .with_context(|| format!("reading scratch disk {name} before touching it"))?
    else {
        return Ok(None);
    };
    if !is_ours(&disk, me) {
        return Err(NotOurs(name.to_string(), me.instance.clone()).into());
    }
    Ok(Some(disk))
}

/// Detaches a scratch disk from this instance if it is attached here, and waits until it is
/// detached. Read first: a disk without this instance's scratch tags, or attached elsewhere,
/// is refused.
pub async fn detach<A: Lightsail>(api: &A, me: &Me, name: &str, poll: Duration) -> Result<()> {
    match read_ours(api, me, name).await? {
        Some(disk) => detach_read(api, me, &disk, poll).await,
        None => Ok(()),
    }
}

async fn detach_read<A: Lightsail>(
    api: &A,
    me: &Me,
    disk: &DiskState,
    poll: Duration,
) -> Result<()> {
    match detach_here(api, me, disk, poll).await {
        // Gone while it was being detached: nothing left to detach.
        Err(e)
            if e.downcast_ref::<Failure>()
                .is_some_and(|f| f.code == ExitCode::NotFound) =>
        {
            Ok(())
        }
        other => other,
    }
}

/// Detaches `disk` (as just read, its ownership checked by the caller) from this instance if
/// it is attached here, and waits until it is detached; a disk attached elsewhere is refused.
/// Shared by verify's scratch disks and restore's disks.
pub(super) async fn detach_here<A: Lightsail>(
    api: &A,
    me: &Me,
    disk: &DiskState,
    poll: Duration,
) -> Result<()> {
    let name = disk.name.as_str();
    if !disk.is_attached {
        return Ok(());
    }
    if disk.attached_to.as_deref() != Some(me.instance.as_str()) {
        anyhow::bail!(
            "disk {name} is attached to instance {}, not this one ({}): left alone",
            disk.attached_to.as_deref().unwrap_or("?"),
            me.instance
        );
    }
    if let Err(e) = api.detach_disk(name).await {
        // Already detaching (a call that landed before a retry): wait all the same.
        if e.kind == ApiErrorKind::NotFound {
            return Ok(());
        }
        tracing::info!("DetachDisk {name}: {e}; waiting for it to be detached all the same");
    }
    wait_for(api, name, poll, "detached", |d| {
        !d.is_attached && d.state != "in-use"
    })
    .await
    .map(drop)
}

/// Deletes a scratch disk (detaching it from this instance first); gone already is fine.
/// Read first, and again before the delete when it had to be detached: a disk without this
/// instance's scratch tags is refused.
pub async fn remove<A: Lightsail>(api: &A, me: &Me, name: &str, poll: Duration) -> Result<()> {
    let Some(disk) = read_ours(api, me, name).await? else {
        return Ok(());
    };
    if disk.is_attached {
        detach_read(api, me, &disk, poll)
            .await
            .with_context(|| format!("detaching scratch disk {name}"))?;
        if read_ours(api, me, name).await?.is_none() {
            return Ok(());
        }
    }
    match api.delete_disk(name).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind == ApiErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("deleting scratch disk {name}")),
    }
}

/// Whether a disk is a scratch disk of this instance's rehearsals.
pub fn is_ours(d: &DiskState, me: &Me) -> bool {
    d.tag(SCRATCH_TAG) == Some(SCRATCH_VERIFY)
        && d.tag(SCRATCH_INSTANCE_TAG) == Some(me.instance.as_str())
}

/// Whether a disk is this instance's scratch disk of `snapshot` (after an ambiguous
/// CreateDiskFromSnapshot: the disk of this rehearsal's unique name with its tags).
pub fn is_ours_of(d: &DiskState, me: &Me, snapshot: &str) -> bool {
    is_ours(d, me) && d.tag(SCRATCH_OF_TAG) == Some(snapshot)
}

/// The scratch disks this instance's rehearsals left (a killed run's), by their tags.
pub async fn leftovers<A: Lightsail>(api: &A, me: &Me) -> Result<Vec<DiskState>> {
    Ok(api
        .get_disks()
        .await
        .context("looking for scratch disks a killed `lightsnap verify` left")?
        .into_iter()
        .filter(|d| is_ours(d, me))
        .collect())
}

/// What the search for a killed run's scratch disks came to.
#[derive(Debug, Default, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct Leftovers {
    /// Removed: unmounted, detached, deleted.
    pub removed: Vec<String>,
    /// Left alone, each with why (in use here, attached elsewhere, could not be removed).
    pub kept: Vec<String>,
}

/// [`remove_leftovers`], bounded as an undo is: a leftover that never detaches is left for
/// the next run. Fails only when the disks cannot be listed.
pub async fn clean_up<A: Lightsail, H: Host>(
    api: &A,
    host: &H,
    me: &Me,
    settings: &Settings,
) -> Result<Leftovers> {
    let work = remove_leftovers(api, host, me, &settings.mount_dir, settings.poll);
    match tokio::time::timeout(settings.undo_timeout, work).await {
        Ok(done) => done,
        Err(_) => {
            let said = format!(
                "removing earlier runs' scratch disks did not finish within {}; the next run tries again",
                humantime::format_duration(settings.undo_timeout)
            );
            tracing::warn!("{said}");
            Ok(Leftovers {
                removed: Vec::new(),
                kept: vec![said],
            })
        }
    }
}

/// Removes what killed runs left: for each scratch disk of this instance, its mounts under
/// `mount_dir` (read-only mounts and journal replays, never lazily), then — unless its
/// device is still mounted, held or open — the disk itself. What stays is said, with why.
pub async fn remove_leftovers<A: Lightsail, H: Host>(
    api: &A,
    host: &H,
    me: &Me,
    mount_dir: &Path,
    poll: Duration,
) -> Result<Leftovers> {
    let found = leftovers(api, me).await?;
    let mut out = Leftovers::default();
    for d in found {
        if let Some(why) = keep_reason(host, me, mount_dir, &d).await {
            let said = format!(
                "scratch disk {}: {why}; left attached — once done with it, unmount it and the next `lightsnap verify` or `lightsnap run` removes it",
                d.name
            );
            tracing::warn!("{said}");
            out.kept.push(said);
            continue;
        }
        tracing::warn!(
            "removing scratch disk {} left by an earlier `lightsnap verify` that did not finish",
            d.name
        );
        match remove(api, me, &d.name, poll).await {
            Ok(()) => {
                // A copy of the system disk a killed run left (the boot step may have
                // removed it from the kernel already): detached and deleted, its record goes.
                host.system_copy_detached(&d.name);
                out.removed.push(d.name)
            }
            Err(e) => {
                let said = format!("scratch disk {}: {e:#}; the next run tries again", d.name);
                tracing::warn!("{said}");
                out.kept.push(said);
            }
        }
    }
    Ok(out)
}

/// Undoes a killed run's local steps on leftover `d`; why it must stay, if it must.
async fn keep_reason<H: Host>(
    host: &H,
    me: &Me,
    mount_dir: &Path,
    d: &DiskState,
) -> Option<String> {
    if d.is_attached && d.attached_to.as_deref() != Some(me.instance.as_str()) {
        return Some(format!(
            "attached to instance {}, not this one",
            d.attached_to.as_deref().unwrap_or("?")
        ));
    }
    let device = match (&d.attached_to, &d.path) {
        (Some(_), Some(path)) => match host.device_now(d, path) {
            Ok(dev) => dev,
            Err(e) => return Some(format!("{e:#}")),
        },
        _ => None,
    };
    // Its mounts that are lightsnap's: below `<mount dir>/<disk>`, and the device's mounts
    // anywhere under the mount dir (a journal replay of an older lightsnap was beside it).
    let mut ours = host.mounts_below(&mount_dir.join(&d.name));
    if let Some(dev) = &device {
        for m in host.mounts_of(dev) {
            if m.starts_with(mount_dir) && !ours.contains(&m) {
                ours.push(m);
            }
        }
    }
    ours.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for m in &ours {
        if let Err(e) = host.unmount_leftover(m) {
            return Some(format!("{e:#}"));
        }
    }
    let _ = host.unmount_leftover(&mount_dir.join(&d.name));
    // Its LVM group, if the killed run imported it: put away (only the clone, named from
    // the disk; a logical volume someone has mounted keeps it, and the disk, here).
    let pvs: Vec<PathBuf> = device
        .as_ref()
        .map(|dev| {
            host.filesystems(dev)
                .into_iter()
                .filter(|f| f.layout == Some(super::fs::Layout::Lvm))
                .map(|f| f.device)
                .collect()
        })
        .unwrap_or_default();
    if let Err(e) = host.put_away_lvm(&pvs, &super::lvm::vg_name(&d.name)).await {
        return Some(format!("{e:#}"));
    }
    let dev = device?;
    if let Some(why) = host.in_use(&dev) {
        return Some(why);
    }
    if let Err(e) = host.release(&dev) {
        tracing::warn!("{e:#}");
    }
    None
}

/// The file in the state directory that lists the scratch disks the last leftover search
/// left alone (in use, attached elsewhere, not removable), for `status` and `check`.
pub const KEPT_FILE: &str = "verify-leftovers.json";

/// Records what the last leftover search left alone (the file goes when nothing was), as
/// root only; a failure to write is a warning.
pub fn record_kept(state_dir: &Path, l: &Leftovers) {
    if !nix::unistd::Uid::effective().is_root() {
        return;
    }
    let path = state_dir.join(KEPT_FILE);
    if l.kept.is_empty() {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("removing {}: {e}", path.display()),
        }
        return;
    }
    let (_, time_utc) = crate::monitor::state::now();
    let doc = serde_json::json!({ "time_utc": time_utc, "kept": l.kept });
    let written = std::fs::create_dir_all(state_dir)
        .map_err(anyhow::Error::from)
        .and_then(|()| crate::files::write_atomically(&path, doc.to_string().as_bytes()));
    if let Err(e) = written {
        tracing::warn!(
            "recording the scratch disks left alone in {}: {e:#}",
            path.display()
        );
    }
}

/// What the last leftover search left alone, each line with when it was seen.
pub fn read_kept(state_dir: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(state_dir.join(KEPT_FILE)) else {
        return Vec::new();
    };
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(&text) else {
        return Vec::new();
    };
    let at = doc["time_utc"].as_str().unwrap_or("?");
    doc["kept"]
        .as_array()
        .map(|k| {
            k.iter()
                .filter_map(|x| x.as_str())
                .map(|x| format!("{x} (seen {at})"))
                .collect()
        })
        .unwrap_or_default()
}

/// One scratch disk, as `status --refresh` and `plan` list it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct ScratchDisk {
    /// The disk's name.
    pub name: String,
    /// Its Lightsail state.
    pub state: String,
    /// The snapshot it was restored from (its `lightsnap:scratch-of`).
    pub snapshot: Option<String>,
    /// The instance whose rehearsal made it (its `lightsnap:scratch-instance`).
    pub instance: Option<String>,
    /// The instance it is attached to.
    pub attached_to: Option<String>,
}

/// Every scratch disk of restore rehearsals (tag `lightsnap:scratch`), every instance's, as
/// `status --refresh` and `plan` list them.
pub async fn listing<A: Lightsail>(api: &A) -> Result<Vec<ScratchDisk>> {
    use super::SCRATCH_OF_TAG;
    Ok(api
        .get_disks()
        .await?
        .into_iter()
        .filter(|d| d.tag(SCRATCH_TAG) == Some(SCRATCH_VERIFY))
        .map(|d| ScratchDisk {
            snapshot: d.tag(SCRATCH_OF_TAG).map(str::to_string),
            instance: d.tag(SCRATCH_INSTANCE_TAG).map(str::to_string),
            name: d.name,
            state: d.state,
            attached_to: d.attached_to,
        })
        .collect())
}

/// One listed scratch disk, for people.
pub fn listing_line(d: &ScratchDisk) -> String {
    format!(
        "scratch disk {} (restored from {} by instance {}, {}): a `lightsnap verify` in progress, or left by one that did not finish; the next verify or run on that instance removes it unless it is in use",
        d.name,
        d.snapshot.as_deref().unwrap_or("?"),
        d.instance.as_deref().unwrap_or("?"),
        d.state
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me(used: &[&str]) -> Me {
        Me {
            instance: "web-1".into(),
            availability_zone: "us-east-1a".into(),
            used_paths: used.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn scratch_names_fit_and_end_in_a_word_character() {
        assert_eq!(
            name_with("data-1-20261130", "0a1b2c3d"),
            "data-1-20261130-verify-0a1b2c3d"
        );
        let long = "a".repeat(255);
        let n = name_for(&long);
        assert_eq!(n.len(), 255);
        assert!(n.contains("-verify-"));
        let dashes = format!("{}-", "b".repeat(238));
        assert_eq!(
            name_with(&dashes, "0a1b2c3d"),
            format!("{}-verify-0a1b2c3d", "b".repeat(238))
        );
        crate::cloud::validate::name("disk name", &n).unwrap();
    }

    /// Each rehearsal's name is its own: the old fixed `<snapshot>-verify` was taken by any
    /// disk of that name, or by another instance verifying the same snapshot.
    #[test]
    fn scratch_names_differ_between_rehearsals() {
        let a = name_for("nightly");
        let b = name_for("nightly");
        assert_ne!(a, b);
        assert_ne!(a, "nightly-verify");
        assert!(a.starts_with("nightly-verify-") && a.len() == "nightly-verify-".len() + 8);
    }

    #[test]
    fn the_first_path_no_disk_uses_and_no_device_holds() {
        assert_eq!(free_path(&me(&[]), |_| false).unwrap(), "/dev/xvdf");
        assert_eq!(
            free_path(&me(&["/dev/xvda", "/dev/xvdf"]), |p| p == "/dev/xvdg").unwrap(),
            "/dev/xvdh"
        );
        let err = free_path(&me(&PATHS), |_| false).unwrap_err();
        assert!(err.to_string().contains("no free device path"), "{err}");
    }
}
