//! Bad input, every case refused cleanly and before anything is frozen (issue 18).
//!
//! One table: each row is a command line (paths, names, tags, durations, flags, configuration
//! files, hooks, credentials, endpoints, region) with its expected exit code and a fragment of
//! its message. For every row the runner also proves that nothing was frozen and no snapshot
//! requested: the test filesystem is not frozen (root rows), the fake Lightsail saw no
//! Create*Snapshot call, and the watchdog (the only process that freezes) never started —
//! lightsnap logs "watchdog started" at debug, and the rows run with that log switched on;
//! the control run at the end shows the line does appear when a run gets that far. No
//! output may carry a Rust debug structure or an SDK type name.
//!
//! Rows that need no root (nothing on the command line needs a filesystem the test made, no
//! root-owned configuration) run everywhere; the others use the harness's one-disk set-up and
//! skip, saying why, when not root (CI is root: there they must run). Each new option gets
//! its bad values here.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::*;
use fake_lightsail::seed::SeedSnapshot;

/// What no message may contain: debug structures and the SDK's type names.
const FORBIDDEN: &[&str] = &[
    "{ ",
    "Some(",
    "SdkError",
    "DispatchFailure",
    "ConnectorError",
    "ConstructionFailure",
    "ResponseError",
    "ServiceError",
    "TimeoutError",
    "CredentialsNotLoaded",
    "CredentialsError",
    "ProviderChainError",
    "ErrorMetadata",
    "InterceptorError",
    "hyper_util",
    "aws_smithy",
    "aws_sdk",
];

/// The debug line that says the watchdog was started.
const WATCHDOG_STARTED: &str = "watchdog started";

/// Logging for every row: lightsnap's warnings, and the watchdog's start.
const RUST_LOG: &str = "lightsnap=warn,lightsnap::watchdog=debug";

/// One bad input.
#[derive(Clone)]
struct Row {
    what: &'static str,
    args: Vec<&'static str>,
    env: Vec<(&'static str, Option<&'static str>)>,
    /// Files under the row's own configuration root: path, text, mode.
    files: Vec<(&'static str, String, u32)>,
    code: i32,
    says: &'static str,
}

fn row(what: &'static str, args: &[&'static str], code: i32, says: &'static str) -> Row {
    Row {
        what,
        args: args.to_vec(),
        env: Vec::new(),
        files: Vec::new(),
        code,
        says,
    }
}

impl Row {
    fn env(mut self, key: &'static str, value: &'static str) -> Self {
        self.env.push((key, Some(value)));
        self
    }

    fn unset(mut self, key: &'static str) -> Self {
        self.env.push((key, None));
        self
    }

    fn file(mut self, rel: &'static str, text: impl Into<String>, mode: u32) -> Self {
        self.files.push((rel, text.into(), mode));
        self
    }

    fn config(self, text: impl Into<String>) -> Self {
        self.file("etc/lightsnap/config.toml", text, 0o644)
    }

    fn hook(self, name: &'static str, body: &str, mode: u32) -> Self {
        let rel: &'static str = Box::leak(format!("etc/lightsnap/hooks.d/{name}").into_boxed_str());
        self.file(rel, format!("#!/bin/sh\n{body}\n"), mode)
    }
}

/// Where a row runs: the scratch directory, the fake, and (root rows) the test filesystem.
struct Place<'a> {
    scratch: &'a Scratch,
    fake: &'a Fake,
    fs: Option<&'a LoopFs>,
    /// An endpoint nothing listens on.
    closed: String,
}

/// A local port nothing listens on (bound, then released).
fn closed_endpoint() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

fn expand(text: &str, place: &Place, tls: &str) -> String {
    let mut text = text
        .replace("{scratch}", &place.scratch.path().display().to_string())
        .replace("{closed}", &place.closed)
        .replace("{tls}", tls);
    if let Some(fs) = place.fs {
        text = text.replace("{data}", &fs.mount_point.display().to_string());
    }
    text
}

fn snapshot_calls(fake: &Fake) -> usize {
    fake.calls()
        .iter()
        .filter(|c| c.operation.starts_with("Create") && c.operation.ends_with("Snapshot"))
        .count()
}

