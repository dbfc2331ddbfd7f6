//! `lightsnap freeze-and-snap PATH...` (and `lightsnap plan PATH...`).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::snap_args::SnapArgs;
use super::Globals;
use crate::exit_code::ExitCode;
use crate::signals::Signals;
use crate::snap;

/// Freeze the filesystems at PATH..., snapshot their Lightsail disks, thaw.
#[derive(Debug, Args)]
pub struct FreezeAndSnap {
    /// Paths on the filesystems to snapshot (mount points, or any file or directory on
    /// them); several are frozen together and snapshotted as one consistency group.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// The Lightsail disk behind PATH (default: a mapping in the configuration, else found
    /// through the instance metadata).
    #[arg(long, value_name = "NAME")]
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
        // Bad input fails before anything else, even before the SDK reads its configuration.
        let local = snap::plan_local(&opts)?;
        let output = globals.output;
        crate::runtime()?.block_on(async move {
            let mut signals = Signals::install()?;
            let api = self.snap.api(&settings).await?;
            if self.snap.dry_run {
                return super::plan::print_plan(&api, &opts, &local, output).await;
            }
            let report = snap::freeze_and_snap(&api, &opts, local, &mut signals).await?;
            self.snap.finish(&api, &report, output).await
        })
    }
}
