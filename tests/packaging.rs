//! The packages (issues 7 and 12), tested by building and installing them.
//!
//! `scripts/package` builds the .deb and the .rpm, from a release binary with a glibc 2.17
//! floor: the packaged binary, the .deb's `Depends` and the .rpm's requirements must ask for
//! GLIBC_2.17 at most. lintian checks the .deb and rpmlint the .rpm (with the filters of
//! `packaging/rpm/rpmlintrc`), and rpm's queries show the files, the configuration file and
//! the scriptlets. Each package is then installed, without forcing anything, into a
//! throw-away minimal Debian 11 (bullseye, glibc 2.31) with systemd, made once with
//! mmdebstrap: the .deb with that root's own apt, the .rpm with `rpm --root` after a
//! stand-in for an RPM distribution's base system (see [`base_system_rpm`]). The maintainer
//! scripts run chrooted there. In it, `systemd-analyze verify` checks the units, the man
//! pages render with `man -l`, the bash completion loads and completes, and the installed
//! lightsnap runs, chrooted on the root's glibc, and reads the packaged configuration. Then
//! the package is removed (and purged), and the root must be as it was, but for the changed
//! configuration file; then the previous version (the same tree packaged as `VERSION~prev`)
//! is installed, its configuration changed and its timer enabled, and the upgrade to this
//! version must keep both.
//!
//! Without root: the shell scripts pass shellcheck, the pre-deploy script passes the deploy
//! id on and stops a deploy when the snapshot fails, the MySQL example hook holds its session
//! from pre-freeze to post-thaw (against a stand-in `mysql`), the changelog names this
//! version, and the units' `systemd-analyze security` exposure stays at most what it was
//! when their sandboxing was chosen. As root, a freeze with hooks and the unmount fallback
//! run under the snapshot unit's capability bounding set and `NoNewPrivileges=`.
//!
//! The package test is root only (chroot) and slow: a release build, and the first time,
//! the pinned tools and the bullseye root, cached outside the checkout (`scripts/package`).
//! CI runs it as root; there, not being root or a missing tool fails it instead of skipping
//! it.

mod common;

use std::collections::BTreeSet;

use common::{
    create_calls, fake, finish, lightsnap, root_or_skip, run, seed, tool_or_skip, FsKind, LoopFs,
    Scratch,
};
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

/// The Debian suite of the throw-away roots: bullseye (Debian 11) has glibc 2.31, as old as
/// any Debian or Ubuntu Lightsail blueprint (Ubuntu 20.04 has 2.31 too), and is the oldest
/// suite the build machines reach.
const SUITE: &str = "bullseye";

/// A throw-away root to install a package into: a minimal Debian with systemd (made once by
/// `scripts/package root`, with mmdebstrap, and cached outside the checkout), unpacked into
/// a temporary directory. Its own dpkg, apt, /bin/sh and systemctl run the package scripts,
/// chrooted there, on its own glibc.
struct Root {
    dir: tempfile::TempDir,
}

