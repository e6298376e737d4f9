//! A child process that decodes a corpus with its data segment capped, so any allocation
//! beyond the budget aborts it.
//!
//! A counting `#[global_allocator]` needs an `unsafe impl GlobalAlloc`, which the workspace's
//! `unsafe_code = "forbid"` lint refuses, so the cap is the kernel's instead: the test re-runs
//! its own binary filtered to itself; the child builds its corpus, reads its `VmData`, lowers
//! its own `RLIMIT_DATA` (with `prlimit --pid`) to that plus the budget, and decodes. glibc's
//! mmap threshold is pinned at 64 KiB so every large allocation is a fresh mapping, counted
//! to the page; allocating past the cap makes the allocator fail, and Rust aborts the child
//! with "memory allocation of N bytes failed". Linux only, like the CI machine.
#![allow(dead_code)]

use std::process::Command;

/// Heap growth allowed on top of each budget for the decoder's small bookkeeping (error
/// strings, the test harness, malloc's own top padding).
pub const SLACK: usize = 256 * 1024;
/// Set in a probe child to the name of the test it runs.
pub const ENV: &str = "BYZGOSSIP_DECODE_PROBE";

/// In the parent: runs the test `name` again as a child with the probe switched on and
/// fails unless it finishes. In the child: decodes `corpus()` under `budget(max input)`.
pub fn run(name: &str, corpus: impl FnOnce() -> Vec<Vec<u8>>, budget: impl Fn(usize) -> usize, decode: impl Fn(&[u8])) {
    if std::env::var(ENV).as_deref() == Ok(name) {
        child(corpus(), budget, decode);
        return;
    }
    match spawn(name) {
        Ok(summary) => println!("{summary}"),
        Err(failure) => panic!("{failure}"),
    }
}

/// Runs the test `name` as a probe child: its summary line, or why it failed.
pub fn spawn(name: &str) -> Result<String, String> {
    let output = Command::new(std::env::current_exe().expect("test binary"))
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(ENV, name)
        .env("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=65536")
        .env("MALLOC_MMAP_THRESHOLD_", "65536")
        .output()
        .expect("run the probe child");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    match stdout.lines().find(|l| l.starts_with("probe ok")) {
        Some(summary) if output.status.success() => Ok(summary.to_owned()),
        _ => Err(format!("allocation probe {name} failed ({}):\n{stdout}\n{stderr}", output.status)),
    }
}

fn child(corpus: Vec<Vec<u8>>, budget: impl Fn(usize) -> usize, decode: impl Fn(&[u8])) {
    let max_input = corpus.iter().map(Vec::len).max().unwrap_or(0);
    let budget = budget(max_input) + SLACK;
    println!("probe: {} inputs of at most {max_input} bytes, budget {budget} bytes", corpus.len());
    let cap = vm_data() + budget;
    let status = Command::new("prlimit")
        .arg("--pid")
        .arg(std::process::id().to_string())
        .arg(format!("--data={cap}:{cap}"))
        .status()
        .expect("prlimit (util-linux) is needed for the allocation probe");
    assert!(status.success(), "prlimit failed: {status}");
    let limits = std::fs::read_to_string("/proc/self/limits").expect("limits");
    assert!(
        limits.lines().any(|l| l.starts_with("Max data size") && l.contains(&cap.to_string())),
        "the data limit is not in force:\n{limits}"
    );
    for input in &corpus {
        decode(input);
    }
    println!("probe ok: {} inputs decoded within {budget} bytes of heap growth", corpus.len());
}

/// The process's private writable memory (what `RLIMIT_DATA` caps), in bytes.
fn vm_data() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmData:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        .expect("VmData");
    kb * 1024
}
