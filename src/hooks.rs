//! Hooks: executables in the hook directory (`/etc/lightsnap/hooks.d/`), run in name order with
//! `pre-freeze` before anything is frozen and in reverse order with `post-thaw` after
//! everything is thawed — a database's `CHECKPOINT`, a read lock held across the snapshot.
//!
//! Each hook runs in its own process group with a timeout; on timeout the whole group is
//! killed, and so it is on a stop request during a pre-freeze hook. A failing pre-freeze hook
//! aborts the run before anything is frozen, but every pre-freeze hook that ran still gets its
//! post-thaw call, so a lock it took is released; when the freeze or the snapshot failed after
//! the pre-freeze hooks succeeded, they are told so first with `freeze-fail`. A failing
//! post-thaw hook fails the run (an application may not have been resumed). A hook that is
//! not root's alone — itself, its directory and every directory above ([`crate::trust`]) —
//! is refused: lightsnap runs as root. That is checked when the hooks are loaded and again
//! right before each hook runs (a post-thaw call may come minutes after loading).

use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::signals::{Never, Stop, Stopped, BEFORE_FREEZE};

/// Why a hook was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// A file in the hook directory that cannot be run.
    #[error("{}: not an executable file; make it one (chmod +x) or move it out of {}", path.display(), dir.display())]
    NotExecutable {
        /// The file.
        path: PathBuf,
        /// The hook directory.
        dir: PathBuf,
    },
    /// A hook (or its directory, or one above) others than root could have changed.
    #[error("refusing hook {}: {found}", path.display())]
    Unsafe {
        /// The hook, or the hook directory.
        path: PathBuf,
        /// What others could change.
        found: crate::trust::Untrusted,
    },
    /// A hook ran past its timeout (and was killed with its process group).
    #[error("hook {} {phase} did not finish within {}; it was killed with its process group", hook.display(), humantime::format_duration(*timeout))]
    TimedOut {
        /// The hook.
        hook: PathBuf,
        /// The phase it was called for.
        phase: &'static str,
        /// Its time limit.
        timeout: Duration,
    },
    /// A hook exited non-zero.
    #[error("hook {} {phase} failed ({status})", hook.display())]
    Failed {
        /// The hook.
        hook: PathBuf,
        /// The phase it was called for.
        phase: &'static str,
        /// How it exited.
        status: std::process::ExitStatus,
    },
}

/// The phases a hook is called for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Before anything is frozen.
    PreFreeze,
    /// After everything is thawed, when the freeze or the snapshot failed (before post-thaw).
    FreezeFail,
    /// After everything is thawed.
    PostThaw,
    /// `lightsnap verify`: a restored snapshot is mounted read-only at
    /// `LIGHTSNAP_VERIFY_MOUNT`, for an application check against it.
    Verify,
    /// `lightsnap restore --replace`: before PATH is unmounted and its disk swapped (stop
    /// what writes there). A failure stops the roll-back before anything is changed.
    PreRestore,
    /// `lightsnap restore --replace`: after the roll-back, or after the original was put
    /// back (`LIGHTSNAP_RESULT` says which); start again what pre-restore stopped.
    PostRestore,
}

impl Phase {
    /// The argument a hook gets.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::PreFreeze => "pre-freeze",
            Phase::FreezeFail => "freeze-fail",
            Phase::PostThaw => "post-thaw",
            Phase::Verify => "verify",
            Phase::PreRestore => "pre-restore",
            Phase::PostRestore => "post-restore",
        }
    }
}

/// What hooks are told, through environment variables.
#[derive(Debug, Clone, Default)]
pub struct HookEnv {
    /// `LIGHTSNAP_PATHS`: the paths, space-separated.
    pub paths: Vec<PathBuf>,
    /// `LIGHTSNAP_DISKS`: the Lightsail disks (or `<instance>-system`), space-separated.
    pub disks: Vec<String>,
    /// `LIGHTSNAP_SNAPSHOTS`: the snapshot names, space-separated.
    pub snapshots: Vec<String>,
    /// `LIGHTSNAP_RESULT` for freeze-fail and post-thaw: `success`, `failure` or `stopped`.
    pub result: Option<&'static str>,
    /// `LIGHTSNAP_VERIFY_MOUNT` for verify: where the restored filesystem is mounted
    /// read-only.
    pub verify_mount: Option<PathBuf>,
}

