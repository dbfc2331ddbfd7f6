//! The raw TOML fragments, as written: where they are, who may write them, and the types
//! they are read into, with each value checked as it is read so that an error names its file,
//! line and column.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

use super::ConfigError;

/// One fragment, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Fragment {
    #[serde(default, deserialize_with = "checked::freeze_timeout")]
    pub(super) freeze_timeout: Option<String>,
    #[serde(default, deserialize_with = "checked::template")]
    pub(super) name_template: Option<String>,
    #[serde(default, deserialize_with = "checked::absolute_path")]
    pub(super) hook_dir: Option<PathBuf>,
    #[serde(default, deserialize_with = "checked::positive_duration")]
    pub(super) hook_timeout: Option<String>,
    pub(super) expedite_freeze: Option<bool>,
    pub(super) region: Option<String>,
    pub(super) profile: Option<String>,
    #[serde(default, deserialize_with = "checked::tags")]
    pub(super) tags: BTreeMap<String, String>,
    pub(super) retention: Option<RetentionFragment>,
    #[serde(default)]
    pub(super) snapshot: Vec<SnapshotFragment>,
    #[serde(default, deserialize_with = "checked::globs")]
    pub(super) exclude: Vec<String>,
    #[serde(default, deserialize_with = "checked::absolute_path")]
    pub(super) state_dir: Option<PathBuf>,
    #[serde(default, deserialize_with = "checked::metrics_file")]
    pub(super) metrics_file: Option<PathBuf>,
    #[serde(default, deserialize_with = "checked::ping_url")]
    pub(super) ping_url: Option<String>,
    #[serde(default, deserialize_with = "checked::verify_every")]
    pub(super) verify_every: Option<u32>,
    #[serde(default, deserialize_with = "checked::absolute_path")]
    pub(super) verify_hook_dir: Option<PathBuf>,
    #[serde(default, deserialize_with = "checked::region")]
    pub(super) copy_to_region: Option<String>,
    pub(super) run: Option<RunFragment>,
}

/// `[run]`: what bounds a `lightsnap run` as a whole.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RunFragment {
    #[serde(default, deserialize_with = "checked::run_budget")]
    pub(super) budget: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RetentionFragment {
    pub(super) keep: Option<u32>,
    pub(super) keep_last: Option<u32>,
    pub(super) keep_daily: Option<u32>,
    pub(super) keep_weekly: Option<u32>,
    pub(super) keep_monthly: Option<u32>,
    pub(super) keep_yearly: Option<u32>,
    #[serde(default, deserialize_with = "checked::duration")]
    pub(super) older_than: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SnapshotFragment {
    #[serde(deserialize_with = "checked::required_absolute_path")]
    pub(super) path: PathBuf,
    #[serde(default, deserialize_with = "checked::disk_name")]
    pub(super) disk: Option<String>,
}

/// Values checked while the TOML is read, so that a bad one is reported with its file, line
/// and column, as a misspelt key is.
mod checked {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use serde::de::{Deserializer, Error};
    use serde::Deserialize;

    use crate::cloud::validate;
    use crate::config::{template, RESERVED_TAG_PREFIX};

    fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
        humantime::parse_duration(text)
            .map_err(|e| format!("{text:?}: {e}: write a duration such as 500ms, 10s, 2m or 30d"))
    }

    pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        let text = String::deserialize(d)?;
        parse_duration(&text).map_err(D::Error::custom)?;
        Ok(Some(text))
    }

    /// Mount point patterns (`exclude`), each a valid glob.
    pub fn globs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        let all = Vec::<String>::deserialize(d)?;
        for g in &all {
            crate::config::exclude_pattern(g).map_err(|e| D::Error::custom(format!("{e:#}")))?;
        }
        Ok(all)
    }

    /// A duration within (0, [`validate::MAX_FREEZE_TIMEOUT`]].
    pub fn freeze_timeout<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        let text = String::deserialize(d)?;
        let timeout = parse_duration(&text).map_err(D::Error::custom)?;
        validate::freeze_timeout("freeze_timeout", timeout).map_err(D::Error::custom)?;
        Ok(Some(text))
    }

    pub fn positive_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        let text = String::deserialize(d)?;
        if parse_duration(&text).map_err(D::Error::custom)?.is_zero() {
            return Err(D::Error::custom(format!("{text:?}: must be more than 0")));
        }
        Ok(Some(text))
    }

    pub fn template<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        let text = String::deserialize(d)?;
        template::check(&text).map_err(|e| D::Error::custom(format!("{e:#}")))?;
        Ok(Some(text))
    }

    pub fn required_absolute_path<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
        let path = PathBuf::deserialize(d)?;
        if !path.is_absolute() {
            return Err(D::Error::custom(format!(
                "{} must be an absolute path",
                path.display()
            )));
        }
        Ok(path)
    }

    pub fn absolute_path<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
        required_absolute_path(d).map(Some)
    }

    /// node_exporter's textfile collector reads `*.prom` files only.
    pub fn metrics_file<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
        let path = required_absolute_path(d)?;
        if path.extension().is_none_or(|x| x != "prom") {
            return Err(D::Error::custom(format!(
                "{} must end in .prom (node_exporter's textfile collector reads only those)",
                path.display()
            )));
        }
        Ok(Some(path))
    }

    /// An http:// or https:// URL, without a trailing slash (`/start`, `/fail` are added).
    pub fn ping_url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        let url = String::deserialize(d)?;
        crate::monitor::ping::check_url(&url).map_err(|e| D::Error::custom(format!("{e:#}")))?;
        Ok(Some(url.trim_end_matches('/').to_string()))
    }

    /// `[run] budget`: more than 0, at most a day (the timer starts a run every day).
    pub fn run_budget<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        let text = String::deserialize(d)?;
        let budget = parse_duration(&text).map_err(D::Error::custom)?;
        crate::budget::check_budget(budget).map_err(D::Error::custom)?;
        Ok(Some(text))
    }

    /// `verify_every`: at least 1 (every run).
    pub fn verify_every<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
        let n = u32::deserialize(d)?;
        if n == 0 {
            return Err(D::Error::custom(
                "verify_every = 0: give how many runs apart verifications are (1: every run), or leave it out",
            ));
        }
        Ok(Some(n))
    }

    /// An AWS region name.
    pub fn region<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        let region = String::deserialize(d)?;
        validate::region(&region).map_err(D::Error::custom)?;
        Ok(Some(region))
    }

    pub fn disk_name<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        let name = String::deserialize(d)?;
        validate::name("disk name", &name).map_err(D::Error::custom)?;
        Ok(Some(name))
    }

    /// A tag key, checked on its own so that an error points at it.
    #[derive(PartialEq, Eq, PartialOrd, Ord)]
    struct Key(String);

    impl<'de> Deserialize<'de> for Key {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let key = String::deserialize(d)?;
            validate::parse_tag(&format!("{key}=")).map_err(D::Error::custom)?;
            if key.starts_with(RESERVED_TAG_PREFIX) {
                return Err(D::Error::custom(format!(
                    "tag {key:?}: keys starting with {RESERVED_TAG_PREFIX} are lightsnap's own"
                )));
            }
            Ok(Key(key))
        }
    }

    /// A tag value, checked on its own so that an error points at it.
    struct Value(String);

    impl<'de> Deserialize<'de> for Value {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let value = String::deserialize(d)?;
            validate::parse_tag(&format!("k={value}")).map_err(D::Error::custom)?;
            Ok(Value(value))
        }
    }

    pub fn tags<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
        Ok(BTreeMap::<Key, Value>::deserialize(d)?
            .into_iter()
            .map(|(k, v)| (k.0, v.0))
            .collect())
    }
}

