//! `lightsnap thaw PATH` and `lightsnap thaw --recover`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;

use super::{Globals, Output};
use crate::exit_code::ExitCode;
use crate::fail;
use crate::kernel::{freeze, mountinfo, rcu, unmount};
use crate::runstate::{self, Owed, Stage};

/// Thaw a filesystem by hand, or everything an interrupted run left quiesced.
#[derive(Debug, Args)]
pub struct Thaw {
    /// The filesystem to thaw (any path on it).
    #[arg(required_unless_present = "recover", conflicts_with = "recover")]
    pub path: Option<PathBuf>,
    /// Thaw what the recovery record says the interrupted run froze (and is still mounted
    /// as it was), mount again what it unmounted, say what needs nothing, then clear the
    /// record. Never thaws a freeze the run was refused (someone else's), never mounts what
    /// the run did not unmount.
    #[arg(long)]
    pub recover: bool,
    /// With --recover: only its boot-time part, which lightsnap-system-copy.service runs
    /// before local filesystems are mounted. A copy of the system disk that an interrupted
    /// `verify` or `restore` left attached (recorded in /etc/lightsnap/system-copies/)
    /// carries the root filesystem's UUID and LABEL: it is removed from the kernel (its NVMe
    /// controller's PCI function), unless it holds the running /, so that nothing mounts it.
    /// No network: the next `verify` or `run` detaches and deletes it through the API.
    #[arg(long, requires = "recover")]
    pub boot: bool,
}

/// What a thaw did, as `--output json` prints it: mount points, each in one list.
#[derive(Debug, Default, serde::Serialize, schemars::JsonSchema)]
pub(crate) struct ThawReport {
    /// Thawed: they were frozen.
    thawed: Vec<PathBuf>,
    /// Not frozen: nothing to do.
    not_frozen: Vec<PathBuf>,
    /// Unmounted by an interrupted run, mounted again now.
    remounted: Vec<PathBuf>,
    /// Unmounted by an interrupted run, but mounted already.
    mounted: Vec<PathBuf>,
    /// `--recover`: named by the record, but owed nothing (never touched, its freeze refused,
    /// already undone by the run's watchdog, or no longer mounted as it was).
    nothing_owed: Vec<PathBuf>,
    /// `--recover`: whether there was a recovery record.
    record: Option<bool>,
    /// `--recover`: whether `/sys/kernel/rcu_expedited` was put back to 0.
    rcu_expedited_reset: bool,
}

impl ThawReport {
    /// Notes one outcome, and says it in human output.
    fn note(
        &mut self,
        output: Output,
        list: fn(&mut Self) -> &mut Vec<PathBuf>,
        point: &Path,
        line: String,
    ) {
        if output == Output::Human {
            println!("{line}");
        }
        list(self).push(point.to_path_buf());
    }
}

impl Thaw {
    /// Runs it.
    pub fn run(self, globals: &Globals) -> Result<ExitCode> {
        runstate::require_root()?;
        if self.boot {
            return boot(globals.output);
        }
        let mut report = ThawReport::default();
        let result = match self.path {
            Some(path) => thaw_path(&path, globals.output, &mut report),
            None => recover(&globals.run_dir, globals.output, &mut report),
        };
        // On failure the error (with what was done before it) is main's to print.
        if result.is_ok() && globals.output == Output::Json {
            super::print_json(&report)?;
        }
        result
    }
}

fn thaw_path(path: &Path, output: Output, report: &mut ThawReport) -> Result<ExitCode> {
    if !path.exists() {
        fail!(
            ExitCode::NotFound,
            "{}: no such file or directory",
            path.display()
        );
    }
    let mounts = mountinfo::read()?;
    let resolved = mountinfo::resolve(path, &mounts)?;
    let mount_point = resolved.mount.mount_point;
    if freeze::thaw_path(&mount_point)? {
        let line = format!("thawed {} (it was frozen)", mount_point.display());
        report.note(output, |d| &mut d.thawed, &mount_point, line);
    } else {
        let line = format!("{} was not frozen; nothing to do", mount_point.display());
        report.note(output, |d| &mut d.not_frozen, &mount_point, line);
    }
    Ok(ExitCode::Success)
}

