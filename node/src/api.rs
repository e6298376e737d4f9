//! The HTTP API, for operators, other languages, the CLI and the testnet.
//!
//! | method | path | auth | what |
//! |---|---|---|---|
//! | GET | `/status` | open | [`crate::Status`] as JSON |
//! | GET | `/peers` | open | every known peer with score, trust and status, as JSON |
//! | GET | `/deliveries?cursor=N` | open | server-sent events, one [`crate::DeliveryEvent`] JSON per event, from cursor N |
//! | GET | `/metrics` | open | Prometheus text |
//! | POST | `/broadcast` | token | Bracha broadcast of the raw request body; answers `{"origin","seq"}` |
//! | POST | `/publish/{topic}` | token | signed gossip of the raw body on `topic`; answers `{"id"}` |
//! | POST | `/peers/{peer_id}/block` | token | closes every connection to the peer and refuses new ones; answers `{"peer_id","blocked":true}` |
//! | POST | `/peers/{peer_id}/unblock` | token | lifts that block (a reputation ban stays); a bootstrap peer is redialled; answers `{"peer_id","blocked":false}` |
//!
//! Block and unblock are an operator's quarantine of a peer by hand (see
//! [`NodeHandle::disconnect`]); the testnet's process runtime makes its partitions with them.
//!
//! **Authentication.** Every call that changes something (the POSTs) needs
//! `Authorization: Bearer <token>` with the node's [`ApiToken`] ([`crate::NodeConfig::api_token`]);
//! reads stay open, so dashboards and scrapers need no secret. Missing or wrong: 401. The
//! `byzgossip` binary keeps the token in `<data>/`[`API_TOKEN_FILE`] (created on first start,
//! mode 0600, printed once to stderr), or in the file `--api-token-file` names; a node run
//! without either gets a fresh token per start, printed to stderr. An embedded node gets a
//! random token from [`crate::NodeConfig::new`], readable from its config before spawning.
//! The token guards against other local users and processes that can reach the port; it is
//! sent in clear, so the API should stay on loopback (the binary serves no API unless `--api`
//! is given, and warns when that address is not a loopback one).
//!
//! **Errors** are JSON `{"error": "<message>", "code": "<code>"}`, whatever produced them
//! (our handlers, a malformed request, an unknown path):
//!
//! | status | code | when |
//! |---|---|---|
//! | 400 | `refused`, `bad_peer_id`, `bad_request` | the request is wrong (value too large, bad topic, own peer id, malformed query) |
//! | 401 | `unauthorized` | a POST without the right bearer token |
//! | 403 | `not_a_member` | this node may not broadcast (or publish, under the committee policy) |
//! | 404, 405, 413 | `not_found`, `method_not_allowed`, `payload_too_large` | no such route, wrong method, body over [`MAX_BODY`] |
//! | 429 | `busy` | backpressure ([`NodeError::Busy`]): the Bracha window is full or publishing is over its rate budget; `Retry-After` says when to try again |
//! | 503 | `too_many_subscribers` | already [`MAX_SUBSCRIBERS`] open `/deliveries` streams; with `Retry-After` |
//! | 503 | `stopped` | the node has stopped |
//! | 500 | `storage`, `network`, ... | a local failure |

use crate::config::NodeConfig;
use crate::handle::{NodeError, NodeHandle};
use crate::metrics::Metrics;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::map_response;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use libp2p::PeerId;
use serde::Deserialize;
use std::convert::Infallible;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Largest request body: the codec's ceiling.
pub const MAX_BODY: usize = byzgossip_crypto::codec::MAX_ENVELOPE_LEN;

/// Most `/deliveries` streams open at once (the default of
/// [`NodeConfig::api_max_subscribers`]). Every stream holds a task, a socket and up to
/// [`crate::EVENT_BUFFER`] events, so without a cap anyone who can reach the port could
/// exhaust the node's memory by opening streams; beyond it: 503 with `Retry-After`.
pub const MAX_SUBSCRIBERS: usize = 256;

/// Seconds a client is told to wait (`Retry-After`) after backpressure (429): a Bracha
/// instance completes, and the publish budget refills, within about a second.
pub const BUSY_RETRY_AFTER_S: u32 = 1;

/// Seconds a client is told to wait (`Retry-After`) when every subscriber slot is taken:
/// slots free only when other clients disconnect, so there is no point in retrying at once.
pub const SUBSCRIBERS_RETRY_AFTER_S: u32 = 5;

/// Name of the token file the `byzgossip` binary keeps in its data directory.
pub const API_TOKEN_FILE: &str = "api-token";

/// Shortest token accepted from a file: 16 characters. Generated tokens are 64 hex digits
/// (32 random bytes); a shorter one an operator wrote by hand would be guessable.
pub const MIN_TOKEN_LEN: usize = 16;

