//! The configuration's tests: fragments merged in order, errors that name their file and
//! line, the packaged file, and the name template.

use super::*;
use crate::exit_code::ExitCode;

fn write(root: &Path, rel: &str, text: &str) -> PathBuf {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    p
}

fn root_only() -> bool {
    nix::unistd::Uid::effective().is_root()
}

#[test]
fn templates_render() {
    let t = std::time::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
    assert_eq!(
        render_name(DEFAULT_NAME_TEMPLATE, "data-1", t).unwrap(),
        "data-1-20261118-110640"
    );
    assert_eq!(render_name("x-{utc:%Y}", "d", t).unwrap(), "x-2026");
    assert!(render_name("{nope}", "d", t).is_err());
    assert!(render_name("{utc:%q}", "d", t).is_err());
    assert!(render_name("{disk", "d", t).is_err());
    for bad in ["{utc:%Y%}", "{utc:%%}", "{utc:%a}", "{utc:%-d}"] {
        let err = render_name(bad, "d", t).unwrap_err().to_string();
        assert!(
            err.contains("is not one of %Y %m %d %H %M %S"),
            "{bad}: {err}"
        );
    }
    assert!(
        template::check("{disk}.{utc:%Y}").is_err(),
        "'.' is not allowed in names"
    );
}

/// The date fields are the UTC time's, as its RFC 3339 form (what names were cut from before
/// jiff made them) shows it: across a leap day, a year's end, fractions of a second, and a
/// spread of instants up to the year 9999.
#[test]
fn utc_fields_agree_with_rfc3339() {
    let mut next = crate::testing::xorshift();
    let mut times: Vec<Duration> = [0, 951_782_400, 1_709_164_799, 1_735_689_599, 1_735_689_600]
        .into_iter()
        .map(Duration::from_secs)
        .collect();
    times.push(Duration::new(1_795_000_000, 999_999_999));
    for _ in 0..500 {
        times.push(Duration::new(
            next() % 253_402_300_800,
            (next() % 1_000_000_000) as u32,
        ));
    }
    for since in times {
        let t = std::time::UNIX_EPOCH + since;
        let rfc3339 = humantime::format_rfc3339_seconds(t).to_string();
        let expected: String = rfc3339[..19].chars().filter(char::is_ascii_digit).collect();
        assert_eq!(
            render_name("{utc:%Y%m%d%H%M%S}", "d", t).unwrap(),
            expected,
            "{rfc3339}"
        );
    }
}

#[test]
fn fragments_merge_in_order_and_later_wins() {
    if !root_only() {
        eprintln!("skipping: configuration files must be root-owned, and this is not root");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    write(
        r,
        "usr/lib/lightsnap/config.d/10-vendor.toml",
        "freeze_timeout = \"5s\"\n[tags]\nowner = \"vendor\"\n",
    );
    write(r, "etc/lightsnap/config.toml", "[tags]\nowner = \"admin\"\nenv = \"prod\"\n[[snapshot]]\npath = \"/data\"\ndisk = \"data-1\"\n");
    write(r, "run/lightsnap/config.d/50.toml", "freeze_timeout = \"2s\"\n[retention]\nkeep = 3\n[[snapshot]]\npath = \"/data\"\ndisk = \"data-2\"\n");
    let s = load(r).unwrap();
    assert_eq!(s.freeze_timeout, Duration::from_secs(2));
    assert_eq!(
        s.tags,
        vec![
            ("env".into(), "prod".into()),
            ("owner".into(), "admin".into())
        ]
    );
    assert_eq!(s.retention.keep, Some(3));
    assert_eq!(s.snapshots.len(), 1);
    assert_eq!(s.disk_for(&[Path::new("/data")]), Some("data-2"));
    assert_eq!(s.sources.len(), 3);
}

#[test]
fn bad_fragments_name_the_file_and_line() {
    if !root_only() {
        eprintln!("skipping: configuration files must be root-owned, and this is not root");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let p = write(
        root.path(),
        "etc/lightsnap/config.toml",
        "freeze_timeout = \"5s\"\nfreez_timeout = \"1s\"\n",
    );
    let err = load(root.path()).unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains(&p.display().to_string()), "{text}");
    assert!(text.contains("line 2"), "{text}");
    assert_eq!(ExitCode::of(&err), ExitCode::Usage);

    std::fs::write(&p, "freeze_timeout = \"soon\"\n").unwrap();
    let text = format!("{:#}", load(root.path()).unwrap_err());
    assert!(text.contains("freeze_timeout"), "{text}");

    std::fs::write(&p, "[tags]\n\"bad;key\" = \"v\"\n").unwrap();
    assert!(load(root.path()).is_err());
}

#[test]
fn bad_values_name_their_line_too() {
    for (text, line) in [
        ("\nfreeze_timeout = \"soon\"\n", 2),
        ("hook_timeout = \"0s\"\n", 1),
        ("name_template = \"{disk}.x\"\n", 1),
        ("hook_dir = \"hooks.d\"\n", 1),
        ("[retention]\nolder_than = \"1 fortnight\"\n", 2),
        ("[tags]\nok = \"1\"\n\"a;b\" = \"v\"\n", 3),
        ("[tags]\nok = \"a;b\"\n", 2),
        ("[tags]\n\"lightsnap:host\" = \"h\"\n", 2),
        ("[[snapshot]]\npath = \"data\"\n", 2),
        ("[[snapshot]]\npath = \"/data\"\ndisk = \"a.b\"\n", 3),
        ("\nverify_every = 0\n", 2),
        ("verify_hook_dir = \"verify.d\"\n", 1),
        ("\n\ncopy_to_region = \"the moon\"\n", 3),
    ] {
        let err = toml::from_str::<fragments::Fragment>(text)
            .unwrap_err()
            .to_string();
        assert!(err.contains(&format!("line {line}")), "{text:?}: {err}");
    }
    let ok: fragments::Fragment =
        toml::from_str("freeze_timeout = \"2s\"\n[tags]\nenv = \"prod\"\n").unwrap();
    assert_eq!(ok.freeze_timeout.as_deref(), Some("2s"));
    assert_eq!(ok.tags["env"], "prod");
}

#[test]
fn writable_fragments_are_refused() {
    if !root_only() {
        eprintln!("skipping: configuration files must be root-owned, and this is not root");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    let p = write(root.path(), "etc/lightsnap/config.toml", "");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666)).unwrap();
    let err = load(root.path()).unwrap_err();
    assert_eq!(ExitCode::of(&err), ExitCode::Permission);
    assert!(err.to_string().contains("chmod go-w"), "{err}");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(load(root.path()).is_ok());
}

