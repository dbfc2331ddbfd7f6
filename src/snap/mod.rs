//! The orchestration: plan → prepare → freeze → snapshot → thaw → report.
//!
//! Everything slow or fallible happens before the window (validation, discovery, a warm-up
//! call, the lock, the watchdog, the recovery record, `syncfs`); the window itself is
//! [`window::run`]; what comes after only reads the outcome, checks ambiguous ones with the
//! API, and builds the report.

pub mod plan;
pub mod wait;
mod window;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::cloud::lightsail::{ApiError, ApiErrorKind, Lightsail, SnapshotRequest, Source};
use crate::cloud::validate;
use crate::cloud::{ebs, imds};
use crate::exit_code::ExitCode;
use crate::fail;
use crate::hooks::{HookEnv, Hooks};
use crate::kernel::freeze::MountHandle;
use crate::kernel::{blockdev, guard, mountinfo, syncfs};
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
    /// Whether to flush (`syncfs`) before freezing, so the freeze has little left to write.
    pub syncfs: bool,
    /// Whether to expedite the kernel's RCU grace periods during the freeze calls.
    pub expedite_freeze: bool,
    /// Where the lock and recovery record live.
    pub run_dir: PathBuf,
    /// The snapshot name template (when no name is given).
    pub name_template: String,
    /// Paths → disks from the configuration.
    pub disk_map: Vec<crate::config::SnapshotEntry>,
    /// The hook directory.
    pub hook_dir: PathBuf,
    /// How long one hook may run.
    pub hook_timeout: Duration,
}

/// A filesystem to quiesce: the unit of freezing (a superblock, however many paths or mounts
/// lead to it).
#[derive(Debug, Clone, Serialize)]
pub struct Filesystem {
    /// The mount it is quiesced through, its block device, and the first path given on it.
    pub located: Located,
    /// Every path given that is on it.
    pub paths: Vec<PathBuf>,
    /// How it will be quiesced first (`None`: a read-only filesystem needs nothing).
    pub quiesce: Option<Quiesce>,
    /// Its freezing wave: every filesystem that lives on this one (mounted below it, or on a
    /// loop device over a file in it) is in an earlier wave. A wave is frozen all at once.
    pub wave: usize,
}

/// One snapshot to take: a Lightsail disk (or system volume), and the filesystems on it.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// The CreateDiskSnapshot call, without its consistency tag (added in the window).
    pub request: SnapshotRequest,
    /// Indices into [`Plan::filesystems`] of the filesystems on this disk.
    pub filesystems: Vec<usize>,
    /// The whole block devices behind it, as this instance sees them (`/dev/xvdf`,
    /// `/dev/nvme1n1`).
    pub devices: Vec<PathBuf>,
}

/// Everything a run will do.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// The filesystems, in freezing order (mounts below others first).
    pub filesystems: Vec<Filesystem>,
    /// The snapshots, each of one disk.
    pub snapshots: Vec<Snapshot>,
}

/// One snapshot's line in the report.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotReport {
    /// Snapshot name.
    pub name: String,
    /// What it is of.
    pub source: Source,
    /// The mount points of the filesystems on it.
    pub mount_points: Vec<PathBuf>,
    /// Their types.
    pub fstypes: Vec<String>,
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
                Consistency::Unmounted => format!(
                    "unmounted (could not freeze), offline {:.1} ms",
                    self.window_ms
                ),
                Consistency::Readonly => "read-only, no freeze needed".to_string(),
                Consistency::Crash => "NOT paused: crash-consistent only".to_string(),
                Consistency::Unverified => "unverified".to_string(),
            };
            let on: Vec<String> = s
                .mount_points
                .iter()
                .zip(&s.fstypes)
                .map(|(m, t)| format!("{} ({t})", m.display()))
                .collect();
            writeln!(
                f,
                "snapshot {} of {} from {}: {how}",
                s.name,
                s.source,
                on.join(", ")
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
    if opts.paths.is_empty() {
        fail!(ExitCode::Usage, "give at least one path");
    }
    Ok(())
}

