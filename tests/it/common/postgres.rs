//! A PostgreSQL cluster of a test's own, from the PostgreSQL server
//! programs on the machine (`postgresql` in Debian: /usr/lib/postgresql/N/
//! bin), on a free port with its data in a temporary directory, so that
//! the test may stop, kill and start it, which it may never do to the
//! shared server. As root (CI) its programs run as the `postgres` user,
//! since PostgreSQL refuses to run as root.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::processes::{free_port, signal, Group};
use super::programs;

pub struct PgCluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    pub port: u16,
    server: Option<Group>,
}

impl PgCluster {
    /// Makes a cluster (initdb, trust authentication) and starts it; `None`
    /// (outside CI only) when PostgreSQL's server programs are missing.
    pub async fn start() -> Option<Self> {
        let bin = server_programs()?;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        owned_by_postgres(dir.path());
        succeeds(
            "initdb",
            run_as_postgres(&bin.join("initdb"))
                .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
                .arg(&data),
        );
        let mut cluster = Self {
            bin,
            dir,
            port: free_port(),
            server: None,
        };
        cluster.resume().await;
        Some(cluster)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The URL of database `name` on this cluster.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Starts the server again on the same data and port, and waits until
    /// it listens.
    pub async fn resume(&mut self) {
        assert!(self.server.is_none(), "the cluster is running already");
        let mut command = run_as_postgres(&self.bin.join("postgres"));
        command
            .arg("-D")
            .arg(self.data())
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(self.dir.path())
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=60",
            ]);
        let mut server = Group::spawn("postgres", &mut command, self.dir.path());
        server.listening(self.port).await;
        self.server = Some(server);
    }

    /// Stops the server as an outage would: a fast shutdown (SIGINT), which
    /// ends every connection at once, then the group, whatever is left.
    pub fn halt(&mut self) {
        if let Some(mut server) = self.server.take() {
            signal("INT", &format!("-{}", server.leader().id()));
            server.stop();
        }
    }

    /// A streaming standby of this cluster (pg_basebackup -R, over TCP as
    /// the superuser, whom initdb's trust lines let replicate), started on
    /// a free port of its own; stopped when dropped, like any cluster.
    /// Under CI a missing pg_basebackup fails the test.
    pub async fn standby(&self) -> PgCluster {
        let basebackup = self.bin.join("pg_basebackup");
        assert!(
            programs::installed(
                &[&basebackup.to_string_lossy()],
                "postgresql (its server programs)"
            ),
            "pg_basebackup is missing beside initdb: {}",
            basebackup.display()
        );
        let dir = tempfile::tempdir().unwrap();
        owned_by_postgres(dir.path());
        succeeds(
            "pg_basebackup",
            run_as_postgres(&basebackup)
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
                .args(["-U", "postgres", "-R", "-X", "stream", "--checkpoint=fast"])
                .arg("--no-sync")
                .arg("-D")
                .arg(dir.path().join("data")),
        );
        let mut standby = Self {
            bin: self.bin.clone(),
            dir,
            port: free_port(),
            server: None,
        };
        standby.resume().await;
        standby
    }

    /// Kills every process of the server at once (SIGKILL), as a crash of
    /// its machine would: nothing is flushed or sent any more.
    pub fn kill(&mut self) {
        if let Some(mut server) = self.server.take() {
            signal("KILL", &format!("-{}", server.leader().id()));
            server.stop();
        }
    }

    /// Creates database `name`.
    pub async fn create_database(&self, name: &str) {
        use sea_orm::ConnectionTrait;
        let admin = sea_orm::Database::connect(self.url("postgres"))
            .await
            .unwrap();
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        admin.close().await.unwrap();
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.halt();
    }
}

/// The directory of the newest PostgreSQL server programs installed.
fn server_programs() -> Option<PathBuf> {
    let newest = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("bin"))
        .filter(|bin| bin.join("initdb").is_file())
        .max();
    let Some(bin) = newest else {
        programs::installed(
            &["/usr/lib/postgresql/15/bin/initdb"],
            "postgresql (its server programs)",
        );
        return None;
    };
    Some(bin)
}

/// Gives `dir` to the `postgres` user when the tests run as root.
fn owned_by_postgres(dir: &Path) {
    if as_root() {
        let status = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(status.success(), "chown of {}", dir.display());
    }
}

/// Runs `command` to its end; fails the test with its stderr unless it
/// succeeded.
fn succeeds(what: &str, command: &mut Command) {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
}

/// `program`, run as the `postgres` user when the tests run as root.
fn run_as_postgres(program: &Path) -> Command {
    if as_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}
