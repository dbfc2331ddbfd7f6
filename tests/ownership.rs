//! Whose snapshots lightsnap touches (issue 22, "Ownership of snapshots"): every snapshot,
//! copy and disk it creates carries `lightsnap:owner` = `REGION/INSTANCE`; `run`'s retention
//! (in both regions), `prune` and `list` consider only this instance's; another instance's
//! snapshots of a same-named disk, copies arriving from other regions and untagged snapshots
//! are never deleted by a plain run; `--instance`, `--all-instances` and `--all` widen it.
//! See docs/src/ownership.md.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::*;
use fake_lightsail::seed::SeedSnapshot;
use serde_json::Value;

/// This instance's owner value in the fake (`seed`'s instance, the fake's home region).
const ME: &str = "us-east-1/web-1";

/// A completed disk snapshot of `disk`, `age` old, with `tags`.
fn snap(name: &str, disk: &str, age: &str, tags: &[(&str, &str)]) -> SeedSnapshot {
    SeedSnapshot {
        name: name.into(),
        disk: disk.into(),
        age: age.into(),
        auto: false,
        state: "completed".into(),
        tags: tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
    }
}

/// The tags a lightsnap of `owner` puts on a snapshot.
fn by(owner: &str) -> Vec<(&str, &str)> {
    vec![
        ("lightsnap:consistency", "frozen"),
        ("lightsnap:owner", owner),
    ]
}

/// What a lightsnap older than the owner tag put on its snapshots.
const UNTAGGED: &[(&str, &str)] = &[("lightsnap:consistency", "frozen")];

/// The names of the disk snapshots in `region`'s part of the fake, sorted.
fn names_in(fake: &Fake, region: &str) -> Vec<String> {
    let mut n: Vec<String> = fake.snapshots_in(region)["diskSnapshots"]
        .as_array()
        .unwrap_or_else(|| panic!("no region {region}"))
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    n.sort();
    n
}

/// The snapshots the fake was asked to delete, as `REGION NAME`, sorted.
fn deletes(fake: &Fake) -> Vec<String> {
    let mut v: Vec<String> = fake
        .calls()
        .into_iter()
        .filter(|c| c.operation.starts_with("Delete"))
        .map(|c| {
            let name = c.body["diskSnapshotName"]
                .as_str()
                .or(c.body["instanceSnapshotName"].as_str())
                .or(c.body["diskName"].as_str())
                .unwrap_or("?");
            format!("{} {name}", c.region.as_deref().unwrap_or("?"))
        })
        .collect();
    v.sort();
    v
}

