//! The pages of contract section 3, served from the binary: `GET /` (the
//! operator dashboard) and `GET /volunteer` (the volunteer's phone page),
//! plus their script and style under `/assets/`. The volunteer page is an
//! installable web app: its manifest and icons are under `/assets/` too, and
//! its service worker (offline shell, Web Push notifications) is
//! `GET /volunteer-sw.js`, registered with the scope `/volunteer` (within
//! the script's own directory, so no `Service-Worker-Allowed` is needed).
//!
//! The files live in `assets/` (plain HTML, CSS, JavaScript, JSON and PNG,
//! no build step) and are compiled in with `include_bytes!`. The pages need no
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
pub const MANIFEST: &str = "application/manifest+json";
pub const PNG: &str = "image/png";

/// Small files that change with a release: always revalidated, so a new
/// release shows at once (the service worker caches them for offline use).
pub const REVALIDATE: &str = "no-cache";
/// The icons change rarely; a day-old one does no harm.
pub const ONE_DAY: &str = "public, max-age=86400";

/// The volunteer page's service worker; its scope is `/volunteer`.
pub const SERVICE_WORKER: &str = "/volunteer-sw.js";

/// One file served at one path.
#[derive(Debug)]
pub struct Asset {
    pub path: &'static str,
    pub content_type: &'static str,
    pub cache_control: &'static str,
    pub body: &'static [u8],
}

impl Asset {
    /// The body as text, for the files that are text (not the icons).
    pub fn text(&self) -> Option<&'static str> {
        if self.content_type == PNG {
            return None;
        }
        std::str::from_utf8(self.body).ok()
    }
}

/// A text file of `assets/`, revalidated on each use.
macro_rules! text {
    ($path:literal, $content_type:expr, $file:literal) => {
        Asset {
            path: $path,
            content_type: $content_type,
            cache_control: REVALIDATE,
            body: include_bytes!(concat!("../../assets/", $file)),
        }
    };
}

/// An icon of `assets/icons/`, served at `/assets/icons/<file>`.
macro_rules! icon {
    ($file:literal) => {
        Asset {
            path: concat!("/assets/icons/", $file),
            content_type: PNG,
            cache_control: ONE_DAY,
            body: include_bytes!(concat!("../../assets/icons/", $file)),
        }
    };
}

