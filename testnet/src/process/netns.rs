//! Network namespaces for process mode (`run --runtime process --netns`): every node runs in
//! its own namespace, on its own address of a bridge this run creates, and the network faults
//! are nftables rules in the kernel instead of the node's own block list or interceptor.
//!
//! # Layout
//! A run has a tag `bzg<pid>_<seq>` (the testnet's pid in base 36, a per-process counter in
//! decimal) and a private /16, `10.X.0.0/16`, with `X` chosen so that no address or route of
//! the root namespace and no other live run uses it. The bridge `<tag>b` holds `10.X.0.1`
//! in the root namespace, so the harness reaches every node's HTTP API directly. Node `i` runs
//! in namespace `<tag>n<i>` with `eth0` (the far end of veth `<tag>v<i>` on the bridge) at
//! `10.X.h/16` with `h = i + 2`, and no default route: a node can reach the run's bridge and
//! nothing else, so the traffic stays inside the namespaces this run created. Interface names
//! stay within the kernel's 15 characters ([`IFNAMSIZ`]; the plan refuses longer ones).
//!
//! # Faults
//! One nftables table of the `bridge` family, named after the tag, filters what the bridge
//! forwards between nodes. The bridge family (rather than one `inet` table per namespace) was
//! chosen because one table sees every node-to-node packet, is created and removed in one
//! transaction, and does not see the harness's own traffic to the nodes' HTTP APIs (that goes
//! through the bridge's output hook, not its forward hook), so a cut or a loss never hides a
//! node from the harness, exactly as in the in-process runtime where faults act on the p2p
//! link only.
//! - A cut of `from -> to` (one direction of a partition or eclipse pair) is the element
//!   `from . to` of the set `cut`, matched by `ip saddr . ip daddr @cut drop`. Packets are
//!   dropped, not rejected: TCP sees a dead link, as with a pulled cable. The heal removes
//!   the element and resets the pair's TCP connections ([`Netns::reset`], `ss -K`): one
//!   stalled through the cut would otherwise resume only at its next exponentially backed-off
//!   retransmission; the nodes redial.
//! - A degrade of node `i` with loss `p` is the rule `ip daddr ADDR numgen random mod 100 < P
//!   drop` in the chain `loss` (rebuilt in one transaction on every change): loss on what the
//!   node receives, like the in-process interceptor. The delay part of a degrade is not
//!   applied here (the kernel has no netem); the run's event log says so at each degrade.
//!
//! # Cleanup
//! [`Netns`] removes its table, namespaces (which removes their veths) and bridge, and its
//! state file, when dropped: on return, on error and on panic (and the binary turns SIGINT
//! and SIGTERM into dropping the run, so those clean up too). A testnet killed by SIGKILL
//! cannot clean up, so every new netns run first sweeps ([`sweep_stale`]) the leftovers of
//! dead runs: every namespace, bridge, veth and table whose name starts with `bzg<pid>_` for a
//! pid that is no longer running, and their state files under [`STATE_DIR`] (which also
//! reserve each live run's /16). Every command run here is bounded by [`COMMAND_TIMEOUT`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Prefix of every name a netns run creates.
pub const PREFIX: &str = "bzg";
/// Longest interface name the kernel takes (IFNAMSIZ minus the terminating NUL).
pub const IFNAMSIZ: usize = 15;
/// Where each live run keeps its state file (`<tag>`, holding its /16's second octet) and its
/// subnet reservation (`net-<X>`, holding its tag).
pub const STATE_DIR: &str = "/run/byzgossip-testnet";
/// Longest any `ip` or `nft` command may run.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// The TCP port every node listens on in its namespace (each has its own address).
pub const P2P_PORT: u16 = 7000;