/// Refuses `path` (a hook, or with `dir` the hook directory) unless it, and every directory
/// on the way to it, is root's alone.
fn check_trusted(path: &Path, dir: bool) -> Result<()> {
    let checked = if dir {
        crate::trust::check_dir(path)
    } else {
        crate::trust::check(path)
    };
    checked.map_err(|e| match e.downcast::<crate::trust::Untrusted>() {
        Ok(found) => HookError::Unsafe {
            path: path.to_path_buf(),
            found,
        }
        .into(),
        Err(e) => e,
    })
}

/// The hooks of a directory, checked, in name order. No directory means no hooks.
pub fn discover(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    check_trusted(dir, true)?;
    let mut hooks: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        // Editor backups and package leftovers are not hooks.
        .filter(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            !name.starts_with('.')
                && !name.ends_with('~')
                && !name.ends_with(".dpkg-old")
                && !name.ends_with(".dpkg-dist")
                && !name.ends_with(".rpmsave")
                && !name.ends_with(".rpmnew")
        })
        .collect();
    hooks.sort();
    for h in &hooks {
        let meta = std::fs::metadata(h).with_context(|| format!("reading {}", h.display()))?;
        if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
            return Err(HookError::NotExecutable {
                path: h.clone(),
                dir: dir.to_path_buf(),
            }
            .into());
        }
        check_trusted(h, false)?;
    }
    Ok(hooks)
}

/// Runs one hook for one phase; fails on a non-zero exit, a timeout or a stop request (the
/// whole process group killed on both).
pub async fn run_one<S: Stop>(
    hook: &Path,
    phase: Phase,
    ctx: &HookEnv,
    timeout: Duration,
    stop: &mut S,
) -> Result<()> {
    // Again, right before it runs: its directory may have changed since the hooks were
    // loaded (a post-thaw call comes after the whole snapshot).
    check_trusted(hook, false)?;
    let join = |v: Vec<String>| v.join(" ");
    let mut cmd = Command::new(hook);
    cmd.arg(phase.as_str())
        .env("LIGHTSNAP_PHASE", phase.as_str())
        .env(
            "LIGHTSNAP_PATHS",
            join(ctx.paths.iter().map(|p| p.display().to_string()).collect()),
        )
        .env("LIGHTSNAP_DISKS", join(ctx.disks.clone()))
        .env("LIGHTSNAP_SNAPSHOTS", join(ctx.snapshots.clone()))
        .stdin(Stdio::null())
        // A database hook has no use for lightsnap's AWS secrets.
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .process_group(0);
    // Hook output goes to lightsnap's stderr; stdout is lightsnap's report.
    if let Ok(stderr) = std::io::stderr().as_fd().try_clone_to_owned() {
        cmd.stdout(Stdio::from(stderr));
    }
    if let Some(r) = ctx.result {
        cmd.env("LIGHTSNAP_RESULT", r);
    }
    if let Some(m) = &ctx.verify_mount {
        cmd.env("LIGHTSNAP_VERIFY_MOUNT", m);
    }
    let mut child = spawn(&mut cmd).with_context(|| format!("starting hook {}", hook.display()))?;
    let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
    // std has no async wait: a thread waits, and says so through a channel.
    let (tx, rx) = tokio::sync::oneshot::channel();
    let waiter = std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let kill = || {
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
    };
    // A caller that gives up on the hook (its future dropped: `lightsnap verify` stopped or
    // out of time while a verify hook runs) takes the hook's process group with it. Only
    // until the hook is reaped: after that its id may be another's.
    let mut group = KillGroupOnDrop(Some(pgid));
    let status = tokio::select! {
        biased;
        status = rx => {
            group.0 = None;
            status.context("the hook's waiter thread is gone")??
        }
        code = stop.recv() => {
            group.0 = None;
            kill();
            let _ = waiter.join();
            return Err(Stopped { code, when: BEFORE_FREEZE })
                .with_context(|| format!("ending hook {} {} with its process group", hook.display(), phase.as_str()));
        }
        () = tokio::time::sleep(timeout) => {
            group.0 = None;
            kill();
            let _ = waiter.join();
            return Err(HookError::TimedOut {
                hook: hook.to_path_buf(),
                phase: phase.as_str(),
                timeout,
            }
            .into());
        }
    };
    let _ = waiter.join();
    if !status.success() {
        return Err(HookError::Failed {
            hook: hook.to_path_buf(),
            phase: phase.as_str(),
            status,
        }
        .into());
    }
    Ok(())
}

