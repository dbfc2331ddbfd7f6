//! Real databases under load, proven by starting them on the snapshot: PostgreSQL and MariaDB
//! (Debian's packages), each on a loop-device filesystem of the test's own, a client
//! committing numbered rows while `lightsnap freeze-and-snap` runs, with the packaged hook
//! installed and without it. The snapshot's image (the fake's copy of the disk) is mounted, a
//! second server started on it (its own socket, run as the server's user), its own integrity
//! checks run, and the rows compared with the client's log of acknowledged commits, kept in
//! the scratch directory on the host's filesystem, never on the snapshotted one.
//!
//! What every run proves: every commit acknowledged before the snapshot call (made while the
//! filesystem was frozen) is there; no commit sent after it is; the rows are a gapless prefix
//! of the client's numbers, and a second table updated in the same transactions agrees with
//! them. What the hook adds is proved per engine: PostgreSQL's CHECKPOINT is the restored
//! cluster's latest checkpoint (so it replays little WAL); MariaDB's backup lock holds every
//! commit from before the freeze to after the thaw, so the snapshot holds exactly the commits
//! acknowledged before the hook ran. With the hooks, `lightsnap verify` starts each database
//! on its restored copy, and fails a copy damaged on purpose. The MySQL hook is also run on
//! its failures (refused credentials, a lock not granted in time, lightsnap killed while it
//! holds the lock) and on Bitnami's layout; SQLite is shown to need no hook, and Redis's hook
//! to save what the snapshot would otherwise lack.
//!
//! Root only (loop devices, mount, FIFREEZE, running servers as their users); CI runs them.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;

/// Size of the tests' filesystems: room for a PostgreSQL cluster, its WAL and a few seconds
/// of pgbench; for the others. Small, because the fake copies the whole disk inside the
/// frozen window.
const PG_FS_BYTES: u64 = 256 << 20;
const FS_BYTES: u64 = 128 << 20;
/// Commits acknowledged before the snapshot, and after it (proof the database took writes
/// again).
const BEFORE: usize = 40;
const AFTER: usize = 40;

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1000.0
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn uid_of(user: &str) -> u32 {
    nix::unistd::User::from_name(user)
        .unwrap()
        .unwrap_or_else(|| panic!("the {user} user"))
        .uid
        .as_raw()
}

fn chown_r(path: &Path, user: &str) {
    run(Command::new("chown")
        .arg("-R")
        .arg(format!("{user}:"))
        .arg(path));
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

// ---------------------------------------------------------------------------------------
// The client and its log
// ---------------------------------------------------------------------------------------

/// One commit as the client saw it: its number, when it was sent, when its acknowledgement
/// arrived (unix ms).
#[derive(Debug, Clone, Copy)]
struct Commit {
    seq: u64,
    sent_ms: f64,
    acked_ms: f64,
}

/// A client committing numbered rows, one transaction at a time, on one connection of a
/// command-line client (psql, mariadb) fed through a pipe: each transaction inserts row `n`
/// and sets a counter to `n`, then selects `n`, whose line comes back only once the commit is
/// acknowledged. Every acknowledgement is appended to a log file (on the host's filesystem)
/// before the next transaction is sent.
struct AckClient {
    child: Child,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    acks: mpsc::Receiver<Commit>,
    seen: usize,
    log: PathBuf,
}

impl AckClient {
    /// Starts `client` and drives it with `statement(n)` for n = 1, 2, ...
    fn start(mut client: Command, log: &Path, statement: fn(u64) -> String) -> Self {
        let mut child = client
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting the database client");
        let mut stdin: ChildStdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, acks) = mpsc::channel();
        let mut file = std::fs::File::create(log).unwrap();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut seq = 0;
            while !flag.load(Ordering::SeqCst) {
                seq += 1;
                let sent_ms = now_ms();
                if stdin
                    .write_all(statement(seq).as_bytes())
                    .and_then(|()| stdin.flush())
                    .is_err()
                {
                    return;
                }
                let mut line = String::new();
                match stdout.read_line(&mut line) {
                    Ok(n) if n > 0 => {}
                    _ => return,
                }
                let acked_ms = now_ms();
                assert_eq!(line.trim(), seq.to_string(), "the client's answer");
                writeln!(file, "{seq} {sent_ms:.3} {acked_ms:.3}").unwrap();
                file.flush().unwrap();
                let _ = tx.send(Commit {
                    seq,
                    sent_ms,
                    acked_ms,
                });
            }
        });
        Self {
            child,
            stop,
            thread: Some(thread),
            acks,
            seen: 0,
            log: log.to_path_buf(),
        }
    }

    /// Waits (bounded) until `n` more commits are acknowledged.
    fn wait_acks(&mut self, n: usize, within: Duration) {
        let until = std::time::Instant::now() + within;
        for _ in 0..n {
            let left = until.saturating_duration_since(std::time::Instant::now());
            self.acks.recv_timeout(left).unwrap_or_else(|e| {
                panic!(
                    "the client acknowledged {} commits, not {n} more within {within:?}: {e}",
                    self.seen
                )
            });
            self.seen += 1;
        }
    }

    /// Stops after the commit in flight, and returns every commit from the log file.
    fn stop(mut self) -> Vec<Commit> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().expect("the client thread");
        }
        std::fs::read_to_string(&self.log)
            .unwrap()
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                Commit {
                    seq: f[0].parse().unwrap(),
                    sent_ms: f[1].parse().unwrap(),
                    acked_ms: f[2].parse().unwrap(),
                }
            })
            .collect()
    }
}

impl Drop for AckClient {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What the snapshot holds, compared with the client's log. `rows` are the row numbers in
/// the restored database, `counter` the counter table's value there, `cut` the time of the
/// snapshot call (made while frozen). Returns the commits in flight at the freeze (sent
/// before `cut`, acknowledged after it) and how many of them the snapshot holds.
fn compare(commits: &[Commit], rows: &[u64], counter: u64, cut: f64) -> (usize, usize) {
    let n = rows.len() as u64;
    assert_eq!(
        rows,
        (1..=n).collect::<Vec<_>>(),
        "the rows are a gapless prefix of the client's numbers"
    );
    assert_eq!(
        counter, n,
        "the counter, updated in the same transactions, agrees with the rows"
    );
    let acked_before: Vec<u64> = commits
        .iter()
        .filter(|c| c.acked_ms < cut)
        .map(|c| c.seq)
        .collect();
    assert!(
        acked_before.len() >= BEFORE,
        "the load ran before the snapshot: {} commits acknowledged before it",
        acked_before.len()
    );
    let last = *acked_before.iter().max().unwrap();
    assert!(
        n >= last,
        "commit {last} was acknowledged before the snapshot call but the snapshot holds only {n} rows"
    );
    if let Some(first_after) = commits.iter().find(|c| c.sent_ms > cut) {
        assert!(
            n < first_after.seq,
            "commit {} was sent after the snapshot call (while frozen) and is in it: {n} rows",
            first_after.seq
        );
    }
    let in_flight: Vec<&Commit> = commits
        .iter()
        .filter(|c| c.sent_ms <= cut && c.acked_ms >= cut)
        .collect();
    let held = in_flight.iter().filter(|c| c.seq <= n).count();
    (in_flight.len(), held)
}

// ---------------------------------------------------------------------------------------
// The set-up shared by both engines
// ---------------------------------------------------------------------------------------

/// A scratch directory the servers' users can reach, an ext4 filesystem of the test's own,
/// and a fake Lightsail whose disk `data-1` is that filesystem's loop device.
struct Setup {
    fake: Fake,
    fs: LoopFs,
    scratch: Scratch,
}

impl Setup {
    fn new() -> Self {
        Self::sized(FS_BYTES)
    }

