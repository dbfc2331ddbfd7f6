//! lightsnap: consistent snapshots of Amazon Lightsail disks from inside the instance.
//!
//! The kernel side ([`kernel`]: mounts, freeze, unmount), the cloud side ([`cloud`]: the
//! Lightsail API, the instance metadata), and the orchestration that joins them ([`snap`]:
//! plan → freeze → snapshot → thaw) are separate modules, each testable on its own. The
//! [`watchdog`] is the process that makes the freeze ioctls and thaws whatever happens to the
//! agent.

#![deny(missing_docs)]

pub mod cli;
pub mod cloud;
pub mod config;
pub mod exit_code;
pub mod files;
pub mod hooks;
pub mod journal;
pub mod kernel;
pub mod logbuf;
pub mod monitor;
pub mod restore;
pub mod retention;
pub mod runstate;
pub mod signals;
pub mod snap;
pub mod trust;
pub mod watchdog;

/// The async runtime: one thread is all lightsnap needs, and keeps its memory small.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// Helpers shared by the unit tests of several modules.
#[cfg(test)]
pub(crate) mod testing {
    /// A xorshift64 generator for the cheap fuzz tests: the same sequence on every run.
    pub(crate) fn xorshift() -> impl FnMut() -> u64 {
        let mut state: u64 = 0x9e3779b97f4a7c15;
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        }
    }
}