/// Why namespaces could not be set up or changed.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// network namespaces, bridges and nftables need root
    #[error("--netns needs root (network namespaces, a bridge and nftables rules); this process runs as uid {0}")]
    NotRoot(u32),
    /// a tool is missing or does not run
    #[error("--netns needs `{tool}` ({package}): {why}")]
    MissingTool {
        /// the command
        tool: &'static str,
        /// the Debian package that has it
        package: &'static str,
        /// what happened when it was run
        why: String,
    },
    /// a command failed
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// the command line
        command: String,
        /// its exit status
        status: String,
        /// what it printed on stderr
        stderr: String,
    },
    /// a command ran longer than [`COMMAND_TIMEOUT`]
    #[error("`{0}` did not finish within {COMMAND_TIMEOUT:?}")]
    Timeout(String),
    /// every candidate /16 is in use
    #[error("no free 10.X.0.0/16 for the run's bridge: every candidate is used by an address, a route or another run")]
    NoSubnet,
    /// the plan would need an interface name longer than [`IFNAMSIZ`]
    #[error("interface name {0:?} is longer than {IFNAMSIZ} characters (too many nodes for one run?)")]
    NameTooLong(String),
    /// the /16 has room for 65,533 nodes
    #[error("{0} nodes do not fit in one /16")]
    TooManyNodes(usize),
    /// reading or writing a state file
    #[error("state file: {0}")]
    Io(#[from] std::io::Error),
}

/// Checks that this process can make namespaces: root, and `ip` and `nft` that run.
pub fn check_available() -> Result<(), NetnsError> {
    let uid = effective_uid();
    if uid != 0 {
        return Err(NetnsError::NotRoot(uid));
    }
    for (tool, arg, package) in [("ip", "-V", "iproute2"), ("nft", "-v", "nftables")] {
        run(&[tool, arg]).map_err(|e| NetnsError::MissingTool { tool, package, why: e.to_string() })?;
    }
    Ok(())
}

/// This process's effective uid, from `/proc/self/status` (no libc call needed); `u32::MAX`
/// when it cannot be read, which is then reported as "not root".
fn effective_uid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(2)?.parse().ok()))
        .unwrap_or(u32::MAX)
}

/// The names and addresses of one run: pure, so they are unit-tested.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// `bzg<pid base 36>_<seq>`: the prefix of every name of the run.
    pub tag: String,
    /// `X` of the run's `10.X.0.0/16`.
    pub octet: u8,
    /// Nodes in the run.
    pub nodes: usize,
}

