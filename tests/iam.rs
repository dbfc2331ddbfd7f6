//! Least privilege, end to end: the fake Lightsail enforcing what `lightsnap iam-policy`
//! prints. lightsnap's own workflow passes under it with no call refused, and the calls
//! lightsnap makes are exactly the policy's actions; the calls a thief holding the instance's
//! keys would make against other instances' resources (or untagged ones) are refused; with
//! `--append-only`, this instance's own deletes are refused too while snapshots still work;
//! a refusal exits 23 naming the action.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use aws_sdk_lightsail::error::ProvideErrorMetadata;
use common::*;

/// The policy for this instance (`web-1` in `us-east-1`), as the tests print it.
const FOR_WEB_1: &[&str] = &["--instance", INSTANCE, "--region", "us-east-1"];

/// A Lightsail client of the test's own (the thief's), signed for `region`, under the same
/// policy as lightsnap's keys (its own access key marks its calls as a thief's in the call
/// log).
fn sdk(fake: &Fake, region: &str) -> aws_sdk_lightsail::Client {
    client(fake, region, fake_lightsail::THIEF_ACCESS_KEY)
}

/// An administrator's client: the set-up a test makes as one (tagging a disk for the
/// instance), marked as such in the call log.
fn admin(fake: &Fake, region: &str) -> aws_sdk_lightsail::Client {
    client(fake, region, fake_lightsail::ADMIN_ACCESS_KEY)
}

fn client(fake: &Fake, region: &str, key: &str) -> aws_sdk_lightsail::Client {
    let creds = aws_sdk_lightsail::config::Credentials::new(
        key,
        fake_lightsail::DEFAULT_SECRET_KEY,
        None,
        None,
        "test",
    );
    let config = aws_sdk_lightsail::Config::builder()
        .behavior_version(aws_sdk_lightsail::config::BehaviorVersion::latest())
        .region(aws_sdk_lightsail::config::Region::new(region.to_string()))
        .endpoint_url(fake.endpoint())
        .credentials_provider(creds)
        .build();
    aws_sdk_lightsail::Client::from_conf(config)
}

fn tag(k: &str, v: &str) -> aws_sdk_lightsail::types::Tag {
    aws_sdk_lightsail::types::Tag::builder()
        .key(k)
        .value(v)
        .build()
}

/// The error code of a call's result (`None`: it succeeded).
fn code<T, E: ProvideErrorMetadata>(r: Result<T, E>) -> Option<String> {
    r.err().map(|e| e.code().unwrap_or("no code").to_string())
}

fn names(v: &serde_json::Value, list: &str) -> BTreeSet<String> {
    v[list]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect()
}

/// Another instance, `web-2`, with a disk and a snapshot of it; snapshots of this instance's
/// disk: one of its lightsnap's (`ours`), one made by hand (`untagged`), one by a lightsnap
/// older than the ownership tag (`older-lightsnap`); and an unattached disk (`spare`).
fn two_instances() -> Seed {
    Seed::from_toml_str(&format!(
        r#"
self_instance = "{INSTANCE}"
regions = ["eu-west-2"]
[[instances]]
name = "{INSTANCE}"
instance_id = "{INSTANCE_ID}"
[[instances]]
name = "web-2"
instance_id = "i-0fedcba9876543210"
[[disks]]
name = "data-1"
path = "/dev/xvdf"
attached_to = "{INSTANCE}"
[[disks]]
name = "web2-data"
path = "/dev/xvdf"
attached_to = "web-2"
[[disks]]
name = "spare"
[[disk_snapshots]]
name = "ours"
disk = "data-1"
tags = {{ "lightsnap:owner" = "us-east-1/{INSTANCE}", "lightsnap:consistency" = "frozen" }}
[[disk_snapshots]]
name = "theirs"
disk = "web2-data"
tags = {{ "lightsnap:owner" = "us-east-1/web-2", "lightsnap:consistency" = "frozen" }}
[[disk_snapshots]]
name = "untagged"
disk = "data-1"
age = "2d"
[[disk_snapshots]]
name = "older-lightsnap"
disk = "data-1"
age = "3d"
tags = {{ "lightsnap:consistency" = "frozen" }}
[region_disk_snapshots]
eu-west-2 = [{{ name = "their-copy", disk = "web2-data" }}]
"#
    ))
    .expect("seed")
}

