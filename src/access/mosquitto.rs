//! Keeps a Mosquitto 2.0 broker in step with the registry: renders the
//! rule ([`super::rule`]) and every login into Mosquitto's `password_file`
//! (`user:$6$…` lines, the hashes the store keeps) and `acl_file` (`pattern`
//! lines for bands and phones, `user` blocks for the few others), writes both
//! atomically, and sends the broker SIGHUP so that it reloads them and
//! re-checks every connected client (a replaced secret is cut off then).
//!
//! The broker's own configuration (`config/mosquitto.conf`) must set
//! `allow_anonymous false`, `per_listener_settings false` and
//! `use_username_as_clientid true` (the last is what keeps a client from
//! taking over another's client id, and the service's session).
//! It never opens a connection to the broker.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::rule::{Action, BAND_GRANTS, Grant, PHONE_GRANTS, Principal, grants};
use super::{AccessControl, principal_of, secret};
use crate::domain::registry::Credential;
use crate::store::{Store, StoreError};

/// Where the files are and which process to signal.
#[derive(Debug, Clone)]
pub struct MosquittoFiles {
    pub password_file: PathBuf,
    pub acl_file: PathBuf,
    /// Mosquitto's `pid_file`: SIGHUP goes to that process. None: the files
    /// are written and something else must reload the broker.
    pub pid_file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum MosquittoError {
    #[error("reading the registry: {0}")]
    Store(#[from] StoreError),
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("reading the pid file {path}: {why}")]
    Pid { path: PathBuf, why: String },
    #[error("signalling Mosquitto (pid {pid}): {source}")]
    Signal { pid: i32, source: std::io::Error },
}

/// The two files' contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub passwords: String,
    pub acl: String,
    /// How many logins they hold.
    pub logins: usize,
}

fn access_word(action: Action) -> &'static str {
    match action {
        Action::Publish => "write",
        Action::Subscribe => "read",
    }
}

/// Renders the files for the settings' logins and the registry's.
///
/// Bands and phones, the many, share `pattern` lines (`%u` is the user
/// name, which is also the client id): the ACL file stays a few lines long
/// whatever the registry's size, since Mosquitto 2.0 parses `user` blocks in
/// time quadratic in their number. A pattern applies to every login, so a
/// band is also granted the phone's topic under its own id and the other way
/// round; no such topic carries anything, because devices and volunteers
/// share one id namespace (a phone publishing to `wristbands/{its id}/alert`
/// reaches the service as an unknown device). Gateways and the superusers,
/// the few, get `user` blocks.
pub fn render<'a>(
    settings: impl Iterator<Item = (&'a super::SettingsLogin, Principal)>,
    registry: &[Credential],
) -> Rendered {
    let mut passwords = String::new();
    let mut acl = String::from("# Written by onepress from its registry: do not edit.\n");
    for (action, filter) in BAND_GRANTS.iter().chain(PHONE_GRANTS) {
        let _ = writeln!(
            acl,
            "pattern {} {}",
            access_word(*action),
            filter.replace("{id}", "%u")
        );
    }
    let mut logins = 0;
    let mut add = |username: &str, hash: &str, principal: &Principal| {
        // Usernames are registry ids ([A-Za-z0-9_-]) or come from the
        // settings; a ':' or a line break would corrupt the files.
        if username.is_empty() || username.contains([':', '\n', '\r', ' ']) {
            warn!(%username, "login left out of the Mosquitto files: bad user name");
            return;
        }
        let _ = writeln!(passwords, "{username}:{hash}");
        logins += 1;
        if matches!(principal, Principal::Band(_) | Principal::Phone(_)) {
            return; // the patterns above
        }
        let _ = writeln!(acl, "\nuser {username}");
        for Grant { action, filter } in grants(principal) {
            let _ = writeln!(acl, "topic {} {filter}", access_word(action));
        }
    };
    for (login, principal) in settings {
        add(
            &login.username,
            &secret::hash(login.password.expose()),
            &principal,
        );
    }
    for c in registry {
        if let (Some(hash), Some(principal)) = (&c.secret_hash, principal_of(c.kind, &c.id)) {
            add(&c.id, hash, &principal);
        }
    }
    Rendered {
        passwords,
        acl,
        logins,
    }
}

