//! Knowing that snapshots happen (issue 16): the journal's priorities and fields, `--quiet`,
//! the state file, `status` and `check`, the metrics file and the pings — each seen from
//! outside, through the built binary.

mod common;

use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};

use common::*;

/// The journal's entries as a test socket received them: each a list of `KEY=value` fields.
fn journal_entries(socket: &UnixDatagram) -> Vec<Vec<String>> {
    socket.set_nonblocking(true).unwrap();
    let mut entries = Vec::new();
    let mut buf = vec![0u8; 65536];
    while let Ok(n) = socket.recv(&mut buf) {
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        entries.push(text.lines().map(str::to_string).collect());
    }
    entries
}

/// When stderr is the journal (JOURNAL_STREAM names it), the final error line goes to the
/// journal at priority err with its exit code and MESSAGE_ID, and nothing to stderr.
#[test]
fn the_error_line_reaches_the_journal_at_err() {
    let scratch = Scratch::new();
    let socket_path = scratch.path().join("journal.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    let stderr_path = scratch.path().join("stderr");
    let stderr = std::fs::File::create(&stderr_path).unwrap();
    let meta = stderr.metadata().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_lightsnap"))
        .env_clear()
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .env("LIGHTSNAP_JOURNAL_SOCKET", &socket_path)
        .env("LIGHTSNAP_RUN_DIR", scratch.path().join("run"))
        .env("LIGHTSNAP_STATE_DIR", scratch.path().join("state"))
        .env("LIGHTSNAP_CONFIG_ROOT", scratch.path().join("conf"))
        .args(["freeze-and-snap", "--disk-name", "bad name!", "/"])
        .stdin(Stdio::null())
        .stderr(stderr)
        .output()
        .unwrap();
    let code = out.status.code().unwrap();
    assert_eq!(code, 2, "{out:?}");
    let entries = journal_entries(&socket);
    let err = entries
        .iter()
        .find(|e| e.iter().any(|f| f.starts_with("MESSAGE=lightsnap: error:")))
        .unwrap_or_else(|| panic!("no error entry in {entries:?}"));
    assert!(err.contains(&"PRIORITY=3".to_string()), "{err:?}");
    assert!(err.contains(&format!("LIGHTSNAP_EXIT={code}")), "{err:?}");
    assert!(
        err.contains(&format!(
            "MESSAGE_ID={}",
            lightsnap::journal::MESSAGE_FAILED
        )),
        "{err:?}"
    );
    let said = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(!said.contains("lightsnap: error"), "also on stderr: {said}");
}

/// JOURNAL_STREAM naming another file (a terminal session that inherited it) is not the
/// journal: output stays on stderr.
#[test]
fn a_journal_stream_of_another_file_is_ignored() {
    let scratch = Scratch::new();
    let socket_path = scratch.path().join("journal.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_lightsnap"))
        .env_clear()
        .env("JOURNAL_STREAM", "1:1")
        .env("LIGHTSNAP_JOURNAL_SOCKET", &socket_path)
        .env("LIGHTSNAP_RUN_DIR", scratch.path().join("run"))
        .env("LIGHTSNAP_STATE_DIR", scratch.path().join("state"))
        .env("LIGHTSNAP_CONFIG_ROOT", scratch.path().join("conf"))
        .args(["freeze-and-snap", "--disk-name", "bad name!", "/"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("lightsnap: error:"));
    assert!(journal_entries(&socket).is_empty());
}

/// `--quiet`: a successful snapshot prints nothing on stdout (cron mails only failures); a
/// failure still says why on stderr, and with --output json still prints its document.
#[test]
fn quiet_prints_nothing_on_success() {
    let Some(s) = OneDisk::new("quiet_prints_nothing_on_success") else {
        return;
    };
    let r = finish(configured_lightsnap(&s.scratch, &s.fake).args([
        "freeze-and-snap",
        "--quiet",
        "--snapshot-name",
        "quiet-1",
        s.fs.mount_point.to_str().unwrap(),
    ]));
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout, "", "{r:?}");
    assert_eq!(create_calls(&s.fake).len(), 1, "{r:?}");

    // Without --quiet the same run says what it took.
    let r = finish(configured_lightsnap(&s.scratch, &s.fake).args([
        "freeze-and-snap",
        "--snapshot-name",
        "loud-1",
        s.fs.mount_point.to_str().unwrap(),
    ]));
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("snapshot loud-1"), "{r:?}");

    // A failure (the name is taken) is said on stderr, and as a document with --output json.
    let r = finish(configured_lightsnap(&s.scratch, &s.fake).args([
        "freeze-and-snap",
        "-q",
        "--snapshot-name",
        "quiet-1",
        "--output",
        "json",
        s.fs.mount_point.to_str().unwrap(),
    ]));
    assert_ne!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("lightsnap: error:"), "{r:?}");
    let doc = json_doc(&r);
    assert_eq!(doc["error"]["exit_code"], r.code, "{doc}");
    assert!(!s.fs.is_frozen());
}

