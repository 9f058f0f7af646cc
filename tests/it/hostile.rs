//! Hostile input over HTTP (issue 8, "Hostile input"): every route that
//! takes a JSON body gets generated bad bodies with a valid token, on the
//! real application: bytes that are not JSON, JSON that is not an object,
//! a valid body with one field made bad (wrong type, out of range, huge
//! numbers, `NaN`-like strings, NUL, blank, far too long), a required
//! field left out, deep nesting, a body over 64 KiB. Each must be answered
//! with a 4xx in the contract's error shape (never a 5xx, never a dropped
//! connection), change nothing, and leave the service answering.
//!
//! Bounded: a fixed number of cases (proptest, no shrinking budget to
//! speak of unless something fails), a few seconds per backend.

use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use serde_json::{Map, Value, json};

use crate::common::{Answer, Backend, TestApp, s, spawn_app_with, unique};
use crate::on_both_backends;

on_both_backends!(
    hostile_bodies_are_refused_in_the_error_shape,
    a_nul_in_a_broker_hook_question_is_answered,
    the_next_request_after_a_413_is_answered,
);

/// Generated cases per backend.
const CASES: u32 = 1000;

/// Set to a failed run's seed (64 hex digits) to run its cases again.
const SEED_VAR: &str = "ONEPRESS_HOSTILE_SEED";

/// This run's seed: from [`SEED_VAR`], or fresh (other cases each run).
fn seed() -> [u8; 32] {
    match std::env::var(SEED_VAR) {
        Ok(v) => {
            let bytes: Vec<u8> = (0..v.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(v.get(i..i + 2).unwrap_or("zz"), 16))
                .collect::<Result<_, _>>()
                .unwrap_or_else(|e| panic!("{SEED_VAR}: {e}"));
            bytes
                .try_into()
                .unwrap_or_else(|_| panic!("{SEED_VAR}: 64 hex digits"))
        }
        Err(_) => rand::random(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Who calls a route.
#[derive(Debug, Clone, Copy)]
enum Auth {
    Operator,
    Volunteer,
    BrokerHook,
}

/// What a body field holds, and so how it can be wrong.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Not blank, no NUL, at most n characters.
    Name(usize),
    /// No NUL, at most n characters.
    Text(usize),
    /// `[A-Za-z0-9_-]{1,64}`.
    Id,
    /// Any text of at most n characters (the broker hooks).
    HookText(usize),
    /// The QR code's text: 1 to 1024 characters, no NUL, fits a QR code.
    QrText,
    Bool,
    Lat,
    Lon,
    /// `publish` or `subscribe`.
    Action,
    /// `{lat, lon}`.
    Home,
    /// `[{name, phone}]`, at most 50.
    Contacts,
    /// `[name]`, at most 50.
    Skills,
    /// A Web Push endpoint: https to a host name, at most 2048 characters.
    PushEndpoint,
    /// An http or https URL of at most 512 characters (a volunteer's ntfy topic).
    HttpUrl,
    /// `{p256dh, auth}`: a P-256 point (65 bytes) and 16 bytes, base64url.
    PushKeys,
}

#[derive(Debug)]
struct Field {
    name: &'static str,
    kind: Kind,
    required: bool,
}

const fn req(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind,
        required: true,
    }
}

const fn opt(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind,
        required: false,
    }
}

/// A route that takes a JSON body.
#[derive(Debug)]
struct Route {
    method: &'static str,
    /// As in the OpenAPI document.
    documented: &'static str,
    /// With the seeded resources' placeholders (see [`World::path`]).
    path: &'static str,
    auth: Auth,
    fields: &'static [Field],
}

