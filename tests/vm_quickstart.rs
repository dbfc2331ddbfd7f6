//! The README's quickstart as a user walks it, as shipped (issues 23 and 26): on booted
//! Debian 11, 12 and 13 guests of the VM lab, together (one boot each), the README's install
//! block and its `<!-- quickstart:run -->` blocks run **verbatim**, in order, as one root
//! shell script, with the .deb that `scripts/package` builds in the directory the install
//! block runs in (`/root`). The blocks are read from README.md when the test runs: a README
//! change that breaks the path breaks this test.
//!
//! Each guest is an instance with a data disk (an NVMe disk, ext4, mounted at `/data` from
//! fstab) and MariaDB (unmasked and started) keeping its data there (`datadir = /data/mysql`,
//! made with mariadb-install-db; a small redo log, so that it fits the small disk the fake
//! copies under TCG), set up by the guest script (`tests/vm/quickstart.sh`) before the
//! README's blocks run. The fake
//! Lightsail runs inside the guest as instance `web-1` in `us-east-1` (the README's example),
//! accepting only the README's example key (`--access-key`/`--secret-key`: another key is
//! refused), and hot-plugs verify's scratch disk as a real NVMe disk (`scripts/vm --hotplug`,
//! the fake's `--attach-command`, as tests/vm_verify.rs), so `setup`'s first snapshot is
//! verified on the guest's kernel, the MariaDB verify hook starting a server on the copy.
//!
//! What the test adds to the user's path, and nothing else — the fake's endpoint
//! (`AWS_ENDPOINT_URL_LIGHTSAIL`, and `AWS_EC2_METADATA_SERVICE_ENDPOINT` for the instance
//! metadata), no credentials anywhere but the README's `/root/.aws`:
//! - for lightsnap's unit, a drop-in `lightsnap-snapshot.service.d/lab.conf`;
//! - for the README's `sudo` commands, `/etc/sudoers.d/lab-endpoint` with `Defaults
//!   env_file=/etc/lab-endpoint.env`: sudo resets the environment, and Debian's sudo (11, 12
//!   and 13 alike) does not read `/etc/environment` (its `/etc/pam.d/sudo` has no `pam_env`;
//!   the guest records that), so a sudoers `env_file` is the one place sudo takes it from;
//! - the script around the blocks: `set -e` (a user stops at the first failure too) and a
//!   line naming each block before it runs.
//!
//! Then, on each guest: the README's setup block again (it must say `nothing to change`, and
//! change nothing under /etc/lightsnap or in the units' state, making only read calls);
//! `systemctl start lightsnap-snapshot.service`, as the timer starts it — the packaged unit
//! with its sandbox (capabilities, system call filter), the credentials only in root's
//! `~/.aws` although the unit has no `$HOME` — with a probe hook of the test's sorting after
//! the MariaDB hook (`90-lab-probe`: it tries to commit a row just before the freeze and
//! just after the thaw, and finds commits blocked both times: the backup lock is held across
//! the frozen window); then the README's status block again (`status`, `check` exit 0).
//! The packaged configuration leaves `metrics_file` off and `setup` does not set it, so the
//! quickstart leaves no metrics file: the test checks that it is unset (tests/monitoring.rs
//! covers the file itself).
//!
//! The guest writes what it saw under /out; every assertion is here. A failure prints each
//! guest's journal of lightsnap's units, the README's output and the fake's call log.
//!
//! Needs root, QEMU and mmdebstrap (`scripts/deps`), and builds the .deb (`scripts/package`).
//! Outside CI a missing requirement is a skip that says why.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use common::run;
use common::vm::{deb, lab_dir, lab_or_skip, repo, scratch_dir};
use serde_json::Value;

const DISTROS: [&str; 3] = ["bullseye", "bookworm", "trixie"];

/// The data disk's NVMe serial (its volume id without the dash).
const DATA_SERIAL: &str = "vol00000000000000da7";

/// The README's example key, which the fake in the guest is started with (and only it).
const EXAMPLE_KEY: &str = "AKIAIOSFODNN7EXAMPLE";
const EXAMPLE_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

/// A fenced ```sh block of README.md: where it starts (1-based line of its first command)
/// and its text, exactly.
#[derive(Debug, Clone)]
struct Block {
    line: usize,
    text: String,
}