/// What the packages install as `/etc/lightsnap/config.toml`.
const PACKAGED: &str = include_str!("../../packaging/config.toml");

fn write_root_only(root: &Path, rel: &str, text: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = write(root, rel, text);
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    p
}

#[test]
fn the_packaged_config_gives_the_defaults() {
    if !root_only() {
        eprintln!("skipping: configuration files must be root-owned, and this is not root");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let p = write_root_only(root.path(), "etc/lightsnap/config.toml", PACKAGED);
    let s = load(root.path()).unwrap();
    assert_eq!(s.sources, vec![p], "the packaged file is read");
    assert_eq!(
        Settings {
            hook_dir: Settings::default().hook_dir,
            verify_hook_dir: Settings::default().verify_hook_dir,
            sources: Vec::new(),
            ..s
        },
        Settings::default(),
        "everything in the packaged file is commented out"
    );
}

#[test]
fn the_packaged_config_examples_are_valid_and_show_the_defaults() {
    if !root_only() {
        eprintln!("skipping: configuration files must be root-owned, and this is not root");
        return;
    }
    // Uncomment every setting (`#key`, `#[table]`), leaving the prose (`# ...`) alone.
    let uncommented: String = PACKAGED
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest) if !rest.is_empty() && !rest.starts_with(' ') => rest,
            _ => l,
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let root = tempfile::tempdir().unwrap();
    write_root_only(root.path(), "etc/lightsnap/config.toml", &uncommented);
    let s = load(root.path()).unwrap();
    let d = Settings::default();
    assert_eq!(s.freeze_timeout, d.freeze_timeout);
    assert_eq!(s.name_template, d.name_template);
    assert_eq!(s.hook_dir, d.hook_dir);
    assert_eq!(s.hook_timeout, d.hook_timeout);
    assert_eq!(s.tags.len(), 2);
    assert_eq!(s.retention.keep, Some(7));
    assert_eq!(
        s.retention.older_than,
        Some(Duration::from_secs(30 * 86400))
    );
    assert_eq!(s.snapshots.len(), 2);
    assert_eq!(s.disk_for(&[Path::new("/data")]), Some("data-1"));
    assert_eq!(s.verify_hook_dir, d.verify_hook_dir);
    assert_eq!(s.verify_every, Some(7));
    assert_eq!(s.copy_to_region.as_deref(), Some("eu-west-1"));
    assert_eq!(s.run_budget, d.run_budget);
}

#[test]
fn no_files_means_defaults() {
    let root = tempfile::tempdir().unwrap();
    let s = load(root.path()).unwrap();
    assert_eq!(s.hook_dir, root.path().join("etc/lightsnap/hooks.d"));
    assert_eq!(
        s.verify_hook_dir,
        root.path().join("etc/lightsnap/verify.d")
    );
    assert_eq!(
        Settings {
            hook_dir: Settings::default().hook_dir,
            verify_hook_dir: Settings::default().verify_hook_dir,
            ..s
        },
        Settings::default()
    );
}

#[test]
fn exclude_patterns_add_up_across_fragments_and_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    write(r, "etc/lightsnap/config.toml", "exclude = [\"/mnt/*\"]\n");
    write(
        r,
        "etc/lightsnap/config.d/10.toml",
        "exclude = [\"/media/usb\"]\n",
    );
    let s = load(r).unwrap();
    assert_eq!(s.exclude, ["/mnt/*", "/media/usb"]);
    let patterns: Vec<glob::Pattern> = s
        .exclude
        .iter()
        .map(|p| crate::config::exclude_pattern(p).unwrap())
        .collect();
    assert!(crate::config::excluded(Path::new("/mnt/a"), &patterns));
    assert!(
        !crate::config::excluded(Path::new("/mnt/a/b"), &patterns),
        "* stays in one component"
    );
    assert!(!crate::config::excluded(Path::new("/data"), &patterns));
    write(r, "etc/lightsnap/config.d/20.toml", "exclude = [\"mnt\"]\n");
    let err = load(r).unwrap_err();
    assert!(
        format!("{err:#}").contains("must be an absolute mount point pattern"),
        "{err:#}"
    );
}
