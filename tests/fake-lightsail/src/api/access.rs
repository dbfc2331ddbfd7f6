//! What the policy the fake enforces sees of a call ([`crate::policy::Request`]): the action,
//! the ARN of the resource it names, and the condition keys the API reference says the
//! operation supports — request tags (`aws:RequestTag/KEY`, `aws:TagKeys`) for the creates and
//! TagResource/UntagResource, the named resource's tags (`aws:ResourceTag/KEY`) for those
//! that name one — plus the global `aws:RequestedRegion`. CopySnapshot and the Get* calls
//! support no tag key.

use serde_json::Value;

use super::{parse_tags, str_member, World};
use crate::policy::Request;

/// How an operation names the resource whose tags it is conditioned on, and whether it
/// carries request tags.
enum Named {
    /// No resource tags.
    Nothing,
    /// A disk, by this member.
    Disk(&'static str),
    /// A disk snapshot, by this member.
    DiskSnapshot(&'static str),
    /// An instance snapshot, by this member.
    InstanceSnapshot(&'static str),
    /// Any resource (a snapshot of either kind, a disk, an instance), by this member.
    Any(&'static str),
}

/// The keys of `operation` (from the documentation of each in the service model).
fn keys_of(operation: &str) -> (Named, bool) {
    match operation {
        "CreateDiskSnapshot" | "CreateInstanceSnapshot" | "CreateDisk" | "CreateInstances" => {
            (Named::Nothing, true)
        }
        "CreateDiskFromSnapshot" => (Named::DiskSnapshot("diskSnapshotName"), true),
        "CreateInstancesFromSnapshot" => (Named::InstanceSnapshot("instanceSnapshotName"), true),
        "TagResource" | "UntagResource" => (Named::Any("resourceName"), true),
        "AttachDisk" | "DetachDisk" | "DeleteDisk" => (Named::Disk("diskName"), false),
        "DeleteDiskSnapshot" => (Named::DiskSnapshot("diskSnapshotName"), false),
        "DeleteInstanceSnapshot" => (Named::InstanceSnapshot("instanceSnapshotName"), false),
        "ExportSnapshot" => (Named::Any("sourceSnapshotName"), false),
        _ => (Named::Nothing, false),
    }
}

impl World {
    /// Whether `operation` names a resource whose tags a policy may see, and `request` (its
    /// [`World::access_request`]) found none by that name.
    pub(crate) fn names_missing_resource(&self, operation: &str, request: &Request) -> bool {
        !matches!(keys_of(operation).0, Named::Nothing) && request.resource == "*"
    }

    /// The request `operation` with `body` makes of a policy, sent to `region`'s endpoint.
    pub(crate) fn access_request(&self, region: &str, operation: &str, body: &Value) -> Request {
        let (named, request_tags) = keys_of(operation);
        let found = |member: &str, kinds: &[&'static str]| {
            let name = str_member(body, member)?;
            kinds.iter().find_map(|kind| {
                let tags = match *kind {
                    "DiskSnapshot" => self
                        .disk_snapshots
                        .iter()
                        .find(|s| s.name == name)
                        .map(|s| &s.tags),
                    "InstanceSnapshot" => self
                        .instance_snapshots
                        .iter()
                        .find(|s| s.name == name)
                        .map(|s| &s.tags),
                    "Disk" => self.disk(name).map(|d| &d.tags),
                    _ => self.instance(name).map(|i| &i.tags),
                }?;
                Some((self.arn(kind, name), tags.clone()))
            })
        };
        let resource = match named {
            Named::Nothing => None,
            Named::Disk(m) => found(m, &["Disk"]),
            Named::DiskSnapshot(m) => found(m, &["DiskSnapshot"]),
            Named::InstanceSnapshot(m) => found(m, &["InstanceSnapshot"]),
            Named::Any(m) => found(m, &["DiskSnapshot", "InstanceSnapshot", "Disk", "Instance"]),
        };
        let mut r = Request::new(
            operation,
            resource
                .as_ref()
                .map_or("*".to_string(), |(arn, _)| arn.clone()),
        );
        if let Some((_, tags)) = &resource {
            r.resource_tags(tags);
        }
        if request_tags {
            if operation == "UntagResource" {
                for key in body
                    .get("tagKeys")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                {
                    r.key("aws:TagKeys", key);
                }
            } else {
                r.request_tags(&parse_tags(body).unwrap_or_default());
            }
        }
        r.key("aws:RequestedRegion", region);
        r
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::seed::Seed;

    fn world() -> World {
        let seed = Seed::from_toml_str(
            r#"
[[instances]]
name = "web-1"
instance_id = "i-0123456789abcdef0"
[[disks]]
name = "data-1"
[[disk_snapshots]]
name = "s1"
disk = "data-1"
tags = { "lightsnap:owner" = "us-east-1/web-1" }
"#,
        )
        .unwrap();
        World::new(&seed, PathBuf::from("/nonexistent"), Duration::ZERO, 25)
    }

    fn keys(r: &Request) -> Vec<String> {
        r.keys
            .iter()
            .map(|(k, v)| format!("{k}={}", v.join(",")))
            .collect()
    }

    /// Each operation supplies the keys its documentation lists, and the resource it names.
    #[test]
    fn each_operation_supplies_its_documented_keys() {
        let w = world();
        let tags =
            json!([{ "key": "lightsnap:owner", "value": "us-east-1/web-1" }, { "key": "team" }]);
        let r = w.access_request(
            "us-east-1",
            "CreateDiskFromSnapshot",
            &json!({ "diskName": "d", "diskSnapshotName": "s1", "tags": tags }),
        );
        assert_eq!(r.action, "lightsail:CreateDiskFromSnapshot");
        assert!(r.resource.contains(":DiskSnapshot/"), "{}", r.resource);
        assert_eq!(
            keys(&r),
            [
                "aws:requestedregion=us-east-1",
                "aws:requesttag/lightsnap:owner=us-east-1/web-1",
                "aws:requesttag/team=",
                "aws:resourcetag/lightsnap:owner=us-east-1/web-1",
                "aws:tagkeys=lightsnap:owner,team",
            ]
        );
        // A delete: the snapshot's tags only.
        let r = w.access_request(
            "us-east-1",
            "DeleteDiskSnapshot",
            &json!({ "diskSnapshotName": "s1", "tags": tags }),
        );
        assert_eq!(
            keys(&r),
            [
                "aws:requestedregion=us-east-1",
                "aws:resourcetag/lightsnap:owner=us-east-1/web-1",
            ]
        );
        // An untagged disk: no resource tag at all; UntagResource's keys are the removed ones.
        let r = w.access_request(
            "us-east-1",
            "UntagResource",
            &json!({ "resourceName": "data-1", "tagKeys": ["a", "b"] }),
        );
        assert!(r.resource.contains(":Disk/"), "{}", r.resource);
        assert_eq!(
            keys(&r),
            ["aws:requestedregion=us-east-1", "aws:tagkeys=a,b"]
        );
        // No tag key for CopySnapshot and the Get calls; no resource named: `*`.
        let r = w.access_request("eu-west-2", "CopySnapshot", &json!({ "tags": tags }));
        assert_eq!(r.resource, "*");
        assert_eq!(keys(&r), ["aws:requestedregion=eu-west-2"]);
    }
}
