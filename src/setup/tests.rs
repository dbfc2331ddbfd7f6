//! The plan and its idempotence, without root: facts in, actions out, carried out on a
//! recording machine whose state the next plan reads back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::*;

/// A machine that keeps files in memory and records everything else.
#[derive(Default)]
struct Recorder {
    files: BTreeMap<PathBuf, (Vec<u8>, u32)>,
    timer: bool,
    calls: Vec<String>,
    /// Exit codes the lightsnap children answer with, in order (0 once they run out).
    codes: Vec<i32>,
}

impl Machine for Recorder {
    fn write(&mut self, path: &Path, contents: &[u8], mode: u32) -> Result<()> {
        self.calls.push(format!("write {}", path.display()));
        self.files
            .insert(path.to_path_buf(), (contents.to_vec(), mode));
        Ok(())
    }

    fn systemctl(&mut self, args: &[&str]) -> Result<bool> {
        self.calls.push(format!("systemctl {}", args.join(" ")));
        if args.first() == Some(&"enable") {
            self.timer = true;
        }
        Ok(true)
    }

    fn lightsnap(&mut self, args: &[String], env: &[(String, String)]) -> Result<i32> {
        let env: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        self.calls.push(
            format!("lightsnap {} {}", args.join(" "), env.join(" "))
                .trim_end()
                .to_string(),
        );
        Ok(if self.codes.is_empty() {
            0
        } else {
            self.codes.remove(0)
        })
    }
}

fn target(disk: &str, system: bool, mps: &[&str]) -> Target {
    Target {
        disk: disk.into(),
        system,
        mount_points: mps.iter().map(PathBuf::from).collect(),
        auto_snapshot: None,
        verified: None,
    }
}

fn facts() -> Facts {
    Facts {
        instance: "web-1".into(),
        targets: vec![
            target("data-1", false, &["/data", "/srv"]),
            target("web-1-system", true, &["/"]),
        ],
        databases: vec![Running {
            database: Database::PostgreSql,
            found_by: "process postgres, pid 9".into(),
            // Another cluster, on a disk setup does not know: ignored.
            data_dirs: vec!["/elsewhere/pg".into(), "/data/pg/15/main".into()],
        }],
        hooks: vec![
            HookFile {
                database: Database::PostgreSql,
                path: "/etc/lightsnap/hooks.d/10-postgresql".into(),
                wanted: b"#!/bin/sh\n".to_vec(),
                now: None,
            },
            HookFile {
                database: Database::PostgreSql,
                path: "/etc/lightsnap/verify.d/10-postgresql".into(),
                wanted: b"#!/bin/sh\n".to_vec(),
                now: None,
            },
        ],
        fragment_path: "/etc/lightsnap/config.d/50-setup.toml".into(),
        fragment_now: None,
        timer_on: false,
        warnings: Vec::new(),
    }
}

/// The facts as they are after `machine` applied a plan, and the first snapshot verified.
fn after(mut f: Facts, m: &Recorder) -> Facts {
    f.fragment_now = m
        .files
        .get(&f.fragment_path)
        .map(|(c, _)| String::from_utf8(c.clone()).unwrap());
    for h in &mut f.hooks {
        h.now = m.files.get(&h.path).map(|(c, _)| c.clone());
    }
    f.timer_on = m.timer;
    let verified = m.calls.iter().any(|c| c.starts_with("lightsnap verify"));
    for t in &mut f.targets {
        if verified
            && m.calls
                .iter()
                .any(|c| c.contains(&format!("--disk {}", t.disk)))
        {
            t.verified = Some(format!("{}-1", t.disk));
        }
    }
    f
}

#[test]
fn the_defaults_take_data_disks_and_leave_the_system_volume_unless_it_is_alone() {
    let f = facts();
    assert_eq!(Choices::defaults(&f, None).targets, [true, false]);
    assert_eq!(Choices::defaults(&f, Some(true)).targets, [true, true]);
    let alone = Facts {
        targets: vec![target("web-1-system", true, &["/"])],
        ..facts()
    };
    assert_eq!(Choices::defaults(&alone, None).targets, [true]);
    assert_eq!(Choices::defaults(&alone, Some(false)).targets, [false]);
}