const ROUTES: &[Route] = &[
    Route {
        method: "PUT",
        documented: "/v1/seniors/{id}",
        path: "/v1/seniors/{senior}",
        auth: Auth::Operator,
        fields: &[
            req("name", Kind::Name(200)),
            opt("address", Kind::Text(2000)),
            opt("home", Kind::Home),
            opt("grid", Kind::Text(200)),
            opt("notes", Kind::Text(2000)),
            opt("contacts", Kind::Contacts),
        ],
    },
    Route {
        method: "PUT",
        documented: "/v1/devices/{device_id}",
        path: "/v1/devices/{band}",
        auth: Auth::Operator,
        fields: &[req("senior_id", Kind::Id)],
    },
    Route {
        method: "PUT",
        documented: "/v1/volunteers/{id}",
        path: "/v1/volunteers/{volunteer}",
        auth: Auth::Operator,
        fields: &[
            req("name", Kind::Name(200)),
            opt("phone", Kind::Text(64)),
            opt("grid", Kind::Text(200)),
            opt("skills", Kind::Skills),
            opt("ntfy_url", Kind::HttpUrl),
        ],
    },
    Route {
        method: "POST",
        documented: "/v1/mqtt/auth",
        path: "/v1/mqtt/auth",
        auth: Auth::BrokerHook,
        fields: &[
            req("clientid", Kind::HookText(256)),
            opt("username", Kind::HookText(256)),
            opt("password", Kind::HookText(1024)),
        ],
    },
    Route {
        method: "POST",
        documented: "/v1/mqtt/acl",
        path: "/v1/mqtt/acl",
        auth: Auth::BrokerHook,
        fields: &[
            req("clientid", Kind::HookText(256)),
            opt("username", Kind::HookText(256)),
            req("topic", Kind::HookText(65_535)),
            req("action", Kind::Action),
        ],
    },
    Route {
        method: "POST",
        documented: "/v1/qr",
        path: "/v1/qr",
        auth: Auth::Operator,
        fields: &[req("text", Kind::QrText)],
    },
    Route {
        method: "PUT",
        documented: "/v1/me/duty",
        path: "/v1/me/duty",
        auth: Auth::Volunteer,
        fields: &[req("on_duty", Kind::Bool)],
    },
    Route {
        method: "PUT",
        documented: "/v1/me/location",
        path: "/v1/me/location",
        auth: Auth::Volunteer,
        fields: &[req("lat", Kind::Lat), req("lon", Kind::Lon)],
    },
    Route {
        method: "POST",
        documented: "/v1/me/push",
        path: "/v1/me/push",
        auth: Auth::Volunteer,
        fields: &[
            req("endpoint", Kind::PushEndpoint),
            req("keys", Kind::PushKeys),
        ],
    },
    // After the POST: its good body is the subscription the POST kept.
    Route {
        method: "DELETE",
        documented: "/v1/me/push",
        path: "/v1/me/push",
        auth: Auth::Volunteer,
        // Any text may name what to take back (what was never kept is a
        // 404): only its type, length and NUL are checked.
        fields: &[req("endpoint", Kind::Text(2048))],
    },
    Route {
        method: "POST",
        documented: "/v1/alerts/{id}/resolve",
        path: "/v1/alerts/{alert1}/resolve",
        auth: Auth::Operator,
        fields: &[
            req("outcome", Kind::Name(200)),
            opt("note", Kind::Text(2000)),
        ],
    },
    Route {
        method: "POST",
        documented: "/v1/alerts/{id}/cancel",
        path: "/v1/alerts/{alert2}/cancel",
        auth: Auth::Operator,
        fields: &[opt("reason", Kind::Text(2000))],
    },
    Route {
        method: "POST",
        documented: "/v1/alerts/{id}/assign",
        path: "/v1/alerts/{alert3}/assign",
        auth: Auth::Operator,
        fields: &[req("volunteer_id", Kind::Id)],
    },
];

const PUSH_ENDPOINT: &str = "https://push.example.com/send/hostile-1";
const RFC8291_P256DH: &str =
    "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
const RFC8291_AUTH: &str = "BTBZMqHH6r4Tts7J_aSIgg";

/// A push endpoint the service must not take.
fn bad_push_endpoint(required: bool) -> BoxedStrategy<String> {
    prop_oneof![
        not_a_string(required),
        text_json(with_nul()),
        text_json(too_long(2048)),
        prop::sample::select(vec![
            j(json!("")),
            j(json!("http://push.example.com/send/x")),
            j(json!("https://10.0.0.7/send/x")),
            j(json!("https://user:pw@push.example.com/x")),
            j(json!("not a url")),
            j(json!("ftp://push.example.com/x")),
        ]),
    ]
    .boxed()
}

/// Browser keys with one part bad, or not keys at all.
fn bad_push_keys() -> BoxedStrategy<String> {
    let not_on_curve = format!("BA{}", "A".repeat(85));
    prop::sample::select(vec![
        j(json!({"p256dh": RFC8291_P256DH})),
        j(json!({"auth": RFC8291_AUTH})),
        j(json!({"p256dh": "AAAA", "auth": RFC8291_AUTH})),
        j(json!({"p256dh": not_on_curve, "auth": RFC8291_AUTH})),
        j(json!({"p256dh": RFC8291_P256DH, "auth": "AAAA"})),
        j(json!({"p256dh": "!!!!", "auth": RFC8291_AUTH})),
        j(json!({"p256dh": RFC8291_P256DH, "auth": "a\u{0}b"})),
        j(json!({"p256dh": 17, "auth": RFC8291_AUTH})),
        j(json!([RFC8291_P256DH, RFC8291_AUTH])),
        j(json!("keys")),
        "17".into(),
    ])
    .boxed()
}

