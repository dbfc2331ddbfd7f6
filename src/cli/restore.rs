//! `lightsnap restore`: a snapshot's files back (`--mount DIR`, read-only, until `--release
//! DIR`), a data disk rolled back (`--replace PATH`), or an instance snapshot made into a new
//! instance (`--new-instance NAME`). The work is in [`crate::restore::restored`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use clap::Args;

use super::snap_args::conclude;
use super::verify::{by_name, disk_behind, machine, rehearsal};
use super::{Globals, Output};
use crate::cloud::lightsail::{Lightsail, SdkLightsail, SnapshotInfo, SnapshotKind};
use crate::cloud::owner::Owner;
use crate::config::{self, Settings};
use crate::exit_code::{ExitCode, Failure};
use crate::fail;
use crate::restore::{self, restored};
use crate::signals::Signals;

/// Restore a snapshot: its files read-only at a directory, a data disk rolled back, or a new
/// instance from an instance snapshot.
#[derive(Debug, Args)]
pub struct Restore {
    /// The snapshot to restore; with --latest (or --at), a PATH whose disk's snapshot to
    /// restore.
    #[arg(value_name = "SNAPSHOT|PATH")]
    pub target: Option<String>,
    /// The newest completed snapshot this instance's lightsnap took of the disk behind PATH
    /// (or of --disk NAME).
    #[arg(long)]
    pub latest: bool,
    /// With --latest or --at: the Lightsail disk (`<instance>-system` for a system volume).
    #[arg(long, value_name = "NAME", conflicts_with = "target")]
    pub disk: Option<String>,
    /// The newest of this instance's snapshots of the disk taken at or before TIME (RFC 3339,
    /// `2026-12-07T08:00:00Z`); implies --latest.
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    /// Restore to a new disk mounted read-only at DIR (an empty or missing directory).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["release", "replace", "new_instance"])]
    pub mount: Option<PathBuf>,
    /// Unmount, detach and delete the restored disk mounted at DIR.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["replace", "new_instance", "latest", "at", "disk"])]
    pub release: Option<PathBuf>,
    /// Roll the data disk mounted at PATH back to the snapshot: the live disk is detached and
    /// kept (tagged lightsnap:replaced-by), the restored disk takes its place.
    #[arg(long, value_name = "PATH", conflicts_with = "new_instance")]
    pub replace: Option<PathBuf>,
    /// Make a new instance NAME from an instance snapshot (CreateInstancesFromSnapshot); this
    /// instance is not touched.
    #[arg(long, value_name = "NAME")]
    pub new_instance: Option<String>,
    /// Do it without asking (--replace, --new-instance).
    #[arg(long)]
    pub yes: bool,
    /// The longest the restore may take; past it everything is undone.
    #[arg(long, value_name = "DURATION", default_value = "30m", value_parser = super::parse_duration)]
    pub timeout: Duration,
    /// The AWS region (default: AWS_REGION, the profile, or the instance metadata).
    #[arg(long)]
    pub region: Option<String>,
}

