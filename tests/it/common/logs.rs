//! The log lines the servers in this test process write, captured at debug
//! level from every crate (the leak test searches them); warnings and
//! errors are also copied to stderr, where a failing test shows them.
//!
//! Bounded: a full run against all three backends writes about 30 MB of
//! debug lines, and keeping them all only cost memory. At most
//! [`KEPT_BYTES`] (8 MiB, some ten seconds of the whole suite's logging)
//! are kept; past that the oldest lines are dropped, and counted.
//!
//! The one reader, the leak test, must not pass because its own lines were
//! dropped before it searched them. So it reads a [`Window`]: the lines
//! written from the moment it opened one. An open window pins its lines:
//! dropping stops at the first line of the oldest open window, however much
//! the rest of the suite logs meanwhile, so the bound is exceeded only
//! while a window is open, by what the process logs in that time (the leak
//! test runs for a second or two). [`Window::read`] checks that none of its
//! lines is gone all the same, rather than trusting the pin.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::sync::{Mutex, MutexGuard, Once, PoisonError};

/// How many bytes of log lines are kept outside open windows.
pub const KEPT_BYTES: usize = 8 << 20;

/// The captured lines, oldest first; a line is numbered by its place in
/// everything ever written.
struct Log {
    /// The bound: [`KEPT_BYTES`].
    kept: usize,
    lines: VecDeque<Vec<u8>>,
    bytes: usize,
    /// The number of `lines[0]`: how many were written before it, and
    /// dropped.
    first: u64,
    dropped_bytes: u64,
    /// The first line of each open window, with how many windows start there.
    pins: BTreeMap<u64, usize>,
}

static LOG: Mutex<Log> = Mutex::new(Log::new(KEPT_BYTES));

/// The log, even if a test panicked while holding it (its lines are still
/// whole: nothing here panics half-way through a change).
fn log() -> MutexGuard<'static, Log> {
    LOG.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Log {
    const fn new(kept: usize) -> Self {
        Self {
            kept,
            lines: VecDeque::new(),
            bytes: 0,
            first: 0,
            dropped_bytes: 0,
            pins: BTreeMap::new(),
        }
    }

    fn push(&mut self, line: &[u8]) {
        self.bytes += line.len();
        self.lines.push_back(line.to_vec());
        self.trim();
    }

    /// Drops the oldest lines down to the bound, but none an open window
    /// holds.
    fn trim(&mut self) {
        let pinned = self.pins.keys().next().copied().unwrap_or(u64::MAX);
        while self.bytes > self.kept && self.first < pinned {
            let Some(line) = self.lines.pop_front() else {
                break;
            };
            self.bytes -= line.len();
            self.first += 1;
            self.dropped_bytes += line.len() as u64;
        }
    }

    /// Opens a window at the next line; returns that line's number.
    fn open(&mut self) -> u64 {
        let start = self.first + self.lines.len() as u64;
        *self.pins.entry(start).or_default() += 1;
        start
    }

    fn close(&mut self, start: u64) {
        if let Some(count) = self.pins.get_mut(&start) {
            *count -= 1;
            if *count == 0 {
                self.pins.remove(&start);
            }
        }
        self.trim();
    }

    /// The lines from number `start` on; `None` if some of them are gone.
    fn since(&self, start: u64) -> Option<Vec<u8>> {
        let skip = usize::try_from(start.checked_sub(self.first)?).ok()?;
        Some(self.lines.iter().skip(skip).flatten().copied().collect())
    }
}

/// The subscriber's writer: one `write` per event.
struct Capture;

impl Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if let Ok(line) = std::str::from_utf8(bytes) {
            if line.contains(" WARN ") || line.contains(" ERROR ") {
                eprint!("{line}");
            }
        }
        log().push(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the capturing subscriber, once per process.
pub fn install() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter("debug")
            .with_ansi(false)
            .with_writer(|| Capture)
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
    });
}

/// The lines written from now on, kept until the window is dropped.
pub fn window() -> Window {
    install();
    Window {
        start: log().open(),
    }
}

pub struct Window {
    start: u64,
}

impl Window {
    /// Every line written since the window opened, by every thread of the
    /// process.
    pub fn read(&self) -> Vec<u8> {
        let log = log();
        let lines = log.since(self.start);
        let (first, dropped) = (log.first, log.dropped_bytes);
        drop(log);
        lines.unwrap_or_else(|| {
            panic!(
                "lines from {} on were dropped while a window held them (first kept: {first}, \
                 {dropped} bytes dropped in all)",
                self.start
            )
        })
    }
}

impl Drop for Window {
    fn drop(&mut self) {
        log().close(self.start);
    }
}

#[test]
fn a_window_keeps_its_lines_however_much_is_logged_after_them() {
    let mut log = Log::new(10);
    log.push(b"before\n");
    log.push(b"dropped\n");
    assert_eq!(log.since(0), None, "the bound was not kept");
    assert_eq!(log.since(1).unwrap(), b"dropped\n");
    let start = log.open();
    for _ in 0..100 {
        log.push(b"held\n");
    }
    assert_eq!(log.since(start).unwrap(), b"held\n".repeat(100));
    assert_eq!(log.dropped_bytes, 15);
    log.close(start);
    assert_eq!(log.since(start), None);
    assert!(log.bytes <= 10);
    assert_eq!(log.dropped_bytes, 15 + 500 - 10);
}
