//! The least-privilege IAM policy for lightsnap's keys, as data: which Lightsail actions each
//! use needs, and the tag conditions that keep a key to the resources of the instance it was
//! made for (the ownership tag, [`OWNER_TAG`]). `lightsnap iam-policy` prints it; the fake
//! Lightsail enforces it in the tests.
//!
//! What each operation lets a policy condition on is the API reference's (NOTES.md, "Which
//! calls take which tag conditions"): creates take request tags, deletes/attach/detach the
//! named resource's tags, TagResource both, CreateDiskFromSnapshot the request's and its
//! snapshot's, CopySnapshot and the Get* calls none. Lightsail ARNs carry ids, not names, so
//! every statement is `"Resource": "*"` narrowed by conditions.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

use super::lightsail::{ApiErrorKind, Lightsail, SnapshotKind};
use super::owner::OWNER_TAG;

/// The read calls: what `list`, `status`, `plan` and discovery make. None takes a condition.
pub const READ_ACTIONS: &[&str] = &[
    "GetAutoSnapshots",
    "GetDisk",
    "GetDiskSnapshot",
    "GetDiskSnapshots",
    "GetDisks",
    "GetInstanceSnapshot",
    "GetInstanceSnapshots",
    "GetInstances",
];

/// The tag a verify scratch disk carries (`crate::restore::SCRATCH_TAG`), value `true`.
pub const SCRATCH_TAG: &str = "lightsnap:scratch";
/// The tag a restored disk carries (the restore's snapshot name).
pub const RESTORE_OF_TAG: &str = "lightsnap:restore-of";
/// Tags that say what a disk is for, which decide whether an instance may remove it: set only
/// when the disk is created, never by TagResource (else a stolen key could mark any disk of
/// the instance's as scratch, then delete it).
pub const PURPOSE_TAGS: &[&str] = &[
    SCRATCH_TAG,
    "lightsnap:scratch-instance",
    "lightsnap:scratch-of",
    RESTORE_OF_TAG,
];

/// Whether a statement allows or denies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Allow.
    Allow,
    /// Deny: wins over every Allow.
    Deny,
}

/// One condition: `operator` (`StringEquals`, `ForAllValues:StringLike`, `Null`, ...) on
/// `key`, any of `values`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// The operator.
    pub operator: &'static str,
    /// The condition key (`aws:RequestTag/lightsnap:owner`).
    pub key: String,
    /// The values, any of which matches.
    pub values: Vec<String>,
}

/// One statement: `effect` on `actions` (Lightsail's, without the `lightsail:` prefix), on
/// every resource, when every condition holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// Its name in the document.
    pub sid: &'static str,
    /// Allow or Deny.
    pub effect: Effect,
    /// The actions.
    pub actions: Vec<&'static str>,
    /// All must hold.
    pub conditions: Vec<Condition>,
}

/// A policy document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Its statements.
    pub statements: Vec<Statement>,
}

/// Which policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// Everything an instance's lightsnap does: snapshots, copies, retention, verify, restore.
    Instance,
    /// As [`Variant::Instance`], but no snapshot is ever deleted and no restored disk removed:
    /// a broken-into instance cannot destroy its own history (retention runs elsewhere).
    AppendOnly,
    /// An administrator's `prune --instance NAME` / `--all-instances`: the read calls, and
    /// deleting snapshots that carry an ownership tag (any instance's, never one without).
    Admin,
    /// The read calls only (`list`, `status`, a fleet view).
    ReadOnly,
}

/// Whose resources an instance policy is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// The ownership tag's value: `<region>/<instance>`.
    pub owner: String,
    /// Tag keys (patterns: `*`, `?`) a create or TagResource may carry besides `lightsnap:*`:
    /// the configuration's `[tags]` and `--tag-key`.
    pub tag_keys: Vec<String>,
    /// Regions snapshots are copied to: there a copy, which arrives untagged, may be given
    /// this instance's ownership tag.
    pub copy_regions: Vec<String>,
}

fn cond(operator: &'static str, key: impl Into<String>, values: &[&str]) -> Condition {
    Condition {
        operator,
        key: key.into(),
        values: values.iter().map(|v| v.to_string()).collect(),
    }
}

fn request_tag(key: &str) -> String {
    format!("aws:RequestTag/{key}")
}

fn resource_tag(key: &str) -> String {
    format!("aws:ResourceTag/{key}")
}

