//! `lightsnap setup`'s decisions: from what was found on this instance ([`Facts`]) and what
//! the operator chose ([`Choices`]), the list of [`Action`]s that brings the machine to the
//! wanted state — nothing when it is there already, which is what makes a second `setup` a
//! no-op. The actions are carried out through a small [`Machine`] trait (files, `systemctl`,
//! lightsnap's own `run` and `verify`), so the plan and its idempotence are tested without
//! root; the real machine is [`host::Host`].
//!
//! Finding the facts is split by side: [`probe`] (which read calls the credentials may make),
//! [`discover`] (this instance's disks and the filesystems on them), [`detect`] (running
//! databases); the command line (`src/cli/setup.rs`) asks the questions and prints.

pub mod detect;
pub mod discover;
pub mod host;
pub mod probe;

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::exit_code::{ExitCode, Failure};

pub use detect::{Database, Running};
pub use discover::Target;

/// The timer `setup` enables.
pub const TIMER: &str = "lightsnap-snapshot.timer";

/// The fragment `setup` writes, under the configuration root.
pub const FRAGMENT: &str = "etc/lightsnap/config.d/50-setup.toml";

/// Where the package installs the example hooks, under the configuration root.
pub const EXAMPLES: &str = "usr/share/lightsnap/examples/hooks";

/// A hook `setup` would install: an example, copied as the documentation says.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct HookFile {
    /// The database it is for.
    pub database: Database,
    /// Where it goes (`/etc/lightsnap/hooks.d/10-postgresql`).
    pub path: PathBuf,
    /// The example's bytes.
    #[serde(skip)]
    pub wanted: Vec<u8>,
    /// What is there now, if anything.
    #[serde(skip)]
    pub now: Option<Vec<u8>>,
}

/// What was found: everything the plan depends on, read before anything is changed.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// This instance's Lightsail name.
    pub instance: String,
    /// Its disks with filesystems mounted on them, data disks first.
    pub targets: Vec<Target>,
    /// Databases found running.
    pub databases: Vec<Running>,
    /// The hooks of the databases found (snapshot and, where the example has one, verify).
    pub hooks: Vec<HookFile>,
    /// The fragment's path.
    pub fragment_path: PathBuf,
    /// The fragment as it is now, if it exists.
    pub fragment_now: Option<String>,
    /// Whether the timer is enabled and active already.
    pub timer_on: bool,
    /// Things the operator should know (an automatic snapshot inside the timer's window, ...).
    pub warnings: Vec<String>,
}

/// What the operator chose (the defaults with `--yes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choices {
    /// Per target (same order as [`Facts::targets`]): whether the timer snapshots it.
    pub targets: Vec<bool>,
    /// Per database found (same order as [`Facts::databases`]): whether its hook is installed.
    pub hooks: Vec<bool>,
    /// Whether to enable the timer.
    pub timer: bool,
    /// Whether to take and verify the first snapshot now.
    pub snapshot: bool,
}

impl Choices {
    /// The defaults: every data disk; the system volume only when there is no data disk, or
    /// when `system_volume` says so (freezing `/` pauses the whole system's writes, and
    /// application data usually lives on data disks); every database's hook; the timer; the
    /// first snapshot.
    pub fn defaults(facts: &Facts, system_volume: Option<bool>) -> Self {
        let any_data = facts.targets.iter().any(|t| !t.system);
        Self {
            targets: facts
                .targets
                .iter()
                .map(|t| !t.system || system_volume.unwrap_or(!any_data))
                .collect(),
            hooks: vec![true; facts.databases.len()],
            timer: true,
            snapshot: true,
        }
    }
}

/// One change `setup` makes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum Action {
    /// Write a file atomically (parents made if missing).
    Write {
        /// Where.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
        /// What it is, for people.
        what: String,
        /// Its contents.
        #[serde(skip)]
        contents: Vec<u8>,
    },
    /// `systemctl enable --now lightsnap-snapshot.timer`.
    EnableTimer,
    /// `lightsnap run --wait`: the first snapshot of everything configured.
    Snapshot,
    /// `lightsnap verify --latest --disk DISK`, with `env` for the verify hooks.
    Verify {
        /// The disk (as snapshots name it).
        disk: String,
        /// Extra environment (`LIGHTSNAP_PG_VERIFY_DATA`, `LIGHTSNAP_MYSQL_VERIFY_DATA`).
        env: Vec<(String, String)>,
    },
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::Write {
                path, mode, what, ..
            } => write!(f, "write {} (mode {mode:o}): {what}", path.display()),
            Action::EnableTimer => write!(f, "systemctl enable --now {TIMER}"),
            Action::Snapshot => write!(f, "lightsnap run --wait: take the first snapshot"),
            Action::Verify { disk, env } => {
                write!(f, "lightsnap verify --latest --disk {disk}")?;
                for (k, v) in env {
                    write!(f, " ({k}={v})")?;
                }
                Ok(())
            }
        }
    }
}

