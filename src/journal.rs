//! Logging to the systemd journal when stderr is the journal (`JOURNAL_STREAM` names the
//! device and inode of stderr): each event is one datagram of the journal's native protocol
//! with its priority (errors at `err`, warnings at `warning`) and structured fields
//! (`MESSAGE_ID` per event kind, `LIGHTSNAP_SNAPSHOT`, `LIGHTSNAP_DISK`,
//! `LIGHTSNAP_WINDOW_MS`, `LIGHTSNAP_EXIT`), so that `journalctl -p err` finds a failed run and
//! `journalctl MESSAGE_ID=...` each snapshot.
//!
//! The hold-while-frozen rule of [`crate::logbuf`] applies here too: the journal is a socket,
//! not a file, but one rule everywhere is easier to trust than an exception. Between
//! [`logbuf::hold`](crate::logbuf::hold) and [`logbuf::release`](crate::logbuf::release) the
//! datagrams are kept in memory and sent, in order, once everything is thawed.

use std::fmt::Write as _;
use std::os::unix::net::UnixDatagram;
use std::sync::{Mutex, OnceLock};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

/// The journal's native socket.
pub const SOCKET: &str = "/run/systemd/journal/socket";

/// `MESSAGE_ID` of a snapshot taken (`event = "snapshot"`).
pub const MESSAGE_SNAPSHOT: &str = "6c5e1b0f3a4d4f1e9b7a2c8d0e1f2a3b";
/// `MESSAGE_ID` of a run that failed (`event = "failed"`): the error line, at `err`.
pub const MESSAGE_FAILED: &str = "a1f0c9e84b2d4c7f8e6d5c4b3a291807";
/// `MESSAGE_ID` of a run that succeeded (`event = "succeeded"`).
pub const MESSAGE_SUCCEEDED: &str = "3d2c1b0a99884f7e8d6c5b4a39281716";

/// The `MESSAGE_ID` of an event kind (the `event` field), if it has one.
pub fn message_id(event: &str) -> Option<&'static str> {
    match event {
        "snapshot" => Some(MESSAGE_SNAPSHOT),
        "failed" => Some(MESSAGE_FAILED),
        "succeeded" => Some(MESSAGE_SUCCEEDED),
        _ => None,
    }
}

/// The syslog priority of a tracing level: errors at `err` (3), warnings at `warning` (4),
/// information at `info` (6), the rest at `debug` (7).
pub fn priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// Whether stderr is the journal: `JOURNAL_STREAM` set to `DEV:INODE` and matching stderr.
pub fn stderr_is_journal() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(st) = nix::sys::stat::fstat(std::io::stderr()) else {
        return false;
    };
    matches_stream(&stream.to_string_lossy(), st.st_dev, st.st_ino)
}

/// Whether `JOURNAL_STREAM`'s value names the file `(dev, ino)`.
pub fn matches_stream(value: &str, dev: u64, ino: u64) -> bool {
    let mut parts = value.trim().splitn(2, ':');
    let (Some(d), Some(i)) = (parts.next(), parts.next()) else {
        return false;
    };
    d.parse::<u64>() == Ok(dev) && i.parse::<u64>() == Ok(ino)
}

/// Fields of one journal entry, in the native protocol (binary-safe form for multi-line
/// values).
#[derive(Debug, Default, Clone)]
pub struct Entry(Vec<u8>);

impl Entry {
    /// Appends `KEY=value`.
    pub fn field(&mut self, key: &str, value: &str) {
        if value.contains('\n') {
            self.0.extend_from_slice(key.as_bytes());
            self.0.push(b'\n');
            self.0
                .extend_from_slice(&(value.len() as u64).to_le_bytes());
            self.0.extend_from_slice(value.as_bytes());
            self.0.push(b'\n');
        } else {
            self.0
                .extend_from_slice(format!("{key}={value}\n").as_bytes());
        }
    }

