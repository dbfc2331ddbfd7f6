//! `fake-lightsail-check-calls --lightsnap BIN --log-dir DIR [--partial]`: after the test
//! suite, every Lightsail call the fakes recorded (`FAKE_LIGHTSAIL_CALL_LOG_DIR`, one file per
//! fake) judged against the policy `lightsnap iam-policy` prints, through the fake's own
//! evaluator. It fails on (a) a call lightsnap made that the policy refuses, and (b) unless
//! `--partial` (a suite run with a filter), an action of the instance policy that no judged
//! call used.
//!
//! Which calls are judged, and against what:
//! - Only lightsnap's: its SDK client names itself in the user agent (`app/lightsnap`). The
//!   tests' own calls (their SDK clients, the AWS CLI, the fake's conformance tests) are
//!   counted, not judged.
//! - A call signed with the thief's or the administrator's key (`THIEF_ACCESS_KEY`,
//!   `ADMIN_ACCESS_KEY`: a test running lightsnap as an administrator, or making a thief's
//!   calls) is marked as made on purpose: not judged.
//! - A call the policy a test had the fake enforce refused (AccessDeniedException) was
//!   provoked on purpose, and that test checks lightsnap's answer to it: not judged.
//! - A call from a fake whose metadata service names one of its instances is judged against
//!   that instance's policy (`iam-policy --instance NAME --region REGION`), printed with the
//!   copy regions and tag keys that fake's judged calls show: every region other than the
//!   home region the calls were signed for (`--copy-region`), every request tag key not
//!   `lightsnap:*` (`--tag-key`: the user's configured keys, which the policy a user prints
//!   names).
//! - A call from a fake whose metadata service names no instance of its own (an
//!   administrator's machine: `prune --all-instances`, `fleet`) is judged against the admin
//!   and the read-only policies: either must allow it.
//! - A call naming a resource that did not exist (a race, a gone disk: the fake answered
//!   NotFound) carries no resource tags for a condition to see: it is judged by its action
//!   alone (an Allow statement must name it). Faults the fake injected do not matter: the
//!   call was made, with the tags recorded.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use fake_lightsail::call_log::Record;
use fake_lightsail::policy::{Decision, Policy};

struct Args {
    lightsnap: PathBuf,
    log_dir: PathBuf,
    partial: bool,
}

fn args() -> Result<Args> {
    let mut lightsnap = None;
    let mut log_dir = None;
    let mut partial = false;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--lightsnap" => lightsnap = it.next().map(PathBuf::from),
            "--log-dir" => log_dir = it.next().map(PathBuf::from),
            "--partial" => partial = true,
            other => bail!("unknown argument {other}: --lightsnap BIN --log-dir DIR [--partial]"),
        }
    }
    Ok(Args {
        lightsnap: lightsnap
            .context("--lightsnap BIN: the lightsnap binary that prints the policy")?,
        log_dir: log_dir
            .context("--log-dir DIR: the FAKE_LIGHTSAIL_CALL_LOG_DIR of the suite run")?,
        partial,
    })
}

/// Every record, with the file it came from.
fn read_logs(dir: &Path) -> Result<Vec<(String, Record)>> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "jsonl") {
            continue;
        }
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(&path)?;
        for (n, line) in text.lines().enumerate() {
            let r: Record = serde_json::from_str(line)
                .with_context(|| format!("{}:{}: not a call record", path.display(), n + 1))?;
            out.push((name.clone(), r));
        }
    }
    Ok(out)
}

