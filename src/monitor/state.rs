//! The state file of each run target under `state_dir`: its last attempt, its last success
//! and how many runs in a row have failed, as JSON, replaced atomically (a temporary file in
//! the same directory, synced, renamed over the old one, the directory synced) after every
//! run — never while anything is frozen. A malformed file is reported and replaced.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// What a state file holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TargetState {
    /// The target: the path given (or configured), or `instance` for `snap-instance`.
    pub target: String,
    /// `disk`, `system-volume` or `instance`; empty until a snapshot says which.
    #[serde(default)]
    pub kind: String,
    /// The Lightsail disk (or instance) name, once a snapshot said it.
    #[serde(default)]
    pub disk: Option<String>,
    /// The last run that included this target.
    #[serde(default)]
    pub last_attempt: Option<Attempt>,
    /// The last run that succeeded for it.
    #[serde(default)]
    pub last_success: Option<Success>,
    /// Runs in a row that failed (0 after a success).
    #[serde(default)]
    pub consecutive_failures: u32,
    /// The last restore rehearsal (`lightsnap verify`) of a snapshot of its disk.
    #[serde(default)]
    pub last_verification: Option<Verified>,
    /// Successful runs since the last verification `verify_every` made.
    #[serde(default)]
    pub runs_since_verification: u32,
}

/// A restore rehearsal, as it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Verified {
    /// When it ended, seconds since the epoch.
    pub time: f64,
    /// The same, in RFC 3339 (UTC).
    pub time_utc: String,
    /// The snapshot rehearsed.
    pub snapshot: String,
    /// `clean`, `failed` or `incomplete`.
    pub result: String,
    /// What failed, empty when clean.
    pub message: String,
}

/// One run, as it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Attempt {
    /// When it started, seconds since the epoch.
    pub time: f64,
    /// The same, in RFC 3339 (UTC), for people reading the file.
    pub time_utc: String,
    /// `success` or `failure`.
    pub result: String,
    /// The exit code.
    pub exit_code: i32,
    /// The error, empty on success.
    pub message: String,
}

/// The last success.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Success {
    /// When the run started, seconds since the epoch.
    pub time: f64,
    /// The same, in RFC 3339 (UTC).
    pub time_utc: String,
    /// The snapshot taken.
    pub snapshot: String,
    /// How it was made consistent (`frozen`, `unmounted`, `readonly`, `crash`).
    pub consistency: String,
    /// How long writes were paused, in milliseconds.
    pub window_ms: f64,
}

/// The state file of `target` in `dir`: `target` with every byte but letters and digits
/// written `_XX`, so that no two targets share a file (`/a-b` and `/a/b` stay apart).
pub fn file_of(dir: &Path, target: &str) -> PathBuf {
    let mut name = String::from("target-");
    for b in target.bytes() {
        if b.is_ascii_alphanumeric() {
            name.push(b as char);
        } else {
            name.push_str(&format!("_{b:02x}"));
        }
    }
    name.push_str(".json");
    dir.join(name)
}

/// Reads a state file: `None` if there is none; a malformed one is reported (a warning
/// naming the file and why) and read as none, to be replaced.
pub fn read(path: &Path) -> Option<TargetState> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!("state file {}: {e}; replacing it", path.display());
            return None;
        }
    };
    match serde_json::from_str(&text) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(
                "state file {} is malformed ({e}); replacing it",
                path.display()
            );
            None
        }
    }
}

/// Every state file in `dir`, in name order (malformed ones reported and left out).
pub fn read_all(dir: &Path) -> Result<Vec<TargetState>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading state_dir {}", dir.display())),
    };
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("target-") && n.ends_with(".json"))
        })
        .collect();
    paths.sort();
    Ok(paths.iter().filter_map(|p| read(p)).collect())
}

/// How long a target that is not configured stays watched after its last run: a path once
/// snapshotted by hand, or dropped from the configuration, leaves `status` and `check` when
/// nothing has run on it for this long (or at once, with `status --forget PATH`).
pub const AGE_OUT: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);

