//! An identity policy the fake enforces (`--policy FILE`, [`crate::Options::policy`]), by
//! IAM's evaluation logic: an explicit Deny wins, else an Allow must match, else the call is
//! refused. Statements match on `Action`/`NotAction` (wildcards `*` `?`, case-insensitive),
//! `Resource`/`NotResource` (against the resource's ARN, `*` for calls that name none) and
//! `Condition`: `StringEquals`, `StringNotEquals`, `StringEqualsIgnoreCase`,
//! `StringNotEqualsIgnoreCase`, `StringLike`, `StringNotLike`, `Null`, each with an
//! `IfExists` suffix, and the `ForAllValues:`/`ForAnyValue:` prefixes for multivalued keys.
//!
//! A key missing from the request: a positive operator is false, a negated one
//! (`StringNotEquals`, `StringNotLike`) true, `...IfExists` true; `ForAllValues:` true,
//! `ForAnyValue:` false. Condition key names are case-insensitive. Which keys each operation
//! supplies is `api::access`'s.

use std::collections::BTreeMap;

use serde_json::Value;

/// What the policy says of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// An Allow matched, and no Deny.
    Allow,
    /// A Deny matched.
    ExplicitDeny,
    /// Nothing allowed it.
    ImplicitDeny,
}

/// One request, as the policy sees it.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Request {
    /// `lightsail:<Operation>`.
    pub action: String,
    /// The resource's ARN, or `*`.
    pub resource: String,
    /// Condition keys (lower case) and their values (several for `aws:TagKeys`).
    pub keys: BTreeMap<String, Vec<String>>,
}

impl Request {
    /// A request for `lightsail:<operation>` on `resource`, with no keys yet.
    pub fn new(operation: &str, resource: impl Into<String>) -> Self {
        Self {
            action: format!("lightsail:{operation}"),
            resource: resource.into(),
            keys: BTreeMap::new(),
        }
    }

    /// Adds a value of key `key`.
    pub fn key(&mut self, key: &str, value: impl Into<String>) {
        self.keys
            .entry(key.to_ascii_lowercase())
            .or_default()
            .push(value.into());
    }

    /// `aws:RequestTag/KEY` for each tag and `aws:TagKeys`, as a request carrying `tags`.
    pub fn request_tags(&mut self, tags: &[(String, String)]) {
        for (k, v) in tags {
            self.key(&format!("aws:RequestTag/{k}"), v.clone());
            self.key("aws:TagKeys", k.clone());
        }
    }