/// Runs every row of `rows` in `place`, checking each; returns how many ran.
fn run_table(rows: &[Row], place: &Place) -> usize {
    let tls = place.fake.endpoint().replacen("http://", "https://", 1);
    let mut ran = 0;
    let mut failures = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let conf = place.scratch.path().join(format!("conf-{i}"));
        std::fs::create_dir_all(&conf).unwrap();
        for (rel, text, mode) in &row.files {
            let path = conf.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, expand(text, place, &tls)).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode)).unwrap();
        }
        let mut cmd = lightsnap(place.scratch, place.fake);
        cmd.env("LIGHTSNAP_CONFIG_ROOT", &conf)
            .env("RUST_LOG", RUST_LOG);
        for (key, value) in &row.env {
            match value {
                Some(v) => cmd.env(key, expand(v, place, &tls)),
                None => cmd.env_remove(key),
            };
        }
        cmd.args(row.args.iter().map(|a| expand(a, place, &tls)));
        let before = snapshot_calls(place.fake);
        let r = finish(&mut cmd);
        let said = format!("{}{}", r.stdout, r.stderr);
        let mut wrong: Vec<String> = Vec::new();
        if r.code != row.code {
            wrong.push(format!("exit {} instead of {}", r.code, row.code));
        }
        if !r.stderr.contains(row.says) {
            wrong.push(format!("{:?} not in the message", row.says));
        }
        wrong.extend(
            FORBIDDEN
                .iter()
                .filter(|bad| said.contains(*bad))
                .map(|bad| format!("{bad:?} in the output")),
        );
        if said
            .lines()
            .filter(|l| l.starts_with("lightsnap: error:"))
            .count()
            > 1
        {
            wrong.push("the error is said more than once".into());
        }
        if r.stderr.contains(WATCHDOG_STARTED) {
            wrong.push("the watchdog was started".into());
        }
        if snapshot_calls(place.fake) != before {
            wrong.push("a snapshot was requested".into());
        }
        if place.fs.is_some_and(|fs| fs.is_frozen()) {
            wrong.push("left frozen".into());
        }
        if wrong.is_empty() {
            let line = r.stderr.lines().find(|l| l.contains("error")).unwrap_or("");
            eprintln!("refused cleanly: {} (exit {}): {line}", row.what, r.code);
        } else {
            failures.push(format!("{}: {}\n{r:?}", row.what, wrong.join("; ")));
        }
        ran += 1;
    }
    // Every failing row at once: a table is read as a whole.
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    ran
}

/// A hundred thousand hours: the "years" of freeze timeout.
const YEARS: &str = "100000h";