    fn sized(bytes: u64) -> Self {
        let scratch = Scratch::new();
        std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let fs = LoopFs::create_sized(&scratch, "data", FsKind::Ext4, bytes, &[]);
        // Attach mode, for `lightsnap verify`: a restored disk appears as a loop device in
        // `dev`.
        let snapshots = scratch.path().join("snapshots");
        std::fs::create_dir_all(&snapshots).unwrap();
        let mut opts = Options::new(seed(&[("data-1", &fs.device)], None), snapshots);
        opts.snapshot_duration = Duration::ZERO;
        opts.attach_dir = Some(scratch.path().join("dev"));
        let fake = Fake::start(opts).expect("fake lightsail in attach mode");
        Self { fake, fs, scratch }
    }

    /// Runs `lightsnap verify` of `snapshot` with the packaged example `source` installed as
    /// its only verify hook, and `env` for it: the hook starts a server on the restored copy.
    fn verify(&self, snapshot: &str, source: &str, env: &[(&str, &str)]) -> RunResult {
        let dir = self.scratch.path().join("verify.d");
        std::fs::create_dir_all(&dir).unwrap();
        let installed = dir.join(format!("20-{source}"));
        std::fs::copy(
            repo().join("packaging/examples/hooks").join(source),
            &installed,
        )
        .unwrap();
        std::fs::set_permissions(&installed, std::fs::Permissions::from_mode(0o755)).unwrap();
        write_conf(
            &self.scratch,
            "etc/lightsnap/config.toml",
            &format!(
                "verify_hook_dir = \"{}\"\nhook_timeout = \"5min\"\n",
                dir.display()
            ),
        );
        let mut cmd = configured_lightsnap(&self.scratch, &self.fake);
        cmd.env("LIGHTSNAP_DEV_DIR", self.scratch.path().join("dev"))
            .env("LIGHTSNAP_VERIFY_POLL_MS", "20")
            // The hook's overlay: in the test's scratch directory, cleaned up with it.
            .env("LIGHTSNAP_DB_VERIFY_DIR", self.scratch.path());
        for (k, v) in env {
            cmd.env(k, v);
        }
        finish(cmd.args(["verify", snapshot]))
    }

    /// The hook directory: the packaged example `example` (if any) installed as the README
    /// says, and a marker hook sorting last, which records when the last pre-freeze hook ran
    /// (just before the freeze) and when the first post-thaw hook ran (just after the thaw)
    /// in the scratch directory.
    fn hooks(&self, example: Option<(&str, &str)>) -> PathBuf {
        let dir = self.scratch.path().join("hooks.d");
        std::fs::create_dir_all(&dir).unwrap();
        if let Some((source, name)) = example {
            let installed = dir.join(name);
            std::fs::copy(
                repo().join("packaging/examples/hooks").join(source),
                &installed,
            )
            .unwrap();
            std::fs::set_permissions(&installed, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        hook(
            &dir,
            "99-marker",
            &format!(
                "echo \"$1 $(date +%s%3N)\" >> {}",
                self.marker_log().display()
            ),
        );
        write_conf(
            &self.scratch,
            "etc/lightsnap/config.toml",
            &format!("hook_dir = \"{}\"\n", dir.display()),
        );
        dir
    }

    fn marker_log(&self) -> PathBuf {
        self.scratch.path().join("marker.log")
    }

    /// (last pre-freeze, first post-thaw) as the marker hook recorded them, unix ms.
    fn markers(&self) -> (f64, f64) {
        let text = std::fs::read_to_string(self.marker_log()).unwrap();
        let at = |phase: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{phase} ")))
                .unwrap_or_else(|| panic!("the marker hook's {phase}: {text}"))
                .parse()
                .unwrap()
        };
        (at("pre-freeze"), at("post-thaw"))
    }

    /// Runs `lightsnap freeze-and-snap` on the filesystem, with `env` for the hooks.
    fn snap(&self, name: &str, env: &[(&str, &Path)]) -> RunResult {
        let mut cmd = configured_lightsnap(&self.scratch, &self.fake);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let r = finish(
            cmd.args([
                "freeze-and-snap",
                "--output",
                "json",
                "--disk-name",
                "data-1",
            ])
            .args(["--snapshot-name", name])
            .arg(&self.fs.mount_point),
        );
        assert_eq!(r.code, 0, "{r:?}");
        r
    }

    /// When the fake received the snapshot call (unix ms): inside the frozen window. (A
    /// call retried after a timeout is retried inside the same window: the first counts.)
    fn cut(&self) -> f64 {
        let calls = create_calls(&self.fake);
        assert!(!calls.is_empty(), "a CreateDiskSnapshot call");
        calls[0].received_at_ms
    }

    /// A copy of the snapshot's image, attached and mounted read-write at `scratch/<dir>`
    /// (the server started on it replays its log, as on a disk made from the snapshot; the
    /// fake's image stays as it was taken, for `lightsnap verify`).
    fn restore(&self, snapshot: &str, dir: &str) -> LoopMount {
        let copy = self.scratch.path().join(format!("{dir}.img"));
        run(Command::new("cp")
            .arg("--sparse=always")
            .arg(self.fake.snapshot_image(snapshot))
            .arg(&copy));
        LoopMount::new(&copy, &self.scratch.path().join(dir))
    }
}

/// A loop device over an image, mounted; unmounted and detached on drop.
struct LoopMount {
    device: String,
    dir: PathBuf,
}

impl LoopMount {
    fn new(image: &Path, dir: &Path) -> Self {
        let out = run(Command::new("losetup")
            .args(["--find", "--show"])
            .arg(image));
        let mut m = Self {
            device: text(&out.stdout).trim().to_string(),
            dir: dir.to_path_buf(),
        };
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .arg(&m.device)
            .arg(dir)
            .status()
            .unwrap()
            .success();
        if !ok {
            m.dir = PathBuf::new();
            panic!("mounting {} ({}) failed", image.display(), m.device);
        }
        m
    }
}

impl Drop for LoopMount {
    fn drop(&mut self) {
        if !self.dir.as_os_str().is_empty() {
            let ok = Command::new("umount")
                .arg(&self.dir)
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
            }
        }
        let _ = Command::new("losetup").arg("-d").arg(&self.device).status();
    }
}

/// A background process killed on drop (pgbench's load).
struct Background(Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// ---------------------------------------------------------------------------------------
// PostgreSQL
// ---------------------------------------------------------------------------------------

/// The directory of PostgreSQL's server programs (`/usr/lib/postgresql/<v>/bin`).
fn pg_bin_or_skip(test: &str) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").exists() && b.join("pg_amcheck").exists())
        .collect();
    found.sort();
    if let Some(bin) = found.pop() {
        return Some(bin);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test} needs PostgreSQL (Debian package postgresql); scripts/deps installs it"
    );
    eprintln!("skipping {test}: PostgreSQL is not installed (scripts/deps installs it)");
    None
}

