//! Who holds a mount: the processes whose working directory, root, executable, open files or
//! mapped files are under it. Used to explain a busy unmount, never to decide anything.
//!
//! The `/proc` walk (processes, their links, descriptors and maps) is the `procfs` crate's;
//! only the device check is ours: a path under the mount point may be on a mount below it.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use procfs::process::{FDTarget, MMapPath};

/// A process that keeps a mount busy.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Holder {
    /// Process id.
    pub pid: u32,
    /// Its command name (`/proc/PID/comm`).
    pub command: String,
    /// What of it is on the mount: `cwd`, `root`, `exe`, `fd 3 -> /data/x`, `mmap /data/lib.so`.
    pub what: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} ({}): {}", self.pid, self.command, self.what)
    }
}

/// Processes with something open under `mount_point` on device `dev` (raw `st_dev`).
/// Processes that vanish while being read are skipped.
pub fn holders(mount_point: &Path, dev: u64) -> Vec<Holder> {
    let mut found = Vec::new();
    let Ok(procs) = procfs::process::all_processes() else {
        return found;
    };
    for process in procs.flatten() {
        let pid = process.pid();
        let command = process.stat().map(|s| s.comm).unwrap_or_default();
        let mut add = |what: String| {
            found.push(Holder {
                pid: pid as u32,
                command: command.clone(),
                what,
            })
        };
        // Under the mount point, and on its device: stat through the `/proc` link itself, which
        // reaches the open file even when its path has gone.
        let on_mount = |target: &Path, link: &str| {
            target.starts_with(mount_point)
                && fs::metadata(format!("/proc/{pid}/{link}")).is_ok_and(|m| m.dev() == dev)
        };
        let links = [
            ("cwd", process.cwd()),
            ("root", process.root()),
            ("exe", process.exe()),
        ];
        for (name, target) in links {
            if target.is_ok_and(|target| on_mount(&target, name)) {
                add(name.to_string());
            }
        }
        if let Ok(fds) = process.fd() {
            for fd in fds.flatten() {
                if let FDTarget::Path(target) = &fd.target {
                    if on_mount(target, &format!("fd/{}", fd.fd)) {
                        add(format!("fd {} -> {}", fd.fd, target.display()));
                    }
                }
            }
        }
        if let Ok(maps) = process.maps() {
            let mut seen = std::collections::BTreeSet::new();
            for map in maps {
                if let MMapPath::Path(path) = map.pathname {
                    if path.starts_with(mount_point) && seen.insert(path.clone()) {
                        add(format!("mmap {}", path.display()));
                    }
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_this_process_holding_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("held");
        let file = fs::File::create(&path).unwrap();
        let dev = fs::metadata(dir.path()).unwrap().dev();
        let me = std::process::id();
        let found = holders(dir.path(), dev);
        assert!(
            found.iter().any(|h| h.pid == me && h.what.contains("held")),
            "{found:?}"
        );
        let held = found.iter().find(|h| h.pid == me).unwrap();
        assert_eq!(
            held.what,
            format!(
                "fd {} -> {}",
                std::os::fd::AsRawFd::as_raw_fd(&file),
                path.display()
            )
        );
        let elsewhere = holders(dir.path(), dev.wrapping_add(1));
        assert!(
            !elsewhere.iter().any(|h| h.pid == me),
            "another device's mount is not held by this file: {elsewhere:?}"
        );
    }

    /// A child whose working directory is under the mount holds it, by name and command.
    #[test]
    fn finds_a_child_by_its_working_directory() {
        let dir = tempfile::tempdir().unwrap();
        let dev = fs::metadata(dir.path()).unwrap().dev();
        let mut child = std::process::Command::new("sleep")
            .arg("600")
            .current_dir(dir.path())
            .spawn()
            .unwrap();
        let found = holders(dir.path(), dev);
        child.kill().unwrap();
        child.wait().unwrap();
        let theirs: Vec<&Holder> = found.iter().filter(|h| h.pid == child.id()).collect();
        assert_eq!(theirs.len(), 1, "{found:?}");
        assert_eq!(
            (theirs[0].what.as_str(), theirs[0].command.as_str()),
            ("cwd", "sleep")
        );
        assert_eq!(
            theirs[0].to_string(),
            format!("pid {} (sleep): cwd", child.id())
        );
    }
}
