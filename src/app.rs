//! Wiring: the one place where the adapters meet. Builds the store, the
//! broker connection (starting the embedded broker if asked), the engine,
//! the ingest and the HTTP server from [`Settings`], and stops them in
//! order: stop taking work, finish what is in flight, publish what was
//! committed, then disconnect.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::access::mosquitto::{self, MosquittoFiles};
use crate::access::{self, AccessControl, SettingsLogin};
use crate::config::{MqttTarget, Secret, Settings};
use crate::engine::{self, Sinks};
use crate::http::{self, AppState};
use crate::mqtt::{self, client::Target, ingest::Ingest};
use crate::notify;
use crate::store::{self, Store};

/// Where the hash of a generated operator token is kept.
const OPERATOR_TOKEN_KEY: &str = "operator_token_sha256";
/// Where the key of signed offer links is kept.
const LINK_KEY: &str = "offer_link_key";
/// Where the Web Push (VAPID) private key is kept.
const VAPID_KEY: &str = "vapid_private_key";

/// How often histogram samples are folded into their buckets between
/// scrapes (so that memory stays flat when nobody scrapes).
const METRICS_UPKEEP: Duration = Duration::from_secs(10);

/// The process-wide metrics recorder (installed once, shared by every
/// application in the process, e.g. in tests). Histograms are rendered as
/// Prometheus histograms (`_bucket` lines) with the buckets of
/// [`crate::telemetry`].
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("_seconds".into()),
                    crate::telemetry::LATENCY_BUCKETS,
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("onepress_engine_batch_size".into()),
                        crate::telemetry::BATCH_SIZE_BUCKETS,
                    )
                })
                .expect("the buckets are not empty")
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                warn!("a metrics recorder was already installed; /metrics may be empty");
            }
            crate::telemetry::describe_metrics();
            handle
        })
        .clone()
}

/// A built, not yet running, service.
pub struct Application {
    http_addr: SocketAddr,
    mqtt_addr: (String, u16),
    listener: tokio::net::TcpListener,
    router: axum::Router,
    shutdown: CancellationToken,
    mqtt_shutdown: CancellationToken,
    grace: Duration,
    workers: Vec<(&'static str, JoinHandle<()>)>,
    publisher: JoinHandle<()>,
    connection: JoinHandle<()>,
    generated_token: Option<String>,
    store: Arc<dyn Store>,
    /// The embedded broker, when the service runs one.
    embedded: Option<mqtt::embedded::Embedded>,
    /// Why the service stopped on its own, if a task died.
    died: Died,
}

/// The first task that ended before it was asked to, and how.
type Died = Arc<std::sync::Mutex<Option<String>>>;

/// Watches a task that must run until shutdown. Crash-only: if it ends
/// before (returning, or panicking), the whole service stops, and
/// [`Application::run_until_stopped`] returns the error, so that the process
/// exits non-zero and its supervisor restarts it from the store. A dead
/// engine behind a green `/readyz` is never an option.
fn supervise(
    name: &'static str,
    task: JoinHandle<()>,
    shutdown: CancellationToken,
    died: Died,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let outcome = task.await;
        if shutdown.is_cancelled() {
            if let Err(e) = outcome {
                error!(task = name, error = %e, "task failed while stopping");
            }
            return;
        }
        let why = match outcome {
            Ok(()) => format!("the {name} task ended on its own"),
            Err(e) => format!("the {name} task died: {e}"),
        };
        error!(task = name, %why, "stopping the service");
        died.lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(why);
        shutdown.cancel();
    })
}

impl Application {
    /// Connects everything the settings name and binds the HTTP port
    /// (port 0 picks a free one: see [`Application::http_addr`]).
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        settings.validate()?;
        let _ = metrics_handle();
        let store = store::connect(&settings.database_url)
            .await
            .with_context(|| format!("opening the store at {}", redact(&settings.database_url)))?;

