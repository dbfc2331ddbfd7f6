//! Name lookups, as far as a test can see them from outside the client: every time a process
//! opens the files glibc reads to resolve a host name (`/etc/hosts` for every lookup through
//! nss `files`, `/etc/resolv.conf` when it loads the DNS configuration), with its pid and the
//! time, through fanotify (root only).
//!
//! The fake cannot see a lookup on the wire: a name resolved through `/etc/hosts` never leaves
//! the client. So for "no DNS lookup between FIFREEZE and FITHAW", give the client an endpoint
//! whose host name `/etc/hosts` resolves (`localhost`, or a name added there) and count the
//! opens of `/etc/hosts` by its pid in that window. Times are on the fake's clocks (monotonic
//! since it started, and Unix), taken when the watcher reads the event: microseconds late at
//! worst, never early.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The files watched: those glibc opens to resolve a name.
pub const WATCHED: [&str; 2] = ["/etc/hosts", "/etc/resolv.conf"];

/// One open of a watched file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lookup {
    /// The process that opened it.
    pub pid: u32,
    /// The file.
    pub path: String,
    /// When (monotonic microseconds since the fake started).
    pub mono_us: u64,
    /// When (Unix microseconds).
    pub unix_us: u64,
}

/// A running watch; stops when dropped.
pub(crate) struct Watch {
    seen: Arc<Mutex<Vec<Lookup>>>,
    stop: OwnedFd,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn last_error(what: &str) -> std::io::Error {
    let e = std::io::Error::last_os_error();
    std::io::Error::new(e.kind(), format!("{what}: {e}"))
}

impl Watch {
    /// Starts watching [`WATCHED`] (those that exist), timing events from `started`.
    pub(crate) fn start(started: Instant) -> std::io::Result<Self> {
        // SAFETY: plain syscalls on descriptors this function owns.
        let fan = unsafe {
            libc::fanotify_init(
                libc::FAN_CLASS_NOTIF | libc::FAN_CLOEXEC,
                (libc::O_RDONLY | libc::O_CLOEXEC) as u32,
            )
        };
        if fan < 0 {
            return Err(last_error(
                "fanotify_init (watching name lookups needs root)",
            ));
        }
        // SAFETY: fanotify_init returned a new descriptor.
        let fan = unsafe { OwnedFd::from_raw_fd(fan) };
        let mut marked = 0;
        for path in WATCHED {
            if !std::path::Path::new(path).exists() {
                continue;
            }
            let c = CString::new(path).unwrap();
            // SAFETY: a valid descriptor and a NUL-terminated path.
            let r = unsafe {
                libc::fanotify_mark(
                    fan.as_raw_fd(),
                    libc::FAN_MARK_ADD,
                    libc::FAN_OPEN,
                    libc::AT_FDCWD,
                    c.as_ptr(),
                )
            };
            if r < 0 {
                return Err(last_error(&format!("fanotify_mark {path}")));
            }
            marked += 1;
        }
        if marked == 0 {
            return Err(std::io::Error::other(
                "none of /etc/hosts, /etc/resolv.conf exists",
            ));
        }
        let mut pipe = [0; 2];
        // SAFETY: pipe2 fills two descriptors on success.
        if unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
            return Err(last_error("pipe2"));
        }
        // SAFETY: both are new descriptors this function owns.
        let (stopped, stop) =
            unsafe { (OwnedFd::from_raw_fd(pipe[0]), OwnedFd::from_raw_fd(pipe[1])) };
        let seen = Arc::new(Mutex::new(Vec::new()));
        let into = seen.clone();
        let thread = std::thread::Builder::new()
            .name("fake-lightsail-lookups".into())
            .spawn(move || watch(fan, stopped, started, into))?;
        Ok(Self {
            seen,
            stop,
            thread: Some(thread),
        })
    }

    /// Every open seen so far.
    pub(crate) fn seen(&self) -> Vec<Lookup> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        // SAFETY: one byte to our own pipe wakes the watcher up.
        unsafe { libc::write(self.stop.as_raw_fd(), b"x".as_ptr().cast(), 1) };
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads fanotify events until `stopped` becomes readable.
fn watch(fan: OwnedFd, stopped: OwnedFd, started: Instant, into: Arc<Mutex<Vec<Lookup>>>) {
    let mut buf = vec![0u8; 8192];
    loop {
        let mut fds = [
            libc::pollfd {
                fd: fan.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: stopped.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: two valid pollfds.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        if fds[1].revents != 0 {
            return;
        }
        // SAFETY: reading into a buffer of its length.
        let len = unsafe { libc::read(fan.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if len <= 0 {
            continue;
        }
        let mono_us = started.elapsed().as_micros() as u64;
        let unix_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros() as u64;
        let size = std::mem::size_of::<libc::fanotify_event_metadata>();
        let mut at = 0usize;
        while at + size <= len as usize {
            // SAFETY: the kernel wrote whole events; read_unaligned copes with the offset.
            let ev: libc::fanotify_event_metadata =
                unsafe { std::ptr::read_unaligned(buf[at..].as_ptr().cast()) };
            if ev.event_len as usize == 0 {
                break;
            }
            if ev.fd >= 0 {
                // SAFETY: the event's descriptor is ours to close.
                let file = unsafe { OwnedFd::from_raw_fd(ev.fd) };
                let path = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
                    .map(|p| p.display().to_string())
                    .unwrap_or_default();
                into.lock().unwrap().push(Lookup {
                    pid: ev.pid as u32,
                    path,
                    mono_us,
                    unix_us,
                });
            }
            at += ev.event_len as usize;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sees_this_process_resolve_a_name_through_etc_hosts() {
        if unsafe { libc::geteuid() } != 0 {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI runs as root: fanotify needs it"
            );
            eprintln!("skipping: fanotify needs root");
            return;
        }
        let w = Watch::start(Instant::now()).unwrap();
        use std::net::ToSocketAddrs;
        let _ = ("localhost", 80).to_socket_addrs().unwrap().count();
        // The event is read on the watcher's thread: wait for it, bounded.
        let until = Instant::now() + std::time::Duration::from_secs(10);
        let me = std::process::id();
        while !w
            .seen()
            .iter()
            .any(|l| l.pid == me && l.path == "/etc/hosts")
        {
            assert!(
                Instant::now() < until,
                "no open of /etc/hosts seen: {:?}",
                w.seen()
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}
