//! The mount table: parsing `/proc/self/mountinfo` and resolving a path to the mount it is on.
//!
//! mountinfo (proc(5)) rather than `/proc/mounts` because it carries what the rest of lightsnap
//! needs and mounts lacks: the device number (to freeze a filesystem mounted twice only once),
//! the per-mount and per-superblock options separately (to remount exactly as before, and to
//! tell a read-only superblock from a read-only bind mount), and the parent mount.
//!
//! Parsed here, not with the `procfs` crate that `holders` walks `/proc` with: its `MountInfo`
//! keeps both option lists in hash maps, losing the order a remount must give back, reads a
//! source of `none` as no source at all, and leaves the kernel's octal escapes (`\040`) in
//! paths.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// One line of mountinfo.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Mount {
    /// Unique id of the mount.
    pub id: u32,
    /// Id of the parent mount.
    pub parent_id: u32,
    /// `st_dev` of files on this filesystem, as (major, minor).
    pub dev: (u32, u32),
    /// The directory of the filesystem that forms the root of this mount (not `/` for bind
    /// mounts and btrfs subvolumes).
    pub root: PathBuf,
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// Per-mount options (`rw,nosuid,relatime`).
    pub mount_options: String,
    /// Filesystem type (`ext4`, `fuseblk`, `fuse.sshfs`).
    pub fstype: String,
    /// Mount source: a device path for block filesystems, anything at all for others.
    pub source: String,
    /// Per-superblock options (`rw,errors=remount-ro`).
    pub super_options: String,
}

impl Mount {
    /// Whether the superblock is read-only: then nothing can write to the filesystem through
    /// any of its mounts, and it needs no freeze. A read-only *bind mount* of a writable
    /// filesystem does not count: other mounts may still write.
    pub fn is_read_only(&self) -> bool {
        has_option(&self.super_options, "ro")
    }

    /// The block device behind the mount, if its source is one (checked with `stat`, so a
    /// source that merely looks like a path does not count).
    pub fn block_device(&self) -> Option<PathBuf> {
        let source = Path::new(&self.source);
        if !source.is_absolute() {
            return None;
        }
        let meta = fs::metadata(source).ok()?;
        meta.file_type().is_block_device().then(|| {
            source
                .canonicalize()
                .unwrap_or_else(|_| source.to_path_buf())
        })
    }

    /// Whether the filesystem is a FUSE filesystem (its remount needs the mount helper).
    pub fn is_fuse(&self) -> bool {
        self.fstype == "fuseblk" || self.fstype == "fuse" || self.fstype.starts_with("fuse.")
    }
}

/// Whether a comma-separated option list contains `name` exactly.
pub fn has_option(options: &str, name: &str) -> bool {
    options.split(',').any(|o| o == name)
}

/// Parses the whole of a mountinfo file.
pub fn parse(text: &str) -> Result<Vec<Mount>> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| parse_line(l).with_context(|| format!("mountinfo line {}: {l:?}", n + 1)))
        .collect()
}

/// Reads and parses `/proc/self/mountinfo`.
pub fn read() -> Result<Vec<Mount>> {
    let path = "/proc/self/mountinfo";
    let text = fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    parse(&text)
}

fn parse_line(line: &str) -> Result<Mount> {
    let mut fields = line.split(' ');
    let mut next = |what: &str| {
        fields
            .next()
            .with_context(|| format!("missing field {what}"))
    };
    let id = next("mount id")?.parse().context("bad mount id")?;
    let parent_id = next("parent id")?.parse().context("bad parent id")?;
    let dev = next("major:minor")?;
    let (major, minor) = dev.split_once(':').context("bad major:minor")?;
    let dev = (
        major.parse().context("bad major")?,
        minor.parse().context("bad minor")?,
    );
    let root = PathBuf::from(unescape(next("root")?));
    let mount_point = PathBuf::from(unescape(next("mount point")?));
    // The kernel shows only mounts under the reader's root, each as an absolute path.
    anyhow::ensure!(
        mount_point.is_absolute(),
        "mount point {mount_point:?} is not an absolute path"
    );
    let mount_options = next("mount options")?.to_string();
    // Optional fields (shared:N, master:N, ...) up to the lone "-".
    loop {
        if next("separator")? == "-" {
            break;
        }
    }
    let fstype = unescape(next("fstype")?);
    let source = unescape(next("source")?);
    let super_options = next("super options")?.to_string();
    Ok(Mount {
        id,
        parent_id,
        dev,
        root,
        mount_point,
        mount_options,
        fstype,
        source,
        super_options,
    })
}

