//! The verify lock (`<run dir>/verify.lock`): one rehearsal at a time on an instance, apart
//! from the run lock. A rehearsal takes minutes (up to `--timeout`, 30 minutes by default,
//! and the undo after it); under the run lock it made every timer snapshot in that time fail
//! at once. Under a lock of its own it overlaps a snapshot run safely: it freezes nothing,
//! its mounts are read-only copies under `<run dir>/verify` (which `snap-instance` leaves
//! out), and the scratch disks a run's clean-up may remove are only looked for while this
//! lock is free.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context, Result};
use nix::fcntl::{Flock, FlockArg};

use crate::runstate::LockBusy;

/// The lock file's name in the run directory.
pub const FILE: &str = "verify.lock";

/// The verify lock, held for as long as the value lives.
#[derive(Debug)]
pub struct VerifyLock {
    _lock: Flock<File>,
}

/// Takes the verify lock without waiting; [`LockBusy`] (exit 5) naming the holder when a
/// rehearsal runs. The file is opened without following a link (a link planted in the run
/// directory is refused, not written through).
pub fn take(run_dir: &Path) -> Result<VerifyLock> {
    std::fs::create_dir_all(run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    let path = run_dir.join(FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(mut lock) => {
            lock.set_len(0)?;
            lock.rewind()?;
            write!(lock, "{}", std::process::id())?;
            Ok(VerifyLock { _lock: lock })
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

/// The verify lock if it is free now; `None` (said at info) when a rehearsal holds it.
pub fn try_take(run_dir: &Path) -> Result<Option<VerifyLock>> {
    match take(run_dir) {
        Ok(l) => Ok(Some(l)),
        Err(e) if e.downcast_ref::<LockBusy>().is_some() => {
            tracing::info!("{e:#}");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The verify lock and the run lock are apart: a snapshot run takes its lock while a
    /// rehearsal holds the verify lock; a second rehearsal is refused, naming the first.
    #[test]
    fn a_rehearsal_does_not_hold_the_run_lock() {
        let dir = tempfile::tempdir().unwrap();
        let verifying = take(dir.path()).unwrap();
        let run = crate::runstate::lock(dir.path());
        assert!(run.is_ok(), "{:?}", run.err());
        let err = take(dir.path()).unwrap_err();
        assert!(err.downcast_ref::<LockBusy>().is_some(), "{err:#}");
        assert!(try_take(dir.path()).unwrap().is_none());
        drop(verifying);
        assert!(try_take(dir.path()).unwrap().is_some());
    }
}
