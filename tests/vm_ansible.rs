//! The Ansible collection against real machines (issue 27): three booted guests of the VM
//! lab — Debian 11, 12 and 13, together — each reachable over SSH only on a host port bound
//! to 127.0.0.1 (QEMU's user network with `restrict=on`), each reaching its own fake
//! Lightsail on this host through one QEMU forward (10.0.2.100:80 in the guest). From here,
//! `ansible-playbook` runs the collection's role (the .deb installed, root's AWS credentials,
//! a configuration fragment, the timer enabled), then the role again (nothing changed), then
//! the collection's deploy playbook (a consistent pre-deploy snapshot on each host, then the
//! deploy's task). The guests report what is on them (tests/vm/ansible.sh); the fakes say
//! which calls they received. The only addition to what a user does: the fake's endpoint, in
//! a unit drop-in and in the deploy's environment.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::vm::{deb, lab_or_skip, repo, ROOT_SERIAL};
use common::{run, wait_until, Fake, Options, Seed};

const DISTROS: [&str; 3] = ["bullseye", "bookworm", "trixie"];

/// The directory of the pinned Ansible's programs (`scripts/ansible bin`, which scripts/test
/// exports as LIGHTSNAP_ANSIBLE_BIN), or `None` having said why (outside CI only).
fn ansible_or_skip(test: &str) -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("LIGHTSNAP_ANSIBLE_BIN").map(PathBuf::from) {
        if dir.join("ansible-playbook").exists() {
            return Some(dir);
        }
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test} needs Ansible: scripts/test sets LIGHTSNAP_ANSIBLE_BIN (scripts/ansible bin)"
    );
    eprintln!("skipping {test}: LIGHTSNAP_ANSIBLE_BIN is not set (scripts/test sets it)");
    None
}

/// A port on 127.0.0.1 that nothing listens on now (for the guest's forwarded SSH).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One guest: its fake, its SSH port, its scripts/vm process and /out.
struct Guest {
    distro: &'static str,
    fake: Fake,
    ssh_port: u16,
    out: PathBuf,
    vm: Option<Child>,
}

impl Drop for Guest {
    fn drop(&mut self) {
        if let Some(mut vm) = self.vm.take() {
            let _ = vm.kill();
            let _ = vm.wait();
        }
    }
}

