//! `byzgossip-testnet`: local testnets and the attack lab.
//!
//! - `run` with no arguments: the default suite (every preset at n = 7, f = 2), in process,
//!   with a table on the terminal; non-zero exit if any invariant fails.
//! - `run --scenario NAME|FILE.toml [--nodes N] [--byzantine F] [--seed S] [--out DIR]
//!   [--json FILE] [--duration SECS]`: one scenario.
//! - `run --runtime process [--byzgossip PATH]`: the same, with honest members as real
//!   `byzgossip` processes driven through their HTTP API and adversaries as processes of
//!   this binary (hidden `adversary` subcommand); scenarios with `degrade`/`restore`
//!   faults (the `lossy` preset) are reported as unsupported (see
//!   `byzgossip_testnet::process`).
//! - `run --runtime process --netns`: the same with every node in its own network namespace
//!   on a bridge, partitions and eclipse as nftables drops between addresses and `degrade`
//!   loss as nftables random drops (delay not applied); needs root, `ip` and `nft` (see
//!   `byzgossip_testnet::process::netns`).
//! - `run --runtime sim`: the deterministic simulator (see `byzgossip_testnet::sim`); prints
//!   `seed: S` and, at the end, `state hash: HEX` (same seed, same hash).
//! - `explore --runtime sim --seeds N [--first-seed S] [--nodes A..B] [--out DIR]`: random
//!   scenarios in the simulator, every invariant checked; a failing seed writes its scenario;
//!   non-zero exit on any violation.
//! - `list`: the presets.
//! - `report DIR`: re-check a saved run (or every run under a suite directory).
//! - `up --nodes N`: a live testnet until Ctrl-C, printing each node's addresses.
//! - `deploy k8s --nodes N [--observers M] --out DIR`: Kubernetes manifests and a
//!   `podman kube play` file for a committee (see `byzgossip_testnet::deploy`).
//! - `bench [--json FILE] [--quick] [--only bracha|gossip] [--nodes 4,7,16] [--runs N]`: macro benchmarks with same-run baselines, one JSON
//!   object per line on stdout (and in FILE); see `byzgossip_testnet::bench`.

use anyhow::Context;
use byzgossip_testnet::report::{self, Summary};
use byzgossip_testnet::scenario::{self, PRESETS, Scenario};
use byzgossip_testnet::{RunOptions, Testnet};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(name = "byzgossip-testnet", version, about = "Local byzgossip testnets and the attack lab")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Runtime {
    /// Every node in this process.
    InProcess,
    /// `byzgossip` processes for honest nodes, adversary processes for the others.
    Process,
    /// The deterministic simulator: every node's engine in virtual time.
    Sim,
}

