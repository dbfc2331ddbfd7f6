//! Roll-backs (`lightsnap restore SNAPSHOT --replace PATH`): a data disk swapped for a disk
//! restored from its snapshot, at the same device path, mounted with the same options.
//!
//! The restored disk is made first (nothing of the live disk is touched while that takes
//! minutes); then the `pre-restore` hooks (stop what writes there), the unmount of PATH
//! (refused with the holders when busy: nothing changed), the live disk detached — kept,
//! tagged `lightsnap:replaced-by` and `lightsnap:replaced-at`, never deleted by lightsnap —,
//! the restored disk attached at its path, found by volume id, its filesystem checked
//! (journal replay, checker in no-change mode) and mounted at PATH as the live one was.
//! Any failure after the unmount puts the original back (the restored disk detached and
//! deleted, the live disk attached and mounted again) and exits 22; the `post-restore` hooks
//! run either way.
//!
//! Only a live disk carrying this instance's ownership tag is replaced ([`require_ours`],
//! checked before anything is made and again on the GetDisk before the DetachDisk): the
//! instance policy lets this instance's key detach only such disks, and a disk the user made
//! carries none until an administrator tags it (lightsnap never claims an untagged disk: a
//! stolen key could then claim anything). Just before the live disk is detached, the restored
//! disk is tagged `lightsnap:replaces` = the live disk: from then on it is a live disk, which
//! the instance policy never lets be deleted; if the swap fails after that point it is
//! detached and left, and the message says how an administrator deletes it.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;

use super::host::{Check, Host};
use super::restored::{self, name_for, Step, REPLACED_AT_TAG, REPLACED_BY_TAG, REPLACES_TAG};
use super::{scratch, Me, Settings};
use crate::cloud::lightsail::{DiskState, Lightsail, SnapshotInfo};
use crate::cloud::owner::{Owner, OWNER_TAG};
use crate::exit_code::{ExitCode, Failure};
use crate::fail;
use crate::hooks::{HookEnv, Hooks};
use crate::kernel::mountinfo::Mount;
use crate::signals::{unless_stopped, Stop};

/// What is rolled back: the mount at PATH and the Lightsail disk behind it.
#[derive(Debug, Clone)]
pub struct Live {
    /// The mount at PATH, as it is (source, type, options).
    pub mount: Mount,
    /// The live disk (GetDisk).
    pub disk: DiskState,
}

/// A roll-back's report.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Replaced {
    /// The snapshot rolled back to.
    pub snapshot: String,
    /// The mount point.
    pub path: PathBuf,
    /// The live disk, detached and kept.
    pub replaced_disk: String,
    /// The restored disk now at PATH.
    pub restored_disk: String,
    /// The device path both were attached at.
    pub attached_at: String,
    /// The restored disk's block device here.
    pub device: Option<PathBuf>,
    /// The restored filesystem's check before it was handed back.
    pub checks: Vec<Check>,
    /// Whether the replaced disk was tagged `lightsnap:replaced-by`.
    pub tagged: bool,
    /// How long it took.
    pub elapsed_s: f64,
}

/// Refuses a live disk that does not carry this instance's ownership tag, with the command an
/// administrator runs to tag it (exit 25): nothing is changed.
pub fn require_ours(disk: &DiskState, me: &Me) -> Result<()> {
    let owner = me.owner();
    match disk.tag(OWNER_TAG) {
        Some(v) if v == owner.value() => Ok(()),
        Some(other) => fail!(
            ExitCode::NotOwned,
            "disk {} carries {OWNER_TAG}={other}: it is another instance's, not this one's ({}); lightsnap replaces only this instance's disks. Nothing was changed",
            disk.name,
            owner.value()
        ),
        None => fail!(
            ExitCode::NotOwned,
            "disk {name} does not carry this instance's ownership tag ({OWNER_TAG}={value}): lightsnap replaces only a disk tagged as this instance's, and does not tag one it did not make itself (the instance's IAM policy lets its key detach only such disks). Nothing was changed. To let lightsnap roll it back, an administrator tags it once, from a machine with administrator credentials:\n  {command}\nthen run this again",
            name = disk.name,
            value = owner.value(),
            command = tag_command(&disk.name, &owner),
        ),
    }
}

/// The AWS CLI command that gives `disk` `owner`'s ownership tag.
pub fn tag_command(disk: &str, owner: &Owner) -> String {
    format!(
        "aws lightsail tag-resource --resource-name {disk} --tags key={OWNER_TAG},value={} --region {}",
        owner.value(),
        owner.region
    )
}

