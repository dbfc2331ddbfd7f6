//! The window's calls and undo: deadlines, stop requests, partial failures, failed undos.

use super::*;

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
