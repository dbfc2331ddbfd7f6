//! `lightsnap fleet` against the fake Lightsail seeded with an account spread over two
//! regions: healthy, stale, missing and unverified disks, an instance without lightsnap, a copy
//! in the other region and the automatic-snapshot add-on, each shown; `--max-age` fails naming
//! the stale disks; `--all-regions` finds both regions through GetRegions; every page of every
//! list is followed. No root needed: nothing is frozen.

mod common;

use std::process::Stdio;

use common::*;

use lightsnap::cloud::owner::OWNER_TAG as OWNER;

fn own(owner: &str, extra: &str) -> String {
    format!("tags = {{ \"lightsnap:consistency\" = \"frozen\", \"{OWNER}\" = \"{owner}\"{extra} }}")
}

/// The account: us-east-1 (home) with web-1 (a healthy data disk, a stale system disk), db-1
/// (a data disk whose newest snapshot failed verification, a system disk never snapshotted,
/// the automatic-snapshot add-on on) and bare (no lightsnap); eu-west-2 with api-1 (healthy)
/// and a copy of web-1's newest data snapshot.
fn account() -> Seed {
    let east = "us-east-1/web-1";
    let db = "us-east-1/db-1";
    let toml = format!(
        r#"
region = "us-east-1"
regions = ["eu-west-2"]
self_instance = "web-1"

[[instances]]
name = "web-1"
instance_id = "i-0000000000000a001"
system_disk = {{ name = "web-1-system", path = "/dev/xvda", size_gb = 20 }}

[[instances]]
name = "db-1"
instance_id = "i-0000000000000a002"
system_disk = {{ name = "db-1-system", path = "/dev/xvda", size_gb = 20 }}
auto_snapshot = {{ time_of_day = "06:00" }}

[[instances]]
name = "bare"
instance_id = "i-0000000000000a003"

[[disks]]
name = "data-1"
path = "/dev/xvdf"
attached_to = "web-1"

[[disks]]
name = "pg"
path = "/dev/xvdf"
attached_to = "db-1"

[[disk_snapshots]]
name = "data-1-old"
disk = "data-1"
age = "50h"
{own_east}

[[disk_snapshots]]
name = "data-1-new"
disk = "data-1"
age = "2h"
{own_east_verified}

[[disk_snapshots]]
name = "web-1-system-old"
disk = "web-1-system"
age = "40h"
{own_east}

[[disk_snapshots]]
name = "pg-new"
disk = "pg"
age = "1h"
{own_db_failed}

[[disk_snapshots]]
name = "data-1-by-another"
disk = "data-1"
age = "10m"
{other_owner}

[[region_disk_snapshots.eu-west-2]]
name = "data-1-new"
disk = "data-1"
age = "1h"
{copy}

[[region_seeds.eu-west-2.instances]]
name = "api-1"
instance_id = "i-0000000000000b001"
system_disk = {{ name = "api-1-system", path = "/dev/xvda", size_gb = 20 }}

[[region_seeds.eu-west-2.disk_snapshots]]
name = "api-1-system-new"
disk = "api-1-system"
age = "3h"
{own_west}
"#,
        own_east = own(east, ""),
        own_east_verified = own(east, ", \"lightsnap:verified\" = \"clean\""),
        own_db_failed = own(db, ", \"lightsnap:verified\" = \"failed\""),
        other_owner = own("eu-west-2/web-1", ""),
        copy = own(east, ", \"lightsnap:copy-of\" = \"us-east-1/data-1-new\""),
        own_west = own("eu-west-2/api-1", ""),
    );
    Seed::from_toml_str(&toml).expect("seed")
}

/// `lightsnap fleet`, as from an administrator's or a monitor's machine (its key).
fn fleet(scratch: &Scratch, fake: &Fake, args: &[&str]) -> RunResult {
    finish(
        as_admin(&mut lightsnap(scratch, fake))
            .arg("fleet")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )
}

