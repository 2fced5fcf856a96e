//! Pagination of REST listings: the `cursor` and `limit` query parameters,
//! checked once, and the `{items, nextCursor}` page they produce.

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::ApiError;

/// The default page size.
const DEFAULT_LIMIT: i64 = 100;
/// The largest page size.
const MAX_LIMIT: i64 = 1000;

/// Pagination parameters of a listing, as documented in OpenAPI.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// The `nextCursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size (1 to 1000, default 100).
    pub limit: Option<i64>,
}

/// A checked page request: where to start and how many items at most.
#[derive(Debug, Clone)]
pub struct Page {
    /// Items after this key (the previous page's `nextCursor`).
    pub cursor: Option<String>,
    /// Page size, 1 to 1000.
    pub limit: i64,
}

impl Page {
    /// The page of `items`: `{items, nextCursor}`, where `nextCursor` is the
    /// last item's key when the page is full.
    pub fn of<T: Serialize>(
        &self,
        items: &[T],
        key: impl Fn(&T) -> String,
    ) -> Result<Json<Value>, ApiError> {
        let next = match items.last() {
            Some(last) if items.len() as i64 == self.limit => Some(key(last)),
            _ => None,
        };
        let items = serde_json::to_value(items).map_err(|e| ApiError::internal(e.to_string()))?;
        Ok(Json(json!({"items": items, "nextCursor": next})))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Page {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(q) = Query::<PageQuery>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request(e.body_text()))?;
        let limit = match q.limit {
            None => DEFAULT_LIMIT,
            Some(n) if (1..=MAX_LIMIT).contains(&n) => n,
            Some(n) => {
                return Err(ApiError::bad_request(format!(
                    "limit {n} is not between 1 and {MAX_LIMIT}"
                )))
            }
        };
        Ok(Page {
            cursor: q.cursor,
            limit,
        })
    }
}
