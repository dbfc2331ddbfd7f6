//! The command line: one clap enum, one file per subcommand, each with `run(self)`.

mod check;
mod docs_cmd;
mod examples;
mod fleet;
mod freeze_and_snap;
mod generate;
mod iam_policy;
#[cfg(test)]
mod json_schema;
mod list;
pub mod owner;
mod plan;
mod prune;
pub mod quiet;
mod restore;
mod run;
mod settings;
mod setup;
mod snap_args;
mod snap_instance;
mod status;
mod thaw;
pub mod timer;
pub mod verify;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::exit_code::ExitCode;
use crate::runstate::DEFAULT_RUN_DIR;

/// The exit codes' text, for [`EXIT_CODES_HELP`] and the long help (`concat!` takes
/// literals only).
macro_rules! exit_codes_text {
    () => {
        "\
Exit codes:
  0    success
  1    unexpected failure; check: WARNING (a target is older than -w)
  2    usage error or invalid input (nothing was touched); check: CRITICAL (older than -c)
  3    path, disk or instance not found; check: UNKNOWN (it could not check)
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
  23   Lightsail refused an action for these credentials (see lightsnap iam-policy)
  24   setup: not at a terminal and no --yes, or stopped at an answer (nothing was changed)
  25   restore --replace: the live disk is not tagged as this instance's (nothing was changed)
  129/130/143  stopped by SIGHUP/SIGINT/SIGTERM (after thawing)"
    };
}

/// Exit codes, as `--help` shows them. Kept next to the enum's numbers by a test.
pub const EXIT_CODES_HELP: &str = exit_codes_text!();

/// `lightsnap --help`: examples, then the exit codes.
const LONG_HELP: &str = concat!(
    "\
Examples:
  lightsnap plan /data                        what a snapshot of /data would do
  lightsnap freeze-and-snap /data             freeze /data, snapshot its disk, thaw
  lightsnap freeze-and-snap --disk data-1 /data --wait
  lightsnap snap-instance                     the whole instance, every filesystem frozen
  lightsnap run                               what the configuration names, then retention
  lightsnap list                              lightsnap's snapshots
  lightsnap prune --keep-daily 7 --keep-weekly 4 --dry-run
  lightsnap check --max-age 26h -w 25h        a monitoring-plugins check
  lightsnap config                            the settings in force and their files
  lightsnap --profile backup list             with the AWS profile `backup`

",
    exit_codes_text!()
);

/// The version line: the package's version, the commit and the target it was built from
/// (`build.rs`; `unknown` where there was no git to ask, as in a build from a tarball).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("LIGHTSNAP_COMMIT"),
    ", ",
    env!("LIGHTSNAP_TARGET"),
    ")"
);

/// Consistent snapshots of Amazon Lightsail disks from inside the instance.
#[derive(Debug, Parser)]
#[command(
    name = "lightsnap",
    version = VERSION,
    about,
    after_help = EXIT_CODES_HELP,
    after_long_help = LONG_HELP
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Say more (-v: progress, -vv: debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Print nothing on stdout when the command succeeds (for cron, which mails any output);
    /// errors and warnings still go to stderr, and with --output json a failure's document
    /// is still printed.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// The AWS profile (of ~/.aws/config and ~/.aws/credentials), over `profile` in the
    /// configuration and AWS_PROFILE.
    #[arg(long, global = true, value_name = "NAME")]
    pub profile: Option<String>,
    /// Read the configuration from FILE alone, instead of /etc/lightsnap/config.toml and the
    /// config.d directories.
    #[arg(long, global = true, value_name = "FILE", env = "LIGHTSNAP_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where the lock and the recovery record are kept (a tmpfs, never a filesystem to freeze).
    #[arg(long, global = true, env = "LIGHTSNAP_RUN_DIR", default_value = DEFAULT_RUN_DIR)]
    pub run_dir: PathBuf,
    /// Output format: short human lines, or one JSON document (schema in the manual, docs/src/json.md).
    #[arg(long, global = true, value_enum, default_value_t = Output::Human)]
    pub output: Output,
    /// The directory the configuration is read under (`/etc/lightsnap/...` below it): to try
    /// a configuration before installing it, or to read an image's. Its files must be root's
    /// alone, as under `/`. Kept in the shipped binary (the package tests use it) and
    /// documented in the manual's safety page; hidden from `--help`, the man page and the
    /// completions.
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
    /// `-q`: nothing on stdout on success.
    pub quiet: bool,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Freeze the filesystem at PATH, snapshot its Lightsail disk, thaw.
    #[command(after_help = examples::FREEZE_AND_SNAP)]
    FreezeAndSnap(freeze_and_snap::FreezeAndSnap),
    /// Snapshot the whole instance (CreateInstanceSnapshot), every filesystem on its disks
    /// frozen.
    #[command(after_help = examples::SNAP_INSTANCE)]
    SnapInstance(snap_instance::SnapInstance),
    /// Snapshot what the configuration names ([[snapshot]]), then apply its [retention]:
    /// what the systemd timer runs.
    #[command(after_help = examples::RUN)]
    Run(run::Run),
    /// Show what freeze-and-snap would do, touching nothing.
    #[command(after_help = examples::PLAN)]
    Plan(freeze_and_snap::FreezeAndSnap),
    /// Thaw a filesystem by hand, or everything an interrupted run left quiesced.
    #[command(after_help = examples::THAW)]
    Thaw(thaw::Thaw),
    /// List disk snapshots (this instance's unless --all, --instance or --all-instances).
    #[command(after_help = examples::LIST)]
    List(list::List),
    /// Delete old snapshots: this instance's (lightsnap:owner), completed, beyond the keep
    /// rules or --older-than.
    #[command(after_help = examples::PRUNE)]
    Prune(prune::Prune),
    /// Show each snapshot target's last success and last attempt (from the state files).
    #[command(after_help = examples::STATUS)]
    Status(status::Status),
    /// Rehearse a restore: the snapshot restored to a scratch disk, attached, checked
    /// read-only, removed; the snapshot tagged lightsnap:verified=clean|failed|unchecked.
    #[command(after_help = examples::VERIFY)]
    Verify(verify::Verify),
    /// Restore a snapshot: its files read-only at a directory (--mount, --release), a data
    /// disk rolled back (--replace), or a new instance (--new-instance).
    Restore(restore::Restore),
    /// A monitoring-plugins (Nagios) check: 0 OK, 1 WARNING (-w), 2 CRITICAL (-c, --max-age)
    /// by the age of each target's last success, 3 UNKNOWN when it cannot check.
    #[command(after_help = examples::CHECK)]
    Check(check::Check),
    /// Set lightsnap up on this instance: credentials checked, disks found, a database's hook,
    /// the timer enabled, the first snapshot taken and verified.
    Setup(setup::Setup),
    /// Print the least-privilege IAM policy for lightsnap's AWS keys (JSON, for
    /// `aws iam put-user-policy`).
    IamPolicy(iam_policy::IamPolicy),
    /// Every instance's disks and their newest lightsnap snapshots, from the Lightsail API
    /// (read-only; --max-age makes it a check).
    Fleet(fleet::Fleet),
    /// Show the settings in force and the file each came from; `config check` validates
    /// the configuration files without credentials or network.
    #[command(after_help = examples::CONFIG)]
    Config(settings::ConfigCmd),
    /// Print the shell completions (bash, zsh, fish, elvish, powershell).
    #[command(after_help = examples::COMPLETIONS)]
    Completions(docs_cmd::Completions),
    /// Print the man page lightsnap(8), or write every man page into a directory.
    #[command(after_help = examples::MAN)]
    Man(docs_cmd::ManPages),
    /// Write the man page and shell completions (for packaging).
    #[command(hide = true, name = "__generate")]
    Generate(generate::Generate),
}

