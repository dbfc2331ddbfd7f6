//! `lightsnap prune`: deletes this instance's completed snapshots (its `lightsnap:owner` tag)
//! beyond a retention rule — never pending ones, never automatic ones, never another
//! instance's unless `--instance` or `--all-instances` names them, never untagged ones unless
//! `--all` — and says what it deleted.

use std::time::{Duration, SystemTime};

use anyhow::Result;

use crate::signals::{already_stopped, Signals, Stop};
use clap::Args;
use serde::Serialize;

use super::list::Entry;
use super::snap_args::conclude;
use super::{Globals, Output};
use crate::cloud::lightsail::{Lightsail, SdkLightsail, SnapshotInfo};
use crate::cloud::validate;
use crate::config::{self, Retention};
use crate::exit_code::ExitCode;
use crate::fail;
use crate::retention::{self, Rule, Scope};

/// Delete old snapshots.
#[derive(Debug, Args)]
pub struct Prune {
    /// Keep this many newest snapshots per disk [default: retention.keep in the config].
    /// With --older-than too, a snapshot is deleted only when both rules allow it: it is
    /// beyond the N newest of its disk and older than DURATION (--dry-run says which rule
    /// kept each one).
    #[arg(long, visible_alias = "keep-last", value_name = "N")]
    pub keep: Option<u32>,
    /// Keep the newest snapshot of each of the last N days (UTC) that have one, per disk
    /// [default: retention.keep_daily]. Keep rules add up: a snapshot any of them keeps stays.
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<u32>,
    /// Keep the newest snapshot of each of the last N ISO weeks that have one, per disk.
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<u32>,
    /// Keep the newest snapshot of each of the last N months that have one, per disk.
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<u32>,
    /// Keep the newest snapshot of each of the last N years that have one, per disk.
    #[arg(long, value_name = "N")]
    pub keep_yearly: Option<u32>,
    /// Delete snapshots older than this (`30d`, `12h`) [default: retention.older_than].
    /// With --keep too, a snapshot is deleted only when both rules allow it.
    #[arg(long, value_name = "DURATION", value_parser = super::parse_duration)]
    pub older_than: Option<Duration>,
    /// Only snapshots of this disk.
    #[arg(long, value_name = "NAME")]
    pub disk: Option<String>,
    /// Say what would be deleted, delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Whose: this instance's unless told otherwise.
    #[command(flatten)]
    pub owner: super::owner::OwnerArgs,
    /// The AWS region.
    #[arg(long)]
    pub region: Option<String>,
}

/// The `prune` document.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct PruneDoc {
    /// Whether it only said what it would delete.
    pub(crate) dry_run: bool,
    /// Whose snapshots: `REGION/INSTANCE`, `all-instances` or `all`.
    pub(crate) scope: String,
    /// The rule applied.
    pub(crate) rule: RuleDoc,
    /// What was deleted (or would be), and what could not be.
    #[serde(flatten)]
    pub(crate) pruned: Pruned,
}

/// The rule as `--output json` shows it.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct RuleDoc {
    /// Keep this many newest per disk.
    keep: Option<u32>,
    /// Delete what is older than this many seconds.
    older_than_s: Option<u64>,
    // Only when set: the documents of a rule without them stay as they were.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "u32")]
    keep_daily: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "u32")]
    keep_weekly: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "u32")]
    keep_monthly: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "u32")]
    keep_yearly: Option<u32>,
}

impl From<Rule> for RuleDoc {
    fn from(r: Rule) -> Self {
        Self {
            keep: r.keep,
            older_than_s: r.older_than.map(|d| d.as_secs()),
            keep_daily: r.keep_daily,
            keep_weekly: r.keep_weekly,
            keep_monthly: r.keep_monthly,
            keep_yearly: r.keep_yearly,
        }
    }
}

/// The rule of a prune from its options: the command line's when it gives any (whole: a
/// command-line rule does not pick up configured ones), else the configuration's.
pub fn rule_from(cli: Rule, config: &Retention) -> Rule {
    if cli != Rule::default() {
        cli
    } else {
        Rule::from_config(config)
    }
}

