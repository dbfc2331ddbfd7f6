//! `lightsnap verify SNAPSHOT` (and `verify --latest PATH|--disk NAME`): rehearses the restore
//! of a disk snapshot on this instance (see [`crate::restore`]) and says what was checked and
//! what failed; `lightsnap run` calls [`scheduled`] every `verify_every` runs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use super::snap_args::conclude;
use super::{Globals, Output};
use crate::cloud::lightsail::{Lightsail, SdkLightsail, SnapshotInfo, SnapshotKind};
use crate::cloud::owner::Owner;
use crate::config::{self, Settings};
use crate::exit_code::{ExitCode, Failure};
use crate::fail;
use crate::restore::{self, host::Machine, Outcome, Verification};
use crate::signals::Signals;

/// Restore a snapshot to a scratch disk, check it read-only, remove the disk, tag the result.
#[derive(Debug, Args)]
pub struct Verify {
    /// The disk snapshot to verify; with --latest, a PATH whose disk's newest snapshot to
    /// verify.
    #[arg(value_name = "SNAPSHOT|PATH")]
    pub target: Option<String>,
    /// Verify the newest completed snapshot lightsnap took of the disk behind PATH (or of
    /// --disk NAME).
    #[arg(long)]
    pub latest: bool,
    /// With --latest: the Lightsail disk (`<instance>-system` for a system volume).
    #[arg(
        long,
        value_name = "NAME",
        requires = "latest",
        conflicts_with = "target"
    )]
    pub disk: Option<String>,
    /// The longest the whole rehearsal may take; past it everything is undone and verify
    /// exits 20.
    #[arg(long, value_name = "DURATION", default_value = "30m", value_parser = super::parse_duration)]
    pub timeout: Duration,
    /// The AWS region (default: AWS_REGION, the profile, or the instance metadata).
    #[arg(long)]
    pub region: Option<String>,
}

/// How often the scratch disk's state is asked for.
const POLL: Duration = Duration::from_secs(2);
/// How long the undo may take (the unit's TimeoutStopSec= leaves it this: see `budget`).
pub const UNDO_TIMEOUT: Duration = crate::budget::UNDO;

/// The rehearsal's settings for a run directory.
pub fn rehearsal(run_dir: &Path, timeout: Duration) -> restore::Settings {
    // Test-only (a plain build never reads it): the suite's fake attaches in milliseconds.
    let poll = crate::test_switch!("LIGHTSNAP_VERIFY_POLL_MS")
        .and_then(|v| v.to_str()?.parse().ok())
        .map(Duration::from_millis)
        .unwrap_or(POLL);
    restore::Settings {
        timeout,
        poll,
        mount_dir: mount_dir(run_dir),
        undo_timeout: UNDO_TIMEOUT,
    }
}

/// The real machine for `settings`, mounting under `run_dir`.
pub fn machine(settings: &Settings, run_dir: &Path) -> Machine {
    Machine {
        hook_dir: settings.verify_hook_dir.clone(),
        hook_timeout: settings.hook_timeout,
        tool_timeout: Duration::from_secs(3600),
        mount_dir: mount_dir(run_dir),
    }
}

impl Verify {
    /// Runs it.
    pub fn run(self, globals: &Globals) -> Result<ExitCode> {
        let settings = config::load(&globals.config_root)?;
        match (&self.target, self.latest, &self.disk) {
            (None, false, _) => fail!(
                ExitCode::Usage,
                "name the snapshot to verify, or give --latest PATH (or --latest --disk NAME)"
            ),
            (None, true, None) => fail!(
                ExitCode::Usage,
                "--latest needs a PATH or --disk NAME: whose newest snapshot to verify"
            ),
            (Some(name), false, _) => crate::cloud::validate::name("snapshot name", name)?,
            _ => {}
        }
        if let Some(d) = &self.disk {
            crate::cloud::validate::name("disk name", d)?;
        }
        crate::runstate::require_root()?;
        // One rehearsal at a time (a rehearsal removes this instance's scratch disks it
        // finds, which another rehearsal's would be), under a lock of its own: a snapshot run
        // meanwhile is not refused (see restore::lock).
        let _lock = restore::lock::take(&globals.run_dir)?;
        let output = globals.output;
        crate::runtime()?.block_on(async {
            let mut signals = Signals::install()?;
            let api = SdkLightsail::from_env(
                self.region.clone().or(settings.region.clone()),
                settings.profile.clone(),
            )
            .await?;
            let me = restore::who_am_i(&api).await?;
            let snapshot = self.snapshot(&api, &settings, &me.owner()).await?;
            restore::check_snapshot(&snapshot)?;
            let v = restore::verify(
                &api,
                &machine(&settings, &globals.run_dir),
                &me,
                &snapshot,
                &rehearsal(&globals.run_dir, self.timeout),
                &mut signals,
            )
            .await?;
            crate::monitor::verified(&settings, &v);
            record_kept(&settings, &v);
            report(v, output)
        })
    }

