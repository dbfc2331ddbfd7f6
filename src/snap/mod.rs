//! The orchestration: plan → prepare → freeze → snapshot → thaw → report.
//!
//! Everything slow or fallible happens before the window (validation, discovery, a warm-up
//! call, the lock, the watchdog, the recovery record, `syncfs`); the window itself is
//! [`window::run`]; what comes after only reads the outcome, checks ambiguous ones with the
//! API, and builds the report.

pub mod plan;
mod window;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::cloud::imds;
use crate::cloud::lightsail::{ApiError, Lightsail, SnapshotRequest, Source};
use crate::cloud::validate;
use crate::exit_code::ExitCode;
use crate::fail;
use crate::kernel::freeze::MountHandle;
use crate::kernel::{guard, mountinfo, syncfs};
use crate::runstate::{self, Entry, Quiesce, Record};
use crate::signals::{self, Signals};
use crate::watchdog::Watchdog;
use plan::{Consistency, Located, Method, CONSISTENCY_TAG};

/// Extra time the watchdog gives the agent past the deadline before thawing on its own: the
/// agent thaws at the deadline itself; the watchdog is for an agent that cannot.
const WATCHDOG_GRACE: Duration = Duration::from_millis(500);

/// What `freeze-and-snap` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// The paths whose filesystems to snapshot.
    pub paths: Vec<PathBuf>,
    /// The Lightsail disk, when the operator names it.
    pub disk_name: Option<String>,
    /// The snapshot name, when the operator gives it.
    pub snapshot_name: Option<String>,
    /// Tags from the operator, validated.
    pub tags: Vec<(String, String)>,
    /// Freeze, unmount, or freeze with unmount as the fallback.
    pub method: Method,
    /// How long writes may be paused.
    pub freeze_timeout: Duration,
    /// Whether to go on without pausing writes when a freeze is refused.
    pub allow_crash_consistent: bool,
    /// Where the lock and recovery record live.
    pub run_dir: PathBuf,
    /// The snapshot name template (when no name is given).
    pub name_template: String,
    /// Paths → disks from the configuration.
    pub disk_map: Vec<crate::config::SnapshotEntry>,
}

/// One target: a filesystem, how it will be quiesced, and its snapshot call.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// Path, mount, block device.
    pub located: Located,
    /// How it will be quiesced first (`None`: a read-only filesystem needs nothing).
    pub quiesce: Option<Quiesce>,
    /// The CreateDiskSnapshot call, without its consistency tag (added in the window).
    pub request: SnapshotRequest,
}

/// One snapshot's line in the report.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotReport {
    /// Snapshot name.
    pub name: String,
    /// What it is of.
    pub source: Source,
    /// The path given.
    pub path: PathBuf,
    /// Its mount point.
    pub mount_point: PathBuf,
    /// Filesystem type.
    pub fstype: String,
    /// How it was made consistent.
    pub consistency: Consistency,
    /// Operation id.
    pub operation_id: Option<String>,
}

/// What a successful run did.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The snapshots taken.
    pub snapshots: Vec<SnapshotReport>,
    /// How long writes were paused, in milliseconds.
    pub window_ms: f64,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for s in &self.snapshots {
            let how = match s.consistency {
                Consistency::Frozen => format!("frozen, writes paused {:.1} ms", self.window_ms),
                Consistency::Unmounted => {
                    format!(
                        "unmounted (could not freeze), offline {:.1} ms",
                        self.window_ms
                    )
                }
                Consistency::Readonly => "read-only, no freeze needed".to_string(),
                Consistency::Crash => "NOT paused: crash-consistent only".to_string(),
                Consistency::Unverified => "unverified".to_string(),
            };
            writeln!(
                f,
                "snapshot {} of {} from {} ({} on {}): {how}",
                s.name,
                s.source,
                s.path.display(),
                s.fstype,
                s.mount_point.display()
            )?;
        }
        Ok(())
    }
}

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
    validate::tags(&all)?;
    if opts.freeze_timeout.is_zero() {
        fail!(ExitCode::Usage, "--freeze-timeout must be more than 0");
    }
    if opts.paths.len() != 1 {
        fail!(
            ExitCode::Usage,
            "freeze-and-snap takes exactly one path for now (got {})",
            opts.paths.len()
        );
    }
    Ok(())
}

/// What can be known about the targets without the network: checked before the AWS
/// configuration is even loaded, so bad input fails fast and touches nothing.
#[derive(Debug, Clone)]
pub struct Local {
    located: Located,
    quiesce: Option<Quiesce>,
    mounts: Vec<mountinfo::Mount>,
}

