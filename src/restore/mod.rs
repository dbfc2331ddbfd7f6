//! Restore rehearsals (`lightsnap verify`): a disk snapshot restored to a scratch disk in this
//! instance's zone, attached here, checked read-only (its filesystems' own checkers in
//! no-change mode, a read-only mount, the `verify` hooks against it), then detached and
//! deleted, and the snapshot tagged `lightsnap:verified` = `clean`, `failed` or `unchecked`
//! (something on the disk could not be checked: never called clean, never a false alarm).
//!
//! What verify touches is what it made. The scratch disk has a name of its own for each
//! rehearsal, and it is recorded as a step only once CreateDiskFromSnapshot succeeded (or
//! answered ambiguously and the disk that exists carries this rehearsal's tags); every
//! DetachDisk and DeleteDisk — undo and leftovers alike — is preceded by a GetDisk whose tags
//! must say it is this instance's scratch disk. Local steps (the journal-replay mount, the
//! read-only mounts, the device set read-only) are recorded before they are taken and undone
//! in reverse whatever ends the rehearsal — a failure, the timeout, a stop request. A scratch
//! disk a killed run left is found by its tags and removed by the next `verify` or `run`
//! ([`scratch`]) — unless its device is mounted, held or open outside lightsnap's own mount
//! directory: then it is reported and left alone. The machine's side
//! (device, checkers, mounts, hooks) is behind [`host::Host`]; the filesystems' rules are in
//! [`fs`]; LVM on the restored disk (imported as a renamed clone, put away as a step) in
//! [`lvm`]; copies to another region in [`copy`].

pub mod bootcopy;
pub mod copy;
pub mod fs;
pub mod host;
pub mod lock;
pub mod lvm;
pub mod replace;
pub mod restored;
pub mod scratch;
#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::cloud::lightsail::{Lightsail, NewDisk, SnapshotInfo};
use crate::cloud::owner::Owner;
use crate::exit_code::{ExitCode, Failure};
use crate::fail;
use crate::hooks::HookEnv;
use crate::signals::{unless_stopped, Stop};
use host::{Check, Host};

/// The tag of a disk lightsnap made to throw away: verify's scratch disks ([`SCRATCH_VERIFY`])
/// and restored copies ([`SCRATCH_RESTORE`]). Set only when the disk is made; what makes it
/// removable under the instance policy (`crate::cloud::policy`).
pub const SCRATCH_TAG: &str = "lightsnap:scratch";
/// [`SCRATCH_TAG`]'s value on a verify scratch disk: only these are verify's to clean up.
pub const SCRATCH_VERIFY: &str = "true";
/// [`SCRATCH_TAG`]'s value on a restored copy (`restore --mount`, and the disk `restore
/// --replace` makes until it takes the live disk's place): never one of verify's.
pub const SCRATCH_RESTORE: &str = "restore";
/// The instance whose rehearsal made a scratch disk: only that instance removes it.
pub const SCRATCH_INSTANCE_TAG: &str = "lightsnap:scratch-instance";
/// The snapshot a scratch disk was made from.
pub const SCRATCH_OF_TAG: &str = "lightsnap:scratch-of";
/// A verified snapshot's result: `clean`, `failed` or `unchecked`.
pub const VERIFIED_TAG: &str = "lightsnap:verified";
/// When it was verified (RFC 3339, UTC).
pub const VERIFIED_AT_TAG: &str = "lightsnap:verified-at";

/// This instance, as a rehearsal needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Me {
    /// Its Lightsail name.
    pub instance: String,
    /// Its availability zone (a disk attaches only in its own).
    pub availability_zone: String,
    /// The device paths its disks are attached at.
    pub used_paths: Vec<String>,
}

impl Me {
    /// This instance as the owner of what its lightsnap makes (`lightsnap:owner`). Its region
    /// is its zone's (a Lightsail zone is its region and one letter: `us-east-1a`).
    pub fn owner(&self) -> Owner {
        let region = self
            .availability_zone
            .trim_end_matches(|c: char| c.is_ascii_lowercase());
        Owner::new(region, self.instance.clone())
    }
}

