//! The VM lab (issue 15): lightsnap on booted guests with the hardware and distributions of
//! real Lightsail instances, through `scripts/vm` (QEMU, systemd as PID 1, the root on an
//! NVMe partition, data disks as NVMe disks with EBS-style serials, no network device).
//!
//! Each test is one or a few boots. A guest script (`tests/vm/*.sh`, copied in with the
//! binaries) sets the disks up, runs the project's fake Lightsail inside the guest, runs the
//! scenarios and writes what it saw under `/out`: lightsnap's JSON reports and exit codes, the
//! fake's request log, fsck output, the writer's acknowledgements and the records read back
//! from the snapshot images. The assertions are all here: the guest scripts decide nothing.
//!
//! - [`storage_on_nvme`] (one bookworm boot): 1. NVMe discovery from the serial alone,
//!   2. `/` as the instance's system volume, 3. LVM and md RAID1 over two NVMe disks each as
//!   two consistency groups, their images attached back, 4. vfat and minix through the
//!   unmount fallback.
//! - [`power_loss_while_frozen`] (two boots of one guest, `--reset-on`): 6.
//! - [`packages_on_booted_systems`] (one boot per distribution: bookworm, bullseye, trixie):
//!   5. the .deb installed, configured, run by its units, removed and purged.
//!
//! Needs root, QEMU and mmdebstrap (`scripts/deps`); the guest images are built on first use
//! and cached (`scripts/vm`). Outside CI a missing requirement is a skip that says why.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::vm::{deb, lab_dir, lab_or_skip, repo, ROOT_SERIAL};
use common::{check_records, run, tool_or_skip};
use serde_json::Value;

/// An EBS-style NVMe serial: `vol` and 17 hex digits, as `vol-0...` without its dash.
fn serial(n: u64) -> String {
    format!("vol0{n:016x}")
}

/// What one `scripts/vm` run left in its /out.
struct Boot {
    out: PathBuf,
}

/// One guest at a time: under TCG a guest's vCPUs are host threads, and two guests on two
/// cores stretch every step (a snapshot copy past the SDK's timeout, boots past a minute).
static ONE_GUEST: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `scripts/vm` with `args` before `--` and `cmd` after, its /out in `scratch/out`;
/// panics with its output when it fails.
fn boot(scratch: &Path, args: &[String], cmd: &[&str]) -> Boot {
    let _one = ONE_GUEST.lock().unwrap_or_else(|e| e.into_inner());
    let out = scratch.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let result = Command::new(repo().join("scripts/vm"))
        .args(args)
        .arg("--out")
        .arg(&out)
        .arg("--")
        .args(cmd)
        .output()
        .expect("running scripts/vm");
    let stdout = String::from_utf8_lossy(&result.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&result.stderr).into_owned();
    eprintln!("scripts/vm {args:?} -- {cmd:?}\n--- stdout\n{stdout}--- stderr\n{stderr}");
    assert!(
        result.status.success(),
        "scripts/vm failed with {}",
        result.status
    );
    Boot { out }
}

impl Boot {
    fn path(&self, rel: &str) -> PathBuf {
        self.out.join(rel)
    }

    fn text(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel))
            .unwrap_or_else(|e| panic!("reading /out/{rel} of the guest: {e}"))
    }

    fn json(&self, rel: &str) -> Value {
        serde_json::from_str(&self.text(rel))
            .unwrap_or_else(|e| panic!("/out/{rel} is not JSON: {e}\n{}", self.text(rel)))
    }

    /// An exit code the guest wrote.
    fn code(&self, rel: &str) -> i32 {
        self.text(rel).trim().parse().unwrap()
    }

    /// Panics with a scenario's log when the guest script says it failed.
    fn scenario_ran(&self, name: &str) {
        if self.path(&format!("{name}/failed")).exists() {
            panic!(
                "scenario {name} failed in the guest:\n{}",
                std::fs::read_to_string(self.path(&format!("{name}/log"))).unwrap_or_default()
            );
        }
    }

    /// A lightsnap run's report, checked to have exited 0.
    fn report(&self, dir: &str) -> Value {
        let code = self.code(&format!("{dir}/code"));
        assert_eq!(
            code,
            0,
            "lightsnap in {dir} exited {code}:\n{}\n{}",
            self.text(&format!("{dir}/stderr")),
            self.text(&format!("{dir}/report.json"))
        );
        self.json(&format!("{dir}/report.json"))
    }

    /// The writer's acknowledgements: (sequence number, unix ms).
    fn acks(&self, rel: &str) -> Vec<(u64, f64)> {
        self.text(rel)
            .lines()
            .map(|l| {
                let mut parts = l.split_whitespace();
                (
                    parts.next().unwrap().parse().unwrap(),
                    parts.next().unwrap().parse().unwrap(),
                )
            })
            .collect()
    }

    /// fsck's exit code was 0 (clean), or the panic shows its output.
    fn fsck_clean(&self, dir: &str, name: &str) {
        let code = self.code(&format!("{dir}/fsck-{name}.code"));
        assert_eq!(
            code,
            0,
            "fsck of the {name} snapshot image: {}",
            self.text(&format!("{dir}/fsck-{name}.txt"))
        );
    }
}

