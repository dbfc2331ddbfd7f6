//! The packages (issue 7), tested by building and installing them.
//!
//! `scripts/package` builds the .deb and the .rpm. lintian checks the .deb and rpmlint the
//! .rpm (with the filters of `packaging/rpm/rpmlintrc`), and rpm's queries show the files,
//! the configuration file and the scriptlets. Each package is then installed into a
//! throw-away root with `dpkg --root` / `rpm --root`; a static busybox is that root's shell,
//! so the maintainer scripts really run, chrooted there. In it, `systemd-analyze verify`
//! checks the units, the man pages render with `man -l`, the bash completion loads and
//! completes, and the installed lightsnap runs and reads the packaged configuration. Then the
//! package is removed (and purged), and the root must be as it was, but for the changed
//! configuration file.
//!
//! Without root: the shell scripts pass shellcheck, the pre-deploy script passes the deploy
//! id on and stops a deploy when the snapshot fails, the MySQL example hook holds its session
//! from pre-freeze to post-thaw (against a stand-in `mysql`), and the changelog names this
//! version.
//!
//! The package test is root only (chroot) and slow: a release build, and the first time,
//! cargo-deb and cargo-generate-rpm installed into target/tools. CI runs it as root; there,
//! not being root or a missing tool fails it instead of skipping it.

mod common;

use std::collections::BTreeSet;

use common::{root_or_skip, run, tool_or_skip};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------
// Helpers (root_or_skip, tool_or_skip and run come from tests/common)
// ---------------------------------------------------------------------------------------

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn stdout_of(cmd: &mut Command) -> String {
    text(&run(cmd).stdout)
}

/// A throw-away root to install a package into: a static busybox as its /bin/sh (and the
/// other commands the package scripts use), /dev/null, empty dpkg and rpm databases, and a
/// copy of the host's systemd units (for `systemd-analyze verify --root`).
struct Root {
    dir: tempfile::TempDir,
}

impl Root {
    fn new() -> Root {
        let dir = tempfile::Builder::new()
            .prefix("lightsnap-pkgroot-")
            .tempdir()
            .unwrap();
        let root = Root { dir };
        let p = root.path();
        for d in [
            "bin",
            "dev",
            "var/lib/dpkg/info",
            "var/lib/dpkg/updates",
            "var/lib/dpkg/triggers",
            "usr/lib/systemd",
        ] {
            std::fs::create_dir_all(p.join(d)).unwrap();
        }
        std::fs::write(p.join("var/lib/dpkg/status"), "").unwrap();
        std::fs::copy(busybox(), p.join("bin/busybox")).unwrap();
        run(Command::new("chroot")
            .arg(p)
            .args(["/bin/busybox", "--install", "-s", "/bin"]));
        run(Command::new("mknod")
            .args(["-m", "666"])
            .arg(p.join("dev/null"))
            .args(["c", "1", "3"]));
        run(Command::new("cp")
            .arg("-a")
            .arg(host_unit_dir())
            .arg(p.join("usr/lib/systemd/system")));
        run(Command::new("rpm")
            .arg(format!("--root={}", p.display()))
            .args(["--dbpath=/var/lib/rpm", "--initdb"]));
        root
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn at(&self, rel: &str) -> PathBuf {
        self.path().join(rel.trim_start_matches('/'))
    }

    /// Every path in the root (files, links, directories), relative, but the package
    /// databases and logs under var/.
    fn listing(&self) -> BTreeSet<String> {
        fn walk(base: &Path, dir: &Path, out: &mut BTreeSet<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                let rel = path
                    .strip_prefix(base)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                if rel == "var" {
                    continue;
                }
                out.insert(rel);
                if path.is_dir() && !path.is_symlink() {
                    walk(base, &path, out);
                }
            }
        }
        let mut out = BTreeSet::new();
        walk(self.path(), self.path(), &mut out);
        out
    }

    /// What `before` does not have.
    fn added_since(&self, before: &BTreeSet<String>) -> BTreeSet<String> {
        self.listing().difference(before).cloned().collect()
    }
}

