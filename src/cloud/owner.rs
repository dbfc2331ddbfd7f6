//! The ownership tag: every snapshot, copy and disk lightsnap creates names the instance whose
//! lightsnap made it, `<region>/<instance>` (unique across regions; a copy keeps its source's).

/// The tag key naming the instance that made a resource.
pub const OWNER_TAG: &str = "lightsnap:owner";

/// The ownership tag's value for `instance` in `region`.
pub fn owner_value(region: &str, instance: &str) -> String {
    format!("{region}/{instance}")
}
