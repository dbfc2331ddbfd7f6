//! What lightsnap keeps in its run directory (`/run/lightsnap`, a tmpfs, never a filesystem it
//! freezes): the lock that allows one run at a time, and the recovery record of what a run is
//! about to freeze or unmount, written before the first freeze and removed after the last thaw.
//! If the agent and its watchdog both die, `lightsnap thaw --recover` reads the record.
//!
//! A run touches this module once: [`Run::begin`] takes the lock and looks at what an earlier
//! run left; the [`Run`] it returns writes the record ([`Run::record`]), clears it once
//! everything is undone ([`Run::undone`]), and releases the lock when dropped. A run that
//! could not undo everything drops it without clearing: the record stays for `thaw --recover`.

use std::fs::{self, File};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

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

/// Where an entry of the recovery record stands, as the run last knew it. The run's watchdog
/// (which makes the FIFREEZE calls and hears of every unmount) brings it up to date as it
/// goes, and when it thaws on its way out: the run directory is a tmpfs, written while
/// frozen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Not touched yet: nothing owed.
    Planned,
    /// FIFREEZE was called and its answer is not recorded yet: it may be frozen.
    Freezing,
    /// Frozen by this run: a thaw is owed.
    Frozen,
    /// FIFREEZE refused it (frozen by someone else, or it cannot be frozen): not this run's
    /// to thaw.
    Refused,
    /// About to be unmounted by this run: it may be unmounted.
    Unmounting,
    /// Unmounted by this run: mounting it again is owed.
    Unmounted,
    /// Thawed, or mounted again: nothing owed.
    Undone,
}

/// What recovering an entry takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owed {
    /// Nothing: never touched, refused, or already undone.
    Nothing,
    /// A thaw, if it is still mounted as it was.
    Thaw,
    /// Mounting it again, unless it is mounted already.
    Remount,
}

/// One entry of the recovery record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    /// How it is being quiesced.
    pub quiesce: Quiesce,
    /// The mount as it was before.
    pub mount: Mount,
    /// A freeze that may fall back to unmounting at run time (FIFREEZE refused as not
    /// supported).
    #[serde(default)]
    pub unmount_fallback: bool,
    /// Its index in the run's plan (the watchdog's numbering).
    #[serde(default)]
    pub index: Option<usize>,
    /// Where it stands. `None` in a record written before stages were recorded: then what
    /// it may have been is assumed (thaw a freeze, mount again what may be unmounted).
    #[serde(default)]
    pub stage: Option<Stage>,
}

