//! `GET /openapi.json`: the OpenAPI 3.1 document of every HTTP endpoint,
//! generated from the code.
//!
//! Each handler carries a `#[utoipa::path]` (method, path, parameters, body,
//! every answer it can give) and the types it reads and writes derive
//! `utoipa::ToSchema`, so the document follows the code. [`ApiDoc`] lists
//! the handlers; a path missing from it fails the tests below, which compare
//! the document with [`ROUTES`], the list of what the router serves. The
//! reusable error answers ([`BadRequest`], [`Unauthorized`], …) all carry the
//! one error body, [`ErrorBody`].
//!
//! The document is built once, on first request, and served as is (no
//! auth). It must never describe what the contract does not promise without
//! saying so: extensions are listed in the description and in
//! `x-onepress-extensions`.

use std::sync::OnceLock;

use axum::Router;
use axum::http::header::{CONTENT_TYPE, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToResponse};

use super::error::ErrorBody;
use super::{
    AppState, access, alerts, health, live, metrics, push, qr, registry, stats, volunteer,
};

/// The name of the bearer security scheme in the document.
pub const BEARER: &str = "bearer";
/// The name of the `?access_token=` scheme (`/v1/alerts/stream` only).
pub const ACCESS_TOKEN: &str = "access_token";
/// The name of the broker hooks' security scheme.
pub const BROKER_HOOK: &str = "broker_hook";

/// The compatible additions to contract version 1 (README, "Extensions to
/// the contract"), as the document states them.
pub const EXTENSIONS: &[&str] = &[
    "`volunteers/{id}/offers` (MQTT) carries a third message type, `assigned`, when an operator \
     dispatches a volunteer by hand: {type, alert_id, kind, lat, lon, distance_m, eta_s, senior}.",
    "Alerts carry `cancelled_at`, `event_id` (the band's event that opened it) and `outcome`; \
     `escalated` is true while the alert waits with nobody to offer it to, and false again once \
     it is offered.",
    "Timeline events `pressed` and `pressed_again` carry the band's `event_id`.",
    "A band `cancel` that finds no active alert is remembered and acknowledged with \
     {alert_id: null, event_id, state: received}; it creates nothing.",
    "Band notices are also sent for `offered`, `open` (back to waiting), `on_scene`, `resolved` \
     and `cancelled`.",
    "Rejected band messages are counted with the `reason` labels too_large, not_json, \
     invalid_field, unknown_topic, invalid_device_id, unknown_device, nothing_to_cancel, and \
     overloaded (a QoS 0 heartbeat dropped while more than 10,000 messages wait), as well as \
     the contract's rate_limited, and store_refused (an error that would recur on every retry).",
    "Breach timeline events are stamped at the deadline itself, even when recorded later.",
    "`POST /v1/offers/{id}/{action}?volunteer=&expires=&sig=`: a signed link (no token) that \
     accepts or declines one offer for one volunteer until it expires; behind the buttons of an \
     ntfy notification. A volunteer's optional `ntfy_url` receives each offer.",
    "Web Push for volunteers: `GET /v1/push/key` (the VAPID public key, no auth), \
     `POST /v1/me/push` and `DELETE /v1/me/push` (a browser's push subscription); offers are \
     pushed to every subscription of the volunteer.",
    "Timeline events of type `notified` record each try of a notification (the signed webhook, \
     `ONEPRESS_NOTIFY_WEBHOOK_URL`): `channel`, `recipient` (`volunteer:<id>`, `operators`, \
     `contacts:<senior id>`), `outcome` (delivered, retrying, failed), `note` (the event: offer, \
     escalated, response_breached, arrival_breached, reminder, pressed, accepted, on_scene, \
     resolved) and, \
     for a failure, `reason`.",
    "Listed devices carry `low_battery`; `GET /v1/me` lists pending offers with `offered_at` and \
     `pressed_at`, and `current_alert` carries the senior's card.",
    "`GET /v1/alerts` takes at most 1000 alerts per call (a larger `limit` is lowered; 0 is a \
     422); the default is 100.",
    "`POST /v1/alerts/{id}/cancel` may be sent with no body.",
    "`GET /v1/alerts/stream` also takes the operator token as `?access_token=` (for a browser's \
     `EventSource`), and sends a `resync` event (`{\"missed\": n}`) to a client that fell behind.",
    "`GET /v1/stats/sla` echoes the window it used as `from` and `to`; `to` defaults to now and \
     `from` to 24 hours before `to`; a `from` not before `to` is a 400.",
    "`GET /metrics` has more series than the contract names.",
    "Texts and ids holding a NUL character are refused (422; a band event with one is rejected \
     as `invalid_field`).",
    "The pages' script and style are served under `/assets/`. The volunteer page is an \
     installable web app: its manifest (`/assets/volunteer.webmanifest`) and icons \
     (`/assets/icons/`) are there too, and its service worker (offline shell, Web Push \
     notifications with Accept and Decline) is `/volunteer-sw.js`.",
    "`POST /v1/qr` (operators) answers a text of 1 to 1024 characters (2331 bytes at most), `{\"text\": \"…\"}`, as \
     an SVG QR code (`image/svg+xml`, level M, with a quiet zone), for the dashboard's \
     volunteer sign-in links.",
];

