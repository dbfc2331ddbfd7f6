//! The safety net: a filesystem lightsnap froze is always thawed — at the deadline, on a
//! signal, when lightsnap is killed — and one it did not freeze is never thawed. Every test
//! here freezes only a loop filesystem it made, and the fake Lightsail decides when (or
//! whether) the snapshot call returns. Root only; CI runs them as root.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

type Setup = OneDisk;

fn setup(test: &str) -> Option<Setup> {
    OneDisk::new(test)
}

fn snap(s: &Setup) -> Command {
    let mut cmd = lightsnap(&s.scratch, &s.fake);
    cmd.args(["freeze-and-snap", "--disk-name", "data-1"])
        .arg(&s.fs.mount_point);
    cmd
}

#[test]
fn the_deadline_thaws_while_the_call_hangs() {
    let Some(s) = setup("the_deadline_thaws_while_the_call_hangs") else {
        return;
    };
    hang_create(&s.fake);
    let result = finish(snap(&s).args(["--freeze-timeout", "700ms"]));
    assert_eq!(result.code, 13, "{result:?}");
    assert!(result.stderr.contains("--freeze-timeout"), "{result:?}");
    assert!(!s.fs.is_frozen());
    // Made (the SDK may retry a timed-out attempt inside the deadline), then abandoned.
    let calls = create_calls(&s.fake);
    assert!(
        (1..=3).contains(&calls.len()),
        "the call was made, at most 3 attempts, then abandoned: {}",
        calls.len()
    );
}

