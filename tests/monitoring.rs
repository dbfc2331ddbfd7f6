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