/// Everything a thief with web-1's keys would try against what is not web-1's lightsnap's:
/// each refused with AccessDeniedException; the same key still does web-1's own work.
#[test]
fn a_stolen_key_cannot_touch_another_instances_or_untagged_resources() {
    let scratch = Scratch::new();
    let fake = fake(&scratch, two_instances());
    let home = sdk(&fake, "us-east-1");
    let away = sdk(&fake, "eu-west-2");
    let rt = tokio::runtime::Runtime::new().unwrap();
    // Before the policy: web-1's lightsnap made a disk (`ours-disk`, not a scratch disk) and
    // web-2's a scratch disk (tagged so by an administrator).
    let set_up = admin(&fake, "us-east-1");
    rt.block_on(async {
        set_up
            .tag_resource()
            .resource_name("spare")
            .tags(tag("lightsnap:owner", "us-east-1/web-1"))
            .send()
            .await
            .unwrap();
        set_up
            .tag_resource()
            .resource_name("web2-data")
            .tags(tag("lightsnap:owner", "us-east-1/web-2"))
            .tags(tag("lightsnap:scratch", "true"))
            .send()
            .await
            .unwrap();
    });
    enforce_printed_policy(
        &scratch,
        &fake,
        &[FOR_WEB_1, &["--copy-region", "eu-west-2"]].concat(),
    );
    const DENIED: Option<&str> = Some("AccessDeniedException");
    rt.block_on(async {
        let attempts: Vec<(&str, Option<String>)> = vec![
            (
                "delete another instance's snapshot",
                code(
                    home.delete_disk_snapshot()
                        .disk_snapshot_name("theirs")
                        .send()
                        .await,
                ),
            ),
            (
                "delete a snapshot made by hand",
                code(
                    home.delete_disk_snapshot()
                        .disk_snapshot_name("untagged")
                        .send()
                        .await,
                ),
            ),
            (
                "delete a snapshot of a lightsnap older than the tag",
                code(
                    home.delete_disk_snapshot()
                        .disk_snapshot_name("older-lightsnap")
                        .send()
                        .await,
                ),
            ),
            (
                "claim another instance's snapshot",
                code(
                    home.tag_resource()
                        .resource_name("theirs")
                        .tags(tag("lightsnap:owner", "us-east-1/web-1"))
                        .send()
                        .await,
                ),
            ),
            (
                "re-tag another instance's snapshot",
                code(
                    home.tag_resource()
                        .resource_name("theirs")
                        .tags(tag("lightsnap:verified", "failed"))
                        .send()
                        .await,
                ),
            ),
            (
                "untag another instance's snapshot",
                code(
                    home.untag_resource()
                        .resource_name("theirs")
                        .tag_keys("lightsnap:owner")
                        .send()
                        .await,
                ),
            ),
            (
                "untag its own snapshot",
                code(
                    home.untag_resource()
                        .resource_name("ours")
                        .tag_keys("lightsnap:owner")
                        .send()
                        .await,
                ),
            ),
            (
                "claim a snapshot made by hand in the home region",
                code(
                    home.tag_resource()
                        .resource_name("untagged")
                        .tags(tag("lightsnap:owner", "us-east-1/web-1"))
                        .send()
                        .await,
                ),
            ),
            (
                "give its own snapshot to another instance",
                code(
                    home.tag_resource()
                        .resource_name("ours")
                        .tags(tag("lightsnap:owner", "us-east-1/web-2"))
                        .send()
                        .await,
                ),
            ),
            (
                "mark its own disk a scratch disk",
                code(
                    home.tag_resource()
                        .resource_name("spare")
                        .tags(tag("lightsnap:scratch", "true"))
                        .send()
                        .await,
                ),
            ),
            (
                "restore another instance's snapshot",
                code(
                    home.create_disk_from_snapshot()
                        .disk_name("loot")
                        .disk_snapshot_name("theirs")
                        .availability_zone("us-east-1a")
                        .size_in_gb(8)
                        .tags(tag("lightsnap:owner", "us-east-1/web-1"))
                        .send()
                        .await,
                ),
            ),
            (
                "restore its own snapshot to a disk not tagged its own",
                code(
                    home.create_disk_from_snapshot()
                        .disk_name("loot")
                        .disk_snapshot_name("ours")
                        .availability_zone("us-east-1a")
                        .size_in_gb(8)
                        .send()
                        .await,
                ),
            ),
            (
                "detach another instance's disk",
                code(home.detach_disk().disk_name("web2-data").send().await),
            ),
            (
                "delete another instance's scratch disk",
                code(home.delete_disk().disk_name("web2-data").send().await),
            ),
            (
                "detach its own data disk (untagged)",
                code(home.detach_disk().disk_name("data-1").send().await),
            ),
            (
                "delete its own disk that is not a scratch disk",
                code(home.delete_disk().disk_name("spare").send().await),
            ),
            (
                "snapshot without the ownership tag",
                code(
                    home.create_disk_snapshot()
                        .disk_name("web2-data")
                        .disk_snapshot_name("sneaky")
                        .send()
                        .await,
                ),
            ),
            (
                "snapshot in another instance's name",
                code(
                    home.create_disk_snapshot()
                        .disk_name("data-1")
                        .disk_snapshot_name("sneaky")
                        .tags(tag("lightsnap:owner", "us-east-1/web-2"))
                        .send()
                        .await,
                ),
            ),
            (
                "snapshot with a tag key the policy does not name",
                code(
                    home.create_disk_snapshot()
                        .disk_name("data-1")
                        .disk_snapshot_name("sneaky")
                        .tags(tag("lightsnap:owner", "us-east-1/web-1"))
                        .tags(tag("billing", "x"))
                        .send()
                        .await,
                ),
            ),
            (
                "delete another instance's copy in the copy region",
                code(
                    away.delete_disk_snapshot()
                        .disk_snapshot_name("their-copy")
                        .send()
                        .await,
                ),
            ),
        ];
        for (what, got) in &attempts {
            assert_eq!(got.as_deref(), DENIED, "{what}");
        }
        // Not a deny-everything policy: web-1's own work goes through.
        assert_eq!(
            code(
                home.create_disk_snapshot()
                    .disk_name("data-1")
                    .disk_snapshot_name("mine")
                    .tags(tag("lightsnap:owner", "us-east-1/web-1"))
                    .tags(tag("lightsnap:consistency", "frozen"))
                    .send()
                    .await
            ),
            None
        );
        assert_eq!(
            code(
                home.tag_resource()
                    .resource_name("ours")
                    .tags(tag("lightsnap:verified", "clean"))
                    .send()
                    .await
            ),
            None
        );
        assert_eq!(code(home.get_disk_snapshots().send().await), None);
        assert_eq!(
            code(
                home.delete_disk_snapshot()
                    .disk_snapshot_name("ours")
                    .send()
                    .await
            ),
            None
        );
    });
    let left = names(&fake.snapshots(), "diskSnapshots");
    for kept in ["theirs", "untagged", "older-lightsnap", "mine"] {
        assert!(left.contains(kept), "{kept}: {left:?}");
    }
    assert!(!left.contains("ours"));
    assert!(names(&fake.snapshots_in("eu-west-2"), "diskSnapshots").contains("their-copy"));
    let disks = fake.disks().to_string();
    for kept in ["web2-data", "spare", "data-1"] {
        assert!(disks.contains(&format!("\"{kept}\"")), "{kept}: {disks}");
    }
    assert!(!disks.contains("loot"), "{disks}");

    // `prune --all` under the policy: the snapshots that are not this instance's are
    // refused (exit 23, naming the action and the command), and stay.
    let r = finish(configured_lightsnap(&scratch, &fake).args(["prune", "--all", "--keep", "1"]));
    assert_eq!(r.code, 23, "{r:?}");
    assert!(r.stderr.contains("lightsail:DeleteDiskSnapshot"), "{r:?}");
    assert!(r.stderr.contains("lightsnap iam-policy"), "{r:?}");
    let left = names(&fake.snapshots(), "diskSnapshots");
    for kept in ["theirs", "untagged", "older-lightsnap"] {
        assert!(left.contains(kept), "{kept}: {left:?}");
    }
}

