//! A fake of the parts of Amazon Lightsail and of the instance metadata service that
//! lightsnap uses, over real HTTP, so the real `aws-sdk-lightsail` and the real AWS CLI talk
//! to it unchanged. Never shipped: it exists for lightsnap's tests, demo and benchmark.
//!
//! - [`seed`]: the world it starts with (instances, disks, snapshots), from TOML or JSON.
//! - `api`: the operations, over that state, shaped as the service model.
//! - `sigv4`: request signatures, checked for real.
//! - [`fault`]: injected errors, throttling, latency, hangs, resets.
//! - `server`: HTTP (the JSON protocol, IMDS, the admin endpoint); `copy`: snapshot bytes.
//! - `tls`: the TLS mode's certificate authority and server certificate, made at start-up.
//! - [`conn`]: which connection every request came on, and TLS handshakes.
//! - [`lookups`]: name lookups by any process (opens of `/etc/hosts`), through fanotify.
//! - `auto`: Lightsail's automatic snapshots (the add-on, `GetAutoSnapshots`, a run in
//!   progress refusing manual snapshots).
//! - `api::disks`: restores and attachments (CreateDiskFromSnapshot, AttachDisk, DetachDisk,
//!   DeleteDisk); `attach`: the test-only attach mode (loop devices over restored disks, or
//!   a command that plugs them in).
//! - [`policy`]: an IAM identity policy enforced on every call (`api::access`: the keys each
//!   operation supplies); a refused call answers AccessDeniedException.
//! - `api::regions`: one state per region, chosen by the signature's scope; CopySnapshot.
//! - [`call_log`]: every API call appended to a file of the fake's own when
//!   `FAKE_LIGHTSAIL_CALL_LOG_DIR` is set, for the suite-wide check of the calls against
//!   `lightsnap iam-policy` (the `fake-lightsail-check-calls` binary).
//!
//! A disk may name a *backing* block device or image file: CreateDiskSnapshot copies its
//! bytes into `<snapshot dir>/<name>.img` before it answers, since the point in time of a real
//! snapshot is the call. That is what lets tests prove a snapshot consistent.

#![deny(missing_docs)]

mod api;
mod attach;
mod auto;
pub mod call_log;
pub mod conn;
mod copy;
pub mod fault;
pub mod lookups;
pub mod policy;
pub mod seed;
mod server;
mod sigv4;
mod tls;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use api::ApiError;
pub use conn::{Connection, ConnectionStats, RequestConnection};
pub use fault::{Fault, FaultKind};
pub use lookups::Lookup;
pub use seed::Seed;

/// The access key the fake accepts unless told otherwise.
pub const DEFAULT_ACCESS_KEY: &str = "AKIDLIGHTSNAPTEST";
/// Its secret (also the secret of the thief's and the administrator's keys).
pub const DEFAULT_SECRET_KEY: &str = "lightsnap-fake-secret";
/// The access key a test signs with when it makes the calls a thief holding the instance's
/// keys would make: accepted as the default key is (the policy in force applies to it too),
/// and marked as a thief's in the call log, so the suite-wide check does not count its calls
/// as lightsnap's.
pub const THIEF_ACCESS_KEY: &str = "AKIDLIGHTSNAPTHIEF";
/// The access key of an administrator's calls in a test (tagging a disk for the instance,
/// `prune --all-instances` with an admin key): marked as such in the call log.
pub const ADMIN_ACCESS_KEY: &str = "AKIDLIGHTSNAPADMIN";

/// How the metadata service behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ImdsMode {
    /// IMDSv2 tokens offered, IMDSv1 accepted too (the usual default).
    #[default]
    Optional,
    /// A token is required (`HttpTokens=required`).
    Required,
    /// No token endpoint (old blueprints): IMDSv1 only.
    V1Only,
    /// No metadata at all (404 everywhere): not on an instance.
    Off,
}