/// The bearer token that authorises the API's mutating calls. Its `Debug` never shows the
/// secret (it sits in [`NodeConfig`], which is logged in places).
#[derive(Clone)]
pub struct ApiToken(Arc<str>);

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiToken(<redacted>)")
    }
}

/// Why a token file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ApiTokenError {
    /// reading, creating or writing the file failed
    #[error("API token file {path}: {source}")]
    Io {
        /// the file
        path: PathBuf,
        /// the failure
        source: std::io::Error,
    },
    /// the file holds no usable token
    #[error("API token file {path}: {reason}")]
    Invalid {
        /// the file
        path: PathBuf,
        /// what is wrong with it
        reason: String,
    },
}

impl ApiToken {
    /// A fresh token: 32 random bytes, hex.
    pub fn generate() -> ApiToken {
        let bytes: [u8; 32] = rand::random();
        ApiToken(hex::encode(bytes).into())
    }

    /// A token from text (surrounding whitespace ignored): at least [`MIN_TOKEN_LEN`]
    /// visible ASCII characters, so it fits an HTTP header unchanged.
    pub fn parse(text: &str) -> Result<ApiToken, String> {
        let token = text.trim();
        if token.len() < MIN_TOKEN_LEN {
            return Err(format!("a token needs at least {MIN_TOKEN_LEN} characters"));
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("a token is visible ASCII without spaces".into());
        }
        Ok(ApiToken(token.into()))
    }

    /// The secret, to put in an `Authorization: Bearer` header.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Reads the token in `path`, or, if there is no such file, creates it (mode 0600, the
    /// parent directory too) with a [`generated`](ApiToken::generate) token. Returns whether
    /// it was created, so the caller can show a new token once. Creation never overwrites: a
    /// file that appears meanwhile is read instead.
    pub fn load_or_create(path: &FsPath) -> Result<(ApiToken, bool), ApiTokenError> {
        use std::io::Write;
        let io = |source| ApiTokenError::Io { path: path.to_owned(), source };
        match std::fs::read_to_string(path) {
            Ok(text) => return Self::checked(path, &text).map(|t| (t, false)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let token = ApiToken::generate();
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        match options.open(path) {
            Ok(mut file) => {
                file.write_all(format!("{}\n", token.as_str()).as_bytes()).map_err(io)?;
                file.sync_all().map_err(io)?;
                Ok((token, true))
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let text = std::fs::read_to_string(path).map_err(io)?;
                Self::checked(path, &text).map(|t| (t, false))
            }
            Err(e) => Err(io(e)),
        }
    }

    /// Reads the token in `path` (which must exist), as the CLI client does.
    pub fn load(path: &FsPath) -> Result<ApiToken, ApiTokenError> {
        let text = std::fs::read_to_string(path).map_err(|source| ApiTokenError::Io { path: path.to_owned(), source })?;
        Self::checked(path, &text)
    }

    fn checked(path: &FsPath, text: &str) -> Result<ApiToken, ApiTokenError> {
        let token = Self::parse(text).map_err(|reason| ApiTokenError::Invalid { path: path.to_owned(), reason })?;
        #[cfg(unix)]
        {
            // Like ssh with a private key, but a warning rather than a refusal: the token only
            // guards the API, and an operator may share it with a group on purpose.
            use std::os::unix::fs::PermissionsExt;
            if let Ok(meta) = std::fs::metadata(path)
                && meta.permissions().mode() & 0o077 != 0
            {
                tracing::warn!(path = %path.display(), "the API token file is readable by other users; chmod 600 it");
            }
        }
        Ok(token)
    }

    /// Whether `presented` is this token, in time independent of where they differ (the
    /// length may leak; the content does not).
    fn matches(&self, presented: &[u8]) -> bool {
        let ours = self.0.as_bytes();
        ours.len() == presented.len() && ours.iter().zip(presented).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

/// What the API server needs beyond the node: who may change things and how many may listen.
#[derive(Clone, Debug)]
pub struct ApiOptions {
    /// The bearer token of the mutating calls.
    pub token: ApiToken,
    /// Most open `/deliveries` streams ([`MAX_SUBSCRIBERS`] by default).
    pub max_subscribers: usize,
}

impl ApiOptions {
    /// The API options a node config names.
    pub fn from_config(config: &NodeConfig) -> ApiOptions {
        ApiOptions { token: config.api_token.clone(), max_subscribers: config.api_max_subscribers }
    }
}

#[derive(Clone)]
struct Api {
    node: NodeHandle,
    metrics: Metrics,
    /// The bearer token [`Operator`] checks.
    token: ApiToken,
    /// One permit per open `/deliveries` stream.
    subscribers: Arc<Semaphore>,
}

/// Proof that a request carries `Authorization: Bearer <token>` (scheme case-insensitive).
/// Every mutating handler takes it as its first argument, so the check runs before the body
/// is read, and a wrong method on such a path is still a plain 405.
struct Operator;

impl axum::extract::FromRequestParts<Api> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, api: &Api) -> Result<Operator, ApiError> {
        match bearer(&parts.headers) {
            Some(presented) if api.token.matches(presented) => Ok(Operator),
            Some(_) => Err(ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "wrong API token")),
            None => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this call needs `Authorization: Bearer <token>` (`byzgossip run` keeps the token in <data>/api-token or in its --api-token-file)",
            )),
        }
    }
}

