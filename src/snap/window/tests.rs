//! The window's logic through its seam: a recording [`Quiescer`] and a scripted Lightsail, no
//! root, no kernel. Every test name contains `window`.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use super::*;
use crate::cloud::lightsail::fake::{Answer, FakeLightsail};
use crate::cloud::lightsail::{ApiErrorKind, Source};
use crate::kernel::mountinfo::Mount;
use crate::snap::plan::Located;
use crate::snap::{Filesystem, Snapshot};

/// Makes the error a freeze answers with, for a mount point.
type Refusal = fn(PathBuf) -> FreezeError;

/// A machine that does what it is told to, writes what was asked of it into the scripted
/// service's log (one timeline with the API calls), and fails where a test says.
struct Recorder<'a> {
    api: &'a FakeLightsail,
    plan: &'a Plan,
    /// Freeze answers by filesystem index (default: frozen).
    refuse: Vec<(usize, Refusal)>,
    /// The freezer dies on the first freeze.
    gone: bool,
    fail_thaw: HashSet<usize>,
    fail_remount: HashSet<usize>,
    /// Thaws the deadline got to first.
    late: HashSet<usize>,
}

impl<'a> Recorder<'a> {
    fn new(api: &'a FakeLightsail, plan: &'a Plan) -> Self {
        Self {
            api,
            plan,
            refuse: Vec::new(),
            gone: false,
            fail_thaw: HashSet::new(),
            fail_remount: HashSet::new(),
            late: HashSet::new(),
        }
    }

    fn note(&self, line: String) {
        self.api.log.lock().unwrap().push(line);
    }

    fn point(&self, i: usize) -> PathBuf {
        self.plan.filesystems[i].located.mount.mount_point.clone()
    }
}

impl Quiescer for Recorder<'_> {
    fn freeze(&mut self, wave: &[usize]) -> Result<Vec<Result<(), FreezeError>>> {
        self.note(format!("freeze {wave:?}"));
        if self.gone {
            anyhow::bail!("the watchdog is gone");
        }
        Ok(wave
            .iter()
            .map(|&i| match self.refuse.iter().find(|(r, _)| *r == i) {
                Some((_, make)) => Err(make(self.point(i))),
                None => Ok(()),
            })
            .collect())
    }

    fn thaw(&mut self, i: usize) -> Result<bool> {
        self.note(format!("thaw {i}"));
        if self.fail_thaw.contains(&i) {
            anyhow::bail!("{}: FITHAW failed", self.point(i).display());
        }
        Ok(self.late.contains(&i))
    }

    fn release(&mut self, i: usize) -> Result<()> {
        self.note(format!("release {i}"));
        Ok(())
    }

    fn unmount(&mut self, i: usize) -> Result<()> {
        self.note(format!("unmount {i}"));
        Ok(())
    }

    fn remount(&mut self, i: usize, _past_deadline: bool) -> Result<()> {
        self.note(format!("remount {i}"));
        if self.fail_remount.contains(&i) {
            anyhow::bail!("mounting {} again failed", self.point(i).display());
        }
        Ok(())
    }
}

/// No stop request, ever.
struct Never;

impl Stop for Never {
    async fn recv(&mut self) -> ExitCode {
        std::future::pending().await
    }
}

/// A stop request once the first create call has started.
struct StopMidCall<'a>(&'a FakeLightsail, ExitCode);

impl Stop for StopMidCall<'_> {
    async fn recv(&mut self) -> ExitCode {
        self.0.started.notified().await;
        self.1
    }
}

fn fs(point: &str, wave: usize, quiesce: Option<Quiesce>) -> Filesystem {
    let mount = Mount {
        id: 1,
        parent_id: 0,
        dev: (7, 0),
        root: "/".into(),
        mount_point: point.into(),
        mount_options: "rw".into(),
        fstype: "ext4".into(),
        source: format!("/dev/disk{}", point.replace('/', "-")),
        super_options: "rw".into(),
    };
    Filesystem {
        located: Located {
            path: point.into(),
            block_device: mount.source.clone().into(),
            mount,
        },
        paths: vec![point.into()],
        quiesce,
        wave,
    }
}

