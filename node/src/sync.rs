//! Anti-entropy sync: a request-response protocol that closes the gaps best-effort gossip
//! leaves (DESIGN.md section 6).
//!
//! Every `sync_interval` a node sends a random connected peer a [`SyncRequest::Digest`]: per
//! origin, the lowest Bracha seq it has not delivered and the highest gossip seq it holds. The
//! peer answers with what it has beyond those marks: delivery certificates with their values,
//! and recent gossip envelopes. Everything received is re-admitted exactly like gossip
//! (certificates are verified, envelopes go through admission), so a lying peer gains
//! nothing. A node also asks for a single Bracha value by digest when it holds 2f+1 READYs
//! but never saw the SEND ([`SyncRequest::Value`]).
//!
//! Bounds: a frame is at most [`MAX_SYNC_FRAME`] bytes (checked before allocating), a
//! response carries at most [`MAX_SYNC_ITEMS`] items and stops adding items at
//! [`SYNC_RESPONSE_BUDGET`] bytes, and a digest names at most [`MAX_DIGEST_ORIGINS`] origins.

use byzgossip_crypto::codec::{self, MAX_ENVELOPE_LEN};
use byzgossip_crypto::{Digest, PublicKey};
use futures::prelude::*;
use libp2p::StreamProtocol;
use serde::{Deserialize, Serialize};
use std::io;

/// The protocol name.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/byzgossip/sync/1");
/// Largest request or response frame: the codec's ceiling, so one frame is one decode.
pub const MAX_SYNC_FRAME: usize = MAX_ENVELOPE_LEN;
/// Responses stop growing past this many bytes of items (leaves room for framing).
pub const SYNC_RESPONSE_BUDGET: usize = MAX_SYNC_FRAME - 64 * 1024;
/// Most items (deliveries plus envelopes) in one response.
pub const MAX_SYNC_ITEMS: usize = 256;
/// Most origins named in one digest (the committee plus recent gossip origins).
pub const MAX_DIGEST_ORIGINS: usize = 4096;

/// Per-origin progress marks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginMark {
    /// The origin.
    pub origin: PublicKey,
    /// Bracha: the lowest seq not yet delivered. Gossip: one past the highest seq held.
    pub next: u64,
}

/// A sync request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncRequest {
    /// "Here is what I have; send me what I lack."
    Digest {
        /// Bracha delivery marks per origin (origins not named: send from seq 0).
        bracha: Vec<OriginMark>,
        /// Gossip marks per origin (origins not named: nothing is sent for them unless the
        /// responder holds recent gossip of theirs).
        gossip: Vec<OriginMark>,
    },
    /// The value of one Bracha instance, by digest.
    Value {
        /// Instance origin.
        origin: PublicKey,
        /// Instance seq.
        seq: u64,
        /// The value's digest.
        digest: Digest,
    },
}

/// A delivered instance as sync carries it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncedDelivery {
    /// The encoded certificate (`byzgossip_bracha::Certificate`).
    #[serde(with = "serde_bytes")]
    pub certificate: Vec<u8>,
    /// The value.
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
}

/// A sync response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncResponse {
    /// Answer to a digest.
    Catchup {
        /// Delivered instances the requester lacks.
        deliveries: Vec<SyncedDelivery>,
        /// Encoded gossip envelopes the requester lacks.
        gossip: Vec<serde_bytes::ByteBuf>,
    },
    /// Answer to a value request (`None`: not held).
    Value(Option<serde_bytes::ByteBuf>),
}

/// Length-prefixed frames (u32 big-endian) of [`codec`]-encoded messages, bounded by
/// [`MAX_SYNC_FRAME`].
#[derive(Clone, Default)]
pub struct SyncCodec;

async fn read_frame<T: AsyncRead + Unpin + Send>(io: &mut T) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_SYNC_FRAME {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("sync frame of {len} bytes is over the limit")));
    }
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
    Ok(buf)
}

async fn write_frame<T: AsyncWrite + Unpin + Send>(io: &mut T, bytes: &[u8]) -> io::Result<()> {
    if bytes.len() > MAX_SYNC_FRAME {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "sync frame over the limit"));
    }
    io.write_all(&(bytes.len() as u32).to_be_bytes()).await?;
    io.write_all(bytes).await?;
    io.close().await
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> io::Result<T> {
    codec::decode(bytes, MAX_SYNC_FRAME).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
}

impl libp2p::request_response::Codec for SyncCodec {
    type Protocol = StreamProtocol;
    type Request = SyncRequest;
    type Response = SyncResponse;