        // Who may use the broker: the registry's logins, the admin's and the
        // service's own (on the embedded broker, a password made up now).
        let service_client_ids = vec![settings.mqtt_client_id.clone()];
        let admin = settings
            .mqtt_admin()?
            .map(|(username, password)| SettingsLogin { username, password });
        let mqtt_target = settings.mqtt_target()?;
        let service_login = match &mqtt_target {
            MqttTarget::Embedded => Some(SettingsLogin {
                username: settings.mqtt_client_id.clone(),
                password: Secret::new(access::secret::new_secret()),
            }),
            MqttTarget::External {
                username: Some(username),
                password,
                ..
            } => Some(SettingsLogin {
                username: username.clone(),
                password: password.clone().unwrap_or_else(|| Secret::new("")),
            }),
            MqttTarget::External { username: None, .. } => None,
        };
        let access = Arc::new(AccessControl::new(
            store.clone(),
            admin,
            service_login.clone(),
            service_client_ids,
        ));
        let shutdown = CancellationToken::new();
        let mut side_tasks = Vec::new();
        if let (Some(password_file), Some(acl_file)) = (
            settings.mosquitto_password_file.clone(),
            settings.mosquitto_acl_file.clone(),
        ) {
            let files = MosquittoFiles {
                password_file,
                acl_file,
                pid_file: settings.mosquitto_pid_file.clone(),
            };
            // Before connecting: the service's own login must be in the file.
            let logins = mosquitto::sync(&access, store.as_ref(), &files)
                .await
                .context("writing the Mosquitto password and ACL files")?;
            info!(logins, "Mosquitto password and ACL files written");
            side_tasks.push((
                "mosquitto files",
                tokio::spawn(mosquitto::run(
                    access.clone(),
                    store.clone(),
                    files,
                    shutdown.clone(),
                )),
            ));
        }

        let mut embedded = None;
        let target = match mqtt_target {
            MqttTarget::Embedded => {
                let broker = mqtt::embedded::start(settings.embedded_mqtt_addr, access.clone())
                    .await
                    .context("starting the embedded MQTT broker")?;
                let addr = broker.local_addr();
                side_tasks.push((
                    "broker revocations",
                    tokio::spawn(
                        broker
                            .clone()
                            .revoke_changed(access.subscribe(), shutdown.clone()),
                    ),
                ));
                embedded = Some(broker);
                let login = service_login.unwrap_or_else(|| SettingsLogin {
                    username: settings.mqtt_client_id.clone(),
                    password: Secret::new(""),
                });
                Target {
                    host: addr.ip().to_string(),
                    port: addr.port(),
                    client_id: settings.mqtt_client_id.clone(),
                    username: Some(login.username),
                    password: Some(login.password.expose().to_string()),
                }
            }
            MqttTarget::External {
                host,
                port,
                username,
                password,
            } => Target {
                host,
                port,
                client_id: settings.mqtt_client_id.clone(),
                username,
                password: password.map(|p| p.expose().to_string()),
            },
        };

        let mqtt_shutdown = CancellationToken::new();
        let died = Died::default();
        let (outgoing_tx, outgoing_rx) = mpsc::unbounded_channel();
        let (alerts_tx, _) = broadcast::channel(4096);
        let live_alerts = alerts_tx.clone();
        let (heartbeat_tx, heartbeat_rx) = mpsc::channel(100_000);

