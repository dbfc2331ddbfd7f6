//! Every configuration key, documented once: what `lightsnap config` lists (each key's value
//! in force and the file it came from) and what the `lightsnap.toml(5)` man page says. A test
//! holds this list to the keys the fragment parser accepts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::Settings;

/// One key of the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Key {
    /// Its name: `freeze_timeout`, or `retention.keep` inside a table.
    pub name: &'static str,
    /// Its type, as written in TOML.
    pub kind: &'static str,
    /// Its default, as written in TOML (`""`: none).
    pub default: &'static str,
    /// What it does.
    pub doc: &'static str,
}

/// Every key, in the order the man page and `lightsnap config` show them.
pub const KEYS: &[Key] = &[
    Key {
        name: "freeze_timeout",
        kind: "duration",
        default: "\"10s\"",
        doc: "The longest writes may be paused, from the freeze to the thaw (at most 10m). Past it the filesystem is thawed whatever the snapshot call is doing, and lightsnap exits 13.",
    },
    Key {
        name: "name_template",
        kind: "string",
        default: "\"{disk}-{utc:%Y%m%d-%H%M%S}\"",
        doc: "Snapshot names: {disk} and {utc:FORMAT} (%Y %m %d %H %M %S, in UTC). The result must be a valid Lightsail name.",
    },
    Key {
        name: "hook_dir",
        kind: "absolute path",
        default: "\"/etc/lightsnap/hooks.d\"",
        doc: "Hooks: executables run with pre-freeze before anything is frozen and post-thaw after the thaw.",
    },
    Key {
        name: "hook_timeout",
        kind: "duration",
        default: "\"60s\"",
        doc: "How long one hook may run, per phase, before it is killed with its process group.",
    },
    Key {
        name: "expedite_freeze",
        kind: "boolean",
        default: "false",
        doc: "Expedite the kernel's RCU grace periods during the freeze calls (/sys/kernel/rcu_expedited, put back after).",
    },
    Key {
        name: "region",
        kind: "string",
        default: "",
        doc: "The AWS region (default: AWS_REGION, the profile, or the instance metadata).",
    },
    Key {
        name: "profile",
        kind: "string",
        default: "",
        doc: "The AWS profile of ~/.aws/config and ~/.aws/credentials (--profile overrides it).",
    },
    Key {
        name: "tags",
        kind: "table of strings",
        default: "{}",
        doc: "Tags added to every snapshot, besides lightsnap's own (keys starting with lightsnap: are refused).",
    },
    Key {
        name: "exclude",
        kind: "array of globs",
        default: "[]",
        doc: "Mount points snap-instance leaves out (`*` stays within one path component). Later fragments add to the list.",
    },
    Key {
        name: "state_dir",
        kind: "absolute path",
        default: "\"/var/lib/lightsnap\"",
        doc: "Where each run target's state file is kept, for status and check; made if missing.",
    },
    Key {
        name: "metrics_file",
        kind: "absolute path",
        default: "",
        doc: "Prometheus metrics for node_exporter's textfile collector (must end in .prom; its directory must exist).",
    },
    Key {
        name: "ping_url",
        kind: "URL",
        default: "",
        doc: "A dead-man's-switch service (healthchecks.io style): GET URL/start, GET URL, POST URL/fail; a query string is kept last. A secret: shown as its scheme and host only.",
    },
    Key {
        name: "verify_every",
        kind: "integer",
        default: "",
        doc: "lightsnap run verifies the newest snapshot of each target every this many runs (1: every run).",
    },
    Key {
        name: "verify_hook_dir",
        kind: "absolute path",
        default: "\"/etc/lightsnap/verify.d\"",
        doc: "Executables run with the argument verify against the restored filesystem, mounted read-only.",
    },
    Key {
        name: "copy_to_region",
        kind: "string",
        default: "",
        doc: "Copy every snapshot to this region once it is completed; run applies [retention] to the copies too.",
    },
    Key {
        name: "retention.keep",
        kind: "integer",
        default: "",
        doc: "Keep this many newest completed snapshots per disk (keep_last is the same).",
    },
    Key {
        name: "retention.keep_last",
        kind: "integer",
        default: "",
        doc: "The same as keep, as restic names it.",
    },
    Key {
        name: "retention.keep_daily",
        kind: "integer",
        default: "",
        doc: "Keep the newest snapshot of each of the last N days (UTC) that have one.",
    },
    Key {
        name: "retention.keep_weekly",
        kind: "integer",
        default: "",
        doc: "Keep the newest snapshot of each of the last N ISO weeks that have one.",
    },
    Key {
        name: "retention.keep_monthly",
        kind: "integer",
        default: "",
        doc: "Keep the newest snapshot of each of the last N months that have one.",
    },
    Key {
        name: "retention.keep_yearly",
        kind: "integer",
        default: "",
        doc: "Keep the newest snapshot of each of the last N years that have one.",
    },
    Key {
        name: "retention.older_than",
        kind: "duration",
        default: "",
        doc: "Delete snapshots older than this; with a keep rule too, only those no rule keeps.",
    },
    Key {
        name: "run.budget",
        kind: "duration",
        default: "\"2h30m\"",
        doc: "The longest one lightsnap run may take, start to end; the waits it is configured for must fit in it, and lightsnap-snapshot.service's TimeoutStartSec= is this plus 5 minutes.",
    },
    Key {
        name: "snapshot",
        kind: "array of tables: path, disk",
        default: "[]",
        doc: "What lightsnap run snapshots ([[snapshot]] path = \"/data\"), with the Lightsail disk behind it if it should not be found by itself (disk = \"data-1\").",
    },
];