// ----- the hostile bodies ---------------------------------------------------

/// How a body is bad.
#[derive(Debug, Clone)]
enum Hostile {
    /// Bytes that are not JSON at all.
    Garbage(Vec<u8>),
    /// JSON, but not an object (nor `null`, which an optional body may be).
    NotAnObject(Value),
    /// The route's valid body cut short after this fraction of its bytes.
    Truncated(f64),
    /// The route's valid body with one field replaced by this JSON text,
    /// and unknown fields beside it.
    BadField {
        field: usize,
        json: String,
        extra: Map<String, Value>,
    },
    /// The route's valid body without one of its required fields.
    Missing(usize),
    /// The route's valid body with one of its fields given twice.
    Repeated(usize),
    /// Arrays or objects nested this deep, as the body or as a field.
    Deep { depth: usize, field: Option<usize> },
    /// The route's valid body padded to this many bytes (over 64 KiB).
    Oversized(usize),
}

fn j(v: Value) -> String {
    v.to_string()
}

/// JSON texts of every type but a string (`null` too when `required`),
/// and strings no Rust string can hold (lone surrogates).
fn not_a_string(required: bool) -> BoxedStrategy<String> {
    let mut v = vec![
        "true",
        "17",
        "-1.5",
        "[]",
        "{}",
        r#"["x"]"#,
        r#"{"a": "x"}"#,
        "1e400",
        r#""\ud800""#,
        r#""a\udc00b""#,
    ];
    if required {
        v.push("null");
    }
    prop::sample::select(v).prop_map(str::to_string).boxed()
}

/// A string of `max + 1` to `max + 40` characters, mostly not whitespace.
fn too_long(max: usize) -> impl Strategy<Value = String> {
    ("[a-z]{0,3}", max + 1..max + 40, "[^\\x00\\s]").prop_map(|(head, n, c)| {
        let mut s = head;
        s.push_str(&c.repeat(n));
        s
    })
}

/// A short text with a NUL in it.
fn with_nul() -> impl Strategy<Value = String> {
    ("\\PC{0,6}", "\\PC{0,6}").prop_map(|(a, b)| format!("{a}\u{0}{b}"))
}

/// Nothing but whitespace (Unicode's White_Space), or nothing at all.
fn blank() -> impl Strategy<Value = String> {
    "[\\t\\n\\x0b\\x0c\\r \\u{85}\\u{a0}\\u{1680}\\u{2000}-\\u{200a}\\u{2028}\\u{2029}\\u{202f}\\u{205f}\\u{3000}]{0,8}"
}

fn text_json(s: impl Strategy<Value = String> + 'static) -> BoxedStrategy<String> {
    s.prop_map(|s| j(Value::String(s))).boxed()
}

/// Coordinates out of range, too big for a double, or not numbers at all.
fn bad_coordinate(limit: f64) -> BoxedStrategy<String> {
    let texts = vec![
        format!("{}", limit + 1e-7),
        format!("-{}", limit + 1e-7),
        format!("{}", limit + 1.0),
        "1e308".into(),
        "-1.7976931348623157e308".into(),
        "1e400".into(),
        "-1e400".into(),
        r#""NaN""#.into(),
        r#""Infinity""#.into(),
        r#""-Infinity""#.into(),
        r#""30.5""#.into(),
        "null".into(),
        "true".into(),
        "[30.5]".into(),
        r#"{"value": 30.5}"#.into(),
    ];
    prop_oneof![
        3 => prop::sample::select(texts),
        1 => (limit + 1e-6..1e300, any::<bool>()).prop_map(|(x, neg)| j(json!(if neg { -x } else { x }))),
    ]
    .boxed()
}