fn allow(sid: &'static str, actions: &[&'static str], conditions: Vec<Condition>) -> Statement {
    Statement {
        sid,
        effect: Effect::Allow,
        actions: actions.to_vec(),
        conditions,
    }
}

fn deny(sid: &'static str, actions: &[&'static str], conditions: Vec<Condition>) -> Statement {
    Statement {
        effect: Effect::Deny,
        ..allow(sid, actions, conditions)
    }
}

/// The policy of `variant` (`scope` is used by the instance variants only).
pub fn policy(variant: Variant, scope: &Scope) -> Policy {
    let read = allow("Read", READ_ACTIONS, Vec::new());
    let statements = match variant {
        Variant::ReadOnly => vec![read],
        Variant::Admin => vec![
            read,
            allow(
                "DeleteSnapshotsLightsnapMade",
                &["DeleteDiskSnapshot", "DeleteInstanceSnapshot"],
                vec![cond("Null", resource_tag(OWNER_TAG), &["false"])],
            ),
        ],
        Variant::Instance | Variant::AppendOnly => instance(variant, scope),
    };
    Policy { statements }
}

fn instance(variant: Variant, scope: &Scope) -> Vec<Statement> {
    let owner = scope.owner.as_str();
    let mut keys = vec!["lightsnap:*".to_string()];
    keys.extend(scope.tag_keys.iter().cloned());
    let keys = Condition {
        operator: "ForAllValues:StringLike",
        key: "aws:TagKeys".into(),
        values: keys,
    };
    let ours = || cond("StringEquals", resource_tag(OWNER_TAG), &[owner]);
    let claims_ours = || cond("StringEquals", request_tag(OWNER_TAG), &[owner]);
    let mut s = vec![
        allow("Read", READ_ACTIONS, Vec::new()),
        allow(
            "CreateSnapshotsTaggedOurs",
            &["CreateDiskSnapshot", "CreateInstanceSnapshot"],
            vec![claims_ours(), keys.clone()],
        ),
        // Takes no condition: a copy arrives untagged, and is tagged below.
        allow("CopySnapshots", &["CopySnapshot"], Vec::new()),
        allow(
            "RestoreOurSnapshotsToDisksTaggedOurs",
            &["CreateDiskFromSnapshot"],
            vec![ours(), claims_ours(), keys.clone()],
        ),
        allow(
            "TagOurResources",
            &["TagResource"],
            vec![ours(), keys.clone()],
        ),
    ];
    if !scope.copy_regions.is_empty() {
        s.push(allow(
            "ClaimCopiesInCopyRegions",
            &["TagResource"],
            vec![
                cond("Null", resource_tag(OWNER_TAG), &["true"]),
                claims_ours(),
                Condition {
                    operator: "StringEquals",
                    key: "aws:RequestedRegion".into(),
                    values: scope.copy_regions.clone(),
                },
                keys.clone(),
            ],
        ));
    }
    s.push(allow("AttachOurDisks", &["AttachDisk"], vec![ours()]));
    s.push(allow(
        "RemoveOurScratchDisks",
        &["DetachDisk", "DeleteDisk"],
        vec![
            ours(),
            cond("StringEquals", resource_tag(SCRATCH_TAG), &["true"]),
        ],
    ));
    if variant == Variant::Instance {
        s.push(allow(
            "RemoveOurRestoredDisks",
            &["DetachDisk", "DeleteDisk"],
            vec![
                ours(),
                cond("Null", resource_tag(RESTORE_OF_TAG), &["false"]),
            ],
        ));
        s.push(allow(
            "DeleteOurSnapshots",
            &["DeleteDiskSnapshot", "DeleteInstanceSnapshot"],
            vec![ours()],
        ));
    }
    s.push(deny(
        "NeverNameAnotherOwner",
        &["TagResource"],
        vec![
            cond("Null", request_tag(OWNER_TAG), &["false"]),
            cond("StringNotEquals", request_tag(OWNER_TAG), &[owner]),
        ],
    ));
    s.push(deny(
        "NeverRetagPurpose",
        &["TagResource"],
        vec![cond(
            "ForAnyValue:StringEquals",
            "aws:TagKeys",
            PURPOSE_TAGS,
        )],
    ));
    s
}

