//! Operator features end to end (issue 6): snapshot names and tags, `--wait`, `list`, `prune`,
//! `run`'s retention, `--output json` (its schema pinned by the golden files in
//! `tests/golden/`), the exit codes as documented, the configuration (fragments, ownership,
//! errors naming file and line), and hooks (the mechanism with shell hooks; the packaged
//! PostgreSQL example against a real PostgreSQL whose data directory is on the frozen
//! filesystem).
//!
//! Every run gets a configuration root of its own in the scratch directory, so the host's
//! `/etc/lightsnap` never applies. Tests that freeze, or that write configuration files (which
//! must be root-owned), are root only; CI runs them as root.
//!
//! Golden files: `UPDATE_GOLDEN=1 cargo test -p lightsnap --test operator` rewrites them from
//! what the tests see; review the diff, and describe a schema change in the README.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use common::*;
use fake_lightsail::seed::SeedSnapshot;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// A snapshot that exists before the run.
fn seeded(
    name: &str,
    disk: &str,
    age: &str,
    state: &str,
    auto: bool,
    tags: &[(&str, &str)],
) -> SeedSnapshot {
    SeedSnapshot {
        name: name.into(),
        disk: disk.into(),
        age: age.into(),
        auto,
        state: state.into(),
        tags: tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
    }
}

/// The tags lightsnap puts on its own snapshots (the owner tag, this instance's, is what
/// marks them as this instance's).
const OWN: &[(&str, &str)] = &[
    ("lightsnap:consistency", "frozen"),
    ("lightsnap:trigger", "timer"),
    ("lightsnap:owner", "us-east-1/web-1"),
];

/// The snapshots `list` and `prune` are tested on, of two disks. What each test expects
/// follows from the ages, states and owners here.
fn fixture() -> Vec<SeedSnapshot> {
    vec![
        seeded("d1-new", "data-1", "1d", "completed", false, OWN),
        seeded("d1-mid", "data-1", "10d", "completed", false, OWN),
        seeded("d1-old", "data-1", "40d", "completed", false, OWN),
        seeded(
            "d1-oldest",
            "data-1",
            "50d",
            "completed",
            false,
            &[
                ("lightsnap:consistency", "unmounted"),
                ("lightsnap:owner", "us-east-1/web-1"),
            ],
        ),
        seeded("d1-pending", "data-1", "60d", "pending", false, OWN),
        seeded("d1-error", "data-1", "65d", "error", false, OWN),
        // Lightsail's automatic snapshots: never lightsnap's, even carrying its tag.
        seeded("d1-auto", "data-1", "70d", "completed", true, &[]),
        seeded("d1-auto-tagged", "data-1", "75d", "completed", true, OWN),
        // Someone else's.
        seeded(
            "d1-foreign",
            "data-1",
            "90d",
            "completed",
            false,
            &[("owner", "ops")],
        ),
        seeded("d2-new", "data-2", "2d", "completed", false, OWN),
        seeded("d2-foreign", "data-2", "3d", "completed", false, &[]),
        seeded("d2-old", "data-2", "45d", "completed", false, OWN),
    ]
}

/// A fake holding [`fixture`]'s snapshots (no filesystem needed: list and prune freeze
/// nothing).
fn fixture_fake(scratch: &Scratch) -> Fake {
    let mut s = seed(
        &[
            ("data-1", Path::new("/dev/xvdf")),
            ("data-2", Path::new("/dev/xvdg")),
        ],
        None,
    );
    s.disks[0].size_gb = 8;
    s.disks[1].size_gb = 16;
    s.disk_snapshots = fixture();
    fake_with(scratch, s, Duration::ZERO)
}

