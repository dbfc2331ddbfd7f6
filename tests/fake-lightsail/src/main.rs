//! `fake-lightsail`: the fake Lightsail API and metadata service as a process, for the demo,
//! the benchmark and by-hand use. Prints `listening on http://ADDR` once it serves, and exits
//! cleanly on SIGTERM or SIGINT.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use fake_lightsail::{Fake, Fault, ImdsMode, Options, Seed};

/// A fake Amazon Lightsail API and instance metadata service (tests only).
#[derive(Debug, Parser)]
#[command(name = "fake-lightsail")]
struct Args {
    /// Address to listen on; port 0 picks a free one (printed on start).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The seed: instances, disks and snapshots (TOML, or JSON when it ends in .json).
    #[arg(long)]
    state: PathBuf,
    /// Where snapshot images are written.
    #[arg(long)]
    snapshot_dir: PathBuf,
    /// How long a snapshot stays pending, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    snapshot_duration_ms: u64,
    /// Items per page of the list operations.
    #[arg(long, default_value_t = 25)]
    page_size: usize,
    /// Access key to accept (with --secret-key); the defaults are the test credentials.
    #[arg(long, default_value = fake_lightsail::DEFAULT_ACCESS_KEY)]
    access_key: String,
    /// Secret of --access-key.
    #[arg(long, default_value = fake_lightsail::DEFAULT_SECRET_KEY)]
    secret_key: String,
    /// The metadata service's behaviour.
    #[arg(long, value_enum, default_value_t = ImdsMode::Optional)]
    imds: ImdsMode,
    /// A fault from the start: `[OPERATION=]KIND[@COUNT]`, KIND one of `latency:50ms`, `hang`,
    /// `throttle`, `500`, `reset`, `error:CODE[:MESSAGE]`, `failed:CODE[:DETAILS]`,
    /// `snapshot-error`. More at run time: `POST /__admin/faults`.
    #[arg(long = "fault", value_parser = Fault::parse)]
    faults: Vec<Fault>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let seed = Seed::from_file(&args.state)?;
    let mut options = Options::new(seed, args.snapshot_dir);
    options.listen = args.listen;
    options.snapshot_duration = Duration::from_millis(args.snapshot_duration_ms);
    options.page_size = args.page_size;
    options.credentials = vec![(args.access_key, args.secret_key)];
    options.imds = args.imds;
    options.faults = args.faults;
    let fake = Fake::start(options).context("starting the fake Lightsail")?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on {}", fake.endpoint())?;
    out.flush()?;
    drop(out);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = term.recv() => {}
            r = tokio::signal::ctrl_c() => r?,
        }
        Ok::<(), std::io::Error>(())
    })?;
    drop(fake);
    Ok(())
}