/// The state file of a target, as JSON.
fn state_of(scratch: &Scratch, target: &std::path::Path) -> serde_json::Value {
    let path = lightsnap::monitor::state::file_of(
        &scratch.path().join("state"),
        &target.display().to_string(),
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn snap_named(s: &OneDisk, name: &str, extra: &[&str]) -> RunResult {
    finish(
        configured_lightsnap(&s.scratch, &s.fake)
            .args(["freeze-and-snap", "--snapshot-name", name])
            .args(extra)
            .arg(&s.fs.mount_point),
    )
}

/// After a success the state file says so; after a failure it keeps the last success and
/// counts the failures; a malformed file is reported and replaced.
#[test]
fn the_state_file_keeps_the_last_success_through_failures() {
    let Some(s) = OneDisk::new("the_state_file_keeps_the_last_success_through_failures") else {
        return;
    };
    let r = snap_named(&s, "state-1", &[]);
    assert_eq!(r.code, 0, "{r:?}");
    let st = state_of(&s.scratch, &s.fs.mount_point);
    assert_eq!(st["target"], s.fs.mount_point.display().to_string());
    assert_eq!(st["kind"], "disk");
    assert_eq!(st["disk"], "data-1");
    assert_eq!(st["last_success"]["snapshot"], "state-1");
    assert_eq!(st["last_success"]["consistency"], "frozen");
    assert!(st["last_success"]["window_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(st["last_attempt"]["result"], "success");
    assert_eq!(st["last_attempt"]["exit_code"], 0);
    assert_eq!(st["consecutive_failures"], 0);

    // The same name again: Lightsail refuses it; twice, to count.
    for n in 1..=2 {
        let r = snap_named(&s, "state-1", &[]);
        assert_ne!(r.code, 0, "{r:?}");
        let st = state_of(&s.scratch, &s.fs.mount_point);
        assert_eq!(st["last_attempt"]["result"], "failure", "{st}");
        assert_eq!(st["last_attempt"]["exit_code"], r.code, "{st}");
        let said = st["last_attempt"]["message"].as_str().unwrap();
        assert!(
            !said.is_empty() && r.stderr.contains(said),
            "{said:?} vs {r:?}"
        );
        assert_eq!(st["last_success"]["snapshot"], "state-1", "{st}");
        assert_eq!(st["consecutive_failures"], n, "{st}");
    }
    // With --output json the error is folded into the document: still recorded.
    let r = snap_named(&s, "state-1", &["--output", "json"]);
    assert_ne!(r.code, 0, "{r:?}");
    let st = state_of(&s.scratch, &s.fs.mount_point);
    assert_eq!(st["consecutive_failures"], 3, "{st}");
    assert_eq!(
        st["last_attempt"]["message"],
        json_doc(&r)["error"]["message"],
        "{st}"
    );

    // A malformed state file: reported, replaced, the run not failed for it.
    let file = lightsnap::monitor::state::file_of(
        &s.scratch.path().join("state"),
        &s.fs.mount_point.display().to_string(),
    );
    std::fs::write(&file, "{ this is not json").unwrap();
    let r = snap_named(&s, "state-2", &["-v"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("malformed"), "{r:?}");
    assert!(r.stderr.contains(&file.display().to_string()), "{r:?}");
    let st = state_of(&s.scratch, &s.fs.mount_point);
    assert_eq!(st["last_success"]["snapshot"], "state-2", "{st}");
    assert_eq!(st["consecutive_failures"], 0, "{st}");
}

/// A state_dir lightsnap cannot write in is refused at the start, naming it, before anything
/// is frozen or asked of Lightsail.
#[test]
fn an_unwritable_state_dir_is_refused_before_freezing() {
    let Some(s) = OneDisk::new("an_unwritable_state_dir_is_refused_before_freezing") else {
        return;
    };
    // A file where the directory should be: not writable even by root.
    let blocker = s.scratch.path().join("not-a-dir");
    std::fs::write(&blocker, "").unwrap();
    let state_dir = blocker.join("state");
    write_conf(
        &s.scratch,
        "etc/lightsnap/config.toml",
        &format!("state_dir = \"{}\"\n", state_dir.display()),
    );
    let r = finish(
        configured_lightsnap(&s.scratch, &s.fake)
            .env_remove("LIGHTSNAP_STATE_DIR")
            .args(["freeze-and-snap", "--snapshot-name", "never"])
            .arg(&s.fs.mount_point),
    );
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains(&state_dir.display().to_string()), "{r:?}");
    s.assert_untouched(&r);
}

fn lightsnap_in(s: &OneDisk, args: &[&str]) -> RunResult {
    finish(configured_lightsnap(&s.scratch, &s.fake).args(args))
}

/// After a success `status` shows it and `check` passes while it is fresh and fails once
/// it is older than --max-age; after a failure `status` shows the failure and keeps the last
/// success.
#[test]
fn status_and_check_follow_the_runs() {
    let Some(s) = OneDisk::new("status_and_check_follow_the_runs") else {
        return;
    };
    let mp = s.fs.mount_point.display().to_string();
    // Nothing recorded yet: nothing to vouch for.
    let r = lightsnap_in(&s, &["check", "--max-age", "1h", &mp]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stdout.starts_with("CRITICAL"), "{r:?}");
    assert!(r.stdout.contains("no run recorded"), "{r:?}");
    let r = lightsnap_in(&s, &["status"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("no snapshot run recorded"), "{r:?}");

    assert_eq!(snap_named(&s, "st-1", &[]).code, 0);
    let r = lightsnap_in(&s, &["status"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout
            .contains(&format!("{mp} (disk data-1): last success")),
        "{r:?}"
    );
    assert!(r.stdout.contains("snapshot st-1 (frozen)"), "{r:?}");

    for args in [
        vec!["check", "--max-age", "1h", &mp],
        vec!["check", "--max-age", "1h", "--disk", "data-1"],
        vec!["check", "--max-age", "1h"],
    ] {
        let r = lightsnap_in(&s, &args);
        assert_eq!(r.code, 0, "{args:?}: {r:?}");
        assert!(r.stdout.starts_with("OK: 1 target(s)"), "{args:?}: {r:?}");
    }
    // The run took longer than a millisecond (a freeze alone takes tens): stale at 1ms.
    let r = lightsnap_in(&s, &["check", "--max-age", "1ms", &mp]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stdout.starts_with("CRITICAL: 1 of 1 target(s)"), "{r:?}");
    assert!(r.stdout.contains(&format!("\n{mp}: last success")), "{r:?}");
    // A disk nothing was recorded for is stale too.
    let r = lightsnap_in(
        &s,
        &[
            "check",
            "--max-age",
            "1h",
            "--disk",
            "data-1",
            "--disk",
            "other-9",
        ],
    );
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stdout
            .contains("disk other-9: no run recorded for disk other-9"),
        "{r:?}"
    );

    // A failure: shown, the last success kept, the check still fresh on it.
    let failed = snap_named(&s, "st-1", &[]);
    assert_ne!(failed.code, 0);
    let r = lightsnap_in(&s, &["status"]);
    assert!(r.stdout.contains("snapshot st-1 (frozen)"), "{r:?}");
    assert!(
        r.stdout.contains(&format!("FAILED (exit {})", failed.code)),
        "{r:?}"
    );
    assert!(r.stdout.contains("1 failure(s) in a row"), "{r:?}");
    assert_eq!(lightsnap_in(&s, &["check", "--max-age", "1h", &mp]).code, 0);

    // JSON: the state, the age, and with --refresh what Lightsail has.
    let r = lightsnap_in(&s, &["status", "--output", "json", "--refresh"]);
    assert_eq!(r.code, 0, "{r:?}");
    let doc = json_doc(&r);
    assert_eq!(doc["schema"], 1);
    let t = &doc["targets"][0];
    assert_eq!(t["target"], mp.as_str());
    assert_eq!(t["last_success"]["snapshot"], "st-1");
    assert_eq!(t["last_attempt"]["result"], "failure");
    assert_eq!(t["consecutive_failures"], 1);
    assert!(
        t["last_success_age_seconds"].as_f64().unwrap() >= 0.0,
        "{doc}"
    );
    assert_eq!(t["lightsail_newest"]["name"], "st-1", "{doc}");
    let r = lightsnap_in(&s, &["check", "--max-age", "1ms", "--output", "json", &mp]);
    assert_eq!(r.code, 2, "{r:?}");
    let doc = json_doc(&r);
    assert_eq!(doc["ok"], false);
    assert_eq!(doc["targets"][0]["fresh"], false);
}

/// The metrics file read back by a Prometheus text-format parser: every sample line must
/// parse (the parser skips what it cannot read, so the count is compared) and be a gauge.
fn metrics(path: &std::path::Path) -> Vec<prometheus_parse::Sample> {
    let text = std::fs::read_to_string(path).unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let sample_lines = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .count();
    assert_eq!(
        scrape.samples.len(),
        sample_lines,
        "unparsed lines in:\n{text}"
    );
    for s in &scrape.samples {
        assert!(
            matches!(s.value, prometheus_parse::Value::Gauge(_)),
            "{}: not a gauge in:\n{text}",
            s.metric
        );
        assert!(
            scrape.docs.contains_key(&s.metric),
            "{} has no HELP",
            s.metric
        );
    }
    scrape.samples
}

fn gauge(samples: &[prometheus_parse::Sample], name: &str, target: &str) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.metric == name && s.labels.get("target") == Some(target))
        .map(|s| match s.value {
            prometheus_parse::Value::Gauge(v) => v,
            _ => unreachable!(),
        })
}

/// The pings the fake received: (method, path, body).
fn pings(fake: &fake_lightsail::Fake) -> Vec<(String, String, String)> {
    fake.calls()
        .into_iter()
        .filter_map(|c| {
            let rest = c.operation.strip_prefix("PING ")?.to_string();
            let (method, path) = rest.split_once(' ')?;
            let body = c.body["body"].as_str().unwrap_or_default().to_string();
            Some((method.to_string(), path.to_string(), body))
        })
        .collect()
}

/// After a success the metrics file and the success ping say so; after a failure the fail
/// ping carries the exit code and the metrics show the failure beside the last success.
#[test]
fn metrics_and_pings_follow_the_runs() {
    let Some(s) = OneDisk::new("metrics_and_pings_follow_the_runs") else {
        return;
    };
    let mp = s.fs.mount_point.display().to_string();
    let prom_dir = s.scratch.path().join("textfile");
    std::fs::create_dir_all(&prom_dir).unwrap();
    let prom = prom_dir.join("lightsnap.prom");
    write_conf(
        &s.scratch,
        "etc/lightsnap/config.toml",
        &format!(
            "metrics_file = \"{}\"\nping_url = \"{}/ping/abc-123\"\n",
            prom.display(),
            s.fake.endpoint()
        ),
    );
    let r = snap_named(&s, "m-1", &[]);
    assert_eq!(r.code, 0, "{r:?}");
    let m = metrics(&prom);
    assert_eq!(gauge(&m, "lightsnap_last_run_success", &mp), Some(1.0));
    assert_eq!(gauge(&m, "lightsnap_consecutive_failures", &mp), Some(0.0));
    let window = gauge(&m, "lightsnap_frozen_window_seconds", &mp).unwrap();
    let st = state_of(&s.scratch, &s.fs.mount_point);
    assert_eq!(
        window,
        st["last_success"]["window_ms"].as_f64().unwrap() / 1000.0
    );
    let success_at = gauge(&m, "lightsnap_last_success_timestamp_seconds", &mp).unwrap();
    assert_eq!(success_at, st["last_success"]["time"].as_f64().unwrap());
    assert_eq!(
        gauge(&m, "lightsnap_last_attempt_timestamp_seconds", &mp),
        Some(success_at)
    );
    let sample = m
        .iter()
        .find(|x| x.metric == "lightsnap_last_run_success")
        .unwrap();
    assert_eq!(sample.labels.get("disk"), Some("data-1"));
    assert_eq!(sample.labels.get("kind"), Some("disk"));
    assert_eq!(
        pings(&s.fake),
        vec![
            ("GET".into(), "/ping/abc-123/start".into(), String::new()),
            ("GET".into(), "/ping/abc-123".into(), String::new()),
        ]
    );
    // No temporary file left in node_exporter's directory.
    assert_eq!(std::fs::read_dir(&prom_dir).unwrap().count(), 1);

    let before = pings(&s.fake).len();
    let r = snap_named(&s, "m-1", &[]);
    assert_ne!(r.code, 0, "{r:?}");
    let m = metrics(&prom);
    assert_eq!(gauge(&m, "lightsnap_last_run_success", &mp), Some(0.0));
    assert_eq!(gauge(&m, "lightsnap_consecutive_failures", &mp), Some(1.0));
    assert_eq!(
        gauge(&m, "lightsnap_last_success_timestamp_seconds", &mp),
        Some(success_at)
    );
    assert!(gauge(&m, "lightsnap_last_attempt_timestamp_seconds", &mp).unwrap() > success_at);
    let p = pings(&s.fake)[before..].to_vec();
    assert_eq!(p.len(), 2, "{p:?}");
    assert_eq!(p[0].1, "/ping/abc-123/start");
    assert_eq!(
        (p[1].0.as_str(), p[1].1.as_str()),
        ("POST", "/ping/abc-123/fail")
    );
    assert!(p[1].2.contains(&format!("exit {}", r.code)), "{p:?}");
}

/// A ping that cannot be delivered is a warning: the run succeeds.
#[test]
fn an_unreachable_ping_url_never_fails_a_run() {
    let Some(s) = OneDisk::new("an_unreachable_ping_url_never_fails_a_run") else {
        return;
    };
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    write_conf(
        &s.scratch,
        "etc/lightsnap/config.toml",
        &format!("ping_url = \"http://127.0.0.1:{port}/ping/secret-uuid?rid=secret-rid\"\n"),
    );
    let r = snap_named(&s, "p-1", &["-vv"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stderr.contains("ping") && r.stderr.contains("http://127.0.0.1"),
        "the failed ping is not reported with its host: {r:?}"
    );
    // A ping URL is a secret: only its scheme and host are ever logged.
    assert!(
        !r.stderr.contains("secret-"),
        "the ping URL was logged whole: {r:?}"
    );
    assert_eq!(create_calls(&s.fake).len(), 1);
}

/// Push URLs with a query string (healthchecks' `?rid=`, Uptime Kuma's `?status=up`,
/// Cronitor's `?state=`) are pinged with it, the suffix on the path and the query last.
#[test]
fn a_ping_url_with_a_query_string_keeps_it() {
    let Some(s) = OneDisk::new("a_ping_url_with_a_query_string_keeps_it") else {
        return;
    };
    write_conf(
        &s.scratch,
        "etc/lightsnap/config.toml",
        &format!(
            "ping_url = \"{}/ping/q?rid=42&create=1\"\n",
            s.fake.endpoint()
        ),
    );
    let r = snap_named(&s, "q-1", &[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(!r.stderr.contains("ping"), "{r:?}");
    let p: Vec<String> = pings(&s.fake)
        .into_iter()
        .map(|(m, p, _)| format!("{m} {p}"))
        .collect();
    assert_eq!(
        p,
        vec![
            "GET /ping/q/start?rid=42&create=1",
            "GET /ping/q?rid=42&create=1"
        ]
    );
}

/// A metrics_file whose directory does not exist is refused before anything is frozen, and a
/// metrics_file or ping_url that cannot be right is refused as the configuration is read.
#[test]
fn bad_monitoring_settings_are_refused_before_freezing() {
    let Some(s) = OneDisk::new("bad_monitoring_settings_are_refused_before_freezing") else {
        return;
    };
    let missing = s.scratch.path().join("no-such-dir");
    for (conf, names) in [
        (
            format!("metrics_file = \"{}/x.prom\"\n", missing.display()),
            missing.display().to_string(),
        ),
        (
            "metrics_file = \"/tmp/x.txt\"\n".to_string(),
            ".prom".to_string(),
        ),
        (
            "ping_url = \"hc-ping.com/abc\"\n".to_string(),
            "http".to_string(),
        ),
    ] {
        write_conf(&s.scratch, "etc/lightsnap/config.toml", &conf);
        let r = snap_named(&s, "never", &[]);
        assert_eq!(r.code, 2, "{conf}: {r:?}");
        assert!(r.stderr.contains(&names), "{conf}: {r:?}");
        s.assert_untouched(&r);
    }
}

/// Pings over https:// (as to hc-ping.com), the server's certificate checked against the
/// system's trust store (here the fake's CA, through SSL_CERT_FILE as a private CA would be).
#[test]
fn pings_go_over_https() {
    let Some(s) = OneDisk::new("pings_go_over_https") else {
        return;
    };
    let tls_dir = Scratch::new();
    let pinged = fake_tls(&tls_dir, seed(&[], None));
    write_conf(
        &s.scratch,
        "etc/lightsnap/config.toml",
        &format!("ping_url = \"{}/ping/tls\"\n", pinged.endpoint()),
    );
    assert!(pinged.endpoint().starts_with("https://"));
    let r = finish(
        configured_lightsnap(&s.scratch, &s.fake)
            .env("SSL_CERT_FILE", pinged.ca_file().unwrap())
            .args(["freeze-and-snap", "--snapshot-name", "tls-1"])
            .arg(&s.fs.mount_point),
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(!r.stderr.contains("ping"), "{r:?}");
    let p: Vec<String> = pings(&pinged)
        .into_iter()
        .map(|(m, p, _)| format!("{m} {p}"))
        .collect();
    assert_eq!(p, vec!["GET /ping/tls/start", "GET /ping/tls"]);
}

/// A CONNECT proxy on 127.0.0.1 that tunnels each connection where it is asked and records
/// each request line.
fn connect_proxy() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let recorded = seen.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { continue };
            let recorded = recorded.clone();
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if client.read(&mut byte).unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let line = String::from_utf8_lossy(&head)
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_string();
                recorded.lock().unwrap().push(line.clone());
                let target = line.split_whitespace().nth(1).unwrap_or_default();
                let Ok(mut upstream) = TcpStream::connect(target) else {
                    return;
                };
                let _ = client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
                let (mut c2, mut u2) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut u2, &mut c2);
                    let _ = c2.shutdown(Shutdown::Write);
                });
                let _ = std::io::copy(&mut client, &mut upstream);
                let _ = upstream.shutdown(Shutdown::Write);
            });
        }
    });
    (addr, seen)
}

