//! `lightsnap list`: disk and instance snapshots with state, progress, age, size, consistency
//! and owner; this instance's (their `lightsnap:owner` tag) unless `--instance`,
//! `--all-instances` or `--all`.

use std::collections::BTreeMap;

use anyhow::Result;
use clap::Args;
use serde::Serialize;

use super::{Globals, Output};
use crate::cloud::lightsail::{SdkLightsail, SnapshotInfo};
use crate::cloud::owner::{self, OWNER_TAG};
use crate::cloud::validate;
use crate::config;
use crate::exit_code::ExitCode;
use crate::retention::{is_own, Scope};
use crate::snap::plan::CONSISTENCY_TAG;

/// List disk and instance snapshots.
#[derive(Debug, Args)]
pub struct List {
    /// Only snapshots of this disk (`<instance>-system` for a system volume).
    #[arg(long, value_name = "NAME")]
    pub disk: Option<String>,
    /// Whose: this instance's unless told otherwise.
    #[command(flatten)]
    pub owner: super::owner::OwnerArgs,
    /// The AWS region.
    #[arg(long)]
    pub region: Option<String>,
}

/// One snapshot in `--output json` (of `list`, and of what `prune` deletes). The schema is
/// documented in the manual (docs/src/json.md) and pinned by `tests/golden/`: add members, never change one.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Entry {
    /// Snapshot name.
    pub name: String,
    /// `disk` (CreateDiskSnapshot, of a disk or a system volume) or `instance`
    /// (CreateInstanceSnapshot).
    #[schemars(extend("enum" = ["disk", "instance"]))]
    pub kind: &'static str,
    /// The disk it is of (`fromDiskName`, or `<instance>-system`); for an instance snapshot,
    /// the instance.
    pub disk: Option<String>,
    /// `pending`, `completed` or `error`.
    pub state: String,
    /// `"42%"`.
    pub progress: Option<String>,
    /// When it was taken, RFC 3339 in UTC (`2026-11-24T19:30:00Z`).
    pub created_at: Option<String>,
    /// Size in GB.
    pub size_gb: Option<i32>,
    /// Its `lightsnap:consistency` tag (`frozen`, `unmounted`, `readonly`, `crash`,
    /// `unverified`), if it has one.
    pub consistency: Option<String>,
    /// Whether a lightsnap took it (it carries `lightsnap:owner`, or the
    /// `lightsnap:consistency` tag of a lightsnap older than that tag), not Lightsail's
    /// automatic snapshots.
    pub own: bool,
    /// Its `lightsnap:owner` tag, `REGION/INSTANCE` of the instance whose lightsnap made it;
    /// `null` for a snapshot without one (by hand, automatic, or an older lightsnap's), which
    /// only `prune --all` deletes.
    pub owner: Option<String>,
    /// Whether Lightsail's automatic snapshots made it (never deleted by `prune`).
    pub auto: bool,
    /// All its tags.
    pub tags: BTreeMap<String, String>,
}

impl Entry {
    /// The entry of a snapshot.
    pub fn of(s: &SnapshotInfo) -> Self {
        Self {
            name: s.name.clone(),
            kind: if s.instance { "instance" } else { "disk" },
            disk: s.from.clone(),
            state: s.state.clone(),
            progress: s.progress.clone(),
            created_at: s.created_at.map(rfc3339),
            size_gb: s.size_gb,
            consistency: s.tag(CONSISTENCY_TAG).map(str::to_string),
            own: is_own(s),
            owner: s.tag(OWNER_TAG).map(str::to_string),
            auto: s.is_from_auto_snapshot,
            tags: s.tags.iter().cloned().collect(),
        }
    }
}

/// The `list` document.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct Listed {
    snapshots: Vec<Entry>,
}

impl List {
    /// Runs it.
    pub fn run(self, globals: &Globals) -> Result<ExitCode> {
        if let Some(disk) = &self.disk {
            validate::name("disk name", disk)?;
        }
        let settings = config::load(&globals.config_root)?;
        let region = self.region.clone().or(settings.region);
        crate::runtime()?.block_on(async {
            let api = SdkLightsail::from_env(region, settings.profile).await?;
            let scope = self.owner.scope(&api).await?;
            let snaps = self.select(&scope, crate::cloud::lightsail::all_snapshots(&api).await?);
            print(&snaps, globals.output)?;
            Ok(ExitCode::Success)
        })
    }

    fn select(&self, scope: &Scope, mut all: Vec<SnapshotInfo>) -> Vec<SnapshotInfo> {
        all.retain(|s| scope.includes(s));
        all.retain(|s| self.disk.is_none() || s.from == self.disk);
        all.sort_by(|a, b| {
            b.created_at
                .unwrap_or(0.0)
                .total_cmp(&a.created_at.unwrap_or(0.0))
        });
        all
    }
}

/// RFC 3339 (seconds, UTC) of an epoch time.
fn rfc3339(t: f64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(t.max(0.0));
    humantime::format_rfc3339_seconds(at).to_string()
}

/// UTC `yyyy-mm-dd hh:mm` of an epoch time.
pub fn when(t: Option<f64>) -> String {
    t.map(|t| {
        let s = rfc3339(t);
        format!("{} {}", &s[..10], &s[11..16])
    })
    .unwrap_or_else(|| "?".into())
}

fn print(snaps: &[SnapshotInfo], output: Output) -> Result<()> {
    if output == Output::Json {
        let doc = Listed {
            snapshots: snaps.iter().map(Entry::of).collect(),
        };
        super::print_json(&doc)?;
        return Ok(());
    }
    println!(
        "{:<40} {:<20} {:<10} {:>8} {:<16} {:>6}  {:<11}  OWNER",
        "NAME", "DISK", "STATE", "PROGRESS", "CREATED (UTC)", "SIZE", "CONSISTENCY"
    );
    for s in snaps {
        println!(
            "{:<40} {:<20} {:<10} {:>8} {:<16} {:>6}  {:<11}  {}",
            s.name,
            s.from.as_deref().unwrap_or("?"),
            s.state,
            s.progress.as_deref().unwrap_or(""),
            when(s.created_at),
            s.size_gb.map(|g| format!("{g}G")).unwrap_or_default(),
            s.tag(CONSISTENCY_TAG).unwrap_or("-"),
            owner::describe(s)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc() {
        assert_eq!(rfc3339(1_795_000_000.4), "2026-11-18T11:06:40Z");
        assert_eq!(when(Some(1_795_000_000.0)), "2026-11-18 11:06");
        assert_eq!(when(None), "?");
    }
}
