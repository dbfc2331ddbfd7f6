//! The fleet view (`lightsnap fleet`): from what the Lightsail API lists in each region — its
//! instances with their disks, and every disk and instance snapshot — the newest snapshot
//! lightsnap took of each disk (by the ownership tag), its age, consistency, verification and
//! copies, which disks are stale, and which instances have no lightsnap snapshot at all.
//!
//! Pure: the listing is the caller's (`src/cli/fleet.rs`), so this is tested on canned
//! answers. Nothing here calls anything.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::cloud::lightsail::{AutoSnapshotAddOn, InstanceInfo, SnapshotInfo};
use crate::cloud::owner::{owner_value, OWNER_TAG};
use crate::restore::copy::COPY_OF_TAG;
use crate::restore::{VERIFIED_AT_TAG, VERIFIED_TAG};
use crate::snap::plan::CONSISTENCY_TAG;

/// What one region lists.
#[derive(Debug, Clone)]
pub struct RegionListing {
    /// The region.
    pub region: String,
    /// GetInstances, every page.
    pub instances: Vec<InstanceInfo>,
    /// GetDiskSnapshots and GetInstanceSnapshots, every page.
    pub snapshots: Vec<SnapshotInfo>,
}

/// How a disk stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DiskHealth {
    /// A completed lightsnap snapshot younger than the limit (or no limit), verified clean or
    /// never verified.
    Healthy,
    /// Its newest lightsnap snapshot is older than `--max-age`.
    Stale,
    /// Its instance has lightsnap snapshots, but none of this disk.
    Missing,
    /// Its newest lightsnap snapshot failed verification, or could not be checked.
    Unverified,
}

impl DiskHealth {
    fn as_str(self) -> &'static str {
        match self {
            DiskHealth::Healthy => "healthy",
            DiskHealth::Stale => "stale",
            DiskHealth::Missing => "missing",
            DiskHealth::Unverified => "unverified",
        }
    }
}

/// The newest lightsnap snapshot of a disk.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Newest {
    /// Its name.
    pub name: String,
    /// `disk` or `instance` (an instance snapshot covers every disk of the instance).
    #[schemars(extend("enum" = ["disk", "instance"]))]
    pub kind: &'static str,
    /// `pending`, `completed`, `available`, `error`.
    pub state: String,
    /// When it was taken, seconds since the epoch.
    pub created_at: Option<f64>,
    /// How old it is, in seconds.
    pub age_seconds: Option<f64>,
    /// Its `lightsnap:consistency`.
    pub consistency: Option<String>,
    /// Its `lightsnap:verified` (`clean`, `failed`, `unchecked`), if verified.
    pub verified: Option<String>,
    /// Its `lightsnap:verified-at`.
    pub verified_at: Option<String>,
    /// The regions holding a copy of it (`lightsnap:copy-of`), among those listed.
    pub copies: Vec<String>,
}

/// One disk of one instance.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct DiskRow {
    /// The disk's name.
    pub disk: String,
    /// Whether it is the instance's system disk.
    pub system: bool,
    /// The newest lightsnap snapshot of it, if any.
    pub newest: Option<Newest>,
    /// How it stands.
    pub health: DiskHealth,
}

/// One instance.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct InstanceRow {
    /// The region.
    pub region: String,
    /// The instance's name.
    pub instance: String,
    /// Whether any snapshot carries its ownership tag (lightsnap runs there).
    pub lightsnap: bool,
    /// Its disks.
    pub disks: Vec<DiskRow>,
    /// Lightsail's automatic snapshot add-on of the instance, if any.
    pub auto_snapshot: Option<AutoSnapshotAddOn>,
    /// Whether the add-on is on while lightsnap snapshots it too: two schedules, and the
    /// add-on's window refuses lightsnap's manual snapshots while it runs.
    pub auto_snapshot_overlap: bool,
}

/// The whole view.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct FleetReport {
    /// The regions listed.
    pub regions: Vec<String>,
    /// `--max-age`, in seconds.
    pub max_age_seconds: Option<f64>,
    /// Every instance, by region then name.
    pub instances: Vec<InstanceRow>,
    /// `<region>/<instance>/<disk>` of each stale or missing disk (what `--max-age` fails on).
    pub stale: Vec<String>,
    /// `<region>/<instance>` of each instance with no lightsnap snapshot.
    pub without_lightsnap: Vec<String>,
}

