//! Writing a set of keys and a genesis for a local testnet (`byzgossip genesis`).

use crate::identity::peer_id;
use byzgossip_crypto::{Genesis, GossipPolicy, Keypair};
use std::path::{Path, PathBuf};

/// What `write_testnet` produced.
#[derive(Debug)]
pub struct TestnetFiles {
    /// The genesis file.
    pub genesis: PathBuf,
    /// One key file per member, in committee order.
    pub keys: Vec<PathBuf>,
}

/// Options for [`write_testnet`].
#[derive(Debug, Clone)]
pub struct TestnetSpec {
    /// Committee size.
    pub nodes: usize,
    /// Fault bound; `floor((n-1)/3)` when `None`.
    pub f: Option<usize>,
    /// Network name.
    pub name: String,
    /// Gossip policy.
    pub policy: GossipPolicy,
    /// When set, member i is expected to listen on 127.0.0.1 TCP port `base_port + i` and the
    /// genesis lists those addresses as bootstrap peers.
    pub base_port: Option<u16>,
}

/// Generates `spec.nodes` keys with `rng` and writes `node-<i>.key` files and `genesis.toml`
/// into `dir` (created if missing; existing key files are never overwritten).
pub fn write_testnet<R: rand::CryptoRng + ?Sized>(
    dir: &Path,
    spec: &TestnetSpec,
    rng: &mut R,
) -> anyhow::Result<TestnetFiles> {
    let base_port = spec.base_port;
    let loopback = |i: usize| -> anyhow::Result<Option<String>> {
        let Some(base) = base_port else { return Ok(None) };
        let port = base as usize + i;
        anyhow::ensure!(port <= u16::MAX as usize, "port {port} is out of range");
        Ok(Some(format!("/ip4/127.0.0.1/tcp/{port}")))
    };
    write_testnet_with_addresses(dir, spec, rng, loopback)
}

/// [`write_testnet`] with member i's bootstrap address chosen by `address(i)` (a multiaddr
/// without the `/p2p/<peer id>` suffix, which is appended; `None`: not listed) instead of
/// `spec.base_port`. Deployments use it for names such as `/dns4/<pod>.<service>/tcp/7000`.
pub fn write_testnet_with_addresses<R: rand::CryptoRng + ?Sized>(
    dir: &Path,
    spec: &TestnetSpec,
    rng: &mut R,
    address: impl Fn(usize) -> anyhow::Result<Option<String>>,
) -> anyhow::Result<TestnetFiles> {
    std::fs::create_dir_all(dir)?;
    let keypairs: Vec<Keypair> = (0..spec.nodes).map(|_| Keypair::generate(rng)).collect();
    let mut bootstrap = Vec::new();
    for (i, k) in keypairs.iter().enumerate() {
        if let Some(addr) = address(i)? {
            let peer = peer_id(&k.public()).ok_or_else(|| anyhow::anyhow!("key has no peer id"))?;
            bootstrap.push(format!("{addr}/p2p/{peer}"));
        }
    }
    let genesis = Genesis {
        name: spec.name.clone(),
        f: spec.f,
        policy: spec.policy,
        members: keypairs.iter().map(Keypair::public).collect(),
        bootstrap,
    };
    genesis.committee()?;
    let mut keys = Vec::new();
    for (i, k) in keypairs.iter().enumerate() {
        let path = dir.join(format!("node-{i}.key"));
        k.save(&path)?;
        keys.push(path);
    }
    let genesis_path = dir.join("genesis.toml");
    genesis.save(&genesis_path)?;
    Ok(TestnetFiles { genesis: genesis_path, keys })
}