/// Kills a hook's process group when dropped, unless disarmed.
struct KillGroupOnDrop(Option<nix::unistd::Pid>);

impl Drop for KillGroupOnDrop {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// Starts a hook. ETXTBSY ("text file busy") is retried a few times: a hook just written is
/// still open for writing in any process forked meanwhile (by another thread), until that
/// process execs and its close-on-exec descriptors go.
fn spawn(cmd: &mut Command) -> std::io::Result<std::process::Child> {
    let mut pause = Duration::from_millis(5);
    for _ in 0..6 {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                std::thread::sleep(pause);
                pause *= 2;
            }
            other => return other,
        }
    }
    cmd.spawn()
}

/// The hooks of a run: pre-freeze in order, and post-thaw in reverse for those that ran.
#[derive(Debug)]
pub struct Hooks {
    hooks: Vec<PathBuf>,
    /// How many pre-freeze calls were made (the last may have failed).
    ran: usize,
    /// How many pre-freeze calls succeeded.
    succeeded: usize,
    timeout: Duration,
}

impl Hooks {
    /// The hooks in `dir`, each allowed `timeout` per phase.
    pub fn load(dir: &Path, timeout: Duration) -> Result<Self> {
        Ok(Self {
            hooks: discover(dir)?,
            ran: 0,
            succeeded: 0,
            timeout,
        })
    }

    /// Runs the pre-freeze hooks in order, stopping at the first failure or stop request
    /// (which ends the running hook's process group).
    pub async fn pre_freeze<S: Stop>(&mut self, ctx: &HookEnv, stop: &mut S) -> Result<()> {
        for hook in &self.hooks {
            // Counted before it runs: a hook that failed half-way may hold something too.
            self.ran += 1;
            run_one(hook, Phase::PreFreeze, ctx, self.timeout, stop).await?;
            self.succeeded += 1;
        }
        Ok(())
    }

    /// Tells every hook whose pre-freeze succeeded that the freeze or the snapshot failed,
    /// newest first; all of them, whatever fails.
    pub async fn freeze_fail(&mut self, ctx: &HookEnv) -> Result<()> {
        let n = self.succeeded;
        self.all_of(n, Phase::FreezeFail, ctx).await
    }

    /// Runs the post-thaw hook of every hook whose pre-freeze ran, newest first; all of them,
    /// whatever fails (no stop request cuts them short: they release what pre-freeze took),
    /// and reports the failures.
    pub async fn post_thaw(&mut self, ctx: &HookEnv) -> Result<()> {
        let n = self.ran;
        self.ran = 0;
        self.succeeded = 0;
        self.all_of(n, Phase::PostThaw, ctx).await
    }

    /// Runs every hook for `verify`, in name order, all of them whatever fails (each is a
    /// check of its own); the first failure is the error, the message names them all.
    pub async fn verify(&self, ctx: &HookEnv) -> Result<()> {
        let mut failures: Vec<String> = Vec::new();
        let mut first: Option<anyhow::Error> = None;
        for hook in &self.hooks {
            if let Err(e) = run_one(hook, Phase::Verify, ctx, self.timeout, &mut Never).await {
                failures.push(format!("{e:#}"));
                first.get_or_insert(e);
            }
        }
        match first {
            None => Ok(()),
            Some(e) if failures.len() == 1 => Err(e),
            Some(e) => Err(e.context(format!(
                "{} verify hooks failed: {}",
                failures.len(),
                failures.join("; ")
            ))),
        }
    }

    /// Runs the pre-restore hooks in order, stopping at the first failure or stop request.
    pub async fn pre_restore<S: Stop>(&mut self, ctx: &HookEnv, stop: &mut S) -> Result<()> {
        for hook in &self.hooks {
            self.ran += 1;
            run_one(hook, Phase::PreRestore, ctx, self.timeout, stop).await?;
        }
        Ok(())
    }

    /// Runs the post-restore hook of every hook whose pre-restore ran, newest first; all of
    /// them, whatever fails.
    pub async fn post_restore(&mut self, ctx: &HookEnv) -> Result<()> {
        let n = self.ran;
        self.ran = 0;
        self.all_of(n, Phase::PostRestore, ctx).await
    }