#[test]
fn sigkill_of_lightsnap_while_frozen_is_thawed_by_the_watchdog_20_times() {
    let Some(s) = setup("sigkill_of_lightsnap_while_frozen_is_thawed_by_the_watchdog_20_times")
    else {
        return;
    };
    hang_create(&s.fake);
    let deadline = Duration::from_secs(30);
    for round in 0..20 {
        let before = create_calls(&s.fake).len();
        let child = spawn(snap(&s).args(["--freeze-timeout", "30s"]));
        // Frozen once the fake has the call.
        let until = std::time::Instant::now() + Duration::from_secs(30);
        while create_calls(&s.fake).len() == before {
            assert!(std::time::Instant::now() < until, "round {round}: no call");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(s.fs.is_frozen(), "round {round}: frozen before the kill");
        kill(child.id(), nix::sys::signal::Signal::SIGKILL);
        let result = wait_result(child);
        assert_eq!(result.code, -1, "killed by a signal: {result:?}");
        // Far inside the 30 s deadline: the watchdog saw its pipe close.
        let took = wait_thawed(&s.fs, Duration::from_secs(1));
        assert!(took < deadline, "round {round}");
    }
}

fn stop_signal_thaws_first(test: &str, signal: nix::sys::signal::Signal, code: i32) {
    let Some(s) = setup(test) else {
        return;
    };
    hang_create(&s.fake);
    let child = spawn(snap(&s).args(["--freeze-timeout", "30s"]));
    wait_for_create_call(&s.fake, Duration::from_secs(30));
    assert!(s.fs.is_frozen(), "frozen before the signal");
    kill(child.id(), signal);
    let result = wait_result(child);
    assert_eq!(result.code, code, "{result:?}");
    assert!(result.stderr.contains("after thawing"), "{result:?}");
    assert!(!s.fs.is_frozen());
    assert!(
        !s.scratch.path().join("run/recovery.json").exists(),
        "record cleared"
    );
}

#[test]
fn sigint_while_frozen_thaws_then_exits_130() {
    stop_signal_thaws_first(
        "sigint_while_frozen_thaws_then_exits_130",
        nix::sys::signal::Signal::SIGINT,
        130,
    );
}

#[test]
fn sigterm_while_frozen_thaws_then_exits_143() {
    stop_signal_thaws_first(
        "sigterm_while_frozen_thaws_then_exits_143",
        nix::sys::signal::Signal::SIGTERM,
        143,
    );
}

#[test]
fn sighup_while_frozen_thaws_then_exits_129() {
    stop_signal_thaws_first(
        "sighup_while_frozen_thaws_then_exits_129",
        nix::sys::signal::Signal::SIGHUP,
        129,
    );
}

#[test]
fn output_to_a_file_on_the_frozen_filesystem_does_not_hang() {
    let Some(s) = setup("output_to_a_file_on_the_frozen_filesystem_does_not_hang") else {
        return;
    };
    let log = s.fs.mount_point.join("lightsnap.log");
    let file = std::fs::File::create(&log).unwrap();
    let status = snap(&s)
        .args(["-vv", "--snapshot-name", "logged", "--freeze-timeout", "5s"])
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .status()
        .unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    // Exit 0, not 13: had a log line blocked on the frozen filesystem, only the deadline
    // would have freed it.
    assert_eq!(status.code(), Some(0), "{text}");
    assert!(text.contains("snapshot logged of disk data-1"), "{text}");
    assert!(
        text.contains("window:"),
        "the debug line from inside the window: {text}"
    );
    assert!(!s.fs.is_frozen());
}

#[test]
fn a_filesystem_someone_else_froze_is_refused_and_left_frozen() {
    let Some(s) = setup("a_filesystem_someone_else_froze_is_refused_and_left_frozen") else {
        return;
    };
    run(Command::new("fsfreeze").arg("-f").arg(&s.fs.mount_point));
    let result = finish(&mut snap(&s));
    let still_frozen = s.fs.is_frozen();
    run(Command::new("fsfreeze").arg("-u").arg(&s.fs.mount_point));
    assert_eq!(result.code, 6, "{result:?}");
    assert!(
        result.stderr.contains("already frozen by someone else"),
        "{result:?}"
    );
    assert!(
        still_frozen,
        "lightsnap must not thaw what it did not freeze"
    );
    assert!(create_calls(&s.fake).is_empty(), "fail closed: no snapshot");

    // With --allow-crash-consistent the snapshot is taken, labelled, and the freeze kept.
    run(Command::new("fsfreeze").arg("-f").arg(&s.fs.mount_point));
    let result = finish(snap(&s).args(["--allow-crash-consistent", "--snapshot-name", "crash-1"]));
    let still_frozen = s.fs.is_frozen();
    run(Command::new("fsfreeze").arg("-u").arg(&s.fs.mount_point));
    assert_eq!(result.code, 0, "{result:?}");
    assert!(still_frozen);
    let calls = create_calls(&s.fake);
    let tags = calls[0].body["tags"].as_array().unwrap();
    assert!(tags
        .iter()
        .any(|t| t["key"] == "lightsnap:consistency" && t["value"] == "crash"));
}

/// The watchdog dies in the middle of freezing two filesystems, after it said that one of
/// them (frozen by someone else) was not frozen by it: the agent thaws the other with its own
/// descriptor, and leaves the one it did not freeze frozen.
#[test]
fn a_watchdog_lost_mid_freeze_leaves_someone_elses_freeze_alone() {
    let test = "a_watchdog_lost_mid_freeze_leaves_someone_elses_freeze_alone";
    if !root_or_skip(test) {
        return;
    }
    let scratch = Scratch::new();
    let theirs = LoopFs::create(&scratch, "theirs", FsKind::Ext4);
    let ours = LoopFs::create(&scratch, "ours", FsKind::Ext4);
    let fake = fake(
        &scratch,
        seed(
            &[("disk-a", &theirs.device), ("disk-b", &ours.device)],
            None,
        ),
    );
    run(Command::new("fsfreeze").arg("-f").arg(&theirs.mount_point));
    let result = finish(
        lightsnap(&scratch, &fake)
            .env("LIGHTSNAP_TEST_WATCHDOG_DIES", "after-refusal")
            .args(["freeze-and-snap"])
            .arg(&theirs.mount_point)
            .arg(&ours.mount_point),
    );
    let theirs_frozen = theirs.is_frozen();
    let ours_frozen = ours.is_frozen();
    if theirs_frozen {
        run(Command::new("fsfreeze").arg("-u").arg(&theirs.mount_point));
    }
    if ours_frozen {
        run(Command::new("fsfreeze").arg("-u").arg(&ours.mount_point));
    }
    assert!(
        result
            .stderr
            .contains("the watchdog is gone in the middle of a freeze"),
        "the watchdog was not lost mid-freeze: {result:?}"
    );
    assert_ne!(result.code, 0, "{result:?}");
    assert!(
        theirs_frozen,
        "someone else's freeze was thawed: {result:?}"
    );
    assert!(!ours_frozen, "lightsnap's own freeze was left: {result:?}");
    assert!(create_calls(&fake).is_empty(), "no snapshot: {result:?}");
}

/// The watchdog's pid: the child of `agent` running `__watchdog`.
fn watchdog_of(agent: u32) -> u32 {
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if ppid == Some(agent) && String::from_utf8_lossy(&cmdline).contains("__watchdog") {
            return pid;
        }
    }
    panic!("no watchdog child of {agent}");
}