        // The VAPID key pair: generated on first start, kept in the store
        // (a new one would orphan every browser's subscription).
        let vapid = {
            let fresh = notify::webpush::VapidKeys::generate().to_private();
            let stored = store
                .init_meta(VAPID_KEY, fresh.expose())
                .await
                .context("keeping the Web Push (VAPID) key")?;
            notify::webpush::VapidKeys::from_private(&stored)
                .map_err(|e| anyhow::anyhow!("the stored Web Push (VAPID) key is unusable: {e}"))?
        };
        let push_policy = if settings.push_allow_loopback {
            notify::webpush::EndpointPolicy::AllowLoopback
        } else {
            notify::webpush::EndpointPolicy::Public
        };
        let push_config = http::PushConfig {
            public_key: vapid.public_key(),
            policy: push_policy,
        };
        // The key of signed offer links, generated on first start and kept.
        let link_key = notify::links::LinkKey::new(
            store
                .init_meta(LINK_KEY, &notify::links::LinkKey::generate())
                .await
                .context("keeping the offer links' key")?,
        );
        let channels = notify::Channels {
            remind_every: settings.escalation_repeat,
            ntfy: Some(notify::NtfyChannel {
                public_url: settings.public_url.clone(),
                links: link_key.clone(),
            }),
            push: Some(notify::PushChannel {
                keys: vapid,
                subject: notify::webpush::VapidSubject::parse(&settings.vapid_subject)
                    .map_err(|_| anyhow::anyhow!("invalid setting vapid_subject"))?,
                policy: push_policy,
            }),
            webhook: match (
                &settings.notify_webhook_url,
                &settings.notify_webhook_secret,
            ) {
                (Some(url), Some(secret)) => Some(notify::webhook::Webhook {
                    url: url.clone(),
                    secret: secret.clone(),
                }),
                _ => None,
            },
        };
        let wake_notifier = Arc::new(tokio::sync::Notify::new());
        let reachable = notify::Reachable::load(store.as_ref())
            .await
            .context("reading which volunteers have a push channel")?;
        let sinks = Sinks {
            outgoing: outgoing_tx.clone(),
            alerts: alerts_tx,
            reach: channels.reach(),
            reachable: reachable.clone(),
            notifier: wake_notifier.clone(),
        };
        let (engine, engine_task) =
            engine::start(settings.rules(), store.clone(), sinks, shutdown.clone()).await?;

        let conn = mqtt::client::connect(&target, mqtt_shutdown.clone());
        let publisher = tokio::spawn(mqtt::publish::run(conn.client.clone(), outgoing_rx));
        let ingest = Ingest {
            store: store.clone(),
            engine: engine.clone(),
            outgoing: outgoing_tx,
            heartbeats: heartbeat_tx,
            shutdown: shutdown.clone(),
        };
        let ingest_task = tokio::spawn(ingest.run(conn.client.clone(), conn.inbound));
        let heartbeat_task = tokio::spawn(mqtt::ingest::heartbeats(
            store.clone(),
            heartbeat_rx,
            shutdown.clone(),
        ));
        let notifier_task = tokio::spawn(
            notify::Notifier::new(store.clone(), channels, wake_notifier, reachable.clone())
                .run(shutdown.clone()),
        );

        let listener = tokio::net::TcpListener::bind(settings.http_addr)
            .await
            .with_context(|| format!("binding HTTP on {}", settings.http_addr))?;
        let http_addr = listener.local_addr()?;
        // Last, once nothing else can fail: a generated token is kept only
        // if this start goes on to print it.
        let (operator_token_hash, generated_token) = match &settings.operator_token {
            Some(t) => (http::hash_token(t.expose()), None),
            None => {
                // Generated on first start, printed once; its hash is kept.
                let token = http::new_token();
                let hash = http::hash_token(&token);
                let stored = store
                    .init_meta(OPERATOR_TOKEN_KEY, &hash)
                    .await
                    .context("keeping the generated operator token")?;
                let fresh = stored == hash;
                if !fresh {
                    info!(
                        "using the operator token generated on first start (set ONEPRESS_OPERATOR_TOKEN to replace it)"
                    );
                }
                (stored, fresh.then_some(token))
            }
        };
        let grace = settings.shutdown_grace;
        let metrics = metrics_handle();
        let upkeep_task = tokio::spawn(metrics_upkeep(metrics.clone(), shutdown.clone()));
        let router = http::router(AppState {
            store: store.clone(),
            engine,
            settings: Arc::new(settings),
            operator_token_hash: operator_token_hash.into(),
            mqtt_connected: conn.connected,
            alerts: live_alerts,
            shutdown: shutdown.clone(),
            metrics,
            access,
            push: push_config,
            reachable: reachable.clone(),
            link_key,
        });
        info!(%http_addr, mqtt = %format!("{}:{}", target.host, target.port), "onepress built");
        let workers = [
            ("engine", engine_task),
            ("ingest", ingest_task),
            ("heartbeats", heartbeat_task),
            ("notifier", notifier_task),
            ("metrics upkeep", upkeep_task),
        ]
        .into_iter()
        .chain(side_tasks)
        .map(|(name, task)| {
            let watched = supervise(name, task, shutdown.clone(), died.clone());
            (name, watched)
        })
        .collect();
        Ok(Self {
            http_addr,
            mqtt_addr: (target.host, target.port),
            listener,
            router,
            shutdown,
            mqtt_shutdown,
            grace,
            workers,
            died,
            embedded,
            publisher,
            connection: conn.task,
            generated_token,
            store,
        })
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The broker the service is connected to (host, port).
    pub fn mqtt_addr(&self) -> (String, u16) {
        self.mqtt_addr.clone()
    }

