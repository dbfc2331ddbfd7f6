//! When the packaged systemd timer fires, as systemd itself sees it — the unit with its
//! drop-ins (`systemctl edit` writes there), in the machine's time zone: `plan` warns when a
//! run could start inside the hour Lightsail makes its automatic snapshot (and refuses manual
//! ones), and [`schedule`] gives the timer's schedule to whoever needs it.
//!
//! systemd is asked, never the unit files read: `systemctl show -p TimersCalendar -p
//! RandomizedDelayUSec -p NextElapseUSecRealtime lightsnap-snapshot.timer`, its timestamps
//! printed in UTC (`TZ=UTC` for systemctl alone). A timer that is not active has no next
//! elapse: then `systemd-analyze calendar` says when each of its calendars next comes, in UTC.
//! A calendar whose time of day is not fixed (`hourly`, `*:0/15`) has no daily window and is
//! not guessed at.

use std::process::Command;
use std::time::Duration;

/// The packaged timer.
pub const TIMER_UNIT: &str = "lightsnap-snapshot.timer";

/// The window in which the timer may fire: minutes after midnight UTC, and its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Start, in minutes after midnight UTC.
    pub start: u32,
    /// Length in minutes (the randomized delay).
    pub length: u32,
}

/// One `OnCalendar=` of the timer, as systemd normalised it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Calendar {
    /// The calendar expression (`*-*-* 00:00:00`).
    pub spec: String,
    /// When it next elapses, in UTC (`2026-12-08 00:00:00`), before the randomized delay;
    /// `None` when systemd did not say (the timer is not active).
    pub next_elapse_utc: Option<String>,
}

/// The timer's schedule, as systemd sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Schedule {
    /// Its calendars (drop-ins included, in systemd's order).
    pub calendars: Vec<Calendar>,
    /// `RandomizedDelaySec=`.
    #[serde(rename = "randomized_delay_s", serialize_with = "as_secs")]
    pub randomized_delay: Duration,
    /// When it next fires, randomized delay included, in UTC; `None` when not active.
    pub next_elapse_utc: Option<String>,
}

fn as_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

/// The timer's schedule, asked of systemd; `None` when there is no systemd to ask or no such
/// timer unit. The next elapse of each calendar is filled in with `systemd-analyze
/// calendar` when the timer is not active.
pub fn schedule() -> Option<Schedule> {
    let out = Command::new("systemctl")
        .args([
            "show",
            "-p",
            "LoadState",
            "-p",
            "TimersCalendar",
            "-p",
            "RandomizedDelayUSec",
            "-p",
            "NextElapseUSecRealtime",
            TIMER_UNIT,
        ])
        .env("TZ", "UTC")
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let mut schedule = parse_show(&String::from_utf8_lossy(&out.stdout))?;
    for c in &mut schedule.calendars {
        if c.next_elapse_utc.is_none() {
            c.next_elapse_utc = Command::new("systemd-analyze")
                .args(["calendar", &c.spec])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .and_then(|o| parse_analyze(&String::from_utf8_lossy(&o.stdout)));
        }
    }
    Some(schedule)
}

/// The timer's windows (one per calendar with a fixed time of day), asked of systemd.
pub fn windows() -> Vec<Window> {
    schedule().map(|s| s.windows()).unwrap_or_default()
}

impl Schedule {
    /// One window per calendar with a fixed time of day whose next elapse is known.
    pub fn windows(&self) -> Vec<Window> {
        let length = (self.randomized_delay.as_secs() / 60) as u32;
        self.calendars
            .iter()
            .filter(|c| fixed_time_of_day(&c.spec))
            .filter_map(|c| minutes_of(c.next_elapse_utc.as_deref()?))
            .map(|start| Window { start, length })
            .collect()
    }
}

/// Reads `systemctl show -p LoadState -p TimersCalendar -p RandomizedDelayUSec -p
/// NextElapseUSecRealtime` (timestamps in UTC); `None` for a unit that is not loaded or has
/// no calendar.
pub fn parse_show(text: &str) -> Option<Schedule> {
    let mut calendars = Vec::new();
    let mut delay = Duration::ZERO;
    let mut next = None;
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim();
        match key {
            "LoadState" if value != "loaded" => return None,
            "TimersCalendar" => calendars.extend(parse_calendar(value)),
            "RandomizedDelayUSec" => delay = parse_timespan(value)?,
            "NextElapseUSecRealtime" => next = timestamp(value),
            _ => {}
        }
    }
    (!calendars.is_empty()).then_some(Schedule {
        calendars,
        randomized_delay: delay,
        next_elapse_utc: next,
    })
}

/// `{ OnCalendar=*-*-* 00:00:00 ; next_elapse=Tue 2026-12-08 00:00:00 UTC }`, possibly more
/// than one on a line.
fn parse_calendar(value: &str) -> Vec<Calendar> {
    value
        .split('}')
        .filter_map(|entry| {
            let entry = entry.trim().strip_prefix('{')?.trim();
            let (spec, rest) = entry.split_once(';')?;
            let spec = spec.trim().strip_prefix("OnCalendar=")?.trim().to_string();
            let next = rest.trim().strip_prefix("next_elapse=").and_then(timestamp);
            Some(Calendar {
                spec,
                next_elapse_utc: next,
            })
        })
        .collect()
}

/// `(in UTC): Tue 2026-12-08 00:00:00 UTC` from `systemd-analyze calendar`.
pub fn parse_analyze(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("(in UTC):"))
        .and_then(timestamp)
}