/// A snapshot that could not be deleted.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct NotDeleted {
    /// Snapshot name.
    pub name: String,
    /// The disk it is of.
    pub disk: Option<String>,
    /// What Lightsail said.
    pub error: String,
}

/// What a prune did (or, in a dry run, would do).
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Pruned {
    /// Deleted (in a dry run: would be deleted), as `list` shows them.
    pub deleted: Vec<Entry>,
    /// Those whose deletion failed.
    pub failed: Vec<NotDeleted>,
}

/// Deletes `doomed` (unless `dry_run`), one by one, going on past failures; says each in
/// human output. The error is the first failure's.
/// A stop request ends it before the next deletion (the one under way is let finish: it is
/// one call).
pub async fn delete<A: Lightsail, S: Stop>(
    api: &A,
    doomed: &[&SnapshotInfo],
    dry_run: bool,
    output: Output,
    stop: &mut S,
) -> (Pruned, Result<()>) {
    let mut pruned = Pruned {
        deleted: Vec::new(),
        failed: Vec::new(),
    };
    let mut first_error: Option<anyhow::Error> = None;
    for s in doomed {
        if let Err(e) = already_stopped(stop, STOPPED_PRUNING).await {
            return (pruned, Err(e));
        }
        let said = format!(
            "{} ({} from {}, owner {})",
            s.name,
            s.from.as_deref().unwrap_or("?"),
            super::list::when(s.created_at),
            crate::cloud::owner::describe(s)
        );
        let result = if dry_run {
            Ok(())
        } else {
            crate::cloud::lightsail::delete_snapshot(api, s).await
        };
        match result {
            Ok(()) => {
                if output == Output::Human {
                    let verb = if dry_run { "would delete" } else { "deleted" };
                    println!("{verb} {said}");
                }
                pruned.deleted.push(Entry::of(s));
            }
            Err(e) => {
                eprintln!("lightsnap: could not delete {said}: {e}");
                pruned.failed.push(NotDeleted {
                    name: s.name.clone(),
                    disk: s.from.clone(),
                    error: e.to_string(),
                });
                first_error.get_or_insert_with(|| {
                    anyhow::Error::new(e).context(format!("deleting snapshot {}", s.name))
                });
            }
        }
    }
    (pruned, first_error.map_or(Ok(()), Err))
}

/// What a stop request while pruning means.
const STOPPED_PRUNING: &str = "while pruning; the snapshots not yet deleted are kept";

impl Prune {
    /// Runs it.
    pub fn run(self, globals: &Globals) -> Result<ExitCode> {
        if let Some(disk) = &self.disk {
            validate::name("disk name", disk)?;
        }
        let settings = config::load(&globals.config_root)?;
        let rule = rule_from(
            Rule {
                keep: self.keep,
                older_than: self.older_than,
                keep_daily: self.keep_daily,
                keep_weekly: self.keep_weekly,
                keep_monthly: self.keep_monthly,
                keep_yearly: self.keep_yearly,
            },
            &settings.retention,
        );
        if rule == Rule::default() {
            fail!(
                ExitCode::Usage,
                "give --keep N, --keep-daily/--keep-weekly/--keep-monthly/--keep-yearly N or --older-than DURATION (or set [retention] in the configuration)"
            );
        }
        let region = self.region.clone().or(settings.region);
        let output = globals.output;
        crate::runtime()?.block_on(async {
            let mut signals = Signals::install()?;
            let api = SdkLightsail::from_env(region, settings.profile).await?;
            let scope = self.owner.scope(&api).await?;
            let all = crate::cloud::lightsail::all_snapshots(&api).await?;
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)?
                .as_secs_f64();
            let doomed = retention::select(&all, rule, self.disk.as_deref(), &scope, now);
            if self.dry_run && output == Output::Human {
                if rule.has_calendar_rule() {
                    explain_kept(&all, rule, self.disk.as_deref(), &scope, now);
                } else {
                    explain_combined(&all, rule, self.disk.as_deref(), &scope, now);
                }
            }
            let (pruned, result) = delete(&api, &doomed, self.dry_run, output, &mut signals).await;
            if output == Output::Human && pruned.deleted.is_empty() && pruned.failed.is_empty() {
                println!("nothing to prune");
            }
            let doc = PruneDoc {
                dry_run: self.dry_run,
                scope: scope.to_string(),
                rule: RuleDoc::from(rule),
                pruned,
            };
            conclude(serde_json::to_value(&doc)?, result, output)
        })
    }
}

