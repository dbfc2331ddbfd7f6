//! The test harness for lightsnap's black-box tests: scratch directories, loop-device
//! filesystems the tests make themselves, a fake Lightsail seeded with them, a writer process,
//! and the built `lightsnap` binary run against all of it.
//!
//! Safety rules enforced here, not left to each test:
//! - every run of lightsnap is confined (`LIGHTSNAP_CONFINE_TO`) to the test's own scratch
//!   directory, so a path-resolution bug cannot freeze the host;
//! - the test process never writes to a filesystem while lightsnap may have it frozen; it asks
//!   whether a filesystem is frozen with [`LoopFs::is_frozen`], which cannot block;
//! - everything is cleaned up on drop, panics included: thaw, unmount, detach.

#![allow(dead_code, unused_imports)] // each test binary uses its own part of the harness

use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub use fake_lightsail::{Fake, Fault, FaultKind, Options, Seed};

pub mod pg;
/// The writer's record format, shared with the writer itself.
#[path = "../writer/record.rs"]
pub mod record;
pub mod vm;

/// Whether root-only tests can run. In CI they must: there, not being root fails the test.
pub fn root_or_skip(test: &str) -> bool {
    if nix::unistd::Uid::effective().is_root() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test} needs root, and CI runs as root: refusing to skip it there"
    );
    eprintln!("skipping {test}: it needs root (loop devices, mount, FIFREEZE)");
    false
}

/// Fails (in CI) or skips (elsewhere) when a tool is missing; `scripts/test` installs them.
pub fn tool_or_skip(test: &str, tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test} needs {tool}; scripts/test installs it"
    );
    eprintln!("skipping {test}: {tool} is not installed (scripts/test installs it)");
    false
}

/// Runs a command, panicking with its output when it fails.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}:\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A scratch directory, which is also the confinement directory of every lightsnap run.
pub struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    /// A new scratch directory under the system temp dir.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("lightsnap-test-")
            .tempdir()
            .expect("scratch dir");
        Self { dir }
    }

    /// A new scratch directory inside `parent` (the benchmark's, under the directory
    /// `scripts/bench` cleans up after).
    pub fn new_in(parent: &Path) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("lightsnap-bench-")
            .tempdir_in(parent)
            .expect("scratch dir");
        Self { dir }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Filesystem kinds the tests make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsKind {
    Ext4,
    Xfs,
    Btrfs,
    /// ntfs-3g: a FUSE block filesystem (`fuseblk`) whose FIFREEZE answers EOPNOTSUPP.
    Ntfs,
}

impl FsKind {
    pub fn mkfs_tool(self) -> &'static str {
        match self {
            FsKind::Ext4 => "mkfs.ext4",
            FsKind::Xfs => "mkfs.xfs",
            FsKind::Btrfs => "mkfs.btrfs",
            FsKind::Ntfs => "mkntfs",
        }
    }

    fn size_mb(self) -> u64 {
        match self {
            // mkfs.xfs refuses filesystems under 300 MB.
            FsKind::Xfs => 320,
            FsKind::Btrfs => 128,
            _ => 64,
        }
    }
}

/// A filesystem on a loop device over an image file in the scratch directory, mounted there.
pub struct LoopFs {
    pub kind: FsKind,
    pub image: PathBuf,
    pub device: PathBuf,
    pub mount_point: PathBuf,
    mounted: bool,
}

impl LoopFs {
    /// Makes, attaches and mounts a filesystem named `name` in `scratch`.
    pub fn create(scratch: &Scratch, name: &str, kind: FsKind) -> Self {
        Self::create_sized(scratch, name, kind, kind.size_mb() << 20, &[])
    }

