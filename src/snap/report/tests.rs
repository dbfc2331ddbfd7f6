//! What a window's outcome is reported as, and with which exit code, through a scripted
//! Lightsail: no root, no network.

use std::time::Duration;

use super::*;
use crate::cloud::lightsail::fake::FakeLightsail;
use crate::cloud::lightsail::{OperationInfo, SnapshotKind};
use crate::kernel::freeze::FreezeError;
use crate::runstate::Quiesce;
use crate::snap::plan::Method;
use crate::snap::testing::filesystem;
use crate::snap::Snapshot;

fn options() -> Options {
    Options {
        paths: vec!["/data".into()],
        disk_name: None,
        snapshot_name: None,
        tags: Vec::new(),
        method: Method::Auto,
        freeze_timeout: Duration::from_secs(10),
        allow_crash_consistent: false,
        syncfs: true,
        expedite_freeze: false,
        run_dir: "/run/lightsnap".into(),
        name_template: "{disk}-{utc:%Y%m%d}".into(),
        disk_map: Vec::new(),
        hook_dir: "/etc/lightsnap/hooks.d".into(),
        hook_timeout: Duration::from_secs(60),
        auto_snapshot_wait: Duration::ZERO,
        exclude: Vec::new(),
    }
}

/// A plan of two disks, `a` on /a and `b` on /b.
fn plan() -> Plan {
    let fs = |point: &str| filesystem(point, "/dev/loop0", "xfs", 0, Some(Quiesce::Freeze));
    let snap = |name: &str, on: usize| Snapshot {
        request: SnapshotRequest {
            source: Source::Disk(format!("{name}-disk")),
            name: name.into(),
            tags: Vec::new(),
        },
        filesystems: vec![on],
        devices: Vec::new(),
        auto_snapshot: None,
    };
    Plan {
        filesystems: vec![fs("/a"), fs("/b")],
        snapshots: vec![snap("a", 0), snap("b", 1)],
    }
}

fn outcome(plan: &Plan, calls: Calls) -> Outcome {
    Outcome {
        consistency: vec![Consistency::Frozen; plan.snapshots.len()],
        requests: plan.snapshots.iter().map(|s| s.request.clone()).collect(),
        calls,
        window: Duration::from_millis(42),
        undo_errors: Vec::new(),
        thawed_by_watchdog: false,
    }
}

fn ok(id: &str) -> Result<OperationInfo, ApiError> {
    Ok(OperationInfo {
        id: Some(id.into()),
        status: Some("Started".into()),
    })
}

fn err(kind: ApiErrorKind, message: &str) -> Result<OperationInfo, ApiError> {
    Err(ApiError {
        operation: "CreateDiskSnapshot",
        kind,
        code: None,
        message: message.into(),
    })
}

/// A snapshot that exists in the scripted service.
fn exists(api: &FakeLightsail, name: &str) {
    api.snapshots.lock().unwrap().push(SnapshotInfo {
        name: name.into(),
        state: "pending".into(),
        progress: None,
        tags: Vec::new(),
        created_at: None,
        from: None,
        size_gb: None,
        is_from_auto_snapshot: false,
        instance: false,
    });
}

async fn report_of(api: &FakeLightsail, calls: Calls) -> Result<Report> {
    let p = plan();
    let out = outcome(&p, calls);
    report(api, &options(), &p, out).await
}

#[tokio::test]
async fn report_every_call_returned_is_a_success_naming_each_snapshot() {
    let api = FakeLightsail::default();
    let r = report_of(&api, Calls::Returned(vec![ok("op-a"), ok("op-b")]))
        .await
        .unwrap();
    let names: Vec<&str> = r.snapshots.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(r.snapshots[1].operation_id.as_deref(), Some("op-b"));
    assert_eq!(
        r.snapshots[0].mount_points,
        [std::path::PathBuf::from("/a")]
    );
    assert!((r.window_ms - 42.0).abs() < 1e-9);
    let text = r.to_string();
    assert!(
        text.contains("snapshot a of disk a-disk from /a (xfs): frozen, writes paused 42.0 ms"),
        "{text}"
    );
}

#[tokio::test]
async fn report_name_taken_on_our_own_retry_counts_as_taken() {
    let api = FakeLightsail::default();
    let r = report_of(
        &api,
        Calls::Returned(vec![
            ok("op-a"),
            err(ApiErrorKind::Rejected, "snapshot b already exists"),
        ]),
    )
    .await
    .unwrap();
    assert_eq!(r.snapshots.len(), 2);
    assert_eq!(r.snapshots[1].operation_id, None);
}

