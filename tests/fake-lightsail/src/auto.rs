//! Lightsail's automatic snapshots: the `AutoSnapshot` add-on of a disk or an instance (its
//! daily hour, UTC), the runs `GetAutoSnapshots` lists, and a run *in progress*, during which
//! the service refuses manual snapshots of that resource with `OperationFailureException`.
//!
//! A run in progress ends either at a time fixed when it started (`for N seconds`) or when a
//! test ends it (admin endpoint, [`crate::Fake::end_auto_snapshot`]): tests need not sleep.
//! Every status is computed from the time a call was received, so the clock is the caller's.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use crate::api::{epoch, ApiError};

/// What the service says when a manual snapshot meets an automatic one being created.
pub(crate) const REFUSAL: &str =
    "You cannot create manual snapshots when an automatic snapshot is being created. Try again after the automatic snapshot is complete.";

/// How a run in progress ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// When a test ends it.
    Open,
    /// At that time, with that status (`Success` or `Failed`).
    At(SystemTime, &'static str),
}

#[derive(Debug, Clone)]
struct Run {
    started: SystemTime,
    end: End,
    /// Instances: the block storage disks attached when it ran, `(path, size in GB)`.
    attached: Vec<(String, i64)>,
}

impl Run {
    fn status(&self, now: SystemTime) -> &'static str {
        match self.end {
            End::At(t, status) if now >= t => status,
            _ => "InProgress",
        }
    }
}

#[derive(Debug, Clone)]
struct Resource {
    /// `HH:00`, UTC.
    time_of_day: String,
    /// Oldest first.
    runs: Vec<Run>,
}

/// The add-on and the runs of every resource that has it.
#[derive(Debug, Default)]
pub(crate) struct AutoSnapshots {
    by_resource: BTreeMap<String, Resource>,
}

/// Checks Lightsail's `HH:00` time of day.
pub(crate) fn check_time_of_day(t: &str) -> Result<(), String> {
    let ok = t.len() == 5
        && t.ends_with(":00")
        && t[..2].bytes().all(|b| b.is_ascii_digit())
        && t[..2].parse::<u8>().is_ok_and(|h| h < 24);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "the snapshot time of day {t:?} is not valid: HH:00 (UTC, whole hours)"
        ))
    }
}

/// The UTC date `YYYY-MM-DD` of a time.
fn date(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()[..10].to_string()
}

/// Today's `HH:00` (UTC) of `now`, the hour automatic runs start at.
fn hour_today(now: SystemTime, time_of_day: &str) -> SystemTime {
    let day = 86_400;
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let hour: u64 = time_of_day[..2].parse().unwrap_or(0);
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs - secs % day + hour * 3600)
}

impl AutoSnapshots {
    /// Turns the add-on on for `resource`, with runs before today (`Success`, `Failed` or
    /// `NotFound`, newest first, one a day at the hour).
    pub(crate) fn enable(
        &mut self,
        resource: &str,
        time_of_day: &str,
        history: &[String],
        now: SystemTime,
    ) -> Result<(), String> {
        check_time_of_day(time_of_day)?;
        let today = hour_today(now, time_of_day);
        let mut runs = Vec::new();
        for (i, status) in history.iter().enumerate().rev() {
            let status = match status.as_str() {
                "Success" => "Success",
                "Failed" => "Failed",
                "NotFound" => "NotFound",
                other => {
                    return Err(format!(
                        "automatic snapshot status {other:?}: Success, Failed or NotFound (a run in progress is `in_progress`)"
                    ))
                }
            };
            let started = today - Duration::from_secs(86_400 * (i as u64 + 1));
            runs.push(Run {
                started,
                end: End::At(started, status),
                attached: Vec::new(),
            });
        }
        self.by_resource.insert(
            resource.to_string(),
            Resource {
                time_of_day: time_of_day.to_string(),
                runs,
            },
        );
        Ok(())
    }

    /// Starts a run on `resource` at `now`: for `duration` (then `Success`), or until ended.
    pub(crate) fn start(
        &mut self,
        resource: &str,
        now: SystemTime,
        duration: Option<Duration>,
        attached: Vec<(String, i64)>,
    ) -> Result<(), String> {
        let r = self.by_resource.get_mut(resource).ok_or_else(|| {
            format!("{resource} has no AutoSnapshot add-on (seed `auto_snapshot` on it)")
        })?;
        if r.runs.iter().any(|run| run.status(now) == "InProgress") {
            return Err(format!(
                "an automatic snapshot of {resource} is in progress already"
            ));
        }
        r.runs.push(Run {
            started: now,
            end: duration.map_or(End::Open, |d| End::At(now + d, "Success")),
            attached,
        });
        Ok(())
    }

    /// Ends the run in progress on `resource` at `now`, with `status` (`Success`, `Failed`).
    pub(crate) fn end(
        &mut self,
        resource: &str,
        now: SystemTime,
        status: &str,
    ) -> Result<(), String> {
        let status = match status {
            "Success" => "Success",
            "Failed" => "Failed",
            other => return Err(format!("a run ends in Success or Failed, not {other:?}")),
        };
        let run = self
            .by_resource
            .get_mut(resource)
            .and_then(|r| {
                r.runs
                    .iter_mut()
                    .find(|run| run.status(now) == "InProgress")
            })
            .ok_or_else(|| format!("no automatic snapshot of {resource} is in progress"))?;
        run.end = End::At(now, status);
        Ok(())
    }

    /// Whether an automatic snapshot of `resource` is being created at `now`.
    pub(crate) fn in_progress(&self, resource: &str, now: SystemTime) -> bool {
        self.by_resource
            .get(resource)
            .is_some_and(|r| r.runs.iter().any(|run| run.status(now) == "InProgress"))
    }