/// The view of `listings`, at `now` (seconds since the epoch), with the age limit `max_age`.
pub fn report(listings: &[RegionListing], now: f64, max_age: Option<Duration>) -> FleetReport {
    // Copies, wherever they are: "<region>/<snapshot>" -> the regions holding one.
    let mut copies: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for l in listings {
        for s in &l.snapshots {
            if let Some(of) = s.tag(COPY_OF_TAG) {
                copies
                    .entry(of.to_string())
                    .or_default()
                    .push(l.region.clone());
            }
        }
    }
    let mut instances = Vec::new();
    for l in listings {
        // Each owner's snapshots (copies arriving from elsewhere are not this region's own).
        let mut owned: BTreeMap<&str, Vec<&SnapshotInfo>> = BTreeMap::new();
        for s in &l.snapshots {
            if s.tag(COPY_OF_TAG).is_some() || s.tag(CONSISTENCY_TAG).is_none() {
                continue;
            }
            if let Some(owner) = s.tag(OWNER_TAG) {
                owned.entry(owner).or_default().push(s);
            }
        }
        let mut names: Vec<&InstanceInfo> = l.instances.iter().collect();
        names.sort_by(|a, b| a.name.cmp(&b.name));
        for i in names {
            let owner = owner_value(&l.region, &i.name);
            let mine = owned.get(owner.as_str()).cloned().unwrap_or_default();
            let lightsnap = !mine.is_empty();
            let disks = i
                .disks
                .iter()
                .map(|d| {
                    let system_name = format!("{}-system", i.name);
                    let newest = mine
                        .iter()
                        .filter(|s| {
                            s.instance
                                || s.from.as_deref() == Some(d.name.as_str())
                                || (d.is_system_disk
                                    && s.from.as_deref() == Some(system_name.as_str()))
                        })
                        .max_by(|a, b| {
                            a.created_at
                                .unwrap_or(0.0)
                                .total_cmp(&b.created_at.unwrap_or(0.0))
                        })
                        .map(|s| newest_of(s, &l.region, now, &copies));
                    let health = health(lightsnap, newest.as_ref(), max_age);
                    DiskRow {
                        disk: d.name.clone(),
                        system: d.is_system_disk,
                        newest,
                        health,
                    }
                })
                .collect();
            let auto_on = i.auto_snapshot.as_ref().is_some_and(|a| a.is_enabled());
            instances.push(InstanceRow {
                region: l.region.clone(),
                instance: i.name.clone(),
                lightsnap,
                disks,
                auto_snapshot: i.auto_snapshot.clone(),
                auto_snapshot_overlap: auto_on && lightsnap,
            });
        }
    }
    let stale = instances
        .iter()
        .flat_map(|i| {
            i.disks
                .iter()
                .filter(|d| matches!(d.health, DiskHealth::Stale | DiskHealth::Missing))
                .map(move |d| format!("{}/{}/{}", i.region, i.instance, d.disk))
        })
        .collect();
    let without_lightsnap = instances
        .iter()
        .filter(|i| !i.lightsnap)
        .map(|i| format!("{}/{}", i.region, i.instance))
        .collect();
    FleetReport {
        regions: listings.iter().map(|l| l.region.clone()).collect(),
        max_age_seconds: max_age.map(|d| d.as_secs_f64()),
        instances,
        stale,
        without_lightsnap,
    }
}

fn newest_of(
    s: &SnapshotInfo,
    region: &str,
    now: f64,
    copies: &BTreeMap<String, Vec<String>>,
) -> Newest {
    Newest {
        name: s.name.clone(),
        kind: if s.instance { "instance" } else { "disk" },
        state: s.state.clone(),
        created_at: s.created_at,
        age_seconds: s.created_at.map(|t| (now - t).max(0.0)),
        consistency: s.tag(CONSISTENCY_TAG).map(str::to_string),
        verified: s.tag(VERIFIED_TAG).map(str::to_string),
        verified_at: s.tag(VERIFIED_AT_TAG).map(str::to_string),
        copies: copies
            .get(&format!("{region}/{}", s.name))
            .cloned()
            .unwrap_or_default(),
    }
}