impl Policy {
    /// The document, as `aws iam put-user-policy --policy-document` takes it.
    pub fn to_json(&self) -> Value {
        let statements: Vec<Value> = self
            .statements
            .iter()
            .map(|s| {
                let actions: Vec<String> =
                    s.actions.iter().map(|a| format!("lightsail:{a}")).collect();
                let mut doc = json!({
                    "Sid": s.sid,
                    "Effect": match s.effect {
                        Effect::Allow => "Allow",
                        Effect::Deny => "Deny",
                    },
                    "Action": actions,
                    "Resource": "*",
                });
                if !s.conditions.is_empty() {
                    let mut by_op = Map::new();
                    for c in &s.conditions {
                        let value = match c.values.as_slice() {
                            [one] => json!(one),
                            many => json!(many),
                        };
                        by_op
                            .entry(c.operator)
                            .or_insert_with(|| json!({}))
                            .as_object_mut()
                            .expect("an object")
                            .insert(c.key.clone(), value);
                    }
                    doc["Condition"] = Value::Object(by_op);
                }
                doc
            })
            .collect();
        json!({ "Version": "2012-10-17", "Statement": statements })
    }

    /// Every action some statement allows.
    pub fn allowed_actions(&self) -> BTreeSet<&'static str> {
        self.statements
            .iter()
            .filter(|s| s.effect == Effect::Allow)
            .flat_map(|s| s.actions.iter().copied())
            .collect()
    }
}

/// A name no resource has: the single-resource reads are asked about it, since Lightsail
/// checks the policy before it looks the name up (NotFound means the call was allowed).
const PROBE: &str = "lightsnap-access-check";

/// Each read call lightsnap makes, made once: whether these credentials may make it
/// (`false`: AccessDeniedException). Any other failure counts as allowed (it is not the
/// policy's), and shows in the call that needs it.
pub async fn check_read_access<A: Lightsail>(api: &A) -> Vec<(&'static str, bool)> {
    fn allowed<T>(r: Result<T, super::lightsail::ApiError>) -> bool {
        !matches!(r, Err(e) if e.kind == ApiErrorKind::AccessDenied)
    }
    vec![
        ("GetInstances", allowed(api.get_instances().await)),
        ("GetDisks", allowed(api.get_disks().await)),
        ("GetDisk", allowed(api.disk_state(PROBE).await)),
        (
            "GetDiskSnapshots",
            allowed(api.get_snapshots(SnapshotKind::Disk).await),
        ),
        (
            "GetInstanceSnapshots",
            allowed(api.get_snapshots(SnapshotKind::Instance).await),
        ),
        (
            "GetDiskSnapshot",
            allowed(api.get_snapshot(SnapshotKind::Disk, PROBE).await),
        ),
        (
            "GetInstanceSnapshot",
            allowed(api.get_snapshot(SnapshotKind::Instance, PROBE).await),
        ),
        (
            "GetAutoSnapshots",
            allowed(api.auto_snapshot_in_progress(PROBE).await),
        ),
    ]
}

