//! The VM lab's host side shared by the booted-guest tests (tests/vm.rs, tests/vm_verify.rs):
//! what they need to run, and the /opt/lab directory a guest gets.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{root_or_skip, run, tool_or_skip};

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The root disk's serial (scripts/vm's default): the system volume's volume id.
pub const ROOT_SERIAL: &str = "vol0000000000000000a";

/// Whether the VM tests can run here: root, QEMU, the image tools.
pub fn lab_or_skip(test: &str) -> bool {
    root_or_skip(test)
        && [
            "qemu-system-x86_64",
            "qemu-img",
            "mmdebstrap",
            "sgdisk",
            "python3",
        ]
        .iter()
        .all(|tool| tool_or_skip(test, tool))
}

/// The directory of the test binaries (`target/debug`).
fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_lightsnap"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The fake Lightsail's binary, built if it is not there (it is a workspace member's bin,
/// which `cargo test -p lightsnap` does not build).
pub fn fake_binary() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--quiet",
        "-p",
        "fake-lightsail",
        "--bin",
        "fake-lightsail",
    ])
    .current_dir(repo());
    if bin_dir().ends_with("release") {
        cmd.arg("--release");
    }
    run(&mut cmd);
    bin_dir().join("fake-lightsail")
}

/// The directory the guest gets as /opt/lab: the binaries, the build machine's dynamic loader
/// and the libraries the fake needs (see `start_fake` in tests/vm/lab.sh), the guest scripts,
/// and `disks.env` with the serials.
pub fn lab_dir(scratch: &Path, disks: &[(&str, String)], with_lightsnap: bool) -> PathBuf {
    let lab = scratch.join("lab");
    let bin = lab.join("bin");
    let hostlib = lab.join("hostlib");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&hostlib).unwrap();
    let fake = fake_binary();
    std::fs::copy(&fake, bin.join("fake-lightsail")).unwrap();
    if with_lightsnap {
        std::fs::copy(env!("CARGO_BIN_EXE_lightsnap"), bin.join("lightsnap")).unwrap();
        std::fs::copy(
            env!("CARGO_BIN_EXE_lightsnap-writer"),
            bin.join("lightsnap-writer"),
        )
        .unwrap();
    }
    let ldd = String::from_utf8(run(Command::new("ldd").arg(&fake)).stdout).unwrap();
    for line in ldd.lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux... (0x...)"
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line
                .split_whitespace()
                .next()
                .filter(|p| p.starts_with('/')),
        };
        if let Some(path) = path.filter(|p| p.starts_with('/')) {
            let name = Path::new(path).file_name().unwrap();
            std::fs::copy(path, hostlib.join(name)).unwrap();
        }
    }
    assert!(
        hostlib.join("ld-linux-x86-64.so.2").exists(),
        "no dynamic loader in ldd's answer: {ldd}"
    );
    for entry in std::fs::read_dir(repo().join("tests/vm")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, lab.join(path.file_name().unwrap())).unwrap();
    }
    let env: String = disks
        .iter()
        .map(|(name, serial)| format!("{name}={serial}\n"))
        .collect();
    std::fs::write(lab.join("disks.env"), format!("ROOT={ROOT_SERIAL}\n{env}")).unwrap();
    lab
}

/// The .deb `scripts/package` builds (the portable, glibc 2.17 build), once per test binary.
pub fn deb() -> &'static Path {
    static DEB: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DEB.get_or_init(|| {
        let out = run(Command::new(repo().join("scripts/package")).current_dir(repo()));
        let listed = String::from_utf8(out.stdout).unwrap();
        let deb = listed
            .lines()
            .find(|l| l.ends_with(".deb"))
            .unwrap_or_else(|| panic!("scripts/package listed no .deb: {listed}"));
        repo().join(deb)
    })
}

/// What a guest wrote under /out (or a directory of it): read by the assertions, each read
/// failing with the file's name.
pub struct Out(pub PathBuf);

impl Out {
    pub fn text(&self, rel: &str) -> String {
        std::fs::read_to_string(self.0.join(rel))
            .unwrap_or_else(|e| panic!("reading {}/{rel} of the guest: {e}", self.0.display()))
    }

    pub fn trimmed(&self, rel: &str) -> String {
        self.text(rel).trim().to_string()
    }

    pub fn json(&self, rel: &str) -> serde_json::Value {
        serde_json::from_str(&self.text(rel))
            .unwrap_or_else(|e| panic!("{rel} is not JSON: {e}\n{}", self.text(rel)))
    }

    pub fn lines(&self, rel: &str) -> Vec<String> {
        self.text(rel).lines().map(String::from).collect()
    }

    /// `KEY=VALUE` lines (`blkid -o export`, `systemctl show`).
    pub fn value(&self, rel: &str, key: &str) -> String {
        self.lines(rel)
            .iter()
            .find_map(|l| l.strip_prefix(&format!("{key}=")).map(String::from))
            .unwrap_or_else(|| panic!("no {key}= in {rel}:\n{}", self.text(rel)))
    }

    /// A lightsnap run's report (in `dir`: `code`, `stderr`, `report.json`), checked to have
    /// exited 0.
    pub fn report(&self, dir: &str) -> serde_json::Value {
        let code: i32 = self.trimmed(&format!("{dir}/code")).parse().unwrap();
        assert_eq!(
            code,
            0,
            "lightsnap in {dir} exited {code}:\n{}\n{}",
            self.text(&format!("{dir}/stderr")),
            self.text(&format!("{dir}/report.json"))
        );
        self.json(&format!("{dir}/report.json"))
    }

    /// [`Out::report`], also checked to match the published JSON Schema of `document`.
    pub fn report_of(&self, dir: &str, document: &str) -> serde_json::Value {
        let doc = self.report(dir);
        super::assert_matches_schema(document, &doc);
        doc
    }
}

/// A test's scratch directory (`prefix` names it): removed with the guard, or kept and said
/// when LIGHTSNAP_VM_KEEP=1 (as for scripts/vm), to look at what the guests wrote.
pub fn scratch_dir(prefix: &str) -> (PathBuf, Option<tempfile::TempDir>) {
    let tmp = tempfile::Builder::new().prefix(prefix).tempdir().unwrap();
    if std::env::var_os("LIGHTSNAP_VM_KEEP").is_some_and(|v| v == "1") {
        let kept = tmp.keep();
        eprintln!("keeping {}", kept.display());
        (kept, None)
    } else {
        (tmp.path().to_path_buf(), Some(tmp))
    }
}

/// Runs `scripts/vm` (`cmd`), prints what it printed and how long it took, and fails the
/// test unless the guest's command succeeded; returns scripts/vm's stderr (the lab's own lines,
/// such as what it plugged and unplugged).
pub fn boot_ok(cmd: &mut Command) -> String {
    let started = std::time::Instant::now();
    let result = cmd.output().expect("running scripts/vm");
    let stderr = String::from_utf8_lossy(&result.stderr).into_owned();
    eprintln!(
        "scripts/vm ({:.1} s):\n--- stdout\n{}--- stderr\n{stderr}",
        started.elapsed().as_secs_f64(),
        String::from_utf8_lossy(&result.stdout),
    );
    assert!(
        result.status.success(),
        "scripts/vm failed with {}",
        result.status
    );
    stderr
}
