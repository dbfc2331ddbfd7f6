//! The window's logic through its seam: a recording [`Quiescer`] and a scripted Lightsail, no
//! root, no kernel. Every test name contains `window`. Here: the harness and the quiescing
//! phase; [`calls_and_undo`]: the calls, stop requests, deadlines and the undo.

mod calls_and_undo;

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use super::*;
use crate::cloud::lightsail::fake::{Answer, FakeLightsail};
use crate::cloud::lightsail::{ApiErrorKind, Source};
use crate::snap::testing::filesystem;
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
    let device = format!("/dev/disk{}", point.replace('/', "-"));
    filesystem(point, &device, "ext4", wave, quiesce)
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
                auto_snapshot: None,
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
