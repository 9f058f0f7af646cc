//! A private PostgreSQL cluster for one test, which it may stop and start
//! at will (never the machine's shared server): `initdb` and `pg_ctl` from
//! `pg_config --bindir`, run as the `postgres` user when the tests run as
//! root, its data in a temporary directory, trust authentication, listening
//! on a free port on 127.0.0.1 only (and on a Unix socket in its own
//! directory). Dropping it stops it (immediate mode) and removes the files.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use tokio::process::Command;

pub struct PrivatePostgres {
    pub port: u16,
    bindir: PathBuf,
    /// The cluster's data directory, inside `dir`.
    data: PathBuf,
    running: bool,
    /// Owned by the user the cluster runs as; removed on drop.
    dir: tempfile::TempDir,
}

/// Whether this process runs as root (then PostgreSQL must run as another
/// user: it refuses root).
fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// A command from PostgreSQL's bin directory, as the `postgres` user when
/// we are root.
fn pg_command(bindir: &Path, program: &str) -> Command {
    let path = bindir.join(program);
    if running_as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(path);
        c
    } else {
        Command::new(path)
    }
}

/// Runs a command to its end; panics with its output if it fails.
async fn run(mut c: Command, what: &str) {
    let out = c
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl PrivatePostgres {
    /// Creates and starts a cluster. None when PostgreSQL's tools are not
    /// installed (outside CI only: with `CI` set, that fails the test).
    pub async fn create() -> Option<PrivatePostgres> {
        let bindir = match std::process::Command::new("pg_config")
            .arg("--bindir")
            .output()
        {
            Ok(out) if out.status.success() => {
                PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
            }
            _ => {
                if std::env::var("CI").is_ok_and(|v| !v.is_empty()) {
                    panic!(
                        "CI must run a private PostgreSQL: install PostgreSQL (pg_config, initdb, pg_ctl)"
                    );
                }
                eprintln!("skipped: no pg_config (install PostgreSQL to run this test)");
                return None;
            }
        };
        let dir = tempfile::tempdir().expect("a temporary directory");
        if running_as_root() {
            let mut chown = Command::new("chown");
            chown.arg("postgres:postgres").arg(dir.path());
            run(chown, "chown of the cluster's directory to postgres").await;
        }
        let data = dir.path().join("data");
        let mut initdb = pg_command(&bindir, "initdb");
        initdb.arg("-D").arg(&data).args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
        ]);
        run(initdb, "initdb").await;
        let mut pg = PrivatePostgres {
            port: super::service::free_port(),
            bindir,
            data,
            running: false,
            dir,
        };
        pg.start().await;
        Some(pg)
    }

    /// The URL of its `postgres` database, as the `postgres` user.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the cluster (again) and waits until it takes connections.
    pub async fn start(&mut self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.path().display()
        );
        let mut c = pg_command(&self.bindir, "pg_ctl");
        c.arg("start")
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(self.dir.path().join("postgres.log"))
            .args(["-w", "-t", "60", "-o", &options]);
        run(c, "pg_ctl start").await;
        self.running = true;
    }

    /// Stops the cluster at once (`pg_ctl stop -m immediate`: no clean
    /// shutdown, as in a crash; the next start recovers from the WAL).
    pub async fn stop(&mut self) {
        let mut c = pg_command(&self.bindir, "pg_ctl");
        c.arg("stop")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "-t", "30"]);
        run(c, "pg_ctl stop").await;
        self.running = false;
    }

    /// The last `n` lines of the server's log.
    pub fn log_tail(&self, n: usize) -> String {
        let text =
            std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if self.running {
            let path = self.bindir.join("pg_ctl");
            let mut c = if running_as_root() {
                let mut c = std::process::Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(path);
                c
            } else {
                std::process::Command::new(path)
            };
            let _ = c
                .arg("stop")
                .arg("-D")
                .arg(&self.data)
                .args(["-m", "immediate", "-w", "-t", "30"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
        // The temporary directory goes with `self.dir`.
    }
}