    /// The first `n` hooks, newest first, for `phase`: the first failure is the error, the
    /// message names them all.
    async fn all_of(&self, n: usize, phase: Phase, ctx: &HookEnv) -> Result<()> {
        let mut failures: Vec<anyhow::Error> = Vec::new();
        for hook in self.hooks[..n].iter().rev() {
            if let Err(e) = run_one(hook, phase, ctx, self.timeout, &mut Never).await {
                failures.push(e);
            }
        }
        let mut failures = failures.into_iter();
        let Some(first) = failures.next() else {
            return Ok(());
        };
        let rest: Vec<String> = failures.map(|e| format!("{e:#}")).collect();
        if rest.is_empty() {
            return Err(first);
        }
        Err(first.context(format!(
            "{} {} hooks failed; also: {}",
            rest.len() + 1,
            phase.as_str(),
            rest.join("; ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(dir: &Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    fn root_or_skip() -> bool {
        let root = nix::unistd::Uid::effective().is_root();
        if !root {
            eprintln!("skipping: hooks must be root-owned, and this is not root");
        }
        root
    }

    #[test]
    fn order_environment_and_post_thaw_of_those_that_ran() {
        if !root_or_skip() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let hooks = dir.path().join("hooks.d");
        std::fs::create_dir(&hooks).unwrap();
        let line = format!(
            "echo \"$(basename $0) $1 $LIGHTSNAP_DISKS $LIGHTSNAP_SNAPSHOTS\" >> {}",
            log.display()
        );
        hook(&hooks, "10-a", &line);
        hook(
            &hooks,
            "20-b",
            &format!("{line}\n[ \"$1\" = pre-freeze ] && exit 3\nexit 0"),
        );
        hook(&hooks, "30-c", &line);
        hook(&hooks, "backup~", "exit 1");
        let mut h = Hooks::load(&hooks, Duration::from_secs(10)).unwrap();
        let ctx = HookEnv {
            disks: vec!["data-1".into()],
            snapshots: vec!["s1".into()],
            ..HookEnv::default()
        };
        let rt = crate::runtime().unwrap();
        let err = rt.block_on(h.pre_freeze(&ctx, &mut Never)).unwrap_err();
        assert!(err.to_string().contains("20-b pre-freeze failed"), "{err}");
        rt.block_on(h.post_thaw(&ctx)).unwrap();
        let text = std::fs::read_to_string(&log).unwrap();
        assert_eq!(
            text,
            "10-a pre-freeze data-1 s1\n20-b pre-freeze data-1 s1\n20-b post-thaw data-1 s1\n10-a post-thaw data-1 s1\n",
            "30-c never ran, so it gets no post-thaw"
        );
    }

    #[test]
    fn a_hook_past_its_timeout_is_killed_with_its_group() {
        if !root_or_skip() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("child.pid");
        let h = hook(
            dir.path(),
            "slow",
            &format!("sleep 600 & echo $! > {}\nwait", pidfile.display()),
        );
        let err = crate::runtime()
            .unwrap()
            .block_on(run_one(
                &h,
                Phase::PreFreeze,
                &HookEnv::default(),
                Duration::from_millis(300),
                &mut Never,
            ))
            .unwrap_err();
        assert!(err.to_string().contains("did not finish within"), "{err}");
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The grandchild went with the group (a zombie at most, until init reaps it). SIGKILL
        // is delivered asynchronously, so wait for it, boundedly.
        let alive = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| !s.contains(") Z ") && !s.contains(") X "))
                .unwrap_or(false)
        };
        let until = std::time::Instant::now() + Duration::from_secs(5);
        while alive() && std::time::Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!alive(), "the hook's own child survived the timeout");
    }

    #[test]
    fn writable_or_foreign_hooks_are_refused() {
        if !root_or_skip() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let h = hook(dir.path(), "10-open", "exit 0");
        std::fs::set_permissions(&h, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = discover(dir.path()).unwrap_err();
        assert!(
            matches!(err.downcast_ref(), Some(HookError::Unsafe { .. })),
            "{err}"
        );
        std::fs::set_permissions(&h, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = discover(dir.path()).unwrap_err();
        assert!(
            matches!(err.downcast_ref(), Some(HookError::NotExecutable { .. })),
            "{err}"
        );
        assert!(discover(&dir.path().join("none")).unwrap().is_empty());
    }
}
