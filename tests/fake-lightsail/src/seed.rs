//! The world the fake starts with: account, region, instances, disks and any snapshots that
//! already exist, read from a TOML or JSON file (or string).
//!
//! ```toml
//! self_instance = "web-1"          # whom the metadata service says we are
//! regions = ["eu-west-2"]          # other regions served (empty): CopySnapshot targets
//! [[instances]]
//! name = "web-1"
//! instance_id = "i-0123456789abcdef0"
//! system_disk = { name = "web-1-system", path = "/dev/xvda", size_gb = 40, backing = "/dev/loop3" }
//! auto_snapshot = { time_of_day = "06:00" }   # the AutoSnapshot add-on, daily at 06:00 UTC
//! [[disks]]
//! name = "data-1"
//! path = "/dev/xvdf"
//! attached_to = "web-1"
//! size_gb = 8
//! backing = "/dev/loop4"           # optional: what CreateDiskSnapshot copies
//! # The add-on, two earlier runs (newest first), and a run in progress from the start: for
//! # 45 minutes, or "until-ended" (the admin endpoint or `Fake::end_auto_snapshot` ends it).
//! auto_snapshot = { time_of_day = "23:00", history = ["Success", "Failed"], in_progress = "45m" }
//! [[disk_snapshots]]               # optional: snapshots that exist before the run
//! name = "old-1"
//! disk = "data-1"
//! age = "40d"
//! auto = false
//! tags = { "lightsnap:version" = "0.1.0" }
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// The fake's starting state.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seed {
    /// The 12-digit account id in ARNs and support codes.
    #[serde(default = "default_account")]
    pub account: String,
    /// The region every seeded resource lives in (the home region).
    #[serde(default = "default_region")]
    pub region: String,
    /// Other regions the fake serves, empty at the start: requests signed for one of them
    /// see its own state (CopySnapshot copies snapshots there). Requests signed for a region
    /// neither here nor `region` are refused.
    #[serde(default)]
    pub regions: Vec<String>,
    /// The instance the metadata service describes (default: the first one).
    pub self_instance: Option<String>,
    /// An EC2 instance id the metadata service reports instead of the instance's own (to
    /// model "this instance is not in the account/region").
    pub imds_instance_id: Option<String>,
    /// Instances.
    #[serde(default)]
    pub instances: Vec<SeedInstance>,
    /// Block storage disks.
    #[serde(default)]
    pub disks: Vec<SeedDisk>,
    /// Disk snapshots that already exist.
    #[serde(default)]
    pub disk_snapshots: Vec<SeedSnapshot>,
    /// Disk snapshots that already exist in another region served, by region (old copies
    /// made there by CopySnapshot; `disk` names the source region's disk).
    #[serde(default)]
    pub region_disk_snapshots: BTreeMap<String, Vec<SeedSnapshot>>,
    /// What another region served holds besides its old copies: its own instances, disks and
    /// disk snapshots (a seed of its own, whose `region` and `account` are taken from here),
    /// for a fleet spread over several regions. Its metadata service is never asked.
    #[serde(default)]
    pub region_seeds: BTreeMap<String, Seed>,
}

/// An instance.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedInstance {
    /// Its Lightsail name.
    pub name: String,
    /// Its EC2 instance id, the end of its `supportCode`.
    pub instance_id: String,
    /// Availability zone (default: the region with `a`).
    pub zone: Option<String>,
    /// Its system disk (default: `<name>-system-disk` at `/dev/xvda`, 40 GB, no backing).
    pub system_disk: Option<SeedSystemDisk>,
    /// The automatic snapshot add-on (of the instance: system volume and attached disks).
    pub auto_snapshot: Option<SeedAutoSnapshot>,
}

/// The `AutoSnapshot` add-on of an instance or a block storage disk.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedAutoSnapshot {
    /// The daily hour, `HH:00` UTC.
    pub time_of_day: String,
    /// Earlier runs, newest first, one a day: `Success`, `Failed` or `NotFound`.
    #[serde(default)]
    pub history: Vec<String>,
    /// A run in progress from the start: for this long (`45m`, `30s`), or `until-ended`.
    pub in_progress: Option<String>,
}

