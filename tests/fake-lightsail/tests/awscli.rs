//! Conformance with a client no one here wrote: the real AWS CLI (v1, its own botocore and
//! Lightsail model) talks to the fake over real HTTP. Wire-format bugs show up here first:
//! timestamps, the error shape, response headers, and the signature over the headers botocore
//! chooses to sign.
//!
//! The CLI is the one `scripts/deps` installs into `target/awscli` (`scripts/test` exports its
//! path as `LIGHTSNAP_AWS_CLI`). Where it is missing these tests say so and pass, except in CI
//! (`CI` set), where they fail.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fake_lightsail::{Fake, Fault, FaultKind, Options, Seed, TlsOptions};
use serde_json::Value;

const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-east-1";
const WEB1_ID: &str = "i-0123456789abcdef0";
/// How long one CLI run may take (its start-up alone is about a second).
const DEADLINE: Duration = Duration::from_secs(120);

/// The AWS CLI to run, or `None` (with the reason printed) where it is not installed outside
/// CI. In CI a missing CLI fails the test.
fn aws_cli() -> Option<PathBuf> {
    let path = std::env::var_os("LIGHTSNAP_AWS_CLI")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/awscli/bin/aws")
        });
    if path.is_file() {
        return Some(path);
    }
    let why = format!(
        "the AWS CLI is not at {} (LIGHTSNAP_AWS_CLI, else target/awscli/bin/aws): run scripts/deps",
        path.display()
    );
    if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
        panic!("{why}");
    }
    eprintln!("skipping the AWS CLI conformance test: {why}");
    None
}

fn image_bytes(label: &str, len: usize) -> Vec<u8> {
    let mut x = label.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

/// A fake (snapshots complete at once) whose data disk is backed by an image file.
fn start_fake(dir: &Path) -> Fake {
    start_fake_with(dir, |s| s, |_| {})
}

/// Like [`start_fake`], the seed's text passed through `edit`, the options through
/// `configure`.
fn start_fake_with(
    dir: &Path,
    edit: impl FnOnce(String) -> String,
    configure: impl FnOnce(&mut Options),
) -> Fake {
    let backing = dir.join("data-1.img");
    std::fs::write(&backing, image_bytes("data-1", (2 << 20) + 1234)).unwrap();
    let seed = Seed::from_toml_str(&edit(format!(
        r#"
account = "{ACCOUNT}"
region = "{REGION}"
[[instances]]
name = "web-1"
instance_id = "{WEB1_ID}"
[[instances]]
name = "web-2"
instance_id = "i-0fedcba9876543210"
[[disks]]
name = "data-1"
path = "/dev/xvdf"
attached_to = "web-1"
size_gb = 32
backing = "{}"
[[disks]]
name = "spare-1"
"#,
        backing.display()
    )))
    .unwrap();
    let mut options = Options::new(seed, dir.join("snapshots"));
    options.snapshot_duration = Duration::ZERO;
    configure(&mut options);
    Fake::start(options).unwrap()
}

/// One CLI run's outcome.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        assert_eq!(self.code, 0, "the CLI failed: {}", self.stderr);
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.stdout))
    }

    /// Checks the CLI reported the service error `code` for `operation`, as v1 does: on
    /// stderr, exit status 254 (255 in older releases).
    fn assert_service_error(&self, operation: &str, code: &str) {
        assert!(
            [254, 255].contains(&self.code),
            "exit status {} for {code}; stderr: {}",
            self.code,
            self.stderr
        );
        let expected = format!("An error occurred ({code}) when calling the {operation} operation");
        assert!(
            self.stderr.contains(&expected),
            "{expected:?} not in stderr: {}",
            self.stderr
        );
        assert!(self.stdout.trim().is_empty(), "no output: {}", self.stdout);
    }
}

struct Cli {
    path: PathBuf,
    endpoint: String,
    access_key: String,
    secret_key: String,
    region: &'static str,
    /// `--ca-bundle` (TLS mode).
    ca_bundle: Option<PathBuf>,
    /// `AWS_CA_BUNDLE` (TLS mode).
    ca_bundle_env: Option<PathBuf>,
}