/// Who this instance is: the metadata service, then GetInstances.
pub async fn who_am_i<A: Lightsail>(api: &A) -> Result<Me> {
    let identity = crate::cloud::imds::identity(Duration::from_secs(2))
        .await
        .context("finding which Lightsail instance this is, to attach the scratch disk to")?;
    let instances = api
        .get_instances()
        .await
        .context("listing Lightsail instances to find this one")?;
    let me = crate::snap::plan::this_instance(&instances, &identity)?;
    Ok(Me {
        instance: me.name.clone(),
        availability_zone: identity.availability_zone,
        used_paths: me.disks.iter().filter_map(|d| d.path.clone()).collect(),
    })
}

/// How a rehearsal runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The whole rehearsal's bound (`--timeout`), undo not included.
    pub timeout: Duration,
    /// How often the scratch disk's state is asked for.
    pub poll: Duration,
    /// Where the restored filesystems are mounted (`<run dir>/verify`).
    pub mount_dir: PathBuf,
    /// The bound of the undo (never cut short by a stop request).
    pub undo_timeout: Duration,
}

/// What a rehearsal came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Restored, checked, mounted and hooked: it works.
    Clean,
    /// The restore does not work: a check, the mount or a hook failed, or the disk ended in
    /// `error`.
    Failed,
    /// Nothing failed, but something on the restored disk could not be checked (a missing
    /// checker, a layout lightsnap does not check, a kernel that cannot mount it read-only):
    /// neither clean nor failed; what was not checked is named.
    Unchecked,
    /// The rehearsal could not finish (timeout, stop request, an API failure): nothing is
    /// known of the snapshot, and it is not tagged.
    Incomplete,
}

impl Outcome {
    /// The `lightsnap:verified` tag value, for a rehearsal that reached a verdict.
    pub fn tag(self) -> Option<&'static str> {
        match self {
            Outcome::Clean => Some("clean"),
            Outcome::Failed => Some("failed"),
            Outcome::Unchecked => Some("unchecked"),
            Outcome::Incomplete => None,
        }
    }
}

/// A rehearsal's report.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Verification {
    /// The snapshot.
    pub snapshot: String,
    /// The disk it is of (`<instance>-system` for a system volume).
    pub disk: Option<String>,
    /// The scratch disk made from it.
    pub scratch_disk: String,
    /// Where it was attached.
    pub attached_at: Option<String>,
    /// Its block device here.
    pub device: Option<PathBuf>,
    /// The verdict.
    pub result: Outcome,
    /// Each filesystem's check.
    pub checks: Vec<Check>,
    /// Whether the `verify` hooks ran (and passed, unless in `failures`).
    pub hooks_ran: bool,
    /// What failed (checks, mount, hooks), in plain words.
    pub failures: Vec<String>,
    /// What could not be checked, in plain words.
    pub unchecked: Vec<String>,
    /// Scratch disks of earlier, killed runs removed first.
    pub leftovers_removed: Vec<String>,
    /// Scratch disks of earlier runs left alone, and why (mounted or open outside
    /// lightsnap's mount directory, attached elsewhere, or they could not be removed).
    pub leftovers_kept: Vec<String>,
    /// What could not be undone (a scratch disk left, which the next run removes).
    pub left_behind: Vec<String>,
    /// The `lightsnap:verified` value the snapshot was tagged with.
    pub tagged: Option<String>,
    /// How long it took, undo included.
    pub elapsed_s: f64,
    /// Why it is incomplete.
    #[serde(skip)]
    pub error: Option<anyhow::Error>,
}

/// A step taken, to be undone.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// CreateDiskFromSnapshot made this disk (it answered, or the disk that exists after an
    /// ambiguous answer carries this rehearsal's tags).
    Created(String),
    /// AttachDisk was called.
    Attached(String),
    /// Its block device was found here (and may be set read-only).
    Device(PathBuf),
    /// A filesystem was (being) mounted here: read-only for the hooks, or for its journal
    /// replay.
    Mounted(PathBuf),
    /// The LVM group on these physical volumes was (being) imported as this clone.
    Lvm(Vec<PathBuf>, String),
}

