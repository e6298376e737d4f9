//! The `byzgossip` binary's error paths: a clear message and a non-zero exit, never a panic.

use std::process::Command;

fn byzgossip(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_byzgossip")).args(args).env("RUST_BACKTRACE", "0").output().expect("runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!text.contains("panicked"), "{text}");
    (out.status.success(), text)
}

#[test]
fn genesis_writes_keys_that_load_back_and_corruption_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("keys");
    let out = out.to_str().expect("utf8");
    let (ok, text) = byzgossip(&["genesis", "--nodes", "7", "--out", out]);
    assert!(ok, "{text}");
    assert!(text.contains("wrote 7 keys"), "{text}");
    let genesis = format!("{out}/genesis.toml");
    let (ok, text) = byzgossip(&["inspect", "--genesis", &genesis]);
    assert!(ok && text.contains("n = 7, f = 2"), "{text}");
    // Writing again refuses to overwrite keys.
    let (ok, text) = byzgossip(&["genesis", "--nodes", "7", "--out", out]);
    assert!(!ok && text.contains("File exists"), "{text}");
    // A corrupted genesis is a clear error.
    std::fs::write(&genesis, "name = \"x\"\nmembers = [\"zz\"]\n").expect("write");
    let (ok, text) = byzgossip(&["inspect", "--genesis", &genesis]);
    assert!(!ok && text.contains("genesis file") && text.contains("hex"), "{text}");
}

#[test]
fn run_refuses_a_missing_key_a_foreign_key_and_a_busy_port() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = dir.path().to_str().expect("utf8");
    let (ok, _) = byzgossip(&["genesis", "--nodes", "4", "--out", &format!("{base}/net")]);
    assert!(ok);
    let genesis = format!("{base}/net/genesis.toml");

    let (ok, text) = byzgossip(&["run", "--genesis", &genesis, "--key", &format!("{base}/missing.key")]);
    assert!(!ok && text.contains("missing.key"), "{text}");

    let (ok, _) = byzgossip(&["keygen", "--out", &format!("{base}/stranger.key")]);
    assert!(ok);
    let (ok, text) = byzgossip(&["run", "--genesis", &genesis, "--key", &format!("{base}/stranger.key")]);
    assert!(!ok && text.contains("not a member of the committee"), "{text}");

    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = busy.local_addr().expect("addr").port();
    let (ok, text) = byzgossip(&[
        "run", "--genesis", &genesis, "--key", &format!("{base}/net/node-0.key"),
        "--listen", "/ip4/127.0.0.1/tcp/0", "--api", &format!("127.0.0.1:{port}"),
    ]);
    assert!(!ok && text.contains("cannot listen") && text.contains(&port.to_string()), "{text}");

    let (ok, text) = byzgossip(&[
        "run", "--genesis", &genesis, "--key", &format!("{base}/net/node-0.key"),
        "--listen", "/ip4/127.0.0.1/tcp/0", "--sync-interval-ms", "0",
    ]);
    assert!(!ok && text.contains("must be positive"), "{text}");
}

/// `run --exit-on-stdin-eof`: a supervisor that dies (closing the node's stdin) takes the
/// node with it, cleanly: the node exits with success, not by a signal.
#[test]
fn run_exits_cleanly_when_stdin_closes_under_the_supervisor_flag() {
    use std::io::BufRead;
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().expect("tempdir");
    let base = dir.path().to_str().expect("utf8");
    let (ok, _) = byzgossip(&["genesis", "--nodes", "1", "--out", &format!("{base}/net")]);
    assert!(ok);
    let mut child = Command::new(env!("CARGO_BIN_EXE_byzgossip"))
        .args(["run", "--genesis", &format!("{base}/net/genesis.toml"), "--key", &format!("{base}/net/node-0.key")])
        .args(["--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0", "--exit-on-stdin-eof"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starts");
    // Wait (bounded) for the node to be up: it prints its API address last.
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Keep reading to the end, so the node never writes to a closed pipe.
        let mut up = false;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if !up && line.starts_with("HTTP API on") {
                up = true;
                let _ = tx.send(true);
            }
        }
        let _ = tx.send(up);
    });
    if rx.recv_timeout(Duration::from_secs(30)) != Ok(true) {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the node did not start");
    }
    drop(child.stdin.take());
    let end = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if Instant::now() >= end {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the node still runs 15 s after its stdin closed");
    };
    assert!(status.success(), "{status}");
}
