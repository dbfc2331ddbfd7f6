//! Log output that can be held: while a filesystem is frozen nothing may write to it, and the
//! agent's own stderr may be a file on it (or a pipe into `tee` writing there). Every log line
//! goes through [`LogWriter`]; between [`hold`] and [`release`] lines are kept in memory and
//! emitted, in order, once the filesystem is thawed.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

static HELD: AtomicBool = AtomicBool::new(false);
static BUFFER: Mutex<Vec<u8>> = Mutex::new(Vec::new());

/// Starts holding log output in memory.
pub fn hold() {
    HELD.store(true, Ordering::SeqCst);
}

/// Stops holding and writes out what was held.
pub fn release() {
    // Take the lock before clearing the flag so that no line can slip past the held ones.
    let mut buffer = BUFFER.lock().unwrap_or_else(|p| p.into_inner());
    HELD.store(false, Ordering::SeqCst);
    let _ = io::stderr().write_all(&buffer);
    buffer.clear();
    buffer.shrink_to_fit();
    drop(buffer);
    crate::journal::release_held();
}

/// Whether output is being held.
pub fn is_held() -> bool {
    HELD.load(Ordering::SeqCst)
}

/// The writer the tracing subscriber writes through.
#[derive(Debug, Default, Clone, Copy)]
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if is_held() {
            let mut buffer = BUFFER.lock().unwrap_or_else(|p| p.into_inner());
            if is_held() {
                buffer.extend_from_slice(buf);
                return Ok(buf.len());
            }
        }
        io::stderr().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        if is_held() {
            Ok(())
        } else {
            io::stderr().flush()
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;
    fn make_writer(&'a self) -> Self::Writer {
        LogWriter
    }
}
