//! Configuration: TOML fragments → one merged input → validated settings.
//!
//! Fragments are read in this order, later ones overriding earlier ones key by key:
//! `/usr/lib/lightsnap/config.d/*.toml` (vendor), `/etc/lightsnap/config.toml`,
//! `/etc/lightsnap/config.d/*.toml` (admin), `/run/lightsnap/config.d/*.toml` (runtime), each
//! directory in name order. A fragment must be owned by root and not writable by group or
//! others (lightsnap runs as root and freezes filesystems on its say-so); unknown keys and bad
//! values are errors naming the file and line. Command-line flags override the settings.
//!
//! Three steps, one module each: `fragments` finds the files and reads each into the raw types
//! TOML gives, checking every value as it is read; `merge` lays them over the defaults in
//! order; [`load`] here validates the result into the [`Settings`] the rest of lightsnap uses.
//! The snapshot name template ([`render_name`]) is in `template`.

mod fragments;
pub mod keys;
mod merge;
mod template;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::cloud::validate;

pub use fragments::fragment_paths;
pub use template::render_name;

/// Retention: what `prune` (and the timer) keep.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retention {
    /// Keep at most this many of lightsnap's completed snapshots per disk.
    pub keep: Option<u32>,
    /// Delete lightsnap's completed snapshots older than this.
    pub older_than: Option<Duration>,
    /// Keep the newest of each of the last N days (UTC) that have one.
    pub keep_daily: Option<u32>,
    /// Keep the newest of each of the last N ISO weeks that have one.
    pub keep_weekly: Option<u32>,
    /// Keep the newest of each of the last N months that have one.
    pub keep_monthly: Option<u32>,
    /// Keep the newest of each of the last N years that have one.
    pub keep_yearly: Option<u32>,
}

/// A path to snapshot (by the timer), and optionally the disk behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotEntry {
    /// The path.
    pub path: PathBuf,
    /// The Lightsail disk behind it, if given (else found by itself).
    pub disk: Option<String>,
}

/// The settings in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// How long writes may be paused.
    pub freeze_timeout: Duration,
    /// Snapshot name template.
    pub name_template: String,
    /// Where hooks live.
    pub hook_dir: PathBuf,
    /// How long one hook may run, per phase.
    pub hook_timeout: Duration,
    /// Expedite the kernel's RCU grace periods during the freeze calls.
    pub expedite_freeze: bool,
    /// AWS region override.
    pub region: Option<String>,
    /// AWS profile.
    pub profile: Option<String>,
    /// Tags added to every snapshot.
    pub tags: Vec<(String, String)>,
    /// Retention.
    pub retention: Retention,
    /// What the timer snapshots, and path → disk mappings.
    pub snapshots: Vec<SnapshotEntry>,
    /// Mount point patterns `snap-instance` leaves out (`exclude = ["/mnt/scratch*"]`).
    pub exclude: Vec<String>,
    /// Where each run target's state file is kept (`state_dir`).
    pub state_dir: PathBuf,
    /// The Prometheus textfile metrics file, if any (`metrics_file`, a `.prom`).
    pub metrics_file: Option<PathBuf>,
    /// The dead-man's-switch ping URL, if any (`ping_url`, healthchecks.io style).
    pub ping_url: Option<String>,
    /// `lightsnap run` verifies the newest snapshot of each target every this many runs
    /// (`verify_every`; none: never).
    pub verify_every: Option<u32>,
    /// Where the `verify` hooks live (`verify_hook_dir`).
    pub verify_hook_dir: PathBuf,
    /// The region snapshots are copied to once completed (`copy_to_region`).
    pub copy_to_region: Option<String>,
    /// The longest a `lightsnap run` may take, start to end (`[run] budget`).
    pub run_budget: Duration,
    /// The files the settings came from, in order.
    pub sources: Vec<PathBuf>,
}

/// The default `state_dir`.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/lightsnap";

/// The default name template.
pub const DEFAULT_NAME_TEMPLATE: &str = "{disk}-{utc:%Y%m%d-%H%M%S}";

/// A mount point pattern of `exclude` / `--exclude`: a glob whose `*` does not cross `/`
/// (`/mnt/*` is each mount directly under /mnt; `/mnt/**` everything below it).
pub fn exclude_pattern(text: &str) -> Result<glob::Pattern> {
    anyhow::ensure!(
        text.starts_with('/'),
        "exclude pattern {text:?} must be an absolute mount point pattern, such as /mnt/*"
    );
    glob::Pattern::new(text)
        .with_context(|| format!("exclude pattern {text:?} is not a valid glob"))
}

