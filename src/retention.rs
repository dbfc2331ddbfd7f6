//! Which snapshots `prune` and `run`'s retention may delete: only one instance's (their
//! `lightsnap:owner` tag names it, see [`crate::cloud::owner`]) unless told otherwise, only
//! completed ones, never Lightsail's automatic snapshots; per disk (and per owner), those beyond
//! the newest `keep`, and/or older than a limit. A snapshot without the owner tag (by hand, or
//! by a lightsnap older than the tag) is deleted only under `--all`.

use std::time::Duration;

use crate::cloud::lightsail::SnapshotInfo;
use crate::cloud::owner::{Owner, OWNER_TAG};
use crate::snap::plan::CONSISTENCY_TAG;

/// A retention rule. With both limits, a snapshot goes only when it breaks both: it is not
/// among the newest `keep` of its disk *and* it is older than `older_than`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rule {
    /// Keep this many newest per disk.
    pub keep: Option<u32>,
    /// Delete those older than this.
    pub older_than: Option<Duration>,
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
    let mut doomed = Vec::new();
    let mut rank = 0u32;
    let mut current = None;
    for s in candidates {
        if current != Some(series(s)) {
            current = Some(series(s));
            rank = 0;
        }
        let beyond_keep = rule.keep.map(|k| rank >= k);
        let too_old = rule
            .older_than
            .map(|d| s.created_at.unwrap_or(now) < now - d.as_secs_f64());
        let delete = match (beyond_keep, too_old) {
            (Some(a), Some(b)) => a && b,
            (Some(a), None) => a,
            (None, Some(b)) => b,
            (None, None) => false,
        };
        if delete {
            doomed.push(s);
        }
        rank += 1;
    }
    doomed
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
        };
        assert_eq!(
            names(select(&all, rule, None, &mine(), 100.0 * DAY)),
            vec!["a3", "b1"]
        );
        let both = Rule {
            keep: Some(1),
            older_than: month,
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
