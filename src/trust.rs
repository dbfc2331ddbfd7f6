//! Whether a file lightsnap acts on as root — a configuration fragment, a hook — is root's
//! alone: owned by root and writable by nobody else, and so is every directory on the way to
//! it. Otherwise whoever could change it (or swap it, through a directory they may write in)
//! could run code as root through lightsnap, or steer what it freezes.
//!
//! The directory a file is in must be root's alone. A directory further up may also be a
//! root-owned directory with the sticky bit (as `/tmp`): there nobody but root may rename or
//! remove what root owns. Both the path as given and the path its links lead to are checked.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// A file, or a directory on the way to it, that someone other than root could change.
#[derive(Debug, thiserror::Error)]
#[error("{} is {why} (owner uid {uid}, mode {mode:o}): anyone who can change it could run code as root through lightsnap; fix with: chown root:root {0} && chmod go-w {0}", path.display())]
pub struct Untrusted {
    /// The file or directory.
    pub path: PathBuf,
    /// Its owner.
    pub uid: u32,
    /// Its permission bits.
    pub mode: u32,
    /// What is wrong: `not owned by root`, or `writable by group or others`.
    pub why: &'static str,
}

/// Refuses the file `path` (an [`Untrusted`] in the error) unless it and every directory on
/// the way to it are root's alone (see the module's documentation).
pub fn check(path: &Path) -> Result<()> {
    check_with(path, 1)
}

/// Refuses the directory `dir` (an [`Untrusted`] in the error) unless it is root's alone, and
/// every directory above it too (or root's with the sticky bit).
pub fn check_dir(dir: &Path) -> Result<()> {
    check_with(dir, 0)
}

/// `strict`: how many directories above `path` must be root's alone (above those, root's
/// with the sticky bit will do).
fn check_with(path: &Path, strict: usize) -> Result<()> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    refuse_unless(path, &meta, false)?;
    let real =
        std::fs::canonicalize(path).with_context(|| format!("resolving {}", path.display()))?;
    let mut seen = HashSet::new();
    for of in [path, real.as_path()] {
        for (n, dir) in of.ancestors().skip(1).enumerate() {
            if dir.as_os_str().is_empty() || !seen.insert(dir.to_path_buf()) {
                continue;
            }
            let meta =
                std::fs::metadata(dir).with_context(|| format!("reading {}", dir.display()))?;
            // The file's own directory is held strictly; those above may be sticky.
            refuse_unless(dir, &meta, n >= strict)?;
        }
    }
    Ok(())
}

fn refuse_unless(path: &Path, meta: &std::fs::Metadata, sticky_will_do: bool) -> Result<()> {
    let mode = meta.mode() & 0o7777;
    let sticky = sticky_will_do && meta.is_dir() && mode & 0o1000 != 0;
    if meta.uid() != 0 || (mode & 0o022 != 0 && !sticky) {
        return Err(Untrusted {
            path: path.to_path_buf(),
            uid: meta.uid(),
            mode,
            why: if meta.uid() != 0 {
                "not owned by root"
            } else {
                "writable by group or others"
            },
        }
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn root_or_skip() -> bool {
        let root = nix::unistd::Uid::effective().is_root();
        if !root {
            eprintln!("skipping: the files must be root's, and this is not root");
        }
        root
    }

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn untrusted(e: &anyhow::Error) -> &Untrusted {
        e.downcast_ref::<Untrusted>()
            .unwrap_or_else(|| panic!("not an Untrusted: {e:#}"))
    }

    #[test]
    fn the_file_and_every_directory_to_it_must_be_roots_alone() {
        if !root_or_skip() {
            return;
        }
        let top = tempfile::tempdir().unwrap();
        let dir = top.path().join("etc/hooks.d");
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("10-db");
        std::fs::write(&file, "#!/bin/sh\n").unwrap();
        chmod(&file, 0o755);
        check(&file).unwrap();

        chmod(&file, 0o775);
        assert_eq!(untrusted(&check(&file).unwrap_err()).path, file);
        chmod(&file, 0o755);

        // Its own directory: writable by others, even sticky, is refused.
        chmod(&dir, 0o1777);
        assert_eq!(untrusted(&check(&file).unwrap_err()).path, dir);
        chmod(&dir, 0o755);

        // A directory further up: refused when open, taken when sticky (as /tmp).
        let etc = top.path().join("etc");
        chmod(&etc, 0o777);
        assert_eq!(untrusted(&check(&file).unwrap_err()).path, etc);
        chmod(&etc, 0o1777);
        check(&file).unwrap();
        chmod(&etc, 0o755);

        // Owned by another user.
        std::os::unix::fs::chown(&dir, Some(65534), None).unwrap();
        let e = check(&file).unwrap_err();
        assert_eq!(untrusted(&e).uid, 65534);
        assert!(format!("{e}").contains("chown root:root"), "{e}");
    }

    #[test]
    fn a_link_is_followed_and_where_it_leads_is_checked_too() {
        if !root_or_skip() {
            return;
        }
        let top = tempfile::tempdir().unwrap();
        let real = top.path().join("srv/hooks");
        std::fs::create_dir_all(&real).unwrap();
        let file = real.join("10-db");
        std::fs::write(&file, "#!/bin/sh\n").unwrap();
        chmod(&file, 0o755);
        let linked = top.path().join("etc");
        std::fs::create_dir_all(&linked).unwrap();
        std::os::unix::fs::symlink(&real, linked.join("hooks.d")).unwrap();
        let via_link = linked.join("hooks.d/10-db");
        check(&via_link).unwrap();
        let srv = top.path().join("srv");
        chmod(&srv, 0o777);
        assert_eq!(untrusted(&check(&via_link).unwrap_err()).path, srv);
    }
}
