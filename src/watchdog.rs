//! The watchdog: the process that freezes and thaws, and that outlives the agent.
//!
//! It is the agent's own binary started with a hidden subcommand before anything is frozen
//! (a fresh process, not a `fork` of a multi-threaded one). The agent asks it, over a pipe, to
//! freeze and thaw each mount; because the watchdog itself makes the FIFREEZE calls, it knows
//! exactly what it froze and can never thaw what someone else froze. It thaws everything it
//! froze when
//! - the deadline passes (the agent is stuck),
//! - its command pipe reaches end-of-file (the agent died, even by SIGKILL: the kernel closes
//!   the agent's end), or it cannot write a reply (the same, seen from the other pipe),
//! - it gets SIGINT, SIGTERM or SIGHUP (it is in its own process group, so a terminal's Ctrl-C
//!   reaches only the agent, but `systemctl stop` signals the whole cgroup).
//!
//! While anything is frozen it must not block on the frozen filesystem: it writes no logs and
//! no files (stderr is /dev/null), keeps its memory locked, and talks only through pipes.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::SignalFd;
use serde::{Deserialize, Serialize};

use crate::kernel::freeze::{FreezeError, MountHandle, OutsideOrOpen, ThawError};

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
    },
    /// Freeze these, all at once (one thread each): none of them lives on another.
    Freeze(Vec<usize>),
    Thaw(usize),
    /// Close the descriptor of a mount that is to be unmounted instead: an open descriptor
    /// would keep it busy.
    Release(usize),
    /// The agent unmounted this mount: mount it again if the agent dies before it does.
    Unmounted {
        index: usize,
        mount: crate::kernel::mountinfo::Mount,
    },
    /// The agent mounted it again itself.
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

/// The agent's side of the watchdog.
#[derive(Debug)]
pub struct Watchdog {
    child: Child,
    to: ChildStdin,
    from: BufReader<ChildStdout>,
    /// Whether the watchdog locked its memory.
    pub memory_locked: bool,
}

impl Watchdog {
    /// Starts the watchdog on `mounts` (`None` for targets it is not to freeze) with a
    /// `deadline` counted from its first freeze. Fails (nothing frozen) if a mount cannot be
    /// opened or is outside the confinement.
    pub fn start(
        mounts: &[Option<PathBuf>],
        deadline: Duration,
        expedite_rcu: bool,
    ) -> Result<Self> {
        // /proc/self/exe still runs this binary if a package upgrade replaced the file.
        let mut child = Command::new("/proc/self/exe")
            .arg(SUBCOMMAND)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .context("starting the watchdog process")?;
        let to = child.stdin.take().context("watchdog stdin")?;
        let from = BufReader::new(child.stdout.take().context("watchdog stdout")?);
        let mut watchdog = Self {
            child,
            to,
            from,
            memory_locked: false,
        };
        let reply = watchdog.ask(&Request::Init {
            mounts: mounts.to_vec(),
            deadline_ms: deadline.as_millis() as u64,
            expedite_rcu,
        })?;
        match reply {
            Reply::Ready { memory_locked } => watchdog.memory_locked = memory_locked,
            Reply::OpenFailed {
                outside, message, ..
            } => {
                let _ = watchdog.finish();
                if outside {
                    return Err(crate::exit_code::Failure::new(
                        crate::exit_code::ExitCode::Permission,
                        message,
                    )
                    .into());
                }
                bail!("{message}");
            }
            other => bail!("watchdog answered {other:?} to its start"),
        }
        Ok(watchdog)
    }

    fn ask(&mut self, request: &Request) -> Result<Reply> {
        let mut line = serde_json::to_string(request)?;
        line.push('\n');
        self.to
            .write_all(line.as_bytes())
            .context("the watchdog is gone (writing to it)")?;
        let mut answer = String::new();
        let n = self
            .from
            .read_line(&mut answer)
            .context("the watchdog is gone (reading from it)")?;
        if n == 0 {
            bail!("the watchdog is gone (it closed its pipe)");
        }
        serde_json::from_str(&answer).with_context(|| format!("watchdog said {answer:?}"))
    }

