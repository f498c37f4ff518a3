//! `latchkey scan PATH…`: finds version 2 app passwords in files, offline,
//! for people with no secret scanner (`domain::secrets::scan` is the
//! matching; contrib/secret-scanning has the same for gitleaks and
//! detect-secrets).
//!
//! A find is printed as `path:line:column: latchkey app password lkab cdef…`:
//! its public id, which names the password for LookupAppPassword and
//! ReportLeakedSecrets, and never the rest of the secret, so the output
//! can go to a CI log without leaking what it found. `--report FILE`
//! writes the found secrets themselves, one per line, to a new file (0600)
//! for ReportLeakedSecrets.
//!
//! Exit status: 0 nothing found, 1 found something, 2 a path could not be
//! read (what could be read is still scanned and reported).

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use clap::Args;

use crate::domain::secrets::format::hint;
use crate::domain::secrets::scan::{candidates, MAX_CANDIDATE_LEN};

/// Find latchkey app passwords (version 2) in files, offline.
///
/// Reads every file under each PATH (directories recursively, symbolic
/// links not followed; "-" is standard input) and prints each secret whose
/// check letters hold as `path:line:column: latchkey app password lkab
/// cdef…`, by its public id only, never the secret. Exit status: 0 nothing
/// found, 1 found, 2 a path could not be read.
#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Files or directories to scan; "-" reads standard input.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Also print candidates whose check letters fail (a mistyped secret,
    /// or text that only looks like one), marked as such.
    #[arg(long)]
    pub show_failed_checks: bool,
    /// Write the found secrets, one per line, to this new file (0600), for
    /// ReportLeakedSecrets; an existing file is never overwritten.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
}

/// What one scan found, and read.
#[derive(Debug, Default)]
pub struct Totals {
    pub files: u64,
    pub bytes: u64,
    pub found: u64,
    pub failed_checks: u64,
    pub unreadable: u64,
}

/// Bytes read at a time: a file of any size is scanned in this much
/// memory.
const CHUNK: usize = 1 << 20;

pub fn run(args: &ScanArgs) -> io::Result<(Totals, bool)> {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let mut report = match &args.report {
        Some(path) => Some(create_private(path)?),
        None => None,
    };
    let mut totals = Totals::default();
    for path in &args.paths {
        let mut sink = Sink {
            out: &mut out,
            report: report.as_mut(),
            show_failed: args.show_failed_checks,
            totals: &mut totals,
        };
        if path.as_os_str() == "-" {
            sink.scan_reader(Path::new("-"), io::stdin().lock())?;
        } else {
            sink.walk_named(path)?;
        }
    }
    out.flush()?;
    if let Some(report) = report.as_mut() {
        report.sync_all()?;
    }
    let unreadable = totals.unreadable > 0;
    Ok((totals, unreadable))
}

fn create_private(path: &Path) -> io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

struct Sink<'a, W: Write> {
    out: &'a mut W,
    report: Option<&'a mut File>,
    show_failed: bool,
    totals: &'a mut Totals,
}

