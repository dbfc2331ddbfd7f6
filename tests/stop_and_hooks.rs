//! Stop requests before the freeze, during `--wait` and during `prune`, and what hooks are told
//! when things go wrong (`freeze-fail`, a failing `post-thaw`), end to end on loop devices
//! against the fake. Root only; CI runs them as root.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use fake_lightsail::seed::SeedSnapshot;
use nix::sys::signal::Signal;

/// How soon a stop request must end a run that has frozen nothing.
const PROMPT: Duration = Duration::from_secs(3);

/// `freeze-and-snap --disk-name data-1 MOUNT ARGS` with the scratch configuration.
fn snap(s: &OneDisk, args: &[&str]) -> std::process::Command {
    let mut cmd = configured_lightsnap(&s.scratch, &s.fake);
    cmd.args(["freeze-and-snap", "--disk-name", "data-1"])
        .args(args)
        .arg(&s.fs.mount_point);
    cmd
}

/// The hook log as `NAME PHASE result=RESULT` lines.
fn said(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let w: Vec<&str> = l.split(' ').collect();
            format!("{} {} {}", w[0], w[1], w.last().unwrap())
        })
        .collect()
}

/// Sends `signal` to a started run, then waits for it; how long it took to end.
fn stop(child: std::process::Child, signal: Signal) -> (RunResult, Duration) {
    let asked = Instant::now();
    kill(child.id(), signal);
    let r = wait_result(child);
    (r, asked.elapsed())
}

#[test]
fn a_stop_request_during_a_slow_pre_freeze_hook_ends_the_run_before_anything_is_frozen() {
    let test =
        "a_stop_request_during_a_slow_pre_freeze_hook_ends_the_run_before_anything_is_frozen";
    let Some(s) = OneDisk::new(test) else {
        return;
    };
    let dir = hook_dir(&s, "hook_timeout = \"10m\"\n");
    let log = s.scratch.path().join("hooks.log");
    let pidfile = s.scratch.path().join("sleeper.pid");
    hook(&dir, "10-fast", &logging(&log));
    hook(
        &dir,
        "20-slow",
        &format!(
            "{}\nif [ \"$1\" = pre-freeze ]; then sleep 600 & echo $! > {}; wait; fi",
            logging(&log),
            pidfile.display()
        ),
    );
    let child = spawn(&mut snap(&s, &[]));
    wait_until("the slow hook to start", Duration::from_secs(30), || {
        std::fs::read_to_string(&pidfile).is_ok_and(|p| p.ends_with('\n'))
    });
    let sleeper: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let (r, took) = stop(child, Signal::SIGTERM);
    assert_eq!(r.code, 143, "{r:?}");
    assert!(took < PROMPT, "ended {took:?} after SIGTERM: {r:?}");
    assert!(
        r.stderr
            .contains("stopped by SIGTERM before anything was frozen"),
        "{r:?}"
    );
    s.assert_untouched(&r);
    assert!(remaining(&s.fake).is_empty(), "no snapshot requested");
    wait_until(
        "the hook's process group ended",
        Duration::from_secs(5),
        || !alive(sleeper),
    );
    assert_eq!(
        said(&log),
        [
            "10-fast pre-freeze result=unset",
            "20-slow pre-freeze result=unset",
            "20-slow post-thaw result=stopped",
            "10-fast post-thaw result=stopped",
        ]
    );
}

#[test]
fn a_stop_request_during_discovery_ends_the_run_before_anything_is_frozen() {
    let Some(s) =
        OneDisk::new("a_stop_request_during_discovery_ends_the_run_before_anything_is_frozen")
    else {
        return;
    };
    // Discovery asks which instance this is (the named disk must be one of its disks).
    s.fake.add_fault(Fault {
        operation: Some("GetInstances".into()),
        kind: FaultKind::Hang,
        count: None,
    });
    let child = spawn(&mut snap(&s, &[]));
    wait_until("the GetInstances call", Duration::from_secs(30), || {
        s.fake.calls().iter().any(|c| c.operation == "GetInstances")
    });
    let (r, took) = stop(child, Signal::SIGINT);
    assert_eq!(r.code, 130, "{r:?}");
    assert!(took < PROMPT, "ended {took:?} after SIGINT: {r:?}");
    s.assert_untouched(&r);
}