/// A plan of `filesystems` and snapshots `(name, filesystem indices)`.
fn plan(filesystems: Vec<Filesystem>, snapshots: &[(&str, &[usize])]) -> Plan {
    Plan {
        filesystems,
        snapshots: snapshots
            .iter()
            .map(|(name, on)| Snapshot {
                request: SnapshotRequest {
                    source: Source::Disk(format!("{name}-disk")),
                    name: name.to_string(),
                    tags: vec![("team".into(), "web".into())],
                },
                filesystems: on.to_vec(),
                devices: Vec::new(),
            })
            .collect(),
    }
}

const FREEZE: Option<Quiesce> = Some(Quiesce::Freeze);
const UNMOUNT: Option<Quiesce> = Some(Quiesce::Unmount);

fn settings() -> Settings {
    Settings {
        deadline: Duration::from_secs(10),
        unmount_fallback: true,
        allow_crash_consistent: false,
    }
}

async fn window<Q: Quiescer>(
    api: &FakeLightsail,
    plan: &Plan,
    machine: &mut Q,
    settings: Settings,
) -> Outcome {
    run(api, plan, machine, &settings, &mut Never).await
}

fn returned(calls: &Calls) -> &[Result<OperationInfo, ApiError>] {
    match calls {
        Calls::Returned(r) => r,
        other => panic!("expected every call returned, got {other:?}"),
    }
}

fn not_made(calls: Calls) -> anyhow::Error {
    match calls {
        Calls::NotMade(e) => e,
        other => panic!("expected no call made, got {other:?}"),
    }
}

fn tag(request: &SnapshotRequest) -> &str {
    request
        .tags
        .iter()
        .find(|(k, _)| k == CONSISTENCY_TAG)
        .map(|(_, v)| v.as_str())
        .expect("every request carries its consistency tag")
}

#[tokio::test]
async fn window_freezes_waves_in_order_and_undoes_newest_first() {
    let api = FakeLightsail::default();
    let p = plan(
        vec![
            fs("/data/www", 0, FREEZE),
            fs("/logs", 0, FREEZE),
            fs("/data", 1, FREEZE),
            fs("/", 2, FREEZE),
        ],
        &[
            ("www", &[0]),
            ("logs", &[1]),
            ("data", &[2]),
            ("root", &[3]),
        ],
    );
    let mut machine = Recorder::new(&api, &p);
    let out = window(&api, &p, &mut machine, settings()).await;
    assert!(returned(&out.calls).iter().all(Result::is_ok));
    assert!(out.undo_errors.is_empty());
    let log = api.log();
    let quiescing: Vec<&str> = log
        .iter()
        .map(String::as_str)
        .filter(|l| l.starts_with("freeze") || l.starts_with("thaw"))
        .collect();
    assert_eq!(
        quiescing,
        [
            "freeze [0, 1]",
            "freeze [2]",
            "freeze [3]",
            "thaw 3",
            "thaw 2",
            "thaw 1",
            "thaw 0"
        ]
    );
    // Every call inside: after the last freeze, before the first thaw.
    let last_freeze = log.iter().position(|l| l == "freeze [3]").unwrap();
    let first_thaw = log.iter().position(|l| l == "thaw 3").unwrap();
    let calls: Vec<usize> = (0..log.len())
        .filter(|&i| log[i].starts_with("start") || log[i].starts_with("end"))
        .collect();
    assert_eq!(calls.len(), 8, "{log:?}");
    assert!(calls.iter().all(|&c| c > last_freeze && c < first_thaw));
    assert!(out.consistency.iter().all(|c| *c == Consistency::Frozen));
    assert!(out.requests.iter().all(|r| tag(r) == "frozen"));
}