/// What can be known about the targets without the network: checked before the AWS
/// configuration is even loaded, so bad input fails fast and touches nothing.
#[derive(Debug, Clone)]
pub struct Local {
    filesystems: Vec<Filesystem>,
    mounts: Vec<mountinfo::Mount>,
}

/// Validates the options and resolves the paths to filesystems: several paths on one
/// filesystem (bind mounts, a second mount of the same device) are one filesystem, frozen
/// once; mounts below others come first, so a parent is never frozen while a child still
/// has to be reached through it.
pub fn plan_local(opts: &Options) -> Result<Local> {
    validate_options(opts)?;
    check_stale_record(&opts.run_dir, false)?;
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
    assign_waves(&mut filesystems, &blockdev::Root::default());
    Ok(Local {
        filesystems,
        mounts,
    })
}

/// Sets each filesystem's freezing wave. Freezing one flushes it to its device; if that device
/// is a file on another filesystem of the group (a loop device), or the filesystem is reached
/// through another's mount, the other must still take writes: it goes in a later wave.
fn assign_waves(filesystems: &mut [Filesystem], root: &blockdev::Root) {
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

/// Discovery: the Lightsail disk (or system volume) behind each filesystem, the snapshot
/// names, and the calls to make, one per disk. Read-only API calls only (they double as the
/// warm-up: connection, DNS and credentials are ready before any freeze, so the call inside
/// the window is one round trip). Shared by `freeze-and-snap` and `plan`.
pub async fn plan<A: Lightsail>(api: &A, opts: &Options, local: &Local) -> Result<Plan> {
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
        let disks = match plan::whole_disks(&blockdev::Root::default(), located) {
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
                "{} spans {} disks; a single --disk-name cannot name them all: leave it out to find them",
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
                None => snapshots.push(Snapshot {
                    request: SnapshotRequest {
                        source,
                        name: String::new(),
                        tags: opts.tags.clone(),
                    },
                    filesystems: vec![index],
                    devices: vec![ids.dev_path.clone()],
                }),
            }
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

/// `lightsnap freeze-and-snap`, once [`plan_local`] has passed.
pub async fn freeze_and_snap<A: Lightsail>(
    api: &A,
    opts: &Options,
    local: Local,
    signals: &mut Signals,
) -> Result<Report> {
    runstate::require_root()?;
    let _lock = runstate::lock(&opts.run_dir)?;
    let plan = plan(api, opts, &local).await?;
    run_plan(api, opts, &plan, &local.mounts, signals).await
}

/// `lightsnap snap-instance`: every block filesystem on this instance's Lightsail disks,
/// frozen together around one CreateInstanceSnapshot.
pub async fn snap_instance<A: Lightsail>(
    api: &A,
    opts: &Options,
    signals: &mut Signals,
    dry_run: bool,
) -> Result<(Plan, Option<Report>)> {
    validate_options(&Options {
        paths: vec![PathBuf::from("/")],
        ..opts.clone()
    })?;
    if !dry_run {
        runstate::require_root()?;
    }
    let _lock = (!dry_run)
        .then(|| runstate::lock(&opts.run_dir))
        .transpose()?;
    let mut discovery = plan::Discovery::new(api, async {
        Ok(imds::identity(Duration::from_secs(2)).await?)
    });
    let me = discovery.instance().await?.clone();
    let mounts = mountinfo::read()?;
    let root = blockdev::Root::default();
    // Every mount on a block device whose disks are this instance's.
    let mut paths = Vec::new();
    let mut devices: Vec<PathBuf> = Vec::new();
    for m in &mounts {
        let Ok(located) = plan::locate(&m.mount_point, &mounts) else {
            continue;
        };
        if located.mount.id != m.id {
            continue; // hidden by a later mount on the same point
        }
        let Ok(disks) = plan::whole_disks(&root, &located) else {
            continue;
        };
        let ours: Vec<&ebs::DiskIds> = disks
            .iter()
            .filter(|ids| me.disks.iter().any(|d| plan::is_disk(d, ids)))
            .collect();
        if !ours.is_empty() {
            paths.push(m.mount_point.clone());
            for ids in ours {
                if !devices.contains(&ids.dev_path) {
                    devices.push(ids.dev_path.clone());
                }
            }
        }
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
        tags: opts.tags.clone(),
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
        }],
        filesystems: local.filesystems,
    };
    if dry_run {
        return Ok((plan, None));
    }
    let report = run_plan(api, opts, &plan, &mounts, signals).await?;
    Ok((plan, Some(report)))
}