fn recover(run_dir: &Path, output: Output, report: &mut ThawReport) -> Result<ExitCode> {
    // A run in progress holds the lock: its filesystems are its own to thaw.
    let _lock = runstate::lock(run_dir).context("a lightsnap run is in progress")?;
    let Some(record) = runstate::read_record(run_dir)? else {
        if output == Output::Human {
            println!(
                "nothing to recover: no recovery record in {}",
                run_dir.display()
            );
        }
        report.record = Some(false);
        return Ok(ExitCode::Success);
    };
    report.record = Some(true);
    let mut failed = Vec::new();
    for entry in record.entries.iter().rev() {
        let point = &entry.mount.mount_point;
        match entry.owed() {
            Owed::Nothing => {
                let why = match entry.stage {
                    Some(Stage::Refused) => {
                        "its freeze was refused (frozen by someone else, or it cannot be frozen), so it is not the run's to thaw"
                    }
                    Some(Stage::Undone) => "the run (or its watchdog) already thawed it or mounted it again",
                    _ => "the run had not frozen or unmounted it yet",
                };
                let line = format!("{}: nothing to do: {why}", point.display());
                report.note(output, |d| &mut d.nothing_owed, point, line);
            }
            // Only what the run unmounted (or was about to): never what its owner unmounted
            // since.
            Owed::Remount if unmount::is_back(&entry.mount)? => {
                let line = format!("{} is mounted", point.display());
                report.note(output, |d| &mut d.mounted, point, line);
            }
            Owed::Remount => match unmount::remount(&entry.mount) {
                Ok(()) => {
                    let line = format!(
                        "mounted {} on {} again",
                        entry.mount.source,
                        point.display()
                    );
                    report.note(output, |d| &mut d.remounted, point, line);
                }
                Err(e) => failed.push(format!("{e:#}")),
            },
            Owed::Thaw if !still_mounted(&entry.mount)? => {
                // Unmounted since (by its owner): an unmounted filesystem is not frozen, and
                // whatever is at that path now is not the run's.
                let line = format!(
                    "{}: nothing to do: {} is no longer mounted there (unmounted since), so there is nothing of the run's to thaw",
                    point.display(),
                    entry.mount.source
                );
                report.note(output, |d| &mut d.nothing_owed, point, line);
            }
            Owed::Thaw => match freeze::thaw_path(point) {
                Ok(true) => {
                    let line = format!("thawed {} (it was frozen)", point.display());
                    report.note(output, |d| &mut d.thawed, point, line);
                }
                Ok(false) => {
                    let line = format!("{} was not frozen", point.display());
                    report.note(output, |d| &mut d.not_frozen, point, line);
                }
                Err(e) => failed.push(format!("{e:#}")),
            },
        }
    }
    // The interrupted run's watchdog may have died holding the switch on.
    if record.rcu_expedited && rcu::is_on() == Some(true) {
        match rcu::turn_off() {
            Ok(()) => {
                if output == Output::Human {
                    println!(
                        "set {} back to 0 (the interrupted run had it on for its freeze)",
                        rcu::SWITCH
                    );
                }
                report.rcu_expedited_reset = true;
            }
            Err(e) => failed.push(format!("setting {} back to 0: {e}", rcu::SWITCH)),
        }
    }
    if !failed.is_empty() {
        fail!(
            ExitCode::Failure,
            "could not recover everything (the record is kept):\n  {}",
            failed.join("\n  ")
        );
    }
    runstate::clear_record(run_dir)?;
    Ok(ExitCode::Success)
}

/// Whether `mount`'s filesystem is still mounted at its mount point (the same device).
fn still_mounted(mount: &mountinfo::Mount) -> Result<bool> {
    Ok(unmount::current(&mount.mount_point)?.is_some_and(|m| m.dev == mount.dev))
}

/// The document of `thaw --recover --boot`.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub(crate) struct BootDoc {
    /// What was done for each recorded copy of the system disk (empty: none recorded).
    system_copies: Vec<crate::restore::bootcopy::BootAction>,
}

/// `thaw --recover --boot`: the boot step of [`crate::restore::bootcopy`] on every record.
/// Exit 0 when there was nothing to do or every copy was removed (or was gone); 1 when a copy
/// is `/` or could not be removed (the unit then shows as failed).
fn boot(output: Output) -> Result<ExitCode> {
    use crate::kernel::blockdev::SysfsRoot;
    use crate::restore::bootcopy::{self, BootAction, BootHost};
    let dir = bootcopy::record_dir();
    let records = bootcopy::read_all(&dir);
    let sysfs = SysfsRoot::default();
    let in_use =
        |name: &str| crate::restore::host::in_use(&sysfs, name, &Path::new("/dev").join(name));
    let host = BootHost {
        sysfs: &sysfs,
        root_serials: bootcopy::root_serials(&sysfs),
        in_use: &in_use,
    };
    let actions: Vec<BootAction> = records
        .iter()
        .map(|r| bootcopy::at_boot(&host, &dir, r, bootcopy::device_wait()))
        .collect();
    match output {
        Output::Json => super::print_json(BootDoc {
            system_copies: actions.clone(),
        })?,
        Output::Human if actions.is_empty() => println!(
            "no copy of the system disk recorded as attached ({})",
            dir.display()
        ),
        // Each action was said in the log, at crit (the journal, under the unit).
        Output::Human => {}
    }
    let ok = actions
        .iter()
        .all(|a| matches!(a, BootAction::Removed { .. } | BootAction::Absent { .. }));
    Ok(if ok {
        ExitCode::Success
    } else {
        ExitCode::Failure
    })
}
