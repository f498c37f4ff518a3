//! A program the benchmark runs beside latchkey (nginx, Dovecot): a child
//! in a process group of its own, its output in a log file, and the whole
//! group stopped when it is dropped, so a run that fails or panics leaves
//! no process behind.
//!
//! A group of its own, because both programs fork (nginx's workers,
//! Dovecot's login, imap, auth and log processes): signalling the leader
//! alone could leave the others running. It also keeps a terminal's Ctrl-C
//! from reaching them directly; the mail stack's run turns Ctrl-C into an
//! error, so this drop does the stopping.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::server::stat_fields;
use crate::BoxError;

/// How long a group gets to stop on SIGTERM before it is killed.
const GRACE: Duration = Duration::from_secs(3);

pub struct Program {
    name: &'static str,
    log: PathBuf,
    child: Option<Child>,
}

impl Program {
    /// Starts `command` as the leader of a new process group (its id is
    /// the child's pid), stdout and stderr appended to `log`.
    pub fn spawn(name: &'static str, command: &mut Command, log: &Path) -> Result<Self, BoxError> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let child = command
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .map_err(|error| format!("cannot start {name}: {error}"))?;
        Ok(Self {
            name,
            log: log.to_owned(),
            child: Some(child),
        })
    }

    /// The process group's id (the leader's pid).
    pub fn group(&self) -> Result<u32, BoxError> {
        Ok(self.child.as_ref().ok_or("not running")?.id())
    }

    /// Waits (10 s at most) until something accepts connections on
    /// `127.0.0.1:port`; an error, with the end of the program's log, if it
    /// exits first or never does.
    pub async fn listening(&mut self, port: u16) -> Result<(), BoxError> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Ok(());
            }
            let child = self.child.as_mut().ok_or("not running")?;
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Err(self.failed(&format!("exited ({status}) before listening on {port}")));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(self.failed(&format!("is not listening on {port} after 10 s")))
    }

    fn failed(&self, what: &str) -> BoxError {
        format!("{} {what}; {}", self.name, self.log_tail()).into()
    }

    /// The last 20 lines of the program's log, and where it is.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let mut tail: Vec<&str> = log.lines().rev().take(20).collect();
        tail.reverse();
        format!("the end of {}:\n{}", self.log.display(), tail.join("\n"))
    }

    /// SIGTERM to the group, up to [`GRACE`] for the leader to exit, then
    /// SIGKILL to the group, and the leader reaped. The leader is reaped
    /// last on purpose: until then its pid cannot be reused, so the group
    /// id the SIGKILL goes to is still this group's.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let group = child.id();
        signal_group("TERM", group);
        let deadline = Instant::now() + GRACE;
        while Instant::now() < deadline && !exited(group) {
            std::thread::sleep(Duration::from_millis(50));
        }
        signal_group("KILL", group);
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline && live_members(group) > 0 {
            std::thread::sleep(Duration::from_millis(50));
        }
        let left = live_members(group);
        if left > 0 {
            eprintln!(
                "{}: {left} processes of group {group} survived SIGKILL",
                self.name
            );
        }
        let _ = child.wait();
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `kill -SIGNAL -- -GROUP` (the workspace forbids `unsafe`, so no
/// `libc::kill`); a group already gone is not an error.
fn signal_group(signal: &str, group: u32) {
    let _ = Command::new("kill")
        .args([format!("-{signal}"), "--".to_owned(), format!("-{group}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Whether `pid` has exited (a zombie not yet reaped, or gone).
fn exited(pid: u32) -> bool {
    stat_fields(pid).map_or(true, |fields| fields.first().is_some_and(|s| s == "Z"))
}

/// The processes of `group` that have not exited, zombies left out.
fn live_members(group: u32) -> usize {
    members(group)
        .into_iter()
        .filter(|fields| fields.first().is_some_and(|state| state != "Z"))
        .count()
}

/// The `/proc/<pid>/stat` fields (after the command's name) of every
/// process in `group`.
fn members(group: u32) -> Vec<Vec<String>> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| stat_fields(pid).ok())
        .filter(|fields| fields.get(2).and_then(|g| g.parse::<u32>().ok()) == Some(group))
        .collect()
}

/// The CPU time the processes of `group` have used so far, in seconds:
/// each live member's own, and what its reaped children used (so a worker
/// that exited still counts, in its parent's share).
pub fn group_cpu_seconds(group: u32) -> Result<f64, BoxError> {
    let mut ticks = 0.0;
    for fields in members(group) {
        // utime, stime, cutime, cstime: the 12th to the 15th after the name.
        for index in 11..15 {
            let value: f64 = fields.get(index).ok_or("short /proc/<pid>/stat")?.parse()?;
            ticks += value;
        }
    }
    Ok(ticks / crate::server::clock_ticks()?)
}
