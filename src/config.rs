//! Configuration: TOML fragments → one merged input → validated settings.
//!
//! Fragments are read in this order, later ones overriding earlier ones key by key:
//! `/usr/lib/lightsnap/config.d/*.toml` (vendor), `/etc/lightsnap/config.toml`,
//! `/etc/lightsnap/config.d/*.toml` (admin), `/run/lightsnap/config.d/*.toml` (runtime), each
//! directory in name order. A fragment must be owned by root and not writable by group or
//! others (lightsnap runs as root and freezes filesystems on its say-so); unknown keys and bad
//! values are errors naming the file and line. Command-line flags override the settings.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::cloud::validate;
use crate::exit_code::{ExitCode, Failure};

/// One fragment, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fragment {
    #[serde(default, deserialize_with = "checked::freeze_timeout")]
    freeze_timeout: Option<String>,
    #[serde(default, deserialize_with = "checked::template")]
    name_template: Option<String>,
    #[serde(default, deserialize_with = "checked::absolute_path")]
    hook_dir: Option<PathBuf>,
    #[serde(default, deserialize_with = "checked::positive_duration")]
    hook_timeout: Option<String>,
    expedite_freeze: Option<bool>,
    region: Option<String>,
    profile: Option<String>,
    #[serde(default, deserialize_with = "checked::tags")]
    tags: BTreeMap<String, String>,
    retention: Option<RetentionFragment>,
    #[serde(default)]
    snapshot: Vec<SnapshotFragment>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetentionFragment {
    keep: Option<u32>,
    #[serde(default, deserialize_with = "checked::duration")]
    older_than: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotFragment {
    #[serde(deserialize_with = "checked::required_absolute_path")]
    path: PathBuf,
    #[serde(default, deserialize_with = "checked::disk_name")]
    disk: Option<String>,
}

/// Retention: what `prune` (and the timer) keep.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retention {
    /// Keep at most this many of lightsnap's completed snapshots per disk.
    pub keep: Option<u32>,
    /// Delete lightsnap's completed snapshots older than this.
    pub older_than: Option<Duration>,
}

/// A path to snapshot (by the timer), and optionally the disk behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotEntry {
    /// The path.
    pub path: PathBuf,
    /// The Lightsail disk behind it, if given (else found by itself).
    pub disk: Option<String>,
}

/// The settings in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// How long writes may be paused.
    pub freeze_timeout: Duration,
    /// Snapshot name template.
    pub name_template: String,
    /// Where hooks live.
    pub hook_dir: PathBuf,
    /// How long one hook may run, per phase.
    pub hook_timeout: Duration,
    /// Expedite the kernel's RCU grace periods during the freeze calls.
    pub expedite_freeze: bool,
    /// AWS region override.
    pub region: Option<String>,
    /// AWS profile.
    pub profile: Option<String>,
    /// Tags added to every snapshot.
    pub tags: Vec<(String, String)>,
    /// Retention.
    pub retention: Retention,
    /// What the timer snapshots, and path → disk mappings.
    pub snapshots: Vec<SnapshotEntry>,
    /// The files the settings came from, in order.
    pub sources: Vec<PathBuf>,
}

/// The default name template.
pub const DEFAULT_NAME_TEMPLATE: &str = "{disk}-{utc:%Y%m%d-%H%M%S}";

/// Tag keys lightsnap sets itself (`lightsnap:consistency`, `lightsnap:host`,
/// `lightsnap:version`, `lightsnap:trigger`): refused from the configuration and `--tag`.
pub const RESERVED_TAG_PREFIX: &str = "lightsnap:";

/// Values checked while the TOML is read, so that a bad one is reported with its file, line
/// and column, as a misspelt key is.
mod checked {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use serde::de::{Deserializer, Error};
    use serde::Deserialize;

    use super::RESERVED_TAG_PREFIX;
    use crate::cloud::validate;

    fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
        humantime::parse_duration(text)
            .map_err(|e| format!("{text:?}: {e}: write a duration such as 500ms, 10s, 2m or 30d"))
    }

    pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        let text = String::deserialize(d)?;
        parse_duration(&text).map_err(D::Error::custom)?;
        Ok(Some(text))
    }

    pub fn positive_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        let text = String::deserialize(d)?;
        if parse_duration(&text).map_err(D::Error::custom)?.is_zero() {
            return Err(D::Error::custom(format!("{text:?}: must be more than 0")));
        }
        Ok(Some(text))
    }

    /// A duration within (0, [`validate::MAX_FREEZE_TIMEOUT`]].
    pub fn freeze_timeout<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        let text = String::deserialize(d)?;
        let timeout = parse_duration(&text).map_err(D::Error::custom)?;
        validate::freeze_timeout("freeze_timeout", timeout).map_err(D::Error::custom)?;
        Ok(Some(text))
    }

    pub fn template<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        let text = String::deserialize(d)?;
        super::check_template(&text).map_err(|e| D::Error::custom(format!("{e:#}")))?;
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