impl SeedAutoSnapshot {
    /// `in_progress` as a duration: `None` for `until-ended`.
    pub fn in_progress_duration(text: &str) -> Result<Option<std::time::Duration>> {
        if text == "until-ended" {
            return Ok(None);
        }
        humantime::parse_duration(text)
            .map(Some)
            .with_context(|| format!("in_progress {text:?}: a duration (45m) or until-ended"))
    }

    fn check(&self, resource: &str) -> Result<()> {
        let mut probe = crate::auto::AutoSnapshots::default();
        probe
            .enable(
                resource,
                &self.time_of_day,
                &self.history,
                std::time::SystemTime::now(),
            )
            .map_err(|e| anyhow::anyhow!("{resource}: auto_snapshot: {e}"))?;
        if let Some(d) = &self.in_progress {
            Self::in_progress_duration(d).with_context(|| format!("{resource}: auto_snapshot"))?;
        }
        Ok(())
    }
}

/// An instance's system disk.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedSystemDisk {
    /// Its name.
    pub name: String,
    /// Its device path as Lightsail reports it.
    pub path: String,
    /// Size in GB.
    #[serde(default = "default_size")]
    pub size_gb: i64,
    /// A host block device or image file whose bytes a snapshot copies.
    pub backing: Option<PathBuf>,
    /// EBS volume id for the support code (default: derived from the name).
    pub volume_id: Option<String>,
}

/// A block storage disk.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedDisk {
    /// Its name.
    pub name: String,
    /// Its device path as Lightsail reports it (`/dev/xvdf`).
    pub path: Option<String>,
    /// The instance it is attached to, if any.
    pub attached_to: Option<String>,
    /// Size in GB.
    #[serde(default = "default_size")]
    pub size_gb: i64,
    /// A host block device or image file whose bytes a snapshot copies.
    pub backing: Option<PathBuf>,
    /// EBS volume id for the support code (default: derived from the name).
    pub volume_id: Option<String>,
    /// The automatic snapshot add-on.
    pub auto_snapshot: Option<SeedAutoSnapshot>,
    /// Its tags (`lightsnap:owner` for a live disk an administrator tagged as an instance's).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// A disk snapshot that exists before the run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedSnapshot {
    /// Its name.
    pub name: String,
    /// The disk it was taken of.
    pub disk: String,
    /// How long ago it was taken (`40d`, `2h`).
    #[serde(default = "default_age")]
    pub age: String,
    /// Whether Lightsail's automatic snapshots made it.
    #[serde(default)]
    pub auto: bool,
    /// `completed` (default), `pending` or `error`.
    #[serde(default = "default_state")]
    pub state: String,
    /// Its tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

fn default_account() -> String {
    "123456789012".into()
}
fn default_region() -> String {
    "us-east-1".into()
}
fn default_size() -> i64 {
    8
}
fn default_age() -> String {
    "1h".into()
}
fn default_state() -> String {
    "completed".into()
}

impl Seed {
    /// Parses a seed written in TOML.
    pub fn from_toml_str(text: &str) -> Result<Self> {
        let seed: Seed = toml::from_str(text).context("parsing the seed (TOML)")?;
        seed.check()?;
        Ok(seed)
    }

    /// Parses a seed written in JSON.
    pub fn from_json_str(text: &str) -> Result<Self> {
        let seed: Seed = serde_json::from_str(text).context("parsing the seed (JSON)")?;
        seed.check()?;
        Ok(seed)
    }