/// A contact with one part bad, or a list that is not one of contacts.
fn bad_contacts() -> BoxedStrategy<String> {
    let contact = json!({"name": "Jiang Wei", "phone": "138-0000-0017"});
    let bad_name = prop_oneof![
        blank().prop_map(Value::String),
        with_nul().prop_map(Value::String),
        too_long(200).prop_map(Value::String),
        Just(json!(17)),
        Just(Value::Null),
    ];
    let bad_phone = prop_oneof![
        blank().prop_map(Value::String),
        with_nul().prop_map(Value::String),
        too_long(64).prop_map(Value::String),
        Just(json!(13800000017u64)),
        Just(Value::Null),
    ];
    let c1 = contact.clone();
    let c2 = contact.clone();
    let c3 = contact.clone();
    prop_oneof![
        Just(j(json!(vec![contact.clone(); 51]))),
        bad_name.prop_map(move |n| {
            let mut c = c1.clone();
            c["name"] = n;
            j(json!([c]))
        }),
        bad_phone.prop_map(move |p| {
            let mut c = c2.clone();
            c["phone"] = p;
            j(json!([c3.clone(), c]))
        }),
        prop::sample::select(vec![
            j(json!([{"name": "Jiang Wei"}])),
            j(json!([{"phone": "138"}])),
            j(json!(["Jiang Wei"])),
            j(json!([null])),
            j(json!("Jiang Wei, 138")),
            j(json!({"name": "Jiang Wei", "phone": "138"})),
            "17".into(),
        ]),
    ]
    .boxed()
}