    /// The snapshot asked for (with `--latest`, `owner`'s newest).
    async fn snapshot<A: Lightsail>(
        &self,
        api: &A,
        settings: &Settings,
        owner: &Owner,
    ) -> Result<SnapshotInfo> {
        if !self.latest {
            let name = self.target.as_deref().unwrap_or_default();
            return by_name(api, name).await;
        }
        let disk = match (&self.disk, &self.target) {
            (Some(d), _) => d.clone(),
            (None, Some(path)) => disk_behind(api, settings, Path::new(path)).await?,
            (None, None) => unreachable!("refused above"),
        };
        newest_of(api, &disk, owner)
            .await?
            .ok_or_else(|| {
                Failure::new(
                    ExitCode::NotFound,
                    format!("this instance ({owner}) has no completed snapshot of disk {disk} to verify (lightsnap list --disk {disk})"),
                )
                .into()
            })
    }
}

/// A snapshot by name: a disk snapshot, or an instance snapshot (refused later, clearly).
pub(crate) async fn by_name<A: Lightsail>(api: &A, name: &str) -> Result<SnapshotInfo> {
    if let Some(s) = api.get_snapshot(SnapshotKind::Disk, name).await? {
        return Ok(s);
    }
    if let Some(s) = api.get_snapshot(SnapshotKind::Instance, name).await? {
        return Ok(s);
    }
    fail!(
        ExitCode::NotFound,
        "there is no snapshot named {name} in this region (lightsnap list --all)"
    )
}

/// The newest completed snapshot `owner`'s lightsnap took of `disk` (copies from other regions
/// aside).
pub async fn newest_of<A: Lightsail>(
    api: &A,
    disk: &str,
    owner: &Owner,
) -> Result<Option<SnapshotInfo>> {
    let all = api.get_snapshots(SnapshotKind::Disk).await?;
    Ok(all
        .into_iter()
        .filter(|s| s.is_done() && owner.owns(s) && !s.is_from_auto_snapshot)
        .filter(|s| s.from.as_deref() == Some(disk))
        .filter(|s| s.tag(restore::copy::COPY_OF_TAG).is_none())
        .max_by(|a, b| {
            a.created_at
                .unwrap_or(0.0)
                .total_cmp(&b.created_at.unwrap_or(0.0))
        }))
}

/// The Lightsail disk (as snapshots name it) behind a path, found as freeze-and-snap finds it.
pub(crate) async fn disk_behind<A: Lightsail>(
    api: &A,
    settings: &Settings,
    path: &Path,
) -> Result<String> {
    use crate::snap::plan;
    let mounts = crate::kernel::mountinfo::read()?;
    let located = plan::locate(path, &mounts)?;
    let disks = plan::whole_disks(&crate::kernel::blockdev::SysfsRoot::default(), &located)?;
    let [ids] = disks.as_slice() else {
        fail!(
            ExitCode::Usage,
            "{} is on {} disks; name the one to verify with --latest --disk NAME",
            path.display(),
            disks.len()
        );
    };
    let configured = settings.disk_for(&[path, located.mount.mount_point.as_path()]);
    let mut discovery = plan::Discovery::new(api, async {
        Ok(crate::cloud::imds::identity(Duration::from_secs(2)).await?)
    });
    let (source, _) = discovery
        .source(configured, ids)
        .await
        .with_context(|| format!("finding the Lightsail disk behind {}", path.display()))?;
    Ok(plan::source_label(&source))
}

/// Says what the rehearsal came to, and picks the exit code.
pub fn report(mut v: Verification, output: Output) -> Result<ExitCode> {
    let error = v.error.take();
    let result: Result<()> = match (v.result, error) {
        (Outcome::Clean, _) if !v.left_behind.is_empty() => Err(Failure::new(
            ExitCode::VerifyIncomplete,
            format!(
                "snapshot {} is clean, but the rehearsal left {}",
                v.snapshot,
                v.left_behind.join("; ")
            ),
        )
        .into()),
        (Outcome::Clean, _) => Ok(()),
        (Outcome::Failed, _) => Err(Failure::new(
            ExitCode::VerifyFailed,
            format!(
                "snapshot {} failed verification: {}",
                v.snapshot,
                v.failures.join("; ")
            ),
        )
        .into()),
        (Outcome::Unchecked, _) => Err(unchecked(&v).into()),
        (Outcome::Incomplete, Some(e)) => Err(e),
        (Outcome::Incomplete, None) => Err(Failure::new(
            ExitCode::VerifyIncomplete,
            format!("the verification of {} did not finish", v.snapshot),
        )
        .into()),
    };
    if output == Output::Human {
        print!("{}", human(&v));
    }
    conclude(serde_json::to_value(&v)?, result, output)
}