/// Everything the pages are made of.
pub const ASSETS: &[Asset] = &[
    text!("/", HTML, "dashboard.html"),
    text!("/volunteer", HTML, "volunteer.html"),
    text!("/assets/onepress.css", CSS, "onepress.css"),
    text!("/assets/common.js", JAVASCRIPT, "common.js"),
    text!("/assets/dashboard.js", JAVASCRIPT, "dashboard.js"),
    text!("/assets/volunteer.js", JAVASCRIPT, "volunteer.js"),
    text!("/assets/push.js", JAVASCRIPT, "push.js"),
    text!("/volunteer-sw.js", JAVASCRIPT, "volunteer-sw.js"),
    text!(
        "/assets/volunteer.webmanifest",
        MANIFEST,
        "volunteer.webmanifest"
    ),
    icon!("volunteer-192.png"),
    icon!("volunteer-512.png"),
    icon!("volunteer-maskable-512.png"),
    icon!("apple-touch-icon.png"),
    icon!("badge-96.png"),
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
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static(asset.cache_control),
        ),
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
    // A worker's policy comes with its script, as a page's with the page.
    if asset.content_type == HTML || asset.path == SERVICE_WORKER {
        headers.push((
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ));
    }
    if asset.content_type == HTML {
        headers.push((
            HeaderName::from_static("x-frame-options"),
            HeaderValue::from_static("DENY"),
        ));
    }
    (axum::http::HeaderMap::from_iter(headers), asset.body)
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn asset(path: &str) -> &'static Asset {
        ASSETS
            .iter()
            .find(|a| a.path == path)
            .unwrap_or_else(|| panic!("{path} is served"))
    }

    /// The quoted local paths in a text: `"/assets/…"`, `'/assets/…'`,
    /// `'/volunteer…'` and module imports `'./…'` (as `/assets/…`).
    fn local_references(text: &str) -> Vec<String> {
        let mut out = Vec::new();
        for quote in ["\"/assets/", "'/assets/", "'/volunteer", "'./"] {
            for (i, _) in text.match_indices(quote) {
                let rest = &text[i + 1..];
                let end = rest.find(['"', '\'']).expect("a closing quote");
                out.push(rest[..end].replace("./", "/assets/"));
            }
        }
        out
    }

    #[test]
    fn nothing_names_another_host() {
        for asset in ASSETS {
            let Some(body) = asset.text() else { continue };
            for needle in [
                "http://",
                "https://",
                "src=\"//",
                "href=\"//",
                "url(",
                "@import",
            ] {
                assert!(!body.contains(needle), "{} contains {needle:?}", asset.path);
            }
        }
    }

    #[test]
    fn every_local_reference_is_served() {
        let served: Vec<&str> = ASSETS.iter().map(|a| a.path).collect();
        for asset in ASSETS {
            let Some(body) = asset.text() else { continue };
            for path in local_references(body) {
                // `'/volunteer#alert=…'` and the like: the page itself.
                let path = path.split(['#', '?']).next().unwrap_or_default();
                assert!(
                    served.contains(&path),
                    "{} refers to {path}, which is not served",
                    asset.path
                );
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

    #[test]
    fn every_file_is_a_documented_route() {
        for asset in ASSETS {
            assert!(
                super::super::openapi::ROUTES.contains(&("get", asset.path, false)),
                "{} is not in openapi::ROUTES",
                asset.path
            );
        }
    }

    /// The width and height in a PNG's header.
    fn png_size(body: &[u8]) -> (u32, u32) {
        assert_eq!(&body[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
        assert_eq!(&body[12..16], b"IHDR");
        let word = |at: usize| u32::from_be_bytes(body[at..at + 4].try_into().unwrap());
        (word(16), word(20))
    }

    #[test]
    fn the_manifest_makes_the_volunteer_page_installable() {
        let manifest: Value =
            serde_json::from_str(asset("/assets/volunteer.webmanifest").text().unwrap())
                .expect("the manifest is JSON");
        assert_eq!(manifest["start_url"], "/volunteer");
        assert_eq!(manifest["scope"], "/volunteer");
        assert_eq!(manifest["display"], "standalone");
        assert!(manifest["name"].is_string() && manifest["short_name"].is_string());
        assert!(manifest["theme_color"].as_str().unwrap().starts_with('#'));
        let icons = manifest["icons"].as_array().unwrap();
        let mut kinds = Vec::new();
        for icon in icons {
            let served = asset(icon["src"].as_str().unwrap());
            assert_eq!(served.content_type, icon["type"]);
            let (w, h) = png_size(served.body);
            assert_eq!(icon["sizes"], format!("{w}x{h}"), "{}", served.path);
            kinds.push((icon["purpose"].as_str().unwrap().to_string(), w));
        }
        for wanted in [("any", 192), ("any", 512), ("maskable", 512)] {
            assert!(
                kinds.contains(&(wanted.0.to_string(), wanted.1)),
                "{wanted:?} in {kinds:?}"
            );
        }
        let page = asset("/volunteer").text().unwrap();
        assert!(page.contains("rel=\"manifest\" href=\"/assets/volunteer.webmanifest\""));
    }

    #[test]
    fn the_offline_shell_holds_what_the_volunteer_page_loads() {
        let worker = asset(SERVICE_WORKER).text().unwrap();
        let start = worker.find("const SHELL = [").expect("the shell's list");
        let end = start + worker[start..].find("];").expect("its end");
        let shell = local_references(&worker[start..end]);
        // The page, what it loads, and what those load in turn.
        let mut needed = vec!["/volunteer".to_string()];
        let mut i = 0;
        while i < needed.len() {
            let body = asset(&needed[i]).text().unwrap_or_default();
            for path in local_references(body) {
                let path = path.split(['#', '?']).next().unwrap_or_default();
                let worker_or_icon = path == SERVICE_WORKER || path.starts_with("/assets/icons/");
                if !worker_or_icon && !needed.iter().any(|n| n == path) {
                    needed.push(path.to_string());
                }
            }
            i += 1;
        }
        for path in &needed {
            assert!(shell.contains(path), "{path} is not in the offline shell");
        }
    }
}
