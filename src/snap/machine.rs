//! The window's [`Quiescer`] on the real machine: the watchdog freezes and thaws, the kernel
//! unmounts and mounts again, and the agent's own descriptors are the last resort for a thaw
//! when the watchdog is gone.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use super::window::Quiescer;
use super::Plan;
use crate::kernel::freeze::{FreezeError, MountHandle, ThawError};
use crate::kernel::mountinfo::Mount;
use crate::kernel::unmount;
use crate::runstate::Quiesce;
use crate::watchdog::{FreezeLost, Watchdog};

/// The watchdog and the kernel, for one plan's filesystems.
pub(crate) struct Machine<'a> {
    watchdog: Watchdog,
    /// Our own descriptors of the mounts to freeze, to thaw with if the watchdog dies.
    own: Vec<Option<MountHandle>>,
    /// Each filesystem's mount, by plan index.
    mounts: Vec<Mount>,
    /// The whole mount table, for the unmount's list of mounts below.
    table: &'a [Mount],
    /// Mounts the watchdog said it did not freeze before it was lost mid-freeze: never
    /// thawed with our own descriptors (the freeze there may be someone else's).
    not_ours: Vec<usize>,
}

impl<'a> Machine<'a> {
    /// Opens our own descriptors of what is to be frozen, then starts the watchdog on them
    /// with `deadline` (counted from its first freeze). Nothing is frozen yet.
    pub fn start(
        plan: &Plan,
        table: &'a [Mount],
        deadline: Duration,
        expedite_freeze: bool,
        run_dir: &Path,
    ) -> Result<Self> {
        let fss = &plan.filesystems;
        let own: Vec<Option<MountHandle>> = fss
            .iter()
            .map(|f| match f.quiesce {
                Some(Quiesce::Freeze) => MountHandle::open(&f.located.mount.mount_point)
                    .map(Some)
                    .map_err(anyhow::Error::from),
                _ => Ok(None),
            })
            .collect::<Result<_>>()?;
        // The watchdog holds descriptors only of what is to be frozen: one of a mount to be
        // unmounted would keep it busy.
        let to_freeze: Vec<Option<PathBuf>> = fss
            .iter()
            .map(|f| {
                (f.quiesce == Some(Quiesce::Freeze)).then(|| f.located.mount.mount_point.clone())
            })
            .collect();
        let watchdog = Watchdog::start(&to_freeze, deadline, expedite_freeze, Some(run_dir))?;
        if !watchdog.memory_locked {
            tracing::warn!("the watchdog could not lock its memory (mlockall)");
        }
        Ok(Self {
            watchdog,
            own,
            mounts: fss.iter().map(|f| f.located.mount.clone()).collect(),
            table,
            not_ours: Vec::new(),
        })
    }

    /// Lets the watchdog go; it thaws anything still frozen on its way out, and says so.
    pub fn finish(self) -> Result<()> {
        self.watchdog.finish()
    }
}

impl Quiescer for Machine<'_> {
    fn freeze(&mut self, wave: &[usize]) -> Result<Vec<Result<(), FreezeError>>> {
        let paths: Vec<(usize, &std::path::Path)> = wave
            .iter()
            .map(|&i| (i, self.mounts[i].mount_point.as_path()))
            .collect();
        let answers = self.watchdog.freeze(&paths);
        if let Err(lost) = &answers {
            if let Some(lost) = lost.downcast_ref::<FreezeLost>() {
                self.not_ours.extend(&lost.not_frozen);
            }
        }
        answers
    }

    fn thaw(&mut self, i: usize) -> Result<bool> {
        match self.watchdog.thaw(i) {
            Ok(t) => Ok(t.by_deadline),
            // The last resort when the watchdog is gone: thaw with our own descriptor. "Not
            // frozen" is fine (the watchdog thawed it on its way out).
            // Not one the watchdog said it left alone.
            Err(_) if self.not_ours.contains(&i) => Ok(false),
            Err(lost) => match self.own[i].as_ref().map(MountHandle::thaw) {
                Some(Ok(()) | Err(ThawError::NotFrozen(_))) => Ok(false),
                Some(Err(e)) => Err(lost.context(e)),
                None => Err(lost.context("no descriptor of the mount to thaw it with")),
            },
        }
    }

    fn release(&mut self, i: usize) -> Result<()> {
        // Ours first: it is closed when dropped.
        self.own[i] = None;
        self.watchdog
            .release(i)
            .context("the watchdog is gone (releasing a mount to unmount it)")
    }

    fn unmount(&mut self, i: usize) -> Result<()> {
        // Told first: from then on the watchdog mounts it again should the agent die, and the
        // recovery record says it may be unmounted. Without a watchdog to tell, no unmount.
        self.watchdog
            .note_unmounting(i, &self.mounts[i])
            .context("the watchdog is gone (before an unmount)")?;
        if let Err(e) = unmount::unmount(&self.mounts[i], self.table) {
            // Still mounted: nothing is owed.
            if let Err(w) = self.watchdog.note_remounted(i) {
                tracing::warn!("{w:#}");
            }
            return Err(e.into());
        }
        if let Err(e) = self.watchdog.note_unmounted(i) {
            tracing::warn!("{e:#}");
        }
        Ok(())
    }

    fn remount(&mut self, i: usize, past_deadline: bool) -> Result<()> {
        let mount = &self.mounts[i];
        // Past the deadline the watchdog may have mounted it again itself (a second mount on
        // top would succeed): look before mounting, but only then.
        let back = past_deadline && unmount::is_back(mount).unwrap_or(false);
        if !back {
            unmount::remount(mount)?;
        }
        if let Err(e) = self.watchdog.note_remounted(i) {
            tracing::warn!("{e:#}");
        }
        Ok(())
    }
}
