//! `lightsnap thaw PATH` and `lightsnap thaw --recover`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;

use crate::exit_code::ExitCode;
use crate::fail;
use crate::kernel::{freeze, mountinfo, unmount};
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

impl Thaw {
    /// Runs it.
    pub fn run(self, run_dir: &Path) -> Result<ExitCode> {
        match self.path {
            Some(path) => thaw_path(&path),
            None => recover(run_dir),
        }
    }
}

fn thaw_path(path: &Path) -> Result<ExitCode> {
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
        println!("thawed {} (it was frozen)", mount_point.display());
    } else {
        println!("{} was not frozen; nothing to do", mount_point.display());
    }
    Ok(ExitCode::Success)
}

fn recover(run_dir: &Path) -> Result<ExitCode> {
    // A run in progress holds the lock: its filesystems are its own to thaw.
    let _lock = runstate::lock(run_dir).context("a lightsnap run is in progress")?;
    let Some(record) = runstate::read_record(run_dir)? else {
        println!(
            "nothing to recover: no recovery record in {}",
            run_dir.display()
        );
        return Ok(ExitCode::Success);
    };
    let mut failed = Vec::new();
    for entry in record.entries.iter().rev() {
        let point = &entry.mount.mount_point;
        match entry.quiesce {
            Quiesce::Freeze => match freeze::thaw_path(point) {
                Ok(true) => println!("thawed {} (it was frozen)", point.display()),
                Ok(false) => println!("{} was not frozen", point.display()),
                Err(e) => failed.push(format!("{e:#}")),
            },
            Quiesce::Unmount => {
                let mounted =
                    unmount::current(point)?.is_some_and(|m| m.source == entry.mount.source);
                if mounted {
                    println!("{} is mounted", point.display());
                } else {
                    match unmount::remount(&entry.mount) {
                        Ok(()) => println!(
                            "mounted {} on {} again",
                            entry.mount.source,
                            point.display()
                        ),
                        Err(e) => failed.push(format!("{e:#}")),
                    }
                }
            }
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
