//! The machine under test: the scratch directory and what is made in it (through
//! `tests/common`), the fake Lightsail (plain HTTP or TLS), the writer, the two contenders (lightsnap and the naive
//! script), FIFREEZE alone, the `rcu_expedited` guard and the look for other work.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::common::{self, Fake, Fault, FaultKind, LoopFs, Options, Scratch, Seed};
use crate::stats::{med, Rng};
use crate::{log, Cfg};
use fake_lightsail::{RequestConnection, TlsOptions};

/// The opt-in configuration's tag and flag.
pub const EXP: &str = "lightsnap-exp";
pub const EXP_FLAG: &str = "--expedite-freeze";
/// The two lightsnap configurations: as it runs by default, and with --expedite-freeze (its
/// watchdog turns the kernel's system-wide rcu_expedited switch on for the freeze calls).
pub const CONFIGS: [(&str, &str); 2] = [
    ("lightsnap", "lightsnap"),
    (EXP, "lightsnap --expedite-freeze"),
];
const RCU_EXPEDITED: &str = "/sys/kernel/rcu_expedited";

/// One measured run of any contender; what it did not measure is `None`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Run {
    pub tag: String,
    pub rc: i32,
    /// Unix seconds.
    pub start: f64,
    pub end: f64,
    pub wall_ms: Option<f64>,
    pub rss_kb: Option<u64>,
    pub latency: Option<u64>,
    pub window_ms: Option<f64>,
    pub freeze_call_ms: Option<f64>,
    pub frozen_ms: Option<f64>,
    pub stall_ms: Option<f64>,
    pub dirty_mib: Option<u64>,
    pub disks: Option<usize>,
    pub calls_spread_ms: Option<f64>,
    pub fifreeze_ms: Option<f64>,
    pub rcu_after: Option<String>,
    pub expedited: Option<bool>,
    pub samples: Option<u64>,
    pub rcu_share: Option<f64>,
    pub flush_share: Option<f64>,
    /// Section 5: whether the run's CreateDiskSnapshot came on a connection that had served
    /// requests before it (`requests_before > 0`, as the fake saw it).
    pub preopened: Option<bool>,
    /// Section 5: whether that connection had made a TLS handshake.
    pub create_tls: Option<bool>,
    #[serde(skip)]
    pub stdout: String,
    #[serde(skip)]
    pub stderr: String,
}

impl Run {
    pub fn ok(&self) -> bool {
        self.rc == 0
    }
}

pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// The kernel's rcu_expedited switch as it reads now ("0", "1"), or None.
pub fn rcu_expedited() -> Option<String> {
    std::fs::read_to_string(RCU_EXPEDITED)
        .ok()
        .map(|s| s.trim().to_string())
}

/// The switch as this benchmark found it, and the check that it is so again: after every
/// `lightsnap --expedite-freeze` run (which must put it back itself: a run that did not is
/// counted and reported) and on the way out, whatever happened.
pub struct RcuGuard {
    pub initial: Option<String>,
    /// (tag, the value found) of runs that did not put it back.
    pub left_on: Vec<(String, Option<String>)>,
}

impl RcuGuard {
    fn new() -> Self {
        Self {
            initial: rcu_expedited(),
            left_on: Vec::new(),
        }
    }

    fn check(&mut self, r: &mut Run) {
        let now = rcu_expedited();
        r.rcu_after.clone_from(&now);
        if self.initial.is_some() && now != self.initial {
            log(&format!(
                "{} run left /sys/kernel/rcu_expedited at {} (found at {}): putting it back",
                r.tag,
                now.as_deref().unwrap_or("?"),
                self.initial.as_deref().unwrap_or("?")
            ));
            self.left_on.push((r.tag.clone(), now));
            self.restore();
        }
    }

    pub fn restore(&self) {
        if let Some(initial) = &self.initial {
            if rcu_expedited().as_ref() != Some(initial) {
                if let Err(e) = std::fs::write(RCU_EXPEDITED, initial) {
                    log(&format!(
                        "could not put /sys/kernel/rcu_expedited back to {initial}: {e}"
                    ));
                }
            }
        }
    }
}

