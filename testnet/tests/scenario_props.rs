//! The scenario file decoder (`Scenario::load`: TOML, then `validate`) under property tests
//! (issue 11, point 8).
//!
//! Valid scenarios (every preset at committee sizes 1 to 16, the files in `scenarios/`, and
//! randomised ones built within the documented ranges) are written as TOML, then edited:
//! bytes (bit flips, truncation, insertions, removals, duplicated ranges, splices from
//! another scenario), numbers (any digit run replaced by a huge, negative, fractional or
//! non-finite value, the text form of a length prefix claiming gigabytes) and lines
//! (duplicated keys and tables, deleted, swapped and hostile lines, deep nesting). Loading
//! never panics or aborts, and a scenario that loads is one a run can use: it validates, it
//! writes back to TOML that loads to the same text, n >= 3f + 1 in exact arithmetic, every
//! node has a role, and every fault time is a representable duration.
//!
//! This crate has no proptest dependency, so cases come from a seeded ChaCha generator; a
//! failure names its seed (rerun with `SCENARIO_PROPS_SEED=<seed>`). The case count follows
//! `PROPTEST_CASES` like the other decoder tests: the long run is
//! `PROPTEST_CASES=100000 cargo test --release -p byzgossip-testnet --test scenario_props`.

use byzgossip_testnet::scenario::{
    Fault, FaultKind, MAX_DEGRADE_DELAY_MS, PRESETS, Phase, Role, Scenario, default_suite, preset,
};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha20Rng;
use std::path::{Path, PathBuf};
use std::time::Duration;

type Rng = ChaCha20Rng;

/// Runs `body` on `default` seeded cases (or `PROPTEST_CASES`), reporting the seed and the
/// input of a failing or panicking case.
fn run_cases(name: &str, default: u64, mut body: impl FnMut(&mut Rng, &mut String) -> Result<(), String>) {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let fixed: Option<u64> = std::env::var("SCENARIO_PROPS_SEED").ok().and_then(|v| v.parse().ok());
    let base = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    for case in 0..cases {
        let seed = fixed.unwrap_or(base.wrapping_add(case));
        let mut rng = Rng::seed_from_u64(seed);
        let mut input = String::new();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&mut rng, &mut input)));
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("{name}: case {case} failed (SCENARIO_PROPS_SEED={seed}): {e}\ninput:\n{input}"),
            Err(panic) => {
                eprintln!("{name}: case {case} panicked (SCENARIO_PROPS_SEED={seed})\ninput:\n{input}");
                std::panic::resume_unwind(panic);
            }
        }
        if fixed.is_some() {
            break;
        }
    }
}

/// A scratch file for one test.
struct Scratch {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("scenario.toml");
        Scratch { _dir: dir, path }
    }

    fn load(&self, text: &[u8]) -> Result<Scenario, String> {
        std::fs::write(&self.path, text).expect("write scenario");
        Scenario::load(&self.path).map_err(|e| e.to_string())
    }
}

/// What must hold for any scenario file: `load` returns (no panic, no abort), and a loaded
/// scenario is usable by a run.
fn check_file(scratch: &Scratch, text: &[u8]) -> Result<(), String> {
    let Ok(scenario) = scratch.load(text) else { return Ok(()) };
    check_usable(scratch, &scenario)
}