/// One request the fake received, in arrival order.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Call {
    /// The operation (`CreateDiskSnapshot`), or `IMDS <method> <path>`.
    pub operation: String,
    /// The request body (JSON), or `null` when it was not JSON.
    pub body: serde_json::Value,
    /// When it was received, in milliseconds since the epoch.
    pub received_at_ms: f64,
    /// When it was received, in microseconds since the fake started (monotonic: compare with
    /// the connection's `accepted_mono_us`).
    #[serde(default)]
    pub received_mono_us: u64,
    /// The connection it came on, as it stood then (how many requests it had served before,
    /// whether and when a TLS handshake was made on it).
    #[serde(default)]
    pub connection: Option<RequestConnection>,
    /// The HTTP status it was answered with; `None` while unanswered, and for a hang or a reset.
    #[serde(default)]
    pub status: Option<u16>,
    /// The error type it was answered with (`x-amzn-ErrorType`), if it was refused.
    #[serde(default)]
    pub error: Option<String>,
    /// An API call whose signature checked out: the region it was signed for (its SigV4
    /// credential scope), which is the region whose state served it.
    #[serde(default)]
    pub region: Option<String>,
}

/// The TLS mode of the Lightsail API (the metadata service stays plain HTTP, as the real one).
#[derive(Debug, Clone)]
pub struct TlsOptions {
    /// DNS names the server certificate is for; the first is the endpoint's host. The
    /// certificate is also for 127.0.0.1, ::1 and the listening address.
    pub names: Vec<String>,
    /// Where to write the CA certificate (PEM) a client must trust (`SSL_CERT_FILE`,
    /// `AWS_CA_BUNDLE`); also readable from [`Fake::ca_pem`].
    pub ca_file: Option<PathBuf>,
}

impl Default for TlsOptions {
    /// For `localhost`, the CA not written anywhere.
    fn default() -> Self {
        Self {
            names: vec!["localhost".into()],
            ca_file: None,
        }
    }
}

/// How to start the fake.
#[derive(Debug, Clone)]
pub struct Options {
    /// The starting state.
    pub seed: Seed,
    /// Where snapshot images go.
    pub snapshot_dir: PathBuf,
    /// How long a snapshot stays `pending` (its progress rises evenly); zero: completed at once.
    pub snapshot_duration: Duration,
    /// Items per page of the list operations.
    pub page_size: usize,
    /// Accepted (access key, secret) pairs (by default the default key, the thief's and the
    /// administrator's).
    pub credentials: Vec<(String, String)>,
    /// The metadata service's behaviour.
    pub imds: ImdsMode,
    /// Where to listen (`127.0.0.1:0`: any free port).
    pub listen: SocketAddr,
    /// Faults in force from the start.
    pub faults: Vec<Fault>,
    /// Serve the API over TLS (`None`: plain HTTP, the default).
    pub tls: Option<TlsOptions>,
    /// Close a connection that has been idle this long between requests (`None`: never, the
    /// default). The real endpoint closes idle connections; a client must not count on one.
    pub idle_timeout: Option<Duration>,
    /// Watch name lookups (opens of `/etc/hosts`, `/etc/resolv.conf`) by every process, with
    /// fanotify: root only; [`Fake::start`] fails where it cannot. See [`lookups`].
    pub watch_lookups: bool,
    /// Attach mode (test-only): where an attached restored disk appears, as
    /// `DIR/<basename of diskPath>`, a symlink to a loop device over a copy of its snapshot's
    /// image. Root only (losetup). `None`: attachments change state only.
    pub attach_dir: Option<PathBuf>,
    /// Attach mode through a command (test-only; not with `attach_dir`): on AttachDisk of a
    /// restored disk the fake makes its copy as with `attach_dir`, then runs
    /// `CMD attach COPY SERIAL DISKPATH` (COPY an absolute path, SERIAL the disk's EBS NVMe
    /// serial: its volume id without the dash) and answers once it succeeds; on DetachDisk
    /// (and when the fake stops) `CMD detach SERIAL`. The command makes the device appear,
    /// e.g. hot-plugs the copy into a booted guest as an NVMe disk.
    pub attach_command: Option<PathBuf>,
    /// How many GetDisk/GetDisks reads a disk restored by CreateDiskFromSnapshot is
    /// `pending` for before it is `available` (0: available at once).
    pub disk_pending_reads: u32,
    /// An IAM identity policy every API call is checked against ([`policy`]); `None`: every
    /// call allowed.
    pub policy: Option<policy::Policy>,
}

