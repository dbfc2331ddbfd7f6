//! The time a `lightsnap run` may take (`[run] budget`), and how it agrees with the unit that
//! starts it.
//!
//! A run is bounded twice: by its budget, and by `lightsnap-snapshot.service`'s
//! `TimeoutStartSec=`, past which systemd sends SIGTERM and, `TimeoutStopSec=` later,
//! SIGKILL. The unit's numbers are derived from the constants here (the tests below read the
//! unit file and check it): `TimeoutStartSec=` = [`DEFAULT_RUN_BUDGET`] + [`START_MARGIN`],
//! `TimeoutStopSec=` = [`UNDO`] + [`STOP_MARGIN`], so that a stop always leaves the longest
//! undo its time.
//!
//! Inside the budget: the waits before the snapshot (the automatic-snapshot wait, the hooks,
//! the freeze) must fit, with [`CALLS`] for the API calls, or [`check_run`] refuses the run
//! before anything is done, naming the settings. The waits after it (`--wait`, the wait
//! before a copy, `verify_every`'s rehearsals and their undo) take what is left
//! ([`Deadline`]): a rehearsal that would not finish, undo included, before the budget ends
//! is not started.

use std::time::{Duration, Instant};

use crate::config::ConfigError;

/// `[run] budget` when the configuration says nothing: room for the default waits (50 min
/// of automatic-snapshot wait, 30 min before a copy, a 30-minute rehearsal and its 10-minute
/// undo) with some to spare.
pub const DEFAULT_RUN_BUDGET: Duration = Duration::from_secs(150 * 60);

/// The longest `[run] budget`: the timer starts a run every day.
pub const MAX_RUN_BUDGET: Duration = Duration::from_secs(24 * 3600);

/// What the unit allows beyond the budget (`TimeoutStartSec=`): the process's start, the
/// last API calls and the report.
pub const START_MARGIN: Duration = Duration::from_secs(5 * 60);

/// The longest undo after a stop request: a rehearsal's scratch disk detached and deleted.
/// The post-thaw hooks that follow a stopped freeze must fit in it too.
pub const UNDO: Duration = Duration::from_secs(10 * 60);

/// What the unit allows beyond [`UNDO`] after SIGTERM (`TimeoutStopSec=`).
pub const STOP_MARGIN: Duration = Duration::from_secs(2 * 60);

/// Room for a run's API calls (discovery, the snapshot calls, retention), each bounded by
/// its own timeouts and retries.
pub const CALLS: Duration = Duration::from_secs(5 * 60);

/// The shortest rehearsal worth starting.
pub const MIN_REHEARSAL: Duration = Duration::from_secs(2 * 60);

/// `[run] budget` on its own: more than nothing, at most [`MAX_RUN_BUDGET`].
pub fn check_budget(budget: Duration) -> Result<(), String> {
    if budget.is_zero() || budget > MAX_RUN_BUDGET {
        return Err(format!(
            "[run] budget = {}: give a duration above 0 and at most {} (the timer starts a run every day)",
            humantime::format_duration(budget),
            humantime::format_duration(MAX_RUN_BUDGET)
        ));
    }
    Ok(())
}

/// What a run may spend before its snapshots are taken, and the hooks it runs.
#[derive(Debug, Clone, Copy)]
pub struct Before {
    /// `--auto-snapshot-wait`.
    pub auto_snapshot_wait: Duration,
    /// How many hooks `hook_dir` holds (each runs before the freeze and after the thaw).
    pub hooks: usize,
    /// `hook_timeout`, per hook and phase.
    pub hook_timeout: Duration,
    /// `freeze_timeout` (or `--freeze-timeout`).
    pub freeze_timeout: Duration,
}

impl Before {
    /// The hooks' worst case for one phase.
    fn one_phase(&self) -> Duration {
        self.hook_timeout
            .saturating_mul(u32::try_from(self.hooks).unwrap_or(u32::MAX))
    }

    /// The worst case of everything before the snapshots are taken, and the post-thaw hooks.
    pub fn total(&self) -> Duration {
        self.auto_snapshot_wait
            .saturating_add(self.one_phase().saturating_mul(2))
            .saturating_add(self.freeze_timeout)
            .saturating_add(CALLS)
    }
}

/// Refuses a run whose waits do not fit in `budget`, or whose post-thaw hooks could not
/// finish within the unit's stop timeout, naming the settings to change.
pub fn check_run(budget: Duration, before: &Before) -> Result<(), ConfigError> {
    let fmt = humantime::format_duration;
    let total = before.total();
    if total > budget {
        return Err(ConfigError::Invalid(format!(
            "[run] budget = {} is less than a run may need before its snapshot is taken: \
             --auto-snapshot-wait {} + 2 phases x {} hooks x hook_timeout {} + freeze_timeout {} + {} for the API calls = {}; \
             lower those, or raise [run] budget in /etc/lightsnap/config.toml (and lightsnap-snapshot.service's TimeoutStartSec= with it, to the budget + {})",
            fmt(budget),
            fmt(before.auto_snapshot_wait),
            before.hooks,
            fmt(before.hook_timeout),
            fmt(before.freeze_timeout),
            fmt(CALLS),
            fmt(total),
            fmt(START_MARGIN),
        )));
    }
    if before.one_phase() > UNDO {
        return Err(ConfigError::Invalid(format!(
            "{} hooks x hook_timeout {} = {}: after a stop (systemctl stop, shutdown) the post-thaw hooks must finish within {} \
             (lightsnap-snapshot.service's TimeoutStopSec= is that + {}): lower hook_timeout, or use fewer hooks",
            before.hooks,
            fmt(before.hook_timeout),
            fmt(before.one_phase()),
            fmt(UNDO),
            fmt(STOP_MARGIN),
        )));
    }
    Ok(())
}