    /// Asks the watchdog to freeze mounts `(index, path)`, all at once; for each, in order,
    /// the kernel's answer. `Err` means the watchdog is gone (and any of them may or may not
    /// be frozen).
    pub fn freeze(
        &mut self,
        mounts: &[(usize, &std::path::Path)],
    ) -> Result<Vec<Result<(), FreezeError>>> {
        let indices = mounts.iter().map(|(i, _)| *i).collect();
        match self.ask(&Request::Freeze(indices))? {
            Reply::Frozen(answers) if answers.len() == mounts.len() => Ok(answers
                .into_iter()
                .zip(mounts)
                .map(|(a, (_, path))| match a {
                    None => Ok(()),
                    Some(r) => Err(r.into_error(path.to_path_buf())),
                })
                .collect()),
            other => bail!("watchdog answered {other:?} to a freeze"),
        }
    }

    /// Asks the watchdog to close its descriptor of mount `index`, which is about to be
    /// unmounted instead of frozen.
    pub fn release(&mut self, index: usize) -> Result<()> {
        match self.ask(&Request::Release(index))? {
            Reply::Released => Ok(()),
            other => bail!("watchdog answered {other:?} to a release"),
        }
    }

    /// Tells the watchdog that mount `index` is unmounted: it mounts it again if the agent
    /// dies (or is past the deadline) before doing so.
    pub fn note_unmounted(
        &mut self,
        index: usize,
        mount: &crate::kernel::mountinfo::Mount,
    ) -> Result<()> {
        match self.ask(&Request::Unmounted {
            index,
            mount: mount.clone(),
        })? {
            Reply::Noted => Ok(()),
            other => bail!("watchdog answered {other:?} to an unmount"),
        }
    }

    /// Tells the watchdog that mount `index` is mounted again.
    pub fn note_remounted(&mut self, index: usize) -> Result<()> {
        match self.ask(&Request::Remounted(index))? {
            Reply::Noted => Ok(()),
            other => bail!("watchdog answered {other:?} to a remount"),
        }
    }

    /// Asks the watchdog to thaw mount `index`.
    pub fn thaw(&mut self, index: usize) -> Result<Thawed> {
        match self.ask(&Request::Thaw(index))? {
            Reply::Thawed {
                was_frozen,
                by_deadline,
            } => Ok(Thawed {
                was_frozen,
                by_deadline,
            }),
            Reply::ThawFailed { message } => bail!("{message}"),
            other => bail!("watchdog answered {other:?} to a thaw"),
        }
    }

    /// Tells the watchdog it is no longer needed and waits for it to exit. It thaws anything
    /// still frozen on the way out, and says so with a non-zero exit.
    pub fn finish(mut self) -> Result<()> {
        let _ = writeln!(self.to, "{}", serde_json::to_string(&Request::Done)?);
        drop(self.to);
        let status = self.child.wait().context("waiting for the watchdog")?;
        if !status.success() {
            bail!("the watchdog exited with {status}");
        }
        Ok(())
    }
}

/// The watchdog process itself (`lightsnap __watchdog`). Never returns.
pub fn run() -> ! {
    let code = match serve() {
        Ok(clean) => i32::from(!clean),
        Err(_) => 2,
    };
    std::process::exit(code)
}

struct State {
    handles: Vec<Option<MountHandle>>,
    /// Indices frozen by us, in freezing order.
    frozen: Vec<usize>,
    /// Mounts the agent unmounted and has not mounted again, in unmounting order.
    unmounted: Vec<(usize, crate::kernel::mountinfo::Mount)>,
    deadline: Duration,
    deadline_at: Option<Instant>,
    thawed_by_deadline: Vec<usize>,
    clean: bool,
    expedite_rcu: bool,
}