/// An error answer: status, a stable machine-readable `code`, a message, and for answers that
/// mean "later", the seconds to put in `Retry-After`.
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after_s: Option<u32>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), retry_after_s: None }
    }
}

impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> ApiError {
        let (status, code) = match &e {
            NodeError::Refused(_) => (StatusCode::BAD_REQUEST, "refused"),
            NodeError::Config(_) => (StatusCode::BAD_REQUEST, "config"),
            NodeError::Busy(_) => (StatusCode::TOO_MANY_REQUESTS, "busy"),
            NodeError::NotAMember => (StatusCode::FORBIDDEN, "not_a_member"),
            NodeError::Stopped => (StatusCode::SERVICE_UNAVAILABLE, "stopped"),
            NodeError::Storage(_) => (StatusCode::INTERNAL_SERVER_ERROR, "storage"),
            NodeError::Network(_) => (StatusCode::INTERNAL_SERVER_ERROR, "network"),
            NodeError::Listen { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "listen"),
        };
        let mut error = ApiError::new(status, code, e.to_string());
        if matches!(e, NodeError::Busy(_)) {
            error.retry_after_s = Some(BUSY_RETRY_AFTER_S);
        }
        error
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(serde_json::json!({ "error": self.message, "code": self.code }));
        let mut response = (self.status, body).into_response();
        if let Some(s) = self.retry_after_s {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// The router (exposed for tests that drive it without a socket).
pub fn router(node: NodeHandle, metrics: Metrics, options: ApiOptions) -> Router {
    let subscribers = Arc::new(Semaphore::new(options.max_subscribers));
    let state = Api { node, metrics, token: options.token, subscribers };
    Router::new()
        .route("/status", get(status))
        .route("/peers", get(peers))
        .route("/deliveries", get(deliveries))
        .route("/metrics", get(metrics_text))
        // These change something: their handlers take an `Operator` (the token check).
        .route("/broadcast", post(broadcast))
        .route("/publish/{topic}", post(publish))
        .route("/peers/{peer_id}/block", post(block))
        .route("/peers/{peer_id}/unblock", post(unblock))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        // Outermost, so it also sees axum's own answers (404, 405, 413, bad query).
        .layer(map_response(json_errors))
        .with_state(state)
}

/// Serves the HTTP API on `listener` until the node stops; then the listener is closed, so
/// a node started again in the same process can bind the port (open event streams are left
/// to end with their clients).
pub async fn serve(listener: tokio::net::TcpListener, node: NodeHandle, metrics: Metrics, options: ApiOptions) {
    let stopped = node.clone();
    let app = router(node, metrics, options);
    tokio::select! {
        result = axum::serve(listener, app) => {
            if let Err(e) = result {
                tracing::warn!(error = %e, "HTTP API stopped");
            }
        }
        () = stopped.stopped() => {}
    }
}

fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, rest) = value.split_at_checked(7)?;
    scheme.eq_ignore_ascii_case(b"bearer ").then(|| rest.trim_ascii())
}

/// Turns every error answer that is not JSON yet (axum's 404, 405, 413 and extractor
/// rejections, which are plain text) into `{"error", "code"}`, keeping its status and headers.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    // axum's own messages are short; a body that is not is cut, not buffered.
    let text = axum::body::to_bytes(body, 4096).await.map(|b| String::from_utf8_lossy(&b).trim().to_owned()).unwrap_or_default();
    let message = if text.is_empty() { status.canonical_reason().unwrap_or("error").to_lowercase() } else { text };
    let code = match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        s if s.is_client_error() => "bad_request",
        _ => "internal",
    };
    let mut json = ApiError::new(status, code, message).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            json.headers_mut().insert(name.clone(), value.clone());
        }
    }
    json
}

async fn status(State(api): State<Api>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(api.node.status().await?))
}

async fn peers(State(api): State<Api>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(api.node.peers().await?))
}

async fn broadcast(_: Operator, State(api): State<Api>, body: Bytes) -> Result<impl IntoResponse, ApiError> {
    let instance = api.node.broadcast(body.to_vec()).await?;
    Ok(Json(serde_json::json!({ "origin": instance.origin, "seq": instance.seq })))
}