/// The plan, for people, before anything is done.
pub fn plan(live: &Live, snapshot: &SnapshotInfo) -> String {
    format!(
        "roll {path} back to snapshot {snap}:\n  1. make a disk from {snap} in this zone\n  2. run the pre-restore hooks, unmount {path} ({fs}, {opts})\n  3. detach disk {live} from {at}: it is KEPT, tagged {REPLACED_BY_TAG}, never deleted by lightsnap\n  4. attach the restored disk at {at}, check its filesystem, mount it at {path} with the same options\n  5. run the post-restore hooks\n  Anything written to {path} since the snapshot is on {live} only. Any failure puts {live} back.\n",
        path = live.mount.mount_point.display(),
        snap = snapshot.name,
        fs = live.mount.fstype,
        opts = live.mount.mount_options,
        live = live.disk.name,
        at = live.disk.path.as_deref().unwrap_or("?"),
    )
}

/// Rolls `live` back to `snapshot`.
#[allow(clippy::too_many_arguments)]
pub async fn replace<A: Lightsail, H: Host, S: Stop>(
    api: &A,
    host: &H,
    me: &Me,
    snapshot: &SnapshotInfo,
    live: &Live,
    hooks: &mut Hooks,
    settings: &Settings,
    stop: &mut S,
) -> Result<Replaced> {
    super::check_snapshot(snapshot)?;
    require_ours(&live.disk, me)?;
    let started = Instant::now();
    let path = live.mount.mount_point.clone();
    let Some(at) = live.disk.path.clone() else {
        fail!(
            ExitCode::NotFound,
            "disk {} has no device path: it is not attached here",
            live.disk.name
        );
    };
    let name = name_for(&snapshot.name);
    let steps = RefCell::new(Vec::new());
    let size = live.disk.size_gb.unwrap_or(0);
    // Made first: nothing of the live disk is touched while it is.
    let made = async {
        match tokio::time::timeout(
            settings.timeout,
            restored::make(api, me, snapshot, &name, size, settings, &steps),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => fail!(
                ExitCode::Failure,
                "the restored disk was not available within --timeout"
            ),
        }
    };
    if let Err(e) = unless_stopped(stop, "during restore; nothing was replaced", made).await {
        restored::undo(api, host, me, steps.take(), settings).await;
        return Err(e.context(format!(
            "nothing was replaced: {} is as it was",
            path.display()
        )));
    }
    let env = HookEnv {
        paths: vec![path.clone()],
        disks: vec![live.disk.name.clone()],
        snapshots: vec![snapshot.name.clone()],
        ..HookEnv::default()
    };
    let unmounted = async {
        hooks.pre_restore(&env, stop).await?;
        let all = crate::kernel::mountinfo::read()?;
        crate::kernel::unmount::unmount(&live.mount, &all)
            .map_err(|e| restored::busy(e, &format!("disk {} was not replaced", live.disk.name)))?;
        Ok::<_, anyhow::Error>(())
    }
    .await;
    if let Err(e) = unmounted {
        let _ = hooks
            .post_restore(&HookEnv {
                result: Some("failure"),
                ..env.clone()
            })
            .await;
        restored::undo(api, host, me, steps.take(), settings).await;
        return Err(e.context(format!(
            "rolling {} back: nothing was replaced",
            path.display()
        )));
    }
    let checks = RefCell::new(Vec::new());
    let device = RefCell::new(None);
    let live_detached = RefCell::new(false);
    let marked = RefCell::new(false);
    let swap = async {
        // Read first: still the disk the plan named, attached here at that path.
        let now = api
            .disk_state(&live.disk.name)
            .await?
            .with_context(|| format!("disk {} is gone", live.disk.name))?;
        if now.attached_to.as_deref() != Some(me.instance.as_str())
            || now.path.as_deref() != Some(at.as_str())
        {
            fail!(
                ExitCode::Failure,
                "disk {} is no longer attached here at {at}",
                live.disk.name
            );
        }
        require_ours(&now, me)?;
        // The point of no return for the restored disk: once it may be the live disk, it is
        // never deletable (the tag is set before the live disk is detached, so no crash can
        // leave a live disk the instance's key may delete).
        *marked.borrow_mut() = true;
        api.tag_resource(&name, &[(REPLACES_TAG.to_string(), live.disk.name.clone())])
            .await
            .with_context(|| format!("tagging the restored disk {name} {REPLACES_TAG}"))?;
        // From the call on, the live disk may be detached (or detaching): a failure puts
        // it back whatever state it is found in.
        *live_detached.borrow_mut() = true;
        restored::detach_checked(api, me, &now, settings.poll).await?;
        let (_, dev) = restored::attach(api, host, me, &name, Some(&at), settings, &steps).await?;
        *device.borrow_mut() = Some(dev.clone());
        for fs in host.filesystems(&dev) {
            let replay = settings.mount_dir.join(&name).join(".replay");
            let check = host.check(&fs, &replay).await;
            let _ = host.unmount(&settings.mount_dir.join(&name));
            checks.borrow_mut().push(check.clone());
            if !check.clean {
                fail!(
                    ExitCode::Failure,
                    "the restored filesystem {} is not clean: {}: {}",
                    check.device.display(),
                    check.checker,
                    check.detail
                );
            }
        }
        host.release(&dev)?;
        let mut m = live.mount.clone();
        m.source = dev.display().to_string();
        steps.borrow_mut().push(Step::Mounted(path.clone()));
        crate::kernel::unmount::remount(&m)?;
        Ok(())
    };
    let bounded = async {
        match tokio::time::timeout(settings.timeout, swap).await {
            Ok(r) => r,
            Err(_) => fail!(
                ExitCode::Failure,
                "the roll-back did not finish within --timeout"
            ),
        }
    };
    let swapped = unless_stopped(stop, "during restore; the original is put back", bounded).await;
    if let Err(e) = swapped {
        let mut steps = steps.take();
        // PATH is the live disk's mount point: unmounted, never removed.
        if let Some(Step::Mounted(p)) = steps.last() {
            if p == &path {
                steps.pop();
                let _ = nix::mount::umount(&path);
            }
        }
        let mut kept = None;
        let mut left = if *marked.borrow() {
            // The restored disk may carry `lightsnap:replaces`: detached, never deleted.
            let attached = steps.iter().any(|s| matches!(s, Step::Attached(_)));
            let local: Vec<Step> = steps
                .into_iter()
                .filter(|s| !matches!(s, Step::Attached(_) | Step::Created(_)))
                .collect();
            let mut left = restored::undo(api, host, me, local, settings).await;
            match detach_marked(api, me, &name, &live.disk.name, attached, settings).await {
                Ok(Some(note)) => kept = Some(note),
                Ok(None) => {}
                Err(e) => left.push(format!("restored disk {name}: {e:#}")),
            }
            left
        } else {
            restored::undo(api, host, me, steps, settings).await
        };
        if *live_detached.borrow() {
            match tokio::time::timeout(
                settings.undo_timeout,
                put_back(api, host, me, live, &at, settings),
            )
            .await
            {
                Ok(Ok(())) => {}
                Ok(Err(back)) => left.push(format!("{back:#}")),
                Err(_) => left.push(format!(
                    "the original disk {} was not back within {}",
                    live.disk.name,
                    humantime::format_duration(settings.undo_timeout)
                )),
            }
        } else if let Err(back) = crate::kernel::unmount::remount(&live.mount) {
            left.push(format!("{back:#}"));
        }
        let _ = hooks
            .post_restore(&HookEnv {
                result: Some("failure"),
                ..env.clone()
            })
            .await;
        let mut said = if left.is_empty() {
            format!(
                "rolling {} back to {} failed, and the original disk {} is back, mounted as it was: {e:#}",
                path.display(),
                snapshot.name,
                live.disk.name
            )
        } else {
            format!(
                "rolling {} back to {} failed: {e:#}; and putting the original disk {} back did not finish: {}",
                path.display(),
                snapshot.name,
                live.disk.name,
                left.join("; ")
            )
        };
        if let Some(note) = kept {
            said.push_str("; ");
            said.push_str(&note);
        }
        return Err(Failure::new(ExitCode::RestoreFailed, said).into());
    }
    let when = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let tags = vec![
        (REPLACED_BY_TAG.to_string(), name.clone()),
        (REPLACED_AT_TAG.to_string(), when),
    ];
    let tagged = match api.tag_resource(&live.disk.name, &tags).await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(
                "tagging the replaced disk {} {REPLACED_BY_TAG}={name}: {e}",
                live.disk.name
            );
            false
        }
    };
    let report = Replaced {
        snapshot: snapshot.name.clone(),
        path: path.clone(),
        replaced_disk: live.disk.name.clone(),
        restored_disk: name,
        attached_at: at,
        device: device.take(),
        checks: checks.take(),
        tagged,
        elapsed_s: started.elapsed().as_secs_f64(),
    };
    hooks
        .post_restore(&HookEnv {
            result: Some("success"),
            ..env
        })
        .await
        .context("the roll-back is done, but a post-restore hook failed")?;
    Ok(report)
}

