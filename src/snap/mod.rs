//! The orchestration: plan → prepare → freeze → snapshot → thaw → report.
//!
//! Each stage has a room of its own: [`local`] checks the input and resolves paths to
//! filesystems without the network; [`discover`] finds the Lightsail disk behind each and
//! names the snapshots (read-only API calls, which double as the warm-up); this module runs
//! a plan — the lock and recovery record, hooks, the watchdog, `syncfs` — around the
//! [`window`], which quiesces, calls and undoes through the [`machine`]; [`report`] reads
//! what came of it. [`plan`] holds the planning vocabulary and the discovery helpers.

mod auto;
mod discover;
mod local;
mod machine;
pub mod plan;
mod report;
#[cfg(test)]
mod testing;
pub mod wait;
mod window;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::cloud::lightsail::{AutoSnapshotAddOn, Lightsail, SnapshotRequest};
use crate::exit_code::ExitCode;
use crate::fail;
use crate::hooks::{HookEnv, Hooks};
use crate::kernel::{mountinfo, rcu, syncfs};
use crate::runstate::{self, Entry, Quiesce, Record, Stage};
use crate::signals::{already_stopped, unless_stopped, Signals, Stopped, BEFORE_FREEZE};
use machine::Machine;
use plan::{Located, Method};

pub use auto::resource as auto_resource;
pub use discover::plan;
pub use local::{plan_local, validate_options, LocalPlan};
pub use report::{find_snapshot, Report, SnapshotReport};

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
    /// How long to wait, before freezing, for Lightsail's automatic snapshot of a target to
    /// finish (zero: fail at once).
    pub auto_snapshot_wait: Duration,
    /// Mount point patterns `snap-instance` leaves out.
    pub exclude: Vec<String>,
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
    /// The automatic snapshot add-on of the disk (or, for a system volume or a whole
    /// instance, of the instance), if it has one.
    pub auto_snapshot: Option<AutoSnapshotAddOn>,
}

/// Everything a run will do.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// The filesystems, in freezing order (mounts below others first).
    pub filesystems: Vec<Filesystem>,
    /// The snapshots, each of one disk.
    pub snapshots: Vec<Snapshot>,
}

/// `lightsnap freeze-and-snap`, once [`plan_local`] has passed.
pub async fn freeze_and_snap<A: Lightsail>(
    api: &A,
    opts: &Options,
    local: LocalPlan,
    signals: &mut Signals,
) -> Result<Report> {
    runstate::require_root()?;
    let mut run = runstate::Run::begin(&opts.run_dir)?;
    let plan = unless_stopped(signals, BEFORE_FREEZE, plan(api, opts, &local)).await?;
    run_plan(api, opts, &plan, &local.mounts, signals, &mut run).await
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
    let mut run = (!dry_run)
        .then(|| runstate::Run::begin(&opts.run_dir))
        .transpose()?;
    let (plan, mounts) =
        unless_stopped(signals, BEFORE_FREEZE, discover::instance_plan(api, opts)).await?;
    let Some(run) = run.as_mut() else {
        return Ok((plan, None));
    };
    let report = run_plan(api, opts, &plan, &mounts, signals, run).await?;
    Ok((plan, Some(report)))
}

/// Runs a plan: hooks, quiesce, snapshot, undo, report.
async fn run_plan<A: Lightsail>(
    api: &A,
    opts: &Options,
    plan: &Plan,
    mounts: &[mountinfo::Mount],
    signals: &mut Signals,
    run: &mut runstate::Run,
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
        verify_mount: None,
    };
    // Lightsail refuses manual snapshots while it makes an automatic one: wait that out
    // before anything else, the hooks included.
    auto::wait_out(api, plan, false, opts.auto_snapshot_wait, signals).await?;
    let result = match hooks.pre_freeze(&env, signals).await {
        Ok(()) => {
            let mut result = quiesce_and_snap(api, opts, plan, mounts, signals, run).await;
            if result.as_ref().is_err_and(auto::is_refusal) {
                // One began after the look: thawed already; wait for it, then once more.
                tracing::warn!(
                    "Lightsail refused the snapshot: an automatic snapshot began meanwhile; the filesystems are thawed; waiting for it to finish, then trying once more"
                );
                result =
                    match auto::wait_out(api, plan, true, opts.auto_snapshot_wait, signals).await {
                        Ok(()) => quiesce_and_snap(api, opts, plan, mounts, signals, run).await,
                        Err(e) => Err(e),
                    };
            }
            let stopped = result.as_ref().is_err_and(is_stopped);
            if result.is_err() && !stopped {
                env.result = Some("failure");
                if let Err(e) = hooks.freeze_fail(&env).await {
                    tracing::warn!("freeze-fail hooks: {e:#}");
                }
            }
            result
        }
        Err(e) if is_stopped(&e) => Err(e),
        Err(e) => Err(e.context("a pre-freeze hook failed, so nothing was frozen")),
    };
    env.result = Some(match &result {
        Ok(_) => "success",
        Err(e) if is_stopped(e) => "stopped",
        Err(_) => "failure",
    });
    let post_thaw = hooks.post_thaw(&env).await;
    match (result, post_thaw) {
        (result, Ok(())) => result,
        // The snapshot was taken, but an application may not have been resumed: a failed
        // run, which still reports its snapshot.
        (Ok(mut report), Err(e)) => {
            report.post_thaw_failure = Some(format!("{e:#}"));
            Ok(report)
        }
        (Err(run), Err(e)) => {
            tracing::error!("post-thaw hooks: {e:#}");
            Err(run)
        }
    }
}