/// Rows that need neither root nor a filesystem of the test's own.
fn unprivileged_rows() -> Vec<Row> {
    let long_name: &'static str = Box::leak("a".repeat(256).into_boxed_str());
    let long_key: &'static str = Box::leak(format!("{}=v", "k".repeat(129)).into_boxed_str());
    let mut many_tags: Vec<&'static str> = vec!["freeze-and-snap", "{scratch}/x"];
    for i in 0..51 {
        many_tags.push("--tag");
        many_tags.push(Box::leak(format!("k{i}=v").into_boxed_str()));
    }
    let fs = |args: &[&'static str]| {
        let mut all = vec!["freeze-and-snap", "{scratch}/x"];
        all.extend_from_slice(args);
        all
    };
    vec![
        // Paths.
        row(
            "no such path",
            &["freeze-and-snap", "{scratch}/nowhere"],
            3,
            "nowhere",
        ),
        row(
            "relative path that is not there",
            &["freeze-and-snap", "no/such/dir"],
            3,
            "no/such/dir",
        ),
        row(
            "empty path",
            &["freeze-and-snap", ""],
            2,
            "a value is required",
        ),
        row("tmpfs", &["freeze-and-snap", "/dev/shm"], 4, "tmpfs"),
        row("proc", &["freeze-and-snap", "/proc"], 4, "proc"),
        row(
            "devtmpfs node",
            &["freeze-and-snap", "/dev/null"],
            4,
            "devtmpfs",
        ),
        // Names, in every command that takes them.
        row(
            "snapshot name with a space",
            &fs(&["--snapshot-name", "a b"]),
            2,
            "snapshot name \"a b\" is not a valid Lightsail name",
        ),
        row(
            "snapshot name starting with -",
            &fs(&["--snapshot-name=-bad-"]),
            2,
            "is not a valid Lightsail name",
        ),
        row(
            "one-letter snapshot name",
            &fs(&["--snapshot-name", "x"]),
            2,
            "use 2 to 255",
        ),
        row(
            "snapshot name of 256",
            &fs(&["--snapshot-name", long_name]),
            2,
            "is not a valid Lightsail name",
        ),
        row(
            "disk name with a space",
            &fs(&["--disk-name", "a b"]),
            2,
            "disk name \"a b\"",
        ),
        row(
            "disk name not ASCII",
            &fs(&["--disk-name", "é1"]),
            2,
            "disk name \"é1\"",
        ),
        row(
            "plan: disk name with a slash",
            &["plan", "{scratch}/x", "--disk-name", "a/b"],
            2,
            "disk name \"a/b\"",
        ),
        row(
            "list --disk with a space",
            &["list", "--disk", "a b"],
            2,
            "disk name \"a b\" is not a valid Lightsail name",
        ),
        row(
            "prune --disk with a space",
            &["prune", "--keep", "1", "--disk", "a b"],
            2,
            "disk name \"a b\" is not a valid Lightsail name",
        ),
        row(
            "snap-instance: snapshot name",
            &["snap-instance", "--snapshot-name", "a b"],
            2,
            "snapshot name \"a b\"",
        ),
        // Tags.
        row(
            "tag without a key",
            &fs(&["--tag", "=v"]),
            2,
            "the key is empty",
        ),
        row(
            "tag with a ;",
            &fs(&["--tag", "k=a;b"]),
            2,
            "';' is not allowed",
        ),
        row(
            "lightsnap's own tag",
            &fs(&["--tag", "lightsnap:consistency=frozen"]),
            2,
            "lightsnap's own",
        ),
        row(
            "tag key of 129",
            &fs(&["--tag", long_key]),
            2,
            "longer than 128",
        ),
        row(
            "tag given twice",
            &fs(&["--tag", "k=v", "--tag", "k=w"]),
            2,
            "given twice",
        ),
        row("51 tags", &many_tags, 2, "at most 50 tags"),
        // Durations.
        row(
            "freeze timeout 0",
            &fs(&["--freeze-timeout", "0s"]),
            2,
            "more than 0",
        ),
        row(
            "freeze timeout without a unit",
            &fs(&["--freeze-timeout", "10"]),
            2,
            "write a duration",
        ),
        row(
            "freeze timeout of years",
            &fs(&["--freeze-timeout", YEARS]),
            2,
            "more than the maximum, 10m",
        ),
        row(
            "negative freeze timeout",
            &fs(&["--freeze-timeout=-1s"]),
            2,
            "write a duration",
        ),
        row(
            "wait timeout not a duration",
            &fs(&["--wait", "--wait-timeout", "soon"]),
            2,
            "write a duration",
        ),
        row(
            "prune --older-than not a duration",
            &["prune", "--older-than", "1x"],
            2,
            "write a duration",
        ),
        // Flags.
        row(
            "unknown method",
            &fs(&["--method", "sideways"]),
            2,
            "sideways",
        ),
        row("unknown trigger", &fs(&["--trigger", "cron"]), 2, "cron"),
        row(
            "--wait-timeout without --wait",
            &fs(&["--wait-timeout", "1m"]),
            2,
            "--wait",
        ),
        row("unknown flag", &fs(&["--frobnicate"]), 2, "--frobnicate"),
        row("no path", &["freeze-and-snap"], 2, "PATH"),
        row("prune without a rule", &["prune"], 2, "--keep"),
        row(
            "unknown output format",
            &["--output", "yaml", "list"],
            2,
            "yaml",
        ),
        row("negative --keep", &["prune", "--keep=-1"], 2, "-1"),
        // Credentials (list needs no root).
        row("no credentials", &["list"], 11, "no AWS credentials found")
            .unset("AWS_ACCESS_KEY_ID")
            .unset("AWS_SECRET_ACCESS_KEY"),
        row(
            "no credentials, as JSON",
            &["--output", "json", "list"],
            11,
            "no AWS credentials found",
        )
        .unset("AWS_ACCESS_KEY_ID")
        .unset("AWS_SECRET_ACCESS_KEY"),
        row(
            "endpoint refusing connections, as JSON",
            &["--output", "json", "list"],
            12,
            "refused the connection",
        )
        .env("AWS_ENDPOINT_URL_LIGHTSAIL", "{closed}"),
        row(
            "a profile that does not exist",
            &["list"],
            11,
            "aws configure",
        )
        .unset("AWS_ACCESS_KEY_ID")
        .unset("AWS_SECRET_ACCESS_KEY")
        .env("AWS_PROFILE", "nosuch"),
        row(
            "a wrong secret key",
            &["list"],
            11,
            "the credentials were refused",
        )
        .env("AWS_SECRET_ACCESS_KEY", "not-the-secret"),
        // Endpoints.
        row(
            "endpoint refusing connections",
            &["list"],
            12,
            "refused the connection",
        )
        .env("AWS_ENDPOINT_URL_LIGHTSAIL", "{closed}"),
        row(
            "endpoint that does not resolve",
            &["list"],
            12,
            "does not resolve in DNS",
        )
        .env("AWS_ENDPOINT_URL_LIGHTSAIL", "http://lightsail.invalid"),
        row(
            "endpoint without TLS called with https",
            &["list"],
            12,
            "TLS handshake",
        )
        .env("AWS_ENDPOINT_URL_LIGHTSAIL", "{tls}"),
        row("endpoint that is not a URL", &["list"], 2, "is not a URL")
            .env("AWS_ENDPOINT_URL_LIGHTSAIL", "lightsail.local"),
        // Region.
        row(
            "region with spaces",
            &["list"],
            2,
            "is not an AWS region name",
        )
        .env("AWS_REGION", "us east 1"),
        row(
            "empty --region",
            &["list", "--region", ""],
            2,
            "is not an AWS region name",
        ),
        row("no region anywhere", &["list"], 2, "no AWS region found")
            .unset("AWS_REGION")
            .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", "{closed}"),
    ]
}