impl Plan {
    /// The plan of run `seq` of process `pid`, checked: every interface name fits.
    pub fn new(pid: u32, seq: u32, octet: u8, nodes: usize) -> Result<Plan, NetnsError> {
        if nodes > 65_533 {
            return Err(NetnsError::TooManyNodes(nodes));
        }
        let plan = Plan { tag: tag(pid, seq), octet, nodes };
        for name in std::iter::once(plan.bridge()).chain((0..nodes).map(|i| plan.veth(i))) {
            if name.len() > IFNAMSIZ {
                return Err(NetnsError::NameTooLong(name));
            }
        }
        Ok(plan)
    }
    /// The bridge (root namespace).
    pub fn bridge(&self) -> String {
        format!("{}b", self.tag)
    }
    /// Node `i`'s namespace.
    pub fn namespace(&self, i: usize) -> String {
        format!("{}n{i}", self.tag)
    }
    /// The root-namespace end of node `i`'s veth (the other end is `eth0` in its namespace).
    pub fn veth(&self, i: usize) -> String {
        format!("{}v{i}", self.tag)
    }
    /// The nftables table (family `bridge`).
    pub fn table(&self) -> String {
        self.tag.clone()
    }
    /// The bridge's address in the root namespace: the harness's side.
    pub fn bridge_addr(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, self.octet, 0, 1)
    }
    /// Node `i`'s address.
    pub fn addr(&self, i: usize) -> Ipv4Addr {
        let h = i + 2;
        Ipv4Addr::new(10, self.octet, (h >> 8) as u8, (h & 0xff) as u8)
    }
    /// The node whose address is `addr`, if it is one of this plan's.
    pub fn node_of(&self, addr: Ipv4Addr) -> Option<usize> {
        let o = addr.octets();
        let h = ((o[2] as usize) << 8) | o[3] as usize;
        (o[0] == 10 && o[1] == self.octet && h >= 2 && h - 2 < self.nodes).then(|| h - 2)
    }
    /// Node `i`'s p2p listen address (and its genesis bootstrap address, less `/p2p/ID`).
    pub fn multiaddr(&self, i: usize) -> String {
        format!("/ip4/{}/tcp/{P2P_PORT}", self.addr(i))
    }

    /// The `ip` commands that build the run (in order).
    pub fn create_commands(&self) -> Vec<Vec<String>> {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let (bridge, cidr) = (self.bridge(), format!("{}/16", self.bridge_addr()));
        let mut cmds = vec![
            s(&["ip", "link", "add", &bridge, "type", "bridge"]),
            s(&["ip", "addr", "add", &cidr, "dev", &bridge]),
            s(&["ip", "link", "set", &bridge, "up"]),
        ];
        for i in 0..self.nodes {
            let (ns, veth, addr) = (self.namespace(i), self.veth(i), format!("{}/16", self.addr(i)));
            cmds.push(s(&["ip", "netns", "add", &ns]));
            cmds.push(s(&["ip", "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns]));
            cmds.push(s(&["ip", "link", "set", &veth, "master", &bridge, "up"]));
            cmds.push(s(&["ip", "-n", &ns, "addr", "add", &addr, "dev", "eth0"]));
            cmds.push(s(&["ip", "-n", &ns, "link", "set", "eth0", "up"]));
            cmds.push(s(&["ip", "-n", &ns, "link", "set", "lo", "up"]));
        }
        cmds
    }

    /// The nftables script that creates the run's table: the cut set, the loss chain, and the
    /// forward chain that applies both to what the bridge forwards between nodes.
    pub fn table_script(&self) -> String {
        format!(
            "table bridge {t} {{\n\
             \tset cut {{ type ipv4_addr . ipv4_addr; }}\n\
             \tchain loss {{ }}\n\
             \tchain forward {{ type filter hook forward priority 0; policy accept; ip saddr . ip daddr @cut counter drop; jump loss; }}\n\
             }}\n",
            t = self.table()
        )
    }

    /// The nftables command that adds (or deletes) the cut of packets from node `from` to
    /// node `to`.
    pub fn cut_command(&self, from: usize, to: usize, cut: bool) -> Vec<String> {
        let verb = if cut { "add" } else { "delete" };
        let element = format!("{{ {} . {} }}", self.addr(from), self.addr(to));
        ["nft", verb, "element", "bridge", &self.table(), "cut", &element].iter().map(|s| s.to_string()).collect()
    }

    /// The command that resets, in node `at`'s namespace, its TCP connections to node `to`.
    pub fn reset_command(&self, at: usize, to: usize) -> Vec<String> {
        let (ns, dst) = (self.namespace(at), self.addr(to).to_string());
        ["ip", "netns", "exec", &ns, "ss", "-K", "-t", "dst", &dst].iter().map(|s| s.to_string()).collect()
    }

    /// The nftables script that replaces the loss chain with one rule per degraded node
    /// (`percent`: node -> percent of its inbound packets dropped, 1..=100).
    pub fn loss_script(&self, percent: &BTreeMap<usize, u32>) -> String {
        let mut script = format!("flush chain bridge {} loss\n", self.table());
        for (&i, &p) in percent {
            let drop = if p >= 100 { String::new() } else { format!("numgen random mod 100 < {p} ") };
            let _ = writeln!(script, "add rule bridge {} loss ip daddr {} {drop}counter drop", self.table(), self.addr(i));
        }
        script
    }
}

/// The packet counters of the rules in an `nft list chain` listing: per rule, the address
/// after `ip daddr` when it is one (`None` for the cut set rule) and its packet count.
pub fn parse_counters(listing: &str) -> Vec<(Option<Ipv4Addr>, u64)> {
    let mut out = Vec::new();
    for line in listing.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let after = |w: &str| words.iter().position(|x| *x == w).and_then(|k| words.get(k + 1));
        if let Some(packets) = after("packets").and_then(|p| p.parse().ok()) {
            out.push((after("daddr").and_then(|a| a.parse().ok()), packets));
        }
    }
    out
}

/// The tag of run `seq` of process `pid`.
pub fn tag(pid: u32, seq: u32) -> String {
    format!("{}{seq}", pid_prefix(pid))
}

/// `bzg<pid base 36>_`: the start of every name made by process `pid`.
pub fn pid_prefix(pid: u32) -> String {
    let mut digits = Vec::new();
    let mut p = pid;
    loop {
        digits.push(std::char::from_digit(p % 36, 36).unwrap_or('0'));
        p /= 36;
        if p == 0 {
            break;
        }
    }
    digits.reverse();
    format!("{PREFIX}{}_", digits.into_iter().collect::<String>())
}

/// The pid that made `name`, if `name` is one of ours (`bzg<pid base 36>_...`).
pub fn owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?;
    let (pid, _) = rest.split_once('_')?;
    u32::from_str_radix(pid, 36).ok()
}