/// The blocks the quickstart runs: the install block, then the `quickstart:run` ones.
#[derive(Debug)]
struct Readme {
    install: Block,
    quickstart: Vec<Block>,
}

impl Readme {
    fn read() -> Self {
        let path = repo().join("README.md");
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        // The first ```sh fence after line `from`, and its block.
        let block_after = |from: usize, what: &str| -> Block {
            let start = (from + 1..lines.len())
                .find(|&i| lines[i].starts_with("```"))
                .unwrap_or_else(|| panic!("README.md: no code block after {what}"));
            assert_eq!(
                lines[start].trim_end(),
                "```sh",
                "README.md line {}: the block after {what} is not a ```sh block",
                start + 1
            );
            let end = (start + 1..lines.len())
                .find(|&i| lines[i].starts_with("```"))
                .unwrap_or_else(|| panic!("README.md line {}: unclosed block", start + 1));
            Block {
                line: start + 2,
                text: lines[start + 1..end]
                    .iter()
                    .map(|l| format!("{l}\n"))
                    .collect(),
            }
        };
        let installs: Vec<usize> = (0..lines.len())
            .filter(|&i| lines[i].trim() == "<!-- ANCHOR: install -->")
            .collect();
        assert_eq!(
            installs.len(),
            1,
            "README.md: one `<!-- ANCHOR: install -->` block"
        );
        let install = block_after(installs[0], "<!-- ANCHOR: install -->");
        let quickstart = (0..lines.len())
            .filter(|&i| lines[i].trim() == "<!-- quickstart:run -->")
            .map(|i| block_after(i, "<!-- quickstart:run -->"))
            .collect();
        Readme {
            install,
            quickstart,
        }
    }

    /// The quickstart block whose text has `needle`.
    fn block_with(&self, needle: &str) -> &Block {
        let found: Vec<&Block> = self
            .quickstart
            .iter()
            .filter(|b| b.text.contains(needle))
            .collect();
        assert_eq!(
            found.len(),
            1,
            "README.md: one quickstart:run block with `{needle}`: {:?}",
            self.quickstart
        );
        found[0]
    }

    /// The .deb the install block installs (`./lightsnap_....deb`).
    fn deb_name(&self) -> String {
        self.install
            .text
            .split_whitespace()
            .find_map(|w| w.strip_prefix("./").filter(|n| n.ends_with(".deb")))
            .unwrap_or_else(|| {
                panic!(
                    "README.md's install block names no ./*.deb: {:?}",
                    self.install
                )
            })
            .to_string()
    }
}

/// A shell script of `blocks`, verbatim, each after a line saying where it comes from.
fn script(blocks: &[&Block]) -> String {
    let mut s = String::from(
        "# README.md's blocks, verbatim, in order (tests/vm_quickstart.rs writes this file).\nset -e\n",
    );
    for b in blocks {
        s.push_str(&format!(
            "echo '### README.md:{0}'\necho '### README.md:{0}' >&2\n{1}",
            b.line, b.text
        ));
    }
    s
}

#[test]
fn the_readme_has_the_blocks_the_quickstart_runs() {
    let r = Readme::read();
    assert!(
        r.deb_name().starts_with("lightsnap_") && r.install.text.contains("sudo apt install ./"),
        "{:?}",
        r.install
    );
    // The credentials the fake accepts are the README's example (a guest's fake accepts no
    // other key).
    let keys = r.block_with("/root/.aws/credentials");
    assert!(
        keys.text.contains(EXAMPLE_KEY) && keys.text.contains(EXAMPLE_SECRET),
        "{keys:?}"
    );
    assert!(keys.text.contains("region = us-east-1"), "{keys:?}");
    assert!(r.block_with("lightsnap setup").text.contains("--yes"));
    let status = r.block_with("lightsnap status");
    assert!(status.text.contains("lightsnap check"), "{status:?}");
    r.block_with("systemctl list-timers");
    let all: Vec<&Block> = std::iter::once(&r.install).chain(&r.quickstart).collect();
    let s = script(&all);
    assert!(s.contains(&r.install.text) && s.contains(&status.text));
}

/// One guest: its distribution, its scripts/vm and its /out.
struct Guest {
    distro: &'static str,
    out: PathBuf,
    vm: Option<Child>,
}

impl Guest {
    fn path(&self, rel: &str) -> PathBuf {
        self.out.join("q").join(rel)
    }