    /// `aws:ResourceTag/KEY` for each tag of the resource named.
    pub fn resource_tags(&mut self, tags: &[(String, String)]) {
        for (k, v) in tags {
            self.key(&format!("aws:ResourceTag/{k}"), v.clone());
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SetOp {
    ForAll,
    ForAny,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Equals,
    EqualsIgnoreCase,
    Like,
    Null,
}

#[derive(Debug, Clone)]
struct Condition {
    set: Option<SetOp>,
    op: Op,
    negated: bool,
    if_exists: bool,
    key: String,
    values: Vec<String>,
}

#[derive(Debug, Clone)]
struct Statement {
    allow: bool,
    /// The patterns, and whether they are `NotAction`.
    actions: (Vec<String>, bool),
    resources: (Vec<String>, bool),
    conditions: Vec<Condition>,
}

/// A parsed identity policy.
#[derive(Debug, Clone)]
pub struct Policy {
    statements: Vec<Statement>,
}

/// `*` any run of characters, `?` one.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    // Iterative wildcard match with one backtrack point.
    let (mut i, mut j, mut star, mut mark) = (0, 0, None, 0);
    while j < t.len() {
        if i < p.len() && (p[i] == '?' || p[i] == t[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some(i);
            mark = j;
            i += 1;
        } else if let Some(s) = star {
            i = s + 1;
            mark += 1;
            j = mark;
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == '*')
}

/// A string or a list of strings (booleans and numbers as their text).
fn strings(v: &Value, what: &str) -> Result<Vec<String>, String> {
    let one = |v: &Value| match v {
        Value::String(s) => Ok(s.clone()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(format!("{what}: {other} is not a string")),
    };
    match v {
        Value::Array(list) => list.iter().map(one).collect(),
        other => Ok(vec![one(other)?]),
    }
}

fn condition(operator: &str, key: &str, values: &Value) -> Result<Condition, String> {
    let (set, rest) = if let Some(r) = operator.strip_prefix("ForAllValues:") {
        (Some(SetOp::ForAll), r)
    } else if let Some(r) = operator.strip_prefix("ForAnyValue:") {
        (Some(SetOp::ForAny), r)
    } else {
        (None, operator)
    };
    let (rest, if_exists) = match rest.strip_suffix("IfExists") {
        Some(r) => (r, true),
        None => (rest, false),
    };
    let (op, negated) = match rest {
        "StringEquals" => (Op::Equals, false),
        "StringNotEquals" => (Op::Equals, true),
        "StringEqualsIgnoreCase" => (Op::EqualsIgnoreCase, false),
        "StringNotEqualsIgnoreCase" => (Op::EqualsIgnoreCase, true),
        "StringLike" => (Op::Like, false),
        "StringNotLike" => (Op::Like, true),
        "Null" if set.is_none() && !if_exists => (Op::Null, false),
        _ => {
            return Err(format!(
                "condition operator {operator:?}: the fake does not know it"
            ))
        }
    };
    Ok(Condition {
        set,
        op,
        negated,
        if_exists,
        key: key.to_ascii_lowercase(),
        values: strings(values, key)?,
    })
}

fn patterns(statement: &Value, name: &str, not: &str) -> Result<(Vec<String>, bool), String> {
    match (statement.get(name), statement.get(not)) {
        (Some(v), None) => Ok((strings(v, name)?, false)),
        (None, Some(v)) => Ok((strings(v, not)?, true)),
        _ => Err(format!("a statement needs exactly one of {name} and {not}")),
    }
}

impl Policy {
    /// Parses a policy document (`{"Version": .., "Statement": [..]}`).
    pub fn parse(doc: &Value) -> Result<Self, String> {
        let statements = match doc.get("Statement") {
            Some(Value::Array(list)) => list.clone(),
            Some(one @ Value::Object(_)) => vec![one.clone()],
            _ => return Err("the policy has no Statement".into()),
        };
        let mut parsed = Vec::new();
        for s in &statements {
            let allow = match s.get("Effect").and_then(Value::as_str) {
                Some("Allow") => true,
                Some("Deny") => false,
                other => return Err(format!("Effect {other:?}: Allow or Deny")),
            };
            let mut conditions = Vec::new();
            if let Some(c) = s.get("Condition") {
                let ops = c.as_object().ok_or("Condition is not an object")?;
                for (operator, keys) in ops {
                    let keys = keys
                        .as_object()
                        .ok_or_else(|| format!("Condition {operator} is not an object"))?;
                    for (key, values) in keys {
                        conditions.push(condition(operator, key, values)?);
                    }
                }
            }
            parsed.push(Statement {
                allow,
                actions: patterns(s, "Action", "NotAction")?,
                resources: patterns(s, "Resource", "NotResource")?,
                conditions,
            });
        }
        Ok(Self { statements: parsed })
    }

    /// What the policy says of `request`.
    pub fn evaluate(&self, request: &Request) -> Decision {
        let mut allowed = false;
        for s in &self.statements {
            if !s.matches(request) {
                continue;
            }
            if !s.allow {
                return Decision::ExplicitDeny;
            }
            allowed = true;
        }
        if allowed {
            Decision::Allow
        } else {
            Decision::ImplicitDeny
        }
    }
}

impl Policy {
    /// Whether an Allow statement names `action` (`lightsail:<Operation>`), whatever its
    /// conditions: what a call whose resource does not exist is judged by.
    pub fn allows_action(&self, action: &str) -> bool {
        self.statements
            .iter()
            .any(|s| s.allow && s.names(&action.to_ascii_lowercase()))
    }

    /// The action patterns of the Allow statements (`lightsail:GetDisk*`), as written.
    pub fn allowed_patterns(&self) -> Vec<String> {
        self.statements
            .iter()
            .filter(|s| s.allow && !s.actions.1)
            .flat_map(|s| s.actions.0.iter().cloned())
            .collect()
    }

    /// Whether `pattern` (an action pattern, `*` and `?`) matches `action`, as IAM matches
    /// them (case-insensitive).
    pub fn pattern_matches(pattern: &str, action: &str) -> bool {
        glob(&pattern.to_ascii_lowercase(), &action.to_ascii_lowercase())
    }
}

impl Statement {
    /// Whether `action` (lower case) is among the statement's actions (or not among its
    /// NotAction).
    fn names(&self, action: &str) -> bool {
        let (actions, not_action) = &self.actions;
        actions
            .iter()
            .any(|p| glob(&p.to_ascii_lowercase(), action))
            != *not_action
    }

    fn matches(&self, r: &Request) -> bool {
        let action = r.action.to_ascii_lowercase();
        let (actions, not_action) = &self.actions;
        let named = actions
            .iter()
            .any(|p| glob(&p.to_ascii_lowercase(), &action));
        let (resources, not_resource) = &self.resources;
        let on = resources.iter().any(|p| glob(p, &r.resource));
        named != *not_action
            && on != *not_resource
            && self.conditions.iter().all(|c| c.holds(&r.keys))
    }
}

impl Condition {
    fn one(&self, value: &str) -> bool {
        self.values.iter().any(|p| match self.op {
            Op::Equals => p == value,
            Op::EqualsIgnoreCase => p.eq_ignore_ascii_case(value),
            Op::Like => glob(p, value),
            Op::Null => false,
        })
    }

    /// Whether a single context value satisfies the operator (negation included).
    fn satisfied_by(&self, value: &str) -> bool {
        self.one(value) != self.negated
    }

    fn holds(&self, keys: &BTreeMap<String, Vec<String>>) -> bool {
        let present = keys.get(&self.key).filter(|v| !v.is_empty());
        if self.op == Op::Null {
            let missing = present.is_none();
            return self.values.iter().any(|v| (v == "true") == missing);
        }
        match (self.set, present) {
            (Some(SetOp::ForAll), None) => true,
            (Some(SetOp::ForAny), None) => false,
            (None, None) => self.if_exists || self.negated,
            (Some(SetOp::ForAll), Some(vals)) => vals.iter().all(|v| self.satisfied_by(v)),
            (Some(SetOp::ForAny), Some(vals)) => vals.iter().any(|v| self.satisfied_by(v)),
            // A single-valued key: negated operators mean "equal to none of the values".
            (None, Some(vals)) => {
                if self.negated {
                    vals.iter().all(|v| !self.one(v))
                } else {
                    vals.iter().any(|v| self.one(v))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(statements: Value) -> Policy {
        Policy::parse(&json!({ "Version": "2012-10-17", "Statement": statements })).unwrap()
    }

    fn req(op: &str, keys: &[(&str, &str)]) -> Request {
        let mut r = Request::new(op, "*");
        for (k, v) in keys {
            r.key(k, *v);
        }
        r
    }

    #[test]
    fn wildcards_match_as_iam_does() {
        assert!(glob("lightsail:get*", "lightsail:getdisk"));
        assert!(glob("a?c", "abc"));
        assert!(!glob("a?c", "ac"));
        assert!(glob("*", ""));
        assert!(glob("lightsnap:*", "lightsnap:owner"));
        assert!(!glob("lightsnap:*", "team"));
        assert!(glob("*a*b", "xxaxxb"));
        assert!(!glob("*a*b", "xxaxxbc"));
    }

    #[test]
    fn nothing_allowed_is_refused_and_a_deny_wins() {
        let p = policy(json!([
            { "Effect": "Allow", "Action": "lightsail:Get*", "Resource": "*" },
            { "Effect": "Deny", "Action": ["lightsail:GetDisks"], "Resource": "*" },
        ]));
        assert_eq!(p.evaluate(&req("GetDisk", &[])), Decision::Allow);
        assert_eq!(p.evaluate(&req("GetDisks", &[])), Decision::ExplicitDeny);
        assert_eq!(p.evaluate(&req("DeleteDisk", &[])), Decision::ImplicitDeny);
        // Actions are case-insensitive.
        let p =
            policy(json!({ "Effect": "Allow", "Action": "LIGHTSAIL:getdisk", "Resource": "*" }));
        assert_eq!(p.evaluate(&req("GetDisk", &[])), Decision::Allow);
    }

    #[test]
    fn not_action_and_not_resource() {
        let p = policy(json!([
            { "Effect": "Allow", "NotAction": "lightsail:Delete*", "Resource": "*" },
        ]));
        assert_eq!(p.evaluate(&req("TagResource", &[])), Decision::Allow);
        assert_eq!(
            p.evaluate(&req("DeleteDiskSnapshot", &[])),
            Decision::ImplicitDeny
        );
        let p = policy(json!([
            { "Effect": "Allow", "Action": "*", "NotResource": "arn:aws:lightsail:*:*:Disk/*" },
        ]));
        let mut disk = Request::new("DeleteDisk", "arn:aws:lightsail:us-east-1:1:Disk/x");
        assert_eq!(p.evaluate(&disk), Decision::ImplicitDeny);
        disk.resource = "arn:aws:lightsail:us-east-1:1:DiskSnapshot/x".into();
        assert_eq!(p.evaluate(&disk), Decision::Allow);
    }

    #[test]
    fn string_operators_and_missing_keys() {
        let p = policy(json!({
            "Effect": "Allow", "Action": "*", "Resource": "*",
            "Condition": { "StringEquals": { "aws:ResourceTag/lightsnap:owner": ["r/a", "r/b"] } }
        }));
        let owner = "aws:ResourceTag/lightsnap:owner";
        assert_eq!(p.evaluate(&req("X", &[(owner, "r/b")])), Decision::Allow);
        assert_eq!(
            p.evaluate(&req("X", &[(owner, "r/c")])),
            Decision::ImplicitDeny
        );
        assert_eq!(p.evaluate(&req("X", &[])), Decision::ImplicitDeny);
        // Key names are case-insensitive; values are not.
        assert_eq!(
            p.evaluate(&req("X", &[("AWS:resourcetag/LIGHTSNAP:OWNER", "r/a")])),
            Decision::Allow
        );
        assert_eq!(
            p.evaluate(&req("X", &[(owner, "R/A")])),
            Decision::ImplicitDeny
        );

        let not = policy(json!({
            "Effect": "Deny", "Action": "*", "Resource": "*",
            "Condition": { "StringNotEquals": { "k": "v" } }
        }));
        assert_eq!(
            not.evaluate(&req("X", &[("k", "v")])),
            Decision::ImplicitDeny
        );
        assert_eq!(
            not.evaluate(&req("X", &[("k", "w")])),
            Decision::ExplicitDeny
        );
        // A negated operator holds when the key is missing.
        assert_eq!(not.evaluate(&req("X", &[])), Decision::ExplicitDeny);

        let like = policy(json!({
            "Effect": "Allow", "Action": "*", "Resource": "*",
            "Condition": { "StringLike": { "k": "web-*" }, "StringEqualsIfExists": { "j": "x" } }
        }));
        assert_eq!(like.evaluate(&req("X", &[("k", "web-1")])), Decision::Allow);
        assert_eq!(
            like.evaluate(&req("X", &[("k", "web-1"), ("j", "y")])),
            Decision::ImplicitDeny
        );
        assert_eq!(
            like.evaluate(&req("X", &[("k", "db-1")])),
            Decision::ImplicitDeny
        );
    }

    #[test]
    fn null_tests_presence() {
        let p = policy(json!({
            "Effect": "Allow", "Action": "*", "Resource": "*",
            "Condition": { "Null": { "aws:ResourceTag/o": "true" } }
        }));
        assert_eq!(p.evaluate(&req("X", &[])), Decision::Allow);
        assert_eq!(
            p.evaluate(&req("X", &[("aws:ResourceTag/o", "v")])),
            Decision::ImplicitDeny
        );
        let p = policy(json!({
            "Effect": "Allow", "Action": "*", "Resource": "*",
            "Condition": { "Null": { "aws:ResourceTag/o": false } }
        }));
        assert_eq!(
            p.evaluate(&req("X", &[("aws:ResourceTag/o", "v")])),
            Decision::Allow
        );
        assert_eq!(p.evaluate(&req("X", &[])), Decision::ImplicitDeny);
    }

    #[test]
    fn set_operators_on_tag_keys() {
        let all = policy(json!({
            "Effect": "Allow", "Action": "*", "Resource": "*",
            "Condition": { "ForAllValues:StringLike": { "aws:TagKeys": ["lightsnap:*", "team"] } }
        }));
        let mut r = Request::new("CreateDiskSnapshot", "*");
        r.request_tags(&[
            ("lightsnap:owner".into(), "r/a".into()),
            ("team".into(), "ops".into()),
        ]);
        assert_eq!(all.evaluate(&r), Decision::Allow);
        r.request_tags(&[("other".into(), "x".into())]);
        assert_eq!(all.evaluate(&r), Decision::ImplicitDeny);
        // No tags at all: ForAllValues holds.
        assert_eq!(
            all.evaluate(&Request::new("CreateDiskSnapshot", "*")),
            Decision::Allow
        );

        let any = policy(json!({
            "Effect": "Deny", "Action": "*", "Resource": "*",
            "Condition": { "ForAnyValue:StringEquals": { "aws:TagKeys": ["lightsnap:scratch"] } }
        }));
        let mut r = Request::new("TagResource", "*");
        assert_eq!(any.evaluate(&r), Decision::ImplicitDeny);
        r.request_tags(&[
            ("a".into(), "1".into()),
            ("lightsnap:scratch".into(), "true".into()),
        ]);
        assert_eq!(any.evaluate(&r), Decision::ExplicitDeny);
    }

    #[test]
    fn unknown_operators_and_bad_documents_are_refused() {
        for doc in [
            json!({ "Statement": { "Effect": "Allow", "Action": "*", "Resource": "*",
                "Condition": { "NumericLessThan": { "k": "1" } } } }),
            json!({ "Statement": { "Effect": "Maybe", "Action": "*", "Resource": "*" } }),
            json!({ "Statement": { "Effect": "Allow", "Resource": "*" } }),
            json!({ "Version": "2012-10-17" }),
        ] {
            assert!(Policy::parse(&doc).is_err(), "{doc}");
        }
    }
}
