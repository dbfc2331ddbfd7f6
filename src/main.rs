//! The `lightsnap` binary: logging, parse, dispatch, exit code. Nothing else.

use clap::Parser;
use lightsnap::cli::{self, Cli, Output};
use lightsnap::exit_code::ExitCode;
use lightsnap::{home, journal, logbuf, watchdog};

fn main() {
    // The watchdog is this binary too; it runs before anything else is set up.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == watchdog::SUBCOMMAND)
    {
        watchdog::run();
    }
    // Before anything else, while this is the only thread: see `home`.
    home::ensure_home();
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            if !e.use_stderr() {
                std::process::exit(0);
            }
            // `check` is a monitoring plugin: its usage errors are UNKNOWN (3), said on
            // stdout's first line, never the CRITICAL that 2 means to a monitoring system;
            // with `--output json`, as its UNKNOWN document.
            if cli::subcommand_of(&args).as_deref() == Some("check") {
                let detail = e.to_string();
                let first = detail.lines().next().unwrap_or_default();
                let why = first.trim_start_matches("error: ");
                if cli::json_asked(&args) {
                    let _ = cli::print_json(cli::check_unknown_json(why));
                } else {
                    println!("UNKNOWN: {why}");
                }
                std::process::exit(cli::check_unknown_code());
            }
            // A usage error is a JSON document too when one was asked for.
            if cli::json_asked(&args) {
                // clap's message without its usage and help lines, on one line.
                let detail = e.to_string();
                let said: Vec<&str> = detail
                    .lines()
                    .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more"))
                    .map(|l| l.trim().trim_start_matches("error: "))
                    .filter(|l| !l.is_empty())
                    .collect();
                let _ = cli::print_json(cli::error_json(&said.join(" "), ExitCode::Usage));
            }
            std::process::exit(ExitCode::Usage.code());
        }
    };
    init_logging(cli.verbose);
    let json = cli.output == Output::Json;
    let code = match cli.run() {
        Ok(code) => code,
        Err(e) => {
            logbuf::release();
            let code = ExitCode::of(&e);
            journal::error_line(&format!("{e:#}"), code.code());
            if json {
                cli::quiet::restore();
                let _ = cli::print_json(cli::error_json(&format!("{e:#}"), code));
            }
            code
        }
    };
    std::process::exit(code.code());
}

/// Logs to stderr through the holding writer; no timestamps (the journal adds its own); or,
/// when stderr is the journal, to the journal with priorities and fields. `RUST_LOG`
/// overrides the verbosity flags.
fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "lightsnap=warn",
        1 => "lightsnap=info",
        _ => "lightsnap=debug",
    };
    let on_journal = journal::stderr_is_journal();
    // On the journal a run's outcome and its snapshots are always logged (what
    // `journalctl MESSAGE_ID=...` finds), whatever the verbosity.
    let level = if on_journal && verbose == 0 {
        "lightsnap=warn,lightsnap::monitor=info"
    } else {
        level
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    if on_journal {
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        journal::activate();
        tracing_subscriber::registry()
            .with(filter)
            .with(journal::JournalLayer)
            .init();
        return;
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(logbuf::LogWriter)
        .without_time()
        .with_target(false)
        .with_ansi(false)
        .init();
}
