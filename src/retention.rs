//! Which snapshots `prune` and `run`'s retention may delete: only one instance's (their
//! `lightsnap:owner` tag names it, see [`crate::cloud::owner`]) unless told otherwise, only
//! completed ones, never Lightsail's automatic snapshots; per disk (and per owner), those beyond
//! the newest `keep`, and/or older than a limit. A snapshot without the owner tag (by hand, or
//! by a lightsnap older than the tag) is deleted only under `--all`.

use std::time::Duration;

use crate::cloud::lightsail::SnapshotInfo;
use crate::cloud::owner::{Owner, OWNER_TAG};
use crate::snap::plan::CONSISTENCY_TAG;

/// A retention rule, as restic's `forget` and sanoid keep snapshots: the `keep` newest of
/// each series, and the newest of each of the last N days, ISO weeks, months and years that
/// have one (UTC). A snapshot any keep rule keeps stays. With `older_than` too, a snapshot
/// goes only when no keep rule keeps it *and* it is older than `older_than`; with
/// `older_than` alone, when it is older.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rule {
    /// Keep this many newest per disk (`--keep`, `--keep-last`).
    pub keep: Option<u32>,
    /// Delete those older than this.
    pub older_than: Option<Duration>,
    /// Keep the newest of each of the last N days that have one.
    pub keep_daily: Option<u32>,
    /// Keep the newest of each of the last N ISO weeks that have one.
    pub keep_weekly: Option<u32>,
    /// Keep the newest of each of the last N months that have one.
    pub keep_monthly: Option<u32>,
    /// Keep the newest of each of the last N years that have one.
    pub keep_yearly: Option<u32>,
}

impl Rule {
    /// The rule of a `[retention]` table.
    pub fn from_config(r: &crate::config::Retention) -> Self {
        Self {
            keep: r.keep,
            older_than: r.older_than,
            keep_daily: r.keep_daily,
            keep_weekly: r.keep_weekly,
            keep_monthly: r.keep_monthly,
            keep_yearly: r.keep_yearly,
        }
    }

    /// The calendar rules, as (name, count).
    fn calendar(&self) -> [(Period, Option<u32>); 4] {
        [
            (Period::Daily, self.keep_daily),
            (Period::Weekly, self.keep_weekly),
            (Period::Monthly, self.keep_monthly),
            (Period::Yearly, self.keep_yearly),
        ]
    }

    /// Whether any rule keeps snapshots (rather than only deleting old ones).
    pub fn has_keep_rule(&self) -> bool {
        self.keep.is_some() || self.calendar().iter().any(|(_, n)| n.is_some())
    }

    /// Whether any calendar rule is set.
    pub fn has_calendar_rule(&self) -> bool {
        self.calendar().iter().any(|(_, n)| n.is_some())
    }
}

/// A calendar period of a keep rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Period {
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

impl Period {
    fn name(self) -> &'static str {
        match self {
            Period::Daily => "daily",
            Period::Weekly => "weekly",
            Period::Monthly => "monthly",
            Period::Yearly => "yearly",
        }
    }

    /// The period (UTC) a time falls in, as its label: `2026-12-07`, `2026-W49`, `2026-12`,
    /// `2026`.
    fn bucket(self, time: f64) -> String {
        let ts = jiff::Timestamp::from_second(time.floor() as i64)
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        let date = jiff::tz::Offset::UTC.to_datetime(ts).date();
        match self {
            Period::Daily => format!("{:04}-{:02}-{:02}", date.year(), date.month(), date.day()),
            Period::Weekly => {
                let w = date.iso_week_date();
                format!("{:04}-W{:02}", w.year(), w.week())
            }
            Period::Monthly => format!("{:04}-{:02}", date.year(), date.month()),
            Period::Yearly => format!("{:04}", date.year()),
        }
    }
}

/// What a rule decides for one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Deleted.
    pub delete: bool,
    /// Why it is kept: each rule that keeps it (`last 2`, `daily 2026-12-07`, `weekly
    /// 2026-W49`, `monthly 2026-12`, `yearly 2026`, `newer than 30days`); empty when deleted.
    pub kept_by: Vec<String>,
}

