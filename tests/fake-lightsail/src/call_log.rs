//! The suite-wide call log: with [`CALL_LOG_DIR_ENV`] set, every fake (in a test process or
//! the `fake-lightsail` binary) appends one JSON line per Lightsail API call it served to a
//! file of its own in that directory (`<pid>-<n>.jsonl`: many fakes write at once, none
//! shares a file; each line is one `write`). A line says who called — the instance the
//! metadata service says lightsnap runs on, and the access key — and what the IAM policy
//! would see of the call ([`crate::policy::Request`]: the action, the resource's ARN, the
//! request's and the named resource's tags). The `fake-lightsail-check-calls` binary reads
//! them all after the suite and judges each against `lightsnap iam-policy` (its rules are in
//! its own documentation).

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::policy::Request;

/// The directory the call logs go to; unset: none is written.
pub const CALL_LOG_DIR_ENV: &str = "FAKE_LIGHTSAIL_CALL_LOG_DIR";

/// One API call, as the log records it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// The operation (`DeleteDisk`).
    pub operation: String,
    /// The region the call was signed for (the state that served it).
    pub region: String,
    /// The fake's home region (the region of the instance its metadata service describes).
    pub home_region: String,
    /// The access key that signed it: the tests' thief and administrator calls use keys of
    /// their own ([`crate::THIEF_ACCESS_KEY`], [`crate::ADMIN_ACCESS_KEY`]).
    pub access_key: String,
    /// Whether lightsnap made it (its SDK client's user agent names `app/lightsnap`); other
    /// calls are the tests' own (their SDK clients, the AWS CLI).
    pub lightsnap: bool,
    /// `REGION/INSTANCE` of the instance the metadata service says the caller runs on; `None`
    /// when it names no instance of the fake's (an administrator's machine).
    pub caller: Option<String>,
    /// What the policy sees of the call.
    pub request: Request,
    /// The call names a resource that did not exist when it came (no resource tags to see).
    pub resource_missing: bool,
    /// The decision of the policy the test had the fake enforce, if any
    /// (`Allow`, `ExplicitDeny`, `ImplicitDeny`).
    pub enforced: Option<String>,
}

/// Who signed a call: its access key, and whether it is lightsnap's client.
pub(crate) struct Client {
    /// The access key id.
    pub access_key: String,
    /// The user agent names `app/lightsnap`.
    pub lightsnap: bool,
}

/// The open log of one fake.
pub(crate) struct CallLog {
    file: Mutex<std::fs::File>,
    /// Where it is.
    pub path: PathBuf,
}

impl CallLog {
    /// A new file in [`CALL_LOG_DIR_ENV`]'s directory, if it is set.
    pub(crate) fn from_env() -> std::io::Result<Option<Self>> {
        let Some(dir) = std::env::var_os(CALL_LOG_DIR_ENV).filter(|d| !d.is_empty()) else {
            return Ok(None);
        };
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = PathBuf::from(dir);
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!(
            "{}-{}.jsonl",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let file = std::fs::OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)?;
        Ok(Some(Self {
            file: Mutex::new(file),
            path,
        }))
    }

    /// Appends `record` as one line, in one write.
    pub(crate) fn append(&self, record: &Record) {
        let mut line = serde_json::to_vec(record).expect("a record serializes");
        line.push(b'\n');
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = file.write_all(&line) {
            eprintln!(
                "fake-lightsail: writing the call log {}: {e}",
                self.path.display()
            );
        }
    }
}

/// The access key id of a SigV4 `Authorization` header (`... Credential=AKID/date/...`).
pub(crate) fn access_key(authorization: &str) -> Option<String> {
    let credential = authorization.split("Credential=").nth(1)?;
    credential.split('/').next().map(str::to_string)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_access_key_is_read_from_the_authorization_header() {
        assert_eq!(
            super::access_key("AWS4-HMAC-SHA256 Credential=AKIDX/20261207/us-east-1/lightsail/aws4_request, SignedHeaders=host, Signature=ab").as_deref(),
            Some("AKIDX")
        );
        assert_eq!(super::access_key("Basic x"), None);
    }
}
