//! Credentials the way users are told to give them: root's `~/.aws/credentials` and
//! `~/.aws/config`, written by the real AWS CLI (`aws configure set`, as `aws configure`
//! writes them), read by lightsnap started as a system unit starts it — an environment with
//! only `PATH` and `LANG` (no `HOME`, no keys, no region) — as `env -i` and cron do too.
//!
//! Root's home is the password database's (`/root`): each run gets a private mount namespace
//! (`unshare --mount`) in which a temporary home is bind-mounted over it, so the machine's
//! own `/root` is never read or written.
//!
//! Needs root (loop devices, the namespace) and the AWS CLI (`LIGHTSNAP_AWS_CLI`, or `aws`
//! on PATH); skips, saying why, without them.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;

/// The AWS CLI: `LIGHTSNAP_AWS_CLI` (scripts/deps installs it in a virtualenv), else `aws`.
fn aws_cli(test: &str) -> Option<PathBuf> {
    if let Some(cli) = std::env::var_os("LIGHTSNAP_AWS_CLI") {
        return Some(PathBuf::from(cli));
    }
    if tool_or_skip(test, "aws") {
        return Some(PathBuf::from("aws"));
    }
    None
}

/// Writes `home/.aws/*` with `aws configure set KEY VALUE [--profile P]`, nothing else in the
/// CLI's environment pointing anywhere but `home`.
fn aws_configure(cli: &Path, home: &Path, profile: Option<&str>, settings: &[(&str, &str)]) {
    for (key, value) in settings {
        let mut cmd = Command::new(cli);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", home)
            .args(["configure", "set", key, value]);
        if let Some(p) = profile {
            cmd.args(["--profile", p]);
        }
        run(&mut cmd);
    }
}

/// Root's home in the password database (where a HOME-less root process looks).
fn root_home() -> PathBuf {
    let out = run(Command::new("getent").args(["passwd", "0"]));
    let line = String::from_utf8(out.stdout).unwrap();
    PathBuf::from(
        line.trim_end()
            .split(':')
            .nth(5)
            .expect("passwd home field"),
    )
}