/// When a run's budget ends.
#[derive(Debug, Clone, Copy)]
pub struct Deadline(Instant);

impl Deadline {
    /// The budget, from now.
    pub fn start(budget: Duration) -> Self {
        Self::since(Instant::now(), budget)
    }

    /// The budget of a run that started at `started`.
    pub fn since(started: Instant, budget: Duration) -> Self {
        Self(started + budget)
    }

    /// What is left of the budget.
    pub fn remaining(&self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }

    /// A wait of at most `wait`, ending with the budget at the latest.
    pub fn cap(&self, wait: Duration) -> Duration {
        wait.min(self.remaining())
    }

    /// The time a rehearsal may take (at most `wanted`) so that it, its undo and the last
    /// calls end within the budget; `None` when that is less than [`MIN_REHEARSAL`].
    pub fn rehearsal(&self, wanted: Duration) -> Option<Duration> {
        let left = self.remaining().saturating_sub(UNDO + CALLS);
        (left >= MIN_REHEARSAL).then(|| left.min(wanted))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNIT: &str = include_str!("../packaging/systemd/lightsnap-snapshot.service");

    /// A setting of the unit's `[Service]` section, as a duration (systemd's `155min`).
    fn unit_setting(key: &str) -> Duration {
        let line = UNIT
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("lightsnap-snapshot.service sets no {key}="));
        humantime::parse_duration(line.trim()).unwrap_or_else(|e| panic!("{key}={line}: {e}"))
    }

    /// The defaults, as the packaged configuration and the unit's ExecStart give them.
    fn defaults(hooks: usize) -> Before {
        let settings = crate::config::Settings::default();
        Before {
            auto_snapshot_wait: Duration::from_secs(50 * 60),
            hooks,
            hook_timeout: settings.hook_timeout,
            freeze_timeout: settings.freeze_timeout,
        }
    }

    #[test]
    fn the_units_timeouts_are_the_budget_and_the_undo_with_their_margins() {
        assert_eq!(
            unit_setting("TimeoutStartSec"),
            DEFAULT_RUN_BUDGET + START_MARGIN,
            "TimeoutStartSec= is the default [run] budget + START_MARGIN"
        );
        assert_eq!(
            unit_setting("TimeoutStopSec"),
            UNDO + STOP_MARGIN,
            "TimeoutStopSec= is the longest undo + STOP_MARGIN"
        );
        assert_eq!(
            crate::config::Settings::default().run_budget,
            DEFAULT_RUN_BUDGET
        );
    }

    #[test]
    fn the_undo_is_verifys_and_the_default_budget_holds_the_default_waits() {
        assert_eq!(crate::cli::verify::UNDO_TIMEOUT, UNDO);
        // The snapshot's waits, then a wait before a copy, one rehearsal and its undo.
        let after = Duration::from_secs(30 * 60) + crate::cli::verify::DEFAULT_TIMEOUT + UNDO;
        assert!(defaults(4).total() + after <= DEFAULT_RUN_BUDGET);
        check_run(DEFAULT_RUN_BUDGET, &defaults(10)).unwrap();
    }

    #[test]
    fn a_budget_too_small_for_the_waits_is_refused_naming_the_settings() {
        let e = check_run(Duration::from_secs(30 * 60), &defaults(1))
            .unwrap_err()
            .to_string();
        for needle in [
            "[run] budget = 30m",
            "--auto-snapshot-wait 50m",
            "hook_timeout 1m",
            "freeze_timeout 10s",
            "TimeoutStartSec=",
        ] {
            assert!(e.contains(needle), "{needle:?} in: {e}");
        }
        // The same waits fit once the automatic-snapshot wait is shorter.
        let shorter = Before {
            auto_snapshot_wait: Duration::from_secs(10 * 60),
            ..defaults(1)
        };
        check_run(Duration::from_secs(30 * 60), &shorter).unwrap();
    }

    #[test]
    fn post_thaw_hooks_that_outlast_the_stop_timeout_are_refused() {
        let e = check_run(MAX_RUN_BUDGET, &defaults(11))
            .unwrap_err()
            .to_string();
        assert!(e.contains("11 hooks x hook_timeout 1m"), "{e}");
        assert!(e.contains("TimeoutStopSec="), "{e}");
    }

    #[test]
    fn the_budget_itself_is_bounded() {
        assert!(check_budget(Duration::ZERO).is_err());
        assert!(check_budget(MAX_RUN_BUDGET + Duration::from_secs(1)).is_err());
        check_budget(MAX_RUN_BUDGET).unwrap();
    }

    #[test]
    fn a_rehearsal_gets_what_is_left_after_its_undo_or_nothing() {
        let d = Deadline::start(Duration::from_secs(3600));
        let r = d.rehearsal(Duration::from_secs(1800)).unwrap();
        assert_eq!(
            r,
            Duration::from_secs(1800),
            "30 min fit in an hour's budget"
        );
        let d = Deadline::start(Duration::from_secs(20 * 60));
        let r = d.rehearsal(Duration::from_secs(1800)).unwrap();
        assert!(r <= Duration::from_secs(5 * 60), "{r:?}");
        assert!(r > MIN_REHEARSAL, "{r:?}");
        let d = Deadline::start(UNDO + CALLS + Duration::from_secs(60));
        assert_eq!(d.rehearsal(Duration::from_secs(1800)), None);
        assert!(d.cap(Duration::from_secs(3600)) <= UNDO + CALLS + Duration::from_secs(60));
    }
}
