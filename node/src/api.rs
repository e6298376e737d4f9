//! The HTTP API, for other languages, the CLI and the testnet.
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/status` | [`crate::Status`] as JSON |
//! | GET | `/peers` | every known peer with score, trust and status, as JSON |
//! | POST | `/broadcast` | Bracha broadcast of the raw request body; answers `{"origin","seq"}` |
//! | POST | `/publish/{topic}` | signed gossip of the raw body on `topic`; answers `{"id"}` |
//! | GET | `/deliveries?cursor=N` | server-sent events, one [`crate::DeliveryEvent`] JSON per event, from cursor N |
//! | GET | `/metrics` | Prometheus text |
//! | POST | `/peers/{peer_id}/block` | closes every connection to the peer and refuses new ones; answers `{"peer_id","blocked":true}` |
//! | POST | `/peers/{peer_id}/unblock` | lifts that block (a reputation ban stays); a bootstrap peer is redialled; answers `{"peer_id","blocked":false}` |
//!
//! Block and unblock are an operator's quarantine of a peer by hand (see
//! [`NodeHandle::disconnect`]); the testnet's process runtime makes its partitions with them.
//!
//! Request bodies are capped at [`MAX_BODY`]. Errors are JSON `{"error": "..."}` with 400
//! (refused, or a malformed peer id), 403 (not a committee member) or 503 (node stopped).

use crate::handle::{NodeError, NodeHandle};
use crate::metrics::Metrics;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use libp2p::PeerId;
use serde::Deserialize;
use std::convert::Infallible;

/// Largest request body: the codec's ceiling.
pub const MAX_BODY: usize = byzgossip_crypto::codec::MAX_ENVELOPE_LEN;

#[derive(Clone)]
struct Api {
    node: NodeHandle,
    metrics: Metrics,
}

struct ApiError(NodeError);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self.0 {
            NodeError::Refused(_) | NodeError::Config(_) => StatusCode::BAD_REQUEST,
            NodeError::NotAMember => StatusCode::FORBIDDEN,
            NodeError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, Json(serde_json::json!({ "error": self.0.to_string() }))).into_response()
    }
}

/// The router (exposed for tests that drive it without a socket).
pub fn router(node: NodeHandle, metrics: Metrics) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/peers", get(peers))
        .route("/broadcast", post(broadcast))
        .route("/publish/{topic}", post(publish))
        .route("/deliveries", get(deliveries))
        .route("/metrics", get(metrics_text))
        .route("/peers/{peer_id}/block", post(block))
        .route("/peers/{peer_id}/unblock", post(unblock))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(Api { node, metrics })
}

/// Serves the HTTP API on `listener` until the node stops; then the listener is closed, so
/// a node started again in the same process can bind the port (open event streams are left
/// to end with their clients).
pub async fn serve(listener: tokio::net::TcpListener, node: NodeHandle, metrics: Metrics) {
    let stopped = node.clone();
    let app = router(node, metrics);
    tokio::select! {
        result = axum::serve(listener, app) => {
            if let Err(e) = result {
                tracing::warn!(error = %e, "HTTP API stopped");
            }
        }
        () = stopped.stopped() => {}
    }
}

async fn status(State(api): State<Api>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(api.node.status().await.map_err(ApiError)?))
}

async fn peers(State(api): State<Api>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(api.node.peers().await.map_err(ApiError)?))
}

async fn broadcast(State(api): State<Api>, body: Bytes) -> Result<impl IntoResponse, ApiError> {
    let instance = api.node.broadcast(body.to_vec()).await.map_err(ApiError)?;
    Ok(Json(serde_json::json!({ "origin": instance.origin, "seq": instance.seq })))
}

async fn publish(State(api): State<Api>, Path(topic): Path<String>, body: Bytes) -> Result<impl IntoResponse, ApiError> {
    let id = api.node.publish(&topic, body.to_vec()).await.map_err(ApiError)?;
    Ok(Json(serde_json::json!({ "id": id })))
}

#[derive(Deserialize)]
struct CursorQuery {
    #[serde(default)]
    cursor: u64,
}

async fn deliveries(
    State(api): State<Api>,
    Query(query): Query<CursorQuery>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = api.node.deliveries(query.cursor).map(|event| {
        let data = serde_json::to_string(&event).unwrap_or_else(|_| "{}".into());
        Ok(Event::default().data(data))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

async fn block(State(api): State<Api>, Path(peer_id): Path<String>) -> Result<impl IntoResponse, ApiError> {
    set_blocked(api, peer_id, true).await
}

async fn unblock(State(api): State<Api>, Path(peer_id): Path<String>) -> Result<impl IntoResponse, ApiError> {
    set_blocked(api, peer_id, false).await
}

async fn set_blocked(api: Api, peer_id: String, block: bool) -> Result<Json<serde_json::Value>, ApiError> {
    let peer: PeerId = peer_id.parse().map_err(|e| ApiError(NodeError::Refused(format!("peer id {peer_id:?}: {e}"))))?;
    api.node.disconnect(peer, block).await.map_err(ApiError)?;
    Ok(Json(serde_json::json!({ "peer_id": peer.to_string(), "blocked": block })))
}

async fn metrics_text(State(api): State<Api>) -> impl IntoResponse {
    ([("content-type", "text/plain; version=0.0.4")], api.metrics.encode())
}