/// With calendar rules, a dry run says which rule kept each snapshot (every rule that
/// would: `last 1, daily 2026-12-07, weekly 2026-W50`).
fn explain_kept(all: &[SnapshotInfo], rule: Rule, disk: Option<&str>, scope: &Scope, now: f64) {
    println!(
        "rule: a snapshot is kept when any keep rule keeps it{}",
        rule.older_than
            .map(|d| format!(
                ", or while it is newer than {} (--older-than)",
                humantime::format_duration(d)
            ))
            .unwrap_or_default()
    );
    for (s, d) in retention::judge(all, rule, disk, scope, now) {
        if !d.delete {
            println!(
                "would keep {} ({} from {}): {}",
                s.name,
                s.from.as_deref().unwrap_or("?"),
                super::list::when(s.created_at),
                d.kept_by.join(", ")
            );
        }
    }
}

/// With both limits, a dry run says how they combine and which rule kept each snapshot the
/// other alone would have deleted (or both, for one neither would).
fn explain_combined(all: &[SnapshotInfo], rule: Rule, disk: Option<&str>, scope: &Scope, now: f64) {
    let (Some(keep), Some(older_than)) = (rule.keep, rule.older_than) else {
        return;
    };
    let age = humantime::format_duration(older_than);
    println!(
        "rule: a snapshot is deleted only when both rules allow it: beyond the {keep} newest of its disk (--keep) and older than {age} (--older-than)"
    );
    let select = |r: Rule| retention::select(all, r, disk, scope, now);
    let names =
        |v: Vec<&SnapshotInfo>| -> Vec<String> { v.iter().map(|s| s.name.clone()).collect() };
    // Every snapshot prune may consider at all: `keep 0` selects each of them.
    let eligible = select(Rule {
        keep: Some(0),
        ..Rule::default()
    });
    let doomed = names(select(rule));
    let beyond_keep = names(select(Rule {
        keep: Some(keep),
        ..Rule::default()
    }));
    let too_old = names(select(Rule {
        older_than: Some(older_than),
        ..Rule::default()
    }));
    for s in eligible.iter().filter(|s| !doomed.contains(&s.name)) {
        let why = match (beyond_keep.contains(&s.name), too_old.contains(&s.name)) {
            (true, _) => format!("newer than {age} (--older-than)"),
            (false, true) => format!("among the {keep} newest of its disk (--keep)"),
            (false, false) => format!("among the {keep} newest and newer than {age} (both)"),
        };
        println!(
            "would keep {} ({} from {}): {why}",
            s.name,
            s.from.as_deref().unwrap_or("?"),
            super::list::when(s.created_at)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_on_the_command_line_replaces_the_configured_one() {
        let config = Retention {
            keep: Some(7),
            older_than: Some(Duration::from_secs(30 * 86_400)),
            ..Retention::default()
        };
        let day = Duration::from_secs(86_400);
        assert_eq!(
            rule_from(Rule::default(), &config),
            Rule {
                keep: Some(7),
                older_than: Some(30 * day),
                ..Rule::default()
            }
        );
        assert_eq!(
            rule_from(
                Rule {
                    keep: Some(1),
                    ..Rule::default()
                },
                &config
            ),
            Rule {
                keep: Some(1),
                older_than: None,
                ..Rule::default()
            }
        );
        assert_eq!(
            rule_from(
                Rule {
                    older_than: Some(day),
                    ..Rule::default()
                },
                &config
            ),
            Rule {
                keep: None,
                older_than: Some(day),
                ..Rule::default()
            }
        );
    }
}
