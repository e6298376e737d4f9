//! The genesis file and the committee it defines (DESIGN.md section 2).
//!
//! The [`NetworkId`] is SHA-256 over a fixed, length-prefixed encoding of what defines the
//! network's trust: its name, the policy, f and the ordered member keys. Bootstrap addresses
//! are deliberately left out: they are operational, and changing them must not fork the
//! network. The file itself is TOML, so whitespace and comments never change the id.

use crate::batch::{KeyCache, ParsedKey};
use crate::digest::{NetworkId, sha256_parts};
use crate::error::GenesisError;
use crate::keys::PublicKey;
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// Who may publish plain gossip. Bracha is committee-only whatever this says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum GossipPolicy {
    /// Only committee members' gossip is admitted.
    #[default]
    Committee,
    /// Any valid key may publish gossip (subject to reputation and rate limits).
    Open,
}

/// The genesis as written in the file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    /// Human name of the network (1 to 64 characters).
    pub name: String,
    /// Fault bound; `floor((n-1)/3)` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub f: Option<usize>,
    /// Gossip admission policy.
    #[serde(default)]
    pub policy: GossipPolicy,
    /// Committee public keys in order: a member's index is its position.
    pub members: Vec<PublicKey>,
    /// libp2p multiaddrs to dial at start (not part of the network id).
    #[serde(default)]
    pub bootstrap: Vec<String>,
}

impl Genesis {
    /// Parses TOML text and checks it (`path` is only for error messages).
    pub fn from_toml(text: &str, path: &Path) -> Result<Genesis, GenesisError> {
        let genesis: Genesis = toml::from_str(text)
            .map_err(|e| GenesisError::Parse { path: path.to_owned(), reason: e.message().to_owned() })?;
        genesis.committee()?;
        Ok(genesis)
    }

    /// Reads and checks a genesis file.
    pub fn load(path: &Path) -> Result<Genesis, GenesisError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| GenesisError::Io { path: path.to_owned(), source })?;
        Self::from_toml(&text, path)
    }

    /// TOML text of this genesis.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// Writes the genesis file.
    pub fn save(&self, path: &Path) -> Result<(), GenesisError> {
        std::fs::write(path, self.to_toml()).map_err(|source| GenesisError::Io { path: path.to_owned(), source })
    }

    /// The network id (module docs).
    pub fn network_id(&self) -> NetworkId {
        let name = self.name.as_bytes();
        let policy = [match self.policy {
            GossipPolicy::Committee => 0u8,
            GossipPolicy::Open => 1u8,
        }];
        let f = (self.resolved_f() as u64).to_be_bytes();
        let n = (self.members.len() as u64).to_be_bytes();
        let name_len = (name.len() as u64).to_be_bytes();
        let mut parts: Vec<&[u8]> = vec![b"byzgossip/v1/genesis", &name_len, name, &policy, &f, &n];
        parts.extend(self.members.iter().map(|m| m.as_bytes().as_slice()));
        NetworkId(sha256_parts(&parts))
    }

    /// f as given, or the largest the committee tolerates.
    pub fn resolved_f(&self) -> usize {
        self.f.unwrap_or(self.members.len().saturating_sub(1) / 3)
    }

    /// Checks the genesis and builds its committee.
    pub fn committee(&self) -> Result<Committee, GenesisError> {
        if self.name.is_empty() || self.name.chars().count() > 64 {
            return Err(GenesisError::BadName);
        }
        Committee::new(self.members.clone(), self.resolved_f())
    }
}

/// The ordered committee with decompressed keys and the fault bound.
#[derive(Clone, Debug)]
pub struct Committee {
    members: Vec<PublicKey>,
    parsed: Vec<ParsedKey>,
    index: HashMap<PublicKey, usize>,
    f: usize,
}

impl Committee {
    /// Builds a committee, refusing no members, duplicates, unusable keys and n < 3f + 1.
    pub fn new(members: Vec<PublicKey>, f: usize) -> Result<Committee, GenesisError> {
        let n = members.len();
        if n == 0 {
            return Err(GenesisError::EmptyCommittee);
        }
        // n >= 3f + 1, written so that a huge f from a file cannot overflow.
        if f > (n - 1) / 3 {
            return Err(GenesisError::TooManyFaults { n, f });
        }
        let mut index = HashMap::with_capacity(n);
        let mut parsed = Vec::with_capacity(n);
        for (i, member) in members.iter().enumerate() {
            if index.insert(*member, i).is_some() {
                return Err(GenesisError::DuplicateMember(member.to_hex()));
            }
            parsed.push(ParsedKey::parse(member).map_err(|error| GenesisError::BadMember { index: i, error })?);
        }
        Ok(Committee { members, parsed, index, f })
    }