/// Undoes the kernel's octal escaping of space, tab, newline and backslash (`\040` ...).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)))
            .map(|d| d.iter().fold(0u32, |v, b| v * 8 + u32::from(b - b'0')))
            .and_then(|v| u8::try_from(v).ok());
        match octal {
            Some(v) => {
                out.push(v);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Where a path lives: the mount it is on and the path itself with symlinks resolved.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The path as given.
    pub given: PathBuf,
    /// The path with symlinks followed.
    pub canonical: PathBuf,
    /// The mount the path is on (the last one mounted over that point, as the kernel sees it).
    pub mount: Mount,
}

/// The mount `path` is on, among `mounts` (in mountinfo order): the longest mount point that
/// is a prefix of the canonical path, the last such line winning, since a later mount on the
/// same point hides the earlier one. `path` must exist.
pub fn resolve(path: &Path, mounts: &[Mount]) -> Result<Resolved> {
    let canonical = path
        .canonicalize()
        .with_context(|| format!("{}: no such file or directory", path.display()))?;
    let mount = find_mount(&canonical, mounts)
        .with_context(|| format!("{}: no mount found for it in mountinfo", path.display()))?;
    // Cross-check with the kernel: the device of the path must be the device of the mount.
    // btrfs subvolumes report their own anonymous device, so only compare where the mount
    // table agrees with itself about the root.
    if let Ok(meta) = fs::metadata(&canonical) {
        let dev = (
            nix::sys::stat::major(meta.dev()) as u32,
            nix::sys::stat::minor(meta.dev()) as u32,
        );
        if dev != mount.dev && mount.fstype != "btrfs" {
            anyhow::bail!(
                "{}: the kernel says it is on device {}:{}, but the mount table's best match is {} on {}:{}; refusing to guess",
                path.display(),
                dev.0,
                dev.1,
                mount.mount_point.display(),
                mount.dev.0,
                mount.dev.1
            );
        }
    }
    Ok(Resolved {
        given: path.to_path_buf(),
        canonical,
        mount: mount.clone(),
    })
}

/// The mount a canonical path is on, without touching the filesystem.
pub fn find_mount<'a>(canonical: &Path, mounts: &'a [Mount]) -> Option<&'a Mount> {
    let mut best: Option<&Mount> = None;
    for m in mounts {
        if canonical.starts_with(&m.mount_point) {
            let better = match best {
                None => true,
                Some(b) => m.mount_point.components().count() >= b.mount_point.components().count(),
            };
            if better {
                best = Some(m);
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,errors=remount-ro
23 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
30 22 0:25 / /tmp rw,nosuid,nodev shared:14 - tmpfs tmpfs rw,size=1024k
40 22 7:3 / /data rw,noatime shared:20 - xfs /dev/loop3 rw,attr2,inode64,logbufs=8,logbsize=32k,noquota
41 40 7:4 / /data/logs rw,relatime - ext4 /dev/loop4 rw
42 22 7:3 /sub /srv/bind ro,relatime shared:20 - xfs /dev/loop3 rw,attr2
43 22 7:5 / /mnt/with\\040space rw master:3 - fuseblk /dev/loop5 rw,user_id=0,group_id=0,allow_other,blksize=4096
44 22 7:6 / /ro ro,relatime - ext4 /dev/loop6 ro
45 40 7:7 / /data rw - ext4 /dev/loop7 rw
";

    #[test]
    fn parses_every_field() {
        let mounts = parse(SAMPLE).unwrap();
        assert_eq!(mounts.len(), 9);
        let data = &mounts[3];
        assert_eq!(data.id, 40);
        assert_eq!(data.parent_id, 22);
        assert_eq!(data.dev, (7, 3));
        assert_eq!(data.root, Path::new("/"));
        assert_eq!(data.mount_point, Path::new("/data"));
        assert_eq!(data.mount_options, "rw,noatime");
        assert_eq!(data.fstype, "xfs");
        assert_eq!(data.source, "/dev/loop3");
        assert!(data.super_options.starts_with("rw,attr2"));
        assert_eq!(mounts[5].root, Path::new("/sub"));
    }

    #[test]
    fn unescapes_octal_and_keeps_optional_fields_out() {
        let mounts = parse(SAMPLE).unwrap();
        assert_eq!(mounts[6].mount_point, Path::new("/mnt/with space"));
        assert_eq!(mounts[6].fstype, "fuseblk");
        assert!(mounts[6].is_fuse());
        assert_eq!(unescape(r"a\134b\011c"), "a\\b\tc");
        // A backslash not followed by three octal digits stays as it is.
        assert_eq!(unescape(r"a\9b\"), r"a\9b\");
    }

    #[test]
    fn read_only_means_the_superblock() {
        let mounts = parse(SAMPLE).unwrap();
        assert!(mounts[7].is_read_only());
        // A read-only bind mount of a writable filesystem still needs freezing.
        assert!(!mounts[5].is_read_only());
        assert!(!mounts[3].is_read_only());
    }

    #[test]
    fn longest_prefix_wins_and_later_mounts_hide_earlier_ones() {
        let mounts = parse(SAMPLE).unwrap();
        let on = |p: &str| find_mount(Path::new(p), &mounts).unwrap().id;
        assert_eq!(on("/etc/passwd"), 22);
        assert_eq!(on("/data/logs/x"), 41);
        assert_eq!(on("/data/logsx"), 45, "components, not string prefixes");
        assert_eq!(on("/data"), 45, "mount 45 is over mount 40");
        assert_eq!(on("/"), 22);
    }

    #[test]
    fn malformed_lines_name_the_line() {
        let err = parse("1 2 3:4 / /x rw\n").unwrap_err();
        assert!(format!("{err:#}").contains("mountinfo line 1"), "{err:#}");
        assert!(parse("a 2 3:4 / /x rw - ext4 /dev/x rw\n").is_err());
    }

    /// Found by `scripts/fuzz` (target `mountinfo`): empty and relative mount points parsed,
    /// and a relative one could never be found by `find_mount` (paths are canonical).
    #[test]
    fn mount_points_must_be_absolute() {
        let err = parse("2 1 2:0    -   ").unwrap_err();
        assert!(
            format!("{err:#}").contains("not an absolute path"),
            "{err:#}"
        );
        assert!(
            parse("43 22 7:5 / vart/with\\040space rw master:3 - fuseblk /sys/loop5 rw\n").is_err()
        );
    }

    /// Why this module parses mountinfo itself (see its header): where the `procfs` crate's
    /// parser differs from what lightsnap needs. Should a later procfs agree, use it.
    #[test]
    fn procfs_mountinfo_is_not_enough_for_a_remount() {
        let line = "43 22 7:5 / /mnt/with\\040space rw,noatime - tmpfs none rw,size=1024k,mode=755";
        let theirs = procfs::process::MountInfo::from_line(line).unwrap();
        let ours = &parse(line).unwrap()[0];
        assert_eq!(ours.mount_point, Path::new("/mnt/with space"));
        assert_eq!(theirs.mount_point, Path::new("/mnt/with\\040space"));
        assert_eq!(ours.source, "none");
        assert_eq!(theirs.mount_source, None);
        assert_eq!(ours.super_options, "rw,size=1024k,mode=755");
        let _: &std::collections::HashMap<String, Option<String>> = &theirs.super_options;
    }

    #[test]
    fn the_live_table_parses_and_has_a_root() {
        let mounts = read().unwrap();
        assert!(mounts.iter().any(|m| m.mount_point == Path::new("/")));
    }
}