/// The kernel's `rcu_expedited` switch, turned on for the length of a freeze and put back as
/// it was. FIFREEZE spends most of its time waiting for three RCU grace periods (one per
/// `sb_writers` level), a few timer ticks each; expedited, they take microseconds. The switch
/// is system-wide, hence opt-in and held for the freeze calls only.
/// If the watchdog is killed while it holds the switch, the recovery record says so and
/// `thaw --recover` puts it back.
struct ExpeditedRcu;

impl ExpeditedRcu {
    /// Turns it on if it was off; `None` when it was on already or cannot be set (a
    /// read-only /sys): then there is nothing to put back.
    fn begin() -> Option<Self> {
        let off = crate::runstate::rcu_expedited() == Some(false);
        (off && std::fs::write(crate::runstate::RCU_EXPEDITED, "1").is_ok()).then_some(Self)
    }
}

impl Drop for ExpeditedRcu {
    fn drop(&mut self) {
        let _ = std::fs::write(crate::runstate::RCU_EXPEDITED, "0");
    }
}

impl State {
    /// Thaws everything we froze, newest first, then mounts again what the agent left
    /// unmounted; remembers failures for the exit code.
    fn thaw_all(&mut self, by_deadline: bool) {
        self.thaw_frozen(by_deadline);
        while let Some((_, mount)) = self.unmounted.pop() {
            // The agent may have mounted it again without getting to say so.
            let back = crate::kernel::unmount::is_back(&mount).unwrap_or(false);
            if !back && crate::kernel::unmount::remount(&mount).is_err() {
                self.clean = false;
            }
        }
    }

    fn thaw_frozen(&mut self, by_deadline: bool) {
        while let Some(i) = self.frozen.pop() {
            // Only frozen handles are in `frozen`, and frozen handles are never released.
            let Some(handle) = &self.handles[i] else {
                continue;
            };
            match handle.thaw() {
                Ok(()) | Err(ThawError::NotFrozen(_)) => {}
                Err(_) => self.clean = false,
            }
            if by_deadline {
                self.thawed_by_deadline.push(i);
            }
        }
        self.deadline_at = None;
    }

    /// Freezes `indices` at once, one thread each (FIFREEZE flushes and waits for the
    /// filesystem; several filesystems do that in parallel). The deadline counts from the
    /// first call.
    fn freeze(&mut self, indices: &[usize]) -> Vec<Option<Refusal>> {
        let bad = |i: usize| Refusal {
            kind: FreezeKind::Other,
            message: format!("bad freeze request for mount {i}"),
        };
        let mut seen = Vec::new();
        let handles: Vec<Option<&MountHandle>> = indices
            .iter()
            .map(|&i| {
                let fresh = !self.frozen.contains(&i) && !seen.contains(&i);
                seen.push(i);
                self.handles
                    .get(i)
                    .and_then(Option::as_ref)
                    .filter(|_| fresh)
            })
            .collect();
        if handles.iter().any(Option::is_some) {
            self.deadline_at
                .get_or_insert_with(|| Instant::now() + self.deadline);
        }
        let _expedited = self.expedite_rcu.then(ExpeditedRcu::begin).flatten();
        let alone = handles.iter().filter(|h| h.is_some()).count() <= 1;
        let results: Vec<Option<Result<(), FreezeError>>> = if alone {
            // One freeze: no thread to start.
            handles.iter().map(|h| h.map(MountHandle::freeze)).collect()
        } else {
            self.freeze_in_threads(&handles)
        };
        indices
            .iter()
            .zip(results)
            .map(|(&i, r)| match r {
                None => Some(bad(i)),
                Some(Ok(())) => {
                    self.frozen.push(i);
                    None
                }
                Some(Err(e)) => Some(Refusal::of(&e)),
            })
            .collect()
    }

