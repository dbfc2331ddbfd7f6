//! `prune` with restic/sanoid-style keep rules (`--keep-last`, `--keep-daily`,
//! `--keep-weekly`, ... and `[retention]`), its dry run saying which rule kept each snapshot
//! — against the fake, no filesystem needed.

mod common;

use std::path::Path;

use common::*;
use fake_lightsail::seed::SeedSnapshot;

fn own_snapshot(name: &str, age: &str) -> SeedSnapshot {
    SeedSnapshot {
        name: name.into(),
        disk: "data-1".into(),
        age: age.into(),
        auto: false,
        state: "completed".into(),
        // This instance's (the fake's web-1 in us-east-1): prune considers only its own.
        tags: [
            ("lightsnap:consistency".to_string(), "frozen".to_string()),
            ("lightsnap:owner".to_string(), "us-east-1/web-1".to_string()),
        ]
        .into_iter()
        .collect(),
    }
}

fn line(r: &RunResult, start: &str) -> String {
    r.stdout
        .lines()
        .find(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("no line starting {start:?}: {r:?}"))
        .to_string()
}

#[test]
fn keep_rules_say_which_rule_kept_each_snapshot() {
    let scratch = Scratch::new();
    let mut s = seed(&[("data-1", Path::new("/dev/xvdf"))], None);
    // A day apart: each on a day of its own, whatever the time of day now.
    s.disk_snapshots = vec![
        own_snapshot("d-1", "1d"),
        own_snapshot("d-2", "2d"),
        own_snapshot("d-3", "3d"),
        own_snapshot("d-30", "30d"),
    ];
    let fake = fake(&scratch, s);
    let prune = |args: &[&str]| {
        let mut cmd = lightsnap(&scratch, &fake);
        cmd.env("LIGHTSNAP_CONFIG_ROOT", scratch.path().join("conf"))
            .arg("prune")
            .args(args);
        finish(&mut cmd)
    };

    let r = prune(&["--keep-daily", "2", "--dry-run"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(line(&r, "rule: ").contains("any keep rule"), "{r:?}");
    assert!(line(&r, "would keep d-1 ").contains(": daily "), "{r:?}");
    assert!(line(&r, "would keep d-2 ").contains(": daily "), "{r:?}");
    line(&r, "would delete d-3 ");
    line(&r, "would delete d-30 ");

    // Rules add up: the newest is kept by both, and says so.
    let r = prune(&[
        "--keep-last",
        "1",
        "--keep-daily",
        "1",
        "--keep-yearly",
        "5",
        "--dry-run",
        "--output",
        "json",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(doc["rule"]["keep"], 1);
    assert_eq!(doc["rule"]["keep_daily"], 1);
    assert_eq!(doc["rule"]["keep_yearly"], 5);
    let r = prune(&["--keep-last", "1", "--keep-daily", "1", "--dry-run"]);
    assert!(
        line(&r, "would keep d-1 ").contains(": last 1, daily 2"),
        "{r:?}"
    );

    // From [retention], the same.
    let conf = scratch.path().join("conf/etc/lightsnap");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(conf.join("config.toml"), "[retention]\nkeep_daily = 2\n").unwrap();
    let r = prune(&["--dry-run"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(line(&r, "would keep d-2 ").contains(": daily "), "{r:?}");
    line(&r, "would delete d-3 ");
    assert!(
        !fake
            .calls()
            .iter()
            .any(|c| c.operation.starts_with("Delete")),
        "a dry run deletes nothing"
    );
    // And for real: the two beyond the rule go.
    let r = prune(&[]);
    assert_eq!(r.code, 0, "{r:?}");
    let deleted: Vec<String> = fake
        .calls()
        .into_iter()
        .filter(|c| c.operation == "DeleteDiskSnapshot")
        .map(|c| {
            c.body["diskSnapshotName"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(deleted, ["d-3", "d-30"]);
}