impl Restore {
    /// Runs it.
    pub fn run(self, globals: &Globals) -> Result<ExitCode> {
        let settings = config::load(&globals.config_root)?;
        let at = self.at_time()?;
        if self.release.is_none()
            && self.mount.is_none()
            && self.replace.is_none()
            && self.new_instance.is_none()
        {
            fail!(
                ExitCode::Usage,
                "say what to restore to: --mount DIR (the files, read-only), --replace PATH (roll a data disk back), --new-instance NAME (an instance snapshot), or --release DIR"
            );
        }
        let latest = self.latest || at.is_some();
        if self.release.is_none() {
            match (&self.target, latest, &self.disk) {
                (None, false, _) => fail!(
                    ExitCode::Usage,
                    "name the snapshot to restore, or give --latest PATH (or --latest --disk NAME, or --at TIME)"
                ),
                (Some(name), false, _) => crate::cloud::validate::name("snapshot name", name)?,
                _ => {}
            }
        }
        if let Some(d) = &self.disk {
            crate::cloud::validate::name("disk name", d)?;
        }
        if let Some(p) = &self.replace {
            if p.canonicalize().is_ok_and(|c| c == Path::new("/")) {
                return Err(restore::replace::refuse_system(p));
            }
        }
        crate::runstate::require_root()?;
        let output = globals.output;
        crate::runtime()?.block_on(async {
            let mut signals = Signals::install()?;
            let api = SdkLightsail::from_env(
                self.region.clone().or(settings.region.clone()),
                settings.profile.clone(),
            )
            .await?;
            let me = restore::who_am_i(&api).await?;
            let rs = restore_settings(&globals.run_dir, self.timeout);
            let host = machine(&settings, &globals.run_dir);
            if let Some(dir) = &self.release {
                let result = restored::release(&api, &host, &me, dir, &rs).await;
                return match result {
                    Ok(r) => {
                        if output == Output::Human {
                            println!(
                                "released {}: restored disk {} unmounted, detached and deleted",
                                r.released.display(),
                                r.restored_disk
                            );
                        }
                        conclude(serde_json::to_value(&r)?, Ok(()), output)
                    }
                    Err(e) => Err(e),
                };
            }
            let snapshot = self.snapshot(&api, &settings, &me.owner(), at).await?;
            if let Some(dir) = &self.mount {
                let r =
                    restored::mount(&api, &host, &me, &snapshot, dir, &rs, &mut signals).await?;
                if output == Output::Human {
                    print!("{}", human(&r));
                }
                return conclude(serde_json::to_value(&r)?, Ok(()), output);
            }
            if let Some(path) = &self.replace {
                let _run = crate::runstate::lock(&globals.run_dir)?;
                let live = self.live(&api, &settings, &me, path).await?;
                let plan = restore::replace::plan(&live, &snapshot);
                if !self.yes {
                    confirm(&plan)?;
                } else if output == Output::Human {
                    print!("{plan}");
                }
                let mut hooks = crate::hooks::Hooks::load(&settings.hook_dir, settings.hook_timeout)?;
                let r = restore::replace::replace(
                    &api,
                    &host,
                    &me,
                    &snapshot,
                    &live,
                    &mut hooks,
                    &rs,
                    &mut signals,
                )
                .await?;
                if output == Output::Human {
                    println!(
                        "{} rolled back to {}: restored disk {} at {}; the replaced disk {} is kept (tagged {})",
                        r.path.display(),
                        r.snapshot,
                        r.restored_disk,
                        r.attached_at,
                        r.replaced_disk,
                        restored::REPLACED_BY_TAG
                    );
                }
                return conclude(serde_json::to_value(&r)?, Ok(()), output);
            }
            fail!(
                ExitCode::Usage,
                "--new-instance is not available in this build: use aws lightsail create-instances-from-snapshot (see the restore runbook)"
            )
        })
    }

    /// The mount at `path` and the Lightsail disk behind it; the system volume refused.
    async fn live<A: Lightsail>(
        &self,
        api: &A,
        settings: &Settings,
        me: &restore::Me,
        path: &Path,
    ) -> Result<restore::replace::Live> {
        let canonical = path.canonicalize().map_err(|e| {
            Failure::new(
                ExitCode::NotFound,
                format!("--replace {}: {e}", path.display()),
            )
        })?;
        let mounts = crate::kernel::mountinfo::read()?;
        let Some(mount) = mounts
            .iter()
            .rev()
            .find(|m| m.mount_point == canonical)
            .cloned()
        else {
            fail!(
                ExitCode::Usage,
                "--replace {}: not a mount point; name the directory the data disk is mounted at",
                path.display()
            );
        };
        let name = disk_behind(api, settings, &canonical).await?;
        if name == format!("{}-system", me.instance) || name.ends_with("-system") {
            return Err(restore::replace::refuse_system(&canonical));
        }
        let Some(disk) = api.disk_state(&name).await? else {
            fail!(
                ExitCode::NotFound,
                "there is no Lightsail disk named {name}"
            );
        };
        Ok(restore::replace::Live { mount, disk })
    }

