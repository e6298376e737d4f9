//! Signature checks as jobs the driver runs off its event loop.
//!
//! Every signature the engine relies on (gossip and Bracha envelopes, envelopes from sync,
//! delivery certificates, equivocation evidence) is checked by a [`Job`]: the engine emits it
//! as [`crate::Output::Verify`], the driver calls [`Job::run`] on a worker thread (or, in the
//! simulator, inline) and hands the [`Done`] back to [`crate::Engine::handle_verified`]. A
//! job carries its own context, so the engine keeps no table of jobs in flight beyond two
//! counters (one per [`Line`]), which bound the work queued.

use byzgossip_bracha::{Certificate, CertificateError, Evidence, EvidenceError, VerifiedCertificate};
use byzgossip_crypto::{Committee, NetworkId, PublicKey, VerifiedEnvelope, VerifyError};
use byzgossip_reputation::Pending;
use std::sync::Arc;

/// Which waiting line a job belongs to. Committee traffic (Bracha, evidence, certificates) is
/// served first, so a gossip flood can delay gossip but never starve agreement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Line {
    /// Bracha messages, evidence, certificates.
    Bracha,
    /// Application gossip.
    Gossip,
}

/// Where the thing to verify came from.
#[derive(Clone, Debug)]
pub(crate) enum Origin {
    /// A gossipsub message: its validation token, and when it arrived (ms).
    Gossip { token: u64, received_ms: u64, relay: bool },
    /// An envelope or certificate from a sync response of `from`.
    Sync,
}

/// What a job checks.
#[derive(Clone, Debug)]
pub(crate) enum Work {
    /// An envelope that passed admission's precheck.
    Envelope(Box<Pending>),
    /// A delivery certificate and its value, against the committee.
    Certificate { certificate: Box<Certificate>, value: Vec<u8>, committee: Arc<Committee>, network: NetworkId },
    /// Equivocation evidence, against the committee; `gossip` if this node found it and must
    /// spread it.
    Evidence { evidence: Box<Evidence>, committee: Arc<Committee>, network: NetworkId, gossip: bool },
}

/// One signature check.
#[derive(Clone, Debug)]
pub struct Job {
    pub(crate) line: Line,
    pub(crate) origin: Origin,
    pub(crate) from: Option<PublicKey>,
    pub(crate) work: Work,
}

/// What a job found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// An envelope's signature check.
    Envelope(Result<VerifiedEnvelope, VerifyError>),
    /// A certificate's check.
    Certificate(Result<VerifiedCertificate, CertificateError>),
    /// Evidence: the offender it proves.
    Evidence(Result<PublicKey, EvidenceError>),
}

/// A job with its outcome.
#[derive(Clone, Debug)]
pub struct Done {
    pub(crate) job: Job,
    pub(crate) outcome: Outcome,
}

impl Job {
    /// The waiting line.
    pub fn line(&self) -> Line {
        self.line
    }

    /// Runs the check (pure computation, any thread).
    pub fn run(self) -> Done {
        let outcome = match &self.work {
            Work::Envelope(pending) => Outcome::Envelope(pending.verify()),
            Work::Certificate { certificate, committee, network, .. } => {
                Outcome::Certificate(certificate.as_ref().clone().verify(committee, network))
            }
            Work::Evidence { evidence, committee, network, .. } => Outcome::Evidence(evidence.verify(committee, network)),
        };
        Done { job: self, outcome }
    }

    /// A key naming exactly what this job checks (the whole signed input), for a driver that
    /// verifies each unique input once and shares the outcome (the simulator). Two jobs with
    /// equal keys have equal outcomes.
    pub fn cache_key(&self) -> Vec<u8> {
        use byzgossip_crypto::codec;
        match &self.work {
            Work::Envelope(pending) => {
                let mut key = vec![0u8];
                key.extend_from_slice(&codec::encode_envelope(pending.envelope()));
                key
            }
            Work::Certificate { certificate, .. } => {
                let mut key = vec![1u8];
                key.extend_from_slice(&certificate.encode());
                key
            }
            Work::Evidence { evidence, .. } => {
                let mut key = vec![2u8];
                key.extend_from_slice(&evidence.encode());
                key
            }
        }
    }

    /// This job with an outcome computed elsewhere for an equal [`Job::cache_key`].
    pub fn finish(self, outcome: Outcome) -> Done {
        Done { job: self, outcome }
    }
}

impl Done {
    /// The outcome.
    pub fn outcome(&self) -> &Outcome {
        &self.outcome
    }

    /// The waiting line of the job.
    pub fn line(&self) -> Line {
        self.job.line
    }
}
