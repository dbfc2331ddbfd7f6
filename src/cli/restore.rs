//! `lightsnap restore`: a snapshot's files back (`--mount DIR`, read-only, until `--release
//! DIR`), a data disk rolled back (`--replace PATH`), or an instance snapshot made into a new
//! instance (`--new-instance NAME`). The work is in [`crate::restore::restored`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use serde::Serialize;

use super::snap_args::conclude;
use super::verify::{by_name, disk_behind, machine, rehearsal};
use super::{Globals, Output};
use crate::cloud::lightsail::{Lightsail, NewInstance, SdkLightsail, SnapshotInfo, SnapshotKind};
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
    /// kept (tagged lightsnap:replaced-by), the restored disk takes its place. The live disk
    /// must carry this instance's lightsnap:owner tag (an administrator tags a disk you made
    /// once; without it nothing is done, exit 25, and the command is printed).
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
                        conclude(serde_json::to_value(RestoreDoc::Released(r))?, Ok(()), output)
                    }
                    Err(e) => Err(e),
                };
            }
            if let Some(new) = &self.new_instance {
                return self.new_instance(&api, &me, new, output).await;
            }
            let snapshot = self.snapshot(&api, &settings, &me.owner(), at).await?;
            if let Some(dir) = &self.mount {
                let r =
                    restored::mount(&api, &host, &me, &snapshot, dir, &rs, &mut signals).await?;
                if output == Output::Human {
                    print!("{}", human(&r));
                }
                return conclude(serde_json::to_value(RestoreDoc::Mounted(r))?, Ok(()), output);
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
                return conclude(serde_json::to_value(RestoreDoc::Replaced(r))?, Ok(()), output);
            }
            unreachable!("one of --mount, --replace, --new-instance, --release is given")
        })
    }

    /// `--new-instance NAME`: the CreateInstancesFromSnapshot call, printed; made with --yes.
    async fn new_instance<A: Lightsail>(
        &self,
        api: &A,
        me: &restore::Me,
        new: &str,
        output: Output,
    ) -> Result<ExitCode> {
        crate::cloud::validate::name("instance name", new)?;
        let Some(name) = self.target.as_deref().filter(|_| !self.latest) else {
            fail!(
                ExitCode::Usage,
                "--new-instance needs the instance snapshot by name (lightsnap list --all shows them)"
            );
        };
        let Some(s) = api.instance_snapshot_details(name).await? else {
            if api.get_snapshot(SnapshotKind::Disk, name).await?.is_some() {
                fail!(
                    ExitCode::Unsupported,
                    "{name} is a disk snapshot: --new-instance takes an instance snapshot (lightsnap snap-instance takes one); a disk snapshot's files: lightsnap restore {name} --mount DIR"
                );
            }
            fail!(
                ExitCode::NotFound,
                "there is no instance snapshot named {name} in this region (lightsnap list --all)"
            );
        };
        if s.state != "available" {
            fail!(
                ExitCode::Usage,
                "instance snapshot {name} is {}, not available: a new instance can be made from it once it is",
                s.state
            );
        }
        let Some(bundle) = s.bundle_id.clone() else {
            fail!(
                ExitCode::Failure,
                "instance snapshot {name} does not say its bundle: give it by hand with aws lightsail create-instances-from-snapshot --bundle-id"
            );
        };
        let request = NewInstance {
            name: new.to_string(),
            snapshot: name.to_string(),
            availability_zone: s
                .availability_zone
                .clone()
                .unwrap_or_else(|| me.availability_zone.clone()),
            bundle_id: bundle,
            disk_mapping: s
                .disks
                .iter()
                .map(|(d, p)| (d.clone(), p.clone(), format!("{new}-{d}")))
                .collect(),
            tags: vec![
                (restored::RESTORE_OF_TAG.to_string(), name.to_string()),
                me.owner().tag(),
            ],
        };
        let cli = aws_command(&request);
        let mut doc = NewInstanceDoc {
            snapshot: name.to_string(),
            new_instance: new.to_string(),
            availability_zone: request.availability_zone.clone(),
            bundle_id: request.bundle_id.clone(),
            disk_mapping: request
                .disk_mapping
                .iter()
                .map(|(d, p, n)| DiskMapping {
                    disk: d.clone(),
                    original_disk_path: p.clone(),
                    new_disk_name: n.clone(),
                })
                .collect(),
            command: cli.clone(),
            created: false,
            operation_id: None,
        };
        if !self.yes {
            if output == Output::Human {
                println!(
                    "would make instance {new} from {name} (this instance is not touched); run again with --yes, or:\n  {cli}"
                );
            }
            return conclude(
                serde_json::to_value(RestoreDoc::NewInstance(doc))?,
                Ok(()),
                output,
            );
        }
        let op = api.create_instances_from_snapshot(&request).await?;
        doc.created = true;
        doc.operation_id = Some(op.id);
        if output == Output::Human {
            println!(
                "instance {new} is being made from {name} in {} (bundle {}); this instance was not touched",
                request.availability_zone, request.bundle_id
            );
        }
        conclude(
            serde_json::to_value(RestoreDoc::NewInstance(doc))?,
            Ok(()),
            output,
        )
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
        // Before anything is made: only a live disk tagged as this instance's is replaced.
        restore::replace::require_ours(&disk, me)?;
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

/// The `restore` document: one shape per action.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(untagged)]
pub(crate) enum RestoreDoc {
    /// `--mount DIR`.
    Mounted(restored::Restored),
    /// `--release DIR`.
    Released(restored::Released),
    /// `--replace PATH`.
    Replaced(restore::replace::Replaced),
    /// `--new-instance NAME`.
    NewInstance(NewInstanceDoc),
}

/// What `restore --new-instance` did, or would do without `--yes`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct NewInstanceDoc {
    /// The instance snapshot.
    pub(crate) snapshot: String,
    /// The new instance's name.
    pub(crate) new_instance: String,
    /// Where it is made.
    pub(crate) availability_zone: String,
    /// Its bundle (the snapshot's).
    pub(crate) bundle_id: String,
    /// Each disk of the snapshot, and the new disk made of it.
    pub(crate) disk_mapping: Vec<DiskMapping>,
    /// The AWS CLI command that makes the same call.
    pub(crate) command: String,
    /// Whether the call was made (`--yes`).
    pub(crate) created: bool,
    /// The operation, once created.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) operation_id: Option<Option<String>>,
}

/// One disk of a new instance.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct DiskMapping {
    /// The disk of the snapshot.
    pub(crate) disk: String,
    /// Its path on the original instance.
    pub(crate) original_disk_path: String,
    /// The new disk's name.
    pub(crate) new_disk_name: String,
}

/// The AWS CLI command that makes the same call.
fn aws_command(r: &NewInstance) -> String {
    let mut cmd = format!(
        "aws lightsail create-instances-from-snapshot --instance-snapshot-name {} --instance-names {} --availability-zone {} --bundle-id {}",
        r.snapshot, r.name, r.availability_zone, r.bundle_id
    );
    if !r.disk_mapping.is_empty() {
        let map: serde_json::Map<String, serde_json::Value> = r
            .disk_mapping
            .iter()
            .map(|(d, p, n)| {
                (
                    d.clone(),
                    serde_json::json!([{ "originalDiskPath": p, "newDiskName": n }]),
                )
            })
            .collect();
        cmd.push_str(&format!(
            " --attached-disk-mapping '{}'",
            serde_json::Value::Object(map)
        ));
    }
    cmd
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
