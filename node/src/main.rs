//! The `byzgossip` command.

use anyhow::Context;
use byzgossip_crypto::{Genesis, GossipPolicy, Keypair};
use byzgossip_node::identity::peer_id;
use byzgossip_node::testnet_keys::{TestnetSpec, write_testnet};
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "byzgossip", version, about = "Byzantine-tolerant signed gossip node")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a new node key file (mode 0600) and print its public key and peer id.
    Keygen {
        /// Where to write the key (refuses to overwrite).
        #[arg(long)]
        out: PathBuf,
    },
    /// Write keys and a genesis for a local testnet.
    Genesis {
        /// Committee size.
        #[arg(long)]
        nodes: usize,
        /// Output directory (node-<i>.key and genesis.toml).
        #[arg(long)]
        out: PathBuf,
        /// Fault bound (default floor((n-1)/3)).
        #[arg(long)]
        f: Option<usize>,
        /// Network name.
        #[arg(long, default_value = "byzgossip-local")]
        name: String,
        /// Who may publish gossip.
        #[arg(long, value_enum, default_value_t = Policy::Committee)]
        policy: Policy,
        /// Member i listens on 127.0.0.1 TCP port base-port + i; listed as bootstrap peers.
        #[arg(long)]
        base_port: Option<u16>,
    },
    /// Check a genesis file and print its network id and committee.
    Inspect {
        /// The genesis file.
        #[arg(long)]
        genesis: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Policy {
    Committee,
    Open,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Keygen { out } => {
            let keypair = Keypair::generate(&mut rand::rng());
            keypair.save(&out)?;
            let public = keypair.public();
            println!("public key: {public}");
            println!("peer id:    {}", peer_id(&public).context("peer id")?);
        }
        Command::Genesis { nodes, out, f, name, policy, base_port } => {
            let policy = match policy {
                Policy::Committee => GossipPolicy::Committee,
                Policy::Open => GossipPolicy::Open,
            };
            let spec = TestnetSpec { nodes, f, name, policy, base_port };
            let files = write_testnet(&out, &spec, &mut rand::rng())?;
            let genesis = Genesis::load(&files.genesis)?;
            println!(
                "wrote {} keys and {} (network {}, n = {}, f = {})",
                files.keys.len(),
                files.genesis.display(),
                genesis.network_id(),
                genesis.members.len(),
                genesis.resolved_f()
            );
        }
        Command::Inspect { genesis } => {
            let g = Genesis::load(&genesis)?;
            println!("network {} ({}), n = {}, f = {}", g.network_id(), g.name, g.members.len(), g.resolved_f());
            for (i, m) in g.members.iter().enumerate() {
                println!("  {i}: {m}");
            }
        }
    }
    Ok(())
}