/// A PostgreSQL server of the test's own: unix socket only, in a directory of its own.
struct Pg {
    bin: PathBuf,
    data: PathBuf,
    socket: PathBuf,
    port: u16,
}

impl Pg {
    fn as_postgres(bin: &Path, program: &str) -> Command {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"])
            .arg(bin.join(program))
            .current_dir("/");
        cmd
    }

    fn initdb(bin: &Path, data: &Path) {
        std::fs::create_dir(data).unwrap();
        std::os::unix::fs::chown(data, Some(uid_of("postgres")), None).unwrap();
        std::fs::set_permissions(data, std::fs::Permissions::from_mode(0o700)).unwrap();
        run(Self::as_postgres(bin, "initdb")
            .args(["-A", "trust", "-U", "postgres", "-D"])
            .arg(data)
            .stdout(Stdio::null()));
    }

    fn start(bin: &Path, data: &Path, socket: &Path) -> Pg {
        std::fs::create_dir_all(socket).unwrap();
        std::os::unix::fs::chown(socket, Some(uid_of("postgres")), None).unwrap();
        // A free port: it only names the socket file (there is no TCP listener).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pg = Pg {
            bin: bin.to_path_buf(),
            data: data.to_path_buf(),
            socket: socket.to_path_buf(),
            port,
        };
        let options = format!("-k {} -p {port} -c listen_addresses=''", socket.display());
        let out = Self::as_postgres(bin, "pg_ctl")
            .arg("-D")
            .arg(data)
            .arg("-l")
            .arg(pg.log())
            .args(["-w", "-t", "120", "-o", &options, "start"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "starting PostgreSQL on {}: {}{}\n--- server log\n{}",
            data.display(),
            text(&out.stdout),
            text(&out.stderr),
            std::fs::read_to_string(pg.log()).unwrap_or_default()
        );
        pg
    }

    fn log(&self) -> PathBuf {
        self.socket.join("server.log")
    }