/// Validates the options and resolves the paths to mounts and block devices.
pub fn plan_local(opts: &Options) -> Result<Local> {
    validate_options(opts)?;
    let mounts = mountinfo::read()?;
    let located = plan::locate(&opts.paths[0], &mounts)?;
    let mount = &located.mount;
    if located.path != mount.mount_point {
        tracing::info!(
            "{} is on the filesystem mounted at {}: snapshotting that",
            located.path.display(),
            mount.mount_point.display()
        );
    }
    let quiesce = plan::first_method(mount, opts.method)?;
    if quiesce.is_some() {
        // Fail before any API call if the guard would refuse the mount later.
        guard::check(&mount.mount_point)?;
    } else {
        tracing::info!(
            "{} is mounted read-only: nothing can write to it, no freeze needed",
            mount.mount_point.display()
        );
    }
    Ok(Local {
        located,
        quiesce,
        mounts,
    })
}

/// Discovery: the Lightsail disk (or system volume) behind each path, the snapshot names, and
/// the calls to make. Read-only API calls only (they double as the warm-up: connection, DNS
/// and credentials are ready before any freeze, so the call inside the window is one round
/// trip). Shared by `freeze-and-snap` and `plan`.
pub async fn targets<A: Lightsail>(api: &A, opts: &Options, local: &Local) -> Result<Vec<Target>> {
    let located = &local.located;
    let mount = &located.mount;
    let configured = opts
        .disk_map
        .iter()
        .find(|e| e.path == located.path || e.path == mount.mount_point)
        .and_then(|e| e.disk.as_deref());
    let (source, disk) = plan::find_source(
        api,
        opts.disk_name.as_deref().or(configured),
        &located.block_device,
        async { Ok(imds::identity(Duration::from_secs(2)).await?) },
    )
    .await?;
    tracing::info!(
        "{} is on {} (Lightsail {}, path {})",
        mount.mount_point.display(),
        located.block_device.display(),
        source,
        disk.path.as_deref().unwrap_or("?")
    );
    let name = match &opts.snapshot_name {
        Some(n) => n.clone(),
        None => crate::config::render_name(
            &opts.name_template,
            &plan::source_label(&source),
            SystemTime::now(),
        )?,
    };
    validate::name("snapshot name", &name)?;
    if api
        .get_disk_snapshot(&name)
        .await
        .context("checking the snapshot name is free")?
        .is_some()
    {
        fail!(
            ExitCode::Usage,
            "a disk snapshot named {name} already exists; choose another --snapshot-name"
        );
    }
    Ok(vec![Target {
        located: located.clone(),
        quiesce: local.quiesce,
        request: SnapshotRequest {
            source,
            name,
            tags: opts.tags.clone(),
        },
    }])
}

