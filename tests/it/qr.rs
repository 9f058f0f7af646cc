//! `POST /v1/qr` (an extension): operators only, a text of 1 to 1024
//! characters, answered as an SVG QR code that is never cached.

use serde_json::json;

use crate::common::{Backend, spawn_app};
use crate::on_both_backends;

on_both_backends!(qr_codes_are_for_operators_and_bounded);

/// The `width` attribute of the root `<svg>`.
fn svg_width(svg: &str) -> u32 {
    let root = &svg[svg.find("<svg").expect("an <svg> element")..];
    let rest = &root[root.find(" width=\"").expect("a width") + 8..];
    rest[..rest.find('"').unwrap()].parse().expect("a number")
}

async fn qr_codes_are_for_operators_and_bounded(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let link = json!({"text": format!("{}/volunteer#token={}", app.base, "a".repeat(64))});

    let r = app.call("POST", "/v1/qr", None, Some(link.clone())).await;
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(r.body["error"]["code"], "unauthorized");
    let (_, volunteer_token) = app.volunteer("Wang Fang", None).await;
    let r = app
        .call("POST", "/v1/qr", Some(&volunteer_token), Some(link.clone()))
        .await;
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(r.body["error"]["code"], "forbidden");

    for text in [json!(""), json!("x".repeat(1025)), json!("a\u{0}b")] {
        let r = app
            .op("POST", "/v1/qr", Some(json!({ "text": text })))
            .await;
        assert_eq!(r.status, 422, "{text:.20}: {r:?}");
        assert_eq!(r.body["error"]["code"], "invalid");
    }
    for body in [json!({}), json!({"text": 17}), json!("text")] {
        let r = app.op("POST", "/v1/qr", Some(body.clone())).await;
        assert_eq!(r.status, 400, "{body}: {r:?}");
        assert_eq!(r.body["error"]["code"], "bad_request");
    }

    let mut widths = Vec::new();
    for body in [
        json!({"text": "x"}),
        link,
        json!({"text": "x".repeat(1024)}),
    ] {
        let r = app
            .http
            .post(format!("{}/v1/qr", app.base))
            .bearer_auth(&app.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "image/svg+xml");
        assert_eq!(r.headers()["cache-control"], "no-store");
        let svg = r.text().await.unwrap();
        assert!(
            svg.starts_with("<?xml") || svg.starts_with("<svg"),
            "{svg:.80}"
        );
        assert!(svg.trim_end().ends_with("</svg>"), "{svg:.80}");
        widths.push(svg_width(&svg));
    }
    // A longer text needs a larger code (a higher QR version).
    assert!(widths.windows(2).all(|w| w[0] < w[1]), "{widths:?}");
    app.stop().await;
}