    /// Reads a seed file: JSON when it ends in `.json`, TOML otherwise.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the seed {}", path.display()))?;
        if path.extension().is_some_and(|e| e == "json") {
            Self::from_json_str(&text)
        } else {
            Self::from_toml_str(&text)
        }
        .with_context(|| format!("in {}", path.display()))
    }

    fn check(&self) -> Result<()> {
        let mut regions = std::collections::HashSet::from([self.region.as_str()]);
        for r in &self.regions {
            if r.is_empty()
                || !r
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            {
                bail!("regions: {r:?} is not a region name");
            }
            if !regions.insert(r.as_str()) {
                bail!("regions: {r} is listed twice, or is the home region");
            }
        }
        let mut names = std::collections::HashSet::new();
        for i in &self.instances {
            if !names.insert(i.name.as_str()) {
                bail!("instance {} is seeded twice", i.name);
            }
        }
        let mut disks = std::collections::HashSet::new();
        for d in &self.disks {
            if !disks.insert(d.name.as_str()) {
                bail!("disk {} is seeded twice", d.name);
            }
            if let Some(a) = &d.auto_snapshot {
                a.check(&d.name)?;
            }
            if let Some(to) = &d.attached_to {
                if !names.contains(to.as_str()) {
                    bail!("disk {} is attached to {to}, which is not seeded", d.name);
                }
            }
        }
        for i in &self.instances {
            if let Some(a) = &i.auto_snapshot {
                a.check(&i.name)?;
            }
            if let Some(s) = &i.system_disk {
                if !disks.insert(s.name.as_str()) {
                    bail!("disk {} is seeded twice", s.name);
                }
            }
        }
        if let Some(me) = &self.self_instance {
            if !names.contains(me.as_str()) {
                bail!("self_instance {me} is not seeded");
            }
        }
        for r in self.region_disk_snapshots.keys() {
            if r == &self.region || !regions.contains(r.as_str()) {
                bail!("region_disk_snapshots: {r} is not one of regions");
            }
        }
        for (r, seed) in &self.region_seeds {
            if r == &self.region || !regions.contains(r.as_str()) {
                bail!("region_seeds: {r} is not one of regions");
            }
            seed.check().with_context(|| format!("region_seeds.{r}"))?;
        }
        let everywhere = self
            .disk_snapshots
            .iter()
            .chain(self.region_disk_snapshots.values().flatten());
        for s in everywhere {
            humantime::parse_duration(&s.age)
                .with_context(|| format!("snapshot {}: age {:?}", s.name, s.age))?;
            if !["completed", "pending", "error"].contains(&s.state.as_str()) {
                bail!("snapshot {}: state {:?}", s.name, s.state);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_documented_example() {
        let doc = include_str!("seed.rs")
            .lines()
            .skip_while(|l| !l.starts_with("//! ```toml"))
            .skip(1)
            .take_while(|l| !l.starts_with("//! ```"))
            .map(|l| l.strip_prefix("//! ").unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n");
        let seed = Seed::from_toml_str(&doc).unwrap();
        assert_eq!(seed.instances[0].instance_id, "i-0123456789abcdef0");
        assert_eq!(seed.disks[0].attached_to.as_deref(), Some("web-1"));
        assert_eq!(seed.disk_snapshots[0].age, "40d");
        let auto = seed.disks[0].auto_snapshot.as_ref().unwrap();
        assert_eq!(auto.in_progress.as_deref(), Some("45m"));
        assert_eq!(
            SeedAutoSnapshot::in_progress_duration("until-ended").unwrap(),
            None
        );
    }

    #[test]
    fn refuses_inconsistent_seeds() {
        assert!(Seed::from_toml_str("[[disks]]\nname = \"d\"\nattached_to = \"nobody\"").is_err());
        assert!(Seed::from_toml_str("self_instance = \"x\"").is_err());
        assert!(Seed::from_toml_str("bogus = 1").is_err());
        assert!(
            Seed::from_toml_str("regions = [\"us-east-1\"]").is_err(),
            "the home one"
        );
        assert!(Seed::from_toml_str("regions = [\"a\", \"a\"]").is_err());
        assert!(Seed::from_toml_str("regions = [\"Not A Region\"]").is_err());
        let elsewhere = "[[region_disk_snapshots.us-west-2]]\nname = \"s\"\ndisk = \"d\"";
        assert!(
            Seed::from_toml_str(elsewhere).is_err(),
            "a region not served"
        );
        let served = format!("regions = [\"us-west-2\"]\n{elsewhere}");
        assert!(Seed::from_toml_str(&served).is_ok());
        for bad in [
            r#"auto_snapshot = { time_of_day = "6:30" }"#,
            r#"auto_snapshot = { time_of_day = "06:00", history = ["InProgress"] }"#,
            r#"auto_snapshot = { time_of_day = "06:00", in_progress = "soon" }"#,
        ] {
            let seed = format!("[[disks]]\nname = \"d\"\n{bad}");
            assert!(Seed::from_toml_str(&seed).is_err(), "{bad}");
        }
    }
}