/// The top-level keys of [`KEYS`] (a table's name once).
pub fn top_level() -> Vec<&'static str> {
    let mut out: Vec<&str> = Vec::new();
    for k in KEYS {
        let top = k.name.split('.').next().unwrap_or(k.name);
        if !out.contains(&top) {
            out.push(top);
        }
    }
    out
}

/// Where a setting came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// lightsnap's default.
    Default,
    /// One or more files (later ones last).
    Files(Vec<PathBuf>),
    /// The command line (`--profile`).
    CommandLine,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Default => write!(f, "default"),
            Origin::CommandLine => write!(f, "command line"),
            Origin::Files(files) => {
                let names: Vec<String> = files
                    .iter()
                    .map(|p| format!("file:{}", p.display()))
                    .collect();
                write!(f, "{}", names.join(","))
            }
        }
    }
}

/// Which files set which keys (`retention.keep`, `tags.env`, `snapshot`): the last file for a
/// key one file overrides, every file for the lists that add up (`exclude`, `snapshot`).
pub fn origins(files: &[PathBuf]) -> Result<BTreeMap<String, Vec<PathBuf>>> {
    let mut out: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for file in files {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let table: toml::Table = text
            .parse()
            .with_context(|| format!("{}: not valid TOML", file.display()))?;
        for (key, value) in &table {
            let mut names = Vec::new();
            match (key.as_str(), value) {
                ("retention" | "tags" | "run", toml::Value::Table(t)) => {
                    names.extend(t.keys().map(|k| format!("{key}.{k}")));
                }
                _ => names.push(key.clone()),
            }
            for name in names {
                let adds_up = matches!(name.as_str(), "exclude" | "snapshot");
                let entry = out.entry(name).or_default();
                if !adds_up {
                    entry.clear();
                }
                entry.push(file.clone());
            }
        }
    }
    Ok(out)
}

/// One setting in force.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct Effective {
    /// Its key (`tags.env` for one tag).
    #[schemars(schema_with = "key_schema")]
    pub key: String,
    /// Its value, as TOML would write it (a `ping_url` as its scheme and host only).
    pub value: String,
    /// Where it came from.
    pub origin: Origin,
}

/// The schema of [`Effective::key`]: a key of [`KEYS`], or `tags.NAME` for one tag.
fn key_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let names: Vec<&str> = KEYS
        .iter()
        .map(|k| k.name)
        .filter(|n| *n != "tags")
        .collect();
    schemars::json_schema!({
        "description": "Its key: one of the configuration's keys, or `tags.NAME` for one tag.",
        "type": "string",
        "anyOf": [{ "enum": names }, { "pattern": "^tags\\..+" }]
    })
}