#[tokio::test]
async fn window_calls_are_made_together_not_one_after_another() {
    let api = FakeLightsail::default();
    let p = plan(
        vec![fs("/a", 0, FREEZE), fs("/b", 0, FREEZE)],
        &[("a", &[0]), ("b", &[1])],
    );
    let mut machine = Recorder::new(&api, &p);
    window(&api, &p, &mut machine, settings()).await;
    let calls: Vec<String> = api
        .log()
        .into_iter()
        .filter(|l| l.starts_with("start") || l.starts_with("end"))
        .collect();
    assert_eq!(calls, ["start a", "start b", "end a", "end b"]);
}

#[tokio::test]
async fn window_freeze_refused_as_busy_leaves_that_mount_untouched_and_undoes_the_others() {
    let api = FakeLightsail::default();
    let p = plan(
        vec![
            fs("/a", 0, FREEZE),
            fs("/b", 0, FREEZE),
            fs("/c", 1, FREEZE),
        ],
        &[("group", &[0, 1, 2])],
    );
    let mut machine = Recorder::new(&api, &p);
    machine.refuse.push((1, FreezeError::AlreadyFrozen));
    let out = window(&api, &p, &mut machine, settings()).await;
    let e = not_made(out.calls);
    assert_eq!(ExitCode::of(&e), ExitCode::AlreadyFrozen);
    // /b was frozen by someone else: never thawed by us. /c's wave never came.
    assert_eq!(api.log(), ["freeze [0, 1]", "thaw 0"]);
    assert!(out.undo_errors.is_empty());
}

#[tokio::test]
async fn window_not_supported_at_run_time_releases_then_unmounts_and_tags_unmounted() {
    let api = FakeLightsail::default();
    let p = plan(
        vec![fs("/ntfs", 0, FREEZE), fs("/data", 0, FREEZE)],
        &[("ntfs", &[0]), ("data", &[1])],
    );
    let mut machine = Recorder::new(&api, &p);
    machine.refuse.push((0, FreezeError::NotSupported));
    let out = window(&api, &p, &mut machine, settings()).await;
    assert!(returned(&out.calls).iter().all(Result::is_ok));
    let log = api.log();
    let release = log.iter().position(|l| l == "release 0").unwrap();
    let unmount = log.iter().position(|l| l == "unmount 0").unwrap();
    let first_call = log.iter().position(|l| l.starts_with("start")).unwrap();
    let remount = log.iter().position(|l| l == "remount 0").unwrap();
    // Descriptors closed before the unmount (an open one would make it EBUSY), remounted after
    // the calls, and never thawed (it was never frozen).
    assert!(release < unmount && unmount < first_call && first_call < remount);
    assert!(!log.contains(&"thaw 0".to_string()));
    assert!(log.contains(&"thaw 1".to_string()));
    assert_eq!(
        out.consistency,
        [Consistency::Unmounted, Consistency::Frozen]
    );
    assert_eq!(tag(&out.requests[0]), "unmounted");
}

#[tokio::test]
async fn window_not_supported_without_the_fallback_makes_no_call() {
    let api = FakeLightsail::default();
    let p = plan(vec![fs("/ntfs", 0, FREEZE)], &[("ntfs", &[0])]);
    let mut machine = Recorder::new(&api, &p);
    machine.refuse.push((0, FreezeError::NotSupported));
    let out = window(
        &api,
        &p,
        &mut machine,
        Settings {
            unmount_fallback: false,
            ..settings()
        },
    )
    .await;
    assert_eq!(ExitCode::of(&not_made(out.calls)), ExitCode::Unsupported);
    assert_eq!(api.log(), ["freeze [0]"]);
}

