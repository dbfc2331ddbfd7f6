//! The JSON Schema of every `--output json` document, generated from the output types with
//! schemars and published in the manual (`docs/src/schema/<document>.schema.json`, linked
//! from docs/src/json.md). A test holds the files to the types (`UPDATE_DOCS=1 cargo test
//! --lib json_schema` rewrites them); `tests/json_schema.rs` validates every golden file and
//! documents made by live runs against them.
//!
//! What the types do not say, this module adds, the same for every document: the `schema`
//! member `print_json` puts in each (the layout's version), and the `error` member of the
//! commands that end through `snap_args::conclude` (a failure after something was done).
//!
//! Closed: every object a type declares gets `additionalProperties: false` (maps such as
//! `tags` keep theirs). The documents are written only from these types, so a member the
//! schema does not list can only come from a code change that did not regenerate the files:
//! the validation of the goldens and of live documents catches it. Consumers of an older file
//! should expect members to be added (docs/src/json.md).

use schemars::generate::SchemaSettings;
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::restore::copy::Copied;
use crate::restore::scratch::Leftovers;
use crate::restore::Verification;
use crate::snap::wait::WaitDoc;
use crate::snap::Report;

/// The document of `freeze-and-snap` and `snap-instance`: the report, the wait, the copies.
/// Schema only: `snap_args` assembles it from these parts.
#[allow(dead_code)] // never built: its parts are serialized one by one
#[derive(Serialize, JsonSchema)]
struct SnapDoc {
    #[serde(flatten)]
    report: Report,
    /// With `--wait`: how the wait ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "WaitDoc")]
    wait: Option<WaitDoc>,
    /// With a copy region: the copies made.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Vec<Copied>")]
    copies: Option<Vec<Copied>>,
}

/// The document of `run`: a snapshot run's, with what came after the snapshots.
/// Schema only: `cli::run` assembles it from these parts.
#[allow(dead_code)] // never built: its parts are serialized one by one
#[derive(Serialize, JsonSchema)]
struct RunDoc {
    #[serde(flatten)]
    snap: SnapDoc,
    /// Scratch disks a killed verify left: those removed, those kept (when there were any).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Leftovers")]
    scratch_leftovers: Option<Leftovers>,
    /// With a `[retention]`: what it deleted (in the copy region too) and what it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "super::prune::Pruned")]
    pruned: Option<super::prune::Pruned>,
    /// With `verify_every`, when due: each rehearsal's report.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Vec<Verification>")]
    verified: Option<Vec<Verification>>,
}

/// The `check` document: the verdict, or UNKNOWN when it could not check.
#[allow(dead_code)] // never built: `check` prints one of the two
#[derive(Serialize, JsonSchema)]
#[serde(untagged)]
enum CheckDocument {
    Verdict(super::check::CheckDoc),
    Unknown(super::check::CheckUnknown),
}

/// One published document.
pub(crate) struct Document {
    /// Its name: the file is `docs/src/schema/<name>.schema.json`.
    pub(crate) name: &'static str,
    /// What prints it.
    pub(crate) title: &'static str,
    /// Whether it may carry `error` beside what was done.
    pub(crate) fails_inside: bool,
    /// The schema of its type, as schemars generates it.
    generate: fn(SchemaSettings) -> schemars::Schema,
}

fn of<T: JsonSchema>(settings: SchemaSettings) -> schemars::Schema {
    settings.into_generator().into_root_schema_for::<T>()
}

