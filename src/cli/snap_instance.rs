//! `lightsnap snap-instance`: the whole instance, with every block filesystem on its
//! Lightsail disks frozen (or unmounted) around one CreateInstanceSnapshot.

use anyhow::Result;
use clap::Args;

use super::snap_args::SnapArgs;
use super::Globals;
use crate::exit_code::ExitCode;
use crate::signals::Signals;
use crate::snap;

/// Snapshot the whole instance, every filesystem on its disks frozen.
#[derive(Debug, Args)]
pub struct SnapInstance {
    /// Options shared with freeze-and-snap.
    #[command(flatten)]
    pub snap: SnapArgs,
    /// Leave out the mounts whose mount point matches GLOB (`*` stays within one path
    /// component: /mnt/* is each mount directly under /mnt); repeatable, added to the
    /// configuration's `exclude`. A mount on a block device that cannot be traced to a disk
    /// of this instance is refused unless excluded.
    #[arg(long = "exclude", value_name = "GLOB")]
    pub exclude: Vec<String>,
}

impl SnapInstance {
    /// Runs it.
    pub fn run(self, globals: &Globals) -> Result<ExitCode> {
        let (mut opts, settings) = self.snap.options(globals, Vec::new(), None)?;
        for pattern in &self.exclude {
            crate::config::exclude_pattern(pattern).map_err(|e| {
                crate::exit_code::Failure::new(ExitCode::Usage, format!("--exclude: {e:#}"))
            })?;
        }
        opts.exclude.extend(self.exclude.iter().cloned());
        let output = globals.output;
        if self.snap.dry_run {
            return self.snap_instance(output, &opts, &settings, None);
        }
        let targets = vec![crate::monitor::INSTANCE_TARGET.to_string()];
        let monitor = crate::monitor::Monitor::start(&settings, targets)?;
        let result = self.snap_instance(output, &opts, &settings, Some(&monitor));
        monitor.finish(&result);
        result
    }

    fn snap_instance(
        &self,
        output: crate::cli::Output,
        opts: &snap::Options,
        settings: &crate::config::Settings,
        monitor: Option<&crate::monitor::Monitor>,
    ) -> Result<ExitCode> {
        crate::runtime()?.block_on(async move {
            let mut signals = Signals::install()?;
            let api = self.snap.api(settings).await?;
            let (plan, report) =
                snap::snap_instance(&api, opts, &mut signals, self.snap.dry_run).await?;
            match report {
                Some(report) => {
                    if let Some(m) = monitor {
                        m.taken(&report);
                    }
                    self.snap
                        .finish(&api, &report, output, settings, &mut signals)
                        .await
                }
                None => crate::hooks::discover(&opts.hook_dir)
                    .and_then(|hooks| super::plan::print(&plan, &hooks, output))
                    .map(|()| ExitCode::Success),
            }
        })
    }
}