/// [`check_read_access`], as an error naming every refused call (exit code 23) when any is.
pub async fn require_read_access<A: Lightsail>(api: &A) -> anyhow::Result<()> {
    let refused: Vec<String> = check_read_access(api)
        .await
        .into_iter()
        .filter(|(_, ok)| !ok)
        .map(|(a, _)| format!("lightsail:{a}"))
        .collect();
    if refused.is_empty() {
        return Ok(());
    }
    Err(crate::exit_code::Failure::new(
        crate::exit_code::ExitCode::AccessDenied,
        format!(
            "the AWS credentials are not allowed {}: lightsnap needs every read call; `lightsnap iam-policy` prints the IAM policy it needs",
            refused.join(", ")
        ),
    )
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Scope {
        Scope {
            owner: "us-east-1/web-1".into(),
            tag_keys: vec!["team".into()],
            copy_regions: vec!["eu-west-2".into()],
        }
    }

    /// Everything lightsnap's client calls is in the instance policy, and nothing else.
    #[test]
    fn the_instance_policy_allows_exactly_the_calls_lightsnap_makes() {
        let calls: BTreeSet<&str> = crate::cloud::lightsail::OPERATIONS
            .iter()
            .copied()
            .collect();
        assert_eq!(policy(Variant::Instance, &scope()).allowed_actions(), calls);
    }

    #[test]
    fn append_only_deletes_no_snapshot_and_no_restored_disk() {
        let p = policy(Variant::AppendOnly, &scope());
        let actions = p.allowed_actions();
        assert!(!actions.contains("DeleteDiskSnapshot"));
        assert!(!actions.contains("DeleteInstanceSnapshot"));
        assert!(!actions.contains("UntagResource"));
        // Verify's scratch disks are still removed: only those.
        let removals: Vec<&Statement> = p
            .statements
            .iter()
            .filter(|s| s.effect == Effect::Allow && s.actions.contains(&"DeleteDisk"))
            .collect();
        assert_eq!(removals.len(), 1);
        assert!(removals[0]
            .conditions
            .iter()
            .any(|c| c.key == resource_tag(SCRATCH_TAG)));
    }

    #[test]
    fn admin_and_read_only_take_no_create_call() {
        let admin = policy(Variant::Admin, &scope()).allowed_actions();
        assert!(admin
            .iter()
            .all(|a| a.starts_with("Get") || a.starts_with("Delete")));
        assert!(!admin.contains("DeleteDisk"));
        let read = policy(Variant::ReadOnly, &scope()).allowed_actions();
        assert_eq!(read, READ_ACTIONS.iter().copied().collect());
    }

    /// Every allowed action that takes a tag condition has one on every Allow.
    #[test]
    fn every_action_that_can_be_conditioned_is() {
        let p = policy(Variant::Instance, &scope());
        for s in p.statements.iter().filter(|s| s.effect == Effect::Allow) {
            let unconditioned = s
                .actions
                .iter()
                .all(|a| READ_ACTIONS.contains(a) || *a == "CopySnapshot");
            assert_eq!(s.conditions.is_empty(), unconditioned, "{}", s.sid);
        }
    }

    #[test]
    fn the_document_groups_conditions_by_operator() {
        let doc = policy(Variant::Instance, &scope()).to_json();
        assert_eq!(doc["Version"], "2012-10-17");
        let create = doc["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["Sid"] == "CreateSnapshotsTaggedOurs")
            .unwrap();
        assert_eq!(
            create["Condition"]["StringEquals"]["aws:RequestTag/lightsnap:owner"],
            "us-east-1/web-1"
        );
        assert_eq!(
            create["Condition"]["ForAllValues:StringLike"]["aws:TagKeys"],
            json!(["lightsnap:*", "team"])
        );
        assert_eq!(create["Resource"], "*");
        assert_eq!(create["Action"][0], "lightsail:CreateDiskSnapshot");
    }

    #[test]
    fn without_copy_regions_nothing_untagged_can_be_claimed() {
        let mut s = scope();
        s.copy_regions.clear();
        let p = policy(Variant::Instance, &s);
        assert!(p
            .statements
            .iter()
            .filter(|s| s.effect == Effect::Allow)
            .all(|s| !s.conditions.iter().any(|c| c.operator == "Null"
                && c.key == resource_tag(OWNER_TAG)
                && c.values == ["true"])));
    }

    #[test]
    fn the_read_check_makes_each_read_call_and_names_the_refused() {
        use crate::cloud::lightsail::fake::FakeLightsail;
        let fake = FakeLightsail::default().failing("GetDisks", ApiErrorKind::AccessDenied);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let checked = rt.block_on(check_read_access(&fake));
        let names: BTreeSet<&str> = checked.iter().map(|(a, _)| *a).collect();
        assert_eq!(names, READ_ACTIONS.iter().copied().collect());
        let refused: Vec<&str> = checked
            .iter()
            .filter(|(_, ok)| !ok)
            .map(|(a, _)| *a)
            .collect();
        assert_eq!(refused, ["GetDisks"]);
        let err = rt.block_on(require_read_access(&fake)).unwrap_err();
        assert_eq!(
            crate::exit_code::ExitCode::of(&err),
            crate::exit_code::ExitCode::AccessDenied
        );
        assert!(err.to_string().contains("lightsail:GetDisks"), "{err}");
    }

    #[test]
    fn the_purpose_tags_are_those_verify_sets() {
        assert_eq!(SCRATCH_TAG, crate::restore::SCRATCH_TAG);
        assert!(PURPOSE_TAGS.contains(&crate::restore::SCRATCH_INSTANCE_TAG));
        assert!(PURPOSE_TAGS.contains(&crate::restore::SCRATCH_OF_TAG));
    }
}