/// `plan` checks the read calls up front: a key that cannot make one is told which.
#[test]
fn plan_names_a_read_call_the_key_may_not_make() {
    let Some(s) = OneDisk::new("plan_names_a_read_call_the_key_may_not_make") else {
        return;
    };
    let doc = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{ "Effect": "Allow", "NotAction": "lightsail:GetInstanceSnapshots", "Resource": "*" }]
    });
    s.fake
        .set_policy(Some(fake_lightsail::policy::Policy::parse(&doc).unwrap()));
    let r = finish(
        lightsnap(&s.scratch, &s.fake)
            .arg("plan")
            .arg(&s.fs.mount_point),
    );
    assert_eq!(r.code, 23, "{r:?}");
    assert!(r.stderr.contains("lightsail:GetInstanceSnapshots"), "{r:?}");
    assert!(r.stderr.contains("lightsnap iam-policy"), "{r:?}");
    assert!(!s.fs.is_frozen());
}

/// A one-disk set-up whose fake serves `eu-west-2` too and attaches restored disks as loop
/// devices in `<scratch>/dev` (for verify).
struct Workflow {
    fake: Fake,
    fs: LoopFs,
    scratch: Scratch,
}

impl Workflow {
    fn new(test: &str) -> Option<Self> {
        Self::with(test, "")
    }

