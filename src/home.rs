//! `$HOME` for a process started without one: a system unit without `User=` (systemd gives it
//! only `PATH` and `LANG`), `env -i`, some cron daemons. The AWS SDK finds the shared files
//! `aws configure` writes (`~/.aws/credentials`, `~/.aws/config`) through `$HOME` only, so
//! without this root's keys, region and named profiles are silently not read and every call
//! fails with "no credentials". The home comes from the password database, as `login` and
//! cron would set it; a `$HOME` that is set (even to something odd) is left alone.

use std::ffi::OsString;
use std::path::PathBuf;

/// The home to set: `None` when `$HOME` is already set (and not empty), else the password
/// database's home of the effective user, if it has one.
pub fn missing_home(
    home: Option<OsString>,
    passwd_home: impl FnOnce() -> Option<PathBuf>,
) -> Option<PathBuf> {
    if home.is_some_and(|h| !h.is_empty()) {
        return None;
    }
    passwd_home().filter(|p| p.is_absolute())
}

/// The effective user's home directory from the password database.
fn passwd_home() -> Option<PathBuf> {
    nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map(|u| u.dir)
}

/// Sets `$HOME` from the password database when it is not set.
///
/// Call it first thing in `main`, while the process has one thread: changing the environment
/// while another thread may read it is undefined behaviour in glibc.
pub fn ensure_home() {
    if let Some(home) = missing_home(std::env::var_os("HOME"), passwd_home) {
        std::env::set_var("HOME", home);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unset_or_empty_home_comes_from_the_password_database() {
        let root = || Some(PathBuf::from("/root"));
        assert_eq!(missing_home(None, root), Some(PathBuf::from("/root")));
        assert_eq!(
            missing_home(Some(OsString::new()), root),
            Some(PathBuf::from("/root"))
        );
    }

    #[test]
    fn a_set_home_is_left_alone() {
        let looked = std::cell::Cell::new(false);
        let lookup = || {
            looked.set(true);
            Some(PathBuf::from("/root"))
        };
        assert_eq!(missing_home(Some("/srv/ops".into()), lookup), None);
        assert!(!looked.get(), "the password database was read for nothing");
    }

    #[test]
    fn no_entry_or_a_relative_home_sets_nothing() {
        assert_eq!(missing_home(None, || None), None);
        assert_eq!(missing_home(None, || Some(PathBuf::from("home"))), None);
    }

    #[test]
    fn this_process_user_has_a_home_in_the_password_database() {
        // Every user the tests run as (root in CI) has an entry with an absolute home.
        let home = passwd_home().expect("the effective user has a passwd entry");
        assert!(home.is_absolute(), "{}", home.display());
    }
}