    fn text(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel))
            .unwrap_or_else(|e| panic!("{}: reading /out/q/{rel}: {e}", self.distro))
    }

    fn code(&self, rel: &str) -> i32 {
        self.text(rel)
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{}: /out/q/{rel}: {e}", self.distro))
    }

    fn json(&self, rel: &str) -> Value {
        serde_json::from_str(&self.text(rel))
            .unwrap_or_else(|e| panic!("{}: /out/q/{rel} is not JSON: {e}", self.distro))
    }

    /// The fake's calls as of `rel`, as operation names.
    fn operations(&self, rel: &str) -> Vec<String> {
        self.json(rel)
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["operation"].as_str().unwrap().to_string())
            .collect()
    }

    /// What a failure should show: the journal of lightsnap's units, the README's output,
    /// the fake's calls and its stderr.
    fn diagnostics(&self) -> String {
        let read = |rel: &str| std::fs::read_to_string(self.path(rel)).unwrap_or_default();
        let tail = |text: String, n: usize| {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        };
        let calls: Vec<String> = serde_json::from_str::<Value>(&read("calls.json"))
            .or_else(|_| serde_json::from_str::<Value>(&read("calls-readme.json")))
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .map(|c| {
                format!(
                    "{} {} {}",
                    c["operation"].as_str().unwrap_or("?"),
                    c["status"],
                    c["body"]
                )
            })
            .collect();
        format!(
            "=== {} guest\n--- journal of lightsnap's units (end)\n{}\n--- README stdout\n{}\n--- README stderr\n{}\n--- the fake's calls\n{}\n--- the fake's stderr\n{}\n",
            self.distro,
            tail(read("journal"), 150),
            read("readme.out"),
            tail(read("readme.err"), 150),
            calls.join("\n"),
            tail(read("fake.err"), 30),
        )
    }
}

/// Prints every guest's diagnostics when the test fails.
struct OnFailure<'a>(&'a [Guest]);

impl Drop for OnFailure<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for g in self.0 {
                eprintln!("{}", g.diagnostics());
            }
        }
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        if let Some(mut vm) = self.vm.take() {
            let _ = vm.kill();
            let _ = vm.wait();
        }
    }
}