impl Entry {
    /// What recovering it takes.
    pub fn owed(&self) -> Owed {
        match self.stage {
            Some(Stage::Planned | Stage::Refused | Stage::Undone) => Owed::Nothing,
            Some(Stage::Freezing | Stage::Frozen) => Owed::Thaw,
            Some(Stage::Unmounting | Stage::Unmounted) => Owed::Remount,
            None if self.quiesce == Quiesce::Unmount || self.unmount_fallback => Owed::Remount,
            None => Owed::Thaw,
        }
    }
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

fn record_path(run_dir: &Path) -> PathBuf {
    run_dir.join("recovery.json")
}

/// Writes the record (atomically: a half-written record would be worse than none).
pub fn write_record(run_dir: &Path, record: &Record) -> Result<()> {
    fs::create_dir_all(run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    crate::files::write_atomically(&record_path(run_dir), &serde_json::to_vec_pretty(record)?)
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

/// Not root: freezing, thawing and unmounting need CAP_SYS_ADMIN.
#[derive(Debug, thiserror::Error)]
#[error("lightsnap freezes, thaws and unmounts filesystems, which only root may do: run it as root (sudo lightsnap ...); `lightsnap plan` works without")]
pub struct NotRoot;

/// Another run holds the lock.
#[derive(Debug, thiserror::Error)]
#[error("another lightsnap run (pid {pid}) holds {}; wait for it to finish", path.display())]
pub struct LockBusy {
    /// The holder, as it wrote itself into the lock file.
    pub pid: String,
    /// The lock file.
    pub path: PathBuf,
}

/// An earlier, interrupted run left filesystems unmounted: only `thaw --recover` may touch
/// them.
#[derive(Debug, thiserror::Error)]
#[error("an earlier run (pid {pid}) was interrupted and left {} unmounted; run `lightsnap thaw --recover` to mount it again, then retry", unmounted.join(", "))]
pub struct StaleRecord {
    /// The interrupted run.
    pub pid: u32,
    /// `MOUNT_POINT from SOURCE`, for each.
    pub unmounted: Vec<String>,
}

/// One run's hold on the run directory: the lock, and the recovery record it writes.
#[derive(Debug)]
pub struct Run {
    dir: PathBuf,
    _lock: RunLock,
}

impl Run {
    /// Takes the lock (failing at once if another run holds it), then checks what an earlier
    /// run may have left (see [`check_stale`]).
    pub fn begin(dir: &Path) -> Result<Self> {
        let lock = lock(dir)?;
        check_stale(dir, true)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            _lock: lock,
        })
    }

    /// Writes the record of what this run is about to quiesce.
    pub fn record(&mut self, record: &Record) -> Result<()> {
        write_record(&self.dir, record)
    }

    /// Everything is undone: the record goes (the lock stays until the value is dropped).
    pub fn undone(&mut self) -> Result<()> {
        clear_record(&self.dir)
    }

    /// The run directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// A recovery record left by an earlier run. Its watchdog thawed what it froze when it died,
/// unless it was killed too (a freeze still in place makes this run's FIFREEZE answer EBUSY:
/// refused, left as it is). What it unmounted nobody mounted again: refuse until an operator
/// has run `thaw --recover`, rather than overwrite the only record of it.
///
/// Checked twice: first thing, before the paths are resolved (an unmounted `/data` resolves
/// to `/`, which is not what the operator means), skipping a record whose run is alive (the
/// lock speaks for it); then under the lock ([`Run::begin`]), where it also says it replaces
/// the record.
pub fn check_stale(dir: &Path, locked: bool) -> Result<()> {
    let Some(old) = read_record(dir)? else {
        return Ok(());
    };
    let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(old.pid as i32), None).is_ok();
    if !locked && alive {
        return Ok(());
    }
    let mut unmounted = Vec::new();
    for e in old.entries.iter().filter(|e| e.owed() == Owed::Remount) {
        if !crate::kernel::unmount::is_back(&e.mount)? {
            unmounted.push(format!(
                "{} from {}",
                e.mount.mount_point.display(),
                e.mount.source
            ));
        }
    }
    if !unmounted.is_empty() {
        return Err(StaleRecord {
            pid: old.pid,
            unmounted,
        }
        .into());
    }
    if locked {
        tracing::warn!(
            "an earlier run (pid {}) was interrupted; what it quiesced has been undone: replacing its recovery record",
            old.pid
        );
    }
    Ok(())
}

/// Refuses, with what to do, when not root: freezing, thawing and unmounting need
/// CAP_SYS_ADMIN, and finding that out at FIFREEZE would be after the API calls.
pub fn require_root() -> Result<()> {
    if nix::unistd::Uid::effective().is_root() {
        return Ok(());
    }
    Err(NotRoot.into())
}

/// Takes the lock without waiting; a second run fails at once, naming the holder.
pub fn lock(run_dir: &Path) -> Result<RunLock> {
    fs::create_dir_all(run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    crate::files::check_dir(run_dir)?;
    let path = run_dir.join("lightsnap.lock");
    // Never through a link planted at its name.
    let file = crate::files::open_lock_file(&path)
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
            Err(LockBusy {
                pid: pid.trim().to_string(),
                path,
            }
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
        assert!(err.downcast_ref::<LockBusy>().is_some(), "{err}");
        assert!(
            err.to_string().contains(&std::process::id().to_string()),
            "{err}"
        );
        drop(first);
        assert!(lock(dir.path()).is_ok());
    }

    #[test]
    fn the_run_lock_is_never_taken_through_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join("lightsnap.lock")).unwrap();
        assert!(lock(dir.path()).is_err(), "locked through a link");
        // The old open followed the link and wrote our pid over the file it points at.
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
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
                unmount_fallback: false,
                index: Some(0),
                stage: Some(Stage::Frozen),
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
