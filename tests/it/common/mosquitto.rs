//! A private Mosquitto for one test: the shipped `config/mosquitto.conf`
//! (access enforced from the files onepress writes), on a free port, with
//! its files in a temporary directory. Never the machine's shared broker.
//! A test may kill it (SIGKILL) and start it again on the same port and
//! files; it is killed when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct PrivateMosquitto {
    child: Option<Child>,
    conf_path: PathBuf,
    pub port: u16,
    pub password_file: PathBuf,
    pub acl_file: PathBuf,
    pub pid_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for PrivateMosquitto {
    fn drop(&mut self) {
        self.kill();
    }
}

impl PrivateMosquitto {
    /// SIGKILL, as in a crash: what it had not saved yet is lost (the
    /// shipped configuration saves its persistence file only now and then,
    /// and at a clean stop).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Gone with the process; the next start writes it again.
        let _ = std::fs::remove_file(&self.pid_file);
    }

    /// Starts it again after [`PrivateMosquitto::kill`]: same port, same
    /// configuration, password, ACL and persistence files.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "Mosquitto is still running");
        self.child = Some(spawn(&self.conf_path));
        self.wait_listening().await;
    }

    async fn wait_listening(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
            || !self.pid_file.exists()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the private Mosquitto did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn spawn(conf_path: &std::path::Path) -> Child {
    Command::new("mosquitto")
        .arg("-c")
        .arg(conf_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto runs (apt-get install mosquitto)")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Starts Mosquitto from the shipped configuration, its paths moved into a
/// temporary directory and its listener to a free port on 127.0.0.1.
pub async fn start() -> PrivateMosquitto {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let base = dir.path();
    for sub in ["auth", "data"] {
        std::fs::create_dir_all(base.join(sub)).expect("a directory");
    }
    let port = free_port();
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/mosquitto.conf"
    ))
    .expect("config/mosquitto.conf");
    assert!(shipped.contains("allow_anonymous false"));
    assert!(shipped.contains("use_username_as_clientid true"));
    let mut conf = shipped
        .replace(
            "listener 1883 0.0.0.0",
            &format!("listener {port} 127.0.0.1"),
        )
        .replace("/mosquitto/", &format!("{}/", base.display()));
    // As root Mosquitto would switch to its own user, who cannot read a
    // private temporary directory.
    conf.push_str("\nuser root\n");
    let conf_path = base.join("mosquitto.conf");
    std::fs::write(&conf_path, conf).expect("the test's config");
    let password_file = base.join("auth/passwd");
    let acl_file = base.join("auth/acl");
    std::fs::write(&password_file, "").expect("an empty password file");
    std::fs::write(&acl_file, "").expect("an empty acl file");
    let child = spawn(&conf_path);
    let m = PrivateMosquitto {
        child: Some(child),
        conf_path,
        port,
        password_file,
        acl_file,
        pid_file: base.join("auth/mosquitto.pid"),
        _dir: dir,
    };
    m.wait_listening().await;
    m
}

/// An app on `backend`'s store whose broker is a private Mosquitto from the
/// shipped configuration, with the service writing its password and ACL
/// files: nothing it does reaches the machine's shared broker, and nothing
/// another test does reaches it.
pub async fn spawn_app(backend: super::Backend) -> (super::TestApp, PrivateMosquitto) {
    spawn_app_with(backend, |_| {}).await
}

/// [`spawn_app`] with settings adjusted by `adjust` first.
pub async fn spawn_app_with(
    backend: super::Backend,
    adjust: impl FnOnce(&mut onepress::config::Settings),
) -> (super::TestApp, PrivateMosquitto) {
    let m = start().await;
    let service = super::unique("onepress-svc");
    let password = onepress::access::secret::new_secret();
    let (port, pw, acl, pid) = (
        m.port,
        m.password_file.clone(),
        m.acl_file.clone(),
        m.pid_file.clone(),
    );
    let app = super::spawn_app_with(backend, move |s| {
        adjust(s);
        s.mqtt_url = format!("mqtt://{service}:{password}@127.0.0.1:{port}");
        // With use_username_as_clientid, the client id is the user.
        s.mqtt_client_id = service;
        s.mosquitto_password_file = Some(pw);
        s.mosquitto_acl_file = Some(acl);
        s.mosquitto_pid_file = Some(pid);
    })
    .await
    .expect("the app runs on the private Mosquitto");
    (app, m)
}

/// Connects, retrying while the broker has not taken a just-issued login in
/// yet (Mosquitto reloads its files a few milliseconds after the change).
pub async fn connects(app: &super::TestApp, login: super::Login) -> super::Mqtt {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match super::Mqtt::try_connect(&app.mqtt.0, app.mqtt.1, login.clone()).await {
            Ok(m) => return m,
            Err(e) => assert!(
                tokio::time::Instant::now() < deadline,
                "{} could not log in: {e:?}",
                login.username
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