/// Decides each snapshot of one series, newest first.
fn judge_series<'a>(
    series: &[&'a SnapshotInfo],
    rule: Rule,
    now: f64,
) -> Vec<(&'a SnapshotInfo, Decision)> {
    let time = |s: &SnapshotInfo| s.created_at.unwrap_or(now);
    let mut kept_by: Vec<Vec<String>> = vec![Vec::new(); series.len()];
    if let Some(k) = rule.keep {
        for (i, reasons) in kept_by.iter_mut().enumerate().take(k as usize) {
            reasons.push(format!("last {}", i + 1));
        }
    }
    for (period, count) in rule.calendar() {
        let Some(count) = count else { continue };
        let mut kept = 0;
        let mut last: Option<String> = None;
        for (i, s) in series.iter().enumerate() {
            if kept >= count {
                break;
            }
            let bucket = period.bucket(time(s));
            if last.as_ref() != Some(&bucket) {
                kept_by[i].push(format!("{} {bucket}", period.name()));
                kept += 1;
                last = Some(bucket);
            }
        }
    }
    series
        .iter()
        .zip(kept_by)
        .map(|(s, mut reasons)| {
            let too_old = rule.older_than.map(|d| time(s) < now - d.as_secs_f64());
            let delete = match (rule.has_keep_rule(), too_old) {
                (true, Some(old)) => reasons.is_empty() && old,
                (true, None) => reasons.is_empty(),
                (false, Some(old)) => old,
                (false, None) => false,
            };
            if !delete && too_old == Some(false) {
                let age = humantime::format_duration(rule.older_than.unwrap_or_default());
                reasons.push(format!("newer than {age}"));
            }
            if delete {
                reasons.clear();
            }
            (
                *s,
                Decision {
                    delete,
                    kept_by: reasons,
                },
            )
        })
        .collect()
}

/// Whose snapshots a command considers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// One instance's: those whose `lightsnap:owner` is its value (this instance's, or
    /// `--instance`'s). What every command considers by default.
    Owner(Owner),
    /// Every instance's (`--all-instances`): any snapshot with an owner tag, each owner's a
    /// series of its own; never one without the tag.
    AllInstances,
    /// Every snapshot (`--all`), untagged and others' included; per disk, whoever made them,
    /// as one series. Automatic snapshots are still never deleted.
    All,
}

impl Scope {
    /// Whether a snapshot is in scope (automatic snapshots are only ever in `All`).
    pub fn includes(&self, s: &SnapshotInfo) -> bool {
        match self {
            Scope::Owner(o) => o.owns(s) && !s.is_from_auto_snapshot,
            Scope::AllInstances => s.tag(OWNER_TAG).is_some() && !s.is_from_auto_snapshot,
            Scope::All => true,
        }
    }
}

/// As `prune --output json` says it: the owner's value, `all-instances` or `all`.
impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Owner(o) => write!(f, "{o}"),
            Scope::AllInstances => f.write_str("all-instances"),
            Scope::All => f.write_str("all"),
        }
    }
}

/// Whether some lightsnap made a snapshot: it carries the `lightsnap:owner` tag or (a lightsnap
/// older than that tag) the `lightsnap:consistency` tag, and Lightsail's automatic snapshots
/// did not make it (those may copy the tags of their source).
pub fn is_own(s: &SnapshotInfo) -> bool {
    (s.tag(CONSISTENCY_TAG).is_some() || s.tag(OWNER_TAG).is_some()) && !s.is_from_auto_snapshot
}

/// The region a copy was made from (its `lightsnap:copy-of` tag, `<region>/<name>`); `None`
/// for a snapshot taken in its own region.
pub fn copied_from(s: &SnapshotInfo) -> Option<&str> {
    s.tag(crate::restore::copy::COPY_OF_TAG)
        .map(|t| t.split('/').next().unwrap_or(t))
}

/// The snapshots `rule` deletes among `all`, at time `now` (seconds since the epoch).
pub fn select<'a>(
    all: &'a [SnapshotInfo],
    rule: Rule,
    disk: Option<&str>,
    scope: &Scope,
    now: f64,
) -> Vec<&'a SnapshotInfo> {
    judge(all, rule, disk, scope, now)
        .into_iter()
        .filter(|(_, d)| d.delete)
        .map(|(s, _)| s)
        .collect()
}