#[test]
fn the_readme_quickstart_as_shipped_on_three_booted_guests() {
    let test = "the_readme_quickstart_as_shipped_on_three_booted_guests";
    if !lab_or_skip(test) {
        return;
    }
    let readme = Readme::read();
    let (scratch, _cleanup) = scratch_dir("lightsnap-vm-quickstart-");
    // The images first, one at a time (cached after the first build).
    for distro in DISTROS {
        run(Command::new(repo().join("scripts/vm")).args(["image", "--distro", distro]));
    }
    let deb = deb();
    let name = readme.deb_name();
    assert_eq!(
        deb.file_name().unwrap().to_str().unwrap(),
        name,
        "README.md's install block installs ./{name}, scripts/package builds {}: the README must name what is built",
        deb.display()
    );

    let lab = lab_dir(&scratch, &[("DATA", DATA_SERIAL.to_string())], false);
    let all: Vec<&Block> = std::iter::once(&readme.install)
        .chain(&readme.quickstart)
        .collect();
    std::fs::write(lab.join("readme.sh"), script(&all)).unwrap();
    std::fs::write(
        lab.join("setup.sh"),
        script(&[readme.block_with("lightsnap setup")]),
    )
    .unwrap();
    std::fs::write(
        lab.join("status.sh"),
        script(&[readme.block_with("lightsnap status")]),
    )
    .unwrap();

    let started = Instant::now();
    let mut guests: Vec<Guest> = DISTROS
        .iter()
        .map(|&distro| {
            let out = scratch.join(format!("out-{distro}"));
            std::fs::create_dir_all(&out).unwrap();
            let vm = Command::new(repo().join("scripts/vm"))
                .args(["--distro", distro, "--hotplug", "--mem", "1024"])
                .args(["--timeout", "1800", "--nvme"])
                // Small: the fake copies the whole disk inside CreateDiskSnapshot (inside the
                // frozen window) and again for the restore, under TCG.
                .arg(format!("{DATA_SERIAL}:64M"))
                .arg("--copy")
                .arg(format!("{}:/opt/lab", lab.display()))
                .arg("--copy")
                .arg(format!("{}:/root/{name}", deb.display()))
                .arg("--out")
                .arg(&out)
                .args(["--", "bash", "/opt/lab/quickstart.sh", "mariadb"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("scripts/vm");
            Guest {
                distro,
                out,
                vm: Some(vm),
            }
        })
        .collect();
    let mut vm_results = Vec::new();
    for g in &mut guests {
        let result = g.vm.take().unwrap().wait_with_output().unwrap();
        eprintln!(
            "=== {} (scripts/vm done at {:.0} s)\n--- stdout\n{}--- stderr\n{}",
            g.distro,
            started.elapsed().as_secs_f64(),
            String::from_utf8_lossy(&result.stdout),
            String::from_utf8_lossy(&result.stderr)
        );
        vm_results.push((g.distro, result.status));
    }
    let _diagnostics = OnFailure(&guests);
    for (distro, status) in vm_results {
        assert!(
            status.success(),
            "{distro}: scripts/vm failed with {status}"
        );
    }
    for g in &guests {
        check_guest(g, &readme);
    }
}

/// The lines of `text` between the marker of the block at README line `line` and the next.
fn output_of(text: &str, line: usize) -> String {
    let marker = format!("### README.md:{line}");
    text.lines()
        .skip_while(|l| *l != marker)
        .skip(1)
        .take_while(|l| !l.starts_with("### README.md:"))
        .map(|l| format!("{l}\n"))
        .collect()
}

fn check_guest(g: &Guest, readme: &Readme) {
    let d = g.distro;
    assert_eq!(g.text("codename").trim(), d);
    eprintln!(
        "{d}: pam_env lines in /etc/pam.d/sudo: {}",
        g.text("pam-env-in-sudo").trim()
    );
    let mariadb = g.text("mariadb");
    assert!(
        mariadb.contains("MariaDB") && mariadb.contains("/data/mysql"),
        "{d}: {mariadb}"
    );

    // 1. The README, verbatim: every block ran and the script ended well.
    let code = g.code("readme.code");
    let (out, err) = (g.text("readme.out"), g.text("readme.err"));
    assert_eq!(
        code, 0,
        "{d}: the README's blocks failed with {code}\n--- stdout\n{out}\n--- stderr\n{err}"
    );
    let setup_block = readme.block_with("lightsnap setup");
    let setup = output_of(&out, setup_block.line);
    let setup_err = output_of(&err, setup_block.line);
    for line in [
        "instance: web-1",
        "  disk data-1: /data",
        "setup: write /etc/lightsnap/config.d/50-setup.toml (mode 644): the configuration fragment (1 snapshot path)",
        "setup: write /etc/lightsnap/hooks.d/20-mysql (mode 755): the MySQL/MariaDB example hook",
        "setup: write /etc/lightsnap/verify.d/20-mysql (mode 755): the MySQL/MariaDB example hook",
        "setup: systemctl enable --now lightsnap-snapshot.timer",
        "setup: lightsnap run --wait: take the first snapshot",
        "setup: lightsnap verify --latest --disk data-1 (LIGHTSNAP_MYSQL_VERIFY_DATA=mysql)",
    ] {
        assert!(
            setup.lines().any(|l| l == line),
            "{d}: setup did not say `{line}`:\n{setup}"
        );
    }
    assert!(
        setup.lines().any(
            |l| l.starts_with("database: MySQL/MariaDB (process mariadbd, pid ")
                && l.ends_with(", data in /data/mysql)")
        ),
        "{d}: {setup}"
    );
    assert!(setup.contains("setup done"), "{d}: {setup}");
    // The first snapshot with the hook (its lock, then its release), and its verification
    // starting MariaDB on the restored copy.
    let blocked = setup_err
        .lines()
        .position(|l| l.starts_with("mysql hook: commits blocked (BACKUP STAGE BLOCK_COMMIT,"));
    let released = setup_err
        .lines()
        .position(|l| l.starts_with("mysql hook: lock released"));
    assert!(
        matches!((blocked, released), (Some(b), Some(r)) if b < r),
        "{d}: the MariaDB hook's lock and release around setup's snapshot:\n{setup_err}"
    );
    let checked = setup_err
        .lines()
        .find(|l| l.starts_with("mysql hook: the restored copy of "))
        .unwrap_or_else(|| panic!("{d}: no verify by the MariaDB hook:\n{setup_err}"));
    let tables: u32 = checked
        .rsplit_once('(')
        .and_then(|(_, n)| n.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    assert!(
        checked.contains("/mysql started and checked clean") && tables > 0,
        "{d}: {checked}"
    );
    let timers = output_of(&out, readme.block_with("systemctl list-timers").line);
    assert!(
        timers.contains("lightsnap-snapshot.timer")
            && timers.contains("lightsnap-snapshot.service"),
        "{d}: {timers}"
    );

    // What setup made, through the fake (which accepts the README's key only): one snapshot,
    // of data-1, then the restore rehearsal on a hot-plugged disk, the verdict tagged.
    let ops = g.operations("calls-readme.json");
    // (A call may be sent twice: the fake copies the disk before it answers, and under TCG
    // that can outlast the SDK's timeout; lightsnap then finds the snapshot made.)
    let creates = snapshots_created(g, "calls-readme.json");
    assert_eq!(creates.len(), 1, "{d}: {ops:?}");
    assert_eq!(creates[0]["body"]["diskName"], "data-1", "{d}");
    let rehearsal: Vec<&str> = ops
        .iter()
        .map(String::as_str)
        .filter(|o| {
            [
                "CreateDiskFromSnapshot",
                "AttachDisk",
                "DetachDisk",
                "DeleteDisk",
            ]
            .contains(o)
        })
        .collect();
    assert_eq!(
        rehearsal,
        [
            "CreateDiskFromSnapshot",
            "AttachDisk",
            "DetachDisk",
            "DeleteDisk"
        ],
        "{d}"
    );
    // Every API call signed with the README's key (the only one the fake accepts) for the
    // README's region.
    let all_calls = g.json("calls.json");
    let unsigned: Vec<&Value> = all_calls
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| !c["operation"].as_str().unwrap().starts_with("IMDS "))
        .filter(|c| c["region"] != "us-east-1")
        .collect();
    assert!(
        unsigned.is_empty(),
        "{d}: calls not signed for us-east-1 with the README's key: {unsigned:?}"
    );
    let attach = g.text("attach-calls");
    let attach: Vec<&str> = attach.lines().collect();
    assert!(
        attach.len() == 2 && attach[0].starts_with("attach ") && attach[1].starts_with("detach "),
        "{d}: the scratch disk plugged in and out once: {attach:?}"
    );
    let first = creates[0]["body"]["diskSnapshotName"].as_str().unwrap();
    let snapshots = g.json("snapshots.json");
    let tag = |snap: &str, key: &str| -> Option<String> {
        snapshots["diskSnapshots"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == snap)?["tags"]
            .as_array()?
            .iter()
            .find(|t| t["key"] == key)
            .and_then(|t| t["value"].as_str().map(String::from))
    };
    assert_eq!(
        tag(first, "lightsnap:verified").as_deref(),
        Some("clean"),
        "{d}: {snapshots}"
    );
    assert_eq!(
        tag(first, "lightsnap:owner").as_deref(),
        Some("us-east-1/web-1"),
        "{d}"
    );

    // 2. Setup again: nothing to change, nothing changed, only reads.
    let code = g.code("setup2.code");
    let again = g.text("setup2.out");
    assert_eq!(code, 0, "{d}: {again}\n{}", g.text("setup2.err"));
    assert!(
        again.lines().any(|l| l.starts_with(
            "nothing to change: the configuration, the hooks and the timer are as chosen, and every chosen disk has a verified snapshot ("
        )),
        "{d}: {again}"
    );
    assert!(!again.contains("setup: "), "{d}: {again}");
    let (before, after) = (g.text("state-1"), g.text("state-2"));
    assert_eq!(before, after, "{d}: the second setup changed something");
    for want in [
        "lightsnap-snapshot.timer enabled active",
        "/etc/lightsnap/config.d/50-setup.toml f 644 0 ",
        "/etc/lightsnap/hooks.d/20-mysql f 755 0 ",
        "/etc/lightsnap/verify.d/20-mysql f 755 0 ",
    ] {
        assert!(
            before.lines().any(|l| l.starts_with(want)),
            "{d}: `{want}` in\n{before}"
        );
    }
    let n_readme = g.operations("calls-readme.json").len();
    let second: Vec<String> = g.operations("calls-setup2.json")[n_readme..].to_vec();
    assert!(
        !second.is_empty()
            && second
                .iter()
                .all(|o| o.starts_with("Get") || o.starts_with("IMDS ")),
        "{d}: the second setup's calls: {second:?}"
    );

    // 3. The timer's run: the packaged unit, its sandbox, root's ~/.aws only.
    let environment = g.text("unit-environment");
    assert!(
        environment.contains("AWS_ENDPOINT_URL_LIGHTSAIL=")
            && !environment.contains("AWS_ACCESS_KEY_ID")
            && !environment.contains("AWS_SECRET_ACCESS_KEY")
            && !environment.contains("HOME="),
        "{d}: {environment}"
    );
    let journal = g.text("service-journal");
    assert_eq!(g.code("start.code"), 0, "{d}:\n{journal}");
    assert_eq!(g.text("result").trim(), "success", "{d}:\n{journal}");
    let n_setup2 = g.operations("calls-setup2.json").len();
    let timer_creates: Vec<Value> = snapshots_created(g, "calls.json")
        .into_iter()
        .skip(1)
        .collect();
    assert_eq!(
        timer_creates.len(),
        1,
        "{d}: {:?}",
        &g.operations("calls.json")[n_setup2..]
    );
    let body = &timer_creates[0]["body"];
    assert_eq!(body["diskName"], "data-1", "{d}: {body}");
    assert!(
        body["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["key"] == "lightsnap:trigger" && t["value"] == "timer"),
        "{d}: {body}"
    );
    let jl: Vec<&str> = journal.lines().collect();
    let blocked = jl
        .iter()
        .position(|l| l.starts_with("mysql hook: commits blocked (BACKUP STAGE BLOCK_COMMIT,"));
    let released = jl
        .iter()
        .position(|l| l.starts_with("mysql hook: lock released"));
    assert!(
        matches!((blocked, released), (Some(b), Some(r)) if b < r),
        "{d}: the MariaDB hook under the unit:\n{journal}"
    );
    // The probe found commits blocked just before the freeze and just after the thaw.
    for phase in ["pre-freeze", "post-thaw"] {
        let probe = g.text(&format!("probe/{phase}"));
        let why = g.text(&format!("probe/{phase}.err"));
        assert_eq!(probe.trim(), "blocked", "{d}: a commit at {phase}: {why}");
        assert!(why.contains("Lock wait timeout"), "{d}: {phase}: {why}");
    }
    // Released after the run: a commit goes through; the probes' rows never did.
    let orders = g.text("orders-after");
    assert_eq!(
        orders.lines().collect::<Vec<_>>(),
        ["first", "second", "third", "after"],
        "{d}: {orders}"
    );

    // 4. How it went: the README's status block (check exits 0), the state the unit left.
    let status_block = readme.block_with("lightsnap status");
    let status_out = g.text("status.out");
    assert_eq!(
        g.code("status.code"),
        0,
        "{d}: {status_out}\n{}",
        g.text("status.err")
    );
    assert!(
        output_of(&status_out, status_block.line).contains("/data"),
        "{d}: {status_out}"
    );
    let status = g.json("status.json");
    let targets = status["targets"].as_array().unwrap();
    let data = targets
        .iter()
        .find(|t| t["target"] == "/data")
        .unwrap_or_else(|| panic!("{d}: /data in {status}"));
    let timer_snapshot = body["diskSnapshotName"].as_str().unwrap();
    assert_eq!(
        data["last_success"]["snapshot"], timer_snapshot,
        "{d}: {data}"
    );
    assert_eq!(data["last_success"]["consistency"], "frozen", "{d}: {data}");
    assert_eq!(data["consecutive_failures"], 0, "{d}: {data}");
    assert_eq!(data["last_verification"]["result"], "clean", "{d}: {data}");
    // No metrics file: the packaged configuration leaves metrics_file off, setup sets none.
    let config = g.json("config.json");
    assert!(
        !config["settings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["key"] == "metrics_file"),
        "{d}: {config}"
    );
}

/// The fake's CreateDiskSnapshot calls in `rel`, the first of each snapshot name (a call
/// the SDK sent again after its timeout names the same snapshot).
fn snapshots_created(g: &Guest, rel: &str) -> Vec<Value> {
    let mut seen = Vec::new();
    g.json(rel)
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["operation"] == "CreateDiskSnapshot")
        .filter(|c| {
            let name = c["body"]["diskSnapshotName"].clone();
            let new = !seen.contains(&name);
            seen.push(name);
            new
        })
        .cloned()
        .collect()
}
