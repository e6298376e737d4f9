//! The byzgossip node: libp2p networking, admission, Bracha, sync, persistence and APIs.

pub mod identity;
pub mod storage;
pub mod testnet_keys;