/// What `rule` decides for each snapshot it may consider among `all` (newest first within
/// each series), at time `now`.
pub fn judge<'a>(
    all: &'a [SnapshotInfo],
    rule: Rule,
    disk: Option<&str>,
    scope: &Scope,
    now: f64,
) -> Vec<(&'a SnapshotInfo, Decision)> {
    let mut candidates: Vec<&SnapshotInfo> = all
        .iter()
        .filter(|s| s.is_done())
        .filter(|s| !s.is_from_auto_snapshot)
        .filter(|s| scope.includes(s))
        .filter(|s| disk.is_none_or(|d| s.from.as_deref() == Some(d)))
        .collect();
    // Newest first within each series: a disk's snapshots (an instance's are a series of
    // their own: an instance and a disk may share a name), and apart from them the copies of
    // a disk's snapshots from each other region (`lightsnap:copy-of`); with every instance's
    // in scope, each owner's apart (two instances' disks may share a name).
    let per_owner = *scope == Scope::AllInstances;
    let series = |s: &'a SnapshotInfo| {
        (
            per_owner.then(|| s.tag(OWNER_TAG)).flatten(),
            s.instance,
            s.from.as_deref(),
            copied_from(s),
        )
    };
    candidates.sort_by(|a, b| {
        series(a).cmp(&series(b)).then(
            b.created_at
                .unwrap_or(0.0)
                .total_cmp(&a.created_at.unwrap_or(0.0)),
        )
    });
    let mut judged = Vec::new();
    for one in candidates.chunk_by(|a, b| series(a) == series(b)) {
        judged.extend(judge_series(one, rule, now));
    }
    judged
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: f64 = 86_400.0;

    fn snap(
        name: &str,
        disk: &str,
        age_days: f64,
        state: &str,
        own: bool,
        auto: bool,
    ) -> SnapshotInfo {
        SnapshotInfo {
            name: name.into(),
            state: state.into(),
            progress: None,
            tags: if own {
                vec![(CONSISTENCY_TAG.into(), "frozen".into()), me().tag()]
            } else {
                vec![]
            },
            created_at: Some(100.0 * DAY - age_days * DAY),
            from: Some(disk.into()),
            size_gb: Some(8),
            is_from_auto_snapshot: auto,
            instance: false,
        }
    }

    fn me() -> Owner {
        Owner::new("us-east-1", "web-1")
    }

    fn mine() -> Scope {
        Scope::Owner(me())
    }

    fn names(v: Vec<&SnapshotInfo>) -> Vec<&str> {
        v.into_iter().map(|s| s.name.as_str()).collect()
    }

    fn fixture() -> Vec<SnapshotInfo> {
        vec![
            snap("a1", "a", 1.0, "completed", true, false),
            snap("a2", "a", 2.0, "completed", true, false),
            snap("a3", "a", 40.0, "completed", true, false),
            snap("a4", "a", 50.0, "pending", true, false),
            snap("a5", "a", 60.0, "completed", false, false),
            snap("a6", "a", 70.0, "completed", true, true),
            snap("b1", "b", 45.0, "completed", true, false),
        ]
    }

    #[test]
    fn keep_is_per_disk_and_spares_what_is_not_ours() {
        let all = fixture();
        let rule = Rule {
            keep: Some(1),
            older_than: None,
            ..Rule::default()
        };
        assert_eq!(
            names(select(&all, rule, None, &mine(), 100.0 * DAY)),
            vec!["a2", "a3"]
        );
        assert_eq!(
            names(select(&all, rule, Some("b"), &mine(), 100.0 * DAY)),
            Vec::<&str>::new()
        );
        // --all includes snapshots others made, never pending or automatic ones.
        assert_eq!(
            names(select(&all, rule, None, &Scope::All, 100.0 * DAY)),
            vec!["a2", "a3", "a5"]
        );
    }

    #[test]
    fn an_automatic_snapshot_is_never_own() {
        let all = fixture();
        let own: Vec<&str> = all
            .iter()
            .filter(|s| is_own(s))
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(
            own,
            vec!["a1", "a2", "a3", "a4", "b1"],
            "a5 is foreign, a6 automatic"
        );
    }

    #[test]
    fn older_than_and_both() {
        let all = fixture();
        let month = Some(Duration::from_secs(30 * 86_400));
        let rule = Rule {
            keep: None,
            older_than: month,
            ..Rule::default()
        };
        assert_eq!(
            names(select(&all, rule, None, &mine(), 100.0 * DAY)),
            vec!["a3", "b1"]
        );
        let both = Rule {
            keep: Some(1),
            older_than: month,
            ..Rule::default()
        };
        assert_eq!(
            names(select(&all, both, None, &mine(), 100.0 * DAY)),
            vec!["a3"],
            "b1 is the newest of b"
        );
        assert!(select(&all, Rule::default(), None, &Scope::All, 100.0 * DAY).is_empty());
    }
}

#[cfg(test)]
mod calendar {
    use super::*;

    const DAY: f64 = 86_400.0;

