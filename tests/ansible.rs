//! The Ansible collection (`ansible/`) driving the real lightsnap: its deploy playbook and its
//! modules run with `ansible-playbook` on this machine (connection `local`) against the fake
//! Lightsail and a loop-device filesystem, as root. The playbook's snapshot comes first, a
//! failed one stops the deploy, check mode touches nothing, and `info` returns the status.
//! Booted guests over SSH are the VM lab's part. `scripts/ansible` installs the pinned
//! ansible-core and ansible-lint and names them in `LIGHTSNAP_ANSIBLE_BIN`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// The directory of the pinned Ansible's programs, or `None` (having said why) outside CI.
fn ansible_or_skip(test: &str) -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("LIGHTSNAP_ANSIBLE_BIN") {
        let dir = PathBuf::from(dir);
        if dir.join("ansible-playbook").exists() {
            return Some(dir);
        }
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test} needs Ansible: scripts/test installs it (scripts/ansible) and sets LIGHTSNAP_ANSIBLE_BIN"
    );
    eprintln!("skipping {test}: LIGHTSNAP_ANSIBLE_BIN is not set (scripts/test sets it)");
    None
}

/// The collection laid out as Ansible looks for it: `<dir>/ansible_collections/lightsnap/lightsnap`.
fn collections_path(scratch: &Scratch) -> PathBuf {
    let root = scratch.path().join("collections");
    let dest = root.join("ansible_collections/lightsnap");
    std::fs::create_dir_all(&dest).unwrap();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("ansible");
    std::os::unix::fs::symlink(source, dest.join("lightsnap")).unwrap();
    root
}

/// `ansible-playbook`/`ansible` with the environment lightsnap needs to reach the fake (the
/// modules inherit it over the local connection), `lightsnap` on PATH, and the collection.
fn ansible(bin: &Path, program: &str, s: &OneDisk, collections: &Path) -> Command {
    let template = lightsnap(&s.scratch, &s.fake);
    let mut cmd = Command::new(bin.join(program));
    cmd.env_clear();
    for (key, value) in template.get_envs() {
        if let Some(value) = value {
            cmd.env(key, value);
        }
    }
    let bin_dir = s.scratch.path().join("bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    let link = bin_dir.join("lightsnap");
    if !link.exists() {
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_lightsnap"), &link).unwrap();
    }
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    cmd.env("PATH", path)
        .env("HOME", s.scratch.path())
        .env("ANSIBLE_COLLECTIONS_PATH", collections)
        .env("ANSIBLE_LOCAL_TEMP", s.scratch.path().join("ansible-tmp"))
        .env("ANSIBLE_HOME", s.scratch.path().join("ansible-home"))
        .env("ANSIBLE_NOCOLOR", "1")
        .args(["-i", "localhost,", "-c", "local"])
        .args(["-e", "ansible_python_interpreter=/usr/bin/python3"]);
    cmd
}

fn deploy(bin: &Path, s: &OneDisk, collections: &Path, path: &Path, id: &str) -> Command {
    let mut cmd = ansible(bin, "ansible-playbook", s, collections);
    let vars = serde_json::json!({
        "deploy_paths": [path],
        "deploy_id": id,
        "deploy_marker": s.scratch.path().join("deployed"),
        "ansible_become": false,
    });
    cmd.args(["-e", &vars.to_string(), "lightsnap.lightsnap.deploy"]);
    cmd
}

#[test]
fn the_deploy_playbook_snapshots_first_and_stops_on_a_failure() {
    let test = "the_deploy_playbook_snapshots_first_and_stops_on_a_failure";
    let Some(bin) = ansible_or_skip(test) else {
        return;
    };
    let Some(s) = OneDisk::new(test) else { return };
    let collections = collections_path(&s.scratch);
    let marker = s.scratch.path().join("deployed");

    // A deploy: the snapshot, tagged with the deploy's id, then the deploy's own task.
    let r = finish(&mut deploy(
        &bin,
        &s,
        &collections,
        &s.fs.mount_point,
        "rel-1",
    ));
    assert_eq!(r.code, 0, "{r:?}");
    let calls = create_calls(&s.fake);
    assert_eq!(calls.len(), 1, "{r:?}");
    let tags = calls[0].body["tags"].as_array().expect("tags").clone();
    assert!(
        tags.iter()
            .any(|t| t["key"] == "deploy" && t["value"] == "rel-1"),
        "{tags:?}"
    );
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "rel-1\n");
    assert!(!s.fs.is_frozen());

    // Check mode: lightsnap's --dry-run, no snapshot, nothing deployed.
    let mut check = deploy(&bin, &s, &collections, &s.fs.mount_point, "rel-2");
    let r = finish(check.arg("--check"));
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        create_calls(&s.fake).len(),
        1,
        "check mode took a snapshot: {r:?}"
    );
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "rel-1\n");

    // A snapshot that fails (no such path) stops the deploy before its task, with
    // lightsnap's own message.
    let missing = s.scratch.path().join("no-such-dir");
    let r = finish(&mut deploy(&bin, &s, &collections, &missing, "rel-3"));
    assert_ne!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("no-such-dir"), "{r:?}");
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "rel-1\n");
    assert_eq!(create_calls(&s.fake).len(), 1, "{r:?}");

    // The info module: lightsnap's status as facts, naming the target that succeeded.
    let mut info = ansible(&bin, "ansible", &s, &collections);
    let r = finish(info.args(["localhost", "-m", "lightsnap.lightsnap.info"]));
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("lightsnap_status"), "{r:?}");
    assert!(
        r.stdout.contains(&s.fs.mount_point.display().to_string()),
        "{r:?}"
    );
}