impl Cli {
    /// Runs the chosen subcommand.
    pub fn run(self) -> Result<ExitCode> {
        if let Some(profile) = &self.profile {
            // For every AWS piece that reads the environment (the metadata client's profile
            // keys); set before any thread is started.
            std::env::set_var("AWS_PROFILE", profile);
        }
        crate::config::set_overrides(crate::config::Overrides {
            file: self.config.clone(),
            profile: self.profile.clone(),
        });
        if self.quiet {
            quiet::silence()?;
        }
        let globals = Globals {
            output: self.output,
            run_dir: self.run_dir,
            config_root: self.config_root,
            quiet: self.quiet,
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
            Command::Setup(c) => c.run(&globals),
            Command::IamPolicy(c) => c.run(&globals),
            Command::Fleet(c) => c.run(&globals),
            Command::Config(c) => c.run(&globals),
            Command::Completions(c) => c.run(),
            Command::Man(c) => c.run(),
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

/// The `error` member of a failed command's document, for `--output json`.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct ErrorMember {
    /// What went wrong, and what to do.
    pub message: String,
    /// The exit code (the process's too).
    pub exit_code: i32,
}

/// The error document of a command that failed before it had done anything.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct ErrorDoc {
    /// What went wrong.
    pub error: ErrorMember,
}

/// The error document of a failed command, for `--output json`.
pub fn error_json(message: &str, code: ExitCode) -> serde_json::Value {
    serde_json::to_value(ErrorDoc {
        error: ErrorMember {
            message: message.to_string(),
            exit_code: code.code(),
        },
    })
    .unwrap_or_default()
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

/// The subcommand named on a command line (the first word that is neither an option nor the
/// value of a global option), even one clap refused.
pub fn subcommand_of(args: &[std::ffi::OsString]) -> Option<String> {
    const TAKES_VALUE: &[&str] = &[
        "--run-dir",
        "--output",
        "--config-root",
        "--profile",
        "--config",
    ];
    let mut words = args.iter().skip(1).map(|a| a.to_string_lossy());
    while let Some(w) = words.next() {
        if TAKES_VALUE.contains(&w.as_ref()) {
            words.next();
        } else if !w.starts_with('-') {
            return Some(w.into_owned());
        }
    }
    None
}

/// `check`'s UNKNOWN document (`--output json`), for a command line that could not be parsed.
pub fn check_unknown_json(why: &str) -> serde_json::Value {
    serde_json::to_value(check::CheckUnknown::new(why.to_string())).unwrap_or_default()
}

/// The exit code of `check`'s UNKNOWN (its usage errors included).
pub fn check_unknown_code() -> i32 {
    check::UNKNOWN_CODE
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
        for &code in ExitCode::ALL
            .iter()
            .filter(|c| !matches!(c, Hangup | Interrupted | Terminated))
        {
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
