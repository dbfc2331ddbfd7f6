//! The confinement guard: a last line of defence against freezing the wrong filesystem.
//!
//! When `LIGHTSNAP_CONFINE_TO=DIR` is set (the test suite, the demo and the benchmark always
//! set it to their own temporary directory), every freeze, thaw, unmount and remount refuses a
//! mount point outside `DIR`. A bug in path resolution then fails loudly instead of freezing the
//! host's root filesystem, where the next write would hang the machine. Operators may use it
//! too, to fence a hook or a timer to the mounts it is meant for.

use std::path::{Path, PathBuf};

/// The environment variable naming the only directory lightsnap may freeze or unmount under.
pub const CONFINE_ENV: &str = "LIGHTSNAP_CONFINE_TO";

/// A mount point outside the configured confinement directory.
#[derive(Debug, thiserror::Error)]
#[error("refusing to touch {mount_point}: it is outside {confine} ({CONFINE_ENV})")]
pub struct OutsideConfinement {
    /// The mount point lightsnap was asked to touch.
    pub mount_point: PathBuf,
    /// The directory it is confined to.
    pub confine: PathBuf,
}

/// The confinement directory, if any. Read on every call (not cached) so that a test can never
/// observe a stale value.
pub fn confinement() -> Option<PathBuf> {
    std::env::var_os(CONFINE_ENV)
        .filter(|v| !v.is_empty())
        .map(|v| {
            let p = PathBuf::from(v);
            p.canonicalize().unwrap_or(p)
        })
}

/// Refuses `mount_point` unless it lies strictly below the confinement directory (when set).
/// The directory itself is refused too: it is the test's scratch space, on the host's disk.
pub fn check(mount_point: &Path) -> Result<(), OutsideConfinement> {
    check_with(mount_point, confinement())
}

fn check_with(mount_point: &Path, confine: Option<PathBuf>) -> Result<(), OutsideConfinement> {
    let Some(confine) = confine else {
        return Ok(());
    };
    let inside = mount_point.starts_with(&confine) && mount_point != confine;
    if inside {
        Ok(())
    } else {
        Err(OutsideConfinement {
            mount_point: mount_point.to_path_buf(),
            confine,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_mounts_strictly_below_the_directory_pass() {
        let confine = || Some(PathBuf::from("/tmp/a"));
        assert!(check_with(Path::new("/tmp/a/mnt"), confine()).is_ok());
        assert!(check_with(Path::new("/tmp/a/x/y"), confine()).is_ok());
        // Components, not string prefixes: /tmp/ab is not inside /tmp/a.
        assert!(check_with(Path::new("/tmp/ab/mnt"), confine()).is_err());
        assert!(check_with(Path::new("/tmp/a"), confine()).is_err());
        assert!(check_with(Path::new("/"), confine()).is_err());
        assert!(check_with(Path::new("/"), None).is_ok());
    }
}
