//! `lightsnap setup`: one command after installing. It checks the credentials (which read
//! calls Lightsail allows them), finds this instance's disks and the filesystems on them,
//! notices a running database, and then — asking at a terminal, taking the defaults with
//! `--yes`, only printing with `--dry-run` — writes a configuration fragment, installs the
//! database's example hook, enables the timer, and takes and verifies the first snapshot.
//! What to do is decided in [`crate::setup`]; this file finds the facts, asks and prints.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;

use super::{Globals, Output};
use crate::cloud::imds;
use crate::cloud::lightsail::{InstanceInfo, SdkLightsail, SnapshotInfo};
use crate::config::{self, Settings};
use crate::exit_code::{ExitCode, Failure};
use crate::fail;
use crate::setup::{self, detect, discover, host::Host, probe, Action, Choices, Facts, HookFile};

/// Set lightsnap up on this instance: credentials checked, disks found, database hook, timer,
/// first snapshot verified.
#[derive(Debug, Args)]
pub struct Setup {
    /// Take every default without asking (for scripts).
    #[arg(short, long)]
    pub yes: bool,
    /// Print what would be written and done, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Whether the timer snapshots the system volume (`/`) too; by default only when no data
    /// disk of this instance has a filesystem mounted.
    #[arg(long, value_name = "yes|no", value_parser = yes_no())]
    pub system_volume: Option<bool>,
    /// The AWS region (default: AWS_REGION, the profile, or the instance metadata).
    #[arg(long)]
    pub region: Option<String>,
}

/// `yes` or `no`, as a bool.
fn yes_no() -> impl clap::builder::TypedValueParser<Value = bool> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(["yes", "no"]).map(|s| s == "yes")
}

/// The `setup` document: what was found, chosen and done.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct SetupDoc {
    /// This instance's Lightsail name.
    pub(crate) instance: String,
    /// Each Lightsail read call lightsnap makes, and whether the credentials may make it.
    pub(crate) credentials: Vec<probe::Call>,
    /// This instance's disks with filesystems mounted on them.
    pub(crate) targets: Vec<discover::Target>,
    /// The disks chosen for the timer's runs.
    pub(crate) chosen: Vec<String>,
    /// The databases found running.
    pub(crate) databases: Vec<detect::Running>,
    /// What the operator should know.
    pub(crate) warnings: Vec<String>,
    /// The changes (made, or with `--dry-run` to be made).
    pub(crate) actions: Vec<Action>,
    /// The configuration fragment written (or to be), if any.
    pub(crate) fragment: Option<String>,
    /// `--dry-run`.
    pub(crate) dry_run: bool,
    /// Whether the changes were made.
    pub(crate) applied: bool,
}