fn health(lightsnap: bool, newest: Option<&Newest>, max_age: Option<Duration>) -> DiskHealth {
    let Some(n) = newest else {
        // An instance lightsnap does not run on is listed as such, not as a missing disk.
        return if lightsnap {
            DiskHealth::Missing
        } else {
            DiskHealth::Healthy
        };
    };
    if let (Some(limit), Some(age)) = (max_age, n.age_seconds) {
        if age > limit.as_secs_f64() {
            return DiskHealth::Stale;
        }
    }
    match n.verified.as_deref() {
        Some("failed") | Some("unchecked") => DiskHealth::Unverified,
        _ => DiskHealth::Healthy,
    }
}

/// The report as a table for a terminal: one line per disk.
pub fn table(r: &FleetReport) -> String {
    let mut out = format!(
        "{:<14} {:<24} {:<28} {:<10} {:>9} {:<11} {:<10} {}\n",
        "REGION", "INSTANCE", "DISK", "STATUS", "AGE", "CONSISTENCY", "VERIFIED", "COPIES"
    );
    for i in &r.instances {
        if !i.lightsnap {
            out.push_str(&format!(
                "{:<14} {:<24} {:<28} {:<10}{}\n",
                i.region,
                i.instance,
                "-",
                "no lightsnap",
                if i.auto_snapshot.as_ref().is_some_and(|a| a.is_enabled()) {
                    "   (automatic snapshots on)"
                } else {
                    ""
                }
            ));
            continue;
        }
        for d in &i.disks {
            let (age, consistency, verified, copies) = match &d.newest {
                Some(n) => (
                    n.age_seconds.map(short_age).unwrap_or_else(|| "?".into()),
                    n.consistency.clone().unwrap_or_else(|| "-".into()),
                    n.verified.clone().unwrap_or_else(|| "-".into()),
                    if n.copies.is_empty() {
                        "-".into()
                    } else {
                        n.copies.join(",")
                    },
                ),
                None => ("never".into(), "-".into(), "-".into(), "-".into()),
            };
            out.push_str(&format!(
                "{:<14} {:<24} {:<28} {:<10} {:>9} {:<11} {:<10} {}{}\n",
                i.region,
                i.instance,
                d.disk,
                d.health.as_str(),
                age,
                consistency,
                verified,
                copies,
                if i.auto_snapshot_overlap && d.system {
                    "  (automatic snapshots on too)"
                } else {
                    ""
                }
            ));
        }
    }
    out
}

