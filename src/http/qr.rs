//! `POST /v1/qr` (operators only, an extension): a text as a QR code, in
//! SVG, rendered here so that the dashboard loads no QR library and sends
//! the text to no other host.
//!
//! The dashboard uses it for a volunteer's sign-in link, which holds their
//! token: hence a POST with the text in the body (never in a URL, so never
//! in a log) and `Cache-Control: no-store` on the answer.

use axum::Router;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use qrcode::render::svg;
use qrcode::{EcLevel, QrCode};
use serde::Deserialize;
use utoipa::ToSchema;

use super::AppState;
use super::auth::Operator;
use super::error::{ApiError, Invalid};
use super::extract::ApiJson;
use super::openapi::{
    BadRequest, Forbidden, PayloadTooLarge, Unauthorized, Unavailable, Unprocessable,
};

/// The longest text encoded, in characters.
pub const MAX_QR_CHARS: usize = 1024;
/// The side of one module of the code, in SVG user units (pixels).
pub const MODULE_PX: u32 = 8;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/qr", post(qr_code))
}

/// The body of `POST /v1/qr`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct QrBody {
    /// What the code holds, typically a link; 1 to 1024 characters, with no
    /// NUL character, and at most 2331 bytes in UTF-8 (what a QR code can
    /// hold; a rule on bytes that JSON Schema cannot state): 422 otherwise.
    #[schema(min_length = 1, max_length = 1024, pattern = r"^[^\u0000]*$")]
    pub text: String,
}

/// `text` as an SVG QR code: error correction level M, a 4-module quiet
/// zone, black on white, [`MODULE_PX`] per module.
pub fn render_svg(text: &str) -> Result<String, Invalid> {
    if text.is_empty() {
        return Err(Invalid::field("text", "must not be empty"));
    }
    if text.contains('\0') {
        return Err(Invalid::field("text", "must not contain NUL characters"));
    }
    if text.chars().count() > MAX_QR_CHARS {
        return Err(Invalid::field(
            "text",
            format!("must be at most {MAX_QR_CHARS} characters"),
        ));
    }
    // 1024 characters fit whatever they are made of only up to 2331 bytes
    // of UTF-8 (version 40 at level M); a longer encoding is refused too.
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M)
        .map_err(|_| Invalid::field("text", "is too long for a QR code"))?;
    Ok(code
        .render::<svg::Color<'_>>()
        .quiet_zone(true)
        .module_dimensions(MODULE_PX, MODULE_PX)
        .dark_color(svg::Color("#000"))
        .light_color(svg::Color("#fff"))
        .build())
}

/// Renders a text (a volunteer's sign-in link, say) as a QR code, in SVG.
///
/// The text goes in the body so that it never appears in a URL or a log; the
/// answer must not be cached.
#[utoipa::path(
    post,
    path = "/v1/qr",
    tag = "registry",
    request_body = QrBody,
    responses(
        (status = 200, description = "The QR code (level M, with a quiet zone)", body = String,
            content_type = "image/svg+xml",
            headers(("Cache-Control" = String, description = "`no-store`"))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 413, response = PayloadTooLarge),
        (status = 422, response = Unprocessable),
        (status = 503, response = Unavailable),
    ),
    extensions(("x-onepress-roles" = json!(["operator"]))),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all)]
async fn qr_code(_: Operator, ApiJson(body): ApiJson<QrBody>) -> Result<Response, ApiError> {
    let svg = render_svg(&body.text)?;
    Ok((
        [
            (CONTENT_TYPE, HeaderValue::from_static("image/svg+xml")),
            (CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        svg,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The side of the rendered code, in modules, quiet zone included.
    fn side_in_modules(svg: &str) -> u32 {
        let width = svg
            .split("width=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .and_then(|w| w.parse::<u32>().ok())
            .unwrap_or_else(|| panic!("no width in {svg:.200}"));
        assert_eq!(width % MODULE_PX, 0, "{width}");
        width / MODULE_PX
    }

    #[test]
    fn a_short_text_is_a_version_1_code_with_a_quiet_zone() {
        let svg = render_svg("hello").unwrap();
        assert!(svg.starts_with("<?xml"), "{svg:.100}");
        assert!(svg.contains("<svg"), "{svg:.100}");
        // Version 1 is 21 modules wide, plus 4 of quiet zone on each side.
        assert_eq!(side_in_modules(&svg), 21 + 8);
        let code = QrCode::with_error_correction_level("hello", EcLevel::M).unwrap();
        assert_eq!(code.error_correction_level(), EcLevel::M);
    }

    #[test]
    fn longer_texts_need_larger_codes() {
        let link = |n: usize| format!("http://127.0.0.1:8080/volunteer#token={}", "a".repeat(n));
        let sizes: Vec<u32> = [0, 64, 300, 900]
            .iter()
            .map(|&n| side_in_modules(&render_svg(&link(n)).unwrap()))
            .collect();
        assert!(sizes.windows(2).all(|w| w[0] < w[1]), "{sizes:?}");
        // Every size is a QR version's: 17 + 4 × version, plus the quiet zone.
        assert!(sizes.iter().all(|s| (s - 8 - 17) % 4 == 0), "{sizes:?}");
    }

    #[test]
    fn texts_out_of_bounds_are_invalid() {
        assert!(render_svg("").is_err());
        assert!(render_svg("a\0b").is_err());
        assert!(render_svg(&"x".repeat(MAX_QR_CHARS)).is_ok());
        assert!(render_svg(&"x".repeat(MAX_QR_CHARS + 1)).is_err());
        // 1024 characters of 4 bytes each are more than a code holds.
        assert!(render_svg(&"😀".repeat(MAX_QR_CHARS)).is_err());
        assert!(render_svg(&"王".repeat(700)).is_ok());
    }
}