/// Every document lightsnap prints with `--output json` (`iam-policy` prints an IAM policy,
/// AWS's format, not one of these).
pub(crate) const DOCUMENTS: &[Document] = &[
    Document {
        name: "freeze-and-snap",
        title: "lightsnap freeze-and-snap --output json",
        fails_inside: true,
        generate: of::<SnapDoc>,
    },
    Document {
        name: "snap-instance",
        title: "lightsnap snap-instance --output json",
        fails_inside: true,
        generate: of::<SnapDoc>,
    },
    Document {
        name: "run",
        title: "lightsnap run --output json",
        fails_inside: true,
        generate: of::<RunDoc>,
    },
    Document {
        name: "plan",
        title: "lightsnap plan --output json (and freeze-and-snap --dry-run)",
        fails_inside: false,
        generate: of::<super::plan::PlanDoc<'static>>,
    },
    Document {
        name: "thaw",
        title: "lightsnap thaw --output json",
        fails_inside: false,
        generate: of::<super::thaw::ThawReport>,
    },
    Document {
        name: "thaw-boot",
        title: "lightsnap thaw --recover --boot --output json",
        fails_inside: false,
        generate: of::<super::thaw::BootDoc>,
    },
    Document {
        name: "list",
        title: "lightsnap list --output json",
        fails_inside: false,
        generate: of::<super::list::Listed>,
    },
    Document {
        name: "prune",
        title: "lightsnap prune --output json",
        fails_inside: true,
        generate: of::<super::prune::PruneDoc>,
    },
    Document {
        name: "status",
        title: "lightsnap status --output json",
        fails_inside: false,
        generate: of::<super::status::StatusDoc>,
    },
    Document {
        name: "check",
        title: "lightsnap check --output json",
        fails_inside: false,
        generate: of::<CheckDocument>,
    },
    Document {
        name: "verify",
        title: "lightsnap verify --output json",
        fails_inside: true,
        generate: of::<Verification>,
    },
    Document {
        name: "restore",
        title: "lightsnap restore --output json",
        fails_inside: true,
        generate: of::<super::restore::RestoreDoc>,
    },
    Document {
        name: "fleet",
        title: "lightsnap fleet --output json",
        fails_inside: false,
        generate: of::<crate::fleet::FleetReport>,
    },
    Document {
        name: "config",
        title: "lightsnap config --output json",
        fails_inside: false,
        generate: of::<super::settings::ConfigDoc>,
    },
    Document {
        name: "config-check",
        title: "lightsnap config check --output json",
        fails_inside: false,
        generate: of::<super::settings::ConfigCheckDoc>,
    },
    Document {
        name: "setup",
        title: "lightsnap setup --output json",
        fails_inside: false,
        generate: of::<super::setup::SetupDoc>,
    },
    Document {
        name: "error",
        title: "any lightsnap command --output json that fails before it has done anything",
        fails_inside: false,
        generate: of::<super::ErrorDoc>,
    },
];

impl Document {
    /// The published schema: the type's, with `schema` (and `error`) added, every declared
    /// object closed.
    pub(crate) fn schema(&self) -> Value {
        let settings = SchemaSettings::draft2020_12().for_serialize();
        let mut root = (self.generate)(settings.clone()).to_value();
        let error = settings
            .into_generator()
            .into_root_schema_for::<super::ErrorMember>()
            .to_value();
        let root_map = root.as_object_mut().expect("a schema object");
        let mut defs = root_map
            .remove("$defs")
            .and_then(|d| match d {
                Value::Object(m) => Some(m),
                _ => None,
            })
            .unwrap_or_default();
        // The members every document has (at its top level, or each variant's of an
        // untagged one): inlined into each variant, since a closed object sees only its
        // own properties.
        let mut extra = Map::new();
        extra.insert(
            "schema".into(),
            json!({
                "description": "The version of the documents' layout: raised only if a member is ever renamed or removed.",
                "const": super::JSON_SCHEMA,
            }),
        );
        if self.fails_inside {
            let mut e = error;
            if let Some(m) = e.as_object_mut() {
                m.remove("$schema");
                m.remove("title");
                m.insert(
                    "description".into(),
                    "Why the command failed after it had done something (what it did is in the other members); the exit code is the process's too.".into(),
                );
            }
            extra.insert("error".into(), e);
        }
        if let Some(variants) = root_map.get_mut("anyOf").and_then(Value::as_array_mut) {
            for v in variants.iter_mut() {
                inline_ref(v, &mut defs);
                add_members(v, &extra, &["schema"]);
            }
        } else {
            add_members(&mut root, &extra, &["schema"]);
        }
        let root_map = root.as_object_mut().expect("a schema object");
        root_map.insert("title".into(), self.title.into());
        // Definitions no longer referenced anywhere (variants inlined above) are dropped.
        let root_text = root.to_string();
        let unused: Vec<String> = defs
            .keys()
            .filter(|name| {
                let pointer = format!("\"#/$defs/{name}\"");
                !root_text.contains(&pointer)
                    && !defs
                        .iter()
                        .any(|(other, d)| other != *name && d.to_string().contains(&pointer))
            })
            .cloned()
            .collect();
        for name in unused {
            defs.remove(&name);
        }
        let mut defs_value = Value::Object(defs);
        close(&mut root);
        close(&mut defs_value);
        if defs_value.as_object().is_some_and(|d| !d.is_empty()) {
            root.as_object_mut()
                .expect("a schema object")
                .insert("$defs".into(), defs_value);
        }
        root
    }
}