impl Cli {
    fn new(path: PathBuf, fake: &Fake) -> Self {
        Self {
            path,
            endpoint: fake.endpoint(),
            access_key: fake_lightsail::DEFAULT_ACCESS_KEY.into(),
            secret_key: fake_lightsail::DEFAULT_SECRET_KEY.into(),
            region: REGION,
            ca_bundle: None,
            ca_bundle_env: None,
        }
    }

    /// `aws lightsail ARGS...` against the fake, with nothing from the environment or the
    /// user's files but the fake's credentials.
    fn lightsail(&self, args: &[&str]) -> Run {
        let mut cmd = Command::new(&self.path);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("AWS_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("AWS_ACCESS_KEY_ID", &self.access_key)
            .env("AWS_SECRET_ACCESS_KEY", &self.secret_key)
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_RETRY_MODE", "standard")
            .env("AWS_MAX_ATTEMPTS", "3")
            .args(["--endpoint-url", &self.endpoint])
            .args(["--region", self.region, "--output", "json"])
            .args(["--cli-connect-timeout", "10", "--cli-read-timeout", "30"])
            .args(
                self.ca_bundle
                    .iter()
                    .flat_map(|p| [Path::new("--ca-bundle"), p]),
            )
            .arg("lightsail")
            .args(args)
            .stdin(Stdio::null());
        if let Some(p) = &self.ca_bundle_env {
            cmd.env("AWS_CA_BUNDLE", p);
        }
        run(cmd)
    }
}

/// Runs `cmd` to its end, within [`DEADLINE`].
fn run(mut cmd: Command) -> Run {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} took longer than {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    };
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn epoch_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A timestamp as the CLI prints it (the service's epoch seconds, as received), checked to
/// lie in `[from, to]`.
fn assert_timestamp(v: &Value, from: f64, to: f64) {
    let t = v
        .as_f64()
        .unwrap_or_else(|| panic!("a timestamp in epoch seconds: {v}"));
    assert!(
        t >= from - 0.001 && t <= to + 0.001,
        "{t} not in {from}..{to}"
    );
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap_or_else(|| panic!("a list: {list}"))
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect()
}

fn find<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("{name} in {list}"))
}

/// Checks the single operation a create/delete call printed.
fn assert_operation(out: &Value, name: &str, resource_type: &str, kind: &str, from: f64) {
    let ops = out["operations"].as_array().expect("operations");
    assert_eq!(ops.len(), 1, "{out}");
    let op = &ops[0];
    assert!(!op["id"].as_str().unwrap().is_empty());
    assert_eq!(op["resourceName"], name);
    assert_eq!(op["resourceType"], resource_type);
    assert_eq!(op["operationType"], kind);
    assert_eq!(op["location"]["regionName"], REGION);
    assert_timestamp(&op["createdAt"], from, epoch_now());
    assert_eq!(op["isTerminal"], op["status"] != "Started", "{op}");
}

#[test]
fn cli_reads_disks_and_instances() {
    let Some(cli) = aws_cli() else { return };
    let dir = tempfile::tempdir().unwrap();
    let before = epoch_now();
    let fake = start_fake(dir.path());
    let cli = Cli::new(cli, &fake);

    let out = cli.lightsail(&["get-disks"]).json();
    assert_eq!(names(&out["disks"]), ["data-1", "spare-1"]);
    let data = find(&out["disks"], "data-1");
    let support = data["supportCode"].as_str().unwrap();
    assert!(support.starts_with(&format!("{ACCOUNT}/vol-")), "{support}");
    assert_eq!(data["path"], "/dev/xvdf");
    assert_eq!(data["attachedTo"], "web-1");
    assert_eq!(data["isAttached"], true);
    assert_eq!(data["isSystemDisk"], false);
    assert_eq!(data["sizeInGb"], 32);
    assert_eq!(data["location"]["regionName"], REGION);
    assert_timestamp(&data["createdAt"], before, epoch_now());
    assert_eq!(find(&out["disks"], "spare-1")["isAttached"], false);

    let out = cli.lightsail(&["get-instances"]).json();
    assert_eq!(names(&out["instances"]), ["web-1", "web-2"]);
    let web1 = find(&out["instances"], "web-1");
    assert_eq!(web1["supportCode"], format!("{ACCOUNT}/{WEB1_ID}"));
    let disks = &web1["hardware"]["disks"];
    assert_eq!(names(disks), ["web-1-system-disk", "data-1"]);
    let system = find(disks, "web-1-system-disk");
    assert_eq!(system["isSystemDisk"], true);
    assert_eq!(system["path"], "/dev/xvda");
    assert_eq!(system["attachedTo"], "web-1");

    let out = cli
        .lightsail(&["get-instance", "--instance-name", "web-2"])
        .json();
    assert_eq!(out["instance"]["name"], "web-2");
    assert_eq!(
        names(&out["instance"]["hardware"]["disks"]),
        ["web-2-system-disk"]
    );
}

