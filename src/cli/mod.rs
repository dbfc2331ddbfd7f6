//! The command line: one clap enum, one file per subcommand, each with `run(self)`.

mod check;
mod freeze_and_snap;
mod generate;
mod list;
pub mod owner;
mod plan;
mod prune;
pub mod quiet;
mod restore;
mod run;
mod snap_args;
mod snap_instance;
mod status;
mod thaw;
mod timer;
pub mod verify;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::exit_code::ExitCode;
use crate::runstate::DEFAULT_RUN_DIR;

/// Exit codes, as `--help` shows them. Kept next to the enum's numbers by a test.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0    success
  1    unexpected failure
  2    usage error or invalid input (nothing was touched); check: CRITICAL (a target is stale)
  3    path, disk or instance not found
  4    not a filesystem on a block device
  5    busy (another run holds the lock, or the mount is in use)
  6    already frozen by someone else (left as it was)
  7    permission denied (not root, or outside LIGHTSNAP_CONFINE_TO)
  8    the disk named is not the one behind the path
  10   Lightsail refused the request
  11   no AWS credentials found, or Lightsail refused them
  12   Lightsail throttled, failed, or could not be reached
  13   freeze deadline passed (thawed, call abandoned)
  14   partial or unverified result
  15   --wait gave up while a snapshot was still pending
  16   a hook failed or timed out (pre-freeze: nothing was frozen)
  17   an automatic snapshot was being made and did not finish in --auto-snapshot-wait
  18   verify: the restored snapshot failed a check (tagged lightsnap:verified=failed)
  19   the snapshot was taken, but its copy to another region failed
  20   verify could not finish (timeout), or left a scratch disk behind
  21   verify could not check something on the restored disk (tagged lightsnap:verified=unchecked)
  22   restore --replace failed; the original disk was put back
  129/130/143  stopped by SIGHUP/SIGINT/SIGTERM (after thawing)";

/// Consistent snapshots of Amazon Lightsail disks from inside the instance.
#[derive(Debug, Parser)]
#[command(name = "lightsnap", version, about, after_help = EXIT_CODES_HELP)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Say more (-v: progress, -vv: debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Where the lock and the recovery record are kept (a tmpfs, never a filesystem to freeze).
    #[arg(long, global = true, env = "LIGHTSNAP_RUN_DIR", default_value = DEFAULT_RUN_DIR)]
    pub run_dir: PathBuf,
    /// Output format: short human lines, or one JSON document (schema in the README).
    #[arg(long, global = true, value_enum, default_value_t = Output::Human)]
    pub output: Output,
    /// The directory configuration paths are relative to (`/etc/lightsnap/...` under it).
    #[arg(
        long,
        global = true,
        env = "LIGHTSNAP_CONFIG_ROOT",
        default_value = "/",
        hide = true
    )]
    pub config_root: PathBuf,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Short lines for people.
    Human,
    /// One JSON document on stdout.
    Json,
}

/// What every subcommand may need from the global options.
#[derive(Debug, Clone)]
pub struct Globals {
    /// Output format.
    pub output: Output,
    /// Lock and recovery record directory.
    pub run_dir: PathBuf,
    /// Configuration root.
    pub config_root: PathBuf,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Freeze the filesystem at PATH, snapshot its Lightsail disk, thaw.
    FreezeAndSnap(freeze_and_snap::FreezeAndSnap),
    /// Snapshot the whole instance (CreateInstanceSnapshot), every filesystem on its disks
    /// frozen.
    SnapInstance(snap_instance::SnapInstance),
    /// Snapshot what the configuration names ([[snapshot]]), then apply its [retention]:
    /// what the systemd timer runs.
    Run(run::Run),
    /// Show what freeze-and-snap would do, touching nothing.
    Plan(freeze_and_snap::FreezeAndSnap),
    /// Thaw a filesystem by hand, or everything an interrupted run left quiesced.
    Thaw(thaw::Thaw),
    /// List disk snapshots (this instance's unless --all, --instance or --all-instances).
    List(list::List),
    /// Delete old snapshots: this instance's (lightsnap:owner), completed, beyond --keep or
    /// --older-than.
    Prune(prune::Prune),
    /// Show each snapshot target's last success and last attempt (from the state files).
    Status(status::Status),
    /// Rehearse a restore: the snapshot restored to a scratch disk, attached, checked
    /// read-only, removed; the snapshot tagged lightsnap:verified=clean|failed|unchecked.
    Verify(verify::Verify),
    /// Restore a snapshot: its files read-only at a directory (--mount, --release), a data
    /// disk rolled back (--replace), or a new instance (--new-instance).
    Restore(restore::Restore),
    /// Exit 0 (OK) if every target has a success younger than --max-age, else 2 (CRITICAL):
    /// a monitoring-plugins (Nagios) check.
    Check(check::Check),
    /// Write the man page and shell completions (for packaging).
    #[command(hide = true, name = "__generate")]
    Generate(generate::Generate),
}

