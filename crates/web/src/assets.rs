//! The stylesheet and the one script, compiled into the binary. Their URLs carry a content
//! hash, so browsers may cache them for a year.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

pub struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
    hash: LazyLock<String>,
}

fn digest(body: &[u8]) -> String {
    hex::encode(&Sha256::digest(body)[..8])
}

impl Asset {
    pub fn url(&self) -> String {
        format!("/static/{}?v={}", self.name, *self.hash)
    }

    pub fn size(&self) -> usize {
        self.body.len()
    }
}

const CSS_BODY: &[u8] = include_bytes!("../assets/app.css");
const JS_BODY: &[u8] = include_bytes!("../assets/app.js");

pub static CSS: Asset = Asset {
    name: "app.css",
    content_type: "text/css; charset=utf-8",
    body: CSS_BODY,
    hash: LazyLock::new(|| digest(CSS_BODY)),
};
pub static JS: Asset = Asset {
    name: "app.js",
    content_type: "text/javascript; charset=utf-8",
    body: JS_BODY,
    hash: LazyLock::new(|| digest(JS_BODY)),
};

pub async fn serve(Path(name): Path<String>, headers: HeaderMap) -> Response {
    let Some(a) = [&CSS, &JS].into_iter().find(|a| a.name == name) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let etag = format!("\"{}\"", *a.hash);
    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    (
        [
            (header::CONTENT_TYPE, a.content_type.to_string()),
            (
                header::CACHE_CONTROL,
                "public, max-age=31536000, immutable".into(),
            ),
            (header::ETAG, etag),
        ],
        a.body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_script_shipped_stays_under_50_kib() {
        assert!(JS.size() < 50 * 1024, "{} bytes of JavaScript", JS.size());
    }

    #[test]
    fn urls_change_with_the_content() {
        assert!(CSS.url().starts_with("/static/app.css?v="));
        assert_ne!(CSS.url(), JS.url());
    }
}