/// lightsnap as a system unit runs it: `env -i` with PATH and LANG only (what systemd gives a
/// service without `User=`), plus what the harness needs to confine the run and reach the
/// fake — and `extra` — with `home` bind-mounted over root's home in a namespace of its own.
fn as_a_unit(
    scratch: &Scratch,
    fake: &fake_lightsail::Fake,
    home: &Path,
    extra: &[(&str, &str)],
    args: &[&str],
) -> RunResult {
    let mut env: Vec<(String, String)> = vec![
        (
            "PATH".into(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        ),
        ("LANG".into(), "C.UTF-8".into()),
        (
            "LIGHTSNAP_CONFINE_TO".into(),
            scratch.path().display().to_string(),
        ),
        (
            "LIGHTSNAP_RUN_DIR".into(),
            scratch.path().join("run").display().to_string(),
        ),
        (
            "LIGHTSNAP_STATE_DIR".into(),
            scratch.path().join("state").display().to_string(),
        ),
        (
            "LIGHTSNAP_CONFIG_ROOT".into(),
            conf_root(scratch).display().to_string(),
        ),
        ("AWS_ENDPOINT_URL_LIGHTSAIL".into(), fake.endpoint()),
        (
            "AWS_EC2_METADATA_SERVICE_ENDPOINT".into(),
            fake.imds_endpoint(),
        ),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let mut cmd = Command::new("unshare");
    cmd.env_clear()
        .args(["--mount", "--propagation", "private", "--", "sh", "-ec"])
        .arg("mount --bind \"$1\" \"$2\"; shift 2; exec env -i \"$@\"")
        .arg("sh")
        .arg(home)
        .arg(root_home());
    for (k, v) in &env {
        cmd.arg(format!("{k}={v}"));
    }
    cmd.arg(env!("CARGO_BIN_EXE_lightsnap"))
        .args(args)
        .stdin(Stdio::null());
    finish(&mut cmd)
}

/// A home with `.aws/` written by `aws configure set`.
fn home_with(scratch: &Scratch, name: &str) -> PathBuf {
    let home = scratch.path().join(name);
    std::fs::create_dir_all(&home).unwrap();
    home
}

#[test]
fn the_timers_run_reads_roots_aws_configure_files_without_home() {
    let test = "the_timers_run_reads_roots_aws_configure_files_without_home";
    let Some(s) = OneDisk::new(test) else { return };
    let Some(cli) = aws_cli(test) else { return };
    write_conf(
        &s.scratch,
        "etc/lightsnap/config.toml",
        &format!(
            "[[snapshot]]\npath = \"{}\"\ndisk = \"data-1\"\n",
            s.fs.mount_point.display()
        ),
    );
    let home = home_with(&s.scratch, "home");
    aws_configure(
        &cli,
        &home,
        None,
        &[
            ("aws_access_key_id", fake_lightsail::DEFAULT_ACCESS_KEY),
            ("aws_secret_access_key", fake_lightsail::DEFAULT_SECRET_KEY),
            ("region", "us-east-1"),
        ],
    );
    // What `aws configure` writes: keys in credentials, the region in config.
    let credentials = std::fs::read_to_string(home.join(".aws/credentials")).unwrap();
    let config = std::fs::read_to_string(home.join(".aws/config")).unwrap();
    assert!(
        credentials.contains("[default]")
            && credentials.contains(fake_lightsail::DEFAULT_ACCESS_KEY),
        "{credentials}"
    );
    assert!(config.contains("region = us-east-1"), "{config}");

    // An empty home first: the keys above are what makes the difference.
    let empty = home_with(&s.scratch, "empty-home");
    let r = as_a_unit(
        &s.scratch,
        &s.fake,
        &empty,
        &[],
        &["run", "--trigger", "timer"],
    );
    assert_eq!(r.code, 11, "no credentials anywhere must be exit 11: {r:?}");
    s.assert_untouched(&r);

    let r = as_a_unit(
        &s.scratch,
        &s.fake,
        &home,
        &[],
        &["run", "--trigger", "timer"],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let calls = create_calls(&s.fake);
    assert_eq!(calls.len(), 1, "{r:?}");
    assert!(!s.fs.is_frozen());
}

#[test]
fn a_named_profile_from_aws_profile_is_read_without_home() {
    let test = "a_named_profile_from_aws_profile_is_read_without_home";
    if !root_or_skip(test) {
        return;
    }
    let Some(cli) = aws_cli(test) else { return };
    let scratch = Scratch::new();
    let fake = fake(&scratch, seed(&[("data-1", Path::new("/dev/xvdf"))], None));
    let home = home_with(&scratch, "home");
    // The default profile's keys are wrong; the named one's are right, and so is its region
    // (the default profile has none).
    aws_configure(
        &cli,
        &home,
        None,
        &[
            ("aws_access_key_id", "AKIDWRONG"),
            ("aws_secret_access_key", "wrong"),
        ],
    );
    aws_configure(
        &cli,
        &home,
        Some("snapper"),
        &[
            ("aws_access_key_id", fake_lightsail::DEFAULT_ACCESS_KEY),
            ("aws_secret_access_key", fake_lightsail::DEFAULT_SECRET_KEY),
            ("region", "us-east-1"),
        ],
    );
    let config = std::fs::read_to_string(home.join(".aws/config")).unwrap();
    assert!(config.contains("[profile snapper]"), "{config}");

    let list = ["list", "--output", "json"];
    let r = as_a_unit(
        &scratch,
        &fake,
        &home,
        &[("AWS_REGION", "us-east-1")],
        &list,
    );
    assert_eq!(
        r.code, 11,
        "the default profile's keys must be refused: {r:?}"
    );
    let r = as_a_unit(&scratch, &fake, &home, &[("AWS_PROFILE", "snapper")], &list);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(json_doc(&r)["snapshots"].is_array(), "{r:?}");
    // The configuration's `profile` names it as well as AWS_PROFILE does.
    write_conf(
        &scratch,
        "etc/lightsnap/config.toml",
        "profile = \"snapper\"\n",
    );
    let r = as_a_unit(&scratch, &fake, &home, &[], &list);
    assert_eq!(r.code, 0, "{r:?}");
}
