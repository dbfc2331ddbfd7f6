//! `lightsnap setup` end to end, as root, against the fake Lightsail in attach mode (so that
//! verify works on loop devices): an instance with a data disk and a system volume, each a
//! loop filesystem in the test's scratch directory; the configuration root in the scratch
//! directory with the package's example hooks and timer under it; a stand-in `systemctl` on
//! PATH recording what it is asked; and, for the database hook, a real PostgreSQL.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::pg::{pg_bin_or_skip, Pg};
use common::*;

/// An instance with disk `data-1` (the filesystem `data`) and a system volume (the filesystem
/// `sys`), a configuration root laid out as the package installs it, a stand-in systemctl.
struct Instance {
    fake: Fake,
    data: LoopFs,
    sys: LoopFs,
    scratch: Scratch,
}

impl Instance {
    fn new(test: &str, data_kind: FsKind, auto_snapshot: Option<&str>) -> Option<Self> {
        if !root_or_skip(test) || !tool_or_skip(test, data_kind.mkfs_tool()) {
            return None;
        }
        let scratch = Scratch::new();
        // A database's user must reach its data directory and socket inside it.
        std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let data = LoopFs::create(&scratch, "data", data_kind);
        let sys = LoopFs::create(&scratch, "sys", FsKind::Ext4);
        let add_on = auto_snapshot
            .map(|t| format!("auto_snapshot = {{ time_of_day = \"{t}\" }}\n"))
            .unwrap_or_default();
        let seed = Seed::from_toml_str(&format!(
            "self_instance = \"{INSTANCE}\"\n\
             [[instances]]\nname = \"{INSTANCE}\"\ninstance_id = \"{INSTANCE_ID}\"\n\
             system_disk = {{ name = \"{INSTANCE}-system\", path = \"{s}\", size_gb = 1, backing = \"{s}\" }}\n\
             [[disks]]\nname = \"data-1\"\npath = \"{d}\"\nattached_to = \"{INSTANCE}\"\nsize_gb = 1\nbacking = \"{d}\"\n{add_on}",
            s = sys.device.display(),
            d = data.device.display(),
        ))
        .expect("seed");
        let dir = scratch.path().join("snapshots");
        std::fs::create_dir_all(&dir).unwrap();
        let mut opts = Options::new(seed, dir);
        opts.snapshot_duration = std::time::Duration::ZERO;
        opts.page_size = 3;
        opts.attach_dir = Some(scratch.path().join("dev"));
        let fake = Fake::start(opts).expect("fake lightsail in attach mode");

        // What the package installs under the configuration root: the example hooks and
        // the timer (whose window setup compares with the automatic snapshots').
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let conf = conf_root(&scratch);
        let examples = conf.join("usr/share/lightsnap/examples/hooks");
        std::fs::create_dir_all(&examples).unwrap();
        for hook in ["postgresql", "mysql"] {
            std::fs::copy(
                manifest.join("packaging/examples/hooks").join(hook),
                examples.join(hook),
            )
            .unwrap();
        }
        let units = conf.join("lib/systemd/system");
        std::fs::create_dir_all(&units).unwrap();
        std::fs::copy(
            manifest.join("packaging/systemd/lightsnap-snapshot.timer"),
            units.join("lightsnap-snapshot.timer"),
        )
        .unwrap();

        // The stand-in systemctl: records each call; `enable` turns the timer on, which
        // `is-enabled` and `is-active` then report.
        let bin = scratch.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let state = scratch.path().join("systemd");
        std::fs::create_dir_all(&state).unwrap();
        let systemctl = bin.join("systemctl");
        std::fs::write(
            &systemctl,
            format!(
                // `show` answers the packaged timer's schedule as systemd would (daily at
                // midnight UTC, an hour's random delay), not recorded: a question, asked
                // whenever setup looks for an overlap with the automatic snapshots.
                "#!/bin/sh\nif [ \"$1\" = show ]; then printf '%s\\n' 'LoadState=loaded' 'TimersCalendar={{ OnCalendar=*-*-* 00:00:00 ; next_elapse=Tue 2026-12-08 00:00:00 UTC }}' 'RandomizedDelayUSec=1h' 'NextElapseUSecRealtime=n/a'; exit 0; fi\necho \"$*\" >> {state}/calls\ncase \"$1\" in\nenable) touch {state}/on ;;\nis-enabled|is-active) test -e {state}/on ;;\n*) exit 1 ;;\nesac\n",
                state = state.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&systemctl, std::fs::Permissions::from_mode(0o755)).unwrap();
        Some(Self {
            fake,
            data,
            sys,
            scratch,
        })
    }

    /// `lightsnap ARGS`, configured, finding attached disks in `<scratch>/dev`, the stand-in
    /// systemctl first on PATH.
    fn lightsnap(&self, args: &[&str]) -> Command {
        let mut cmd = configured_lightsnap(&self.scratch, &self.fake);
        let path = format!(
            "{}:{}",
            self.scratch.path().join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        cmd.env("PATH", path)
            .env("LIGHTSNAP_DEV_DIR", self.scratch.path().join("dev"))
            .env("LIGHTSNAP_VERIFY_POLL_MS", "20")
            .args(args);
        cmd
    }

    fn systemctl_calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.scratch.path().join("systemd/calls"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn conf(&self, rel: &str) -> PathBuf {
        conf_root(&self.scratch).join(rel)
    }

    /// Every file under the configuration root's `etc`, with its mtime and contents.
    fn etc(&self) -> Vec<(PathBuf, i64, i64, Vec<u8>)> {
        fn walk(dir: &Path, into: &mut Vec<(PathBuf, i64, i64, Vec<u8>)>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, into);
                } else {
                    let m = std::fs::metadata(&p).unwrap();
                    into.push((
                        p.clone(),
                        m.mtime(),
                        m.mtime_nsec(),
                        std::fs::read(&p).unwrap(),
                    ));
                }
            }
        }
        let mut all = Vec::new();
        walk(&self.conf("etc"), &mut all);
        all.sort();
        all
    }

