//! `lightsnap freeze-and-snap PATH...` (and `lightsnap plan PATH...`).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::snap_args::SnapArgs;
use super::Globals;
use crate::exit_code::ExitCode;

/// Freeze the filesystems at PATH..., snapshot their Lightsail disks, thaw.
#[derive(Debug, Args)]
pub struct FreezeAndSnap {
    /// Paths on the filesystems to snapshot (mount points, or any file or directory on
    /// them); several are frozen together and snapshotted as one consistency group.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// The Lightsail disk behind PATH (default: a mapping in the configuration, else found
    /// through the instance metadata).
    #[arg(long = "disk", visible_alias = "disk-name", value_name = "NAME")]
    pub disk_name: Option<String>,
    /// Options shared with snap-instance.
    #[command(flatten)]
    pub snap: SnapArgs,
}

impl FreezeAndSnap {
    /// Runs it.
    pub fn run(self, globals: &Globals) -> Result<ExitCode> {
        let (opts, settings) =
            self.snap
                .options(globals, self.paths.clone(), self.disk_name.clone())?;
        let output = globals.output;
        self.snap
            .freeze_and_snap(output, &opts, &settings, async |api, report, signals| {
                self.snap
                    .finish(api, &report, output, &settings, signals)
                    .await
            })
    }
}
