//! The watchdog: the process that freezes and thaws, mounts again what the agent unmounted,
//! and outlives the agent.
//!
//! It is the agent's own binary started with a hidden subcommand before anything is frozen
//! (a fresh process, not a `fork` of a multi-threaded one). The agent ([`client`]) asks it,
//! over a pipe, to freeze and thaw each mount, and tells it what it unmounted; because the
//! watchdog ([`server`]) itself makes the FIFREEZE calls, it knows exactly what it froze and
//! can never thaw what someone else froze. It thaws everything it froze, and mounts again
//! everything the agent unmounted and did not mount again, when
//! - the deadline passes (the agent is stuck),
//! - its command pipe reaches end-of-file (the agent died, even by SIGKILL: the kernel closes
//!   the agent's end), or it cannot write a reply (the same, seen from the other pipe),
//! - it gets SIGINT, SIGTERM or SIGHUP (it is in its own process group, so a terminal's Ctrl-C
//!   reaches only the agent, but `systemctl stop` signals the whole cgroup).
//!
//! It also keeps the recovery record ([`crate::runstate`]) up to date, which the agent wrote
//! before starting it: each mount as it is frozen, refused, unmounted, thawed or mounted again
//! (the run directory is a tmpfs, never a filesystem it freezes), so that `thaw --recover`
//! after the death of both thaws only what this run froze and mounts again only what it
//! unmounted.
//!
//! This module is the protocol between the two: one JSON line per request and per reply.

mod client;
mod server;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::kernel::freeze::FreezeError;
use crate::kernel::mountinfo::Mount;

pub use client::{FreezeLost, OpenRefused, Watchdog};
pub use server::run;

/// Test-only: with this set to `after-refusal` (and the confinement of the test suite,
/// `LIGHTSNAP_CONFINE_TO`, set too), the watchdog dies on the spot, thawing nothing, right
/// after it tells the agent of a mount it did not freeze: how the suite loses the watchdog in
/// the middle of a freeze request.
pub const TEST_DEATH_ENV: &str = "LIGHTSNAP_TEST_WATCHDOG_DIES";

/// The hidden subcommand that runs the watchdog.
pub const SUBCOMMAND: &str = "__watchdog";

/// Agent → watchdog.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Request {
    /// First message: what to open (`None`: a target that is not to be frozen), and how
    /// long anything may stay frozen.
    Init {
        mounts: Vec<Option<PathBuf>>,
        deadline_ms: u64,
        /// Expedite RCU grace periods around each FIFREEZE (`--expedite-freeze`).
        #[serde(default)]
        expedite_rcu: bool,
        /// The run directory whose recovery record the watchdog keeps up to date (its entries
        /// by plan index): what it froze, what was refused, what is unmounted, what it undid.
        #[serde(default)]
        run_dir: Option<PathBuf>,
    },
    /// Freeze these, all at once (one thread each): none of them lives on another.
    Freeze(Vec<usize>),
    Thaw(usize),
    /// Close the descriptor of a mount that is to be unmounted instead: an open descriptor
    /// would keep it busy.
    Release(usize),
    /// The agent is about to unmount this mount: from now on, mount it again (unless it is
    /// mounted) if the agent dies before it says it did.
    Unmounting {
        index: usize,
        mount: Mount,
    },
    /// The agent unmounted it.
    Unmounted(usize),
    /// The agent mounted it again itself (or its unmount failed: it is mounted).
    Remounted(usize),
    Done,
}

/// Watchdog → agent.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Reply {
    Ready {
        memory_locked: bool,
    },
    OpenFailed {
        index: usize,
        outside: bool,
        message: String,
    },
    /// One mount of a freeze request, as soon as its FIFREEZE returned (`None`: frozen),
    /// before the whole request's answer: should the watchdog die before that answer, the
    /// agent still knows which mounts it did not freeze (someone else's freeze among them),
    /// and leaves those alone.
    Landed {
        index: usize,
        refusal: Option<Refusal>,
    },
    /// For each mount of a freeze request, in its order: `None` when frozen, else why not.
    Frozen(Vec<Option<Refusal>>),
    Thawed {
        was_frozen: bool,
        by_deadline: bool,
    },
    ThawFailed {
        message: String,
    },
    Released,
    Noted,
}

/// Why the kernel (or the watchdog) did not freeze a mount.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Refusal {
    kind: FreezeKind,
    message: String,
}

impl Refusal {
    fn of(e: &FreezeError) -> Self {
        Self {
            kind: match e {
                FreezeError::AlreadyFrozen(_) => FreezeKind::AlreadyFrozen,
                FreezeError::NotSupported(_) => FreezeKind::NotSupported,
                FreezeError::PermissionDenied(_) => FreezeKind::PermissionDenied,
                _ => FreezeKind::Other,
            },
            message: e.to_string(),
        }
    }

    fn into_error(self, path: PathBuf) -> FreezeError {
        match self.kind {
            FreezeKind::AlreadyFrozen => FreezeError::AlreadyFrozen(path),
            FreezeKind::NotSupported => FreezeError::NotSupported(path),
            FreezeKind::PermissionDenied => FreezeError::PermissionDenied(path),
            FreezeKind::Other => FreezeError::Other(path, self.message),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum FreezeKind {
    AlreadyFrozen,
    NotSupported,
    PermissionDenied,
    Other,
}

/// How a thaw went, as the watchdog saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thawed {
    /// Whether it was frozen when asked (false: already thawed by the deadline, or never
    /// frozen).
    pub was_frozen: bool,
    /// Whether the watchdog's deadline thawed it before the agent asked.
    pub by_deadline: bool,
}