#[test]
fn cli_creates_reads_and_deletes_snapshots() {
    let Some(cli) = aws_cli() else { return };
    let dir = tempfile::tempdir().unwrap();
    let fake = start_fake(dir.path());
    let cli = Cli::new(cli, &fake);

    let sent = epoch_now();
    let out = cli
        .lightsail(&[
            "create-disk-snapshot",
            "--disk-name",
            "data-1",
            "--disk-snapshot-name",
            "data-1-cli",
            "--tags",
            "key=lightsnap:consistency,value=frozen",
            "key=owner,value=ops team",
        ])
        .json();
    assert_operation(
        &out,
        "data-1-cli",
        "DiskSnapshot",
        "CreateDiskSnapshot",
        sent,
    );
    assert_eq!(
        std::fs::read(fake.snapshot_image("data-1-cli")).unwrap(),
        std::fs::read(dir.path().join("data-1.img")).unwrap(),
        "the snapshot holds the disk's bytes"
    );

    let got = cli
        .lightsail(&["get-disk-snapshot", "--disk-snapshot-name", "data-1-cli"])
        .json();
    let s = &got["diskSnapshot"];
    assert_eq!(s["name"], "data-1-cli");
    assert_eq!(s["fromDiskName"], "data-1");
    assert_eq!(s["state"], "completed");
    assert_eq!(s["progress"], "100%");
    assert_eq!(s["sizeInGb"], 32);
    assert_eq!(
        s["tags"],
        serde_json::json!([
            {"key": "lightsnap:consistency", "value": "frozen"},
            {"key": "owner", "value": "ops team"},
        ])
    );
    assert_eq!(s["createdAt"], out["operations"][0]["createdAt"]);

    let sent = epoch_now();
    let out = cli
        .lightsail(&[
            "create-disk-snapshot",
            "--instance-name",
            "web-1",
            "--disk-snapshot-name",
            "web-1-system-cli",
            "--tags",
            "key=k,value=v",
        ])
        .json();
    assert_operation(
        &out,
        "web-1-system-cli",
        "DiskSnapshot",
        "CreateDiskSnapshot",
        sent,
    );
    let got = cli
        .lightsail(&[
            "get-disk-snapshot",
            "--disk-snapshot-name",
            "web-1-system-cli",
        ])
        .json();
    let s = &got["diskSnapshot"];
    assert_eq!(s["fromInstanceName"], "web-1");
    assert_eq!(s["fromDiskName"], "web-1-system-disk");
    assert_eq!(s["tags"][0]["key"], "k");

    let sent = epoch_now();
    let out = cli
        .lightsail(&["delete-disk-snapshot", "--disk-snapshot-name", "data-1-cli"])
        .json();
    assert_operation(
        &out,
        "data-1-cli",
        "DiskSnapshot",
        "DeleteDiskSnapshot",
        sent,
    );
    assert_eq!(out["operations"][0]["status"], "Succeeded");
    assert!(fake.disk_snapshot("data-1-cli").is_none());
    cli.lightsail(&["get-disk-snapshot", "--disk-snapshot-name", "data-1-cli"])
        .assert_service_error("GetDiskSnapshot", "NotFoundException");

    let sent = epoch_now();
    let out = cli
        .lightsail(&[
            "create-instance-snapshot",
            "--instance-name",
            "web-1",
            "--instance-snapshot-name",
            "web-1-whole-cli",
            "--tags",
            "key=lightsnap:consistency,value=frozen",
        ])
        .json();
    assert_operation(
        &out,
        "web-1-whole-cli",
        "InstanceSnapshot",
        "CreateInstanceSnapshot",
        sent,
    );
    assert!(fake
        .instance_snapshot_image("web-1-whole-cli", "data-1")
        .is_file());
    let got = cli
        .lightsail(&[
            "get-instance-snapshot",
            "--instance-snapshot-name",
            "web-1-whole-cli",
        ])
        .json();
    let s = &got["instanceSnapshot"];
    assert_eq!(s["name"], "web-1-whole-cli");
    assert_eq!(s["fromInstanceName"], "web-1");
    assert_eq!(s["state"], "available");
    assert_eq!(names(&s["fromAttachedDisks"]), ["data-1"]);
    assert_eq!(s["tags"][0]["value"], "frozen");
}

