//! Exit codes: a documented enum, chosen in `main` from the root cause of a failure so that
//! scripts, hooks and timers can branch on what went wrong without parsing messages.

use crate::cloud::imds::ImdsError;
use crate::cloud::lightsail::{ApiError, ApiErrorKind, NoRegion};
use crate::cloud::validate::InvalidInput;
use crate::hooks::HookError;
use crate::kernel::freeze::{FreezeError, ThawError};
use crate::kernel::guard::OutsideConfinement;
use crate::kernel::unmount::UnmountError;
use crate::runstate::{LockBusy, NotRoot, StaleRecord};
use crate::watchdog::OpenRefused;

/// What a lightsnap run ended with. The numbers are part of the interface: never reuse one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[repr(u8)]
pub enum ExitCode {
    /// Done.
    Success = 0,
    /// An unexpected failure (a bug, or something not classified below).
    Failure = 1,
    /// Bad command line or invalid input (snapshot name, tag, duration): nothing was touched.
    Usage = 2,
    /// The path, mount, disk or instance was not found.
    NotFound = 3,
    /// The path is on a filesystem lightsnap cannot snapshot consistently (no block device).
    Unsupported = 4,
    /// Busy: another lightsnap run holds the lock, or a mount to unmount is in use.
    Busy = 5,
    /// The filesystem is already frozen by someone else; lightsnap left it as it was.
    AlreadyFrozen = 6,
    /// Not permitted: not root, or refused by the confinement guard; or unsafe to trust as
    /// root: a hook or configuration file others could change, a directory anyone may write
    /// in without the sticky bit.
    Permission = 7,
    /// The disk named (`--disk`, or `disk` in the configuration) is not the one behind
    /// the path: attached to another instance, or another disk of this one.
    WrongDisk = 8,
    /// Lightsail refused the request (invalid input, operation failed).
    ApiRejected = 10,
    /// Lightsail did not accept the credentials.
    ApiAuth = 11,
    /// Lightsail throttled, failed, could not be reached or did not answer.
    ApiUnavailable = 12,
    /// The freeze deadline passed: the filesystem was thawed before the call returned.
    DeadlineExceeded = 13,
    /// Some snapshots were taken and some were not, or one exists whose point in time is
    /// not known to be inside the frozen window (tagged `lightsnap:consistency=unverified`).
    Partial = 14,
    /// `--wait` gave up while a snapshot was still pending (it goes on in Lightsail).
    WaitTimeout = 15,
    /// A hook failed or timed out (a failing pre-freeze hook stops the run before anything
    /// is frozen).
    HookFailed = 16,
    /// Lightsail was making an automatic snapshot of a target and refuses manual ones until
    /// it is done: it did not finish within `--auto-snapshot-wait` (nothing was frozen, or
    /// everything was thawed).
    AutoSnapshot = 17,
    /// `lightsnap verify`: the restored snapshot failed a check — a checker found errors, it
    /// did not mount read-only, a `verify` hook failed, or the restore ended in `error` (the
    /// snapshot is tagged `lightsnap:verified=failed`; the scratch disk is removed).
    VerifyFailed = 18,
    /// The snapshot was taken (and kept), but its copy to another region
    /// (`--copy-to-region`) failed.
    CopyFailed = 19,
    /// `lightsnap verify` could not finish — its `--timeout` passed, or a scratch disk could
    /// not be removed: the snapshot is not tagged; what was left is named and the next verify
    /// removes it.
    VerifyIncomplete = 20,
    /// `lightsnap verify` could not check something on the restored disk — a checker not
    /// installed or that did not start or finish, a layout it does not check (a partition of
    /// unknown content, LVM, md, LUKS), a kernel that cannot mount it read-only — and found
    /// nothing wrong in the rest: the snapshot is tagged `lightsnap:verified=unchecked`,
    /// neither clean nor failed; what was not checked is named.
    VerifyUnchecked = 21,
    /// `lightsnap restore --replace` failed after it had changed something: the original
    /// disk was put back (attached at its path and mounted again), the restored disk removed
    /// (or, once the swap had begun, left detached: named, with the command that deletes it);
    /// the message says what failed and anything that could not be put back.
    RestoreFailed = 22,
    /// `lightsnap setup` needs answers: its input is not a terminal and `--yes` was not given
    /// (or the operator said no at the end). Nothing was changed.
    NeedsAnswers = 24,
    /// Lightsail refused an action for these credentials (AccessDeniedException): their IAM
    /// policy does not allow it on that resource. `lightsnap iam-policy` prints what is needed.
    AccessDenied = 23,
    /// `lightsnap restore --replace`: the live disk does not carry this instance's ownership
    /// tag (`lightsnap:owner`), so lightsnap does not detach it; the message prints the
    /// administrator's command that tags it. Nothing was changed.
    NotOwned = 25,
    /// Stopped by SIGHUP (after thawing).
    Hangup = 129,
    /// Stopped by SIGINT (after thawing).
    Interrupted = 130,
    /// Stopped by SIGTERM (after thawing).
    Terminated = 143,
}