    fn tag(&self, snapshot: &str, key: &str) -> Option<String> {
        let s = self.fake.disk_snapshot(snapshot)?;
        s["tags"]
            .as_array()?
            .iter()
            .find(|t| t["key"] == key)
            .map(|t| t["value"].as_str().unwrap_or_default().to_string())
    }
}

/// The calls the fake received that write anything (every Lightsail call not starting with
/// Get, the metadata service aside).
fn writes(fake: &Fake) -> Vec<String> {
    fake.calls()
        .into_iter()
        .map(|c| c.operation)
        .filter(|o| !o.starts_with("Get") && !o.starts_with("IMDS"))
        .collect()
}

#[test]
fn setup_yes_configures_hooks_enables_snapshots_verifies_and_a_second_run_changes_nothing() {
    let test =
        "setup_yes_configures_hooks_enables_snapshots_verifies_and_a_second_run_changes_nothing";
    if !root_or_skip(test) || !tool_or_skip(test, "runuser") {
        return;
    }
    let Some(bin) = pg_bin_or_skip(test) else {
        return;
    };
    // XFS: room for a cluster.
    let Some(s) = Instance::new(test, FsKind::Xfs, None) else {
        return;
    };
    let data_dir = s.data.mount_point.join("pgdata");
    Pg::init(&bin, &data_dir);
    let pg = Pg::start(&bin, &data_dir, &s.scratch.path().join("pg-live"));
    pg.sql("CREATE TABLE rows (id int PRIMARY KEY)");
    let checkpoint = || pg.sql("SELECT checkpoint_lsn FROM pg_control_checkpoint()");
    let before = checkpoint();

    // The hook reaches this server through the standard PGHOST/PGPORT, as an operator's
    // drop-in would give them.
    let setup = |extra: &[&str]| {
        let mut args = vec!["setup", "--yes"];
        args.extend_from_slice(extra);
        finish(
            s.lightsnap(&args)
                .env("PGHOST", &pg.socket)
                .env("PGPORT", pg.port.to_string()),
        )
    };
    let r = setup(&[]);
    assert_eq!(r.code, 0, "{r:?}");
    // The credentials' read calls, each tried once and allowed.
    for call in [
        "GetInstances",
        "GetDisks",
        "GetDiskSnapshots",
        "GetInstanceSnapshots",
        "GetAutoSnapshots",
    ] {
        assert!(
            r.stdout
                .lines()
                .any(|l| l.trim_start().starts_with(call) && l.ends_with("allowed")),
            "{call}: {r:?}"
        );
    }
    // Both disks found and offered separately; the database noticed by its server.
    let data_mp = s.data.mount_point.display().to_string();
    let sys_mp = s.sys.mount_point.display().to_string();
    assert!(
        r.stdout.contains(&format!("disk data-1: {data_mp}")),
        "{r:?}"
    );
    assert!(
        r.stdout
            .contains(&format!("system volume ({INSTANCE}-system): {sys_mp}")),
        "{r:?}"
    );
    assert!(
        r.stdout.contains("database: PostgreSQL (process postgres"),
        "{r:?}"
    );

    // The fragment: the data disk's filesystem, not the system volume (the default with a
    // data disk), valid configuration, root-owned and not writable by others.
    let fragment = s.conf("etc/lightsnap/config.d/50-setup.toml");
    let text = std::fs::read_to_string(&fragment).unwrap();
    assert!(
        text.contains(&format!("[[snapshot]]\npath = \"{data_mp}\"\n")),
        "{text}"
    );
    assert!(!text.contains(&sys_mp), "{text}");
    let meta = std::fs::metadata(&fragment).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o777), (0, 0o644));
    assert!(
        !s.conf("etc/lightsnap/config.toml").exists(),
        "the packaged conffile is never written"
    );
    // The example hook, for the snapshot and for verify, byte for byte.
    let example = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/examples/hooks/postgresql"),
    )
    .unwrap();
    for dir in ["hooks.d", "verify.d"] {
        let hook = s.conf(&format!("etc/lightsnap/{dir}/10-postgresql"));
        assert_eq!(std::fs::read(&hook).unwrap(), example, "{}", hook.display());
        assert_eq!(std::fs::metadata(&hook).unwrap().mode() & 0o777, 0o755);
    }
    assert!(!s.conf("etc/lightsnap/hooks.d/20-mysql").exists());
    // The timer, enabled through systemctl.
    assert!(
        s.systemctl_calls()
            .contains(&"enable --now lightsnap-snapshot.timer".to_string()),
        "{:?}",
        s.systemctl_calls()
    );
    // The first snapshot: taken with the hook's CHECKPOINT, of the data disk only, and
    // verified with the cluster checked on the restored copy.
    assert!(
        r.stderr.contains("postgresql hook: CHECKPOINT done"),
        "{r:?}"
    );
    assert_ne!(checkpoint(), before, "the hook made a CHECKPOINT");
    // (A loaded machine may make the SDK retry the call: one snapshot either way.)
    let taken = remaining(&s.fake);
    assert_eq!(taken.len(), 1, "{taken:?} {r:?}");
    let name = taken[0].clone();
    assert!(
        create_calls(&s.fake)
            .iter()
            .all(|c| c.body["diskName"] == "data-1" && c.body["diskSnapshotName"] == name.as_str()),
        "{r:?}"
    );
    assert_eq!(s.tag(&name, "lightsnap:verified").as_deref(), Some("clean"));
    assert!(
        r.stderr
            .contains("holds a PostgreSQL cluster (control file sound"),
        "{r:?}"
    );

    // The second time: nothing rewritten, no timer call but the questions, no snapshot.
    let etc = s.etc();
    let enables = s
        .systemctl_calls()
        .iter()
        .filter(|c| c.starts_with("enable"))
        .count();
    let writes_before = writes(&s.fake);
    let r = setup(&[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("nothing to change"), "{r:?}");
    assert!(
        r.stdout.contains(&format!("verified snapshot {name}")),
        "{r:?}"
    );
    assert_eq!(s.etc(), etc, "no file under etc written again");
    assert_eq!(
        s.systemctl_calls()
            .iter()
            .filter(|c| c.starts_with("enable"))
            .count(),
        enables
    );
    assert_eq!(
        writes(&s.fake),
        writes_before,
        "no call that changes anything"
    );
    pg.stop();
}

