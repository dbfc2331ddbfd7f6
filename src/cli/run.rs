//! `lightsnap run`: what the systemd timer and deploy hooks call — snapshot every path the
//! configuration names (`[[snapshot]]`), as one consistency group, then apply `[retention]`.

use anyhow::Result;
use clap::Args;

use super::snap_args::SnapArgs;
use super::Globals;
use crate::cloud::lightsail::Lightsail;
use crate::exit_code::ExitCode;
use crate::fail;
use crate::retention::{self, Rule};
use crate::signals::Signals;
use crate::snap;

/// Snapshot what the configuration names, then prune by its retention.
#[derive(Debug, Args)]
pub struct Run {
    /// Options shared with freeze-and-snap.
    #[command(flatten)]
    pub snap: SnapArgs,
}

impl Run {
    /// Runs it.
    pub fn run(self, globals: &Globals) -> Result<ExitCode> {
        let (opts, settings) = self.snap.options(globals, Vec::new(), None)?;
        if settings.snapshots.is_empty() {
            fail!(
                ExitCode::Usage,
                "the configuration names nothing to snapshot: add [[snapshot]] path = \"/data\" to /etc/lightsnap/config.toml"
            );
        }
        let opts = snap::Options {
            paths: settings.snapshots.iter().map(|e| e.path.clone()).collect(),
            ..opts
        };
        let local = snap::plan_local(&opts)?;
        let output = globals.output;
        crate::runtime()?.block_on(async move {
            let mut signals = Signals::install()?;
            let api = self.snap.api(&settings).await?;
            if self.snap.dry_run {
                return super::plan::print_plan(&api, &opts, &local, output).await;
            }
            let report = snap::freeze_and_snap(&api, &opts, local, &mut signals).await?;
            self.snap.finish(&api, &report, output).await?;
            let rule = Rule {
                keep: settings.retention.keep,
                older_than: settings.retention.older_than,
            };
            if rule != Rule::default() {
                let all = api.get_disk_snapshots().await?;
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)?
                    .as_secs_f64();
                for s in retention::select(&all, rule, None, false, now) {
                    api.delete_disk_snapshot(&s.name).await?;
                    tracing::warn!("retention: deleted {}", s.name);
                }
            }
            Ok(ExitCode::Success)
        })
    }
}