impl Setup {
    /// Runs it.
    pub fn run(self, globals: &Globals) -> Result<ExitCode> {
        let interactive = !self.yes && !self.dry_run;
        if interactive && !std::io::stdin().is_terminal() {
            fail!(
                ExitCode::NeedsAnswers,
                "lightsnap setup asks its questions at a terminal, and its input is not one: give --yes to take every default (--dry-run shows what they are); nothing was changed"
            );
        }
        if !self.dry_run {
            crate::runstate::require_root()?;
        }
        let json = globals.output == Output::Json;
        // The report on stdout; with --output json that is one document, so the rest (the
        // questions, the children's output) goes to stderr.
        let mut out: Box<dyn Write> = if json {
            Box::new(std::io::stderr())
        } else {
            Box::new(std::io::stdout())
        };
        let root = &globals.config_root;
        let settings = config::load(root)?;
        let mut host = Host {
            exe: std::env::current_exe().context("finding lightsnap's own binary")?,
            global_args: vec![
                "--config-root".into(),
                root.into(),
                "--run-dir".into(),
                globals.run_dir.clone().into(),
            ],
            child_stdout_to_stderr: json,
        };

        let (calls, me, snapshots) = crate::runtime()?.block_on(self.ask_lightsail(&settings))?;
        let _ = writeln!(
            out,
            "credentials: found; the Lightsail read calls lightsnap makes:"
        );
        for c in &calls {
            let _ = writeln!(
                out,
                "  {:<22}{}",
                c.operation,
                match &c.refused_with {
                    None => "allowed".to_string(),
                    Some(code) => format!("REFUSED ({code})"),
                }
            );
        }
        let refused: Vec<&str> = calls
            .iter()
            .filter(|c| !c.allowed)
            .map(|c| c.operation)
            .collect();
        let me = match me {
            Some(me) if refused.is_empty() => me,
            _ if !refused.is_empty() => fail!(
                ExitCode::AccessDenied,
                "Lightsail refused {} to these credentials: their IAM policy must allow what lightsnap does; `lightsnap iam-policy` prints the policy it needs. Nothing was changed",
                refused.join(", ")
            ),
            _ => fail!(
                ExitCode::ApiAuth,
                "Lightsail did not say which instance this is to these credentials: check them with `aws lightsail get-instances`. Nothing was changed"
            ),
        };

        let facts = facts(root, &settings, &me, &snapshots, &mut host, &mut out)?;
        print_facts(&facts, &mut out);

        let mut choices = Choices::defaults(&facts, self.system_volume);
        if interactive {
            choices = ask_choices(&facts, choices);
        }
        let actions = setup::plan(&facts, &choices)?;
        if actions.is_empty() {
            let chosen: Vec<Option<&String>> = facts
                .targets
                .iter()
                .zip(&choices.targets)
                .filter(|(_, c)| **c)
                .map(|(t, _)| t.verified.as_ref())
                .collect();
            let verified = if chosen.iter().all(Option::is_some) {
                format!(
                    ", and every chosen disk has a verified snapshot ({})",
                    chosen
                        .iter()
                        .flatten()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "nothing to change: the configuration, the hooks and the timer are as chosen{verified}"
            );
        } else if self.dry_run || interactive {
            // With --yes each action is said as it is done instead.
            let _ = writeln!(
                out,
                "{}:",
                if self.dry_run {
                    "what setup would do (dry run)"
                } else {
                    "what setup will do"
                }
            );
            for a in &actions {
                let _ = writeln!(out, "  {a}");
                if let (true, Action::Write { contents, .. }) = (self.dry_run, a) {
                    if a_fragment(a, &facts) {
                        for line in String::from_utf8_lossy(contents).lines() {
                            let _ = writeln!(out, "    | {line}");
                        }
                    }
                }
            }
        }
        let mut applied = false;
        if self.dry_run {
            let _ = writeln!(out, "dry run: nothing was written or changed");
        } else if !actions.is_empty() {
            let go = !interactive || {
                let stdin = std::io::stdin();
                setup::ask(&mut stdin.lock(), &mut std::io::stderr(), "Go ahead?", true)
            };
            if !go {
                fail!(
                    ExitCode::NeedsAnswers,
                    "stopped at your answer: nothing was changed"
                );
            }
            out.flush()?;
            setup::apply(&mut host, &actions, &mut out)?;
            applied = true;
            let _ = writeln!(
                out,
                "setup done: `lightsnap status` shows the timer's runs, `systemctl list-timers {}` when the next one is",
                setup::TIMER
            );
        }
        if json {
            let chosen = facts
                .targets
                .iter()
                .zip(&choices.targets)
                .filter(|(_, c)| **c)
                .map(|(t, _)| t.disk.clone())
                .collect();
            let fragment = actions.iter().find_map(|a| match a {
                Action::Write { contents, .. } if a_fragment(a, &facts) => {
                    Some(String::from_utf8_lossy(contents).into_owned())
                }
                _ => None,
            });
            super::print_json(SetupDoc {
                instance: facts.instance,
                credentials: calls,
                targets: facts.targets,
                chosen,
                databases: facts.databases,
                warnings: facts.warnings,
                actions,
                fragment,
                dry_run: self.dry_run,
                applied,
            })?;
        }
        Ok(ExitCode::Success)
    }

    /// The credentials' read calls, this instance and lightsnap's snapshots, from Lightsail.
    async fn ask_lightsail(
        &self,
        settings: &Settings,
    ) -> Result<(Vec<probe::Call>, Option<InstanceInfo>, Vec<SnapshotInfo>)> {
        let api = SdkLightsail::from_env(
            self.region.clone().or(settings.region.clone()),
            settings.profile.clone(),
        )
        .await?;
        let identity = imds::identity(Duration::from_secs(2))
            .await
            .context("finding which Lightsail instance this is (the instance metadata service)")?;
        probe::probe(&api, |all| {
            Ok(crate::snap::plan::this_instance(all, &identity)?.clone())
        })
        .await
    }
}

/// Whether a write action is the fragment's.
fn a_fragment(a: &Action, facts: &Facts) -> bool {
    matches!(a, Action::Write { path, .. } if *path == facts.fragment_path)
}

/// Everything the plan depends on, read from this machine.
fn facts(
    root: &Path,
    settings: &Settings,
    me: &InstanceInfo,
    snapshots: &[SnapshotInfo],
    host: &mut Host,
    out: &mut dyn Write,
) -> Result<Facts> {
    use crate::setup::Machine;
    let mounts = crate::kernel::mountinfo::read()?;
    let (mut targets, left_out) = discover::targets(me, &mounts);
    discover::mark_verified(&mut targets, snapshots);
    if !left_out.is_empty() {
        let _ = writeln!(out, "left out: {}", left_out.join("; "));
    }
    if targets.is_empty() {
        return Err(Failure::new(
            ExitCode::NotFound,
            format!(
                "no filesystem is mounted on a disk of instance {}: nothing to snapshot (mount the disk's filesystem, then run lightsnap setup again)",
                me.name
            ),
        )
        .into());
    }
    let confine = crate::kernel::guard::confinement();
    let databases = detect::running(Path::new("/proc"), confine.as_deref());
    let mut warnings = Vec::new();
    let mut hooks = Vec::new();
    for db in &databases {
        let example = root.join(setup::EXAMPLES).join(db.database.example());
        let wanted = match std::fs::read(&example) {
            Ok(w) => w,
            Err(e) => {
                warnings.push(format!(
                    "{} is running, but its example hook {} cannot be read ({e}): no hook installed",
                    db.database.label(),
                    example.display()
                ));
                continue;
            }
        };
        let mut dirs = vec![&settings.hook_dir];
        if db.database.verifies() {
            dirs.push(&settings.verify_hook_dir);
        }
        for dir in dirs {
            // Installed by hand under another name (`05-pg`), byte for byte: in place, not
            // installed twice (which would make two CHECKPOINTs, or two locks).
            if let Some(path) = same_file_in(dir, &wanted) {
                hooks.push(HookFile {
                    database: db.database,
                    path,
                    now: Some(wanted.clone()),
                    wanted: wanted.clone(),
                });
                continue;
            }
            let path = dir.join(db.database.installed_name());
            hooks.push(HookFile {
                database: db.database,
                now: std::fs::read(&path).ok(),
                path,
                wanted: wanted.clone(),
            });
        }
    }
    // The timer's schedule as systemd has it (drop-ins and the local time zone included).
    for window in super::timer::windows() {
        for t in &targets {
            if let Some(hour) = &t.auto_snapshot {
                if super::timer::meets_auto_snapshot(window, hour) {
                    warnings.push(format!(
                        "the automatic snapshot add-on of {} starts at {hour} UTC and may run 45 minutes, inside the timer's window ({:02}:{:02} plus {} minutes); Lightsail refuses manual snapshots meanwhile, so a run waits for it (--auto-snapshot-wait): change the add-on's hour in the Lightsail console, or the timer with `systemctl edit {}`",
                        if t.system { format!("instance {}", me.name) } else { format!("disk {}", t.disk) },
                        window.start / 60,
                        window.start % 60,
                        window.length,
                        setup::TIMER
                    ));
                }
            }
        }
    }
    // Without systemd (a container), the timer cannot be on: enabling it says why.
    let timer_on = host
        .systemctl(&["is-enabled", "--quiet", setup::TIMER])
        .unwrap_or(false)
        && host
            .systemctl(&["is-active", "--quiet", setup::TIMER])
            .unwrap_or(false);
    let fragment_path = root.join(setup::FRAGMENT);
    Ok(Facts {
        instance: me.name.clone(),
        targets,
        databases,
        hooks,
        fragment_now: std::fs::read_to_string(&fragment_path).ok(),
        fragment_path,
        timer_on,
        warnings,
    })
}

/// A file in `dir` whose contents are `wanted`, if there is one.
fn same_file_in(dir: &Path, wanted: &[u8]) -> Option<std::path::PathBuf> {
    let mut entries: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    entries
        .into_iter()
        .find(|p| p.is_file() && std::fs::read(p).is_ok_and(|c| c == wanted))
}

/// What was found, for people.
fn print_facts(facts: &Facts, out: &mut dyn Write) {
    let _ = writeln!(out, "instance: {}", facts.instance);
    for t in &facts.targets {
        let what = if t.system {
            format!("system volume ({})", t.disk)
        } else {
            format!("disk {}", t.disk)
        };
        let mps: Vec<String> = t
            .mount_points
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let verified = t
            .verified
            .as_ref()
            .map(|v| format!("; verified snapshot {v}"))
            .unwrap_or_default();
        let _ = writeln!(out, "  {what}: {}{verified}", mps.join(", "));
    }
    if facts.databases.is_empty() {
        let _ = writeln!(out, "databases: none running (PostgreSQL, MySQL/MariaDB)");
    }
    for d in &facts.databases {
        let _ = writeln!(
            out,
            "database: {} ({}{})",
            d.database.label(),
            d.found_by,
            if d.data_dirs.is_empty() {
                String::new()
            } else {
                format!(
                    ", data in {}",
                    d.data_dirs
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        );
    }
    for h in &facts.hooks {
        match &h.now {
            Some(now) if *now == h.wanted => {
                let _ = writeln!(out, "hook in place: {}", h.path.display());
            }
            Some(_) => {
                let _ = writeln!(
                    out,
                    "hook kept as it is: {} (it differs from the {} example)",
                    h.path.display(),
                    h.database.label()
                );
            }
            None => {}
        }
    }
    for w in &facts.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
}

/// The questions, at a terminal, each with its default.
fn ask_choices(facts: &Facts, defaults: Choices) -> Choices {
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut out = std::io::stderr();
    let mut choices = defaults.clone();
    for (i, t) in facts.targets.iter().enumerate() {
        let mps: Vec<String> = t
            .mount_points
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let question = if t.system {
            format!(
                "Snapshot the system volume ({}) every day? Its writes pause for the freeze, as every other's",
                mps.join(", ")
            )
        } else {
            format!("Snapshot disk {} ({}) every day?", t.disk, mps.join(", "))
        };
        choices.targets[i] = setup::ask(&mut input, &mut out, &question, defaults.targets[i]);
    }
    for (i, d) in facts.databases.iter().enumerate() {
        let question = format!(
            "{} is running: install its example hook{}?",
            d.database.label(),
            if d.database.verifies() {
                " (before the snapshot, and to check a restored copy)"
            } else {
                " (before the snapshot)"
            }
        );
        choices.hooks[i] = setup::ask(&mut input, &mut out, &question, defaults.hooks[i]);
    }
    if !facts.timer_on {
        choices.timer = setup::ask(
            &mut input,
            &mut out,
            &format!("Enable the daily timer ({})?", setup::TIMER),
            defaults.timer,
        );
    }
    // Asked only when a chosen disk has no verified snapshot yet: otherwise none is taken.
    let unverified = facts
        .targets
        .iter()
        .zip(&choices.targets)
        .any(|(t, c)| *c && t.verified.is_none());
    if unverified {
        choices.snapshot = setup::ask(
            &mut input,
            &mut out,
            "Take the first snapshot now and verify it (restored to a scratch disk, checked, removed)?",
            defaults.snapshot,
        );
    }
    choices
}
