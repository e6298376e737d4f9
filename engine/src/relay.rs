//! Which members forward a message that reached them straight from its signer.
//!
//! Every member publishes its own messages to every peer at once (`flood_publish`), and
//! committee members keep a connection to each other, so almost every copy gossipsub would
//! forward from the signer's direct recipients is a duplicate: at n = 16 we counted about 89
//! transmissions per message, 97% of them duplicates, and the send path (Noise, Yamux, a
//! syscall and a hash per copy) cost more CPU than the signature checks. So a message that
//! arrives straight from its signer is forwarded only by the signer's next
//! [`DIRECT_RELAYS`] members in committee order (a repair path for links that are down);
//! everyone else answers gossipsub `Ignore` after processing it. Messages that arrive
//! through a relay are forwarded as usual, and sync covers what relays miss.

/// How many committee members forward a message that reached them straight from its signer.
pub const DIRECT_RELAYS: usize = 2;

/// Whether member `me` forwards a message it received straight from member `signer` in a
/// committee of `n`: it is one of the [`DIRECT_RELAYS`] members after `signer`, cyclically.
/// Indices outside the committee relay as usual.
pub fn relays_direct(n: usize, signer: usize, me: usize) -> bool {
    if signer >= n || me >= n {
        return true;
    }
    let distance = (me + n - signer) % n;
    (1..=DIRECT_RELAYS).contains(&distance)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each signer's direct messages are relayed by exactly `DIRECT_RELAYS` other members
    /// (all of them in smaller committees), never by the signer, and relay duty is spread
    /// evenly: every member relays for the same number of signers.
    #[test]
    fn direct_relays_are_the_next_members() {
        for n in 1..=64usize {
            let mut duty = vec![0usize; n];
            for signer in 0..n {
                let relays: Vec<usize> = (0..n).filter(|&me| relays_direct(n, signer, me)).collect();
                assert_eq!(relays.len(), DIRECT_RELAYS.min(n - 1), "n = {n}, signer = {signer}");
                assert!(!relays.contains(&signer));
                for me in relays {
                    duty[me] += 1;
                }
            }
            assert!(duty.iter().all(|&d| d == DIRECT_RELAYS.min(n - 1)), "n = {n}: {duty:?}");
        }
        assert!(relays_direct(4, 9, 1), "a non-member signer's messages are relayed as usual");
    }
}