/// The policy `lightsnap iam-policy ARGS` prints, with an empty configuration root.
fn printed(lightsnap: &Path, args: &[String], conf: &Path) -> Result<Policy> {
    let out = Command::new(lightsnap)
        .arg("iam-policy")
        .args(args)
        .env("LIGHTSNAP_CONFIG_ROOT", conf)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ACCESS_KEY_ID", "unused")
        .env("AWS_SECRET_ACCESS_KEY", "unused")
        .output()
        .with_context(|| format!("running {}", lightsnap.display()))?;
    if !out.status.success() {
        bail!(
            "lightsnap iam-policy {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    Policy::parse(&doc).map_err(anyhow::Error::msg)
}

fn judge(policy: &Policy, r: &Record) -> bool {
    if r.resource_missing {
        policy.allows_action(&r.request.action)
    } else {
        policy.evaluate(&r.request) == Decision::Allow
    }
}

fn main() -> Result<()> {
    let args = args()?;
    let records = read_logs(&args.log_dir)?;
    let conf = std::env::temp_dir().join(format!("check-calls-{}", std::process::id()));
    std::fs::create_dir_all(&conf)?;
    let marked = [
        fake_lightsail::THIEF_ACCESS_KEY,
        fake_lightsail::ADMIN_ACCESS_KEY,
    ];
    let (mut skipped_marked, mut skipped_enforced, mut others) = (0usize, 0usize, 0usize);
    // Per fake (file) and caller: its judged calls, and the scope they show.
    let mut on_instance: BTreeMap<(String, String), Vec<&Record>> = BTreeMap::new();
    let mut off_instance: Vec<(&String, &Record)> = Vec::new();
    for (file, r) in &records {
        if !r.lightsnap {
            others += 1;
            continue;
        }
        if marked.contains(&r.access_key.as_str()) {
            skipped_marked += 1;
            continue;
        }
        if r.enforced.as_deref().is_some_and(|d| d != "Allow") {
            skipped_enforced += 1;
            continue;
        }
        match &r.caller {
            Some(c) => on_instance
                .entry((file.clone(), c.clone()))
                .or_default()
                .push(r),
            None => off_instance.push((file, r)),
        }
    }
    let mut policies: BTreeMap<Vec<String>, Policy> = BTreeMap::new();
    let mut refused: Vec<String> = Vec::new();
    let mut judged = 0usize;
    let mut used: BTreeSet<String> = BTreeSet::new();
    let mut instance_patterns: BTreeSet<String> = BTreeSet::new();
    for ((file, caller), calls) in &on_instance {
        let (region, instance) = caller
            .split_once('/')
            .with_context(|| format!("{file}: caller {caller} is not REGION/INSTANCE"))?;
        let mut scope = vec![
            "--instance".to_string(),
            instance.to_string(),
            "--region".to_string(),
            region.to_string(),
        ];
        let copy_regions: BTreeSet<&str> = calls
            .iter()
            .map(|r| r.region.as_str())
            .filter(|r| *r != region)
            .collect();
        for c in copy_regions {
            scope.extend(["--copy-region".to_string(), c.to_string()]);
        }
        let keys: BTreeSet<&str> = calls
            .iter()
            .flat_map(|r| r.request.keys.get("aws:tagkeys").into_iter().flatten())
            .map(String::as_str)
            .filter(|k| !k.starts_with("lightsnap:"))
            .collect();
        for k in keys {
            scope.extend(["--tag-key".to_string(), k.to_string()]);
        }
        if !policies.contains_key(&scope) {
            let p = printed(&args.lightsnap, &scope, &conf)?;
            policies.insert(scope.clone(), p);
        }
        let policy = &policies[&scope];
        instance_patterns.extend(policy.allowed_patterns());
        for r in calls {
            judged += 1;
            if judge(policy, r) {
                used.insert(r.request.action.clone());
            } else {
                refused.push(format!(
                    "{file}: {} by {caller} (key {}) on {}{}: refused by `lightsnap iam-policy {}`; it sees {:?}",
                    r.operation,
                    r.access_key,
                    r.request.resource,
                    if r.resource_missing { " (missing)" } else { "" },
                    scope.join(" "),
                    r.request.keys
                ));
            }
        }
    }
    if !off_instance.is_empty() {
        let admin = printed(&args.lightsnap, &["--admin".to_string()], &conf)?;
        let read = printed(&args.lightsnap, &["--read-only".to_string()], &conf)?;
        for (file, r) in &off_instance {
            judged += 1;
            if !judge(&admin, r) && !judge(&read, r) {
                refused.push(format!(
                    "{file}: {} off any instance (key {}) on {}: refused by both `lightsnap iam-policy --admin` and `--read-only`; it sees {:?}",
                    r.operation, r.access_key, r.request.resource, r.request.keys
                ));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&conf);
    let unused: Vec<&String> = instance_patterns
        .iter()
        .filter(|p| !used.iter().any(|a| Policy::pattern_matches(p, a)))
        .collect();
    println!(
        "check-calls: {} calls recorded by {} fakes; {others} made by the tests' own clients; of lightsnap's, {judged} judged, {skipped_marked} made with the thief's or administrator's key, {skipped_enforced} refused on purpose by a policy a test enforced",
        records.len(),
        records.iter().map(|(f, _)| f).collect::<BTreeSet<_>>().len()
    );
    let mut failed = false;
    if !refused.is_empty() {
        failed = true;
        println!(
            "check-calls: {} calls lightsnap made are refused by its printed policy:",
            refused.len()
        );
        for line in &refused {
            println!("  {line}");
        }
    }
    if args.partial {
        println!("check-calls: a partial suite run: actions the policy allows and no call used are not checked");
    } else if !unused.is_empty() {
        failed = true;
        println!(
            "check-calls: actions the instance policy allows that no call of lightsnap's used: {unused:?}"
        );
    }
    if records.is_empty() {
        bail!(
            "no call was recorded in {}: was FAKE_LIGHTSAIL_CALL_LOG_DIR set for the suite?",
            args.log_dir.display()
        );
    }
    if failed {
        std::process::exit(1);
    }
    if args.partial {
        println!("check-calls: every judged call is allowed");
    } else {
        println!(
            "check-calls: every judged call is allowed, and every action of the instance policy is used"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use fake_lightsail::policy::Request;

    fn record(op: &str, tags: &[(&str, &str)], missing: bool) -> Record {
        let mut request = Request::new(op, if missing { "*" } else { "arn:x" });
        let tags: Vec<(String, String)> = tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        request.resource_tags(&tags);
        Record {
            operation: op.into(),
            region: "us-east-1".into(),
            home_region: "us-east-1".into(),
            access_key: fake_lightsail::DEFAULT_ACCESS_KEY.into(),
            lightsnap: true,
            caller: Some("us-east-1/web-1".into()),
            request,
            resource_missing: missing,
            enforced: None,
        }
    }

    /// A call on a resource that exists is judged with its tags; one on a missing resource by
    /// its action alone; an action no statement names is refused either way.
    #[test]
    fn calls_are_judged_by_their_tags_or_by_their_action_when_the_resource_is_gone() {
        let policy = Policy::parse(&serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Action": "lightsail:DeleteDisk",
                "Resource": "*",
                "Condition": { "StringEquals": { "aws:ResourceTag/lightsnap:owner": "us-east-1/web-1" } }
            }]
        }))
        .unwrap();
        assert!(judge(
            &policy,
            &record(
                "DeleteDisk",
                &[("lightsnap:owner", "us-east-1/web-1")],
                false
            )
        ));
        assert!(!judge(&policy, &record("DeleteDisk", &[], false)));
        assert!(judge(&policy, &record("DeleteDisk", &[], true)));
        assert!(!judge(&policy, &record("DetachDisk", &[], true)));
    }
}
