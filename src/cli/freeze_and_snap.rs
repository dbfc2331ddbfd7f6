//! `lightsnap freeze-and-snap PATH`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::Args;

use super::{Globals, Output};
use crate::cloud::lightsail::SdkLightsail;
use crate::cloud::validate;
use crate::config;
use crate::exit_code::ExitCode;
use crate::signals::Signals;
use crate::snap::{self, plan::Method};

/// Freeze the filesystem at PATH, snapshot its Lightsail disk, thaw.
#[derive(Debug, Args)]
pub struct FreezeAndSnap {
    /// A path on the filesystem to snapshot (its mount point, or any file or directory on it).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// The Lightsail disk behind PATH (default: found through the instance metadata).
    #[arg(long, value_name = "NAME")]
    pub disk_name: Option<String>,
    /// The snapshot name (default: <disk>-<yyyymmdd-hhmmss>, UTC).
    #[arg(long, value_name = "NAME")]
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
    /// Take the snapshot even if the filesystem cannot be frozen or unmounted (tagged
    /// lightsnap:consistency=crash).
    #[arg(long)]
    pub allow_crash_consistent: bool,
    /// What started this run, recorded in the lightsnap:trigger tag.
    #[arg(long, value_enum, default_value_t = Trigger::Manual)]
    pub trigger: Trigger,
    /// After the thaw, follow the snapshot until Lightsail says it is completed.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait follows it.
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

impl FreezeAndSnap {
    /// Runs it.
    pub fn run(self, globals: &Globals) -> Result<ExitCode> {
        let settings = config::load(&globals.config_root)?;
        // Flags win over the configuration; tags merge, a flag's value winning for its key.
        let mut tags = settings.tags.clone();
        for (k, v) in own_tags(self.trigger).into_iter().chain(self.tags) {
            tags.retain(|(key, _)| *key != k);
            tags.push((k, v));
        }
        let opts = snap::Options {
            paths: self.paths,
            disk_name: self.disk_name,
            snapshot_name: self.snapshot_name,
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
        // Bad input fails before anything else, even before the SDK reads its configuration.
        let local = snap::plan_local(&opts)?;
        let region = self.region.or(settings.region);
        let profile = settings.profile;
        let output = globals.output;
        let dry_run = self.dry_run;
        let (wait, wait_timeout) = (self.wait, self.wait_timeout);
        crate::runtime()?.block_on(async move {
            let mut signals = Signals::install()?;
            let api = SdkLightsail::from_env(region, profile).await?;
            if dry_run {
                return super::plan::print_plan(&api, &opts, &local, output).await;
            }
            let report = snap::freeze_and_snap(&api, &opts, local, &mut signals).await?;
            match output {
                Output::Human => print!("{report}"),
                Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
            }
            if wait {
                let names: Vec<String> = report.snapshots.iter().map(|s| s.name.clone()).collect();
                snap::wait::wait(&api, &names, wait_timeout, Duration::from_secs(2)).await?;
            }
            Ok(ExitCode::Success)
        })
    }
}
