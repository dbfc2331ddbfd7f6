//! `--quiet`: nothing on stdout when a run succeeds (cron mails whatever a job prints). Every
//! line a snapshot command, its `--wait`, its retention and its hooks would print on stdout goes
//! to /dev/null instead, by pointing descriptor 1 there once at the start; the real stdout is
//! kept aside so that a failure's `--output json` document still reaches it. Errors and
//! warnings go to stderr as always.

use std::os::fd::OwnedFd;
use std::sync::Mutex;

use anyhow::{Context, Result};

/// The real stdout while it is silenced.
static SAVED: Mutex<Option<OwnedFd>> = Mutex::new(None);

/// Points stdout at /dev/null, keeping the real one for [`restore`].
pub fn silence() -> Result<()> {
    let mut saved = SAVED.lock().unwrap_or_else(|p| p.into_inner());
    if saved.is_some() {
        return Ok(());
    }
    let null = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .context("--quiet: opening /dev/null")?;
    let stdout = std::io::stdout();
    let real = nix::unistd::dup(&stdout).context("--quiet: keeping stdout")?;
    nix::unistd::dup2_stdout(&null).context("--quiet: silencing stdout")?;
    *saved = Some(real);
    Ok(())
}

/// Gives stdout back (a failed run's JSON document is printed there).
pub fn restore() {
    let saved = SAVED.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(real) = saved {
        use std::io::Write;
        let _ = std::io::stdout().flush();
        let _ = nix::unistd::dup2_stdout(&real);
    }
}