    /// [`LoopFs::create`] with the image's size in bytes and extra `mkfs` options (the
    /// benchmark's larger filesystems, ext4 initialised eagerly).
    pub fn create_sized(
        scratch: &Scratch,
        name: &str,
        kind: FsKind,
        bytes: u64,
        mkfs_options: &[&str],
    ) -> Self {
        let image = scratch.path().join(format!("{name}.img"));
        let mount_point = scratch.path().join(name);
        std::fs::create_dir_all(&mount_point).unwrap();
        let file = std::fs::File::create(&image).unwrap();
        file.set_len(bytes).unwrap();
        drop(file);
        let mut mkfs = Command::new(kind.mkfs_tool());
        match kind {
            FsKind::Ext4 => mkfs.args(["-q", "-F"]),
            FsKind::Xfs => mkfs.args(["-q", "-f"]),
            FsKind::Btrfs => mkfs.args(["-q", "-f"]),
            FsKind::Ntfs => mkfs.args(["-q", "-F", "-f"]),
        };
        run(mkfs.args(mkfs_options).arg(&image));
        let out = run(Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&image));
        let device = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        // A read-only flag (BLKROSET) belongs to /dev/loopN and outlives its file: a verify
        // run killed while checking a restored disk on this loop device may have left it.
        run(Command::new("blockdev").arg("--setrw").arg(&device));
        let mut fs = Self {
            kind,
            image,
            device,
            mount_point,
            mounted: false,
        };
        fs.mount();
        fs
    }

    /// Mounts it (again).
    pub fn mount(&mut self) {
        let mut cmd = Command::new("mount");
        if self.kind == FsKind::Ntfs {
            cmd.args(["-t", "ntfs-3g"]);
        }
        cmd.arg(&self.device).arg(&self.mount_point);
        let first = cmd.output().expect("running mount");
        if !first.status.success() {
            // Seen once under load: a loop device just released by another test's btrfs
            // answered "unable to read superblock" to the first mount of its new file. Its
            // buffers are flushed and the mount tried once more; a second failure is real.
            eprintln!(
                "mount {} failed once ({}); flushing its buffers and trying again",
                self.device.display(),
                String::from_utf8_lossy(&first.stderr).trim()
            );
            run(Command::new("blockdev")
                .arg("--flushbufs")
                .arg(&self.device));
            run(&mut cmd);
        }
        self.mounted = true;
    }

    /// Its line in the mount table, if mounted.
    pub fn mountinfo(&self) -> Option<lightsnap::kernel::mountinfo::Mount> {
        lightsnap::kernel::mountinfo::read()
            .unwrap()
            .into_iter()
            .rev()
            .find(|m| m.mount_point == self.mount_point)
    }

    /// Whether the filesystem is frozen, asked without any risk of blocking: FIFREEZE says
    /// EBUSY when it is; when it is not, the probe froze it and thaws it at once. Only ever
    /// used on the test's own filesystem while no lightsnap run is using it.
    pub fn is_frozen(&self) -> bool {
        is_frozen(&self.mount_point)
    }

    /// Whether the mount table shows it mounted.
    pub fn is_mounted(&self) -> bool {
        self.mountinfo().is_some()
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        // Thaw first: unmounting a frozen filesystem would block. Errors are expected here
        // (not frozen, not mounted) and ignored: this is cleanup after a test that may have
        // failed anywhere.
        let _ = Command::new("fsfreeze")
            .arg("-u")
            .arg(&self.mount_point)
            .stderr(Stdio::null())
            .status();
        if self.mounted {
            let ok = Command::new("umount")
                .arg(&self.mount_point)
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                let _ = Command::new("umount")
                    .arg("-l")
                    .arg(&self.mount_point)
                    .stderr(Stdio::null())
                    .status();
            }
        }
        let _ = Command::new("losetup")
            .arg("-d")
            .arg(&self.device)
            .stderr(Stdio::null())
            .status();
    }
}

/// Whether the filesystem mounted at `mount_point` is frozen, asked without any risk of
/// blocking: FIFREEZE says EBUSY when it is; when it is not, the probe froze it and thaws it at
/// once. Only for a test's own filesystem while no lightsnap run is using it.
pub fn is_frozen(mount_point: &Path) -> bool {
    use lightsnap::kernel::freeze::{FreezeError, MountHandle};
    let handle = MountHandle::open(mount_point).expect("open mount point");
    match handle.freeze() {
        Err(FreezeError::AlreadyFrozen(_)) => true,
        Ok(()) => {
            handle.thaw().expect("thaw after probe");
            false
        }
        Err(e) => panic!("probing {}: {e}", mount_point.display()),
    }
}

/// The fake instance's EC2 id.
pub const INSTANCE_ID: &str = "i-0123456789abcdef0";
/// The fake instance's name.
pub const INSTANCE: &str = "web-1";