    /// With more of the world: `extra`, a seed of its own (instances, disks, snapshots); then
    /// `data-1` is at Lightsail's `/dev/xvdf` (the configuration names its mount).
    fn with(test: &str, extra: &str) -> Option<Self> {
        if !root_or_skip(test) {
            return None;
        }
        let scratch = Scratch::new();
        let fs = LoopFs::create(&scratch, "data", FsKind::Ext4);
        let mut seed = seed(&[("data-1", &fs.device)], None);
        let more = Seed::from_toml_str(extra).expect("extra seed");
        if !extra.is_empty() {
            // Where Lightsail says it is attached (a roll-back attaches at the same path).
            seed.disks[0].path = Some("/dev/xvdf".into());
        }
        seed.instances.extend(more.instances);
        seed.disks.extend(more.disks);
        seed.disk_snapshots.extend(more.disk_snapshots);
        seed.regions = vec!["eu-west-2".into()];
        let dir = scratch.path().join("snapshots");
        std::fs::create_dir_all(&dir).unwrap();
        let mut opts = Options::new(seed, dir);
        opts.snapshot_duration = Duration::ZERO;
        opts.page_size = 3;
        opts.attach_dir = Some(scratch.path().join("dev"));
        let fake = Fake::start(opts).expect("fake lightsail in attach mode");
        Some(Self { fake, fs, scratch })
    }

    fn run(&self, args: &[&str]) -> RunResult {
        let mut cmd = configured_lightsnap(&self.scratch, &self.fake);
        cmd.env("LIGHTSNAP_DEV_DIR", self.scratch.path().join("dev"))
            .env("LIGHTSNAP_VERIFY_POLL_MS", "20")
            .args(args);
        finish(&mut cmd)
    }

    fn mp(&self) -> String {
        self.fs.mount_point.display().to_string()
    }
}

impl Drop for Workflow {
    /// As `tests/verify.rs`: loop devices over this test's files set read-write again.
    fn drop(&mut self) {
        let Ok(out) = std::process::Command::new("losetup")
            .args(["-n", "-O", "NAME,BACK-FILE"])
            .output()
        else {
            return;
        };
        let scratch = self.scratch.path().display().to_string();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some((dev, file)) = line.split_once(' ') {
                if file.trim().starts_with(&scratch) {
                    let _ = lightsnap::kernel::set_read_only(Path::new(dev), false);
                }
            }
        }
    }
}

