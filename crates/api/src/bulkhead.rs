//! The search bulkhead. Listings, searches and statistics read an amount of a workspace that
//! grows with it; a primary-key get reads one row. Sharing one pool, a burst of slow searches
//! held every connection and the gets queued behind them (head-of-line blocking). So at most
//! `SEARCH_CONCURRENCY` such requests hold a connection at once (the configuration keeps that
//! below the pool's size), each of their statements runs under `SEARCH_TIMEOUT_MS`, and one
//! that finds no place within that time is refused rather than queued without end.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

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
