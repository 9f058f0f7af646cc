//! The pages of contract section 3, served from the binary: `GET /` (the
//! operator dashboard) and `GET /volunteer` (the volunteer's phone page),
//! plus their script and style under `/assets/`.
//!
//! The files live in `assets/` (plain HTML, CSS and JavaScript modules, no
//! build step) and are compiled in with `include_str!`. The pages need no
//! auth: each asks for a token once and keeps it in the browser, then calls
//! the API with it. They must work with no internet access, so nothing in
//! them names another host, and the `Content-Security-Policy` sent with each
//! page makes the browser refuse anything not from this origin. This module
//! never reads a token or touches the store.

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::IntoResponse;
use axum::routing::get;

use super::AppState;

/// Only this origin, for everything; `data:` for the empty favicon.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

pub const HTML: &str = "text/html; charset=utf-8";
pub const JAVASCRIPT: &str = "text/javascript; charset=utf-8";
pub const CSS: &str = "text/css; charset=utf-8";

/// One file served at one path.
#[derive(Debug)]
pub struct Asset {
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static str,
}

/// Everything the pages are made of.
pub const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: HTML,
        body: include_str!("../../assets/dashboard.html"),
    },
    Asset {
        path: "/volunteer",
        content_type: HTML,
        body: include_str!("../../assets/volunteer.html"),
    },
    Asset {
        path: "/assets/onepress.css",
        content_type: CSS,
        body: include_str!("../../assets/onepress.css"),
    },
    Asset {
        path: "/assets/common.js",
        content_type: JAVASCRIPT,
        body: include_str!("../../assets/common.js"),
    },
    Asset {
        path: "/assets/dashboard.js",
        content_type: JAVASCRIPT,
        body: include_str!("../../assets/dashboard.js"),
    },
    Asset {
        path: "/assets/volunteer.js",
        content_type: JAVASCRIPT,
        body: include_str!("../../assets/volunteer.js"),
    },
];

pub fn router() -> Router<AppState> {
    ASSETS.iter().fold(Router::new(), |router, asset| {
        router.route(asset.path, get(move || async move { serve(asset) }))
    })
}

fn serve(asset: &'static Asset) -> impl IntoResponse {
    let mut headers = vec![
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        ),
        // Small files: always revalidate, so a new release shows at once.
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        // `/volunteer?token=…` must not leak through a Referer.
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
    ];
    if asset.content_type == HTML {
        headers.push((
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ));
        headers.push((
            HeaderName::from_static("x-frame-options"),
            HeaderValue::from_static("DENY"),
        ));
    }
    (axum::http::HeaderMap::from_iter(headers), asset.body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_names_another_host() {
        for asset in ASSETS {
            for needle in [
                "http://",
                "https://",
                "src=\"//",
                "href=\"//",
                "url(",
                "@import",
            ] {
                assert!(
                    !asset.body.contains(needle),
                    "{} contains {needle:?}",
                    asset.path
                );
            }
        }
    }

    #[test]
    fn every_local_reference_is_served() {
        let served: Vec<&str> = ASSETS.iter().map(|a| a.path).collect();
        for asset in ASSETS {
            for quote in ["\"/assets/", "'./"] {
                for (i, _) in asset.body.match_indices(quote) {
                    let rest = &asset.body[i + 1..];
                    let end = rest.find(['"', '\'']).expect("a closing quote");
                    let path = rest[..end].replace("./", "/assets/");
                    assert!(
                        served.contains(&path.as_str()),
                        "{} refers to {path}, which is not served",
                        asset.path
                    );
                }
            }
        }
    }

    #[test]
    fn paths_are_unique() {
        for (i, a) in ASSETS.iter().enumerate() {
            assert!(
                ASSETS[i + 1..].iter().all(|b| b.path != a.path),
                "{}",
                a.path
            );
        }
    }
}