#[tokio::test]
async fn window_failed_remount_is_reported_and_everything_else_still_undone() {
    let api = FakeLightsail::default();
    let p = plan(
        vec![fs("/vfat", 0, UNMOUNT), fs("/data", 1, FREEZE)],
        &[("group", &[0, 1])],
    );
    let mut machine = Recorder::new(&api, &p);
    machine.fail_remount.insert(0);
    let out = window(&api, &p, &mut machine, settings()).await;
    assert!(returned(&out.calls)[0].is_ok());
    assert_eq!(out.undo_errors.len(), 1);
    assert!(
        format!("{:#}", out.undo_errors[0]).contains("/vfat"),
        "{:?}",
        out.undo_errors
    );
    let log = api.log();
    let undo: Vec<&str> = log
        .iter()
        .map(String::as_str)
        .skip_while(|l| !l.starts_with("end"))
        .skip(1)
        .collect();
    assert_eq!(undo, ["thaw 1", "remount 0"]);
    assert_eq!(out.consistency, [Consistency::Unmounted]);
}

#[tokio::test]
async fn window_failed_thaw_is_reported_never_dropped() {
    let api = FakeLightsail::default();
    let p = plan(
        vec![fs("/a", 0, FREEZE), fs("/b", 0, FREEZE)],
        &[("a", &[0]), ("b", &[1])],
    );
    let mut machine = Recorder::new(&api, &p);
    machine.fail_thaw.insert(1);
    let out = window(&api, &p, &mut machine, settings()).await;
    assert_eq!(out.undo_errors.len(), 1);
    assert!(format!("{:#}", out.undo_errors[0]).contains("/b"));
    // The other one is thawed all the same.
    assert!(api.log().contains(&"thaw 0".to_string()));
}

#[tokio::test(start_paused = true)]
async fn window_deadline_reached_mid_call_abandons_the_call_and_thaws() {
    let api = FakeLightsail::default().answering("a", Answer::Hang);
    let p = plan(vec![fs("/a", 0, FREEZE)], &[("a", &[0])]);
    let mut machine = Recorder::new(&api, &p);
    let out = window(&api, &p, &mut machine, settings()).await;
    assert!(matches!(out.calls, Calls::Deadline), "{:?}", out.calls);
    assert_eq!(api.log(), ["freeze [0]", "start a", "thaw 0"]);
    // The call was given no more than the deadline.
    let budget = api.budgets.lock().unwrap()[0];
    assert!(budget <= settings().deadline && !budget.is_zero());
}

#[tokio::test]
async fn window_stop_request_mid_call_thaws_and_carries_its_exit_code() {
    let api = FakeLightsail::default().answering("a", Answer::Hang);
    let p = plan(
        vec![fs("/a", 0, FREEZE), fs("/b", 1, UNMOUNT)],
        &[("a", &[0, 1])],
    );
    let mut machine = Recorder::new(&api, &p);
    let mut stop = StopMidCall(&api, ExitCode::Terminated);
    let out = run(&api, &p, &mut machine, &settings(), &mut stop).await;
    assert!(
        matches!(out.calls, Calls::Signal(ExitCode::Terminated)),
        "{:?}",
        out.calls
    );
    assert_eq!(
        api.log(),
        ["freeze [0]", "unmount 1", "start a", "remount 1", "thaw 0"]
    );
    assert!(out.undo_errors.is_empty());
}

#[tokio::test]
async fn window_partial_group_failure_returns_each_calls_result() {
    let api = FakeLightsail::default().answering("b", Answer::Fail(ApiErrorKind::Rejected, false));
    let p = plan(
        vec![fs("/a", 0, FREEZE), fs("/b", 0, FREEZE)],
        &[("a", &[0]), ("b", &[1])],
    );
    let mut machine = Recorder::new(&api, &p);
    let out = window(&api, &p, &mut machine, settings()).await;
    let results = returned(&out.calls);
    assert!(results[0].is_ok());
    assert_eq!(
        results[1].as_ref().unwrap_err().kind,
        ApiErrorKind::Rejected
    );
    let log = api.log();
    assert!(log.contains(&"thaw 0".to_string()) && log.contains(&"thaw 1".to_string()));
}

