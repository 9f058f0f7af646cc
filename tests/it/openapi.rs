//! `GET /openapi.json` against the running service: the document it serves
//! names exactly the routes of `onepress::http::openapi::ROUTES`, and each
//! of them is routed (not the 404/405 fallbacks): with no token, a route
//! that needs one answers 401 and one that does not answers 200 in the
//! documented content type.

use onepress::http::openapi::ROUTES;

use crate::common::{Backend, spawn_app};

#[tokio::test]
async fn the_served_document_lists_every_route_and_each_is_served() {
    let Some(app) = spawn_app(Backend::SqliteEmbedded).await else {
        return;
    };
    let doc = app.call("GET", "/openapi.json", None, None).await;
    assert_eq!(doc.status, 200, "{doc:?}");
    let paths = doc.body["paths"].as_object().expect("paths");
    let documented: usize = paths
        .values()
        .map(|item| item.as_object().map_or(0, |ops| ops.len()))
        .sum();
    assert_eq!(documented, ROUTES.len(), "documented operations vs ROUTES");

    for (method, path, secured) in ROUTES {
        let operation = &paths[*path][*method];
        assert!(operation.is_object(), "{method} {path} is not documented");
        let concrete = path.replace("{id}", "x-1").replace("{device_id}", "x-1");
        let r = app
            .http
            .request(
                method.to_uppercase().parse().unwrap(),
                format!("{}{concrete}", app.base),
            )
            .send()
            .await
            .expect("the request is answered");
        let status = r.status().as_u16();
        let content_type = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        if path.starts_with("/v1/mqtt/") {
            // The broker hooks are off without a hook token.
            assert_eq!(status, 404, "{method} {concrete} with the hooks off");
            continue;
        }
        if *secured {
            assert_eq!(status, 401, "{method} {concrete} without a token");
            continue;
        }
        if path.starts_with("/v1/offers/") {
            // A signed link: no token, but nothing without its signature.
            assert_eq!(status, 400, "{method} {concrete} without its query");
            continue;
        }
        assert_eq!(status, 200, "{method} {concrete}");
        let documented_types: Vec<&String> = operation["responses"]["200"]["content"]
            .as_object()
            .map(|c| c.keys().collect())
            .unwrap_or_default();
        assert!(
            documented_types
                .iter()
                .any(|t| content_type.starts_with(t.as_str())),
            "{method} {concrete}: {content_type} is not among {documented_types:?}"
        );
    }
}