/// A loss fraction as the whole percent of packets a rule drops (0 = no rule).
pub fn loss_percent(loss: f64) -> u32 {
    (loss.clamp(0.0, 1.0) * 100.0).round() as u32
}

/// Runs `args` (program first) to completion within [`COMMAND_TIMEOUT`] and returns its
/// stdout; a non-zero exit is an error with its stderr.
fn run(args: &[&str]) -> Result<String, NetnsError> {
    run_with_input(args, None)
}

fn run_with_input(args: &[&str], input: Option<&str>) -> Result<String, NetnsError> {
    let line = args.join(" ");
    let mut child = Command::new(args[0])
        .args(&args[1..])
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| NetnsError::Command { command: line.clone(), status: "not started".into(), stderr: e.to_string() })?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        let _ = stdin.write_all(text.as_bytes());
    }
    // Read the pipes on threads so a chatty command cannot block on a full pipe.
    let out = child.stdout.take().map(|mut o| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut o, &mut s);
            s
        })
    });
    let err = child.stderr.take().map(|mut o| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut o, &mut s);
            s
        })
    });
    let end = Instant::now() + COMMAND_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < end => std::thread::sleep(Duration::from_millis(2)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(NetnsError::Timeout(line));
            }
        }
    };
    let stdout = out.and_then(|t| t.join().ok()).unwrap_or_default();
    let stderr = err.and_then(|t| t.join().ok()).unwrap_or_default();
    if status.success() {
        Ok(stdout)
    } else {
        Err(NetnsError::Command { command: line, status: status.to_string(), stderr: stderr.trim().to_owned() })
    }
}

