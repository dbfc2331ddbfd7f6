//! SIGINT, SIGTERM and SIGHUP, caught from the very start of a run so that none of them can
//! end the agent between a freeze and its thaw: the frozen window waits for them beside the
//! API call, thaws, and then exits with 128 + the signal number.

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

/// The signal name for an exit code from [`Signals::recv`].
pub fn name(code: ExitCode) -> &'static str {
    match code {
        ExitCode::Interrupted => "SIGINT",
        ExitCode::Terminated => "SIGTERM",
        ExitCode::Hangup => "SIGHUP",
        _ => "signal",
    }
}
