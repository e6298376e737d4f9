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

use byzgossip_crypto::codec;
use futures::prelude::*;
use libp2p::StreamProtocol;
use std::io;

/// The protocol name. Version 2: gossip marks name the gaps below each origin's highest seq
/// (gossip repair), so a digest of version 1 no longer decodes.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/byzgossip/sync/2");
pub use byzgossip_engine::sync::{
    GossipMark, MAX_DIGEST_GAPS, MAX_DIGEST_ORIGINS, MAX_SYNC_FRAME, MAX_SYNC_ITEMS, MAX_SYNC_LOOKUPS, OriginMark, ResponseBuilder, SYNC_RESPONSE_BUDGET,
    ServePlan, SyncRequest, SyncResponse, SyncedDelivery,
};

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
        if !request.within_bounds() {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "digest names too many origins"));
        }
        Ok(request)
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<SyncResponse> {
        let response: SyncResponse = decode(&read_frame(io).await?)?;
        if !response.within_bounds() {
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

#[cfg(test)]
mod tests {
    use super::*;
    use byzgossip_crypto::{Digest, PublicKey};
    use libp2p::request_response::Codec as _;

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

        // A digest naming too many gossip gaps for one origin, or in all.
        let too_many = |per_origin: usize, origins: usize| SyncRequest::Digest {
            bracha: vec![],
            gossip: (0..origins)
                .map(|i| GossipMark { origin: PublicKey([i as u8; 32]), next: 1 << 20, gaps: (0..per_origin as u64).collect() })
                .collect(),
        };
        let per_origin = byzgossip_engine::gossip::MAX_GAPS_PER_ORIGIN;
        for (request, ok) in [
            (too_many(per_origin, MAX_DIGEST_GAPS / per_origin), true),
            (too_many(per_origin + 1, 1), false),
            (too_many(per_origin, MAX_DIGEST_GAPS / per_origin + 1), false),
        ] {
            let mut buf = Vec::new();
            SyncCodec.write_request(&PROTOCOL, &mut futures::io::Cursor::new(&mut buf), request).await.expect("write");
            assert_eq!(SyncCodec.read_request(&PROTOCOL, &mut futures::io::Cursor::new(&buf)).await.is_ok(), ok);
        }
    }
}