/// The fragment naming `targets` for the timer.
pub fn fragment(instance: &str, targets: &[&Target]) -> Result<String> {
    let mut text = format!(
        "# Written by `lightsnap setup` for instance {instance}; running it again rewrites this\n\
         # file. Settings of your own belong in /etc/lightsnap/config.toml or in another file of\n\
         # this directory (files here are read in name order, later ones winning).\n\
         #\n\
         # What the timer (`lightsnap run`) snapshots, frozen together as one consistency group.\n"
    );
    for t in targets {
        text.push_str(&format!(
            "\n# {}\n",
            if t.system {
                format!("the system volume of {instance}")
            } else {
                format!("disk {}", t.disk)
            }
        ));
        for mp in &t.mount_points {
            let path = mp
                .to_str()
                .with_context(|| format!("mount point {} is not UTF-8", mp.display()))?;
            text.push_str(&format!(
                "[[snapshot]]\npath = {}\n",
                toml::Value::String(path.to_string())
            ));
        }
    }
    Ok(text)
}

/// The actions that bring the machine to what `choices` asks for, given `facts`: none for
/// what is in place already.
pub fn plan(facts: &Facts, choices: &Choices) -> Result<Vec<Action>> {
    let chosen: Vec<&Target> = facts
        .targets
        .iter()
        .zip(&choices.targets)
        .filter(|(_, c)| **c)
        .map(|(t, _)| t)
        .collect();
    if chosen.is_empty() {
        return Err(Failure::new(
            ExitCode::Usage,
            "nothing was chosen to snapshot: nothing written (run lightsnap setup again and choose a disk, or give --system-volume yes)",
        )
        .into());
    }
    let mut actions = Vec::new();
    let text = fragment(&facts.instance, &chosen)?;
    if facts.fragment_now.as_deref() != Some(text.as_str()) {
        actions.push(Action::Write {
            path: facts.fragment_path.clone(),
            mode: 0o644,
            what: format!(
                "the configuration fragment ({} snapshot path{})",
                chosen.iter().map(|t| t.mount_points.len()).sum::<usize>(),
                if chosen.iter().map(|t| t.mount_points.len()).sum::<usize>() == 1 {
                    ""
                } else {
                    "s"
                }
            ),
            contents: text.into_bytes(),
        });
    }
    for (running, wanted) in facts.databases.iter().zip(&choices.hooks) {
        if !*wanted {
            continue;
        }
        for h in facts
            .hooks
            .iter()
            .filter(|h| h.database == running.database)
        {
            // A hook already there is the operator's, edited or not: kept.
            if h.now.is_none() {
                actions.push(Action::Write {
                    path: h.path.clone(),
                    mode: 0o755,
                    what: format!("the {} example hook", h.database.label()),
                    contents: h.wanted.clone(),
                });
            }
        }
    }
    if choices.timer && !facts.timer_on {
        actions.push(Action::EnableTimer);
    }
    let unverified: Vec<&&Target> = chosen.iter().filter(|t| t.verified.is_none()).collect();
    if choices.snapshot && !unverified.is_empty() {
        actions.push(Action::Snapshot);
        for t in unverified {
            actions.push(Action::Verify {
                disk: t.disk.clone(),
                env: verify_env(&facts.databases, &facts.targets, t, &choices.hooks),
            });
        }
    }
    Ok(actions)
}