/// Writes `contents` to `path` through a temporary file and a rename, so
/// that the broker never reads half a file.
fn write_atomic(path: &Path, contents: &str) -> Result<(), MosquittoError> {
    let err = |source| MosquittoError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".onepress-tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, contents).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// Sends SIGHUP to the process whose pid `pid_file` holds.
fn reload(pid_file: &Path) -> Result<(), MosquittoError> {
    let pid_err = |why: String| MosquittoError::Pid {
        path: pid_file.to_path_buf(),
        why,
    };
    let text = std::fs::read_to_string(pid_file).map_err(|e| pid_err(e.to_string()))?;
    let pid: i32 = text
        .trim()
        .parse()
        .map_err(|_| pid_err(format!("not a pid: {:?}", text.trim())))?;
    if pid <= 1 {
        // Signalling 0 or -1 would reach a whole process group.
        return Err(pid_err(format!("refusing to signal pid {pid}")));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGHUP,
    )
    .map_err(|e| MosquittoError::Signal {
        pid,
        source: std::io::Error::from(e),
    })
}

/// Writes both files from the registry now and reloads the broker.
pub async fn sync(
    access: &AccessControl,
    store: &dyn Store,
    files: &MosquittoFiles,
) -> Result<usize, MosquittoError> {
    let registry = store.list_credentials().await?;
    let rendered = render(access.settings_logins(), &registry);
    let files = files.clone();
    let logins = rendered.logins;
    tokio::task::spawn_blocking(move || {
        // The ACL first: a login that appears is then never without rights.
        write_atomic(&files.acl_file, &rendered.acl)?;
        write_atomic(&files.password_file, &rendered.passwords)?;
        if let Some(pid_file) = &files.pid_file {
            reload(pid_file)?;
        }
        Ok::<_, MosquittoError>(())
    })
    .await
    .map_err(|e| MosquittoError::Write {
        path: PathBuf::from("(writer task)"),
        source: std::io::Error::other(e.to_string()),
    })??;
    Ok(logins)
}

/// Keeps the files in step until shutdown: rewrites them whenever a
/// credential changes (changes arriving together are written once), and
/// retries with backoff when the store or the files fail.
pub async fn run(
    access: Arc<AccessControl>,
    store: Arc<dyn Store>,
    files: MosquittoFiles,
    shutdown: CancellationToken,
) {
    let mut changes = access.subscribe();
    let mut backoff = Duration::from_millis(200);
    let mut dirty = false;
    loop {
        if !dirty {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                change = changes.recv() => match change {
                    Some(_) => dirty = true,
                    None => return,
                },
            }
        }
        // Let a burst of changes (a batch of new bands) settle.
        tokio::time::sleep(Duration::from_millis(50)).await;
        while changes.try_recv().is_ok() {}
        match sync(&access, store.as_ref(), &files).await {
            Ok(logins) => {
                info!(logins, "Mosquitto password and ACL files rewritten");
                dirty = false;
                backoff = Duration::from_millis(200);
            }
            Err(e) => {
                warn!(error = %e, retry_in = ?backoff, "cannot update the Mosquitto files");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::SettingsLogin;
    use crate::config::Secret;
    use crate::domain::registry::PrincipalKind;

    fn cred(id: &str, kind: PrincipalKind, hash: Option<&str>) -> Credential {
        Credential {
            id: id.into(),
            kind,
            secret_hash: hash.map(Into::into),
        }
    }

    #[test]
    fn every_login_gets_its_hash_and_its_grants() {
        let service = SettingsLogin {
            username: "onepress".into(),
            password: Secret::new("pw"),
        };
        let r = render(
            [(&service, Principal::Service)].into_iter(),
            &[
                cred("band-1", PrincipalKind::Device, Some("$6$a$b")),
                cred("band-2", PrincipalKind::Device, None),
                cred("vol-1", PrincipalKind::Volunteer, Some("$6$c$d")),
                cred("gw-1", PrincipalKind::Gateway, Some("$6$e$f")),
            ],
        );
        assert_eq!(r.logins, 4);
        assert!(r.passwords.contains("band-1:$6$a$b\n"));
        assert!(!r.passwords.contains("band-2"), "no secret, no login");
        assert!(r.passwords.starts_with("onepress:$6$"));
        assert!(!r.passwords.contains(":pw"), "never the plain password");
        // Bands and phones by pattern: the file does not grow with them.
        assert!(r.acl.contains(
            "pattern write wristbands/%u/alert\npattern write wristbands/%u/status\npattern read wristbands/%u/notify\npattern read volunteers/%u/offers\n"
        ));
        assert!(!r.acl.contains("user band-1"));
        assert!(!r.acl.contains("user vol-1"));
        assert!(r.acl.contains(
            "user gw-1\ntopic write wristbands/+/alert\ntopic write wristbands/+/status\ntopic read wristbands/+/notify\n"
        ));
        assert!(
            r.acl
                .contains("user onepress\ntopic write #\ntopic read #\n")
        );
    }

    #[test]
    fn the_files_are_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwd");
        write_atomic(&path, "a\n").unwrap();
        write_atomic(&path, "b\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "b\n");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_bad_pid_file_is_an_error_not_a_signal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pid");
        std::fs::write(&path, "not a pid").unwrap();
        assert!(matches!(reload(&path), Err(MosquittoError::Pid { .. })));
        assert!(matches!(
            reload(&dir.path().join("missing")),
            Err(MosquittoError::Pid { .. })
        ));
    }
}