/// After a failed swap: the restored disk, which may carry `lightsnap:replaces`, detached (when
/// `attached` says AttachDisk was called) after a GetDisk whose tags say it is this roll-back's,
/// and left. Returns what to tell the operator about it (`None`: it is gone).
async fn detach_marked<A: Lightsail>(
    api: &A,
    me: &Me,
    name: &str,
    live: &str,
    attached: bool,
    settings: &Settings,
) -> Result<Option<String>> {
    let Some(disk) = api
        .disk_state(name)
        .await
        .with_context(|| format!("reading restored disk {name} before touching it"))?
    else {
        return Ok(None);
    };
    if disk.tag(REPLACES_TAG).is_none() {
        // The tag did not land: still a restored copy, removed as one.
        restored::remove(api, me, name, settings.poll).await?;
        return Ok(None);
    }
    if !restored::is_restored_for(&disk, me) || disk.tag(REPLACES_TAG) != Some(live) {
        return Err(restored::NotOurs(name.to_string(), me.instance.clone()).into());
    }
    if attached {
        match tokio::time::timeout(
            settings.undo_timeout,
            restored::detach_checked(api, me, &disk, settings.poll),
        )
        .await
        {
            Ok(r) => r?,
            Err(_) => anyhow::bail!(
                "not detached within {}",
                humantime::format_duration(settings.undo_timeout)
            ),
        }
    }
    let region = me.owner().region;
    Ok(Some(format!(
        "the restored disk {name} is left, detached: it was tagged {REPLACES_TAG} before the live disk was detached, and from then on no key of this instance's may delete it; delete it from an administrator's machine: aws lightsail delete-disk --disk-name {name} --region {region}"
    )))
}

