//! The `lightsnap` binary: logging, parse, dispatch, exit code. Nothing else.

use clap::Parser;
use lightsnap::cli::{Cli, Output};
use lightsnap::exit_code::ExitCode;
use lightsnap::{logbuf, watchdog};

fn main() {
    // The watchdog is this binary too; it runs before anything else is set up.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == watchdog::SUBCOMMAND)
    {
        watchdog::run();
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            std::process::exit(if e.use_stderr() {
                ExitCode::Usage.code()
            } else {
                0
            });
        }
    };
    init_logging(cli.verbose);
    let json = cli.output == Output::Json;
    let code = match cli.run() {
        Ok(code) => code,
        Err(e) => {
            logbuf::release();
            let code = ExitCode::of(&e);
            eprintln!("lightsnap: error: {e:#}");
            if json {
                let doc = serde_json::json!({
                    "error": { "message": format!("{e:#}"), "exit_code": code.code() }
                });
                println!("{doc}");
            }
            code
        }
    };
    std::process::exit(code.code());
}

/// Logs to stderr through the holding writer; no timestamps (the journal adds its own).
/// `RUST_LOG` overrides the verbosity flags.
fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "lightsnap=warn",
        1 => "lightsnap=info",
        _ => "lightsnap=debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(logbuf::LogWriter)
        .without_time()
        .with_target(false)
        .with_ansi(false)
        .init();
}
