//! What lightsnap keeps in its run directory (`/run/lightsnap`, a tmpfs, never a filesystem it
//! freezes): the lock that allows one run at a time, and the recovery record of what a run is
//! about to freeze or unmount, written before the first freeze and removed after the last thaw.
//! If the agent and its watchdog both die, `lightsnap thaw --recover` reads the record.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::exit_code::{ExitCode, Failure};
use crate::kernel::mountinfo::Mount;

/// The default run directory.
pub const DEFAULT_RUN_DIR: &str = "/run/lightsnap";

/// How a filesystem is being made consistent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quiesce {
    /// FIFREEZE; undone by FITHAW.
    Freeze,
    /// Unmounted; undone by mounting it again as it was.
    Unmount,
}

/// One entry of the recovery record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    /// How it is being quiesced.
    pub quiesce: Quiesce,
    /// The mount as it was before.
    pub mount: Mount,
}

/// The recovery record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// The agent that wrote it.
    pub pid: u32,
    /// What it is about to quiesce.
    pub entries: Vec<Entry>,
    /// Whether its watchdog may turn on the kernel's `rcu_expedited` switch (it was off and
    /// `--expedite-freeze` was asked for): a watchdog killed mid-freeze leaves it on.
    #[serde(default)]
    pub rcu_expedited: bool,
}

/// The kernel's switch for expedited RCU grace periods.
pub const RCU_EXPEDITED: &str = "/sys/kernel/rcu_expedited";

/// Whether expedited RCU grace periods are on; `None` when the kernel does not say.
pub fn rcu_expedited() -> Option<bool> {
    let text = fs::read_to_string(RCU_EXPEDITED).ok()?;
    Some(text.trim() != "0")
}

fn record_path(run_dir: &Path) -> PathBuf {
    run_dir.join("recovery.json")
}

/// Writes the record (atomically: a half-written record would be worse than none).
pub fn write_record(run_dir: &Path, record: &Record) -> Result<()> {
    fs::create_dir_all(run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    let path = record_path(run_dir);
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, serde_json::to_vec_pretty(record)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Reads the record, if there is one.
pub fn read_record(run_dir: &Path) -> Result<Option<Record>> {
    let path = record_path(run_dir);
    match fs::read(&path) {
        Ok(bytes) => Ok(Some(
            serde_json::from_slice(&bytes)
                .with_context(|| format!("reading {}", path.display()))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Removes the record.
pub fn clear_record(run_dir: &Path) -> Result<()> {
    match fs::remove_file(record_path(run_dir)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", record_path(run_dir).display()))
        }
        _ => Ok(()),
    }
}

/// The one-run-at-a-time lock, held for as long as the value lives.
#[derive(Debug)]
pub struct RunLock {
    _lock: Flock<File>,
}

/// Refuses, with what to do, when not root: freezing, thawing and unmounting need
/// CAP_SYS_ADMIN, and finding that out at FIFREEZE would be after the API calls.
pub fn require_root() -> Result<()> {
    if nix::unistd::Uid::effective().is_root() {
        return Ok(());
    }
    Err(crate::exit_code::Failure::new(
        crate::exit_code::ExitCode::Permission,
        "lightsnap freezes, thaws and unmounts filesystems, which only root may do: run it as root (sudo lightsnap ...); `lightsnap plan` works without",
    )
    .into())
}

/// Takes the lock without waiting; a second run fails at once, naming the holder.
pub fn lock(run_dir: &Path) -> Result<RunLock> {
    fs::create_dir_all(run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    let path = run_dir.join("lightsnap.lock");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(mut lock) => {
            // Who holds it, for the message a second run prints.
            lock.set_len(0)?;
            lock.rewind()?;
            write!(lock, "{}", std::process::id())?;
            Ok(RunLock { _lock: lock })
        }
        Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            Err(Failure::new(
                ExitCode::Busy,
                format!(
                    "another lightsnap run (pid {}) holds {}; wait for it to finish",
                    pid.trim(),
                    path.display()
                ),
            )
            .into())
        }
        Err((_, e)) => Err(e).with_context(|| format!("locking {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_fails_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock(dir.path()).unwrap();
        let err = lock(dir.path()).unwrap_err();
        assert_eq!(ExitCode::of(&err), ExitCode::Busy);
        assert!(
            err.to_string().contains(&std::process::id().to_string()),
            "{err}"
        );
        drop(first);
        assert!(lock(dir.path()).is_ok());
    }

    #[test]
    fn the_record_round_trips_and_clears() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_record(dir.path()).unwrap().is_none());
        let mount = crate::kernel::mountinfo::parse(
            "40 22 7:3 / /data rw,noatime - xfs /dev/loop3 rw,attr2\n",
        )
        .unwrap()
        .remove(0);
        let record = Record {
            pid: 42,
            entries: vec![Entry {
                quiesce: Quiesce::Freeze,
                mount: mount.clone(),
            }],
            rcu_expedited: true,
        };
        write_record(dir.path(), &record).unwrap();
        let back = read_record(dir.path()).unwrap().unwrap();
        assert_eq!(back.pid, 42);
        assert_eq!(back.entries[0].mount, mount);
        assert!(back.rcu_expedited);
        clear_record(dir.path()).unwrap();
        assert!(read_record(dir.path()).unwrap().is_none());
    }
}