#[test]
fn dry_run_prints_the_plan_and_warns_of_the_automatic_snapshot_but_changes_nothing() {
    let test = "dry_run_prints_the_plan_and_warns_of_the_automatic_snapshot_but_changes_nothing";
    let Some(s) = Instance::new(test, FsKind::Ext4, Some("00:00")) else {
        return;
    };
    let r = finish(&mut s.lightsnap(&["setup", "--dry-run", "--system-volume", "yes"]));
    assert_eq!(r.code, 0, "{r:?}");
    let data_mp = s.data.mount_point.display().to_string();
    let sys_mp = s.sys.mount_point.display().to_string();
    for want in [
        "what setup would do (dry run):".to_string(),
        format!(
            "write {} (mode 644)",
            s.conf("etc/lightsnap/config.d/50-setup.toml").display()
        ),
        format!("| path = \"{data_mp}\""),
        format!("| path = \"{sys_mp}\""),
        "systemctl enable --now lightsnap-snapshot.timer".into(),
        "lightsnap run --wait".into(),
        "lightsnap verify --latest --disk data-1".into(),
        format!("lightsnap verify --latest --disk {INSTANCE}-system"),
        "dry run: nothing was written or changed".into(),
        // The packaged timer fires in the first hour after midnight; the add-on at 00:00.
        "warning: the automatic snapshot add-on of disk data-1 starts at 00:00 UTC".into(),
    ] {
        assert!(r.stdout.contains(&want), "{want}: {r:?}");
    }
    assert!(!s.conf("etc").exists(), "nothing written: {r:?}");
    assert!(
        s.systemctl_calls().iter().all(|c| c.starts_with("is-")),
        "only questions asked of systemd: {:?}",
        s.systemctl_calls()
    );
    assert!(writes(&s.fake).is_empty(), "{r:?}");

    // The same plan as one JSON document.
    let r = finish(&mut s.lightsnap(&[
        "setup",
        "--dry-run",
        "--system-volume",
        "yes",
        "--output",
        "json",
    ]));
    assert_eq!(r.code, 0, "{r:?}");
    let doc = json_doc_of("setup", &r);
    assert_eq!(doc["instance"], INSTANCE, "{doc}");
    assert_eq!(doc["chosen"], serde_json::json!(["data-1", "web-1-system"]));
    assert_eq!(doc["dry_run"], true);
    assert_eq!(doc["applied"], false);
    let actions: Vec<&str> = doc["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["write", "enable_timer", "snapshot", "verify", "verify"],
        "{doc}"
    );
    let fragment = doc["fragment"].as_str().unwrap();
    assert!(
        fragment.contains(&format!("[[snapshot]]\npath = \"{sys_mp}\"")),
        "{doc}"
    );
    assert_eq!(doc["credentials"][4]["operation"], "GetAutoSnapshots");
    assert_eq!(doc["credentials"][4]["allowed"], true);
    assert!(!s.conf("etc").exists());
}

