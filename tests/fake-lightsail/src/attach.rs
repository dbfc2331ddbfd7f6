//! Attach mode (test-only, and only with `--attach-dir DIR` / `Options::attach_dir` or
//! `--attach-command CMD` / `Options::attach_command`): an attached restored disk becomes a
//! real block device on the test machine, so an agent under test can check it the way it
//! would check a disk Lightsail attached.
//!
//! The first AttachDisk of a restored disk copies its snapshot's image to a file of the disk's
//! own (the snapshot image is never opened for writing). With a directory, the fake sets up a
//! loop device over that copy (`losetup`) and links `DIR/<basename of diskPath>` to
//! `/dev/loopN`; DetachDisk removes the link and the loop device (dropping an [`Exposed`] does
//! both). With a command, the fake hands the copy to it (`CMD attach COPY SERIAL DISKPATH`), and
//! the command makes the device appear (the VM lab hot-plugs it into a booted guest as an NVMe
//! disk with that serial); DetachDisk runs `CMD detach SERIAL` (dropping a [`Plugged`]).
//! DeleteDisk deletes the copy. Nothing of this is Lightsail's: a real attach makes an NVMe or
//! Xen device appear in `/dev`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// How much of a restored disk [`corrupt`] zeroes: the first MiB, where ext4's primary
/// superblock and group descriptors, XFS's first allocation group headers and btrfs's
/// primary superblock (at 64 KiB) live.
pub(crate) const CORRUPT_BYTES: u64 = 1 << 20;

/// How attached restored disks are exposed, if at all.
#[derive(Debug, Clone, Default)]
pub(crate) enum Mode {
    /// Attachments change state only.
    #[default]
    Off,
    /// A loop device over the copy, linked from this directory (`--attach-dir`).
    Dir(PathBuf),
    /// This command is told to plug the copy in (`--attach-command`).
    Command(PathBuf),
}

/// An attached restored disk, as exposed on the test machine.
#[derive(Debug)]
pub(crate) enum Device {
    /// A loop device and its link (`--attach-dir`).
    Loop(Exposed),
    /// Plugged in by the attach command (`--attach-command`).
    Plugged(Plugged),
    /// A seeded disk backed by a block device, attached again after a DetachDisk
    /// (`--attach-dir`): only the link, to that device (a roll-back's original disk put
    /// back). The device is the test's; dropping this removes the link only.
    #[allow(dead_code)] // held for its Drop
    Linked(Linked),
}

/// The link of a seeded disk's own block device in the attach directory.
#[derive(Debug)]
pub(crate) struct Linked {
    /// `DIR/<basename of diskPath>`.
    pub link: PathBuf,
}

impl Drop for Linked {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.link);
    }
}

/// Links `link` to a seeded disk's block device `backing`.
pub(crate) fn link(backing: &Path, link: &Path) -> Result<Linked, String> {
    if let Some(dir) = link.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    let _ = std::fs::remove_file(link);
    std::os::unix::fs::symlink(backing, link)
        .map_err(|e| format!("linking {} to {}: {e}", link.display(), backing.display()))?;
    Ok(Linked {
        link: link.to_path_buf(),
    })
}

/// A restored disk's copy handed to the attach command; dropping it runs `CMD detach SERIAL`.
#[derive(Debug)]
pub(crate) struct Plugged {
    /// The attach command.
    pub command: PathBuf,
    /// The disk's EBS NVMe serial.
    pub serial: String,
}

impl Drop for Plugged {
    fn drop(&mut self) {
        if let Err(e) = run_command(&self.command, &["detach", &self.serial]) {
            eprintln!("fake-lightsail: {e}");
        }
    }
}

/// The NVMe serial an EBS volume has on a Nitro instance: its volume id without the dash
/// (`vol-0abc…` → `vol0abc…`), at most the 20 characters an NVMe serial holds.
pub(crate) fn nvme_serial(volume_id: &str) -> String {
    volume_id.replacen('-', "", 1).chars().take(20).collect()
}