/// The live disk attached again at `at`, found by its volume id, mounted as it was.
async fn put_back<A: Lightsail, H: Host>(
    api: &A,
    host: &H,
    me: &Me,
    live: &Live,
    at: &str,
    settings: &Settings,
) -> Result<()> {
    let name = live.disk.name.as_str();
    // A detach that failed, or one still under way, is waited for; a disk still attached
    // here at its path is only mounted again.
    let now = api
        .disk_state(name)
        .await?
        .with_context(|| format!("the original disk {name} is gone"))?;
    let here = now.is_attached
        && now.attached_to.as_deref() == Some(me.instance.as_str())
        && now.path.as_deref() == Some(at);
    if !here {
        if now.is_attached {
            scratch::wait_for(api, name, settings.poll, "detached", |d| !d.is_attached).await?;
        }
        api.attach_disk(name, &me.instance, at)
            .await
            .with_context(|| format!("attaching the original disk {name} at {at} again"))?;
    }
    let disk = scratch::wait_for(api, name, settings.poll, "attached", |d| {
        d.is_attached && d.attached_to.as_deref() == Some(me.instance.as_str())
    })
    .await?;
    let dev = host.device(&disk, at).await?;
    let mut m = live.mount.clone();
    m.source = dev.display().to_string();
    crate::kernel::unmount::remount(&m)
}

/// Refuses a roll-back of the system volume, with the steps that do it.
pub fn refuse_system(path: &Path) -> anyhow::Error {
    Failure::new(
        ExitCode::Usage,
        format!(
            "{} is on the system disk: lightsnap never replaces the system volume from inside the instance (it cannot be unmounted while the system runs). To roll it back, make a new instance from a snapshot and move to it: \
             in the Lightsail console, Snapshots, the instance snapshot, \"Create new instance\"; or from any machine: \
             aws lightsail create-instances-from-snapshot --instance-snapshot-name SNAPSHOT --instance-names NEW-NAME --availability-zone ZONE --bundle-id BUNDLE \
             (lightsnap snap-instance takes such a snapshot; aws lightsail get-instance-snapshot --instance-snapshot-name SNAPSHOT shows its bundle); \
             then move the static IP to the new instance (aws lightsail attach-static-ip --static-ip-name IP --instance-name NEW-NAME). Files of the system disk: lightsnap restore SNAPSHOT --mount DIR",
            path.display()
        ),
    )
    .into()
}
