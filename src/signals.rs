//! SIGINT, SIGTERM and SIGHUP, caught from the very start of a run so that none of them can
//! end the agent between a freeze and its thaw: the frozen window waits for them beside the
//! API call, thaws, and then exits with 128 + the signal number. Before the first freeze a
//! stop request ends the run there ([`unless_stopped`], [`already_stopped`]): nothing is
//! frozen for nothing. `--wait` and `prune` stop at once too, saying what they had done.

use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::exit_code::ExitCode;

/// The three stop signals, as one stream.
#[derive(Debug)]
pub struct Signals {
    int: Signal,
    term: Signal,
    hup: Signal,
}

impl Signals {
    /// Installs the handlers. Call once, early, inside the runtime.
    pub fn install() -> std::io::Result<Self> {
        Ok(Self {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// The next stop signal, as the exit code it calls for.
    pub async fn recv(&mut self) -> ExitCode {
        tokio::select! {
            _ = self.int.recv() => ExitCode::Interrupted,
            _ = self.term.recv() => ExitCode::Terminated,
            _ = self.hup.recv() => ExitCode::Hangup,
        }
    }
}

/// A source of stop requests: the window waits for one beside its API calls. [`Signals`] in
/// production; tests inject their own.
#[allow(async_fn_in_trait)]
pub trait Stop {
    /// The next stop request, as the exit code it calls for.
    async fn recv(&mut self) -> ExitCode;
}

impl Stop for Signals {
    async fn recv(&mut self) -> ExitCode {
        Signals::recv(self).await
    }
}

/// No stop request, ever: for what must run to its end whatever is asked (post-thaw hooks,
/// which release what pre-freeze hooks took).
#[derive(Debug, Clone, Copy, Default)]
pub struct Never;

impl Stop for Never {
    async fn recv(&mut self) -> ExitCode {
        std::future::pending().await
    }
}

/// A run (or a wait, or a prune) ended by a stop request.
#[derive(Debug, thiserror::Error)]
#[error("stopped by {} {when}", name(*code))]
pub struct Stopped {
    /// The exit code the signal calls for.
    pub code: ExitCode,
    /// When, and what that means (`before anything was frozen; no snapshot was taken`).
    pub when: &'static str,
}

/// What a stop request before the first freeze means.
pub const BEFORE_FREEZE: &str = "before anything was frozen; no snapshot was taken";

/// Runs `work` unless a stop request comes first; then `work` is dropped (cancelled) and the
/// error is [`Stopped`].
pub async fn unless_stopped<S: Stop, T>(
    stop: &mut S,
    when: &'static str,
    work: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::select! {
        biased;
        code = stop.recv() => Err(Stopped { code, when }.into()),
        done = work => done,
    }
}

/// A stop request that has already come, if any (none is waited for).
pub async fn already_stopped<S: Stop>(stop: &mut S, when: &'static str) -> anyhow::Result<()> {
    // Let the runtime's signal driver look at what arrived before asking.
    tokio::task::yield_now().await;
    match futures_util::FutureExt::now_or_never(stop.recv()) {
        Some(code) => Err(Stopped { code, when }.into()),
        None => Ok(()),
    }
}

/// The signal name for an exit code from [`Signals::recv`].
pub fn name(code: ExitCode) -> &'static str {
    match code {
        ExitCode::Interrupted => "SIGINT",
        ExitCode::Terminated => "SIGTERM",
        ExitCode::Hangup => "SIGHUP",
        _ => "signal",
    }
}
