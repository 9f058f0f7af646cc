//! The pages (`GET /`, `GET /volunteer`) and their assets: served without
//! auth as the right content types, naming no other host, and everything a
//! page refers to is served; the volunteer page's service worker, manifest
//! and icons with their content types and cache headers. What they do in a browser is tested by
//! `.ci/browser.sh` (tests/browser).

use crate::common::{Backend, spawn_app};
use crate::on_both_backends;

on_both_backends!(pages_are_served_and_self_contained);

/// The local paths a page refers to (`src="/…"`, `href="/…"`).
fn local_references(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["src=\"", "href=\""] {
        for (i, _) in html.match_indices(attr) {
            let rest = &html[i + attr.len()..];
            let value = &rest[..rest.find('"').expect("a closing quote")];
            if value.starts_with('/') {
                out.push(value.to_string());
            }
        }
    }
    out
}

async fn pages_are_served_and_self_contained(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let mut scripts_and_styles = Vec::new();
    for page in ["/", "/volunteer"] {
        let r = app
            .http
            .get(format!("{}{page}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{page}");
        let headers = r.headers().clone();
        let content_type = headers["content-type"].to_str().unwrap().to_string();
        assert!(
            content_type.starts_with("text/html"),
            "{page}: {content_type}"
        );
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'self'"), "{page}: {csp}");
        let html = r.text().await.unwrap();
        assert!(html.starts_with("<!doctype html>"), "{page}");
        assert!(
            !html.contains("http://") && !html.contains("https://") && !html.contains("=\"//"),
            "{page} names another host"
        );
        let refs = local_references(&html);
        assert!(
            refs.iter().any(|r| r.ends_with(".js")) && refs.iter().any(|r| r.ends_with(".css")),
            "{page} has its script and style: {refs:?}"
        );
        scripts_and_styles.extend(refs);
    }
    scripts_and_styles.sort();
    scripts_and_styles.dedup();
    // The scripts import the shared module; the volunteer page's, its push module.
    scripts_and_styles.push("/assets/common.js".into());
    scripts_and_styles.push("/assets/push.js".into());
    for path in scripts_and_styles {
        let r = app
            .http
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let content_type = r.headers()["content-type"].to_str().unwrap().to_string();
        let expected = match path.rsplit('.').next() {
            Some("js") => "text/javascript",
            Some("css") => "text/css",
            Some("png") => "image/png",
            Some("webmanifest") => "application/manifest+json",
            _ => panic!("{path}: what is it?"),
        };
        assert!(content_type.starts_with(expected), "{path}: {content_type}");
        assert_eq!(r.headers()["x-content-type-options"], "nosniff", "{path}");
        if expected == "image/png" {
            continue;
        }
        let body = r.text().await.unwrap();
        assert!(!body.is_empty(), "{path}");
        assert!(
            !body.contains("http://") && !body.contains("https://"),
            "{path} names another host"
        );
    }
    // The volunteer page as an installed app: its service worker (with the
    // pages' policy), its manifest and its icons.
    for (path, content_type, cache_control) in [
        ("/volunteer-sw.js", "text/javascript", "no-cache"),
        (
            "/assets/volunteer.webmanifest",
            "application/manifest+json",
            "no-cache",
        ),
        (
            "/assets/icons/volunteer-192.png",
            "image/png",
            "public, max-age=86400",
        ),
        (
            "/assets/icons/volunteer-512.png",
            "image/png",
            "public, max-age=86400",
        ),
        (
            "/assets/icons/volunteer-maskable-512.png",
            "image/png",
            "public, max-age=86400",
        ),
    ] {
        let r = app
            .http
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let headers = r.headers().clone();
        let served_type = headers["content-type"].to_str().unwrap();
        assert!(
            served_type.starts_with(content_type),
            "{path}: {served_type}"
        );
        assert_eq!(headers["cache-control"], cache_control, "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        let body = r.bytes().await.unwrap();
        if content_type == "image/png" {
            assert!(body.starts_with(b"\x89PNG\r\n\x1a\n"), "{path}");
        } else if path == "/volunteer-sw.js" {
            let csp = headers["content-security-policy"].to_str().unwrap();
            assert!(csp.contains("default-src 'self'"), "{path}: {csp}");
            let text = String::from_utf8(body.to_vec()).unwrap();
            for event in ["'push'", "'notificationclick'", "'fetch'"] {
                assert!(text.contains(event), "the worker handles {event}");
            }
        } else {
            let manifest: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(manifest["start_url"], "/volunteer");
            assert_eq!(manifest["display"], "standalone");
        }
    }
    // An unknown asset is the API's JSON 404, not a page.
    let r = app.call("GET", "/assets/nope.js", None, None).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.body["error"]["code"], "not_found");
    app.stop().await;
}