impl Cli {
    /// Runs the chosen subcommand.
    pub fn run(self) -> Result<ExitCode> {
        let globals = Globals {
            output: self.output,
            run_dir: self.run_dir,
            config_root: self.config_root,
        };
        match self.command {
            Command::FreezeAndSnap(c) => c.run(&globals),
            Command::SnapInstance(c) => c.run(&globals),
            Command::Run(c) => c.run(&globals),
            Command::Plan(mut c) => {
                c.snap.dry_run = true;
                c.run(&globals)
            }
            Command::Thaw(c) => c.run(&globals),
            Command::List(c) => c.run(&globals),
            Command::Prune(c) => c.run(&globals),
            Command::Status(c) => c.run(&globals),
            Command::Check(c) => c.run(&globals),
            Command::Verify(c) => c.run(&globals),
            Command::Restore(c) => c.run(&globals),
            Command::Generate(c) => c.run(),
        }
    }
}

/// The version of every `--output json` document's layout: members are only ever added; a
/// change that renames or removes one raises it.
pub const JSON_SCHEMA: u32 = 1;

/// Prints one `--output json` document on stdout, with its `schema` member.
pub fn print_json(doc: impl serde::Serialize) -> Result<()> {
    let mut doc = serde_json::to_value(doc)?;
    if let Some(map) = doc.as_object_mut() {
        map.insert("schema".into(), JSON_SCHEMA.into());
    }
    println!("{}", serde_json::to_string_pretty(&doc)?);
    Ok(())
}

/// The error document of a failed command, for `--output json`.
pub fn error_json(message: &str, code: ExitCode) -> serde_json::Value {
    serde_json::json!({ "error": { "message": message, "exit_code": code.code() } })
}

/// Whether `--output json` is on a command line that could not be parsed: its usage error is
/// a JSON document too.
pub fn json_asked(args: &[std::ffi::OsString]) -> bool {
    args.iter()
        .zip(args.iter().skip(1).map(Some).chain(std::iter::once(None)))
        .any(|(a, next)| {
            a == "--output=json" || (a == "--output" && next.is_some_and(|n| n == "json"))
        })
}

/// Parses a duration written as `500ms`, `10s`, `2m`.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("{e}: write a duration such as 500ms, 10s or 2m"))
}

/// Parses `--freeze-timeout`: a duration within
/// [`MAX_FREEZE_TIMEOUT`](crate::cloud::validate::MAX_FREEZE_TIMEOUT).
pub fn parse_freeze_timeout(text: &str) -> Result<std::time::Duration, String> {
    let timeout = parse_duration(text)?;
    // clap names the option and the value already: only the bound broken.
    crate::cloud::validate::freeze_timeout("--freeze-timeout", timeout).map_err(|e| match e {
        crate::cloud::validate::InvalidInput::Duration { why, .. } => why,
        other => other.to_string(),
    })?;
    Ok(timeout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_help_lists_every_exit_code() {
        use ExitCode::*;
        for code in [
            Success,
            Failure,
            Usage,
            NotFound,
            Unsupported,
            Busy,
            AlreadyFrozen,
            Permission,
            ApiRejected,
            ApiAuth,
            ApiUnavailable,
            DeadlineExceeded,
            Partial,
            WaitTimeout,
            HookFailed,
            AutoSnapshot,
            VerifyFailed,
            CopyFailed,
            VerifyIncomplete,
            VerifyUnchecked,
            RestoreFailed,
        ] {
            let needle = format!("\n  {:<4} ", code.code());
            assert!(
                EXIT_CODES_HELP.contains(&needle)
                    || (code == Success && EXIT_CODES_HELP.contains("  0    ")),
                "{code:?} missing from the help"
            );
        }
        assert!(EXIT_CODES_HELP.contains("129/130/143"));
    }

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("500ms").unwrap().as_millis(), 500);
        assert_eq!(parse_duration("2m").unwrap().as_secs(), 120);
        assert!(parse_duration("10").is_err());
    }

    /// The maximum is one constant; the help of every command taking --freeze-timeout says it.
    #[test]
    fn the_freeze_timeout_help_states_the_maximum() {
        use crate::cloud::validate::MAX_FREEZE_TIMEOUT;
        let max = humantime::format_duration(MAX_FREEZE_TIMEOUT).to_string();
        assert!(parse_freeze_timeout(&max).is_ok());
        let err = parse_freeze_timeout("100000h").unwrap_err();
        assert!(err.contains(&max), "{err}");
        let mut cli = Cli::command();
        for sub in ["freeze-and-snap", "snap-instance", "run", "plan"] {
            let help = cli
                .find_subcommand_mut(sub)
                .unwrap()
                .render_long_help()
                .to_string();
            assert!(help.contains(&format!("at most {max}")), "{sub}: {help}");
        }
    }

    #[test]
    fn the_tag_help_says_a_value_is_optional() {
        let mut cli = Cli::command();
        let help = cli
            .find_subcommand_mut("freeze-and-snap")
            .unwrap()
            .render_long_help()
            .to_string();
        assert!(help.contains("KEY alone or KEY="), "{help}");
    }
}