/// The fake of guest `distro`: instance `lab-DISTRO` whose system disk is the guest's root
/// NVMe disk (found by its serial's volume id); no bytes behind it (the test asserts on
/// calls, not images).
fn fake_for(scratch: &Path, distro: &str) -> Fake {
    let name = format!("lab-{distro}");
    let volume = format!("vol-{}", &ROOT_SERIAL[3..]);
    let toml = format!(
        "self_instance = \"{name}\"\n[[instances]]\nname = \"{name}\"\ninstance_id = \"i-0a11b1e{:09x}\"\n\
         system_disk = {{ name = \"{name}-system\", path = \"/dev/xvda\", size_gb = 20, volume_id = \"{volume}\" }}\n",
        DISTROS.iter().position(|d| *d == distro).unwrap()
    );
    let dir = scratch.join(format!("snapshots-{distro}"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut opts = Options::new(Seed::from_toml_str(&toml).expect("seed"), dir);
    opts.snapshot_duration = Duration::ZERO;
    Fake::start(opts).expect("fake lightsail")
}

fn fake_port(fake: &Fake) -> u16 {
    fake.endpoint()
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .expect("the fake's port")
}

/// `ansible-playbook` with the guests' inventory, from the scratch directory.
fn playbook(bin: &Path, scratch: &Path, collections: &Path) -> Command {
    let mut cmd = Command::new(bin.join("ansible-playbook"));
    cmd.current_dir(scratch)
        .env("ANSIBLE_COLLECTIONS_PATH", collections)
        .env("ANSIBLE_HOME", scratch.join("ansible-home"))
        .env("ANSIBLE_LOCAL_TEMP", scratch.join("ansible-tmp"))
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_HOST_KEY_CHECKING", "False")
        .env("ANSIBLE_FORKS", "3")
        // Each guest is slow under TCG: one SSH connection per host, kept open.
        .env(
            "ANSIBLE_SSH_ARGS",
            "-o ControlMaster=auto -o ControlPersist=600s -o UserKnownHostsFile=/dev/null",
        )
        .env("ANSIBLE_TIMEOUT", "120")
        .args(["-i", "inventory.ini"])
        .stdin(Stdio::null());
    cmd
}

/// Runs a playbook; returns its output, panicking with it when it fails.
fn play(cmd: &mut Command) -> String {
    let out = cmd.output().expect("running ansible-playbook");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    assert!(
        out.status.success(),
        "ansible-playbook failed: {}",
        out.status
    );
    text
}

/// The `changed=N` of each host in a PLAY RECAP.
fn changed_per_host(output: &str) -> Vec<(String, u32)> {
    let recap = output.split("PLAY RECAP").last().expect("a PLAY RECAP");
    recap
        .lines()
        .filter_map(|l| {
            let host = l.split_whitespace().next()?;
            let changed = l
                .split_whitespace()
                .find_map(|w| w.strip_prefix("changed="))?;
            Some((host.to_string(), changed.parse().ok()?))
        })
        .collect()
}

#[test]
fn the_role_and_the_deploy_playbook_on_three_booted_guests() {
    let test = "the_role_and_the_deploy_playbook_on_three_booted_guests";
    if !lab_or_skip(test) {
        return;
    }
    let Some(bin) = ansible_or_skip(test) else {
        return;
    };
    let scratch = tempfile::Builder::new()
        .prefix("lightsnap-vm-ansible-")
        .tempdir()
        .unwrap();
    let s = scratch.path();
    // The images first, one at a time (cached after the first build).
    for distro in DISTROS {
        run(Command::new(repo().join("scripts/vm")).args(["image", "--distro", distro]));
    }
    let deb = deb();

    // What every guest gets at /opt/lab: the test's public key and the guest script.
    let lab = s.join("lab");
    std::fs::create_dir_all(&lab).unwrap();
    run(Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "lightsnap-vm-ansible",
            "-f",
        ])
        .arg(s.join("key")));
    std::fs::copy(s.join("key.pub"), lab.join("authorized_keys")).unwrap();
    std::fs::copy(repo().join("tests/vm/ansible.sh"), lab.join("ansible.sh")).unwrap();

    // The three guests, together.
    let mut guests: Vec<Guest> = DISTROS
        .iter()
        .map(|distro| {
            let fake = fake_for(s, distro);
            let ssh_port = free_port();
            let out = s.join(format!("out-{distro}"));
            std::fs::create_dir_all(&out).unwrap();
            let vm = Command::new(repo().join("scripts/vm"))
                .args(["--distro", distro, "--mem", "768", "--timeout", "2400"])
                .args(["--ssh", &ssh_port.to_string()])
                .args(["--guestfwd", &format!("10.0.2.100:80={}", fake_port(&fake))])
                .arg("--copy")
                .arg(format!("{}:/opt/lab", lab.display()))
                .arg("--out")
                .arg(&out)
                .args(["--", "bash", "/opt/lab/ansible.sh"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("scripts/vm");
            Guest {
                distro,
                fake,
                ssh_port,
                out,
                vm: Some(vm),
            }
        })
        .collect();
    for g in &guests {
        let events = g.out.join("events");
        wait_until(
            &format!("the {} guest to be ready for SSH", g.distro),
            Duration::from_secs(900),
            || std::fs::read_to_string(&events).is_ok_and(|e| e.lines().any(|l| l == "ready")),
        );
    }

    // The inventory, and the collection where Ansible looks for it.
    let mut inventory = String::from("[lightsail]\n");
    for g in &guests {
        inventory.push_str(&format!(
            "lab-{} ansible_host=127.0.0.1 ansible_port={} ansible_user=root ansible_ssh_private_key_file={}\n",
            g.distro,
            g.ssh_port,
            s.join("key").display()
        ));
    }
    std::fs::write(s.join("inventory.ini"), inventory).unwrap();
    let collections = s.join("collections");
    std::fs::create_dir_all(collections.join("ansible_collections/lightsnap")).unwrap();
    std::os::unix::fs::symlink(
        repo().join("ansible"),
        collections.join("ansible_collections/lightsnap/lightsnap"),
    )
    .unwrap();

    // The site playbook a user writes: the role with the package, the key, the region and a
    // target. The fake's endpoint in a unit drop-in is the test's one addition.
    let endpoint = "http://10.0.2.100:80";
    let site = format!(
        r#"---
- name: The fake Lightsail's endpoint for lightsnap's units (the test's addition)
  hosts: lightsail
  gather_facts: false
  tasks:
    - name: The drop-in directory
      ansible.builtin.file:
        path: /etc/systemd/system/lightsnap-snapshot.service.d
        state: directory
        mode: "0755"
    - name: The drop-in
      ansible.builtin.copy:
        dest: /etc/systemd/system/lightsnap-snapshot.service.d/lab.conf
        content: |
          [Service]
          Environment=AWS_ENDPOINT_URL_LIGHTSAIL={endpoint} AWS_EC2_METADATA_SERVICE_ENDPOINT={endpoint}
        mode: "0644"

- name: lightsnap on every instance
  hosts: lightsail
  roles:
    - role: lightsnap.lightsnap.lightsnap
      vars:
        lightsnap_package: {deb}
        lightsnap_aws_access_key_id: {key}
        lightsnap_aws_secret_access_key: {secret}
        lightsnap_region: us-east-1
        lightsnap_targets:
          - path: /
        lightsnap_retention_keep: 7
"#,
        deb = deb.display(),
        key = fake_lightsail::DEFAULT_ACCESS_KEY,
        secret = fake_lightsail::DEFAULT_SECRET_KEY,
    );
    std::fs::write(s.join("site.yml"), site).unwrap();

    // The first run changes every host; the second, none.
    let first = play(playbook(&bin, s, &collections).arg("site.yml"));
    let changed = changed_per_host(&first);
    assert_eq!(changed.len(), 3, "{changed:?}");
    assert!(changed.iter().all(|(_, n)| *n > 0), "{changed:?}");
    let second = play(playbook(&bin, s, &collections).arg("site.yml"));
    let changed = changed_per_host(&second);
    assert_eq!(changed.len(), 3, "{changed:?}");
    assert!(
        changed.iter().all(|(_, n)| *n == 0),
        "the second run changed something: {changed:?}"
    );

    // The deploy: a consistent snapshot of / on each host (two at a time), then its task.
    let vars = serde_json::json!({
        "deploy_id": "rel-42",
        "deploy_paths": ["/"],
        "deploy_environment": {
            "AWS_ENDPOINT_URL_LIGHTSAIL": endpoint,
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": endpoint,
        },
    });
    play(
        playbook(&bin, s, &collections)
            .args(["-e", &vars.to_string()])
            .arg("lightsnap.lightsnap.deploy"),
    );
    for g in &guests {
        let creates: Vec<_> = g
            .fake
            .calls()
            .into_iter()
            .filter(|c| c.operation == "CreateDiskSnapshot")
            .collect();
        assert_eq!(creates.len(), 1, "{}: {creates:?}", g.distro);
        let body = &creates[0].body;
        assert_eq!(body["instanceName"], format!("lab-{}", g.distro), "{body}");
        let tags = body["tags"].as_array().expect("tags");
        assert!(
            tags.iter()
                .any(|t| t["key"] == "deploy" && t["value"] == "rel-42"),
            "{body}"
        );
    }

    // Done: each guest reports what is on it and powers off.
    for g in &guests {
        run(Command::new("ssh").args(["-i"]).arg(s.join("key")).args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-p",
            &g.ssh_port.to_string(),
            "root@127.0.0.1",
            "echo done > /run/lab-done",
        ]));
    }
    for g in &mut guests {
        let vm = g.vm.take().unwrap();
        let out = vm.wait_with_output().unwrap();
        eprintln!(
            "{}: {}",
            g.distro,
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
        assert!(
            out.status.success(),
            "{}: scripts/vm {}",
            g.distro,
            out.status
        );
        let read = |name: &str| {
            std::fs::read_to_string(g.out.join(name))
                .unwrap_or_default()
                .trim()
                .to_string()
        };
        assert_eq!(read("codename"), g.distro);
        assert_eq!(read("version"), "0.1.0-1", "{}", g.distro);
        assert_eq!(read("timer-enabled"), "enabled", "{}", g.distro);
        assert_eq!(read("timer-active"), "active", "{}", g.distro);
        assert_eq!(read("credentials-mode"), "600 root", "{}", g.distro);
        assert!(
            read("fragment.toml").contains("path = \"/\""),
            "{}: {}",
            g.distro,
            read("fragment.toml")
        );
        assert_eq!(read("deployed"), "rel-42", "{}", g.distro);
    }
}