impl Options {
    /// Defaults: snapshots complete after 2 s, pages of 25, the default credentials, IMDS
    /// optional, any free port on 127.0.0.1, restored disks pending for one read, no attach
    /// mode.
    pub fn new(seed: Seed, snapshot_dir: impl Into<PathBuf>) -> Self {
        Self {
            seed,
            snapshot_dir: snapshot_dir.into(),
            snapshot_duration: Duration::from_secs(2),
            page_size: 25,
            credentials: vec![
                (DEFAULT_ACCESS_KEY.into(), DEFAULT_SECRET_KEY.into()),
                (THIEF_ACCESS_KEY.into(), DEFAULT_SECRET_KEY.into()),
                (ADMIN_ACCESS_KEY.into(), DEFAULT_SECRET_KEY.into()),
            ],
            imds: ImdsMode::Optional,
            listen: "127.0.0.1:0".parse().unwrap(),
            faults: Vec::new(),
            tls: None,
            idle_timeout: None,
            watch_lookups: false,
            attach_dir: None,
            attach_command: None,
            disk_pending_reads: 1,
            policy: None,
        }
    }
}

/// A running fake, serving on its own threads until dropped.
pub struct Fake {
    addr: SocketAddr,
    shared: Arc<server::Shared>,
    snapshot_dir: PathBuf,
    /// TLS mode: the endpoint's host name and the CA certificate (PEM).
    tls: Option<(String, String, Option<PathBuf>)>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Fake {
    /// Binds, then serves on a thread of its own. The address is known when this returns.
    pub fn start(options: Options) -> std::io::Result<Self> {
        let attach = match (&options.attach_dir, &options.attach_command) {
            (None, None) => attach::Mode::Off,
            (Some(dir), None) => attach::Mode::Dir(dir.clone()),
            (None, Some(command)) => attach::Mode::Command(command.clone()),
            (Some(_), Some(_)) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "attach_dir and attach_command are two attach modes: give one",
                ))
            }
        };
        std::fs::create_dir_all(&options.snapshot_dir)?;
        let listener = std::net::TcpListener::bind(options.listen)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let tls = match &options.tls {
            None => None,
            Some(t) => {
                let mut ips: Vec<std::net::IpAddr> =
                    vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()];
                if !addr.ip().is_unspecified() && !ips.contains(&addr.ip()) {
                    ips.push(addr.ip());
                }
                let certs = tls::make(&t.names, &ips).map_err(std::io::Error::other)?;
                if let Some(path) = &t.ca_file {
                    std::fs::write(path, &certs.ca_pem)?;
                }
                let host = t
                    .names
                    .first()
                    .cloned()
                    .unwrap_or_else(|| "localhost".into());
                Some((host, certs, t.ca_file.clone()))
            }
        };
        let mut faults = fault::Faults::default();
        for f in options.faults {
            faults.add(f);
        }
        let conns = conn::Registry::new();
        let watch = if options.watch_lookups {
            Some(lookups::Watch::start(conns.started())?)
        } else {
            None
        };
        let shared = Arc::new(server::Shared {
            world: Mutex::new(api::Worlds::new(
                &options.seed,
                options.snapshot_dir.clone(),
                options.snapshot_duration,
                options.page_size,
                attach,
                options.disk_pending_reads,
            )),
            faults: Mutex::new(faults),
            calls: Mutex::new(Vec::new()),
            next_call: std::sync::atomic::AtomicU64::new(1),
            tokens: Mutex::new(HashSet::new()),
            credentials: options.credentials,
            imds: options.imds,
            conns,
            lookups: watch,
            tls: tls.as_ref().map(|(_, c, _)| c.server.clone()),
            idle_timeout: options.idle_timeout,
            copying: Mutex::new(HashSet::new()),
            copied: tokio::sync::Notify::new(),
            policy: Mutex::new(options.policy),
            call_log: call_log::CallLog::from_env()?,
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let serving = shared.clone();
        let thread = std::thread::Builder::new()
            .name("fake-lightsail".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)
                        .expect("a listener for the runtime");
                    server::serve(listener, serving, stopped).await;
                });
                // Dropping the runtime drops every connection, hung ones included.
                runtime.shutdown_timeout(Duration::from_secs(5));
            })?;
        Ok(Self {
            addr,
            shared,
            snapshot_dir: options.snapshot_dir,
            tls: tls.map(|(host, c, file)| (host, c.ca_pem, file)),
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The API's base URL, for `AWS_ENDPOINT_URL_LIGHTSAIL`: `http://127.0.0.1:PORT`, or in
    /// TLS mode `https://NAME:PORT` (the first TLS name). Plain, it serves the metadata
    /// service too.
    pub fn endpoint(&self) -> String {
        match &self.tls {
            None => format!("http://{}", self.addr),
            Some((host, _, _)) => format!("https://{host}:{}", self.addr.port()),
        }
    }

    /// The metadata service's base URL, for `AWS_EC2_METADATA_SERVICE_ENDPOINT`: always plain
    /// `http://127.0.0.1:PORT` (the same port; the admin endpoint answers there too).
    pub fn imds_endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// TLS mode: the CA certificate (PEM) clients must trust.
    pub fn ca_pem(&self) -> Option<&str> {
        self.tls.as_ref().map(|(_, pem, _)| pem.as_str())
    }

    /// TLS mode: where the CA certificate was written, if [`TlsOptions::ca_file`] said.
    pub fn ca_file(&self) -> Option<&Path> {
        self.tls.as_ref().and_then(|(_, _, f)| f.as_deref())
    }

    /// Every TCP connection accepted so far, in order.
    pub fn connections(&self) -> Vec<Connection> {
        self.shared.conns.list()
    }

    /// Name lookups seen since the fake started (with [`Options::watch_lookups`]; empty
    /// without), by every process: filter on the pid of the one under test.
    pub fn lookups(&self) -> Vec<Lookup> {
        self.shared
            .lookups
            .as_ref()
            .map(lookups::Watch::seen)
            .unwrap_or_default()
    }

    /// Connections accepted and TLS handshakes made since the fake started.
    pub fn connection_stats(&self) -> ConnectionStats {
        self.shared.conns.stats()
    }

    /// Starts an automatic snapshot of `resource` (an instance or a disk with the add-on) now:
    /// for `duration` (then `Success`), or with `None` until [`Fake::end_auto_snapshot`].
    /// Meanwhile manual snapshots of it are refused.
    pub fn start_auto_snapshot(
        &self,
        resource: &str,
        duration: Option<Duration>,
    ) -> Result<(), String> {
        self.shared.world.lock().unwrap().start_auto_snapshot(
            resource,
            std::time::SystemTime::now(),
            duration,
        )
    }

    /// Ends the automatic snapshot of `resource` in progress now, `Success` or `Failed`.
    pub fn end_auto_snapshot(&self, resource: &str, status: &str) -> Result<(), String> {
        self.shared.world.lock().unwrap().end_auto_snapshot(
            resource,
            std::time::SystemTime::now(),
            status,
        )
    }

    /// Every resource with the add-on, its runs and whether one is in progress.
    pub fn auto_snapshots(&self) -> serde_json::Value {
        self.shared
            .world
            .lock()
            .unwrap()
            .auto_snapshots(std::time::SystemTime::now())
    }

    /// Every request received so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.shared.calls()
    }

    /// Adds a fault, after those already in force.
    pub fn add_fault(&self, fault: Fault) {
        self.shared.faults.lock().unwrap().add(fault);
    }

    /// Removes every fault.
    pub fn clear_faults(&self) {
        self.shared.faults.lock().unwrap().clear();
    }

    /// Enforces `policy` on every API call from now on (`None`: allows every call).
    pub fn set_policy(&self, policy: Option<policy::Policy>) {
        *self.shared.policy.lock().unwrap() = policy;
    }

    /// Where a disk snapshot's image is (or would be).
    pub fn snapshot_image(&self, name: &str) -> PathBuf {
        self.snapshot_dir.join(api::image_file_name(name))
    }

    /// Where an instance snapshot's image of one of its disks is (or would be).
    pub fn instance_snapshot_image(&self, name: &str, disk: &str) -> PathBuf {
        self.snapshot_dir
            .join(api::image_file_name(name).trim_end_matches(".img"))
            .join(format!("{disk}.img"))
    }

    /// The snapshot directory.
    pub fn snapshot_dir(&self) -> &Path {
        &self.snapshot_dir
    }

    /// A disk snapshot as GetDiskSnapshot would describe it now.
    pub fn disk_snapshot(&self, name: &str) -> Option<serde_json::Value> {
        self.shared.world.lock().unwrap().disk_snapshot(name)
    }

    /// An instance snapshot as GetInstanceSnapshot would describe it now.
    pub fn instance_snapshot(&self, name: &str) -> Option<serde_json::Value> {
        self.shared.world.lock().unwrap().instance_snapshot(name)
    }

    /// Every snapshot: `{"diskSnapshots": [...], "instanceSnapshots": [...]}`.
    pub fn snapshots(&self) -> serde_json::Value {
        self.shared.world.lock().unwrap().snapshots()
    }

    /// A disk (block storage or system) of the home region as GetDisk would describe it now,
    /// without counting as one of the reads a restored disk is `pending` for.
    pub fn disk(&self, name: &str) -> Option<serde_json::Value> {
        self.shared.world.lock().unwrap().disk_view(name)
    }

    /// Every disk of every region (system disks too), as the admin endpoint's `GET disks`
    /// lists them: GetDisk's shape plus `region`, `device`, `link` and `copy`.
    pub fn disks(&self) -> serde_json::Value {
        self.shared.world.lock().unwrap().all_disks()
    }

    /// Attach mode: `(loop device, link in the attach directory)` of an attached restored
    /// disk of the home region.
    pub fn attached_device(&self, disk: &str) -> Option<(PathBuf, PathBuf)> {
        self.shared.world.lock().unwrap().attached_device(disk)
    }

    /// Attach mode: a restored disk's own copy of its snapshot's bytes (made at its first
    /// attach, deleted with the disk).
    pub fn disk_copy(&self, disk: &str) -> Option<PathBuf> {
        self.shared.world.lock().unwrap().disk_copy(disk)
    }

    /// A disk snapshot of `region` as GetDiskSnapshot there would describe it now.
    pub fn disk_snapshot_in(&self, region: &str, name: &str) -> Option<serde_json::Value> {
        self.shared
            .world
            .lock()
            .unwrap()
            .region(region)?
            .disk_snapshot(name)
    }

    /// An instance snapshot of `region` as GetInstanceSnapshot there would describe it now.
    pub fn instance_snapshot_in(&self, region: &str, name: &str) -> Option<serde_json::Value> {
        self.shared
            .world
            .lock()
            .unwrap()
            .region(region)?
            .instance_snapshot(name)
    }

    /// Every snapshot of `region` (`null` for a region not served).
    pub fn snapshots_in(&self, region: &str) -> serde_json::Value {
        self.shared
            .world
            .lock()
            .unwrap()
            .region(region)
            .map_or(serde_json::Value::Null, |w| w.snapshots())
    }

    /// Where a disk snapshot's image in `region` is (or would be): the snapshot directory
    /// for the home region, `<snapshot dir>/<region>/` for the others.
    pub fn snapshot_image_in(&self, region: &str, name: &str) -> PathBuf {
        let worlds = self.shared.world.lock().unwrap();
        match worlds.region(region) {
            Some(w) => w.disk_image(name),
            None => self
                .snapshot_dir
                .join(region)
                .join(api::image_file_name(name)),
        }
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        // No loop device outlives the fake (tests run in parallel, as root).
        if let Ok(mut worlds) = self.shared.world.lock() {
            worlds.release_devices();
        }
    }
}