fn disk<'a>(doc: &'a serde_json::Value, instance: &str, name: &str) -> &'a serde_json::Value {
    doc["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["instance"] == instance)
        .unwrap_or_else(|| panic!("no instance {instance}: {doc:#}"))["disks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["disk"] == name)
        .unwrap_or_else(|| panic!("no disk {name} of {instance}: {doc:#}"))
}

#[test]
fn the_fleet_shows_each_disk_as_it_stands_across_regions() {
    let scratch = Scratch::new();
    // Three items a page: every list spans several pages.
    let fake = fake(&scratch, account());
    let r = fleet(
        &scratch,
        &fake,
        &[
            "--region",
            "us-east-1",
            "--region",
            "eu-west-2",
            "--max-age",
            "26h",
            "--output",
            "json",
        ],
    );
    assert_eq!(r.code, 2, "stale disks are CRITICAL: {r:?}");
    let doc: serde_json::Value = json_doc_of("fleet", &r);
    assert_eq!(disk(&doc, "web-1", "data-1")["health"], "healthy");
    assert_eq!(
        disk(&doc, "web-1", "data-1")["newest"]["name"],
        "data-1-new"
    );
    assert_eq!(
        disk(&doc, "web-1", "data-1")["newest"]["copies"],
        serde_json::json!(["eu-west-2"])
    );
    assert_eq!(disk(&doc, "web-1", "web-1-system")["health"], "stale");
    assert_eq!(disk(&doc, "db-1", "pg")["health"], "unverified");
    assert_eq!(disk(&doc, "db-1", "db-1-system")["health"], "missing");
    assert_eq!(disk(&doc, "api-1", "api-1-system")["health"], "healthy");
    assert_eq!(
        doc["stale"],
        serde_json::json!(["us-east-1/db-1/db-1-system", "us-east-1/web-1/web-1-system"])
    );
    assert_eq!(
        doc["without_lightsnap"],
        serde_json::json!(["us-east-1/bare"])
    );
    let db = doc["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["instance"] == "db-1")
        .unwrap();
    assert_eq!(db["auto_snapshot_overlap"], true);

    // At a terminal: the verdict first, naming the stale disks, then the table.
    let r = fleet(
        &scratch,
        &fake,
        &[
            "--region",
            "us-east-1",
            "--region",
            "eu-west-2",
            "--max-age",
            "26h",
        ],
    );
    assert_eq!(r.code, 2, "{r:?}");
    let first = r.stdout.lines().next().unwrap_or_default();
    assert!(first.starts_with("CRITICAL: 2 disk(s)"), "{r:?}");
    assert!(first.contains("us-east-1/web-1/web-1-system"), "{r:?}");
    assert!(r.stdout.contains("no lightsnap"), "{r:?}");

    // Every region Lightsail lists, through GetRegions; no limit, no verdict.
    let r = fleet(&scratch, &fake, &["--all-regions", "--output", "json"]);
    assert_eq!(r.code, 0, "{r:?}");
    let doc: serde_json::Value = json_doc_of("fleet", &r);
    assert_eq!(
        doc["regions"],
        serde_json::json!(["us-east-1", "eu-west-2"])
    );
    assert_eq!(disk(&doc, "api-1", "api-1-system")["health"], "healthy");
    // Read-only: nothing but Get* calls.
    let writes: Vec<String> = fake
        .calls()
        .into_iter()
        .map(|c| c.operation)
        .filter(|op| !op.starts_with("Get") && !op.starts_with("IMDS"))
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
}

#[test]
fn a_region_that_is_not_one_is_refused_before_any_call() {
    let scratch = Scratch::new();
    let fake = fake(&scratch, account());
    let r = fleet(&scratch, &fake, &["--region", "Mars 1"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("Mars 1"), "{r:?}");
    assert!(fake.calls().is_empty(), "{:?}", fake.calls());
}