/// The whole own workflow under the printed policy — snapshot with a copy, whole-instance
/// snapshots, list, verify, run with retention in both regions and a verification every
/// second run, prune, status and check — with no call refused; and the operations lightsnap made are exactly the policy's actions (nothing it
/// allows goes unused, nothing used is missing).
#[test]
fn the_workflow_passes_under_the_printed_policy_and_uses_all_of_it() {
    let Some(w) = Workflow::new("the_workflow_passes_under_the_printed_policy_and_uses_all_of_it")
    else {
        return;
    };
    write_conf(
        &w.scratch,
        "etc/lightsnap/config.toml",
        &format!(
            "copy_to_region = \"eu-west-2\"\nverify_every = 2\n[tags]\nteam = \"ops\"\n[retention]\nkeep = 1\n[[snapshot]]\npath = \"{}\"\n",
            w.mp()
        ),
    );
    let doc = enforce_printed_policy(&w.scratch, &w.fake, FOR_WEB_1);
    let mp = w.mp();
    std::fs::write(w.fs.mount_point.join("hello.txt"), "restored\n").unwrap();
    let steps: Vec<Vec<&str>> = vec![
        vec!["plan", &mp],
        vec![
            "freeze-and-snap",
            &mp,
            "--snapshot-name",
            "s1",
            "--copy-to-region",
            "eu-west-2",
        ],
        vec!["snap-instance", "--snapshot-name", "whole-1"],
        vec!["snap-instance", "--snapshot-name", "whole-2"],
        vec!["list"],
        vec!["list", "--region", "eu-west-2"],
        vec!["verify", "s1"],
        vec!["restore", "whole-1", "--new-instance", "web-2", "--yes"],
        vec!["run", "--snapshot-name", "r1"],
        vec!["run", "--snapshot-name", "r2"],
        vec!["prune", "--keep", "1"],
        vec!["prune", "--keep", "1", "--region", "eu-west-2"],
        // Monitoring.
        vec!["status", "--refresh"],
        vec!["check", "--max-age", "1h"],
    ];
    for step in &steps {
        let r = w.run(step);
        assert_eq!(r.code, 0, "{step:?} under the policy: {r:?}");
    }
    assert!(!w.fs.is_frozen());
    assert_eq!(refused_calls(&w.fake), Vec::<String>::new());
    // The second run verified its snapshot, under the policy.
    let r2 = w.fake.disk_snapshot("r2").expect("r2 kept");
    assert!(
        r2["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["key"] == "lightsnap:verified" && t["value"] == "clean"),
        "{r2}"
    );
    // Retention happened in both regions, under the policy.
    assert_eq!(
        names(&w.fake.snapshots(), "diskSnapshots"),
        BTreeSet::from(["r2".to_string()])
    );
    assert_eq!(
        names(&w.fake.snapshots_in("eu-west-2"), "diskSnapshots"),
        BTreeSet::from(["r2".to_string()])
    );
    assert_eq!(
        names(&w.fake.snapshots(), "instanceSnapshots"),
        BTreeSet::from(["whole-2".to_string()])
    );
    // What was called is what the policy allows.
    let called: BTreeSet<String> = w
        .fake
        .calls()
        .into_iter()
        .map(|c| c.operation)
        .filter(|o| !o.starts_with("IMDS"))
        .collect();
    // The policy's action patterns (`GetDisk*` among them), each matching at least one of
    // lightsnap's operations; what they allow of those is what was called. (That a wildcard
    // matches nothing else of Lightsail's is a unit test against the service model.)
    let patterns: Vec<String> = doc["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["Effect"] == "Allow")
        .flat_map(|s| match &s["Action"] {
            serde_json::Value::Array(list) => list.clone(),
            one => vec![one.clone()],
        })
        .map(|a| {
            a.as_str()
                .unwrap()
                .trim_start_matches("lightsail:")
                .to_string()
        })
        .collect();
    let matches = fake_lightsail::policy::Policy::pattern_matches;
    let operations = lightsnap::cloud::lightsail::OPERATIONS;
    for p in &patterns {
        assert!(
            operations.iter().any(|op| matches(p, op)),
            "{p} allows no call lightsnap makes"
        );
    }
    let allowed: BTreeSet<String> = operations
        .iter()
        .filter(|op| patterns.iter().any(|p| matches(p, op)))
        .map(|op| op.to_string())
        .collect();
    assert_eq!(called, allowed, "the calls made vs the policy's actions");
    let table: BTreeSet<String> = operations.iter().map(|s| s.to_string()).collect();
    assert_eq!(called, table);

    // A tag key the policy does not name (neither `lightsnap:*` nor the configuration's):
    // the create call is refused inside the window, the filesystem thawed, exit 23.
    let r = w.run(&[
        "freeze-and-snap",
        &mp,
        "--snapshot-name",
        "t1",
        "--tag",
        "billing=x",
    ]);
    assert_eq!(r.code, 23, "{r:?}");
    assert!(r.stderr.contains("lightsail:CreateDiskSnapshot"), "{r:?}");
    assert!(r.stderr.contains("lightsnap iam-policy"), "{r:?}");
    assert!(!w.fs.is_frozen());
    assert!(w.fake.disk_snapshot("t1").is_none());
}

/// Another instance (`web-2`) with a disk and a snapshot of it, and an untagged spare disk.
const OTHERS: &str = r#"
[[instances]]
name = "web-2"
instance_id = "i-0fedcba9876543210"
[[disks]]
name = "web2-data"
path = "/dev/xvdf"
attached_to = "web-2"
tags = { "lightsnap:owner" = "us-east-1/web-2" }
[[disks]]
name = "spare"
[[disk_snapshots]]
name = "theirs"
disk = "web2-data"
tags = { "lightsnap:owner" = "us-east-1/web-2" }
"#;

/// The whole restore workflow under the printed instance policy: files back and released;
/// a roll-back of a live disk the user made is refused up front (exit 25, the administrator's
/// command, no mutating call); once an administrator tagged it, the roll-back passes — no call
/// of lightsnap's refused. The thief's calls around it are refused: deleting the replaced
/// (kept) original or the disk that replaced it, making that disk removable, detaching another
/// instance's disk, deleting an untagged disk, restoring another instance's snapshot.
#[test]
fn restore_passes_under_the_printed_policy_and_a_thief_cannot_use_it() {
    let Some(w) = Workflow::with(
        "restore_passes_under_the_printed_policy_and_a_thief_cannot_use_it",
        OTHERS,
    ) else {
        return;
    };
    let mp = w.mp();
    write_conf(
        &w.scratch,
        "etc/lightsnap/config.toml",
        &format!("[[snapshot]]\npath = \"{mp}\"\ndisk = \"data-1\"\n"),
    );
    let doc = enforce_printed_policy(&w.scratch, &w.fake, FOR_WEB_1);
    std::fs::write(w.fs.mount_point.join("hello.txt"), "as it was\n").unwrap();
    let r = w.run(&["freeze-and-snap", &mp, "--snapshot-name", "s1"]);
    assert_eq!(r.code, 0, "{r:?}");
    std::fs::write(w.fs.mount_point.join("hello.txt"), "since\n").unwrap();
    // Files back, read-only, then released (detached and deleted) under the policy.
    let files = w.scratch.path().join("files");
    let f = files.display().to_string();
    let r = w.run(&["restore", "s1", "--mount", &f, "--output", "json"]);
    assert_eq!(r.code, 0, "{r:?}");
    let copy = json_doc(&r)["restored_disk"].as_str().unwrap().to_string();
    assert_eq!(
        std::fs::read_to_string(files.join("hello.txt")).unwrap(),
        "as it was\n"
    );
    let r = w.run(&["restore", "--release", &f]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(w.fake.disk(&copy).is_none(), "the copy is deleted");
    // The live disk carries no owner tag: refused before anything changes.
    let before = w.fake.calls().len();
    let r = w.run(&["restore", "s1", "--replace", &mp, "--yes"]);
    assert_eq!(r.code, 25, "{r:?}");
    assert!(
        r.stderr.contains("aws lightsail tag-resource --resource-name data-1 --tags key=lightsnap:owner,value=us-east-1/web-1"),
        "{r:?}"
    );
    let mutating: Vec<String> = w.fake.calls()[before..]
        .iter()
        .map(|c| c.operation.clone())
        .filter(|o| !o.starts_with("IMDS") && !o.starts_with("Get"))
        .collect();
    assert_eq!(mutating, Vec::<String>::new());
    assert!(w.fs.is_mounted());
    // An administrator tags it (with a key of their own, not under the instance's policy).
    w.fake.set_policy(None);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        admin(&w.fake, "us-east-1")
            .tag_resource()
            .resource_name("data-1")
            .tags(tag("lightsnap:owner", "us-east-1/web-1"))
            .send()
            .await
            .unwrap();
    });
    w.fake
        .set_policy(Some(fake_lightsail::policy::Policy::parse(&doc).unwrap()));
    let r = w.run(&[
        "restore",
        "s1",
        "--replace",
        &mp,
        "--yes",
        "--output",
        "json",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let live = json_doc(&r)["restored_disk"].as_str().unwrap().to_string();
    assert_eq!(
        std::fs::read_to_string(w.fs.mount_point.join("hello.txt")).unwrap(),
        "as it was\n"
    );
    assert_eq!(refused_calls(&w.fake), Vec::<String>::new());
    const DENIED: Option<&str> = Some("AccessDeniedException");
    let home = sdk(&w.fake, "us-east-1");
    rt.block_on(async {
        let attempts: Vec<(&str, Option<String>)> = vec![
            (
                "delete the replaced original, kept",
                code(home.delete_disk().disk_name("data-1").send().await),
            ),
            (
                "delete the disk that replaced it",
                code(home.delete_disk().disk_name(&live).send().await),
            ),
            (
                "make the disk that replaced it removable",
                code(
                    home.tag_resource()
                        .resource_name(&live)
                        .tags(tag("lightsnap:scratch", "restore"))
                        .send()
                        .await,
                ),
            ),
            (
                "detach another instance's disk",
                code(home.detach_disk().disk_name("web2-data").send().await),
            ),
            (
                "delete an untagged disk",
                code(home.delete_disk().disk_name("spare").send().await),
            ),
            (
                "restore from another instance's snapshot",
                code(
                    home.create_disk_from_snapshot()
                        .disk_name("loot")
                        .disk_snapshot_name("theirs")
                        .availability_zone("us-east-1a")
                        .size_in_gb(8)
                        .tags(tag("lightsnap:owner", "us-east-1/web-1"))
                        .tags(tag("lightsnap:scratch", "restore"))
                        .send()
                        .await,
                ),
            ),
        ];
        for (what, got) in &attempts {
            assert_eq!(got.as_deref(), DENIED, "{what}");
        }
    });
    for kept in ["data-1", live.as_str(), "web2-data", "spare"] {
        assert!(w.fake.disk(kept).is_some(), "{kept}");
    }
    assert!(w.fake.disk("loot").is_none());
    let _ = std::process::Command::new("umount")
        .arg(&w.fs.mount_point)
        .status();
}

/// `--append-only`: a file restore works, but its release cannot delete the copy — it is
/// unmounted and detached, and the message says how an administrator deletes it (exit 23).
#[test]
fn append_only_release_says_how_to_delete_the_copy_elsewhere() {
    let Some(w) = Workflow::new("append_only_release_says_how_to_delete_the_copy_elsewhere") else {
        return;
    };
    enforce_printed_policy(
        &w.scratch,
        &w.fake,
        &[FOR_WEB_1, &["--append-only"]].concat(),
    );
    let mp = w.mp();
    let r = w.run(&["freeze-and-snap", &mp, "--snapshot-name", "a1"]);
    assert_eq!(r.code, 0, "{r:?}");
    let files = w.scratch.path().join("files");
    let f = files.display().to_string();
    let r = w.run(&["restore", "a1", "--mount", &f, "--output", "json"]);
    assert_eq!(r.code, 0, "{r:?}");
    let copy = json_doc(&r)["restored_disk"].as_str().unwrap().to_string();
    let r = w.run(&["restore", "--release", &f]);
    assert_eq!(r.code, 23, "{r:?}");
    assert!(
        r.stderr
            .contains(&format!("aws lightsail delete-disk --disk-name {copy}")),
        "{r:?}"
    );
    let d = w.fake.disk(&copy).expect("the copy is kept");
    assert_eq!(d["isAttached"], false, "{d}");
}

/// `--append-only`: snapshots, copies and verify still work; deleting this instance's own
/// snapshots is refused (retention fails with exit 23 and keeps them), by lightsnap and by
/// a thief alike.
#[test]
fn append_only_refuses_this_instances_own_deletes_while_snapshots_still_work() {
    let Some(w) =
        Workflow::new("append_only_refuses_this_instances_own_deletes_while_snapshots_still_work")
    else {
        return;
    };
    enforce_printed_policy(
        &w.scratch,
        &w.fake,
        &[FOR_WEB_1, &["--append-only", "--copy-region", "eu-west-2"]].concat(),
    );
    let mp = w.mp();
    std::fs::write(w.fs.mount_point.join("hello.txt"), "restored\n").unwrap();
    for step in [
        vec![
            "freeze-and-snap",
            &mp,
            "--snapshot-name",
            "a1",
            "--copy-to-region",
            "eu-west-2",
        ],
        vec!["freeze-and-snap", &mp, "--snapshot-name", "a2"],
        vec!["verify", "a2"],
    ] {
        let r = w.run(&step);
        assert_eq!(r.code, 0, "{step:?} under --append-only: {r:?}");
    }
    assert_eq!(refused_calls(&w.fake), Vec::<String>::new());
    let r = w.run(&["prune", "--keep", "1"]);
    assert_eq!(r.code, 23, "{r:?}");
    assert!(r.stderr.contains("lightsail:DeleteDiskSnapshot"), "{r:?}");
    assert!(r.stderr.contains("lightsnap iam-policy"), "{r:?}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let home = sdk(&w.fake, "us-east-1");
        let got = home
            .delete_disk_snapshot()
            .disk_snapshot_name("a2")
            .send()
            .await;
        assert_eq!(code(got).as_deref(), Some("AccessDeniedException"));
        let away = sdk(&w.fake, "eu-west-2");
        let got = away
            .delete_disk_snapshot()
            .disk_snapshot_name("a1")
            .send()
            .await;
        assert_eq!(code(got).as_deref(), Some("AccessDeniedException"));
    });
    assert_eq!(
        names(&w.fake.snapshots(), "diskSnapshots"),
        BTreeSet::from(["a1".to_string(), "a2".to_string()])
    );
    assert!(names(&w.fake.snapshots_in("eu-west-2"), "diskSnapshots").contains("a1"));
}

/// The AWS CLI (v1, its own botocore), or `None` where it is not installed outside CI (said
/// why); in CI a missing CLI fails the test.
fn aws_cli() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("LIGHTSNAP_AWS_CLI")
        .filter(|p| !p.is_empty())
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/awscli/bin/aws"));
    if path.is_file() {
        return Some(path);
    }
    let why = format!(
        "the AWS CLI is not at {} (LIGHTSNAP_AWS_CLI, else target/awscli/bin/aws): run scripts/deps",
        path.display()
    );
    if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
        panic!("{why}");
    }
    eprintln!("skipping the AWS CLI part: {why}");
    None
}

