//! The search bulkhead. Searches, filtered or reordered listings and statistics read an amount
//! of a workspace that grows with it; a primary-key get reads one row, and so does, per item,
//! a newest-first listing page (it walks the workspace's `(tenant_id, created_at)` index and
//! stops after the page; its total is a maintained count or a bounded one). Sharing one pool,
//! a burst of slow searches held every connection and the gets queued behind them
//! (head-of-line blocking). So at most `SEARCH_CONCURRENCY` of the growing requests hold a
//! connection at once (the configuration keeps that below the pool's size), each of their
//! statements runs under `SEARCH_TIMEOUT_MS`, and one that finds no place within that time is
//! refused rather than queued without end. The bounded ones skip the bulkhead: rationing them
//! too left connections idle while they waited behind the searches.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The deepest `offset` a listing that skips the bulkhead may ask for: the index walk reads
/// `offset + limit` entries.
pub const SHALLOW_OFFSET: u32 = 1_000;

use crate::error::{ApiError, Overload};
use crate::AppState;

/// The places of the bulkhead and the time limit of the requests that take one.
pub struct Searches {
    places: Arc<Semaphore>,
    timeout: Duration,
}

impl Searches {
    pub fn new(concurrency: u32, timeout: Duration) -> Self {
        Searches {
            places: Arc::new(Semaphore::new(concurrency as usize)),
            timeout,
        }
    }
}

/// The statement timeout a request's transaction runs under, when it differs from the
/// connection's: set by [`SearchPlace`], applied by the `Ws` extractor in the statement that
/// scopes the transaction (no extra round trip).
#[derive(Debug, Clone, Copy)]
pub struct StatementTimeout(pub Duration);

/// A place in the bulkhead, held until the handler returns. It must come before `Ws` among
/// the handler's arguments: axum runs extractors in order, and `Ws` takes a pooled connection,
/// which is what the place rations.
pub struct SearchPlace {
    /// Returned to the bulkhead when the handler drops it.
    _place: OwnedSemaphorePermit,
}

impl FromRequestParts<AppState> for SearchPlace {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let searches = state.searches();
        let place = tokio::time::timeout(searches.timeout, searches.places.clone().acquire_owned())
            .await
            .map_err(|_| ApiError::Overloaded(Overload::SearchesBusy))?
            .expect("the bulkhead's semaphore is never closed");
        parts.extensions.insert(StatementTimeout(searches.timeout));
        Ok(SearchPlace { _place: place })
    }
}

/// A listing's place: none for a page that walks the newest-first index and stops after it
/// (see [`bounded_listing`]), a [`SearchPlace`] for any other. Like `SearchPlace`, it must come
/// before `Ws` among the handler's arguments.
pub struct ListPlace {
    /// Returned to the bulkhead when the handler drops it.
    _place: Option<SearchPlace>,
}

impl FromRequestParts<AppState> for ListPlace {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if bounded_listing(parts.uri.query().unwrap_or_default()) {
            return Ok(ListPlace { _place: None });
        }
        SearchPlace::from_request_parts(parts, state)
            .await
            .map(|place| ListPlace {
                _place: Some(place),
            })
    }
}

/// Whether a listing's query string asks for a page of the newest-first (or oldest-first)
/// index walk: no text, no tags, no cursor (it may carry another order), the default sort, a
/// shallow offset; a time range only narrows the walk. Anything unparsable or unknown takes a
/// place (and is refused by the handler's own validation).
fn bounded_listing(query: &str) -> bool {
    let Ok(pairs) = serde_html_form::from_str::<Vec<(String, String)>>(query) else {
        return false;
    };
    pairs.iter().all(|(k, v)| match k.as_str() {
        "limit" | "order" | "created_after" | "created_before" => true,
        "sort" => v == "created_at",
        "offset" => v.parse::<u32>().is_ok_and(|o| o <= SHALLOW_OFFSET),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::bounded_listing;

    #[test]
    fn only_pages_of_the_created_at_walk_skip_the_bulkhead() {
        for q in [
            "",
            "limit=20",
            "limit=100&offset=1000&order=asc",
            "sort=created_at&order=desc&created_after=2024-01-01",
        ] {
            assert!(bounded_listing(q), "{q}");
        }
        for q in [
            "q=report",
            "tags=t",
            "sort=name",
            "sort=updated_at",
            "offset=1001",
            "offset=-1",
            "cursor=abc",
            "search_mode=fulltext",
            "limit=20&unknown=1",
        ] {
            assert!(!bounded_listing(q), "{q}");
        }
    }
}