#[test]
fn cli_gets_the_services_refusals() {
    let Some(cli_path) = aws_cli() else { return };
    let dir = tempfile::tempdir().unwrap();
    let fake = start_fake(dir.path());
    let cli = Cli::new(cli_path.clone(), &fake);
    let create = |extra: &[&str]| {
        let mut args = vec!["create-disk-snapshot"];
        args.extend_from_slice(extra);
        cli.lightsail(&args)
    };

    // botocore checks required members and types, not patterns: the service refuses these.
    create(&["--disk-name", "data-1", "--disk-snapshot-name", "bad.name"])
        .assert_service_error("CreateDiskSnapshot", "InvalidInputException");
    create(&[
        "--disk-name",
        "data-1",
        "--instance-name",
        "web-1",
        "--disk-snapshot-name",
        "both",
    ])
    .assert_service_error("CreateDiskSnapshot", "InvalidInputException");
    create(&["--disk-snapshot-name", "neither"])
        .assert_service_error("CreateDiskSnapshot", "InvalidInputException");
    create(&["--disk-name", "data-9", "--disk-snapshot-name", "unknown"])
        .assert_service_error("CreateDiskSnapshot", "NotFoundException");
    let long_key = format!("key={},value=v", "k".repeat(129));
    create(&[
        "--disk-name",
        "data-1",
        "--disk-snapshot-name",
        "long-tag",
        "--tags",
        &long_key,
    ])
    .assert_service_error("CreateDiskSnapshot", "InvalidInputException");
    let long_value = format!("key=k,value={}", "v".repeat(257));
    create(&[
        "--disk-name",
        "data-1",
        "--disk-snapshot-name",
        "long-value",
        "--tags",
        &long_value,
    ])
    .assert_service_error("CreateDiskSnapshot", "InvalidInputException");
    assert_eq!(
        fake.snapshots()["diskSnapshots"],
        serde_json::json!([]),
        "nothing refused was created"
    );
    // What botocore itself refuses never reaches the fake.
    let calls = fake.calls().len();
    let missing = create(&["--disk-name", "data-1"]);
    assert_ne!(missing.code, 0);
    assert!(
        missing.stderr.contains("disk-snapshot-name"),
        "{}",
        missing.stderr
    );
    assert_eq!(fake.calls().len(), calls);

    let wrong_secret = Cli {
        secret_key: "not-the-secret".into(),
        ..Cli::new(cli_path.clone(), &fake)
    };
    wrong_secret
        .lightsail(&["get-disks"])
        .assert_service_error("GetDisks", "InvalidSignatureException");
    let unknown_key = Cli {
        access_key: "AKIDNOBODYKNOWS".into(),
        ..Cli::new(cli_path.clone(), &fake)
    };
    unknown_key
        .lightsail(&["get-disks"])
        .assert_service_error("GetDisks", "UnrecognizedClientException");
    let elsewhere = Cli {
        region: "us-west-2",
        ..Cli::new(cli_path, &fake)
    };
    elsewhere
        .lightsail(&["get-disks"])
        .assert_service_error("GetDisks", "InvalidSignatureException");
}