    /// Committee size n.
    pub fn n(&self) -> usize {
        self.members.len()
    }

    /// Fault bound f (n >= 3f + 1).
    pub fn f(&self) -> usize {
        self.f
    }

    /// Members in index order.
    pub fn members(&self) -> &[PublicKey] {
        &self.members
    }

    /// The index of `key`, if it is a member.
    pub fn index_of(&self, key: &PublicKey) -> Option<usize> {
        self.index.get(key).copied()
    }

    /// Whether `key` is a member.
    pub fn contains(&self, key: &PublicKey) -> bool {
        self.index.contains_key(key)
    }

    /// The key of member `index`.
    pub fn member(&self, index: usize) -> Option<&PublicKey> {
        self.members.get(index)
    }

    /// The decompressed key of member `index` (decompressed once, at construction).
    pub fn verifying_key(&self, index: usize) -> Option<&VerifyingKey> {
        self.parsed.get(index).map(|p| &p.verifying)
    }

    /// A key cache with every member pinned, holding up to `capacity` other keys.
    pub fn key_cache(&self, capacity: usize) -> KeyCache {
        let mut cache = KeyCache::new(capacity);
        for (member, parsed) in self.members.iter().zip(&self.parsed) {
            cache.pin(*member, *parsed);
        }
        cache
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Keypair;

    fn keys(n: u8) -> Vec<PublicKey> {
        (0..n).map(|i| Keypair::from_secret_bytes(&[i + 1; 32]).public()).collect()
    }

    fn genesis(n: u8) -> Genesis {
        Genesis { name: "test".into(), f: None, policy: GossipPolicy::Committee, members: keys(n), bootstrap: vec![] }
    }

    #[test]
    fn f_defaults_to_floor_n_minus_one_over_three() {
        for (n, f) in [(1, 0), (3, 0), (4, 1), (6, 1), (7, 2), (10, 3), (16, 5)] {
            assert_eq!(genesis(n).committee().expect("valid").f(), f, "n = {n}");
        }
    }

    #[test]
    fn too_many_faults_duplicates_and_empty_are_refused() {
        let mut g = genesis(6);
        g.f = Some(2);
        assert!(matches!(g.committee(), Err(GenesisError::TooManyFaults { n: 6, f: 2 })));
        let mut g = genesis(4);
        g.members[3] = g.members[0];
        assert!(matches!(g.committee(), Err(GenesisError::DuplicateMember(_))));
        assert!(matches!(genesis(0).committee(), Err(GenesisError::EmptyCommittee)));
        let mut g = genesis(4);
        g.members[2] = PublicKey([0; 32]); // y = 0 is a point of order 4
        assert!(matches!(g.committee(), Err(GenesisError::BadMember { index: 2, .. })));
    }

    #[test]
    fn network_id_ignores_formatting_and_bootstrap_but_not_members() {
        let g = genesis(4);
        let mut with_bootstrap = g.clone();
        with_bootstrap.bootstrap.push("/ip4/127.0.0.1/tcp/1".into());
        assert_eq!(g.network_id(), with_bootstrap.network_id());
        let reparsed = Genesis::from_toml(&format!("# comment\n{}", g.to_toml()), Path::new("x")).expect("parse");
        assert_eq!(reparsed.network_id(), g.network_id());
        let mut swapped = g.clone();
        swapped.members.swap(0, 1);
        assert_ne!(swapped.network_id(), g.network_id());
        let mut renamed = g.clone();
        renamed.name = "other".into();
        assert_ne!(renamed.network_id(), g.network_id());
    }

    #[test]
    fn corrupted_genesis_is_a_clear_error() {
        let g = genesis(4);
        let text = g.to_toml().replacen("members", "memberz", 1);
        let err = Genesis::from_toml(&text, Path::new("g.toml")).expect_err("bad").to_string();
        assert!(err.contains("g.toml"), "{err}");
        let text = g.to_toml().replacen(&g.members[0].to_hex()[..4], "zzzz", 1);
        assert!(Genesis::from_toml(&text, Path::new("g.toml")).is_err());
    }
}
