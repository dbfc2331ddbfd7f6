//! A snapshot's bytes: a point-in-time copy of a disk's backing device or image file.
//!
//! The source is read with `O_DIRECT` where it allows it. A loop device's own page cache is
//! not kept coherent with the filesystem's writes (data goes to the device as bios, around
//! that cache), so a buffered read could serve pages cached by an earlier copy; `O_DIRECT`
//! reads what the device holds now. All-zero blocks are skipped, so images are sparse.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

const CHUNK: usize = 1 << 20;
const ALIGN: usize = 4096;

fn open_source(path: &Path) -> std::io::Result<File> {
    match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
    {
        Ok(f) => Ok(f),
        // tmpfs and some others refuse O_DIRECT: their page cache is the only copy anyway.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => File::open(path),
        Err(e) => Err(e),
    }
}

/// Copies `from` into a new file `to`; returns the bytes copied.
pub(crate) fn copy_image(from: &Path, to: &Path) -> std::io::Result<u64> {
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut src = open_source(from)?;
    let mut dst = File::create(to)?;
    // An aligned window into a larger buffer, as O_DIRECT wants.
    let mut backing = vec![0u8; CHUNK + ALIGN];
    let offset = backing.as_ptr().align_offset(ALIGN);
    let buf = &mut backing[offset..offset + CHUNK];
    let mut total = 0u64;
    loop {
        let n = match src.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf[..n].iter().all(|&b| b == 0) {
            dst.seek(SeekFrom::Current(n as i64))?;
        } else {
            dst.write_all(&buf[..n])?;
        }
        total += n as u64;
    }
    dst.set_len(total)?;
    dst.sync_all()?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_bytes_and_keeps_holes() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("disk.img");
        let mut data = vec![0u8; 3 * CHUNK + 512];
        data[10] = 1;
        data[3 * CHUNK + 100] = 7;
        std::fs::write(&from, &data).unwrap();
        let to = dir.path().join("snaps/s1.img");
        assert_eq!(copy_image(&from, &to).unwrap(), data.len() as u64);
        assert_eq!(std::fs::read(&to).unwrap(), data);
    }
}