    /// One thread a freeze, all started before any is waited for.
    fn freeze_in_threads(
        &self,
        handles: &[Option<&MountHandle>],
    ) -> Vec<Option<Result<(), FreezeError>>> {
        std::thread::scope(|scope| {
            let threads: Vec<_> = handles
                .iter()
                .map(|h| {
                    let h = (*h)?;
                    // Small stacks: memory is locked, and each thread makes one ioctl.
                    std::thread::Builder::new()
                        .stack_size(64 * 1024)
                        .spawn_scoped(scope, move || h.freeze())
                        .map_err(|_| h)
                        .into()
                })
                .collect::<Vec<Option<Result<_, &MountHandle>>>>();
            threads
                .into_iter()
                .map(|t| match t? {
                    Ok(thread) => Some(thread.join().unwrap_or_else(|_| {
                        Err(FreezeError::Other(
                            PathBuf::new(),
                            "freeze thread panicked".into(),
                        ))
                    })),
                    // No thread to be had: freeze from here.
                    Err(h) => Some(h.freeze()),
                })
                .collect()
        })
    }

    fn handle(&mut self, request: Request) -> Option<Reply> {
        Some(match request {
            Request::Init { .. } => Reply::ThawFailed {
                message: "init sent twice".into(),
            },

            Request::Unmounted { index, mount } => {
                self.unmounted.push((index, mount));
                self.deadline_at
                    .get_or_insert_with(|| Instant::now() + self.deadline);
                Reply::Noted
            }
            Request::Remounted(i) => {
                self.unmounted.retain(|(u, _)| *u != i);
                if self.frozen.is_empty() && self.unmounted.is_empty() {
                    self.deadline_at = None;
                }
                Reply::Noted
            }
            Request::Release(i) => {
                if !self.frozen.contains(&i) {
                    if let Some(slot) = self.handles.get_mut(i) {
                        *slot = None;
                    }
                }
                Reply::Released
            }
            Request::Freeze(indices) => Reply::Frozen(self.freeze(&indices)),
            Request::Thaw(i) => {
                let by_deadline = self.thawed_by_deadline.contains(&i);
                match self.frozen.iter().position(|&f| f == i) {
                    None => Reply::Thawed {
                        was_frozen: false,
                        by_deadline,
                    },
                    Some(pos) => {
                        self.frozen.remove(pos);
                        if self.frozen.is_empty() && self.unmounted.is_empty() {
                            self.deadline_at = None;
                        }
                        let Some(handle) = &self.handles[i] else {
                            return Some(Reply::ThawFailed {
                                message: format!("mount {i} has no descriptor"),
                            });
                        };
                        match handle.thaw() {
                            Ok(()) => Reply::Thawed {
                                was_frozen: true,
                                by_deadline: false,
                            },
                            Err(ThawError::NotFrozen(_)) => Reply::Thawed {
                                was_frozen: false,
                                by_deadline: false,
                            },
                            Err(e) => {
                                self.clean = false;
                                Reply::ThawFailed {
                                    message: e.to_string(),
                                }
                            }
                        }
                    }
                }
            }
            Request::Done => return None,
        })
    }
}