/// Every exit code with what it means, as the manual's table shows it (docs/src/exit-codes.md
/// is written from this: a test holds the page to it, and `UPDATE_DOCS=1 cargo test --lib
/// exit_code` rewrites the table). The `--help` list is the short form of the same codes.
pub const MEANINGS: &[(&str, &str)] = &[
    ("0", "success"),
    ("1", "unexpected failure; for `lightsnap check`: WARNING, a target has no success younger than `-w` (the first line says which)"),
    ("2", "usage error or invalid input (name, tag, duration, an unwritable `state_dir`): nothing was touched; for `lightsnap check`: CRITICAL, a target has no success younger than `-c` (`--max-age`); for `lightsnap fleet --max-age`: a disk is stale"),
    ("3", "path, disk or instance not found; for `lightsnap check`: UNKNOWN, it could not check (its own failures and usage errors)"),
    ("4", "not a filesystem on a block device"),
    ("5", "busy: another run holds the lock, or the mount to unmount is in use"),
    ("6", "already frozen by someone else (left as it was)"),
    ("7", "permission denied: not root, or outside `LIGHTSNAP_CONFINE_TO`"),
    ("8", "the disk named (`--disk`, or a `[[snapshot]]` mapping) is not the one behind the path: attached to another instance, or another disk of this one (nothing was frozen)"),
    ("10", "Lightsail refused the request (invalid input, operation failed)"),
    ("11", "no AWS credentials found, or Lightsail refused them"),
    ("12", "Lightsail throttled, failed, or could not be reached"),
    ("13", "the freeze deadline passed: thawed, call abandoned"),
    ("14", "partial or unverified result (also: `run` took its snapshots but could not apply the retention)"),
    ("15", "`--wait` gave up while a snapshot was still pending (it goes on in Lightsail)"),
    ("16", "a hook failed or timed out (a pre-freeze hook: nothing was frozen)"),
    ("17", "Lightsail was making an automatic snapshot of a target and it did not finish within `--auto-snapshot-wait` (nothing frozen)"),
    ("18", "`verify`: the restored snapshot failed a check, did not mount read-only, a `verify` hook failed, or the restore ended in `error` (tagged `lightsnap:verified=failed`; scratch disk removed); also `run` when a `verify_every` verification failed"),
    ("19", "the snapshot was taken (and kept), but its copy to another region (`--copy-to-region`) failed"),
    ("20", "`verify` could not finish (`--timeout`), or could not remove its scratch disk (named; the next `verify` removes it); the snapshot is not tagged"),
    ("21", "`verify` could not check something on the restored disk (a checker missing, or that did not start or finish; a partition of unknown content, LVM, md, LUKS; a kernel that cannot mount it read-only) and found nothing wrong in the rest: tagged `lightsnap:verified=unchecked`, neither clean nor failed; also `run` when a `verify_every` verification could not check"),
    ("22", "`restore --replace` failed after it had changed something: the original disk was put back (attached at its path and mounted again) and the restored disk removed — or, when the swap had begun, left detached and named with the administrator's command that deletes it; the message says what failed and anything that could not be put back"),
    ("23", "Lightsail refused an action to these credentials (AccessDeniedException): the message names the action, and `lightsnap iam-policy` prints the policy lightsnap needs"),
    ("24", "`setup`: not at a terminal and no `--yes`, or the operator said no (nothing was changed)"),
    ("25", "`restore --replace`: the live disk does not carry this instance's ownership tag (`lightsnap:owner`), so lightsnap does not detach it; the message prints the administrator's `aws lightsail tag-resource` command that tags it (nothing was changed)"),
    ("129 / 130 / 143", "stopped by SIGHUP / SIGINT / SIGTERM (after thawing; before the first freeze, with nothing frozen)"),
];

