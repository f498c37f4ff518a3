//! Logging setup: human-readable lines by default, JSON on request.
//!
//! Every line passes through a scrubber that replaces the secrets the
//! process was configured with (the database URL's password and password
//! parameters) with `*****`, so a dependency that logs part of its
//! configuration (sqlx warns about connect parameters it does not know,
//! with their values) cannot put one in a log.

use std::io::{self, Write};
use std::sync::Arc;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::config::{Config, LogFormat};

/// Installs the global subscriber. Logs go to stderr, so stdout stays clean
/// for commands whose output is meant to be piped.
pub fn init(config: &Config) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let filter = EnvFilter::try_new(&config.log.filter)?;
    // The secrets are found once, not for every line.
    let scrubber = config.database_url.scrubber();
    let writer = Scrubbed {
        scrub: Arc::new(move |line: &str| scrubber.scrub(line)),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        // Colour codes only help a person at a terminal; in files and
        // collectors they are noise.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match config.log.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    }
}

/// Writes log lines to stderr, scrubbed.
#[derive(Clone)]
struct Scrubbed {
    scrub: Arc<dyn Fn(&str) -> String + Send + Sync>,
}

/// One event's formatted bytes, scrubbed and written when it is done.
struct Line {
    scrub: Arc<dyn Fn(&str) -> String + Send + Sync>,
    buffer: Vec<u8>,
}

impl<'a> MakeWriter<'a> for Scrubbed {
    type Writer = Line;

    fn make_writer(&'a self) -> Self::Writer {
        Line {
            scrub: Arc::clone(&self.scrub),
            buffer: Vec::with_capacity(256),
        }
    }
}

impl Write for Line {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.buffer);
        let _ = io::stderr().write_all((self.scrub)(&text).as_bytes());
    }
}
