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

    /// Holds a generated part of the manual to what the code generates: a test fails when
    /// they differ, and with `UPDATE_DOCS=1` rewrites it instead. `path` is relative to the
    /// checkout; with `markers` (begin, end lines) only the text between them is generated and
    /// the rest of the page (its hand-written prose) is kept; without, the whole file is.
    pub(crate) fn generated_doc(path: &str, markers: Option<(&str, &str)>, generated: &str) {
        let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
        let old = std::fs::read_to_string(&full).unwrap_or_default();
        let new = match markers {
            None => generated.to_string(),
            Some((begin, end)) => {
                let (head, rest) = old
                    .split_once(begin)
                    .unwrap_or_else(|| panic!("{path} has no marker line {begin:?}"));
                let (_, tail) = rest
                    .split_once(end)
                    .unwrap_or_else(|| panic!("{path} has no marker line {end:?}"));
                format!("{head}{begin}{generated}{end}{tail}")
            }
        };
        if old == new {
            return;
        }
        if std::env::var_os("UPDATE_DOCS").is_some_and(|v| v != "0") {
            if let Some(dir) = full.parent() {
                std::fs::create_dir_all(dir).unwrap();
            }
            std::fs::write(&full, new).unwrap();
        } else {
            panic!(
                "{path} is not what the code generates: rerun the test with UPDATE_DOCS=1 to rewrite it (and commit the change)"
            );
        }
    }
}