    /// Snapshots of one disk at the given times (seconds since the epoch), newest named
    /// first by their date.
    fn at(times: &[(&str, f64)]) -> Vec<SnapshotInfo> {
        times
            .iter()
            .map(|(name, t)| SnapshotInfo {
                name: (*name).into(),
                state: "completed".into(),
                progress: None,
                tags: vec![(CONSISTENCY_TAG.into(), "frozen".into())],
                created_at: Some(*t),
                from: Some("d".into()),
                size_gb: Some(8),
                is_from_auto_snapshot: false,
                instance: false,
            })
            .collect()
    }

    fn kept(all: &[SnapshotInfo], rule: Rule, now: f64) -> Vec<(String, Vec<String>)> {
        judge(all, rule, None, &Scope::All, now)
            .into_iter()
            .filter(|(_, d)| !d.delete)
            .map(|(s, d)| (s.name.clone(), d.kept_by))
            .collect()
    }

    /// 2026-12-07 00:00 UTC is a Monday (ISO week 50).
    const MON_DEC_7: f64 = 1_796_601_600.0;

    #[test]
    fn daily_keeps_the_newest_of_each_day() {
        let all = at(&[
            ("d7-late", MON_DEC_7 + 20.0 * 3600.0),
            ("d7-early", MON_DEC_7 + 3600.0),
            ("d6", MON_DEC_7 - 0.5 * DAY),
            ("d4", MON_DEC_7 - 2.5 * DAY),
            ("d3", MON_DEC_7 - 3.5 * DAY),
        ]);
        let now = MON_DEC_7 + DAY;
        let rule = Rule {
            keep_daily: Some(3),
            ..Rule::default()
        };
        // Days with no snapshot do not count: the 3 newest days that have one.
        assert_eq!(
            kept(&all, rule, now),
            vec![
                ("d7-late".into(), vec!["daily 2026-12-07".into()]),
                ("d6".into(), vec!["daily 2026-12-06".into()]),
                ("d4".into(), vec!["daily 2026-12-04".into()]),
            ]
        );
        let doomed: Vec<&str> = select(&all, rule, None, &Scope::All, now)
            .into_iter()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(doomed, ["d7-early", "d3"]);
    }

    #[test]
    fn rules_add_up_and_each_kept_snapshot_says_why() {
        // One a day for 60 days back from Monday 2026-12-07.
        let names: Vec<String> = (0..60).map(|i| format!("s{i}")).collect();
        let times: Vec<(&str, f64)> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), MON_DEC_7 + 3600.0 - i as f64 * DAY))
            .collect();
        let all = at(&times);
        let rule = Rule {
            keep: Some(2),
            keep_daily: Some(3),
            keep_weekly: Some(2),
            keep_monthly: Some(3),
            keep_yearly: Some(1),
            ..Rule::default()
        };
        let k = kept(&all, rule, MON_DEC_7 + DAY);
        let reasons = |name: &str| {
            k.iter()
                .find(|(n, _)| n == name)
                .map(|(_, r)| r.clone())
                .unwrap_or_default()
        };
        assert_eq!(
            reasons("s0"),
            [
                "last 1",
                "daily 2026-12-07",
                "weekly 2026-W50",
                "monthly 2026-12",
                "yearly 2026"
            ]
        );
        assert_eq!(
            reasons("s1"),
            ["last 2", "daily 2026-12-06", "weekly 2026-W49"]
        );
        assert_eq!(reasons("s2"), ["daily 2026-12-05"]);
        // The newest of November (the 30th), of October (the 31st).
        assert_eq!(reasons("s7"), ["monthly 2026-11"]);
        assert_eq!(reasons("s37"), ["monthly 2026-10"]);
        assert_eq!(k.len(), 5, "{k:?}");
    }

    #[test]
    fn older_than_protects_what_no_keep_rule_keeps_until_it_is_old() {
        let all = at(&[
            ("new", MON_DEC_7),
            ("mid", MON_DEC_7 - 5.0 * DAY),
            ("old", MON_DEC_7 - 40.0 * DAY),
        ]);
        let rule = Rule {
            keep_daily: Some(1),
            older_than: Some(Duration::from_secs(30 * 86_400)),
            ..Rule::default()
        };
        let k = kept(&all, rule, MON_DEC_7);
        assert_eq!(
            k[0],
            (
                "new".into(),
                vec!["daily 2026-12-07".into(), "newer than 30days".into()]
            )
        );
        assert_eq!(k[1], ("mid".into(), vec!["newer than 30days".into()]));
        assert_eq!(k.len(), 2);
    }
}