#[test]
fn without_a_terminal_or_yes_setup_refuses_and_an_access_denied_names_iam_policy() {
    let test = "without_a_terminal_or_yes_setup_refuses_and_an_access_denied_names_iam_policy";
    let Some(s) = Instance::new(test, FsKind::Ext4, None) else {
        return;
    };
    // stdin is /dev/null: not a terminal.
    let r = finish(&mut s.lightsnap(&["setup"]));
    assert_eq!(r.code, 24, "{r:?}");
    assert!(r.stderr.contains("give --yes"), "{r:?}");
    assert!(s.fake.calls().is_empty(), "nothing asked of anyone: {r:?}");
    assert!(s.systemctl_calls().is_empty());

    // No credentials at all: said at once, with the exit code of missing credentials.
    let r = finish(
        s.lightsnap(&["setup", "--yes"])
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY"),
    );
    assert_eq!(r.code, 11, "{r:?}");
    assert!(r.stderr.contains("checking the AWS credentials"), "{r:?}");

    // A policy without GetAutoSnapshots: the call is named, and where the policy comes from.
    s.fake.add_fault(Fault {
        operation: Some("GetAutoSnapshots".into()),
        kind: FaultKind::Error {
            code: "AccessDeniedException".into(),
            message: Some("not authorized to perform: lightsail:GetAutoSnapshots".into()),
            status: Some(400),
        },
        count: None,
    });
    let r = finish(&mut s.lightsnap(&["setup", "--yes"]));
    assert_eq!(r.code, 23, "{r:?}");
    assert!(
        r.stdout.lines().any(
            |l| l.contains("GetAutoSnapshots") && l.contains("REFUSED (AccessDeniedException)")
        ),
        "{r:?}"
    );
    assert!(r
        .stdout
        .lines()
        .any(|l| l.contains("GetDisks") && l.ends_with("allowed")));
    assert!(r.stderr.contains("lightsnap iam-policy"), "{r:?}");
    assert!(!s.conf("etc").exists(), "nothing written: {r:?}");
    assert!(writes(&s.fake).is_empty(), "{r:?}");
}