/// Runs `command ARGS...`; an error says what was run and what it said.
fn run_command(command: &Path, args: &[&str]) -> Result<(), String> {
    let said = || format!("{} {}", command.display(), args.join(" "));
    let out = Command::new(command)
        .args(args)
        .output()
        .map_err(|e| format!("running {}: {e}", said()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}: {}",
            said(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Runs `command attach COPY SERIAL PATH` (the copy's path made absolute: the command may
/// hand it to another machine that maps it); the disk is plugged in once it succeeds.
pub(crate) fn plug(
    command: &Path,
    copy: &Path,
    serial: &str,
    path: &str,
) -> Result<Plugged, String> {
    let copy = std::path::absolute(copy).map_err(|e| format!("{}: {e}", copy.display()))?;
    let copy = copy.to_string_lossy();
    run_command(command, &["attach", &copy, serial, path])?;
    Ok(Plugged {
        command: command.to_path_buf(),
        serial: serial.to_string(),
    })
}

/// A loop device over a restored disk's copy, and the symlink to it in the attach
/// directory. Dropping it removes both.
#[derive(Debug)]
pub(crate) struct Exposed {
    /// `DIR/<basename of diskPath>`.
    pub link: PathBuf,
    /// `/dev/loopN`.
    pub device: PathBuf,
}

impl Drop for Exposed {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.link);
        // The agent under test sets the device read-only (BLKROSET) while it checks it, and a
        // killed agent leaves it so. That flag belongs to /dev/loopN, not to its file: the next
        // `losetup --find` anywhere on the machine (another test's filesystem) would get a
        // read-only device. A real detached disk takes its flag with it; put it back here.
        let _ = Command::new("blockdev")
            .arg("--setrw")
            .arg(&self.device)
            .output();
        // A device still mounted by a test is only marked for autoclear by the kernel: it goes
        // when the last user lets go.
        let out = Command::new("losetup").arg("-d").arg(&self.device).output();
        if let Ok(o) = out {
            if !o.status.success() {
                eprintln!(
                    "fake-lightsail: losetup -d {}: {}",
                    self.device.display(),
                    String::from_utf8_lossy(&o.stderr).trim()
                );
            }
        }
    }
}

/// Sets up a loop device over `image` and links `link` to it.
pub(crate) fn expose(image: &Path, link: &Path) -> Result<Exposed, String> {
    let out = Command::new("losetup")
        .args(["--find", "--show"])
        .arg(image)
        .output()
        .map_err(|e| format!("running losetup: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "losetup --find --show {}: {}",
            image.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let device = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let exposed = Exposed {
        link: link.to_path_buf(),
        device,
    };
    if let Some(dir) = link.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    // A link left by an earlier fake in the same directory is stale by definition.
    let _ = std::fs::remove_file(link);
    std::os::unix::fs::symlink(&exposed.device, link).map_err(|e| {
        format!(
            "linking {} to {}: {e}",
            link.display(),
            exposed.device.display()
        )
    })?;
    Ok(exposed)
}

/// Zeroes the first [`CORRUPT_BYTES`] of a restored disk's copy (never a snapshot image).
pub(crate) fn corrupt(copy: &Path) -> std::io::Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new().write(true).open(copy)?;
    let len = f.metadata()?.len().min(CORRUPT_BYTES);
    f.seek(SeekFrom::Start(0))?;
    f.write_all(&vec![0u8; len as usize])?;
    f.sync_all()
}

/// Whether `path` is a device path Lightsail accepts for a block storage disk:
/// `/dev/xvdb` … `/dev/xvdz` or `/dev/sdb` … `/dev/sdz` (`a` is the system disk's).
pub(crate) fn valid_disk_path(path: &str) -> bool {
    let letter = |rest: &str| {
        let b = rest.as_bytes();
        b.len() == 1 && (b'b'..=b'z').contains(&b[0])
    };
    path.strip_prefix("/dev/xvd").is_some_and(letter)
        || path.strip_prefix("/dev/sd").is_some_and(letter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_paths_as_lightsail_takes_them() {
        for ok in ["/dev/xvdf", "/dev/xvdz", "/dev/sdb"] {
            assert!(valid_disk_path(ok), "{ok}");
        }
        for bad in [
            "/dev/xvda",
            "/dev/xcdg",
            "xvdf",
            "/dev/xvdff",
            "/dev/nvme1n1",
            "",
        ] {
            assert!(!valid_disk_path(bad), "{bad}");
        }
    }

    #[test]
    fn nvme_serials_are_volume_ids_without_the_dash() {
        assert_eq!(nvme_serial("vol-0123456789abcdef0"), "vol0123456789abcdef0");
        assert_eq!(nvme_serial("vol-0123456789abcdef0").len(), 20);
        assert_eq!(
            nvme_serial("vol-0123456789abcdef0123"),
            "vol0123456789abcdef0"
        );
    }

    #[test]
    fn corrupting_zeroes_the_head_of_the_copy_only() {
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("d.img");
        std::fs::write(&copy, vec![0xa5u8; (CORRUPT_BYTES as usize) * 2]).unwrap();
        corrupt(&copy).unwrap();
        let bytes = std::fs::read(&copy).unwrap();
        assert!(bytes[..CORRUPT_BYTES as usize].iter().all(|&b| b == 0));
        assert!(bytes[CORRUPT_BYTES as usize..].iter().all(|&b| b == 0xa5));
        let small = dir.path().join("small.img");
        std::fs::write(&small, [1u8; 10]).unwrap();
        corrupt(&small).unwrap();
        assert_eq!(std::fs::read(&small).unwrap(), [0u8; 10]);
    }
}
