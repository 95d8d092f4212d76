//! `POST /internal/v1/commands`: commands other replicas forward to the owner of their symbol
//! (see [`crate::trading::forward`]). Signed with the replicas' shared key; never exposed to
//! clients in the OpenAPI document.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::state::AppState;
use crate::trading::forward::{Forwarded, SIGNATURE, WireReply};

/// Runs a forwarded command on this replica's matcher and answers with its reply.
pub async fn commands(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(forwarder) = state.trading.forwarder() else {
        return ApiError::NotFound("no such route".into()).into_response();
    };
    let signed = headers
        .get(SIGNATURE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|sig| forwarder.key().verify(&body, sig));
    if !signed {
        return ApiError::Unauthorized("internal commands must be signed by a replica".into())
            .into_response();
    }
    let command: Forwarded = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => {
            return ApiError::BadRequest(format!("not a forwarded command: {e}")).into_response();
        }
    };
    Json(WireReply::from(state.trading.run_forwarded(command).await)).into_response()
}
