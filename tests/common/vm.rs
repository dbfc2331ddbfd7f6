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