    /// `--at` as seconds since the epoch.
    fn at_time(&self) -> Result<Option<f64>> {
        let Some(text) = &self.at else {
            return Ok(None);
        };
        let t = humantime::parse_rfc3339_weak(text).map_err(|e| {
            Failure::new(
                ExitCode::Usage,
                format!("--at {text}: {e}; give a time as 2026-12-07T08:00:00Z"),
            )
        })?;
        Ok(Some(
            t.duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64(),
        ))
    }

    /// The snapshot asked for: by name, or (--latest, --at) `owner`'s newest of the disk.
    async fn snapshot<A: Lightsail>(
        &self,
        api: &A,
        settings: &Settings,
        owner: &Owner,
        at: Option<f64>,
    ) -> Result<SnapshotInfo> {
        if !(self.latest || at.is_some()) {
            return by_name(api, self.target.as_deref().unwrap_or_default()).await;
        }
        let disk = match (&self.disk, &self.target, &self.replace) {
            (Some(d), _, _) => d.clone(),
            (None, Some(path), _) => disk_behind(api, settings, Path::new(path)).await?,
            (None, None, Some(path)) => disk_behind(api, settings, path).await?,
            (None, None, None) => fail!(
                ExitCode::Usage,
                "--latest and --at need a PATH or --disk NAME: whose snapshot to restore"
            ),
        };
        let all = api.get_snapshots(SnapshotKind::Disk).await?;
        let when = at.map_or(String::new(), |_| {
            format!(" at or before {}", self.at.as_deref().unwrap_or_default())
        });
        all.into_iter()
            .filter(|s| s.is_done() && owner.owns(s) && !s.is_from_auto_snapshot)
            .filter(|s| s.from.as_deref() == Some(disk.as_str()))
            .filter(|s| s.tag(restore::copy::COPY_OF_TAG).is_none())
            .filter(|s| at.is_none_or(|t| s.created_at.unwrap_or(f64::MAX) <= t))
            .max_by(|a, b| {
                a.created_at
                    .unwrap_or(0.0)
                    .total_cmp(&b.created_at.unwrap_or(0.0))
            })
            .ok_or_else(|| {
                Failure::new(
                    ExitCode::NotFound,
                    format!("this instance ({owner}) has no completed snapshot of disk {disk}{when} to restore (lightsnap list --disk {disk})"),
                )
                .into()
            })
    }
}

/// Shows the plan and asks; without a terminal, refuses (exit 2): `--yes` says it.
fn confirm(plan: &str) -> Result<()> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        fail!(
            ExitCode::Usage,
            "a roll-back asks before it replaces a disk, and there is no terminal to ask on: read the plan and run it again with --yes\n{plan}"
        );
    }
    eprint!("{plan}Type yes to go on: ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if answer.trim() != "yes" {
        fail!(ExitCode::Usage, "not confirmed: nothing was done");
    }
    Ok(())
}

/// A restore's settings: verify's, with the journal replays under `<run dir>/restore`.
pub fn restore_settings(run_dir: &Path, timeout: Duration) -> restore::Settings {
    let mut s = rehearsal(run_dir, timeout);
    s.mount_dir = run_dir.join("restore");
    s
}

/// A file restore's report for people.
pub fn human(r: &restored::Restored) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "restored {} (disk {}) to disk {}, attached at {} ({})",
        r.snapshot,
        r.disk.as_deref().unwrap_or("?"),
        r.restored_disk,
        r.attached_at.as_deref().unwrap_or("?"),
        r.device
            .as_deref()
            .map(|d| d.display().to_string())
            .unwrap_or_default()
    );
    for c in &r.checks {
        let state = if c.clean { "clean" } else { "NOT CLEAN" };
        let _ = writeln!(out, "  {}: {}: {state}", c.device.display(), c.checker);
    }
    for w in &r.warnings {
        let _ = writeln!(out, "  warning: {w}");
    }
    for m in &r.mounted_at {
        let _ = writeln!(out, "  the files are at {} (read-only)", m.display());
    }
    let _ = writeln!(out, "  when done: {}", r.release);
    out
}
