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
}