/// What the work found, kept outside it so that a cancelled rehearsal still reports it.
#[derive(Debug, Default)]
struct Findings {
    attached_at: Option<String>,
    device: Option<PathBuf>,
    checks: Vec<Check>,
    hooks_ran: bool,
    failures: Vec<String>,
    unchecked: Vec<String>,
}

/// What a stop request during a rehearsal means.
const STOPPED_VERIFYING: &str =
    "during verify; the scratch disk is removed, the snapshot is not tagged";

/// Refuses what cannot be rehearsed, before anything is made: an instance snapshot (the API
/// restores one only as whole new instances, CreateInstancesFromSnapshot, never as disks this
/// instance could attach), a snapshot not completed, an automatic one's name (those restore
/// through other parameters).
pub fn check_snapshot(s: &SnapshotInfo) -> Result<()> {
    if s.instance {
        fail!(
            ExitCode::Unsupported,
            "{} is an instance snapshot: Lightsail restores those only as new instances (CreateInstancesFromSnapshot), not as disks this instance could attach and check; verify the disk snapshots of its disks instead (lightsnap freeze-and-snap PATH, then lightsnap verify --latest PATH)",
            s.name
        );
    }
    if s.state != "completed" {
        fail!(
            ExitCode::Usage,
            "snapshot {} is {}, not completed: it can be restored once it is (lightsnap list shows its progress)",
            s.name,
            s.state
        );
    }
    Ok(())
}

/// Rehearses the restore of `snapshot`: leftovers removed, the scratch disk made, attached,
/// checked, undone, the snapshot tagged. Fails only when nothing was done (a leftover search
/// that failed, a snapshot that cannot be rehearsed); everything else is in the report.
pub async fn verify<A: Lightsail, H: Host, S: Stop>(
    api: &A,
    host: &H,
    me: &Me,
    snapshot: &SnapshotInfo,
    settings: &Settings,
    stop: &mut S,
) -> Result<Verification> {
    check_snapshot(snapshot)?;
    let started = Instant::now();
    let leftovers = scratch::clean_up(api, host, me, settings).await?;
    let name = scratch::name_for(&snapshot.name);
    let steps = RefCell::new(Vec::new());
    let findings = RefCell::new(Findings::default());
    let work = rehearse(api, host, me, snapshot, &name, settings, &steps, &findings);
    let bounded = async {
        match tokio::time::timeout(settings.timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(Failure::new(
                ExitCode::VerifyIncomplete,
                format!(
                    "verify of {} did not finish within --timeout {}; the scratch disk is removed, the snapshot is not tagged",
                    snapshot.name,
                    humantime::format_duration(settings.timeout)
                ),
            )
            .into()),
        }
    };
    let worked = unless_stopped(stop, STOPPED_VERIFYING, bounded).await;
    // Undo, in reverse, whatever ended the work; never cut short by a stop request.
    let left_behind = undo(
        api,
        host,
        me,
        steps.take(),
        settings,
        is_system_copy(snapshot),
    )
    .await;
    let f = findings.take();
    let (result, error) = match worked {
        Err(e) if e.downcast_ref::<scratch::RestoreFailed>().is_some() => {
            let mut failures = f.failures.clone();
            failures.push(format!("{e:#}"));
            return finish(
                api,
                me,
                snapshot,
                name,
                f,
                failures,
                Outcome::Failed,
                None,
                leftovers,
                left_behind,
                started,
            )
            .await;
        }
        _ if !f.failures.is_empty() => (Outcome::Failed, None),
        Ok(()) if !f.unchecked.is_empty() => (Outcome::Unchecked, None),
        Ok(()) => (Outcome::Clean, None),
        Err(e) => (Outcome::Incomplete, Some(e)),
    };
    let failures = f.failures.clone();
    finish(
        api,
        me,
        snapshot,
        name,
        f,
        failures,
        result,
        error,
        leftovers,
        left_behind,
        started,
    )
    .await
}