#[derive(Subcommand)]
enum Command {
    /// Run the default suite, or one scenario, and check the invariants.
    Run {
        /// A preset name (see `list`) or a scenario TOML file; all presets when absent.
        #[arg(long)]
        scenario: Option<String>,
        /// Committee size (default 7).
        #[arg(long)]
        nodes: Option<usize>,
        /// Malicious committee members (default floor((n-1)/3)).
        #[arg(long)]
        byzantine: Option<usize>,
        /// Honest observers: nodes outside the committee that deliver on verified
        /// certificates, each attached to two members and to the observer before it. Every
        /// invariant is checked at them too.
        #[arg(long)]
        observers: Option<usize>,
        /// Seed of keys, workload and attacks.
        #[arg(long)]
        seed: Option<u64>,
        /// Output directory (default testnet-out/<time>-<scenario or suite>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Also write the summaries as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Length of the attack window in seconds.
        #[arg(long)]
        duration: Option<f64>,
        /// Print timeline events as they happen.
        #[arg(long, short)]
        verbose: bool,
        /// Where the nodes run: all in this process (default), or as real processes.
        #[arg(long, value_enum, default_value_t = Runtime::InProcess)]
        runtime: Runtime,
        /// The `byzgossip` binary for `--runtime process` (default: next to this executable).
        #[arg(long)]
        byzgossip: Option<PathBuf>,
        /// With `--runtime process`: every node in its own network namespace, cuts and loss
        /// as nftables rules (root, `ip` and `nft` needed).
        #[arg(long)]
        netns: bool,
    },
    /// An adversary node in its own process (started by `run --runtime process`).
    #[command(hide = true)]
    Adversary {
        /// The resolved scenario file.
        #[arg(long)]
        scenario: PathBuf,
        /// This node's index in the scenario.
        #[arg(long)]
        index: usize,
        /// The genesis file.
        #[arg(long)]
        genesis: PathBuf,
        /// The key file.
        #[arg(long)]
        key: PathBuf,
        /// Listen multiaddr.
        #[arg(long)]
        listen: String,
        /// HTTP API listen address.
        #[arg(long, default_value = "127.0.0.1:0")]
        api: std::net::SocketAddr,
        /// Interceptor seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Random scenarios in the simulator, each checked by every invariant; a failing seed
    /// writes the scenario that reproduces it.
    Explore {
        /// Where the nodes run (only the simulator explores).
        #[arg(long, value_enum, default_value_t = Runtime::Sim)]
        runtime: Runtime,
        /// How many seeds.
        #[arg(long, default_value_t = 100)]
        seeds: u64,
        /// The first seed.
        #[arg(long, default_value_t = 1)]
        first_seed: u64,
        /// Committee sizes, `A..B` (inclusive).
        #[arg(long, default_value = "4..16")]
        nodes: String,
        /// Where failing scenarios are written (default testnet-out/<time>-explore).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// List the presets.
    List {
        /// Also write each preset (n = 7) as DIR/NAME.toml.
        #[arg(long)]
        write: Option<PathBuf>,
    },
    /// Re-check saved output: a run directory (with run.json) or a suite directory.
    Report {
        /// The directory.
        dir: PathBuf,
    },
    /// Macro benchmarks (Bracha, gossip vs bare gossipsub, RSS) as JSON lines.
    Bench {
        /// Also write the JSON lines here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Short runs at n = 4 only.
        #[arg(long)]
        quick: bool,
        /// Only one benchmark: `bracha` (with RSS) or `gossip`.
        #[arg(long)]
        only: Option<String>,
        /// Committee sizes of the Bracha benchmark (default 4,7,16; 4 with --quick).
        #[arg(long, value_delimiter = ',')]
        nodes: Vec<usize>,
        /// Repeat every measurement this many times; lines give median, min and max.
        #[arg(long, default_value_t = 1)]
        runs: usize,
    },
    /// Write deployment files for a committee (see `byzgossip_testnet::deploy`).
    Deploy {
        #[command(subcommand)]
        target: DeployTarget,
    },
    /// Start a live all-honest testnet until Ctrl-C.
    Up {
        /// Committee size.
        #[arg(long, default_value_t = 4)]
        nodes: usize,
        /// Seed of the keys.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Also write a Prometheus configuration scraping every node's `/metrics` to this
        /// file (for `deploy/grafana/byzgossip.json`).
        #[arg(long)]
        prometheus_config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum DeployTarget {
    /// Kubernetes manifests (StatefulSets, headless Services, genesis ConfigMap, a Secret per
    /// key) in DIR/k8s, the same committee for `podman kube play` in DIR/podman, the key files
    /// in DIR/keys and a README.
    K8s {
        /// Committee size.
        #[arg(long)]
        nodes: usize,
        /// Non-member nodes, run with `--observer`.
        #[arg(long, default_value_t = 0)]
        observers: usize,
        /// Output directory (must not hold keys already).
        #[arg(long)]
        out: PathBuf,
        /// Kubernetes namespace (part of the members' DNS names in the genesis).
        #[arg(long, default_value = "byzgossip")]
        namespace: String,
        /// Name of this deployment: StatefulSets, Services, pods, ConfigMaps and Secrets are
        /// named after it, so two committees can share a namespace.
        #[arg(long, default_value = "byzgossip")]
        name: String,
        /// Container image (deploy/build-image.sh builds localhost/byzgossip:latest).
        #[arg(long, default_value = "localhost/byzgossip:latest")]
        image: String,
        /// Network name in the genesis.
        #[arg(long, default_value = "byzgossip")]
        network: String,
        /// Size of each member's data volume.
        #[arg(long, default_value = "1Gi")]
        storage: String,
    },
}

fn main() -> std::process::ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match runtime.block_on(async_main(cli)) {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

fn resolve(name: &str, nodes: usize) -> anyhow::Result<Scenario> {
    if let Some(s) = scenario::preset(name, nodes) {
        return Ok(s);
    }
    let path = Path::new(name);
    if path.exists() {
        return Ok(Scenario::load(path)?);
    }
    anyhow::bail!("no preset or file named {name:?} (see `byzgossip-testnet list`)")
}

fn stamp() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}{m:02}{d:02}-{:02}{:02}{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

async fn async_main(cli: Cli) -> anyhow::Result<bool> {
    match cli.command {
        Command::List { write } => {
            if let Some(dir) = &write {
                std::fs::create_dir_all(dir)?;
            }
            for (name, description) in PRESETS {
                if let (Some(dir), Some(s)) = (&write, scenario::preset(name, 7)) {
                    std::fs::write(dir.join(format!("{name}.toml")), format!("# {description}\n{}", s.to_toml()))?;
                }
                let role = byzgossip_testnet::Role::ALL.into_iter().find(|r| r.name() == *name);
                let tag = match role {
                    Some(r) if r.detectable() => " [detectable]",
                    _ => "",
                };
                println!("{name:<18} {description}{tag}");
            }
            Ok(true)
        }
        Command::Report { dir } => {
            let mut dirs = Vec::new();
            if dir.join("run.json").exists() {
                dirs.push(dir.clone());
            } else {
                let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
                    .with_context(|| format!("reading {}", dir.display()))?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.join("run.json").exists())
                    .collect();
                entries.sort();
                dirs.extend(entries);
            }
            anyhow::ensure!(!dirs.is_empty(), "no run.json in {} or its subdirectories", dir.display());
            let mut summaries = Vec::new();
            for d in dirs {
                let log = report::read_run(&d).with_context(|| format!("reading {}", d.display()))?;
                let summary = report::summarize(&log);
                report::write_run(&d, &log, &summary)?;
                summaries.push(summary);
            }
            Ok(finish(&summaries, None, &dir))
        }
        Command::Bench { json, quick, only, nodes, runs } => {
            use std::io::Write;
            let mut file = match &json {
                Some(p) => Some(std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?),
                None => None,
            };
            let mut write_error = None;
            byzgossip_testnet::bench::run_all(&byzgossip_testnet::bench::BenchOptions { quick, only, nodes, runs }, |line| {
                let text = line.to_string();
                println!("{text}");
                if let Some(f) = file.as_mut()
                    && let Err(e) = writeln!(f, "{text}")
                {
                    write_error = Some(e);
                }
            })
            .await?;
            if let Some(e) = write_error {
                anyhow::bail!("writing the JSON file: {e}");
            }
            Ok(true)
        }
        Command::Deploy { target: DeployTarget::K8s { nodes, observers, out, namespace, name, image, network, storage } } => {
            let options = byzgossip_testnet::deploy::DeployOptions { nodes, observers, namespace, name, image, network, storage };
            let written = byzgossip_testnet::deploy::write(&options, &out, &mut rand::rng())?;
            for file in &written.files {
                println!("wrote {}", file.display());
            }
            println!("see {} for how to apply it", out.join("README.md").display());
            Ok(true)
        }
        Command::Up { nodes, seed, prometheus_config } => {
            let mut s = scenario::preset("baseline", nodes).context("baseline preset")?;
            s.seed = seed;
            let testnet = Testnet::start(&s, RunOptions { api: true, verbose: false }).await?;
            if let Some(path) = prometheus_config {
                let targets: Vec<_> = testnet.describe().iter().filter_map(|n| n.api).collect();
                std::fs::write(&path, byzgossip_testnet::monitoring::prometheus_config(&targets, 5))
                    .with_context(|| format!("writing {}", path.display()))?;
                println!("prometheus config: {} (run `prometheus --config.file={}`)", path.display(), path.display());
            }
            for node in testnet.describe() {
                let api = node.api.map_or("-".to_owned(), |a| format!("http://{a}"));
                let addrs: Vec<String> = node.listen.iter().map(ToString::to_string).collect();
                // POST endpoints need `Authorization: Bearer <token>`.
                let token = node.api_token.as_deref().unwrap_or("-");
                println!("node {}: api {api} token {token} peer {} listen {}", node.index, node.peer_id, addrs.join(" "));
            }
            println!("testnet up ({nodes} nodes); Ctrl-C to stop");
            tokio::signal::ctrl_c().await?;
            testnet.stop().await;
            Ok(true)
        }
        Command::Explore { runtime, seeds, first_seed, nodes, out } => {
            anyhow::ensure!(runtime == Runtime::Sim, "explore runs in the simulator only (--runtime sim)");
            let (a, b) = nodes.split_once("..").context("--nodes is A..B")?;
            let (min, max): (usize, usize) = (a.trim().parse()?, b.trim().trim_start_matches('=').parse()?);
            anyhow::ensure!(1 <= min && min <= max, "--nodes A..B needs 1 <= A <= B");
            let out = out.unwrap_or_else(|| PathBuf::from("testnet-out").join(format!("{}-explore", stamp())));
            let started = std::time::Instant::now();
            let findings = byzgossip_testnet::sim::explore::explore(first_seed, seeds, (min, max), &out, |line| println!("{line}"))?;
            println!(
                "explored {seeds} seeds ({first_seed}..{}) at n = {min}..{max} in {:.1} s: {} violated an invariant",
                first_seed + seeds - 1,
                started.elapsed().as_secs_f64(),
                findings.len()
            );
            for f in &findings {
                println!("FAIL seed {}: {} ({})", f.seed, f.failed.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", "), f.scenario.display());
            }
            Ok(findings.is_empty())
        }
        Command::Adversary { scenario, index, genesis, key, listen, api, seed } => {
            let args = byzgossip_testnet::process::AdversaryArgs { scenario, index, genesis, key, listen, api, seed };
            byzgossip_testnet::process::adversary_main(args).await?;
            Ok(true)
        }
        Command::Run { scenario, nodes, byzantine, observers, seed, out, json, duration, verbose, runtime, byzgossip, netns } => {
            if netns {
                anyhow::ensure!(runtime == Runtime::Process, "--netns needs --runtime process");
                byzgossip_testnet::process::netns::check_available()?;
            }
            let n = nodes.unwrap_or(7);
            let scenarios: Vec<Scenario> = match &scenario {
                Some(name) => vec![resolve(name, n)?],
                None => scenario::default_suite(n),
            };
            let label = match &scenario {
                Some(name) => Path::new(name).file_stem().and_then(|s| s.to_str()).unwrap_or("scenario").to_owned(),
                None => "suite".to_owned(),
            };
            let out = out.unwrap_or_else(|| PathBuf::from("testnet-out").join(format!("{}-{label}", stamp())));
            let mut summaries = Vec::new();
            let mut unsupported = Vec::new();
            let total = scenarios.len();
            for (k, s) in scenarios.into_iter().enumerate() {
                let mut s = s.with_overrides(nodes, byzantine, seed, duration);
                if let Some(m) = observers {
                    s = s.with_observers(m);
                }
                s.validate()?;
                eprintln!("[{}/{total}] {} (n = {}, f = {}, {} byzantine) ...", k + 1, s.name, s.nodes, s.f(), s.byzantine());
                let dir = if total == 1 { out.clone() } else { out.join(&s.name) };
                let log = match runtime {
                    Runtime::InProcess => byzgossip_testnet::run(&s, RunOptions { api: false, verbose }).await?,
                    Runtime::Sim => {
                        use byzgossip_testnet::sim::{self, SimOptions};
                        println!("seed: {}", s.seed);
                        let started = std::time::Instant::now();
                        let run = sim::run(&s, &SimOptions { verbose })?;
                        let wall = started.elapsed().as_secs_f64();
                        let st = &run.stats;
                        eprintln!(
                            "    simulated {:.1} s in {wall:.2} s wall ({:.3} s wall per simulated s): {} events, {} messages, {} verification jobs, {} signature checks run (each distinct check runs once and its outcome is shared by every node)",
                            st.virtual_s,
                            wall / st.virtual_s.max(1e-9),
                            st.events,
                            st.messages,
                            st.jobs,
                            st.verified
                        );
                        println!("state hash: {}", run.state_hash);
                        run.log
                    }
                    Runtime::Process => {
                        use byzgossip_testnet::process::{self, Outcome, ProcessOptions};
                        let mut options = ProcessOptions::new(byzgossip.clone(), dir.join("processes"), verbose)?;
                        options.netns = netns;
                        // With --netns, SIGINT and SIGTERM end the run by dropping it, so
                        // its children are killed and its namespaces removed before exit
                        // (SIGKILL cannot be caught: the next run's sweep handles that).
                        let run = process::run(&s, options);
                        let outcome = if netns { until_signal(run).await? } else { run.await? };
                        match outcome {
                            Outcome::Ran(log) => *log,
                            Outcome::Unsupported(why) => {
                                eprintln!("    UNSUPPORTED in process mode: {why}");
                                unsupported.push(format!("{}: {why}", s.name));
                                continue;
                            }
                        }
                    }
                };
                let summary = report::summarize(&log);
                report::write_run(&dir, &log, &summary)?;
                eprintln!("    {} in {:.1} s", if summary.passed { "PASS" } else { "FAIL" }, summary.run_s);
                summaries.push(summary);
            }
            let ok = finish(&summaries, json.as_deref(), &out);
            for u in &unsupported {
                println!("unsupported (not failed): {u}");
            }
            Ok(ok)
        }
    }
}

/// Runs `run` until it ends or SIGINT or SIGTERM arrives; a signal drops `run` (running its
/// cleanup) and is an error.
async fn until_signal<T>(run: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = run => r,
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted (SIGINT): the run's processes and namespaces were removed"),
        _ = term.recv() => anyhow::bail!("terminated (SIGTERM): the run's processes and namespaces were removed"),
    }
}

/// Prints the table and failures, writes the suite index; returns whether all passed.
fn finish(summaries: &[Summary], json: Option<&Path>, out: &Path) -> bool {
    println!("{}", report::table(summaries));
    for s in summaries {
        print!("{}", report::failures(s));
    }
    let _ = std::fs::create_dir_all(out);
    let _ = std::fs::write(out.join("summary.json"), serde_json::to_vec_pretty(summaries).unwrap_or_default());
    if summaries.len() > 1 {
        let _ = std::fs::write(out.join("index.html"), report::index_html(summaries));
    }
    if let Some(path) = json
        && let Err(e) = std::fs::write(path, serde_json::to_vec_pretty(summaries).unwrap_or_default())
    {
        eprintln!("cannot write {}: {e}", path.display());
    }
    println!("output: {}", out.display());
    let passed = summaries.iter().all(|s| s.passed);
    println!("{} passed, {} failed", summaries.iter().filter(|s| s.passed).count(), summaries.iter().filter(|s| !s.passed).count());
    passed
}