#[test]
fn a_failing_post_thaw_hook_fails_the_run_and_still_reports_the_snapshot() {
    let Some(s) =
        OneDisk::new("a_failing_post_thaw_hook_fails_the_run_and_still_reports_the_snapshot")
    else {
        return;
    };
    let dir = hook_dir(&s, "");
    let log = s.scratch.path().join("hooks.log");
    hook(
        &dir,
        "10-resume",
        &format!(
            "{}\n[ \"$1\" = post-thaw ] && exit 4\nexit 0",
            logging(&log)
        ),
    );
    // Text: the snapshot line on stdout, the failing hook and phase on stderr.
    let r = finish(&mut snap(&s, &["--snapshot-name", "resumed-1"]));
    assert_eq!(r.code, 16, "{r:?}");
    assert!(
        r.stdout.contains("snapshot resumed-1 of disk data-1"),
        "{r:?}"
    );
    assert!(r.stderr.contains("10-resume post-thaw failed"), "{r:?}");
    // JSON: the report and the error in one document.
    let r = finish(&mut snap(
        &s,
        &["--snapshot-name", "resumed-2", "--output", "json"],
    ));
    assert_eq!(r.code, 16, "{r:?}");
    let doc = json_doc(&r);
    assert_eq!(doc["snapshots"][0]["name"], "resumed-2", "{doc}");
    assert_eq!(doc["error"]["exit_code"], 16, "{doc}");
    assert!(
        doc["error"]["message"]
            .as_str()
            .unwrap()
            .contains("10-resume post-thaw failed"),
        "{doc}"
    );
    assert_eq!(remaining(&s.fake), ["resumed-1", "resumed-2"]);
    assert!(!s.fs.is_frozen());
}

#[test]
fn hooks_are_told_freeze_fail_when_the_snapshot_fails_after_their_pre_freeze() {
    let Some(s) =
        OneDisk::new("hooks_are_told_freeze_fail_when_the_snapshot_fails_after_their_pre_freeze")
    else {
        return;
    };
    let dir = hook_dir(&s, "");
    let log = s.scratch.path().join("hooks.log");
    hook(&dir, "10-a", &logging(&log));
    hook(&dir, "20-b", &logging(&log));
    s.fake.add_fault(Fault {
        operation: Some("CreateDiskSnapshot".into()),
        kind: FaultKind::Error {
            code: "InvalidInputException".into(),
            message: Some("refused by the test".into()),
            status: None,
        },
        count: None,
    });
    let r = finish(&mut snap(&s, &[]));
    assert_eq!(r.code, 10, "{r:?}");
    assert_eq!(
        said(&log),
        [
            "10-a pre-freeze result=unset",
            "20-b pre-freeze result=unset",
            "20-b freeze-fail result=failure",
            "10-a freeze-fail result=failure",
            "20-b post-thaw result=failure",
            "10-a post-thaw result=failure",
        ]
    );
    assert!(!s.fs.is_frozen());
}

#[test]
fn a_stop_request_during_wait_stops_waiting_and_reports_the_snapshot() {
    let Some(s) = OneDisk::with(
        "a_stop_request_during_wait_stops_waiting_and_reports_the_snapshot",
        Duration::from_secs(600),
        Vec::new(),
    ) else {
        return;
    };
    let child = spawn(&mut snap(
        &s,
        &["--snapshot-name", "waited-1", "--wait", "--output", "json"],
    ));
    // Waiting once the snapshot is looked at after its creation (it was looked at before too,
    // to see that the name is free).
    wait_until("the wait to begin", Duration::from_secs(30), || {
        let ops: Vec<String> = s.fake.calls().into_iter().map(|c| c.operation).collect();
        ops.iter()
            .position(|o| o == "CreateDiskSnapshot")
            .is_some_and(|created| ops[created..].iter().any(|o| o == "GetDiskSnapshot"))
    });
    let (r, took) = stop(child, Signal::SIGTERM);
    assert_eq!(r.code, 143, "{r:?}");
    assert!(took < PROMPT, "ended {took:?} after SIGTERM: {r:?}");
    let doc = json_doc(&r);
    assert_eq!(doc["snapshots"][0]["name"], "waited-1", "{doc}");
    assert_eq!(doc["wait"]["completed"], false, "{doc}");
    assert_eq!(doc["error"]["exit_code"], 143, "{doc}");
    assert_eq!(remaining(&s.fake), ["waited-1"], "the snapshot stays");
}