/// The static busybox of Debian's busybox-static (a dynamic one would need its libraries in
/// the root).
fn busybox() -> PathBuf {
    for p in ["/bin/busybox", "/usr/bin/busybox"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!("no busybox (Debian package busybox-static)");
}

fn host_unit_dir() -> &'static str {
    if Path::new("/usr/lib/systemd/system/sysinit.target").exists() {
        "/usr/lib/systemd/system"
    } else {
        "/lib/systemd/system"
    }
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Every path each package installs, directories apart.
fn common_files(man_suffix: &str) -> Vec<String> {
    let mut files: Vec<String> = [
        "usr/bin/lightsnap",
        "etc/lightsnap/config.toml",
        "usr/share/bash-completion/completions/lightsnap",
        "usr/share/fish/vendor_completions.d/lightsnap.fish",
        "usr/share/lightsnap/pre-deploy",
        "usr/share/lightsnap/examples/hooks/postgresql",
        "usr/share/lightsnap/examples/hooks/mysql",
        "usr/share/doc/lightsnap/README.md",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for page in MAN_PAGES {
        files.push(format!("usr/share/man/man8/{page}.8{man_suffix}"));
    }
    files
}

const MAN_PAGES: &[&str] = &[
    "lightsnap",
    "lightsnap-freeze-and-snap",
    "lightsnap-snap-instance",
    "lightsnap-run",
    "lightsnap-plan",
    "lightsnap-thaw",
    "lightsnap-list",
    "lightsnap-prune",
];

const UNITS: &[&str] = &[
    "lightsnap-snapshot.service",
    "lightsnap-snapshot.timer",
    "lightsnap-recover.service",
];

/// Fails on a maintainer script or scriptlet that enables or starts anything.
fn assert_enables_and_starts_nothing(scripts: &str) {
    for line in scripts.lines().filter(|l| l.contains("systemctl")) {
        let words: Vec<&str> = line.split_whitespace().collect();
        for verb in ["enable", "start", "restart", "reenable", "preset", "unmask"] {
            assert!(
                !words.contains(&verb),
                "a package script runs `systemctl {verb}`: {line}"
            );
        }
    }
}

/// What both packages must give, checked in the root they were installed into.
fn check_installed(root: &Root, unit_dir: &str) {
    let r = root.path();

    // The files are the repository's, with their modes, owned by root.
    let same = |installed: &str, source: &str| {
        assert_eq!(
            std::fs::read(root.at(installed)).unwrap(),
            std::fs::read(repo().join(source)).unwrap(),
            "{installed} is {source}"
        );
    };
    same("etc/lightsnap/config.toml", "packaging/config.toml");
    same("usr/share/lightsnap/pre-deploy", "packaging/pre-deploy");
    for hook in ["postgresql", "mysql"] {
        same(
            &format!("usr/share/lightsnap/examples/hooks/{hook}"),
            &format!("packaging/examples/hooks/{hook}"),
        );
    }
    for unit in UNITS {
        same(
            &format!("{unit_dir}/{unit}"),
            &format!("packaging/systemd/{unit}"),
        );
    }
    let mode = |p: &str| {
        let m = std::fs::metadata(root.at(p)).unwrap();
        assert_eq!(m.uid(), 0, "{p} is root's");
        m.mode() & 0o7777
    };
    assert_eq!(mode("usr/bin/lightsnap"), 0o755);
    assert_eq!(mode("usr/share/lightsnap/pre-deploy"), 0o755);
    assert_eq!(mode("usr/share/lightsnap/examples/hooks/mysql"), 0o755);
    assert_eq!(mode("etc/lightsnap/config.toml"), 0o644);

    // The hook directory is there and empty; nothing is enabled.
    let hooks = root.at("etc/lightsnap/hooks.d");
    assert!(
        hooks.is_dir(),
        "the package scripts made {}",
        hooks.display()
    );
    assert_eq!(std::fs::read_dir(&hooks).unwrap().count(), 0);
    assert!(
        !root.at("etc/systemd").exists(),
        "no unit is enabled: {:?}",
        root.listing()
            .into_iter()
            .filter(|p| p.starts_with("etc/systemd"))
            .collect::<Vec<_>>()
    );

    // The installed binary runs.
    let lightsnap = root.at("usr/bin/lightsnap");
    let version = stdout_of(Command::new(&lightsnap).arg("--version"));
    assert_eq!(version.trim(), format!("lightsnap {VERSION}"));

    // It reads the packaged configuration: no error about the file, only that it names
    // nothing to snapshot (everything in it is commented out).
    let run_dir = tempfile::tempdir().unwrap();
    let out = Command::new(&lightsnap)
        .args(["run", "--dry-run"])
        .env("LIGHTSNAP_CONFIG_ROOT", r)
        .env("LIGHTSNAP_RUN_DIR", run_dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        text(&out.stderr).contains("the configuration names nothing to snapshot"),
        "{}",
        text(&out.stderr)
    );

    // The man pages render, without a warning from groff.
    for page in MAN_PAGES {
        let file = std::fs::read_dir(root.at("usr/share/man/man8"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                let name = p.file_name().unwrap().to_string_lossy();
                name == format!("{page}.8") || name == format!("{page}.8.gz")
            })
            .unwrap_or_else(|| panic!("no man page {page}(8)"));
        let out = run(Command::new("man")
            .args(["--warnings", "-l"])
            .arg(&file)
            .env("MANWIDTH", "80")
            .env("LC_ALL", "C.UTF-8"));
        let (page_text, warnings) = (text(&out.stdout), text(&out.stderr));
        assert!(warnings.trim().is_empty(), "{page}(8): {warnings}");
        assert!(page_text.contains("SYNOPSIS"), "{page}(8):\n{page_text}");
        if *page == "lightsnap" {
            for needle in [
                "EXIT STATUS",
                "freeze deadline passed",
                "129/130/143",
                "FILES",
                "/etc/lightsnap/hooks.d/",
                "lightsnap-freeze-and-snap(8)",
            ] {
                assert!(page_text.contains(needle), "{needle} in:\n{page_text}");
            }
        }
    }

    // The bash completion loads, and completes subcommands and options.
    let completion = root.at("usr/share/bash-completion/completions/lightsnap");
    let script = format!(
        "source '{}' || exit 1\n\
         complete -p lightsnap\n\
         COMP_WORDS=(lightsnap fre); COMP_CWORD=1; _lightsnap lightsnap fre lightsnap\n\
         echo \"subcommands: ${{COMPREPLY[*]}}\"\n\
         COMP_WORDS=(lightsnap thaw --rec); COMP_CWORD=2; _lightsnap lightsnap --rec thaw\n\
         echo \"options: ${{COMPREPLY[*]}}\"\n",
        completion.display()
    );
    let out = stdout_of(Command::new("bash").args(["--norc", "--noprofile", "-c", &script]));
    assert!(out.contains("-F _lightsnap lightsnap"), "{out}");
    assert!(out.contains("subcommands: freeze-and-snap"), "{out}");
    assert!(out.contains("options: --recover"), "{out}");

    // The units pass systemd-analyze verify in the root (where /usr/bin/lightsnap and the
    // man pages of their Documentation= are), without a word of complaint.
    let units: Vec<String> = UNITS.iter().map(|u| format!("/{unit_dir}/{u}")).collect();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", r.display()))
        .args(&units)
        .env("MANPATH", root.at("usr/share/man"))
        .env("SYSTEMD_LOG_COLOR", "0")
        .output()
        .unwrap();
    assert!(
        out.status.success() && text(&out.stderr).trim().is_empty(),
        "systemd-analyze verify {units:?}: {}\n{}{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

fn build_packages() -> (PathBuf, PathBuf) {
    let out = run(Command::new(repo().join("scripts/package")).current_dir(repo()));
    let listed = text(&out.stdout);
    let find = |suffix: &str| -> PathBuf {
        let line = listed
            .lines()
            .find(|l| l.ends_with(suffix))
            .unwrap_or_else(|| panic!("scripts/package printed no {suffix}: {listed}"));
        repo().join(line.trim())
    };
    (find(".deb"), find(".rpm"))
}

// ---------------------------------------------------------------------------------------
// The packages: built, linted, installed, removed
// ---------------------------------------------------------------------------------------

#[test]
fn packages_build_pass_their_linters_install_work_and_remove_cleanly() {
    let test = "packages_build_pass_their_linters_install_work_and_remove_cleanly";
    if !root_or_skip(test) {
        return;
    }
    for tool in [
        "dpkg",
        "dpkg-deb",
        "lintian",
        "rpm",
        "rpmlint",
        "man",
        "systemd-analyze",
        "busybox",
        "chroot",
        "bash",
    ] {
        if !tool_or_skip(test, tool) {
            return;
        }
    }
    let started = Instant::now();
    let (deb, rpm) = build_packages();
    eprintln!(
        "built {} and {} in {:?}",
        deb.display(),
        rpm.display(),
        started.elapsed()
    );
    assert!(deb
        .file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with(&format!("lightsnap_{VERSION}-1_")));
    check_deb(&deb);
    check_rpm(&rpm);
}

fn check_deb(deb: &Path) {
    // The control data: the configuration file is a conffile; the scripts enable nothing.
    let conffiles = stdout_of(
        Command::new("dpkg-deb")
            .arg("--info")
            .arg(deb)
            .arg("conffiles"),
    );
    assert_eq!(conffiles.trim(), "/etc/lightsnap/config.toml");
    let mut scripts = String::new();
    for script in ["postinst", "prerm", "postrm"] {
        scripts += &stdout_of(Command::new("dpkg-deb").arg("--info").arg(deb).arg(script));
    }
    assert_enables_and_starts_nothing(&scripts);
    assert!(scripts.contains("[ -d /run/systemd/system ]"));

    // lintian: no errors (its warnings are printed, and allowed).
    let out = Command::new("lintian")
        .args(["--fail-on", "error", "--tag-display-limit", "0"])
        .arg(deb)
        .output()
        .unwrap();
    eprintln!("lintian:\n{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "lintian found errors");

    // Installed into a throw-away root (with --force-depends: the root has no libc6
    // package, only the host's libc, which the installed binary runs on).
    let root = Root::new();
    let before = root.listing();
    let dpkg = |args: &[&str]| {
        run(Command::new("dpkg")
            .arg(format!("--root={}", root.path().display()))
            .args(args))
    };
    // --path-include: a host whose dpkg configuration leaves out man pages or docs (as
    // container images do with path-exclude) still installs every file here.
    dpkg(&[
        "--force-depends",
        "--path-include=/*",
        "--install",
        &deb.display().to_string(),
    ]);
    let mut expected = common_files(".gz");
    expected.extend(
        [
            "usr/share/zsh/vendor-completions/_lightsnap",
            "usr/share/doc/lightsnap/copyright",
            "usr/share/doc/lightsnap/changelog.Debian.gz",
        ]
        .map(String::from),
    );
    expected.extend(UNITS.iter().map(|u| format!("lib/systemd/system/{u}")));
    let added = root.added_since(&before);
    let files: BTreeSet<String> = added
        .iter()
        .filter(|p| !root.at(p).is_dir())
        .cloned()
        .collect();
    assert_eq!(
        files,
        expected.into_iter().collect(),
        "the files of the .deb"
    );
    check_installed(&root, "lib/systemd/system");

    // Removed: everything goes but the configuration file (a conffile, kept until purge);
    // the empty hook directory goes too.
    let config = root.at("etc/lightsnap/config.toml");
    let changed = format!(
        "{}# changed by the administrator\n",
        std::fs::read_to_string(&config).unwrap()
    );
    std::fs::write(&config, &changed).unwrap();
    dpkg(&["--remove", "lightsnap"]);
    assert_eq!(
        root.added_since(&before),
        set(&["etc", "etc/lightsnap", "etc/lightsnap/config.toml"]),
        "after dpkg --remove"
    );
    assert_eq!(std::fs::read_to_string(&config).unwrap(), changed);
    let status = stdout_of(
        Command::new("dpkg")
            .arg(format!("--root={}", root.path().display()))
            .args(["--status", "lightsnap"]),
    );
    assert!(
        status.contains("Status: deinstall ok config-files"),
        "{status}"
    );

    // Purged: nothing is left at all.
    dpkg(&["--purge", "lightsnap"]);
    assert_eq!(
        root.added_since(&before),
        BTreeSet::new(),
        "after dpkg --purge"
    );
    assert_eq!(
        before.difference(&root.listing()).count(),
        0,
        "nothing else went"
    );
}

fn check_rpm(rpm: &Path) {
    let query = |args: &[&str]| stdout_of(Command::new("rpm").arg("-qp").args(args).arg(rpm));
    assert_eq!(
        query(&["--qf", "%{NAME} %{VERSION} %{RELEASE} %{LICENSE}"]),
        format!("lightsnap {VERSION} 1 Apache-2.0")
    );

    // The files, and the configuration file marked config(noreplace): kept on upgrade.
    let mut expected = common_files(".gz");
    expected.extend(
        [
            "usr/share/zsh/site-functions/_lightsnap",
            "usr/share/doc/lightsnap/changelog",
            "usr/share/licenses/lightsnap/LICENSE",
        ]
        .map(String::from),
    );
    expected.extend(UNITS.iter().map(|u| format!("usr/lib/systemd/system/{u}")));
    let listed: BTreeSet<String> = query(&["-l"])
        .lines()
        .map(|l| l.trim_start_matches('/').to_string())
        .collect();
    let expected: BTreeSet<String> = expected.into_iter().collect();
    assert_eq!(listed, expected, "rpm -qpl");
    let flags = query(&["--qf", "[%{FILENAMES} %{FILEFLAGS:fflags}\n]"]);
    assert!(
        flags.lines().any(|l| l == "/etc/lightsnap/config.toml cn"),
        "the configuration file is %config(noreplace):\n{flags}"
    );

    // The scriptlets are ours (a path cargo-generate-rpm could not find would be taken as
    // the script's text), and enable nothing.
    let scripts = query(&["--scripts"]);
    for (scriptlet, source) in [
        ("postinstall scriptlet", "packaging/rpm/post"),
        ("preuninstall scriptlet", "packaging/rpm/preun"),
        ("postuninstall scriptlet", "packaging/rpm/postun"),
    ] {
        let body = std::fs::read_to_string(repo().join(source)).unwrap();
        assert!(
            scripts.contains(scriptlet) && scripts.contains(body.trim()),
            "{source} is the {scriptlet}:\n{scripts}"
        );
    }
    assert_enables_and_starts_nothing(&scripts);

    // rpmlint: no errors but those packaging/rpm/rpmlintrc filters, each with its reason.
    let out = Command::new("rpmlint")
        .arg("-r")
        .arg(repo().join("packaging/rpm/rpmlintrc"))
        .arg(rpm)
        .output()
        .unwrap();
    eprintln!("rpmlint:\n{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        out.status.success() && text(&out.stdout).contains(" 0 errors"),
        "rpmlint found errors"
    );

    // Installed into a throw-away root (--nodeps: its rpm database has no glibc).
    let root = Root::new();
    let before = root.listing();
    let rpm_cmd = |args: &[&str]| {
        run(Command::new("rpm")
            .arg(format!("--root={}", root.path().display()))
            .arg("--dbpath=/var/lib/rpm")
            .args(args))
    };
    rpm_cmd(&["--install", "--nodeps", &rpm.display().to_string()]);
    let added: BTreeSet<String> = root
        .added_since(&before)
        .into_iter()
        .filter(|p| !root.at(p).is_dir())
        .collect();
    assert_eq!(added, expected, "the files of the .rpm, installed");
    check_installed(&root, "usr/lib/systemd/system");

    // Erased: a changed configuration file is kept as config.toml.rpmsave, and that is all.
    let config = root.at("etc/lightsnap/config.toml");
    let changed = format!(
        "{}# changed by the administrator\n",
        std::fs::read_to_string(&config).unwrap()
    );
    std::fs::write(&config, &changed).unwrap();
    rpm_cmd(&["--erase", "lightsnap"]);
    // rpm makes the parents of the files it installs but owns only its files: the shared
    // directories it made (man8, the completion directories, ...) stay, empty, while the
    // package's own are removed by its %postun.
    let left: BTreeSet<String> = root
        .added_since(&before)
        .into_iter()
        .filter(|p| !root.at(p).is_dir() || has_files(&root.at(p)))
        .collect();
    for own in [
        "etc/lightsnap/hooks.d",
        "usr/share/lightsnap",
        "usr/share/doc/lightsnap",
        "usr/share/licenses/lightsnap",
    ] {
        assert!(!root.at(own).exists(), "{own} is left after rpm --erase");
    }
    assert_eq!(
        left,
        set(&["etc", "etc/lightsnap", "etc/lightsnap/config.toml.rpmsave"]),
        "after rpm --erase"
    );
    assert_eq!(
        std::fs::read_to_string(root.at("etc/lightsnap/config.toml.rpmsave")).unwrap(),
        changed
    );
}

/// Whether a directory holds anything but (empty) directories.
fn has_files(dir: &Path) -> bool {
    std::fs::read_dir(dir).unwrap().any(|e| {
        let p = e.unwrap().path();
        !p.is_dir() || p.is_symlink() || has_files(&p)
    })
}

// ---------------------------------------------------------------------------------------
// The scripts, without root
// ---------------------------------------------------------------------------------------

#[test]
fn the_shell_scripts_pass_shellcheck() {
    if !tool_or_skip("the_shell_scripts_pass_shellcheck", "shellcheck") {
        return;
    }
    let p = |rel: &str| repo().join(rel);
    run(Command::new("shellcheck").args([
        p("scripts/package"),
        p("packaging/pre-deploy"),
        p("packaging/examples/hooks/postgresql"),
        p("packaging/examples/hooks/mysql"),
        p("packaging/debian/postinst"),
        p("packaging/debian/prerm"),
        p("packaging/debian/postrm"),
    ]));
    // Scriptlets have no #! line: rpm runs them with /bin/sh.
    run(Command::new("shellcheck").args(["--shell", "sh"]).args([
        p("packaging/rpm/post"),
        p("packaging/rpm/preun"),
        p("packaging/rpm/postun"),
    ]));
}

#[test]
fn the_changelog_is_for_this_version() {
    let changelog = std::fs::read_to_string(repo().join("packaging/debian/changelog")).unwrap();
    let first = changelog.lines().next().unwrap();
    assert!(
        first.starts_with(&format!("lightsnap ({VERSION}-1) ")),
        "packaging/debian/changelog starts with an entry for {VERSION}-1: {first}"
    );
}

/// Runs packaging/pre-deploy with a stand-in lightsnap that records its arguments and exits
/// with `exit`; returns (exit code, arguments, stderr).
fn pre_deploy(args: &[&str], env: &[(&str, &str)], exit: i32) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let stub = dir.path().join("lightsnap");
    let log = dir.path().join("args");
    std::fs::write(
        &stub,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > '{}'\nexit {exit}\n",
            log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut cmd = Command::new(repo().join("packaging/pre-deploy"));
    cmd.args(args).env("LIGHTSNAP_BIN", &stub);
    for var in [
        "LIGHTSNAP_DEPLOY_ID",
        "DEPLOYMENT_ID",
        "CI_COMMIT_SHA",
        "GITHUB_SHA",
        "LIGHTSNAP_OPTS",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let passed = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .collect::<Vec<_>>()
        .join(" ");
    (out.status.code().unwrap(), passed, text(&out.stderr))
}

#[test]
fn pre_deploy_tags_the_deploy_and_stops_it_when_the_snapshot_fails() {
    // The configured paths, tagged with the id CI gives.
    let (code, args, _) = pre_deploy(&[], &[("GITHUB_SHA", "0123abc")], 0);
    assert_eq!(code, 0);
    assert_eq!(args, "run --trigger hook --tag deploy=0123abc --");

    // CodeDeploy's id comes before a commit; --id before both; options from LIGHTSNAP_OPTS;
    // given paths are snapshotted instead of the configured ones.
    let env = [("DEPLOYMENT_ID", "d-ABC123"), ("CI_COMMIT_SHA", "fff")];
    assert_eq!(
        pre_deploy(&[], &env, 0).1,
        "run --trigger hook --tag deploy=d-ABC123 --"
    );
    let (code, args, _) = pre_deploy(
        &["--id", "release-42", "/data", "/srv"],
        &[("LIGHTSNAP_OPTS", "--wait -v"), ("GITHUB_SHA", "x")],
        0,
    );
    assert_eq!(code, 0);
    assert_eq!(
        args,
        "freeze-and-snap --trigger hook --wait -v --tag deploy=release-42 -- /data /srv"
    );

    // No id: snapshotted all the same, untagged, and said so.
    let (code, args, stderr) = pre_deploy(&[], &[], 0);
    assert_eq!((code, args.as_str()), (0, "run --trigger hook --"));
    assert!(stderr.contains("no deploy id"), "{stderr}");

    // A failed snapshot stops the deploy: lightsnap's exit status, and why.
    let (code, _, stderr) = pre_deploy(&["--id", "d-1"], &[], 12);
    assert_eq!(code, 12);
    assert!(stderr.contains("the snapshot failed"), "{stderr}");
    assert!(stderr.contains("stop the deploy"), "{stderr}");

    // A mistyped option stops it too, before any snapshot.
    let (code, args, _) = pre_deploy(&["--idd", "x"], &[], 0);
    assert_eq!((code, args.as_str()), (2, ""));
}

/// A stand-in for the `mysql` client: logs what it is sent, answers the hook's SELECT (or
/// refuses the lock with `FAKE_MYSQL_FAIL`), and logs when its input ends (the disconnect
/// that releases the lock).
const FAKE_MYSQL: &str = r#"#!/bin/sh
echo "connected" >> "$FAKE_MYSQL_LOG"
while IFS= read -r line; do
    echo "sql $line" >> "$FAKE_MYSQL_LOG"
    case "$line" in
    "FLUSH TABLES WITH READ LOCK;")
        if [ -n "${FAKE_MYSQL_FAIL:-}" ]; then
            echo "ERROR 1045 (28000): Access denied for user 'root'@'localhost'" >&2
            exit 1
        fi
        ;;
    "SELECT 'lightsnap: locked';") echo "lightsnap: locked" ;;
    esac
done
echo "disconnected" >> "$FAKE_MYSQL_LOG"
"#;

#[test]
fn the_mysql_example_hook_holds_its_session_from_pre_freeze_to_post_thaw() {
    let test = "the_mysql_example_hook_holds_its_session_from_pre_freeze_to_post_thaw";
    if !tool_or_skip(test, "bash") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::fs::write(bin.join("mysql"), FAKE_MYSQL).unwrap();
    std::fs::set_permissions(bin.join("mysql"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let log = dir.path().join("mysql.log");
    let run_dir = dir.path().join("run");
    let state = run_dir.join("mysql-hook");
    // A hold limit no other process has, to find a leftover holder by.
    let max_hold = "7391";
    let hook = |phase: &str, fail: bool| -> Output {
        let mut cmd = Command::new(repo().join("packaging/examples/hooks/mysql"));
        cmd.arg(phase)
            .env("LIGHTSNAP_PHASE", phase)
            .env("LIGHTSNAP_RUN_DIR", &run_dir)
            .env("LIGHTSNAP_MYSQL_MAX_HOLD", max_hold)
            .env("LIGHTSNAP_MYSQL_LOCK_WAIT", "10")
            .env("LIGHTSNAP_RESULT", "success")
            .env("FAKE_MYSQL_LOG", &log)
            .env(
                "PATH",
                format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
            )
            .stdin(Stdio::null());
        if fail {
            cmd.env("FAKE_MYSQL_FAIL", "1");
        }
        let started = Instant::now();
        let out = cmd.output().unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the hook returned (its session does not hold its output open)"
        );
        out
    };
    let logged = || std::fs::read_to_string(&log).unwrap_or_default();
    let holders = || -> usize {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| std::fs::read(e.unwrap().path().join("cmdline")).ok())
            .filter(|c| c == format!("sleep\0{max_hold}\0").as_bytes())
            .count()
    };

    // pre-freeze returns with the lock held: the session is still connected.
    let out = hook("pre-freeze", false);
    assert!(out.status.success(), "{out:?}");
    assert!(text(&out.stderr).contains("read-locked"), "{out:?}");
    assert_eq!(
        logged(),
        "connected\nsql FLUSH TABLES WITH READ LOCK;\nsql SELECT 'lightsnap: locked';\n"
    );
    let session: i32 = std::fs::read_to_string(state.join("mysql.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        Path::new(&format!("/proc/{session}")).exists(),
        "the session holds on"
    );
    assert!(!logged().contains("disconnected"));

    // post-thaw ends it: the client disconnects (which releases the lock), nothing is left.
    let out = hook("post-thaw", false);
    assert!(out.status.success(), "{out:?}");
    assert!(text(&out.stderr).contains("read lock released"), "{out:?}");
    assert!(logged().ends_with("disconnected\n"), "{}", logged());
    assert!(!state.exists(), "its state is cleared");
    assert_eq!(holders(), 0, "no holder is left");

    // A refused lock fails pre-freeze at once, with the server's answer, and leaves nothing.
    std::fs::remove_file(&log).unwrap();
    let out = hook("pre-freeze", true);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("could not take the read lock"), "{stderr}");
    assert!(stderr.contains("Access denied"), "{stderr}");
    assert!(!state.exists());
    assert_eq!(holders(), 0, "no holder is left");
    // ... and its post-thaw (lightsnap calls it for every hook that ran) has nothing to do.
    assert!(hook("post-thaw", false).status.success());

    // A session left by a run that never got to post-thaw is ended by the next pre-freeze.
    std::fs::remove_file(&log).unwrap();
    assert!(hook("pre-freeze", false).status.success());
    assert!(hook("pre-freeze", false).status.success());
    let text = logged();
    let count = |line: &str| text.lines().filter(|l| *l == line).count();
    assert_eq!(count("connected"), 2, "{text}");
    assert_eq!(count("disconnected"), 1, "{text}");
    assert!(hook("post-thaw", false).status.success());
    assert_eq!(holders(), 0, "no holder is left");
}
