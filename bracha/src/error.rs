//! Local misuse. A peer's misbehaviour is never an [`Error`]: it is a [`crate::Fault`] in the
//! [`crate::Step`] (STYLE.md: hbbft).

use byzgossip_crypto::{PublicKey, SealError};
use thiserror::Error;

/// Something the caller did wrong (bad configuration, broadcasting outside its window, ...).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum Error {
    /// a configuration field is out of its bounds
    #[error("invalid config: {0}")]
    InvalidConfig(&'static str),
    /// the committee is empty or larger than [`crate::MAX_COMMITTEE`]
    #[error("committee of {n} members is not in 1..={max}")]
    CommitteeSize {
        /// committee size
        n: usize,
        /// the bound
        max: usize,
    },
    /// n < 3f + 1
    #[error("committee of {n} cannot tolerate f = {f} faults (needs n >= 3f + 1)")]
    TooManyFaults {
        /// committee size
        n: usize,
        /// fault bound
        f: usize,
    },
    /// this node's key is not in the committee
    #[error("own key {0} is not a committee member")]
    NotAMember(PublicKey),
    /// a key named as an origin is not a committee member
    #[error("{0} is not a committee member")]
    UnknownOrigin(PublicKey),
    /// the value is longer than `Config::max_value_len`
    #[error("value of {len} bytes is over the limit of {limit}")]
    ValueTooLarge {
        /// value length
        len: usize,
        /// the limit
        limit: usize,
    },
    /// the sequence number is outside the origin's open window `[low, low + window)`
    #[error("seq {seq} is outside the open window [{low}, {end})")]
    OutsideWindow {
        /// the seq asked for
        seq: u64,
        /// the low watermark
        low: u64,
        /// the first seq beyond the window
        end: u64,
    },
    /// this node already broadcast (or passed) that sequence number
    #[error("seq {0} was already used")]
    SeqUsed(u64),
    /// an envelope given to `restore_own_vote` is not a Bracha message signed by this node
    #[error("not an own Bracha message: {0}")]
    NotOwnMessage(&'static str),
    /// signing failed (the body is too large for an envelope)
    #[error(transparent)]
    Seal(#[from] SealError),
}