/// The failure of a rehearsal that could not check everything (exit 21).
fn unchecked(v: &Verification) -> Failure {
    Failure::new(
        ExitCode::VerifyUnchecked,
        format!(
            "snapshot {} could not be checked in full (nothing checked was found wrong): {}",
            v.snapshot,
            v.unchecked.join("; ")
        ),
    )
}

/// The report for people.
pub fn human(v: &Verification) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let verdict = match v.result {
        Outcome::Clean => "clean",
        Outcome::Failed => "FAILED",
        Outcome::Unchecked => "COULD NOT CHECK",
        Outcome::Incomplete => "incomplete",
    };
    let _ = writeln!(
        out,
        "verify {} (disk {}): {verdict}",
        v.snapshot,
        v.disk.as_deref().unwrap_or("?")
    );
    for l in &v.leftovers_removed {
        let _ = writeln!(out, "  removed scratch disk {l}, left by an earlier verify");
    }
    for l in &v.leftovers_kept {
        let _ = writeln!(out, "  LEFT ALONE: {l}");
    }
    let at = match (&v.attached_at, &v.device) {
        (Some(p), Some(d)) => format!(", attached at {p} ({})", d.display()),
        (Some(p), None) => format!(", attached at {p}"),
        _ => String::new(),
    };
    let _ = writeln!(out, "  restored to scratch disk {}{at}", v.scratch_disk);
    for c in &v.checks {
        let fs = c.fstype.map(|t| t.mount_type()).unwrap_or("unknown");
        let state = if c.clean {
            "clean".to_string()
        } else if c.unchecked {
            format!("NOT CHECKED: {}", c.detail)
        } else {
            format!("FAILED: {}", c.detail)
        };
        let _ = writeln!(
            out,
            "  {} ({fs}): {}: {state}",
            c.device.display(),
            c.checker
        );
    }
    if v.hooks_ran {
        let _ = writeln!(out, "  mounted read-only; verify hooks run");
    }
    // A failed check is said on its line above; the rest (mount, hooks, the restore).
    for f in &v.failures {
        if !v.checks.iter().any(|c| !c.clean && f.contains(&c.detail)) {
            let _ = writeln!(out, "  failed: {f}");
        }
    }
    for u in &v.unchecked {
        if !v
            .checks
            .iter()
            .any(|c| c.unchecked && u.contains(&c.detail))
        {
            let _ = writeln!(out, "  not checked: {u}");
        }
    }
    match &v.tagged {
        Some(t) => {
            let _ = writeln!(out, "  tagged {}={t}", restore::VERIFIED_TAG);
        }
        None => {
            let _ = writeln!(out, "  not tagged");
        }
    }
    if v.left_behind.is_empty() {
        let _ = writeln!(out, "  scratch disk removed ({:.1} s)", v.elapsed_s);
    } else {
        for l in &v.left_behind {
            let _ = writeln!(out, "  LEFT: {l}");
        }
    }
    out
}

