//! lightsnap: consistent snapshots of Amazon Lightsail disks from inside the instance.
//!
//! The kernel side ([`kernel`]: mounts, freeze, unmount), the cloud side ([`cloud`]: the
//! Lightsail API, the instance metadata), and the orchestration that joins them ([`snap`]:
//! plan → freeze → snapshot → thaw) are separate modules, each testable on its own. The
//! [`watchdog`] is the process that makes the freeze ioctls and thaws whatever happens to the
//! agent.

#![deny(missing_docs)]

pub mod budget;
pub mod cli;
pub mod cloud;
pub mod config;
pub mod exit_code;
pub mod files;
pub mod fleet;
pub mod home;
pub mod hooks;
pub mod journal;
pub mod kernel;
pub mod logbuf;
pub mod monitor;
pub mod restore;
pub mod retention;
pub mod runstate;
pub mod setup;
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

/// A test-only switch of the environment (`LIGHTSNAP_STATE_DIR`, `LIGHTSNAP_DEV_DIR`,
/// `LIGHTSNAP_VERIFY_POLL_MS`, `LIGHTSNAP_JOURNAL_SOCKET`, `LIGHTSNAP_TEST_*`), as an
/// `Option<OsString>`: read only in a build with the `test-switches` feature, which the test
/// suite's builds get through its dev-dependency on lightsnap itself. In a plain build (the
/// packages' release binary) it is `None` and the name is not even in the binary, so these
/// cannot change what the shipped binary does. (`LIGHTSNAP_CONFINE_TO`, the guard, is read in
/// every build: it can only refuse.)
#[macro_export]
macro_rules! test_switch {
    ($name:expr) => {{
        #[cfg(feature = "test-switches")]
        let value = ::std::env::var_os($name);
        #[cfg(not(feature = "test-switches"))]
        let value: Option<::std::ffi::OsString> = None;
        value
    }};
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
