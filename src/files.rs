//! Files lightsnap writes itself as root (the recovery record, locks, state files, metrics):
//! whole or not at all, so a reader never sees half of one, and never through a link someone
//! else planted.
//!
//! A directory lightsnap writes in may be writable by another user (node_exporter's textfile
//! directory is often its exporter's): every file is opened without following a symbolic
//! link at its last component (`O_NOFOLLOW`), a new file is made under a random name that must
//! not exist yet (`O_EXCL`, through `tempfile`) and renamed over the old one (a rename
//! replaces a planted link, never writes through it). A directory others may write in without
//! the sticky bit is refused outright: anyone could swap a file in it between two calls.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, Result};

/// A directory lightsnap refuses to write in: others may write in it and it has no sticky
/// bit, so any user could rename, remove or replace what root writes there.
#[derive(Debug, thiserror::Error)]
#[error("{}: refusing to write in a directory anyone may write in without the sticky bit (mode {mode:o}): any user could replace what lightsnap writes there as root; use a directory only root (or one service user) may write in, or `chmod o-w {0}` (or `chmod +t {0}`)", path.display())]
pub struct OpenDirectory {
    /// The directory.
    pub path: std::path::PathBuf,
    /// Its permission bits.
    pub mode: u32,
}

/// Refuses `dir` if others may write in it without the sticky bit ([`OpenDirectory`]).
pub fn check_dir(dir: &Path) -> Result<()> {
    let meta = std::fs::metadata(dir).with_context(|| format!("reading {}", dir.display()))?;
    let mode = meta.mode() & 0o7777;
    if meta.is_dir() && mode & 0o002 != 0 && mode & 0o1000 == 0 {
        return Err(OpenDirectory {
            path: dir.to_path_buf(),
            mode,
        }
        .into());
    }
    Ok(())
}

/// Opens (creating it if missing, never truncating) a file to lock, without following a link
/// at its name: a lock file in a directory others can write in must not be a way to make root
/// open (and, for a file created, make) whatever a link points at.
pub fn open_lock_file(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Writes `contents` to `path` atomically: a new file of a random name beside it (made with
/// `O_EXCL`, so never a link or a file someone put there), synced, renamed over `path`, the
/// directory synced. Refuses a directory others may write in without the sticky bit.
pub fn write_atomically(path: &Path, contents: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    check_dir(dir)?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let written = (|| -> std::io::Result<()> {
        let mut tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".tmp")
            .permissions(std::fs::Permissions::from_mode(0o644))
            .tempfile_in(dir)?;
        tmp.write_all(contents)?;
        tmp.as_file().sync_all()?;
        tmp.persist(path).map_err(|e| e.error)?;
        File::open(dir)?.sync_all()
    })();
    written.with_context(|| format!("writing {}", path.display()))
}

/// Makes `dir` (and its missing parents) readable by root alone (0700), or makes an existing
/// one so: where lightsnap mounts a restored copy of a disk, which may hold files other users
/// must not read.
pub fn private_dir(dir: &Path) -> Result<()> {
    create_private(dir)?;
    let meta =
        std::fs::symlink_metadata(dir).with_context(|| format!("reading {}", dir.display()))?;
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("making {} private (0700)", dir.display()))?;
    }
    Ok(())
}

/// Makes `dir` and its missing parents, each readable by root alone (0700); leaves an existing
/// one as it is (a mount point may already have something mounted on it).
pub fn create_private(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn a_link_planted_at_the_temporary_name_is_not_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let path = dir.path().join("state.json");
        // The name the temporary file had before (predictable: the name and our pid), and
        // the final name itself: both links to the victim.
        let old_tmp = dir
            .path()
            .join(format!(".state.json.{}.tmp", std::process::id()));
        symlink(&victim, &old_tmp).unwrap();
        symlink(&victim, &path).unwrap();
        write_atomically(&path, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        // The link at the final name was replaced by the file, not followed.
        assert!(!std::fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        // Nothing else left beside it but the planted link.
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
    }

    #[test]
    fn a_directory_others_may_write_in_without_the_sticky_bit_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = write_atomically(&open.join("m.prom"), b"x").unwrap_err();
        assert!(e.downcast_ref::<OpenDirectory>().is_some(), "{e:#}");
        assert!(format!("{e:#}").contains("sticky"), "{e:#}");
        assert!(!open.join("m.prom").exists());
        // With the sticky bit (as /tmp), or group-writable only, it is written.
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
        write_atomically(&open.join("m.prom"), b"x").unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o775)).unwrap();
        write_atomically(&open.join("m.prom"), b"y").unwrap();
    }

    #[test]
    fn a_lock_file_that_is_a_link_is_not_opened() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let lock = dir.path().join(".lock");
        symlink(&victim, &lock).unwrap();
        assert!(open_lock_file(&lock).is_err());
        // A dangling link does not make a file where it points either.
        let elsewhere = dir.path().join("made-by-root");
        let dangling = dir.path().join("dangling.lock");
        symlink(&elsewhere, &dangling).unwrap();
        assert!(open_lock_file(&dangling).is_err());
        assert!(!elsewhere.exists());
    }

    #[test]
    fn a_private_dir_is_made_0700_and_an_open_one_closed() {
        let dir = tempfile::tempdir().unwrap();
        let mounts = dir.path().join("run/verify");
        private_dir(&mounts).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o7777;
        assert_eq!(mode(&mounts), 0o700);
        std::fs::set_permissions(&mounts, std::fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&mounts).unwrap();
        assert_eq!(mode(&mounts), 0o700);
    }
}