#[test]
fn a_first_setup_writes_installs_enables_snapshots_and_verifies_in_that_order() {
    let f = facts();
    let actions = plan(&f, &Choices::defaults(&f, None)).unwrap();
    let mut m = Recorder::default();
    let mut out = Vec::new();
    apply(&mut m, &actions, &mut out).unwrap();
    assert_eq!(
        m.calls,
        [
            "write /etc/lightsnap/config.d/50-setup.toml",
            "write /etc/lightsnap/hooks.d/10-postgresql",
            "write /etc/lightsnap/verify.d/10-postgresql",
            "systemctl enable --now lightsnap-snapshot.timer",
            "lightsnap run --wait",
            // The cluster is below /data: the verify hook is told where.
            "lightsnap verify --latest --disk data-1 LIGHTSNAP_PG_VERIFY_DATA=pg/15/main",
        ]
    );
    let (fragment, mode) = &m.files[Path::new("/etc/lightsnap/config.d/50-setup.toml")];
    assert_eq!(*mode, 0o644);
    let text = String::from_utf8(fragment.clone()).unwrap();
    assert!(
        text.contains("[[snapshot]]\npath = \"/data\"\n[[snapshot]]\npath = \"/srv\"\n"),
        "{text}"
    );
    assert!(!text.contains("path = \"/\"\n"), "{text}");
    assert_eq!(
        m.files[Path::new("/etc/lightsnap/hooks.d/10-postgresql")].1,
        0o755
    );
    // The fragment is valid configuration.
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("etc/lightsnap/config.d");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(conf.join("50-setup.toml"), &text).unwrap();
    if nix::unistd::Uid::effective().is_root() {
        let settings = crate::config::load(dir.path()).unwrap();
        let paths: Vec<&Path> = settings
            .snapshots
            .iter()
            .map(|s| s.path.as_path())
            .collect();
        assert_eq!(paths, [Path::new("/data"), Path::new("/srv")]);
    }
    let said = String::from_utf8(out).unwrap();
    assert_eq!(said.lines().count(), 6, "{said}");

    // The second time: nothing at all.
    let f2 = after(f, &m);
    assert_eq!(plan(&f2, &Choices::defaults(&f2, None)).unwrap(), []);
}

#[test]
fn a_mariadb_on_the_data_disk_gets_both_hooks_and_its_verify_is_told_where_its_data_is() {
    let hook = |dir: &str| HookFile {
        database: Database::MySql,
        path: format!("/etc/lightsnap/{dir}/20-mysql").into(),
        wanted: b"#!/bin/bash\n".to_vec(),
        now: None,
    };
    let f = Facts {
        databases: vec![Running {
            database: Database::MySql,
            found_by: "process mariadbd, pid 700".into(),
            data_dirs: vec!["/data/mysql".into()],
        }],
        hooks: vec![hook("hooks.d"), hook("verify.d")],
        ..facts()
    };
    let actions = plan(&f, &Choices::defaults(&f, None)).unwrap();
    let mut m = Recorder::default();
    apply(&mut m, &actions, &mut Vec::new()).unwrap();
    assert_eq!(
        m.calls,
        [
            "write /etc/lightsnap/config.d/50-setup.toml",
            "write /etc/lightsnap/hooks.d/20-mysql",
            "write /etc/lightsnap/verify.d/20-mysql",
            "systemctl enable --now lightsnap-snapshot.timer",
            "lightsnap run --wait",
            "lightsnap verify --latest --disk data-1 LIGHTSNAP_MYSQL_VERIFY_DATA=mysql",
        ]
    );
    let f2 = after(f, &m);
    assert_eq!(plan(&f2, &Choices::defaults(&f2, None)).unwrap(), []);
}

