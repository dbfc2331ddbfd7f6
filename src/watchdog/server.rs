//! The watchdog process itself (`lightsnap __watchdog`): opens the mounts it is to freeze,
//! then serves the agent's requests until it is done, gone, stopped or late, and on the way
//! out thaws what it froze and mounts again what the agent left unmounted.
//!
//! While anything is frozen it must not block on the frozen filesystem: it writes no logs
//! (stderr is /dev/null), no file but the recovery record in the run directory (a tmpfs, and
//! never on a filesystem it holds: see [`Book`]), keeps its memory locked, and talks only
//! through pipes.
//!
//! Every way out of its request loop — done, the agent gone, a signal, the deadline's end, a
//! request it cannot read, a failed read or poll — goes through the thaw-all.

use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::SignalFd;

use super::{FreezeKind, Refusal, Reply, Request};
use crate::kernel::freeze::{FreezeError, MountHandle, OutsideOrOpen, ThawError};
use crate::kernel::mountinfo::Mount;
use crate::kernel::{rcu, unmount};
use crate::runstate::{self, Record, Stage};

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
    unmounted: Vec<(usize, Mount)>,
    deadline: Duration,
    deadline_at: Option<Instant>,
    thawed_by_deadline: Vec<usize>,
    clean: bool,
    expedite_rcu: bool,
    book: Book,
}

/// The recovery record, as the watchdog keeps it up to date: read at its first change (the
/// agent writes it after starting the watchdog, before its first request), then written whole
/// after each change. Only a record of the agent that started it (its pid) is touched, and
/// none in a run directory on a filesystem the watchdog holds (a write there while frozen
/// would never return).
struct Book {
    run_dir: Option<PathBuf>,
    agent: u32,
    record: Option<Record>,
    loaded: bool,
    dirty: bool,
}

impl Book {
    fn new(run_dir: Option<PathBuf>, handles: &[Option<MountHandle>]) -> Self {
        let on_a_held_filesystem = |dir: &PathBuf| {
            let Ok(dev) = std::fs::metadata(dir).map(|m| m.dev()) else {
                return false;
            };
            handles
                .iter()
                .flatten()
                .any(|h| std::fs::metadata(h.path()).is_ok_and(|m| m.dev() == dev))
        };
        Self {
            run_dir: run_dir.filter(|d| !on_a_held_filesystem(d)),
            agent: std::os::unix::process::parent_id(),
            record: None,
            loaded: false,
            dirty: false,
        }
    }

    /// Notes that mount `index` is now at `stage` (written by [`Book::save`]).
    fn set(&mut self, index: usize, stage: Stage) {
        let Some(dir) = &self.run_dir else {
            return;
        };
        if !self.loaded {
            self.loaded = true;
            self.record = runstate::read_record(dir)
                .ok()
                .flatten()
                .filter(|r| r.pid == self.agent);
        }
        let Some(record) = &mut self.record else {
            return;
        };
        for e in record.entries.iter_mut().filter(|e| e.index == Some(index)) {
            if e.stage != Some(stage) {
                e.stage = Some(stage);
                self.dirty = true;
            }
        }
    }

    /// Writes the record if it changed, unless the file is no longer its agent's: cleared
    /// (`thaw --recover`) or replaced by the next run (which may start as soon as the agent
    /// is dead and its lock gone), never written back. A failure is not the watchdog's to
    /// report (it has nowhere to): the record then says less than is known, never more.
    fn save(&mut self) {
        if !std::mem::take(&mut self.dirty) {
            return;
        }
        let (Some(dir), Some(record)) = (&self.run_dir, &self.record) else {
            return;
        };
        let ours = runstate::read_record(dir)
            .ok()
            .flatten()
            .is_some_and(|r| r.pid == self.agent);
        if ours {
            let _ = runstate::write_record(dir, record);
        } else {
            self.record = None;
        }
    }
}

