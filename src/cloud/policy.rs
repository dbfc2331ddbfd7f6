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

/// On a restored disk that took a live disk's place (`restore --replace`): never removable.
pub use crate::restore::restored::REPLACES_TAG;
/// The tag that makes a disk of this instance's removable under the instance policy
/// (`crate::restore::SCRATCH_TAG`): a disk lightsnap made to throw away — `true` on verify's
/// scratch disks, `restore` on a restored copy. Only a create may set it.
pub use crate::restore::SCRATCH_TAG;

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
    /// Everything an instance's lightsnap does: snapshots, copies, retention, verify.
    Instance,
    /// As [`Variant::Instance`], but no snapshot is ever deleted: a broken-into instance
    /// cannot destroy its own history (retention runs elsewhere).
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
    /// Tag keys (patterns: `*`, `?`) a snapshot may be created with besides `lightsnap:*`:
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
        // What `lightsnap fleet` reads too: every region's list.
        Variant::ReadOnly => {
            let mut reads = READ_ACTIONS.to_vec();
            reads.extend(super::lightsail::FLEET_OPERATIONS);
            vec![allow("Read", &reads, Vec::new())]
        }
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
    let mut reads: Vec<&'static str> = READ_ACTIONS.to_vec();
    // Takes no condition: a copy arrives untagged, and is tagged below.
    reads.push("CopySnapshot");
    let mut s = vec![
        allow("ReadAndCopy", &reads, Vec::new()),
        allow(
            "CreateSnapshotsTaggedOurs",
            &["CreateDiskSnapshot", "CreateInstanceSnapshot"],
            vec![claims_ours(), keys.clone()],
        ),
        // Only verify's scratch disks, restored copies and instances (`restore --new-instance`)
        // are made: lightsnap's own tag keys.
        allow(
            "RestoreOurSnapshotsToDisksTaggedOurs",
            &["CreateDiskFromSnapshot", "CreateInstancesFromSnapshot"],
            vec![
                ours(),
                claims_ours(),
                cond("ForAllValues:StringLike", "aws:TagKeys", &["lightsnap:*"]),
            ],
        ),
    ];
    // On this instance's resources: attach and detach its disks (verify, restore, and
    // `restore --replace` detaching the live disk — only one an administrator tagged as
    // this instance's), re-tag them (the Deny below keeps another owner's tag out), and,
    // unless append-only, delete its snapshots. One statement: a user's inline policies
    // share 2,048 characters.
    let mut on_ours = vec!["AttachDisk", "DetachDisk", "TagResource"];
    if variant == Variant::Instance {
        on_ours.extend(["DeleteDiskSnapshot", "DeleteInstanceSnapshot"]);
    }
    s.push(allow("OnOurResources", &on_ours, vec![ours()]));
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
            ],
        ));
    }
    // Only disks lightsnap made to throw away are deleted: verify's scratch disks and, with
    // the instance policy, restored copies — never one that took a live disk's place
    // (`restore --replace` tags it before it does), never a disk without the scratch tag
    // (a live disk, a replaced original).
    if variant == Variant::Instance {
        s.push(allow(
            "DeleteOurScratchDisks",
            &["DeleteDisk"],
            vec![
                ours(),
                Condition {
                    operator: "Null",
                    key: resource_tag(SCRATCH_TAG),
                    values: vec!["false".into()],
                },
                cond("Null", resource_tag(REPLACES_TAG), &["true"]),
            ],
        ));
    } else {
        s.push(allow(
            "DeleteOurVerifyScratchDisks",
            &["DeleteDisk"],
            vec![
                ours(),
                cond(
                    "StringEquals",
                    resource_tag(SCRATCH_TAG),
                    &[crate::restore::SCRATCH_VERIFY],
                ),
            ],
        ));
    }
    // The tag that makes a disk removable is set only when the disk is made.
    s.push(deny(
        "NeverMarkScratch",
        &["TagResource"],
        vec![cond(
            "ForAnyValue:StringEquals",
            "aws:TagKeys",
            &[SCRATCH_TAG],
        )],
    ));
    // Never naming another owner: where a request sets the owner tag, it is ours.
    s.push(deny(
        "NeverAnotherOwner",
        &["TagResource"],
        vec![
            cond("Null", request_tag(OWNER_TAG), &["false"]),
            cond("StringNotEquals", request_tag(OWNER_TAG), &[owner]),
        ],
    ));
    s
}

/// Wildcards the document writes for a group of actions when a statement has them all, to
/// fit IAM's size quota: each matches exactly its group among Lightsail's operations (a test
/// checks this against the service model).
pub const WILDCARDS: &[(&str, &[&str])] = &[
    ("*tachDisk", &["AttachDisk", "DetachDisk"]),
    (
        "GetDisk*",
        &["GetDisk", "GetDiskSnapshot", "GetDiskSnapshots", "GetDisks"],
    ),
    (
        "GetInstanceSnapshot*",
        &["GetInstanceSnapshot", "GetInstanceSnapshots"],
    ),
];