    /// The refusal of a manual snapshot of `resource` while a run is in progress.
    pub(crate) fn refuse_manual(&self, resource: &str, now: SystemTime) -> Result<(), ApiError> {
        if self.in_progress(resource, now) {
            Err(ApiError::new("OperationFailureException", REFUSAL))
        } else {
            Ok(())
        }
    }

    /// The `addOns` member of the resource.
    pub(crate) fn add_ons(&self, resource: &str) -> Value {
        match self.by_resource.get(resource) {
            None => json!([]),
            Some(r) => json!([{
                "name": "AutoSnapshot",
                "status": "Enabled",
                "snapshotTimeOfDay": r.time_of_day,
                "nextSnapshotTimeOfDay": r.time_of_day,
            }]),
        }
    }

    /// `autoSnapshots` of GetAutoSnapshots, newest first.
    pub(crate) fn list(&self, resource: &str, now: SystemTime) -> Value {
        let Some(r) = self.by_resource.get(resource) else {
            return json!([]);
        };
        r.runs
            .iter()
            .rev()
            .filter(|run| run.started <= now)
            .map(|run| {
                json!({
                    "date": date(run.started),
                    "createdAt": epoch(run.started),
                    "status": run.status(now),
                    "fromAttachedDisks": run.attached.iter()
                        .map(|(path, size)| json!({"path": path, "sizeInGb": size}))
                        .collect::<Vec<_>>(),
                })
            })
            .collect()
    }

    /// Every resource with the add-on, for the admin endpoint.
    pub(crate) fn all(&self, now: SystemTime) -> Value {
        self.by_resource
            .iter()
            .map(|(name, r)| {
                json!({
                    "resourceName": name,
                    "snapshotTimeOfDay": r.time_of_day,
                    "inProgress": self.in_progress(name, now),
                    "autoSnapshots": self.list(name, now),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        // 2026-11-29 00:00:00 UTC, plus.
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_910_400 + secs)
    }

    #[test]
    fn a_timed_run_is_in_progress_then_success_without_waiting() {
        let mut a = AutoSnapshots::default();
        a.enable(
            "data-1",
            "06:00",
            &["Success".into(), "Failed".into()],
            at(3600),
        )
        .unwrap();
        let history = a.list("data-1", at(3600));
        assert_eq!(history[0]["date"], "2026-11-28");
        assert_eq!(history[0]["status"], "Success");
        assert_eq!(history[1]["date"], "2026-11-27");
        assert_eq!(history[1]["status"], "Failed");
        assert_eq!(history[0]["createdAt"], epoch(at(6 * 3600)) - 86_400.0);

        a.start(
            "data-1",
            at(6 * 3600),
            Some(Duration::from_secs(600)),
            vec![],
        )
        .unwrap();
        let during = at(6 * 3600 + 599);
        assert!(a.in_progress("data-1", during));
        assert_eq!(a.list("data-1", during)[0]["status"], "InProgress");
        assert_eq!(a.list("data-1", during)[0]["date"], "2026-11-29");
        let refused = a.refuse_manual("data-1", during).err().unwrap();
        assert_eq!(refused.code, "OperationFailureException");
        assert_eq!(refused.status, 400);
        assert!(
            a.start("data-1", during, None, vec![]).is_err(),
            "one at a time"
        );

        let after = at(6 * 3600 + 600);
        assert!(!a.in_progress("data-1", after));
        assert!(a.refuse_manual("data-1", after).is_ok());
        assert_eq!(a.list("data-1", after)[0]["status"], "Success");
        assert_eq!(a.list("data-1", after).as_array().unwrap().len(), 3);
    }

    #[test]
    fn an_open_run_lasts_until_ended() {
        let mut a = AutoSnapshots::default();
        a.enable("web-1", "23:00", &[], at(0)).unwrap();
        a.start("web-1", at(10), None, vec![("/dev/xvdf".into(), 16)])
            .unwrap();
        let much_later = at(86_400 * 30);
        assert!(a.in_progress("web-1", much_later));
        let run = &a.list("web-1", at(11))[0];
        assert_eq!(run["fromAttachedDisks"][0]["path"], "/dev/xvdf");
        assert_eq!(run["fromAttachedDisks"][0]["sizeInGb"], 16);
        a.end("web-1", at(20), "Failed").unwrap();
        assert_eq!(a.list("web-1", at(21))[0]["status"], "Failed");
        assert!(a.end("web-1", at(21), "Success").is_err(), "nothing to end");
        assert!(!a.in_progress("web-1", at(21)));
    }

    #[test]
    fn the_add_on_is_checked_and_described() {
        let mut a = AutoSnapshots::default();
        for bad in ["6:00", "06:30", "24:00", "ab:00"] {
            assert!(a.enable("d", bad, &[], at(0)).is_err(), "{bad}");
        }
        assert!(a
            .enable("d", "06:00", &["InProgress".into()], at(0))
            .is_err());
        assert!(a.start("d", at(0), None, vec![]).is_err(), "no add-on");
        assert_eq!(a.add_ons("d"), json!([]));
        a.enable("d", "06:00", &[], at(0)).unwrap();
        assert_eq!(a.add_ons("d")[0]["name"], "AutoSnapshot");
        assert_eq!(a.add_ons("d")[0]["status"], "Enabled");
        assert_eq!(a.add_ons("d")[0]["snapshotTimeOfDay"], "06:00");
        assert_eq!(a.list("d", at(0)), json!([]));
    }
}