/// A seed with instance `web-1` and one disk per `(name, device)`, each attached to it and
/// backed by its device; `system` names a device to declare the instance's system disk.
pub fn seed(disks: &[(&str, &Path)], system: Option<&Path>) -> Seed {
    let mut toml = format!(
        "self_instance = \"{INSTANCE}\"\n[[instances]]\nname = \"{INSTANCE}\"\ninstance_id = \"{INSTANCE_ID}\"\n"
    );
    if let Some(dev) = system {
        toml.push_str(&format!(
            "system_disk = {{ name = \"{INSTANCE}-system\", path = \"{d}\", size_gb = 1, backing = \"{d}\" }}\n",
            d = dev.display()
        ));
    }
    for (name, dev) in disks {
        toml.push_str(&format!(
            "[[disks]]\nname = \"{name}\"\npath = \"{d}\"\nattached_to = \"{INSTANCE}\"\nsize_gb = 1\nbacking = \"{d}\"\n",
            d = dev.display()
        ));
    }
    Seed::from_toml_str(&toml).expect("seed")
}

/// Starts a fake Lightsail with `seed`, keeping snapshots in `scratch/snapshots`, its
/// snapshots completed at once.
pub fn fake(scratch: &Scratch, seed: Seed) -> Fake {
    fake_with(scratch, seed, Duration::ZERO)
}

/// Starts a fake Lightsail with `seed` whose snapshots stay pending for `pending`, listing 3
/// items per page so that every list spans several pages.
pub fn fake_with(scratch: &Scratch, seed: Seed, pending: Duration) -> Fake {
    let dir = scratch.path().join("snapshots");
    std::fs::create_dir_all(&dir).unwrap();
    let mut opts = Options::new(seed, dir);
    opts.snapshot_duration = pending;
    opts.page_size = 3;
    Fake::start(opts).expect("fake lightsail")
}

/// The most common set-up: a scratch directory, an ext4 loop filesystem `data` in it, and a
/// fake whose disk `data-1` is that filesystem's device. Fields drop in order: the fake and
/// the filesystem (unmounted, detached) before the scratch directory they live in.
pub struct OneDisk {
    pub fake: Fake,
    pub fs: LoopFs,
    pub scratch: Scratch,
}

impl OneDisk {
    /// The set-up for `test`, or `None` (having said why) when not root.
    pub fn new(test: &str) -> Option<Self> {
        Self::with(test, Duration::ZERO, Vec::new())
    }

    /// The set-up with snapshots that stay pending for `pending`, and `snapshots` already in
    /// the fake.
    pub fn with(
        test: &str,
        pending: Duration,
        snapshots: Vec<fake_lightsail::seed::SeedSnapshot>,
    ) -> Option<Self> {
        if !root_or_skip(test) {
            return None;
        }
        let scratch = Scratch::new();
        let fs = LoopFs::create(&scratch, "data", FsKind::Ext4);
        let mut s = seed(&[("data-1", &fs.device)], None);
        s.disk_snapshots = snapshots;
        let fake = fake_with(&scratch, s, pending);
        Some(Self { fake, fs, scratch })
    }

    /// Asserts a run touched nothing: not frozen, no snapshot call.
    pub fn assert_untouched(&self, r: &RunResult) {
        assert!(!self.fs.is_frozen(), "left frozen: {r:?}");
        assert!(
            create_calls(&self.fake).is_empty(),
            "a snapshot was attempted: {r:?}"
        );
    }
}

/// The built lightsnap binary, set up to talk to `fake` and confined to `scratch`.
pub fn lightsnap(scratch: &Scratch, fake: &Fake) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lightsnap"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("LIGHTSNAP_CONFINE_TO", scratch.path())
        .env("LIGHTSNAP_RUN_DIR", scratch.path().join("run"))
        // The state files of the runs (never the machine's /var/lib/lightsnap).
        .env("LIGHTSNAP_STATE_DIR", scratch.path().join("state"))
        // Records of attached copies of a system disk (never the machine's /etc).
        .env(
            "LIGHTSNAP_SYSTEM_COPY_DIR",
            scratch.path().join("system-copies"),
        )
        .env("AWS_ENDPOINT_URL_LIGHTSAIL", fake.endpoint())
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", fake.imds_endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", fake_lightsail::DEFAULT_ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", fake_lightsail::DEFAULT_SECRET_KEY)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .stdin(Stdio::null());
    // A fake over TLS is trusted the standard way, as a private CA would be.
    if let Some(ca) = fake.ca_file() {
        cmd.env("SSL_CERT_FILE", ca);
    }
    cmd
}

