//! The published JSON Schemas (docs/src/schema/, generated from the output types by
//! `src/cli/json_schema.rs`) against what lightsnap prints: every golden file in tests/golden,
//! and documents the built binary prints here, live. The goldens' own tests (tests/operator.rs,
//! tests/monitoring.rs, tests/verify.rs) validate the documents of their live runs too, through
//! `common::golden`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{assert_matches_schema, document_of_golden, schema_validator, GOLDEN_DOCUMENTS};
use serde_json::{json, Value};

fn manifest() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn goldens() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(manifest().join("tests/golden"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
}

fn read(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every published schema is a valid JSON Schema (draft 2020-12, its meta-schema bundled in
/// the validator: nothing fetched).
#[test]
fn every_published_schema_is_a_valid_json_schema() {
    let dir = manifest().join("docs/src/schema");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        let schema = read(&path);
        assert_eq!(
            schema["$schema"],
            "https://json-schema.org/draft/2020-12/schema",
            "{}",
            path.display()
        );
        if let Err(e) = jsonschema::meta::validate(&schema) {
            panic!("{} is not a valid JSON Schema: {e}", path.display());
        }
        n += 1;
    }
    assert!(n >= 16, "only {n} schemas in {}", dir.display());
}

/// Every golden file is a document of a published schema, and valid against it.
#[test]
fn every_golden_file_matches_its_schema() {
    let files = goldens();
    assert!(!files.is_empty());
    for path in &files {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let doc = read(path);
        assert_matches_schema(document_of_golden(&name), &doc);
    }
    // No entry for a golden file that is gone.
    for (golden, _) in GOLDEN_DOCUMENTS {
        assert!(
            files.iter().any(|p| p.file_stem().unwrap() == *golden),
            "GOLDEN_DOCUMENTS names {golden}.json, which tests/golden does not have"
        );
    }
}

/// The schemas are strict enough to catch drift: a member the types do not declare, at the
/// top or nested, a member missing, or one of the wrong type, fails.
#[test]
fn the_schemas_refuse_what_the_types_do_not_declare() {
    let golden = read(&manifest().join("tests/golden/freeze-and-snap-wait.json"));
    let validator = schema_validator("freeze-and-snap");
    assert!(validator.is_valid(&golden));
    let mut cases: Vec<(&str, Value)> = Vec::new();
    let mut top = golden.clone();
    top["surprise"] = json!(1);
    cases.push(("an unknown member at the top", top));
    let mut nested = golden.clone();
    nested["snapshots"][0]["surprise"] = json!(1);
    cases.push(("an unknown member of a snapshot", nested));
    let mut in_wait = golden.clone();
    in_wait["wait"]["snapshots"][0]["surprise"] = json!(1);
    cases.push(("an unknown member in wait", in_wait));
    let mut missing = golden.clone();
    missing["snapshots"][0]
        .as_object_mut()
        .unwrap()
        .remove("consistency");
    cases.push(("a member missing", missing));
    let mut retyped = golden.clone();
    retyped["window_ms"] = json!("fast");
    cases.push(("a member of the wrong type", retyped));
    let mut bad_enum = golden.clone();
    bad_enum["snapshots"][0]["consistency"] = json!("sort of");
    cases.push(("a consistency lightsnap never writes", bad_enum));
    let mut null_wait = golden.clone();
    null_wait["wait"] = Value::Null;
    cases.push(("null for a member that is absent when unset", null_wait));
    let mut version = golden.clone();
    version["schema"] = json!(2);
    cases.push(("another layout version", version));
    for (what, doc) in cases {
        assert!(!validator.is_valid(&doc), "{what} passed the schema");
    }
}

/// The built binary, as a user runs it, with a configuration of its own (root's files, as
/// lightsnap requires them).
fn lightsnap(root: &Path, args: &[&str]) -> (i32, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lightsnap"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("LIGHTSNAP_CONFIG_ROOT", root)
        .env("LIGHTSNAP_RUN_DIR", root.join("run"))
        .output()
        .expect("lightsnap runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let doc = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?}: stdout is not one JSON document ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (
        out.status.code().unwrap_or(-1),
        doc,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Documents printed live by the binary, without root's disks or a Lightsail: `config`,
/// `config check`, `status`, `check` (a verdict and UNKNOWN), and a usage error; each valid
/// against its published schema.
#[test]
fn live_documents_match_their_schemas() {
    // Configuration fragments must be root's: lightsnap refuses others (exit 7).
    if !common::root_or_skip("live_documents_match_their_schemas") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let etc = root.join("etc/lightsnap");
    std::fs::create_dir_all(etc.join("config.d")).unwrap();
    let state = root.join("state");
    std::fs::write(
        etc.join("config.toml"),
        format!(
            "freeze_timeout = \"5s\"\nstate_dir = \"{}\"\n[tags]\nenv = \"test\"\n[retention]\nkeep_daily = 7\n[[snapshot]]\npath = \"/data\"\n",
            state.display()
        ),
    )
    .unwrap();

    let (code, doc, err) = lightsnap(root, &["--output", "json", "config"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        doc["settings"].as_array().is_some_and(|s| s.len() > 3),
        "{doc}"
    );
    assert_matches_schema("config", &doc);

    let (code, doc, err) = lightsnap(root, &["--output", "json", "config", "check"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(doc["valid"], true);
    assert_matches_schema("config-check", &doc);

    // The configured target, never run: status lists it, check calls it CRITICAL.
    let (code, doc, err) = lightsnap(root, &["--output", "json", "status"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(doc["targets"][0]["target"], "/data", "{doc}");
    assert_matches_schema("status", &doc);

    let (code, doc, err) = lightsnap(root, &["--output", "json", "check", "--max-age", "26h"]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(doc["status"], "CRITICAL", "{doc}");
    assert_matches_schema("check", &doc);

    // UNKNOWN: a command line that cannot be parsed (no limit given) is check's UNKNOWN
    // document, never the CRITICAL code.
    let (code, doc, err) = lightsnap(root, &["--output", "json", "check"]);
    assert_eq!(code, 3, "{err}");
    assert_eq!(doc["status"], "UNKNOWN", "{doc}");
    assert_matches_schema("check", &doc);
    // UNKNOWN: nothing to check (another configuration, with no target).
    let empty = root.join("empty.toml");
    std::fs::write(
        &empty,
        format!("state_dir = \"{}\"\n", root.join("none").display()),
    )
    .unwrap();
    let (code, doc, err) = lightsnap(
        root,
        &[
            "--config",
            empty.to_str().unwrap(),
            "--output",
            "json",
            "check",
        ],
    );
    assert_eq!(code, 3, "{err}");
    assert_eq!(doc["status"], "UNKNOWN", "{doc}");
    assert_matches_schema("check", &doc);

    // A command line that cannot be parsed: the error document.
    let (code, doc, _) = lightsnap(root, &["--output", "json", "list", "--no-such-option"]);
    assert_eq!(code, 2);
    assert_matches_schema("error", &doc);
    // A bad configuration: the error document too (exit 2, naming the file).
    std::fs::write(etc.join("config.d/20-typo.toml"), "keep_dayly = 7\n").unwrap();
    let (code, doc, _) = lightsnap(root, &["--output", "json", "config", "check"]);
    assert_eq!(code, 2);
    assert!(
        doc["error"]["message"]
            .as_str()
            .unwrap()
            .contains("20-typo.toml"),
        "{doc}"
    );
    assert_matches_schema("error", &doc);
}