/// Pings go through the proxy `HTTPS_PROXY` names, as every HTTP tool's do.
#[test]
fn pings_go_through_https_proxy() {
    let Some(s) = OneDisk::new("pings_go_through_https_proxy") else {
        return;
    };
    let tls_dir = Scratch::new();
    let pinged = fake_tls(&tls_dir, seed(&[], None));
    let (proxy, seen) = connect_proxy();
    write_conf(
        &s.scratch,
        "etc/lightsnap/config.toml",
        &format!("ping_url = \"{}/ping/proxied\"\n", pinged.endpoint()),
    );
    let r = finish(
        configured_lightsnap(&s.scratch, &s.fake)
            .env("SSL_CERT_FILE", pinged.ca_file().unwrap())
            .env("HTTPS_PROXY", format!("http://{proxy}"))
            .args(["freeze-and-snap", "--snapshot-name", "px-1"])
            .arg(&s.fs.mount_point),
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(!r.stderr.contains("ping"), "{r:?}");
    let p: Vec<String> = pings(&pinged)
        .into_iter()
        .map(|(m, p, _)| format!("{m} {p}"))
        .collect();
    assert_eq!(p, vec!["GET /ping/proxied/start", "GET /ping/proxied"]);
    let host = pinged.endpoint().trim_start_matches("https://").to_string();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![format!("CONNECT {host} HTTP/1.1"); 2],
        "both pings through the proxy"
    );
}