/// Runs a plan: hooks, quiesce, snapshot, undo, report.
async fn run_plan<A: Lightsail>(
    api: &A,
    opts: &Options,
    plan: &Plan,
    mounts: &[mountinfo::Mount],
    signals: &mut Signals,
) -> Result<Report> {
    // Hooks around everything that quiesces: pre-freeze before, post-thaw after, even when
    // a pre-freeze hook or anything in between fails.
    let mut hooks = Hooks::load(&opts.hook_dir, opts.hook_timeout)?;
    let mut env = HookEnv {
        paths: plan
            .filesystems
            .iter()
            .flat_map(|f| f.paths.clone())
            .collect(),
        disks: plan
            .snapshots
            .iter()
            .map(|s| plan::source_label(&s.request.source))
            .collect(),
        snapshots: plan
            .snapshots
            .iter()
            .map(|s| s.request.name.clone())
            .collect(),
        result: None,
    };
    let result = match hooks.pre_freeze(&env) {
        Ok(()) => quiesce_and_snap(api, opts, plan, mounts, signals).await,
        Err(e) => Err(e.context("a pre-freeze hook failed, so nothing was frozen")),
    };
    env.result = Some(if result.is_ok() { "success" } else { "failure" });
    if let Err(e) = hooks.post_thaw(&env) {
        tracing::warn!("post-thaw hooks: {e:#}");
    }
    result
}

/// A recovery record left by an earlier run (we hold the lock, so that run is gone). Its
/// watchdog thawed what it froze when it died, unless it was killed too (a freeze still in
/// place makes this run's FIFREEZE answer EBUSY: refused, left as it is). What it unmounted
/// nobody mounted again: refuse until an operator has run `thaw --recover`, rather than
/// overwrite the only record of it.
///
/// Checked twice: first thing, before the paths are resolved (an unmounted `/data` resolves
/// to `/`, which is not what the operator means), skipping a record whose run is alive (the
/// lock speaks for it); then under the lock, where it also says it replaces the record.
fn check_stale_record(run_dir: &std::path::Path, locked: bool) -> Result<()> {
    let Some(old) = runstate::read_record(run_dir)? else {
        return Ok(());
    };
    let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(old.pid as i32), None).is_ok();
    if !locked && alive {
        return Ok(());
    }
    let mut unmounted = Vec::new();
    for e in old.entries.iter().filter(|e| e.quiesce == Quiesce::Unmount) {
        let point = &e.mount.mount_point;
        if !crate::kernel::unmount::is_back(&e.mount)? {
            unmounted.push(format!("{} from {}", point.display(), e.mount.source));
        }
    }
    if !unmounted.is_empty() {
        fail!(
            ExitCode::Busy,
            "an earlier run (pid {}) was interrupted and left {} unmounted; run `lightsnap thaw --recover` to mount it again, then retry",
            old.pid,
            unmounted.join(", ")
        );
    }
    if locked {
        tracing::warn!(
            "an earlier run (pid {}) was interrupted; what it quiesced has been undone: replacing its recovery record",
            old.pid
        );
    }
    Ok(())
}