fn run_owned(args: &[String]) -> Result<String, NetnsError> {
    run(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// Whether process `pid` is running.
fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Names (of namespaces, links, tables) that belong to a dead run.
fn stale(name: &str) -> bool {
    owner(name).is_some_and(|pid| !alive(pid))
}

/// Removes every namespace, link, nftables table and state file left by netns runs whose
/// process is gone (killed by SIGKILL, or a machine crash); returns what it removed. Best
/// effort: a leftover that cannot be removed is left for the next sweep.
pub fn sweep_stale() -> Vec<String> {
    let mut removed = Vec::new();
    if let Ok(tables) = run(&["nft", "list", "tables", "bridge"]) {
        for name in tables.lines().filter_map(|l| l.strip_prefix("table bridge ")).map(str::trim) {
            if stale(name) && run(&["nft", "delete", "table", "bridge", name]).is_ok() {
                removed.push(format!("nft table {name}"));
            }
        }
    }
    if let Ok(list) = run(&["ip", "netns", "list"]) {
        for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
            if stale(name) && run(&["ip", "netns", "delete", name]).is_ok() {
                removed.push(format!("namespace {name}"));
            }
        }
    }
    if let Ok(links) = run(&["ip", "-o", "link", "show"]) {
        // "7: bzg..b: <...>" or "8: bzg..v0@if2: <...>"
        for name in links.lines().filter_map(|l| l.split(": ").nth(1)).map(|n| n.split('@').next().unwrap_or(n)) {
            if stale(name) && run(&["ip", "link", "delete", name]).is_ok() {
                removed.push(format!("link {name}"));
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(STATE_DIR) {
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            // `<tag>` files name their owner; `net-X` files hold the owner's tag.
            let owner_tag = if name.starts_with("net-") { std::fs::read_to_string(&path).unwrap_or_default() } else { name.clone() };
            if stale(owner_tag.trim()) && std::fs::remove_file(&path).is_ok() {
                removed.push(format!("state file {}", path.display()));
            }
        }
    }
    removed
}

/// Every run of this process gets its own sequence number (tests run several at once).
static SEQ: AtomicU32 = AtomicU32::new(0);

/// Whether the root namespace has an address or a route inside `10.X.0.0/16` (or a /8 or
/// wider route covering it other than the default).
fn subnet_in_use(octet: u8, addrs_and_routes: &str) -> bool {
    let needle = format!("10.{octet}.");
    addrs_and_routes.lines().any(|l| l.split_whitespace().any(|w| w.starts_with(&needle) || w == "10.0.0.0/8"))
}

/// The namespaces, bridge and table of one run; removed on drop.
pub struct Netns {
    plan: Plan,
    /// Directed cuts in force, `(from, to)`: the `cut` set's elements.
    cuts: Mutex<BTreeSet<(usize, usize)>>,
    /// Inbound loss in force, node -> percent.
    loss: Mutex<BTreeMap<usize, u32>>,
    /// Packets dropped by loss rules already flushed, per node.
    loss_dropped: Mutex<BTreeMap<usize, u64>>,
    /// State files to remove on drop.
    state: Vec<PathBuf>,
    /// What this run actually created, so a half-built run is torn down too.
    created: Created,
}

#[derive(Default)]
struct Created {
    bridge: bool,
    namespaces: usize,
    table: bool,
}

impl Netns {
    /// Checks root and the tools, sweeps dead runs' leftovers, picks a free /16 and builds
    /// `nodes` namespaces on a new bridge with the run's nftables table.
    pub fn create(nodes: usize) -> Result<Netns, NetnsError> {
        check_available()?;
        for r in sweep_stale() {
            eprintln!("    removed a dead netns run's {r}");
        }
        let pid = std::process::id();
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let tag = tag(pid, seq);
        std::fs::create_dir_all(STATE_DIR)?;
        let in_use = format!("{}\n{}", run(&["ip", "-4", "-o", "addr"])?, run(&["ip", "-4", "route", "show", "table", "all"])?);
        // Start somewhere that depends on the run so concurrent runs rarely race for one X;
        // the reservation file (created exclusively) settles a race.
        let start = (pid.wrapping_mul(31).wrapping_add(seq)) % 239;
        let mut reserved = None;
        for k in 0..239u32 {
            let octet = (16 + (start + k) % 239) as u8;
            if subnet_in_use(octet, &in_use) {
                continue;
            }
            let path = PathBuf::from(STATE_DIR).join(format!("net-{octet}"));
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    f.write_all(tag.as_bytes())?;
                    reserved = Some((octet, path));
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e.into()),
            }
        }
        let (octet, net_file) = reserved.ok_or(NetnsError::NoSubnet)?;
        let state_file = PathBuf::from(STATE_DIR).join(&tag);
        let mut netns = Netns {
            plan: Plan { tag: tag.clone(), octet, nodes: 0 },
            cuts: Mutex::default(),
            loss: Mutex::default(),
            loss_dropped: Mutex::default(),
            state: vec![net_file],
            created: Created::default(),
        };
        netns.plan = Plan::new(pid, seq, octet, nodes)?;
        std::fs::write(&state_file, format!("10.{octet}.0.0/16 {nodes} nodes\n"))?;
        netns.state.push(state_file);
        let commands = netns.plan.create_commands();
        for (k, cmd) in commands.iter().enumerate() {
            run_owned(cmd)?;
            if k == 0 {
                netns.created.bridge = true;
            }
            if cmd.get(2).is_some_and(|c| c == "add") && cmd.get(1).is_some_and(|c| c == "netns") {
                netns.created.namespaces += 1;
            }
        }
        run_with_input(&["nft", "-f", "-"], Some(&netns.plan.table_script()))?;
        netns.created.table = true;
        Ok(netns)
    }

    /// The run's names and addresses.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// `program` to be run in node `i`'s namespace (`ip netns exec` execs it, so the pid
    /// the caller sees is the program's, for SIGSTOP and SIGKILL).
    pub fn command(&self, i: usize, program: &std::path::Path) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new("ip");
        cmd.args(["netns", "exec", &self.plan.namespace(i)]).arg(program);
        cmd
    }

    /// Drops (or stops dropping) every packet from node `from` to node `to`. Idempotent.
    pub fn cut(&self, from: usize, to: usize, cut: bool) -> Result<(), NetnsError> {
        let mut cuts = crate::recorder::lock(&self.cuts);
        if cuts.contains(&(from, to)) == cut {
            return Ok(());
        }
        run_owned(&self.plan.cut_command(from, to, cut))?;
        if cut {
            cuts.insert((from, to));
        } else {
            cuts.remove(&(from, to));
        }
        Ok(())
    }

    /// Resets (in the kernel, `ss -K`) every TCP connection between nodes `a` and `b`, from
    /// both namespaces: after a heal, a connection stalled through the cut is in TCP's
    /// exponential retransmission backoff and would resume only at its next retransmission,
    /// up to minutes later; reset, both nodes see it close and redial.
    pub fn reset(&self, a: usize, b: usize) -> Result<(), NetnsError> {
        for cmd in [self.plan.reset_command(a, b), self.plan.reset_command(b, a)] {
            run_owned(&cmd)?;
        }
        Ok(())
    }

    /// Sets (`Some(percent)`, 1..=100) or clears node `i`'s inbound loss.
    pub fn set_loss(&self, i: usize, percent: Option<u32>) -> Result<(), NetnsError> {
        let mut loss = crate::recorder::lock(&self.loss);
        let mut next = loss.clone();
        match percent.filter(|p| *p > 0) {
            Some(p) => next.insert(i, p.min(100)),
            None => next.remove(&i),
        };
        if next == *loss {
            return Ok(());
        }
        // The flush below resets the counters: keep what they counted.
        self.count_loss_drops();
        run_with_input(&["nft", "-f", "-"], Some(&self.plan.loss_script(&next)))?;
        *loss = next;
        Ok(())
    }

    /// Adds the loss chain's counters to the tally.
    fn count_loss_drops(&self) {
        let Ok(listing) = run(&["nft", "list", "chain", "bridge", &self.plan.table(), "loss"]) else { return };
        let mut dropped = crate::recorder::lock(&self.loss_dropped);
        for (addr, packets) in parse_counters(&listing) {
            if let Some(i) = addr.and_then(|a| self.plan.node_of(a)) {
                *dropped.entry(i).or_default() += packets;
            }
        }
    }

    /// What the kernel dropped so far, for the run's event log: packets dropped by cuts, and
    /// per degraded node by its loss rule. Evidence that the faults happened in the kernel.
    pub fn drop_report(&self) -> String {
        let cut = run(&["nft", "list", "chain", "bridge", &self.plan.table(), "forward"])
            .map(|l| parse_counters(&l).iter().map(|(_, p)| p).sum::<u64>().to_string())
            .unwrap_or_else(|e| format!("unknown ({e})"));
        let mut loss = crate::recorder::lock(&self.loss_dropped).clone();
        if let Ok(listing) = run(&["nft", "list", "chain", "bridge", &self.plan.table(), "loss"]) {
            for (addr, packets) in parse_counters(&listing) {
                if let Some(i) = addr.and_then(|a| self.plan.node_of(a)) {
                    *loss.entry(i).or_default() += packets;
                }
            }
        }
        let loss: Vec<String> = loss.iter().map(|(i, p)| format!("node {i}: {p}")).collect();
        format!(
            "nftables dropped {cut} packets between cut nodes and, by loss rules, {}",
            if loss.is_empty() { "none".to_owned() } else { loss.join(", ") }
        )
    }

    /// Removes everything this run created; returns the failures (each is left for the next
    /// run's sweep).
    fn teardown(&mut self) -> Vec<NetnsError> {
        let mut errors = Vec::new();
        if std::mem::take(&mut self.created.table)
            && let Err(e) = run(&["nft", "delete", "table", "bridge", &self.plan.table()])
        {
            errors.push(e);
        }
        for i in 0..std::mem::take(&mut self.created.namespaces) {
            // Deleting a namespace destroys its veth pair once no process is left in it.
            if let Err(e) = run(&["ip", "netns", "delete", &self.plan.namespace(i)]) {
                errors.push(e);
            }
            // A child that outlived us keeps its namespace (and veth) alive: unplug the veth.
            let _ = run(&["ip", "link", "delete", &self.plan.veth(i)]);
        }
        if std::mem::take(&mut self.created.bridge)
            && let Err(e) = run(&["ip", "link", "delete", &self.plan.bridge()])
        {
            errors.push(e);
        }
        for path in self.state.drain(..) {
            let _ = std::fs::remove_file(path);
        }
        errors
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for e in self.teardown() {
            eprintln!("netns cleanup of {}: {e} (the next netns run sweeps it)", self.plan.tag);
        }
    }
}