fn quoted(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn path(p: &Path) -> String {
    quoted(&p.display().to_string())
}

fn duration(d: std::time::Duration) -> String {
    quoted(&humantime::format_duration(d).to_string())
}

/// Every setting in force with its origin: each key of [`KEYS`] (those without a value left
/// out), one line per tag, one per `[[snapshot]]`.
pub fn effective(settings: &Settings, files: &[PathBuf]) -> Result<Vec<Effective>> {
    let origins = origins(files)?;
    let origin_of = |key: &str| match origins.get(key) {
        Some(files) => Origin::Files(files.clone()),
        None => Origin::Default,
    };
    let mut out = Vec::new();
    let mut push = |key: &str, value: Option<String>, origin: Origin| {
        if let Some(value) = value {
            out.push(Effective {
                key: key.to_string(),
                value,
                origin,
            });
        }
    };
    let s = settings;
    let r = &s.retention;
    for k in KEYS {
        let value = match k.name {
            "freeze_timeout" => Some(duration(s.freeze_timeout)),
            "name_template" => Some(quoted(&s.name_template)),
            "hook_dir" => Some(path(&s.hook_dir)),
            "hook_timeout" => Some(duration(s.hook_timeout)),
            "expedite_freeze" => Some(s.expedite_freeze.to_string()),
            "region" => s.region.as_deref().map(quoted),
            "profile" => s.profile.as_deref().map(quoted),
            "exclude" => {
                let items: Vec<String> = s.exclude.iter().map(|e| quoted(e)).collect();
                Some(format!("[{}]", items.join(", ")))
            }
            "state_dir" => Some(path(&s.state_dir)),
            "metrics_file" => s.metrics_file.as_deref().map(path),
            "ping_url" => s
                .ping_url
                .as_deref()
                .map(|u| quoted(&format!("{}/…", crate::monitor::ping::redacted(u)))),
            "verify_every" => s.verify_every.map(|n| n.to_string()),
            "verify_hook_dir" => Some(path(&s.verify_hook_dir)),
            "copy_to_region" => s.copy_to_region.as_deref().map(quoted),
            "retention.keep" | "retention.keep_last" => {
                // One setting under two names: shown under the one the file used.
                let used_last = origins.contains_key("retention.keep_last");
                let shown = if used_last {
                    "retention.keep_last"
                } else {
                    "retention.keep"
                };
                (k.name == shown)
                    .then_some(())
                    .and(r.keep.map(|n| n.to_string()))
            }
            "retention.older_than" => r.older_than.map(duration),
            "run.budget" => Some(duration(s.run_budget)),
            "tags" => {
                for (key, value) in &s.tags {
                    let name = format!("tags.{key}");
                    push(&name, Some(quoted(value)), origin_of(&name));
                }
                None
            }
            "snapshot" => {
                for e in &s.snapshots {
                    let mut v = format!("{{ path = {}", path(&e.path));
                    if let Some(d) = &e.disk {
                        v.push_str(&format!(", disk = {}", quoted(d)));
                    }
                    v.push_str(" }");
                    push("snapshot", Some(v), origin_of("snapshot"));
                }
                None
            }
            other => retention_extra(settings, other),
        };
        let origin = if k.name == "profile" && super::overrides().profile.is_some() {
            Origin::CommandLine
        } else {
            origin_of(k.name)
        };
        push(k.name, value, origin);
    }
    Ok(out)
}

/// The calendar rules of `[retention]`, as far as the settings have them.
fn retention_extra(settings: &Settings, key: &str) -> Option<String> {
    let r = &settings.retention;
    let n = match key {
        "retention.keep_daily" => r.keep_daily,
        "retention.keep_weekly" => r.keep_weekly,
        "retention.keep_monthly" => r.keep_monthly,
        "retention.keep_yearly" => r.keep_yearly,
        _ => None,
    };
    n.map(|n| n.to_string())
}

/// `lightsnap.toml(5)` in roff: every key of [`KEYS`] with its type, default and meaning.
pub fn man_page(version: &str) -> String {
    let esc = |t: &str| {
        let body = t.replace('\\', "\\e").replace('-', "\\-");
        if body.starts_with(['.', '\'']) {
            format!("\\&{body}")
        } else {
            body
        }
    };
    let mut page = format!(
        ".TH lightsnap.toml 5 \"\" \"lightsnap {}\"\n\
         .SH NAME\nlightsnap.toml \\- the configuration of lightsnap(8)\n\
         .SH SYNOPSIS\n/etc/lightsnap/config.toml, /usr/lib/lightsnap/config.d/*.toml, \
         /etc/lightsnap/config.d/*.toml, /run/lightsnap/config.d/*.toml\n\
         .SH DESCRIPTION\nTOML fragments, read in this order, later keys winning: \
         /usr/lib/lightsnap/config.d/ (vendor), /etc/lightsnap/config.toml, \
         /etc/lightsnap/config.d/ (admin), /run/lightsnap/config.d/ (runtime), each directory \
         in name order. \\fB\\-\\-config\\fR FILE reads FILE alone instead. Every fragment must \
         be owned by root and not writable by group or others. Unknown keys and bad values are \
         errors naming the file, line and key. \\fBlightsnap config\\fR shows each setting in \
         force and the file it came from; \\fBlightsnap config check\\fR validates the files \
         without credentials or network (exit 2 when they are not valid). Command\\-line \
         options override the files.\n\
         .SH KEYS\n",
        esc(version)
    );
    for k in KEYS {
        let default = if k.default.is_empty() {
            "none".to_string()
        } else {
            esc(k.default)
        };
        page.push_str(&format!(
            ".TP\n\\fB{}\\fR (\\fI{}\\fR, default: {})\n{}\n",
            esc(k.name),
            esc(k.kind),
            default,
            esc(k.doc)
        ));
    }
    page.push_str(
        ".SH EXAMPLE\n.nf\nfreeze_timeout = \"10s\"\nping_url = \"https://hc\\-ping.com/UUID\"\n\n\
         [retention]\nkeep_daily = 7\nkeep_weekly = 4\n\n[[snapshot]]\npath = \"/data\"\n.fi\n\
         .SH \"SEE ALSO\"\n\\fBlightsnap\\fR(8), \\fBlightsnap\\-config\\fR(8)\n",
    );
    page
}

/// The users' manual's reference of the keys (docs/src/configuration.md, between its
/// markers), in Markdown: every key of [`KEYS`] with its type, default and meaning, as the man
/// page has them.
pub fn reference_markdown() -> String {
    // A table cell ends at a bare `|`.
    let cell = |t: &str| t.replace('|', "\\|");
    let mut out = String::from("| key | type | default | meaning |\n| --- | --- | --- | --- |\n");
    for k in KEYS {
        let default = if k.default.is_empty() {
            "none".to_string()
        } else {
            format!("`{}`", k.default)
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            k.name,
            cell(k.kind),
            cell(&default),
            cell(k.doc)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The manual's key reference is [`KEYS`]: `UPDATE_DOCS=1 cargo test --lib config::keys`
    /// rewrites it; the prose around the markers is the page's own.
    #[test]
    fn the_manuals_key_reference_is_written_from_keys() {
        crate::testing::generated_doc(
            "docs/src/configuration.md",
            Some((
                "<!-- generated from src/config/keys.rs (KEYS): do not edit -->\n",
                "<!-- end of the generated reference -->\n",
            )),
            &reference_markdown(),
        );
        let page = reference_markdown();
        for k in KEYS {
            assert!(page.contains(&format!("| `{}` |", k.name)), "{}", k.name);
        }
    }

    /// The keys documented here are exactly those the fragment parser accepts: its "unknown
    /// field" error lists them.
    #[test]
    fn every_key_the_parser_accepts_is_documented() {
        let err = toml::from_str::<super::super::fragments::Fragment>("no_such_key = 1")
            .unwrap_err()
            .to_string();
        let accepted: Vec<&str> = err
            .split("expected one of ")
            .nth(1)
            .expect("serde's list of fields")
            .split(',')
            .map(|f| {
                f.trim()
                    .trim_matches(|c: char| c == '`' || c.is_whitespace())
            })
            .map(|f| f.trim_end_matches('`').trim_end())
            .filter(|f| !f.is_empty())
            .collect();
        let mut documented = top_level();
        documented.sort();
        let mut accepted: Vec<&str> = accepted
            .iter()
            .map(|f| f.split_whitespace().next().unwrap_or(f))
            .collect();
        accepted.sort();
        assert_eq!(documented, accepted);
        // The same for [retention].
        let err = toml::from_str::<super::super::fragments::Fragment>("[retention]\nnope = 1")
            .unwrap_err()
            .to_string();
        for k in KEYS
            .iter()
            .filter_map(|k| k.name.strip_prefix("retention."))
        {
            assert!(err.contains(&format!("`{k}`")), "retention.{k}: {err}");
        }
    }

    #[test]
    fn origins_follow_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.toml");
        let b = dir.path().join("b.toml");
        std::fs::write(
            &a,
            "freeze_timeout = \"5s\"\nexclude = [\"/x\"]\n[tags]\nenv = \"a\"\n",
        )
        .unwrap();
        std::fs::write(&b, "freeze_timeout = \"7s\"\nexclude = [\"/y\"]\n").unwrap();
        let o = origins(&[a.clone(), b.clone()]).unwrap();
        assert_eq!(o["freeze_timeout"], vec![b.clone()]);
        assert_eq!(o["exclude"], vec![a.clone(), b.clone()]);
        assert_eq!(o["tags.env"], vec![a.clone()]);
    }

    #[test]
    fn the_man_page_lists_every_key() {
        let page = man_page("0.1.0");
        assert!(page.starts_with(".TH lightsnap.toml 5 "));
        for k in KEYS {
            let name = k.name.replace('-', "\\-");
            assert!(page.contains(&format!("\\fB{name}\\fR")), "{}", k.name);
        }
    }
}
