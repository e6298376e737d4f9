//! Configuration, its bounds, and the protocol thresholds.

use crate::error::Error;
use crate::message::SEND_BODY_OVERHEAD;
use byzgossip_crypto::codec::MAX_BODY_LEN;

/// Largest committee the machine accepts. Vote state is a few bits and one compact vote
/// record per member per open instance, and `n` origins each hold up to `window` open
/// instances, so memory grows as `n^2 * window`; 1024 members keep that in the tens of MiB
/// at the default window and far above any committee this project runs (n = 64 targets).
pub const MAX_COMMITTEE: usize = 1024;

/// Largest per-origin window. Each origin may hold this many open instances in every node,
/// so the window multiplies the worst-case vote state (see [`Config::memory_bound`]).
pub const MAX_WINDOW: u64 = 4096;

/// Largest value a SEND may carry: what fits in one envelope body after the SEND's own
/// fields (the codec's 1 MiB ceiling).
pub const MAX_VALUE_LEN: usize = MAX_BODY_LEN - SEND_BODY_OVERHEAD;

/// Settings of one Bracha member. Plain fields with [`Default`]; [`Config::validate`] checks
/// the cross-field rules (STYLE.md: raft-rs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Per origin, only instances with `seq` in `[low_watermark, low_watermark + window)`
    /// are held open; messages beyond it are refused with a fault and not stored. This bounds
    /// what one origin (or a member voting on its instances) can make a node hold. 1 to
    /// [`MAX_WINDOW`].
    pub window: u64,
    /// How long a delivered instance's (digest, certificate, value) is kept for sync after
    /// delivery, in the caller's milliseconds. Collected by [`crate::Bracha::tick`].
    pub retention_ms: u64,
    /// Per origin, at most this many delivered instances are retained; older ones are dropped
    /// early (the node persists deliveries, so sync can still serve them from storage). Bounds
    /// memory when an origin delivers faster than `retention_ms` collects.
    pub max_retained_per_origin: usize,
    /// Largest value accepted in a SEND or broadcast (at most [`MAX_VALUE_LEN`]).
    pub max_value_len: usize,
    /// A fetch for a missing value is re-emitted by `tick` after this long, naming the next
    /// candidate member first. At least 1.
    pub fetch_retry_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            window: 32,
            retention_ms: 10 * 60 * 1000,
            max_retained_per_origin: 1024,
            max_value_len: 64 * 1024,
            fetch_retry_ms: 1000,
        }
    }
}

impl Config {
    /// Checks every bound.
    pub fn validate(&self) -> Result<(), Error> {
        if self.window == 0 || self.window > MAX_WINDOW {
            return Err(Error::InvalidConfig("window must be 1 to MAX_WINDOW"));
        }
        if self.max_value_len > MAX_VALUE_LEN {
            return Err(Error::InvalidConfig("max_value_len is over MAX_VALUE_LEN"));
        }
        if self.fetch_retry_ms == 0 {
            return Err(Error::InvalidConfig("fetch_retry_ms must be at least 1"));
        }
        Ok(())
    }

    /// An upper bound, in bytes, of the protocol state one member holds for a committee of
    /// `n` (as counted by [`crate::Stats::bytes`]), whatever peers send. Per origin: `window`
    /// instances open or delivered (an open one holds at most three values and fixed vote
    /// state: one record per member for ECHO and READY, at most `2n + 2` digest tallies),
    /// plus `max_retained_per_origin` delivered ones below the window (value and a
    /// certificate of 2f+1 <= n READYs). Map and allocator overheads are not counted.
    pub fn memory_bound(&self, n: usize) -> usize {
        let value = self.max_value_len + 56;
        let open = crate::machine::open_fixed_bytes(n) + 3 * value;
        let retained =
            crate::machine::retained_fixed_bytes() + self.max_value_len + n * crate::machine::retained_ready_bytes();
        n * (self.window as usize * open.max(retained) + self.max_retained_per_origin * retained)
    }
}

/// The three thresholds of Bracha's protocol for a committee of `n` with at most `f`
/// Byzantine members (DESIGN.md section 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    /// Committee size.
    pub n: usize,
    /// Fault bound.
    pub f: usize,
    /// READY(d) after this many distinct ECHO(d): `floor((n + f) / 2) + 1`. Two such quorums
    /// share more than f members, so at least one honest member echoed both digests, which
    /// an honest member never does: no two honest members READY different digests from echoes.
    pub ready_on_echo: usize,
    /// READY(d) after this many distinct READY(d): `f + 1`, so at least one honest member
    /// readied d (amplification, which gives totality).
    pub ready_on_ready: usize,
    /// Deliver d after this many distinct READY(d): `2f + 1`, so at least f + 1 honest
    /// members readied d and every honest member will reach f + 1 READY(d) and ready too.
    pub deliver: usize,
}

impl Thresholds {
    /// The thresholds, refusing `n = 0`, `n > MAX_COMMITTEE` and `n < 3f + 1`.
    pub fn new(n: usize, f: usize) -> Result<Thresholds, Error> {
        if n == 0 || n > MAX_COMMITTEE {
            return Err(Error::CommitteeSize { n, max: MAX_COMMITTEE });
        }
        if n < 3 * f + 1 {
            return Err(Error::TooManyFaults { n, f });
        }
        Ok(Thresholds { n, f, ready_on_echo: (n + f) / 2 + 1, ready_on_ready: f + 1, deliver: 2 * f + 1 })
    }

    /// The seed design's READY-on-echo rule, `floor(n/2) + 1` (a bare majority), which breaks
    /// agreement. Only the simulator uses it, to show that its checks catch the bug.
    #[cfg(feature = "sim")]
    #[doc(hidden)]
    pub fn seed_majority(n: usize, f: usize) -> Result<Thresholds, Error> {
        let mut t = Self::new(n, f)?;
        t.ready_on_echo = n / 2 + 1;
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid_and_bounds_are_enforced() {
        Config::default().validate().expect("default is valid");
        for bad in [
            Config { window: 0, ..Config::default() },
            Config { window: MAX_WINDOW + 1, ..Config::default() },
            Config { max_value_len: MAX_VALUE_LEN + 1, ..Config::default() },
            Config { fetch_retry_ms: 0, ..Config::default() },
        ] {
            assert!(matches!(bad.validate(), Err(Error::InvalidConfig(_))), "{bad:?}");
        }
        Config { window: MAX_WINDOW, max_value_len: MAX_VALUE_LEN, ..Config::default() }
            .validate()
            .expect("the bounds themselves are allowed");
    }

    #[test]
    fn committee_size_bound() {
        assert!(Thresholds::new(MAX_COMMITTEE, 0).is_ok());
        assert!(matches!(Thresholds::new(MAX_COMMITTEE + 1, 0), Err(Error::CommitteeSize { .. })));
        assert!(matches!(Thresholds::new(0, 0), Err(Error::CommitteeSize { .. })));
    }
}