/// Tags the snapshot with a verdict and makes the report.
#[allow(clippy::too_many_arguments)]
async fn finish<A: Lightsail>(
    api: &A,
    me: &Me,
    snapshot: &SnapshotInfo,
    scratch_disk: String,
    f: Findings,
    failures: Vec<String>,
    result: Outcome,
    error: Option<anyhow::Error>,
    leftovers: scratch::Leftovers,
    left_behind: Vec<String>,
    started: Instant,
) -> Result<Verification> {
    let mut tagged = None;
    if let Some(value) = result.tag() {
        let at = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        let tags = vec![
            (VERIFIED_TAG.to_string(), value.to_string()),
            (VERIFIED_AT_TAG.to_string(), at),
        ];
        // Only this instance's snapshot gets the verdict (as read when the rehearsal began):
        // another instance's, or an untagged one a user named, is left as it is.
        let owner = me.owner();
        let ours = owner.owns(snapshot);
        let tagging = if ours {
            api.tag_resource(&snapshot.name, &tags).await
        } else {
            tracing::warn!(
                "snapshot {} does not carry {} = {}: verified, not tagged",
                snapshot.name,
                crate::cloud::owner::OWNER_TAG,
                owner.value()
            );
            Ok(())
        };
        match tagging.map(|()| ours) {
            Ok(false) => {}
            Ok(true) => tagged = Some(value.to_string()),
            Err(e) => tracing::warn!(
                "tagging snapshot {} {VERIFIED_TAG}={value}: {e}",
                snapshot.name
            ),
        }
    }
    Ok(Verification {
        snapshot: snapshot.name.clone(),
        disk: snapshot.from.clone(),
        scratch_disk,
        attached_at: f.attached_at,
        device: f.device,
        result,
        checks: f.checks,
        hooks_ran: f.hooks_ran,
        failures,
        unchecked: f.unchecked,
        leftovers_removed: leftovers.removed,
        leftovers_kept: leftovers.kept,
        left_behind,
        tagged,
        elapsed_s: started.elapsed().as_secs_f64(),
        error,
    })
}

