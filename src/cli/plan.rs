//! `lightsnap plan PATH...` (and `freeze-and-snap --dry-run`): what would be done, with zero
//! side effects — no freeze, no lock, no API writes; only the read-only discovery calls.

use anyhow::Result;
use serde::Serialize;

use super::Output;
use crate::cloud::lightsail::{AutoSnapshotAddOn, Lightsail, Source};
use crate::exit_code::ExitCode;
use crate::restore::scratch::ScratchDisk;
use crate::snap::{self, plan::CONSISTENCY_TAG, Filesystem, LocalPlan, Options, Plan, Snapshot};

/// One planned filesystem, as printed.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct PlannedFs<'a> {
    /// The paths given that are on it.
    paths: &'a [std::path::PathBuf],
    /// Its mount point.
    mount_point: &'a std::path::Path,
    /// Its type.
    fstype: &'a str,
    /// The block device behind it.
    block_device: &'a std::path::Path,
    /// How it would be quiesced.
    method: &'static str,
    /// Frozen with the others of its wave, after every earlier wave.
    wave: usize,
}

/// The `plan` document (also `freeze-and-snap --dry-run`'s).
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct PlanDoc<'a> {
    /// The filesystems, in freezing order.
    pub(crate) filesystems: Vec<PlannedFs<'a>>,
    /// The snapshots, each of one disk (or the instance).
    pub(crate) snapshots: Vec<PlannedSnapshot<'a>>,
    /// The hooks that would run, in pre-freeze order.
    pub(crate) hooks: &'a [std::path::PathBuf],
    /// The scratch disks of restore rehearsals that exist.
    pub(crate) scratch_disks: &'a [ScratchDisk],
}

/// One planned snapshot, as printed.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct PlannedSnapshot<'a> {
    source: &'a Source,
    mount_points: Vec<&'a std::path::Path>,
    block_devices: &'a [std::path::PathBuf],
    api_call: ApiCall,
    /// Lightsail's automatic snapshot add-on of what it is of (`null`: none).
    auto_snapshot: Option<&'a AutoSnapshotAddOn>,
}

fn method(f: &Filesystem) -> &'static str {
    match f.quiesce {
        None => "none (read-only)",
        Some(crate::runstate::Quiesce::Freeze) => "freeze (unmount if it cannot be frozen)",
        Some(crate::runstate::Quiesce::Unmount) => "unmount",
    }
}

/// The exact request a planned snapshot makes, as `plan` prints it (Lightsail's member names).
#[derive(Debug, Default, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ApiCall {
    /// `CreateDiskSnapshot` or `CreateInstanceSnapshot`.
    operation: &'static str,
    /// The disk (a data disk's snapshot).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    disk_name: Option<String>,
    /// The instance (its system volume's snapshot, or the whole instance's).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    instance_name: Option<String>,
    /// The disk snapshot's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    disk_snapshot_name: Option<String>,
    /// The instance snapshot's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    instance_snapshot_name: Option<String>,
    /// Its tags (`lightsnap:consistency` shown as `<as achieved>`: set in the window).
    tags: Vec<ApiTag>,
}

/// One tag of a request.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct ApiTag {
    key: String,
    value: String,
}

fn api_call(t: &Snapshot) -> ApiCall {
    let mut tags: Vec<ApiTag> = t
        .request
        .tags
        .iter()
        .map(|(k, v)| ApiTag {
            key: k.clone(),
            value: v.clone(),
        })
        .collect();
    tags.push(ApiTag {
        key: CONSISTENCY_TAG.to_string(),
        value: "<as achieved>".to_string(),
    });
    let name = Some(t.request.name.clone());
    match &t.request.source {
        Source::Disk(d) => ApiCall {
            operation: "CreateDiskSnapshot",
            disk_name: Some(d.clone()),
            disk_snapshot_name: name,
            tags,
            ..ApiCall::default()
        },
        Source::SystemVolume(i) => ApiCall {
            operation: "CreateDiskSnapshot",
            instance_name: Some(i.clone()),
            disk_snapshot_name: name,
            tags,
            ..ApiCall::default()
        },
        Source::Instance(i) => ApiCall {
            operation: "CreateInstanceSnapshot",
            instance_name: Some(i.clone()),
            instance_snapshot_name: name,
            tags,
            ..ApiCall::default()
        },
    }
}

