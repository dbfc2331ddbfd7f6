//! Injected faults: what the fake does instead of (or besides) answering an API call.
//!
//! A fault names the operation it applies to (or any), and how many calls it applies to (or
//! all until cleared). Faults are set when the fake starts (`--fault`), from Rust tests
//! ([`crate::Fake::add_fault`]), or at run time through the admin endpoint
//! (`POST /__admin/faults` with a [`Fault`] as JSON, `DELETE /__admin/faults`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One injected fault.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    /// The operation (`CreateDiskSnapshot`), or `None` for every operation.
    pub operation: Option<String>,
    /// What happens.
    pub kind: FaultKind,
    /// How many matching calls it applies to; `None`: every one until cleared.
    pub count: Option<u32>,
}

/// What an injected fault does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FaultKind {
    /// Answer with this error (`__type`, `x-amzn-ErrorType`); status 400 unless given
    /// (`ServiceException` defaults to 500, as the service documents).
    Error {
        /// The error name (`OperationFailureException`).
        code: String,
        /// Its message.
        message: Option<String>,
        /// HTTP status.
        status: Option<u16>,
    },
    /// Do the work (a snapshot is taken on receipt), then wait this long before answering.
    Latency {
        /// Milliseconds.
        ms: u64,
    },
    /// Never answer (until the fake stops).
    Hang,
    /// Answer `ThrottlingException` ("Rate exceeded").
    Throttle,
    /// Answer a bare HTTP 500 with no error type.
    Status500,
    /// Close the connection without answering.
    Reset,
    /// Answer 200 with the operation in status `Failed` (nothing is created).
    FailedOperation {
        /// `errorCode`.
        code: String,
        /// `errorDetails`.
        details: String,
    },
    /// Create the snapshot, but let it end in state `error`.
    SnapshotError,
    /// CreateDiskFromSnapshot or AttachDisk: the restored disk's copy is corrupted (its first
    /// MiB zeroed) before it is exposed in attach mode. The snapshot image is not touched.
    CorruptDisk,
}

impl Fault {
    /// Parses the command line's `[OPERATION=]KIND[@COUNT]`, KIND being `latency:50ms`, `hang`,
    /// `throttle`, `500`, `reset`, `error:CODE[:MESSAGE]`, `failed:CODE[:DETAILS]` or
    /// `snapshot-error` or `corrupt-disk`.
    pub fn parse(text: &str) -> Result<Self, String> {
        // An operation is a bare name: an `=` after a `:` belongs to a message.
        let is_operation = |op: &str| op == "*" || op.chars().all(|c| c.is_ascii_alphanumeric());
        let (operation, rest) = match text.split_once('=') {
            Some((op, rest)) if op != "*" && is_operation(op) => (Some(op.to_string()), rest),
            Some((op, rest)) if is_operation(op) => (None, rest),
            _ => (None, text),
        };
        let (spec, count) = match rest.rsplit_once('@') {
            Some((spec, n)) => (
                spec,
                Some(
                    n.parse()
                        .map_err(|_| format!("bad count {n:?} in {text:?}"))?,
                ),
            ),
            None => (rest, None),
        };
        let mut parts = spec.splitn(3, ':');
        let head = parts.next().unwrap_or_default();
        let arg1 = parts.next().map(str::to_string);
        let arg2 = parts.next().map(str::to_string);
        let kind = match head {
            "latency" => {
                let d = arg1.ok_or_else(|| format!("latency needs a duration: {text:?}"))?;
                let d: Duration = humantime::parse_duration(&d)
                    .map_err(|e| format!("latency {d:?} in {text:?}: {e}"))?;
                FaultKind::Latency {
                    ms: d.as_millis() as u64,
                }
            }
            "hang" => FaultKind::Hang,
            "throttle" => FaultKind::Throttle,
            "500" => FaultKind::Status500,
            "reset" => FaultKind::Reset,
            "snapshot-error" => FaultKind::SnapshotError,
            "corrupt-disk" => FaultKind::CorruptDisk,
            "error" => FaultKind::Error {
                code: arg1.ok_or_else(|| format!("error needs a code: {text:?}"))?,
                message: arg2,
                status: None,
            },
            "failed" => FaultKind::FailedOperation {
                code: arg1.ok_or_else(|| format!("failed needs a code: {text:?}"))?,
                details: arg2.unwrap_or_else(|| "the operation failed".into()),
            },
            other => return Err(format!("unknown fault {other:?} in {text:?}")),
        };
        Ok(Fault {
            operation,
            kind,
            count,
        })
    }
}

/// The faults in force, in the order they were added.
#[derive(Debug, Default)]
pub(crate) struct Faults(Vec<Fault>);

