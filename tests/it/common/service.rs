//! The real `onepress` binary as a child process, for tests that kill it:
//! started with `ONEPRESS_*` variables in a directory of its own, its log
//! (stderr) appended to `service.log` there across restarts (its end is
//! printed if the test fails), killed with SIGKILL (no chance to clean up)
//! and started again on the same store.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A free TCP port on 127.0.0.1 (free when asked; tests bind it soon after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The service as a child process, started again as often as a test likes.
pub struct Service {
    child: Option<Child>,
    env: Vec<(String, String)>,
    dir: PathBuf,
    /// How many times it was started.
    pub starts: u32,
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
        // A failing test shows what the service said (its directory, and
        // the log with it, may be gone next).
        if std::thread::panicking() {
            eprintln!(
                "the service's log ({}) ends:\n{}",
                self.log_path().display(),
                self.log_tail(40)
            );
        }
    }
}

impl Service {
    /// Starts the binary (`onepress serve`) in `dir` with exactly these
    /// settings (no configuration file).
    pub fn start(env: Vec<(String, String)>, dir: &Path) -> Service {
        let mut s = Service {
            child: None,
            env,
            dir: dir.to_path_buf(),
            starts: 0,
        };
        s.restart();
        s
    }

    /// Starts it again (after [`Service::kill`]), on the same store.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "the service is still running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("the service's log file");
        let child = Command::new(env!("CARGO_BIN_EXE_onepress"))
            .arg("serve")
            .current_dir(&self.dir)
            .env_remove("ONEPRESS_CONFIG")
            .env("RUST_LOG", "info,rmqtt=warn")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("the binary starts");
        self.child = Some(child);
        self.starts += 1;
    }

    /// SIGKILL, then reaps the process. Nothing if it is not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the process is still running (it has not exited).
    pub fn alive(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// How it exited, once it has (None while it runs or if never started).
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut()?.try_wait().expect("try_wait")
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("service.log")
    }

    /// The last `n` lines of the service's log, for a failure message.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// The log lines containing `needle` (at most `n`, the last ones).
    pub fn log_grep(&self, needle: &str, n: usize) -> Vec<String> {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let hits: Vec<String> = text
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_string)
            .collect();
        hits[hits.len().saturating_sub(n)..].to_vec()
    }
}

/// Waits until `GET {base}/readyz` answers 200; false after `within`.
pub async fn wait_ready(http: &reqwest::Client, base: &str, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await {
            if r.status() == 200 {
                return true;
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