impl<W: Write> Sink<'_, W> {
    /// A path named on the command line: followed if it is a symbolic
    /// link, and read as a stream if it is a FIFO or a device (someone
    /// named it); a socket or the like is counted unreadable, never passed
    /// over in silence.
    fn walk_named(&mut self, path: &Path) -> io::Result<()> {
        let meta = match std::fs::metadata(path) {
            Ok(meta) => meta,
            Err(error) => return self.unreadable(path, &error),
        };
        if meta.is_dir() {
            return self.walk_dir(path);
        }
        if meta.is_file() {
            return self.scan_file(path);
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileTypeExt;
            let kind = meta.file_type();
            if kind.is_fifo() || kind.is_char_device() || kind.is_block_device() {
                return self.scan_file(path);
            }
        }
        let error = io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a file, a directory, a FIFO or a device",
        );
        self.unreadable(path, &error)
    }

    /// A path met inside a directory: files and directories are read;
    /// symbolic links and special files are passed over (as `grep -r`
    /// does), so a link cannot lead the scan out of the tree or into a
    /// loop, and a FIFO cannot hold it.
    fn walk(&mut self, path: &Path) -> io::Result<()> {
        let meta = match std::fs::symlink_metadata(path) {
            Ok(meta) => meta,
            Err(error) => return self.unreadable(path, &error),
        };
        if meta.is_dir() {
            self.walk_dir(path)
        } else if meta.is_file() {
            self.scan_file(path)
        } else {
            Ok(())
        }
    }

    /// A directory's entries, in order.
    fn walk_dir(&mut self, path: &Path) -> io::Result<()> {
        let mut entries = match std::fs::read_dir(path) {
            Ok(entries) => entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .collect::<Vec<_>>(),
            Err(error) => return self.unreadable(path, &error),
        };
        entries.sort();
        for entry in entries {
            self.walk(&entry)?;
        }
        Ok(())
    }

    fn scan_file(&mut self, path: &Path) -> io::Result<()> {
        match File::open(path) {
            Ok(file) => self.scan_reader(path, file),
            Err(error) => self.unreadable(path, &error),
        }
    }

    fn unreadable(&mut self, path: &Path, error: &io::Error) -> io::Result<()> {
        self.totals.unreadable += 1;
        eprintln!("latchkey scan: {}: {error}", path.display());
        Ok(())
    }

    /// Scans one stream in chunks that overlap by a candidate's length, so
    /// a secret across a chunk's end is still found once.
    fn scan_reader(&mut self, path: &Path, mut reader: impl Read) -> io::Result<()> {
        self.totals.files += 1;
        let mut buffer: Vec<u8> = Vec::with_capacity(CHUNK + MAX_CANDIDATE_LEN + 1);
        // `consumed`: the stream offset of `buffer[0]`; `from`: where in
        // `buffer` scanning resumes.
        let (mut consumed, mut from) = (0u64, 0usize);
        let mut lines = Lines {
            line: 1,
            line_start: 0,
            counted_to: 0,
        };
        loop {
            let before = buffer.len();
            buffer.resize(before + CHUNK, 0);
            // A read that fails ends the stream there: what was read before
            // it, the tail kept from the last chunk included, is still
            // scanned, and the path is counted unreadable (exit status 2).
            let (read, failed) = match read_full(&mut reader, &mut buffer[before..]) {
                Ok(read) => (read, None),
                Err(error) => (0, Some(error)),
            };
            buffer.truncate(before + read);
            if let Some(error) = failed {
                self.unreadable(path, &error)?;
            }
            self.totals.bytes += read as u64;
            let at_end = read == 0;
            let to = if at_end {
                buffer.len()
            } else {
                buffer.len().saturating_sub(MAX_CANDIDATE_LEN)
            };
            for candidate in candidates(&buffer, from, to) {
                let start = consumed + candidate.start as u64;
                lines.advance(&buffer, consumed, start);
                self.found(path, lines.line, start - lines.line_start + 1, &candidate)?;
                from = candidate.start + candidate.len;
            }
            if at_end {
                break;
            }
            // Keep the tail, and the byte before it (a boundary's context),
            // for the next chunk.
            let resume = to.max(from);
            let keep_from = resume.saturating_sub(1);
            lines.advance(&buffer, consumed, consumed + keep_from as u64);
            buffer[..keep_from].fill(0);
            buffer.drain(..keep_from);
            consumed += keep_from as u64;
            from = resume - keep_from;
        }
        // A secret read into this buffer is wiped with it.
        buffer.fill(0);
        Ok(())
    }

    fn found(
        &mut self,
        path: &Path,
        line: u64,
        column: u64,
        candidate: &crate::domain::secrets::scan::Candidate,
    ) -> io::Result<()> {
        if !candidate.checks {
            self.totals.failed_checks += 1;
            if self.show_failed {
                writeln!(
                    self.out,
                    "{}:{line}:{column}: check failed (not a latchkey app password, or a mistyped one) {}…",
                    path.display(),
                    hint(&candidate.public_id)
                )?;
            }
            return Ok(());
        }
        self.totals.found += 1;
        writeln!(
            self.out,
            "{}:{line}:{column}: latchkey app password {}…",
            path.display(),
            hint(&candidate.public_id)
        )?;
        if let Some(report) = self.report.as_mut() {
            report.write_all(candidate.letters())?;
            report.write_all(b"\n")?;
        }
        Ok(())
    }
}

/// Where a find is: lines counted up to a stream offset.
struct Lines {
    /// The line reached (from 1), and the stream offset it starts at.
    line: u64,
    line_start: u64,
    counted_to: u64,
}

impl Lines {
    /// Counts the lines of `buffer` (which starts at stream offset
    /// `consumed`) up to stream offset `upto`.
    fn advance(&mut self, buffer: &[u8], consumed: u64, upto: u64) {
        if upto <= self.counted_to {
            return;
        }
        let from = (self.counted_to - consumed) as usize;
        let to = (upto - consumed) as usize;
        for (i, &b) in buffer[from..to].iter().enumerate() {
            if b == b'\n' {
                self.line += 1;
                self.line_start = consumed + (from + i) as u64 + 1;
            }
        }
        self.counted_to = upto;
    }
}

/// Reads until `buffer` is full or the stream ends.
fn read_full(reader: &mut impl Read, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}
