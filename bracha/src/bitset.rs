//! A fixed-size set of committee indices with its population count.

/// One bit per committee member; the count is kept so thresholds cost nothing to check.
#[derive(Clone, Debug)]
pub(crate) struct BitSet {
    words: Box<[u64]>,
    count: u32,
}

impl BitSet {
    /// An empty set for members `0..n`.
    pub(crate) fn new(n: usize) -> Self {
        Self { words: vec![0; n.div_ceil(64)].into_boxed_slice(), count: 0 }
    }

    /// Adds `i`; false if it was there already.
    pub(crate) fn insert(&mut self, i: usize) -> bool {
        let (word, bit) = (i / 64, 1u64 << (i % 64));
        if self.words[word] & bit != 0 {
            return false;
        }
        self.words[word] |= bit;
        self.count += 1;
        true
    }

    /// Whether `i` is in the set.
    pub(crate) fn contains(&self, i: usize) -> bool {
        self.words.get(i / 64).is_some_and(|w| w & (1u64 << (i % 64)) != 0)
    }

    /// Number of members in the set.
    pub(crate) fn len(&self) -> usize {
        self.count as usize
    }

    /// Members in increasing order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.words.iter().enumerate().flat_map(|(w, &word)| {
            (0..64).filter(move |b| word & (1u64 << b) != 0).map(move |b| w * 64 + b)
        })
    }

    /// Heap bytes held.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.words.len() * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_distinct_members_only() {
        let mut s = BitSet::new(130);
        assert!(s.insert(0));
        assert!(s.insert(129));
        assert!(!s.insert(129));
        assert!(s.insert(64));
        assert_eq!(s.len(), 3);
        assert!(s.contains(64) && !s.contains(63) && !s.contains(1000));
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![0, 64, 129]);
    }
}
