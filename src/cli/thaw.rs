//! `lightsnap thaw PATH` and `lightsnap thaw --recover`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;

use super::{Globals, Output};
use crate::exit_code::ExitCode;
use crate::fail;
use crate::kernel::{freeze, mountinfo, rcu, unmount};
use crate::runstate::{self, Quiesce};

/// Thaw a filesystem by hand, or everything an interrupted run left quiesced.
#[derive(Debug, Args)]
pub struct Thaw {
    /// The filesystem to thaw (any path on it).
    #[arg(required_unless_present = "recover", conflicts_with = "recover")]
    pub path: Option<PathBuf>,
    /// Thaw (or mount again) exactly what the recovery record names as still frozen
    /// (or unmounted), then clear the record.
    #[arg(long)]
    pub recover: bool,
}

/// What a thaw did, as `--output json` prints it: mount points, each in one list.
#[derive(Debug, Default, serde::Serialize)]
struct ThawReport {
    /// Thawed: they were frozen.
    thawed: Vec<PathBuf>,
    /// Not frozen: nothing to do.
    not_frozen: Vec<PathBuf>,
    /// Unmounted by an interrupted run, mounted again now.
    remounted: Vec<PathBuf>,
    /// Unmounted by an interrupted run, but mounted already.
    mounted: Vec<PathBuf>,
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
        // A freeze that fell back to an unmount at run time is recorded as a freeze that may
        // have: what the mount table shows decides.
        let unmounted = entry.may_unmount() && !unmount::is_back(&entry.mount)?;
        if unmounted {
            match unmount::remount(&entry.mount) {
                Ok(()) => {
                    let line = format!(
                        "mounted {} on {} again",
                        entry.mount.source,
                        point.display()
                    );
                    report.note(output, |d| &mut d.remounted, point, line);
                }
                Err(e) => failed.push(format!("{e:#}")),
            }
        } else if entry.quiesce == Quiesce::Freeze {
            match freeze::thaw_path(point) {
                Ok(true) => {
                    let line = format!("thawed {} (it was frozen)", point.display());
                    report.note(output, |d| &mut d.thawed, point, line);
                }
                Ok(false) => {
                    let line = format!("{} was not frozen", point.display());
                    report.note(output, |d| &mut d.not_frozen, point, line);
                }
                Err(e) => failed.push(format!("{e:#}")),
            }
        } else {
            let line = format!("{} is mounted", point.display());
            report.note(output, |d| &mut d.mounted, point, line);
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