const DESCRIPTION: &str = "One press, a 3-minute response, a 10-minute arrival: the HTTP API of \
onepress (contract version 2).\n\n\
**Auth**: `Authorization: Bearer <token>`. The operator token comes from the settings; a \
volunteer's token is issued by an operator (`POST /v1/volunteers/{id}/token`). Missing or \
unknown token: 401. A known token of the wrong role, or an alert that is not the caller's: 403. \
Each secured operation names the roles it accepts in `x-onepress-roles`.\n\n\
**Errors** are `{\"error\": {\"code\": \"…\", \"message\": \"…\"}}`; bad input is a 400 (not \
JSON, wrong types, missing fields, malformed query), 413 (body over 64 KiB) or 422 (values out \
of range, malformed ids, NUL characters in a text), never a 5xx. A 503 means the store or the engine cannot serve right \
now: retry. Unknown fields in a body and unknown query parameters are ignored.\n\n\
**Times** are RFC 3339 in UTC with milliseconds; coordinates are WGS 84 degrees.\n\n\
**Extensions** to the contract (compatible additions), also in `x-onepress-extensions`:\n";

#[derive(OpenApi)]
#[openapi(
    info(title = "onepress", license(name = "MIT")),
    paths(
        registry::list_seniors,
        registry::put_senior,
        registry::get_senior,
        registry::list_devices,
        registry::put_device,
        registry::list_volunteers,
        registry::put_volunteer,
        registry::issue_token,
        access::device_secret,
        access::gateway_secret,
        access::hook_auth,
        access::hook_acl,
        qr::qr_code,
        volunteer::me,
        volunteer::set_duty,
        volunteer::set_location,
        push::key,
        alerts::offer_link,
        push::subscribe,
        push::unsubscribe,
        alerts::list_alerts,
        alerts::get_alert,
        alerts::accept,
        alerts::decline,
        alerts::arrive,
        alerts::resolve,
        alerts::cancel,
        alerts::assign,
        live::stream,
        stats::sla,
        health::healthz,
        health::readyz,
        metrics::metrics,
        openapi_json,
        dashboard_page,
        volunteer_page,
        style_asset,
        common_script,
        dashboard_script,
        volunteer_script,
        push_script,
        volunteer_worker,
        volunteer_manifest,
        icon_192,
        icon_512,
        icon_maskable_512,
        apple_touch_icon,
        badge_icon,
    ),
    components(
        schemas(ErrorBody, crate::domain::GatewayId),
        responses(
            BadRequest,
            Unauthorized,
            Forbidden,
            NotFound,
            Conflict,
            PayloadTooLarge,
            Unprocessable,
            Unavailable
        )
    ),
    modifiers(&Additions),
    tags(
        (name = "registry", description = "Seniors, their bands and volunteers (operators)."),
        (name = "volunteer", description = "A volunteer's own calls, with their own token."),
        (name = "alerts", description = "Reading alerts and acting on them."),
        (name = "broker", description = "The broker hooks: an external broker (EMQX, or any with the same calls) asks who may connect and what each may do. Off (404) unless a broker hook token is set."),
        (name = "operations", description = "Probes, metrics and this document (no auth)."),
        (name = "pages", description = "The browser pages (no auth: the page asks for a token)."),
    )
)]
pub struct ApiDoc;

/// What the derive cannot say: the security scheme, the version, the
/// description with its list of extensions.
struct Additions;

