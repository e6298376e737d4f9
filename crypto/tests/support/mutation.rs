//! Byte-level mutations of valid encodings, shared by the decoder property tests of the
//! crypto, bracha and node crates (each includes this file with `#[path]`).
#![allow(dead_code)]

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::strategy::ValueTree;

/// Values written over length prefixes and integer fields: sizes around the 1 MiB decode
/// limit and far beyond it.
pub const HUGE: [u64; 12] = [
    u64::MAX,
    1 << 63,
    1 << 62,
    1 << 40,
    1 << 32,
    u32::MAX as u64,
    1 << 31,
    (1 << 20) + 1,
    1 << 20,
    (1 << 20) - 1,
    (1 << 20) - 190,
    65_536,
];

/// One edit. Positions are [`Index`]es, scaled to the length at the time of the edit.
#[derive(Clone, Debug)]
pub enum Edit {
    /// Flip one bit.
    FlipBit(Index, u8),
    /// Overwrite one byte.
    SetByte(Index, u8),
    /// Cut the input at a position.
    Truncate(Index),
    /// Insert a few bytes.
    Insert(Index, Vec<u8>),
    /// Remove up to this many bytes.
    Remove(Index, usize),
    /// Repeat a range right after itself (a duplicated field).
    Duplicate(Index, usize),
    /// Replace a range with a range of the donor (another valid encoding).
    Splice(Index, Index, usize),
    /// Write a big-endian integer (8 bytes, or 4 when `narrow`) over a position that
    /// currently holds a value no larger than the input, i.e. a likely length prefix.
    Inflate(Index, bool, u64),
}

fn value() -> impl Strategy<Value = u64> {
    prop_oneof![4 => select(HUGE.to_vec()), 1 => any::<u64>(), 1 => 0u64..4096]
}

/// One edit.
pub fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        3 => (any::<Index>(), 0u8..8).prop_map(|(i, b)| Edit::FlipBit(i, b)),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(i, v)| Edit::SetByte(i, v)),
        2 => any::<Index>().prop_map(Edit::Truncate),
        1 => (any::<Index>(), vec(any::<u8>(), 1..16)).prop_map(|(i, b)| Edit::Insert(i, b)),
        1 => (any::<Index>(), 1usize..64).prop_map(|(i, n)| Edit::Remove(i, n)),
        1 => (any::<Index>(), 1usize..128).prop_map(|(i, n)| Edit::Duplicate(i, n)),
        1 => (any::<Index>(), any::<Index>(), 1usize..256).prop_map(|(i, j, n)| Edit::Splice(i, j, n)),
        4 => (any::<Index>(), any::<bool>(), value()).prop_map(|(i, narrow, v)| Edit::Inflate(i, narrow, v)),
    ]
}

/// One to four edits.
pub fn edits() -> impl Strategy<Value = Vec<Edit>> {
    vec(edit(), 1..=4)
}

/// `input` with `edits` applied in order; `donor` feeds splices.
pub fn apply(input: &[u8], edits: &[Edit], donor: &[u8]) -> Vec<u8> {
    let mut bytes = input.to_vec();
    for edit in edits {
        apply_one(&mut bytes, edit, donor);
    }
    bytes
}

fn apply_one(bytes: &mut Vec<u8>, edit: &Edit, donor: &[u8]) {
    let len = bytes.len();
    match edit {
        Edit::FlipBit(i, bit) if len > 0 => bytes[i.index(len)] ^= 1 << bit,
        Edit::SetByte(i, v) if len > 0 => bytes[i.index(len)] = *v,
        Edit::Truncate(i) => bytes.truncate(i.index(len + 1)),
        Edit::Insert(i, more) => {
            let at = i.index(len + 1);
            bytes.splice(at..at, more.iter().copied());
        }
        Edit::Remove(i, n) if len > 0 => {
            let at = i.index(len);
            bytes.drain(at..(at + n).min(len));
        }
        Edit::Duplicate(i, n) if len > 0 => {
            let at = i.index(len);
            let range = bytes[at..(at + n).min(len)].to_vec();
            let end = at + range.len();
            bytes.splice(end..end, range);
        }
        Edit::Splice(i, j, n) if !donor.is_empty() => {
            let at = i.index(len + 1);
            let from = j.index(donor.len());
            let piece = &donor[from..(from + n).min(donor.len())];
            let end = (at + piece.len()).min(len);
            bytes.splice(at..end, piece.iter().copied());
        }
        Edit::Inflate(i, narrow, v) => {
            let width = if *narrow { 4 } else { 8 };
            if len < width {
                return;
            }
            let at = pick_length_like(bytes, width, i);
            if *narrow {
                bytes[at..at + 4].copy_from_slice(&(*v as u32).to_be_bytes());
            } else {
                bytes[at..at + 8].copy_from_slice(&v.to_be_bytes());
            }
        }
        _ => {}
    }
}

