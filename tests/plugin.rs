//! `check` as a monitoring plugin (thresholds, performance data, UNKNOWN for its own
//! failures) and what `status` and `check` watch without arguments — each through the built
//! binary against a loop filesystem and the fake.

mod common;

use common::*;

fn run(s: &OneDisk, args: &[&str]) -> RunResult {
    finish(configured_lightsnap(&s.scratch, &s.fake).args(args))
}

fn snap(s: &OneDisk, name: &str) -> RunResult {
    finish(
        configured_lightsnap(&s.scratch, &s.fake)
            .args(["freeze-and-snap", "--snapshot-name", name])
            .arg(&s.fs.mount_point),
    )
}

/// OK, WARNING, CRITICAL by -w and -c, performance data on the first line, and UNKNOWN (3) —
/// never CRITICAL (2) — for a usage error or a configuration it cannot read.
#[test]
fn check_speaks_the_monitoring_plugin_protocol() {
    let Some(s) = OneDisk::new("check_speaks_the_monitoring_plugin_protocol") else {
        return;
    };
    let mp = s.fs.mount_point.display().to_string();
    assert_eq!(snap(&s, "pl-1").code, 0);

    let r = run(&s, &["check", "-w", "1h", "-c", "2h", &mp]);
    assert_eq!(r.code, 0, "{r:?}");
    let first = r.stdout.lines().next().unwrap();
    assert!(first.starts_with("OK: 1 target(s)"), "{r:?}");
    let perf = first.split_once(" | ").expect("performance data").1;
    let (label, rest) = perf.split_once('=').unwrap();
    assert_eq!(label, format!("'age_{mp}'"));
    let fields: Vec<&str> = rest.split(';').collect();
    assert!(fields[0].ends_with('s'), "{perf}");
    fields[0].trim_end_matches('s').parse::<u64>().unwrap();
    assert_eq!(&fields[1..], ["3600", "7200", "0"], "{perf}");

    // The run took longer than a millisecond: past -w only, then past -c.
    let r = run(&s, &["check", "-w", "1ms", "-c", "1h", &mp]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stdout.starts_with("WARNING: 1 of 1 target(s)"), "{r:?}");
    assert!(r.stdout.contains(&format!("\n{mp}: last success")), "{r:?}");
    let r = run(&s, &["check", "-w", "1ms", "-c", "1ms", &mp]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stdout.starts_with("CRITICAL"), "{r:?}");
    // --max-age is -c's older name.
    assert_eq!(run(&s, &["check", "--max-age", "1ms", &mp]).code, 2);

    // Its own failures: UNKNOWN.
    for args in [
        vec!["check", "--bogus"],
        vec!["check", &mp],
        vec!["check", "-w", "soon", &mp],
    ] {
        let r = run(&s, &args);
        assert_eq!(r.code, 3, "{args:?}: {r:?}");
        assert!(r.stdout.starts_with("UNKNOWN: "), "{args:?}: {r:?}");
    }
    write_conf(
        &s.scratch,
        "etc/lightsnap/config.toml",
        "freez_timeout = 1\n",
    );
    let r = run(&s, &["check", "-c", "1h", &mp]);
    assert_eq!(r.code, 3, "{r:?}");
    assert!(
        r.stdout.starts_with("UNKNOWN: ") && r.stdout.contains("freez_timeout"),
        "{r:?}"
    );
    let r = run(&s, &["check", "-c", "1h", "--output", "json", &mp]);
    assert_eq!(r.code, 3, "{r:?}");
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(doc["status"], "UNKNOWN");
}

/// A mistyped path is refused and leaves no trace: `check` without arguments stays OK on
/// what did succeed, `status` does not list the typo; `status --forget` drops a target, and
/// with nothing left to watch `check` is UNKNOWN.
#[test]
fn a_mistyped_path_is_not_watched_for_good() {
    let Some(s) = OneDisk::new("a_mistyped_path_is_not_watched_for_good") else {
        return;
    };
    let mp = s.fs.mount_point.display().to_string();
    assert_eq!(snap(&s, "ty-1").code, 0);
    let typo = s.scratch.path().join("dta");
    let r = finish(
        configured_lightsnap(&s.scratch, &s.fake)
            .arg("freeze-and-snap")
            .arg(&typo),
    );
    assert_ne!(r.code, 0, "{r:?}");
    let typo_state = lightsnap::monitor::state::file_of(
        &s.scratch.path().join("state"),
        &typo.display().to_string(),
    );
    assert!(
        !typo_state.exists(),
        "the refused run left {}",
        typo_state.display()
    );

    let r = run(&s, &["check", "-c", "1h"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.starts_with("OK: 1 target(s)"), "{r:?}");
    let r = run(&s, &["status"]);
    assert!(r.stdout.contains(&mp) && !r.stdout.contains("dta"), "{r:?}");

    let r = run(&s, &["status", "--forget", &mp]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("forgotten"), "{r:?}");
    let r = run(&s, &["check", "-c", "1h"]);
    assert_eq!(r.code, 3, "{r:?}");
    assert!(r.stdout.starts_with("UNKNOWN: nothing to check"), "{r:?}");

    // A configured target is watched even before its first run.
    write_conf(
        &s.scratch,
        "etc/lightsnap/config.toml",
        &format!("[[snapshot]]\npath = \"{mp}\"\n"),
    );
    let r = run(&s, &["check", "-c", "1h"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stdout.contains("no run recorded"), "{r:?}");
}
