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
    /// Not permitted: not root, or refused by the confinement guard.
    Permission = 7,
    /// The disk named (`--disk-name`, or `disk` in the configuration) is not the one behind
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
    /// disk was put back (attached at its path and mounted again), the restored disk removed;
    /// the message says what failed and anything that could not be put back.
    RestoreFailed = 22,
    /// Stopped by SIGHUP (after thawing).
    Hangup = 129,
    /// Stopped by SIGINT (after thawing).
    Interrupted = 130,
    /// Stopped by SIGTERM (after thawing).
    Terminated = 143,
}

impl ExitCode {
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
}