/// A position whose big-endian integer of `width` bytes is at most the input's length (a
/// length prefix or a count), or any position when there is none.
fn pick_length_like(bytes: &[u8], width: usize, i: &Index) -> usize {
    let read = |at: usize| bytes[at..at + width].iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    let candidates: Vec<usize> =
        (0..=bytes.len() - width).filter(|at| read(*at) <= bytes.len() as u64).collect();
    if candidates.is_empty() { i.index(bytes.len() - width + 1) } else { candidates[i.index(candidates.len())] }
}

/// The values [`inflated_everywhere`] writes: one of each kind in [`HUGE`] (all ones, past
/// `u32`, the `u32` maximum, the 1 MiB limit, just under it, and a size that fits).
pub const EVERYWHERE: [u64; 6] = [u64::MAX, 1 << 62, u32::MAX as u64, 1 << 20, (1 << 20) - 190, 65_536];

/// Every input made by writing each [`EVERYWHERE`] value (8 and 4 bytes wide) at every offset.
pub fn inflated_everywhere(bytes: &[u8]) -> impl Iterator<Item = Vec<u8>> + '_ {
    (0..bytes.len()).flat_map(move |at| {
        EVERYWHERE.iter().flat_map(move |v| {
            let mut wide = bytes.to_vec();
            let n = 8.min(bytes.len() - at);
            wide[at..at + n].copy_from_slice(&v.to_be_bytes()[..n]);
            let mut narrow = bytes.to_vec();
            let n = 4.min(bytes.len() - at);
            narrow[at..at + n].copy_from_slice(&(*v as u32).to_be_bytes()[..n]);
            [wide, narrow]
        })
    })
}

/// `count` values of `strategy` from a fixed seed (for corpora built outside `proptest!`).
pub fn generate<S: Strategy>(strategy: &S, count: usize) -> Vec<S::Value> {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    (0..count).map(|_| strategy.new_tree(&mut runner).expect("value").current()).collect()
}

/// Values for [`inflated_pairs`]: what a forger would claim for an outer count (as many as
/// possible) and an inner length (just under the 1 MiB limit) together.
pub const PAIR_VALUES: [u64; 2] = [u64::MAX, (1 << 20) - 256];

/// Every input made by writing two [`PAIR_VALUES`] at two length-like positions (8-byte
/// big-endian integers no larger than the input, such as a sequence's count and an inner
/// byte string's length): the combination that makes a decoder pre-size a container and a
/// byte buffer at once.
pub fn inflated_pairs(bytes: &[u8]) -> Vec<Vec<u8>> {
    let read = |at: usize| bytes[at..at + 8].iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    let positions: Vec<usize> = (0..bytes.len().saturating_sub(7))
        .filter(|at| read(*at) <= bytes.len() as u64)
        .collect();
    let mut out = Vec::new();
    for (k, &i) in positions.iter().enumerate() {
        for &j in &positions[k + 1..] {
            if j < i + 8 {
                continue;
            }
            for a in PAIR_VALUES {
                for b in PAIR_VALUES {
                    let mut edited = bytes.to_vec();
                    edited[i..i + 8].copy_from_slice(&a.to_be_bytes());
                    edited[j..j + 8].copy_from_slice(&b.to_be_bytes());
                    out.push(edited);
                }
            }
        }
    }
    out
}