#[cfg(test)]
mod copies {
    use super::*;

    /// Copies of a disk's snapshots from another region are a series of their own: `keep`
    /// counts them apart from the snapshots taken in that region.
    #[test]
    fn copies_are_a_series_of_their_own() {
        let snap = |name: &str, age: f64, copy_of: Option<&str>| {
            let mut tags = vec![
                (CONSISTENCY_TAG.to_string(), "frozen".to_string()),
                (OWNER_TAG.to_string(), "us-east-1/web-1".to_string()),
            ];
            if let Some(c) = copy_of {
                tags.push((crate::restore::copy::COPY_OF_TAG.into(), c.into()));
            }
            SnapshotInfo {
                name: name.into(),
                state: "completed".into(),
                progress: None,
                tags,
                created_at: Some(1000.0 - age),
                from: Some("data-1".into()),
                size_gb: Some(8),
                is_from_auto_snapshot: false,
                instance: false,
            }
        };
        let all = vec![
            snap("local-new", 1.0, None),
            snap("local-old", 2.0, None),
            snap("copy-new", 3.0, Some("us-east-1/a")),
            snap("copy-old", 4.0, Some("us-east-1/b")),
        ];
        let rule = Rule {
            keep: Some(1),
            older_than: None,
            ..Rule::default()
        };
        let doomed: Vec<&str> = select(
            &all,
            rule,
            None,
            &Scope::Owner(Owner::new("us-east-1", "web-1")),
            1000.0,
        )
        .into_iter()
        .map(|s| s.name.as_str())
        .collect();
        assert_eq!(doomed, ["local-old", "copy-old"]);
        assert_eq!(copied_from(&all[2]), Some("us-east-1"));
        assert_eq!(copied_from(&all[0]), None);
    }
}

#[cfg(test)]
mod owners {
    use super::*;

    fn snap(name: &str, age: f64, tags: &[(&str, &str)]) -> SnapshotInfo {
        SnapshotInfo {
            name: name.into(),
            state: "completed".into(),
            progress: None,
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            created_at: Some(1000.0 - age),
            from: Some("data-1".into()),
            size_gb: Some(8),
            is_from_auto_snapshot: false,
            instance: false,
        }
    }

    fn doomed<'a>(all: &'a [SnapshotInfo], scope: &Scope) -> Vec<&'a str> {
        let rule = Rule {
            keep: Some(1),
            older_than: None,
            ..Rule::default()
        };
        select(all, rule, None, scope, 1000.0)
            .into_iter()
            .map(|s| s.name.as_str())
            .collect()
    }

    /// Another instance's snapshots of a same-named disk, and snapshots without the owner
    /// tag (an older lightsnap's, or by hand), are never this instance's to delete;
    /// `--all-instances` applies the rule per owner and spares the untagged; `--all` takes
    /// every snapshot of the disk as one series.
    #[test]
    fn only_the_owners_snapshots_are_considered() {
        let ours = [
            ("lightsnap:consistency", "frozen"),
            (OWNER_TAG, "us-east-1/web-1"),
        ];
        let theirs = [
            ("lightsnap:consistency", "frozen"),
            (OWNER_TAG, "eu-west-2/web-1"),
        ];
        let old_lightsnap = [("lightsnap:consistency", "frozen")];
        let all = vec![
            snap("ours-new", 1.0, &ours),
            snap("ours-old", 2.0, &ours),
            snap("theirs-new", 3.0, &theirs),
            snap("theirs-old", 4.0, &theirs),
            snap("untagged-new", 5.0, &old_lightsnap),
            snap("untagged-old", 6.0, &old_lightsnap),
        ];
        let me = Scope::Owner(Owner::new("us-east-1", "web-1"));
        assert_eq!(doomed(&all, &me), ["ours-old"]);
        assert_eq!(
            doomed(&all, &Scope::Owner(Owner::new("eu-west-2", "web-1"))),
            ["theirs-old"]
        );
        let mut per_owner = doomed(&all, &Scope::AllInstances);
        per_owner.sort();
        assert_eq!(per_owner, ["ours-old", "theirs-old"]);
        assert_eq!(
            doomed(&all, &Scope::All),
            [
                "ours-old",
                "theirs-new",
                "theirs-old",
                "untagged-new",
                "untagged-old"
            ]
        );
        assert!(is_own(&all[4]), "an older lightsnap's is still lightsnap's");
    }
}