/// Watchdog, recovery record, `syncfs`, the window, and what came of it.
async fn quiesce_and_snap<A: Lightsail>(
    api: &A,
    opts: &Options,
    plan: &Plan,
    mounts: &[mountinfo::Mount],
    signals: &mut Signals,
) -> Result<Report> {
    let fss = &plan.filesystems;
    check_stale_record(&opts.run_dir, true)?;

    // Descriptors of our own, to thaw with if the watchdog dies; the watchdog, which does the
    // freezing; the recovery record; then flush, so the freeze has little left to write.
    let own_handles: Vec<Option<MountHandle>> = fss
        .iter()
        .map(|f| match f.quiesce {
            Some(Quiesce::Freeze) => MountHandle::open(&f.located.mount.mount_point)
                .map(Some)
                .map_err(anyhow::Error::from),
            _ => Ok(None),
        })
        .collect::<Result<_>>()?;
    // The watchdog holds descriptors only of what is to be frozen: one of a mount to be
    // unmounted would keep it busy.
    let mount_points: Vec<Option<PathBuf>> = fss
        .iter()
        .map(|f| (f.quiesce == Some(Quiesce::Freeze)).then(|| f.located.mount.mount_point.clone()))
        .collect();
    let mut watchdog = Watchdog::start(
        &mount_points,
        opts.freeze_timeout + WATCHDOG_GRACE,
        opts.expedite_freeze,
    )?;
    if !watchdog.memory_locked {
        tracing::warn!("the watchdog could not lock its memory (mlockall)");
    }
    let record = Record {
        pid: std::process::id(),
        entries: fss
            .iter()
            .filter_map(|f| {
                f.quiesce.map(|q| Entry {
                    quiesce: q,
                    mount: f.located.mount.clone(),
                })
            })
            .collect(),
        rcu_expedited: opts.expedite_freeze && runstate::rcu_expedited() == Some(false),
    };
    runstate::write_record(&opts.run_dir, &record)?;
    for f in fss.iter().filter(|f| opts.syncfs && f.quiesce.is_some()) {
        syncfs(&f.located.mount.mount_point)
            .with_context(|| format!("syncfs on {}", f.located.mount.mount_point.display()))?;
    }

    let settings = window::Settings {
        deadline: opts.freeze_timeout,
        unmount_fallback: opts.method == Method::Auto,
        allow_crash_consistent: opts.allow_crash_consistent,
        mounts,
    };
    let outcome = window::run(api, plan, &mut watchdog, &own_handles, &settings, signals).await;

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
        tracing::warn!("the watchdog's deadline thawed a filesystem before the agent did");
    }
    let window_ms = outcome.window.as_secs_f64() * 1000.0;
    tracing::debug!("window: {window_ms:.3} ms");
    report(api, opts, plan, outcome, window_ms).await
}

