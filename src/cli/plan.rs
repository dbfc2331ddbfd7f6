//! `lightsnap plan PATH...` (and `freeze-and-snap --dry-run`): what would be done, with zero
//! side effects — no freeze, no lock, no API writes; only the read-only discovery calls.

use anyhow::Result;
use serde::Serialize;

use super::Output;
use crate::cloud::lightsail::{Lightsail, Source};
use crate::exit_code::ExitCode;
use crate::snap::{self, plan::CONSISTENCY_TAG, Local, Options, Target};

/// One planned target, as printed.
#[derive(Debug, Serialize)]
struct Planned<'a> {
    path: &'a std::path::Path,
    mount_point: &'a std::path::Path,
    fstype: &'a str,
    block_device: &'a std::path::Path,
    method: &'static str,
    source: &'a Source,
    api_call: serde_json::Value,
}

fn method(t: &Target) -> &'static str {
    match t.quiesce {
        None => "none (read-only)",
        Some(crate::runstate::Quiesce::Freeze) => "freeze (unmount if it cannot be frozen)",
        Some(crate::runstate::Quiesce::Unmount) => "unmount",
    }
}

fn api_call(t: &Target) -> serde_json::Value {
    let mut tags: Vec<serde_json::Value> = t
        .request
        .tags
        .iter()
        .map(|(k, v)| serde_json::json!({ "key": k, "value": v }))
        .collect();
    tags.push(serde_json::json!({ "key": CONSISTENCY_TAG, "value": "<as achieved>" }));
    let mut call = serde_json::json!({
        "operation": "CreateDiskSnapshot",
        "diskSnapshotName": t.request.name,
        "tags": tags,
    });
    match &t.request.source {
        Source::Disk(d) => call["diskName"] = d.clone().into(),
        Source::SystemVolume(i) => call["instanceName"] = i.clone().into(),
    }
    call
}

/// Plans and prints.
pub async fn print_plan<A: Lightsail>(
    api: &A,
    opts: &Options,
    local: &Local,
    output: Output,
) -> Result<ExitCode> {
    let targets = snap::targets(api, opts, local).await?;
    let planned: Vec<Planned> = targets
        .iter()
        .map(|t| Planned {
            path: &t.located.path,
            mount_point: &t.located.mount.mount_point,
            fstype: &t.located.mount.fstype,
            block_device: &t.located.block_device,
            method: method(t),
            source: &t.request.source,
            api_call: api_call(t),
        })
        .collect();
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&planned)?),
        Output::Human => {
            for p in &planned {
                println!(
                    "{} → mount {} ({} on {}) → {} → Lightsail {} → {}",
                    p.path.display(),
                    p.mount_point.display(),
                    p.fstype,
                    p.block_device.display(),
                    p.method,
                    p.source,
                    p.api_call
                );
            }
        }
    }
    Ok(ExitCode::Success)
}