#[test]
fn a_stop_request_during_prune_stops_deleting_and_says_what_was_deleted() {
    let own: BTreeMap<String, String> = [
        ("lightsnap:consistency", "frozen"),
        ("lightsnap:owner", "us-east-1/web-1"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let old = |i: u32| SeedSnapshot {
        name: format!("old-{i}"),
        disk: "data-1".into(),
        age: format!("{}d", 10 + i),
        auto: false,
        state: "completed".into(),
        tags: own.clone(),
    };
    let Some(s) = OneDisk::with(
        "a_stop_request_during_prune_stops_deleting_and_says_what_was_deleted",
        Duration::ZERO,
        (0..6).map(old).collect(),
    ) else {
        return;
    };
    s.fake.add_fault(Fault {
        operation: Some("DeleteDiskSnapshot".into()),
        kind: FaultKind::Latency { ms: 1000 },
        count: None,
    });
    let child = spawn(
        configured_lightsnap(&s.scratch, &s.fake)
            .args(["prune", "--keep", "0", "--output", "json"]),
    );
    wait_until("the first deletion", Duration::from_secs(30), || {
        s.fake
            .calls()
            .iter()
            .any(|c| c.operation == "DeleteDiskSnapshot")
    });
    let (r, took) = stop(child, Signal::SIGTERM);
    assert_eq!(r.code, 143, "{r:?}");
    assert!(took < PROMPT, "ended {took:?} after SIGTERM: {r:?}");
    let doc = json_doc(&r);
    let deleted = doc["deleted"].as_array().unwrap().len();
    let left = remaining(&s.fake).len();
    assert!(deleted >= 1 && left >= 1, "stopped part-way: {doc}");
    assert_eq!(deleted + left, 6, "the document says every deletion: {doc}");
    assert_eq!(doc["error"]["exit_code"], 143, "{doc}");
}

/// Issue 22: a hook directory others may write in is refused before any hook runs (exit 7),
/// and so is a hook whose directory became writable after the hooks were loaded: a post-thaw
/// call may come minutes later, and the check is made again right before each hook runs.
#[test]
fn a_hook_directory_others_can_write_is_refused_also_when_it_changes_after_loading() {
    use std::os::unix::fs::PermissionsExt;
    let test = "a_hook_directory_others_can_write_is_refused_also_when_it_changes_after_loading";
    let Some(s) = OneDisk::new(test) else {
        return;
    };
    let dir = hook_dir(&s, "");
    let log = s.scratch.path().join("hooks.log");
    hook(&dir, "10-db", &logging(&log));
    let chmod = |mode: u32| {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
    };

    chmod(0o777);
    let r = finish(&mut snap(&s, &[]));
    assert_eq!(r.code, 7, "{r:?}");
    assert!(
        r.stderr
            .contains(&format!("{} is writable by group or others", dir.display())),
        "{r:?}"
    );
    s.assert_untouched(&r);
    assert!(!log.exists(), "no hook ran: {r:?}");
    chmod(0o755);

    // The pre-freeze call opens the directory up (as anyone who later could might): the
    // post-thaw call that follows is refused, and the run says so.
    hook(
        &dir,
        "20-opens",
        &format!(
            "{}\n[ \"$1\" = pre-freeze ] && chmod 0777 {}\nexit 0",
            logging(&log),
            dir.display()
        ),
    );
    let r = finish(&mut snap(&s, &["--snapshot-name", "opened"]));
    chmod(0o755);
    assert_eq!(r.code, 16, "{r:?}");
    assert!(r.stderr.contains("refusing hook"), "{r:?}");
    assert_eq!(
        said(&log),
        [
            "10-db pre-freeze result=unset",
            "20-opens pre-freeze result=unset"
        ],
        "no post-thaw call ran from the opened directory: {r:?}"
    );
}