/// Rows on the test's own filesystem, or with root-owned configuration files and hooks.
fn root_rows() -> Vec<Row> {
    vec![
        // Durations, names and tags on a real filesystem: refused before anything else.
        row(
            "freeze timeout of years, on a real filesystem",
            &["freeze-and-snap", "{data}", "--freeze-timeout", YEARS],
            2,
            "10m",
        ),
        row(
            "snapshot name with a space, on a real filesystem",
            &["freeze-and-snap", "{data}", "--snapshot-name", "a b"],
            2,
            "not a valid Lightsail name",
        ),
        row(
            "plan with a bad tag",
            &["plan", "{data}", "--tag", "k=a;b"],
            2,
            "is not allowed",
        ),
        // This instance's system disk, or another instance's disk, named for the data
        // filesystem: exit 8, in tests/field.rs (its seed has both).
        row(
            "--disk-name of no disk at all",
            &["freeze-and-snap", "{data}", "--disk-name", "root-disk"],
            3,
            "no Lightsail disk named root-disk",
        ),
        // Configuration files.
        row(
            "unknown configuration key",
            &["freeze-and-snap", "{data}"],
            2,
            "freez_timeout",
        )
        .config("freez_timeout = \"1s\"\n"),
        row(
            "configured freeze_timeout of years",
            &["freeze-and-snap", "{data}"],
            2,
            "more than the maximum, 10m",
        )
        .config(format!("freeze_timeout = \"{YEARS}\"\n")),
        row(
            "configured freeze_timeout 0",
            &["freeze-and-snap", "{data}"],
            2,
            "more than 0",
        )
        .config("freeze_timeout = \"0s\"\n"),
        row(
            "configuration that is not TOML",
            &["freeze-and-snap", "{data}"],
            2,
            "config.toml",
        )
        .config("freeze_timeout = \n"),
        row(
            "configuration writable by others",
            &["freeze-and-snap", "{data}"],
            7,
            "config.toml",
        )
        .file("etc/lightsnap/config.toml", "", 0o666),
        row("configured disk name", &["run"], 2, "-bad-")
            .config("[[snapshot]]\npath = \"{data}\"\ndisk = \"-bad-\"\n"),
        row(
            "configured tag key",
            &["freeze-and-snap", "{data}"],
            2,
            "bad;key",
        )
        .config("[tags]\n\"bad;key\" = \"v\"\n"),
        row(
            "run with nothing configured",
            &["run"],
            2,
            "names nothing to snapshot",
        ),
        row(
            "configured region with spaces",
            &["freeze-and-snap", "{data}"],
            2,
            "is not an AWS region name",
        )
        .config("region = \"us east 1\"\n"),
        row(
            "configured retention not a duration",
            &["prune"],
            2,
            "older_than",
        )
        .config("[retention]\nolder_than = \"ages\"\n"),
        // Hooks.
        row(
            "hook not executable",
            &["freeze-and-snap", "{data}", "--disk-name", "data-1"],
            2,
            "10-x",
        )
        .hook("10-x", "exit 0", 0o644),
        row(
            "hook writable by others",
            &["freeze-and-snap", "{data}", "--disk-name", "data-1"],
            7,
            "10-x",
        )
        .hook("10-x", "exit 0", 0o777),
        row(
            "failing pre-freeze hook",
            &["freeze-and-snap", "{data}", "--disk-name", "data-1"],
            16,
            "nothing was frozen",
        )
        .hook("10-x", "[ \"$1\" = pre-freeze ] && exit 3; exit 0", 0o755),
        row(
            "pre-freeze hook past its timeout",
            &["freeze-and-snap", "{data}", "--disk-name", "data-1"],
            16,
            "10-x",
        )
        .config("hook_timeout = \"300ms\"\n")
        .hook(
            "10-x",
            "[ \"$1\" = pre-freeze ] && exec sleep 30; exit 0",
            0o755,
        ),
        // Credentials, endpoints and metadata, where a freeze would follow.
        row(
            "no credentials, freeze-and-snap",
            &["freeze-and-snap", "{data}"],
            11,
            "no AWS credentials found",
        )
        .unset("AWS_ACCESS_KEY_ID")
        .unset("AWS_SECRET_ACCESS_KEY"),
        row(
            "a wrong secret key, freeze-and-snap",
            &["freeze-and-snap", "{data}", "--disk-name", "data-1"],
            11,
            "the credentials were refused",
        )
        .env("AWS_SECRET_ACCESS_KEY", "not-the-secret"),
        row(
            "endpoint refusing connections, freeze-and-snap",
            &["freeze-and-snap", "{data}", "--disk-name", "data-1"],
            12,
            "refused the connection",
        )
        .env("AWS_ENDPOINT_URL_LIGHTSAIL", "{closed}"),
        row(
            "TLS failure, freeze-and-snap",
            &["freeze-and-snap", "{data}", "--disk-name", "data-1"],
            12,
            "TLS handshake",
        )
        .env("AWS_ENDPOINT_URL_LIGHTSAIL", "{tls}"),
        row(
            "no metadata service and no --disk-name",
            &["freeze-and-snap", "{data}"],
            3,
            "instance metadata service",
        )
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", "{closed}"),
        row(
            "no region, freeze-and-snap",
            &["freeze-and-snap", "{data}", "--disk-name", "data-1"],
            2,
            "no AWS region found",
        )
        .unset("AWS_REGION")
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", "{closed}"),
        row(
            "unknown disk name",
            &["freeze-and-snap", "{data}", "--disk-name", "data-9"],
            3,
            "data-9",
        ),
    ]
}