impl ExitCode {
    /// Every code, in order of number: what a child lightsnap's exit status is read back
    /// into, and what the help's list is held to.
    pub const ALL: &[ExitCode] = &[
        ExitCode::Success,
        ExitCode::Failure,
        ExitCode::Usage,
        ExitCode::NotFound,
        ExitCode::Unsupported,
        ExitCode::Busy,
        ExitCode::AlreadyFrozen,
        ExitCode::Permission,
        ExitCode::WrongDisk,
        ExitCode::ApiRejected,
        ExitCode::ApiAuth,
        ExitCode::ApiUnavailable,
        ExitCode::DeadlineExceeded,
        ExitCode::Partial,
        ExitCode::WaitTimeout,
        ExitCode::HookFailed,
        ExitCode::AutoSnapshot,
        ExitCode::VerifyFailed,
        ExitCode::CopyFailed,
        ExitCode::VerifyIncomplete,
        ExitCode::VerifyUnchecked,
        ExitCode::RestoreFailed,
        ExitCode::AccessDenied,
        ExitCode::NeedsAnswers,
        ExitCode::NotOwned,
        ExitCode::Hangup,
        ExitCode::Interrupted,
        ExitCode::Terminated,
    ];

    /// The code of a number lightsnap exits with; [`ExitCode::Failure`] for any other.
    pub fn from_code(code: i32) -> ExitCode {
        Self::ALL
            .iter()
            .copied()
            .find(|c| c.code() == code)
            .unwrap_or(ExitCode::Failure)
    }

    /// The code for an error, from the first typed cause in its chain.
    pub fn of(err: &anyhow::Error) -> ExitCode {
        for cause in err.chain() {
            if let Some(e) = cause.downcast_ref::<Failure>() {
                return e.code;
            }
            if let Some(e) = cause.downcast_ref::<ApiError>() {
                return Self::of_api(e);
            }
            if cause.downcast_ref::<InvalidInput>().is_some() {
                return ExitCode::Usage;
            }
            // Without the metadata service, which instance this is cannot be found.
            if cause.downcast_ref::<ImdsError>().is_some() {
                return ExitCode::NotFound;
            }
            if let Some(e) = cause.downcast_ref::<FreezeError>() {
                return match e {
                    FreezeError::AlreadyFrozen(_) => ExitCode::AlreadyFrozen,
                    FreezeError::NotSupported(_) => ExitCode::Unsupported,
                    FreezeError::PermissionDenied(_) | FreezeError::Outside(_) => {
                        ExitCode::Permission
                    }
                    FreezeError::Open(..) | FreezeError::Other(..) => ExitCode::Failure,
                };
            }
            if let Some(e) = cause.downcast_ref::<ThawError>() {
                return match e {
                    ThawError::PermissionDenied(_) | ThawError::Outside(_) => ExitCode::Permission,
                    _ => ExitCode::Failure,
                };
            }
            if let Some(e) = cause.downcast_ref::<UnmountError>() {
                return match e {
                    UnmountError::Busy { .. } => ExitCode::Busy,
                    UnmountError::Outside(_) => ExitCode::Permission,
                    UnmountError::Other(..) => ExitCode::Failure,
                };
            }
            if cause.downcast_ref::<OutsideConfinement>().is_some()
                || cause.downcast_ref::<OpenRefused>().is_some()
                || cause.downcast_ref::<NotRoot>().is_some()
            {
                return ExitCode::Permission;
            }
            if cause.downcast_ref::<LockBusy>().is_some()
                || cause.downcast_ref::<StaleRecord>().is_some()
            {
                return ExitCode::Busy;
            }
            if let Some(e) = cause.downcast_ref::<crate::signals::Stopped>() {
                return e.code;
            }
            if cause
                .downcast_ref::<crate::files::OpenDirectory>()
                .is_some()
            {
                return ExitCode::Permission;
            }
            if let Some(e) = cause.downcast_ref::<crate::config::ConfigError>() {
                return match e {
                    crate::config::ConfigError::Invalid(_) => ExitCode::Usage,
                    crate::config::ConfigError::Unsafe { .. } => ExitCode::Permission,
                };
            }
            if let Some(e) = cause.downcast_ref::<HookError>() {
                return match e {
                    HookError::NotExecutable { .. } => ExitCode::Usage,
                    HookError::Unsafe { .. } => ExitCode::Permission,
                    HookError::TimedOut { .. } | HookError::Failed { .. } => ExitCode::HookFailed,
                };
            }
            if cause.downcast_ref::<NoRegion>().is_some() {
                return ExitCode::Usage;
            }
            if let Some(e) = cause.downcast_ref::<clap::Error>() {
                return if e.use_stderr() {
                    ExitCode::Usage
                } else {
                    ExitCode::Success
                };
            }
        }
        ExitCode::Failure
    }

