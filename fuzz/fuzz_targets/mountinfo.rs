//! `mountinfo::parse` (and `find_mount`, the pure half of `resolve`) on arbitrary text: never
//! panics, and every mount it returns is one that lightsnap can use and write back out.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lightsnap::kernel::mountinfo::{find_mount, has_option, parse, Mount};

/// The kernel's octal escaping (proc(5), `show_mountinfo`'s `mangle`): space, tab, newline and
/// backslash, and carriage return too, which `str::lines` would take for part of a line end.
fn escape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    for c in field.chars() {
        match c {
            ' ' | '\t' | '\n' | '\r' | '\\' => out.push_str(&format!("\\{:03o}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// One mountinfo line for `m`, as the kernel would write it (without optional fields).
fn render(m: &Mount) -> String {
    let path = |p: &std::path::Path| escape(p.to_str().expect("parsed from a str"));
    format!(
        "{} {} {}:{} {} {} {} - {} {} {}",
        m.id,
        m.parent_id,
        m.dev.0,
        m.dev.1,
        path(&m.root),
        path(&m.mount_point),
        m.mount_options,
        escape(&m.fstype),
        escape(&m.source),
        m.super_options
    )
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(mounts) = parse(&text) else { return };
    // One mount for each line that is not blank.
    let lines = text.lines().filter(|l| !l.trim().is_empty()).count();
    assert_eq!(mounts.len(), lines);
    for m in &mounts {
        // A mount point is where the kernel shows it: an absolute path.
        assert!(m.mount_point.is_absolute(), "{m:?}");
        // The option lists are single fields.
        for options in [&m.mount_options, &m.super_options] {
            assert!(!options.contains(' ') && !options.contains('\n'), "{m:?}");
        }
        let _ = (
            m.is_read_only(),
            m.is_fuse(),
            has_option(&m.mount_options, "ro"),
        );
        // Written back out the way the kernel escapes it, it parses to the same mount.
        let line = render(m);
        match parse(&line) {
            Ok(again) => assert_eq!(again, std::slice::from_ref(m), "{line:?}"),
            Err(e) => panic!("{line:?} from {m:?}: {e:#}"),
        }
        // A mount point is on the last mount made there (that one hides the others).
        let found = find_mount(&m.mount_point, &mounts).expect("its own mount matches");
        let last = mounts
            .iter()
            .rev()
            .find(|o| o.mount_point == m.mount_point)
            .unwrap();
        assert!(std::ptr::eq(found, last), "{m:?} found {found:?}");
    }
});