async fn publish(_: Operator, State(api): State<Api>, Path(topic): Path<String>, body: Bytes) -> Result<impl IntoResponse, ApiError> {
    let id = api.node.publish(&topic, body.to_vec()).await?;
    Ok(Json(serde_json::json!({ "id": id })))
}

#[derive(Deserialize)]
struct CursorQuery {
    #[serde(default)]
    cursor: u64,
}

/// The event stream holds one subscriber permit for as long as it lives (until the client
/// goes and the server drops the stream), so at most `max_subscribers` streams are open.
async fn deliveries(
    State(api): State<Api>,
    Query(query): Query<CursorQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let Ok(permit) = api.subscribers.clone().try_acquire_owned() else {
        let mut error = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_subscribers",
            "every /deliveries slot is taken; retry later",
        );
        error.retry_after_s = Some(SUBSCRIBERS_RETRY_AFTER_S);
        return Err(error);
    };
    let stream = api.node.deliveries(query.cursor).map(move |event| {
        let _held = &permit;
        let data = serde_json::to_string(&event).unwrap_or_else(|_| "{}".into());
        Ok(Event::default().data(data))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

async fn block(_: Operator, State(api): State<Api>, Path(peer_id): Path<String>) -> Result<impl IntoResponse, ApiError> {
    set_blocked(api, peer_id, true).await
}

async fn unblock(_: Operator, State(api): State<Api>, Path(peer_id): Path<String>) -> Result<impl IntoResponse, ApiError> {
    set_blocked(api, peer_id, false).await
}

async fn set_blocked(api: Api, peer_id: String, block: bool) -> Result<Json<serde_json::Value>, ApiError> {
    let peer: PeerId = peer_id
        .parse()
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_peer_id", format!("peer id {peer_id:?}: {e}")))?;
    api.node.disconnect(peer, block).await?;
    Ok(Json(serde_json::json!({ "peer_id": peer.to_string(), "blocked": block })))
}

async fn metrics_text(State(api): State<Api>) -> impl IntoResponse {
    ([("content-type", "text/plain; version=0.0.4")], api.metrics.encode())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_64_hex_digits_and_differ() {
        let (a, b) = (ApiToken::generate(), ApiToken::generate());
        assert_eq!(a.as_str().len(), 64);
        assert!(a.as_str().bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a.as_str(), b.as_str());
    }

    #[test]
    fn debug_never_shows_the_token() {
        let token = ApiToken::generate();
        assert!(!format!("{token:?}").contains(token.as_str()));
    }

    #[test]
    fn parse_trims_and_refuses_short_or_unprintable_tokens() {
        assert_eq!(ApiToken::parse("  0123456789abcdef\n").expect("valid").as_str(), "0123456789abcdef");
        assert!(ApiToken::parse("short").is_err());
        assert!(ApiToken::parse("0123456789 abcdef").is_err());
        assert!(ApiToken::parse("").is_err());
    }

    #[test]
    fn matches_only_the_exact_token() {
        let token = ApiToken::parse("0123456789abcdef").expect("valid");
        assert!(token.matches(b"0123456789abcdef"));
        assert!(!token.matches(b"0123456789abcdeF"));
        assert!(!token.matches(b"0123456789abcde"));
        assert!(!token.matches(b""));
    }

    #[test]
    fn bearer_reads_the_header_with_any_scheme_case() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer(&headers), None);
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer abc"));
        assert_eq!(bearer(&headers), Some(&b"abc"[..]));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("bearer  abc "));
        assert_eq!(bearer(&headers), Some(&b"abc"[..]));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&headers), None);
    }

    #[test]
    fn token_file_is_created_0600_once_and_then_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("data").join(API_TOKEN_FILE);
        let (first, created) = ApiToken::load_or_create(&path).expect("created");
        assert!(created);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).expect("exists").permissions().mode() & 0o777, 0o600);
        }
        let (again, created) = ApiToken::load_or_create(&path).expect("read back");
        assert!(!created);
        assert_eq!(first.as_str(), again.as_str());
        assert_eq!(ApiToken::load(&path).expect("load").as_str(), first.as_str());
    }

    #[test]
    fn a_token_file_without_a_usable_token_is_an_error_not_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(API_TOKEN_FILE);
        std::fs::write(&path, "short\n").expect("write");
        let e = ApiToken::load_or_create(&path).expect_err("refused");
        assert!(e.to_string().contains("at least 16"), "{e}");
        assert_eq!(std::fs::read_to_string(&path).expect("kept"), "short\n");
        assert!(matches!(ApiToken::load(&dir.path().join("missing")), Err(ApiTokenError::Io { .. })));
    }
}
