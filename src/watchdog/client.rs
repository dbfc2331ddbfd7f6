//! The agent's side of the watchdog: starts the process and asks it, one request at a time.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::{Reply, Request, Thawed, SUBCOMMAND};
use crate::kernel::freeze::FreezeError;
use crate::kernel::mountinfo::Mount;

/// The watchdog could not open a mount it is to freeze because the confinement guard refused
/// it (tests: outside the test's own directory).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct OpenRefused(pub String);

/// The watchdog was lost in the middle of a freeze request (it died, or its pipe broke):
/// every mount of the request may be frozen, except those it said it did not freeze before
/// it went.
#[derive(Debug, thiserror::Error)]
#[error("the watchdog is gone in the middle of a freeze: {cause:#}")]
pub struct FreezeLost {
    /// Mounts of the request the watchdog said it did not freeze: someone else's freeze may
    /// be among them, so the agent must not thaw these.
    pub not_frozen: Vec<usize>,
    cause: anyhow::Error,
}

/// The agent's side of the watchdog.
#[derive(Debug)]
pub struct Watchdog {
    child: Child,
    to: ChildStdin,
    from: BufReader<ChildStdout>,
    /// Whether the watchdog locked its memory.
    pub memory_locked: bool,
}

impl Watchdog {
    /// Starts the watchdog on `mounts` (`None` for targets it is not to freeze) with a
    /// `deadline` counted from its first freeze; it keeps the recovery record in `run_dir` up
    /// to date (entries by index into `mounts`). Fails (nothing frozen) if a mount cannot be
    /// opened or is outside the confinement.
    pub fn start(
        mounts: &[Option<PathBuf>],
        deadline: Duration,
        expedite_rcu: bool,
        run_dir: Option<&Path>,
    ) -> Result<Self> {
        // /proc/self/exe still runs this binary if a package upgrade replaced the file.
        let mut child = Command::new("/proc/self/exe")
            .arg(SUBCOMMAND)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .context("starting the watchdog process")?;
        // Tests prove a refused run never got this far from this line's absence (at debug).
        tracing::debug!("watchdog started (pid {})", child.id());
        let to = child.stdin.take().context("watchdog stdin")?;
        let from = BufReader::new(child.stdout.take().context("watchdog stdout")?);
        let mut watchdog = Self {
            child,
            to,
            from,
            memory_locked: false,
        };
        let reply = watchdog.ask(&Request::Init {
            mounts: mounts.to_vec(),
            deadline_ms: deadline.as_millis() as u64,
            expedite_rcu,
            run_dir: run_dir.map(Path::to_path_buf),
        })?;
        match reply {
            Reply::Ready { memory_locked } => watchdog.memory_locked = memory_locked,
            Reply::OpenFailed {
                outside, message, ..
            } => {
                let _ = watchdog.finish();
                if outside {
                    return Err(OpenRefused(message).into());
                }
                bail!("{message}");
            }
            other => bail!("watchdog answered {other:?} to its start"),
        }
        Ok(watchdog)
    }

    fn ask(&mut self, request: &Request) -> Result<Reply> {
        self.tell(request)?;
        self.hear()
    }

    fn tell(&mut self, request: &Request) -> Result<()> {
        let mut line = serde_json::to_string(request)?;
        line.push('\n');
        self.to
            .write_all(line.as_bytes())
            .context("the watchdog is gone (writing to it)")
    }

    fn hear(&mut self) -> Result<Reply> {
        let mut answer = String::new();
        let n = self
            .from
            .read_line(&mut answer)
            .context("the watchdog is gone (reading from it)")?;
        if n == 0 {
            bail!("the watchdog is gone (it closed its pipe)");
        }
        serde_json::from_str(&answer).with_context(|| format!("watchdog said {answer:?}"))
    }

    /// Asks the watchdog to freeze mounts `(index, path)`, all at once; for each, in order,
    /// the kernel's answer. `Err` means the watchdog is gone: a [`FreezeLost`] names the
    /// mounts it said it did not freeze before it went; any other may be frozen.
    pub fn freeze(&mut self, mounts: &[(usize, &Path)]) -> Result<Vec<Result<(), FreezeError>>> {
        let indices = mounts.iter().map(|(i, _)| *i).collect();
        self.tell(&Request::Freeze(indices))?;
        let mut not_frozen = Vec::new();
        let answers = loop {
            match self.hear() {
                Ok(Reply::Landed {
                    index,
                    refusal: Some(_),
                }) => not_frozen.push(index),
                Ok(Reply::Landed { refusal: None, .. }) => {}
                Ok(Reply::Frozen(answers)) if answers.len() == mounts.len() => break answers,
                Ok(other) => bail!("watchdog answered {other:?} to a freeze"),
                Err(cause) => return Err(FreezeLost { not_frozen, cause }.into()),
            }
        };
        Ok(answers
            .into_iter()
            .zip(mounts)
            .map(|(a, (_, path))| match a {
                None => Ok(()),
                Some(r) => Err(r.into_error(path.to_path_buf())),
            })
            .collect())
    }

    /// Asks the watchdog to close its descriptor of mount `index`, which is about to be
    /// unmounted instead of frozen.
    pub fn release(&mut self, index: usize) -> Result<()> {
        match self.ask(&Request::Release(index))? {
            Reply::Released => Ok(()),
            other => bail!("watchdog answered {other:?} to a release"),
        }
    }

    /// Tells the watchdog that mount `index` is about to be unmounted: from its answer on, it
    /// mounts it again (unless mounted) if the agent dies (or is past the deadline) before
    /// saying it did, and the recovery record says it may be unmounted.
    pub fn note_unmounting(&mut self, index: usize, mount: &Mount) -> Result<()> {
        match self.ask(&Request::Unmounting {
            index,
            mount: mount.clone(),
        })? {
            Reply::Noted => Ok(()),
            other => bail!("watchdog answered {other:?} to an unmount"),
        }
    }

    /// Tells the watchdog that mount `index` is unmounted (the record says so).
    pub fn note_unmounted(&mut self, index: usize) -> Result<()> {
        match self.ask(&Request::Unmounted(index))? {
            Reply::Noted => Ok(()),
            other => bail!("watchdog answered {other:?} to an unmount"),
        }
    }

    /// Tells the watchdog that mount `index` is mounted again.
    pub fn note_remounted(&mut self, index: usize) -> Result<()> {
        match self.ask(&Request::Remounted(index))? {
            Reply::Noted => Ok(()),
            other => bail!("watchdog answered {other:?} to a remount"),
        }
    }

    /// Asks the watchdog to thaw mount `index`.
    pub fn thaw(&mut self, index: usize) -> Result<Thawed> {
        match self.ask(&Request::Thaw(index))? {
            Reply::Thawed {
                was_frozen,
                by_deadline,
            } => Ok(Thawed {
                was_frozen,
                by_deadline,
            }),
            Reply::ThawFailed { message } => bail!("{message}"),
            other => bail!("watchdog answered {other:?} to a thaw"),
        }
    }

    /// Tells the watchdog it is no longer needed and waits for it to exit. It thaws anything
    /// still frozen on the way out, and says so with a non-zero exit.
    pub fn finish(mut self) -> Result<()> {
        let _ = writeln!(self.to, "{}", serde_json::to_string(&Request::Done)?);
        drop(self.to);
        let status = self.child.wait().context("waiting for the watchdog")?;
        if !status.success() {
            bail!("the watchdog exited with {status}");
        }
        Ok(())
    }
}