/// The targets `status` and `check` watch without arguments: the configured ones, then
/// those that ever succeeded and ran within [`AGE_OUT`] of `now`. A target that never
/// succeeded and is not configured (a mistyped path) is not watched.
pub fn watched(states: &[TargetState], configured: &[String], now: f64) -> Vec<String> {
    let mut out: Vec<String> = configured.to_vec();
    for s in states {
        let last_run = s
            .last_attempt
            .as_ref()
            .map(|a| a.time)
            .into_iter()
            .chain(s.last_success.as_ref().map(|x| x.time))
            .fold(f64::MIN, f64::max);
        let fresh = now - last_run <= AGE_OUT.as_secs_f64();
        if s.last_success.is_some() && fresh && !out.contains(&s.target) {
            out.push(s.target.clone());
        }
    }
    out
}

/// Drops the state file of `target` (`status --forget`); whether there was one.
pub fn forget(dir: &Path, target: &str) -> Result<bool> {
    let path = file_of(dir, target);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}

/// Refuses a directory lightsnap cannot write in (made first if `create`), naming it: checked
/// at the start of a run, before anything is frozen, by making and removing a file of a
/// random name there (never through a link: see [`crate::files`]). A directory others may
/// write in without the sticky bit is refused too ([`crate::files::OpenDirectory`]).
pub fn check_writable(dir: &Path, what: &str, create: bool) -> Result<()> {
    let probe = || -> std::io::Result<()> {
        if create {
            std::fs::create_dir_all(dir)?;
        }
        tempfile::Builder::new()
            .prefix(".lightsnap-probe.")
            .tempfile_in(dir)?
            .close()
    };
    if let Err(e) = probe() {
        return Err(crate::exit_code::Failure::new(
            crate::exit_code::ExitCode::Usage,
            format!(
                "{what} {}: not a directory lightsnap can write in ({e}); nothing was frozen",
                dir.display()
            ),
        )
        .into());
    }
    crate::files::check_dir(dir)
        .with_context(|| format!("{what} {}: nothing was frozen", dir.display()))
}

/// Holds `dir/.lock` exclusively while the state files are read, changed and written: two
/// runs can finish at once (one of them refused by the run lock, which is recorded too), and
/// each must see the other's update. `None` when the lock cannot be had (then the update goes
/// ahead unlocked: a lost update is better than none); never through a link planted at its
/// name.
pub fn lock(dir: &Path) -> Option<nix::fcntl::Flock<std::fs::File>> {
    let file = crate::files::open_lock_file(&dir.join(".lock")).ok()?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).ok()
}