/// A stop request (SIGTERM) during the last ping ends it at once: the process does not wait
/// out the ping's time limit, and the run's outcome (a snapshot taken) stands.
#[test]
fn a_stop_request_ends_the_last_ping() {
    let Some(s) = OneDisk::new("a_stop_request_ends_the_last_ping") else {
        return;
    };
    // A ping service that takes each connection and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in listener.incoming().flatten() {
            held.push(c);
            if tx.send(held.len()).is_err() {
                return;
            }
        }
    });
    write_conf(
        &s.scratch,
        "etc/lightsnap/config.toml",
        &format!("ping_url = \"http://127.0.0.1:{port}/ping/silent\"\n"),
    );
    let child = configured_lightsnap(&s.scratch, &s.fake)
        .args(["freeze-and-snap", "--snapshot-name", "stop-1"])
        .arg(&s.fs.mount_point)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The start ping (given up after its limit), then the last one.
    let limit = std::time::Duration::from_secs(30);
    assert_eq!(rx.recv_timeout(limit).unwrap(), 1);
    assert_eq!(rx.recv_timeout(limit).unwrap(), 2, "no last ping");
    let stopped_at = std::time::Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let took = stopped_at.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        took < std::time::Duration::from_secs(3),
        "the last ping outlived the stop request by {took:?}: {stderr}"
    );
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("given up"), "{stderr}");
    assert_eq!(create_calls(&s.fake).len(), 1);
}

