//! Programs the tests start as child processes (nginx, Dovecot, the
//! latchkey binary, scripts), and the ports they are given.
//!
//! Every program runs in a process group of its own, and a `Group` stops
//! the whole group when it is dropped, on success and on panic alike: a
//! graceful SIGTERM, up to `GRACE` for the leader to exit, then SIGKILL to
//! whatever of the group is left (nginx's workers, Dovecot's children, a
//! server a script started), and the leader is reaped. Nothing a test
//! started outlives it; `.ci/run` checks that after the suite.
//!
//! Ports for programs that bind their own (nginx, Dovecot) come from
//! `free_port`, below the kernel's ephemeral range: an outgoing connection
//! or a listener on port 0 (every in-process server of this suite) can
//! never be given one, so the only race left is with another copy of the
//! suite, which starts from another place in that range.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

/// How long a group's leader has to exit after SIGTERM before the group is
/// killed.
const GRACE: Duration = Duration::from_secs(5);

/// A process group's leader, and where its output goes; the group is
/// stopped when this is dropped.
pub struct Group {
    name: String,
    leader: Option<Child>,
    log: Option<PathBuf>,
}

impl Group {
    /// Starts `command` in a group of its own, its stdout and stderr in
    /// `dir/NAME.out`.
    pub fn spawn(name: &str, command: &mut Command, dir: &Path) -> Self {
        let log = dir.join(format!("{name}.out"));
        let file = std::fs::File::create(&log).unwrap();
        command
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        let mut group = Self::start(name, command);
        group.log = Some(log);
        group
    }

    /// Starts `command`, as it is set up (pipes and all), in a group of its
    /// own.
    pub fn start(name: &str, command: &mut Command) -> Self {
        std::os::unix::process::CommandExt::process_group(command, 0);
        let leader = command
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {name}: {error}"));
        Group {
            name: name.to_owned(),
            leader: Some(leader),
            log: None,
        }
    }

    /// The leader, for its pipes or its id. Never wait on it directly: a
    /// reaped leader's id may be reused, and then the group's signals
    /// would reach a stranger (`has_exited`, `exited` and `stop` reap it
    /// last, after the group is killed).
    pub fn leader(&mut self) -> &mut Child {
        self.leader.as_mut().unwrap()
    }

    /// Whether the leader has exited, without reaping it: a zombie, or gone.
    pub fn has_exited(&self) -> bool {
        self.leader
            .as_ref()
            .is_none_or(|leader| exited(leader.id()))
    }

    /// What the program wrote so far, if it writes to a log.
    pub fn output(&self) -> String {
        self.log
            .as_ref()
            .and_then(|log| std::fs::read_to_string(log).ok())
            .unwrap_or_default()
    }

    /// Waits until something listens on `port`; fails, with the program's
    /// output, if it exits first or nothing listens within 10 s.
    pub async fn listening(&mut self, port: u16) {
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return;
            }
            if self.has_exited() {
                let status = self.stop();
                panic!(
                    "{} exited ({status:?}) before listening on {port}:\n{}",
                    self.name,
                    self.output()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{} is not listening on {port} after 10 s", self.name);
    }

    /// The leader's exit status once it exits by itself, polled until
    /// `within` has passed (`None` then, and the group is still stopped
    /// when this is dropped). What is left of the group then is killed.
    pub async fn exited(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.has_exited() {
                return self.stop();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    /// Stops the group: SIGTERM, up to `GRACE` for the leader, SIGKILL to
    /// what is left, and the leader reaped, last: until then its id, the
    /// group's, cannot be reused. Returns the leader's status.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut leader = self.leader.take()?;
        let group = format!("-{}", leader.id());
        signal("TERM", &group);
        let deadline = Instant::now() + GRACE;
        while Instant::now() < deadline && !exited(leader.id()) {
            std::thread::sleep(Duration::from_millis(20));
        }
        // The leader's children may outlive it (nginx's workers finish
        // their connections, Dovecot's children notice their master's
        // exit later): the group goes, whatever is left of it.
        signal("KILL", &group);
        leader.wait().ok()
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether process `pid` has exited: a zombie not yet reaped, or gone
/// (its state, in /proc/PID/stat, follows the command's name in
/// parentheses).
fn exited(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
        stat.rsplit_once(')')
            .is_none_or(|(_, rest)| rest.trim_start().starts_with('Z'))
    })
}

/// Sends `signal` to `target` (a pid, or `-PGID` for a group); one that is
/// already gone is no error.
pub fn signal(signal: &str, target: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{signal}"), "--", target])
        .stderr(Stdio::null())
        .status();
}

/// The next port below the kernel's ephemeral range that nothing listens
/// on, for a program that binds its own (see the module doc).
pub fn free_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let (low, high) = below_ephemeral();
    let span = high - low;
    // Another copy of the suite starts elsewhere in the span.
    let _ = NEXT.compare_exchange(
        0,
        (std::process::id() % u32::from(span)) as u16,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..span {
        let port = low + NEXT.fetch_add(1, Ordering::SeqCst) % span;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {low}..{high}");
}

/// Ports from 10,000 up to the ephemeral range's start (32768 by default),
/// as /proc says.
fn below_ephemeral() -> (u16, u16) {
    let start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    assert!(
        start > 12_000,
        "the ephemeral port range starts at {start}: too low to keep ports of our own below it"
    );
    (10_000, start)
}

/// A leader that exits by itself gives its status, and what it left
/// running in its group goes with it: reaped only after the group is
/// killed, so nothing the group started outlives it.
#[tokio::test]
async fn a_group_whose_leader_exits_is_stopped_whole() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("left.pid");
    let mut group = Group::spawn(
        "leaves a child",
        Command::new("sh")
            .arg("-c")
            .arg("sleep 300 & echo $! > \"$1\"; exit 3")
            .arg("sh")
            .arg(&pid_file),
        dir.path(),
    );
    let status = group.exited(Duration::from_secs(10)).await;
    assert_eq!(status.and_then(|s| s.code()), Some(3));
    let left: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    crate::common::support::until("the group's sleep is gone", Duration::from_secs(5), || {
        exited(left)
    })
    .await;
}