impl Faults {
    pub(crate) fn add(&mut self, fault: Fault) {
        self.0.push(fault);
    }

    pub(crate) fn clear(&mut self) {
        self.0.clear();
    }

    pub(crate) fn list(&self) -> Vec<Fault> {
        self.0.clone()
    }

    /// The first fault that applies to a call of `operation`, used up by one.
    pub(crate) fn take(&mut self, operation: &str) -> Option<FaultKind> {
        let i = self
            .0
            .iter()
            .position(|f| f.operation.as_deref().is_none_or(|op| op == operation))?;
        let kind = self.0[i].kind.clone();
        if let Some(n) = &mut self.0[i].count {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.0.remove(i);
            }
        }
        Some(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_command_line_forms() {
        let f = Fault::parse("CreateDiskSnapshot=latency:50ms").unwrap();
        assert_eq!(f.operation.as_deref(), Some("CreateDiskSnapshot"));
        assert_eq!(f.kind, FaultKind::Latency { ms: 50 });
        assert_eq!(f.count, None);
        let f = Fault::parse("error:ServiceException:boom@2").unwrap();
        assert_eq!(f.operation, None);
        assert_eq!(f.count, Some(2));
        assert_eq!(
            f.kind,
            FaultKind::Error {
                code: "ServiceException".into(),
                message: Some("boom".into()),
                status: None
            }
        );
        assert_eq!(Fault::parse("*=hang").unwrap().kind, FaultKind::Hang);
        // An `=` in a message is not an operation.
        let f = Fault::parse("error:InvalidInputException:tags=bad").unwrap();
        assert_eq!(f.operation, None);
        assert_eq!(
            f.kind,
            FaultKind::Error {
                code: "InvalidInputException".into(),
                message: Some("tags=bad".into()),
                status: None
            }
        );
        let f = Fault::parse("GetDisk=failed:Busy:a=b").unwrap();
        assert_eq!(f.operation.as_deref(), Some("GetDisk"));
        assert!(Fault::parse("GetDisk=explode").is_err());
        assert!(Fault::parse("latency").is_err());
        assert!(Fault::parse("hang@x").is_err());
    }

    #[test]
    fn counted_faults_are_used_up_in_order() {
        let mut faults = Faults::default();
        faults.add(Fault::parse("GetDisk=throttle@2").unwrap());
        faults.add(Fault::parse("hang").unwrap());
        assert_eq!(faults.take("GetDisk"), Some(FaultKind::Throttle));
        assert_eq!(faults.take("GetDisk"), Some(FaultKind::Throttle));
        assert_eq!(faults.take("GetDisk"), Some(FaultKind::Hang));
        assert_eq!(faults.take("GetInstances"), Some(FaultKind::Hang));
        faults.clear();
        assert_eq!(faults.take("GetDisk"), None);
    }

    /// The admin endpoint's JSON, as the README documents it.
    #[test]
    fn faults_read_as_documented_json() {
        let kinds = [
            (
                r#"{"type": "error", "code": "ServiceException", "message": "boom"}"#,
                "error:ServiceException:boom",
            ),
            (r#"{"type": "latency", "ms": 800}"#, "latency:800ms"),
            (r#"{"type": "hang"}"#, "hang"),
            (r#"{"type": "throttle"}"#, "throttle"),
            (r#"{"type": "status500"}"#, "500"),
            (r#"{"type": "reset"}"#, "reset"),
            (
                r#"{"type": "failed_operation", "code": "Busy", "details": "in use"}"#,
                "failed:Busy:in use",
            ),
            (r#"{"type": "snapshot_error"}"#, "snapshot-error"),
            (r#"{"type": "corrupt_disk"}"#, "corrupt-disk"),
        ];
        for (json, spec) in kinds {
            let doc =
                format!(r#"{{"operation": "CreateDiskSnapshot", "kind": {json}, "count": 1}}"#);
            let fault: Fault = serde_json::from_str(&doc).unwrap();
            assert_eq!(
                fault,
                Fault::parse(&format!("CreateDiskSnapshot={spec}@1")).unwrap(),
                "{json}"
            );
        }
        let bare: Fault = serde_json::from_str(r#"{"kind": {"type": "hang"}}"#).unwrap();
        assert_eq!(bare, Fault::parse("hang").unwrap());
    }

    #[test]
    fn faults_round_trip_through_json() {
        let f = Fault::parse("CreateDiskSnapshot=failed:DiskBusy:in use@1").unwrap();
        let json = serde_json::to_string(&f).unwrap();
        assert_eq!(serde_json::from_str::<Fault>(&json).unwrap(), f);
    }
}