    fn client(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(program));
        cmd.arg("-h")
            .arg(&self.socket)
            .args(["-p", &self.port.to_string(), "-U", "postgres"]);
        cmd
    }

    fn psql(&self) -> Command {
        let mut cmd = self.client("psql");
        cmd.args([
            "-d",
            "postgres",
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
        ]);
        cmd
    }

    fn sql(&self, query: &str) -> String {
        text(&run(self.psql().args(["-c", query])).stdout)
            .trim()
            .to_string()
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let _ = Self::as_postgres(&self.bin, "pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-w", "-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// `pg_controldata`'s "Latest checkpoint location" of a data directory.
fn pg_checkpoint(bin: &Path, data: &Path) -> String {
    let out = run(Command::new(bin.join("pg_controldata")).arg(data));
    text(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("Latest checkpoint location:"))
        .expect("pg_controldata shows the latest checkpoint")
        .trim()
        .to_string()
}

/// A WAL location (`X/Y`) as a byte position.
fn lsn(s: &str) -> u64 {
    let (hi, lo) = s.split_once('/').unwrap();
    (u64::from_str_radix(hi, 16).unwrap() << 32) + u64::from_str_radix(lo, 16).unwrap()
}

/// How many bytes of WAL the server replayed at start, from its log (`redo starts at X`,
/// `redo done at Y`); 0 when it replayed none.
fn pg_replayed(log: &str) -> u64 {
    let find = |prefix: &str| {
        log.lines().find_map(|l| {
            let rest = &l[l.find(prefix)? + prefix.len()..];
            Some(lsn(rest.split_whitespace().next()?))
        })
    };
    match (find("redo starts at "), find("redo done at ")) {
        (Some(a), Some(b)) => b.saturating_sub(a),
        _ => 0,
    }
}

fn pg_row(n: u64) -> String {
    format!(
        "BEGIN; INSERT INTO acked VALUES ({n}, md5('{n}')); UPDATE counter SET n = {n}; COMMIT; SELECT {n};\n"
    )
}

fn postgresql_under_load(with_hook: bool, test: &str) {
    if !root_or_skip(test) || !tool_or_skip(test, "runuser") {
        return;
    }
    let Some(bin) = pg_bin_or_skip(test) else {
        return;
    };
    let s = Setup::sized(PG_FS_BYTES);
    let data = s.fs.mount_point.join("pgdata");
    Pg::initdb(&bin, &data);
    let pg = Pg::start(&bin, &data, &s.scratch.path().join("pg-live"));
    pg.sql("CREATE TABLE acked (id int PRIMARY KEY, body text NOT NULL)");
    pg.sql("CREATE TABLE counter (n int NOT NULL); INSERT INTO counter VALUES (0)");
    run(pg
        .client("pgbench")
        .args(["-i", "-q", "-s", "1", "postgres"])
        .stderr(Stdio::null()));
    // A checkpoint before the load: without the hook, the snapshot's latest checkpoint is this
    // one (no timed checkpoint comes within the test's seconds; checkpoint_timeout is 5 min).
    // A table the load never touches, for the verify hook to find damaged later.
    pg.sql("CREATE TABLE fixed AS SELECT g AS id, md5(g::text) AS body FROM generate_series(1, 2000) g");
    let fixed = pg.sql("SELECT pg_relation_filepath('fixed')");
    // Frozen and analysed now, so autovacuum has nothing to change in it later (its first
    // change after the checkpoint would put a full page image in the WAL, which recovery
    // writes back over the damage).
    pg.sql("VACUUM (FREEZE, ANALYZE) fixed");
    pg.sql("CHECKPOINT");
    let before_load = pg_checkpoint(&bin, &data);

    // The load: pgbench's TPC-B-like transactions on two connections, and the client whose
    // commits are logged.
    let _pgbench = Background(
        pg.client("pgbench")
            .args(["-n", "-c", "2", "-j", "1", "-T", "600", "postgres"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut client = AckClient::start(pg.psql(), &s.scratch.path().join("acks.log"), pg_row);
    client.wait_acks(BEFORE, Duration::from_secs(60));

    s.hooks(with_hook.then_some(("postgresql", "10-postgresql")));
    let r = s.snap(
        "pg-1",
        &[
            ("PGHOST", &pg.socket),
            ("PGPORT", Path::new(&pg.port.to_string())),
        ],
    );
    assert_eq!(
        r.stderr.contains("postgresql hook: CHECKPOINT done"),
        with_hook,
        "{r:?}"
    );
    client.wait_acks(AFTER, Duration::from_secs(60));
    let commits = client.stop();
    drop(_pgbench);
    let cut = s.cut();
    let (pre, post) = s.markers();
    assert!(pre <= cut && cut <= post, "{pre} <= {cut} <= {post}");

    // The snapshot, restored, started as a second server while the first still runs.
    let restored = s.restore("pg-1", "restored");
    let copy = restored.dir.join("pgdata");
    let image_checkpoint = pg_checkpoint(&bin, &copy);
    // The copy's lock file names the live postmaster, which runs: on a copy that pid is
    // another machine's, and a server refuses to start while it exists.
    std::fs::remove_file(copy.join("postmaster.pid")).unwrap();
    let pg2 = Pg::start(&bin, &copy, &s.scratch.path().join("pg-restored"));
    let log = std::fs::read_to_string(pg2.log()).unwrap();
    assert!(
        log.contains("database system was interrupted"),
        "a frozen snapshot is what a crash leaves; the server recovers: {log}"
    );
    let replayed = pg_replayed(&log);

    let out = pg2
        .client("pg_amcheck")
        .args(["--all", "--heapallindexed", "--install-missing"])
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty(),
        "pg_amcheck --heapallindexed on the restored cluster: {}\n{}{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_eq!(
        pg2.sql("SELECT count(*) FROM acked WHERE body <> md5(id::text)"),
        "0"
    );
    let rows: Vec<u64> = pg2
        .sql("SELECT id FROM acked ORDER BY id")
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    let counter: u64 = pg2.sql("SELECT n FROM counter").parse().unwrap();
    let (in_flight, held) = compare(&commits, &rows, counter, cut);

    drop(pg2);
    drop(restored);
    if with_hook {
        assert_ne!(
            image_checkpoint, before_load,
            "the hook's CHECKPOINT is the snapshot's latest checkpoint"
        );
        // The same hook as a verify hook: it finds the cluster on the restored copy, starts
        // a server on an overlay over it and runs pg_amcheck, while the live server runs.
        let r = s.verify("pg-1", "postgresql", &[]);
        assert_eq!(r.code, 0, "{r:?}");
        assert!(
            r.stderr
                .contains("pgdata started and pg_amcheck --heapallindexed found nothing wrong"),
            "{r:?}"
        );
        // Pointed at a directory that holds no cluster, it fails the verification.
        let r = s.verify(
            "pg-1",
            "postgresql",
            &[("LIGHTSNAP_PG_VERIFY_DATA", "nothing")],
        );
        assert_eq!(r.code, 18, "{r:?}");
        assert!(r.stderr.contains("no PostgreSQL cluster readable"), "{r:?}");
        // A snapshot whose table is damaged (the line pointers of its first page pointing
        // outside it, in a page no WAL record rewrites): the server starts, pg_amcheck finds
        // the damage, the verification fails.
        {
            let image = LoopMount::new(
                &s.fake.snapshot_image("pg-1"),
                &s.scratch.path().join("damage"),
            );
            let file = image.dir.join("pgdata").join(&fixed);
            let mut f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
            use std::io::{Seek, SeekFrom};
            // Each of its first 100 line pointers: a normal item at offset 9000, length 100,
            // past the end of the 8 kB page.
            let pointer: u32 = 9000 | (1 << 15) | (100 << 17);
            f.seek(SeekFrom::Start(24)).unwrap();
            f.write_all(&pointer.to_le_bytes().repeat(100)).unwrap();
            f.sync_all().unwrap();
        }
        let r = s.verify("pg-1", "postgresql", &[]);
        assert_eq!(r.code, 18, "{r:?}");
        assert!(
            r.stderr
                .contains("pg_amcheck --heapallindexed found damage on the restored copy"),
            "{r:?}"
        );
    } else {
        assert_eq!(
            image_checkpoint, before_load,
            "without the hook the snapshot's latest checkpoint is the one before the load"
        );
    }
    eprintln!(
        "{test}: {} rows restored, {} commits logged, {in_flight} in flight at the freeze \
         ({held} of them in the snapshot); WAL replayed at start: {replayed} bytes; \
         checkpoint before the load {before_load}, in the snapshot {image_checkpoint}",
        rows.len(),
        commits.len()
    );
    drop(pg);
}

#[test]
fn postgresql_with_its_hook_starts_on_the_snapshot_with_every_acknowledged_commit() {
    postgresql_under_load(
        true,
        "postgresql_with_its_hook_starts_on_the_snapshot_with_every_acknowledged_commit",
    );
}

#[test]
fn postgresql_without_a_hook_starts_on_the_snapshot_with_every_acknowledged_commit() {
    postgresql_under_load(
        false,
        "postgresql_without_a_hook_starts_on_the_snapshot_with_every_acknowledged_commit",
    );
}

// ---------------------------------------------------------------------------------------
// MariaDB
// ---------------------------------------------------------------------------------------

/// The server's options of every MariaDB the tests start: no configuration files of the
/// machine's, unix socket only, small logs and buffers.
const MARIADB_OPTIONS: &[&str] = &[
    "--skip-networking",
    "--innodb-log-file-size=8M",
    "--innodb-buffer-pool-size=32M",
    "--performance-schema=OFF",
];

/// A MariaDB server of the test's own, run as `mysql` in the foreground (a child of the
/// test, killed on drop), its socket, pid file and error log in a directory of its own.
struct Maria {
    child: Child,
    run: PathBuf,
}

impl Maria {
    fn install(data: &Path) {
        std::fs::create_dir(data).unwrap();
        chown_r(data, "mysql");
        run(Command::new("mariadb-install-db")
            .args(["--no-defaults", "--user=mysql", "--skip-test-db"])
            .arg("--auth-root-authentication-method=socket")
            .arg(format!("--datadir={}", data.display()))
            .args(MARIADB_OPTIONS)
            .current_dir("/")
            .stdout(Stdio::null()));
    }

    fn start(data: &Path, run_dir: &Path) -> Maria {
        std::fs::create_dir_all(run_dir).unwrap();
        chown_r(run_dir, "mysql");
        let child = Command::new("mariadbd")
            .args(["--no-defaults", "--user=mysql"])
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", run_dir.join("sock").display()))
            .arg(format!("--pid-file={}", run_dir.join("pid").display()))
            .arg(format!("--log-error={}", run_dir.join("err.log").display()))
            .args(MARIADB_OPTIONS)
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting mariadbd");
        let mut m = Maria {
            child,
            run: run_dir.to_path_buf(),
        };
        let until = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            let ok = m
                .client()
                .args(["-e", "SELECT 1"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .unwrap()
                .success();
            if ok {
                break;
            }
            let exited = m.child.try_wait().unwrap();
            assert!(
                exited.is_none() && std::time::Instant::now() < until,
                "MariaDB on {} did not start ({exited:?}):\n{}",
                data.display(),
                m.err_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        m
    }

    fn socket(&self) -> PathBuf {
        self.run.join("sock")
    }

    /// A clean shutdown, waited for.
    fn stop(&mut self) {
        run(Command::new("mariadb-admin")
            .arg("--no-defaults")
            .arg(format!("--socket={}", self.socket().display()))
            .args(["-u", "root", "shutdown"]));
        self.child.wait().unwrap();
    }

    fn err_log(&self) -> String {
        std::fs::read_to_string(self.run.join("err.log")).unwrap_or_default()
    }

    /// The `mariadb` client, connected as root through the socket.
    fn client(&self) -> Command {
        let mut cmd = Command::new("mariadb");
        cmd.arg("--no-defaults")
            .arg(format!("--socket={}", self.socket().display()))
            .args(["-u", "root", "--batch", "--skip-column-names"]);
        cmd
    }

    fn sql(&self, query: &str) -> String {
        text(&run(self.client().args(["-e", query])).stdout)
            .trim()
            .to_string()
    }
}

impl Drop for Maria {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn maria_row(n: u64) -> String {
    format!(
        "BEGIN; INSERT INTO acked VALUES ({n}, MD5('{n}')); UPDATE counter SET n = {n}; COMMIT; SELECT {n};\n"
    )
}

fn mariadb_under_load(with_hook: bool, test: &str) {
    if !root_or_skip(test)
        || !tool_or_skip(test, "mariadbd")
        || !tool_or_skip(test, "mariadb-install-db")
        || !tool_or_skip(test, "mariadb-check")
    {
        return;
    }
    let s = Setup::new();
    let data = s.fs.mount_point.join("mysql");
    Maria::install(&data);
    let mut db = Maria::start(&data, &s.scratch.path().join("maria-live"));
    db.sql(
        "CREATE DATABASE lightsnap CHARACTER SET utf8mb4; USE lightsnap; \
         CREATE TABLE acked (id INT PRIMARY KEY, body CHAR(32) NOT NULL) ENGINE=InnoDB; \
         CREATE TABLE counter (n INT NOT NULL) ENGINE=InnoDB; INSERT INTO counter VALUES (0); \
         CREATE TABLE fixed (id INT PRIMARY KEY, body CHAR(32) NOT NULL) ENGINE=InnoDB; \
         INSERT INTO fixed SELECT seq, MD5(seq) FROM seq_1_to_2000",
    );
    // A table the load never touches, for the verify hook to find damaged later: a clean
    // shutdown writes it out and checkpoints, so recovery never rebuilds its pages from the
    // redo log (which would write over the damage).
    db.stop();
    let db = Maria::start(&data, &s.scratch.path().join("maria-live"));
    let mut cmd = db.client();
    cmd.args(["--unbuffered", "lightsnap"]);
    let mut client = AckClient::start(cmd, &s.scratch.path().join("acks.log"), maria_row);
    client.wait_acks(BEFORE, Duration::from_secs(60));

    s.hooks(with_hook.then_some(("mysql", "10-mysql")));
    // The hook's credentials, the way a user gives others than Debian's: a defaults file.
    let defaults = s.scratch.path().join("hook.cnf");
    std::fs::write(
        &defaults,
        format!("[client]\nuser=root\nsocket={}\n", db.socket().display()),
    )
    .unwrap();
    let r = s.snap("maria-1", &[("LIGHTSNAP_MYSQL_DEFAULTS_FILE", &defaults)]);
    assert_eq!(
        r.stderr.contains("mysql hook: commits blocked"),
        with_hook,
        "{r:?}"
    );
    client.wait_acks(AFTER, Duration::from_secs(60));
    let commits = client.stop();
    let cut = s.cut();
    let (pre, post) = s.markers();
    assert!(pre <= cut && cut <= post, "{pre} <= {cut} <= {post}");
    assert!(
        !Path::new(&s.scratch.path().join("run/mysql-hook")).exists(),
        "the hook's session is over"
    );

    // The snapshot, restored, started as a second server while the first still runs.
    let restored = s.restore("maria-1", "restored");
    let db2 = Maria::start(
        &restored.dir.join("mysql"),
        &s.scratch.path().join("maria-restored"),
    );
    let log = db2.err_log();
    let out = run(Command::new("mariadb-check")
        .arg("--no-defaults")
        .arg(format!("--socket={}", db2.socket().display()))
        .args(["-u", "root", "--all-databases", "--extended"]));
    let report = text(&out.stdout);
    let bad: Vec<&str> = report
        .lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            l.starts_with("error") || l.contains("corrupt") || l.contains("crashed")
        })
        .collect();
    assert!(bad.is_empty(), "mariadb-check --extended: {report}");
    for table in ["lightsnap.acked", "lightsnap.counter"] {
        assert!(
            report
                .lines()
                .any(|l| l.starts_with(table) && l.trim_end().ends_with("OK")),
            "{table} checked OK: {report}"
        );
    }
    let check = db2.sql("CHECK TABLE lightsnap.acked EXTENDED");
    assert!(check.ends_with("status\tOK"), "{check}");
    assert_eq!(
        db2.sql("SELECT count(*) FROM lightsnap.acked WHERE body <> MD5(id)"),
        "0"
    );
    let rows: Vec<u64> = db2
        .sql("SELECT id FROM lightsnap.acked ORDER BY id")
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    let counter: u64 = db2.sql("SELECT n FROM lightsnap.counter").parse().unwrap();
    let (in_flight, held) = compare(&commits, &rows, counter, cut);

    if with_hook {
        // Commits were blocked from the hook's pre-freeze to its post-thaw: none was
        // acknowledged in between, and the snapshot holds exactly those acknowledged before.
        let inside: Vec<&Commit> = commits
            .iter()
            .filter(|c| c.acked_ms > pre && c.acked_ms < post)
            .collect();
        assert!(inside.is_empty(), "acknowledged while locked: {inside:?}");
        let acked_before = commits.iter().filter(|c| c.acked_ms < pre).count();
        assert_eq!(
            rows.len(),
            acked_before,
            "with the hook the snapshot holds exactly the commits acknowledged before it"
        );
    }
    drop(db2);
    drop(restored);
    if with_hook {
        // The same hook as a verify hook: it finds the data directory on the restored copy,
        // starts a server on an overlay over it and runs mariadb-check, while the live
        // server runs.
        let r = s.verify("maria-1", "mysql", &[]);
        assert_eq!(r.code, 0, "{r:?}");
        assert!(
            r.stderr.contains("mysql started and checked clean"),
            "{r:?}"
        );
        let r = s.verify(
            "maria-1",
            "mysql",
            &[("LIGHTSNAP_MYSQL_VERIFY_DATA", "nothing")],
        );
        assert_eq!(r.code, 18, "{r:?}");
        assert!(
            r.stderr.contains("no MySQL/MariaDB data directory at"),
            "{r:?}"
        );
        // A snapshot whose table is damaged (the middle of its clustered index's root page,
        // page 3, overwritten): the server starts, mariadb-check finds the damage, the
        // verification fails.
        {
            let image = LoopMount::new(
                &s.fake.snapshot_image("maria-1"),
                &s.scratch.path().join("damage"),
            );
            let file = image.dir.join("mysql/lightsnap/fixed.ibd");
            let mut f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
            use std::io::{Seek, SeekFrom};
            f.seek(SeekFrom::Start(3 * 16384 + 200)).unwrap();
            f.write_all(&[0xA5; 400]).unwrap();
            f.sync_all().unwrap();
        }
        let r = s.verify("maria-1", "mysql", &[]);
        assert_eq!(r.code, 18, "{r:?}");
        assert!(
            r.stderr.contains("found damage on the restored copy"),
            "{r:?}"
        );
        assert!(r.stderr.contains("lightsnap.fixed"), "{r:?}");
    }
    eprintln!(
        "{test}: {} rows restored, {} commits logged, {in_flight} in flight at the freeze \
         ({held} of them in the snapshot); crash recovery: {}",
        rows.len(),
        commits.len(),
        log.lines()
            .filter(|l| l.contains("crash recovery") || l.contains("redo log"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    drop(db);
}

#[test]
fn mariadb_with_its_hook_starts_on_the_snapshot_with_exactly_the_commits_before_it() {
    mariadb_under_load(
        true,
        "mariadb_with_its_hook_starts_on_the_snapshot_with_exactly_the_commits_before_it",
    );
}

#[test]
fn mariadb_without_a_hook_starts_on_the_snapshot_with_every_acknowledged_commit() {
    mariadb_under_load(
        false,
        "mariadb_without_a_hook_starts_on_the_snapshot_with_every_acknowledged_commit",
    );
}

/// Processes whose command line starts with `timeout <max_hold>`: the MySQL hook's holders
/// of a test (each test gives its own hold limit, which no other process has).
fn holders(max_hold: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            (cmd.starts_with(format!("timeout\0{max_hold}\0").as_bytes()) && alive(pid))
                .then_some(pid)
        })
        .collect()
}

/// The MySQL hook against a real MariaDB, on the ways a snapshot goes wrong: credentials the
/// server refuses and a lock it cannot grant in time fail the run before anything is frozen,
/// within the hook's lock wait; when lightsnap is killed while it holds the lock, the session
/// ends by itself and commits go on.
#[test]
fn the_mysql_hook_is_bounded_and_lets_go_when_lightsnap_dies() {
    let test = "the_mysql_hook_is_bounded_and_lets_go_when_lightsnap_dies";
    if !root_or_skip(test) || !tool_or_skip(test, "mariadbd") {
        return;
    }
    let s = Setup::new();
    let data = s.fs.mount_point.join("mysql");
    Maria::install(&data);
    let db = Maria::start(&data, &s.scratch.path().join("maria-live"));
    db.sql(
        "CREATE DATABASE lightsnap CHARACTER SET utf8mb4; \
         CREATE TABLE lightsnap.acked (id INT PRIMARY KEY) ENGINE=InnoDB; \
         CREATE TABLE lightsnap.plain (id INT) ENGINE=MyISAM",
    );
    s.hooks(Some(("mysql", "10-mysql")));
    let max_hold = "7393";
    let cnf = |name: &str, user: &str| {
        let path = s.scratch.path().join(name);
        std::fs::write(
            &path,
            format!("[client]\nuser={user}\nsocket={}\n", db.socket().display()),
        )
        .unwrap();
        path
    };
    let good = cnf("root.cnf", "root");
    let snap = |defaults: &Path, lock_wait: &str| {
        let mut cmd = configured_lightsnap(&s.scratch, &s.fake);
        cmd.env("LIGHTSNAP_MYSQL_DEFAULTS_FILE", defaults)
            .env("LIGHTSNAP_MYSQL_LOCK_WAIT", lock_wait)
            .env("LIGHTSNAP_MYSQL_MAX_HOLD", max_hold)
            .args(["freeze-and-snap", "--disk-name", "data-1"])
            .args(["--freeze-timeout", "60s"])
            .arg(&s.fs.mount_point);
        cmd
    };

    // Credentials the server refuses: the run fails before freezing, naming the answer.
    let r = finish(&mut snap(&cnf("stranger.cnf", "stranger"), "10"));
    assert_eq!(r.code, 16, "{r:?}");
    assert!(r.stderr.contains("Access denied"), "{r:?}");
    assert!(
        create_calls(&s.fake).is_empty() && !s.fs.is_frozen(),
        "{r:?}"
    );

    // A table write-locked by another session: the backup lock waits 2 s, then the run fails
    // before freezing, and the hook leaves no session.
    let mut blocker = Command::new("mariadb")
        .arg("--no-defaults")
        .arg(format!("--socket={}", db.socket().display()))
        .args([
            "-u",
            "root",
            "--batch",
            "--skip-column-names",
            "--unbuffered",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut blocker_in = blocker.stdin.take().unwrap();
    blocker_in
        .write_all(b"LOCK TABLES lightsnap.plain WRITE; SELECT 'held';\n")
        .unwrap();
    let mut line = String::new();
    BufReader::new(blocker.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "held");
    let started = std::time::Instant::now();
    let r = finish(&mut snap(&good, "2"));
    assert_eq!(r.code, 16, "{r:?}");
    assert!(r.stderr.contains("could not take the lock"), "{r:?}");
    assert!(r.stderr.contains("Lock wait timeout exceeded"), "{r:?}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "bounded by the lock wait: {:?}",
        started.elapsed()
    );
    assert!(
        create_calls(&s.fake).is_empty() && !s.fs.is_frozen(),
        "{r:?}"
    );
    assert!(holders(max_hold).is_empty(), "no session is left");
    drop(blocker_in);
    let _ = blocker.wait();

    // lightsnap killed while frozen with the lock held (its snapshot call hangs): the
    // watchdog thaws, and the hook's session, watching lightsnap, ends: commits go on.
    hang_create(&s.fake);
    let child = spawn(&mut snap(&good, "10"));
    wait_for_create_call(&s.fake, Duration::from_secs(60));
    assert!(s.fs.is_frozen(), "frozen before the kill");
    assert_eq!(
        holders(max_hold).len(),
        1,
        "the hook's session holds the lock"
    );
    kill(child.id(), nix::sys::signal::Signal::SIGKILL);
    let r = wait_result(child);
    assert_eq!(r.code, -1, "killed: {r:?}");
    wait_thawed(&s.fs, Duration::from_secs(10));
    wait_until(
        "the hook's session gone with lightsnap",
        Duration::from_secs(10),
        || holders(max_hold).is_empty(),
    );
    let committed = Command::new("timeout")
        .arg("20")
        .arg(db.client().get_program())
        .args(db.client().get_args())
        .args(["-e", "INSERT INTO lightsnap.acked VALUES (1)"])
        .status()
        .unwrap();
    assert!(committed.success(), "a commit after lightsnap died");
    assert_eq!(db.sql("SELECT count(*) FROM lightsnap.acked"), "1");
}

// ---------------------------------------------------------------------------------------
// SQLite
// ---------------------------------------------------------------------------------------

fn sqlite_row(n: u64) -> String {
    format!(
        "BEGIN; INSERT INTO acked VALUES ({n}, hex(randomblob(64))); UPDATE counter SET n = {n}; COMMIT; SELECT {n};\n"
    )
}

/// SQLite needs no hook when its journal or WAL is on the database's filesystem: two
/// databases, one with a rollback journal and one in WAL mode, each written by its own
/// `sqlite3` under load (synchronous=FULL), snapshotted without any hook; each opens on the
/// snapshot's image with `PRAGMA integrity_check` ok and every acknowledged commit.
#[test]
fn sqlite_needs_no_hook_with_its_journal_or_wal_beside_it() {
    let test = "sqlite_needs_no_hook_with_its_journal_or_wal_beside_it";
    if !root_or_skip(test) || !tool_or_skip(test, "sqlite3") {
        return;
    }
    let s = Setup::new();
    let mut clients = Vec::new();
    for mode in ["delete", "wal"] {
        let file = s.fs.mount_point.join(format!("{mode}.sqlite"));
        let mut cmd = Command::new("sqlite3");
        cmd.arg("-batch").arg(&file);
        run(Command::new("sqlite3").arg(&file).arg(format!(
            "PRAGMA journal_mode={mode}; \
             CREATE TABLE acked (id INTEGER PRIMARY KEY, body TEXT NOT NULL); \
             CREATE TABLE counter (n INTEGER NOT NULL); INSERT INTO counter VALUES (0);"
        )));
        // synchronous is a connection's setting: FULL, so an acknowledged commit is on disk.
        let mut client = AckClient::start(
            {
                cmd.arg("-cmd").arg("PRAGMA synchronous=FULL;");
                cmd
            },
            &s.scratch.path().join(format!("acks-{mode}.log")),
            sqlite_row,
        );
        client.wait_acks(BEFORE, Duration::from_secs(60));
        clients.push((mode, client));
    }
    s.hooks(None);
    s.snap("sqlite-1", &[]);
    for (_, client) in &mut clients {
        client.wait_acks(AFTER, Duration::from_secs(60));
    }
    let logs: Vec<(&str, Vec<Commit>)> = clients
        .into_iter()
        .map(|(mode, client)| (mode, client.stop()))
        .collect();
    let cut = s.cut();

    let restored = s.restore("sqlite-1", "restored");
    for (mode, commits) in &logs {
        let file = restored.dir.join(format!("{mode}.sqlite"));
        let sql = |q: &str| {
            text(&run(Command::new("sqlite3").arg(&file).arg(q)).stdout)
                .trim()
                .to_string()
        };
        assert_eq!(sql("PRAGMA integrity_check"), "ok", "{mode}");
        assert_eq!(sql("PRAGMA journal_mode"), *mode);
        let rows: Vec<u64> = sql("SELECT id FROM acked ORDER BY id")
            .lines()
            .map(|l| l.parse().unwrap())
            .collect();
        let counter: u64 = sql("SELECT n FROM counter").parse().unwrap();
        let (in_flight, held) = compare(commits, &rows, counter, cut);
        eprintln!(
            "{test}: journal_mode={mode}: {} rows restored, {} commits logged, {in_flight} in flight at the freeze ({held} of them in the snapshot)",
            rows.len(),
            commits.len()
        );
    }
}

/// Bitnami's layout (Lightsail's LAMP and WordPress blueprints), found by the MySQL hook
/// without configuration: the client in `<bitnami>/mariadb/bin`, the socket in
/// `<bitnami>/mariadb/tmp/mysql.sock`, root with a password only (no socket authentication),
/// the password in Bitnami's application password file. A wrong password fails the run
/// before freezing; the right one takes the lock.
#[test]
fn the_mysql_hook_finds_bitnami_without_configuration() {
    let test = "the_mysql_hook_finds_bitnami_without_configuration";
    if !root_or_skip(test) || !tool_or_skip(test, "mariadbd") {
        return;
    }
    let s = Setup::new();
    let data = s.fs.mount_point.join("mysql");
    Maria::install(&data);
    let db = Maria::start(&data, &s.scratch.path().join("maria-live"));
    // Bitnami's tree, its programs and socket standing for the test's own.
    let bitnami = s.scratch.path().join("bitnami");
    for dir in ["mariadb/bin", "mariadb/tmp"] {
        std::fs::create_dir_all(bitnami.join(dir)).unwrap();
    }
    let real_client = text(&run(Command::new("sh").args(["-c", "command -v mariadb"])).stdout);
    std::os::unix::fs::symlink(real_client.trim(), bitnami.join("mariadb/bin/mariadb")).unwrap();
    std::os::unix::fs::symlink(db.socket(), bitnami.join("mariadb/tmp/mysql.sock")).unwrap();
    // A password with the characters a defaults file must escape.
    let password = r#"Bit"na\mi-1"#;
    let password_file = s.scratch.path().join("bitnami_application_password");
    db.sql(&format!(
        "ALTER USER root@localhost IDENTIFIED VIA mysql_native_password USING PASSWORD('{}')",
        password.replace('\\', "\\\\").replace('"', "\\\"")
    ));
    s.hooks(Some(("mysql", "10-mysql")));
    let snap = |name: &str| {
        finish(
            configured_lightsnap(&s.scratch, &s.fake)
                .env("LIGHTSNAP_BITNAMI_DIR", &bitnami)
                .env("LIGHTSNAP_BITNAMI_PASSWORD_FILE", &password_file)
                .env("LIGHTSNAP_MYSQL_LOCK_WAIT", "10")
                .args(["freeze-and-snap", "--disk-name", "data-1"])
                .args(["--snapshot-name", name])
                .arg(&s.fs.mount_point),
        )
    };

    std::fs::write(&password_file, "not-the-password\n").unwrap();
    let r = snap("bitnami-0");
    assert_eq!(r.code, 16, "{r:?}");
    assert!(r.stderr.contains("Access denied"), "{r:?}");
    assert!(create_calls(&s.fake).is_empty(), "{r:?}");

    std::fs::write(&password_file, format!("{password}\n")).unwrap();
    let r = snap("bitnami-1");
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stderr
            .contains("mysql hook: commits blocked (BACKUP STAGE BLOCK_COMMIT"),
        "{r:?}"
    );
    assert!(r.stderr.contains("mysql hook: lock released"), "{r:?}");
    assert!(
        !s.scratch.path().join("run/mysql-hook").exists(),
        "the password's defaults file went with the session"
    );
}

// ---------------------------------------------------------------------------------------
// Redis
// ---------------------------------------------------------------------------------------

/// A Redis of the test's own, run as `redis` in the foreground (killed on drop): its data
/// directory `dir`, a unix socket only, no automatic saves.
struct Redis {
    child: Child,
    socket: PathBuf,
}

impl Redis {
    fn start(dir: &Path, run_dir: &Path) -> Redis {
        std::fs::create_dir_all(run_dir).unwrap();
        chown_r(run_dir, "redis");
        chown_r(dir, "redis");
        let socket = run_dir.join("sock");
        let child = Command::new("runuser")
            .args(["-u", "redis", "--", "redis-server", "--port", "0"])
            .arg("--unixsocket")
            .arg(&socket)
            .arg("--dir")
            .arg(dir)
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--logfile")
            .arg(run_dir.join("log"))
            .current_dir("/")
            .stdin(Stdio::null())
            .spawn()
            .expect("starting redis-server");
        let r = Redis { child, socket };
        wait_until("redis answering", Duration::from_secs(30), || {
            r.cli()
                .arg("PING")
                .output()
                .is_ok_and(|o| o.stdout.starts_with(b"PONG"))
        });
        r
    }

    fn cli(&self) -> Command {
        let mut cmd = Command::new("redis-cli");
        cmd.arg("-s").arg(&self.socket);
        cmd
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.cli().args(["SHUTDOWN", "NOSAVE"]).output();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Redis under load (a client incrementing a counter), snapshotted without a hook and then
/// with the packaged `redis` hook: without it the snapshot holds no data at all (no save
/// was made); with it, the saved counter is at least every increment acknowledged before
/// the run began, and the server starts on it.
#[test]
fn redis_with_its_hook_is_saved_before_the_freeze() {
    let test = "redis_with_its_hook_is_saved_before_the_freeze";
    if !root_or_skip(test) || !tool_or_skip(test, "redis-server") {
        return;
    }
    let s = Setup::new();
    let dir = s.fs.mount_point.join("redis");
    std::fs::create_dir(&dir).unwrap();
    let redis = Redis::start(&dir, &s.scratch.path().join("redis-live"));
    let mut client = AckClient::start(redis.cli(), &s.scratch.path().join("acks.log"), |_| {
        "INCR n\n".to_string()
    });
    client.wait_acks(BEFORE, Duration::from_secs(60));

    s.hooks(None);
    s.snap("redis-0", &[]);
    s.hooks(Some(("redis", "30-redis")));
    let began = now_ms();
    let r = s.snap("redis-1", &[("LIGHTSNAP_REDIS_SOCKET", &redis.socket)]);
    assert!(r.stderr.contains("redis hook: BGSAVE done"), "{r:?}");
    client.wait_acks(AFTER, Duration::from_secs(60));
    let commits = client.stop();

    let without = s.restore("redis-0", "restored-0");
    assert!(
        !without.dir.join("redis/dump.rdb").exists(),
        "without the hook nothing was saved"
    );
    drop(without);
    let with = s.restore("redis-1", "restored-1");
    let copy = Redis::start(
        &with.dir.join("redis"),
        &s.scratch.path().join("redis-restored"),
    );
    let saved: u64 = text(&run(copy.cli().args(["GET", "n"])).stdout)
        .trim()
        .parse()
        .expect("the counter is in the snapshot");
    let acked_before = commits.iter().filter(|c| c.acked_ms < began).count() as u64;
    let sent = commits.len() as u64;
    assert!(
        saved >= acked_before && saved <= sent,
        "saved {saved}: acknowledged before the run {acked_before}, sent {sent}"
    );
    eprintln!(
        "{test}: counter {saved} in the snapshot, {acked_before} acknowledged before the run"
    );
}

/// `pre-restore` and `post-restore` stop and start the database's service (through a
/// stand-in `systemctl` that knows one unit and logs what it is asked); a phase the hooks
/// do not know is no error (a newer lightsnap's), no phase at all is.
#[test]
fn the_hooks_stop_and_start_the_service_around_a_restore() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let log = dir.path().join("systemctl.log");
    let systemctl = bin.join("systemctl");
    std::fs::write(
        &systemctl,
        format!(
            "#!/bin/sh\necho \"$*\" >> {}\n[ \"$1\" = cat ] && [ \"$2\" != \"$KNOWN\" ] && exit 1\nexit 0\n",
            log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&systemctl, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    for (hook, known) in [("mysql", "mysql.service"), ("postgresql", "postgresql")] {
        for (phase, action) in [("pre-restore", "stop"), ("post-restore", "start")] {
            let _ = std::fs::remove_file(&log);
            let out = Command::new(repo().join("packaging/examples/hooks").join(hook))
                .arg(phase)
                .env("PATH", &path)
                .env("KNOWN", known)
                .env("LIGHTSNAP_PHASE", phase)
                .env("LIGHTSNAP_BITNAMI_DIR", dir.path().join("no-bitnami"))
                .output()
                .unwrap();
            assert!(out.status.success(), "{hook} {phase}: {out:?}");
            let calls = std::fs::read_to_string(&log).unwrap();
            assert!(
                calls.lines().any(|l| l == format!("{action} {known}")),
                "{hook} {phase}: {calls}"
            );
        }
        let out = Command::new(repo().join("packaging/examples/hooks").join(hook))
            .arg("some-future-phase")
            .output()
            .unwrap();
        assert!(out.status.success(), "{hook}: {out:?}");
        let out = Command::new(repo().join("packaging/examples/hooks").join(hook))
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{hook} without a phase: {out:?}"
        );
    }
}
