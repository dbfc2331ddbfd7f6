//! The options every snapshot-taking subcommand shares (`freeze-and-snap`, `snap-instance`,
//! `run`), and how they combine with the configuration into [`snap::Options`].

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::Args;

use super::{Globals, Output};
use crate::cloud::lightsail::{Lightsail, SdkLightsail, SnapshotRequest};
use crate::cloud::validate;
use crate::config::{self, Settings};
use crate::snap::{self, plan::Method, Report};

/// Shared snapshot options.
#[derive(Debug, Clone, Args)]
pub struct SnapArgs {
    /// The snapshot name (default: from name_template, <disk>-<yyyymmdd-hhmmss> in UTC).
    #[arg(long, alias = "name", value_name = "NAME")]
    pub snapshot_name: Option<String>,
    /// A tag for the snapshot, as KEY=VALUE; repeat for more.
    #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = parse_tag)]
    pub tags: Vec<(String, String)>,
    /// How to pause writes: freeze (falling back to unmount where freezing is not
    /// supported), freeze only, or unmount.
    #[arg(long, value_enum, default_value_t = Method::Auto)]
    pub method: Method,
    /// The longest writes may be paused; past it the filesystem is thawed and the call
    /// abandoned [default: 10s, or freeze_timeout in the configuration].
    #[arg(long, value_name = "DURATION", value_parser = super::parse_duration)]
    pub freeze_timeout: Option<Duration>,
    /// Take the snapshot even if a filesystem cannot be frozen or unmounted (tagged
    /// lightsnap:consistency=crash).
    #[arg(long)]
    pub allow_crash_consistent: bool,
    /// What started this run, recorded in the lightsnap:trigger tag.
    #[arg(long, value_enum, default_value_t = Trigger::Manual)]
    pub trigger: Trigger,
    /// After the thaw, follow the snapshots until Lightsail says they are completed.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait follows them.
    #[arg(long, value_name = "DURATION", default_value = "30m", value_parser = super::parse_duration, requires = "wait")]
    pub wait_timeout: Duration,
    /// Print the plan (path → mount → method → disk → API call) and stop: no freeze, no
    /// lock, no API writes.
    #[arg(long)]
    pub dry_run: bool,
    /// The AWS region (default: AWS_REGION, the profile, or the instance metadata).
    #[arg(long)]
    pub region: Option<String>,
}

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Trigger {
    /// By hand.
    Manual,
    /// A systemd timer.
    Timer,
    /// A deploy hook.
    Hook,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Manual => "manual",
            Trigger::Timer => "timer",
            Trigger::Hook => "hook",
        }
    }
}

/// lightsnap's own tags, on every snapshot (the consistency tag is added in the window).
fn own_tags(trigger: Trigger) -> Vec<(String, String)> {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default();
    vec![
        ("lightsnap:version".into(), env!("CARGO_PKG_VERSION").into()),
        ("lightsnap:host".into(), host),
        ("lightsnap:trigger".into(), trigger.as_str().into()),
    ]
}

fn parse_tag(text: &str) -> Result<(String, String), String> {
    validate::parse_tag(text).map_err(|e| e.to_string())
}

impl SnapArgs {
    /// The options for `paths`, the configuration under them, the flags over that.
    pub fn options(
        &self,
        globals: &Globals,
        paths: Vec<PathBuf>,
        disk_name: Option<String>,
    ) -> Result<(snap::Options, Settings)> {
        let settings = config::load(&globals.config_root)?;
        // Tags merge: configuration, lightsnap's own, then flags, a later value winning.
        let mut tags = settings.tags.clone();
        for (k, v) in own_tags(self.trigger).into_iter().chain(self.tags.clone()) {
            tags.retain(|(key, _)| *key != k);
            tags.push((k, v));
        }
        let opts = snap::Options {
            paths,
            disk_name,
            snapshot_name: self.snapshot_name.clone(),
            name_template: settings.name_template.clone(),
            tags,
            method: self.method,
            freeze_timeout: self.freeze_timeout.unwrap_or(settings.freeze_timeout),
            allow_crash_consistent: self.allow_crash_consistent,
            run_dir: globals.run_dir.clone(),
            disk_map: settings.snapshots.clone(),
            hook_dir: settings.hook_dir.clone(),
            hook_timeout: settings.hook_timeout,
        };
        Ok((opts, settings))
    }

    /// The Lightsail client for these options.
    pub async fn api(&self, settings: &Settings) -> Result<SdkLightsail> {
        SdkLightsail::from_env(
            self.region.clone().or(settings.region.clone()),
            settings.profile.clone(),
        )
        .await
    }

    /// Prints a report, then follows its snapshots with `--wait`.
    pub async fn finish<A: Lightsail>(
        &self,
        api: &A,
        report: &Report,
        output: Output,
    ) -> Result<()> {
        match output {
            Output::Human => print!("{report}"),
            Output::Json => println!("{}", serde_json::to_string_pretty(report)?),
        }
        if self.wait {
            let requests: Vec<SnapshotRequest> = report
                .snapshots
                .iter()
                .map(|s| SnapshotRequest {
                    source: s.source.clone(),
                    name: s.name.clone(),
                    tags: Vec::new(),
                })
                .collect();
            snap::wait::wait(api, &requests, self.wait_timeout, Duration::from_secs(2)).await?;
        }
        Ok(())
    }
}