/// The fragment files under `root` (`/` in production), in the order they apply.
pub fn fragment_paths(root: &Path) -> Result<Vec<PathBuf>> {
    let at = |p: &str| root.join(p.trim_start_matches('/'));
    let dir = |d: PathBuf, files: &mut Vec<PathBuf>| -> Result<()> {
        let mut found: Vec<PathBuf> = match std::fs::read_dir(&d) {
            Ok(entries) => entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", d.display())),
        };
        found.sort();
        files.extend(found);
        Ok(())
    };
    let mut files = Vec::new();
    dir(at("/usr/lib/lightsnap/config.d"), &mut files)?;
    let main = at("/etc/lightsnap/config.toml");
    if main.exists() {
        files.push(main);
    }
    dir(at("/etc/lightsnap/config.d"), &mut files)?;
    dir(at("/run/lightsnap/config.d"), &mut files)?;
    Ok(files)
}

/// Reads and parses one fragment file, refusing it unless it (and every directory on the way
/// to it) is root's alone ([`crate::trust`]).
///
/// The packaged `/etc/lightsnap/config.toml` is readable by root alone (it may hold a ping URL,
/// a secret): a user other than root (a monitoring agent running `lightsnap check`) who may not
/// read a fragment is told so and goes on without it.
pub(super) fn read(path: &Path) -> Result<Fragment> {
    check_owner(path)?;
    let text = match std::fs::read_to_string(path) {
        Err(e)
            if e.kind() == std::io::ErrorKind::PermissionDenied
                && !nix::unistd::Uid::effective().is_root() =>
        {
            tracing::warn!(
                "{}: not readable by this user ({e}); going on without it (run as root to use it)",
                path.display()
            );
            return Ok(Fragment::default());
        }
        read => read.with_context(|| format!("reading {}", path.display()))?,
    };
    toml::from_str(&text).map_err(|e| {
        ConfigError::Invalid(format!("{}: {}", path.display(), e.to_string().trim_end())).into()
    })
}

/// Refuses a fragment that is not root's alone.
fn check_owner(path: &Path) -> Result<()> {
    crate::trust::check(path).map_err(|e| match e.downcast::<crate::trust::Untrusted>() {
        Ok(found) => ConfigError::Unsafe {
            path: path.to_path_buf(),
            found,
        }
        .into(),
        Err(e) => e,
    })
}