impl State {
    /// Thaws everything we froze, newest first, then mounts again what the agent left
    /// unmounted; remembers failures for the exit code, and brings the record up to date.
    fn thaw_all(&mut self, by_deadline: bool) {
        self.thaw_frozen(by_deadline);
        while let Some((index, mount)) = self.unmounted.pop() {
            // The agent may have mounted it again without getting to say so.
            let back = unmount::is_back(&mount).unwrap_or(false);
            if back || unmount::remount(&mount).is_ok() {
                self.book.set(index, Stage::Undone);
            } else {
                self.clean = false;
            }
        }
        self.book.save();
    }

    fn thaw_frozen(&mut self, by_deadline: bool) {
        while let Some(i) = self.frozen.pop() {
            // Only frozen handles are in `frozen`, and frozen handles are never released.
            let Some(handle) = &self.handles[i] else {
                continue;
            };
            match handle.thaw() {
                Ok(()) | Err(ThawError::NotFrozen(_)) => self.book.set(i, Stage::Undone),
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
    /// first call. `landed` hears of each mount as soon as its FIFREEZE returns.
    fn freeze(
        &mut self,
        indices: &[usize],
        landed: &mut dyn FnMut(usize, &Option<Refusal>),
    ) -> Vec<Option<Refusal>> {
        let bad = |i: usize| Refusal {
            kind: FreezeKind::Other,
            message: format!("bad freeze request for mount {i}"),
        };
        let mut seen = Vec::new();
        let book = &mut self.book;
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
        // Recorded before the calls: from now on each may be frozen.
        for (&i, h) in indices.iter().zip(&handles) {
            if h.is_some() {
                book.set(i, Stage::Freezing);
            }
        }
        book.save();
        let _expedited = self.expedite_rcu.then(rcu::Expedited::begin).flatten();
        let mut answers: Vec<Option<Refusal>> = indices.iter().map(|&i| Some(bad(i))).collect();
        let mut frozen = Vec::new();
        let mut land = |pos: usize, result: Landing| {
            answers[pos] = match result {
                Landing::Frozen => {
                    frozen.push(indices[pos]);
                    book.set(indices[pos], Stage::Frozen);
                    None
                }
                Landing::Refused(e) => {
                    // Someone else's freeze, or none at all: not ours to thaw.
                    book.set(indices[pos], Stage::Refused);
                    Some(Refusal::of(&e))
                }
                // The thread died around its ioctl: the mount may be frozen, so it is counted
                // as frozen (the watchdog thaws it; "not frozen" then is harmless) and the
                // agent hears a refusal.
                Landing::Unknown => {
                    frozen.push(indices[pos]);
                    Some(Refusal {
                        kind: FreezeKind::Other,
                        message: "the freeze thread panicked".into(),
                    })
                }
            };
            // Recorded before the agent hears of it.
            book.save();
            landed(indices[pos], &answers[pos]);
        };
        if handles.iter().filter(|h| h.is_some()).count() <= 1 {
            // One freeze: no thread to start.
            for (pos, h) in handles.iter().enumerate() {
                if let Some(h) = h {
                    land(pos, Landing::of(h.freeze()));
                }
            }
        } else {
            freeze_in_threads(&handles, &mut land);
        }
        self.frozen.extend(frozen);
        answers
    }

    /// The reply to `request`; a freeze also tells `out` of each mount as it lands.
    fn handle(&mut self, request: Request, out: &mut impl Write) -> Option<Reply> {
        Some(match request {
            Request::Init { .. } => Reply::ThawFailed {
                message: "init sent twice".into(),
            },

            Request::Unmounting { index, mount } => {
                // Recorded before the unmount, which may then happen at any moment.
                self.book.set(index, Stage::Unmounting);
                self.book.save();
                self.unmounted.push((index, mount));
                self.deadline_at
                    .get_or_insert_with(|| Instant::now() + self.deadline);
                Reply::Noted
            }
            Request::Unmounted(index) => {
                self.book.set(index, Stage::Unmounted);
                self.book.save();
                Reply::Noted
            }
            Request::Remounted(i) => {
                // Saved once the agent has its answer (see the request loop).
                self.book.set(i, Stage::Undone);
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
            Request::Freeze(indices) => {
                let die = dies_after_a_refusal();
                let answers = self.freeze(&indices, &mut |index, refusal| {
                    // A failed write means the agent is gone: the final reply fails too, and
                    // the loop thaws everything.
                    let refused = refusal.is_some();
                    let refusal = refusal.clone();
                    let _ = send(out, &Reply::Landed { index, refusal });
                    if die && refused {
                        std::process::exit(9);
                    }
                });
                Reply::Frozen(answers)
            }
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
                        // Saved once the agent has its answer (see the request loop).
                        match handle.thaw() {
                            Ok(()) => {
                                self.book.set(i, Stage::Undone);
                                Reply::Thawed {
                                    was_frozen: true,
                                    by_deadline: false,
                                }
                            }
                            Err(ThawError::NotFrozen(_)) => {
                                self.book.set(i, Stage::Undone);
                                Reply::Thawed {
                                    was_frozen: false,
                                    by_deadline: false,
                                }
                            }
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

/// Whether the test suite asked the watchdog to die after its first refusal
/// ([`TEST_DEATH_ENV`]); never outside a confined (test) run.
fn dies_after_a_refusal() -> bool {
    std::env::var_os(crate::kernel::guard::CONFINE_ENV).is_some()
        && crate::test_switch!(super::TEST_DEATH_ENV).is_some_and(|v| v == "after-refusal")
}

/// How one FIFREEZE came out.
enum Landing {
    Frozen,
    Refused(FreezeError),
    /// Its thread panicked: whether the ioctl ran is not known.
    Unknown,
}

impl Landing {
    fn of(result: Result<(), FreezeError>) -> Self {
        match result {
            Ok(()) => Landing::Frozen,
            Err(e) => Landing::Refused(e),
        }
    }
}

/// One thread a freeze, all started before any is waited for; `land` hears of each (by its
/// position in `handles`) as it returns, in the order they return.
fn freeze_in_threads(handles: &[Option<&MountHandle>], land: &mut dyn FnMut(usize, Landing)) {
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut started = Vec::new();
        for (pos, h) in handles.iter().enumerate() {
            let Some(h) = *h else { continue };
            let tx = tx.clone();
            // Small stacks: memory is locked, and each thread makes one ioctl.
            let thread = std::thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn_scoped(scope, move || {
                    let _ = tx.send((pos, h.freeze()));
                });
            match thread {
                Ok(_) => started.push(pos),
                // No thread to be had: freeze from here.
                Err(_) => land(pos, Landing::of(h.freeze())),
            }
        }
        drop(tx);
        // Ends when every thread has sent or died (a dead thread drops its sender).
        for (pos, result) in rx {
            started.retain(|&p| p != pos);
            land(pos, Landing::of(result));
        }
        for pos in started {
            land(pos, Landing::Unknown);
        }
    });
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
        run_dir,
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
    let book = Book::new(run_dir, &handles);
    let mut state = State {
        book,
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

    // Whatever ends the loop, everything is thawed and mounted again on the way out.
    let served = serve_requests(&mut state, &mut input, stdin_fd, &signal_fd, &mut stdout);
    state.thaw_all(false);
    served.map(|()| state.clean)
}

/// The request loop, until the agent is done or gone, a signal comes, or something fails:
/// its caller thaws everything however it ends.
fn serve_requests(
    state: &mut State,
    input: &mut LineReader,
    stdin_fd: BorrowedFd<'_>,
    signal_fd: &SignalFd,
    stdout: &mut impl Write,
) -> Result<()> {
    loop {
        // Requests already buffered are served before polling again.
        while let Some(request) = input.buffered_request()? {
            let Some(reply) = state.handle(request, stdout) else {
                return Ok(());
            };
            if send(stdout, &reply).is_err() {
                return Ok(());
            }
            // What the reply's request changed, recorded once the agent has its answer.
            state.book.save();
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
            Err(e) => return Err(e.into()),
            Ok(_) => {}
        }
        let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
        if ready(&fds[1]) {
            return Ok(());
        }
        if ready(&fds[0]) {
            if !input.fill(stdin_fd)? {
                // End of file: the agent is gone.
                return Ok(());
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