/// `36m`, `5h`, `3d`.
fn short_age(secs: f64) -> String {
    let s = secs as u64;
    if s < 3600 {
        format!("{}m", s / 60)
    } else if s < 3 * 86400 {
        format!("{}h", s / 3600)
    } else {
        format!("{}d", s / 86400)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::lightsail::DiskInfo;

    fn disk(name: &str, system: bool) -> DiskInfo {
        DiskInfo {
            name: name.into(),
            path: None,
            attached_to: None,
            is_attached: true,
            is_system_disk: system,
            support_code: None,
            auto_snapshot: None,
        }
    }

    fn instance(name: &str, disks: &[&str], auto: bool) -> InstanceInfo {
        let mut all = vec![disk(&format!("{name}-system"), true)];
        all.extend(disks.iter().map(|d| disk(d, false)));
        InstanceInfo {
            name: name.into(),
            support_code: None,
            disks: all,
            auto_snapshot: auto.then(|| AutoSnapshotAddOn {
                status: "Enabled".into(),
                time_of_day: Some("06:00".into()),
            }),
        }
    }

    fn snap(name: &str, from: &str, at: f64, tags: &[(&str, &str)]) -> SnapshotInfo {
        SnapshotInfo {
            name: name.into(),
            state: "completed".into(),
            progress: Some("100%".into()),
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            created_at: Some(at),
            from: Some(from.into()),
            size_gb: Some(8),
            is_from_auto_snapshot: false,
            instance: false,
        }
    }

    const NOW: f64 = 2_000_000_000.0;
    const H: f64 = 3600.0;

    #[test]
    fn each_disk_gets_its_newest_own_snapshot_and_a_health() {
        let east = RegionListing {
            region: "us-east-1".into(),
            instances: vec![
                instance("web-1", &["data-1"], false),
                instance("db-1", &["pg"], true),
                instance("bare", &[], false),
            ],
            snapshots: vec![
                // web-1: data-1 fresh and verified, its system disk stale.
                snap(
                    "d1-old",
                    "data-1",
                    NOW - 50.0 * H,
                    &[
                        ("lightsnap:consistency", "frozen"),
                        (OWNER_TAG, "us-east-1/web-1"),
                    ],
                ),
                snap(
                    "d1-new",
                    "data-1",
                    NOW - 2.0 * H,
                    &[
                        ("lightsnap:consistency", "frozen"),
                        (OWNER_TAG, "us-east-1/web-1"),
                        (VERIFIED_TAG, "clean"),
                    ],
                ),
                snap(
                    "sys-old",
                    "web-1-system",
                    NOW - 40.0 * H,
                    &[
                        ("lightsnap:consistency", "frozen"),
                        (OWNER_TAG, "us-east-1/web-1"),
                    ],
                ),
                // db-1: pg verified failed; its system disk never snapshotted.
                snap(
                    "pg-1",
                    "pg",
                    NOW - H,
                    &[
                        ("lightsnap:consistency", "frozen"),
                        (OWNER_TAG, "us-east-1/db-1"),
                        (VERIFIED_TAG, "failed"),
                    ],
                ),
                // Another owner's snapshot of a same-named disk does not count for web-1.
                snap(
                    "other",
                    "data-1",
                    NOW,
                    &[
                        ("lightsnap:consistency", "frozen"),
                        (OWNER_TAG, "eu-west-1/web-1"),
                    ],
                ),
                // Not lightsnap's: no consistency tag.
                snap("by-hand", "data-1", NOW, &[]),
            ],
        };
        let west = RegionListing {
            region: "eu-west-1".into(),
            instances: vec![],
            snapshots: vec![snap(
                "d1-new",
                "data-1",
                NOW - H,
                &[
                    ("lightsnap:consistency", "frozen"),
                    (OWNER_TAG, "us-east-1/web-1"),
                    (COPY_OF_TAG, "us-east-1/d1-new"),
                ],
            )],
        };
        let r = report(&[east, west], NOW, Some(Duration::from_secs(26 * 3600)));
        let row = |i: &str, d: &str| {
            r.instances
                .iter()
                .find(|x| x.instance == i)
                .unwrap()
                .disks
                .iter()
                .find(|x| x.disk == d)
                .unwrap()
                .clone()
        };
        let d1 = row("web-1", "data-1");
        assert_eq!(d1.health, DiskHealth::Healthy);
        let n = d1.newest.unwrap();
        assert_eq!(n.name, "d1-new");
        assert_eq!(n.copies, vec!["eu-west-1".to_string()]);
        assert_eq!(n.verified.as_deref(), Some("clean"));
        assert_eq!(row("web-1", "web-1-system").health, DiskHealth::Stale);
        assert_eq!(row("db-1", "pg").health, DiskHealth::Unverified);
        assert_eq!(row("db-1", "db-1-system").health, DiskHealth::Missing);
        assert_eq!(
            r.stale,
            vec![
                "us-east-1/db-1/db-1-system".to_string(),
                "us-east-1/web-1/web-1-system".to_string()
            ]
        );
        assert_eq!(r.without_lightsnap, vec!["us-east-1/bare".to_string()]);
        let db = r.instances.iter().find(|x| x.instance == "db-1").unwrap();
        assert!(db.auto_snapshot_overlap);
        let t = table(&r);
        assert!(t.contains("no lightsnap"), "{t}");
        assert!(t.contains("stale"), "{t}");
    }

    #[test]
    fn without_a_limit_nothing_is_stale_by_age() {
        let l = RegionListing {
            region: "us-east-1".into(),
            instances: vec![instance("web-1", &[], false)],
            snapshots: vec![snap(
                "s",
                "web-1-system",
                NOW - 500.0 * H,
                &[
                    ("lightsnap:consistency", "frozen"),
                    (OWNER_TAG, "us-east-1/web-1"),
                ],
            )],
        };
        let r = report(&[l], NOW, None);
        assert!(r.stale.is_empty(), "{r:?}");
        assert_eq!(r.instances[0].disks[0].health, DiskHealth::Healthy);
    }
}