/// Seconds since the epoch, and the same in RFC 3339.
pub fn now() -> (f64, String) {
    let t = std::time::SystemTime::now();
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    (secs, humantime::format_rfc3339_seconds(t).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watched_targets_are_the_configured_and_those_that_succeeded_lately() {
        let now = 100.0 * 86_400.0;
        let attempt = |days_ago: f64| Attempt {
            time: now - days_ago * 86_400.0,
            time_utc: String::new(),
            result: "failure".into(),
            exit_code: 3,
            message: String::new(),
        };
        let success = |days_ago: f64| Success {
            time: now - days_ago * 86_400.0,
            time_utc: String::new(),
            snapshot: "s".into(),
            consistency: "frozen".into(),
            window_ms: 1.0,
        };
        let states = vec![
            // A typo: refused, never succeeded.
            TargetState {
                target: "/dta".into(),
                last_attempt: Some(attempt(0.0)),
                ..TargetState::default()
            },
            // Snapshotted by hand yesterday.
            TargetState {
                target: "/srv".into(),
                last_success: Some(success(1.0)),
                ..TargetState::default()
            },
            // Dropped from the configuration two months ago.
            TargetState {
                target: "/old".into(),
                last_success: Some(success(60.0)),
                last_attempt: Some(attempt(60.0)),
                ..TargetState::default()
            },
            TargetState {
                target: "/data".into(),
                last_success: Some(success(0.5)),
                ..TargetState::default()
            },
        ];
        assert_eq!(
            watched(&states, &["/data".into(), "/new".into()], now),
            vec!["/data", "/new", "/srv"]
        );
        let dir = tempfile::tempdir().unwrap();
        let p = file_of(dir.path(), "/srv");
        std::fs::write(&p, serde_json::to_vec(&states[1]).unwrap()).unwrap();
        assert!(forget(dir.path(), "/srv").unwrap());
        assert!(!p.exists());
        assert!(!forget(dir.path(), "/srv").unwrap());
    }

    #[test]
    fn targets_get_distinct_file_names() {
        let d = Path::new("/s");
        assert_eq!(file_of(d, "/data"), Path::new("/s/target-_2fdata.json"));
        assert_ne!(file_of(d, "/a-b"), file_of(d, "/a/b"));
        assert_eq!(file_of(d, "instance"), Path::new("/s/target-instance.json"));
    }

    #[test]
    fn a_state_file_is_replaced_atomically_and_a_malformed_one_reads_as_none() {
        let dir = tempfile::tempdir().unwrap();
        let p = file_of(dir.path(), "/data");
        assert_eq!(read(&p), None);
        let s = TargetState {
            target: "/data".into(),
            consecutive_failures: 3,
            ..TargetState::default()
        };
        crate::files::write_atomically(&p, &serde_json::to_vec(&s).unwrap()).unwrap();
        assert_eq!(read(&p), Some(s.clone()));
        assert_eq!(read_all(dir.path()).unwrap(), vec![s]);
        // No temporary file left beside it.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        std::fs::write(&p, "{ not json").unwrap();
        assert_eq!(read(&p), None);
        assert!(read_all(dir.path()).unwrap().is_empty());
    }

    #[test]
    fn an_unwritable_directory_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, "").unwrap();
        let e = check_writable(&file.join("state"), "state_dir", true).unwrap_err();
        assert!(
            format!("{e:#}").contains(&file.display().to_string()),
            "{e:#}"
        );
        assert_eq!(
            crate::exit_code::ExitCode::of(&e),
            crate::exit_code::ExitCode::Usage
        );
        check_writable(&dir.path().join("new/state"), "state_dir", true).unwrap();
    }

    #[test]
    fn the_probe_and_the_lock_do_not_follow_links() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        // The probe's name was predictable (our pid): a link there made root truncate and
        // remove through it.
        let probe = dir
            .path()
            .join(format!(".lightsnap-probe.{}", std::process::id()));
        symlink(&victim, &probe).unwrap();
        check_writable(dir.path(), "state_dir", false).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert!(
            std::fs::symlink_metadata(&probe).is_ok(),
            "the planted link is left alone"
        );
        symlink(&victim, dir.path().join(".lock")).unwrap();
        assert!(lock(dir.path()).is_none(), "the lock opened a link");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    }

    #[test]
    fn a_state_dir_others_may_write_in_is_refused_with_the_reason() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = check_writable(dir.path(), "the directory of metrics_file", false).unwrap_err();
        assert!(format!("{e:#}").contains("sticky bit"), "{e:#}");
        assert_eq!(
            crate::exit_code::ExitCode::of(&e),
            crate::exit_code::ExitCode::Permission
        );
    }

    #[test]
    fn the_state_lock_excludes_a_second_holder_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let try_lock = || {
            let f = std::fs::File::open(dir.path().join(".lock")).unwrap();
            nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock).is_ok()
        };
        let held = lock(dir.path()).expect("the lock");
        assert!(
            !try_lock(),
            "a second holder got the lock while it was held"
        );
        drop(held);
        assert!(try_lock(), "the lock was not let go");
        // Not a state file.
        assert!(read_all(dir.path()).unwrap().is_empty());
    }
}
