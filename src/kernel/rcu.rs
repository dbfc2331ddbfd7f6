//! The kernel's `rcu_expedited` switch (`/sys/kernel/rcu_expedited`): everything lightsnap
//! knows about it, in one place.
//!
//! FIFREEZE spends most of its time waiting for three RCU grace periods (one per `sb_writers`
//! level), a few timer ticks each; expedited, they take microseconds. The switch is
//! system-wide, so `--expedite-freeze` is opt-in and the watchdog holds it on for its freeze
//! calls only ([`Expedited`]). A watchdog killed while holding it leaves it on: the recovery
//! record notes a run that may turn it on, and `thaw --recover` turns it off ([`turn_off`]).

use std::io;

/// The switch.
pub const SWITCH: &str = "/sys/kernel/rcu_expedited";

/// Whether expedited RCU grace periods are on; `None` when the kernel does not say.
pub fn is_on() -> Option<bool> {
    let text = std::fs::read_to_string(SWITCH).ok()?;
    Some(text.trim() != "0")
}

/// Whether a run that asks for `--expedite-freeze` would turn the switch on (it is off now):
/// what the recovery record notes.
pub fn would_turn_on(expedite: bool) -> bool {
    expedite && is_on() == Some(false)
}

/// Turns the switch off (after an interrupted run that may have left it on).
pub fn turn_off() -> io::Result<()> {
    std::fs::write(SWITCH, "0")
}

/// The switch turned on for as long as the value lives, and put back off when dropped.
#[derive(Debug)]
pub struct Expedited(());

impl Expedited {
    /// Turns it on if it was off; `None` when it was on already or cannot be set (a
    /// read-only /sys): then there is nothing to put back.
    pub fn begin() -> Option<Self> {
        let off = is_on() == Some(false);
        (off && std::fs::write(SWITCH, "1").is_ok()).then_some(Self(()))
    }
}

impl Drop for Expedited {
    fn drop(&mut self) {
        let _ = turn_off();
    }
}