/// The rehearsal proper; each local step recorded in `steps` before it is taken, the
/// scratch disk once it is known to be this rehearsal's.
#[allow(clippy::too_many_arguments)]
async fn rehearse<A: Lightsail, H: Host>(
    api: &A,
    host: &H,
    me: &Me,
    snapshot: &SnapshotInfo,
    name: &str,
    settings: &Settings,
    steps: &RefCell<Vec<Step>>,
    findings: &RefCell<Findings>,
) -> Result<()> {
    let request = NewDisk {
        name: name.to_string(),
        snapshot: snapshot.name.clone(),
        availability_zone: me.availability_zone.clone(),
        size_gb: snapshot.size_gb.unwrap_or(8).max(8),
        tags: scratch::tags(me, &snapshot.name),
    };
    let context = || {
        format!(
            "restoring snapshot {} to scratch disk {name}",
            snapshot.name
        )
    };
    match api.create_disk_from_snapshot(&request).await {
        Ok(_) => steps.borrow_mut().push(Step::Created(name.to_string())),
        Err(e) if e.is_ambiguous() => {
            // The request may have landed: the disk is this rehearsal's only if it exists
            // with this rehearsal's tags (a disk of that name without them is not touched).
            if let Ok(Some(d)) = api.disk_state(name).await {
                if scratch::is_ours_of(&d, me, &snapshot.name) {
                    steps.borrow_mut().push(Step::Created(name.to_string()));
                }
            }
            return Err(e).with_context(context);
        }
        // Refused (a name in use among them): nothing was made, nothing is undone.
        Err(e) => return Err(e).with_context(context),
    }
    let available = scratch::wait_for(api, name, settings.poll, "available", |d| {
        d.state == "available"
    })
    .await?;
    let dev_dir = crate::test_switch!(host::DEV_DIR_ENV).map(PathBuf::from);
    let exists = |p: &str| match &dev_dir {
        Some(dir) => dir.join(p.trim_start_matches("/dev/")).exists(),
        None => std::path::Path::new(p).exists(),
    };
    let path = scratch::free_path(me, exists)?;
    if is_system_copy(snapshot) {
        // Before AttachDisk: a boot while it is attached must find the record
        // (bootcopy: the boot step removes the copy from the kernel before local-fs).
        let record =
            bootcopy::Record::new(name, &snapshot.name, "verify", path, available.volume_id());
        host.system_copy_attaching(&record)?;
    }
    steps.borrow_mut().push(Step::Attached(name.to_string()));
    api.attach_disk(name, &me.instance, path)
        .await
        .with_context(|| format!("attaching scratch disk {name} at {path}"))?;
    findings.borrow_mut().attached_at = Some(path.to_string());
    let disk = scratch::wait_for(api, name, settings.poll, "attached", |d| {
        d.is_attached && d.attached_to.as_deref() == Some(me.instance.as_str())
    })
    .await?;
    let device = host.device(&disk, path).await?;
    tracing::info!("scratch disk {name} is {} here", device.display());
    steps.borrow_mut().push(Step::Device(device.clone()));
    findings.borrow_mut().device = Some(device.clone());
    if is_system_copy(snapshot) {
        host.system_copy_attached(name, &device);
    }
    // Every mount of this rehearsal is below `<mount dir>/<scratch disk>`: the journal
    // replays, then the read-only mounts (one directory per partition when there are more).
    let base = settings.mount_dir.join(name);
    steps.borrow_mut().push(Step::Mounted(base.clone()));
    let found = with_volumes(host, host.filesystems(&device), name, steps, findings).await;
    // (Nothing left to check after a group that could not be imported is said already.)
    if found.is_empty() && findings.borrow().checks.is_empty() {
        findings
            .borrow_mut()
            .unchecked
            .push(format!("{}: no filesystem found", device.display()));
    }
    for fs in &found {
        let dev_name = fs.device.file_name().unwrap_or_default().to_string_lossy();
        let replay_at = base.join(format!(".replay-{dev_name}"));
        steps.borrow_mut().push(Step::Mounted(replay_at.clone()));
        let check = host.check(fs, &replay_at).await.of(fs);
        let mut f = findings.borrow_mut();
        let line = check.line();
        if check.unchecked {
            f.unchecked.push(line);
        } else if !check.clean {
            f.failures.push(line);
        }
        f.checks.push(check);
    }
    if !findings.borrow().failures.is_empty() {
        return Ok(());
    }
    // Mounted read-only, each that has a filesystem lightsnap knows; the hooks are told where.
    let mountable: Vec<&fs::Found> = found.iter().filter(|f| f.fstype().is_some()).collect();
    let mut mounted = Vec::new();
    for fs in &mountable {
        let at = if found.len() == 1 {
            base.clone()
        } else {
            base.join(fs.device.file_name().unwrap_or_default())
        };
        steps.borrow_mut().push(Step::Mounted(at.clone()));
        if let Err(e) = host.mount(fs, &at).await {
            if e.is::<host::CouldNotCheck>() {
                findings.borrow_mut().unchecked.push(format!("{e:#}"));
                continue;
            }
            findings.borrow_mut().failures.push(format!(
                "{:#}",
                e.context("the restored filesystem does not mount read-only")
            ));
            return Ok(());
        }
        mounted.push(at);
    }
    if mounted.is_empty() {
        return Ok(());
    }
    let env = HookEnv {
        paths: mounted.clone(),
        disks: snapshot.from.iter().cloned().collect(),
        snapshots: vec![snapshot.name.clone()],
        result: None,
        verify_mount: Some(base),
    };
    let hooks = host.hooks(&env).await;
    findings.borrow_mut().hooks_ran = true;
    if let Err(e) = hooks {
        findings.borrow_mut().failures.push(format!("{e:#}"));
    }
    Ok(())
}