/// Starts a fake Lightsail over TLS (`https://localhost:PORT`, a host name resolved through
/// `/etc/hosts`), its CA in `scratch/ca.pem`, watching name lookups.
pub fn fake_tls(scratch: &Scratch, seed: Seed) -> Fake {
    let dir = scratch.path().join("snapshots");
    std::fs::create_dir_all(&dir).unwrap();
    let mut opts = Options::new(seed, dir);
    opts.snapshot_duration = Duration::ZERO;
    opts.tls = Some(fake_lightsail::TlsOptions {
        names: vec!["localhost".into()],
        ca_file: Some(scratch.path().join("ca.pem")),
    });
    opts.watch_lookups = true;
    Fake::start(opts).expect("fake lightsail over TLS")
}

/// What a finished lightsnap run said.
pub struct RunResult {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Debug for RunResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs a prepared lightsnap command to the end.
pub fn finish(cmd: &mut Command) -> RunResult {
    let out = cmd.output().expect("running lightsnap");
    RunResult {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The CreateDiskSnapshot calls the fake received.
pub fn create_calls(fake: &Fake) -> Vec<fake_lightsail::Call> {
    fake.calls()
        .into_iter()
        .filter(|c| c.operation == "CreateDiskSnapshot")
        .collect()
}

/// Waits (bounded) until the fake has received a CreateDiskSnapshot call.
pub fn wait_for_create_call(fake: &Fake, within: Duration) {
    let until = Instant::now() + within;
    while create_calls(fake).is_empty() {
        assert!(
            Instant::now() < until,
            "no CreateDiskSnapshot call within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits (bounded) until a filesystem is thawed; returns how long it took.
pub fn wait_thawed(fs: &LoopFs, within: Duration) -> Duration {
    let start = Instant::now();
    while fs.is_frozen() {
        assert!(
            start.elapsed() < within,
            "{} still frozen after {within:?}",
            fs.mount_point.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    start.elapsed()
}

/// A writer process appending fsynced, checksummed records to a file, acknowledging each.
pub struct Writer {
    child: Child,
    acks: mpsc::Receiver<(u64, f64)>,
    /// Every acknowledgement received so far: (sequence number, unix ms after fsync).
    pub seen: Vec<(u64, f64)>,
    pub file: PathBuf,
}

impl Writer {
    /// Starts writing to `file` and returns once `warmup` records are acknowledged.
    pub fn start(file: &Path, warmup: usize) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_lightsnap-writer"))
            .arg("acks")
            .arg(file)
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .expect("starting the writer");
        let stdout = child.stdout.take().unwrap();
        let (tx, acks) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let mut parts = line.split_whitespace();
                let seq = parts.next().and_then(|s| s.parse().ok());
                let ms = parts.next().and_then(|s| s.parse().ok());
                if let (Some(seq), Some(ms)) = (seq, ms) {
                    if tx.send((seq, ms)).is_err() {
                        break;
                    }
                }
            }
        });
        let mut writer = Self {
            child,
            acks,
            seen: Vec::new(),
            file: file.to_path_buf(),
        };
        for _ in 0..warmup {
            writer.next_ack(Duration::from_secs(30));
        }
        writer
    }

    /// The writer's process id (a hook stops it by it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (bounded) for the next acknowledgement: proof the filesystem takes writes.
    pub fn next_ack(&mut self, within: Duration) -> (u64, f64) {
        let ack = self
            .acks
            .recv_timeout(within)
            .unwrap_or_else(|e| panic!("the writer acknowledged nothing within {within:?}: {e}"));
        self.seen.push(ack);
        ack
    }

    /// Stops the writer, keeping every acknowledgement it made.
    pub fn stop(mut self) -> Vec<(u64, f64)> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        while let Ok(ack) = self.acks.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(ack);
        }
        std::mem::take(&mut self.seen)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Checks a snapshot image: fsck-clean, and holding every record acknowledged before `cut`
/// (unix ms), each complete with a valid checksum, numbered without gaps. Returns how many
/// records the image holds.
pub fn verify_image(
    scratch: &Scratch,
    kind: FsKind,
    image: &Path,
    acks: &[(u64, f64)],
    cut: f64,
) -> usize {
    match kind {
        FsKind::Ext4 => {
            run(Command::new("e2fsck").arg("-fn").arg(image));
        }
        FsKind::Xfs => xfs_check_after_replay(scratch, image),
        _ => {}
    }
    let out = run(Command::new("losetup")
        .args(["--find", "--show", "--read-only"])
        .arg(image));
    let device = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let dir = scratch.path().join(format!(
        "verify-{}",
        image.file_stem().unwrap().to_string_lossy()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let options = match kind {
        // The image is a copy: same UUID as the live filesystem, and nothing to replay.
        FsKind::Xfs => "ro,nouuid,norecovery",
        FsKind::Ext4 => "ro,noload",
        _ => "ro",
    };
    let mounted = Command::new("mount")
        .args(["-o", options])
        .arg(&device)
        .arg(&dir)
        .output()
        .unwrap();
    let text = if mounted.status.success() {
        let text = std::fs::read_to_string(dir.join("records.log"));
        let _ = Command::new("umount").arg(&dir).status();
        text
    } else {
        Err(std::io::Error::other(
            String::from_utf8_lossy(&mounted.stderr).into_owned(),
        ))
    };
    let _ = Command::new("losetup").arg("-d").arg(&device).status();
    let text = text.unwrap_or_else(|e| panic!("reading records from {}: {e}", image.display()));
    check_records(&text, acks, cut)
}

/// Checks the writer's records as read from a snapshot: each complete with a valid checksum,
/// numbered without gaps, and every record acknowledged before `cut` (unix ms) there. Returns
/// how many there are.
pub fn check_records(text: &str, acks: &[(u64, f64)], cut: f64) -> usize {
    let mut count = 0u64;
    for line in text.lines() {
        let (body, digest) = line.rsplit_once(' ').expect("record has a checksum");
        assert_eq!(
            record::checksum(body.as_bytes()),
            digest,
            "record {count} is torn or corrupt: {line:?}"
        );
        let seq: u64 = body.split(' ').next().unwrap().parse().unwrap();
        assert_eq!(seq, count, "records are numbered without gaps");
        count += 1;
    }
    let must_have: Vec<u64> = acks
        .iter()
        .filter(|(_, t)| *t < cut)
        .map(|(s, _)| *s)
        .collect();
    assert!(
        !must_have.is_empty(),
        "the writer acknowledged nothing before the snapshot: the test proves nothing"
    );
    let last = *must_have.iter().max().unwrap();
    assert!(
        count > last,
        "record {last} was acknowledged before the snapshot call but the image holds only {count} records"
    );
    count as usize
}

/// `xfs_repair -n` on a frozen XFS image, after replaying its log on a copy: this kernel's
/// FIFREEZE leaves committed transactions in the XFS log (a frozen image is what a clean
/// crash leaves, with nothing in flight), and `xfs_repair -n` reports any log content as
/// damage. Mounting a copy replays the log, as mounting a volume made from the snapshot does.
pub fn xfs_check_after_replay(scratch: &Scratch, image: &Path) {
    xfs_check_raw(image);
    let copy = scratch.path().join(format!(
        "{}.replayed",
        image.file_name().unwrap().to_string_lossy()
    ));
    run(Command::new("cp")
        .arg("--sparse=always")
        .arg(image)
        .arg(&copy));
    let out = run(Command::new("losetup")
        .args(["--find", "--show"])
        .arg(&copy));
    let device = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let dir = scratch.path().join("replay");
    std::fs::create_dir_all(&dir).unwrap();
    // nouuid: the live filesystem, with the same UUID, is still mounted.
    let mounted = Command::new("mount")
        .args(["-o", "nouuid"])
        .arg(&device)
        .arg(&dir)
        .output()
        .unwrap();
    if mounted.status.success() {
        let _ = Command::new("umount").arg(&dir).status();
    }
    let _ = Command::new("losetup").arg("-d").arg(&device).status();
    assert!(
        mounted.status.success(),
        "mounting a copy of {} to replay its log: {}",
        image.display(),
        String::from_utf8_lossy(&mounted.stderr)
    );
    run(Command::new("xfs_repair").args(["-n", "-f"]).arg(&copy));
    let _ = std::fs::remove_file(&copy);
}

/// `xfs_repair -n` on the image itself, its log not replayed: the only findings allowed are
/// what an unreplayed log explains — the alert that it holds changes, and the superblock's
/// lazy free/inode counters (XFS recomputes them at mount) — and nothing else at all.
pub fn xfs_check_raw(image: &Path) {
    let out = Command::new("xfs_repair")
        .args(["-n", "-f"])
        .arg(image)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let explained = |l: &str| {
        let l = l.trim();
        l.is_empty()
            || l.starts_with("Phase ")
            || l.starts_with("- ")
            || l.starts_with("No modify flag set")
            // A loop image on a file: no device geometry to compare sector sizes with.
            || l.starts_with("Cannot get host filesystem geometry")
            || l.starts_with("Repair may fail if there is a sector size mismatch")
            || l.starts_with("the image and the host filesystem")
            || l.starts_with("ALERT: The filesystem has valuable metadata changes in a log")
            || l.starts_with("ignored because the -n option was used")
            || l.starts_with("which may be resolved by first mounting the filesystem")
            || ["sb_fdblocks ", "sb_ifree ", "sb_icount "]
                .iter()
                .any(|c| l.starts_with(c) && l.contains(", counted "))
    };
    let unexplained: Vec<&str> = text.lines().filter(|l| !explained(l)).collect();
    assert!(
        unexplained.is_empty(),
        "xfs_repair -n {} found what an unreplayed log does not explain:\n{}",
        image.display(),
        unexplained.join("\n")
    );
    assert!(
        text.contains("Phase 7"),
        "xfs_repair -n did not run through: {text}"
    );
}

/// The device number of a path, for checking two paths are on one filesystem.
pub fn dev_of(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().dev()
}

/// Unmounts a path on drop (a tmpfs or other mount a test made).
pub struct Unmount(pub PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg(&self.0)
            .stderr(Stdio::null())
            .status();
    }
}

// ---------------------------------------------------------------------------------------
// Configuration, hooks, processes: what several test files need
// ---------------------------------------------------------------------------------------

/// The configuration root of a scratch directory (`<scratch>/conf/etc/lightsnap/...`).
pub fn conf_root(scratch: &Scratch) -> PathBuf {
    scratch.path().join("conf")
}

/// `cmd` (a lightsnap from [`lightsnap`]) signing with the administrator's key: what a test
/// runs as an administrator would, with keys broader than the instance policy (`prune --all`,
/// `--instance`, `fleet`). The suite-wide call check does not judge its calls against the
/// instance's policy (docs/contrib/iam.md).
pub fn as_admin(cmd: &mut Command) -> &mut Command {
    cmd.env("AWS_ACCESS_KEY_ID", fake_lightsail::ADMIN_ACCESS_KEY)
}

/// lightsnap through the harness (confined, talking to `fake`), with the scratch
/// directory's own configuration root.
pub fn configured_lightsnap(scratch: &Scratch, fake: &Fake) -> Command {
    let mut cmd = lightsnap(scratch, fake);
    cmd.env("LIGHTSNAP_CONFIG_ROOT", conf_root(scratch));
    cmd
}

/// Writes a configuration file under the configuration root, mode 0644 (root-owned when
/// the test runs as root, as lightsnap requires).
pub fn write_conf(scratch: &Scratch, rel: &str, text: &str) -> PathBuf {
    let path = conf_root(scratch).join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    path
}

/// stdout as the one JSON document it must be.
pub fn json_doc(r: &RunResult) -> serde_json::Value {
    serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("stdout is not exactly one JSON document ({e}): {r:?}"))
}

/// [`json_doc`], which must also match the published schema of `document`
/// (`docs/src/schema/<document>.schema.json`).
pub fn json_doc_of(document: &str, r: &RunResult) -> serde_json::Value {
    let doc = json_doc(r);
    assert_matches_schema(document, &doc);
    doc
}

/// Polls (bounded) until `cond` holds.
pub fn wait_until(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < until, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether a process is alive (not gone, not a zombie).
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z ") && !s.contains(") X "))
        .unwrap_or(false)
}

/// Writes an executable hook, root-owned, mode 0755.
pub fn hook(dir: &Path, name: &str, body: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// A hook line that logs what the hook was told to `log`.
pub fn logging(log: &Path) -> String {
    format!(
        "echo \"$(basename \"$0\") $1 phase=$LIGHTSNAP_PHASE paths=$LIGHTSNAP_PATHS disks=$LIGHTSNAP_DISKS snapshots=$LIGHTSNAP_SNAPSHOTS result=${{LIGHTSNAP_RESULT-unset}}\" >> {}",
        log.display()
    )
}

/// The hook directory of a test, configured with `hook_dir` (and `extra` settings).
pub fn hook_dir(s: &OneDisk, extra: &str) -> PathBuf {
    let dir = s.scratch.path().join("hooks.d");
    std::fs::create_dir_all(&dir).unwrap();
    write_conf(
        &s.scratch,
        "etc/lightsnap/config.toml",
        &format!("hook_dir = \"{}\"\n{extra}", dir.display()),
    );
    dir
}

/// Makes every CreateDiskSnapshot call hang.
pub fn hang_create(fake: &Fake) {
    fake.add_fault(Fault {
        operation: Some("CreateDiskSnapshot".into()),
        kind: FaultKind::Hang,
        count: None,
    });
}

/// Starts lightsnap with its output captured.
pub fn spawn(cmd: &mut Command) -> Child {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning lightsnap")
}

/// Waits for a started lightsnap.
pub fn wait_result(child: Child) -> RunResult {
    let out = child.wait_with_output().unwrap();
    RunResult {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Sends `signal` to `pid`.
pub fn kill(pid: u32, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal).unwrap();
}

/// The names of the disk snapshots the fake holds now, sorted.
pub fn remaining(fake: &Fake) -> Vec<String> {
    let mut names: Vec<String> = fake.snapshots()["diskSnapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

// ---------------------------------------------------------------------------------------
// Golden files: the --output json schema, pinned in tests/golden (UPDATE_GOLDEN=1 rewrites)
// ---------------------------------------------------------------------------------------

/// Keys whose values change from run to run; their values are replaced by a placeholder of
/// the same JSON type.
pub const VOLATILE: &[&str] = &[
    "created_at",
    "operation_id",
    "window_ms",
    "elapsed_s",
    "lightsnap:host",
    "lightsnap:version",
    "time",
    "time_utc",
    "last_success_age_seconds",
];

/// Replaces `/dev/loopN` by `/dev/loopN` with the number left out.
pub fn without_loop_numbers(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("/dev/loop") {
        out.push_str(&rest[..i + "/dev/loop".len()]);
        rest = &rest[i + "/dev/loop".len()..];
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        if digits > 0 {
            out.push('N');
        }
        rest = &rest[digits..];
    }
    out.push_str(rest);
    out
}

pub fn normalise(v: &mut serde_json::Value, scratch: &str) {
    use serde_json::{json, Value};
    match v {
        Value::Object(map) => {
            for (k, x) in map.iter_mut() {
                if VOLATILE.contains(&k.as_str()) {
                    *x = match x {
                        Value::Null => Value::Null,
                        Value::Number(n) if n.is_f64() => json!(0.0),
                        Value::Number(_) => json!(0),
                        _ => json!(format!("<{k}>")),
                    };
                } else {
                    normalise(x, scratch);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|x| normalise(x, scratch)),
        Value::String(s) => *s = without_loop_numbers(&s.replace(scratch, "<scratch>")),
        _ => {}
    }
}

/// The published JSON Schema (`docs/src/schema/<document>.schema.json`) each golden file is a
/// document of: every file in tests/golden must be named here (tests/json_schema.rs checks).
pub const GOLDEN_DOCUMENTS: &[(&str, &str)] = &[
    ("check", "check"),
    ("error", "error"),
    ("freeze-and-snap", "freeze-and-snap"),
    ("freeze-and-snap-wait", "freeze-and-snap"),
    ("freeze-and-snap-wait-timeout", "freeze-and-snap"),
    ("list", "list"),
    ("list-disk-all", "list"),
    ("plan", "plan"),
    ("prune", "prune"),
    ("prune-dry-run", "prune"),
    ("run", "run"),
    ("snap-instance", "snap-instance"),
    ("status", "status"),
    ("thaw", "thaw"),
    ("thaw-recover", "thaw"),
    ("usage-error", "error"),
    ("verify", "verify"),
];

/// The document a golden file is of.
pub fn document_of_golden(golden: &str) -> &'static str {
    GOLDEN_DOCUMENTS
        .iter()
        .find(|(g, _)| *g == golden)
        .map(|(_, d)| *d)
        .unwrap_or_else(|| {
            panic!("golden file {golden}.json is of no document: name it in GOLDEN_DOCUMENTS")
        })
}

/// The published JSON Schema of `document`, as a validator (references inside the file
/// only: the validator is built without network or file resolution).
pub fn schema_validator(document: &str) -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs/src/schema")
        .join(format!("{document}.schema.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (UPDATE_DOCS=1 cargo test --lib json_schema writes it)",
            path.display()
        )
    });
    let schema: serde_json::Value = serde_json::from_str(&text).unwrap();
    jsonschema::validator_for(&schema)
        .unwrap_or_else(|e| panic!("{} is not a valid JSON Schema: {e}", path.display()))
}

/// Fails, naming every violation, unless `doc` is valid against the published schema of
/// `document`.
pub fn assert_matches_schema(document: &str, doc: &serde_json::Value) {
    let validator = schema_validator(document);
    let errors: Vec<String> = validator
        .iter_errors(doc)
        .map(|e| format!("at {}: {e}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "this `{document}` document does not match docs/src/schema/{document}.schema.json (if the output types changed, UPDATE_DOCS=1 cargo test --lib json_schema rewrites the schemas):\n{}\n{}",
        errors.join("\n"),
        serde_json::to_string_pretty(doc).unwrap()
    );
}

/// Compares a JSON document, normalised, with `tests/golden/<name>.json`; with
/// `UPDATE_GOLDEN=1`, writes it instead. The document, as the run printed it, must match its
/// published JSON Schema too.
pub fn golden(name: &str, doc: &serde_json::Value, scratch: &Scratch) {
    assert_eq!(
        doc["schema"], 1,
        "every JSON document carries its schema: {doc}"
    );
    assert_matches_schema(document_of_golden(name), doc);
    let mut doc = doc.clone();
    normalise(&mut doc, &scratch.path().display().to_string());
    let text = serde_json::to_string_pretty(&doc).unwrap() + "\n";
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.json"));
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v != "0") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &text).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with UPDATE_GOLDEN=1 to write it",
            path.display()
        )
    });
    assert_eq!(
        want,
        text,
        "the --output json schema of {name} changed (golden file {}): if that is intended, rerun with UPDATE_GOLDEN=1 and say so in the manual's JSON page (docs/src/json.md)",
        path.display()
    );
}

/// Makes `fake` enforce, from now on, the IAM policy `lightsnap iam-policy ARGS` prints (with
/// the scratch directory's configuration); returns the document.
pub fn enforce_printed_policy(scratch: &Scratch, fake: &Fake, args: &[&str]) -> serde_json::Value {
    let r = finish(
        configured_lightsnap(scratch, fake)
            .arg("iam-policy")
            .args(args),
    );
    assert_eq!(r.code, 0, "iam-policy {args:?}: {r:?}");
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).expect("iam-policy prints JSON");
    let policy = fake_lightsail::policy::Policy::parse(&doc).expect("a policy the fake reads");
    fake.set_policy(Some(policy));
    doc
}

/// The API calls the fake's policy refused (AccessDeniedException), as `Operation body`.
pub fn refused_calls(fake: &Fake) -> Vec<String> {
    fake.calls()
        .into_iter()
        .filter(|c| c.error.as_deref() == Some("AccessDeniedException"))
        .map(|c| format!("{} {}", c.operation, c.body))
        .collect()
}
