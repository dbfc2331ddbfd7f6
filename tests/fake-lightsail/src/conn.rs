//! Connection records: every TCP connection the fake accepted (its id, the client's port,
//! whether and when a TLS handshake happened on it, how many requests it served), and for each
//! request, which connection it came on and how many that connection had served before.
//!
//! That is what lets a test see whether a client reused a warm connection or paid for a new
//! one (TCP, and over TLS a handshake) at a moment that matters. Times are given twice:
//! monotonic microseconds since the fake started (to order and subtract) and Unix microseconds
//! (to compare with other processes' clocks).

use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// One accepted TCP connection, as it stands now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    /// Its id: 1 for the first connection the fake accepted, then counting up.
    pub id: u64,
    /// The client's port.
    pub client_port: u16,
    /// Whether a TLS handshake completed on it (TLS mode, https clients).
    pub tls: bool,
    /// When it was accepted: microseconds since the fake started (monotonic).
    pub accepted_mono_us: u64,
    /// When it was accepted: microseconds since the Unix epoch.
    pub accepted_unix_us: u64,
    /// When its TLS handshake completed (monotonic, as `accepted_mono_us`).
    pub handshake_mono_us: Option<u64>,
    /// When its TLS handshake completed, in Unix microseconds.
    pub handshake_unix_us: Option<u64>,
    /// Requests it has served (all kinds: API, metadata, admin).
    pub requests: u64,
    /// When it ended (monotonic): the client closed it, or the fake did (idle timeout).
    pub closed_mono_us: Option<u64>,
}

/// The connection a request came on, as it stood when the request arrived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestConnection {
    /// The connection's id ([`Connection::id`]).
    pub id: u64,
    /// The client's port.
    pub client_port: u16,
    /// Requests that connection had served before this one (0: a fresh connection, opened for
    /// this request as far as the fake can tell).
    pub requests_before: u64,
    /// Whether a TLS handshake was made on that connection.
    pub tls: bool,
    /// When the connection was accepted (monotonic microseconds since the fake started).
    pub accepted_mono_us: u64,
    /// When the connection was accepted (Unix microseconds).
    pub accepted_unix_us: u64,
    /// When its TLS handshake completed (monotonic).
    pub handshake_mono_us: Option<u64>,
    /// When its TLS handshake completed (Unix microseconds).
    pub handshake_unix_us: Option<u64>,
}

impl RequestConnection {
    /// Whether the request came on a connection that had already served one: no connect and
    /// no handshake was needed for it.
    pub fn reused(&self) -> bool {
        self.requests_before > 0
    }
}

/// Totals since the fake started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ConnectionStats {
    /// TCP connections accepted.
    pub connections: u64,
    /// TLS handshakes completed.
    pub tls_handshakes: u64,
    /// TLS handshakes that failed (a client that does not trust the certificate, say).
    pub failed_handshakes: u64,
}

/// Every connection so far, and the clocks they are timed with.
pub(crate) struct Registry {
    started: Instant,
    list: Mutex<Vec<Connection>>,
    failed_handshakes: Mutex<u64>,
}

fn unix_us(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_micros() as u64
}

impl Registry {
    pub(crate) fn new() -> Self {
        Self {
            started: Instant::now(),
            list: Mutex::new(Vec::new()),
            failed_handshakes: Mutex::new(0),
        }
    }

    /// When the fake started: the origin of its monotonic times.
    pub(crate) fn started(&self) -> Instant {
        self.started
    }

    /// Microseconds since the fake started.
    pub(crate) fn mono_us(&self) -> u64 {
        self.started.elapsed().as_micros() as u64
    }

    /// A connection was accepted: its id.
    pub(crate) fn accepted(&self, client_port: u16) -> u64 {
        let mono = self.mono_us();
        let unix = unix_us(SystemTime::now());
        let mut list = self.list.lock().unwrap();
        let id = list.len() as u64 + 1;
        list.push(Connection {
            id,
            client_port,
            tls: false,
            accepted_mono_us: mono,
            accepted_unix_us: unix,
            handshake_mono_us: None,
            handshake_unix_us: None,
            requests: 0,
            closed_mono_us: None,
        });
        id
    }

    /// Its TLS handshake completed.
    pub(crate) fn handshake(&self, id: u64) {
        let mono = self.mono_us();
        let unix = unix_us(SystemTime::now());
        if let Some(c) = self.list.lock().unwrap().get_mut(id as usize - 1) {
            c.tls = true;
            c.handshake_mono_us = Some(mono);
            c.handshake_unix_us = Some(unix);
        }
    }

    /// It ended.
    pub(crate) fn closed(&self, id: u64) {
        let mono = self.mono_us();
        if let Some(c) = self.list.lock().unwrap().get_mut(id as usize - 1) {
            c.closed_mono_us = Some(mono);
        }
    }

    /// A TLS handshake failed.
    pub(crate) fn handshake_failed(&self) {
        *self.failed_handshakes.lock().unwrap() += 1;
    }

    /// A request arrived on connection `id`: what it came on.
    pub(crate) fn request(&self, id: u64) -> Option<RequestConnection> {
        let mut list = self.list.lock().unwrap();
        let c = list.get_mut(id as usize - 1)?;
        let before = c.requests;
        c.requests += 1;
        Some(RequestConnection {
            id: c.id,
            client_port: c.client_port,
            requests_before: before,
            tls: c.tls,
            accepted_mono_us: c.accepted_mono_us,
            accepted_unix_us: c.accepted_unix_us,
            handshake_mono_us: c.handshake_mono_us,
            handshake_unix_us: c.handshake_unix_us,
        })
    }

    /// Every connection so far, in the order they were accepted.
    pub(crate) fn list(&self) -> Vec<Connection> {
        self.list.lock().unwrap().clone()
    }

    /// The totals.
    pub(crate) fn stats(&self) -> ConnectionStats {
        let list = self.list.lock().unwrap();
        ConnectionStats {
            connections: list.len() as u64,
            tls_handshakes: list.iter().filter(|c| c.tls).count() as u64,
            failed_handshakes: *self.failed_handshakes.lock().unwrap(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_count_per_connection_and_handshakes_overall() {
        let r = Registry::new();
        let a = r.accepted(40000);
        let b = r.accepted(40001);
        r.handshake(b);
        r.handshake_failed();
        let first = r.request(a).unwrap();
        assert_eq!((first.id, first.requests_before, first.tls), (1, 0, false));
        assert!(!first.reused());
        let second = r.request(a).unwrap();
        assert_eq!(second.requests_before, 1);
        assert!(second.reused());
        let on_b = r.request(b).unwrap();
        assert_eq!((on_b.id, on_b.client_port, on_b.tls), (2, 40001, true));
        assert!(on_b.handshake_mono_us.unwrap() >= on_b.accepted_mono_us);
        assert_eq!(
            r.stats(),
            ConnectionStats {
                connections: 2,
                tls_handshakes: 1,
                failed_handshakes: 1
            }
        );
        assert_eq!(r.list()[0].requests, 2);
        assert_eq!(r.list()[0].closed_mono_us, None);
        r.closed(a);
        assert!(r.list()[0].closed_mono_us.is_some());
        assert!(r.request(99).is_none());
    }
}
