//! Who is on the other end of a connection, as the engine sees it.

use byzgossip_crypto::PublicKey;

/// A peer. Every byzgossip peer's transport identity is its ed25519 signing key, so the peer
/// that forwards a message and the key that signs one are directly comparable; a peer whose
/// identity is anything else cannot be scored against signing keys and is kept blocked
/// ([`crate::Engine`]'s wanted block set). The driver maps its transport ids to and from this
/// (libp2p: `PeerId` with an inlined ed25519 key <-> `Key`, anything else <-> `Foreign` with
/// the `PeerId`'s bytes).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Peer {
    /// A peer identified by its ed25519 key.
    Key(PublicKey),
    /// A peer with another kind of identity: its transport id bytes, opaque to the engine.
    Foreign(Vec<u8>),
}

impl Peer {
    /// The peer's signing key, if it has one.
    pub fn key(&self) -> Option<PublicKey> {
        match self {
            Peer::Key(key) => Some(*key),
            Peer::Foreign(_) => None,
        }
    }
}

impl From<PublicKey> for Peer {
    fn from(key: PublicKey) -> Self {
        Peer::Key(key)
    }
}
