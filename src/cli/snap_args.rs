//! The options every snapshot-taking subcommand shares (`freeze-and-snap`, `snap-instance`,
//! `run`), and how they combine with the configuration into [`snap::Options`].

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::Args;

use super::{Globals, Output};
use crate::cloud::lightsail::{Lightsail, SdkLightsail};
use crate::cloud::validate;
use crate::config::{self, Settings};
use crate::exit_code::{ExitCode, Failure};
use crate::signals::Signals;
use crate::snap::wait::Waited;
use crate::snap::{self, plan::Method, Report};

/// Shared snapshot options.
#[derive(Debug, Clone, Args)]
pub struct SnapArgs {
    /// The snapshot name (default: from name_template, <disk>-<yyyymmdd-hhmmss> in UTC).
    #[arg(long, alias = "name", value_name = "NAME")]
    pub snapshot_name: Option<String>,
    /// A tag for the snapshot, as KEY=VALUE; KEY alone or KEY= gives a tag without a value
    /// (Lightsail allows those). Repeat for more.
    #[arg(long = "tag", value_name = "KEY[=VALUE]", value_parser = parse_tag)]
    pub tags: Vec<(String, String)>,
    /// How to pause writes: freeze (falling back to unmount where freezing is not
    /// supported), freeze only, or unmount.
    #[arg(long, value_enum, default_value_t = Method::Auto)]
    pub method: Method,
    /// The longest writes may be paused; past it the filesystem is thawed and the call
    /// abandoned; at most 10m [default: 10s, or freeze_timeout in the configuration].
    #[arg(long, value_name = "DURATION", value_parser = super::parse_freeze_timeout)]
    pub freeze_timeout: Option<Duration>,
    /// Take the snapshot even if a filesystem cannot be frozen or unmounted (tagged
    /// lightsnap:consistency=crash).
    #[arg(long)]
    pub allow_crash_consistent: bool,
    /// Skip the flush before the freeze: FIFREEZE then writes out all dirty data itself, with
    /// writes paused. For measuring what the flush saves; never faster overall. A benchmark
    /// knob, left out of the help.
    #[arg(long, hide = true)]
    pub no_syncfs: bool,
    /// Make FIFREEZE quicker by expediting the kernel's RCU grace periods while it runs
    /// (/sys/kernel/rcu_expedited, a system-wide switch, on for the freeze calls only and put
    /// back as it was): most of a freeze is waiting for them.
    #[arg(long)]
    pub expedite_freeze: bool,
    /// What started this run, recorded in the lightsnap:trigger tag.
    #[arg(long, value_enum, default_value_t = Trigger::Manual)]
    pub trigger: Trigger,
    /// After the thaw, follow the snapshots until Lightsail says they are completed.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait follows them.
    #[arg(long, value_name = "DURATION", default_value = "30m", value_parser = super::parse_duration, requires = "wait")]
    pub wait_timeout: Duration,
    /// How long to wait, before freezing, while Lightsail makes an automatic snapshot of a
    /// target (it refuses manual ones meanwhile, for up to 45 minutes from its hour); 0: fail
    /// at once (exit 17).
    #[arg(long, value_name = "DURATION", default_value = "50m", value_parser = super::parse_duration)]
    pub auto_snapshot_wait: Duration,
    /// Print the plan (path → mount → method → disk → API call) and stop: no freeze, no
    /// lock, no API writes.
    #[arg(long)]
    pub dry_run: bool,
    /// The AWS region (default: AWS_REGION, the profile, or the instance metadata).
    #[arg(long)]
    pub region: Option<String>,
    /// Once each snapshot is completed, copy it to this region (CopySnapshot, its tags
    /// re-applied there); a failed copy keeps the snapshot and exits 19 [default:
    /// copy_to_region in the configuration].
    #[arg(long, value_name = "REGION", value_parser = parse_region)]
    pub copy_to_region: Option<String>,
}

fn parse_region(text: &str) -> Result<String, String> {
    validate::region(text).map_err(|e| e.to_string())?;
    Ok(text.to_string())
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

/// lightsnap's own tags, on every snapshot (the owner tag is added once discovery knows this
/// instance, the consistency tag in the window).
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
    let (key, value) = validate::parse_tag(text).map_err(|e| e.to_string())?;
    if key.starts_with(config::RESERVED_TAG_PREFIX) {
        return Err(format!(
            "tag {key:?}: keys starting with {} are lightsnap's own (lightsnap:consistency, lightsnap:owner, lightsnap:host, lightsnap:version, lightsnap:trigger); use --trigger for the trigger",
            config::RESERVED_TAG_PREFIX
        ));
    }
    Ok((key, value))
}