/// systemd's `Tue 2026-12-08 00:00:00 UTC` as `2026-12-08 00:00:00`; `None` for `n/a`, an
/// empty value or a time zone other than UTC.
fn timestamp(text: &str) -> Option<String> {
    let mut words = text.split_whitespace();
    let (_day, date, time, zone) = (words.next()?, words.next()?, words.next()?, words.next()?);
    if zone != "UTC" || date.len() != 10 || time.len() < 8 {
        return None;
    }
    Some(format!("{date} {}", &time[..8]))
}

/// Minutes after midnight of `YYYY-MM-DD HH:MM:SS`.
fn minutes_of(utc: &str) -> Option<u32> {
    let time = utc.split_whitespace().nth(1)?;
    let mut parts = time.split(':');
    let h: u32 = parts.next()?.parse().ok()?;
    let m: u32 = parts.next()?.parse().ok()?;
    (h < 24 && m < 60).then_some(h * 60 + m)
}

/// Whether a normalised calendar fires at one fixed time of day (`[WEEKDAYS] DATE HH:MM:SS
/// [ZONE]` with plain numbers in the time): then its windows are the same every day it fires.
fn fixed_time_of_day(spec: &str) -> bool {
    spec.split_whitespace().any(|w| {
        let parts: Vec<&str> = w.split(':').collect();
        parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit() || c == '.'))
    })
}

/// A systemd timespan (`1h`, `1h 30min`, `45s`, `0`).
fn parse_timespan(text: &str) -> Option<Duration> {
    match text.trim() {
        "" | "0" => Some(Duration::ZERO),
        t => humantime::parse_duration(t).ok(),
    }
}

/// Whether the timer's window meets the 45 minutes from `HH:00` (the automatic snapshot's
/// hour, UTC).
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

    /// The packaged timer, as systemd 252 shows it while active.
    const ACTIVE: &str = "\
LoadState=loaded
TimersCalendar={ OnCalendar=*-*-* 00:00:00 ; next_elapse=Tue 2026-12-08 00:00:00 UTC }
RandomizedDelayUSec=1h
NextElapseUSecRealtime=Tue 2026-12-08 00:41:13 UTC
";

    #[test]
    fn the_packaged_timer_fires_in_the_first_hour_after_midnight() {
        let s = parse_show(ACTIVE).unwrap();
        assert_eq!(s.randomized_delay, Duration::from_secs(3600));
        assert_eq!(s.next_elapse_utc.as_deref(), Some("2026-12-08 00:41:13"));
        let w = s.windows();
        assert_eq!(
            w,
            vec![Window {
                start: 0,
                length: 60
            }]
        );
        assert!(meets_auto_snapshot(w[0], "00:00"));
        assert!(!meets_auto_snapshot(w[0], "06:00"));
        // 23:00 lasts until 23:45: before midnight.
        assert!(!meets_auto_snapshot(w[0], "23:00"));
    }

    /// A drop-in that resets OnCalendar= and sets a local time (here Europe/Berlin in winter:
    /// 05:30 local is 04:30 UTC): systemd's next elapse, in UTC, gives the window.
    #[test]
    fn a_drop_in_and_a_local_time_zone() {
        let s = parse_show(
            "LoadState=loaded\n\
             TimersCalendar={ OnCalendar=*-*-* 05:30:00 ; next_elapse=Tue 2026-12-08 04:30:00 UTC }\n\
             RandomizedDelayUSec=30min\n\
             NextElapseUSecRealtime=\n",
        )
        .unwrap();
        let w = s.windows();
        assert_eq!(
            w,
            vec![Window {
                start: 270,
                length: 30
            }]
        );
        assert!(meets_auto_snapshot(w[0], "04:00"));
        assert!(!meets_auto_snapshot(w[0], "06:00"));
    }

    #[test]
    fn other_schedules() {
        // Two calendars, one on weekdays only: both fire at a fixed time.
        let s = parse_show(
            "TimersCalendar={ OnCalendar=Mon..Fri *-*-* 23:50:00 ; next_elapse=Mon 2026-12-07 23:50:00 UTC }\n\
             TimersCalendar={ OnCalendar=*-*-* *:00:00 ; next_elapse=Mon 2026-12-07 09:00:00 UTC }\n\
             RandomizedDelayUSec=20min\n",
        )
        .unwrap();
        assert_eq!(s.calendars.len(), 2);
        let w = s.windows();
        assert_eq!(w.len(), 1, "hourly is not a daily window: {w:?}");
        assert!(meets_auto_snapshot(w[0], "00:00"), "across midnight");
        // Not loaded, or no calendar: nothing to say.
        assert!(parse_show("LoadState=not-found\nTimersCalendar=\n").is_none());
        assert!(parse_show("LoadState=loaded\n").is_none());
    }

    #[test]
    fn an_inactive_timer_is_completed_by_systemd_analyze() {
        let s = parse_show(
            "LoadState=loaded\nTimersCalendar={ OnCalendar=*-*-* 00:00:00 ; next_elapse=n/a }\nRandomizedDelayUSec=0\nNextElapseUSecRealtime=n/a\n",
        )
        .unwrap();
        assert_eq!(s.calendars[0].next_elapse_utc, None);
        assert!(s.windows().is_empty());
        let analyze = "  Original form: daily\nNormalized form: *-*-* 00:00:00\n    Next elapse: Tue 2026-12-08 00:00:00 CET\n       (in UTC): Mon 2026-12-07 23:00:00 UTC\n       From now: 2h left\n";
        assert_eq!(
            parse_analyze(analyze).as_deref(),
            Some("2026-12-07 23:00:00")
        );
    }
}