/// `Ok(true)` when everything frozen was thawed cleanly.
fn serve() -> Result<bool> {
    // Signals become readable events, so the loop below sees them between two polls and
    // thaws before exiting.
    let mut signals = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        signals.add(s);
    }
    signals.thread_block()?;
    let signal_fd = SignalFd::new(&signals)?;

    let stdin = std::io::stdin();
    let stdin_fd = stdin.as_fd();
    let mut stdout = std::io::stdout().lock();
    let mut input = LineReader::default();

    // The first line opens the mounts.
    let Some(Request::Init {
        mounts,
        deadline_ms,
        expedite_rcu,
    }) = input.next_request(stdin_fd)?
    else {
        bail!("expected an init request");
    };
    let mut handles = Vec::with_capacity(mounts.len());
    for (index, m) in mounts.iter().enumerate() {
        let Some(m) = m else {
            handles.push(None);
            continue;
        };
        match MountHandle::open(m) {
            Ok(h) => handles.push(Some(h)),
            Err(e) => {
                let reply = Reply::OpenFailed {
                    index,
                    outside: matches!(e, OutsideOrOpen::Outside(_)),
                    message: e.to_string(),
                };
                send(&mut stdout, &reply)?;
                return Ok(true);
            }
        }
    }
    // Locked memory: a page fault that needs a read from a frozen filesystem's swap file or
    // from our own binary's pages would be a bad time to block.
    let memory_locked = nix::sys::mman::mlockall(
        nix::sys::mman::MlockAllFlags::MCL_CURRENT | nix::sys::mman::MlockAllFlags::MCL_FUTURE,
    )
    .is_ok();
    let mut state = State {
        handles,
        frozen: Vec::new(),
        unmounted: Vec::new(),
        deadline: Duration::from_millis(deadline_ms),
        deadline_at: None,
        thawed_by_deadline: Vec::new(),
        clean: true,
        expedite_rcu,
    };
    if send(&mut stdout, &Reply::Ready { memory_locked }).is_err() {
        return Ok(true);
    }

    loop {
        // Requests already buffered are served before polling again.
        while let Some(request) = input.buffered_request()? {
            match state.handle(request) {
                Some(reply) => {
                    if send(&mut stdout, &reply).is_err() {
                        state.thaw_all(false);
                        return Ok(state.clean);
                    }
                }
                None => {
                    state.thaw_all(false);
                    return Ok(state.clean);
                }
            }
        }
        let timeout = match state.deadline_at {
            None => PollTimeout::NONE,
            Some(at) => {
                let left = at.saturating_duration_since(Instant::now());
                PollTimeout::try_from(left.as_millis().min(60_000) as i32)
                    .unwrap_or(PollTimeout::ZERO)
            }
        };
        let mut fds = [
            PollFd::new(stdin_fd, PollFlags::POLLIN),
            PollFd::new(signal_fd.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, timeout) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                state.thaw_all(false);
                return Err(e.into());
            }
            Ok(_) => {}
        }
        let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
        if ready(&fds[1]) {
            state.thaw_all(false);
            return Ok(state.clean);
        }
        if ready(&fds[0]) {
            if !input.fill(stdin_fd)? {
                // End of file: the agent is gone.
                state.thaw_all(false);
                return Ok(state.clean);
            }
            continue;
        }
        if state.deadline_at.is_some_and(|at| Instant::now() >= at) {
            state.thaw_all(true);
        }
    }
}

fn send(out: &mut impl Write, reply: &Reply) -> Result<()> {
    let mut line = serde_json::to_string(reply)?;
    line.push('\n');
    out.write_all(line.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// Reads newline-separated requests from a raw descriptor without ever buffering past what
/// `poll` can see.
#[derive(Default)]
struct LineReader {
    buffer: Vec<u8>,
}

impl LineReader {
    /// Reads what is there; `false` at end of file.
    fn fill(&mut self, fd: BorrowedFd<'_>) -> Result<bool> {
        let mut chunk = [0u8; 4096];
        loop {
            match nix::unistd::read(fd, &mut chunk) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.buffer.extend_from_slice(&chunk[..n]);
                    return Ok(true);
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn buffered_request(&mut self) -> Result<Option<Request>> {
        let Some(end) = self.buffer.iter().position(|&b| b == b'\n') else {
            return Ok(None);
        };
        let line: Vec<u8> = self.buffer.drain(..=end).collect();
        Ok(Some(serde_json::from_slice(&line)?))
    }

    /// Blocks until one whole request is there (only for the first one).
    fn next_request(&mut self, fd: BorrowedFd<'_>) -> Result<Option<Request>> {
        loop {
            if let Some(r) = self.buffered_request()? {
                return Ok(Some(r));
            }
            if !self.fill(fd)? {
                return Ok(None);
            }
        }
    }
}