impl SnapArgs {
    /// The options for `paths`, the configuration under them, the flags over that.
    pub fn options(
        &self,
        globals: &Globals,
        paths: Vec<PathBuf>,
        disk_name: Option<String>,
    ) -> Result<(snap::Options, Settings)> {
        // Two values for one key on the command line is a slip, not an override.
        for (i, (key, _)) in self.tags.iter().enumerate() {
            if self.tags[..i].iter().any(|(k, _)| k == key) {
                return Err(validate::InvalidInput::Tag {
                    tag: key.clone(),
                    why: "the key is given twice with --tag".into(),
                }
                .into());
            }
        }
        let settings = config::load(&globals.config_root)?;
        // Every command taking these options starts here: silenced before anything prints.
        if globals.quiet {
            super::quiet::silence()?;
        }
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
            syncfs: !self.no_syncfs,
            expedite_freeze: self.expedite_freeze || settings.expedite_freeze,
            run_dir: globals.run_dir.clone(),
            disk_map: settings.snapshots.clone(),
            hook_dir: settings.hook_dir.clone(),
            hook_timeout: settings.hook_timeout,
            auto_snapshot_wait: self.auto_snapshot_wait,
            exclude: settings.exclude.clone(),
        };
        Ok((opts, settings))
    }

    /// `freeze-and-snap` of `opts`: the paths resolved first (bad input fails before the SDK
    /// even reads its configuration), then, in the runtime, the plan printed (`--dry-run`) or
    /// the snapshots taken and the report handed to `then`.
    pub fn freeze_and_snap(
        &self,
        output: Output,
        opts: &snap::Options,
        settings: &Settings,
        then: impl AsyncFnOnce(&SdkLightsail, Report, &mut Signals) -> Result<ExitCode>,
    ) -> Result<ExitCode> {
        if self.dry_run {
            return self.freeze_and_snap_watched(output, opts, settings, None, then);
        }
        let targets = crate::monitor::path_targets(&opts.paths);
        let monitor = crate::monitor::Monitor::start(settings, targets)?;
        let result = self.freeze_and_snap_watched(output, opts, settings, Some(&monitor), then);
        monitor.finish(&result);
        result
    }

    fn freeze_and_snap_watched(
        &self,
        output: Output,
        opts: &snap::Options,
        settings: &Settings,
        monitor: Option<&crate::monitor::Monitor>,
        then: impl AsyncFnOnce(&SdkLightsail, Report, &mut Signals) -> Result<ExitCode>,
    ) -> Result<ExitCode> {
        let local = snap::plan_local(opts)?;
        crate::runtime()?.block_on(async move {
            let mut signals = Signals::install()?;
            let api = self.api(settings).await?;
            if self.dry_run {
                return super::plan::print_plan(&api, opts, &local, output).await;
            }
            let report = snap::freeze_and_snap(&api, opts, local, &mut signals).await?;
            if let Some(m) = monitor {
                m.taken(&report);
            }
            then(&api, report, &mut signals).await
        })
    }

    /// The Lightsail client for these options.
    pub async fn api(&self, settings: &Settings) -> Result<SdkLightsail> {
        SdkLightsail::from_env(
            self.region.clone().or(settings.region.clone()),
            settings.profile.clone(),
        )
        .await
    }

    /// Prints the report for people at once (the snapshot exists: say so before waiting),
    /// then follows its snapshots with `--wait`.
    pub async fn report_and_wait<A: Lightsail>(
        &self,
        api: &A,
        report: &Report,
        output: Output,
        signals: &mut Signals,
    ) -> Option<Waited> {
        if output == Output::Human {
            print!("{report}");
            let _ = std::io::stdout().flush();
        }
        if !self.wait {
            return None;
        }
        let requests = report.requests();
        Some(snap::wait::wait(api, &requests, self.wait_timeout, WAIT_INTERVAL, signals).await)
    }

    /// Prints a report, follows its snapshots with `--wait`, copies them to another region
    /// (`--copy-to-region`), and ends the run: with `--output json`, one document holding the
    /// report, what `--wait` saw, the copies and any error.
    pub async fn finish(
        &self,
        api: &SdkLightsail,
        report: &Report,
        output: Output,
        settings: &Settings,
        signals: &mut Signals,
    ) -> Result<ExitCode> {
        let waited = self.report_and_wait(api, report, output, signals).await;
        let (mut doc, mut result) = report_json(report, waited)?;
        self.copy(
            api,
            report,
            settings,
            output,
            signals,
            &mut doc,
            &mut result,
        )
        .await;
        conclude(doc, result, output)
    }

    /// The region snapshots are copied to: `--copy-to-region`, else the configuration's.
    pub fn copy_region(&self, settings: &Settings) -> Option<String> {
        self.copy_to_region
            .clone()
            .or(settings.copy_to_region.clone())
    }

    /// Copies the report's snapshots to the copy region, if there is one: `copies` in the
    /// document, and a copy failure (exit 19) as the result unless it failed already.
    #[allow(clippy::too_many_arguments)]
    pub async fn copy(
        &self,
        api: &SdkLightsail,
        report: &Report,
        settings: &Settings,
        output: Output,
        signals: &mut Signals,
        doc: &mut serde_json::Value,
        result: &mut Result<()>,
    ) {
        let Some(to) = self.copy_region(settings) else {
            return;
        };
        let requests = report.requests();
        let from = api.region().unwrap_or_default();
        let (copies, copied) = match api.for_region(&to) {
            Ok(target) => {
                crate::restore::copy::copy_all(
                    api,
                    &from,
                    &target,
                    &to,
                    &requests,
                    self.wait_timeout,
                    signals,
                )
                .await
            }
            Err(e) => (Vec::new(), Err(e)),
        };
        if output == Output::Human {
            for c in &copies {
                println!(
                    "copied {} to {} ({} tags re-applied)",
                    c.snapshot, c.region, c.tags
                );
            }
        }
        doc["copies"] = serde_json::to_value(&copies).unwrap_or_default();
        if let Err(e) = copied {
            if result.is_ok() {
                *result = Err(e);
            } else {
                tracing::warn!("{e:#}");
            }
        }
    }
}