    async fn read_request<T: AsyncRead + Unpin + Send>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<SyncRequest> {
        let request: SyncRequest = decode(&read_frame(io).await?)?;
        if let SyncRequest::Digest { bracha, gossip } = &request
            && bracha.len() + gossip.len() > MAX_DIGEST_ORIGINS
        {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "digest names too many origins"));
        }
        Ok(request)
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<SyncResponse> {
        let response: SyncResponse = decode(&read_frame(io).await?)?;
        if let SyncResponse::Catchup { deliveries, gossip } = &response
            && deliveries.len() + gossip.len() > MAX_SYNC_ITEMS
        {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "sync response has too many items"));
        }
        Ok(response)
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(&mut self, _: &StreamProtocol, io: &mut T, request: SyncRequest) -> io::Result<()> {
        write_frame(io, &codec::encode(&request)).await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(&mut self, _: &StreamProtocol, io: &mut T, response: SyncResponse) -> io::Result<()> {
        write_frame(io, &codec::encode(&response)).await
    }
}

/// Fills a response up to the item and byte budgets, in the order given.
#[derive(Default)]
pub struct ResponseBuilder {
    deliveries: Vec<SyncedDelivery>,
    gossip: Vec<serde_bytes::ByteBuf>,
    bytes: usize,
}

impl ResponseBuilder {
    fn has_room(&self, len: usize) -> bool {
        self.deliveries.len() + self.gossip.len() < MAX_SYNC_ITEMS && self.bytes + len + 16 <= SYNC_RESPONSE_BUDGET
    }

    /// Adds a delivery if it fits; false when the response is full.
    pub fn push_delivery(&mut self, certificate: Vec<u8>, value: Vec<u8>) -> bool {
        let len = certificate.len() + value.len();
        if !self.has_room(len) {
            return false;
        }
        self.bytes += len + 16;
        self.deliveries.push(SyncedDelivery { certificate, value });
        true
    }

    /// Adds an encoded envelope if it fits; false when the response is full.
    pub fn push_gossip(&mut self, envelope: Vec<u8>) -> bool {
        if !self.has_room(envelope.len()) {
            return false;
        }
        self.bytes += envelope.len() + 16;
        self.gossip.push(serde_bytes::ByteBuf::from(envelope));
        true
    }

    /// The response.
    pub fn finish(self) -> SyncResponse {
        SyncResponse::Catchup { deliveries: self.deliveries, gossip: self.gossip }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p::request_response::Codec as _;

    #[test]
    fn response_builder_respects_item_and_byte_budgets() {
        let mut b = ResponseBuilder::default();
        let mut n = 0;
        while b.push_gossip(vec![0; 10]) {
            n += 1;
        }
        assert_eq!(n, MAX_SYNC_ITEMS);
        let mut b = ResponseBuilder::default();
        let mut n = 0;
        while b.push_delivery(vec![0; 100_000], vec![1; 100_000]) {
            n += 1;
        }
        assert_eq!(n, SYNC_RESPONSE_BUDGET / 200_016);
        let encoded = codec::encode(&b.finish());
        assert!(encoded.len() <= MAX_SYNC_FRAME, "{}", encoded.len());
    }

    #[tokio::test]
    async fn frames_round_trip_and_oversize_frames_are_refused() {
        let request = SyncRequest::Value { origin: PublicKey([1; 32]), seq: 3, digest: Digest([2; 32]) };
        let mut buf = Vec::new();
        SyncCodec.write_request(&PROTOCOL, &mut futures::io::Cursor::new(&mut buf), request.clone()).await.expect("write");
        let read = SyncCodec.read_request(&PROTOCOL, &mut futures::io::Cursor::new(&buf)).await.expect("read");
        assert_eq!(read, request);

        let mut huge = ((MAX_SYNC_FRAME + 1) as u32).to_be_bytes().to_vec();
        huge.extend_from_slice(&[0; 16]);
        let err = SyncCodec.read_request(&PROTOCOL, &mut futures::io::Cursor::new(&huge)).await.expect_err("too big");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);

        // A digest naming too many origins.
        let marks = vec![OriginMark { origin: PublicKey([0; 32]), next: 0 }; MAX_DIGEST_ORIGINS + 1];
        let mut buf = Vec::new();
        SyncCodec
            .write_request(&PROTOCOL, &mut futures::io::Cursor::new(&mut buf), SyncRequest::Digest { bracha: marks, gossip: vec![] })
            .await
            .expect("write");
        assert!(SyncCodec.read_request(&PROTOCOL, &mut futures::io::Cursor::new(&buf)).await.is_err());
    }
}