#[test]
fn cli_retries_the_fakes_throttling_and_reports_injected_errors() {
    let Some(cli) = aws_cli() else { return };
    let dir = tempfile::tempdir().unwrap();
    let fake = start_fake(dir.path());
    let cli = Cli::new(cli, &fake);
    let on_create = |kind, count| Fault {
        operation: Some("CreateDiskSnapshot".into()),
        kind,
        count,
    };

    // botocore recognises the throttling answer as one to retry, and the retry lands.
    fake.add_fault(on_create(FaultKind::Throttle, Some(1)));
    let out = cli
        .lightsail(&[
            "create-disk-snapshot",
            "--disk-name",
            "data-1",
            "--disk-snapshot-name",
            "after-throttle",
        ])
        .json();
    assert_eq!(out["operations"][0]["resourceName"], "after-throttle");
    let creates = fake
        .calls()
        .iter()
        .filter(|c| c.operation == "CreateDiskSnapshot")
        .count();
    assert_eq!(creates, 2, "one throttled, one retried");

    fake.add_fault(on_create(
        FaultKind::Error {
            code: "OperationFailureException".into(),
            message: Some("injected for the CLI".into()),
            status: None,
        },
        Some(1),
    ));
    let run = cli.lightsail(&[
        "create-disk-snapshot",
        "--disk-name",
        "data-1",
        "--disk-snapshot-name",
        "op-failure",
    ]);
    run.assert_service_error("CreateDiskSnapshot", "OperationFailureException");
    assert!(
        run.stderr.contains("injected for the CLI"),
        "{}",
        run.stderr
    );

    fake.add_fault(on_create(
        FaultKind::FailedOperation {
            code: "DiskBusy".into(),
            details: "the disk is busy".into(),
        },
        Some(1),
    ));
    let out = cli
        .lightsail(&[
            "create-disk-snapshot",
            "--disk-name",
            "data-1",
            "--disk-snapshot-name",
            "failed-op",
        ])
        .json();
    let op = &out["operations"][0];
    assert_eq!(op["status"], "Failed");
    assert_eq!(op["errorCode"], "DiskBusy");
    assert_eq!(op["errorDetails"], "the disk is busy");
}