    /// The datagram.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

static ACTIVE: OnceLock<bool> = OnceLock::new();
static HELD: Mutex<Vec<Entry>> = Mutex::new(Vec::new());

/// Turns journal output on (`main`, when [`stderr_is_journal`]).
pub fn activate() {
    let _ = ACTIVE.set(true);
}

/// Whether log output goes to the journal.
pub fn is_active() -> bool {
    ACTIVE.get().copied().unwrap_or(false)
}

/// Sends an entry, or holds it while output is held; falls back to stderr if the journal's
/// socket refuses it (a lost line is worse than a line without fields).
pub fn send(entry: Entry, fallback: &str) {
    if crate::logbuf::is_held() {
        let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
        if crate::logbuf::is_held() {
            held.push(entry);
            return;
        }
    }
    deliver(&entry, fallback);
}

/// The socket entries go to: [`SOCKET`], or in a build with the test switches
/// ([`crate::test_switch`]) `LIGHTSNAP_JOURNAL_SOCKET` (the tests stand in for journald with
/// a socket of their own).
fn socket() -> std::path::PathBuf {
    crate::test_switch!("LIGHTSNAP_JOURNAL_SOCKET")
        .map(Into::into)
        .unwrap_or_else(|| SOCKET.into())
}

fn deliver(entry: &Entry, fallback: &str) {
    let sent = UnixDatagram::unbound().and_then(|s| s.send_to(entry.bytes(), socket()));
    if sent.is_err() {
        eprintln!("{fallback}");
    }
}

/// Sends what was held (called by [`logbuf::release`](crate::logbuf::release)).
pub fn release_held() {
    let held = std::mem::take(&mut *HELD.lock().unwrap_or_else(|p| p.into_inner()));
    for entry in &held {
        let message = String::from_utf8_lossy(entry.bytes()).into_owned();
        deliver(entry, &message);
    }
}

/// The last line of a failed run (`lightsnap: error: ...`): on the journal at `err` with
/// `LIGHTSNAP_EXIT`, elsewhere on stderr as always.
pub fn error_line(message: &str, exit: i32) {
    let line = format!("lightsnap: error: {message}");
    if !is_active() {
        eprintln!("{line}");
        return;
    }
    let mut e = Entry::default();
    e.field("MESSAGE", &line);
    e.field("PRIORITY", "3");
    e.field("MESSAGE_ID", MESSAGE_FAILED);
    e.field("LIGHTSNAP_EXIT", &exit.to_string());
    e.field("SYSLOG_IDENTIFIER", "lightsnap");
    send(e, &line);
}

/// The tracing layer writing to the journal.
#[derive(Debug, Default, Clone, Copy)]
pub struct JournalLayer;

/// Collects an event's message and the fields the journal gets.
#[derive(Default)]
struct Fields {
    message: String,
    extra: Vec<(&'static str, String)>,
    event: Option<String>,
    /// An explicit syslog priority (`priority = 2` for crit), above the level's.
    priority: Option<u8>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        self.record(field, text);
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.record(field, value.to_string());
    }
}

impl Fields {
    fn record(&mut self, field: &Field, text: String) {
        let key = match field.name() {
            "message" => {
                self.message = text;
                return;
            }
            "event" => {
                self.event = Some(text);
                return;
            }
            "priority" => {
                self.priority = text.parse().ok();
                return;
            }
            "snapshot" => "LIGHTSNAP_SNAPSHOT",
            "disk" => "LIGHTSNAP_DISK",
            "window_ms" => "LIGHTSNAP_WINDOW_MS",
            "exit" => "LIGHTSNAP_EXIT",
            other => {
                let _ = write!(self.message, " {other}={text}");
                return;
            }
        };
        self.extra.push((key, text));
    }
}

impl<S: Subscriber> Layer<S> for JournalLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let level = event.metadata().level();
        let mut e = Entry::default();
        e.field("MESSAGE", &fields.message);
        let prio = fields.priority.unwrap_or_else(|| priority(level));
        e.field("PRIORITY", &prio.to_string());
        e.field("SYSLOG_IDENTIFIER", "lightsnap");
        if let Some(id) = fields.event.as_deref().and_then(message_id) {
            e.field("MESSAGE_ID", id);
        }
        for (k, v) in &fields.extra {
            e.field(k, v);
        }
        let fallback = format!("{:>5} {}", level, fields.message);
        send(e, &fallback);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_go_at_err_and_warnings_at_warning() {
        assert_eq!(priority(&Level::ERROR), 3);
        assert_eq!(priority(&Level::WARN), 4);
        assert_eq!(priority(&Level::INFO), 6);
        assert_eq!(priority(&Level::DEBUG), 7);
        assert_eq!(priority(&Level::TRACE), 7);
    }

    /// `priority = 2` on an event (a copy of the system disk attached) sends it at crit, above
    /// its level's err.
    #[test]
    fn an_explicit_priority_outranks_the_level() {
        use std::sync::{Arc, Mutex};
        use tracing_subscriber::layer::SubscriberExt;
        struct Capture(Arc<Mutex<Vec<Option<u8>>>>);
        impl<S: Subscriber> Layer<S> for Capture {
            fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
                let mut fields = Fields::default();
                event.record(&mut fields);
                self.0.lock().unwrap().push(fields.priority);
            }
        }
        let seen = Arc::new(Mutex::new(Vec::new()));
        let subscriber = tracing_subscriber::registry().with(Capture(seen.clone()));
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!(priority = 2, "a copy of the system disk is attached");
            tracing::error!("a plain error");
        });
        assert_eq!(*seen.lock().unwrap(), [Some(2), None]);
    }

    #[test]
    fn every_event_kind_has_its_own_message_id() {
        let ids: Vec<&str> = ["snapshot", "failed", "succeeded"]
            .iter()
            .map(|k| message_id(k).unwrap())
            .collect();
        for (i, id) in ids.iter().enumerate() {
            // 128-bit ids, as journalctl MESSAGE_ID= expects: 32 lowercase hex digits.
            assert_eq!(id.len(), 32, "{id}");
            assert!(id
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
            assert!(!ids[..i].contains(id), "{id} used twice");
        }
        assert_eq!(message_id("something else"), None);
    }

    #[test]
    fn journal_stream_must_name_stderr() {
        assert!(matches_stream("8:12345", 8, 12345));
        assert!(matches_stream("8:12345\n", 8, 12345));
        assert!(!matches_stream("8:12346", 8, 12345));
        assert!(!matches_stream("8", 8, 12345));
        assert!(!matches_stream("", 8, 12345));
    }

    #[test]
    fn multi_line_values_use_the_binary_safe_form() {
        let mut e = Entry::default();
        e.field("MESSAGE", "one line");
        e.field("MESSAGE", "two\nlines");
        let mut want = b"MESSAGE=one line\nMESSAGE\n".to_vec();
        want.extend_from_slice(&9u64.to_le_bytes());
        want.extend_from_slice(b"two\nlines\n");
        assert_eq!(e.bytes(), &want[..]);
    }

    /// An entry sent to the machine's journal socket is accepted (skipped, saying why, where
    /// there is no journald).
    #[test]
    fn the_journal_accepts_an_entry() {
        if !std::path::Path::new(SOCKET).exists() {
            eprintln!("skipped: no journald socket at {SOCKET} on this machine");
            return;
        }
        let mut e = Entry::default();
        e.field("MESSAGE", "lightsnap unit test");
        e.field("PRIORITY", "7");
        let s = UnixDatagram::unbound().unwrap();
        assert_eq!(s.send_to(e.bytes(), SOCKET).unwrap(), e.bytes().len());
    }
}