    /// The code for an API failure class.
    pub fn of_api(e: &ApiError) -> ExitCode {
        if e.auto_snapshot_in_progress() {
            return ExitCode::AutoSnapshot;
        }
        match e.kind {
            ApiErrorKind::Rejected | ApiErrorKind::OperationFailed => ExitCode::ApiRejected,
            ApiErrorKind::NotFound => ExitCode::NotFound,
            ApiErrorKind::Auth => ExitCode::ApiAuth,
            ApiErrorKind::AccessDenied => ExitCode::AccessDenied,
            ApiErrorKind::Throttled
            | ApiErrorKind::Unavailable
            | ApiErrorKind::Timeout
            | ApiErrorKind::Network => ExitCode::ApiUnavailable,
        }
    }

    /// The number the process exits with.
    pub fn code(self) -> i32 {
        self as i32
    }
}

/// A failure that already knows its exit code (usage errors found by lightsnap itself, a
/// deadline, a signal, ...).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    /// The exit code.
    pub code: ExitCode,
    /// What happened and what to do.
    pub message: String,
}

impl Failure {
    /// A failure with `code`.
    pub fn new(code: ExitCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// `bail!` with an exit code.
#[macro_export]
macro_rules! fail {
    ($code:expr, $($arg:tt)*) => {
        return Err($crate::exit_code::Failure::new($code, format!($($arg)*)).into())
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn the_root_cause_picks_the_code_through_context() {
        let err = Err::<(), _>(ApiError {
            operation: "CreateDiskSnapshot",
            kind: ApiErrorKind::Auth,
            code: Some("UnrecognizedClientException".into()),
            message: "bad key".into(),
        })
        .context("taking the snapshot")
        .unwrap_err();
        assert_eq!(ExitCode::of(&err), ExitCode::ApiAuth);
        let err = Err::<(), _>(FreezeError::AlreadyFrozen("/data".into()))
            .context("freezing")
            .unwrap_err();
        assert_eq!(ExitCode::of(&err), ExitCode::AlreadyFrozen);
        assert_eq!(ExitCode::of(&anyhow::anyhow!("plain")), ExitCode::Failure);
    }

    /// Lower layers say what happened; the code is chosen here, from the root cause.
    #[test]
    fn typed_errors_of_every_layer_map_to_their_documented_codes() {
        let cases: Vec<(anyhow::Error, ExitCode)> = vec![
            (NotRoot.into(), ExitCode::Permission),
            (
                LockBusy {
                    pid: "42".into(),
                    path: "/run/lightsnap/lightsnap.lock".into(),
                }
                .into(),
                ExitCode::Busy,
            ),
            (
                StaleRecord {
                    pid: 42,
                    unmounted: vec!["/data from /dev/xvdf".into()],
                }
                .into(),
                ExitCode::Busy,
            ),
            (NoRegion.into(), ExitCode::Usage),
            (OpenRefused("outside".into()).into(), ExitCode::Permission),
            (
                HookError::TimedOut {
                    hook: "/etc/lightsnap/hooks.d/db".into(),
                    phase: "pre-freeze",
                    timeout: std::time::Duration::from_secs(1),
                }
                .into(),
                ExitCode::HookFailed,
            ),
            (
                FreezeError::NotSupported("/ntfs".into()).into(),
                ExitCode::Unsupported,
            ),
        ];
        for (err, code) in cases {
            let err = err.context("running");
            assert_eq!(ExitCode::of(&err), code, "{err:#}");
        }
    }

    /// The manual's exit-code table is [`MEANINGS`], and lists the codes `--help` does.
    #[test]
    fn the_manuals_exit_code_table_is_written_from_the_code() {
        const BEGIN: &str = "<!-- generated from src/exit_code.rs (MEANINGS): do not edit -->\n";
        const END: &str = "<!-- end of the generated table -->\n";
        let mut table = String::from("| code | meaning |\n| --- | --- |\n");
        for (code, meaning) in MEANINGS {
            table.push_str(&format!("| {code} | {meaning} |\n"));
        }
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/src/exit-codes.md");
        let page = std::fs::read_to_string(&path).unwrap();
        let (head, rest) = page
            .split_once(BEGIN)
            .expect("the page marks the generated table");
        let (old, tail) = rest
            .split_once(END)
            .expect("the page marks the table's end");
        if old != table {
            if std::env::var_os("UPDATE_DOCS").is_some() {
                std::fs::write(&path, format!("{head}{BEGIN}{table}{END}{tail}")).unwrap();
            } else {
                panic!("docs/src/exit-codes.md's table is not MEANINGS: rerun with UPDATE_DOCS=1");
            }
        }
        let help = crate::cli::EXIT_CODES_HELP;
        for (code, _) in MEANINGS {
            let first = code.split(' ').next().unwrap();
            assert!(
                help.lines().any(|l| l.trim_start().starts_with(first)),
                "{code} is not in --help"
            );
        }
    }
}