/// What `plan` says of an enabled automatic snapshot add-on, warning when the packaged timer
/// may fire inside its hour.
fn auto_snapshot_line(source: &Source, a: &AutoSnapshotAddOn) -> Option<String> {
    if !a.is_enabled() {
        return None;
    }
    let at = a.time_of_day.as_deref().unwrap_or("?");
    let mut line = format!(
        "  automatic snapshots of {} daily at {at} UTC: Lightsail refuses manual ones for up to 45 minutes from then (a run waits, --auto-snapshot-wait)",
        crate::snap::auto_resource(source)
    );
    if let Some(w) = super::timer::windows()
        .into_iter()
        .find(|w| super::timer::meets_auto_snapshot(*w, at))
    {
        line.push_str(&format!(
            "\n  warning: lightsnap-snapshot.timer may fire then ({:02}:{:02} UTC plus up to {} min): move one of them",
            w.start / 60,
            w.start % 60,
            w.length
        ));
    }
    Some(line)
}

/// Plans and prints.
pub async fn print_plan<A: Lightsail>(
    api: &A,
    opts: &Options,
    local: &LocalPlan,
    output: Output,
) -> Result<ExitCode> {
    // A key that cannot read would fail the run at its first call: say so now, by name.
    crate::cloud::policy::require_read_access(api).await?;
    let plan = snap::plan(api, opts, local).await?;
    // A hook the run would refuse is refused here too.
    let hooks = crate::hooks::discover(&opts.hook_dir)?;
    // Scratch disks of restore rehearsals (`lightsnap verify`): listed, never a reason to
    // fail a plan.
    let scratch = crate::restore::scratch::listing(api)
        .await
        .unwrap_or_else(|e| {
            tracing::warn!("listing scratch disks of `lightsnap verify`: {e:#}");
            Vec::new()
        });
    print_with(&plan, &hooks, &scratch, output)?;
    Ok(ExitCode::Success)
}

/// Prints a plan, with the hooks that would run around it.
pub fn print(plan: &Plan, hooks: &[std::path::PathBuf], output: Output) -> Result<()> {
    print_with(plan, hooks, &[], output)
}

/// Prints a plan, with the hooks that would run around it and the scratch disks of restore
/// rehearsals that exist (`scratch_disks`).
pub fn print_with(
    plan: &Plan,
    hooks: &[std::path::PathBuf],
    scratch: &[ScratchDisk],
    output: Output,
) -> Result<()> {
    let filesystems: Vec<PlannedFs> = plan
        .filesystems
        .iter()
        .map(|f| PlannedFs {
            paths: &f.paths,
            mount_point: &f.located.mount.mount_point,
            fstype: &f.located.mount.fstype,
            block_device: &f.located.block_device,
            method: method(f),
            wave: f.wave,
        })
        .collect();
    let snapshots: Vec<PlannedSnapshot> = plan
        .snapshots
        .iter()
        .map(|s| PlannedSnapshot {
            source: &s.request.source,
            mount_points: s
                .filesystems
                .iter()
                .map(|&i| plan.filesystems[i].located.mount.mount_point.as_path())
                .collect(),
            block_devices: &s.devices,
            api_call: api_call(s),
            auto_snapshot: s.auto_snapshot.as_ref(),
        })
        .collect();
    match output {
        Output::Json => super::print_json(PlanDoc {
            filesystems,
            snapshots,
            hooks,
            scratch_disks: scratch,
        })?,
        Output::Human => {
            for f in &filesystems {
                let paths: Vec<String> = f.paths.iter().map(|p| p.display().to_string()).collect();
                println!(
                    "{} → mount {} ({} on {}) → {}",
                    paths.join(", "),
                    f.mount_point.display(),
                    f.fstype,
                    f.block_device.display(),
                    f.method
                );
            }
            if !hooks.is_empty() {
                let names: Vec<String> = hooks.iter().map(|h| h.display().to_string()).collect();
                println!(
                    "hooks: {} (pre-freeze in this order, post-thaw in reverse)",
                    names.join(", ")
                );
            }
            for s in &snapshots {
                let mounts: Vec<String> = s
                    .mount_points
                    .iter()
                    .map(|m| m.display().to_string())
                    .collect();
                let devices: Vec<String> = s
                    .block_devices
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect();
                println!(
                    "{} → disk {} → Lightsail {} → {}",
                    mounts.join(", "),
                    devices.join(" + "),
                    s.source,
                    // Compact JSON, its members in name order (as a serde_json::Value has them).
                    serde_json::to_value(&s.api_call).unwrap_or_default()
                );
                if let Some(line) = s
                    .auto_snapshot
                    .and_then(|a| auto_snapshot_line(s.source, a))
                {
                    println!("{line}");
                }
            }
            for d in scratch {
                println!("{}", crate::restore::scratch::listing_line(d));
            }
        }
    }
    Ok(())
}
