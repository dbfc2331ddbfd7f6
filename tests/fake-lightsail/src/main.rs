//! `fake-lightsail`: the fake Lightsail API and metadata service as a process, for the demo,
//! the benchmark and by-hand use. Prints `listening on http://ADDR` once it serves (with
//! `--tls`: `listening on https://NAME:PORT`, then `metadata on http://ADDR`), and exits
//! cleanly on SIGTERM or SIGINT.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use fake_lightsail::{Fake, Fault, ImdsMode, Options, Seed, TlsOptions};

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
    /// `snapshot-error`, `corrupt-disk`. More at run time: `POST /__admin/faults`.
    #[arg(long = "fault", value_parser = Fault::parse)]
    faults: Vec<Fault>,
    /// Serve the API over TLS, with a certificate made now; the metadata service stays plain
    /// HTTP on the same port.
    #[arg(long, requires = "ca_file")]
    tls: bool,
    /// With --tls: where to write the CA certificate (PEM) clients must trust.
    #[arg(long, requires = "tls")]
    ca_file: Option<PathBuf>,
    /// With --tls: a DNS name for the certificate (repeatable); the first is the endpoint's
    /// host. Default: localhost. 127.0.0.1 and ::1 are always in it.
    #[arg(long = "tls-name", requires = "tls")]
    tls_names: Vec<String>,
    /// Close connections idle this long between requests (`30s`, `500ms`); default: never.
    #[arg(long, value_parser = humantime::parse_duration)]
    idle_timeout: Option<Duration>,
    /// Record name lookups by every process (opens of /etc/hosts, /etc/resolv.conf; root).
    #[arg(long)]
    watch_lookups: bool,
    /// Test-only attach mode (root): an attached restored disk appears as DIR/<basename of
    /// diskPath>, a symlink to a loop device over a copy of its snapshot's image.
    #[arg(long, conflicts_with = "attach_command")]
    attach_dir: Option<PathBuf>,
    /// Test-only attach mode through a command: on AttachDisk of a restored disk, its copy is
    /// made and `CMD attach COPY SERIAL DISKPATH` run (SERIAL: the EBS NVMe serial, the volume
    /// id without the dash); on DetachDisk `CMD detach SERIAL`.
    #[arg(long, value_name = "CMD")]
    attach_command: Option<PathBuf>,
    /// How many GetDisk/GetDisks reads a restored disk stays pending for (0: available at once).
    #[arg(long, default_value_t = 1)]
    disk_pending_reads: u32,
    /// An IAM identity policy (JSON, as `aws iam put-user-policy` takes it) to enforce on
    /// every API call: a call it does not allow answers AccessDeniedException.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
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
    options.idle_timeout = args.idle_timeout;
    options.watch_lookups = args.watch_lookups;
    options.attach_dir = args.attach_dir;
    options.attach_command = args.attach_command;
    options.disk_pending_reads = args.disk_pending_reads;
    if let Some(path) = &args.policy {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the policy {}", path.display()))?;
        let doc: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("the policy {} is not JSON", path.display()))?;
        let policy = fake_lightsail::policy::Policy::parse(&doc)
            .map_err(|e| anyhow::anyhow!("the policy {}: {e}", path.display()))?;
        options.policy = Some(policy);
    }
    if args.tls {
        let mut tls = TlsOptions {
            ca_file: args.ca_file,
            ..TlsOptions::default()
        };
        if !args.tls_names.is_empty() {
            tls.names = args.tls_names;
        }
        options.tls = Some(tls);
    }
    let fake = Fake::start(options).context("starting the fake Lightsail")?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on {}", fake.endpoint())?;
    if fake.ca_pem().is_some() {
        writeln!(out, "metadata on {}", fake.imds_endpoint())?;
    }
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