/// `lightsnap freeze-and-snap`, once [`plan_local`] has passed.
pub async fn freeze_and_snap<A: Lightsail>(
    api: &A,
    opts: &Options,
    local: Local,
    signals: &mut Signals,
) -> Result<Report> {
    let _lock = runstate::lock(&opts.run_dir)?;
    let targets = targets(api, opts, &local).await?;
    let mounts = local.mounts;

    // Descriptors of our own, to thaw with if the watchdog dies; the watchdog, which does the
    // freezing; the recovery record; then flush, so the freeze has little left to write.
    let own_handles: Vec<Option<MountHandle>> = targets
        .iter()
        .map(|t| match t.quiesce {
            Some(Quiesce::Freeze) => MountHandle::open(&t.located.mount.mount_point)
                .map(Some)
                .map_err(anyhow::Error::from),
            _ => Ok(None),
        })
        .collect::<Result<_>>()?;
    let mount_points: Vec<PathBuf> = targets
        .iter()
        .map(|t| t.located.mount.mount_point.clone())
        .collect();
    let mut watchdog = Watchdog::start(&mount_points, opts.freeze_timeout + WATCHDOG_GRACE)?;
    if !watchdog.memory_locked {
        tracing::warn!("the watchdog could not lock its memory (mlockall)");
    }
    let record = Record {
        pid: std::process::id(),
        entries: targets
            .iter()
            .filter_map(|t| {
                t.quiesce.map(|q| Entry {
                    quiesce: q,
                    mount: t.located.mount.clone(),
                })
            })
            .collect(),
    };
    runstate::write_record(&opts.run_dir, &record)?;
    for t in targets.iter().filter(|t| t.quiesce.is_some()) {
        syncfs(&t.located.mount.mount_point)
            .with_context(|| format!("syncfs on {}", t.located.mount.mount_point.display()))?;
    }

    let settings = window::Settings {
        deadline: opts.freeze_timeout,
        unmount_fallback: opts.method == Method::Auto,
        allow_crash_consistent: opts.allow_crash_consistent,
        mounts: &mounts,
    };
    let outcome = window::run(
        api,
        &targets,
        &mut watchdog,
        &own_handles,
        &settings,
        signals,
    )
    .await;

    let watchdog_end = watchdog.finish();
    if !outcome.undo_errors.is_empty() {
        let list: Vec<String> = outcome
            .undo_errors
            .iter()
            .map(|e| format!("  {e:#}"))
            .collect();
        fail!(
            ExitCode::Failure,
            "could not undo the freeze or unmount of:\n{}\nrun `lightsnap thaw --recover` (the recovery record in {} names them)",
            list.join("\n"),
            opts.run_dir.display()
        );
    }
    if let Err(e) = watchdog_end {
        tracing::warn!("{e:#}");
    }
    runstate::clear_record(&opts.run_dir)?;
    if outcome.thawed_by_watchdog {
        tracing::warn!("the watchdog's deadline thawed the filesystem before the agent did");
    }
    let window_ms = outcome.window.as_secs_f64() * 1000.0;
    tracing::debug!("window: {window_ms:.3} ms");

    let report_of = |i: usize, consistency: Consistency, operation_id: Option<String>| {
        let t = &targets[i];
        SnapshotReport {
            name: t.request.name.clone(),
            source: t.request.source.clone(),
            path: t.located.path.clone(),
            mount_point: t.located.mount.mount_point.clone(),
            fstype: t.located.mount.fstype.clone(),
            consistency,
            operation_id,
        }
    };
    match outcome.calls {
        window::Calls::NotMade(e) => Err(e.context("no snapshot was taken")),
        window::Calls::Signal(code) => {
            let unverified = mark_unverified(api, &outcome.requests).await;
            fail!(
                code,
                "stopped by {} after thawing; {}",
                signals::name(code),
                unverified_note(&unverified)
            )
        }
        window::Calls::Deadline => {
            let unverified = mark_unverified(api, &outcome.requests).await;
            fail!(
                ExitCode::DeadlineExceeded,
                "Lightsail did not answer within --freeze-timeout {}, so the filesystem was thawed and the call abandoned; {}; raise --freeze-timeout or check the network",
                humantime::format_duration(opts.freeze_timeout),
                unverified_note(&unverified)
            )
        }
        window::Calls::Returned(results) => {
            let mut snapshots = Vec::new();
            let mut errors: Vec<ApiError> = Vec::new();
            let mut ambiguous = Vec::new();
            for (i, result) in results.into_iter().enumerate() {
                match result {
                    Ok(op) => snapshots.push(report_of(i, outcome.consistency[i], op.id)),
                    // The name was free before the freeze: our own earlier attempt landed,
                    // and it was sent inside the window.
                    Err(e) if e.name_exists() => {
                        snapshots.push(report_of(i, outcome.consistency[i], None))
                    }
                    Err(e) => {
                        if e.is_ambiguous() {
                            ambiguous.push(outcome.requests[i].clone());
                        }
                        errors.push(e);
                    }
                }
            }
            if let Some(first) = errors.into_iter().next() {
                let unverified = mark_unverified(api, &ambiguous).await;
                if !unverified.is_empty() {
                    fail!(
                        ExitCode::Partial,
                        "{first}; {}",
                        unverified_note(&unverified)
                    );
                }
                let advice = first.advice();
                return Err(
                    anyhow::Error::new(first).context(format!("no snapshot was taken; {advice}"))
                );
            }
            Ok(Report {
                snapshots,
                window_ms,
            })
        }
    }
}

/// After an abandoned or failed call: asks whether each snapshot exists anyway and, where it
/// does, relabels it `unverified` (it may have been taken after the thaw). Returns their names.
async fn mark_unverified<A: Lightsail>(api: &A, requests: &[SnapshotRequest]) -> Vec<String> {
    let mut found = Vec::new();
    for r in requests {
        match api.get_disk_snapshot(&r.name).await {
            Ok(Some(_)) => {
                let tag = [(
                    CONSISTENCY_TAG.to_string(),
                    Consistency::Unverified.as_str().to_string(),
                )];
                if let Err(e) = api.tag_resource(&r.name, &tag).await {
                    tracing::warn!("could not tag {} as unverified: {e}", r.name);
                }
                found.push(r.name.clone());
            }
            Ok(None) => {}
            Err(e) => tracing::warn!("could not check whether snapshot {} exists: {e}", r.name),
        }
    }
    found
}

fn unverified_note(names: &[String]) -> String {
    if names.is_empty() {
        "no snapshot was taken".to_string()
    } else {
        format!(
            "snapshot {} exists but may have been taken after the thaw: tagged {CONSISTENCY_TAG}=unverified; delete it or take another",
            names.join(", ")
        )
    }
}