/// A bad value for a field of this kind, as JSON text.
fn bad_value(kind: Kind, required: bool) -> BoxedStrategy<String> {
    match kind {
        Kind::Name(max) => prop_oneof![
            not_a_string(required),
            text_json(blank()),
            text_json(with_nul()),
            text_json(too_long(max)),
        ]
        .boxed(),
        Kind::Text(max) => prop_oneof![
            not_a_string(required),
            text_json(with_nul()),
            text_json(too_long(max)),
        ]
        .boxed(),
        Kind::Id => prop_oneof![
            not_a_string(required),
            Just(j(json!(""))),
            text_json("[A-Za-z0-9_-]{65,80}"),
            text_json(
                (
                    "[a-z0-9]{0,8}",
                    "[ /+#.é\\x00\\u{85}\\u{3000}😀]",
                    "[a-z0-9]{0,8}"
                )
                    .prop_map(|(a, c, b)| format!("{a}{c}{b}"))
            ),
        ]
        .boxed(),
        Kind::HookText(max) => {
            prop_oneof![not_a_string(required), text_json(too_long(max))].boxed()
        }
        Kind::QrText => prop_oneof![
            not_a_string(required),
            Just(j(json!(""))),
            text_json(with_nul()),
            text_json(too_long(1024)),
            // Few enough characters, too many bytes for a QR code.
            text_json((600usize..1024).prop_map(|n| "😀".repeat(n))),
        ]
        .boxed(),
        Kind::Bool => prop::sample::select(vec![
            r#""true""#,
            r#""false""#,
            "1",
            "0",
            "null",
            "[]",
            "{}",
            r#""yes""#,
        ])
        .prop_map(str::to_string)
        .boxed(),
        Kind::Lat => bad_coordinate(90.0),
        Kind::Lon => bad_coordinate(180.0),
        Kind::Action => prop::sample::select(vec![
            r#""PUBLISH""#,
            r#""Publish""#,
            r#""""#,
            r#""read""#,
            r#"["publish"]"#,
            "0",
            "null",
        ])
        .prop_map(str::to_string)
        .boxed(),
        Kind::Home => prop_oneof![
            bad_coordinate(90.0).prop_map(|lat| format!(r#"{{"lat": {lat}, "lon": 120.68}}"#)),
            bad_coordinate(180.0).prop_map(|lon| format!(r#"{{"lat": 30.51, "lon": {lon}}}"#)),
            prop::sample::select(vec![
                r#"{"lat": 30.51}"#,
                r#"{"lon": 120.68}"#,
                "{}",
                r#""3 Lotus Lane""#,
                "[30.51, 120.68]",
                "17",
            ])
            .prop_map(str::to_string),
        ]
        .boxed(),
        Kind::Contacts => bad_contacts(),
        Kind::PushEndpoint => bad_push_endpoint(required),
        Kind::HttpUrl => prop_oneof![
            not_a_string(required),
            text_json(with_nul()),
            text_json(too_long(512)),
            prop::sample::select(vec![
                j(json!("")),
                j(json!("ntfy.example.org/t")),
                j(json!("ftp://ntfy.example.org/t")),
                j(json!("https://user:pw@ntfy.example.org/t")),
                j(json!("not a url")),
            ]),
        ]
        .boxed(),
        Kind::PushKeys => bad_push_keys(),
        Kind::Skills => prop_oneof![
            Just(j(json!(vec!["first_aid"; 51]))),
            prop_oneof![
                blank().prop_map(Value::String),
                with_nul().prop_map(Value::String),
                too_long(200).prop_map(Value::String),
                Just(json!(1)),
                Just(Value::Null),
                Just(json!(["first_aid"])),
            ]
            .prop_map(|bad| j(json!(["first_aid", bad]))),
            prop::sample::select(vec![r#""first_aid""#, "{}", "17"]).prop_map(str::to_string),
        ]
        .boxed(),
    }
}

/// Any JSON value, small, for unknown fields (which are ignored: they
/// must not turn a bad body into a good one, nor break anything).
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("\\PC{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Bytes that no JSON parser accepts (and that are not blank: a blank
/// body is an optional body left out). Only what is bad whatever the
/// route: a lone surrogate or a repeated key is bad only in a field the
/// route reads (see [`bad_value`], [`Hostile::Repeated`]), an unknown one
/// is skipped.
fn garbage() -> impl Strategy<Value = Vec<u8>> {
    let known: Vec<Vec<u8>> = [
        &b"{"[..],
        b"}",
        b"{\"name\": ",
        b"{\"name\": \"Li\",}",
        b"{\"name\": \"Li\"}}",
        b"{\"lat\": NaN, \"lon\": Infinity}",
        b"{'name': 'Li'}",
        b"\xef\xbb\xbf{}",
        b"\x00",
        b"nul",
        b"{\"on_duty\": tru}",
    ]
    .iter()
    .map(|b| b.to_vec())
    .collect();
    prop_oneof![
        prop::sample::select(known),
        prop::collection::vec(any::<u8>(), 1..512).prop_filter("not JSON, not blank", |b| {
            serde_json::from_slice::<Value>(b).is_err() && !b.iter().all(u8::is_ascii_whitespace)
        }),
    ]
}

/// JSON that is not an object: scalars, and arrays of a body's field
/// values in order (which serde would read as the struct).
fn not_an_object() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(vec![
            json!([true]),
            json!([30.51, 120.68]),
            json!(["Li Wei"]),
            json!(["helped", "a note"]),
            json!(["client", "user", "wristbands/x/alert", "publish"]),
            json!(["s-1"]),
            json!("Li Wei"),
            json!(17),
            json!(false),
            json!([]),
        ]),
        any_json().prop_filter("not an object nor null", |v| !v.is_object() && !v.is_null()),
    ]
}

fn hostile(route: &'static Route) -> BoxedStrategy<Hostile> {
    let n = route.fields.len();
    let bad_field = (0..n).prop_flat_map(move |i| {
        let f = &route.fields[i];
        (
            Just(i),
            bad_value(f.kind, f.required),
            prop::collection::btree_map("x_[a-z]{1,6}", any_json(), 0..3),
        )
    });
    let required: Vec<usize> = (0..n).filter(|i| route.fields[*i].required).collect();
    let missing = if required.is_empty() {
        not_an_object().prop_map(Hostile::NotAnObject).boxed()
    } else {
        prop::sample::select(required)
            .prop_map(Hostile::Missing)
            .boxed()
    };
    prop_oneof![
        12 => bad_field.prop_map(|(field, json, extra)| Hostile::BadField {
            field,
            json,
            extra: extra.into_iter().collect(),
        }),
        3 => garbage().prop_map(Hostile::Garbage),
        2 => not_an_object().prop_map(Hostile::NotAnObject),
        1 => (0.0f64..1.0).prop_map(Hostile::Truncated),
        2 => missing,
        1 => (0..n).prop_map(Hostile::Repeated),
        1 => (129usize..5000, prop::option::of(0..n)).prop_map(|(depth, field)| Hostile::Deep { depth, field }),
        1 => (65_537usize..70_000).prop_map(Hostile::Oversized),
    ]
    .boxed()
}

// ----- the world the routes act on -------------------------------------------

/// What was seeded: a senior with a band, a volunteer with a token (off
/// duty), a spare volunteer for `assign`, and three alerts waiting, one
/// for each alert action.
#[derive(Debug)]
struct World {
    senior: String,
    band: String,
    volunteer: String,
    volunteer_token: String,
    spare: String,
    alerts: [String; 3],
    hook_token: String,
    operator_token: String,
    /// Where the app answers, and a client for it (a `TestApp` cannot
    /// cross to the blocking thread the cases run on).
    base: String,
    http: reqwest::Client,
}

impl World {
    async fn seed(app: &TestApp, hook_token: String) -> World {
        let (senior, band) = app.senior_with_band(Some((30.5101, 120.6805))).await;
        let (volunteer, volunteer_token) = app.volunteer("Wang Fang", None).await;
        let (spare, _) = app.volunteer("Li Wei", None).await;
        let mut alerts = Vec::new();
        for _ in 0..3 {
            let (_, band) = app.senior_with_band(Some((30.5101, 120.6805))).await;
            alerts.push(open_alert(app, &band).await);
        }
        World {
            senior,
            band,
            volunteer,
            volunteer_token,
            spare,
            alerts: alerts.try_into().expect("three alerts"),
            hook_token,
            operator_token: app.token.clone(),
            base: app.base.clone(),
            http: app.http.clone(),
        }
    }

    fn path(&self, route: &Route) -> String {
        route
            .path
            .replace("{senior}", &self.senior)
            .replace("{band}", &self.band)
            .replace("{volunteer}", &self.volunteer)
            .replace("{alert1}", &self.alerts[0])
            .replace("{alert2}", &self.alerts[1])
            .replace("{alert3}", &self.alerts[2])
    }

    fn token(&self, route: &Route) -> &str {
        match route.auth {
            Auth::Operator => &self.operator_token,
            Auth::Volunteer => &self.volunteer_token,
            Auth::BrokerHook => &self.hook_token,
        }
    }

    /// A good value for a field.
    fn good(&self, field: &Field) -> Value {
        match (field.kind, field.name) {
            (Kind::Id, "senior_id") => json!(self.senior),
            (Kind::Id, _) => json!(self.spare),
            (Kind::Name(_), _) => json!("Jiang Lan"),
            (Kind::Text(_), "endpoint") => json!(PUSH_ENDPOINT),
            (Kind::Text(_), _) => json!("3 Lotus Lane"),
            (Kind::HookText(_), "topic") => json!("wristbands/band-1/alert"),
            (Kind::HookText(_), _) => json!("someone"),
            (Kind::QrText, _) => json!("http://127.0.0.1:8080/volunteer#token=x"),
            (Kind::Bool, _) => json!(true),
            (Kind::Lat, _) => json!(30.5111),
            (Kind::Lon, _) => json!(120.6805),
            (Kind::Action, _) => json!("publish"),
            (Kind::Home, _) => json!({"lat": 30.5101, "lon": 120.6805}),
            (Kind::Contacts, _) => json!([{"name": "Jiang Wei", "phone": "138-0000-0017"}]),
            (Kind::Skills, _) => json!(["first_aid"]),
            (Kind::PushEndpoint, _) => json!(PUSH_ENDPOINT),
            (Kind::HttpUrl, _) => json!("https://ntfy.example.org/wang-fang-7f3a"),
            // The browser keys of RFC 8291's example.
            (Kind::PushKeys, _) => json!({"p256dh": RFC8291_P256DH, "auth": RFC8291_AUTH}),
        }
    }

    /// The route's body with every field good.
    fn good_body(&self, route: &Route) -> Map<String, Value> {
        route
            .fields
            .iter()
            .map(|f| (f.name.to_string(), self.good(f)))
            .collect()
    }

    /// The bytes of a hostile body, and the statuses it may get.
    fn body(&self, route: &Route, h: &Hostile) -> (Vec<u8>, &'static [u16]) {
        const BAD_REQUEST: &[u16] = &[400];
        let good = self.good_body(route);
        match h {
            Hostile::Garbage(bytes) => (bytes.clone(), BAD_REQUEST),
            Hostile::NotAnObject(v) => (j(v.clone()).into_bytes(), BAD_REQUEST),
            Hostile::Truncated(fraction) => {
                let text = j(Value::Object(good));
                let cut = ((text.len() as f64 * fraction) as usize).clamp(1, text.len() - 1);
                (text.as_bytes()[..cut].to_vec(), BAD_REQUEST)
            }
            Hostile::BadField { field, json, extra } => {
                // Unknown fields first, then the good ones, the bad one last,
                // as text (a bad value may be no JSON value at all: 1e400).
                let name = route.fields[*field].name;
                let mut obj = extra.clone();
                obj.extend(good.into_iter().filter(|(k, _)| k != name));
                let mut text = j(Value::Object(obj));
                text.pop();
                if text.len() > 1 {
                    text.push_str(", ");
                }
                text.push_str(&format!("{}: {json}}}", j(json!(name))));
                (text.into_bytes(), &[400, 413, 422])
            }
            Hostile::Missing(field) => {
                let mut obj = good;
                obj.remove(route.fields[*field].name);
                (j(Value::Object(obj)).into_bytes(), BAD_REQUEST)
            }
            Hostile::Repeated(field) => {
                let f = &route.fields[*field];
                let mut text = j(Value::Object(good));
                text.pop();
                text.push_str(&format!(", {}: {}}}", j(json!(f.name)), j(self.good(f))));
                (text.into_bytes(), BAD_REQUEST)
            }
            Hostile::Deep { depth, field } => {
                let nested = format!("{}{}", "[".repeat(*depth), "]".repeat(*depth));
                let text = match field {
                    None => nested,
                    Some(i) => {
                        let mut obj = good;
                        obj.remove(route.fields[*i].name);
                        let mut text = j(Value::Object(obj));
                        text.pop();
                        if text.len() > 1 {
                            text.push_str(", ");
                        }
                        format!("{text}{}: {nested}}}", j(json!(route.fields[*i].name)))
                    }
                };
                (text.into_bytes(), BAD_REQUEST)
            }
            Hostile::Oversized(size) => {
                let mut obj = good;
                let used = j(Value::Object(obj.clone())).len() + r#","x_pad":"""#.len();
                obj.insert("x_pad".into(), json!("x".repeat(size.saturating_sub(used))));
                (j(Value::Object(obj)).into_bytes(), &[413])
            }
        }
    }
}

/// Presses a band (no volunteer on duty: the alert waits) and returns the
/// new alert's id.
async fn open_alert(app: &TestApp, device: &str) -> String {
    let mut band = app.band_client(device).await;
    let topic = format!("wristbands/{device}/notify");
    band.subscribe(&topic).await;
    band.press(device, &unique("e"), "sos", None).await;
    let received = band
        .expect(&topic, 10, |m| s(m, "state") == "received")
        .await;
    s(&received, "alert_id").to_string()
}

/// Sends raw bytes as a JSON body to a route.
async fn send(
    w: &World,
    route: &Route,
    body: Vec<u8>,
) -> Result<(u16, Option<String>, Value), String> {
    let r = w
        .http
        .request(
            route.method.parse().expect("a method"),
            format!("{}{}", w.base, w.path(route)),
        )
        .bearer_auth(w.token(route))
        .header("content-type", "application/json")
        .body(body)
        .timeout(Duration::from_secs(15))
        .send()
        .await
        .map_err(|e| format!("no answer: {e:?}"))?;
    let status = r.status().as_u16();
    let content_type = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let text = r.text().await.map_err(|e| format!("answer cut: {e:?}"))?;
    Ok((
        status,
        content_type,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    ))
}

/// What must hold of one answer to a hostile body.
fn check_answer(
    expected: &[u16],
    (status, content_type, body): &(u16, Option<String>, Value),
) -> Result<(), String> {
    if !expected.contains(status) {
        return Err(format!(
            "answered {status}, expected one of {expected:?}: {body}"
        ));
    }
    if content_type.as_deref() != Some("application/json") {
        return Err(format!("{status} with content type {content_type:?}"));
    }
    let code = body["error"]["code"].as_str().unwrap_or_default();
    let want = match status {
        400 => "bad_request",
        413 => "payload_too_large",
        _ => "invalid",
    };
    if code != want || !body["error"]["message"].is_string() {
        return Err(format!(
            "{status} without the error shape (code {want}): {body}"
        ));
    }
    Ok(())
}

/// The routes that take a JSON body, from the document: exactly those
/// above, so that a new one is fuzzed too.
async fn assert_every_body_route_is_covered(app: &TestApp) {
    let doc = app.call("GET", "/openapi.json", None, None).await.body;
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("a path item") {
            if op["requestBody"].is_object() {
                documented.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    documented.sort();
    let mut here: Vec<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.to_string(), r.documented.to_string()))
        .collect();
    here.sort();
    assert_eq!(documented, here, "the routes with a body");
}

/// What the hostile bodies must not have changed.
async fn snapshot(app: &TestApp, w: &World) -> Vec<Value> {
    let mut out = vec![
        app.op("GET", &format!("/v1/seniors/{}", w.senior), None)
            .await
            .body,
        app.op("GET", "/v1/devices", None).await.body,
        app.op("GET", "/v1/volunteers", None).await.body,
    ];
    for a in &w.alerts {
        let mut alert = app.alert(a).await;
        // Only what an action would change: the timeline and the state.
        alert.as_object_mut().expect("an alert").retain(|k, _| {
            [
                "state",
                "timeline",
                "volunteer_id",
                "resolved_at",
                "cancelled_at",
            ]
            .contains(&k.as_str())
        });
        out.push(alert);
    }
    out
}

async fn hostile_bodies_are_refused_in_the_error_shape(backend: Backend) {
    let hook_token = unique("hook-token");
    let hook = hook_token.clone();
    let Some(app) = spawn_app_with(backend, move |s| {
        s.broker_hook_token = Some(onepress::config::Secret::new(hook));
    })
    .await
    else {
        return;
    };
    assert_every_body_route_is_covered(&app).await;
    let world = World::seed(&app, hook_token).await;
    let before = snapshot(&app, &world).await;

    let world = Arc::new(world);
    let started = Instant::now();
    let handle = tokio::runtime::Handle::current();
    let w = world.clone();
    let seed = seed();
    let outcome = tokio::task::spawn_blocking(move || {
        let config = Config {
            cases: CASES,
            failure_persistence: None,
            max_shrink_iters: 200,
            ..Config::default()
        };
        let strategy = (0..ROUTES.len()).prop_flat_map(|r| (Just(r), hostile(&ROUTES[r])));
        let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed);
        TestRunner::new_with_rng(config, rng).run(&strategy, |(r, h)| {
            let route = &ROUTES[r];
            let (body, expected) = w.body(route, &h);
            let shown = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
            let answer = handle
                .block_on(send(&w, route, body))
                .and_then(|answer| check_answer(expected, &answer));
            answer.map_err(|e| {
                TestCaseError::fail(format!(
                    "{} {}: {e}\nbody: {shown}",
                    route.method, route.documented
                ))
            })
        })
    })
    .await
    .expect("the cases ran");
    if let Err(e) = outcome {
        panic!("{e}\n(again with {SEED_VAR}={})", hex(&seed));
    }
    eprintln!("{CASES} hostile bodies in {:?}", started.elapsed());

    // Still answering, and nothing changed.
    let r = app.call("GET", "/healthz", None, None).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(snapshot(&app, &world).await, before);

    // The good bodies the bad ones were made from are accepted: the
    // refusals above were the bad parts' doing.
    for route in ROUTES {
        let body = j(Value::Object(world.good_body(route))).into_bytes();
        let (status, _, answer) = send(&world, route, body).await.expect("an answer");
        assert!(
            [200, 201, 204].contains(&status),
            "{} {}: {status} {answer}",
            route.method,
            route.documented
        );
    }
}

/// A broker asks about a client whose id or user name holds a NUL (no
/// MQTT client should send one, but the broker passes on what it got).
/// Nobody registered has such a name: a plain answer, never a 503 from a
/// store that cannot look it up (PostgreSQL refuses NUL).
async fn a_nul_in_a_broker_hook_question_is_answered(backend: Backend) {
    let hook_token = unique("hook-token");
    let hook = hook_token.clone();
    let Some(app) = spawn_app_with(backend, move |s| {
        s.broker_hook_token = Some(onepress::config::Secret::new(hook));
    })
    .await
    else {
        return;
    };
    let admin = app.admin_login("hook");
    let ask = |path: &'static str, body: Value| {
        let app = &app;
        let token = hook_token.clone();
        async move {
            let r: Answer = app.call("POST", path, Some(&token), Some(body)).await;
            assert_eq!(r.status, 200, "{path}: {r:?}");
            r.body
        }
    };
    let r = ask(
        "/v1/mqtt/auth",
        json!({"clientid": "c", "username": "band\u{0}", "password": "x"}),
    )
    .await;
    assert_eq!(r["result"], "deny");
    // The admin may use any client id that no band, phone or gateway has.
    let r = ask(
        "/v1/mqtt/auth",
        json!({"clientid": "tool\u{0}", "username": admin.username, "password": admin.password}),
    )
    .await;
    assert_eq!(r["result"], "allow", "{r}");
    let r = ask(
        "/v1/mqtt/acl",
        json!({"clientid": "c", "username": "band\u{0}", "topic": "wristbands/band/alert", "action": "publish"}),
    )
    .await;
    assert_eq!(r["result"], "deny");
}

/// A body over the limit is refused unread, and the server then closes
/// the connection: the 413 says so (`Connection: close`), so that a client
/// does not send its next request on it and get no answer.
async fn the_next_request_after_a_413_is_answered(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |_| {}).await else {
        return;
    };
    let url = format!("{}/v1/qr", app.base);
    for size in [70_000, 300_000, 1_000_000] {
        for _ in 0..10 {
            let big = json!({"text": "x".repeat(size)}).to_string();
            let r = app
                .http
                .post(&url)
                .bearer_auth(&app.token)
                .body(big)
                .send()
                .await
                .expect("the 413 is answered");
            assert_eq!(r.status(), 413);
            assert_eq!(r.headers()["connection"], "close");
            let r = app
                .http
                .post(&url)
                .bearer_auth(&app.token)
                .json(&json!({"text": "hi"}))
                .send()
                .await
                .expect("the next request is answered");
            assert_eq!(r.status(), 200);
        }
    }
}