#[test]
fn thaw_recover_thaws_what_a_dead_run_left_frozen() {
    let Some(s) = setup("thaw_recover_thaws_what_a_dead_run_left_frozen") else {
        return;
    };
    hang_create(&s.fake);
    let child = spawn(snap(&s).args(["--freeze-timeout", "60s"]));
    wait_for_create_call(&s.fake, Duration::from_secs(30));
    assert!(s.fs.is_frozen(), "frozen before the kills");
    // Both processes die at once: nothing is left to thaw but the recovery record. The agent
    // is waiting on the hanging call (it asks the watchdog nothing until the thaw), so it
    // cannot notice the dead watchdog before its own death.
    let watchdog = watchdog_of(child.id());
    kill(watchdog, nix::sys::signal::Signal::SIGKILL);
    kill(child.id(), nix::sys::signal::Signal::SIGKILL);
    let _ = wait_result(child);
    assert!(s.fs.is_frozen(), "left frozen by the two deaths");
    let recover = finish(lightsnap(&s.scratch, &s.fake).args(["thaw", "--recover"]));
    assert_eq!(recover.code, 0, "{recover:?}");
    assert!(
        recover
            .stdout
            .contains(&format!("{}", s.fs.mount_point.display())),
        "{recover:?}"
    );
    assert!(!s.fs.is_frozen());
    let again = finish(lightsnap(&s.scratch, &s.fake).args(["thaw", "--recover"]));
    assert_eq!(again.code, 0, "{again:?}");
    assert!(again.stdout.contains("nothing to recover"), "{again:?}");
}