fn check_usable(scratch: &Scratch, scenario: &Scenario) -> Result<(), String> {
    scenario.validate().map_err(|e| format!("loaded but does not validate: {e}"))?;
    let (n, f) = (scenario.nodes as u128, scenario.f() as u128);
    if n < 3 * f + 1 {
        return Err(format!("accepted n = {n} with f = {f}"));
    }
    let roles = scenario.roles();
    let sybils: usize = scenario.groups.iter().filter(|g| !g.role.in_committee()).map(|g| g.count).sum();
    if roles.len() != scenario.nodes + sybils || !roles.contains(&Role::Honest) {
        return Err(format!("{} roles for {} nodes and {sybils} sybils", roles.len(), scenario.nodes));
    }
    for fault in &scenario.faults {
        let at = fault.time_s(&scenario.timeline).max(0.0);
        Duration::try_from_secs_f64(at).map_err(|e| format!("a {} fault at {at} s: {e}", fault.kind.name()))?;
        if fault.nodes.iter().any(|i| *i >= roles.len()) {
            return Err(format!("a fault names a node out of 0..{}", roles.len()));
        }
    }
    let t = &scenario.timeline;
    Duration::try_from_secs_f64(t.warmup_s + t.attack_s + t.cooldown_s + t.drain_s).map_err(|e| e.to_string())?;
    let text = scenario.to_toml();
    let again = scratch.load(text.as_bytes()).map_err(|e| format!("written back, it does not load: {e}\n{text}"))?;
    if again.to_toml() != text {
        return Err(format!("writing back is not stable:\n{text}\n---\n{}", again.to_toml()));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Valid scenarios.

fn scenario_files() -> Vec<(PathBuf, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("scenarios/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("read");
            (p, text)
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no scenario files in {}", dir.display());
    files
}

fn pick<'a, T>(rng: &mut Rng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

/// A valid scenario: a preset at a random size, or a scenario file, with its numbers
/// re-drawn within the documented ranges.
fn valid_scenario(rng: &mut Rng) -> Scenario {
    let mut s = if rng.random_bool(0.3) {
        let files = scenario_files();
        toml::from_str(&pick(rng, &files).1).expect("scenario file parses")
    } else {
        let nodes = rng.random_range(1..=16);
        preset(pick(rng, PRESETS).0, nodes).expect("preset")
    };
    if rng.random_bool(0.5) {
        s.seed = rng.random();
        s.workload.broadcasts_per_s = rng.random_range(0.0..=1000.0);
        s.workload.gossip_per_s = rng.random_range(0.0..=1000.0);
        s.workload.value_size = rng.random_range(16..=60_000);
        s.workload.gossip_size = rng.random_range(16..=60_000);
        s.timeline.warmup_s = rng.random_range(0.0..=3600.0);
        s.timeline.attack_s = rng.random_range(0.0..=3600.0);
        s.timeline.cooldown_s = rng.random_range(0.0..=3600.0);
        s.timeline.drain_s = rng.random_range(0.0..=3600.0);
        s.deadlines.totality_s = rng.random_range(0.0..=600.0);
        s.deadlines.detection_s = rng.random_range(0.0..=600.0);
        s.attack.rate_per_s = rng.random_range(0.0..=5000.0);
    }
    let total = s.roles().len();
    for _ in 0..rng.random_range(0..4) {
        let kind = *pick(rng, &[FaultKind::Kill, FaultKind::Restart, FaultKind::Pause, FaultKind::Resume, FaultKind::Partition, FaultKind::Heal, FaultKind::Degrade, FaultKind::Restore]);
        let nodes: Vec<usize> = (0..rng.random_range(1..=total.min(4))).map(|_| rng.random_range(0..total)).collect();
        let mut fault = if rng.random_bool(0.5) {
            Fault::at_phase(*pick(rng, &[Phase::AttackStart, Phase::AttackMid, Phase::AttackEnd]), kind, nodes)
        } else {
            Fault { at_s: rng.random_range(0.0..100.0), ..Fault::at_phase(Phase::AttackStart, kind, nodes) }
        };
        if fault.at_s > 0.0 {
            fault.at = None;
        }
        if kind == FaultKind::Degrade {
            fault.loss = rng.random_range(0.0..=1.0);
            fault.delay_ms = rng.random_range(0..=MAX_DEGRADE_DELAY_MS);
        }
        s.faults.push(fault);
    }
    let honest = s.roles().iter().filter(|r| **r == Role::Honest).count();
    s.attack.victim = rng.random_range(0..honest);
    s.validate().unwrap_or_else(|e| panic!("generated scenario is invalid: {e}\n{}", s.to_toml()));
    s
}

#[test]
fn every_preset_and_scenario_file_loads_and_is_usable() {
    let scratch = Scratch::new();
    for nodes in 1..=16 {
        for scenario in default_suite(nodes) {
            if let Err(e) = check_usable(&scratch, &scenario) {
                panic!("preset {} at n = {nodes}: {e}", scenario.name);
            }
        }
    }
    for (path, text) in scenario_files() {
        let scenario = scratch.load(text.as_bytes()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if let Err(e) = check_usable(&scratch, &scenario) {
            panic!("{}: {e}", path.display());
        }
    }
}

#[test]
fn valid_scenarios_round_trip() {
    let scratch = Scratch::new();
    run_cases("valid_scenarios_round_trip", 128, |rng, input| {
        let scenario = valid_scenario(rng);
        *input = scenario.to_toml();
        let loaded = scratch.load(input.as_bytes()).map_err(|e| format!("a valid scenario does not load: {e}"))?;
        if loaded != scenario {
            return Err("loaded scenario differs".into());
        }
        check_usable(&scratch, &loaded)
    });
}

// ---------------------------------------------------------------------------------------
// Edits.

/// Numbers a hostile file puts where a count, a size, a time or a probability goes.
const HOSTILE_NUMBERS: &[&str] = &[
    "18446744073709551615",
    "9223372036854775807",
    "9223372036854775808",
    "6148914691236517206",
    "6148914691236517205",
    "4611686018427387904",
    "1000000000000",
    "4294967296",
    "1025",
    "100000",
    "-1",
    "-9223372036854775808",
    "0",
    "1e308",
    "1e400",
    "-1e308",
    "5e-324",
    "inf",
    "-inf",
    "nan",
    "0.5",
    "3600.0000001",
];

fn hostile_lines() -> Vec<String> {
    let mut lines: Vec<String> = [
        "nodes = 1000000000000",
        "nodes = 9223372036854775807",
        "f = 6148914691236517206",
        "f = 6148914691236517205",
        "[[groups]]\nrole = \"sybil\"\ncount = 1000000000000",
        "[[groups]]\nrole = \"silent\"\ncount = 9223372036854775807",
        "[[groups]]\nrole = \"sybil\"\ncount = 9223372036854775807\n[[groups]]\nrole = \"sybil\"\ncount = 9223372036854775807",
        "[[groups]]\nrole = \"honest\"\ncount = 1000000000000",
        "[[faults]]\nat_s = inf\nkind = \"kill\"\nnodes = [0]",
        "[[faults]]\nat_s = 1e300\nkind = \"heal\"",
        "[[faults]]\nat_s = nan\nkind = \"heal\"",
        "[[faults]]\nat_s = -5.0\nkind = \"heal\"",
        "[[faults]]\nkind = \"degrade\"\nnodes = [18446744073709551615]\nloss = 0.5",
        "[[faults]]\nkind = \"degrade\"\nnodes = [0]\ndelay_ms = 18446744073709551615",
        "[[faults]]\nkind = \"partition\"\nnodes = [0, 0, 0, 0, 0, 0, 0, 0]",
        "[timeline]\nwarmup_s = 3600.0\nattack_s = 3600.0\ncooldown_s = 3600.0\ndrain_s = 3600.0",
        "[deadlines]\ntotality_s = nan\ndetection_s = -inf",
        "[attack]\nvictim = 18446744073709551615",
        "[links]\nbandwidth_mbps = 5e-324\nloss = 0.999999",
        "[workload]\nvalue_size = 18446744073709551615",
        "seed = -1",
        "name = \"\"",
        "[[groups]]",
        "[[faults]]",
        "[workload]\n[workload]",
        "x = \"\"\"unterminated",
        "=",
        "[",
    ]
    .map(String::from)
    .to_vec();
    lines.push(format!("x = {}1{}", "[".repeat(5000), "]".repeat(5000)));
    lines.push(format!("x = {}1{}", "{a=".repeat(2000), "}".repeat(2000)));
    lines.push(format!("x = {}", "[".repeat(5000)));
    lines.push(format!("{} = 1", "a.".repeat(3000) + "a"));
    lines.push(format!("[{}]", "a.".repeat(3000) + "a"));
    lines
}

/// One random byte-level edit.
fn edit_bytes(rng: &mut Rng, bytes: &mut Vec<u8>, donor: &[u8]) {
    let len = bytes.len();
    let at = |rng: &mut Rng, n: usize| rng.random_range(0..n.max(1)).min(n);
    match rng.random_range(0..7u8) {
        0 if len > 0 => {
            let i = at(rng, len);
            bytes[i] ^= 1 << rng.random_range(0..8);
        }
        1 if len > 0 => {
            let i = at(rng, len);
            bytes[i] = rng.random();
        }
        2 => bytes.truncate(at(rng, len + 1)),
        3 => {
            let i = at(rng, len + 1);
            let more: Vec<u8> = (0..rng.random_range(1..16)).map(|_| rng.random()).collect();
            bytes.splice(i..i, more);
        }
        4 if len > 0 => {
            let i = at(rng, len);
            let end = (i + rng.random_range(1..64)).min(len);
            bytes.drain(i..end);
        }
        5 if len > 0 => {
            let i = at(rng, len);
            let end = (i + rng.random_range(1..128)).min(len);
            let range = bytes[i..end].to_vec();
            bytes.splice(end..end, range);
        }
        6 if !donor.is_empty() => {
            let i = at(rng, len + 1);
            let from = at(rng, donor.len());
            let piece = &donor[from..(from + rng.random_range(1..256)).min(donor.len())];
            let end = (i + piece.len()).min(len);
            bytes.splice(i..end, piece.iter().copied());
        }
        _ => {}
    }
}

/// Replaces one run of digits (a count, a size, a time) with a hostile number.
fn edit_number(rng: &mut Rng, text: &str) -> String {
    let bytes = text.as_bytes();
    let runs: Vec<(usize, usize)> = {
        let mut runs = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i].is_ascii_digit() {
                let start = i;
                while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
                    i += 1;
                }
                runs.push((start, i));
            } else {
                i += 1;
            }
        }
        runs
    };
    if runs.is_empty() {
        return text.to_owned();
    }
    let (start, end) = *pick(rng, &runs);
    format!("{}{}{}", &text[..start], pick(rng, HOSTILE_NUMBERS), &text[end..])
}

/// One random line-level edit.
fn edit_lines(rng: &mut Rng, text: &str, hostile: &[String]) -> String {
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let n = lines.len();
    match rng.random_range(0..5u8) {
        0 if n > 0 => {
            let i = rng.random_range(0..n);
            lines.insert(i, lines[i].clone());
        }
        1 if n > 0 => {
            lines.remove(rng.random_range(0..n));
        }
        2 if n > 0 => {
            let (a, b) = (rng.random_range(0..n), rng.random_range(0..n));
            lines.swap(a, b);
        }
        3 if n > 0 => {
            let i = rng.random_range(0..n);
            if let Some((key, _)) = lines[i].split_once('=') {
                lines[i] = format!("{key}= {}", pick(rng, HOSTILE_NUMBERS));
            }
        }
        _ => {
            let i = rng.random_range(0..=n);
            lines.insert(i, pick(rng, hostile).clone());
        }
    }
    lines.join("\n")
}

/// One to four edits of any kind.
fn edit(rng: &mut Rng, text: &str, donor: &str, hostile: &[String]) -> Vec<u8> {
    let mut text = text.to_owned();
    for _ in 0..rng.random_range(1..=4) {
        text = match rng.random_range(0..3u8) {
            0 => edit_number(rng, &text),
            1 => edit_lines(rng, &text, hostile),
            _ => {
                let mut bytes = text.into_bytes();
                edit_bytes(rng, &mut bytes, donor.as_bytes());
                // Invalid UTF-8 is tested on its own below; keep editing text.
                String::from_utf8_lossy(&bytes).into_owned()
            }
        };
    }
    text.into_bytes()
}

#[test]
fn scenario_loader_survives_arbitrary_bytes() {
    let scratch = Scratch::new();
    run_cases("scenario_loader_survives_arbitrary_bytes", 256, |rng, input| {
        let bytes: Vec<u8> = (0..rng.random_range(0..400)).map(|_| rng.random()).collect();
        *input = format!("{bytes:?}");
        check_file(&scratch, &bytes)
    });
}

#[test]
fn edited_scenarios_never_panic_and_what_loads_is_usable() {
    let scratch = Scratch::new();
    let hostile = hostile_lines();
    run_cases("edited_scenarios_never_panic_and_what_loads_is_usable", 384, |rng, input| {
        let text = valid_scenario(rng).to_toml();
        let donor = valid_scenario(rng).to_toml();
        let edited = edit(rng, &text, &donor, &hostile);
        *input = String::from_utf8_lossy(&edited).into_owned();
        check_file(&scratch, &edited)
    });
}

/// Every hostile line appended to every preset: the bounds `validate` must enforce before a
/// run allocates per node or converts a time.
#[test]
fn hostile_lines_in_every_preset_are_refused_or_usable() {
    let scratch = Scratch::new();
    for scenario in default_suite(7) {
        let text = scenario.to_toml();
        for line in hostile_lines() {
            // Top-level keys go before the first table; tables go at the end.
            let edited = if line.starts_with('[') { format!("{text}\n{line}\n") } else { format!("{line}\n{text}") };
            if let Err(e) = check_file(&scratch, edited.as_bytes()) {
                panic!("{} with {line:?}: {e}", scenario.name);
            }
        }
    }
}

/// Counts that would make `roles()` allocate per node are refused: a committee beyond what a
/// run can start, or groups whose counts overflow.
#[test]
fn huge_node_and_group_counts_are_refused() {
    let scratch = Scratch::new();
    for text in [
        "name = \"t\"\nnodes = 1000000000000\n",
        "name = \"t\"\nnodes = 4\n[[groups]]\nrole = \"sybil\"\ncount = 1000000000000\n",
        "name = \"t\"\nnodes = 4\n[[groups]]\nrole = \"silent\"\ncount = 9223372036854775807\n[[groups]]\nrole = \"forge\"\ncount = 9223372036854775807\n",
        "name = \"t\"\nnodes = 4\nf = 6148914691236517206\n",
        "name = \"t\"\nnodes = 4\n[[faults]]\nat_s = inf\nkind = \"heal\"\n",
    ] {
        assert!(scratch.load(text.as_bytes()).is_err(), "accepted:\n{text}");
    }
}