#[tokio::test]
async fn window_crash_consistent_mode_goes_on_without_pausing_that_filesystem() {
    let api = FakeLightsail::default();
    let p = plan(
        vec![fs("/a", 0, FREEZE), fs("/b", 0, FREEZE)],
        &[("a", &[0]), ("b", &[1])],
    );
    let mut machine = Recorder::new(&api, &p);
    machine.refuse.push((0, FreezeError::PermissionDenied));
    let out = window(
        &api,
        &p,
        &mut machine,
        Settings {
            allow_crash_consistent: true,
            ..settings()
        },
    )
    .await;
    assert!(returned(&out.calls).iter().all(Result::is_ok));
    assert_eq!(out.consistency, [Consistency::Crash, Consistency::Frozen]);
    assert_eq!(tag(&out.requests[0]), "crash");
    let log = api.log();
    assert!(!log.contains(&"thaw 0".to_string()), "{log:?}");
    assert!(log.contains(&"thaw 1".to_string()));
}

#[tokio::test]
async fn window_refused_freeze_without_crash_consistent_mode_makes_no_call() {
    let api = FakeLightsail::default();
    let p = plan(vec![fs("/a", 0, FREEZE)], &[("a", &[0])]);
    let mut machine = Recorder::new(&api, &p);
    machine.refuse.push((0, FreezeError::PermissionDenied));
    let out = window(&api, &p, &mut machine, settings()).await;
    assert_eq!(ExitCode::of(&not_made(out.calls)), ExitCode::Permission);
    assert_eq!(api.log(), ["freeze [0]"]);
}

#[tokio::test]
async fn window_freezer_gone_mid_freeze_thaws_the_whole_wave_and_makes_no_call() {
    let api = FakeLightsail::default();
    let p = plan(
        vec![fs("/a", 0, FREEZE), fs("/b", 0, FREEZE)],
        &[("a", &[0]), ("b", &[1])],
    );
    let mut machine = Recorder::new(&api, &p);
    machine.gone = true;
    let out = window(&api, &p, &mut machine, settings()).await;
    assert!(format!("{:#}", not_made(out.calls)).contains("gone"));
    assert_eq!(api.log(), ["freeze [0, 1]", "thaw 1", "thaw 0"]);
}

#[tokio::test]
async fn window_read_only_filesystems_are_not_quiesced_and_a_snapshot_is_as_weak_as_its_weakest() {
    let api = FakeLightsail::default();
    let p = plan(
        vec![
            fs("/ro", 0, None),
            fs("/a", 0, FREEZE),
            fs("/vfat", 0, UNMOUNT),
        ],
        &[("ro", &[0]), ("mixed", &[1, 2])],
    );
    let mut machine = Recorder::new(&api, &p);
    let out = window(&api, &p, &mut machine, settings()).await;
    assert_eq!(
        out.consistency,
        [Consistency::Readonly, Consistency::Unmounted]
    );
    assert_eq!(tag(&out.requests[0]), "readonly");
    // The operator's tags stay, the consistency tag is added.
    assert!(out.requests[1]
        .tags
        .contains(&("team".into(), "web".into())));
    let machine_calls: Vec<String> = api
        .log()
        .into_iter()
        .filter(|l| !l.starts_with("start") && !l.starts_with("end"))
        .collect();
    assert_eq!(
        machine_calls,
        ["freeze [1]", "unmount 2", "remount 2", "thaw 1"]
    );
}

#[tokio::test]
async fn window_reports_a_thaw_the_watchdogs_deadline_made_first() {
    let api = FakeLightsail::default();
    let p = plan(vec![fs("/a", 0, FREEZE)], &[("a", &[0])]);
    let mut machine = Recorder::new(&api, &p);
    machine.late.insert(0);
    let out = window(&api, &p, &mut machine, settings()).await;
    assert!(out.thawed_by_watchdog);
    let mut machine = Recorder::new(&api, &p);
    let out = window(&api, &p, &mut machine, settings()).await;
    assert!(!out.thawed_by_watchdog);
}
