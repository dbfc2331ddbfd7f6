//! The habits operators bring from other tools, on the built binary: `--version` with the
//! commit and target, `-q` and `--profile` on every command, `--disk` everywhere (with
//! `--disk-name` kept), examples in `--help`, benchmark knobs out of the users' help.

use std::process::Command;

fn lightsnap(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lightsnap"))
        .args(args)
        .env_clear()
        .output()
        .expect("lightsnap runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn the_version_names_the_commit_and_the_target() {
    let (code, out, _) = lightsnap(&["--version"]);
    assert_eq!(code, 0);
    let line = out.trim();
    assert!(
        line.starts_with(&format!("lightsnap {}", env!("CARGO_PKG_VERSION"))),
        "{line}"
    );
    assert!(line.contains("(commit "), "{line}");
    // The target triple this test was built for (the binary is built with it).
    let arch = std::env::consts::ARCH;
    assert!(line.contains(&format!("{arch}-")), "{line}");
}

/// Every subcommand takes -q and --profile, before or after its name.
#[test]
fn quiet_and_profile_are_accepted_by_every_command() {
    for sub in [
        "freeze-and-snap",
        "snap-instance",
        "run",
        "plan",
        "thaw",
        "list",
        "prune",
        "status",
        "verify",
        "check",
    ] {
        let (code, out, err) = lightsnap(&[sub, "-q", "--profile", "backup", "--help"]);
        assert_eq!(code, 0, "{sub}: {err}");
        assert!(
            out.contains("Examples:"),
            "{sub} --help has no examples: {out}"
        );
        let (code, _, err) = lightsnap(&["-q", "--profile", "backup", sub, "--help"]);
        assert_eq!(code, 0, "{sub}: {err}");
    }
}

#[test]
fn disk_is_the_option_everywhere_and_disk_name_still_works() {
    let (_, help, _) = lightsnap(&["freeze-and-snap", "--help"]);
    assert!(help.contains("--disk <NAME>"), "{help}");
    assert!(help.contains("--disk-name"), "the alias is shown: {help}");
    for sub in ["list", "prune", "check"] {
        let (_, help, _) = lightsnap(&[sub, "--help"]);
        assert!(help.contains("--disk <NAME>"), "{sub}: {help}");
    }
    // The old spelling parses (it fails later, for want of a filesystem, not as usage).
    let (code, _, err) = lightsnap(&["plan", "--disk-name", "data-1", "/nonexistent-lightsnap"]);
    assert!(!err.contains("unexpected argument"), "{code}: {err}");
}

#[test]
fn benchmark_knobs_are_out_of_the_help_but_accepted() {
    let (_, help, _) = lightsnap(&["freeze-and-snap", "--help"]);
    assert!(!help.contains("--no-syncfs"), "{help}");
    let (_, _, err) = lightsnap(&["plan", "--no-syncfs", "/nonexistent-lightsnap"]);
    assert!(!err.contains("unexpected argument"), "{err}");
}

#[test]
fn the_main_help_has_examples_and_exit_codes() {
    let (code, out, _) = lightsnap(&["--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("Examples:"), "{out}");
    assert!(out.contains("Exit codes:"), "{out}");
    let (_, short, _) = lightsnap(&["-h"]);
    assert!(short.contains("Exit codes:"), "{short}");
}

fn lightsnap_in(root: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lightsnap"))
        .args(args)
        .env_clear()
        .env("LIGHTSNAP_CONFIG_ROOT", root)
        .output()
        .expect("lightsnap runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// Fragments are refused unless root owns them: these tests write some.
fn root_or_skip(test: &str) -> bool {
    let root = nix::unistd::Uid::effective().is_root();
    if !root {
        eprintln!("skipping {test}: configuration fragments must be root's");
    }
    root
}

/// `lightsnap config` shows each setting with the file it came from (the last fragment
/// setting it), defaults as such, `--profile` as the command line's, the ping URL's secret
/// never; `--config FILE` reads that file alone.
#[test]
fn config_shows_each_setting_and_its_origin() {
    if !root_or_skip("config_shows_each_setting_and_its_origin") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path().join("etc/lightsnap");
    std::fs::create_dir_all(etc.join("config.d")).unwrap();
    let main = etc.join("config.toml");
    let drop_in = etc.join("config.d/10-timeout.toml");
    std::fs::write(
        &main,
        "freeze_timeout = \"5s\"\nping_url = \"https://hc-ping.com/secret-uuid?rid=1\"\n[retention]\nkeep_daily = 7\n",
    )
    .unwrap();
    std::fs::write(&drop_in, "freeze_timeout = \"7s\"\n").unwrap();
    let (code, out, err) = lightsnap_in(dir.path(), &["--profile", "backup", "config"]);
    assert_eq!(code, 0, "{err}");
    let line = |key: &str| {
        out.lines()
            .find(|l| l.contains(&format!("\t{key} = ")))
            .unwrap_or_else(|| panic!("no {key}: {out}"))
            .to_string()
    };
    assert_eq!(
        line("freeze_timeout"),
        format!("file:{}\tfreeze_timeout = \"7s\"", drop_in.display())
    );
    assert_eq!(
        line("retention.keep_daily"),
        format!("file:{}\tretention.keep_daily = 7", main.display())
    );
    assert!(line("hook_timeout").starts_with("default\t"), "{out}");
    assert_eq!(line("profile"), "command line\tprofile = \"backup\"");
    assert!(line("ping_url").contains("https://hc-ping.com"), "{out}");
    assert!(!out.contains("secret"), "the ping URL shown whole: {out}");

    // --config FILE: that file alone.
    let (code, out, err) = lightsnap_in(
        dir.path(),
        &[
            "--config",
            main.to_str().unwrap(),
            "config",
            "--output",
            "json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["files"], serde_json::json!([main]));
    let timeout = doc["settings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == "freeze_timeout")
        .unwrap();
    assert_eq!(timeout["value"], "\"5s\"");
}

/// `config check` validates without credentials or network: 0 when valid, 2 naming the file
/// and the key when not; a `--config` file that does not exist is 2 too.
#[test]
fn config_check_names_the_file_and_key_at_fault() {
    if !root_or_skip("config_check_names_the_file_and_key_at_fault") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path().join("etc/lightsnap");
    std::fs::create_dir_all(etc.join("config.d")).unwrap();
    std::fs::write(etc.join("config.toml"), "freeze_timeout = \"5s\"\n").unwrap();
    let (code, out, err) = lightsnap_in(dir.path(), &["config", "check"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("configuration valid"), "{out}");

    let bad = etc.join("config.d/20-typo.toml");
    std::fs::write(&bad, "[retention]\nkeep_dayly = 7\n").unwrap();
    let (code, _, err) = lightsnap_in(dir.path(), &["config", "check"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(&bad.display().to_string()), "{err}");
    assert!(err.contains("keep_dayly"), "{err}");

    std::fs::write(&bad, "freeze_timeout = \"1h\"\n").unwrap();
    let (code, _, err) = lightsnap_in(dir.path(), &["config", "check"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("freeze_timeout"), "{err}");

    let (code, _, err) = lightsnap_in(
        dir.path(),
        &["--config", "/nonexistent/lightsnap.toml", "config", "check"],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("/nonexistent/lightsnap.toml"), "{err}");
}

/// For a `cargo install`: completions and man pages from the binary itself.
#[test]
fn completions_and_man_pages_are_visible_commands() {
    for shell in ["bash", "zsh", "fish"] {
        let (code, out, err) = lightsnap(&["completions", shell]);
        assert_eq!(code, 0, "{shell}: {err}");
        assert!(out.contains("freeze-and-snap"), "{shell}: {out}");
        assert!(
            !out.contains("__generate"),
            "{shell}: a hidden command offered"
        );
    }
    let (code, out, err) = lightsnap(&["man"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(".TH lightsnap 8"), "{out}");
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = lightsnap(&["man", "--out-dir", dir.path().to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    for page in ["lightsnap.8", "lightsnap-check.8", "lightsnap.toml.5"] {
        assert!(dir.path().join(page).exists(), "{page}: {out}");
    }
    let toml = std::fs::read_to_string(dir.path().join("lightsnap.toml.5")).unwrap();
    assert!(toml.contains("keep_daily"), "{toml}");
    let (_, help, _) = lightsnap(&["--help"]);
    assert!(
        help.contains("completions") && help.contains("\n  man "),
        "{help}"
    );
}