impl Root {
    fn new() -> Root {
        let tarball = stdout_of(
            Command::new(repo().join("scripts/package"))
                .args(["root", SUITE])
                .current_dir(repo()),
        );
        let dir = tempfile::Builder::new()
            .prefix("lightsnap-pkgroot-")
            .tempdir()
            .unwrap();
        run(Command::new("tar")
            .args(["-x", "--numeric-owner", "-f", tarball.trim(), "-C"])
            .arg(dir.path()));
        Root { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn at(&self, rel: &str) -> PathBuf {
        self.path().join(rel.trim_start_matches('/'))
    }

    /// Runs a command chrooted in the root, as the package scripts run.
    fn chroot(&self, args: &[&str]) -> Output {
        run(Command::new("chroot")
            .arg(self.path())
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("LC_ALL", "C"))
    }

    /// Copies a package into the root's /tmp, for its own tools to install; the path in it.
    fn take(&self, package: &Path) -> String {
        let inside = format!("/tmp/{}", package.file_name().unwrap().to_string_lossy());
        std::fs::copy(package, self.at(&inside)).unwrap();
        inside
    }

    /// Every path in the root (files, links, directories), relative, but the package
    /// databases, caches and logs under var/ and the scratch space of tmp/ and run/.
    fn listing(&self) -> BTreeSet<String> {
        fn walk(base: &Path, dir: &Path, out: &mut BTreeSet<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                let rel = path
                    .strip_prefix(base)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                if ["var", "tmp", "run"].contains(&rel.as_str()) {
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

    /// The paths under etc/systemd that name lightsnap: enablement links.
    fn enablement_links(&self) -> Vec<String> {
        self.listing()
            .into_iter()
            .filter(|p| p.starts_with("etc/systemd") && p.contains("lightsnap"))
            .collect()
    }

    /// `systemctl is-enabled` of the timer, as the root's systemctl answers offline.
    fn timer_state(&self) -> String {
        let out = Command::new("chroot")
            .arg(self.path())
            .args(["systemctl", "is-enabled", "lightsnap-snapshot.timer"])
            .output()
            .unwrap();
        text(&out.stdout).trim().to_string()
    }
}

/// The highest GLIBC_x.y version an ELF file needs, from readelf's version-needs section.
fn highest_glibc(binary: &Path) -> (u32, u32) {
    let out = stdout_of(Command::new("readelf").args(["-V", "-W"]).arg(binary));
    glibc_versions(&out)
        .into_iter()
        .max()
        .unwrap_or_else(|| panic!("no GLIBC_ version in {}:\n{out}", binary.display()))
}

/// Every GLIBC_x.y (x.y.z counts as x.y) named in a text.
fn glibc_versions(text: &str) -> Vec<(u32, u32)> {
    text.split("GLIBC_")
        .skip(1)
        .filter_map(|rest| {
            let digits: String = rest
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            let mut parts = digits.split('.').map(|p| p.parse::<u32>().ok());
            Some((parts.next()??, parts.next()??))
        })
        .collect()
}

/// The glibc every package must run on: Amazon Linux 2 has 2.26, Debian 11 and Ubuntu
/// 20.04 2.31; 2.17 (CentOS 7) leaves room below all of them.
const GLIBC_FLOOR: (u32, u32) = (2, 17);

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
        "usr/share/lightsnap/examples/hooks/redis",
        "usr/share/doc/lightsnap/README.md",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for page in man_pages() {
        files.push(format!("usr/share/man/man8/{page}.8{man_suffix}"));
    }
    files.push(format!("usr/share/man/man5/lightsnap.toml.5{man_suffix}"));
    files
}

/// The man pages: lightsnap(8) and one per subcommand users see, from the clap definition
/// (as `lightsnap __generate` writes them), so a command added is a page expected.
fn man_pages() -> Vec<String> {
    use clap::CommandFactory;
    let cli = lightsnap::cli::Cli::command();
    std::iter::once("lightsnap".to_string())
        .chain(
            cli.get_subcommands()
                .filter(|s| !s.is_hide_set())
                .map(|s| format!("lightsnap-{}", s.get_name())),
        )
        .collect()
}

const UNITS: &[&str] = &[
    "lightsnap-snapshot.service",
    "lightsnap-snapshot.timer",
    "lightsnap-recover.service",
    "lightsnap-system-copy.service",
];

/// The drop-in that pulls lightsnap-system-copy.service into every boot (static: active once
/// installed, nothing enabled), installed under the unit directory.
const DROP_IN: &str = "local-fs.target.d/lightsnap-system-copy.conf";

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
    for hook in ["postgresql", "mysql", "redis"] {
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
    same(
        &format!("{unit_dir}/{DROP_IN}"),
        &format!("packaging/systemd-dropins/{DROP_IN}"),
    );
    let mode = |p: &str| {
        let m = std::fs::metadata(root.at(p)).unwrap();
        assert_eq!(m.uid(), 0, "{p} is root's");
        m.mode() & 0o7777
    };
    assert_eq!(mode("usr/bin/lightsnap"), 0o755);
    assert_eq!(mode("usr/share/lightsnap/pre-deploy"), 0o755);
    assert_eq!(mode("usr/share/lightsnap/examples/hooks/mysql"), 0o755);
    assert_eq!(mode("etc/lightsnap/config.toml"), 0o640);

    // The test suite's switches are compiled out of the shipped binary (issue 22): not even
    // their names are in it. The guard, LIGHTSNAP_CONFINE_TO, stays.
    let binary = std::fs::read(root.at("usr/bin/lightsnap")).unwrap();
    let has = |name: &str| binary.windows(name.len()).any(|w| w == name.as_bytes());
    for switch in [
        "LIGHTSNAP_STATE_DIR",
        "LIGHTSNAP_DEV_DIR",
        "LIGHTSNAP_VERIFY_POLL_MS",
        "LIGHTSNAP_JOURNAL_SOCKET",
        "LIGHTSNAP_SYSTEM_COPY_",
        "LIGHTSNAP_TEST_",
    ] {
        assert!(!has(switch), "the packaged binary reads {switch}");
    }
    assert!(has("LIGHTSNAP_CONFINE_TO"));

    // The hook directory is there and empty; nothing is enabled.
    let hooks = root.at("etc/lightsnap/hooks.d");
    assert!(
        hooks.is_dir(),
        "the package scripts made {}",
        hooks.display()
    );
    assert_eq!(std::fs::read_dir(&hooks).unwrap().count(), 0);
    assert_eq!(
        root.enablement_links(),
        Vec::<String>::new(),
        "no unit is enabled"
    );

    // The installed binary needs GLIBC_2.17 at most, and runs on the root's own (older)
    // glibc, chrooted, as well as on the build machine's.
    let lightsnap = root.at("usr/bin/lightsnap");
    let glibc = highest_glibc(&lightsnap);
    assert!(
        glibc <= GLIBC_FLOOR,
        "the installed binary needs GLIBC_{glibc:?}"
    );
    let version = text(&root.chroot(&["/usr/bin/lightsnap", "--version"]).stdout);
    // `lightsnap 0.1.0 (commit abc..., x86_64-unknown-linux-gnu)`: the version, then where
    // it was built from.
    assert!(
        version
            .trim()
            .starts_with(&format!("lightsnap {VERSION} (commit ")),
        "in the root: {version}"
    );
    let version = stdout_of(Command::new(&lightsnap).arg("--version"));
    assert!(
        version
            .trim()
            .starts_with(&format!("lightsnap {VERSION} (commit ")),
        "on the build machine: {version}"
    );

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
    for page in man_pages() {
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
        if page == "lightsnap" {
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

/// Runs `scripts/package` (with `--version V` for an older version of the same tree);
/// the .deb and the .rpm it printed.
fn build_packages(version: Option<&str>) -> (PathBuf, PathBuf) {
    let mut cmd = Command::new(repo().join("scripts/package"));
    if let Some(v) = version {
        cmd.args(["--version", v]);
    }
    let out = run(cmd.current_dir(repo()));
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

/// The version the upgrade test starts from: this one with a `~` suffix, which both dpkg
/// and rpm order before it.
fn previous_version() -> String {
    format!("{VERSION}~prev")
}

// ---------------------------------------------------------------------------------------
// The packages: built, linted, installed, upgraded, removed
// ---------------------------------------------------------------------------------------

#[test]
fn packages_build_pass_their_linters_install_upgrade_and_remove_cleanly() {
    let test = "packages_build_pass_their_linters_install_upgrade_and_remove_cleanly";
    if !root_or_skip(test) {
        return;
    }
    for tool in [
        "dpkg",
        "dpkg-deb",
        "lintian",
        "rpm",
        "rpmbuild",
        "rpmlint",
        "man",
        "systemd-analyze",
        "chroot",
        "bash",
        "readelf",
        "mmdebstrap",
        "tar",
    ] {
        if !tool_or_skip(test, tool) {
            return;
        }
    }
    let started = Instant::now();
    let (deb, rpm) = build_packages(None);
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
    let (old_deb, old_rpm) = build_packages(Some(&previous_version()));
    check_deb(&deb, &old_deb);
    check_rpm(&rpm, &old_rpm);
}

fn check_deb(deb: &Path, old_deb: &Path) {
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
    // The units' part is cargo-deb's (dh_installsystemd's snippets), for the units that can
    // be enabled; no hand-written systemctl call is left but its daemon-reloads.
    for needle in [
        "deb-systemd-helper update-state lightsnap-snapshot.timer",
        "deb-systemd-helper update-state lightsnap-recover.service",
        "deb-systemd-helper purge",
    ] {
        assert!(scripts.contains(needle), "{needle} in:\n{scripts}");
    }
    for line in scripts.lines().filter(|l| l.contains("systemctl ")) {
        assert!(line.contains("daemon-reload"), "a systemctl call: {line}");
    }
    assert!(!scripts.contains("#DEBHELPER#"), "{scripts}");

    // The glibc floor: the packaged binary needs GLIBC_2.17 at most, and the package says
    // so (dpkg-shlibdeps reads the symbols it uses).
    let unpacked = tempfile::tempdir().unwrap();
    run(Command::new("dpkg-deb")
        .arg("-x")
        .arg(deb)
        .arg(unpacked.path()));
    let binary = unpacked.path().join("usr/bin/lightsnap");
    let glibc = highest_glibc(&binary);
    assert!(
        glibc <= GLIBC_FLOOR,
        "the .deb's binary needs GLIBC_{glibc:?}"
    );
    // Depends is written out in Cargo.toml (libc6 only): right while the binary needs no
    // library but glibc's.
    let dynamic = stdout_of(Command::new("readelf").args(["-d", "-W"]).arg(&binary));
    for line in dynamic.lines().filter(|l| l.contains("(NEEDED)")) {
        let lib = line.split('[').nth(1).unwrap_or("").trim_end_matches(']');
        assert!(
            [
                "libc.so.6",
                "libm.so.6",
                "libpthread.so.0",
                "libdl.so.2",
                "librt.so.1",
                "ld-linux-x86-64.so.2"
            ]
            .contains(&lib),
            "the binary needs {lib}, which is not glibc's: add it to Depends"
        );
    }
    let depends = stdout_of(
        Command::new("dpkg-deb")
            .args(["-f"])
            .arg(deb)
            .arg("Depends"),
    );
    let libc = depends
        .split(',')
        .map(str::trim)
        .find(|d| d.starts_with("libc6 "))
        .unwrap_or_else(|| panic!("no libc6 in Depends: {depends}"));
    let floor = libc
        .strip_prefix("libc6 (>= ")
        .and_then(|v| v.strip_suffix(')'))
        .unwrap_or_else(|| panic!("Depends: {libc}"));
    run(Command::new("dpkg").args(["--compare-versions", floor, "le", "2.17"]));

    // lintian: no error, warning or information but those the package's overrides
    // (packaging/debian/lintian-overrides) explain.
    let out = Command::new("lintian")
        .args(["--fail-on", "error,warning,info", "--display-info"])
        .args(["--tag-display-limit", "0"])
        .arg(deb)
        .output()
        .unwrap();
    eprintln!("lintian:\n{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "lintian found errors");

    // Installed into a throw-away Debian 11 with its own apt, as a user would: no forcing.
    let root = Root::new();
    let before = root.listing();
    let apt = |args: &[&str]| {
        let mut all = vec!["apt-get", "-y", "-q"];
        all.extend_from_slice(args);
        root.chroot(&all)
    };
    let installed_version = || {
        text(
            &root
                .chroot(&["dpkg-query", "-W", "-f", "${Version}", "lightsnap"])
                .stdout,
        )
    };
    let new_deb = root.take(deb);
    apt(&["install", &new_deb]);
    assert_eq!(installed_version(), format!("{VERSION}-1"));
    let mut expected = common_files(".gz");
    expected.extend(
        [
            "usr/share/zsh/vendor-completions/_lightsnap",
            "usr/share/doc/lightsnap/copyright",
            "usr/share/doc/lightsnap/changelog.Debian.gz",
            "usr/share/lintian/overrides/lightsnap",
        ]
        .map(String::from),
    );
    expected.extend(UNITS.iter().map(|u| format!("usr/lib/systemd/system/{u}")));
    expected.push(format!("usr/lib/systemd/system/{DROP_IN}"));
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
    check_installed(&root, "usr/lib/systemd/system");

    // Removed: everything goes but the configuration file (a conffile, kept until purge)
    // and the masks deb-systemd-helper puts on the units that can be enabled while the
    // package is removed but not purged (dh_installsystemd's postrm, as cargo-deb writes
    // it); the empty hook directory goes too.
    let config = root.at("etc/lightsnap/config.toml");
    let changed = format!(
        "{}# changed by the administrator\n",
        std::fs::read_to_string(&config).unwrap()
    );
    std::fs::write(&config, &changed).unwrap();
    apt(&["remove", "lightsnap"]);
    assert_eq!(
        root.added_since(&before),
        set(&[
            "etc/lightsnap",
            "etc/lightsnap/config.toml",
            "etc/systemd/system/lightsnap-recover.service",
            "etc/systemd/system/lightsnap-snapshot.timer",
        ]),
        "after apt-get remove"
    );
    for unit in ["lightsnap-recover.service", "lightsnap-snapshot.timer"] {
        let link = root.at(&format!("etc/systemd/system/{unit}"));
        assert_eq!(
            std::fs::read_link(&link).unwrap(),
            Path::new("/dev/null"),
            "{unit} is masked while removed"
        );
    }
    assert_eq!(std::fs::read_to_string(&config).unwrap(), changed);
    let status = text(&root.chroot(&["dpkg", "--status", "lightsnap"]).stdout);
    assert!(
        status.contains("Status: deinstall ok config-files"),
        "{status}"
    );

    // Purged: nothing is left at all.
    apt(&["purge", "lightsnap"]);
    assert_eq!(
        root.added_since(&before),
        BTreeSet::new(),
        "after apt-get purge"
    );
    assert_eq!(
        before.difference(&root.listing()).count(),
        0,
        "nothing else went"
    );

    // Upgraded from the previous version: the administrator's configuration and the timer's
    // enablement stay, no .dpkg-new or .dpkg-old appears.
    let old_deb = root.take(old_deb);
    apt(&["install", &old_deb]);
    assert_eq!(installed_version(), format!("{}-1", previous_version()));
    std::fs::write(&config, &changed).unwrap();
    root.chroot(&["systemctl", "enable", "lightsnap-snapshot.timer"]);
    assert_eq!(root.timer_state(), "enabled");
    apt(&["install", &new_deb]);
    assert_eq!(installed_version(), format!("{VERSION}-1"));
    assert_eq!(std::fs::read_to_string(&config).unwrap(), changed);
    assert_eq!(root.timer_state(), "enabled", "after the upgrade");
    let beside: Vec<_> = std::fs::read_dir(root.at("etc/lightsnap"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "config.toml" && n != "hooks.d" && n != "verify.d")
        .collect();
    assert!(beside.is_empty(), "beside the configuration: {beside:?}");

    // Purged after the upgrade: the enabled timer's links go with it, nothing is left.
    apt(&["purge", "lightsnap"]);
    assert_eq!(root.enablement_links(), Vec::<String>::new());
    assert_eq!(
        root.added_since(&before),
        BTreeSet::new(),
        "after the upgrade and apt-get purge"
    );
}

/// A stand-in for the base system of an RPM distribution, installed into the throw-away
/// Debian root before lightsnap's .rpm so that `rpm --install` checks every requirement
/// instead of being told to skip them (`--nodeps`). No RPM distribution's repository can
/// be reached from the build machines, so the root's glibc, shell and systemd are Debian's
/// files, which rpm's database knows nothing about. The stand-in owns no file: it only
/// declares what a distribution's glibc and bash packages declare, taken from those files
/// the way rpmbuild takes a library's provides (`elfdeps --provides`): each shared library
/// the .rpm requires, with the symbol versions the root's copy defines, so that a binary
/// needing a newer glibc than the root's would fail to install here as it would there.
/// Plus the files it requires that the root has (`/bin/sh`, `/bin/bash`: bash's provides)
/// and `rtld(GNU_HASH)` (glibc's).
fn base_system_rpm(root: &Root, rpm: &Path, out: &Path) -> PathBuf {
    let requires = stdout_of(Command::new("rpm").args(["-qp", "--requires"]).arg(rpm));
    let mut provides = BTreeSet::new();
    for req in requires.lines().map(str::trim) {
        let Some(soname) = req.split('(').next().filter(|s| s.contains(".so")) else {
            continue;
        };
        let lib = ["lib/x86_64-linux-gnu", "lib64", "usr/lib/x86_64-linux-gnu"]
            .iter()
            .map(|d| root.at(&format!("{d}/{soname}")))
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("{req}: no {soname} in the {SUITE} root"));
        let lib = std::fs::canonicalize(&lib).unwrap_or(lib);
        let mut elfdeps = Command::new("/usr/lib/rpm/elfdeps");
        elfdeps
            .arg("--provides")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let mut child = elfdeps.spawn().unwrap();
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            writeln!(stdin, "{}", lib.display()).unwrap();
        }
        let found = child.wait_with_output().unwrap();
        assert!(found.status.success(), "elfdeps {}", lib.display());
        // elfdeps names the soname of the file it read; the root's file may be a
        // versioned name behind the soname link.
        provides.extend(text(&found.stdout).lines().map(str::to_string));
    }
    // Files the package requires (its scripts' interpreters), which rpm looks up among
    // the files and provides of its database: declared when the root has them.
    for file in requires
        .lines()
        .map(str::trim)
        .filter(|r| r.starts_with('/'))
    {
        assert!(
            root.at(file).exists(),
            "the .rpm requires {file}, which the {SUITE} root lacks"
        );
        provides.insert(file.to_string());
    }
    // Packages it requires by name (ca-certificates): declared when the root has the Debian
    // package of that name installed.
    for package in requires.lines().map(str::trim).filter(|r| {
        // rpmlib() and config() are rpm's own, satisfied by rpm and the package itself.
        !r.is_empty()
            && !r.starts_with('/')
            && !r.contains(".so")
            && !r.starts_with("rpmlib(")
            && !r.starts_with("config(")
    }) {
        let name = package.split_whitespace().next().unwrap_or(package);
        assert!(
            root.at(&format!("var/lib/dpkg/info/{name}.list")).exists(),
            "the .rpm requires {package}, which the {SUITE} root lacks"
        );
        provides.insert(name.to_string());
    }
    provides.insert("rtld(GNU_HASH)".to_string());
    let spec = format!(
        "Name: lightsnap-test-base-system\n\
         Version: 1\nRelease: 1\nLicense: Apache-2.0\nBuildArch: noarch\n\
         Summary: stand-in for glibc and bash in lightsnap's package test\n\
         {}\n\
         %description\nDeclares what the {SUITE} root's glibc and shell provide.\n\
         %files\n",
        provides
            .iter()
            .map(|p| format!("Provides: {p}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let spec_file = out.join("base.spec");
    std::fs::write(&spec_file, spec).unwrap();
    run(Command::new("rpmbuild")
        .arg("--quiet")
        .arg("--define")
        .arg(format!("_topdir {}", out.display()))
        .args(["-bb"])
        .arg(&spec_file));
    out.join("RPMS/noarch/lightsnap-test-base-system-1-1.noarch.rpm")
}

fn check_rpm(rpm: &Path, old_rpm: &Path) {
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
    expected.push(format!("usr/lib/systemd/system/{DROP_IN}"));
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

    // The glibc floor, in the requirements rpm derived from the binary.
    let requires = query(&["--requires"]);
    let needed = glibc_versions(&requires);
    assert!(!needed.is_empty(), "the .rpm requires a glibc:\n{requires}");
    assert!(
        needed.iter().all(|v| *v <= GLIBC_FLOOR),
        "the .rpm requires a glibc above 2.17:\n{requires}"
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

    // rpmlint: no errors and no warnings but those packaging/rpm/rpmlintrc filters, each
    // with its reason, with the settings of packaging/rpm/rpmlint.toml.
    let out = Command::new("rpmlint")
        .arg("-c")
        .arg(repo().join("packaging/rpm/rpmlint.toml"))
        .arg("-r")
        .arg(repo().join("packaging/rpm/rpmlintrc"))
        .arg(rpm)
        .output()
        .unwrap();
    eprintln!("rpmlint:\n{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        out.status.success() && text(&out.stdout).contains(" 0 errors, 0 warnings"),
        "rpmlint found errors or warnings"
    );

    // Installed into a throw-away root with rpm checking every requirement (no --nodeps):
    // the root's rpm database holds the stand-in base system.
    let root = Root::new();
    let rpm_cmd = |args: &[&str]| {
        run(Command::new("rpm")
            .arg(format!("--root={}", root.path().display()))
            .arg("--dbpath=/var/lib/rpm")
            .args(args))
    };
    rpm_cmd(&["--initdb"]);
    let build = tempfile::tempdir().unwrap();
    let base = base_system_rpm(&root, rpm, build.path());
    rpm_cmd(&["--install", &base.display().to_string()]);
    let before = root.listing();
    let installed_version =
        || text(&rpm_cmd(&["--query", "--qf", "%{VERSION}", "lightsnap"]).stdout);
    rpm_cmd(&["--install", &rpm.display().to_string()]);
    assert_eq!(installed_version(), VERSION);
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
    check_erased(&root, &before, &changed);
    std::fs::remove_file(root.at("etc/lightsnap/config.toml.rpmsave")).unwrap();
    std::fs::remove_dir(root.at("etc/lightsnap")).unwrap();

    // Upgraded from the previous version: the changed configuration (the same in both
    // versions, so no .rpmnew) and the timer's enablement stay.
    rpm_cmd(&["--install", &old_rpm.display().to_string()]);
    assert_eq!(installed_version(), previous_version());
    std::fs::write(&config, &changed).unwrap();
    root.chroot(&["systemctl", "enable", "lightsnap-snapshot.timer"]);
    assert_eq!(root.timer_state(), "enabled");
    rpm_cmd(&["--upgrade", &rpm.display().to_string()]);
    assert_eq!(installed_version(), VERSION);
    assert_eq!(std::fs::read_to_string(&config).unwrap(), changed);
    assert_eq!(root.timer_state(), "enabled", "after the upgrade");
    let beside: Vec<_> = std::fs::read_dir(root.at("etc/lightsnap"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "config.toml" && n != "hooks.d" && n != "verify.d")
        .collect();
    assert!(beside.is_empty(), "beside the configuration: {beside:?}");

    // Erased after the upgrade: the enablement links go too.
    rpm_cmd(&["--erase", "lightsnap"]);
    assert_eq!(root.enablement_links(), Vec::<String>::new());
    check_erased(&root, &before, &changed);
}

/// After `rpm --erase` of a package whose configuration was changed: only the changed
/// configuration is left, as config.toml.rpmsave (rpm's way; there is no purge).
fn check_erased(root: &Root, before: &BTreeSet<String>, changed: &str) {
    // rpm makes the parents of the files it installs but owns only its files: the shared
    // directories it made (man8, the completion directories, ...) stay, empty, while the
    // package's own are removed by its %postun.
    let left: BTreeSet<String> = root
        .added_since(before)
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
        set(&["etc/lightsnap", "etc/lightsnap/config.toml.rpmsave"]),
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
        p("packaging/examples/hooks/redis"),
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

/// Issue 22: the packaged configuration may hold ping_url (a secret), so both packages install
/// it readable by root alone. Read from the packaging metadata, without building anything.
#[test]
fn the_shipped_configuration_is_not_world_readable() {
    let manifest: toml::Value =
        toml::from_str(&std::fs::read_to_string(repo().join("Cargo.toml")).unwrap()).unwrap();
    let metadata = &manifest["package"]["metadata"];
    let deb = metadata["deb"]["assets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a[1].as_str() == Some("etc/lightsnap/config.toml"))
        .expect("the .deb ships etc/lightsnap/config.toml");
    let rpm = metadata["generate-rpm"]["assets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["dest"].as_str() == Some("/etc/lightsnap/config.toml"))
        .expect("the .rpm ships /etc/lightsnap/config.toml");
    for (package, mode) in [("deb", &deb[2]), ("rpm", &rpm["mode"])] {
        let mode = u32::from_str_radix(mode.as_str().unwrap(), 8).unwrap();
        assert_eq!(
            mode & 0o007,
            0,
            "the {package} installs config.toml with mode {mode:o}: others may read it"
        );
        assert_eq!(mode & 0o022, 0, "{package}: writable by others ({mode:o})");
    }
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

/// A stand-in for the `mysql` client: answers the hook's version probe (`-e`) as a MySQL
/// without backup stages, logs what its session is sent, answers the hook's SELECT (or
/// refuses the lock with `FAKE_MYSQL_FAIL`), and logs when its input ends (the disconnect
/// that releases the lock). tests/databases.rs runs the hook against a real MariaDB.
const FAKE_MYSQL: &str = r#"#!/bin/sh
for a in "$@"; do
    if [ "$a" = -e ]; then echo "8.0.36-fake"; exit 0; fi
done
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
    // Under both names: the hook prefers `mariadb`, which this machine may have for real.
    for name in ["mariadb", "mysql"] {
        std::fs::write(bin.join(name), FAKE_MYSQL).unwrap();
        std::fs::set_permissions(bin.join(name), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
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
            .filter(|c| c.starts_with(format!("timeout\0{max_hold}\0").as_bytes()))
            .count()
    };

    // pre-freeze returns with the lock held: the session is still connected.
    let out = hook("pre-freeze", false);
    assert!(out.status.success(), "{out:?}");
    assert!(
        text(&out.stderr).contains("commits blocked (FLUSH TABLES WITH READ LOCK"),
        "{out:?}"
    );
    assert_eq!(
        logged(),
        "connected\nsql SET SESSION lock_wait_timeout = 10;\nsql FLUSH TABLES WITH READ LOCK;\nsql SELECT 'lightsnap: locked';\n"
    );
    let session: i32 = std::fs::read_to_string(state.join("client.pid"))
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
    assert!(text(&out.stderr).contains("lock released"), "{out:?}");
    assert!(logged().ends_with("disconnected\n"), "{}", logged());
    assert!(!state.exists(), "its state is cleared");
    assert_eq!(holders(), 0, "no holder is left");

    // A refused lock fails pre-freeze at once, with the server's answer, and leaves nothing.
    std::fs::remove_file(&log).unwrap();
    let out = hook("pre-freeze", true);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("could not take the lock"), "{stderr}");
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

/// The units' sandboxing, as `systemd-analyze security` scores it (9.6 UNSAFE for both
/// before it was chosen, issue 12): a change that loosens it must change the bound here too.
#[test]
fn the_units_are_sandboxed_as_far_as_freezing_allows() {
    let test = "the_units_are_sandboxed_as_far_as_freezing_allows";
    if !tool_or_skip(test, "systemd-analyze") {
        return;
    }
    for (unit, bound) in [
        ("lightsnap-snapshot.service", 6.0),
        ("lightsnap-recover.service", 4.8),
    ] {
        let out = run(Command::new("systemd-analyze")
            .args(["security", "--offline=true", "--no-pager"])
            .arg(repo().join("packaging/systemd").join(unit))
            .env("SYSTEMD_COLORS", "0"));
        let report = text(&out.stdout);
        let score: f64 = report
            .lines()
            .find_map(|l| l.split("exposure level for ").nth(1))
            .and_then(|rest| rest.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no exposure level for {unit}:\n{report}"));
        assert!(
            score <= bound,
            "{unit}: exposure {score} > {bound}:\n{report}"
        );
        // What freezing, unmounting and --expedite-freeze need is not taken away.
        let unit_text =
            std::fs::read_to_string(repo().join("packaging/systemd").join(unit)).unwrap();
        for option in [
            "ProtectSystem=",
            "PrivateMounts=",
            "PrivateDevices=",
            "ProtectKernelTunables=",
            "PrivateUsers=",
            "DeviceAllow=",
        ] {
            assert!(
                !unit_text.lines().any(|l| l.starts_with(option)),
                "{unit} sets {option}, which breaks freezing or the unmount fallback"
            );
        }
        let caps = unit_text
            .lines()
            .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
            .unwrap_or_else(|| panic!("{unit} trims its capabilities"));
        assert_eq!(
            caps.starts_with('~'),
            !caps.contains("CAP_SYS_ADMIN"),
            "{unit} keeps CAP_SYS_ADMIN: {caps}"
        );
    }
}

/// The boot step's unit (lightsnap-system-copy.service) runs with no network and the file
/// system read-only but its record directory; /sys stays writable (the removal writes
/// there), and nothing in it orders it after a mount it runs before (PrivateTmp= would,
/// through /var/tmp).
#[test]
fn the_boot_step_is_sandboxed_and_runs_before_local_filesystems() {
    let test = "the_boot_step_is_sandboxed_and_runs_before_local_filesystems";
    let unit = "lightsnap-system-copy.service";
    let unit_text = std::fs::read_to_string(repo().join("packaging/systemd").join(unit)).unwrap();
    let has = |line: &str| unit_text.lines().any(|l| l == line);
    for line in [
        "DefaultDependencies=no",
        "Before=local-fs-pre.target shutdown.target",
        "PrivateNetwork=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=-/etc/lightsnap/system-copies",
        "ConditionDirectoryNotEmpty=/etc/lightsnap/system-copies",
        "ExecStart=/usr/bin/lightsnap thaw --recover --boot",
    ] {
        assert!(has(line), "{unit} lacks {line}");
    }
    for option in [
        "ProtectKernelTunables=",
        "PrivateTmp=",
        "ProtectHome=",
        "[Install]",
    ] {
        assert!(
            !unit_text.lines().any(|l| l.starts_with(option)),
            "{unit} sets {option}"
        );
    }
    // The directory is lightsnap's own (bootcopy::RECORD_DIR).
    assert_eq!(
        lightsnap::restore::bootcopy::RECORD_DIR,
        "/etc/lightsnap/system-copies"
    );
    let drop_in =
        std::fs::read_to_string(repo().join("packaging/systemd-dropins").join(DROP_IN)).unwrap();
    assert!(drop_in.lines().any(|l| l == format!("Wants={unit}")));
    if !tool_or_skip(test, "systemd-analyze") {
        return;
    }
    let out = run(Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(repo().join("packaging/systemd").join(unit))
        .env("SYSTEMD_COLORS", "0"));
    let report = text(&out.stdout);
    let score: f64 = report
        .lines()
        .find_map(|l| l.split("exposure level for ").nth(1))
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level for {unit}:\n{report}"));
    assert!(
        score <= BOOT_STEP_EXPOSURE,
        "{unit}: exposure {score}:\n{report}"
    );
}

/// The boot step's exposure as `systemd-analyze security` scored it when it was written.
const BOOT_STEP_EXPOSURE: f64 = 2.7;

/// The part of lightsnap-snapshot.service's sandboxing that can be applied without systemd
/// (which these build machines do not run as init): its `NoNewPrivileges=` and its trimmed
/// `CapabilityBoundingSet=`, read from the unit and applied with `setpriv`. Under them, a
/// freeze with hooks and `--expedite-freeze` on ext4 and the unmount fallback on ntfs-3g
/// (FUSE) work. The unit's system call filter and socket families need the booted guests
/// of the VM tests (issue 12 leaves that proof to them).
#[test]
fn freezing_unmounting_and_hooks_work_within_the_units_capabilities() {
    let test = "freezing_unmounting_and_hooks_work_within_the_units_capabilities";
    if !root_or_skip(test) {
        return;
    }
    for tool in ["setpriv", "mkfs.ext4", "mkntfs", "ntfs-3g"] {
        if !tool_or_skip(test, tool) {
            return;
        }
    }
    let unit = std::fs::read_to_string(repo().join("packaging/systemd/lightsnap-snapshot.service"))
        .unwrap();
    let setting = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("lightsnap-snapshot.service sets {key}"))
            .to_string()
    };
    assert_eq!(setting("NoNewPrivileges="), "yes");
    let dropped = setting("CapabilityBoundingSet=");
    let dropped = dropped
        .strip_prefix('~')
        .expect("the snapshot unit's bounding set is a list of what it drops");
    let bounding: Vec<String> = dropped
        .split_whitespace()
        .map(|c| format!("-{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect();

    let scratch = Scratch::new();
    let ext4 = LoopFs::create(&scratch, "ext4", FsKind::Ext4);
    let ntfs = LoopFs::create(&scratch, "ntfs", FsKind::Ntfs);
    let before_ntfs = ntfs.mountinfo().expect("mounted");
    let fake = fake(
        &scratch,
        seed(&[("data-1", &ext4.device), ("win-1", &ntfs.device)], None),
    );
    // A hook that logs its phases outside the filesystems it sees frozen.
    let conf = scratch.path().join("conf");
    let hooks = scratch.path().join("hooks.d");
    let log = scratch.path().join("hooks.log");
    std::fs::create_dir_all(conf.join("etc/lightsnap")).unwrap();
    std::fs::create_dir_all(&hooks).unwrap();
    std::fs::write(
        conf.join("etc/lightsnap/config.toml"),
        format!("hook_dir = \"{}\"\n", hooks.display()),
    )
    .unwrap();
    let hook = hooks.join("10-log");
    std::fs::write(
        &hook,
        format!("#!/bin/sh\necho \"$1\" >> '{}'\n", log.display()),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let rcu = Path::new("/sys/kernel/rcu_expedited");
    let rcu_before = std::fs::read_to_string(rcu).ok();

    // lightsnap as the harness runs it, started through setpriv.
    let sandboxed = |args: &[&str], path: &Path| {
        let plain = lightsnap(&scratch, &fake);
        let mut cmd = Command::new("setpriv");
        cmd.env_clear();
        for (k, v) in plain.get_envs() {
            if let Some(v) = v {
                cmd.env(k, v);
            }
        }
        cmd.env("LIGHTSNAP_CONFIG_ROOT", &conf)
            .arg("--no-new-privs")
            .arg(format!("--bounding-set={}", bounding.join(",")))
            .arg("--")
            .arg(plain.get_program())
            .arg("freeze-and-snap")
            .args(args)
            .arg(path)
            .stdin(Stdio::null());
        finish(&mut cmd)
    };

    let frozen = sandboxed(
        &[
            "--disk-name",
            "data-1",
            "--snapshot-name",
            "hardened-ext4",
            "--expedite-freeze",
        ],
        &ext4.mount_point,
    );
    assert_eq!(frozen.code, 0, "{frozen:?}");
    assert!(
        frozen.stdout.contains("frozen, writes paused"),
        "{frozen:?}"
    );
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "pre-freeze\npost-thaw\n",
        "the hook ran around the freeze"
    );
    assert!(!ext4.is_frozen());
    assert_eq!(
        std::fs::read_to_string(rcu).ok(),
        rcu_before,
        "rcu_expedited put back"
    );

    let unmounted = sandboxed(
        &["--disk-name", "win-1", "--snapshot-name", "hardened-ntfs"],
        &ntfs.mount_point,
    );
    assert_eq!(unmounted.code, 0, "{unmounted:?}");
    assert!(
        unmounted.stdout.contains("unmounted (could not freeze)"),
        "{unmounted:?}"
    );
    let after_ntfs = ntfs.mountinfo().expect("mounted again");
    assert_eq!(
        (&after_ntfs.fstype, &after_ntfs.mount_point),
        (&before_ntfs.fstype, &before_ntfs.mount_point)
    );
    let calls = create_calls(&fake);
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(fake.snapshot_image("hardened-ext4").exists());
    assert!(fake.snapshot_image("hardened-ntfs").exists());
}
