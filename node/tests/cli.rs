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

/// A `byzgossip run` child for the API token tests: killed when dropped, its stderr kept.
struct Running {
    child: std::process::Child,
    api: String,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Running {
    /// Starts `byzgossip run ARGS --exit-on-stdin-eof` and waits (bounded) for its API address.
    fn start(args: &[&str]) -> Running {
        use std::io::{BufRead, Read};
        use std::process::Stdio;
        let mut child = Command::new(env!("CARGO_BIN_EXE_byzgossip"))
            .arg("run")
            .args(args)
            .args(["--listen", "/ip4/127.0.0.1/tcp/0", "--exit-on-stdin-eof"])
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starts");
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (mut pipe, kept) = (child.stderr.take().expect("stderr"), stderr.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                kept.lock().expect("lock").push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("HTTP API on http://") {
                    let _ = tx.send(addr.trim().to_owned());
                }
            }
        });
        match rx.recv_timeout(std::time::Duration::from_secs(30)) {
            Ok(api) => Running { child, api, stderr },
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the node did not start: {}", stderr.lock().expect("lock"));
            }
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().expect("lock").clone()
    }

    /// The stderr so far once it contains `text` (bounded wait: the pipe is read on a thread).
    fn stderr_with(&self, text: &str) -> String {
        let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let stderr = self.stderr();
            if stderr.contains(text) || std::time::Instant::now() >= end {
                return stderr;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Closes stdin and waits (bounded) for a clean exit.
    fn stop(mut self) {
        drop(self.child.stdin.take());
        let end = std::time::Instant::now() + std::time::Duration::from_secs(15);
        while std::time::Instant::now() < end {
            if self.child.try_wait().expect("wait").is_some() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("the node did not stop");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a client command with the environment variable `BYZGOSSIP_API_TOKEN` set or removed.
fn client(args: &[&str], env_token: Option<&str>) -> (bool, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_byzgossip"));
    command.args(args).env("RUST_BACKTRACE", "0");
    match env_token {
        Some(token) => command.env("BYZGOSSIP_API_TOKEN", token),
        None => command.env_remove("BYZGOSSIP_API_TOKEN"),
    };
    let out = command.output().expect("runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!text.contains("panicked"), "{text}");
    (out.status.success(), text)
}

/// The token lives in `<data>/api-token`: created on first start with mode 0600 and shown on
/// stderr once, the same token on restart (not shown again). `broadcast` and `publish` send
/// it when told where it is (`--data`, `--api-token-file`, `BYZGOSSIP_API_TOKEN`) and fail
/// with a hint without it.
#[test]
fn api_token_is_created_0600_in_the_data_dir_reused_on_restart_and_read_by_the_cli() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = dir.path().to_str().expect("utf8");
    let (ok, _) = byzgossip(&["genesis", "--nodes", "1", "--out", &format!("{base}/net")]);
    assert!(ok);
    let (genesis, key, data) = (format!("{base}/net/genesis.toml"), format!("{base}/net/node-0.key"), format!("{base}/data"));
    let node_args = ["--genesis", genesis.as_str(), "--key", key.as_str(), "--data", data.as_str(), "--api", "127.0.0.1:0"];
    let node = Running::start(&node_args);
    let token_path = format!("{data}/api-token");
    let token = std::fs::read_to_string(&token_path).expect("token file").trim().to_owned();
    assert_eq!(token.len(), 64, "{token}");
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()), "{token}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&token_path).expect("meta").permissions().mode() & 0o777, 0o600);
    }
    assert_eq!(node.stderr_with(&token).matches(&token).count(), 1, "{}", node.stderr());

    let api = node.api.clone();
    let (ok, text) = client(&["broadcast", "--api", &api, "no token"], None);
    assert!(!ok && text.contains("401") && text.contains("--data"), "{text}");
    let (ok, text) = client(&["broadcast", "--api", &api, "--data", &data, "with --data"], None);
    assert!(ok && text.contains("\"seq\""), "{text}");
    let (ok, text) = client(&["publish", "--api", &api, "--topic", "news", "--api-token-file", &token_path, "hi"], None);
    assert!(ok && text.contains("\"id\""), "{text}");
    let (ok, text) = client(&["broadcast", "--api", &api, "from the environment"], Some(&token));
    assert!(ok, "{text}");
    let (ok, text) = client(&["broadcast", "--api", &api, "wrong"], Some(&"0".repeat(64)));
    assert!(!ok && text.contains("401") && text.contains("wrong API token"), "{text}");
    // Reads need no token.
    let (ok, text) = client(&["status", "--api", &api], None);
    assert!(ok, "{text}");
    node.stop();

    let node = Running::start(&node_args);
    let again = std::fs::read_to_string(&token_path).expect("token file").trim().to_owned();
    assert_eq!(again, token, "the token changed on restart");
    assert!(!node.stderr().contains(&token), "shown again: {}", node.stderr());
    let (ok, text) = client(&["broadcast", "--api", &node.api, "--data", &data, "after restart"], None);
    assert!(ok, "{text}");
    node.stop();
}

/// `api_token_file` in the config file (or `--api-token-file`) names where the token lives,
/// with or without a data directory.
#[test]
fn api_token_file_from_the_config_file_is_created_and_used() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = dir.path().to_str().expect("utf8");
    let (ok, _) = byzgossip(&["genesis", "--nodes", "1", "--out", &format!("{base}/net")]);
    assert!(ok);
    let token_path = format!("{base}/secrets/token");
    let config = format!("{base}/node.toml");
    std::fs::write(
        &config,
        format!("genesis = \"{base}/net/genesis.toml\"\nkey = \"{base}/net/node-0.key\"\napi = \"127.0.0.1:0\"\napi_token_file = \"{token_path}\"\n"),
    )
    .expect("write config");
    let node = Running::start(&["--config", &config]);
    let token = std::fs::read_to_string(&token_path).expect("token file").trim().to_owned();
    assert!(node.stderr_with(&token).contains(&token), "{}", node.stderr());
    let (ok, text) = client(&["broadcast", "--api", &node.api, "--api-token-file", &token_path, "v"], None);
    assert!(ok, "{text}");
    // --api-token-file and --data name the same thing twice: refused.
    let (ok, text) = client(&["broadcast", "--api", &node.api, "--api-token-file", &token_path, "--data", base, "v"], None);
    assert!(!ok && text.contains("cannot be used with"), "{text}");
    node.stop();

    // Without a data directory or token file: a token for this run, shown on stderr.
    let node = Running::start(&["--genesis", &format!("{base}/net/genesis.toml"), "--key", &format!("{base}/net/node-0.key"), "--api", "127.0.0.1:0"]);
    let shown = node.stderr_with("API token for this run only");
    let token = shown.split("--api-token-file): ").nth(1).and_then(|t| t.split_whitespace().next()).unwrap_or_else(|| panic!("{shown}"));
    let (ok, text) = client(&["broadcast", "--api", &node.api, "v"], Some(token));
    assert!(ok, "{text}");
    node.stop();
}

/// A data directory belongs to one network and one key: `run` on a directory written for
/// another network (or by another key) exits non-zero, naming both, and leaves it untouched.
#[test]
fn run_refuses_a_data_dir_of_another_network_or_key() {
    use byzgossip_node::storage::{RedbStore, Store};
    let dir = tempfile::tempdir().expect("tempdir");
    let base = dir.path().to_str().expect("utf8");
    let (ok, _) = byzgossip(&["genesis", "--nodes", "1", "--out", &format!("{base}/net")]);
    assert!(ok);
    let genesis = format!("{base}/net/genesis.toml");
    let key = format!("{base}/net/node-0.key");
    let ours = byzgossip_crypto::Genesis::load(std::path::Path::new(&genesis)).expect("genesis").network_id();
    let me = byzgossip_crypto::Keypair::load(std::path::Path::new(&key)).expect("key").public();
    let other_network = byzgossip_crypto::NetworkId([0x5a; 32]);
    let other_key = byzgossip_crypto::PublicKey([0x6b; 32]);

    for (network, public) in [(other_network, me), (ours, other_key)] {
        let data = tempfile::tempdir().expect("data dir");
        RedbStore::open(data.path()).expect("open").bind(network, public).expect("bind");
        let (ok, text) = byzgossip(&[
            "run", "--genesis", &genesis, "--key", &key, "--data", data.path().to_str().expect("utf8"),
            "--listen", "/ip4/127.0.0.1/tcp/0",
        ]);
        assert!(!ok, "{text}");
        for value in [network.to_hex(), public.to_hex(), ours.to_hex(), me.to_hex()] {
            assert!(text.contains(&value), "the error names {value}: {text}");
        }
        assert!(text.contains("belongs to network"), "{text}");
        // Still bound to its first owner.
        RedbStore::open(data.path()).expect("reopen").bind(network, public).expect("unchanged");
    }
}