    /// The operator token generated on first start because none was
    /// configured (None on later starts: it is printed once).
    pub fn generated_operator_token(&self) -> Option<&str> {
        self.generated_token.as_deref()
    }

    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// Cancelling this token stops the service gracefully.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Serves until the shutdown token is cancelled, then stops in order.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        http::serve::serve(
            self.listener,
            self.router,
            self.shutdown.clone(),
            self.grace,
        )
        .await;
        self.shutdown.cancel();
        for (name, task) in self.workers {
            match tokio::time::timeout(self.grace, task).await {
                Ok(Ok(())) => info!(task = name, "stopped"),
                Ok(Err(e)) => error!(task = name, error = %e, "task failed"),
                Err(_) => warn!(task = name, "did not stop in time"),
            }
        }
        // Every sender of outgoing messages is gone now: the publisher
        // drains what was committed, then the connection closes.
        if tokio::time::timeout(self.grace, self.publisher)
            .await
            .is_err()
        {
            warn!("publisher did not finish in time");
        }
        // Give rumqttc a moment to put the last publishes on the wire.
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.mqtt_shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.connection).await;
        if let Some(broker) = self.embedded {
            broker.stop().await;
        }
        info!("onepress stopped");
        if let Some(why) = self.died.lock().unwrap_or_else(|e| e.into_inner()).take() {
            anyhow::bail!(why);
        }
        Ok(())
    }
}

/// Folds histogram samples into buckets now and then, until shutdown.
async fn metrics_upkeep(handle: PrometheusHandle, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(METRICS_UPKEEP);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = every.tick() => handle.run_upkeep(),
        }
    }
}

/// A database URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..s + 3], user, &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_task_that_dies_stops_the_service_and_says_why() {
        let shutdown = CancellationToken::new();
        let died = Died::default();
        let watched = supervise(
            "engine",
            tokio::spawn(async { panic!("boom") }),
            shutdown.clone(),
            died.clone(),
        );
        watched.await.unwrap();
        assert!(shutdown.is_cancelled());
        let why = died.lock().unwrap().clone().unwrap();
        assert!(why.contains("engine") && why.contains("died"), "{why}");
    }

    #[tokio::test]
    async fn a_task_that_ends_at_shutdown_is_no_failure() {
        let shutdown = CancellationToken::new();
        let died = Died::default();
        let s = shutdown.clone();
        let watched = supervise(
            "heartbeats",
            tokio::spawn(async move { s.cancelled().await }),
            shutdown.clone(),
            died.clone(),
        );
        shutdown.cancel();
        watched.await.unwrap();
        assert!(died.lock().unwrap().is_none());
    }

    #[tokio::test]
    async fn a_task_that_returns_early_is_a_failure_too() {
        let shutdown = CancellationToken::new();
        let died = Died::default();
        supervise(
            "ingest",
            tokio::spawn(async {}),
            shutdown.clone(),
            died.clone(),
        )
        .await
        .unwrap();
        assert!(shutdown.is_cancelled());
        assert!(
            died.lock()
                .unwrap()
                .as_deref()
                .unwrap()
                .contains("ended on its own")
        );
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("sqlite://onepress.db"), "sqlite://onepress.db");
    }
}