/// The filesystems found on the restored disk, with its LVM physical volumes replaced by the
/// logical volumes of their group, imported as a renamed clone (the put-away recorded as a
/// step first, so that whatever ends the rehearsal deactivates it). A group that cannot be
/// imported stays as its physical volumes, with why: could not check.
async fn with_volumes<H: Host>(
    host: &H,
    found: Vec<fs::Found>,
    disk: &str,
    steps: &RefCell<Vec<Step>>,
    findings: &RefCell<Findings>,
) -> Vec<fs::Found> {
    let (pvs, mut rest) = lvm_split(found);
    if pvs.is_empty() {
        return rest;
    }
    let clone = lvm::vg_name(disk);
    steps
        .borrow_mut()
        .push(Step::Lvm(pvs.clone(), clone.clone()));
    match import_volumes(host, &pvs, &clone).await {
        Ok(volumes) => rest.extend(volumes),
        Err(checks) => {
            let mut f = findings.borrow_mut();
            for check in checks {
                f.unchecked.push(check.line());
                f.checks.push(check);
            }
        }
    }
    rest
}

/// The LVM physical volumes among what a disk holds (their devices), and the rest.
pub(crate) fn lvm_split(found: Vec<fs::Found>) -> (Vec<PathBuf>, Vec<fs::Found>) {
    let (pvs, rest): (Vec<fs::Found>, Vec<fs::Found>) = found
        .into_iter()
        .partition(|f| f.layout == Some(fs::Layout::Lvm));
    (pvs.into_iter().map(|f| f.device).collect(), rest)
}

/// The logical volumes of the group on `pvs`, imported as `clone`; else, for each physical
/// volume, a "could not check" saying why.
pub(crate) async fn import_volumes<H: Host>(
    host: &H,
    pvs: &[PathBuf],
    clone: &str,
) -> Result<Vec<fs::Found>, Vec<Check>> {
    host.import_lvm(pvs, clone).await.map_err(|e| {
        pvs.iter()
            .map(|pv| Check::unchecked(pv.clone(), None, "vgimportclone".into(), format!("{e:#}")))
            .collect()
    })
}

/// Whether the snapshot is of a system disk (`<instance>-system`): its copy carries the
/// root filesystem's UUID, LABEL and PARTUUID.
pub fn is_system_copy(snapshot: &SnapshotInfo) -> bool {
    snapshot
        .from
        .as_deref()
        .is_some_and(|f| f.ends_with("-system"))
}

/// Undoes `steps` in reverse; what could not be undone, in plain words. A copy of the system
/// disk (`system_copy`) has its boot-time record cleared once it is detached.
async fn undo<A: Lightsail, H: Host>(
    api: &A,
    host: &H,
    me: &Me,
    steps: Vec<Step>,
    settings: &Settings,
    system_copy: bool,
) -> Vec<String> {
    let mut left = Vec::new();
    let all = async {
        for step in steps.into_iter().rev() {
            let done = match &step {
                Step::Mounted(at) => host.unmount(at),
                Step::Device(dev) => host.release(dev),
                Step::Lvm(pvs, clone) => host.put_away_lvm(pvs, clone).await,
                Step::Attached(name) => {
                    let detached = scratch::detach(api, me, name, settings.poll).await;
                    if detached.is_ok() && system_copy {
                        host.system_copy_detached(name);
                    }
                    detached
                }
                Step::Created(name) => scratch::remove(api, me, name, settings.poll).await,
            };
            if let Err(e) = done {
                let what = match &step {
                    Step::Mounted(at) => format!("mount {}", at.display()),
                    Step::Device(dev) => format!("device {}", dev.display()),
                    Step::Lvm(_, clone) => format!("LVM clone {clone}"),
                    Step::Attached(n) | Step::Created(n) => format!("scratch disk {n}"),
                };
                tracing::error!("could not undo {what}: {e:#}");
                left.push(format!("{what}: {e:#}"));
                if matches!(step, Step::Attached(_)) {
                    // An attached disk cannot be deleted: leave it for the next run.
                    break;
                }
            }
        }
    };
    if tokio::time::timeout(settings.undo_timeout, all)
        .await
        .is_err()
    {
        left.push(format!(
            "the undo did not finish within {}",
            humantime::format_duration(settings.undo_timeout)
        ));
    }
    if !left.is_empty() {
        left.push(
            "the next `lightsnap verify` or `lightsnap run` removes the scratch disk (tag lightsnap:scratch), unless it is in use".into(),
        );
    }
    left
}
