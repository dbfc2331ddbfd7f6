//! Plans made by hand for the unit tests of the orchestration's stages.

use super::plan::Located;
use super::Filesystem;
use crate::kernel::mountinfo::Mount;
use crate::runstate::Quiesce;

/// A filesystem of type `fstype` mounted at `point` from `device`, in freezing `wave`.
pub(crate) fn filesystem(
    point: &str,
    device: &str,
    fstype: &str,
    wave: usize,
    quiesce: Option<Quiesce>,
) -> Filesystem {
    let mount = Mount {
        id: 1,
        parent_id: 0,
        dev: (7, 0),
        root: "/".into(),
        mount_point: point.into(),
        mount_options: "rw".into(),
        fstype: fstype.into(),
        source: device.into(),
        super_options: "rw".into(),
    };
    Filesystem {
        located: Located {
            path: point.into(),
            block_device: device.into(),
            mount,
        },
        paths: vec![point.into()],
        quiesce,
        wave,
    }
}