/// Replaces `{"$ref": "#/$defs/NAME"}` by a copy of the definition.
fn inline_ref(v: &mut Value, defs: &mut Map<String, Value>) {
    let Some(name) = v
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/$defs/"))
        .map(str::to_string)
    else {
        return;
    };
    if let Some(def) = defs.get(&name) {
        let mut copy = def.clone();
        if let (Some(c), Some(o)) = (copy.as_object_mut(), v.as_object()) {
            for (k, x) in o {
                if k != "$ref" {
                    c.insert(k.clone(), x.clone());
                }
            }
        }
        *v = copy;
    }
}

/// Adds `extra` to an object schema's properties, `required` the named ones.
fn add_members(v: &mut Value, extra: &Map<String, Value>, required: &[&str]) {
    let Some(m) = v.as_object_mut() else { return };
    let props = m
        .entry("properties")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(p) = props.as_object_mut() {
        for (k, x) in extra {
            p.insert(k.clone(), x.clone());
        }
    }
    let req = m
        .entry("required")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Some(r) = req.as_array_mut() {
        for name in required {
            if extra.contains_key(*name) && !r.iter().any(|x| x == name) {
                r.push((*name).into());
            }
        }
    }
}

/// Closes every object schema that declares its properties and says nothing of others.
fn close(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if m.contains_key("properties") && !m.contains_key("additionalProperties") {
                m.insert("additionalProperties".into(), false.into());
            }
            for x in m.values_mut() {
                close(x);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(close),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/src/schema/ holds exactly the schemas the types generate: `UPDATE_DOCS=1 cargo
    /// test --lib json_schema` rewrites them.
    #[test]
    fn the_published_schemas_are_generated_from_the_types() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/src/schema");
        let mut names = Vec::new();
        for d in DOCUMENTS {
            let text = serde_json::to_string_pretty(&d.schema()).unwrap() + "\n";
            crate::testing::generated_doc(
                &format!("docs/src/schema/{}.schema.json", d.name),
                None,
                &text,
            );
            names.push(format!("{}.schema.json", d.name));
        }
        // No file left over from a document that is gone.
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        names.sort();
        assert_eq!(
            on_disk,
            names,
            "files in {} that no document generates",
            dir.display()
        );
    }

    /// The manual's list of the schemas (docs/src/json.md, between its markers) is
    /// [`DOCUMENTS`].
    #[test]
    fn the_manual_lists_every_schema() {
        let mut list = String::from("| document | printed by | schema |\n| --- | --- | --- |\n");
        for d in DOCUMENTS {
            list.push_str(&format!(
                "| `{0}` | {1} | [{0}.schema.json](schema/{0}.schema.json) |\n",
                d.name, d.title
            ));
        }
        crate::testing::generated_doc(
            "docs/src/json.md",
            Some((
                "<!-- generated from src/cli/json_schema.rs (DOCUMENTS): do not edit -->\n",
                "<!-- end of the generated list -->\n",
            )),
            &list,
        );
    }

    /// Each schema is closed where the document is, and carries `schema`.
    #[test]
    fn every_schema_is_closed_and_versioned() {
        for d in DOCUMENTS {
            let s = d.schema();
            let text = s.to_string();
            let variants: Vec<&Value> = match s.get("anyOf").and_then(Value::as_array) {
                Some(v) => v.iter().collect(),
                None => vec![&s],
            };
            for v in variants {
                assert_eq!(v["additionalProperties"], false, "{}: {v}", d.name);
                assert_eq!(v["properties"]["schema"]["const"], 1, "{}", d.name);
                if d.fails_inside {
                    assert_eq!(v["properties"]["error"]["type"], "object", "{}", d.name);
                }
            }
            assert!(!text.contains("\"$ref\":\"#/$defs/") || s.get("$defs").is_some());
        }
    }
}