/// Asks for every snapshot of the plan at once (read-only), refusing a name taken meanwhile.
async fn warm_up<A: Lightsail>(api: &A, plan: &Plan) -> Result<()> {
    let requests: Vec<SnapshotRequest> = plan.snapshots.iter().map(|s| s.request.clone()).collect();
    let found = api
        .warm_up(&requests)
        .await
        .context("the last calls before freezing")?;
    for (s, found) in plan.snapshots.iter().zip(found) {
        if found.is_some() {
            fail!(
                ExitCode::Usage,
                "a snapshot named {} appeared while preparing; choose another --snapshot-name",
                s.request.name
            );
        }
    }
    Ok(())
}

/// Refuses a run directory on a filesystem the plan quiesces: the watchdog writes the recovery
/// record there while it is frozen, and a write to a frozen filesystem never returns.
fn run_dir_apart(run_dir: &std::path::Path, plan: &Plan) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(run_dir)
        .with_context(|| format!("reading {}", run_dir.display()))?
        .dev();
    for f in plan.filesystems.iter().filter(|f| f.quiesce.is_some()) {
        let point = &f.located.mount.mount_point;
        if std::fs::metadata(point).is_ok_and(|m| m.dev() == dev) {
            fail!(
                ExitCode::Usage,
                "the run directory {} is on {}, which this run would freeze or unmount; give a run directory on a tmpfs (--run-dir, default {}); nothing was frozen",
                run_dir.display(),
                point.display(),
                runstate::DEFAULT_RUN_DIR
            );
        }
    }
    Ok(())
}

/// Whether a run ended on a stop request.
fn is_stopped(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<Stopped>())
}

/// Watchdog, recovery record, `syncfs`, the window, and what came of it.
async fn quiesce_and_snap<A: Lightsail>(
    api: &A,
    opts: &Options,
    plan: &Plan,
    mounts: &[mountinfo::Mount],
    signals: &mut Signals,
    run: &mut runstate::Run,
) -> Result<Report> {
    let fss = &plan.filesystems;
    let settings = window::Settings {
        deadline: opts.freeze_timeout,
        unmount_fallback: opts.method == Method::Auto,
        allow_crash_consistent: opts.allow_crash_consistent,
    };
    // Our own descriptors and the watchdog, which does the freezing; the recovery record. A
    // stop request already made ends the run before the watchdog starts.
    already_stopped(signals, BEFORE_FREEZE).await?;
    run_dir_apart(&opts.run_dir, plan)?;
    let mut machine = Machine::start(
        plan,
        mounts,
        opts.freeze_timeout + WATCHDOG_GRACE,
        opts.expedite_freeze,
        &opts.run_dir,
    )?;
    run.record(&Record {
        pid: std::process::id(),
        entries: fss
            .iter()
            .enumerate()
            .filter_map(|(i, f)| {
                f.quiesce.map(|q| Entry {
                    quiesce: q,
                    mount: f.located.mount.clone(),
                    unmount_fallback: q == Quiesce::Freeze && settings.unmount_fallback,
                    index: Some(i),
                    stage: Some(Stage::Planned),
                })
            })
            .collect(),
        rcu_expedited: rcu::would_turn_on(opts.expedite_freeze),
    })?;
    // Then flush, so the freeze has little left to write; and the last warm-up, after the
    // hooks and the flush (which may take long enough for an idle connection to be closed):
    // one call per snapshot, all at once, so the pool holds a connection for each call the
    // window will make together. It also checks once more that every name is still free. A
    // stop request meanwhile ends the run here too.
    let ready = async {
        for f in fss.iter().filter(|f| opts.syncfs && f.quiesce.is_some()) {
            let point = &f.located.mount.mount_point;
            syncfs(point).with_context(|| format!("syncfs on {}", point.display()))?;
        }
        unless_stopped(signals, BEFORE_FREEZE, warm_up(api, plan)).await
    }
    .await;
    if let Err(e) = ready {
        // Nothing is frozen: the record goes, the watchdog with it.
        run.undone()?;
        if let Err(w) = machine.finish() {
            tracing::warn!("{w:#}");
        }
        return Err(e);
    }

    let outcome = window::run(api, plan, &mut machine, &settings, signals).await;

    let watchdog_end = machine.finish();
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
            run.dir().display()
        );
    }
    if let Err(e) = watchdog_end {
        tracing::warn!("{e:#}");
    }
    run.undone()?;
    if outcome.thawed_by_watchdog {
        tracing::warn!("the watchdog's deadline thawed a filesystem before the agent did");
    }
    report::report(api, opts, plan, outcome).await
}