/// `actions` as written: each group of [`WILDCARDS`] that is wholly there as its wildcard.
fn written(actions: &[&'static str]) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = actions.to_vec();
    for (wildcard, group) in WILDCARDS {
        if group.iter().all(|a| out.contains(a)) {
            let at = out.iter().position(|a| group.contains(a)).expect("present");
            out.retain(|a| !group.contains(a));
            out.insert(at.min(out.len()), wildcard);
        }
    }
    out
}

/// IAM's quota on a user's inline policies, in characters (whitespace not counted).
pub const INLINE_USER_POLICY_LIMIT: usize = 2048;

impl Policy {
    /// The document, as `aws iam put-user-policy --policy-document` takes it.
    pub fn to_json(&self) -> Value {
        let statements: Vec<Value> = self
            .statements
            .iter()
            .map(|s| {
                let actions: Vec<String> = written(&s.actions)
                    .iter()
                    .map(|a| format!("lightsail:{a}"))
                    .collect();
                // One action as a string, not a list of one: every character counts.
                let actions = match actions.as_slice() {
                    [one] => json!(one),
                    _ => json!(actions),
                };
                // No `Sid`: a user's inline policies share 2,048 characters.
                let mut doc = json!({
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

    /// Its size as IAM counts it against [`INLINE_USER_POLICY_LIMIT`]: the document without
    /// whitespace.
    pub fn size(&self) -> usize {
        serde_json::to_string(&self.to_json()).map_or(0, |t| t.len())
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
    use crate::cloud::owner::owner_value;

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
    fn append_only_deletes_no_snapshot_and_only_verify_scratch_disks() {
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
            .any(|c| c.key == resource_tag(SCRATCH_TAG)
                && c.values == [crate::restore::SCRATCH_VERIFY]));
    }

    /// The disks restore and verify make, with the tags their code writes, under the printed
    /// policy as the fake Lightsail evaluates it: which may be detached and deleted.
    #[test]
    fn disks_are_removable_exactly_as_their_purpose_says() {
        use crate::restore::{restored, scratch, Me};
        use fake_lightsail::policy::{Decision, Policy as Doc, Request};
        let me = Me {
            instance: "web-1".into(),
            availability_zone: "us-east-1a".into(),
            used_paths: Vec::new(),
        };
        let s = scope();
        let mine = |extra: &[(&str, &str)]| {
            let mut t = vec![me.owner().tag()];
            t.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            t
        };
        let mut replacing = restored::tags(&me, "s1");
        replacing.push((REPLACES_TAG.into(), "data-1".into()));
        let theirs_scratch: Vec<(String, String)> = scratch::tags(&me, "s1")
            .into_iter()
            .map(|(k, v)| {
                if k == OWNER_TAG {
                    (k, "us-east-1/web-2".to_string())
                } else {
                    (k, v)
                }
            })
            .collect();
        // (disk, its tags, detach allowed, delete allowed: instance, append-only)
        type Case<'a> = (&'a str, Vec<(String, String)>, bool, bool, bool);
        let cases: Vec<Case> = vec![
            ("verify scratch", scratch::tags(&me, "s1"), true, true, true),
            (
                "restored copy",
                restored::tags(&me, "s1"),
                true,
                true,
                false,
            ),
            (
                "restored, took the live disk's place",
                replacing,
                true,
                false,
                false,
            ),
            (
                "live disk an administrator tagged ours",
                mine(&[]),
                true,
                false,
                false,
            ),
            (
                "replaced original, kept",
                mine(&[(restored::REPLACED_BY_TAG, "x")]),
                true,
                false,
                false,
            ),
            ("untagged disk", Vec::new(), false, false, false),
            (
                "another instance's scratch disk",
                theirs_scratch,
                false,
                false,
                false,
            ),
        ];
        for variant in [Variant::Instance, Variant::AppendOnly] {
            let doc = Doc::parse(&policy(variant, &s).to_json()).unwrap();
            for (what, tags, detach, delete, delete_append_only) in &cases {
                let decide = |op: &str| {
                    let mut r = Request::new(op, "arn:aws:lightsail:us-east-1:1:Disk/x");
                    r.resource_tags(tags);
                    r.key("aws:RequestedRegion", "us-east-1");
                    doc.evaluate(&r) == Decision::Allow
                };
                let delete = if variant == Variant::Instance {
                    *delete
                } else {
                    *delete_append_only
                };
                assert_eq!(decide("DetachDisk"), *detach, "{variant:?}: detach {what}");
                assert_eq!(decide("DeleteDisk"), delete, "{variant:?}: delete {what}");
            }
            // No key of the instance's makes a disk removable, nor gives it another owner.
            for tags in [
                vec![(SCRATCH_TAG.to_string(), "restore".to_string())],
                vec![(OWNER_TAG.to_string(), "us-east-1/web-2".to_string())],
            ] {
                let mut r = Request::new("TagResource", "arn:aws:lightsail:us-east-1:1:Disk/x");
                r.resource_tags(&mine(&[]));
                r.request_tags(&tags);
                r.key("aws:RequestedRegion", "us-east-1");
                assert_eq!(doc.evaluate(&r), Decision::ExplicitDeny, "{tags:?}");
            }
        }
    }

    #[test]
    fn admin_and_read_only_take_no_create_call() {
        let admin = policy(Variant::Admin, &scope()).allowed_actions();
        assert!(admin
            .iter()
            .all(|a| a.starts_with("Get") || a.starts_with("Delete")));
        assert!(!admin.contains("DeleteDisk"));
        let read = policy(Variant::ReadOnly, &scope()).allowed_actions();
        let fleet = crate::cloud::lightsail::FLEET_OPERATIONS;
        assert_eq!(read, READ_ACTIONS.iter().chain(fleet).copied().collect());
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
            .find(|s| s["Action"][0] == "lightsail:CreateDiskSnapshot")
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

    /// `aws iam put-user-policy` takes it: a user's inline policies share 2,048 characters.
    #[test]
    fn every_variant_fits_a_users_inline_policy() {
        let scope = Scope {
            owner: owner_value("ap-southeast-2", "web-server-production-01"),
            tag_keys: vec!["team".into(), "env".into(), "cost-center".into()],
            copy_regions: vec!["eu-central-1".into()],
        };
        for variant in [
            Variant::Instance,
            Variant::AppendOnly,
            Variant::Admin,
            Variant::ReadOnly,
        ] {
            let size = policy(variant, &scope).size();
            assert!(size <= INLINE_USER_POLICY_LIMIT, "{variant:?}: {size}");
        }
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

    /// Each wildcard the document writes matches exactly its group among every Lightsail
    /// operation, as the service model (the AWS CLI's botocore copy) lists them.
    #[test]
    fn each_wildcard_matches_exactly_its_group_in_the_service_model() {
        let cli = std::env::var_os("LIGHTSNAP_AWS_CLI")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/awscli/bin/aws")
            });
        // bin/aws → lib/python3.*/site-packages/awscli/botocore/data/lightsail/*/service-2.json
        let lib = cli.parent().and_then(|b| b.parent()).map(|v| v.join("lib"));
        let model = lib.and_then(|lib| {
            std::fs::read_dir(lib).ok()?.flatten().find_map(|py| {
                let dir = py
                    .path()
                    .join("site-packages/awscli/botocore/data/lightsail");
                let version = std::fs::read_dir(dir).ok()?.flatten().next()?;
                std::fs::read_to_string(version.path().join("service-2.json")).ok()
            })
        });
        let Some(model) = model else {
            let why = "the AWS CLI's Lightsail model was not found (LIGHTSNAP_AWS_CLI, else target/awscli: run scripts/deps)";
            assert!(std::env::var_os("CI").is_none(), "{why}");
            eprintln!("skipping: {why}");
            return;
        };
        let model: Value = serde_json::from_str(&model).unwrap();
        let operations: Vec<&String> = model["operations"].as_object().unwrap().keys().collect();
        assert!(operations.len() > 100, "{}", operations.len());
        for (wildcard, group) in WILDCARDS {
            let mut matched: Vec<&str> = operations
                .iter()
                .filter(|o| wildcard_matches(wildcard, o))
                .map(|o| o.as_str())
                .collect();
            matched.sort();
            assert_eq!(matched, group.to_vec(), "{wildcard}");
        }
    }

    /// IAM's `*` in an action name (no `?` in [`WILDCARDS`]).
    fn wildcard_matches(pattern: &str, name: &str) -> bool {
        let parts: Vec<&str> = pattern.split('*').collect();
        let (first, last) = (parts[0], parts[parts.len() - 1]);
        if parts.len() == 1 {
            return pattern == name;
        }
        if !name.starts_with(first) || name.len() < first.len() + last.len() {
            return false;
        }
        let mut rest = &name[first.len()..name.len() - last.len()];
        for middle in &parts[1..parts.len() - 1] {
            match rest.find(middle) {
                Some(at) => rest = &rest[at + middle.len()..],
                None => return false,
            }
        }
        name.ends_with(last)
    }

    #[test]
    fn wildcards_match_as_iam_does() {
        assert!(wildcard_matches("*tachDisk", "AttachDisk"));
        assert!(wildcard_matches("*tachDisk", "DetachDisk"));
        assert!(!wildcard_matches("*tachDisk", "DetachStaticIp"));
        assert!(wildcard_matches("GetDisk*", "GetDisk"));
        assert!(!wildcard_matches("GetDisk*", "GetDomain"));
    }

    #[test]
    fn groups_are_written_as_their_wildcard_only_when_whole() {
        assert_eq!(
            written(&[
                "GetAutoSnapshots",
                "GetDisk",
                "GetDiskSnapshot",
                "GetDiskSnapshots",
                "GetDisks",
                "GetInstances"
            ]),
            ["GetAutoSnapshots", "GetDisk*", "GetInstances"]
        );
        assert_eq!(written(&["GetDisk", "GetDisks"]), ["GetDisk", "GetDisks"]);
    }
}