impl Default for Settings {
    fn default() -> Self {
        Self {
            freeze_timeout: Duration::from_secs(10),
            name_template: DEFAULT_NAME_TEMPLATE.to_string(),
            hook_dir: PathBuf::from("/etc/lightsnap/hooks.d"),
            hook_timeout: Duration::from_secs(60),
            expedite_freeze: false,
            region: None,
            profile: None,
            tags: Vec::new(),
            retention: Retention::default(),
            snapshots: Vec::new(),
            sources: Vec::new(),
        }
    }
}

impl Settings {
    /// The disk configured for a mount point or path, if any.
    pub fn disk_for(&self, paths: &[&Path]) -> Option<&str> {
        self.snapshots
            .iter()
            .find(|e| paths.contains(&e.path.as_path()))
            .and_then(|e| e.disk.as_deref())
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

/// Loads, merges and validates every fragment under `root`.
pub fn load(root: &Path) -> Result<Settings> {
    let mut settings = Settings {
        hook_dir: root.join("etc/lightsnap/hooks.d"),
        ..Settings::default()
    };
    let mut tags: BTreeMap<String, String> = BTreeMap::new();
    for path in fragment_paths(root)? {
        check_owner(&path)?;
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let fragment: Fragment = toml::from_str(&text).map_err(|e| {
            Failure::new(
                ExitCode::Usage,
                format!("{}: {}", path.display(), e.to_string().trim_end()),
            )
        })?;
        apply(&mut settings, &mut tags, fragment)
            .map_err(|e| Failure::new(ExitCode::Usage, format!("{}: {e:#}", path.display())))?;
        settings.sources.push(path);
    }
    settings.tags = tags.into_iter().collect();
    validate::tags(&settings.tags).map_err(|e| Failure::new(ExitCode::Usage, e.to_string()))?;
    Ok(settings)
}

fn apply(settings: &mut Settings, tags: &mut BTreeMap<String, String>, f: Fragment) -> Result<()> {
    if let Some(t) = f.freeze_timeout {
        settings.freeze_timeout = duration("freeze_timeout", &t)?;
        validate::freeze_timeout("freeze_timeout", settings.freeze_timeout)?;
    }
    if let Some(t) = f.name_template {
        check_template(&t)?;
        settings.name_template = t;
    }
    if let Some(d) = f.hook_dir {
        settings.hook_dir = d;
    }
    if let Some(e) = f.expedite_freeze {
        settings.expedite_freeze = e;
    }
    if let Some(t) = f.hook_timeout {
        settings.hook_timeout = duration("hook_timeout", &t)?;
    }
    if f.region.is_some() {
        settings.region = f.region;
    }
    if f.profile.is_some() {
        settings.profile = f.profile;
    }
    for (k, v) in f.tags {
        let (k, v) = validate::parse_tag(&format!("{k}={v}"))?;
        tags.insert(k, v);
    }
    if let Some(r) = f.retention {
        if r.keep.is_some() {
            settings.retention.keep = r.keep;
        }
        if let Some(o) = r.older_than {
            settings.retention.older_than = Some(duration("retention.older_than", &o)?);
        }
    }
    for s in f.snapshot {
        anyhow::ensure!(
            s.path.is_absolute(),
            "snapshot path {} must be absolute",
            s.path.display()
        );
        if let Some(d) = &s.disk {
            validate::name("disk name", d)?;
        }
        settings.snapshots.retain(|e| e.path != s.path);
        settings.snapshots.push(SnapshotEntry {
            path: s.path,
            disk: s.disk,
        });
    }
    Ok(())
}

fn duration(key: &str, text: &str) -> Result<Duration> {
    humantime::parse_duration(text).with_context(|| {
        format!("{key} = {text:?}: write a duration such as 500ms, 10s, 2m or 30d")
    })
}

/// Checks a name template renders to a valid name for a typical disk.
fn check_template(template: &str) -> Result<()> {
    let sample = render_name(template, "data-1", std::time::UNIX_EPOCH)?;
    validate::name("name_template result", &sample)?;
    Ok(())
}

/// Renders a name template: `{disk}` and `{utc:FORMAT}` with `%Y %m %d %H %M %S`.
pub fn render_name(template: &str, disk: &str, now: std::time::SystemTime) -> Result<String> {
    let stamp = humantime::format_rfc3339_seconds(now).to_string(); // 2026-11-24T19:30:00Z
    let field = |c: char| -> Option<&str> {
        Some(match c {
            'Y' => &stamp[0..4],
            'm' => &stamp[5..7],
            'd' => &stamp[8..10],
            'H' => &stamp[11..13],
            'M' => &stamp[14..16],
            'S' => &stamp[17..19],
            _ => return None,
        })
    };
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find('}')
            .map(|e| start + e)
            .with_context(|| format!("name_template {template:?}: unclosed '{{'"))?;
        let key = &rest[start + 1..end];
        if key == "disk" {
            out.push_str(disk);
        } else if let Some(fmt) = key.strip_prefix("utc:") {
            let mut chars = fmt.chars();
            while let Some(c) = chars.next() {
                if c == '%' {
                    let spec = chars.next().unwrap_or('%');
                    out.push_str(field(spec).with_context(|| {
                        format!(
                            "name_template {template:?}: %{spec} is not one of %Y %m %d %H %M %S"
                        )
                    })?);
                } else {
                    out.push(c);
                }
            }
        } else {
            anyhow::bail!("name_template {template:?}: unknown field {{{key}}}: use {{disk}} or {{utc:FORMAT}}");
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Refuses a fragment not owned by root or writable by group or others.
fn check_owner(path: &Path) -> Result<()> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if meta.uid() != 0 || meta.mode() & 0o022 != 0 {
        return Err(Failure::new(
            ExitCode::Permission,
            format!(
                "{}: refusing a configuration file not owned by root or writable by group/others (owner uid {}, mode {:o}); fix with: chown root:root {0} && chmod go-w {0}",
                path.display(),
                meta.uid(),
                meta.mode() & 0o7777
            ),
        )
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) -> PathBuf {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }

    fn root_only() -> bool {
        nix::unistd::Uid::effective().is_root()
    }

    #[test]
    fn templates_render() {
        let t = std::time::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        assert_eq!(
            render_name(DEFAULT_NAME_TEMPLATE, "data-1", t).unwrap(),
            "data-1-20261118-110640"
        );
        assert_eq!(render_name("x-{utc:%Y}", "d", t).unwrap(), "x-2026");
        assert!(render_name("{nope}", "d", t).is_err());
        assert!(render_name("{utc:%q}", "d", t).is_err());
        assert!(render_name("{disk", "d", t).is_err());
        assert!(
            check_template("{disk}.{utc:%Y}").is_err(),
            "'.' is not allowed in names"
        );
    }

    #[test]
    fn fragments_merge_in_order_and_later_wins() {
        if !root_only() {
            eprintln!("skipping: configuration files must be root-owned, and this is not root");
            return;
        }
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        write(
            r,
            "usr/lib/lightsnap/config.d/10-vendor.toml",
            "freeze_timeout = \"5s\"\n[tags]\nowner = \"vendor\"\n",
        );
        write(r, "etc/lightsnap/config.toml", "[tags]\nowner = \"admin\"\nenv = \"prod\"\n[[snapshot]]\npath = \"/data\"\ndisk = \"data-1\"\n");
        write(r, "run/lightsnap/config.d/50.toml", "freeze_timeout = \"2s\"\n[retention]\nkeep = 3\n[[snapshot]]\npath = \"/data\"\ndisk = \"data-2\"\n");
        let s = load(r).unwrap();
        assert_eq!(s.freeze_timeout, Duration::from_secs(2));
        assert_eq!(
            s.tags,
            vec![
                ("env".into(), "prod".into()),
                ("owner".into(), "admin".into())
            ]
        );
        assert_eq!(s.retention.keep, Some(3));
        assert_eq!(s.snapshots.len(), 1);
        assert_eq!(s.disk_for(&[Path::new("/data")]), Some("data-2"));
        assert_eq!(s.sources.len(), 3);
    }

    #[test]
    fn bad_fragments_name_the_file_and_line() {
        if !root_only() {
            eprintln!("skipping: configuration files must be root-owned, and this is not root");
            return;
        }
        let root = tempfile::tempdir().unwrap();
        let p = write(
            root.path(),
            "etc/lightsnap/config.toml",
            "freeze_timeout = \"5s\"\nfreez_timeout = \"1s\"\n",
        );
        let err = load(root.path()).unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains(&p.display().to_string()), "{text}");
        assert!(text.contains("line 2"), "{text}");
        assert_eq!(ExitCode::of(&err), ExitCode::Usage);

        std::fs::write(&p, "freeze_timeout = \"soon\"\n").unwrap();
        let text = format!("{:#}", load(root.path()).unwrap_err());
        assert!(text.contains("freeze_timeout"), "{text}");

        std::fs::write(&p, "[tags]\n\"bad;key\" = \"v\"\n").unwrap();
        assert!(load(root.path()).is_err());
    }

    #[test]
    fn bad_values_name_their_line_too() {
        for (text, line) in [
            ("\nfreeze_timeout = \"soon\"\n", 2),
            ("hook_timeout = \"0s\"\n", 1),
            ("name_template = \"{disk}.x\"\n", 1),
            ("hook_dir = \"hooks.d\"\n", 1),
            ("[retention]\nolder_than = \"1 fortnight\"\n", 2),
            ("[tags]\nok = \"1\"\n\"a;b\" = \"v\"\n", 3),
            ("[tags]\nok = \"a;b\"\n", 2),
            ("[tags]\n\"lightsnap:host\" = \"h\"\n", 2),
            ("[[snapshot]]\npath = \"data\"\n", 2),
            ("[[snapshot]]\npath = \"/data\"\ndisk = \"a.b\"\n", 3),
        ] {
            let err = toml::from_str::<Fragment>(text).unwrap_err().to_string();
            assert!(err.contains(&format!("line {line}")), "{text:?}: {err}");
        }
        let ok: Fragment =
            toml::from_str("freeze_timeout = \"2s\"\n[tags]\nenv = \"prod\"\n").unwrap();
        assert_eq!(ok.freeze_timeout.as_deref(), Some("2s"));
        assert_eq!(ok.tags["env"], "prod");
    }

    #[test]
    fn writable_fragments_are_refused() {
        if !root_only() {
            eprintln!("skipping: configuration files must be root-owned, and this is not root");
            return;
        }
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let p = write(root.path(), "etc/lightsnap/config.toml", "");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666)).unwrap();
        let err = load(root.path()).unwrap_err();
        assert_eq!(ExitCode::of(&err), ExitCode::Permission);
        assert!(err.to_string().contains("chmod go-w"), "{err}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(load(root.path()).is_ok());
    }

    /// What the packages install as `/etc/lightsnap/config.toml`.
    const PACKAGED: &str = include_str!("../packaging/config.toml");

    fn write_root_only(root: &Path, rel: &str, text: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = write(root, rel, text);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        p
    }

    #[test]
    fn the_packaged_config_gives_the_defaults() {
        if !root_only() {
            eprintln!("skipping: configuration files must be root-owned, and this is not root");
            return;
        }
        let root = tempfile::tempdir().unwrap();
        let p = write_root_only(root.path(), "etc/lightsnap/config.toml", PACKAGED);
        let s = load(root.path()).unwrap();
        assert_eq!(s.sources, vec![p], "the packaged file is read");
        assert_eq!(
            Settings {
                hook_dir: Settings::default().hook_dir,
                sources: Vec::new(),
                ..s
            },
            Settings::default(),
            "everything in the packaged file is commented out"
        );
    }

    #[test]
    fn the_packaged_config_examples_are_valid_and_show_the_defaults() {
        if !root_only() {
            eprintln!("skipping: configuration files must be root-owned, and this is not root");
            return;
        }
        // Uncomment every setting (`#key`, `#[table]`), leaving the prose (`# ...`) alone.
        let uncommented: String = PACKAGED
            .lines()
            .map(|l| match l.strip_prefix('#') {
                Some(rest) if !rest.is_empty() && !rest.starts_with(' ') => rest,
                _ => l,
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let root = tempfile::tempdir().unwrap();
        write_root_only(root.path(), "etc/lightsnap/config.toml", &uncommented);
        let s = load(root.path()).unwrap();
        let d = Settings::default();
        assert_eq!(s.freeze_timeout, d.freeze_timeout);
        assert_eq!(s.name_template, d.name_template);
        assert_eq!(s.hook_dir, d.hook_dir);
        assert_eq!(s.hook_timeout, d.hook_timeout);
        assert_eq!(s.tags.len(), 2);
        assert_eq!(s.retention.keep, Some(7));
        assert_eq!(
            s.retention.older_than,
            Some(Duration::from_secs(30 * 86400))
        );
        assert_eq!(s.snapshots.len(), 2);
        assert_eq!(s.disk_for(&[Path::new("/data")]), Some("data-1"));
    }

    #[test]
    fn no_files_means_defaults() {
        let root = tempfile::tempdir().unwrap();
        let s = load(root.path()).unwrap();
        assert_eq!(s.hook_dir, root.path().join("etc/lightsnap/hooks.d"));
        assert_eq!(
            Settings {
                hook_dir: Settings::default().hook_dir,
                ..s
            },
            Settings::default()
        );
    }
}