/// The thief's tool of choice: the AWS CLI with the instance's keys. Refused the same way,
/// and the CLI reads the refusal as AccessDeniedException.
#[test]
fn the_aws_cli_with_the_instance_keys_is_refused_too() {
    let Some(aws) = aws_cli() else {
        return;
    };
    let scratch = Scratch::new();
    let fake = fake(&scratch, two_instances());
    enforce_printed_policy(&scratch, &fake, FOR_WEB_1);
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(&aws)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("AWS_ACCESS_KEY_ID", fake_lightsail::THIEF_ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", fake_lightsail::DEFAULT_SECRET_KEY)
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .args(["--endpoint-url", &fake.endpoint(), "lightsail"])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for args in [
        &["delete-disk-snapshot", "--disk-snapshot-name", "theirs"][..],
        &["delete-disk-snapshot", "--disk-snapshot-name", "untagged"],
        &[
            "tag-resource",
            "--resource-name",
            "theirs",
            "--tags",
            "key=lightsnap:owner,value=us-east-1/web-1",
        ],
        &["delete-disk", "--disk-name", "web2-data"],
    ] {
        let (code, stderr) = cli(args);
        assert_ne!(code, Some(0), "{args:?}: {stderr}");
        assert!(
            stderr.contains("AccessDeniedException"),
            "{args:?}: {stderr}"
        );
    }
    // The same key reads.
    let (code, stderr) = cli(&["get-disk-snapshots"]);
    assert_eq!(code, Some(0), "{stderr}");
    let left = names(&fake.snapshots(), "diskSnapshots");
    assert!(
        left.contains("theirs") && left.contains("untagged"),
        "{left:?}"
    );
}

/// Without `--instance`, the policy is for this instance (the metadata service's region and
/// instance id, named by GetInstances); the configuration's tag keys are allowed; the
/// variants exclude each other; a bad name is a usage error.
#[test]
fn iam_policy_is_for_this_instance_unless_told_and_checks_its_input() {
    let scratch = Scratch::new();
    let fake = fake(&scratch, two_instances());
    write_conf(
        &scratch,
        "etc/lightsnap/config.toml",
        "copy_to_region = \"eu-west-2\"\n[tags]\nteam = \"ops\"\n",
    );
    let print = |args: &[&str]| {
        finish(
            configured_lightsnap(&scratch, &fake)
                .arg("iam-policy")
                .args(args),
        )
    };
    let owner_of = |r: &RunResult| -> BTreeSet<String> {
        let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        doc["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| {
                s["Condition"]["StringEquals"]["aws:RequestTag/lightsnap:owner"].as_str()
            })
            .map(str::to_string)
            .collect()
    };
    let r = print(&[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        owner_of(&r),
        BTreeSet::from(["us-east-1/web-1".to_string()])
    );
    assert!(
        r.stdout.contains("\"team\""),
        "the configured tag key: {}",
        r.stdout
    );
    assert!(
        r.stdout.contains("\"eu-west-2\""),
        "the copy region: {}",
        r.stdout
    );
    let r = print(&["--instance", "db-1", "--region", "eu-west-2"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(owner_of(&r), BTreeSet::from(["eu-west-2/db-1".to_string()]));
    // The admin and read-only variants name no instance, and need no metadata service.
    let r = print(&["--admin"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(!r.stdout.contains("Create"), "{}", r.stdout);
    for bad in [
        &["--admin", "--append-only"][..],
        &["--read-only", "--admin"],
        &["--instance", "not/a name"],
        &["--instance", "web-1", "--region", "mars 1"],
    ] {
        let r = print(bad);
        assert_eq!(r.code, 2, "{bad:?}: {r:?}");
        assert!(r.stdout.is_empty(), "{bad:?}: {r:?}");
    }
}

/// An administrator's key (`--admin`): `prune --all-instances` deletes every instance's old
/// snapshots (from a machine with no metadata service), but never one without the ownership
/// tag, even asked with `--all`.
#[test]
fn an_admin_key_prunes_every_instances_snapshots_but_never_untagged_ones() {
    let scratch = Scratch::new();
    let mut seed = two_instances();
    seed.imds_instance_id = Some("i-00000000000000000".into());
    for (name, owner, disk) in [
        ("ours-old", "us-east-1/web-1", "data-1"),
        ("theirs-old", "us-east-1/web-2", "web2-data"),
    ] {
        let mut s = seed.disk_snapshots[0].clone();
        s.name = name.into();
        s.disk = disk.into();
        s.age = "5d".into();
        s.tags.insert("lightsnap:owner".into(), owner.into());
        seed.disk_snapshots.push(s);
    }
    let fake = fake(&scratch, seed);
    enforce_printed_policy(&scratch, &fake, &["--admin"]);
    let r = finish(configured_lightsnap(&scratch, &fake).args([
        "prune",
        "--all-instances",
        "--keep",
        "1",
    ]));
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(refused_calls(&fake), Vec::<String>::new());
    let left = names(&fake.snapshots(), "diskSnapshots");
    assert_eq!(
        left,
        ["ours", "theirs", "untagged", "older-lightsnap"]
            .into_iter()
            .map(str::to_string)
            .collect::<BTreeSet<_>>()
    );
    let r = finish(configured_lightsnap(&scratch, &fake).args(["prune", "--all", "--keep", "1"]));
    assert_eq!(r.code, 23, "{r:?}");
    let left = names(&fake.snapshots(), "diskSnapshots");
    assert!(
        left.contains("untagged") && left.contains("older-lightsnap"),
        "{left:?}"
    );
}

/// A read-only key (`--read-only`): `list` works; `prune` is refused (exit 23) and deletes
/// nothing.
#[test]
fn a_read_only_key_lists_but_cannot_prune() {
    let scratch = Scratch::new();
    let fake = fake(&scratch, two_instances());
    enforce_printed_policy(&scratch, &fake, &["--read-only"]);
    let r = finish(configured_lightsnap(&scratch, &fake).args(["list", "--all"]));
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("theirs"), "{r:?}");
    let before = names(&fake.snapshots(), "diskSnapshots");
    let r = finish(configured_lightsnap(&scratch, &fake).args(["prune", "--all", "--keep", "1"]));
    assert_eq!(r.code, 23, "{r:?}");
    assert!(r.stderr.contains("lightsail:DeleteDiskSnapshot"), "{r:?}");
    assert_eq!(names(&fake.snapshots(), "diskSnapshots"), before);
}
