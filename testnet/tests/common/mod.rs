//! What the process-mode tests (`process_mode.rs`, `netns.rs`) share: the lock that runs one
//! testnet at a time, the `byzgossip` binary of the same target directory (refused if missing
//! or stale), and a guard that kills and reaps a child however the test ends.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

/// Held for a whole test: the timed invariants assume the machine is not shared by several
/// testnets. Each test binary has its own (cargo runs test binaries one after another).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// What every test starts with: the lock (held until the first value is dropped, so bind it
/// to a named variable), the `byzgossip` binary and a temporary directory for the run's output.
pub fn begin() -> (MutexGuard<'static, ()>, PathBuf, tempfile::TempDir) {
    let one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let byzgossip = byzgossip_binary();
    let tmp = tempfile::tempdir().expect("tempdir");
    (one, byzgossip, tmp)
}

/// Kills and reaps the child on drop (panic, timeout, early return).
pub struct Guard(pub std::process::Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits for `child` at most `limit`; None on timeout (the guard then kills it).
pub fn wait(guard: &mut Guard, limit: Duration) -> Option<std::process::ExitStatus> {
    let end = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = guard.0.try_wait() {
            return Some(status);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The `byzgossip` binary next to the testnet binary, checked to be newer than every source
/// file it is built from. `cargo test --workspace` builds it (the node's own tests need it)
/// before any test runs. The test does not run `cargo build` itself: the outer `cargo test`
/// holds the target directory's lock while tests run, so an inner build waited for it (and a
/// build with the node's features alone would recompile libp2p).
///
/// The check scans every source file and names the newest one when the binary is older, so
/// the message points at the file edited last rather than at whichever newer file the
/// directory walk met first (the two former copies refused exactly the same binaries).
fn byzgossip_binary() -> PathBuf {
    let testnet = PathBuf::from(env!("CARGO_BIN_EXE_byzgossip-testnet"));
    let binary = testnet.with_file_name("byzgossip");
    let built = std::fs::metadata(&binary).and_then(|m| m.modified()).unwrap_or_else(|_| {
        panic!("no byzgossip binary at {}: run `cargo test --workspace` or `cargo build -p byzgossip-node` first", binary.display())
    });
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut newest = None;
    for dir in ["crypto", "reputation", "bracha", "engine", "node"] {
        newest_source(&workspace.join(dir), &mut newest);
    }
    if let Some((modified, path)) = newest {
        assert!(
            modified <= built,
            "{} is older than {}: run `cargo test --workspace` or `cargo build -p byzgossip-node` first",
            binary.display(),
            path.display()
        );
    }
    binary
}

/// The newest `.rs` or `Cargo.toml` under `dir` (skipping `target`), into `newest`.
fn newest_source(dir: &Path, newest: &mut Option<(SystemTime, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "target") {
                newest_source(&path, newest);
            }
        } else if (path.extension().is_some_and(|e| e == "rs") || path.file_name().is_some_and(|n| n == "Cargo.toml"))
            && let Ok(modified) = entry.metadata().and_then(|m| m.modified())
            && newest.as_ref().is_none_or(|(t, _)| modified > *t)
        {
            *newest = Some((modified, path));
        }
    }
}