/// How often `--wait` asks Lightsail.
const WAIT_INTERVAL: Duration = Duration::from_secs(2);

/// The JSON document of a snapshot run: the report, plus `wait` when `--wait` followed it;
/// and how the wait ended.
pub fn report_json(
    report: &Report,
    waited: Option<Waited>,
) -> Result<(serde_json::Value, Result<()>)> {
    let mut doc = serde_json::to_value(report)?;
    let mut result = Ok(());
    if let Some(w) = waited {
        doc["wait"] = w.to_json();
        result = w.result;
    }
    // A post-thaw hook that failed says more than a wait that did: the application may not
    // have been resumed.
    if let Some(failure) = &report.post_thaw_failure {
        if let Err(e) = result {
            tracing::warn!("{e:#}");
        }
        result = Err(Failure::new(
            ExitCode::HookFailed,
            format!(
                "the snapshot was taken, but a post-thaw hook failed: {failure}; check that what the pre-freeze hooks paused is running again"
            ),
        )
        .into());
    }
    Ok((doc, result))
}

/// Ends a command that has a result document: for people, the error goes to `main` (which
/// prints it and picks the exit code); with `--output json`, stdout gets exactly one
/// document, the error inside it (`error.message`, `error.exit_code`) besides what was done,
/// and the error is said on stderr too.
pub fn conclude(
    mut doc: serde_json::Value,
    result: Result<()>,
    output: Output,
) -> Result<ExitCode> {
    if output == Output::Human {
        return result.map(|()| ExitCode::Success);
    }
    let code = match &result {
        Ok(()) => ExitCode::Success,
        Err(e) => {
            let code = ExitCode::of(e);
            crate::logbuf::release();
            super::quiet::restore();
            crate::monitor::note_error(&format!("{e:#}"));
            crate::journal::error_line(&format!("{e:#}"), code.code());
            doc["error"] = super::error_json(&format!("{e:#}"), code)["error"].take();
            code
        }
    };
    super::print_json(doc)?;
    Ok(code)
}