/// A stopped agent (SIGSTOP: alive, but it cannot thaw) is the watchdog's to thaw at its own
/// deadline; the agent, once it goes on, sees its deadline passed.
#[test]
fn the_watchdogs_deadline_thaws_while_lightsnap_is_stopped() {
    let Some(s) = setup("the_watchdogs_deadline_thaws_while_lightsnap_is_stopped") else {
        return;
    };
    hang_create(&s.fake);
    let child = spawn(snap(&s).args(["--freeze-timeout", "1s"]));
    wait_for_create_call(&s.fake, Duration::from_secs(30));
    assert!(s.fs.is_frozen(), "frozen before the stop");
    kill(child.id(), nix::sys::signal::Signal::SIGSTOP);
    let state = || {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", child.id())).unwrap();
        stat.rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    // Far less than a minute: the deadline (1 s) and the watchdog's grace (0.5 s).
    wait_thawed(&s.fs, Duration::from_secs(60));
    assert_eq!(state(), "T", "thawed while lightsnap was still stopped");
    kill(child.id(), nix::sys::signal::Signal::SIGCONT);
    let result = wait_result(child);
    assert_eq!(result.code, 13, "{result:?}");
    assert!(!s.fs.is_frozen());
}

#[test]
fn thaw_path_says_whether_it_was_frozen() {
    let Some(s) = setup("thaw_path_says_whether_it_was_frozen") else {
        return;
    };
    run(Command::new("fsfreeze").arg("-f").arg(&s.fs.mount_point));
    let first = finish(
        lightsnap(&s.scratch, &s.fake)
            .arg("thaw")
            .arg(&s.fs.mount_point),
    );
    assert_eq!(first.code, 0, "{first:?}");
    assert!(first.stdout.contains("it was frozen"), "{first:?}");
    assert!(!s.fs.is_frozen());
    let second = finish(
        lightsnap(&s.scratch, &s.fake)
            .arg("thaw")
            .arg(&s.fs.mount_point),
    );
    assert_eq!(second.code, 0);
    assert!(second.stdout.contains("was not frozen"), "{second:?}");
}

#[test]
fn the_guard_refuses_mounts_outside_the_confinement() {
    let Some(s) = setup("the_guard_refuses_mounts_outside_the_confinement") else {
        return;
    };
    // Confined to a directory the mount is not in: refused before any API call or freeze.
    let elsewhere = tempfile::tempdir().unwrap();
    let result = finish(snap(&s).env("LIGHTSNAP_CONFINE_TO", elsewhere.path()));
    assert_eq!(result.code, 7, "{result:?}");
    assert!(result.stderr.contains("outside"), "{result:?}");
    let thaw = finish(
        lightsnap(&s.scratch, &s.fake)
            .env("LIGHTSNAP_CONFINE_TO", elsewhere.path())
            .args(["thaw", "/"]),
    );
    assert_eq!(thaw.code, 7, "{thaw:?}");
    assert!(s
        .fake
        .calls()
        .iter()
        .all(|c| c.operation != "CreateDiskSnapshot"));
}

#[test]
fn a_second_run_fails_at_once_naming_the_first() {
    let Some(s) = setup("a_second_run_fails_at_once_naming_the_first") else {
        return;
    };
    hang_create(&s.fake);
    let first = spawn(snap(&s).args(["--freeze-timeout", "30s"]));
    let first_pid = first.id();
    wait_for_create_call(&s.fake, Duration::from_secs(30));
    let second = finish(&mut snap(&s));
    kill(first_pid, nix::sys::signal::Signal::SIGTERM);
    let first_result = wait_result(first);
    assert_eq!(second.code, 5, "{second:?}");
    assert!(
        second.stderr.contains(&format!("(pid {first_pid})")),
        "the second run names the first run's pid {first_pid}: {second:?}"
    );
    assert_eq!(first_result.code, 143, "{first_result:?}");
    assert!(!s.fs.is_frozen());
}

#[test]
fn a_snapshot_that_lands_after_the_deadline_is_labelled_unverified() {
    let Some(s) = setup("a_snapshot_that_lands_after_the_deadline_is_labelled_unverified") else {
        return;
    };
    // The fake takes the snapshot on receipt but answers late.
    s.fake.add_fault(Fault {
        operation: Some("CreateDiskSnapshot".into()),
        kind: FaultKind::Latency { ms: 3000 },
        count: None,
    });
    let result = finish(snap(&s).args(["--freeze-timeout", "500ms", "--snapshot-name", "late-1"]));
    assert_eq!(result.code, 13, "{result:?}");
    assert!(result.stderr.contains("unverified"), "{result:?}");
    assert!(!s.fs.is_frozen());
    let snap = s.fake.disk_snapshot("late-1").expect("it landed");
    let tags = snap["tags"].as_array().unwrap();
    assert!(
        tags.iter()
            .any(|t| t["key"] == "lightsnap:consistency" && t["value"] == "unverified"),
        "{tags:?}"
    );
}

/// Every modelled fault on the snapshot call: thawed, the documented exit code, a message
/// naming what happened.
#[test]
fn fault_matrix() {
    let Some(s) = setup("fault_matrix") else {
        return;
    };
    let error = |code: &str| FaultKind::Error {
        code: code.into(),
        message: None,
        status: None,
    };
    let cases: Vec<(&str, FaultKind, i32, &str)> = vec![
        (
            "invalid input",
            error("InvalidInputException"),
            10,
            "InvalidInputException",
        ),
        (
            "not found",
            error("NotFoundException"),
            3,
            "NotFoundException",
        ),
        (
            "operation failure",
            error("OperationFailureException"),
            10,
            "OperationFailureException",
        ),
        (
            "access denied",
            error("AccessDeniedException"),
            23,
            "AccessDeniedException",
        ),
        (
            "unauthenticated",
            error("UnauthenticatedException"),
            11,
            "UnauthenticatedException",
        ),
        (
            "expired credentials",
            error("ExpiredTokenException"),
            11,
            "ExpiredTokenException",
        ),
        (
            "account setup",
            error("AccountSetupInProgressException"),
            12,
            "AccountSetupInProgressException",
        ),
        (
            "region setup",
            error("RegionSetupInProgressException"),
            12,
            "RegionSetupInProgressException",
        ),
        (
            "service exception",
            error("ServiceException"),
            12,
            "ServiceException",
        ),
        ("throttling", FaultKind::Throttle, 12, "Throttling"),
        ("bare 500", FaultKind::Status500, 12, "500"),
        (
            "connection reset",
            FaultKind::Reset,
            12,
            "CreateDiskSnapshot",
        ),
        ("hang", FaultKind::Hang, 13, "--freeze-timeout"),
        (
            "latency past the deadline",
            FaultKind::Latency { ms: 2500 },
            13,
            "--freeze-timeout",
        ),
    ];
    for (i, (what, kind, code, needle)) in cases.into_iter().enumerate() {
        s.fake.clear_faults();
        s.fake.add_fault(Fault {
            operation: Some("CreateDiskSnapshot".into()),
            kind,
            count: None,
        });
        let name = format!("matrix-{i}");
        let result = finish(snap(&s).args(["--freeze-timeout", "800ms", "--snapshot-name", &name]));
        assert_eq!(result.code, code, "{what}: {result:?}");
        assert!(
            result.stderr.contains(needle),
            "{what}: should say {needle:?}: {result:?}"
        );
        assert!(!s.fs.is_frozen(), "{what}: left frozen");
    }

    // Unreachable endpoint: found before anything is frozen.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let result = finish(
        snap(&s)
            .env("AWS_ENDPOINT_URL_LIGHTSAIL", format!("http://{addr}"))
            .args(["--snapshot-name", "unreachable"]),
    );
    assert_eq!(result.code, 12, "unreachable: {result:?}");
    assert!(!s.fs.is_frozen());
}

