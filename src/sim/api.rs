//! The simulator's HTTP side: the calls of the contract (§3) an operator
//! and a volunteer's phone make, with the operator's or the volunteer's
//! token. Setup calls are retried while the service answers 503 or cannot
//! be reached for a moment; a volunteer's action is tried once.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

/// What went wrong with a call.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{call}: {source}")]
    Transport {
        call: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{call}: HTTP {status}: {body}")]
    Status {
        call: String,
        status: StatusCode,
        body: String,
    },
    #[error("{call}: the answer has no {field}")]
    Missing { call: String, field: &'static str },
}

impl ApiError {
    fn retryable(&self) -> bool {
        match self {
            ApiError::Transport { source, .. } => source.is_connect() || source.is_timeout(),
            ApiError::Status { status, .. } => *status == StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Missing { .. } => false,
        }
    }
}

/// An alert as `GET /v1/alerts/{id}` shows it: the fields the report reads.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct StoredAlert {
    pub id: String,
    pub device_id: String,
    pub event_id: String,
    pub state: String,
    pub pressed_at: DateTime<Utc>,
    pub accepted_at: Option<DateTime<Utc>>,
    pub on_scene_at: Option<DateTime<Utc>>,
    pub response_deadline: DateTime<Utc>,
    pub arrival_deadline: DateTime<Utc>,
}

impl StoredAlert {
    pub fn is_active(&self) -> bool {
        matches!(
            self.state.as_str(),
            "open" | "offered" | "accepted" | "on_scene"
        )
    }
}

/// How a volunteer's action on an alert went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acted {
    Done,
    /// 409: the offer expired or was taken, or the alert moved on.
    Conflict,
}

/// A client of one running service.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    operator: String,
}

const ATTEMPTS: u32 = 5;