// ---------------------------------------------------------------------------------------
// Golden files: the --output json schema of status and check, as tests/operator.rs pins the
// others (same directory, same UPDATE_GOLDEN=1)
// ---------------------------------------------------------------------------------------

#[test]
fn status_and_check_json_match_their_golden_files() {
    let Some(s) = OneDisk::new("status_and_check_json_match_their_golden_files") else {
        return;
    };
    assert_eq!(snap_named(&s, "g-1", &[]).code, 0);
    assert_ne!(snap_named(&s, "g-1", &[]).code, 0);
    let r = lightsnap_in(&s, &["status", "--output", "json", "--refresh"]);
    assert_eq!(r.code, 0, "{r:?}");
    golden("status", &json_doc(&r), &s.scratch);
    let mp = s.fs.mount_point.display().to_string();
    let r = lightsnap_in(
        &s,
        &[
            "check",
            "--max-age",
            "1h",
            "--output",
            "json",
            &mp,
            "--disk",
            "nothing-1",
        ],
    );
    assert_eq!(r.code, 2, "{r:?}");
    golden("check", &json_doc(&r), &s.scratch);
}

/// `run` (the timer) records each configured path, and `check` with no target checks them.
#[test]
fn run_records_each_configured_path_and_check_defaults_to_them() {
    let Some(s) = OneDisk::new("run_records_each_configured_path_and_check_defaults_to_them")
    else {
        return;
    };
    let mp = s.fs.mount_point.display().to_string();
    write_conf(
        &s.scratch,
        "etc/lightsnap/config.toml",
        &format!("[[snapshot]]\npath = \"{mp}\"\ndisk = \"data-1\"\n"),
    );
    // Configured but never run: CRITICAL, not OK.
    let r = lightsnap_in(&s, &["check", "--max-age", "1d"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stdout.contains(&format!("{mp}: no run recorded")),
        "{r:?}"
    );
    let r = lightsnap_in(
        &s,
        &[
            "run",
            "--trigger",
            "timer",
            "--snapshot-name",
            "timer-1",
            "-q",
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout, "", "{r:?}");
    let st = state_of(&s.scratch, &s.fs.mount_point);
    assert_eq!(st["last_success"]["snapshot"], "timer-1", "{st}");
    let r = lightsnap_in(&s, &["check", "--max-age", "1d"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.starts_with("OK: 1 target(s)"), "{r:?}");
}

/// On the journal, each snapshot is an entry with its MESSAGE_ID and fields (what
/// `journalctl MESSAGE_ID=...` finds), and a run's success one more — without -v too.
#[test]
fn each_snapshot_is_a_journal_entry_with_its_fields() {
    let Some(s) = OneDisk::new("each_snapshot_is_a_journal_entry_with_its_fields") else {
        return;
    };
    let socket_path = s.scratch.path().join("journal.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    let stderr_path = s.scratch.path().join("stderr");
    let stderr = std::fs::File::create(&stderr_path).unwrap();
    let meta = stderr.metadata().unwrap();
    let r = finish(
        configured_lightsnap(&s.scratch, &s.fake)
            .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
            .env("LIGHTSNAP_JOURNAL_SOCKET", &socket_path)
            .args(["freeze-and-snap", "--snapshot-name", "j-1"])
            .arg(&s.fs.mount_point)
            .stderr(stderr),
    );
    assert_eq!(r.code, 0, "{r:?}");
    let entries = journal_entries(&socket);
    let with = |id: &str| -> Vec<&Vec<String>> {
        entries
            .iter()
            .filter(|e| e.contains(&format!("MESSAGE_ID={id}")))
            .collect()
    };
    let snaps = with(lightsnap::journal::MESSAGE_SNAPSHOT);
    assert_eq!(snaps.len(), 1, "{entries:?}");
    let e = snaps[0];
    for field in [
        "LIGHTSNAP_SNAPSHOT=j-1",
        "LIGHTSNAP_DISK=data-1",
        "PRIORITY=6",
    ] {
        assert!(e.contains(&field.to_string()), "{field} missing: {e:?}");
    }
    let window = e
        .iter()
        .find_map(|f| f.strip_prefix("LIGHTSNAP_WINDOW_MS="))
        .unwrap();
    let st = state_of(&s.scratch, &s.fs.mount_point);
    assert_eq!(
        window.parse::<f64>().unwrap(),
        st["last_success"]["window_ms"].as_f64().unwrap()
    );
    assert_eq!(
        with(lightsnap::journal::MESSAGE_SUCCEEDED).len(),
        1,
        "{entries:?}"
    );
    assert!(with(lightsnap::journal::MESSAGE_FAILED).is_empty());
    // Every entry has a priority and lightsnap's identifier; nothing went to stderr.
    assert!(entries
        .iter()
        .all(|e| e.iter().any(|f| f.starts_with("PRIORITY="))
            && e.contains(&"SYSLOG_IDENTIFIER=lightsnap".to_string())));
    assert_eq!(std::fs::read_to_string(&stderr_path).unwrap(), "");
}
