//! Delivery certificates: 2f+1 signed READYs from distinct members for one (instance, digest).

use crate::config::Thresholds;
use crate::message::{InstanceId, Message};
use byzgossip_crypto::{Committee, DecodeError, Digest, Envelope, NetworkId, codec, verify_batch};
use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Serialize, Deserialize)]
struct CertificateBody {
    instance: InstanceId,
    digest: Digest,
    readys: Vec<serde_bytes::ByteBuf>,
}

/// Proof that `digest` was delivered in `instance`: READY envelopes from at least 2f+1
/// distinct members. At least f+1 of them are honest, so every honest member delivers the
/// same digest; a lagging member can deliver on it alone
/// ([`crate::Bracha::handle_certificate`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Certificate {
    /// The instance.
    pub instance: InstanceId,
    /// The delivered value's digest.
    pub digest: Digest,
    /// Signed READY(instance, digest) envelopes, one per member.
    pub readys: Vec<Envelope>,
}

/// A certificate whose READYs were all checked; only [`Certificate::verify`] makes one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedCertificate(Certificate);

impl std::ops::Deref for VerifiedCertificate {
    type Target = Certificate;
    fn deref(&self) -> &Certificate {
        &self.0
    }
}

impl VerifiedCertificate {
    /// The certificate.
    pub fn into_inner(self) -> Certificate {
        self.0
    }

    /// Skips verification: only the simulator's unsigned mode and this crate use it.
    #[cfg(feature = "sim")]
    #[doc(hidden)]
    pub fn assume_valid(certificate: Certificate) -> Self {
        Self(certificate)
    }
}

/// Why a certificate does not prove delivery.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum CertificateError {
    /// the instance's origin is not a committee member
    #[error("instance origin is not a committee member")]
    UnknownOrigin,
    /// fewer than 2f+1 READYs
    #[error("{got} READYs, {needed} needed")]
    TooFewReadys {
        /// READYs present
        got: usize,
        /// 2f+1
        needed: usize,
    },
    /// more READYs than members
    #[error("{0} READYs, more than the committee has members")]
    TooManyReadys(usize),
    /// READY number `index` is not a READY for this instance and digest
    #[error("READY {index} is not a READY for this instance and digest")]
    WrongVote {
        /// position in `readys`
        index: usize,
    },
    /// READY number `index` is signed by a non-member
    #[error("READY {index} is not signed by a committee member")]
    NotAMember {
        /// position in `readys`
        index: usize,
    },
    /// READY number `index` is from a member already counted
    #[error("READY {index} repeats a member")]
    DuplicateSigner {
        /// position in `readys`
        index: usize,
    },
    /// READY number `index` does not verify (or is for another network)
    #[error("READY {index} does not verify")]
    BadSignature {
        /// position in `readys`
        index: usize,
    },
}

impl Certificate {
    /// Wire form for sync: instance, digest, and each READY framed with
    /// `codec::encode_envelope`.
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(&CertificateBody {
            instance: self.instance,
            digest: self.digest,
            readys: self.readys.iter().map(|r| serde_bytes::ByteBuf::from(codec::encode_envelope(r))).collect(),
        })
    }

    /// Decodes [`Certificate::encode`] output, refusing more than `max_len` bytes. Does not
    /// verify (call [`Certificate::verify`]).
    pub fn decode(bytes: &[u8], max_len: usize) -> Result<Certificate, DecodeError> {
        let body: CertificateBody = codec::decode(bytes, max_len)?;
        let readys = body.readys.iter().map(|r| codec::decode_envelope(r, max_len)).collect::<Result<_, _>>()?;
        Ok(Certificate { instance: body.instance, digest: body.digest, readys })
    }

    /// Checks, cheapest first: the origin is a member, there are 2f+1 to n READYs, each is a
    /// well-formed READY(instance, digest) (with `header.seq = instance.seq`) from a distinct
    /// member, and all signatures verify for `network` (batch verification, which accepts
    /// exactly what `verify_strict` accepts).
    pub fn verify(self, committee: &Committee, network: &NetworkId) -> Result<VerifiedCertificate, CertificateError> {
        if !committee.contains(&self.instance.origin) {
            return Err(CertificateError::UnknownOrigin);
        }
        let n = committee.n();
        let needed = Thresholds::new(n, committee.f()).map(|t| t.deliver).unwrap_or(2 * committee.f() + 1);
        if self.readys.len() < needed {
            return Err(CertificateError::TooFewReadys { got: self.readys.len(), needed });
        }
        if self.readys.len() > n {
            return Err(CertificateError::TooManyReadys(self.readys.len()));
        }
        let mut seen = vec![false; n];
        for (index, ready) in self.readys.iter().enumerate() {
            let member = committee.index_of(&ready.origin()).ok_or(CertificateError::NotAMember { index })?;
            if std::mem::replace(&mut seen[member], true) {
                return Err(CertificateError::DuplicateSigner { index });
            }
            match Message::from_envelope(ready, 0) {
                Ok(Message::Ready { instance, digest }) if instance == self.instance && digest == self.digest => {}
                _ => return Err(CertificateError::WrongVote { index }),
            }
        }
        let mut keys = committee.key_cache(0);
        let results = verify_batch(self.readys.clone(), network, &mut keys);
        if let Some(index) = results.iter().position(Result::is_err) {
            return Err(CertificateError::BadSignature { index });
        }
        Ok(VerifiedCertificate(self))
    }
}