/// Names left over by process `pid`'s runs: namespaces, links and bridge tables whose name
/// starts with its prefix, and its state files. Empty after a clean run (the netns test
/// checks that).
pub fn leftovers(pid: u32) -> Vec<String> {
    let prefix = pid_prefix(pid);
    let mut found = Vec::new();
    if let Ok(list) = run(&["ip", "netns", "list"]) {
        found.extend(list.lines().filter_map(|l| l.split_whitespace().next()).filter(|n| n.starts_with(&prefix)).map(|n| format!("namespace {n}")));
    }
    if let Ok(links) = run(&["ip", "-o", "link", "show"]) {
        found.extend(
            links
                .lines()
                .filter_map(|l| l.split(": ").nth(1))
                .map(|n| n.split('@').next().unwrap_or(n))
                .filter(|n| n.starts_with(&prefix))
                .map(|n| format!("link {n}")),
        );
    }
    if let Ok(tables) = run(&["nft", "list", "tables"]) {
        found.extend(tables.lines().filter(|l| l.split_whitespace().last().is_some_and(|n| n.starts_with(&prefix))).map(str::to_owned));
    }
    if let Ok(entries) = std::fs::read_dir(STATE_DIR) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let owner_tag = if name.starts_with("net-") { std::fs::read_to_string(entry.path()).unwrap_or_default() } else { name };
            if owner_tag.starts_with(&prefix) {
                found.push(format!("state file {}", entry.path().display()));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_encode_the_pid_and_fit_the_kernel_limit() {
        assert_eq!(pid_prefix(0), "bzg0_");
        assert_eq!(pid_prefix(35), "bzgz_");
        assert_eq!(pid_prefix(4_194_304), "bzg2hwcg_");
        for pid in [1, 35, 36, 12_345, 4_194_304] {
            assert_eq!(owner(&tag(pid, 7)), Some(pid));
            let plan = Plan::new(pid, 7, 20, 100).expect("fits");
            assert_eq!(owner(&plan.veth(99)), Some(pid));
            assert_eq!(owner(&plan.namespace(3)), Some(pid));
            assert_eq!(owner(&plan.bridge()), Some(pid));
            assert!(plan.veth(99).len() <= IFNAMSIZ, "{}", plan.veth(99));
        }
        assert_eq!(tag(35, 2), "bzgz_2");
        assert_eq!(Plan::new(35, 2, 20, 4).expect("plan").veth(3), "bzgz_2v3");
        assert_eq!(owner("eth0"), None);
        assert_eq!(owner("bzgZZ"), None);
        // The largest pid, seq 99 and 1,000 nodes: "bzg" + 5 + "_99" + "v999" = 15.
        assert!(Plan::new(4_194_304, 99, 20, 1000).is_ok());
        assert!(matches!(Plan::new(4_194_304, 100, 20, 1000), Err(NetnsError::NameTooLong(_))));
    }

    #[test]
    fn addresses_are_distinct_in_the_run_s_slash_16_and_skip_the_bridge() {
        let plan = Plan::new(1234, 0, 42, 600).expect("plan");
        assert_eq!(plan.bridge_addr(), Ipv4Addr::new(10, 42, 0, 1));
        assert_eq!(plan.addr(0), Ipv4Addr::new(10, 42, 0, 2));
        assert_eq!(plan.addr(253), Ipv4Addr::new(10, 42, 0, 255));
        assert_eq!(plan.addr(254), Ipv4Addr::new(10, 42, 1, 0));
        let all: BTreeSet<Ipv4Addr> = (0..600).map(|i| plan.addr(i)).collect();
        assert_eq!(all.len(), 600);
        assert!(!all.contains(&plan.bridge_addr()));
        assert!(all.iter().all(|a| a.octets()[..2] == [10, 42]));
        assert_eq!(plan.multiaddr(1), "/ip4/10.42.0.3/tcp/7000");
        assert!(matches!(Plan::new(1, 0, 42, 70_000), Err(NetnsError::TooManyNodes(_))));
    }

    #[test]
    fn nft_text_cuts_one_direction_and_drops_a_share_of_inbound_packets() {
        let plan = Plan::new(1234, 3, 42, 4).expect("plan");
        assert_eq!(plan.cut_command(0, 2, true).join(" "), format!("nft add element bridge {} cut {{ 10.42.0.2 . 10.42.0.4 }}", plan.table()));
        assert_eq!(plan.cut_command(0, 2, false)[1], "delete");
        assert_eq!(plan.reset_command(1, 3).join(" "), format!("ip netns exec {} ss -K -t dst 10.42.0.5", plan.namespace(1)));
        let script = plan.table_script();
        assert!(script.starts_with(&format!("table bridge {} {{", plan.table())));
        assert!(script.contains("type filter hook forward priority 0; policy accept; ip saddr . ip daddr @cut counter drop; jump loss;"));
        let loss = BTreeMap::from([(1, 20), (3, 100)]);
        let text = plan.loss_script(&loss);
        let t = plan.table();
        assert_eq!(
            text,
            format!(
                "flush chain bridge {t} loss\nadd rule bridge {t} loss ip daddr 10.42.0.3 numgen random mod 100 < 20 counter drop\nadd rule bridge {t} loss ip daddr 10.42.0.5 counter drop\n"
            )
        );
        assert_eq!(plan.loss_script(&BTreeMap::new()), format!("flush chain bridge {t} loss\n"));
        assert_eq!(loss_percent(0.2), 20);
        assert_eq!(loss_percent(1.5), 100);
        assert_eq!(loss_percent(0.0), 0);
    }

    #[test]
    fn create_commands_build_the_bridge_first_and_each_node_in_its_namespace() {
        let plan = Plan::new(99, 0, 30, 2).expect("plan");
        let cmds: Vec<String> = plan.create_commands().iter().map(|c| c.join(" ")).collect();
        assert_eq!(cmds[0], format!("ip link add {} type bridge", plan.bridge()));
        assert_eq!(cmds[1], format!("ip addr add 10.30.0.1/16 dev {}", plan.bridge()));
        assert!(cmds.contains(&format!("ip link add {} type veth peer name eth0 netns {}", plan.veth(1), plan.namespace(1))));
        assert!(cmds.contains(&format!("ip -n {} addr add 10.30.0.3/16 dev eth0", plan.namespace(1))));
        assert_eq!(cmds.len(), 3 + 2 * 6);
        // No default route is ever added: the nodes reach their /16 only.
        assert!(cmds.iter().all(|c| !c.contains("route")));
    }

    #[test]
    fn counters_are_read_per_rule_and_addresses_map_back_to_nodes() {
        let listing = "table bridge bzg1_0 {\n\tchain loss {\n\t\tip daddr 10.42.0.3 numgen random mod 100 < 20 counter packets 12 bytes 3456 drop\n\t\tip daddr 10.42.0.5 counter packets 7 bytes 1 drop\n\t}\n}\n";
        assert_eq!(parse_counters(listing), vec![(Some(Ipv4Addr::new(10, 42, 0, 3)), 12), (Some(Ipv4Addr::new(10, 42, 0, 5)), 7)]);
        let forward = "\t\tip saddr . ip daddr @cut counter packets 99 bytes 5 drop\n\t\tjump loss\n";
        assert_eq!(parse_counters(forward), vec![(None, 99)]);
        let plan = Plan::new(1, 0, 42, 300).expect("plan");
        for i in [0, 1, 253, 254, 299] {
            assert_eq!(plan.node_of(plan.addr(i)), Some(i));
        }
        assert_eq!(plan.node_of(plan.bridge_addr()), None);
        assert_eq!(plan.node_of(Ipv4Addr::new(10, 43, 0, 2)), None);
        assert_eq!(plan.node_of(plan.addr(300)), None);
    }

    #[test]
    fn a_subnet_is_in_use_when_an_address_or_route_is_in_it() {
        let text = "4: eth0    inet 192.0.2.2/24 brd 192.0.2.255 scope global eth0\n10.20.0.0/16 dev x proto kernel scope link src 10.20.0.1";
        assert!(subnet_in_use(20, text));
        assert!(!subnet_in_use(21, text));
        assert!(!subnet_in_use(2, text));
        assert!(subnet_in_use(5, "10.0.0.0/8 via 1.2.3.4 dev eth1"));
    }
}