#[test]
fn cli_gets_auto_snapshots_and_is_refused_during_one() {
    let Some(cli) = aws_cli() else { return };
    let dir = tempfile::tempdir().unwrap();
    let fake = start_fake_with(
        dir.path(),
        |seed| {
            seed.replacen(
                "size_gb = 32\n",
                "size_gb = 32\nauto_snapshot = { time_of_day = \"07:00\", history = [\"Success\"], in_progress = \"until-ended\" }\n",
                1,
            )
            .replacen(
                &format!("instance_id = \"{WEB1_ID}\"\n"),
                &format!("instance_id = \"{WEB1_ID}\"\nauto_snapshot = {{ time_of_day = \"06:00\" }}\n"),
                1,
            )
        },
        |_| {},
    );
    let cli = Cli::new(cli, &fake);

    let out = cli
        .lightsail(&["get-auto-snapshots", "--resource-name", "data-1"])
        .json();
    assert_eq!(out["resourceName"], "data-1");
    assert_eq!(out["resourceType"], "Disk");
    let runs = out["autoSnapshots"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{out}");
    assert_eq!(runs[0]["status"], "InProgress");
    assert_eq!(runs[1]["status"], "Success");
    let t = runs[1]["createdAt"].as_f64().expect("epoch seconds");
    let now = epoch_now();
    assert!(
        t < now && t > now - 2.0 * 86_400.0,
        "yesterday at 07:00: {t}, now {now}"
    );
    for r in runs {
        let date = r["date"].as_str().unwrap();
        assert!(
            date.len() == 10 && date.as_bytes()[4] == b'-' && date.as_bytes()[7] == b'-',
            "YYYY-MM-DD: {date}"
        );
    }
    let out = cli.lightsail(&["get-disk", "--disk-name", "data-1"]).json();
    assert_eq!(out["disk"]["addOns"][0]["name"], "AutoSnapshot");
    assert_eq!(out["disk"]["addOns"][0]["status"], "Enabled");
    assert_eq!(out["disk"]["addOns"][0]["snapshotTimeOfDay"], "07:00");

    let create = [
        "create-disk-snapshot",
        "--disk-name",
        "data-1",
        "--disk-snapshot-name",
        "m-1",
    ];
    let refused = cli.lightsail(&create);
    refused.assert_service_error("CreateDiskSnapshot", "OperationFailureException");
    assert!(
        refused.stderr.contains(
            "You cannot create manual snapshots when an automatic snapshot is being created"
        ),
        "{}",
        refused.stderr
    );
    let last = fake.calls().pop().unwrap();
    assert_eq!(last.error.as_deref(), Some("OperationFailureException"));

    fake.end_auto_snapshot("data-1", "Success").unwrap();
    let out = cli.lightsail(&create).json();
    assert_eq!(out["operations"][0]["resourceName"], "m-1");

    let out = cli
        .lightsail(&["get-auto-snapshots", "--resource-name", "web-1"])
        .json();
    assert_eq!(out["resourceType"], "Instance");
    assert_eq!(out["autoSnapshots"], serde_json::json!([]));
    cli.lightsail(&["get-auto-snapshots", "--resource-name", "nope"])
        .assert_service_error("GetAutoSnapshots", "NotFoundException");
}

#[test]
fn cli_over_https_with_its_ca_bundle() {
    let Some(cli_path) = aws_cli() else { return };
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let fake = start_fake_with(
        dir.path(),
        |s| s,
        |o| {
            o.tls = Some(TlsOptions {
                names: vec!["localhost".into()],
                ca_file: Some(ca.clone()),
            })
        },
    );
    assert!(fake.endpoint().starts_with("https://localhost:"));
    let flag = Cli {
        ca_bundle: Some(ca.clone()),
        ..Cli::new(cli_path.clone(), &fake)
    };
    let out = flag.lightsail(&["get-disks"]).json();
    assert_eq!(names(&out["disks"]), ["data-1", "spare-1"]);
    let env = Cli {
        ca_bundle_env: Some(ca.clone()),
        ..Cli::new(cli_path.clone(), &fake)
    };
    let out = env
        .lightsail(&[
            "create-disk-snapshot",
            "--disk-name",
            "data-1",
            "--disk-snapshot-name",
            "over-tls",
        ])
        .json();
    assert_eq!(out["operations"][0]["resourceName"], "over-tls");
    assert!(fake.snapshot_image("over-tls").is_file());

    // One process, one connection, one handshake each.
    let calls = fake.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    for c in &calls {
        let conn = c.connection.as_ref().unwrap();
        assert!(conn.tls && !conn.reused(), "{c:?}");
        assert_eq!(c.status, Some(200));
    }
    assert_ne!(
        calls[0].connection.as_ref().unwrap().id,
        calls[1].connection.as_ref().unwrap().id
    );
    assert_eq!(fake.connection_stats().tls_handshakes, 2);

    // Without the bundle the CLI does not trust the fake, and nothing reaches the API.
    let untrusting = Cli::new(cli_path, &fake);
    let run = untrusting.lightsail(&["get-disks"]);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("SSL"), "{}", run.stderr);
    assert!(fake.connection_stats().failed_handshakes >= 1);
    assert_eq!(fake.calls().len(), 2);
}