/// Reads the window's outcome: the report, or the error with the right exit code.
async fn report<A: Lightsail>(
    api: &A,
    opts: &Options,
    plan: &Plan,
    outcome: window::Outcome,
    window_ms: f64,
) -> Result<Report> {
    let report_of = |i: usize, operation_id: Option<String>| {
        let s = &plan.snapshots[i];
        let fss = s.filesystems.iter().map(|&f| &plan.filesystems[f]);
        SnapshotReport {
            name: s.request.name.clone(),
            source: s.request.source.clone(),
            mount_points: fss
                .clone()
                .map(|f| f.located.mount.mount_point.clone())
                .collect(),
            fstypes: fss.map(|f| f.located.mount.fstype.clone()).collect(),
            consistency: outcome.consistency[i],
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
        window::Calls::Deadline => deadline_passed(api, opts, &outcome.requests).await,
        window::Calls::Returned(results) => {
            let mut snapshots = Vec::new();
            let mut errors: Vec<ApiError> = Vec::new();
            let mut ambiguous = Vec::new();
            for (i, result) in results.into_iter().enumerate() {
                match result {
                    Ok(op) => snapshots.push(report_of(i, op.id)),
                    // The name was free before the freeze: our own earlier attempt landed,
                    // and it was sent inside the window.
                    Err(e) if e.name_exists() => snapshots.push(report_of(i, None)),
                    Err(e) => {
                        if e.is_ambiguous() {
                            ambiguous.push(outcome.requests[i].clone());
                        }
                        errors.push(e);
                    }
                }
            }
            let Some(first) = errors.into_iter().next() else {
                return Ok(Report {
                    snapshots,
                    window_ms,
                });
            };
            // The SDK's own operation timeout is the deadline too (it is set to the time left):
            // whichever fires first, it is the same event.
            if snapshots.is_empty() && first.kind == ApiErrorKind::Timeout {
                return deadline_passed(api, opts, &outcome.requests).await;
            }
            let unverified = mark_unverified(api, &ambiguous).await;
            if !snapshots.is_empty() || !unverified.is_empty() {
                let taken: Vec<&str> = snapshots.iter().map(|s| s.name.as_str()).collect();
                fail!(
                    ExitCode::Partial,
                    "{first}; taken: {}; {}",
                    if taken.is_empty() {
                        "none".to_string()
                    } else {
                        taken.join(", ")
                    },
                    unverified_note(&unverified)
                );
            }
            let advice = first.advice();
            Err(anyhow::Error::new(first).context(format!("no snapshot was taken; {advice}")))
        }
    }
}

/// The freeze deadline passed with the calls unanswered: the filesystems are thawed; says
/// whether the snapshots landed anyway (and labels them `unverified`).
async fn deadline_passed<A: Lightsail>(
    api: &A,
    opts: &Options,
    requests: &[SnapshotRequest],
) -> Result<Report> {
    let unverified = mark_unverified(api, requests).await;
    fail!(
        ExitCode::DeadlineExceeded,
        "Lightsail did not answer within --freeze-timeout {}, so the filesystem was thawed and the call abandoned; {}; raise --freeze-timeout or check the network",
        humantime::format_duration(opts.freeze_timeout),
        unverified_note(&unverified)
    )
}

/// The snapshot a request makes, if it exists: a disk snapshot, or an instance snapshot.
pub async fn find_snapshot<A: Lightsail>(
    api: &A,
    request: &SnapshotRequest,
) -> Result<Option<crate::cloud::lightsail::SnapshotInfo>, ApiError> {
    match request.source {
        Source::Instance(_) => api.get_instance_snapshot(&request.name).await,
        _ => api.get_disk_snapshot(&request.name).await,
    }
}

/// After an abandoned or failed call: asks whether each snapshot exists anyway and, where it
/// does, relabels it `unverified` (it may have been taken after the thaw). Returns their names.
async fn mark_unverified<A: Lightsail>(api: &A, requests: &[SnapshotRequest]) -> Vec<String> {
    let mut found = Vec::new();
    for r in requests {
        match find_snapshot(api, r).await {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn fs(mount_point: &str, device: &str) -> Filesystem {
        let mount = mountinfo::Mount {
            id: 1,
            parent_id: 0,
            dev: (7, 0),
            root: "/".into(),
            mount_point: mount_point.into(),
            mount_options: "rw".into(),
            fstype: "ext4".into(),
            source: device.into(),
            super_options: "rw".into(),
        };
        Filesystem {
            located: Located {
                path: mount_point.into(),
                mount,
                block_device: device.into(),
            },
            paths: vec![mount_point.into()],
            quiesce: Some(Quiesce::Freeze),
            wave: 0,
        }
    }

    /// Independent filesystems freeze together; one below another, or on a loop device over
    /// a file in another, goes first.
    #[test]
    fn waves_put_what_lives_on_a_filesystem_before_it() {
        let sys = tempfile::tempdir().unwrap();
        let backing = sys.path().join("sys/block/loop7/loop/backing_file");
        std::fs::create_dir_all(backing.parent().unwrap()).unwrap();
        std::fs::write(&backing, "/srv/images/db.img\n").unwrap();
        let root = blockdev::Root::at(sys.path());

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
