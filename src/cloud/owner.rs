//! Whose a snapshot, copy or disk is: the `lightsnap:owner` tag, `<region>/<instance-name>` of
//! the instance whose lightsnap made it. Lightsail instance names are unique within a region
//! (and an account), so the pair is unique across regions: a copy keeps the *source*
//! instance's value, so snapshots copied in from two regions, or taken by two instances with
//! same-named disks, never look like one series. Everything lightsnap deletes or considers as
//! "ours" (prune, retention, `verify --latest`, `status`, `check`) is selected by this tag;
//! a snapshot without it (made by hand, or by a lightsnap older than the tag) is never deleted
//! by an instance's own run. The least-privilege policy (`lightsnap iam-policy`) conditions
//! deletes on it too.

use std::fmt;

use crate::cloud::lightsail::SnapshotInfo;

/// The tag key naming the instance whose lightsnap made a resource.
pub const OWNER_TAG: &str = "lightsnap:owner";

/// The tag value for instance `instance` in region `region`: `REGION/INSTANCE`.
pub fn owner_value(region: &str, instance: &str) -> String {
    format!("{region}/{instance}")
}

/// An owner: the region and name of the instance whose lightsnap made a resource.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Owner {
    /// The instance's region (`us-east-1`).
    pub region: String,
    /// The instance's Lightsail name.
    pub instance: String,
}

impl Owner {
    /// The owner `instance` in `region`.
    pub fn new(region: impl Into<String>, instance: impl Into<String>) -> Self {
        Owner {
            region: region.into(),
            instance: instance.into(),
        }
    }

    /// Reads a tag value `REGION/INSTANCE`; `None` when it is not one (no '/', or an empty
    /// half). Instance names cannot hold '/', regions neither: the first '/' splits.
    pub fn parse(value: &str) -> Option<Self> {
        let (region, instance) = value.split_once('/')?;
        if region.is_empty() || instance.is_empty() || instance.contains('/') {
            return None;
        }
        Some(Owner::new(region, instance))
    }

    /// The owner a tag set names, if any.
    pub fn of_tags(tags: &[(String, String)]) -> Option<Self> {
        tags.iter()
            .find(|(k, _)| k == OWNER_TAG)
            .and_then(|(_, v)| Owner::parse(v))
    }

    /// The owner a snapshot's tags name, if any.
    pub fn of(snapshot: &SnapshotInfo) -> Option<Self> {
        Owner::of_tags(&snapshot.tags)
    }

    /// The tag value, `REGION/INSTANCE`.
    pub fn value(&self) -> String {
        owner_value(&self.region, &self.instance)
    }

    /// The tag, key and value.
    pub fn tag(&self) -> (String, String) {
        (OWNER_TAG.to_string(), self.value())
    }

    /// Whether `snapshot` carries exactly this owner's tag.
    pub fn owns(&self, snapshot: &SnapshotInfo) -> bool {
        snapshot.tag(OWNER_TAG) == Some(self.value().as_str())
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.region, self.instance)
    }
}

/// How a snapshot's owner tag is shown: its value, or `untagged` when it has none (made by
/// hand, by Lightsail, or by a lightsnap older than the tag).
pub fn describe(snapshot: &SnapshotInfo) -> String {
    snapshot
        .tag(OWNER_TAG)
        .map(str::to_string)
        .unwrap_or_else(|| UNTAGGED.to_string())
}

/// What [`describe`] says of a snapshot without the owner tag.
pub const UNTAGGED: &str = "untagged";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_value_is_region_slash_instance_and_parses_back() {
        assert_eq!(owner_value("eu-west-2", "web-1"), "eu-west-2/web-1");
        let o = Owner::parse("eu-west-2/web-1").expect("parses");
        assert_eq!(o, Owner::new("eu-west-2", "web-1"));
        assert_eq!(o.value(), "eu-west-2/web-1");
        assert_eq!(o.to_string(), "eu-west-2/web-1");
        assert_eq!(o.tag(), (OWNER_TAG.into(), "eu-west-2/web-1".into()));
        for bad in ["", "web-1", "/web-1", "eu-west-2/", "a/b/c"] {
            assert_eq!(Owner::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn owns_compares_the_whole_value() {
        let snap = |tags: Vec<(&str, &str)>| SnapshotInfo {
            name: "s".into(),
            state: "completed".into(),
            progress: None,
            tags: tags
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            created_at: None,
            from: Some("data".into()),
            size_gb: None,
            is_from_auto_snapshot: false,
            instance: false,
        };
        let me = Owner::new("us-east-1", "web-1");
        assert!(me.owns(&snap(vec![(OWNER_TAG, "us-east-1/web-1")])));
        // Same name in another region: another instance.
        assert!(!me.owns(&snap(vec![(OWNER_TAG, "eu-west-2/web-1")])));
        assert!(!me.owns(&snap(vec![(OWNER_TAG, "us-east-1/web-10")])));
        assert!(!me.owns(&snap(vec![("lightsnap:consistency", "frozen")])));
        assert_eq!(describe(&snap(vec![])), UNTAGGED);
        assert_eq!(
            describe(&snap(vec![(OWNER_TAG, "us-east-1/web-1")])),
            "us-east-1/web-1"
        );
        assert_eq!(
            Owner::of(&snap(vec![(OWNER_TAG, "us-east-1/web-1")])),
            Some(me)
        );
    }
}