#[test]
fn bad_input_without_root_is_refused_cleanly() {
    let scratch = Scratch::new();
    let fake = fake(&scratch, seed(&[("data-1", Path::new("/dev/xvdf"))], None));
    let place = Place {
        scratch: &scratch,
        fake: &fake,
        fs: None,
        closed: closed_endpoint(),
    };
    let rows = unprivileged_rows();
    assert_eq!(run_table(&rows, &place), rows.len());
    assert_eq!(snapshot_calls(&fake), 0);
}

#[test]
fn bad_input_on_a_real_filesystem_is_refused_before_anything_is_frozen() {
    let Some(s) =
        OneDisk::new("bad_input_on_a_real_filesystem_is_refused_before_anything_is_frozen")
    else {
        return;
    };
    let place = Place {
        scratch: &s.scratch,
        fake: &s.fake,
        fs: Some(&s.fs),
        closed: closed_endpoint(),
    };
    let rows = root_rows();
    assert_eq!(run_table(&rows, &place), rows.len());
    s.assert_untouched(&finish(&mut Command::new("true")));

    // The control: the same set-up, one good run with the same logging, says the watchdog
    // started (so its absence above means something) — and takes tags without a value, as
    // KEY and as KEY=.
    let mut cmd = lightsnap(&s.scratch, &s.fake);
    cmd.env(
        "LIGHTSNAP_CONFIG_ROOT",
        s.scratch.path().join("conf-control"),
    )
    .env("RUST_LOG", RUST_LOG)
    .args([
        "freeze-and-snap",
        "--tag",
        "solo",
        "--tag",
        "empty=",
        "--tag",
        "k=v",
    ])
    .arg(&s.fs.mount_point);
    let r = finish(&mut cmd);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains(WATCHDOG_STARTED), "{r:?}");
    assert!(!s.fs.is_frozen(), "{r:?}");
    let calls = create_calls(&s.fake);
    assert_eq!(calls.len(), 1, "{r:?}");
    let tags: Vec<(String, String)> = calls[0].body["tags"]
        .as_array()
        .expect("tags sent")
        .iter()
        .map(|t| {
            (
                t["key"].as_str().unwrap().to_string(),
                t["value"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    for (key, value) in [("solo", ""), ("empty", ""), ("k", "v")] {
        assert!(
            tags.contains(&(key.to_string(), value.to_string())),
            "{key}={value} not in {tags:?}"
        );
    }
}

/// An endpoint that takes the connection and never answers: the one network failure that
/// takes the SDK's whole operation timeout (20 s) to show, so a test of its own, in parallel
/// with the table.
#[test]
fn an_endpoint_that_never_answers_is_a_timeout_naming_it() {
    let scratch = Scratch::new();
    let fake = fake(&scratch, seed(&[("data-1", Path::new("/dev/xvdf"))], None));
    // Connections complete in the kernel's backlog; nothing ever reads or answers them.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    let mut cmd = lightsnap(&scratch, &fake);
    cmd.env("LIGHTSNAP_CONFIG_ROOT", scratch.path().join("conf"))
        .env("AWS_ENDPOINT_URL_LIGHTSAIL", &endpoint)
        .arg("list");
    let r = finish(&mut cmd);
    assert_eq!(r.code, 12, "{r:?}");
    assert!(r.stderr.contains("did not answer in time"), "{r:?}");
    assert!(r.stderr.contains(&endpoint), "{r:?}");
    for bad in FORBIDDEN {
        assert!(!r.stderr.contains(bad), "{bad:?}: {r:?}");
    }
    drop(silent);
}

/// A completed lightsnap snapshot of `disk`, `age` old.
fn own_snapshot(name: &str, disk: &str, age: &str) -> SeedSnapshot {
    SeedSnapshot {
        name: name.into(),
        disk: disk.into(),
        age: age.into(),
        auto: false,
        state: "completed".into(),
        tags: [
            ("lightsnap:consistency".to_string(), "frozen".to_string()),
            ("lightsnap:owner".to_string(), "us-east-1/web-1".to_string()),
        ]
        .into_iter()
        .collect(),
    }
}

/// `prune --keep N --older-than D`: a snapshot goes only when both rules allow it, and
/// `--dry-run` says so, and which rule kept each snapshot it keeps.
#[test]
fn prune_dry_run_says_how_keep_and_older_than_combine() {
    let scratch = Scratch::new();
    let mut s = seed(&[("data-1", Path::new("/dev/xvdf"))], None);
    s.disk_snapshots = vec![
        own_snapshot("d1-new", "data-1", "1d"),
        own_snapshot("d1-mid", "data-1", "10d"),
        own_snapshot("d1-old", "data-1", "40d"),
        own_snapshot("d1-oldest", "data-1", "50d"),
    ];
    let fake = fake(&scratch, s);
    let prune = |args: &[&str]| {
        let mut cmd = lightsnap(&scratch, &fake);
        cmd.env("LIGHTSNAP_CONFIG_ROOT", scratch.path().join("conf"))
            .arg("prune")
            .args(args);
        finish(&mut cmd)
    };
    let line = |r: &RunResult, start: &str| -> String {
        r.stdout
            .lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no line starting {start:?}: {r:?}"))
            .to_string()
    };

    let r = prune(&["--keep", "1", "--older-than", "20d", "--dry-run"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        line(&r, "rule: ").contains("only when both rules allow it"),
        "{r:?}"
    );
    line(&r, "would delete d1-old ");
    line(&r, "would delete d1-oldest ");
    assert!(line(&r, "would keep d1-mid ").ends_with("newer than 20days (--older-than)"));
    assert!(line(&r, "would keep d1-new ").ends_with("(both)"));

    let r = prune(&["--keep", "3", "--older-than", "20d", "--dry-run"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(line(&r, "would keep d1-old ").ends_with("among the 3 newest of its disk (--keep)"));
    line(&r, "would delete d1-oldest ");
    assert!(
        !fake
            .calls()
            .iter()
            .any(|c| c.operation.starts_with("Delete")),
        "a dry run deletes nothing"
    );
}
