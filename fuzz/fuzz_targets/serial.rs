//! `volume_id_from_serial` and `as_dev_path` on arbitrary text: never panic; a volume id is
//! always `vol-` and ASCII alphanumerics taken from the serial; a device path is always
//! absolute.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use lightsnap::cloud::ebs::{as_dev_path, volume_id_from_serial};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Some(volume) = volume_id_from_serial(&text) {
        let rest = volume
            .strip_prefix("vol-")
            .unwrap_or_else(|| panic!("{volume:?} does not start with vol-"));
        assert!(
            !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric()),
            "{volume:?} from {text:?}"
        );
        // Taken from the serial, not made up.
        assert!(text.contains(rest), "{volume:?} from {text:?}");
        // A volume id is a serial of its own volume (`lsblk` shows either form).
        assert_eq!(
            volume_id_from_serial(&volume).as_deref(),
            Some(volume.as_str())
        );
    }
    let path = as_dev_path(&text);
    assert!(path.is_absolute(), "{text:?} -> {}", path.display());
    if text.starts_with('/') {
        assert_eq!(path, Path::new(&*text));
    } else {
        assert!(path.starts_with("/dev"), "{text:?} -> {}", path.display());
    }
});