fn sorted(v: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

/// The tags of a recorded call (`tags` in its body), as a map.
fn call_tags(body: &Value) -> BTreeMap<String, String> {
    body["tags"]
        .as_array()
        .unwrap_or_else(|| panic!("no tags in {body}"))
        .iter()
        .map(|t| {
            (
                t["key"].as_str().unwrap().to_string(),
                t["value"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// `run` with `keep = 1` and a copy region: in the copy region, another instance's snapshots
/// of a disk of the same name, copies arriving there from another region (another owner) and
/// an older lightsnap's untagged copies stay; in the home region, another instance's
/// snapshots of a disk once of that name and untagged ones stay. Only this instance's
/// beyond the newest go, in each region.
#[test]
fn retention_in_both_regions_deletes_only_this_instances_snapshots() {
    let test = "retention_in_both_regions_deletes_only_this_instances_snapshots";
    if !root_or_skip(test) {
        return;
    }
    let scratch = Scratch::new();
    let fs = LoopFs::create(&scratch, "data", FsKind::Ext4);
    let mut seed = seed(&[("data-1", &fs.device)], None);
    seed.regions = vec!["eu-west-2".into()];
    let copy_of = |from: &'static str| ("lightsnap:copy-of", from);
    seed.disk_snapshots = vec![
        snap("home-ours-old", "data-1", "4d", &by(ME)),
        snap("home-untagged", "data-1", "5d", UNTAGGED),
        // Another instance of this region, whose disk was once called data-1.
        snap("home-theirs-1", "data-1", "6d", &by("us-east-1/web-2")),
        snap("home-theirs-2", "data-1", "7d", &by("us-east-1/web-2")),
    ];
    let mut ours_copy = by(ME);
    ours_copy.push(copy_of("us-east-1/ours-old-copy"));
    let mut arrived = by("us-west-2/web-1");
    arrived.push(copy_of("us-west-2/arrived"));
    let mut untagged_copy = UNTAGGED.to_vec();
    untagged_copy.push(copy_of("us-east-1/old-copy"));
    seed.region_disk_snapshots.insert(
        "eu-west-2".into(),
        vec![
            snap("ours-old-copy", "data-1", "4d", &ours_copy),
            // An instance of the copy region with a disk of the same name.
            snap("theirs-1", "data-1", "2d", &by("eu-west-2/web-9")),
            snap("theirs-2", "data-1", "3d", &by("eu-west-2/web-9")),
            // Copies another region's instance (of the same name, even) sends here.
            snap("arrived-1", "data-1", "5d", &arrived),
            snap("arrived-2", "data-1", "6d", &arrived),
            // An older lightsnap's copies, from this instance or not: no owner tag.
            snap("old-copy-1", "data-1", "7d", &untagged_copy),
            snap("old-copy-2", "data-1", "8d", &untagged_copy),
        ],
    );
    let fake = fake(&scratch, seed);
    write_conf(
        &scratch,
        "etc/lightsnap/config.toml",
        &format!(
            "copy_to_region = \"eu-west-2\"\n[retention]\nkeep = 1\n[[snapshot]]\npath = \"{}\"\n",
            fs.mount_point.display()
        ),
    );
    let r = finish(configured_lightsnap(&scratch, &fake).args([
        "run",
        "--snapshot-name",
        "r1",
        "--output",
        "json",
    ]));
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        deletes(&fake),
        sorted(&["us-east-1 home-ours-old", "eu-west-2 ours-old-copy"]),
        "{r:?}"
    );
    assert_eq!(
        names_in(&fake, "us-east-1"),
        sorted(&["r1", "home-untagged", "home-theirs-1", "home-theirs-2"])
    );
    assert_eq!(
        names_in(&fake, "eu-west-2"),
        sorted(&[
            "r1",
            "theirs-1",
            "theirs-2",
            "arrived-1",
            "arrived-2",
            "old-copy-1",
            "old-copy-2"
        ])
    );
    // The copy keeps the owner of the snapshot it copies: this instance, in its region.
    let copy = fake.disk_snapshot_in("eu-west-2", "r1").expect("the copy");
    let tags: BTreeMap<String, String> = copy["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["key"].as_str().unwrap().to_string(),
                t["value"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(tags["lightsnap:owner"], ME, "{copy}");
    assert_eq!(tags["lightsnap:copy-of"], "us-east-1/r1", "{copy}");
}

/// A fake without filesystems: snapshots of `data-1` by this instance, another instance,
/// an older lightsnap (untagged) and Lightsail's automatic snapshots.
fn pruning_fake(scratch: &Scratch) -> Fake {
    let mut seed = seed(&[("data-1", Path::new("/dev/xvdf"))], None);
    let mut auto = snap("auto-1", "data-1", "9d", &by(ME));
    auto.auto = true;
    seed.disk_snapshots = vec![
        snap("mine-1", "data-1", "1d", &by(ME)),
        snap("mine-2", "data-1", "2d", &by(ME)),
        snap("mine-3", "data-1", "3d", &by(ME)),
        snap("web2-1", "data-1", "4d", &by("us-east-1/web-2")),
        snap("web2-2", "data-1", "5d", &by("us-east-1/web-2")),
        snap("far-1", "data-1", "6d", &by("eu-west-2/web-1")),
        snap("far-2", "data-1", "7d", &by("eu-west-2/web-1")),
        snap("untagged-1", "data-1", "8d", UNTAGGED),
        snap("untagged-2", "data-1", "9d", UNTAGGED),
        auto,
    ];
    fake(scratch, seed)
}

fn lightsnap_with(scratch: &Scratch, fake: &Fake, args: &[&str]) -> RunResult {
    finish(configured_lightsnap(scratch, fake).args(args))
}

/// What `prune --keep 1` deletes, by whose snapshots it considers: this instance's alone by
/// default, never an untagged one without `--all`, never an automatic one.
#[test]
fn prune_considers_this_instances_snapshots_and_untagged_ones_only_with_all() {
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (vec![], vec!["mine-2", "mine-3"]),
        (vec!["--instance", "web-2"], vec!["web2-2"]),
        (vec!["--instance", "us-east-1/web-2"], vec!["web2-2"]),
        (vec!["--instance", "eu-west-2/web-1"], vec!["far-2"]),
        (
            vec!["--all-instances"],
            vec!["mine-2", "mine-3", "web2-2", "far-2"],
        ),
        // --all: every snapshot of the disk as one series, untagged included (the way to
        // retire an older lightsnap's snapshots); never an automatic one.
        (
            vec!["--all"],
            vec![
                "mine-2",
                "mine-3",
                "web2-1",
                "web2-2",
                "far-1",
                "far-2",
                "untagged-1",
                "untagged-2",
            ],
        ),
    ];
    for (extra, want) in cases {
        let scratch = Scratch::new();
        let fake = pruning_fake(&scratch);
        let mut args = vec!["prune", "--keep", "1", "--output", "json"];
        args.extend(&extra);
        // Another instance's snapshots, or untagged ones: an administrator's prune.
        let mut cmd = configured_lightsnap(&scratch, &fake);
        if !extra.is_empty() {
            as_admin(&mut cmd);
        }
        let r = finish(cmd.args(&args));
        assert_eq!(r.code, 0, "{extra:?}: {r:?}");
        let want_calls: Vec<String> = want.iter().map(|n| format!("us-east-1 {n}")).collect();
        let mut want_calls = want_calls;
        want_calls.sort();
        assert_eq!(deletes(&fake), want_calls, "{extra:?}: {r:?}");
        let doc = json_doc(&r);
        let mut said: Vec<String> = doc["deleted"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_string())
            .collect();
        said.sort();
        assert_eq!(said, sorted(&want), "{extra:?}: {doc}");
        // Each deleted snapshot says whose it was.
        for s in doc["deleted"].as_array().unwrap() {
            let name = s["name"].as_str().unwrap();
            let owner = &s["owner"];
            if name.starts_with("untagged") {
                assert!(owner.is_null(), "{s}");
            } else {
                assert!(owner.is_string(), "{s}");
            }
        }
        assert!(
            names_in(&fake, "us-east-1").contains(&"auto-1".to_string()),
            "{extra:?}"
        );
    }
}

/// From an administrator's machine (no metadata service): a plain `prune` or `list` cannot
/// tell whose snapshots are its own, so it refuses, deleting nothing, and says what to give;
/// `--instance` and `--all-instances` need no metadata service.
#[test]
fn without_the_metadata_service_prune_needs_to_be_told_whose() {
    let scratch = Scratch::new();
    let fake = pruning_fake(&scratch);
    let admin = |args: &[&str]| {
        finish(
            as_admin(&mut configured_lightsnap(&scratch, &fake))
                .env("AWS_EC2_METADATA_DISABLED", "true")
                .args(args),
        )
    };
    for cmd in [vec!["prune", "--keep", "1"], vec!["list"]] {
        let r = admin(&cmd);
        assert_eq!(r.code, 3, "{cmd:?}: {r:?}");
        assert!(
            r.stderr.contains("--instance [REGION/]NAME"),
            "{cmd:?}: {r:?}"
        );
        assert!(
            !r.stderr.contains("--disk-name"),
            "not freeze-and-snap's advice: {r:?}"
        );
    }
    assert!(deletes(&fake).is_empty());
    let r = admin(&["prune", "--keep", "1", "--instance", "web-2"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout
            .lines()
            .any(|l| l.starts_with("deleted web2-2 ") && l.contains("owner us-east-1/web-2")),
        "{r:?}"
    );
    let r = admin(&["prune", "--keep", "1", "--all-instances"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        deletes(&fake),
        sorted(&[
            "us-east-1 web2-2",
            "us-east-1 mine-2",
            "us-east-1 mine-3",
            "us-east-1 far-2"
        ])
    );
    // --all-instances never touches an untagged snapshot.
    assert!(names_in(&fake, "us-east-1").contains(&"untagged-2".to_string()));
    // The same options on list; --all names every snapshot's owner, untagged ones as such.
    let r = admin(&["list", "--instance", "web-2", "--output", "json"]);
    assert_eq!(r.code, 0, "{r:?}");
    let doc = json_doc(&r);
    let names: Vec<&str> = doc["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web2-1"], "{doc}");
    let r = admin(&["list", "--all"]);
    assert_eq!(r.code, 0, "{r:?}");
    let row = |name: &str| -> String {
        r.stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no {name}: {r:?}"))
            .to_string()
    };
    assert!(r.stdout.lines().next().unwrap().ends_with("OWNER"), "{r:?}");
    assert!(row("untagged-1").ends_with(" untagged"), "{r:?}");
    assert!(row("far-1").ends_with(" eu-west-2/web-1"), "{r:?}");
}

/// `list` on the instance shows only this instance's snapshots; `own` and `owner` in JSON.
#[test]
fn list_shows_this_instances_snapshots_unless_widened() {
    let scratch = Scratch::new();
    let fake = pruning_fake(&scratch);
    let r = lightsnap_with(&scratch, &fake, &["list", "--output", "json"]);
    assert_eq!(r.code, 0, "{r:?}");
    let doc = json_doc(&r);
    let listed: Vec<(String, Value)> = doc["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap().to_string(), s["owner"].clone()))
        .collect();
    assert_eq!(
        listed,
        [
            ("mine-1".to_string(), Value::from(ME)),
            ("mine-2".to_string(), Value::from(ME)),
            ("mine-3".to_string(), Value::from(ME)),
        ]
    );
    let r = lightsnap_with(
        &scratch,
        &fake,
        &["list", "--all-instances", "--output", "json"],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(json_doc(&r)["snapshots"].as_array().unwrap().len(), 7);
    let r = lightsnap_with(&scratch, &fake, &["list", "--all", "--instance", "web-2"]);
    assert_eq!(r.code, 2, "--all and --instance contradict: {r:?}");
}

/// Every create call lightsnap makes carries this instance's owner tag: CreateDiskSnapshot
/// (named with --disk-name too), CreateInstanceSnapshot, the copy's TagResource in the copy
/// region, and verify's CreateDiskFromSnapshot.
#[test]
fn every_create_request_carries_the_owner_tag() {
    let test = "every_create_request_carries_the_owner_tag";
    if !root_or_skip(test) || !tool_or_skip(test, "mkfs.ext4") {
        return;
    }
    let scratch = Scratch::new();
    let fs = LoopFs::create(&scratch, "data", FsKind::Ext4);
    let mut seed = seed(&[("data-1", &fs.device)], None);
    seed.regions = vec!["eu-west-2".into()];
    let dir = scratch.path().join("snapshots");
    std::fs::create_dir_all(&dir).unwrap();
    let mut opts = Options::new(seed, dir);
    opts.snapshot_duration = Duration::ZERO;
    opts.attach_dir = Some(scratch.path().join("dev"));
    let fake = Fake::start(opts).expect("fake lightsail in attach mode");
    let run = |args: &[&str]| {
        finish(
            configured_lightsnap(&scratch, &fake)
                .env("LIGHTSNAP_DEV_DIR", scratch.path().join("dev"))
                .env("LIGHTSNAP_VERIFY_POLL_MS", "20")
                .args(args),
        )
    };
    let mp = fs.mount_point.display().to_string();
    for args in [
        vec!["freeze-and-snap", &mp, "--snapshot-name", "s1"],
        vec![
            "freeze-and-snap",
            &mp,
            "--disk-name",
            "data-1",
            "--snapshot-name",
            "s2",
            "--copy-to-region",
            "eu-west-2",
        ],
        vec!["snap-instance", "--snapshot-name", "whole-1"],
        vec!["verify", "s1"],
    ] {
        let r = run(&args);
        assert_eq!(r.code, 0, "{args:?}: {r:?}");
    }
    let calls = fake.calls();
    let made: Vec<&fake_lightsail::Call> = calls
        .iter()
        .filter(|c| c.operation.starts_with("Create") || c.operation == "TagResource")
        .filter(|c| c.status == Some(200))
        .collect();
    let ops: Vec<&str> = made.iter().map(|c| c.operation.as_str()).collect();
    for op in [
        "CreateDiskSnapshot",
        "CreateInstanceSnapshot",
        "CreateDiskFromSnapshot",
    ] {
        assert!(ops.contains(&op), "{op} made: {ops:?}");
    }
    for c in &made {
        let tags = call_tags(&c.body);
        // TagResource on this region's snapshots adds a consistency or verification tag to
        // a resource tagged at creation; the copy's, in the copy region, carries them all.
        if c.operation == "TagResource" && c.region.as_deref() != Some("eu-west-2") {
            continue;
        }
        assert_eq!(
            tags.get("lightsnap:owner").map(String::as_str),
            Some(ME),
            "{} in {:?}: {}",
            c.operation,
            c.region,
            c.body
        );
    }
    assert!(
        made.iter()
            .any(|c| c.operation == "TagResource" && c.region.as_deref() == Some("eu-west-2")),
        "the copy was tagged: {ops:?}"
    );
}
