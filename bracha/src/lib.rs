//! Bracha reliable broadcast for byzgossip: a pure, sans-IO state machine that makes every
//! honest committee member deliver the same value for each instance `(origin, seq)`, or none,
//! with up to f Byzantine members among n >= 3f + 1 (DESIGN.md section 5).
//!
//! # What it does
//! [`Bracha`] is one member. [`Bracha::broadcast`] signs a SEND; [`Bracha::handle`] takes
//! SEND/ECHO/READY envelopes from the network; [`Bracha::tick`] collects old state and
//! re-requests missing values. Each returns a `#[must_use]` [`Step`]: own signed envelopes to
//! broadcast, [`Fetch`]es for values it lacks, [`Delivery`]s (each with a [`Certificate`] of
//! 2f+1 signed READYs), [`Evidence`] of equivocation, and [`Fault`]s of members.
//! Thresholds: READY(d) on `floor((n+f)/2)+1` distinct ECHO(d) or `f+1` distinct READY(d),
//! once per instance; deliver on `2f+1` distinct READY(d) once the value is held
//! ([`Thresholds`]). Votes are counted per distinct member in bit sets by committee index.
//!
//! # IO contract
//! The caller does all networking, persistence and timekeeping. It passes in only
//! **verified** envelopes ([`byzgossip_crypto::VerifiedEnvelope`]: signature and network
//! checked, admitted by reputation), `now_ms` as an argument, and acts on every [`Step`]:
//! persist own ECHO/READY envelopes before sending them (replayed after a restart with
//! [`Bracha::restore_own_vote`]), persist the next own seq before signing
//! ([`Bracha::broadcast_at`]), gossip outgoing envelopes and evidence, fetch values by sync
//! ([`Bracha::supply_value`], [`Bracha::handle_certificate`]), and hand faults to reputation.
//! No clock, no threads, no global RNG, no IO.
//!
//! A peer's misbehaviour is never an `Err`: it is a [`Fault`] naming the signer of the
//! offending envelope (so a forwarder can never get an honest key blamed). [`Error`] is only
//! local misuse.
//!
//! # Conventions
//! See [`message`]: the [`InstanceId`] is in every body, `header.seq = instance.seq`,
//! `header.origin` is the signer, ECHO and READY carry `Digest::of(value)`.
//!
//! # Bounds
//! - Per origin, only seqs in `[low_watermark, low_watermark + window)` are held
//!   ([`Config::window`], at most [`MAX_WINDOW`]); messages beyond are refused with a
//!   [`FaultKind::BeyondWindow`] fault and not stored; below it they are ignored.
//! - Per open instance the vote state is fixed size: one record per member for ECHO and for
//!   READY, at most `2n + 2` digest tallies, at most three values of at most
//!   [`Config::max_value_len`] ([`MAX_VALUE_LEN`]).
//! - Delivered instances shrink to (digest, certificate, value) and are dropped after
//!   [`Config::retention_ms`], at most [`Config::max_retained_per_origin`] per origin.
//! - Committees up to [`MAX_COMMITTEE`]. [`Config::memory_bound`] gives the total.

mod bitset;
mod certificate;
mod config;
mod error;
mod evidence;
mod machine;
pub mod message;
#[cfg(feature = "sim")]
#[doc(hidden)]
pub mod sim;
mod step;

pub use certificate::{Certificate, CertificateError, VerifiedCertificate};
pub use config::{Config, MAX_COMMITTEE, MAX_VALUE_LEN, MAX_WINDOW, Thresholds};
pub use error::Error;
pub use evidence::{Evidence, EvidenceError};
pub use machine::{Bracha, Retained, Stats};
pub use message::{InstanceId, Message, MessageError};
pub use step::{Delivery, Fault, FaultKind, Fetch, Step};