/// Other work on the machine that would show in the figures (compilers, fuzzers), looked for
/// before every run: per section, each name and how many looks saw it, and the looks made.
#[derive(Default)]
pub struct Others {
    pub section: String,
    pub seen: BTreeMap<String, BTreeMap<String, u32>>,
    pub checks: BTreeMap<String, u32>,
}

const BUSY_COMMS: [&str; 6] = ["cargo", "rustc", "cc1", "cc1plus", "ld", "cargo-fuzz"];

impl Others {
    fn look(&mut self) {
        let mut names = std::collections::BTreeSet::new();
        let me = std::process::id().to_string();
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for entry in dir.flatten() {
                let pid = entry.file_name().to_string_lossy().into_owned();
                if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == me {
                    continue;
                }
                let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) else {
                    continue;
                };
                if BUSY_COMMS.contains(&comm.trim()) {
                    names.insert(comm.trim().to_string());
                    continue;
                }
                let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                    continue;
                };
                let cmd = String::from_utf8_lossy(&cmd);
                if cmd.contains("cargo-fuzz") || cmd.contains("fuzz/target") {
                    names.insert("fuzzer".to_string());
                }
            }
        }
        *self.checks.entry(self.section.clone()).or_default() += 1;
        for n in names {
            *self
                .seen
                .entry(self.section.clone())
                .or_default()
                .entry(n)
                .or_default() += 1;
        }
    }

    /// The Machine table's cell.
    pub fn summary(&self) -> String {
        if self.checks.is_empty() {
            return "not looked for".into();
        }
        if self.seen.is_empty() {
            return format!("none, in {} looks", self.checks.values().sum::<u32>());
        }
        self.seen
            .iter()
            .map(|(sec, names)| {
                let list: Vec<String> = names.iter().map(|(n, c)| format!("{n} in {c}")).collect();
                format!(
                    "section {sec}: {} of {} looks",
                    list.join(", "),
                    self.checks.get(sec).copied().unwrap_or(0)
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Everything the benchmark makes, so it can all be undone, and the state of the run.
pub struct Rig {
    pub cfg: Cfg,
    /// The scratch directory (inside the one scripts/bench made): filesystems, snapshots,
    /// logs, lightsnap's run directory and configuration. Confinement for every lightsnap run.
    pub scratch: Scratch,
    counter: u32,
    pub rcu: RcuGuard,
    pub others: Others,
    pub rng: Rng,
}

impl Rig {
    pub fn new(cfg: &Cfg) -> Result<Self> {
        let scratch = Scratch::new_in(&cfg.scratch);
        for dir in ["run", "hooks", "config/etc/lightsnap", "logs", "snapshots"] {
            std::fs::create_dir_all(scratch.path().join(dir))?;
        }
        // This process freezes too (FIFREEZE alone): lightsnap's own guard keeps it inside.
        std::env::set_var("LIGHTSNAP_CONFINE_TO", scratch.path());
        Ok(Self {
            cfg: cfg.clone(),
            scratch,
            counter: 0,
            rcu: RcuGuard::new(),
            others: Others::default(),
            rng: Rng::new(1),
        })
    }

    pub fn root(&self) -> &Path {
        self.scratch.path()
    }

    /// Notes a process this run started, for scripts/bench's safety net.
    fn register_pid(&self, pid: u32) {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(self.cfg.scratch.join("pids"))
        {
            let _ = writeln!(f, "{pid}");
        }
    }

    fn next_id(&mut self) -> u32 {
        self.counter += 1;
        self.counter
    }

    /// A filesystem of `size` bytes on a loop device, mounted in the scratch directory.
    pub fn make_fs(&self, name: &str, kind: common::FsKind, size: u64) -> BenchFs {
        let options: &[&str] = match kind {
            common::FsKind::Ext4 => &["-E", "lazy_itable_init=0,lazy_journal_init=0"],
            _ => &[],
        };
        let fs = LoopFs::create_sized(&self.scratch, name, kind, size, options);
        BenchFs {
            fs: Some(fs),
            disk: format!("bench-{name}"),
        }
    }

    /// Looks for other work, then leaves a gap before the next run; errors out when asked to stop.
    pub fn settle(&mut self) -> Result<()> {
        crate::check_stop()?;
        self.others.look();
        std::thread::sleep(self.cfg.gap);
        crate::check_stop()
    }

    /// The fake Lightsail with `filesystems` attached to the instance it says we are.
    pub fn fake(&self, filesystems: &[&BenchFs]) -> Result<BenchFake> {
        self.fake_with(filesystems, None)
    }

    /// The same over TLS: `https://localhost:PORT` with a certificate made at its start, its
    /// CA written to the scratch directory for `SSL_CERT_FILE` (see [`Rig::env`]); the metadata
    /// service stays plain HTTP, as the real one is.
    pub fn fake_tls(&self, filesystems: &[&BenchFs]) -> Result<BenchFake> {
        self.fake_with(
            filesystems,
            Some(TlsOptions {
                names: vec!["localhost".into()],
                ca_file: Some(self.root().join("ca.pem")),
            }),
        )
    }

    fn fake_with(&self, filesystems: &[&BenchFs], tls: Option<TlsOptions>) -> Result<BenchFake> {
        let mut toml = String::from(
            "self_instance = \"bench-1\"\n[[instances]]\nname = \"bench-1\"\ninstance_id = \"i-0be4c11a2b3c4d5e6\"\n",
        );
        for fs in filesystems {
            // No `backing`: the fake copies nothing, so the copy's time is not counted as API
            // latency; the only delay in the call is the injected one.
            toml.push_str(&format!(
                "[[disks]]\nname = \"{}\"\npath = \"{}\"\nattached_to = \"bench-1\"\nsize_gb = 8\n",
                fs.disk,
                fs.device().display()
            ));
        }
        let seed = Seed::from_toml_str(&toml).map_err(|e| anyhow::anyhow!("seed: {e}"))?;
        let mut opts = Options::new(seed, self.root().join("snapshots"));
        opts.snapshot_duration = Duration::from_millis(1000);
        opts.tls = tls;
        let fake = Fake::start(opts).context("starting the fake Lightsail")?;
        Ok(BenchFake {
            fake,
            latency: None,
        })
    }

    /// The writer, appending and fsyncing on `fs` and timing every write.
    pub fn writer(&self, fs: &BenchFs, label: &str) -> Result<LatencyWriter> {
        let out = self.root().join("logs").join(format!("writes-{label}.txt"));
        let child = Command::new(self.cfg.bin.join("lightsnap-writer"))
            .arg("latencies")
            .arg(fs.mount_point().join("writer.log"))
            .arg(&out)
            .args(["--period-ms", "2"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .context("starting lightsnap-writer")?;
        self.register_pid(child.id());
        // Steady state before the first run.
        std::thread::sleep(Duration::from_millis(500));
        Ok(LatencyWriter {
            child: Some(child),
            mount_point: fs.mount_point().to_path_buf(),
            out,
            starts: Vec::new(),
            durations: Vec::new(),
        })
    }

    /// The environment of every contender: the fake's endpoint and credentials, lightsnap
    /// confined to the scratch directory with its configuration there; over TLS, the fake's
    /// CA trusted the standard way (`SSL_CERT_FILE`), as a private CA would be.
    pub fn env(&self, fake: &BenchFake) -> Vec<(String, String)> {
        let root = self.root().display().to_string();
        let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into());
        let mut env: Vec<(String, String)> = vec![
            ("AWS_ENDPOINT_URL_LIGHTSAIL".into(), fake.fake.endpoint()),
            (
                "AWS_EC2_METADATA_SERVICE_ENDPOINT".into(),
                fake.fake.imds_endpoint(),
            ),
            ("AWS_REGION".into(), "us-east-1".into()),
            ("AWS_DEFAULT_REGION".into(), "us-east-1".into()),
            (
                "AWS_ACCESS_KEY_ID".into(),
                fake_lightsail::DEFAULT_ACCESS_KEY.into(),
            ),
            (
                "AWS_SECRET_ACCESS_KEY".into(),
                fake_lightsail::DEFAULT_SECRET_KEY.into(),
            ),
            ("AWS_CONFIG_FILE".into(), "/dev/null".into()),
            ("AWS_SHARED_CREDENTIALS_FILE".into(), "/dev/null".into()),
            ("LIGHTSNAP_CONFINE_TO".into(), root.clone()),
            ("LIGHTSNAP_RUN_DIR".into(), format!("{root}/run")),
            ("LIGHTSNAP_CONFIG_ROOT".into(), format!("{root}/config")),
            ("LC_ALL".into(), "C".into()),
            (
                "PATH".into(),
                format!("/usr/local/sbin:/usr/sbin:/sbin:{path}"),
            ),
        ];
        if let Some(ca) = fake.fake.ca_file() {
            env.push(("SSL_CERT_FILE".into(), ca.display().to_string()));
        }
        env
    }

    /// Runs `argv` under `/usr/bin/time -v`: its result with wall time and peak RSS.
    pub fn timed(&self, argv: &[String], env: &[(String, String)], tag: &str) -> Result<Run> {
        let rss_file = self.root().join("logs/time.txt");
        let start = unix_now();
        let t0 = Instant::now();
        let out = Command::new("/usr/bin/time")
            .arg("-v")
            .arg("-o")
            .arg(&rss_file)
            .args(argv)
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {}", argv.join(" ")))?;
        let wall = t0.elapsed().as_secs_f64() * 1000.0;
        Ok(Run {
            tag: tag.into(),
            rc: out.status.code().unwrap_or(-1),
            start,
            end: unix_now(),
            wall_ms: Some(wall),
            rss_kb: peak_rss_kb(&rss_file),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            ..Run::default()
        })
    }

    /// A name per run from the configuration's template (two runs in one second would collide
    /// with the default {disk}-<yyyymmdd-hhmmss>; --snapshot-name only names one disk).
    pub fn fresh_names(&mut self) -> Result<u32> {
        let n = self.next_id();
        let config = format!(
            "name_template = \"{{disk}}-ls{n:05}\"\nhook_dir = \"{}\"\n",
            self.root().join("hooks").display()
        );
        std::fs::write(self.root().join("config/etc/lightsnap/config.toml"), config)?;
        Ok(n)
    }

    /// One `lightsnap freeze-and-snap` of `filesystems`, `wrap` (strace) around it.
    pub fn run_lightsnap(
        &mut self,
        fake: &BenchFake,
        filesystems: &[&BenchFs],
        latency: u64,
        extra: &[&str],
        tag: &str,
        wrap: &[String],
    ) -> Result<Run> {
        let n = self.fresh_names()?;
        let mut argv: Vec<String> = wrap.to_vec();
        argv.push(self.cfg.bin.join("lightsnap").display().to_string());
        argv.extend(["--output", "json", "freeze-and-snap"].map(String::from));
        argv.extend(extra.iter().map(|s| s.to_string()));
        argv.extend(
            filesystems
                .iter()
                .map(|fs| fs.mount_point().display().to_string()),
        );
        let mut r = self.timed(&argv, &self.env(fake), tag)?;
        r.latency = Some(latency);
        if extra.contains(&EXP_FLAG) {
            self.rcu.check(&mut r);
        }
        if r.ok() {
            let window = serde_json::from_str::<serde_json::Value>(&r.stdout)
                .ok()
                .and_then(|v| v.get("window_ms").and_then(|w| w.as_f64()));
            match window {
                Some(w) => r.window_ms = Some(w),
                None => r.rc = -1,
            }
        }
        if !r.ok() {
            let said = if r.stderr.trim().is_empty() {
                &r.stdout
            } else {
                &r.stderr
            };
            log(&format!(
                "lightsnap run {n} failed (exit {}): {}",
                r.rc,
                tail(said.trim(), 300)
            ));
        }
        Ok(r)
    }

    /// The default configuration, untraced.
    pub fn lightsnap(&mut self, fake: &BenchFake, fss: &[&BenchFs], latency: u64) -> Result<Run> {
        self.run_lightsnap(fake, fss, latency, &[], "lightsnap", &[])
    }

    /// --expedite-freeze, untraced.
    pub fn lightsnap_exp(
        &mut self,
        fake: &BenchFake,
        fss: &[&BenchFs],
        latency: u64,
    ) -> Result<Run> {
        self.run_lightsnap(fake, fss, latency, &[EXP_FLAG], EXP, &[])
    }

    /// One run of the naive script (tests/support/naive_snapshot.sh).
    pub fn run_naive(&mut self, fake: &BenchFake, fs: &BenchFs, latency: u64) -> Result<Run> {
        let n = self.next_id();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/naive_snapshot.sh");
        let argv = vec![
            "bash".to_string(),
            script.display().to_string(),
            fs.mount_point().display().to_string(),
            fs.disk.clone(),
            format!("{}-nv{n:05}", fs.disk),
            fake.fake.endpoint(),
            self.cfg.aws.display().to_string(),
        ];
        let mut r = self.timed(&argv, &self.env(fake), "naive")?;
        r.latency = Some(latency);
        let parsed = parse_naive(&r.stderr);
        if let Some((call, frozen, window)) = parsed {
            r.freeze_call_ms = Some(call);
            r.frozen_ms = Some(frozen);
            r.window_ms = Some(window);
        }
        if !r.ok() || parsed.is_none() {
            log(&format!(
                "naive run {n} failed (exit {}): {}",
                r.rc,
                tail(r.stderr.trim(), 300)
            ));
            if r.ok() {
                r.rc = -1;
            }
        }
        Ok(r)
    }
}

fn tail(s: &str, n: usize) -> &str {
    let mut start = s.len().saturating_sub(n);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

fn peak_rss_kb(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find_map(|l| {
        l.trim()
            .strip_prefix("Maximum resident set size (kbytes): ")
    })?;
    line.trim().parse().ok()
}

/// `naive: freeze_call_ms=F frozen_ms=Z window_ms=W api_rc=R` → (F, Z, W).
fn parse_naive(stderr: &str) -> Option<(f64, f64, f64)> {
    let line = stderr.lines().find(|l| l.starts_with("naive: "))?;
    let field = |name: &str| -> Option<f64> {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))?
            .parse()
            .ok()
    };
    field("api_rc")?;
    Some((
        field("freeze_call_ms")?,
        field("frozen_ms")?,
        field("window_ms")?,
    ))
}

/// A filesystem of the benchmark and the fake disk it is; unmade (image deleted too) on drop.
pub struct BenchFs {
    fs: Option<LoopFs>,
    pub disk: String,
}

impl BenchFs {
    pub fn mount_point(&self) -> &Path {
        &self.fs.as_ref().unwrap().mount_point
    }

    pub fn device(&self) -> &Path {
        &self.fs.as_ref().unwrap().device
    }
}

impl Drop for BenchFs {
    fn drop(&mut self) {
        if let Some(fs) = self.fs.take() {
            let image = fs.image.clone();
            drop(fs); // thaw, unmount, detach
            let _ = std::fs::remove_file(image); // the space, for the next section
        }
    }
}

/// The in-process fake and the latency it is set to inject.
pub struct BenchFake {
    pub fake: Fake,
    latency: Option<u64>,
}

impl BenchFake {
    /// Injects `ms` of latency into every CreateDiskSnapshot call from now on.
    pub fn set_latency(&mut self, ms: u64) {
        if self.latency == Some(ms) {
            return;
        }
        self.fake.clear_faults();
        if ms > 0 {
            self.fake.add_fault(Fault {
                operation: Some("CreateDiskSnapshot".into()),
                kind: FaultKind::Latency { ms },
                count: None,
            });
        }
        self.latency = Some(ms);
    }

    /// How many calls it has received so far.
    pub fn call_count(&self) -> usize {
        self.fake.calls().len()
    }

    /// The connections the CreateDiskSnapshot calls after the first `since` came on, as they
    /// stood when each call arrived (`None` where the fake recorded none).
    pub fn create_connections_since(&self, since: usize) -> Vec<Option<RequestConnection>> {
        self.fake
            .calls()
            .into_iter()
            .skip(since)
            .filter(|c| c.operation == "CreateDiskSnapshot")
            .map(|c| c.connection)
            .collect()
    }

    /// When the CreateDiskSnapshot calls after the first `since` arrived (unix ms).
    pub fn create_arrivals_since(&self, since: usize) -> Vec<f64> {
        self.fake
            .calls()
            .into_iter()
            .skip(since)
            .filter(|c| c.operation == "CreateDiskSnapshot")
            .map(|c| c.received_at_ms)
            .collect()
    }
}

/// `lightsnap-writer latencies` on a filesystem, and what it recorded once stopped.
pub struct LatencyWriter {
    child: Option<Child>,
    mount_point: PathBuf,
    out: PathBuf,
    starts: Vec<f64>,
    durations: Vec<f64>,
}

impl LatencyWriter {
    /// Stops it and reads every write it made.
    pub fn stop(&mut self) {
        self.terminate();
        let mut rows: Vec<(f64, f64)> = std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let (s, d) = l.split_once(' ')?;
                Some((s.parse().ok()?, d.parse().ok()?))
            })
            .collect();
        rows.sort_by(|a, b| a.0.total_cmp(&b.0));
        self.starts = rows.iter().map(|r| r.0).collect();
        self.durations = rows.iter().map(|r| r.1).collect();
    }

    fn terminate(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // Thaw first: a writer blocked on a frozen filesystem cannot even be killed. The
        // filesystem is the benchmark's own; "not frozen" is the normal answer.
        let _ = Command::new("fsfreeze")
            .arg("-u")
            .arg(&self.mount_point)
            .stderr(Stdio::null())
            .status();
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) if Instant::now() >= until => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// The longest write (write + fsync, ms) in progress at any time in [start, end] (unix s).
    pub fn longest_stall(&self, start: f64, end: f64) -> Option<f64> {
        if self.starts.is_empty() {
            return None;
        }
        let i = self.starts.partition_point(|&s| s < start - 60.0);
        let j = self.starts.partition_point(|&s| s < end);
        (i..j)
            .filter(|&k| self.starts[k] + self.durations[k] / 1000.0 >= start)
            .map(|k| self.durations[k])
            .reduce(f64::max)
    }

    /// Its median write + fsync.
    pub fn typical(&self) -> Option<f64> {
        med(self.durations.iter().copied().map(Some))
    }

    /// Sets each run's writer's longest stall.
    pub fn stalls(&self, runs: &mut [Run]) {
        for r in runs {
            r.stall_ms = self.longest_stall(r.start, r.end);
        }
    }
}

impl Drop for LatencyWriter {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// FIFREEZE on each of `filesystems` at once (a thread each, as lightsnap's watchdog does),
/// straight from this process (no process started, no API call), then FITHAW each right away:
/// what the kernel's FIFREEZE costs by itself. Only ever on filesystems this benchmark made
/// (and lightsnap's confinement guard, set to the scratch directory, refuses anything else).
///
/// With `expedite`, the floor of `lightsnap --expedite-freeze`: rcu_expedited is turned on
/// just before the calls and back off as soon as they have returned (before the thaw), as its
/// watchdog does; only when it was off (as found: it is never left on).
///
/// While the calls are in progress, samples their kernel stacks (/proc/self/task/TID/stack,
/// root only) every half millisecond: `rcu_share` is the share of samples inside freeze_super
/// that were waiting in synchronize_rcu (rcu_sync_enter of the sb_writers locks),
/// `flush_share` those writing out (sync_filesystem, or the filesystem's own freeze_fs).
pub fn freeze_alone(filesystems: &[&BenchFs], tag: &str, expedite: bool) -> Run {
    use lightsnap::kernel::freeze::MountHandle;
    use std::sync::{Arc, Barrier, Mutex};
    let n = filesystems.len();
    let start_wall = unix_now();
    let handles: Vec<_> = match filesystems
        .iter()
        .map(|fs| MountHandle::open(fs.mount_point()))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(h) => h,
        Err(e) => {
            log(&format!("FIFREEZE alone failed: {e}"));
            return Run {
                tag: tag.into(),
                rc: 1,
                start: start_wall,
                end: unix_now(),
                disks: Some(n),
                ..Run::default()
            };
        }
    };
    // Per thread: its kernel task id, once known; when its FIFREEZE returned; its error.
    let tids: Arc<Mutex<Vec<Option<i32>>>> = Arc::new(Mutex::new(vec![None; n]));
    let ends: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; n]));
    let ready = Arc::new(Barrier::new(n + 1));
    let go = Arc::new(Barrier::new(n + 1));
    let (mut samples, mut rcu, mut flush) = (0u64, 0u64, 0u64);
    let mut expedited = false;
    let mut t0 = Instant::now();
    let mut errors: Vec<Option<String>> = vec![None; n];
    std::thread::scope(|scope| {
        let workers: Vec<_> = handles
            .iter()
            .enumerate()
            .map(|(k, handle)| {
                let (tids, ends, ready, go) =
                    (tids.clone(), ends.clone(), ready.clone(), go.clone());
                scope.spawn(move || {
                    tids.lock().unwrap()[k] = Some(nix::unistd::gettid().as_raw());
                    ready.wait();
                    go.wait();
                    let result = handle.freeze();
                    ends.lock().unwrap()[k] = Some(Instant::now());
                    result.err().map(|e| e.to_string())
                })
            })
            .collect();
        ready.wait();
        if expedite && rcu_expedited().as_deref() == Some("0") {
            expedited = std::fs::write(RCU_EXPEDITED, "1").is_ok();
        }
        t0 = Instant::now();
        go.wait();
        let tids: Vec<i32> = tids.lock().unwrap().iter().map(|t| t.unwrap()).collect();
        while workers.iter().any(|w| !w.is_finished()) {
            for (k, tid) in tids.iter().enumerate() {
                if ends.lock().unwrap()[k].is_some() {
                    continue;
                }
                let Ok(stack) = std::fs::read_to_string(format!("/proc/self/task/{tid}/stack"))
                else {
                    continue;
                };
                if !stack.contains("freeze_super") {
                    continue;
                }
                samples += 1;
                if stack.contains("rcu_sync_enter") || stack.contains("synchronize_rcu") {
                    rcu += 1;
                } else if stack.contains("sync_filesystem") || stack.contains("_freeze") {
                    flush += 1;
                }
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        for (k, w) in workers.into_iter().enumerate() {
            errors[k] = w
                .join()
                .unwrap_or_else(|_| Some("the thread panicked".into()));
        }
    });
    if expedited {
        let _ = std::fs::write(RCU_EXPEDITED, "0");
    }
    for (k, handle) in handles.iter().enumerate() {
        if errors[k].is_none() {
            if let Err(e) = handle.thaw() {
                errors[k] = Some(e.to_string());
            }
        }
    }
    let thawed = Instant::now();
    let failed: Vec<&String> = errors.iter().flatten().collect();
    if let Some(e) = failed.first() {
        log(&format!("FIFREEZE alone failed: {e}"));
    }
    let ends = ends.lock().unwrap().clone();
    let last_end = ends
        .iter()
        .copied()
        .collect::<Option<Vec<_>>>()
        .and_then(|v| v.into_iter().max());
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let share = |x: u64| (samples > 0).then(|| x as f64 / samples as f64);
    Run {
        tag: tag.into(),
        rc: i32::from(!failed.is_empty()),
        start: start_wall,
        end: unix_now(),
        disks: Some(n),
        expedited: Some(expedited),
        freeze_call_ms: last_end.map(|e| ms(e - t0)),
        window_ms: Some(ms(thawed - t0)),
        wall_ms: Some(ms(thawed - t0)),
        samples: Some(samples),
        rcu_share: share(rcu),
        flush_share: share(flush),
        ..Run::default()
    }
}

/// The first line a command prints (stdout and stderr), or `?`.
pub fn first_line(cmd: &[&str]) -> String {
    Command::new(cmd[0])
        .args(&cmd[1..])
        .stdin(Stdio::null())
        .output()
        .ok()
        .and_then(|o| {
            let mut text = String::from_utf8_lossy(&o.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&o.stderr));
            text.trim().lines().next().map(str::to_string)
        })
        .unwrap_or_else(|| "?".into())
}

