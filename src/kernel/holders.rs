//! Who holds a mount: the processes whose working directory, root, executable, open files or
//! mapped files are under it. Used to explain a busy unmount, never to decide anything.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

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
    let Ok(procs) = fs::read_dir("/proc") else {
        return found;
    };
    let on_mount = |link: &Path| -> Option<String> {
        let target = fs::read_link(link).ok()?;
        let meta = fs::metadata(link).ok()?;
        (target.starts_with(mount_point) && meta.dev() == dev).then(|| target.display().to_string())
    };
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let dir = entry.path();
        let command = fs::read_to_string(dir.join("comm"))
            .map(|c| c.trim_end().to_string())
            .unwrap_or_default();
        let mut add = |what: String| {
            found.push(Holder {
                pid,
                command: command.clone(),
                what,
            })
        };
        for name in ["cwd", "root", "exe"] {
            if on_mount(&dir.join(name)).is_some() {
                add(name.to_string());
            }
        }
        if let Ok(fds) = fs::read_dir(dir.join("fd")) {
            for fd in fds.flatten() {
                if let Some(target) = on_mount(&fd.path()) {
                    add(format!(
                        "fd {} -> {target}",
                        fd.file_name().to_string_lossy()
                    ));
                }
            }
        }
        if let Ok(maps) = fs::read_to_string(dir.join("maps")) {
            let mut seen = std::collections::BTreeSet::new();
            for line in maps.lines() {
                // address perms offset dev inode path
                if let Some(path) = line.split_whitespace().nth(5) {
                    if Path::new(path).starts_with(mount_point) && seen.insert(path.to_string()) {
                        add(format!("mmap {path}"));
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
        let _file = fs::File::create(&path).unwrap();
        let dev = fs::metadata(dir.path()).unwrap().dev();
        let me = std::process::id();
        let found = holders(dir.path(), dev);
        assert!(
            found.iter().any(|h| h.pid == me && h.what.contains("held")),
            "{found:?}"
        );
    }
}