impl Modify for Additions {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The operator token (settings) or a volunteer's token (issued by \
                         `POST /v1/volunteers/{id}/token`).",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            BROKER_HOOK,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The broker hook token of the settings (`ONEPRESS_BROKER_HOOK_TOKEN`), \
                         presented by the broker on `/v1/mqtt/auth` and `/v1/mqtt/acl`.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            ACCESS_TOKEN,
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "access_token",
                "The operator token in the query, for `GET /v1/alerts/stream` only.",
            ))),
        );
        doc.info.version = format!("2 (onepress {})", env!("CARGO_PKG_VERSION"));
        let mut description = DESCRIPTION.to_string();
        for e in EXTENSIONS {
            description.push_str("- ");
            description.push_str(e);
            description.push('\n');
        }
        doc.info.description = Some(description);
        let mut extensions = Extensions::default();
        extensions.insert("x-onepress-extensions".into(), EXTENSIONS.into());
        doc.extensions = Some(extensions);
    }
}

// ----- the reusable error answers --------------------------------------------

/// Bad input: not JSON, wrong types, missing fields, or a malformed query string.
#[derive(ToResponse)]
pub struct BadRequest(pub ErrorBody);

/// No token, a malformed `Authorization` header, or an unknown token.
#[derive(ToResponse)]
#[response(headers(("WWW-Authenticate" = String, description = "`Bearer`")))]
pub struct Unauthorized(pub ErrorBody);

/// A known token of the wrong role, or an alert that is not the caller's.
#[derive(ToResponse)]
pub struct Forbidden(pub ErrorBody);

/// No such senior, device, volunteer or alert (on the broker hooks: the hooks are off).
#[derive(ToResponse)]
pub struct NotFound(pub ErrorBody);

/// The state does not allow it; `code` tells which case: `offer_gone` (the
/// offer expired, was declined, withdrawn or taken), `wrong_state`,
/// `volunteer_busy`, `alert_closed` (resolved or cancelled) or `conflict`.
#[derive(ToResponse)]
pub struct Conflict(pub ErrorBody);

/// The body is over 64 KiB.
#[derive(ToResponse)]
pub struct PayloadTooLarge(pub ErrorBody);

/// Well-formed input whose values are not acceptable: a malformed id, a
/// coordinate out of range, an empty or too long text, too many entries.
#[derive(ToResponse)]
pub struct Unprocessable(pub ErrorBody);

/// The store or the engine cannot serve right now; retrying may work.
#[derive(ToResponse)]
pub struct Unavailable(pub ErrorBody);

// ----- the routes -------------------------------------------------------------

/// Every route the router serves, as (method, path) with the document's
/// `{param}` syntax, and whether it needs a token. The tests hold the
/// document to this list, and the integration tests hold the router to it.
pub const ROUTES: &[(&str, &str, bool)] = &[
    ("get", "/v1/seniors", true),
    ("put", "/v1/seniors/{id}", true),
    ("get", "/v1/seniors/{id}", true),
    ("get", "/v1/devices", true),
    ("put", "/v1/devices/{device_id}", true),
    ("get", "/v1/volunteers", true),
    ("put", "/v1/volunteers/{id}", true),
    ("post", "/v1/volunteers/{id}/token", true),
    ("post", "/v1/devices/{device_id}/secret", true),
    ("post", "/v1/gateways/{id}/secret", true),
    ("post", "/v1/mqtt/auth", true),
    ("post", "/v1/mqtt/acl", true),
    ("post", "/v1/qr", true),
    ("get", "/v1/me", true),
    ("put", "/v1/me/duty", true),
    ("put", "/v1/me/location", true),
    ("get", "/v1/push/key", false),
    ("post", "/v1/me/push", true),
    ("delete", "/v1/me/push", true),
    ("post", "/v1/offers/{id}/{action}", false),
    ("get", "/v1/alerts", true),
    ("get", "/v1/alerts/{id}", true),
    ("post", "/v1/alerts/{id}/accept", true),
    ("post", "/v1/alerts/{id}/decline", true),
    ("post", "/v1/alerts/{id}/arrive", true),
    ("post", "/v1/alerts/{id}/resolve", true),
    ("post", "/v1/alerts/{id}/cancel", true),
    ("post", "/v1/alerts/{id}/assign", true),
    ("get", "/v1/alerts/stream", true),
    ("get", "/v1/stats/sla", true),
    ("get", "/healthz", false),
    ("get", "/readyz", false),
    ("get", "/metrics", false),
    ("get", "/openapi.json", false),
    ("get", "/", false),
    ("get", "/volunteer", false),
    ("get", "/assets/onepress.css", false),
    ("get", "/assets/common.js", false),
    ("get", "/assets/dashboard.js", false),
    ("get", "/assets/volunteer.js", false),
    ("get", "/assets/push.js", false),
    ("get", "/volunteer-sw.js", false),
    ("get", "/assets/volunteer.webmanifest", false),
    ("get", "/assets/icons/volunteer-192.png", false),
    ("get", "/assets/icons/volunteer-512.png", false),
    ("get", "/assets/icons/volunteer-maskable-512.png", false),
    ("get", "/assets/icons/apple-touch-icon.png", false),
    ("get", "/assets/icons/badge-96.png", false),
];