#[tokio::test]
async fn report_partial_group_failure_is_partial_naming_what_was_taken() {
    let api = FakeLightsail::default();
    let e = report_of(
        &api,
        Calls::Returned(vec![ok("op-a"), err(ApiErrorKind::Rejected, "bad tag")]),
    )
    .await
    .unwrap_err();
    assert_eq!(ExitCode::of(&e), ExitCode::Partial);
    assert!(e.to_string().contains("taken: a"), "{e}");
}

#[tokio::test]
async fn report_every_call_rejected_is_the_api_code_with_advice() {
    let api = FakeLightsail::default();
    let e = report_of(
        &api,
        Calls::Returned(vec![
            err(ApiErrorKind::Auth, "bad key"),
            err(ApiErrorKind::Auth, "bad key"),
        ]),
    )
    .await
    .unwrap_err();
    assert_eq!(ExitCode::of(&e), ExitCode::ApiAuth);
    assert!(format!("{e:#}").contains("check the credentials"), "{e:#}");
}

#[tokio::test]
async fn report_operation_failed_is_rejected() {
    let api = FakeLightsail::default();
    let e = report_of(
        &api,
        Calls::Returned(vec![
            err(ApiErrorKind::OperationFailed, "status Failed"),
            err(ApiErrorKind::OperationFailed, "status Failed"),
        ]),
    )
    .await
    .unwrap_err();
    assert_eq!(ExitCode::of(&e), ExitCode::ApiRejected);
}

#[tokio::test]
async fn report_ambiguous_failure_whose_snapshot_landed_is_partial_and_tagged_unverified() {
    let api = FakeLightsail::default();
    exists(&api, "b");
    let e = report_of(
        &api,
        Calls::Returned(vec![
            err(ApiErrorKind::Unavailable, "503"),
            err(ApiErrorKind::Unavailable, "503"),
        ]),
    )
    .await
    .unwrap_err();
    assert_eq!(ExitCode::of(&e), ExitCode::Partial);
    assert!(api
        .log()
        .contains(&"TagResource b lightsnap:consistency=unverified".to_string()));
    assert!(!api.log().iter().any(|l| l.starts_with("TagResource a")));
}

#[tokio::test]
async fn report_all_calls_timed_out_is_the_deadline() {
    let api = FakeLightsail::default();
    let e = report_of(
        &api,
        Calls::Returned(vec![
            err(ApiErrorKind::Timeout, "timed out"),
            err(ApiErrorKind::Timeout, "timed out"),
        ]),
    )
    .await
    .unwrap_err();
    assert_eq!(ExitCode::of(&e), ExitCode::DeadlineExceeded);
    assert!(e.to_string().contains("--freeze-timeout 10s"), "{e}");
}

#[tokio::test]
async fn report_deadline_labels_a_snapshot_that_landed_anyway() {
    let api = FakeLightsail::default();
    exists(&api, "a");
    let e = report_of(&api, Calls::Deadline).await.unwrap_err();
    assert_eq!(ExitCode::of(&e), ExitCode::DeadlineExceeded);
    assert!(e
        .to_string()
        .contains("snapshot a exists but may have been taken after the thaw"));
    let asked: Vec<String> = api
        .log()
        .into_iter()
        .filter(|l| l.starts_with("Get"))
        .collect();
    assert_eq!(asked, ["GetDiskSnapshot a", "GetDiskSnapshot b"]);
}

#[tokio::test]
async fn report_stop_request_is_its_signals_exit_code() {
    let api = FakeLightsail::default();
    let e = report_of(&api, Calls::Signal(ExitCode::Interrupted))
        .await
        .unwrap_err();
    assert_eq!(ExitCode::of(&e), ExitCode::Interrupted);
    assert!(e
        .to_string()
        .contains("stopped by SIGINT after thawing; no snapshot was taken"));
}

#[tokio::test]
async fn report_no_call_made_carries_the_freezes_cause() {
    let api = FakeLightsail::default();
    let e = report_of(
        &api,
        Calls::NotMade(FreezeError::AlreadyFrozen("/a".into()).into()),
    )
    .await
    .unwrap_err();
    assert_eq!(ExitCode::of(&e), ExitCode::AlreadyFrozen);
    assert!(format!("{e:#}").starts_with("no snapshot was taken: /a is already frozen"));
    assert!(api.log().is_empty(), "nothing asked of the API");
}

#[test]
fn report_kind_of_a_source_picks_the_snapshot_operations() {
    assert_eq!(Source::Disk("d".into()).kind(), SnapshotKind::Disk);
    assert_eq!(Source::SystemVolume("i".into()).kind(), SnapshotKind::Disk);
    assert_eq!(Source::Instance("i".into()).kind(), SnapshotKind::Instance);
}