impl Api {
    pub fn new(base: &str, operator_token: &str) -> Result<Self, ApiError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|source| ApiError::Transport {
                call: "HTTP client".into(),
                source,
            })?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_string(),
            operator: operator_token.to_string(),
        })
    }

    /// One call: the status and the JSON body (Null when none).
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value), ApiError> {
        let call = format!("{method} {path}");
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let transport = |source| ApiError::Transport {
            call: call.clone(),
            source,
        };
        let r = req.send().await.map_err(transport)?;
        let status = r.status();
        let text = r.text().await.map_err(transport)?;
        if status.is_success() || status == StatusCode::CONFLICT || status == StatusCode::NOT_FOUND
        {
            return Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)));
        }
        Err(ApiError::Status {
            call,
            status,
            body: text.chars().take(300).collect(),
        })
    }

    /// A call retried while the service is briefly unavailable.
    async fn retried(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value), ApiError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.call(method.clone(), path, token, body).await {
                Err(e) if e.retryable() && attempt < ATTEMPTS => {
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                }
                r => return r,
            }
        }
    }

    /// A call that must succeed (retried while the service is briefly
    /// unavailable): its JSON answer.
    async fn must(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> Result<Value, ApiError> {
        match self
            .retried(method.clone(), path, token, body.as_ref())
            .await?
        {
            (status, v) if status.is_success() => Ok(v),
            (status, v) => Err(ApiError::Status {
                call: format!("{method} {path}"),
                status,
                body: v.to_string(),
            }),
        }
    }

    async fn put(&self, path: &str, token: &str, body: Value) -> Result<(), ApiError> {
        self.must(Method::PUT, path, token, Some(body)).await?;
        Ok(())
    }

    /// An operator's POST that issues a credential: that field of the answer.
    async fn issue(&self, path: &str, field: &'static str) -> Result<String, ApiError> {
        let v = self.must(Method::POST, path, &self.operator, None).await?;
        v[field]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| ApiError::Missing {
                call: format!("POST {path}"),
                field,
            })
    }

    pub async fn ready(&self) -> Result<(), ApiError> {
        self.must(Method::GET, "/readyz", "", None).await?;
        Ok(())
    }

    pub async fn put_senior(
        &self,
        id: &str,
        name: &str,
        lat: f64,
        lon: f64,
    ) -> Result<(), ApiError> {
        let body = json!({"name": name, "home": {"lat": lat, "lon": lon}, "notes": "simulated"});
        self.put(&format!("/v1/seniors/{id}"), &self.operator, body)
            .await
    }

    pub async fn put_device(&self, id: &str, senior: &str) -> Result<(), ApiError> {
        let body = json!({"senior_id": senior});
        self.put(&format!("/v1/devices/{id}"), &self.operator, body)
            .await
    }

    pub async fn put_volunteer(&self, id: &str, name: &str) -> Result<(), ApiError> {
        let body = json!({"name": name});
        self.put(&format!("/v1/volunteers/{id}"), &self.operator, body)
            .await
    }

    /// A new API token for a volunteer (also their phone's MQTT password).
    pub async fn volunteer_token(&self, id: &str) -> Result<String, ApiError> {
        self.issue(&format!("/v1/volunteers/{id}/token"), "token")
            .await
    }

    /// A band's MQTT password.
    pub async fn device_secret(&self, id: &str) -> Result<String, ApiError> {
        self.issue(&format!("/v1/devices/{id}/secret"), "password")
            .await
    }

    /// A gateway's MQTT password (the gateway is created if new).
    pub async fn gateway_secret(&self, id: &str) -> Result<String, ApiError> {
        self.issue(&format!("/v1/gateways/{id}/secret"), "password")
            .await
    }

    pub async fn duty(&self, token: &str, on_duty: bool) -> Result<(), ApiError> {
        self.put("/v1/me/duty", token, json!({"on_duty": on_duty}))
            .await
    }

    pub async fn location(&self, token: &str, lat: f64, lon: f64) -> Result<(), ApiError> {
        self.put("/v1/me/location", token, json!({"lat": lat, "lon": lon}))
            .await
    }

    /// An action on an alert (a volunteer's `accept`, `decline`, `arrive`,
    /// `resolve`; an operator's `cancel`), tried once.
    pub async fn act(
        &self,
        token: &str,
        alert: &str,
        action: &str,
        body: Option<Value>,
    ) -> Result<Acted, ApiError> {
        let path = format!("/v1/alerts/{alert}/{action}");
        let (status, v) = self.call(Method::POST, &path, token, body.as_ref()).await?;
        match status {
            s if s.is_success() => Ok(Acted::Done),
            StatusCode::CONFLICT => Ok(Acted::Conflict),
            status => Err(ApiError::Status {
                call: format!("POST {path}"),
                status,
                body: v.to_string(),
            }),
        }
    }

    /// An alert as stored, or None when there is no such alert.
    pub async fn alert(&self, id: &str) -> Result<Option<StoredAlert>, ApiError> {
        let path = format!("/v1/alerts/{id}");
        match self
            .retried(Method::GET, &path, &self.operator, None)
            .await?
        {
            (StatusCode::NOT_FOUND, _) => Ok(None),
            (_, v) => serde_json::from_value(v)
                .map(Some)
                .map_err(|_| ApiError::Missing {
                    call: format!("GET {path}"),
                    field: "the alert's fields",
                }),
        }
    }

    /// The newest alerts in any state (at most 1000: the service's cap).
    pub async fn newest_alerts(&self, limit: u32) -> Result<Vec<StoredAlert>, ApiError> {
        let path = format!("/v1/alerts?state=all&limit={limit}");
        let v = self.must(Method::GET, &path, &self.operator, None).await?;
        serde_json::from_value(v).map_err(|_| ApiError::Missing {
            call: format!("GET {path}"),
            field: "a list of alerts",
        })
    }

    /// Calls an alert off as the operator (clean-up at the end of a run).
    pub async fn cancel(&self, id: &str, reason: &str) -> Result<Acted, ApiError> {
        let body = json!({"reason": reason});
        self.act(&self.operator, id, "cancel", Some(body)).await
    }
}