/// The snapshots the fake was asked to delete, sorted.
fn delete_calls(fake: &Fake) -> Vec<String> {
    let mut names: Vec<String> = fake
        .calls()
        .into_iter()
        .filter(|c| c.operation == "DeleteDiskSnapshot")
        .map(|c| c.body["diskSnapshotName"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

fn sorted(names: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

/// The fixture's names without `gone`, sorted.
fn fixture_without(gone: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = fixture()
        .into_iter()
        .map(|s| s.name)
        .filter(|n| !gone.contains(&n.as_str()))
        .collect();
    v.sort();
    v
}

/// The tags of a CreateDiskSnapshot call, as a map.
fn tags_of(call: &fake_lightsail::Call) -> BTreeMap<String, String> {
    call.body["tags"]
        .as_array()
        .expect("tags sent")
        .iter()
        .map(|t| {
            (
                t["key"].as_str().unwrap().to_string(),
                t["value"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

type Setup = OneDisk;

fn setup(test: &str) -> Option<Setup> {
    OneDisk::new(test)
}

fn setup_with(test: &str, duration: Duration, snapshots: Vec<SeedSnapshot>) -> Option<Setup> {
    OneDisk::with(test, duration, snapshots)
}

/// The operator tests' own way to run a snapshot.
trait Snap {
    /// `lightsnap freeze-and-snap --disk-name data-1 <mount>` plus `args`.
    fn snap(&self, args: &[&str]) -> RunResult;
}

impl Snap for OneDisk {
    fn snap(&self, args: &[&str]) -> RunResult {
        finish(
            configured_lightsnap(&self.scratch, &self.fake)
                .args(["freeze-and-snap", "--disk-name", "data-1"])
                .args(args)
                .arg(&self.fs.mount_point),
        )
    }
}

/// `YYYYMMDD-HHMMSS` of a time, in UTC.
fn stamp(t: SystemTime) -> String {
    let s = humantime::format_rfc3339_seconds(t).to_string();
    format!(
        "{}{}{}-{}{}{}",
        &s[0..4],
        &s[5..7],
        &s[8..10],
        &s[11..13],
        &s[14..16],
        &s[17..19]
    )
}

/// Detaches a loop device on drop.
struct Detach(String);

impl Drop for Detach {
    fn drop(&mut self) {
        let _ = Command::new("losetup")
            .arg("-d")
            .arg(&self.0)
            .stderr(Stdio::null())
            .status();
    }
}

/// Reads a file from an ext4 snapshot image, mounted read-only without replaying anything.
fn read_from_image(scratch: &Scratch, image: &Path, file: &str) -> String {
    let out = run(Command::new("losetup")
        .args(["--find", "--show", "--read-only"])
        .arg(image));
    let device = Detach(String::from_utf8_lossy(&out.stdout).trim().to_string());
    let dir = scratch.path().join(format!(
        "image-{}",
        image.file_stem().unwrap().to_string_lossy()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    run(Command::new("mount")
        .args(["-o", "ro,noload"])
        .arg(&device.0)
        .arg(&dir));
    let _unmount = Unmount(dir.clone());
    std::fs::read_to_string(dir.join(file)).unwrap_or_default()
}

#[test]
fn the_normaliser_hides_only_what_changes_between_runs() {
    let mut v = json!({
        "created_at": "2026-11-24T19:30:00Z",
        "window_ms": 14.2,
        "size_gb": 8,
        "operation_id": null,
        "name": "/tmp/x/data on /dev/loop12, /dev/loop3p1",
        "tags": { "lightsnap:host": "vm", "env": "prod" },
    });
    normalise(&mut v, "/tmp/x");
    assert_eq!(
        v,
        json!({
            "created_at": "<created_at>",
            "window_ms": 0.0,
            "size_gb": 8,
            "operation_id": null,
            "name": "<scratch>/data on /dev/loopN, /dev/loopNp1",
            "tags": { "lightsnap:host": "<lightsnap:host>", "env": "prod" },
        })
    );
}

// ---------------------------------------------------------------------------------------
// Exit codes, as documented
// ---------------------------------------------------------------------------------------

/// The codes of the `| code | meaning |` table of the manual's "Exit codes" page.
fn readme_exit_codes() -> Vec<u32> {
    let page = include_str!("../docs/src/exit-codes.md");
    let table = page
        .strip_prefix("# Exit codes")
        .expect("the manual's exit codes page starts with its title")
        .split("\n#")
        .next()
        .unwrap();
    let mut codes = Vec::new();
    for line in table.lines().filter(|l| l.starts_with("| ")) {
        let cell = line.split('|').nth(1).unwrap().trim();
        for n in cell.split('/') {
            if let Ok(n) = n.trim().parse() {
                codes.push(n);
            }
        }
    }
    codes.sort();
    codes
}

#[test]
fn the_exit_codes_in_the_readme_are_those_of_help() {
    let out = run(Command::new(env!("CARGO_BIN_EXE_lightsnap")).arg("--help"));
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    let section = help
        .split("Exit codes:")
        .nth(1)
        .expect("--help lists the exit codes");
    let mut codes: Vec<u32> = Vec::new();
    for line in section.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        for n in first.split('/') {
            if let Ok(n) = n.parse() {
                codes.push(n);
            }
        }
    }
    codes.sort();
    assert!(codes.contains(&15), "--help: {help}");
    assert_eq!(
        readme_exit_codes(),
        codes,
        "docs/src/exit-codes.md's table and `lightsnap --help` disagree"
    );
}

// ---------------------------------------------------------------------------------------
// list
// ---------------------------------------------------------------------------------------

fn list(scratch: &Scratch, fake: &Fake, args: &[&str]) -> RunResult {
    finish(configured_lightsnap(scratch, fake).arg("list").args(args))
}

fn listed_names(doc: &Value) -> Vec<String> {
    doc["snapshots"]
        .as_array()
        .unwrap_or_else(|| panic!("no snapshots list: {doc}"))
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn list_shows_lightsnaps_own_newest_first_and_filters_by_disk() {
    let scratch = Scratch::new();
    let fake = fixture_fake(&scratch);

    // This instance's: tagged lightsnap:owner with its value, not automatic, whatever the state.
    let r = list(&scratch, &fake, &["--output", "json"]);
    assert_eq!(r.code, 0, "{r:?}");
    let doc = json_doc(&r);
    assert_eq!(
        listed_names(&doc),
        vec![
            "d1-new",
            "d2-new",
            "d1-mid",
            "d1-old",
            "d2-old",
            "d1-oldest",
            "d1-pending",
            "d1-error"
        ],
        "own snapshots, newest first"
    );
    golden("list", &doc, &scratch);

    // --all: everything, automatic and others' included.
    let r = list(&scratch, &fake, &["--all", "--output", "json"]);
    assert_eq!(r.code, 0, "{r:?}");
    let doc = json_doc(&r);
    assert_eq!(listed_names(&doc).len(), fixture().len(), "{doc}");
    let auto = doc["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "d1-auto-tagged")
        .unwrap();
    assert_eq!(auto["auto"], true);
    assert_eq!(
        auto["own"], false,
        "an automatic snapshot is never lightsnap's"
    );

    // --disk, with and without --all.
    let r = list(&scratch, &fake, &["--disk", "data-2", "--output", "json"]);
    assert_eq!(listed_names(&json_doc(&r)), vec!["d2-new", "d2-old"]);
    let r = list(
        &scratch,
        &fake,
        &["--disk", "data-2", "--all", "--output", "json"],
    );
    let doc = json_doc(&r);
    assert_eq!(listed_names(&doc), vec!["d2-new", "d2-foreign", "d2-old"]);
    golden("list-disk-all", &doc, &scratch);
    let r = list(&scratch, &fake, &["--disk", "nope-1", "--output", "json"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(listed_names(&json_doc(&r)).is_empty());
}

#[test]
fn list_for_people_is_a_short_table() {
    let scratch = Scratch::new();
    let fake = fixture_fake(&scratch);
    let r = list(&scratch, &fake, &["--disk", "data-1"]);
    assert_eq!(r.code, 0, "{r:?}");
    let lines: Vec<&str> = r.stdout.lines().collect();
    for col in [
        "NAME",
        "DISK",
        "STATE",
        "PROGRESS",
        "CREATED",
        "SIZE",
        "CONSISTENCY",
        "OWNER",
    ] {
        assert!(lines[0].contains(col), "header lacks {col}: {r:?}");
    }
    assert_eq!(lines.len(), 1 + 6, "header and data-1's six own: {r:?}");
    let row = |name: &str| -> Vec<&str> {
        lines
            .iter()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no row for {name}: {r:?}"))
            .split_whitespace()
            .collect()
    };
    // NAME DISK STATE PROGRESS DATE TIME SIZE CONSISTENCY OWNER
    assert_eq!(
        row("d1-pending")[1..4],
        ["data-1", "pending", "0%"],
        "{r:?}"
    );
    assert_eq!(row("d1-new")[2..4], ["completed", "100%"]);
    assert_eq!(
        row("d1-new")[6..],
        ["8G", "frozen", "us-east-1/web-1"],
        "data-1 is 8 GB"
    );
    assert_eq!(row("d1-oldest")[7], "unmounted");
    // The date of a one-day-old snapshot is yesterday's (or today's, just after midnight).
    let yesterday = SystemTime::now() - Duration::from_secs(86_400);
    let date = humantime::format_rfc3339_seconds(yesterday).to_string();
    assert_eq!(row("d1-new")[4], &date[..10], "{r:?}");
}

// ---------------------------------------------------------------------------------------
// prune
// ---------------------------------------------------------------------------------------

fn prune(scratch: &Scratch, fake: &Fake, args: &[&str]) -> RunResult {
    let mut cmd = configured_lightsnap(scratch, fake);
    if args.contains(&"--all") {
        // Snapshots that are not this instance's lightsnap's: an administrator's prune.
        as_admin(&mut cmd);
    }
    finish(cmd.arg("prune").args(args))
}

/// What each rule deletes of the fixture: never pending, error or automatic snapshots,
/// others' only with --all; `keep` counts per disk.
#[test]
fn prune_deletes_only_lightsnaps_own_completed_snapshots() {
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec!["--keep", "1"],
            vec!["d1-mid", "d1-old", "d1-oldest", "d2-old"],
        ),
        (
            vec!["--keep", "1", "--all"],
            vec![
                "d1-mid",
                "d1-old",
                "d1-oldest",
                "d1-foreign",
                "d2-foreign",
                "d2-old",
            ],
        ),
        (
            vec!["--older-than", "30d"],
            vec!["d1-old", "d1-oldest", "d2-old"],
        ),
        (
            vec!["--older-than", "30d", "--disk", "data-1"],
            vec!["d1-old", "d1-oldest"],
        ),
        (
            vec!["--older-than", "30d", "--all"],
            vec!["d1-old", "d1-oldest", "d1-foreign", "d2-old"],
        ),
        // Both: beyond the newest 2 of its disk *and* older than 30 days.
        (
            vec!["--keep", "2", "--older-than", "30d"],
            vec!["d1-old", "d1-oldest"],
        ),
        (
            vec!["--keep", "0", "--disk", "data-2"],
            vec!["d2-new", "d2-old"],
        ),
        (vec!["--keep", "100"], vec![]),
    ];
    for (args, deleted) in cases {
        let scratch = Scratch::new();
        let fake = fixture_fake(&scratch);
        let mut with_json = args.clone();
        with_json.extend(["--output", "json"]);
        let r = prune(&scratch, &fake, &with_json);
        assert_eq!(r.code, 0, "{args:?}: {r:?}");
        let doc = json_doc(&r);
        let said: Vec<String> = {
            let mut v: Vec<String> = doc["deleted"]
                .as_array()
                .unwrap_or_else(|| panic!("{args:?}: {doc}"))
                .iter()
                .map(|s| s["name"].as_str().unwrap().to_string())
                .collect();
            v.sort();
            v
        };
        assert_eq!(said, sorted(&deleted), "{args:?} says it deleted");
        assert_eq!(delete_calls(&fake), sorted(&deleted), "{args:?} deleted");
        assert_eq!(remaining(&fake), fixture_without(&deleted), "{args:?}");
        for never in ["d1-pending", "d1-error", "d1-auto", "d1-auto-tagged"] {
            assert!(remaining(&fake).contains(&never.to_string()), "{args:?}");
        }
        if args == ["--keep", "1"] {
            golden("prune", &doc, &scratch);
        }
    }
}

#[test]
fn prune_dry_run_deletes_nothing_and_says_what_it_would() {
    let scratch = Scratch::new();
    let fake = fixture_fake(&scratch);
    let r = prune(&scratch, &fake, &["--older-than", "30d", "--dry-run"]);
    assert_eq!(r.code, 0, "{r:?}");
    for name in ["d1-old", "d1-oldest", "d2-old"] {
        assert!(
            r.stdout
                .lines()
                .any(|l| l.starts_with(&format!("would delete {name} "))),
            "{r:?}"
        );
    }
    assert_eq!(r.stdout.lines().count(), 3, "{r:?}");
    let r = prune(
        &scratch,
        &fake,
        &["--older-than", "30d", "--dry-run", "--output", "json"],
    );
    let doc = json_doc(&r);
    assert_eq!(doc["dry_run"], true);
    assert_eq!(doc["deleted"].as_array().unwrap().len(), 3, "{doc}");
    golden("prune-dry-run", &doc, &scratch);
    assert!(delete_calls(&fake).is_empty());
    assert_eq!(remaining(&fake), fixture_without(&[]));

    // And for real, in words: one line per snapshot deleted.
    let r = prune(&scratch, &fake, &["--older-than", "30d"]);
    assert_eq!(r.code, 0, "{r:?}");
    for name in ["d1-old", "d1-oldest", "d2-old"] {
        assert!(
            r.stdout
                .lines()
                .any(|l| l.starts_with(&format!("deleted {name} "))),
            "{r:?}"
        );
    }
    let r = prune(&scratch, &fake, &["--older-than", "30d"]);
    assert_eq!(r.stdout.trim(), "nothing to prune", "{r:?}");
}

#[test]
fn prune_needs_a_rule() {
    let scratch = Scratch::new();
    let fake = fixture_fake(&scratch);
    let r = prune(&scratch, &fake, &[]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("--keep"), "{r:?}");
    assert!(fake.calls().is_empty(), "nothing asked of Lightsail");
}

#[test]
fn a_failed_delete_does_not_hide_what_was_deleted() {
    let scratch = Scratch::new();
    let fake = fixture_fake(&scratch);
    fake.add_fault(Fault {
        operation: Some("DeleteDiskSnapshot".into()),
        kind: FaultKind::Error {
            code: "OperationFailureException".into(),
            message: Some("the snapshot is in use".into()),
            status: None,
        },
        count: Some(1),
    });
    let r = prune(&scratch, &fake, &["--keep", "1", "--output", "json"]);
    assert_eq!(r.code, 10, "Lightsail refused one delete: {r:?}");
    let doc = json_doc(&r);
    let names = |key: &str| -> Vec<String> {
        let mut v: Vec<String> = doc[key]
            .as_array()
            .unwrap_or_else(|| panic!("no {key}: {doc}"))
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    let deleted = names("deleted");
    let failed = names("failed");
    assert_eq!(failed.len(), 1, "{doc}");
    assert_eq!(deleted.len(), 3, "the others were still deleted: {doc}");
    let mut all = [deleted.clone(), failed.clone()].concat();
    all.sort();
    assert_eq!(all, sorted(&["d1-mid", "d1-old", "d1-oldest", "d2-old"]));
    assert!(remaining(&fake).contains(&failed[0]));
    assert!(doc["failed"][0]["error"]
        .as_str()
        .unwrap()
        .contains("OperationFailureException"));
    assert_eq!(doc["error"]["exit_code"], 10, "{doc}");
    assert!(r.stderr.contains("the snapshot is in use"), "{r:?}");
}

#[test]
fn prune_takes_its_rule_from_the_configuration_unless_given_one() {
    if !root_or_skip("prune_takes_its_rule_from_the_configuration_unless_given_one") {
        return;
    }
    let scratch = Scratch::new();
    write_conf(
        &scratch,
        "etc/lightsnap/config.toml",
        "[retention]\nkeep = 2\nolder_than = \"30d\"\n",
    );
    // The configuration's rule: beyond the newest 2 *and* older than 30 days.
    let fake = fixture_fake(&scratch);
    let r = prune(&scratch, &fake, &["--dry-run", "--output", "json"]);
    assert_eq!(r.code, 0, "{r:?}");
    let doc = json_doc(&r);
    assert_eq!(doc["rule"], json!({"keep": 2, "older_than_s": 30 * 86_400}));
    assert_eq!(doc["deleted"].as_array().unwrap().len(), 2, "{doc}");
    // A rule on the command line replaces the configuration's as a whole: --keep 1 alone
    // keeps one per disk, whatever the configured age limit.
    let r = prune(&scratch, &fake, &["--keep", "1", "--output", "json"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        json_doc(&r)["rule"],
        json!({"keep": 1, "older_than_s": null})
    );
    assert_eq!(
        delete_calls(&fake),
        sorted(&["d1-mid", "d1-old", "d1-oldest", "d2-old"])
    );
}

// ---------------------------------------------------------------------------------------
// Names and tags
// ---------------------------------------------------------------------------------------

#[test]
fn the_default_name_is_the_disk_and_the_utc_time() {
    let Some(s) = setup("the_default_name_is_the_disk_and_the_utc_time") else {
        return;
    };
    let before = stamp(SystemTime::now());
    let r = s.snap(&[]);
    let after = stamp(SystemTime::now());
    assert_eq!(r.code, 0, "{r:?}");
    let calls = create_calls(&s.fake);
    let name = calls[0].body["diskSnapshotName"].as_str().unwrap();
    let when = name
        .strip_prefix("data-1-")
        .unwrap_or_else(|| panic!("{name}"));
    assert!(
        when.len() == 15
            && when[..8].chars().all(|c| c.is_ascii_digit())
            && &when[8..9] == "-"
            && when[9..].chars().all(|c| c.is_ascii_digit()),
        "{name}"
    );
    assert!(
        before.as_str() <= when && when <= after.as_str(),
        "{when} is not between {before} and {after}"
    );
    assert!(r
        .stdout
        .contains(&format!("snapshot {name} of disk data-1")));
}

#[test]
fn the_name_template_comes_from_the_configuration() {
    let Some(s) = setup("the_name_template_comes_from_the_configuration") else {
        return;
    };
    write_conf(
        &s.scratch,
        "etc/lightsnap/config.toml",
        "name_template = \"nightly_{disk}-{utc:%Y%m%d}\"\n",
    );
    let before = stamp(SystemTime::now());
    let r = s.snap(&[]);
    let after = stamp(SystemTime::now());
    assert_eq!(r.code, 0, "{r:?}");
    let name = create_calls(&s.fake)[0].body["diskSnapshotName"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        [&before[..8], &after[..8]]
            .iter()
            .any(|day| name == format!("nightly_data-1-{day}")),
        "{name}"
    );
    // --snapshot-name overrides it.
    let r = s.snap(&["--snapshot-name", "by-hand"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(create_calls(&s.fake)[1].body["diskSnapshotName"], "by-hand");
}

#[test]
fn names_are_checked_before_anything_is_frozen() {
    if !root_or_skip("names_are_checked_before_anything_is_frozen") {
        return;
    }
    let scratch = Scratch::new();
    let fs = LoopFs::create(&scratch, "data", FsKind::Ext4);
    // A disk whose name is valid but leaves no room for the template's timestamp.
    let long_disk = format!("d{}", "x".repeat(239));
    let mut sd = seed(
        &[
            ("data-1", &fs.device),
            (&long_disk, &fs.device),
            ("nocopy-1", &fs.device),
        ],
        None,
    );
    // The fake cannot store an image named after a 255-character snapshot (a file name is
    // 255 bytes at most, `.img` included): the longest name is taken of a disk it does not
    // copy.
    sd.disks[2].backing = None;
    sd.disk_snapshots = vec![seeded("taken-1", "data-1", "1h", "completed", false, OWN)];
    let fake = fake_with(&scratch, sd, Duration::ZERO);
    let s = OneDisk { scratch, fs, fake };

    let at_limit = "n".repeat(255);
    let too_long = "n".repeat(256);
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (
            vec!["--snapshot-name", too_long.as_str()],
            2,
            "not a valid Lightsail name",
        ),
        (
            vec!["--snapshot-name", "x"],
            2,
            "not a valid Lightsail name",
        ),
        (
            vec!["--snapshot-name", "bad_"],
            0,
            "", // '_' is a word character: valid
        ),
        (vec!["--snapshot-name", "taken-1"], 2, "already exists"),
    ];
    for (args, code, needle) in cases {
        let r = s.snap(&args);
        assert_eq!(r.code, code, "{args:?}: {r:?}");
        assert!(r.stderr.contains(needle), "{args:?}: {r:?}");
        assert!(!s.fs.is_frozen());
    }
    assert_eq!(create_calls(&s.fake).len(), 1, "only bad_ was taken");
    // The template's result is checked too, once the disk is known, still before freezing.
    let r = finish(
        configured_lightsnap(&s.scratch, &s.fake)
            .args(["freeze-and-snap", "--disk-name", &long_disk])
            .arg(&s.fs.mount_point),
    );
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("not a valid Lightsail name"), "{r:?}");
    assert!(!s.fs.is_frozen());
    assert_eq!(create_calls(&s.fake).len(), 1);
    // The longest valid name goes through.
    let r = finish(
        configured_lightsnap(&s.scratch, &s.fake)
            .args([
                "freeze-and-snap",
                "--disk-name",
                "nocopy-1",
                "--snapshot-name",
            ])
            .arg(&at_limit)
            .arg(&s.fs.mount_point),
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(create_calls(&s.fake)[1].body["diskSnapshotName"], at_limit);
}

#[test]
fn every_snapshot_carries_lightsnaps_tags_and_the_operators() {
    let Some(s) = setup("every_snapshot_carries_lightsnaps_tags_and_the_operators") else {
        return;
    };
    write_conf(
        &s.scratch,
        "etc/lightsnap/config.toml",
        "[tags]\nenv = \"staging\"\nteam = \"db\"\n",
    );
    let version = {
        let out = run(Command::new(env!("CARGO_BIN_EXE_lightsnap")).arg("--version"));
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_string()
    };
    let host = nix::unistd::gethostname().unwrap().into_string().unwrap();
    for (i, trigger) in [None, Some("manual"), Some("timer"), Some("hook")]
        .into_iter()
        .enumerate()
    {
        let name = format!("tagged-{i}");
        let mut args = vec![
            "--snapshot-name",
            &name,
            "--tag",
            "env=prod",
            "--tag",
            "note",
        ];
        if let Some(t) = trigger {
            args.extend(["--trigger", t]);
        }
        let r = s.snap(&args);
        assert_eq!(r.code, 0, "{r:?}");
        let call = &create_calls(&s.fake)[i];
        let want: BTreeMap<String, String> = [
            ("env", "prod"), // the flag wins over the configuration
            ("team", "db"),
            ("note", ""),
            ("lightsnap:consistency", "frozen"),
            ("lightsnap:host", host.as_str()),
            ("lightsnap:version", version.as_str()),
            ("lightsnap:trigger", trigger.unwrap_or("manual")),
            // Whose it is: this instance's region and name (docs/src/ownership.md).
            ("lightsnap:owner", "us-east-1/web-1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(tags_of(call), want, "{args:?}");
        // And the snapshot keeps them.
        let snap = s.fake.disk_snapshot(&name).unwrap();
        assert_eq!(snap["tags"].as_array().unwrap().len(), want.len());
    }
}

#[test]
fn tags_are_checked_before_anything_is_frozen() {
    let Some(s) = setup("tags_are_checked_before_anything_is_frozen") else {
        return;
    };
    let long_key = format!("{}=v", "k".repeat(129));
    let long_value = format!("k={}", "v".repeat(257));
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--tag", long_key.as_str()], "longer than 128"),
        (vec!["--tag", long_value.as_str()], "longer than 256"),
        (vec!["--tag", "k=a;b"], "is not allowed"),
        (vec!["--tag", "=v"], "the key is empty"),
        (vec!["--tag", "lightsnap:consistency=frozen"], "lightsnap"),
        (vec!["--tag", "lightsnap:trigger=timer"], "lightsnap"),
        (vec!["--tag", "lightsnap:host=elsewhere"], "lightsnap"),
        (
            vec!["--tag", "lightsnap:owner=us-east-1/web-2"],
            "lightsnap",
        ),
    ];
    for (args, needle) in cases {
        let r = s.snap(&args);
        assert_eq!(r.code, 2, "{args:?}: {r:?}");
        assert!(
            r.stderr.contains(needle),
            "{args:?} should say {needle:?}: {r:?}"
        );
        s.assert_untouched(&r);
    }
    // 50 tags at most on a snapshot, lightsnap's five included: 45 more fit, 46 do not.
    let tags = |n: usize| -> Vec<String> {
        (0..n)
            .flat_map(|i| ["--tag".to_string(), format!("k{i}=v{i}")])
            .collect()
    };
    let too_many = tags(46);
    let r = s.snap(&too_many.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("at most 50 tags"), "{r:?}");
    s.assert_untouched(&r);
    let most = tags(45);
    let r = s.snap(&most.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(tags_of(&create_calls(&s.fake)[0]).len(), 50);
}

// ---------------------------------------------------------------------------------------
// --output json of the snapshot commands
// ---------------------------------------------------------------------------------------

#[test]
fn freeze_and_snap_json_is_one_stable_document() {
    let Some(s) = setup("freeze_and_snap_json_is_one_stable_document") else {
        return;
    };
    let r = s.snap(&[
        "--snapshot-name",
        "json-1",
        "--tag",
        "env=prod",
        "--output",
        "json",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let doc = json_doc(&r);
    assert_eq!(doc["snapshots"][0]["name"], "json-1");
    assert_eq!(doc["snapshots"][0]["consistency"], "frozen");
    assert!(doc["window_ms"].as_f64().unwrap() > 0.0);
    golden("freeze-and-snap", &doc, &s.scratch);

    // A failure is one document too, with the exit code.
    let r = s.snap(&["--snapshot-name=-bad-", "--output", "json"]);
    assert_eq!(r.code, 2, "{r:?}");
    let doc = json_doc(&r);
    assert_eq!(doc["error"]["exit_code"], 2);
    golden("error", &doc, &s.scratch);

    // So is a command line that cannot be parsed, when JSON was asked for.
    let r = finish(configured_lightsnap(&s.scratch, &s.fake).args([
        "--output",
        "json",
        "freeze-and-snap",
    ]));
    assert_eq!(r.code, 2, "{r:?}");
    let doc = json_doc(&r);
    assert_eq!(doc["error"]["exit_code"], 2);
    golden("usage-error", &doc, &s.scratch);
    let r = finish(configured_lightsnap(&s.scratch, &s.fake).args([
        "prune",
        "--keep",
        "many",
        "--output=json",
    ]));
    assert_eq!(r.code, 2, "{r:?}");
    assert_eq!(json_doc(&r)["error"]["exit_code"], 2, "{r:?}");
}

#[test]
fn plan_thaw_and_snap_instance_json_are_stable_documents() {
    let Some(s) = setup("plan_thaw_and_snap_instance_json_are_stable_documents") else {
        return;
    };
    let r = finish(
        configured_lightsnap(&s.scratch, &s.fake)
            .args([
                "plan",
                "--disk-name",
                "data-1",
                "--snapshot-name",
                "planned-1",
            ])
            .args(["--output", "json"])
            .arg(&s.fs.mount_point),
    );
    assert_eq!(r.code, 0, "{r:?}");
    let doc = json_doc(&r);
    assert_eq!(doc["snapshots"][0]["api_call"]["diskName"], "data-1");
    golden("plan", &doc, &s.scratch);

    run(Command::new("fsfreeze").arg("-f").arg(&s.fs.mount_point));
    let r = finish(
        configured_lightsnap(&s.scratch, &s.fake)
            .args(["thaw", "--output", "json"])
            .arg(&s.fs.mount_point),
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(!s.fs.is_frozen());
    let doc = json_doc(&r);
    golden("thaw", &doc, &s.scratch);
    let r = finish(configured_lightsnap(&s.scratch, &s.fake).args([
        "thaw",
        "--recover",
        "--output",
        "json",
    ]));
    assert_eq!(r.code, 0, "{r:?}");
    golden("thaw-recover", &json_doc(&r), &s.scratch);

    // The whole instance: this instance's one disk is the test's filesystem.
    let r = finish(configured_lightsnap(&s.scratch, &s.fake).args([
        "snap-instance",
        "--snapshot-name",
        "whole-1",
        "--output",
        "json",
    ]));
    assert_eq!(r.code, 0, "{r:?}");
    let doc = json_doc(&r);
    assert_eq!(doc["snapshots"][0]["name"], "whole-1");
    golden("snap-instance", &doc, &s.scratch);
    assert!(!s.fs.is_frozen());
}

// ---------------------------------------------------------------------------------------
// --wait
// ---------------------------------------------------------------------------------------

#[test]
fn wait_follows_the_snapshot_to_completed_in_plain_lines() {
    let Some(s) = setup_with(
        "wait_follows_the_snapshot_to_completed_in_plain_lines",
        Duration::from_secs(3),
        Vec::new(),
    ) else {
        return;
    };
    let r = s.snap(&["--snapshot-name", "w-1", "--wait"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("snapshot w-1 of disk data-1"), "{r:?}");
    // Not a terminal (the journal): plain lines, no carriage returns, no bar.
    assert!(
        !r.stderr.contains('\r') && !r.stderr.contains("[#"),
        "{r:?}"
    );
    let lines: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("snapshot w-1: "))
        .collect();
    assert!(
        lines
            .first()
            .is_some_and(|l| l.starts_with("snapshot w-1: pending ")),
        "{r:?}"
    );
    assert!(
        lines
            .last()
            .is_some_and(|l| l.starts_with("snapshot w-1: completed 100% (")),
        "{r:?}"
    );
    assert_eq!(s.fake.disk_snapshot("w-1").unwrap()["state"], "completed");
    // It polled GetDiskSnapshot until then.
    let polls = s
        .fake
        .calls()
        .iter()
        .filter(|c| c.operation == "GetDiskSnapshot" && c.body["diskSnapshotName"] == "w-1")
        .count();
    assert!(
        polls >= 3,
        "the name check, then at least two polls: {polls}"
    );
}

#[test]
fn wait_json_reports_the_final_state() {
    let Some(s) = setup_with(
        "wait_json_reports_the_final_state",
        Duration::from_secs(2),
        Vec::new(),
    ) else {
        return;
    };
    let r = s.snap(&["--snapshot-name", "w-2", "--wait", "--output", "json"]);
    assert_eq!(r.code, 0, "{r:?}");
    let doc = json_doc(&r);
    assert_eq!(doc["wait"]["completed"], true, "{doc}");
    assert_eq!(doc["wait"]["snapshots"][0]["state"], "completed");
    golden("freeze-and-snap-wait", &doc, &s.scratch);
}

/// Runs a lightsnap command with a terminal as its stdout and stderr (`script`), returning
/// what the terminal showed and the exit code.
fn at_a_terminal(cmd: &Command) -> (i32, String) {
    let quote = |s: &std::ffi::OsStr| format!("'{}'", s.to_string_lossy().replace('\'', "'\\''"));
    let mut line = quote(cmd.get_program());
    for a in cmd.get_args() {
        line.push(' ');
        line.push_str(&quote(a));
    }
    let mut script = Command::new("script");
    script
        .env_clear()
        .args(["-q", "-e", "-c", &line, "/dev/null"])
        .stdin(Stdio::null());
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            script.env(k, v);
        }
    }
    let out = script.output().expect("running script");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn wait_draws_a_progress_bar_at_a_terminal() {
    let test = "wait_draws_a_progress_bar_at_a_terminal";
    if !tool_or_skip(test, "script") {
        return;
    }
    let Some(s) = setup_with(test, Duration::from_secs(3), Vec::new()) else {
        return;
    };
    let mut cmd = configured_lightsnap(&s.scratch, &s.fake);
    cmd.args([
        "freeze-and-snap",
        "--disk-name",
        "data-1",
        "--snapshot-name",
        "w-3",
        "--wait",
    ])
    .arg(&s.fs.mount_point);
    let (code, screen) = at_a_terminal(&cmd);
    assert_eq!(code, 0, "{screen}");
    // Redrawn in place, ending full.
    assert!(screen.contains("\rw-3 pending ["), "{screen:?}");
    assert!(
        screen.contains(&format!("w-3 completed [{}] 100%", "#".repeat(20))),
        "{screen:?}"
    );
    assert!(
        !screen.contains("snapshot w-3: "),
        "no plain lines: {screen:?}"
    );
}

#[test]
fn wait_gives_up_at_its_timeout_with_exit_15_and_one_json_document() {
    let Some(s) = setup_with(
        "wait_gives_up_at_its_timeout_with_exit_15_and_one_json_document",
        Duration::from_secs(600),
        Vec::new(),
    ) else {
        return;
    };
    let r = s.snap(&[
        "--snapshot-name",
        "w-4",
        "--wait",
        "--wait-timeout",
        "1s",
        "--output",
        "json",
    ]);
    assert_eq!(r.code, 15, "{r:?}");
    assert!(
        r.stderr.contains("still pending after --wait-timeout 1s"),
        "{r:?}"
    );
    let doc = json_doc(&r);
    let waited = doc["wait"]["elapsed_s"].as_f64().expect("elapsed_s");
    assert!(
        (1.0..1.5).contains(&waited),
        "gave up at the timeout, not a polling interval later: {waited} s"
    );
    assert_eq!(doc["snapshots"][0]["name"], "w-4", "the snapshot was taken");
    assert_eq!(doc["wait"]["completed"], false);
    assert_eq!(doc["wait"]["snapshots"][0]["state"], "pending");
    assert_eq!(doc["error"]["exit_code"], 15);
    golden("freeze-and-snap-wait-timeout", &doc, &s.scratch);
    assert!(!s.fs.is_frozen());
}

#[test]
fn wait_reports_a_snapshot_in_state_error() {
    let Some(s) = setup_with(
        "wait_reports_a_snapshot_in_state_error",
        Duration::from_secs(600),
        Vec::new(),
    ) else {
        return;
    };
    s.fake.add_fault(Fault {
        operation: Some("CreateDiskSnapshot".into()),
        kind: FaultKind::SnapshotError,
        count: None,
    });
    let r = s.snap(&["--snapshot-name", "w-5", "--wait"]);
    assert_eq!(r.code, 10, "{r:?}");
    assert!(r.stderr.contains("w-5 in state error"), "{r:?}");
    assert!(r.stderr.contains("snapshot w-5: error"), "{r:?}");
}

#[test]
fn wait_on_an_instance_snapshot_shows_state_and_time_only() {
    let Some(s) = setup_with(
        "wait_on_an_instance_snapshot_shows_state_and_time_only",
        Duration::from_secs(3),
        Vec::new(),
    ) else {
        return;
    };
    let r = finish(configured_lightsnap(&s.scratch, &s.fake).args([
        "snap-instance",
        "--snapshot-name",
        "whole-1",
        "--wait",
    ]));
    assert_eq!(r.code, 0, "{r:?}");
    assert!(s.fake.instance_snapshot("whole-1").is_some());
    let lines: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("snapshot whole-1: "))
        .collect();
    assert!(lines.len() >= 2, "{r:?}");
    for l in &lines {
        assert!(
            !l.contains('%'),
            "no progress for an instance snapshot: {l}"
        );
        assert!(l.ends_with("s)"), "elapsed time: {l}");
    }
    assert!(lines[0].starts_with("snapshot whole-1: pending ("), "{r:?}");
    assert!(
        lines
            .last()
            .unwrap()
            .starts_with("snapshot whole-1: available ("),
        "{r:?}"
    );
}

// ---------------------------------------------------------------------------------------
// run: the configured group, then retention
// ---------------------------------------------------------------------------------------

#[test]
fn run_snapshots_the_configured_paths_then_prunes_only_their_disks() {
    let snapshots = vec![
        seeded("r-1", "data-1", "2d", "completed", false, OWN),
        seeded("r-2", "data-1", "3d", "completed", false, OWN),
        seeded("r-pending", "data-1", "4d", "pending", false, OWN),
        seeded("r-foreign", "data-1", "5d", "completed", false, &[]),
        // lightsnap's snapshots of a disk of another instance in the same account.
        seeded("other-1", "other-9", "6d", "completed", false, OWN),
        seeded("other-2", "other-9", "7d", "completed", false, OWN),
        seeded("other-3", "other-9", "8d", "completed", false, OWN),
    ];
    let Some(s) = setup_with(
        "run_snapshots_the_configured_paths_then_prunes_only_their_disks",
        Duration::ZERO,
        snapshots,
    ) else {
        return;
    };
    write_conf(
        &s.scratch,
        "etc/lightsnap/config.toml",
        &format!(
            "[retention]\nkeep = 2\n[[snapshot]]\npath = \"{}\"\ndisk = \"data-1\"\n",
            s.fs.mount_point.display()
        ),
    );
    let r = finish(configured_lightsnap(&s.scratch, &s.fake).args([
        "run",
        "--trigger",
        "timer",
        "--snapshot-name",
        "run-1",
        "--output",
        "json",
    ]));
    assert_eq!(r.code, 0, "{r:?}");
    let doc = json_doc(&r);
    let name = "run-1".to_string();
    assert_eq!(doc["snapshots"][0]["name"], "run-1", "{doc}");
    assert_eq!(doc["snapshots"][0]["source"]["name"], "data-1", "{doc}");
    assert_eq!(
        tags_of(&create_calls(&s.fake)[0])["lightsnap:trigger"],
        "timer"
    );
    // data-1 keeps its newest 2 of lightsnap's completed: the new one and r-1.
    assert_eq!(delete_calls(&s.fake), vec!["r-2"]);
    assert_eq!(doc["pruned"]["deleted"][0]["name"], "r-2", "{doc}");
    let mut left = remaining(&s.fake);
    left.retain(|n| n != &name);
    assert_eq!(
        left,
        sorted(&[
            "r-1",
            "r-pending",
            "r-foreign",
            "other-1",
            "other-2",
            "other-3"
        ])
    );
    golden("run", &doc, &s.scratch);
}

// ---------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------

#[test]
fn fragments_apply_in_order_and_later_ones_win() {
    let Some(s) = setup("fragments_apply_in_order_and_later_ones_win") else {
        return;
    };
    let name_of_next_run = |s: &Setup| -> String {
        let r = s.snap(&[]);
        assert_eq!(r.code, 0, "{r:?}");
        let calls = create_calls(&s.fake);
        let call = calls.last().unwrap();
        format!(
            "{} owner={}",
            call.body["diskSnapshotName"].as_str().unwrap(),
            tags_of(call).get("owner").map_or("-", |v| v.as_str())
        )
    };
    let template = |prefix: &str| format!("name_template = \"{prefix}-{{disk}}-{{utc:%H%M%S}}\"\n");
    write_conf(
        &s.scratch,
        "usr/lib/lightsnap/config.d/10-vendor.toml",
        &format!("{}[tags]\nowner = \"vendor\"\n", template("vendor")),
    );
    assert!(name_of_next_run(&s).starts_with("vendor-data-1-"));
    write_conf(&s.scratch, "etc/lightsnap/config.toml", &template("admin"));
    let got = name_of_next_run(&s);
    assert!(
        got.starts_with("admin-data-1-") && got.ends_with(" owner=vendor"),
        "key by key: {got}"
    );
    write_conf(
        &s.scratch,
        "etc/lightsnap/config.d/20-site.toml",
        "[tags]\nowner = \"site\"\n",
    );
    write_conf(
        &s.scratch,
        "etc/lightsnap/config.d/10-early.toml",
        &format!("{}[tags]\nowner = \"early\"\n", template("early")),
    );
    let got = name_of_next_run(&s);
    assert!(
        got.starts_with("early-data-1-") && got.ends_with(" owner=site"),
        "name order within a directory: {got}"
    );
    write_conf(
        &s.scratch,
        "run/lightsnap/config.d/50-runtime.toml",
        &template("runtime"),
    );
    // Not .toml: not a fragment (it would not parse).
    write_conf(
        &s.scratch,
        "run/lightsnap/config.d/60.toml.bak",
        "this is not toml",
    );
    assert!(name_of_next_run(&s).starts_with("runtime-data-1-"));
}

#[test]
fn bad_configuration_is_refused_naming_the_file_and_line() {
    let Some(s) = setup("bad_configuration_is_refused_naming_the_file_and_line") else {
        return;
    };
    // (file, text, the line at fault)
    let cases: Vec<(&str, &str, usize)> = vec![
        (
            "etc/lightsnap/config.toml",
            "freeze_timeout = \"5s\"\n\nfreez_timeout = \"1s\"\n",
            3,
        ),
        (
            "etc/lightsnap/config.d/20-retention.toml",
            "[retention]\nkeep = \"seven\"\n",
            2,
        ),
        (
            "usr/lib/lightsnap/config.d/10.toml",
            "# comment\nfreeze_timeout = \"soon\"\n",
            2,
        ),
        ("etc/lightsnap/config.toml", "freeze_timeout = \"0s\"\n", 1),
        (
            "etc/lightsnap/config.toml",
            "hook_dir = \"/x\"\nhook_timeout = \"10\"\n",
            2,
        ),
        (
            "etc/lightsnap/config.toml",
            "name_template = \"{disk}.{utc:%Y}\"\n",
            1,
        ),
        (
            "etc/lightsnap/config.toml",
            "name_template = \"{host}-{disk}\"\n",
            1,
        ),
        (
            "run/lightsnap/config.d/50.toml",
            "[tags]\nok = \"1\"\n\"bad;key\" = \"v\"\n",
            3,
        ),
        (
            "etc/lightsnap/config.toml",
            "[tags]\n\"lightsnap:trigger\" = \"nightly\"\n",
            2,
        ),
        (
            "etc/lightsnap/config.toml",
            "[retention]\nolder_than = \"a month\"\n",
            2,
        ),
        (
            "etc/lightsnap/config.toml",
            "[[snapshot]]\npath = \"relative/path\"\n",
            2,
        ),
        (
            "etc/lightsnap/config.toml",
            "[[snapshot]]\npath = \"/data\"\ndisk = \"-bad-\"\n",
            3,
        ),
        ("etc/lightsnap/config.toml", "region = [1]\n", 1),
    ];
    for (rel, text, line) in cases {
        let _ = std::fs::remove_dir_all(conf_root(&s.scratch));
        let path = write_conf(&s.scratch, rel, text);
        let r = s.snap(&[]);
        assert_eq!(r.code, 2, "{rel}: {text:?}: {r:?}");
        assert!(
            r.stderr.contains(&path.display().to_string()),
            "{text:?} names the file: {r:?}"
        );
        assert!(
            r.stderr.contains(&format!("line {line}")),
            "{text:?} names line {line}: {r:?}"
        );
        s.assert_untouched(&r);
        assert!(s.fake.calls().is_empty(), "nothing asked of Lightsail");
    }
}

#[test]
fn configuration_not_owned_by_root_or_writable_by_others_is_refused() {
    let Some(s) = setup("configuration_not_owned_by_root_or_writable_by_others_is_refused") else {
        return;
    };
    let main = write_conf(&s.scratch, "etc/lightsnap/config.toml", "");
    let fragment = write_conf(&s.scratch, "etc/lightsnap/config.d/10.toml", "");
    let cases: Vec<(&Path, u32, u32)> = vec![
        (&main, 0, 0o664),
        (&main, 0, 0o646),
        (&main, 65534, 0o644),
        (&fragment, 0, 0o666),
        (&fragment, 65534, 0o600),
    ];
    for (path, uid, mode) in cases {
        std::os::unix::fs::chown(path, Some(uid), None).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
        let r = s.snap(&[]);
        assert_eq!(
            r.code,
            7,
            "{} uid {uid} mode {mode:o}: {r:?}",
            path.display()
        );
        assert!(r.stderr.contains(&path.display().to_string()), "{r:?}");
        assert!(r.stderr.contains("chown root:root"), "{r:?}");
        s.assert_untouched(&r);
        std::os::unix::fs::chown(path, Some(0), None).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let r = s.snap(&[]);
    assert_eq!(r.code, 0, "root-owned, 0644: accepted: {r:?}");
}

#[test]
fn the_configured_freeze_timeout_is_the_deadline() {
    let Some(s) = setup("the_configured_freeze_timeout_is_the_deadline") else {
        return;
    };
    write_conf(
        &s.scratch,
        "etc/lightsnap/config.toml",
        "freeze_timeout = \"700ms\"\n",
    );
    s.fake.add_fault(Fault {
        operation: Some("CreateDiskSnapshot".into()),
        kind: FaultKind::Hang,
        count: None,
    });
    let started = Instant::now();
    let r = s.snap(&[]);
    assert_eq!(r.code, 13, "{r:?}");
    assert!(r.stderr.contains("--freeze-timeout 700ms"), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(!s.fs.is_frozen());
    // A flag overrides it.
    let r = s.snap(&["--freeze-timeout", "300ms"]);
    assert_eq!(r.code, 13, "{r:?}");
    assert!(r.stderr.contains("--freeze-timeout 300ms"), "{r:?}");
}

#[test]
fn a_configured_path_to_disk_mapping_names_the_disk() {
    if !root_or_skip("a_configured_path_to_disk_mapping_names_the_disk") {
        return;
    }
    let scratch = Scratch::new();
    let fs = LoopFs::create(&scratch, "data", FsKind::Ext4);
    // Lightsail reports the disk at a path this machine does not have (as on Nitro, where
    // /dev/xvdf is /dev/nvme1n1): discovery cannot match it.
    let sd = Seed::from_toml_str(&format!(
        "self_instance = \"{INSTANCE}\"\n[[instances]]\nname = \"{INSTANCE}\"\ninstance_id = \"{INSTANCE_ID}\"\n[[disks]]\nname = \"data-1\"\npath = \"/dev/xvdq\"\nattached_to = \"{INSTANCE}\"\nbacking = \"{}\"\n",
        fs.device.display()
    ))
    .unwrap();
    let fake = fake_with(&scratch, sd, Duration::ZERO);
    let go = || {
        finish(
            configured_lightsnap(&scratch, &fake)
                .args(["freeze-and-snap", "--snapshot-name", "mapped-1"])
                .arg(&fs.mount_point),
        )
    };
    let r = go();
    assert_eq!(r.code, 3, "not found without the mapping: {r:?}");
    assert!(create_calls(&fake).is_empty());
    write_conf(
        &scratch,
        "etc/lightsnap/config.toml",
        &format!(
            "[[snapshot]]\npath = \"{}\"\ndisk = \"data-1\"\n",
            fs.mount_point.display()
        ),
    );
    let r = go();
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(create_calls(&fake)[0].body["diskName"], "data-1");
    assert!(fake.snapshot_image("mapped-1").exists());
}

#[test]
fn the_configured_profile_supplies_the_credentials() {
    if !root_or_skip("the_configured_profile_supplies_the_credentials") {
        return;
    }
    let scratch = Scratch::new();
    let fake = fixture_fake(&scratch);
    let credentials = scratch.path().join("credentials");
    std::fs::write(
        &credentials,
        format!(
            "[default]\naws_access_key_id = AKIDWRONG\naws_secret_access_key = wrong\n[snapper]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            fake_lightsail::DEFAULT_ACCESS_KEY,
            fake_lightsail::DEFAULT_SECRET_KEY
        ),
    )
    .unwrap();
    let go = || {
        finish(
            configured_lightsnap(&scratch, &fake)
                .env_remove("AWS_ACCESS_KEY_ID")
                .env_remove("AWS_SECRET_ACCESS_KEY")
                .env("AWS_SHARED_CREDENTIALS_FILE", &credentials)
                .args(["list", "--output", "json"]),
        )
    };
    let r = go();
    assert_eq!(r.code, 11, "the default profile's keys are refused: {r:?}");
    write_conf(
        &scratch,
        "etc/lightsnap/config.toml",
        "profile = \"snapper\"\n",
    );
    let r = go();
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(listed_names(&json_doc(&r)).len(), 8);
}

// ---------------------------------------------------------------------------------------
// Hooks
// ---------------------------------------------------------------------------------------

#[test]
fn hooks_run_in_order_around_the_freeze_with_their_environment() {
    let Some(s) = setup("hooks_run_in_order_around_the_freeze_with_their_environment") else {
        return;
    };
    let dir = hook_dir(&s, "");
    // The log is on the filesystem being frozen: a hook run while it was frozen would block
    // there until its timeout. What pre-freeze wrote is in the snapshot; post-thaw's is not.
    let log = s.fs.mount_point.join("hooks.log");
    for name in ["20-b", "10-a", "30-c"] {
        hook(&dir, name, &logging(&log));
    }
    hook(&dir, "40-backup~", "exit 1");
    hook(&dir, ".hidden", "exit 1");
    let r = s.snap(&["--snapshot-name", "hooked-1"]);
    assert_eq!(r.code, 0, "{r:?}");
    let mnt = s.fs.mount_point.display();
    let line = |name: &str, phase: &str, result: &str| {
        format!("{name} {phase} phase={phase} paths={mnt} disks=data-1 snapshots=hooked-1 result={result}\n")
    };
    let pre = ["10-a", "20-b", "30-c"]
        .map(|h| line(h, "pre-freeze", "unset"))
        .concat();
    let post = ["30-c", "20-b", "10-a"]
        .map(|h| line(h, "post-thaw", "success"))
        .concat();
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        format!("{pre}{post}")
    );
    assert_eq!(
        read_from_image(&s.scratch, &s.fake.snapshot_image("hooked-1"), "hooks.log"),
        pre,
        "the pre-freeze hooks ran before the freeze, the post-thaw ones after"
    );
}

#[test]
fn a_failing_pre_freeze_hook_aborts_but_every_hook_that_ran_gets_post_thaw() {
    let Some(s) = setup("a_failing_pre_freeze_hook_aborts_but_every_hook_that_ran_gets_post_thaw")
    else {
        return;
    };
    let dir = hook_dir(&s, "");
    let log = s.scratch.path().join("hooks.log");
    hook(&dir, "10-a", &logging(&log));
    hook(
        &dir,
        "20-b",
        &format!(
            "{}\n[ \"$1\" = pre-freeze ] && exit 3\nexit 0",
            logging(&log)
        ),
    );
    hook(&dir, "30-c", &logging(&log));
    let r = s.snap(&["--snapshot-name", "hooked-2"]);
    assert_eq!(r.code, 16, "{r:?}");
    assert!(r.stderr.contains("20-b pre-freeze failed"), "{r:?}");
    assert!(r.stderr.contains("nothing was frozen"), "{r:?}");
    s.assert_untouched(&r);
    let text = std::fs::read_to_string(&log).unwrap();
    let said: Vec<String> = text
        .lines()
        .map(|l| {
            let w: Vec<&str> = l.split(' ').collect();
            format!("{} {} {}", w[0], w[1], w.last().unwrap())
        })
        .collect();
    assert_eq!(
        said,
        vec![
            "10-a pre-freeze result=unset",
            "20-b pre-freeze result=unset",
            "20-b post-thaw result=failure",
            "10-a post-thaw result=failure",
        ],
        "30-c never ran, so it gets no post-thaw"
    );
}

#[test]
fn a_hook_past_its_timeout_is_killed_with_its_process_group() {
    let Some(s) = setup("a_hook_past_its_timeout_is_killed_with_its_process_group") else {
        return;
    };
    let dir = hook_dir(&s, "hook_timeout = \"1s\"\n");
    let log = s.scratch.path().join("hooks.log");
    let pidfile = s.scratch.path().join("child.pid");
    hook(
        &dir,
        "10-slow",
        &format!(
            "{}\nif [ \"$1\" = pre-freeze ]; then sleep 600 & echo $! > {}; wait; fi",
            logging(&log),
            pidfile.display()
        ),
    );
    let started = Instant::now();
    let r = s.snap(&[]);
    assert_eq!(r.code, 16, "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(30), "{r:?}");
    assert!(
        r.stderr
            .contains("10-slow pre-freeze did not finish within 1s"),
        "{r:?}"
    );
    s.assert_untouched(&r);
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    wait_until(
        "the hook's child killed with it",
        Duration::from_secs(5),
        || !alive(pid),
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.lines()
            .last()
            .unwrap()
            .starts_with("10-slow post-thaw"),
        "the timed-out hook still gets its post-thaw: {text}"
    );
}

#[test]
fn bad_hooks_are_refused_before_any_hook_runs() {
    let Some(s) = setup("bad_hooks_are_refused_before_any_hook_runs") else {
        return;
    };
    let dir = hook_dir(&s, "");
    let log = s.scratch.path().join("hooks.log");
    hook(&dir, "05-good", &logging(&log));
    let bad = dir.join("50-bad");
    // (owner, mode, exit code, what the error says)
    let cases: Vec<(u32, u32, i32, &str)> = vec![
        (0, 0o775, 7, "chmod go-w"),
        (0, 0o757, 7, "chmod go-w"),
        (65534, 0o755, 7, "not owned by root"),
        (0, 0o644, 2, "not an executable file"),
    ];
    for (uid, mode, code, needle) in cases {
        hook(&dir, "50-bad", "exit 0");
        std::os::unix::fs::chown(&bad, Some(uid), None).unwrap();
        std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(mode)).unwrap();
        let r = s.snap(&[]);
        assert_eq!(r.code, code, "uid {uid} mode {mode:o}: {r:?}");
        assert!(r.stderr.contains(&bad.display().to_string()), "{r:?}");
        assert!(r.stderr.contains(needle), "{r:?}");
        s.assert_untouched(&r);
        assert!(!log.exists(), "no hook ran: {r:?}");
        std::fs::remove_file(&bad).unwrap();
    }
    let r = s.snap(&[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 2);
}

// ---------------------------------------------------------------------------------------
// The PostgreSQL example hook, against a real PostgreSQL
// ---------------------------------------------------------------------------------------

// The server itself: tests/common/pg.rs (shared with tests/setup.rs and tests/databases.rs).
use common::pg::{pg_bin_or_skip, postgres_uid, Pg};

#[test]
fn the_postgresql_example_hook_gives_a_snapshot_that_starts_as_a_database() {
    let test = "the_postgresql_example_hook_gives_a_snapshot_that_starts_as_a_database";
    if !root_or_skip(test) || !tool_or_skip(test, "mkfs.xfs") || !tool_or_skip(test, "runuser") {
        return;
    }
    let Some(bin) = pg_bin_or_skip(test) else {
        return;
    };
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/examples/hooks/postgresql");
    assert!(example.exists(), "{} is shipped", example.display());

    let scratch = Scratch::new();
    // The postgres user must reach its data directory and sockets inside the scratch dir.
    std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // XFS: room for a cluster (the harness's ext4 is 64 MB).
    let fs = LoopFs::create(&scratch, "data", FsKind::Xfs);
    // Attach mode, for `verify`: a restored disk appears as a loop device in `dev`.
    let snapshots = scratch.path().join("snapshots");
    std::fs::create_dir_all(&snapshots).unwrap();
    let mut opts = Options::new(seed(&[("data-1", &fs.device)], None), snapshots);
    opts.attach_dir = Some(scratch.path().join("dev"));
    let fake = Fake::start(opts).expect("fake lightsail in attach mode");
    let data = fs.mount_point.join("pgdata");
    std::fs::create_dir(&data).unwrap();
    std::os::unix::fs::chown(&data, Some(postgres_uid()), Some(0)).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    run(Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(bin.join("initdb"))
        .args(["-A", "trust", "-U", "postgres", "-D"])
        .arg(&data)
        .current_dir("/")
        .stdout(Stdio::null()));
    let pg = Pg::start(&bin, &data, &scratch.path().join("pg-live"));
    pg.sql("CREATE TABLE rows (id int PRIMARY KEY, body text NOT NULL)");
    pg.sql("INSERT INTO rows SELECT g, md5(g::text) FROM generate_series(1, 5000) g");
    // Where the latest checkpoint is (pg_control: the same in every PostgreSQL version); no
    // timed checkpoint comes this soon after initdb (checkpoint_timeout is 5 minutes).
    let checkpoint = || pg.sql("SELECT checkpoint_lsn FROM pg_control_checkpoint()");
    let before = checkpoint();

    // The packaged example, installed as the README says: root-owned, 0755, in hook_dir.
    let hooks = scratch.path().join("hooks.d");
    std::fs::create_dir(&hooks).unwrap();
    let installed = hooks.join("10-postgresql");
    std::fs::copy(&example, &installed).unwrap();
    std::fs::set_permissions(&installed, std::fs::Permissions::from_mode(0o755)).unwrap();
    write_conf(
        &scratch,
        "etc/lightsnap/config.toml",
        &format!("hook_dir = \"{}\"\n", hooks.display()),
    );
    let r = finish(
        configured_lightsnap(&scratch, &fake)
            .env("PGHOST", &pg.socket)
            .env("PGPORT", pg.port.to_string())
            .args([
                "freeze-and-snap",
                "--disk-name",
                "data-1",
                "--snapshot-name",
                "pg-1",
            ])
            .arg(&fs.mount_point),
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stderr.contains("postgresql hook: CHECKPOINT done"),
        "{r:?}"
    );
    assert_ne!(checkpoint(), before, "the hook made a CHECKPOINT");
    // Rows committed after the snapshot are not in it.
    pg.sql("INSERT INTO rows SELECT g, md5(g::text) FROM generate_series(5001, 6000) g");
    assert_eq!(pg.sql("SELECT count(*) FROM rows"), "6000");
    pg.stop();
    drop(pg);

    // The snapshot image, attached and mounted read-write (the server replays its WAL: a
    // frozen snapshot is what a clean crash leaves), then started as a database.
    let image = fake.snapshot_image("pg-1");
    let out = run(Command::new("losetup")
        .args(["--find", "--show"])
        .arg(&image));
    let device = Detach(String::from_utf8_lossy(&out.stdout).trim().to_string());
    let restored = scratch.path().join("restored");
    std::fs::create_dir(&restored).unwrap();
    // The image is a copy: same XFS UUID as the live filesystem.
    run(Command::new("mount")
        .args(["-o", "nouuid"])
        .arg(&device.0)
        .arg(&restored));
    let _unmount = Unmount(restored.clone());
    let pg2 = Pg::start(
        &bin,
        &restored.join("pgdata"),
        &scratch.path().join("pg-restored"),
    );
    assert_eq!(
        pg2.sql("SELECT count(*), min(id), max(id) FROM rows"),
        "5000|1|5000",
        "the snapshot holds every row committed before it, and none after"
    );
    assert_eq!(
        pg2.sql("SELECT count(*) FROM rows WHERE body <> md5(id::text)"),
        "0"
    );
    pg2.stop();
    drop(pg2);
    drop(_unmount);
    drop(device);

    // The same example as a verify hook: `lightsnap verify` restores the snapshot, mounts it
    // read-only, and the hook's pg_controldata reads the cluster's control file.
    let verify_hooks = scratch.path().join("verify.d");
    std::fs::create_dir(&verify_hooks).unwrap();
    let installed = verify_hooks.join("10-postgresql");
    std::fs::copy(&example, &installed).unwrap();
    std::fs::set_permissions(&installed, std::fs::Permissions::from_mode(0o755)).unwrap();
    write_conf(
        &scratch,
        "etc/lightsnap/config.toml",
        &format!(
            "hook_dir = \"{}\"\nverify_hook_dir = \"{}\"\n",
            hooks.display(),
            verify_hooks.display()
        ),
    );
    let verify = |data_dir: &str| {
        finish(
            configured_lightsnap(&scratch, &fake)
                .env("LIGHTSNAP_DEV_DIR", scratch.path().join("dev"))
                .env("LIGHTSNAP_VERIFY_POLL_MS", "20")
                .env("LIGHTSNAP_PG_VERIFY_DATA", data_dir)
                .args(["verify", "pg-1"]),
        )
    };
    let r = verify("pgdata");
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stderr
            .contains("holds a PostgreSQL cluster (control file sound"),
        "{r:?}"
    );
    // Pointed at a directory that holds no cluster, the hook fails the verification.
    let r = verify("no-such-cluster");
    assert_eq!(r.code, 18, "{r:?}");
    assert!(r.stderr.contains("no PostgreSQL cluster readable"), "{r:?}");
}

// ---------------------------------------------------------------------------------------
// instance snapshots in list and prune; thaw's JSON
// ---------------------------------------------------------------------------------------

#[test]
fn instance_snapshots_are_listed_and_pruned_as_a_series_of_their_own() {
    let Some(s) = setup("instance_snapshots_are_listed_and_pruned_as_a_series_of_their_own") else {
        return;
    };
    for name in ["whole-1", "whole-2", "whole-3"] {
        let r = finish(configured_lightsnap(&s.scratch, &s.fake).args([
            "snap-instance",
            "--snapshot-name",
            name,
        ]));
        assert_eq!(r.code, 0, "{r:?}");
    }
    let r = s.snap(&["--snapshot-name", "disk-1"]);
    assert_eq!(r.code, 0, "{r:?}");

    let doc = json_doc(&list(&s.scratch, &s.fake, &["--output", "json"]));
    let kinds: BTreeMap<String, String> = doc["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_string(),
                e["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(kinds["whole-1"], "instance");
    assert_eq!(kinds["disk-1"], "disk");
    assert_eq!(kinds.len(), 4, "{doc}");

    // Keep one per series: the instance's two older ones go, the only disk snapshot stays
    // (an instance series does not count against a disk's, nor the other way round).
    let r = prune(&s.scratch, &s.fake, &["--keep", "1", "--output", "json"]);
    assert_eq!(r.code, 0, "{r:?}");
    let deleted: Vec<String> = json_doc(&r)["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        sorted(&deleted.iter().map(String::as_str).collect::<Vec<_>>()),
        sorted(&["whole-1", "whole-2"])
    );
    assert!(s.fake.instance_snapshot("whole-1").is_none());
    assert!(s.fake.instance_snapshot("whole-3").is_some());
    assert!(s.fake.disk_snapshot("disk-1").is_some());
    let deletes: Vec<String> = s
        .fake
        .calls()
        .into_iter()
        .filter(|c| c.operation == "DeleteInstanceSnapshot")
        .map(|c| c.body["instanceSnapshotName"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(deletes.len(), 2, "{deletes:?}");
}

#[test]
fn thaw_speaks_json_too() {
    let Some(s) = setup("thaw_speaks_json_too") else {
        return;
    };
    run(Command::new("fsfreeze").arg("-f").arg(&s.fs.mount_point));
    let r = finish(
        configured_lightsnap(&s.scratch, &s.fake)
            .args(["thaw", "--output", "json"])
            .arg(&s.fs.mount_point),
    );
    assert_eq!(r.code, 0, "{r:?}");
    let doc = json_doc(&r);
    assert_eq!(
        doc["thawed"][0],
        s.fs.mount_point.to_str().unwrap(),
        "{doc}"
    );
    assert_eq!(doc["not_frozen"].as_array().unwrap().len(), 0);
    assert!(!s.fs.is_frozen());
    let r = finish(configured_lightsnap(&s.scratch, &s.fake).args([
        "thaw",
        "--recover",
        "--output",
        "json",
    ]));
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(json_doc(&r)["record"], false, "{r:?}");
}
