//! When the packaged systemd timer fires, as far as `plan` needs to know: whether a run could
//! start inside the hour Lightsail makes its automatic snapshot (and refuses manual ones).
//! Reads the timer unit's `OnCalendar=` (`daily`, or a daily `HH:MM[:SS]` time) and
//! `RandomizedDelaySec=`; anything else is not guessed at.

use std::path::Path;
use std::time::Duration;

/// Where the timer unit may be, an administrator's copy first.
const UNITS: &[&str] = &[
    "etc/systemd/system/lightsnap-snapshot.timer",
    "lib/systemd/system/lightsnap-snapshot.timer",
    "usr/lib/systemd/system/lightsnap-snapshot.timer",
];

/// The window in which the timer may fire: minutes after midnight UTC, and its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Start, in minutes after midnight.
    pub start: u32,
    /// Length in minutes (the randomized delay).
    pub length: u32,
}

/// The timer's window, read from the unit under `root`; `None` when there is no unit or its
/// schedule is not a daily one this reads.
pub fn window(root: &Path) -> Option<Window> {
    let text = UNITS
        .iter()
        .find_map(|u| std::fs::read_to_string(root.join(u)).ok())?;
    parse(&text)
}

/// The window of a timer unit's text.
pub fn parse(text: &str) -> Option<Window> {
    let value = |key: &str| {
        text.lines()
            .rev()
            .filter_map(|l| l.trim().strip_prefix(key))
            .find_map(|rest| rest.trim_start().strip_prefix('='))
            .map(|v| v.trim().to_string())
    };
    let calendar = value("OnCalendar")?;
    let start = match calendar.as_str() {
        "daily" | "*-*-* 00:00:00" => 0,
        other => {
            let time = other.strip_prefix("*-*-* ").unwrap_or(other);
            let mut parts = time.split(':');
            let h: u32 = parts.next()?.parse().ok()?;
            let m: u32 = parts.next()?.parse().ok()?;
            (h < 24 && m < 60).then_some(h * 60 + m)?
        }
    };
    let delay = match value("RandomizedDelaySec") {
        None => Duration::ZERO,
        Some(v) => humantime::parse_duration(&v)
            .or_else(|_| v.parse::<u64>().map(Duration::from_secs))
            .ok()?,
    };
    Some(Window {
        start,
        length: (delay.as_secs() / 60) as u32,
    })
}

/// Whether the timer's window meets the 45 minutes from `HH:00` (the automatic snapshot's
/// hour, UTC). The timer's times are the machine's local time; Lightsail instances run in UTC.
pub fn meets_auto_snapshot(timer: Window, time_of_day: &str) -> bool {
    let Some(hour) = time_of_day
        .split(':')
        .next()
        .and_then(|h| h.parse::<u32>().ok())
        .filter(|h| *h < 24)
    else {
        return false;
    };
    let day = 24 * 60;
    let (a0, a1) = (hour * 60, hour * 60 + 45);
    let (t0, t1) = (timer.start, timer.start + timer.length);
    // Both as intervals on a circle of one day: compare in three shifted copies.
    [0, day, 2 * day]
        .iter()
        .any(|shift| t0 + shift <= a1 + day && a0 + day <= t1 + shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_packaged_timer_fires_in_the_first_hour_after_midnight() {
        let unit = include_str!("../../packaging/systemd/lightsnap-snapshot.timer");
        let w = parse(unit).unwrap();
        assert_eq!(
            w,
            Window {
                start: 0,
                length: 60
            }
        );
        assert!(meets_auto_snapshot(w, "00:00"));
        assert!(!meets_auto_snapshot(w, "06:00"));
        // 23:00 lasts until 23:45: before midnight.
        assert!(!meets_auto_snapshot(w, "23:00"));
    }

    #[test]
    fn other_schedules() {
        let w = parse("[Timer]\nOnCalendar=*-*-* 05:30:00\nRandomizedDelaySec=30min\n").unwrap();
        assert_eq!(
            w,
            Window {
                start: 330,
                length: 30
            }
        );
        assert!(meets_auto_snapshot(w, "05:00"));
        assert!(meets_auto_snapshot(w, "06:00"));
        assert!(!meets_auto_snapshot(w, "07:00"));
        let late = parse("OnCalendar=23:50\nRandomizedDelaySec=20m\n").unwrap();
        assert!(meets_auto_snapshot(late, "00:00"), "across midnight");
        assert!(parse("OnCalendar=Mon *-*-* 00:00\n").is_none());
        assert!(parse("[Timer]\n").is_none());
    }
}
