//! `parse_identify` (the kernel side) and `attachment_name` (what the EBS vendor area means)
//! on arbitrary bytes: never panic, and whatever they return obeys what the rest of lightsnap
//! relies on (text fields are printable ASCII, the attachment name is usable as a path).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use lightsnap::cloud::ebs::{as_dev_path, attachment_name, volume_id_from_serial};
use lightsnap::kernel::blockdev::{parse_identify, IDENTIFY_LEN, VENDOR_SPECIFIC};

/// The NVMe Identify Controller fields, as `blockdev.rs` documents them, and the attachment
/// name at the start of the vendor-specific area, as `ebs.rs` does.
const FIELDS: [(&str, std::ops::Range<usize>); 3] = [
    ("serial", 4..24),
    ("model", 24..64),
    ("device name", 3072..3104),
];

fuzz_target!(|data: &[u8]| {
    let parsed = parse_identify(data);
    // Some exactly when the whole structure is there: nothing else makes it fail.
    assert_eq!(parsed.is_some(), data.len() >= IDENTIFY_LEN);
    let Some(id) = parsed else { return };
    // Only the 4096 bytes of the structure count.
    assert_eq!(parse_identify(&data[..IDENTIFY_LEN]).as_ref(), Some(&id));
    // The vendor-specific area is handed on as it is.
    assert_eq!(id.vendor_specific, &data[VENDOR_SPECIFIC]);
    let device_name = attachment_name(&id.vendor_specific);

    let fields = [
        Some(id.serial.as_str()),
        Some(id.model.as_str()),
        device_name.as_deref(),
    ];
    for ((what, range), value) in FIELDS.into_iter().zip(fields) {
        let Some(value) = value else { continue };
        // Printable ASCII (a '?' for each byte that was not), no NUL, trimmed, and no longer
        // than the field.
        assert!(
            value.bytes().all(|b| b.is_ascii_graphic() || b == b' '),
            "{what} {value:?}"
        );
        assert_eq!(value.trim(), value, "{what} is not trimmed");
        assert!(value.len() <= range.len(), "{what} longer than its field");
        // The text stops at the first NUL of the field.
        let raw = &data[range];
        let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
        assert!(value.len() <= end, "{what} runs past a NUL");
        // Where the field is plain text, the value is exactly that text, trimmed.
        let raw = &raw[..end];
        if raw.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
            assert_eq!(value, std::str::from_utf8(raw).unwrap().trim(), "{what}");
        }
    }
    if let Some(name) = &device_name {
        // The attachment name is never empty nor a guess with '?' in it, and it always means
        // an absolute path.
        assert!(
            !name.is_empty() && !name.contains('?'),
            "device name {name:?}"
        );
        let path = as_dev_path(name);
        assert!(path.is_absolute(), "{name:?} -> {}", path.display());
        if name.starts_with('/') {
            assert_eq!(path, Path::new(name));
        }
    }
    if let Some(volume) = volume_id_from_serial(&id.serial) {
        assert!(volume.starts_with("vol-"), "{volume:?}");
    }
});