/// The fake's CreateDiskSnapshot calls: body and when each was received (unix ms).
fn create_calls(calls: &Value) -> Vec<&Value> {
    calls
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["operation"] == "CreateDiskSnapshot")
        .collect()
}

/// The first CreateDiskSnapshot call whose body has `key` = `value`. The first, not the only:
/// when the fake takes longer to copy a disk than the SDK waits, the SDK retries the call and
/// the retry is refused as a duplicate name, which lightsnap takes as the snapshot its first
/// attempt made (seen here with two guests on two cores).
fn call_for<'a>(calls: &'a Value, key: &str, value: &str) -> &'a Value {
    let found: Vec<&Value> = create_calls(calls)
        .into_iter()
        .filter(|c| c["body"][key] == value)
        .collect();
    assert!(
        !found.is_empty(),
        "no CreateDiskSnapshot call with {key}={value}"
    );
    if found.len() > 1 {
        eprintln!(
            "{} CreateDiskSnapshot calls with {key}={value}: {:?}",
            found.len(),
            found
                .iter()
                .map(|c| (&c["error"], &c["status"]))
                .collect::<Vec<_>>()
        );
    }
    found[0]
}

fn received(call: &Value) -> f64 {
    call["received_at_ms"].as_f64().unwrap()
}

/// Every snapshot of a report, by its source's name.
fn by_source(report: &Value) -> BTreeMap<String, &Value> {
    report["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["source"]["name"].as_str().unwrap().to_string(), s))
        .collect()
}

/// Scenarios 1-4 in one bookworm boot.
#[test]
fn storage_on_nvme() {
    if !lab_or_skip("storage_on_nvme") {
        return;
    }
    let scratch = tempfile::Builder::new()
        .prefix("lightsnap-vm-")
        .tempdir()
        .unwrap();
    let disks = [
        ("DATA", serial(0xd1)),
        ("LVM_A", serial(0xa1)),
        ("LVM_B", serial(0xa2)),
        ("MD_A", serial(0xb1)),
        ("MD_B", serial(0xb2)),
        ("VFAT", serial(0xc1)),
        ("MINIX", serial(0xc2)),
    ];
    let lab = lab_dir(scratch.path(), &disks, true);
    let mut args = vec!["--distro".to_string(), "bookworm".into()];
    for (name, s) in &disks {
        // Small: the fake copies each disk before it answers, and four 64 MB copies at
        // once under TCG outlast the SDK's timeout (then the calls are retried).
        let size = if name.starts_with("DATA") {
            "32M"
        } else {
            "24M"
        };
        args.push("--nvme".into());
        args.push(format!("{s}:{size}"));
    }
    args.push("--copy".into());
    args.push(format!("{}:/opt/lab", lab.display()));
    let b = boot(scratch.path(), &args, &["bash", "/opt/lab/storage.sh"]);
    let calls = b.json("calls.json");
    assert!(b.text("kernel").starts_with("6.1."), "bookworm's kernel");

    // 1. NVMe discovery: no --disk-name, the disk found from the serial in supportCode.
    b.scenario_ran("s1_nvme");
    let report = b.report("s1_nvme");
    let snap = &report["snapshots"][0];
    assert_eq!(snap["source"]["kind"], "disk", "{report}");
    assert_eq!(snap["source"]["name"], "data-1", "{report}");
    assert_eq!(snap["consistency"], "frozen", "{report}");
    let call = call_for(&calls, "diskName", "data-1");
    b.fsck_clean("s1_nvme", "data");
    let n = check_records(
        &b.text("s1_nvme/records-data.log"),
        &b.acks("s1_nvme/acks"),
        received(call),
    );
    eprintln!("1: data-1's image holds {n} records");

    // 2. `/` is the instance's system volume: CreateDiskSnapshot with instanceName, the
    // guest's own root (nvme0n1p1) frozen and thawed; a write to / succeeds after it.
    b.scenario_ran("s2_root");
    let report = b.report("s2_root");
    let snap = &report["snapshots"][0];
    assert_eq!(snap["source"]["kind"], "system_volume", "{report}");
    assert_eq!(snap["source"]["name"], "web-1", "{report}");
    assert_eq!(snap["mount_points"][0], "/", "{report}");
    assert_eq!(snap["consistency"], "frozen", "{report}");
    let call = call_for(&calls, "instanceName", "web-1");
    assert!(call["body"].get("diskName").is_none(), "{call}");
    assert_eq!(
        b.code("s2_root/write.code"),
        0,
        "a write to / after the run did not complete: root left frozen?"
    );
    // The root is partition 1 of the NVMe disk with the root's serial (nvmeXn1p1: which
    // controller is probed first is not fixed).
    let source = b.text("s2_root/root-source");
    let source = source.trim();
    assert!(
        source.starts_with("/dev/nvme") && source.ends_with("n1p1"),
        "/ is on {source}"
    );
    assert_eq!(b.text("s2_root/root-serial").trim(), ROOT_SERIAL);

    // 3. LVM (striped over two disks) and md RAID1 (over two more): one run, two consistency
    // groups of two disks each, the four calls made together; each pair of images attached
    // back gives a clean filesystem with every acknowledged record.
    b.scenario_ran("s3_groups");
    let report = b.report("s3_groups");
    let snaps = by_source(&report);
    assert_eq!(
        snaps.keys().cloned().collect::<Vec<_>>(),
        ["lvm-a", "lvm-b", "md-a", "md-b"],
        "{report}"
    );
    for (disk, mount) in [
        ("lvm-a", "/lvm"),
        ("lvm-b", "/lvm"),
        ("md-a", "/md"),
        ("md-b", "/md"),
    ] {
        assert_eq!(snaps[disk]["mount_points"][0], mount, "{report}");
        assert_eq!(snaps[disk]["consistency"], "frozen", "{report}");
    }
    let group: Vec<&Value> = ["lvm-a", "lvm-b", "md-a", "md-b"]
        .iter()
        .map(|d| call_for(&calls, "diskName", d))
        .collect();
    let times: Vec<f64> = group.iter().map(|c| received(c)).collect();
    let spread = times.iter().cloned().fold(f64::MIN, f64::max)
        - times.iter().cloned().fold(f64::MAX, f64::min);
    let connections: std::collections::BTreeSet<u64> = group
        .iter()
        .map(|c| c["connection"]["id"].as_u64().unwrap())
        .collect();
    // The fake copies each disk's bytes before it answers, so calls made one after another
    // would come on one connection, each after the previous copy.
    assert_eq!(
        connections.len(),
        4,
        "the four calls came on {connections:?}: not made together"
    );
    assert!(
        spread < 1000.0,
        "the four calls were received over {spread} ms"
    );
    eprintln!("3: the four calls within {spread:.1} ms");
    b.fsck_clean("s3_groups", "lvm");
    b.fsck_clean("s3_groups", "md");
    let mdstat = b.text("s3_groups/mdstat");
    assert!(
        mdstat.contains("[UU]"),
        "the RAID1 images did not assemble with both halves: {mdstat}"
    );
    let cut = |a: &str, b_: &str| {
        received(call_for(&calls, "diskName", a)).min(received(call_for(&calls, "diskName", b_)))
    };
    check_records(
        &b.text("s3_groups/records-lvm.log"),
        &b.acks("s3_groups/acks-lvm"),
        cut("lvm-a", "lvm-b"),
    );
    check_records(
        &b.text("s3_groups/records-md.log"),
        &b.acks("s3_groups/acks-md"),
        cut("md-a", "md-b"),
    );

    // 4. vfat (known not to freeze) and minix (EOPNOTSUPP at run time): unmounted, snapshot,
    // remounted with the same options.
    b.scenario_ran("s4_unmount");
    for fs in ["vfat", "minix"] {
        let report = b.report(&format!("s4_unmount/{fs}"));
        let snap = &report["snapshots"][0];
        assert_eq!(snap["consistency"], "unmounted", "{report}");
        assert_eq!(snap["source"]["name"], format!("{fs}-1"), "{report}");
        assert_eq!(snap["fstypes"][0], fs, "{report}");
        let before = b.text(&format!("s4_unmount/options-before-{fs}"));
        let after = b.text(&format!("s4_unmount/options-after-{fs}"));
        assert!(!before.trim().is_empty());
        assert_eq!(before, after, "{fs} came back with other options");
        assert_eq!(b.text(&format!("s4_unmount/content-after-{fs}")), "hello\n");
        b.fsck_clean("s4_unmount", fs);
        let call = call_for(&calls, "diskName", &format!("{fs}-1"));
        assert!(
            call["body"]["tags"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["key"] == "lightsnap:consistency" && t["value"] == "unmounted"),
            "{call}"
        );
    }
}

/// Scenario 6: the guest is hard-reset (QMP `system_reset`) while lightsnap has a data
/// filesystem frozen and its CreateDiskSnapshot call hangs; after the reboot the filesystem
/// mounts, is fsck-clean and holds every record the writer acknowledged, and the next run
/// succeeds.
#[test]
fn power_loss_while_frozen() {
    if !lab_or_skip("power_loss_while_frozen") {
        return;
    }
    let scratch = tempfile::Builder::new()
        .prefix("lightsnap-vm-")
        .tempdir()
        .unwrap();
    let disks = [("DATA", serial(0xd6))];
    let lab = lab_dir(scratch.path(), &disks, true);
    let args: Vec<String> = [
        "--distro",
        "bookworm",
        "--nvme",
        &format!("{}:64M", disks[0].1),
        "--copy",
        &format!("{}:/opt/lab", lab.display()),
        "--reset-on",
        "frozen",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let b = boot(scratch.path(), &args, &["bash", "/opt/lab/powerloss.sh"]);

    // Boot 1: frozen, the call made and hanging, then the reset.
    assert_eq!(b.text("boot1/state").trim(), "frozen");
    call_for(&b.json("boot1/calls.json"), "diskName", "data-1");
    assert_eq!(b.text("events").trim(), "frozen", "the event port");
    let acks = b.acks("boot1/acks");

    // Boot 2: the filesystem as the power loss left it.
    assert_eq!(
        b.code("boot2/mount.code"),
        0,
        "{}",
        b.text("boot2/mount.err")
    );
    assert_eq!(
        b.code("boot2/fsck-live.code"),
        0,
        "{}",
        b.text("boot2/fsck-live.txt")
    );
    // Every record acknowledged before the power went is there, whole.
    let n = check_records(&b.text("boot2/records-live.log"), &acks, f64::INFINITY);
    eprintln!(
        "6: {} records acknowledged, {n} on the disk after the reset",
        acks.len()
    );

    // The next run: nothing left from the interrupted one blocks it.
    let report = b.report("boot2/next");
    assert_eq!(report["snapshots"][0]["consistency"], "frozen", "{report}");
    call_for(&b.json("boot2/calls.json"), "diskName", "data-1");
    b.fsck_clean("boot2", "next");
    check_records(&b.text("boot2/records-next.log"), &acks, f64::INFINITY);
}

/// Scenario 5 on one distribution: the package installed, configured, given credentials as
/// users are told to (root's ~/.aws as `aws configure` writes it; only the fake's endpoint in
/// a drop-in), run by its units (a
/// success with no error in the journal, an injected failure whose error is in it), its
/// timer listed once enabled, then removed and purged, leaving nothing.
fn packages_on(distro: &str, kernel: &str) {
    let test = format!("packages_on_{distro}");
    if !lab_or_skip(&test) {
        return;
    }
    let scratch = tempfile::Builder::new()
        .prefix("lightsnap-vm-")
        .tempdir()
        .unwrap();
    let disks = [("DATA", serial(0xd5))];
    let lab = lab_dir(scratch.path(), &disks, false);
    let deb = deb();
    std::fs::copy(deb, lab.join(deb.file_name().unwrap())).unwrap();
    let args: Vec<String> = [
        "--distro",
        distro,
        "--nvme",
        &format!("{}:64M", disks[0].1),
        "--copy",
        &format!("{}:/opt/lab", lab.display()),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let b = boot(scratch.path(), &args, &["bash", "/opt/lab/package.sh"]);
    eprintln!(
        "5: {} ({}), kernel {}",
        b.text("pkg/os").trim(),
        b.text("pkg/glibc").trim(),
        b.text("pkg/kernel").trim()
    );
    assert!(
        b.text("pkg/kernel").starts_with(&format!("{kernel}.")),
        "{distro}'s own kernel booted: {}",
        b.text("pkg/kernel")
    );

    assert_eq!(
        b.code("pkg/install.code"),
        0,
        "{}",
        b.text("pkg/install.txt")
    );
    // The unit was given the fake's endpoint and nothing else: the credentials and the
    // region come from root's ~/.aws, as `aws configure` writes it.
    let environment = b.text("pkg/unit-environment");
    assert!(
        environment.contains("AWS_ENDPOINT_URL_LIGHTSAIL=")
            && !environment.contains("AWS_ACCESS_KEY_ID")
            && !environment.contains("AWS_SECRET_ACCESS_KEY")
            && !environment.contains("AWS_REGION"),
        "{environment}"
    );
    // A success: the unit started, a snapshot of data-1, nothing at priority err.
    assert_eq!(
        b.code("pkg/start-ok.code"),
        0,
        "systemctl start failed:\n{}",
        b.text("pkg/journal")
    );
    call_for(
        &b.json("pkg/calls-after-success.json"),
        "diskName",
        "data-1",
    );
    // StateDirectory= and RuntimeDirectory= made them (no package script does).
    let directories = b.text("pkg/unit-directories");
    let made: std::collections::BTreeSet<&str> = directories.lines().collect();
    assert_eq!(
        made,
        ["/run/lightsnap", "/var/lib/lightsnap"].into(),
        "{directories}"
    );
    assert_eq!(
        b.text("pkg/err-after-success"),
        "",
        "errors in the journal after a success"
    );
    // The injected failure: the unit failed, and lightsnap's own error is at priority err.
    assert_ne!(
        b.code("pkg/start-fail.code"),
        0,
        "{}",
        b.text("pkg/journal")
    );
    let errors = b.text("pkg/err-after-failure");
    assert!(
        errors.contains("lab-injected failure"),
        "lightsnap's error is not in `journalctl -p err`:\n{errors}\n--- the unit's journal:\n{}",
        b.text("pkg/journal")
    );
    let timers = b.text("pkg/timers");
    assert!(
        timers.contains("lightsnap-snapshot.timer"),
        "the enabled timer is not listed:\n{timers}"
    );
    // Removed and purged: not installed, no unit left, the root as it was before.
    assert_eq!(b.code("pkg/remove.code"), 0, "{}", b.text("pkg/remove.txt"));
    assert_eq!(b.code("pkg/purge.code"), 0, "{}", b.text("pkg/purge.txt"));
    assert!(
        !b.text("pkg/dpkg-status").starts_with("ii")
            && !b.text("pkg/dpkg-status").starts_with("rc"),
        "{}",
        b.text("pkg/dpkg-status")
    );
    let before: std::collections::BTreeSet<String> =
        b.text("pkg/before").lines().map(String::from).collect();
    let left: Vec<String> = b
        .text("pkg/after")
        .lines()
        // systemd's own directory for the stamps of persistent timers, made when the first
        // one is enabled (the stamp in it is the package's to remove, and checked).
        .filter(|l| !before.contains(*l) && *l != "/var/lib/systemd/timers")
        .map(String::from)
        .collect();
    assert!(left.is_empty(), "left after purge: {left:?}");
    assert!(
        !b.text("pkg/units-after")
            .contains("lightsnap-snapshot.timer"),
        "{}",
        b.text("pkg/units-after")
    );
}

#[test]
fn packages_on_bookworm() {
    packages_on("bookworm", "6.1");
}

#[test]
fn packages_on_bullseye() {
    packages_on("bullseye", "5.10");
}

#[test]
fn packages_on_trixie() {
    packages_on("trixie", "6.12");
}

/// scripts/vm and the guest scripts pass shellcheck (no root, no QEMU needed).
#[test]
fn the_lab_scripts_pass_shellcheck() {
    if !tool_or_skip("the_lab_scripts_pass_shellcheck", "shellcheck") {
        return;
    }
    let mut cmd = Command::new("shellcheck");
    cmd.arg(repo().join("scripts/vm"));
    for entry in std::fs::read_dir(repo().join("tests/vm")).unwrap() {
        cmd.arg(entry.unwrap().path());
    }
    run(&mut cmd);
}
