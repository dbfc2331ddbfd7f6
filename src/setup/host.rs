//! The real [`Machine`]: files written atomically, `systemctl` from `PATH`, and lightsnap's
//! own binary for the first snapshot and its verification (a child process, so that its
//! locks, signals and exit code are exactly those of `lightsnap run` and `lightsnap verify`).

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result};

use super::Machine;

/// This machine.
#[derive(Debug, Clone)]
pub struct Host {
    /// lightsnap's binary.
    pub exe: PathBuf,
    /// Global options every child gets (`--config-root`, `--run-dir`).
    pub global_args: Vec<OsString>,
    /// Whether the children's stdout goes to stderr (when setup's own stdout is one JSON
    /// document).
    pub child_stdout_to_stderr: bool,
}

impl Machine for Host {
    fn write(&mut self, path: &Path, contents: &[u8], mode: u32) -> Result<()> {
        let dir = path.parent().unwrap_or(Path::new("/"));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .with_context(|| format!("making {}", dir.display()))?;
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let written = (|| -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.set_permissions(std::fs::Permissions::from_mode(mode))?;
            f.write_all(contents)?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)?;
            std::fs::File::open(dir)?.sync_all()
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written.with_context(|| format!("writing {}", path.display()))
    }

    fn systemctl(&mut self, args: &[&str]) -> Result<bool> {
        let status = Command::new("systemctl")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .with_context(|| {
                format!(
                    "running systemctl {} (is systemd this machine's init?)",
                    args.join(" ")
                )
            })?;
        Ok(status.success())
    }

    fn lightsnap(&mut self, args: &[String], env: &[(String, String)]) -> Result<i32> {
        let mut cmd = Command::new(&self.exe);
        cmd.args(&self.global_args)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        if self.child_stdout_to_stderr {
            cmd.stdout(std::io::stderr());
        }
        let status = cmd
            .status()
            .with_context(|| format!("running {} {}", self.exe.display(), args.join(" ")))?;
        // A child killed by a signal: as the shell numbers it.
        Ok(status.code().unwrap_or_else(|| {
            use std::os::unix::process::ExitStatusExt;
            128 + status.signal().unwrap_or(0)
        }))
    }
}