/// The verify hooks' environment for a target: where the data directory of a database whose
/// hook is installed lives on it, below its mount point (`LIGHTSNAP_PG_VERIFY_DATA`,
/// `LIGHTSNAP_MYSQL_VERIFY_DATA`), so that the first verification checks that server's data.
/// The data directory is on the target whose mount point is the deepest above it (`/data/pg`
/// is on the disk mounted at `/data`, not on the system volume at `/`).
fn verify_env(
    databases: &[Running],
    targets: &[Target],
    target: &Target,
    hooks: &[bool],
) -> Vec<(String, String)> {
    let mut env = Vec::new();
    for (db, _) in databases.iter().zip(hooks).filter(|(_, h)| **h) {
        if !db.database.verifies() {
            continue;
        }
        // The first data directory on this target (the variable holds one).
        let Some((mp, data)) = db.data_dirs.iter().find_map(|data| {
            let holder = targets
                .iter()
                .flat_map(|t| t.mount_points.iter().map(move |mp| (t, mp)))
                .filter(|(_, mp)| data.starts_with(mp))
                .max_by_key(|(_, mp)| mp.components().count())?;
            (holder.0.disk == target.disk).then_some((holder.1, data))
        }) else {
            continue;
        };
        let rel = data.strip_prefix(mp).unwrap_or(data);
        let rel = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        env.push((
            db.database.verify_data_var().to_string(),
            rel.display().to_string(),
        ));
    }
    env
}

/// What a machine must do for `setup`: the seam between the plan and the system.
pub trait Machine {
    /// Writes `contents` to `path` atomically with permission bits `mode`, making missing
    /// parent directories (mode 0755).
    fn write(&mut self, path: &Path, contents: &[u8], mode: u32) -> Result<()>;
    /// Runs `systemctl ARGS`; whether it succeeded.
    fn systemctl(&mut self, args: &[&str]) -> Result<bool>;
    /// Runs lightsnap itself with `args` and extra `env`; its exit code.
    fn lightsnap(&mut self, args: &[String], env: &[(String, String)]) -> Result<i32>;
}

/// Carries out `actions` in order, saying what is done on `out`; stops at the first failure.
pub fn apply<M: Machine>(machine: &mut M, actions: &[Action], out: &mut dyn Write) -> Result<()> {
    for action in actions {
        let _ = writeln!(out, "setup: {action}");
        match action {
            Action::Write {
                path,
                mode,
                contents,
                ..
            } => machine.write(path, contents, *mode)?,
            Action::EnableTimer => {
                if !machine.systemctl(&["enable", "--now", TIMER])? {
                    return Err(Failure::new(
                        ExitCode::Failure,
                        format!("systemctl enable --now {TIMER} failed (see above); enable the timer by hand"),
                    )
                    .into());
                }
            }
            Action::Snapshot => {
                let code = machine.lightsnap(&["run".into(), "--wait".into()], &[])?;
                if code != 0 {
                    return Err(Failure::new(
                        exit_code_of(code),
                        format!("the first snapshot failed: lightsnap run --wait exited {code} (see above); fix what it says and run lightsnap setup again"),
                    )
                    .into());
                }
            }
            Action::Verify { disk, env } => {
                let args: Vec<String> = ["verify", "--latest", "--disk", disk]
                    .iter()
                    .map(|s| s.to_string())
                    .collect();
                let code = machine.lightsnap(&args, env)?;
                if code != 0 {
                    return Err(Failure::new(
                        exit_code_of(code),
                        format!("the first snapshot of disk {disk} did not verify: lightsnap verify exited {code} (see above)"),
                    )
                    .into());
                }
            }
        }
    }
    Ok(())
}

/// The [`ExitCode`] a child lightsnap exited with (its own number, where lightsnap knows it).
fn exit_code_of(code: i32) -> ExitCode {
    ExitCode::from_code(code)
}

/// Asks a yes/no question on `out`, reading the answer from `input`; an empty answer (or end
/// of input) is `default`.
pub fn ask(input: &mut dyn BufRead, out: &mut dyn Write, question: &str, default: bool) -> bool {
    loop {
        let _ = write!(out, "{question} [{}] ", if default { "Y/n" } else { "y/N" });
        let _ = out.flush();
        let mut line = String::new();
        match input.read_line(&mut line) {
            Ok(0) | Err(_) => {
                let _ = writeln!(out);
                return default;
            }
            Ok(_) => {}
        }
        match line.trim().to_ascii_lowercase().as_str() {
            "" => return default,
            "y" | "yes" => return true,
            "n" | "no" => return false,
            _ => {
                let _ = writeln!(out, "please answer y or n");
            }
        }
    }
}

#[cfg(test)]
mod tests;
