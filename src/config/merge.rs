//! Merging: each fragment, in order, laid over the settings so far, key by key.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result};

use super::fragments::Fragment;
use super::{template, Settings, SnapshotEntry};
use crate::cloud::validate;

/// Lays fragment `f` over `settings`; its tags go into `tags`, checked as a whole at the end.
pub(super) fn apply(
    settings: &mut Settings,
    tags: &mut BTreeMap<String, String>,
    f: Fragment,
) -> Result<()> {
    if let Some(t) = f.freeze_timeout {
        settings.freeze_timeout = duration("freeze_timeout", &t)?;
        validate::freeze_timeout("freeze_timeout", settings.freeze_timeout)?;
    }
    if let Some(t) = f.name_template {
        template::check(&t)?;
        settings.name_template = t;
    }
    if let Some(d) = f.hook_dir {
        settings.hook_dir = d;
    }
    if let Some(e) = f.expedite_freeze {
        settings.expedite_freeze = e;
    }
    if let Some(t) = f.hook_timeout {
        settings.hook_timeout = duration("hook_timeout", &t)?;
    }
    if f.region.is_some() {
        settings.region = f.region;
    }
    // Later fragments add to the list (a drop-in excludes one more mount).
    settings.exclude.extend(f.exclude);
    if let Some(d) = f.state_dir {
        settings.state_dir = d;
    }
    if f.metrics_file.is_some() {
        settings.metrics_file = f.metrics_file;
    }
    if f.ping_url.is_some() {
        settings.ping_url = f.ping_url;
    }
    if f.verify_every.is_some() {
        settings.verify_every = f.verify_every;
    }
    if let Some(d) = f.verify_hook_dir {
        settings.verify_hook_dir = d;
    }
    if f.copy_to_region.is_some() {
        settings.copy_to_region = f.copy_to_region;
    }
    if f.profile.is_some() {
        settings.profile = f.profile;
    }
    for (k, v) in f.tags {
        let (k, v) = validate::parse_tag(&format!("{k}={v}"))?;
        tags.insert(k, v);
    }
    if let Some(b) = f.run.and_then(|r| r.budget) {
        settings.run_budget = duration("run.budget", &b)?;
    }
    if let Some(r) = f.retention {
        anyhow::ensure!(
            r.keep.is_none() || r.keep_last.is_none(),
            "retention.keep and retention.keep_last are the same setting: give one"
        );
        if r.keep.is_some() || r.keep_last.is_some() {
            settings.retention.keep = r.keep.or(r.keep_last);
        }
        let calendar = [
            (&mut settings.retention.keep_daily, r.keep_daily),
            (&mut settings.retention.keep_weekly, r.keep_weekly),
            (&mut settings.retention.keep_monthly, r.keep_monthly),
            (&mut settings.retention.keep_yearly, r.keep_yearly),
        ];
        for (setting, value) in calendar {
            if value.is_some() {
                *setting = value;
            }
        }
        if let Some(o) = r.older_than {
            settings.retention.older_than = Some(duration("retention.older_than", &o)?);
        }
    }
    for s in f.snapshot {
        anyhow::ensure!(
            s.path.is_absolute(),
            "snapshot path {} must be absolute",
            s.path.display()
        );
        if let Some(d) = &s.disk {
            validate::name("disk name", d)?;
        }
        settings.snapshots.retain(|e| e.path != s.path);
        settings.snapshots.push(SnapshotEntry {
            path: s.path,
            disk: s.disk,
        });
    }
    Ok(())
}

/// A duration setting, its key named in the error.
fn duration(key: &str, text: &str) -> Result<Duration> {
    humantime::parse_duration(text).with_context(|| {
        format!("{key} = {text:?}: write a duration such as 500ms, 10s, 2m or 30d")
    })
}