/// Whether `mount_point` matches one of `patterns`.
pub fn excluded(mount_point: &std::path::Path, patterns: &[glob::Pattern]) -> bool {
    let options = glob::MatchOptions {
        require_literal_separator: true,
        ..glob::MatchOptions::new()
    };
    patterns
        .iter()
        .any(|p| p.matches_path_with(mount_point, options))
}

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A fragment that is not valid: its path, and what is wrong (file, line and column
    /// where TOML says).
    #[error("{0}")]
    Invalid(String),
    /// A fragment (or a directory on the way to it) anyone but root could have written.
    #[error("refusing configuration file {}: {found}", path.display())]
    Unsafe {
        /// The fragment.
        path: PathBuf,
        /// What others could change.
        found: crate::trust::Untrusted,
    },
}

/// Tag keys lightsnap sets itself (`lightsnap:consistency`, `lightsnap:owner`, `lightsnap:host`,
/// `lightsnap:version`, `lightsnap:trigger`): refused from the configuration and `--tag`.
pub const RESERVED_TAG_PREFIX: &str = "lightsnap:";

impl Default for Settings {
    fn default() -> Self {
        Self {
            freeze_timeout: Duration::from_secs(10),
            name_template: DEFAULT_NAME_TEMPLATE.to_string(),
            hook_dir: PathBuf::from("/etc/lightsnap/hooks.d"),
            hook_timeout: Duration::from_secs(60),
            expedite_freeze: false,
            region: None,
            profile: None,
            tags: Vec::new(),
            retention: Retention::default(),
            snapshots: Vec::new(),
            exclude: Vec::new(),
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            metrics_file: None,
            ping_url: None,
            verify_every: None,
            verify_hook_dir: PathBuf::from("/etc/lightsnap/verify.d"),
            copy_to_region: None,
            run_budget: crate::budget::DEFAULT_RUN_BUDGET,
            sources: Vec::new(),
        }
    }
}

impl Settings {
    /// The disk configured for a mount point or path, if any.
    pub fn disk_for(&self, paths: &[&Path]) -> Option<&str> {
        self.snapshots
            .iter()
            .find(|e| paths.contains(&e.path.as_path()))
            .and_then(|e| e.disk.as_deref())
    }
}

/// What the command line puts over the configuration files: `--config FILE` (that file
/// alone), `--profile NAME`.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--config FILE`.
    pub file: Option<PathBuf>,
    /// `--profile NAME`.
    pub profile: Option<String>,
}

static OVERRIDES: std::sync::OnceLock<Overrides> = std::sync::OnceLock::new();

/// Sets the command line's overrides, once, before any configuration is loaded.
pub fn set_overrides(overrides: Overrides) {
    let _ = OVERRIDES.set(overrides);
}

/// The command line's overrides in force.
pub fn overrides() -> Overrides {
    OVERRIDES.get().cloned().unwrap_or_default()
}

/// The fragment files in force: `--config FILE` alone, else those under `root`.
pub fn sources(root: &Path) -> Result<Vec<PathBuf>> {
    match overrides().file {
        Some(file) => Ok(vec![file]),
        None => fragment_paths(root),
    }
}

/// Loads, merges and validates every fragment under `root` (or `--config FILE`), the
/// command line's `--profile` over them.
pub fn load(root: &Path) -> Result<Settings> {
    let mut settings = Settings {
        hook_dir: root.join("etc/lightsnap/hooks.d"),
        verify_hook_dir: root.join("etc/lightsnap/verify.d"),
        ..Settings::default()
    };
    let mut tags: BTreeMap<String, String> = BTreeMap::new();
    for path in sources(root)? {
        let fragment = fragments::read(&path)?;
        merge::apply(&mut settings, &mut tags, fragment)
            .map_err(|e| ConfigError::Invalid(format!("{}: {e:#}", path.display())))?;
        settings.sources.push(path);
    }
    settings.tags = tags.into_iter().collect();
    validate::tags(&settings.tags).map_err(|e| ConfigError::Invalid(e.to_string()))?;
    if let Some(p) = overrides().profile {
        settings.profile = Some(p);
    }
    Ok(settings)
}
