//! Recovering a member's next broadcast seq after its store was lost.
//!
//! A member that starts with a fresh store (no own message, no reserved seq, no delivery of
//! its own instances) cannot tell a brand-new network from a lost data directory. If it lost
//! its data and broadcast again from seq 0, it would sign a second SEND for instances the
//! network already delivered (its broadcasts are ignored, or, for an instance still open at a
//! peer, it is convicted of equivocation and banned for the epoch). So while
//! [`SeqRecovery`] waits, [`crate::Engine::broadcast`] answers
//! [`crate::EngineError::RecoveringSeq`] and the engine asks each connected committee member
//! for the highest delivered instance of its own ([`crate::SyncRequest::Latest`]). An answer
//! counts only with a delivery certificate, verified as a job like every other signature; the
//! engine then takes the highest certified own seq + 1 (and moves its own window up to it).
//! A peer can lie only by omission, which is why the engine asks several.
//!
//! When the wait ends:
//! - answers from `n - 1 - f` other members arrived (the most that can be counted on when f
//!   members may stay silent), every certificate among them was checked, and the own
//!   instances up to the highest certified one are delivered here (sync fills the window
//!   from `seq + 1 - window`); or
//! - the timeout ([`crate::EngineConfig::seq_recovery_timeout_ms`]) passed since start: the
//!   engine starts from what it knows.
//!
//! Who waits at all: only a member of a committee of two or more, with a fresh store, a
//! timeout above 0 and bootstrap peers configured. A node started without bootstrap peers has
//! nobody to ask when it starts (the first node of a new network, or a node that others dial)
//! and starts from its store at once; so does a node with the timeout at 0. A brand-new
//! committee therefore waits only for its members' first answers ("nothing of yours
//! delivered"), one round trip after they connect, and never when started alone.
//!
//! Restarting after a recovery must not undo it. The store of a recovered node has no SEND
//! for the seqs of its former life, and the restart path fills a reserved seq without a
//! SEND with an empty value (for data dirs of older versions). So (1) the engine records a
//! re-signed SEND of each own instance it delivers from a certificate and did not broadcast
//! in this life (same value, same digest: never a conflicting SEND); (2) on restart the own
//! window starts at least at `highest own SEND + 1 - window` (an honest origin signed that
//! seq only while its window held it); (3) only seqs from `next - window` up are filled
//! (a seq reserved without a SEND is always that recent).
//!
//! Known limit: an instance whose SEND was published but that no peer had delivered when it
//! answered is not counted (peers hold it open, not delivered); a recovered node that takes
//! that seq again is convicted of equivocation by the peers that hold the first SEND. An
//! honest node loses its data dir rarely, and such an instance is usually delivered within
//! the round trip the peers take to answer.

use crate::peer::Peer;
use byzgossip_crypto::PublicKey;
use std::collections::BTreeSet;

/// How long a fresh member waits for its peers by default (ms): enough to dial the bootstrap
/// peers and hear back on a LAN or across a continent, short enough that a brand-new node
/// whose peers are all down starts within seconds.
pub const DEFAULT_SEQ_RECOVERY_TIMEOUT_MS: u64 = 10_000;

/// The state of the recovery of this member's next broadcast seq (module docs).
#[derive(Debug)]
pub(crate) enum SeqRecovery {
    /// Not waiting (the store was not fresh, the wait ended, or it was never needed).
    Done,
    /// Waiting for peers' answers.
    Waiting {
        /// When the wait ends whatever was heard (ms).
        deadline_ms: u64,
        /// Answers needed (`n - 1 - f`).
        needed: usize,
        /// Members asked whose answer is outstanding or arrived.
        asked: BTreeSet<PublicKey>,
        /// Members that answered.
        answered: BTreeSet<PublicKey>,
        /// Own seqs whose certificate (from an answer) is being verified.
        checking: BTreeSet<u64>,
    },
}

/// How a wait ended, for metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Settled {
    /// Enough peers answered.
    Answered,
    /// The timeout passed.
    TimedOut,
}

impl Settled {
    /// The metric label (a `Metric::Sync` kind).
    pub(crate) fn label(self) -> &'static str {
        match self {
            Settled::Answered => "seq_recovered",
            Settled::TimedOut => "seq_recovery_timed_out",
        }
    }
}

impl SeqRecovery {
    /// Starts waiting until `now_ms + timeout_ms`, for `needed` answers.
    pub(crate) fn wait(now_ms: u64, timeout_ms: u64, needed: usize) -> Self {
        SeqRecovery::Waiting {
            deadline_ms: now_ms.saturating_add(timeout_ms),
            needed,
            asked: BTreeSet::new(),
            answered: BTreeSet::new(),
            checking: BTreeSet::new(),
        }
    }

    /// Whether broadcasts must wait.
    pub(crate) fn waiting(&self) -> bool {
        matches!(self, SeqRecovery::Waiting { .. })
    }

    /// Connected members not asked yet, to ask now (marked as asked).
    pub(crate) fn ask_new<'a>(&mut self, connected: impl Iterator<Item = &'a Peer>, members: &[PublicKey], me: &PublicKey) -> Vec<PublicKey> {
        let SeqRecovery::Waiting { asked, .. } = self else { return Vec::new() };
        let mut out = Vec::new();
        for peer in connected {
            if let Some(key) = peer.key()
                && key != *me
                && members.contains(&key)
                && asked.insert(key)
            {
                out.push(key);
            }
        }
        out
    }

    /// `from`'s request failed (or its answer could not be checked now): ask it again later.
    pub(crate) fn failed(&mut self, from: &PublicKey) {
        if let SeqRecovery::Waiting { asked, answered, .. } = self
            && !answered.contains(from)
        {
            asked.remove(from);
        }
    }

    /// `from` answered; `checking` is the own seq of the certificate it sent, if one is
    /// being verified.
    pub(crate) fn answered(&mut self, from: PublicKey, checking_seq: Option<u64>) {
        if let SeqRecovery::Waiting { answered, checking, .. } = self {
            answered.insert(from);
            if let Some(seq) = checking_seq {
                checking.insert(seq);
            }
        }
    }

    /// The certificate of own seq `seq` was checked (valid or not).
    pub(crate) fn checked(&mut self, seq: u64) {
        if let SeqRecovery::Waiting { checking, .. } = self {
            checking.remove(&seq);
        }
    }

    /// Ends the wait if enough answers were checked and the own instances they certified
    /// are delivered here (`caught_up`), or the deadline passed.
    pub(crate) fn settle(&mut self, now_ms: u64, caught_up: bool) -> Option<Settled> {
        let SeqRecovery::Waiting { deadline_ms, needed, answered, checking, .. } = self else { return None };
        let settled = if answered.len() >= *needed && checking.is_empty() && caught_up {
            Settled::Answered
        } else if now_ms >= *deadline_ms {
            Settled::TimedOut
        } else {
            return None;
        };
        *self = SeqRecovery::Done;
        Some(settled)
    }

    /// When the wait ends at the latest (for `poll_timeout`).
    pub(crate) fn deadline(&self) -> Option<u64> {
        match self {
            SeqRecovery::Waiting { deadline_ms, .. } => Some(*deadline_ms),
            SeqRecovery::Done => None,
        }
    }
}