/// CreateDiskFromSnapshot, AttachDisk, DetachDisk, DeleteDisk and a CopySnapshot sent to
/// another region, as the CLI's model reads them.
#[test]
fn cli_restores_attaches_detaches_deletes_and_copies_to_another_region() {
    let Some(path) = aws_cli() else { return };
    let dir = tempfile::tempdir().unwrap();
    let fake = start_fake_with(
        dir.path(),
        |s| {
            s.replacen(
                "[[instances]]",
                "regions = [\"us-west-2\"]\n[[instances]]",
                1,
            )
        },
        |o| o.disk_pending_reads = 1,
    );
    let cli = Cli::new(path.clone(), &fake);
    cli.lightsail(&[
        "create-disk-snapshot",
        "--disk-name",
        "data-1",
        "--disk-snapshot-name",
        "s1",
        "--tags",
        "key=lightsnap:version,value=1",
    ])
    .json();
    let restore = |zone: &str| {
        cli.lightsail(&[
            "create-disk-from-snapshot",
            "--disk-name",
            "r1",
            "--disk-snapshot-name",
            "s1",
            "--availability-zone",
            zone,
            "--size-in-gb",
            "32",
            "--tags",
            "key=lightsnap:scratch,value=true",
        ])
    };
    restore("us-west-2a").assert_service_error("CreateDiskFromSnapshot", "InvalidInputException");
    let sent = epoch_now();
    let out = restore("us-east-1a").json();
    assert_operation(&out, "r1", "Disk", "CreateDiskFromSnapshot", sent);
    assert_eq!(out["operations"][0]["status"], "Started");
    let state = || cli.lightsail(&["get-disk", "--disk-name", "r1"]).json()["disk"].clone();
    assert_eq!(state()["state"], "pending");
    let d = state();
    assert_eq!(d["state"], "available");
    assert_eq!(d["tags"][0]["key"], "lightsnap:scratch");

    let attach = || {
        cli.lightsail(&[
            "attach-disk",
            "--disk-name",
            "r1",
            "--instance-name",
            "web-1",
            "--disk-path",
            "/dev/xvdg",
        ])
    };
    let out = attach().json();
    let ops = out["operations"].as_array().unwrap();
    assert_eq!(ops.len(), 2, "{out}");
    assert_eq!(ops[0]["operationType"], "AttachDisk");
    assert_eq!(ops[1]["resourceType"], "Instance");
    attach().assert_service_error("AttachDisk", "OperationFailureException");
    let d = state();
    assert_eq!(d["state"], "in-use");
    assert_eq!(d["attachedTo"], "web-1");
    assert_eq!(d["path"], "/dev/xvdg");
    assert_eq!(d["isAttached"], true);
    cli.lightsail(&["delete-disk", "--disk-name", "r1"])
        .assert_service_error("DeleteDisk", "OperationFailureException");
    let out = cli.lightsail(&["detach-disk", "--disk-name", "r1"]).json();
    assert_eq!(out["operations"][0]["operationType"], "DetachDisk");
    assert_eq!(state()["state"], "available");
    let out = cli.lightsail(&["delete-disk", "--disk-name", "r1"]).json();
    assert_eq!(out["operations"][0]["operationType"], "DeleteDisk");
    cli.lightsail(&["get-disk", "--disk-name", "r1"])
        .assert_service_error("GetDisk", "NotFoundException");

    // A copy is asked of the target region's endpoint, naming the source region.
    let west = Cli {
        region: "us-west-2",
        ..Cli::new(path, &fake)
    };
    let out = west
        .lightsail(&[
            "copy-snapshot",
            "--source-snapshot-name",
            "s1",
            "--target-snapshot-name",
            "s1-west",
            "--source-region",
            REGION,
        ])
        .json();
    let op = &out["operations"][0];
    assert_eq!(op["operationType"], "CopySnapshot");
    assert_eq!(op["location"]["regionName"], "us-west-2");
    assert_eq!(op["operationDetails"], format!("{REGION}:s1"));
    let copy = fake
        .calls()
        .into_iter()
        .find(|c| c.operation == "CopySnapshot")
        .unwrap();
    assert_eq!(copy.region.as_deref(), Some("us-west-2"));
    let s = west
        .lightsail(&["get-disk-snapshot", "--disk-snapshot-name", "s1-west"])
        .json();
    assert_eq!(s["diskSnapshot"]["state"], "completed");
    assert_eq!(s["diskSnapshot"]["tags"], serde_json::json!([]));
    cli.lightsail(&["get-disk-snapshot", "--disk-snapshot-name", "s1-west"])
        .assert_service_error("GetDiskSnapshot", "NotFoundException");
    west.lightsail(&[
        "copy-snapshot",
        "--source-snapshot-name",
        "s1",
        "--target-snapshot-name",
        "s1-west",
        "--source-region",
        REGION,
    ])
    .assert_service_error("CopySnapshot", "InvalidInputException");
}
