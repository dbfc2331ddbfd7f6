//! The scratch disk of a rehearsal: its name and tags, the device path it is attached at,
//! following its state, and removing it — the rehearsal's own, and those a killed run left
//! (found by their tags, and only this instance's: never a disk lightsnap did not create).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use super::host::Host;
use super::{Me, SCRATCH_INSTANCE_TAG, SCRATCH_TAG};
use crate::cloud::lightsail::{ApiErrorKind, DiskState, Lightsail};
use crate::exit_code::{ExitCode, Failure};

/// The scratch disk's name for `snapshot`: `<snapshot>-verify`, within Lightsail's 255
/// characters.
pub fn name_for(snapshot: &str) -> String {
    const SUFFIX: &str = "-verify";
    let keep = snapshot.len().min(255 - SUFFIX.len());
    let base = snapshot[..keep].trim_end_matches(['-', '_']);
    format!("{base}{SUFFIX}")
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

/// Detaches a scratch disk from this instance if it is attached here, and waits until it is
/// detached. A disk attached elsewhere is refused: it is not this run's to touch.
pub async fn detach<A: Lightsail>(api: &A, me: &Me, name: &str, poll: Duration) -> Result<()> {
    let Some(disk) = api.disk_state(name).await? else {
        return Ok(());
    };
    if !disk.is_attached {
        return Ok(());
    }
    if disk.attached_to.as_deref() != Some(me.instance.as_str()) {
        anyhow::bail!(
            "scratch disk {name} is attached to instance {}, not this one ({}): left alone",
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
    match wait_for(api, name, poll, "detached", |d| {
        !d.is_attached && d.state != "in-use"
    })
    .await
    {
        Err(e)
            if e.downcast_ref::<Failure>()
                .is_some_and(|f| f.code == ExitCode::NotFound) =>
        {
            Ok(())
        }
        other => other.map(drop),
    }
}

/// Deletes a scratch disk (detaching it from this instance first); gone already is fine.
pub async fn remove<A: Lightsail>(api: &A, me: &Me, name: &str, poll: Duration) -> Result<()> {
    detach(api, me, name, poll)
        .await
        .with_context(|| format!("detaching scratch disk {name}"))?;
    match api.delete_disk(name).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind == ApiErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("deleting scratch disk {name}")),
    }
}

/// Whether a disk is a scratch disk of this instance's rehearsals.
pub fn is_ours(d: &DiskState, me: &Me) -> bool {
    d.tag(SCRATCH_TAG) == Some("true") && d.tag(SCRATCH_INSTANCE_TAG) == Some(me.instance.as_str())
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

/// Removes what killed runs left: their mounts under `mount_dir`, then each scratch disk of
/// this instance. Returns the names removed; a disk that cannot be removed is a warning (the
/// next run tries again).
pub async fn remove_leftovers<A: Lightsail, H: Host>(
    api: &A,
    host: &H,
    me: &Me,
    mount_dir: &Path,
    poll: Duration,
) -> Result<Vec<String>> {
    let found = leftovers(api, me).await?;
    let mut removed = Vec::new();
    for d in found {
        for m in host.mounts_below(&mount_dir.join(&d.name)) {
            if let Err(e) = host.unmount(&m) {
                tracing::warn!("a killed verify's mount {}: {e:#}", m.display());
            }
        }
        let _ = host.unmount(&mount_dir.join(&d.name));
        let here = d.attached_to.as_deref() == Some(me.instance.as_str());
        if let (true, Some(path)) = (here, &d.path) {
            if let Some(dev) = host.device_now(&d, path) {
                if let Err(e) = host.release(&dev) {
                    tracing::warn!("{e:#}");
                }
            }
        }
        tracing::warn!(
            "removing scratch disk {} left by an earlier `lightsnap verify` that did not finish",
            d.name
        );
        match remove(api, me, &d.name, poll).await {
            Ok(()) => removed.push(d.name),
            Err(e) => tracing::warn!("{e:#}; the next `lightsnap verify` tries again"),
        }
    }
    Ok(removed)
}

/// Every scratch disk of restore rehearsals (tag `lightsnap:scratch`), every instance's, as
/// `status --refresh` and `plan` list them.
pub async fn listing<A: Lightsail>(api: &A) -> Result<Vec<serde_json::Value>> {
    use super::SCRATCH_OF_TAG;
    Ok(api
        .get_disks()
        .await?
        .into_iter()
        .filter(|d| d.tag(SCRATCH_TAG) == Some("true"))
        .map(|d| {
            serde_json::json!({
                "name": d.name,
                "state": d.state,
                "snapshot": d.tag(SCRATCH_OF_TAG),
                "instance": d.tag(SCRATCH_INSTANCE_TAG),
                "attached_to": d.attached_to,
            })
        })
        .collect())
}

/// One listed scratch disk, for people.
pub fn listing_line(d: &serde_json::Value) -> String {
    format!(
        "scratch disk {} (restored from {} by instance {}, {}): a `lightsnap verify` in progress, or left by one that did not finish; the next verify on that instance removes it",
        d["name"].as_str().unwrap_or_default(),
        d["snapshot"].as_str().unwrap_or("?"),
        d["instance"].as_str().unwrap_or("?"),
        d["state"].as_str().unwrap_or_default()
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
        assert_eq!(name_for("data-1-20261130"), "data-1-20261130-verify");
        let long = "a".repeat(255);
        let n = name_for(&long);
        assert_eq!(n.len(), 255);
        assert!(n.ends_with("-verify"));
        let dashes = format!("{}-", "b".repeat(247));
        assert_eq!(name_for(&dashes), format!("{}-verify", "b".repeat(247)));
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