fn loadavg() -> Vec<String> {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .map(str::to_string)
        .collect()
}

fn line_value(path: &str, prefix: &str, sep: char) -> Option<String> {
    std::fs::read_to_string(path).ok()?.lines().find_map(|l| {
        l.starts_with(prefix)
            .then(|| l.split_once(sep).map(|(_, v)| v.trim().to_string()))
            .flatten()
    })
}

/// What the Machine table says.
#[derive(Debug, Serialize)]
pub struct Facts {
    pub cores: usize,
    pub cpu: String,
    pub memory: String,
    pub kernel: String,
    pub os: String,
    pub host_fs: String,
    pub loadavg: Vec<String>,
    pub lightsnap: String,
    pub aws: String,
    pub rustc: String,
    pub mkfs_ext4: String,
    pub mkfs_xfs: String,
    pub hz: String,
    pub rcu_expedited: String,
    pub dirty_ratio: String,
}

/// The number of cores, as the report names them.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

pub fn machine_facts(rig: &Rig) -> Facts {
    let repo = env!("CARGO_MANIFEST_DIR");
    let hz = Command::new("zcat")
        .arg("/proc/config.gz")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .find_map(|l| l.strip_prefix("CONFIG_HZ=").map(str::to_string))
        })
        .unwrap_or_else(|| "?".into());
    let root = rig.root().display().to_string();
    let git = first_line(&["git", "-C", repo, "rev-parse", "--short", "HEAD"]);
    let dirty = first_line(&[
        "git",
        "-C",
        repo,
        "status",
        "--porcelain",
        "--",
        "src",
        "Cargo.toml",
        "Cargo.lock",
    ]);
    let bin = rig.cfg.bin.join("lightsnap").display().to_string();
    let aws = rig.cfg.aws.display().to_string();
    Facts {
        cores: cores(),
        cpu: line_value("/proc/cpuinfo", "model name", ':').unwrap_or_else(|| "?".into()),
        memory: line_value("/proc/meminfo", "MemTotal", ':')
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map_or_else(|| "?".into(), |kb| format!("{} MiB", kb / 1024)),
        kernel: nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_else(|_| "?".into()),
        os: line_value("/etc/os-release", "PRETTY_NAME=", '=')
            .map_or_else(|| "?".into(), |v| v.trim_matches('"').to_string()),
        host_fs: first_line(&["findmnt", "-no", "FSTYPE,SOURCE", "-T", &root])
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
        loadavg: loadavg(),
        lightsnap: format!(
            "{} (git {git}{})",
            first_line(&[&bin, "--version"]),
            if dirty.is_empty() || dirty == "?" {
                ""
            } else {
                ", src modified"
            }
        ),
        aws: first_line(&[&aws, "--version"]),
        rustc: first_line(&["rustc", "--version"]),
        mkfs_ext4: first_line(&["mkfs.ext4", "-V"]),
        mkfs_xfs: first_line(&["mkfs.xfs", "-V"]),
        hz,
        rcu_expedited: rcu_expedited().unwrap_or_else(|| "?".into()),
        dirty_ratio: format!(
            "{} / {}",
            first_line(&["sysctl", "-n", "vm.dirty_ratio"]),
            first_line(&["sysctl", "-n", "vm.dirty_background_ratio"])
        ),
    }
}

/// What the Machine table says of the end of the run.
pub struct EndFacts {
    pub loadavg: Vec<String>,
    pub rcu_expedited: String,
}

impl EndFacts {
    pub fn now() -> Self {
        Self {
            loadavg: loadavg(),
            rcu_expedited: rcu_expedited().unwrap_or_else(|| "?".into()),
        }
    }
}
