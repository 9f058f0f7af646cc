//! Our wrappers of axum's body, path and query extractors: the same input,
//! but every rejection becomes an [`ApiError`] with the contract's JSON body,
//! so bad input is never answered with axum's plain text or a 5xx.
//!
//! The rules, in one place:
//! - body: not JSON, not a JSON object, wrong types or missing fields →
//!   400; over the router's limit → 413. serde's derive would also read a
//!   struct from an array of its fields in order (`[30.5, 120.6]` as
//!   `{lat, lon}`); the document promises objects, so a body, and every
//!   struct nested in one, is read through [`FromObject`]. The `Content-Type` is not checked: a body is read as JSON
//!   whatever it claims to be (plain `curl -d` works). Unknown fields are
//!   ignored, so newer clients keep working.
//! - values that parse but are not acceptable (lat out of range, empty
//!   name) → 422, from the DTO's `TryFrom` (see [`super::error::Invalid`]).
//! - path ids are checked with the domain's `parse`; a malformed one is a
//!   422, the same as a malformed id in a body.
//! - query strings: unknown parameters are ignored, a value of the wrong
//!   type or an unknown enum value → 400.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::error::ApiError;
use crate::domain::IdError;

/// A JSON body; its rejections are [`ApiError`]s.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

/// A JSON body that may be left out: an empty body, or `null`, is
/// `T::default()`.
#[derive(Debug, Clone, Copy, Default)]
pub struct OptionalJson<T>(pub T);

/// One id in the path, validated by its domain type.
#[derive(Debug, Clone)]
pub struct IdPath<T>(pub T);

/// A query string; its rejections are [`ApiError`]s.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            ApiError::BadRequest(format!(
                "cannot read the request body: {}",
                rejection.body_text()
            ))
        }
    })
}

/// Parses a body that must be a JSON object; every failure is a 400
/// naming what serde found.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest(
            "the request body is empty: a JSON object is expected".into(),
        ));
    }
    serde_json::from_slice::<FromObject<T>>(bytes)
        .map(|FromObject(body)| body)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
}

/// A `T` read from a JSON object only, never from an array of its fields.
pub struct FromObject<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for FromObject<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ObjectOnly<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectOnly<T> {
            type Value = T;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }

        d.deserialize_map(ObjectOnly(PhantomData)).map(FromObject)
    }
}

/// For the structs nested in a body, through [`FromObject`]:
/// `#[serde(default, deserialize_with = "object::optional")]` on an
/// `Option<T>`, `object::optional_list` on an `Option<Vec<T>>`.
pub mod object {
    use serde::{Deserialize, Deserializer};

    use super::FromObject;

    /// For a required nested struct: `#[serde(deserialize_with = "object::required")]`.
    pub fn required<'de, D, T>(d: D) -> Result<T, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de>,
    {
        FromObject::<T>::deserialize(d).map(|FromObject(t)| t)
    }

    pub fn optional<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de>,
    {
        Ok(Option::<FromObject<T>>::deserialize(d)?.map(|FromObject(t)| t))
    }

    pub fn optional_list<'de, D, T>(d: D) -> Result<Option<Vec<T>>, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de>,
    {
        Ok(Option::<Vec<FromObject<T>>>::deserialize(d)?
            .map(|list| list.into_iter().map(|FromObject(t)| t).collect()))
    }
}

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = body_bytes(req, state).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

impl<S, T> FromRequest<S> for OptionalJson<T>
where
    T: DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = body_bytes(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) || bytes.trim_ascii() == b"null" {
            return Ok(OptionalJson(T::default()));
        }
        parse_json::<T>(&bytes).map(OptionalJson)
    }
}