#[test]
fn a_verified_snapshot_is_not_taken_again_but_a_new_target_is() {
    let mut f = facts();
    f.targets[0].verified = Some("data-1-1".into());
    let actions = plan(&f, &Choices::defaults(&f, None)).unwrap();
    assert!(!actions.contains(&Action::Snapshot), "{actions:?}");
    // The system volume chosen as well: one run (of everything), one verify (the new one).
    let actions = plan(&f, &Choices::defaults(&f, Some(true))).unwrap();
    let runs: Vec<&Action> = actions
        .iter()
        .filter(|a| matches!(a, Action::Snapshot | Action::Verify { .. }))
        .collect();
    assert_eq!(
        runs,
        [
            &Action::Snapshot,
            // The other cluster is on the system volume (under `/`, on no other disk).
            &Action::Verify {
                disk: "web-1-system".into(),
                env: vec![("LIGHTSNAP_PG_VERIFY_DATA".into(), "elsewhere/pg".into())]
            }
        ]
    );
}

#[test]
fn declined_things_are_left_alone_and_nothing_chosen_is_refused() {
    let f = facts();
    let choices = Choices {
        targets: vec![true, false],
        hooks: vec![false],
        timer: false,
        snapshot: false,
    };
    let actions = plan(&f, &choices).unwrap();
    assert_eq!(actions.len(), 1, "{actions:?}");
    assert!(matches!(&actions[0], Action::Write { path, .. } if path == &f.fragment_path));
    let none = Choices {
        targets: vec![false, false],
        ..choices
    };
    let err = plan(&f, &none).unwrap_err();
    assert_eq!(ExitCode::of(&err), ExitCode::Usage, "{err:#}");
}

#[test]
fn a_changed_fragment_is_written_again_but_an_edited_hook_is_kept() {
    let f = facts();
    let mut m = Recorder::default();
    apply(
        &mut m,
        &plan(&f, &Choices::defaults(&f, None)).unwrap(),
        &mut Vec::new(),
    )
    .unwrap();
    let mut f2 = after(f, &m);
    f2.hooks[1].now = Some(b"#!/bin/sh\n# edited\n".to_vec());
    f2.fragment_now = Some("# edited\n".into());
    let actions = plan(&f2, &Choices::defaults(&f2, None)).unwrap();
    let written: Vec<&Path> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Write { path, .. } => Some(path.as_path()),
            _ => None,
        })
        .collect();
    assert_eq!(
        written,
        [Path::new("/etc/lightsnap/config.d/50-setup.toml")]
    );
}

#[test]
fn a_failed_first_snapshot_stops_with_its_exit_code() {
    let f = facts();
    let mut m = Recorder {
        codes: vec![16],
        ..Recorder::default()
    };
    let err = apply(
        &mut m,
        &plan(&f, &Choices::defaults(&f, None)).unwrap(),
        &mut Vec::new(),
    )
    .unwrap_err();
    assert_eq!(ExitCode::of(&err), ExitCode::HookFailed, "{err:#}");
    assert!(
        !m.calls.iter().any(|c| c.starts_with("lightsnap verify")),
        "no verify after a failed snapshot: {:?}",
        m.calls
    );
}

#[test]
fn paths_are_quoted_as_toml_strings() {
    let t = target("data-1", false, &["/mnt/a \"b\"\\c"]);
    let text = fragment("web-1", &[&t]).unwrap();
    let parsed: toml::Value = toml::from_str(&text).unwrap();
    assert_eq!(
        parsed["snapshot"][0]["path"].as_str(),
        Some("/mnt/a \"b\"\\c")
    );
}

#[test]
fn answers_default_on_empty_and_end_of_input_and_ask_again_otherwise() {
    let mut out = Vec::new();
    assert!(ask(&mut &b"\n"[..], &mut out, "Q?", true));
    assert!(!ask(&mut &b""[..], &mut out, "Q?", false));
    assert!(!ask(&mut &b"maybe\nno\n"[..], &mut out, "Q?", true));
    assert!(ask(&mut &b"Y\n"[..], &mut out, "Q?", false));
    let said = String::from_utf8(out).unwrap();
    assert!(said.contains("Q? [Y/n] "), "{said}");
    assert!(said.contains("Q? [y/N] "), "{said}");
    assert!(said.contains("please answer y or n"), "{said}");
}