#[allow(dead_code)]
fn exists(p: &Path) -> bool {
    p.exists()
}

/// Polls (bounded) until `done` holds; returns whether it did.
fn eventually(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let until = std::time::Instant::now() + within;
    loop {
        if done() {
            return true;
        }
        if std::time::Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn sigkill_while_unmounted_is_mounted_again_by_the_watchdog() {
    let Some(s) = setup("sigkill_while_unmounted_is_mounted_again_by_the_watchdog") else {
        return;
    };
    let before = s.fs.mountinfo().expect("mounted");
    hang_create(&s.fake);
    let child = spawn(snap(&s).args(["--method", "unmount", "--freeze-timeout", "60s"]));
    wait_for_create_call(&s.fake, Duration::from_secs(30));
    assert!(!s.fs.is_mounted(), "unmounted for the call");
    kill(child.id(), nix::sys::signal::Signal::SIGKILL);
    let _ = wait_result(child);
    assert!(
        eventually(Duration::from_secs(5), || s.fs.is_mounted()),
        "the watchdog mounts it again when the agent dies"
    );
    let after = s.fs.mountinfo().unwrap();
    assert_eq!(
        (
            &before.source,
            &before.fstype,
            &before.mount_options,
            &before.super_options
        ),
        (
            &after.source,
            &after.fstype,
            &after.mount_options,
            &after.super_options
        )
    );
}

#[test]
fn a_run_that_left_a_filesystem_unmounted_blocks_the_next_until_recovered() {
    let Some(s) = setup("a_run_that_left_a_filesystem_unmounted_blocks_the_next_until_recovered")
    else {
        return;
    };
    hang_create(&s.fake);
    let child = spawn(snap(&s).args(["--method", "unmount", "--freeze-timeout", "60s"]));
    wait_for_create_call(&s.fake, Duration::from_secs(30));
    // Both die: nobody mounts it again but an operator.
    let watchdog = watchdog_of(child.id());
    kill(watchdog, nix::sys::signal::Signal::SIGKILL);
    kill(child.id(), nix::sys::signal::Signal::SIGKILL);
    let _ = wait_result(child);
    assert!(!s.fs.is_mounted());
    s.fake.clear_faults();

    let next = finish(snap(&s).args(["--method", "unmount"]));
    assert_eq!(next.code, 5, "{next:?}");
    assert!(next.stderr.contains("thaw --recover"), "{next:?}");
    assert!(!s.fs.is_mounted(), "the refused run changed nothing");

    let recover = finish(lightsnap(&s.scratch, &s.fake).args(["thaw", "--recover"]));
    assert_eq!(recover.code, 0, "{recover:?}");
    assert!(recover.stdout.contains("again"), "{recover:?}");
    assert!(s.fs.is_mounted());
    let after = finish(snap(&s).args(["--snapshot-name", "after-recovery"]));
    assert_eq!(after.code, 0, "{after:?}");
}

#[test]
fn without_root_it_says_so_and_touches_nothing() {
    let Some(s) = setup("without_root_it_says_so_and_touches_nothing") else {
        return;
    };
    use std::os::unix::process::CommandExt;
    let nobody = 65534;
    let result = finish(
        snap(&s)
            .args(["--snapshot-name", "as-nobody"])
            .uid(nobody)
            .gid(nobody),
    );
    assert_eq!(result.code, 7, "{result:?}");
    assert!(result.stderr.contains("run it as root"), "{result:?}");
    let thaw = finish(
        lightsnap(&s.scratch, &s.fake)
            .arg("thaw")
            .arg(&s.fs.mount_point)
            .uid(nobody)
            .gid(nobody),
    );
    assert_eq!(thaw.code, 7, "{thaw:?}");
    assert!(create_calls(&s.fake).is_empty());
    assert!(!s.fs.is_frozen());
}

/// The tests that read or set the kernel's `rcu_expedited` switch, one at a time.
static RCU_SWITCH: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The kernel's `rcu_expedited` switch and its value, or `None` (said) where there is none.
fn rcu_switch() -> Option<(&'static Path, String)> {
    let switch = Path::new("/sys/kernel/rcu_expedited");
    match std::fs::read_to_string(switch) {
        Ok(value) => Some((switch, value)),
        Err(_) => {
            eprintln!("skipping: this kernel has no {}", switch.display());
            None
        }
    }
}

#[test]
fn expedite_freeze_puts_the_kernel_switch_back_before_the_call() {
    let Some(s) = setup("expedite_freeze_puts_the_kernel_switch_back_before_the_call") else {
        return;
    };
    let _one_at_a_time = RCU_SWITCH.lock().unwrap_or_else(|p| p.into_inner());
    let Some((switch, before)) = rcu_switch() else {
        return;
    };
    hang_create(&s.fake);
    let child = spawn(snap(&s).args(["--expedite-freeze", "--freeze-timeout", "30s"]));
    wait_for_create_call(&s.fake, Duration::from_secs(30));
    // Frozen, the call in flight: the switch is as it was (it is held for FIFREEZE only).
    let during = std::fs::read_to_string(switch).unwrap();
    kill(child.id(), nix::sys::signal::Signal::SIGTERM);
    let result = wait_result(child);
    assert_eq!(result.code, 143, "{result:?}");
    assert_eq!(during, before, "rcu_expedited put back after the freeze");
    assert_eq!(std::fs::read_to_string(switch).unwrap(), before);
    assert!(!s.fs.is_frozen());

    s.fake.clear_faults();
    let ok = finish(snap(&s).args(["--expedite-freeze", "--snapshot-name", "expedited"]));
    assert_eq!(ok.code, 0, "{ok:?}");
    assert!(ok.stdout.contains("frozen, writes paused"), "{ok:?}");
}

/// Puts `/sys/kernel/rcu_expedited` back as it was, whatever the test did.
struct RestoreSwitch(String);

impl Drop for RestoreSwitch {
    fn drop(&mut self) {
        if let Some((switch, _)) = rcu_switch() {
            let _ = std::fs::write(switch, &self.0);
        }
    }
}

#[test]
fn recover_turns_off_the_switch_a_killed_watchdog_left_on() {
    let Some(s) = setup("recover_turns_off_the_switch_a_killed_watchdog_left_on") else {
        return;
    };
    let _one_at_a_time = RCU_SWITCH.lock().unwrap_or_else(|p| p.into_inner());
    let Some((switch, before)) = rcu_switch() else {
        return;
    };
    if before.trim() != "0" {
        eprintln!("skipping: rcu_expedited is on already; nothing to tell apart");
        return;
    }
    let _restore = RestoreSwitch(before);
    // What an interrupted --expedite-freeze run leaves: its record, and the switch on.
    let run = s.scratch.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    let record = serde_json::json!({
        "pid": 2_000_000_000u32,
        "entries": [],
        "rcu_expedited": true,
    });
    std::fs::write(run.join("recovery.json"), record.to_string()).unwrap();
    std::fs::write(switch, "1").unwrap();
    let r = finish(lightsnap(&s.scratch, &s.fake).args(["thaw", "--recover", "--output", "json"]));
    assert_eq!(r.code, 0, "{r:?}");
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(doc["rcu_expedited_reset"], true, "{doc}");
    assert_eq!(std::fs::read_to_string(switch).unwrap().trim(), "0");
    assert!(!run.join("recovery.json").exists(), "record cleared");
}

/// Waits (bounded) for the watchdog `pid` to be gone: it updates the recovery record after
/// its thaw, on its way out.
fn wait_gone(pid: u32) {
    wait_until("the watchdog exits", Duration::from_secs(30), || {
        !alive(pid as i32)
    });
}

/// The recovery record a run left in the scratch run directory, if any.
fn record_of(scratch: &Scratch) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(scratch.path().join("run/recovery.json")).ok()?;
    Some(serde_json::from_str(&text).unwrap())
}

/// Unmounts a test's own filesystem and removes its mount point, as its owner might.
fn owner_unmounts(fs: &LoopFs) {
    run(Command::new("umount").arg(&fs.mount_point));
    std::fs::remove_dir(&fs.mount_point).unwrap();
}

/// Issue 22: lightsnap SIGKILLed while frozen; its watchdog thaws; then the filesystem's owner
/// unmounts it and removes the mount point. The watchdog brought the record up to date when it
/// thawed, so nothing is owed: the next run (of another filesystem) succeeds, and
/// `thaw --recover` clears the record with a note instead of mounting it again.
#[test]
fn a_sigkill_then_the_owners_unmount_blocks_nothing() {
    let test = "a_sigkill_then_the_owners_unmount_blocks_nothing";
    if !root_or_skip(test) {
        return;
    }
    let scratch = Scratch::new();
    let first = LoopFs::create(&scratch, "first", FsKind::Ext4);
    let second = LoopFs::create(&scratch, "second", FsKind::Ext4);
    let fake = fake(
        &scratch,
        seed(
            &[("disk-a", &first.device), ("disk-b", &second.device)],
            None,
        ),
    );
    let killed_while_frozen = |fs: &LoopFs| {
        hang_create(&fake);
        let before = create_calls(&fake).len();
        let child = spawn(
            lightsnap(&scratch, &fake)
                .args(["freeze-and-snap", "--freeze-timeout", "60s"])
                .arg(&fs.mount_point),
        );
        wait_until("its snapshot call", Duration::from_secs(30), || {
            create_calls(&fake).len() > before
        });
        let watchdog = watchdog_of(child.id());
        kill(child.id(), nix::sys::signal::Signal::SIGKILL);
        let _ = wait_result(child);
        wait_gone(watchdog);
        fake.clear_faults();
        assert!(!fs.is_frozen(), "the watchdog thawed it");
        let record = record_of(&scratch).expect("the killed run's record stays");
        assert_eq!(
            record["entries"][0]["stage"], "undone",
            "the watchdog recorded its thaw: {record}"
        );
        owner_unmounts(fs);
    };

    killed_while_frozen(&first);
    let next = finish(
        lightsnap(&scratch, &fake)
            .args(["freeze-and-snap", "--snapshot-name", "next"])
            .arg(&second.mount_point),
    );
    assert_eq!(next.code, 0, "the next run was blocked: {next:?}");
    assert!(!first.mount_point.exists(), "nothing mounted it again");

    killed_while_frozen(&second);
    let recover = finish(lightsnap(&scratch, &fake).args(["thaw", "--recover"]));
    assert_eq!(recover.code, 0, "{recover:?}");
    assert!(
        recover
            .stdout
            .contains(&format!("{}: nothing to do", second.mount_point.display())),
        "{recover:?}"
    );
    assert!(!second.mount_point.exists(), "nothing mounted it again");
    assert!(record_of(&scratch).is_none(), "the record is cleared");
}

/// Issue 22: a run froze one filesystem and was refused another (EBUSY: someone else's
/// freeze, taken crash-consistent), then it and its watchdog died. `thaw --recover` thaws the
/// one it froze and leaves the other's freeze to its owner.
#[test]
fn thaw_recover_after_ebusy_leaves_someone_elses_freeze_alone() {
    let test = "thaw_recover_after_ebusy_leaves_someone_elses_freeze_alone";
    if !root_or_skip(test) {
        return;
    }
    let scratch = Scratch::new();
    let theirs = LoopFs::create(&scratch, "theirs", FsKind::Ext4);
    let ours = LoopFs::create(&scratch, "ours", FsKind::Ext4);
    let fake = fake(
        &scratch,
        seed(
            &[("disk-a", &theirs.device), ("disk-b", &ours.device)],
            None,
        ),
    );
    run(Command::new("fsfreeze").arg("-f").arg(&theirs.mount_point));
    hang_create(&fake);
    let child = spawn(
        lightsnap(&scratch, &fake)
            .args([
                "freeze-and-snap",
                "--allow-crash-consistent",
                "--freeze-timeout",
                "60s",
            ])
            .arg(&theirs.mount_point)
            .arg(&ours.mount_point),
    );
    wait_for_create_call(&fake, Duration::from_secs(30));
    let watchdog = watchdog_of(child.id());
    kill(watchdog, nix::sys::signal::Signal::SIGKILL);
    kill(child.id(), nix::sys::signal::Signal::SIGKILL);
    let _ = wait_result(child);
    assert!(ours.is_frozen(), "left frozen by the two deaths");

    let recover = finish(lightsnap(&scratch, &fake).args(["thaw", "--recover"]));
    let theirs_frozen = theirs.is_frozen();
    if theirs_frozen {
        run(Command::new("fsfreeze").arg("-u").arg(&theirs.mount_point));
    }
    assert_eq!(recover.code, 0, "{recover:?}");
    assert!(!ours.is_frozen(), "its own freeze was thawed: {recover:?}");
    assert!(
        theirs_frozen,
        "someone else's freeze was thawed: {recover:?}"
    );
    assert!(
        recover.stdout.contains(&format!(
            "{}: nothing to do: its freeze was refused",
            theirs.mount_point.display()
        )),
        "{recover:?}"
    );
}

/// Issue 22: a request the watchdog cannot read, while it holds a freeze, ends its loop
/// through the thaw-all like every other way out.
#[test]
fn the_watchdog_thaws_on_a_request_it_cannot_read() {
    use std::io::{BufRead, BufReader, Write};
    let Some(s) = setup("the_watchdog_thaws_on_a_request_it_cannot_read") else {
        return;
    };
    let mut watchdog = Command::new(env!("CARGO_BIN_EXE_lightsnap"))
        .arg("__watchdog")
        .env("LIGHTSNAP_CONFINE_TO", s.scratch.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut to = watchdog.stdin.take().unwrap();
    let mut from = BufReader::new(watchdog.stdout.take().unwrap());
    let mut hear = || {
        let mut line = String::new();
        from.read_line(&mut line).unwrap();
        line
    };
    let init = serde_json::json!({"init": {"mounts": [s.fs.mount_point], "deadline_ms": 60000}});
    writeln!(to, "{init}").unwrap();
    assert!(hear().contains("ready"));
    writeln!(to, "{}", serde_json::json!({"freeze": [0]})).unwrap();
    assert!(hear().contains("landed"));
    assert!(hear().contains("frozen"));
    assert!(s.fs.is_frozen(), "frozen by the watchdog");
    writeln!(to, "not a request").unwrap();
    let status = watchdog.wait().unwrap();
    assert!(!status.success(), "it says it failed: {status}");
    assert!(
        !s.fs.is_frozen(),
        "it left its freeze behind on the way out"
    );
}

/// Issue 22: the watchdog writes the recovery record while filesystems are frozen, so a run
/// directory on a filesystem the run would freeze is refused before anything is frozen.
#[test]
fn a_run_directory_on_the_filesystem_to_freeze_is_refused() {
    let Some(s) = setup("a_run_directory_on_the_filesystem_to_freeze_is_refused") else {
        return;
    };
    let run_dir = s.fs.mount_point.join("run");
    std::fs::create_dir_all(&run_dir).unwrap();
    let r = finish(snap(&s).env("LIGHTSNAP_RUN_DIR", &run_dir));
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains("give a run directory on a tmpfs"),
        "{r:?}"
    );
    s.assert_untouched(&r);
}