impl<S, T> FromRequestParts<S> for IdPath<T>
where
    T: TryFrom<String, Error = IdError> + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| ApiError::BadRequest(rejection.body_text()))?;
        T::try_from(raw)
            .map(IdPath)
            .map_err(|e| ApiError::Unprocessable(format!("invalid id in the path: {e}")))
    }
}

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| ApiQuery(q))
            .map_err(|rejection| ApiError::BadRequest(rejection.body_text()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::extract::DefaultBodyLimit;
    use axum::response::IntoResponse;
    use axum::routing::{get, post};
    use axum::{Json, Router};
    use serde::Deserialize;

    use crate::domain::DeviceId;

    #[derive(Debug, Deserialize, Default)]
    struct Body1 {
        name: String,
        #[serde(default)]
        n: u32,
    }

    #[derive(Debug, Deserialize, Default)]
    struct Nested {
        #[serde(default, deserialize_with = "object::optional")]
        one: Option<Body1>,
        #[serde(default, deserialize_with = "object::optional_list")]
        many: Option<Vec<Body1>>,
    }

    fn app() -> Router {
        Router::new()
            .route(
                "/nested",
                post(|ApiJson(b): ApiJson<Nested>| async move {
                    Json(b.one.map_or(0, |o| o.n) + b.many.map_or(0, |m| m.len() as u32))
                }),
            )
            .route(
                "/json",
                post(|ApiJson(b): ApiJson<Body1>| async move { Json(b.name.len() as u32 + b.n) }),
            )
            .route(
                "/optional",
                post(|OptionalJson(b): OptionalJson<Body1>| async move { b.name }),
            )
            .route(
                "/ids/{id}",
                get(|IdPath(id): IdPath<DeviceId>| async move { id.to_string() }),
            )
            .route(
                "/q",
                get(|ApiQuery(b): ApiQuery<Body1>| async move { b.name }),
            )
            .layer(DefaultBodyLimit::max(64))
            .fallback(|| async { ApiError::NoRoute.into_response() })
    }

    async fn call(method: &str, uri: &str, body: &str) -> (u16, serde_json::Value) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, app()).await });
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let res = reqwest::Client::new()
            .request(method, format!("http://{addr}{uri}"))
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let bytes = res.bytes().await.unwrap();
        server.abort();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&bytes).into()));
        (status, value)
    }

    #[tokio::test]
    async fn a_good_body_is_read_whatever_its_content_type() {
        let (status, body) =
            call("POST", "/json", r#"{"name": "ab", "n": 1, "extra": true}"#).await;
        assert_eq!((status, body), (200, serde_json::json!(3)));
    }

    #[tokio::test]
    async fn bad_json_wrong_types_and_missing_fields_are_400s_in_our_shape() {
        for body in [
            "{not json",
            r#"{"name": 5}"#,
            r#"{"n": 1}"#,
            "",
            "[]",
            // What serde would read as `{"name": "ab", "n": 1}`.
            r#"["ab", 1]"#,
            "\"ab\"",
            "null",
            "17",
        ] {
            let (status, value) = call("POST", "/json", body).await;
            assert_eq!(status, 400, "{body}");
            assert_eq!(value["error"]["code"], "bad_request", "{body}");
        }
    }

    #[tokio::test]
    async fn nested_structs_are_read_from_objects_only() {
        let good = r#"{"one": {"name": "a", "n": 2}, "many": [{"name": "b"}]}"#;
        assert_eq!(
            call("POST", "/nested", good).await,
            (200, serde_json::json!(3))
        );
        assert_eq!(call("POST", "/nested", r#"{"one": null}"#).await.0, 200);
        for body in [
            r#"{"one": ["a", 2]}"#,
            r#"{"many": [["b", 1]]}"#,
            r#"{"many": {"name": "b"}}"#,
            r#"{"one": {"name": "a", "name": "b"}}"#,
        ] {
            let (status, value) = call("POST", "/nested", body).await;
            assert_eq!(status, 400, "{body}");
            assert_eq!(value["error"]["code"], "bad_request", "{body}");
        }
    }

    #[tokio::test]
    async fn an_oversized_body_is_a_413_in_our_shape() {
        let big = format!(r#"{{"name": "{}"}}"#, "x".repeat(200));
        let (status, value) = call("POST", "/json", &big).await;
        assert_eq!(status, 413);
        assert_eq!(value["error"]["code"], "payload_too_large");
    }

    #[tokio::test]
    async fn an_optional_body_may_be_left_out() {
        assert_eq!(call("POST", "/optional", "").await.0, 200);
        assert_eq!(call("POST", "/optional", "null").await.0, 200);
        assert_eq!(call("POST", "/optional", " null ").await.0, 200);
        assert_eq!(call("POST", "/optional", "{").await.0, 400);
        assert_eq!(call("POST", "/optional", r#"["ab"]"#).await.0, 400);
        assert_eq!(call("POST", "/optional", "nullx").await.0, 400);
    }

    #[tokio::test]
    async fn a_malformed_path_id_is_a_422() {
        assert_eq!(call("GET", "/ids/band-1", "").await.0, 200);
        let (status, value) = call("GET", "/ids/band%201", "").await;
        assert_eq!(status, 422);
        assert_eq!(value["error"]["code"], "invalid");
    }

    #[tokio::test]
    async fn a_bad_query_is_a_400() {
        assert_eq!(call("GET", "/q?name=x&other=1", "").await.0, 200);
        assert_eq!(call("GET", "/q?name=x&n=lots", "").await.0, 400);
    }
}
