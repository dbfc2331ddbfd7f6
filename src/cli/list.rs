//! `lightsnap list`: disk snapshots with state, progress, age, size and consistency;
//! lightsnap's own unless `--all`.

use anyhow::Result;
use clap::Args;

use super::{Globals, Output};
use crate::cloud::lightsail::{Lightsail, SdkLightsail, SnapshotInfo};
use crate::config;
use crate::exit_code::ExitCode;
use crate::retention::is_own;
use crate::snap::plan::CONSISTENCY_TAG;

/// List disk snapshots.
#[derive(Debug, Args)]
pub struct List {
    /// Only snapshots of this disk (`<instance>-system` for a system volume).
    #[arg(long, value_name = "NAME")]
    pub disk: Option<String>,
    /// Include snapshots lightsnap did not take.
    #[arg(long)]
    pub all: bool,
    /// The AWS region.
    #[arg(long)]
    pub region: Option<String>,
}

impl List {
    /// Runs it.
    pub fn run(self, globals: &Globals) -> Result<ExitCode> {
        let settings = config::load(&globals.config_root)?;
        let region = self.region.clone().or(settings.region);
        crate::runtime()?.block_on(async {
            let api = SdkLightsail::from_env(region, settings.profile).await?;
            let snaps = self.select(api.get_disk_snapshots().await?);
            print(&snaps, globals.output)?;
            Ok(ExitCode::Success)
        })
    }

    fn select(&self, mut all: Vec<SnapshotInfo>) -> Vec<SnapshotInfo> {
        all.retain(|s| self.all || is_own(s));
        all.retain(|s| self.disk.is_none() || s.from == self.disk);
        all.sort_by(|a, b| {
            b.created_at
                .unwrap_or(0.0)
                .total_cmp(&a.created_at.unwrap_or(0.0))
        });
        all
    }
}

/// UTC `yyyy-mm-dd hh:mm` of an epoch time.
pub fn when(t: Option<f64>) -> String {
    t.map(|t| {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(t.max(0.0));
        let s = humantime::format_rfc3339_seconds(at).to_string();
        format!("{} {}", &s[..10], &s[11..16])
    })
    .unwrap_or_else(|| "?".into())
}

fn print(snaps: &[SnapshotInfo], output: Output) -> Result<()> {
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(snaps)?);
        return Ok(());
    }
    println!(
        "{:<40} {:<20} {:<10} {:>8} {:<16} {:>6}  CONSISTENCY",
        "NAME", "DISK", "STATE", "PROGRESS", "CREATED (UTC)", "SIZE"
    );
    for s in snaps {
        println!(
            "{:<40} {:<20} {:<10} {:>8} {:<16} {:>6}  {}",
            s.name,
            s.from.as_deref().unwrap_or("?"),
            s.state,
            s.progress.as_deref().unwrap_or(""),
            when(s.created_at),
            s.size_gb.map(|g| format!("{g}G")).unwrap_or_default(),
            s.tag(CONSISTENCY_TAG).unwrap_or("-")
        );
    }
    Ok(())
}