#[test]
fn at_a_terminal_setup_asks_with_defaults_and_a_no_at_the_end_changes_nothing() {
    let test = "at_a_terminal_setup_asks_with_defaults_and_a_no_at_the_end_changes_nothing";
    if !tool_or_skip(test, "script") {
        return;
    }
    let Some(s) = Instance::new(test, FsKind::Ext4, None) else {
        return;
    };
    // `script` gives lightsnap a terminal; the answers are typed into it: the defaults
    // (data disk yes, system volume no, timer yes, first snapshot yes), then no.
    let inner = s.lightsnap(&["setup"]);
    let mut line = String::new();
    for (k, v) in inner.get_envs() {
        if let Some(v) = v {
            line.push_str(&format!(
                "{}='{}' ",
                k.to_string_lossy(),
                v.to_string_lossy()
            ));
        }
    }
    line.push_str(&format!("{} setup", env!("CARGO_BIN_EXE_lightsnap")));
    let mut cmd = Command::new("script");
    cmd.args(["-q", "-e", "-c", &format!("env {line}"), "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"\n\n\n\nn\n").unwrap();
    }
    let r = wait_result(child);
    assert_eq!(r.code, 24, "{r:?}");
    for want in [
        "Snapshot disk data-1",
        "every day? [Y/n]",
        "Snapshot the system volume",
        "[y/N]",
        "Enable the daily timer (lightsnap-snapshot.timer)? [Y/n]",
        "Take the first snapshot now",
        "Go ahead? [Y/n]",
        "stopped at your answer: nothing was changed",
    ] {
        assert!(r.stdout.contains(want), "{want}: {r:?}");
    }
    // The plan shown before the last question holds the defaults' choices.
    assert!(r.stdout.contains("what setup will do:"), "{r:?}");
    assert!(
        r.stdout.contains("lightsnap verify --latest --disk data-1"),
        "{r:?}"
    );
    assert!(!r.stdout.contains("--disk web-1-system"), "{r:?}");
    assert!(!s.conf("etc").exists(), "nothing written: {r:?}");
    assert!(writes(&s.fake).is_empty(), "{r:?}");
}
