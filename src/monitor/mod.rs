//! Knowing that snapshots happen: what a snapshot run leaves behind for people and monitoring
//! once it is over — the state file of each target ([`state`]), the journal's snapshot and
//! outcome events, the Prometheus textfile metrics ([`metrics`]) and the dead-man's-switch
//! pings ([`ping`]). A [`Monitor`] is made before anything is frozen (refusing a directory it
//! could not write in, sending the start ping) and finished after everything is thawed; it
//! never writes in between.

pub mod metrics;
pub mod ping;
pub mod state;

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Result;

use crate::cloud::lightsail::Source;
use crate::config::Settings;
use crate::exit_code::ExitCode;
use crate::snap::Report;
use state::{Attempt, Success, TargetState};

/// The target of `snap-instance`.
pub const INSTANCE_TARGET: &str = "instance";

/// The error a command folded into its `--output json` document, for the state file.
static NOTED_ERROR: Mutex<Option<String>> = Mutex::new(None);

/// Notes the error of a run whose command reports it itself (`--output json`).
pub fn note_error(message: &str) {
    *NOTED_ERROR.lock().unwrap_or_else(|p| p.into_inner()) = Some(message.to_string());
}

/// The state directory in force: the configuration's `state_dir`, or in a build with the test
/// switches ([`crate::test_switch`]) `LIGHTSNAP_STATE_DIR`.
pub fn state_dir(settings: &Settings) -> PathBuf {
    crate::test_switch!("LIGHTSNAP_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| settings.state_dir.clone())
}

/// The targets of paths as given: absolute and without symbolic links where they exist, so
/// that `check /data` finds what `freeze-and-snap /data/` recorded.
pub fn path_targets(paths: &[PathBuf]) -> Vec<String> {
    paths
        .iter()
        .map(|p| {
            let abs = std::fs::canonicalize(p).unwrap_or_else(|_| {
                std::env::current_dir()
                    .map(|d| d.join(p))
                    .unwrap_or_else(|_| p.clone())
            });
            abs.display().to_string()
        })
        .collect()
}

/// One snapshot run, watched.
#[derive(Debug)]
pub struct Monitor {
    state_dir: PathBuf,
    metrics_file: Option<PathBuf>,
    ping_url: Option<String>,
    targets: Vec<String>,
    started: (f64, String),
    report: RefCell<Option<Report>>,
    /// Off for a run that is not root's: it is refused (exit 7) before anything is done, and
    /// must say so rather than that it cannot write the state.
    enabled: bool,
}

impl Monitor {
    /// Starts watching a run of `targets`: refuses a `state_dir` (made if missing) or a
    /// `metrics_file` directory lightsnap cannot write in, naming it, then sends the start
    /// ping. Called before anything is frozen.
    pub fn start(settings: &Settings, targets: Vec<String>) -> Result<Self> {
        let state_dir = state_dir(settings);
        let enabled = nix::unistd::Uid::effective().is_root();
        if enabled {
            state::check_writable(&state_dir, "state_dir", true)?;
        }
        if let (true, Some(m)) = (enabled, &settings.metrics_file) {
            let dir = m.parent().unwrap_or(Path::new("/"));
            state::check_writable(dir, "the directory of metrics_file", false)?;
        }
        let monitor = Self {
            state_dir,
            metrics_file: settings.metrics_file.clone(),
            ping_url: settings.ping_url.clone(),
            targets,
            started: state::now(),
            report: RefCell::new(None),
            enabled,
        };
        if let (true, Some(url)) = (enabled, &monitor.ping_url) {
            // A stop request during the start ping ends the process by the signal's default
            // action; should the ping have been stopped otherwise, the run stops here.
            if let ping::Sent::Stopped(code) = ping::send(url, ping::Kind::Start, "") {
                return Err(crate::signals::Stopped {
                    code,
                    when: crate::signals::BEFORE_FREEZE,
                }
                .into());
            }
        }
        Ok(monitor)
    }

    /// Notes what the run took (the window is over: everything is thawed).
    pub fn taken(&self, report: &Report) {
        *self.report.borrow_mut() = Some(report.clone());
    }

    /// Records how the run ended: each target's state file, the journal's events, the
    /// metrics file, the success or fail ping. Never fails the run: what cannot be written
    /// is a warning.
    pub fn finish(&self, result: &Result<ExitCode>) {
        if !self.enabled {
            return;
        }
        let (code, message) = match result {
            Ok(code) => {
                let noted = NOTED_ERROR.lock().unwrap_or_else(|p| p.into_inner()).take();
                let message = match (code, noted) {
                    (ExitCode::Success, _) => String::new(),
                    (_, Some(m)) => m,
                    (c, None) => format!("exit code {}", c.code()),
                };
                (*code, message)
            }
            Err(e) => (ExitCode::of(e), format!("{e:#}")),
        };
        let ok = code == ExitCode::Success;
        let report = self.report.borrow();
        let _lock = state::lock(&self.state_dir);
        let mut states = Vec::new();
        for target in &self.targets {
            let path = state::file_of(&self.state_dir, target);
            let known = state::read(&path);
            // A run refused before it found a filesystem (no such path: a typo) leaves no
            // trace: otherwise `check` would report the typo CRITICAL for good.
            if !ok && known.is_none() && target != INSTANCE_TARGET && !Path::new(target).exists() {
                continue;
            }
            let mut s = known.unwrap_or_default();
            s.target = target.clone();
            self.update(&mut s, code, &message, report.as_ref());
            match serde_json::to_vec_pretty(&s) {
                Ok(bytes) => {
                    if let Err(e) = crate::files::write_atomically(&path, &bytes) {
                        tracing::warn!("{e:#}");
                    }
                }
                Err(e) => tracing::warn!("state of {target}: {e}"),
            }
            states.push(s);
        }
        if let (true, Some(r)) = (ok, report.as_ref()) {
            for snap in &r.snapshots {
                let (_, disk) = kind_and_name(&snap.source);
                tracing::info!(
                    event = "snapshot",
                    snapshot = snap.name.as_str(),
                    disk = disk.as_str(),
                    window_ms = r.window_ms,
                    "snapshot {} of {} taken, writes paused {:.1} ms",
                    snap.name,
                    snap.source,
                    r.window_ms
                );
            }
            tracing::info!(event = "succeeded", exit = 0, "run succeeded");
        }
        if let Some(file) = &self.metrics_file {
            // Every target lightsnap knows of, not only this run's: the file is rewritten whole.
            let all = state::read_all(&self.state_dir).unwrap_or(states);
            if let Err(e) = crate::files::write_atomically(file, metrics::render(&all).as_bytes()) {
                tracing::warn!("metrics_file: {e:#}");
            }
        }
        // A stop request during this last ping gives it up (logged); the run's outcome stands.
        if let Some(url) = &self.ping_url {
            if ok {
                ping::send(url, ping::Kind::Success, "");
            } else {
                let body = format!("lightsnap failed (exit {}): {message}", code.code());
                ping::send(url, ping::Kind::Fail, &body);
            }
        }
    }

    fn update(&self, s: &mut TargetState, code: ExitCode, message: &str, report: Option<&Report>) {
        let ok = code == ExitCode::Success;
        let (time, time_utc) = self.started.clone();
        s.last_attempt = Some(Attempt {
            time,
            time_utc: time_utc.clone(),
            result: if ok { "success" } else { "failure" }.into(),
            exit_code: code.code(),
            message: message.to_string(),
        });
        if !ok {
            s.consecutive_failures += 1;
            return;
        }
        s.consecutive_failures = 0;
        let Some(r) = report else {
            return;
        };
        let Some(snap) = snapshot_of(&s.target, r) else {
            return;
        };
        let (kind, name) = kind_and_name(&snap.source);
        s.kind = kind.into();
        s.disk = Some(name);
        s.last_success = Some(Success {
            time,
            time_utc,
            snapshot: snap.name.clone(),
            consistency: serde_json::to_value(snap.consistency)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            window_ms: r.window_ms,
        });
    }
}

/// What a source is called in the state and the metrics: its kind, and the disk (or
/// instance) name as Lightsail's snapshots name it (`<instance>-system` for a system volume).
pub fn kind_and_name(source: &Source) -> (&'static str, String) {
    match source {
        Source::Disk(d) => ("disk", d.clone()),
        Source::SystemVolume(i) => ("system-volume", format!("{i}-system")),
        Source::Instance(i) => ("instance", i.clone()),
    }
}

/// The snapshot of a run that covers `target`: the instance's for `instance`, else the one
/// whose filesystem holds the path (the deepest mount point that is a prefix of it).
pub fn snapshot_of<'a>(target: &str, r: &'a Report) -> Option<&'a crate::snap::SnapshotReport> {
    if target == INSTANCE_TARGET {
        return r.snapshots.first();
    }
    let path = Path::new(target);
    r.snapshots
        .iter()
        .filter_map(|s| {
            s.mount_points
                .iter()
                .filter(|m| path.starts_with(m))
                .map(|m| m.as_os_str().len())
                .max()
                .map(|depth| (depth, s))
        })
        .max_by_key(|(depth, _)| *depth)
        .map(|(_, s)| s)
        .or(if r.snapshots.len() == 1 {
            r.snapshots.first()
        } else {
            None
        })
}