pub fn router() -> Router<AppState> {
    Router::new().route("/openapi.json", get(openapi_json))
}

/// The document as JSON, built once.
pub fn document_json() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        ApiDoc::openapi()
            .to_pretty_json()
            .expect("the OpenAPI document serializes")
    })
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document of this API.",
            body = Object, content_type = "application/json"),
    )
)]
async fn openapi_json() -> Response {
    (
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        document_json(),
    )
        .into_response()
}

// ----- the pages ----------------------------------------------------------------
// `super::pages` serves them from one handler for all its files, so each
// path is documented by a function of its own here (never called).

/// Declares a documented page or asset (a text or bytes, or the JSON
/// `Object` given last).
macro_rules! page {
    ($(#[$doc:meta])* $name:ident, $path:literal, $content_type:literal) => {
        page!($(#[$doc])* $name, $path, $content_type, String);
    };
    ($(#[$doc:meta])* $name:ident, $path:literal, $content_type:literal, $body:ident) => {
        $(#[$doc])*
        #[utoipa::path(
            get,
            path = $path,
            tag = "pages",
            responses((status = 200, description = "The file", body = $body,
                content_type = $content_type))
        )]
        #[allow(dead_code)]
        fn $name() {}
    };
}

page!(
    /// The operator dashboard (asks for the operator token, keeps it in the
    /// browser; loads nothing from another host).
    dashboard_page,
    "/",
    "text/html"
);
page!(
    /// The volunteer's phone page (asks for the volunteer's token).
    volunteer_page,
    "/volunteer",
    "text/html"
);
page!(
    /// The pages' style sheet.
    style_asset,
    "/assets/onepress.css",
    "text/css"
);
page!(
    /// The pages' shared script (a JavaScript module).
    common_script,
    "/assets/common.js",
    "text/javascript"
);
page!(
    /// The dashboard's script.
    dashboard_script,
    "/assets/dashboard.js",
    "text/javascript"
);
page!(
    /// The volunteer page's script.
    volunteer_script,
    "/assets/volunteer.js",
    "text/javascript"
);
page!(
    /// The volunteer page's service worker registration, the token kept
    /// for the worker, and the switch for Web Push.
    push_script,
    "/assets/push.js",
    "text/javascript"
);
page!(
    /// The volunteer page's service worker (scope `/volunteer`): the offline
    /// shell, and offers pushed as notifications with Accept and Decline.
    volunteer_worker,
    "/volunteer-sw.js",
    "text/javascript"
);
page!(
    /// The volunteer page's web app manifest (installable, standalone).
    volunteer_manifest,
    "/assets/volunteer.webmanifest",
    "application/manifest+json",
    Object
);
page!(
    /// The volunteer app's icon, 192 × 192.
    icon_192,
    "/assets/icons/volunteer-192.png",
    "image/png"
);
page!(
    /// The volunteer app's icon, 512 × 512.
    icon_512,
    "/assets/icons/volunteer-512.png",
    "image/png"
);
page!(
    /// The volunteer app's maskable icon, 512 × 512 (the platform cuts its
    /// own shape).
    icon_maskable_512,
    "/assets/icons/volunteer-maskable-512.png",
    "image/png"
);
page!(
    /// The Home Screen icon on iOS, 180 × 180.
    apple_touch_icon,
    "/assets/icons/apple-touch-icon.png",
    "image/png"
);
page!(
    /// The notifications' monochrome badge (Android's status bar), 96 × 96.
    badge_icon,
    "/assets/icons/badge-96.png",
    "image/png"
);

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::*;

    fn doc() -> Value {
        serde_json::from_str(document_json()).expect("the document is JSON")
    }

    const METHODS: &[&str] = &["get", "put", "post", "delete", "patch", "head", "options"];

    fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
        let mut ops = Vec::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("path item") {
                if METHODS.contains(&method.as_str()) {
                    ops.push((method.clone(), path.clone(), op));
                }
            }
        }
        ops
    }

    #[test]
    fn the_document_is_openapi_3() {
        let doc = doc();
        assert!(
            doc["openapi"].as_str().unwrap().starts_with("3."),
            "{}",
            doc["openapi"]
        );
        assert_eq!(doc["info"]["title"], "onepress");
        assert_eq!(
            doc["components"]["securitySchemes"][BEARER]["scheme"],
            "bearer"
        );
        let extensions = doc["x-onepress-extensions"].as_array().unwrap();
        assert_eq!(extensions.len(), EXTENSIONS.len());
        let description = doc["info"]["description"].as_str().unwrap();
        assert!(description.contains("`assigned`"));
    }

    #[test]
    fn the_document_has_exactly_the_routes_the_router_serves() {
        let doc = doc();
        let documented: BTreeSet<(String, String)> = operations(&doc)
            .into_iter()
            .map(|(m, p, _)| (m, p))
            .collect();
        let served: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|(m, p, _)| (m.to_string(), p.to_string()))
            .collect();
        assert_eq!(ROUTES.len(), served.len(), "ROUTES has a duplicate");
        let missing: Vec<_> = served.difference(&documented).collect();
        let extra: Vec<_> = documented.difference(&served).collect();
        assert!(missing.is_empty(), "not in the document: {missing:?}");
        assert!(extra.is_empty(), "documented but not served: {extra:?}");
    }

    #[test]
    fn secured_routes_declare_bearer_and_their_401_and_open_ones_do_not() {
        let doc = doc();
        for (method, path, op) in operations(&doc) {
            let (_, _, secured) = ROUTES
                .iter()
                .find(|(m, p, _)| *m == method && *p == path)
                .unwrap_or_else(|| panic!("{method} {path} is not in ROUTES"));
            let security = op["security"].as_array();
            if *secured {
                let security = security.unwrap_or_else(|| panic!("{method} {path}: no security"));
                if security.iter().any(|s| s.get(BROKER_HOOK).is_some()) {
                    // The broker hooks take the hook token, and have no roles.
                    assert!(
                        op["responses"]["401"].is_object(),
                        "{method} {path}: no 401"
                    );
                    continue;
                }
                assert!(
                    security.iter().any(|s| s.get(BEARER).is_some()),
                    "{method} {path}: {security:?}"
                );
                assert!(
                    security
                        .iter()
                        .all(|s| s.as_object().is_some_and(|s| !s.is_empty())),
                    "{method} {path}: an empty requirement makes the token optional"
                );
                assert!(
                    op["responses"]["401"].is_object(),
                    "{method} {path}: no 401"
                );
                assert!(
                    op["responses"]["403"].is_object(),
                    "{method} {path}: no 403"
                );
                let roles = op["x-onepress-roles"].as_array();
                assert!(
                    roles.is_some_and(|r| !r.is_empty()),
                    "{method} {path}: no x-onepress-roles"
                );
            } else {
                assert!(
                    security.is_none_or(|s| s.is_empty()),
                    "{method} {path} needs no token but declares {security:?}"
                );
                assert!(op["responses"]["401"].is_null(), "{method} {path}: a 401");
            }
        }
    }

    #[test]
    fn every_operation_documents_a_success_and_its_errors_use_the_error_body() {
        let doc = doc();
        for (method, path, op) in operations(&doc) {
            let responses = op["responses"].as_object().unwrap();
            assert!(
                responses.keys().any(|k| k.starts_with('2')),
                "{method} {path}: no 2xx"
            );
            assert!(op["operationId"].is_string(), "{method} {path}");
            for (status, response) in responses {
                if !status.starts_with('4') {
                    continue;
                }
                let reference = response["$ref"].as_str().unwrap_or_else(|| {
                    panic!("{method} {path} {status}: not a shared error answer")
                });
                let name = reference.rsplit('/').next().unwrap();
                let schema = &doc["components"]["responses"][name]["content"]["application/json"]["schema"]
                    ["$ref"];
                assert_eq!(schema, "#/components/schemas/ErrorBody", "{reference}");
            }
        }
    }

    #[test]
    fn every_page_and_asset_is_a_route() {
        for asset in super::super::pages::ASSETS {
            assert!(
                ROUTES.contains(&("get", asset.path, false)),
                "{} is served but not in ROUTES",
                asset.path
            );
        }
    }

    #[test]
    fn every_reference_resolves() {
        fn refs<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a str>) {
            match v {
                serde_json::Value::Object(map) => {
                    if let Some(r) = map.get("$ref").and_then(|r| r.as_str()) {
                        out.push(r);
                    }
                    map.values().for_each(|v| refs(v, out));
                }
                serde_json::Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
                _ => {}
            }
        }
        let doc = doc();
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(!found.is_empty());
        for r in found {
            let pointer = r.strip_prefix('#').expect("a local reference");
            assert!(doc.pointer(pointer).is_some(), "{r} does not resolve");
        }
    }

    /// Every string leaf of a schema, as (where, schema), following
    /// references, combinators, properties and items.
    fn strings<'a>(
        doc: &'a Value,
        at: String,
        schema: &'a Value,
        out: &mut Vec<(String, &'a Value)>,
    ) {
        if let Some(r) = schema["$ref"].as_str() {
            let target = doc.pointer(r.trim_start_matches('#')).expect("resolves");
            return strings(doc, at, target, out);
        }
        for key in ["oneOf", "anyOf", "allOf"] {
            for s in schema[key].as_array().into_iter().flatten() {
                strings(doc, at.clone(), s, out);
            }
        }
        for (name, s) in schema["properties"].as_object().into_iter().flatten() {
            strings(doc, format!("{at}.{name}"), s, out);
        }
        if schema["items"].is_object() {
            strings(doc, format!("{at}[]"), &schema["items"], out);
        }
        let is_string = match &schema["type"] {
            Value::String(t) => t == "string",
            Value::Array(ts) => ts.iter().any(|t| t == "string"),
            _ => false,
        };
        if is_string {
            out.push((at, schema));
        }
    }

    /// The document tells a good body from a bad one as the validators do
    /// (`super::super::validate`): every text a body takes has a
    /// `maxLength` and the pattern of its kind, so that a client (and
    /// schemathesis) knows that NUL, blank names and long texts are refused.
    #[test]
    fn every_text_in_a_body_carries_its_length_and_pattern() {
        use super::super::validate::{NAME_PATTERN, TEXT_PATTERN, URL_PATTERN};
        use crate::domain::ids::{NO_NUL_PATTERN, SLUG_PATTERN};
        // The broker hooks pass on what an MQTT client sent: any text of
        // the stated length.
        const ANY_TEXT: &[&str] = &[
            "/v1/mqtt/auth.clientid",
            "/v1/mqtt/auth.username",
            "/v1/mqtt/auth.password",
            "/v1/mqtt/acl.clientid",
            "/v1/mqtt/acl.username",
            "/v1/mqtt/acl.topic",
        ];
        let doc = doc();
        let mut found = Vec::new();
        for (_, path, op) in operations(&doc) {
            let schema = &op["requestBody"]["content"]["application/json"]["schema"];
            if !schema.is_null() {
                strings(&doc, path, schema, &mut found);
            }
        }
        let texts: Vec<&str> = found.iter().map(|(at, _)| at.as_str()).collect();
        for expected in [
            "/v1/seniors/{id}.contacts[].name",
            "/v1/volunteers/{id}.skills[]",
        ] {
            assert!(
                texts.contains(&expected),
                "{expected} not found in {texts:?}"
            );
        }
        for (at, schema) in &found {
            if schema["enum"].is_array() {
                continue;
            }
            assert!(schema["maxLength"].is_u64(), "{at}: no maxLength");
            if ANY_TEXT.contains(&at.as_str()) {
                continue;
            }
            let pattern = schema["pattern"].as_str().unwrap_or_default();
            assert!(
                [
                    NAME_PATTERN,
                    TEXT_PATTERN,
                    SLUG_PATTERN,
                    NO_NUL_PATTERN,
                    URL_PATTERN
                ]
                .contains(&pattern),
                "{at}: pattern {pattern:?}"
            );
            if pattern == NAME_PATTERN {
                assert_eq!(schema["minLength"], 1, "{at}");
            }
        }
    }

    #[test]
    fn ids_and_positions_carry_their_rules() {
        let doc = doc();
        let schemas = &doc["components"]["schemas"];
        for id in ["DeviceId", "SeniorId", "VolunteerId", "GatewayId"] {
            assert_eq!(
                schemas[id]["pattern"],
                crate::domain::ids::SLUG_PATTERN,
                "{id}"
            );
        }
        assert_eq!(schemas["Position"]["properties"]["lat"]["minimum"], -90.0);
        assert_eq!(schemas["Position"]["properties"]["lon"]["maximum"], 180.0);
        assert_eq!(
            schemas["Alert"]["properties"]["pressed_at"]["format"],
            "date-time"
        );
    }
}