/// `verify_every` in `lightsnap run`: counts this run, and verifies the newest snapshot of
/// each disk whose targets are due. Returns the verifications' documents and how they went
/// (a failed verification exits 18; the snapshots just taken stand either way). Each
/// rehearsal takes at most what is left of the run's budget after its undo (`deadline`); one
/// that has too little left is not started (a warning: verified at a later run).
pub async fn scheduled(
    api: &SdkLightsail,
    settings: &Settings,
    report: &crate::snap::Report,
    run_dir: &Path,
    output: Output,
    signals: &mut Signals,
    deadline: crate::budget::Deadline,
) -> Option<(Vec<serde_json::Value>, Result<()>)> {
    let every = settings.verify_every?;
    let paths: Vec<PathBuf> = settings.snapshots.iter().map(|e| e.path.clone()).collect();
    let targets = crate::monitor::path_targets(&paths);
    let due = crate::monitor::count_for_verification(settings, &targets, report, every);
    if due.is_empty() {
        return None;
    }
    let mut docs = Vec::new();
    // A rehearsal already running (a manual `lightsnap verify`) is not this run's failure:
    // the verification stays due, for the next run.
    let _lock = match restore::lock::try_take(run_dir) {
        Ok(Some(lock)) => lock,
        Ok(None) => {
            tracing::warn!(
                "verify_every: a verification is running already; {} verified at a later run",
                due.join(", ")
            );
            return None;
        }
        Err(e) => {
            tracing::warn!("verify_every: {e:#}; verified at a later run");
            return None;
        }
    };
    let result = async {
        let me = restore::who_am_i(api).await?;
        let mut first_failure: Option<anyhow::Error> = None;
        for disk in &due {
            let Some(snapshot) = newest_of(api, disk, &me.owner()).await? else {
                tracing::warn!(
                    "verify_every: no completed snapshot of {disk} yet; verified at a later run"
                );
                continue;
            };
            let Some(timeout) = deadline.rehearsal(DEFAULT_TIMEOUT) else {
                tracing::warn!(
                    "verify_every: too little of the run's budget ([run] budget) is left to verify {} and undo it; verified at a later run",
                    snapshot.name
                );
                continue;
            };
            let mut v = restore::verify(
                api,
                &machine(settings, run_dir),
                &me,
                &snapshot,
                &rehearsal(run_dir, timeout),
                signals,
            )
            .await?;
            crate::monitor::verified(settings, &v);
            record_kept(settings, &v);
            if output == Output::Human {
                print!("{}", human(&v));
            }
            let failure = match (v.result, v.error.take()) {
                (Outcome::Failed, _) => Some(
                    Failure::new(
                        ExitCode::VerifyFailed,
                        format!(
                            "snapshot {} failed verification: {}",
                            v.snapshot,
                            v.failures.join("; ")
                        ),
                    )
                    .into(),
                ),
                (Outcome::Unchecked, _) => Some(unchecked(&v).into()),
                (Outcome::Incomplete, e) => e,
                (Outcome::Clean, _) => None,
            };
            docs.push(serde_json::to_value(&v).unwrap_or_default());
            if let Some(e) = failure {
                first_failure.get_or_insert(e);
            }
        }
        first_failure.map_or(Ok(()), Err)
    }
    .await;
    // The snapshots stand whatever happened here: a rehearsal that could not run (no
    // metadata service, an API failure) is an incomplete verification (20), not the run's
    // own failure; a failed one keeps 18, a stop request its signal's code.
    let result = result.map_err(|e| {
        let known = e.chain().any(|c| {
            c.downcast_ref::<Failure>().is_some_and(|f| {
                matches!(
                    f.code,
                    ExitCode::VerifyFailed | ExitCode::VerifyIncomplete | ExitCode::VerifyUnchecked
                )
            }) || c.is::<crate::signals::Stopped>()
        });
        if known {
            e
        } else {
            Failure::new(
                ExitCode::VerifyIncomplete,
                format!("the snapshots were taken, but the scheduled verification (verify_every) could not run: {e:#}"),
            )
            .into()
        }
    });
    Some((docs, result))
}

/// The rehearsal's bound in `lightsnap run` (less when the run's budget has less left).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

/// At each `lightsnap run`, after its snapshots: this instance's scratch disks a killed
/// rehearsal left are looked for and removed (those in use are reported and left), unless a
/// rehearsal is running now (it holds the verify lock, and the scratch disk is its own).
/// Never the run's failure: what happened is logged and returned for the report.
pub async fn leftovers_at_run(
    api: &SdkLightsail,
    settings: &Settings,
    run_dir: &Path,
) -> Option<restore::scratch::Leftovers> {
    let _lock = match restore::lock::try_take(run_dir) {
        Ok(Some(lock)) => lock,
        Ok(None) => return None,
        Err(e) => {
            tracing::warn!("looking for scratch disks a killed verify left: {e:#}");
            return None;
        }
    };
    let found = async {
        let me = restore::who_am_i(api).await?;
        restore::scratch::clean_up(
            api,
            &machine(settings, run_dir),
            &me,
            &rehearsal(run_dir, DEFAULT_TIMEOUT),
        )
        .await
    }
    .await;
    match found {
        Ok(l) => {
            restore::scratch::record_kept(&crate::monitor::state_dir(settings), &l);
            Some(l)
        }
        Err(e) => {
            // An instance that never verifies may not be allowed GetDisks: said quietly then.
            if settings.verify_every.is_some() {
                tracing::warn!("looking for scratch disks a killed verify left: {e:#}");
            } else {
                tracing::debug!("looking for scratch disks a killed verify left: {e:#}");
            }
            None
        }
    }
}

/// Records the leftovers a rehearsal left alone, for `status` and `check`.
fn record_kept(settings: &Settings, v: &Verification) {
    let l = restore::scratch::Leftovers {
        removed: v.leftovers_removed.clone(),
        kept: v.leftovers_kept.clone(),
    };
    restore::scratch::record_kept(&crate::monitor::state_dir(settings), &l);
}

/// The mount dir of a run directory, for `status`.
pub fn mount_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("verify")
}