/// Records a restore rehearsal in the state file of every target whose disk the snapshot is
/// of (a rehearsal of a disk no run has recorded is in its own report only), then rewrites
/// the metrics file. Never fails: what cannot be written is a warning.
pub fn verified(settings: &Settings, v: &crate::restore::Verification) {
    if !nix::unistd::Uid::effective().is_root() {
        return;
    }
    let dir = state_dir(settings);
    let Some(disk) = &v.disk else {
        return;
    };
    let (time, time_utc) = state::now();
    let result = serde_json::to_value(v.result)
        .ok()
        .and_then(|r| r.as_str().map(str::to_string))
        .unwrap_or_default();
    let message = match (&v.error, v.failures.is_empty()) {
        (Some(e), _) => format!("{e:#}"),
        (None, false) => v.failures.join("; "),
        (None, true) => v.unchecked.join("; "),
    };
    let mut recorded = false;
    for mut s in state::read_all(&dir).unwrap_or_default() {
        if s.disk.as_deref() != Some(disk.as_str()) {
            continue;
        }
        s.last_verification = Some(state::Verified {
            time,
            time_utc: time_utc.clone(),
            snapshot: v.snapshot.clone(),
            result: result.clone(),
            message: message.clone(),
        });
        s.runs_since_verification = 0;
        let path = state::file_of(&dir, &s.target);
        match serde_json::to_vec_pretty(&s) {
            Ok(bytes) => match crate::files::write_atomically(&path, &bytes) {
                Ok(()) => recorded = true,
                Err(e) => tracing::warn!("{e:#}"),
            },
            Err(e) => tracing::warn!("state of {}: {e}", s.target),
        }
    }
    if !recorded {
        tracing::info!(
            "no run target recorded for disk {disk}: the verification is in its report only"
        );
    }
    if let Some(file) = &settings.metrics_file {
        let all = state::read_all(&dir).unwrap_or_default();
        if let Err(e) = crate::files::write_atomically(file, metrics::render(&all).as_bytes()) {
            tracing::warn!("metrics_file: {e:#}");
        }
    }
}

/// `verify_every`: counts a successful run for each of `targets`, and returns the disks (as
/// snapshots name them) of those whose count has reached `every` — due for a verification.
/// The counts are kept in the state files (never fails: a warning).
pub fn count_for_verification(
    settings: &Settings,
    targets: &[String],
    report: &Report,
    every: u32,
) -> Vec<String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Vec::new();
    }
    let dir = state_dir(settings);
    let mut due = Vec::new();
    for target in targets {
        let path = state::file_of(&dir, target);
        let mut s = state::read(&path).unwrap_or_default();
        s.target = target.clone();
        if let Some(snap) = snapshot_of(target, report) {
            let (kind, name) = kind_and_name(&snap.source);
            s.kind = kind.into();
            s.disk = Some(name);
        }
        s.runs_since_verification += 1;
        if s.runs_since_verification >= every {
            if let Some(d) = &s.disk {
                if !due.contains(d) {
                    due.push(d.clone());
                }
            }
        }
        match serde_json::to_vec_pretty(&s) {
            Ok(bytes) => {
                if let Err(e) = crate::files::write_atomically(&path, &bytes) {
                    tracing::warn!("{e:#}");
                }
            }
            Err(e) => tracing::warn!("state of {target}: {e}"),
        }
    }
    due
}
