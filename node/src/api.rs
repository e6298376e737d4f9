//! HTTP API (being written).
use crate::handle::NodeHandle;
use crate::metrics::Metrics;
/// Serves the HTTP API.
pub async fn serve(_listener: tokio::net::TcpListener, _handle: NodeHandle, _metrics: Metrics) {}
