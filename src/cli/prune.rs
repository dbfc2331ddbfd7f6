//! `lightsnap prune`: deletes lightsnap's own completed snapshots beyond a retention rule —
//! never pending ones, never automatic ones, never others' unless `--all` — and says what it
//! deleted.

use std::time::{Duration, SystemTime};

use anyhow::Result;
use clap::Args;
use serde::Serialize;

use super::{Globals, Output};
use crate::cloud::lightsail::{Lightsail, SdkLightsail};
use crate::config;
use crate::exit_code::ExitCode;
use crate::fail;
use crate::retention::{self, Rule};

/// Delete old snapshots.
#[derive(Debug, Args)]
pub struct Prune {
    /// Keep this many newest snapshots per disk [default: retention.keep in the config].
    #[arg(long, value_name = "N")]
    pub keep: Option<u32>,
    /// Delete snapshots older than this (`30d`, `12h`) [default: retention.older_than].
    #[arg(long, value_name = "DURATION", value_parser = super::parse_duration)]
    pub older_than: Option<Duration>,
    /// Only snapshots of this disk.
    #[arg(long, value_name = "NAME")]
    pub disk: Option<String>,
    /// Say what would be deleted, delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also consider snapshots lightsnap did not take (never pending or automatic ones).
    #[arg(long)]
    pub all: bool,
    /// The AWS region.
    #[arg(long)]
    pub region: Option<String>,
}

#[derive(Debug, Serialize)]
struct Pruned {
    deleted: Vec<String>,
    dry_run: bool,
}

impl Prune {
    /// Runs it.
    pub fn run(self, globals: &Globals) -> Result<ExitCode> {
        let settings = config::load(&globals.config_root)?;
        let rule = Rule {
            keep: self.keep.or(settings.retention.keep),
            older_than: self.older_than.or(settings.retention.older_than),
        };
        if rule == Rule::default() {
            fail!(
                ExitCode::Usage,
                "give --keep N or --older-than DURATION (or set [retention] in the configuration)"
            );
        }
        let region = self.region.clone().or(settings.region);
        crate::runtime()?.block_on(async {
            let api = SdkLightsail::from_env(region, settings.profile).await?;
            let all = api.get_disk_snapshots().await?;
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)?
                .as_secs_f64();
            let doomed = retention::select(&all, rule, self.disk.as_deref(), self.all, now);
            let mut deleted = Vec::new();
            for s in doomed {
                if !self.dry_run {
                    api.delete_disk_snapshot(&s.name).await?;
                }
                if globals.output == Output::Human {
                    println!(
                        "{} {} ({} from {})",
                        if self.dry_run {
                            "would delete"
                        } else {
                            "deleted"
                        },
                        s.name,
                        s.from.as_deref().unwrap_or("?"),
                        super::list::when(s.created_at)
                    );
                }
                deleted.push(s.name.clone());
            }
            match globals.output {
                Output::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&Pruned {
                        deleted,
                        dry_run: self.dry_run
                    })?
                ),
                Output::Human if deleted.is_empty() => println!("nothing to prune"),
                Output::Human => {}
            }
            Ok(ExitCode::Success)
        })
    }
}
