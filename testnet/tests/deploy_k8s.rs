//! `byzgossip-testnet deploy k8s` (issue #14 point 3).
//!
//! - Always: the cluster manifests of a 4-member committee with 2 observers have the
//!   structure the README promises (every key a Secret, the genesis ConfigMap is the genesis,
//!   replicas, DNS names in the bootstrap list, key per ordinal, scrape annotations), and,
//!   when `kubernetes-validate` (PyPI) is installed, they validate against the Kubernetes
//!   schemas offline; otherwise that half says why it skipped.
//! - When podman can run here (root, `podman` and `/usr/sbin/runc`): the image is built from
//!   the workspace's `byzgossip` binary with deploy/build-image.sh, the podman variant of a
//!   4-member committee is played on a podman network of its own, a broadcast through one
//!   pod's HTTP API is delivered at every pod, and everything the test made (pods,
//!   containers, volumes, network, image) is removed, also when it fails. Otherwise it says
//!   why it skipped. `.ci/run` installs podman, runc and kubernetes-validate.

use byzgossip_crypto::{Genesis, Keypair};
use byzgossip_node::identity::peer_id;
use byzgossip_testnet::deploy::objects::{Object, from_yaml, secret_text};
use byzgossip_testnet::deploy::podman::files_configmap_name;
use byzgossip_testnet::deploy::{self, DeployError, DeployOptions};
use rand::SeedableRng;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn options(nodes: usize, observers: usize) -> DeployOptions {
    DeployOptions { nodes, observers, namespace: "bgtest".into(), ..DeployOptions::default() }
}

fn rng() -> rand_chacha::ChaCha20Rng {
    rand_chacha::ChaCha20Rng::seed_from_u64(14)
}

/// Every object of every file in `dir`, with the file it came from.
fn read_dir_objects(dir: &Path) -> Vec<(PathBuf, Object)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir).expect("k8s dir").map(|e| e.expect("entry").path()).collect();
    files.sort();
    let mut objects = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("manifest");
        for object in from_yaml(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display())) {
            objects.push((file.clone(), object));
        }
    }
    objects
}

fn key_from_text(text: &str, dir: &Path, name: &str) -> Keypair {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write key");
    Keypair::load(&path).expect("a Secret holds a key file the node loads")
}

#[test]
fn cluster_manifests_hold_every_key_the_genesis_and_stable_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let written = deploy::write(&options(4, 2), &out, &mut rng()).expect("deploy k8s");
    let objects = read_dir_objects(&written.k8s_dir);
    let scratch = dir.path().join("scratch");
    std::fs::create_dir_all(&scratch).expect("scratch");

    // Everything but the Namespace lives in the namespace the DNS names name.
    for (file, object) in &objects {
        let meta = object.metadata();
        match object {
            Object::Namespace { .. } => assert_eq!(meta.name, "bgtest"),
            _ => assert_eq!(meta.namespace.as_deref(), Some("bgtest"), "{} {}", file.display(), meta.name),
        }
    }

    // The genesis ConfigMap is the genesis: 4 members, f = 1, bootstrap by stable DNS names.
    let genesis_text = objects
        .iter()
        .find_map(|(_, o)| match o {
            Object::ConfigMap { metadata, data, .. } if metadata.name == "byzgossip-genesis" => data.get("genesis.toml").cloned(),
            _ => None,
        })
        .expect("genesis ConfigMap");
    let genesis = Genesis::from_toml(&genesis_text, Path::new("configmap")).expect("the ConfigMap parses as a genesis");
    assert_eq!(genesis, written.material.genesis);
    assert_eq!((genesis.members.len(), genesis.resolved_f()), (4, 1));
    assert_eq!(genesis.bootstrap.len(), 4);
    for (i, addr) in genesis.bootstrap.iter().enumerate() {
        let peer = peer_id(&genesis.members[i]).expect("peer id");
        assert_eq!(addr, &format!("/dns4/byzgossip-{i}.byzgossip.bgtest.svc.cluster.local/tcp/{}/p2p/{peer}", deploy::P2P_PORT));
    }

    // Every key a Secret: member i's Secret holds member i's key, observers hold non-members.
    let secrets: Vec<(String, String)> = objects
        .iter()
        .filter_map(|(_, o)| match o {
            Object::Secret { metadata, data, secret_type, .. } => {
                assert_eq!(secret_type, "Opaque");
                let encoded = data.get(deploy::KEY_FILE).expect("node.key in the Secret");
                Some((metadata.name.clone(), secret_text(encoded).expect("base64 of a text")))
            }
            _ => None,
        })
        .collect();
    assert_eq!(secrets.len(), 6, "4 members + 2 observers");
    for i in 0..4 {
        let (_, text) = secrets.iter().find(|(n, _)| *n == format!("byzgossip-key-{i}")).expect("member Secret");
        assert_eq!(key_from_text(text, &scratch, &format!("m{i}")).public(), genesis.members[i], "Secret of member {i}");
    }
    let mut observer_keys = Vec::new();
    for j in 0..2 {
        let (_, text) = secrets.iter().find(|(n, _)| *n == format!("byzgossip-observer-key-{j}")).expect("observer Secret");
        let key = key_from_text(text, &scratch, &format!("o{j}")).public();
        assert!(!genesis.members.contains(&key), "observer {j} is not a member");
        observer_keys.push(key);
    }
    assert_ne!(observer_keys[0], observer_keys[1]);

    // Headless Services behind both StatefulSets.
    let service = |name: &str| {
        objects
            .iter()
            .find_map(|(_, o)| match o {
                Object::Service { metadata, spec, .. } if metadata.name == name => Some(spec.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("Service {name}"))
    };
    let set = |name: &str| {
        objects
            .iter()
            .find_map(|(_, o)| match o {
                Object::StatefulSet { metadata, spec, .. } if metadata.name == name => Some(spec.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("StatefulSet {name}"))
    };
    for (name, replicas, observer, prefix) in [("byzgossip", 4, false, "byzgossip-key-"), ("byzgossip-observer", 2, true, "byzgossip-observer-key-")] {
        let spec = set(name);
        assert_eq!(spec.replicas, replicas, "{name} replicas");
        assert_eq!(spec.service_name, name);
        let svc = service(&spec.service_name);
        assert_eq!(svc.cluster_ip, "None", "{name}: headless");
        assert!(svc.publish_not_ready_addresses, "{name}: names exist before readiness");
        assert_eq!(svc.selector, spec.selector.match_labels);
        assert_eq!(spec.selector.match_labels, spec.template.metadata.labels, "{name}: the selector picks the template's pods");
        assert_eq!(spec.pod_management_policy, "Parallel");
        assert_eq!(spec.volume_claim_templates.len(), 1, "{name}: a data volume per pod");

        // Scrape hints point at the API port and /metrics.
        let notes = &spec.template.metadata.annotations;
        assert_eq!(notes.get("prometheus.io/scrape").map(String::as_str), Some("true"));
        assert_eq!(notes.get("prometheus.io/port"), Some(&deploy::API_PORT.to_string()));
        assert_eq!(notes.get("prometheus.io/path").map(String::as_str), Some("/metrics"));

        let pod = &spec.template.spec;
        let security = pod.security_context.as_ref().expect("pod security context");
        assert!(security.run_as_non_root && security.run_as_user != 0);
        let [container] = pod.containers.as_slice() else { panic!("{name}: one container") };
        assert_eq!(container.args.first().map(String::as_str), Some("run"));
        assert_eq!(container.args.iter().any(|a| a == "--observer"), observer, "{name}: --observer");
        assert!(container.ports.iter().any(|p| p.container_port == deploy::API_PORT));
        assert_eq!(container.readiness_probe.as_ref().map(|p| p.http_get.path.as_str()), Some("/status"));
        // Ordinal -> key: pod <name>-<i> starts with key file <name>-<i>.key ...
        let key_arg = container.args.iter().skip_while(|a| *a != "--key").nth(1).expect("--key");
        assert_eq!(key_arg, &format!("{}/$(POD_NAME).key", deploy::KEYS_DIR));
        assert!(container.env.iter().any(|e| e.name == "POD_NAME" && e.value_from.field_ref.field_path == "metadata.name"));
        // ... which the projected volume takes from Secret <prefix><i>.
        let projected = pod.volumes.iter().find_map(|v| v.projected.as_ref()).expect("projected keys volume");
        assert_eq!(projected.sources.len(), replicas);
        for (i, source) in projected.sources.iter().enumerate() {
            assert_eq!(source.secret.name, format!("{prefix}{i}"));
            assert_eq!(source.secret.items[0].path, format!("{name}-{i}.key"));
        }
    }

    validate_with_kubernetes_validate(&written.k8s_dir);
}

/// `kubernetes-validate --strict` on every cluster manifest, if the tool is installed.
fn validate_with_kubernetes_validate(dir: &Path) {
    if Command::new("kubernetes-validate").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_err() {
        eprintln!("SKIPPED schema validation: no `kubernetes-validate` on PATH (pip install kubernetes-validate; CI installs it)");
        return;
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir).expect("dir").map(|e| e.expect("entry").path()).collect();
    files.sort();
    let output = Command::new("kubernetes-validate")
        // 1.29: an old enough release that any maintained cluster accepts what passes here.
        .args(["--strict", "--kubernetes-version", "1.29.0"])
        .args(&files)
        .output()
        .expect("kubernetes-validate runs");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "kubernetes-validate failed:\n{text}");
    assert!(!text.to_lowercase().contains("error"), "kubernetes-validate:\n{text}");
    eprintln!("kubernetes-validate:\n{text}");
}

#[test]
fn two_deployments_share_a_namespace_without_clashing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut names = Vec::new();
    let mut selectors = Vec::new();
    for name in ["alpha", "beta"] {
        let options = DeployOptions { name: name.into(), ..options(4, 1) };
        let written = deploy::write(&options, &dir.path().join(name), &mut rng()).expect("deploy k8s");
        assert!(written.material.genesis.bootstrap[0].starts_with(&format!("/dns4/{name}-0.{name}.bgtest.svc.cluster.local/")));
        let mut own = Vec::new();
        for (_, object) in read_dir_objects(&written.k8s_dir) {
            match &object {
                Object::Namespace { .. } => continue,
                Object::StatefulSet { spec, .. } => selectors.push(spec.selector.match_labels.clone()),
                _ => {}
            }
            own.push(object.metadata().name.clone());
        }
        names.push(own);
    }
    assert!(names[0].iter().all(|n| !names[1].contains(n)), "{names:?}");
    for (i, a) in selectors.iter().enumerate() {
        for b in &selectors[i + 1..] {
            assert_ne!(a, b, "a selector picks one set's pods only");
        }
    }
}

#[test]
fn debug_output_never_shows_a_key_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let written = deploy::write(&options(4, 1), &dir.path().join("out"), &mut rng()).expect("deploy k8s");
    let shown = format!("{written:?}");
    for key in written.material.members.iter().chain(&written.material.observers) {
        let secret_hex = key.file.lines().find_map(|l| l.strip_prefix("secret = ")).expect("a secret line").trim_matches('"');
        assert_eq!(secret_hex.len(), 64);
        assert!(!shown.contains(secret_hex), "the secret of {} shown by Debug", key.pod);
    }
}

#[test]
fn bad_options_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    assert!(matches!(deploy::write(&options(0, 0), &out, &mut rng()), Err(DeployError::Nodes(0))));
    let bad_ns = DeployOptions { namespace: "Not_A_Label".into(), ..options(4, 0) };
    assert!(matches!(deploy::write(&bad_ns, &out, &mut rng()), Err(DeployError::Name { .. })));
    let bad_name = DeployOptions { name: "x".repeat(41), ..options(4, 0) };
    assert!(matches!(deploy::write(&bad_name, &out, &mut rng()), Err(DeployError::Name { .. })));
    let bad_storage = DeployOptions { storage: "lots".into(), ..options(4, 0) };
    assert!(matches!(deploy::write(&bad_storage, &out, &mut rng()), Err(DeployError::Storage(_))));
    assert!(!out.exists(), "nothing written");
    deploy::write(&options(4, 0), &out, &mut rng()).expect("first write");
    assert!(matches!(deploy::write(&options(4, 0), &out, &mut rng()), Err(DeployError::Exists(_))), "keys are never overwritten");
}

#[test]
fn the_podman_variant_names_pods_on_the_podman_network() {
    let dir = tempfile::tempdir().expect("tempdir");
    let written = deploy::write(&options(4, 1), &dir.path().join("out"), &mut rng()).expect("deploy k8s");
    let objects = from_yaml(&std::fs::read_to_string(&written.podman_file).expect("podman file")).expect("parses");
    let pods: Vec<_> = objects.iter().filter(|o| matches!(o, Object::Pod { .. })).map(|o| o.metadata().name.clone()).collect();
    assert_eq!(pods, ["byzgossip-0", "byzgossip-1", "byzgossip-2", "byzgossip-3", "byzgossip-observer-0"]);
    // Each pod's ConfigMap holds the one genesis and that pod's own key.
    let files: Vec<_> = objects
        .iter()
        .filter_map(|o| match o {
            Object::ConfigMap { metadata, data, .. } => Some((metadata.name.clone(), data.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(files.len(), 5);
    let genesis_text = files[0].1.get("genesis.toml").expect("genesis.toml").clone();
    let genesis = Genesis::from_toml(&genesis_text, Path::new("podman")).expect("genesis");
    let scratch = dir.path().join("scratch");
    std::fs::create_dir_all(&scratch).expect("scratch");
    for (i, (name, data)) in files.iter().enumerate() {
        assert_eq!(name, &files_configmap_name(&pods[i]));
        assert_eq!(data.get("genesis.toml"), Some(&genesis_text), "{name}: the same genesis");
        let key = key_from_text(data.get(deploy::KEY_FILE).expect("node.key"), &scratch, name).public();
        assert_eq!(genesis.members.get(i) == Some(&key), i < 4, "{name}: members hold their own key, the observer a non-member");
    }
    assert_eq!(genesis.network_id(), written.material.genesis.network_id(), "one network in both variants");
    for (i, addr) in genesis.bootstrap.iter().enumerate() {
        assert!(addr.starts_with(&format!("/dns4/byzgossip-{i}.dns.podman/tcp/{}/p2p/", deploy::P2P_PORT)), "{addr}");
    }
    // The ConfigMaps come before the Pods that mount them.
    let first_pod = objects.iter().position(|o| matches!(o, Object::Pod { .. })).expect("a pod");
    assert!(objects[first_pod..].iter().all(|o| matches!(o, Object::Pod { .. })));
}

// ---------------------------------------------------------------------------------------
// podman

/// Runs podman with the test's containers.conf and runc; returns (success, stdout, stderr).
struct Podman {
    conf: PathBuf,
}

impl Podman {
    fn command(&self) -> Command {
        let mut command = Command::new("podman");
        command.env("CONTAINERS_CONF", &self.conf).args(["--runtime", RUNC]);
        command
    }

    fn run(&self, args: &[&str]) -> (bool, String, String) {
        match self.command().args(args).stdin(Stdio::null()).output() {
            Ok(o) => (o.status.success(), String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned()),
            Err(e) => (false, String::new(), e.to_string()),
        }
    }

    fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(args);
        assert!(ok, "podman {}: {err}", args.join(" "));
        out
    }
}

const RUNC: &str = "/usr/sbin/runc";

/// Removes everything the podman test made, however the test ends.
struct Cleanup<'a> {
    podman: &'a Podman,
    yaml: PathBuf,
    network: String,
    image: String,
    containers: Vec<String>,
    /// Volumes `kube play` made of the ConfigMaps, which `kube down` leaves (and a later play
    /// would reuse: a stale genesis).
    named_volumes: Vec<String>,
    /// Podman builds its pods' infra image (`localhost/podman-pause:<version>`) on first use;
    /// removed again unless it was there before.
    pause_images_before: Vec<String>,
}

fn pause_images(podman: &Podman) -> Vec<String> {
    let (_, out, _) = podman.run(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    out.lines().filter(|l| l.starts_with("localhost/podman-pause:")).map(str::to_owned).collect()
}

impl Cleanup<'_> {
    /// Named volumes by name: before playing too, in case an earlier run was killed before
    /// its cleanup.
    fn sweep_named(&self) {
        for v in &self.named_volumes {
            let _ = self.podman.run(&["volume", "rm", "-f", v]);
        }
    }
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        // Anonymous /data volumes outlive `kube down`: note them first, remove them after.
        let mut volumes = Vec::new();
        for c in &self.containers {
            let (_, out, _) = self.podman.run(&["inspect", "--format", "{{range .Mounts}}{{.Name}} {{end}}", c]);
            volumes.extend(out.split_whitespace().map(str::to_owned));
        }
        let yaml = self.yaml.to_string_lossy().into_owned();
        let _ = self.podman.run(&["kube", "down", &yaml]);
        for c in &self.containers {
            let _ = self.podman.run(&["rm", "-f", c]);
        }
        for v in &volumes {
            let _ = self.podman.run(&["volume", "rm", "-f", v]);
        }
        self.sweep_named();
        let _ = self.podman.run(&["network", "rm", "-f", &self.network]);
        let _ = self.podman.run(&["rmi", "-f", &self.image]);
        for image in pause_images(self.podman) {
            if !self.pause_images_before.contains(&image) {
                let _ = self.podman.run(&["rmi", &image]);
            }
        }
    }
}

/// Why podman cannot run here, if it cannot.
fn podman_unusable() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    if uid.as_deref() != Some("0") {
        return Some("not root (podman here runs rootful with runc)".into());
    }
    if Command::new("podman").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_err() {
        return Some("no `podman` on PATH (apt-get install podman runc; CI installs them)".into());
    }
    if !Path::new(RUNC).exists() {
        return Some(format!("no {RUNC} (apt-get install runc)"));
    }
    None
}

/// The `byzgossip` binary the workspace test build made, next to the testnet binary.
fn byzgossip_binary() -> PathBuf {
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_byzgossip-testnet")).with_file_name("byzgossip");
    assert!(binary.exists(), "no byzgossip binary at {}: run `cargo test --workspace` or `cargo build -p byzgossip-node` first", binary.display());
    binary
}

async fn get_json(client: &reqwest::Client, url: &str) -> Option<serde_json::Value> {
    let response = client.get(url).timeout(Duration::from_secs(2)).send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.json().await.ok()
}

/// Reads `/deliveries` from cursor 0 until an event carries `value_hex`, or the deadline.
async fn delivered(client: &reqwest::Client, api: &str, value_hex: &str, deadline: Instant) -> bool {
    use futures::StreamExt;
    let needle = format!("\"value\":\"{value_hex}\"");
    while Instant::now() < deadline {
        let Ok(response) = client.get(format!("http://{api}/deliveries?cursor=0")).send().await else {
            tokio::time::sleep(Duration::from_millis(300)).await;
            continue;
        };
        let mut stream = response.bytes_stream();
        let mut seen = String::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, stream.next()).await {
                Ok(Some(Ok(chunk))) => {
                    seen.push_str(&String::from_utf8_lossy(&chunk));
                    if seen.contains(&needle) {
                        return true;
                    }
                }
                Ok(_) => break,
                Err(_) => return false,
            }
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_podman_committee_delivers_a_broadcast_at_every_pod() {
    if let Some(why) = podman_unusable() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    let started = Instant::now();
    let binary = byzgossip_binary();
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("containers.conf");
    // Debian's podman in this kind of container: no ulimits to set, no systemd for cgroups.
    std::fs::write(&conf, "[containers]\ndefault_ulimits = []\n[engine]\ncgroup_manager = \"cgroupfs\"\n").expect("containers.conf");
    let podman = Podman { conf };
    let tag = format!("localhost/byzgossip-test-{}:latest", std::process::id());
    let network = format!("bgtest-net-{}", std::process::id());
    // A name of its own: pods, volumes and the network must not meet another run's (two
    // engineers and CI share this machine).
    let name = format!("bgtest{}", std::process::id());
    let options = DeployOptions { image: tag.clone(), name: name.clone(), ..options(4, 0) };
    let written = deploy::write(&options, &dir.path().join("out"), &mut rng()).expect("deploy k8s");
    let containers: Vec<String> = (0..4).map(|i| format!("{name}-{i}-byzgossip")).collect();
    let named_volumes: Vec<String> = written.material.members.iter().map(|k| files_configmap_name(&k.pod)).collect();
    let cleanup = Cleanup {
        podman: &podman,
        yaml: written.podman_file.clone(),
        network: network.clone(),
        image: tag.clone(),
        containers: containers.clone(),
        named_volumes,
        pause_images_before: pause_images(&podman),
    };
    cleanup.sweep_named();

    // The image, from the binary this test build made (a debug build: no extra compile).
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/build-image.sh");
    let build = Command::new("bash")
        .arg(&script)
        .arg("--binary")
        .arg(&binary)
        .args(["--tag", &tag])
        .env("CONTAINERS_CONF", &podman.conf)
        .env("PODMAN_ARGS", format!("--runtime {RUNC}"))
        .stdin(Stdio::null())
        .output()
        .expect("build-image.sh runs");
    let build_out = String::from_utf8_lossy(&build.stdout);
    assert!(build.status.success(), "build-image.sh failed:\n{build_out}\n{}", String::from_utf8_lossy(&build.stderr));
    eprintln!("{}", build_out.lines().last().unwrap_or_default());
    let image_built = started.elapsed();

    podman.ok(&["network", "create", &network]);
    let play_started = Instant::now();
    podman.ok(&["kube", "play", "--network", &network, &written.podman_file.to_string_lossy()]);

    // Every pod answers /status with 2f+1 members reachable (bounded polling).
    let client = reqwest::Client::new();
    let mut apis = Vec::new();
    for c in &containers {
        let ip = podman.ok(&["inspect", "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", c]);
        apis.push(format!("{}:{}", ip.trim(), deploy::API_PORT));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut answered: Vec<Option<Duration>> = vec![None; apis.len()];
    let mut quorum = vec![false; apis.len()];
    while Instant::now() < deadline && quorum.iter().any(|q| !q) {
        for (i, api) in apis.iter().enumerate() {
            if let Some(status) = get_json(&client, &format!("http://{api}/status")).await {
                answered[i].get_or_insert_with(|| play_started.elapsed());
                quorum[i] = status["progress_possible"] == true;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let logs = |c: &str| {
        let (_, out, err) = podman.run(&["logs", "--tail", "20", c]);
        format!("{out}{err}")
    };
    for (i, c) in containers.iter().enumerate() {
        assert!(quorum[i], "{c} at {} never reported progress_possible (answered: {:?}); logs:\n{}", apis[i], answered[i], logs(c));
    }
    let all_answered = answered.iter().flatten().max().copied().unwrap_or_default();

    // The token byzgossip-0 wrote on first start (printed once to stderr).
    let (_, out, err) = podman.run(&["logs", &containers[0]]);
    let token = format!("{out}{err}")
        .lines()
        .find_map(|l| l.split_once("(mode 0600): ").map(|(_, t)| t.trim().to_owned()))
        .unwrap_or_else(|| panic!("no API token in the logs of {}", containers[0]));

    // Broadcast through byzgossip-0 (429 while it recovers its seq from its peers).
    let value = format!("hello from the podman test {}", std::process::id());
    let broadcast_at = Instant::now();
    let deadline = broadcast_at + Duration::from_secs(40);
    let instance = loop {
        let response = client
            .post(format!("http://{}/broadcast", apis[0]))
            .bearer_auth(&token)
            .body(value.clone())
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        match response {
            Ok(r) if r.status().is_success() => break r.json::<serde_json::Value>().await.expect("broadcast answer"),
            Ok(r) if r.status() == reqwest::StatusCode::TOO_MANY_REQUESTS && Instant::now() < deadline => {}
            Ok(r) => panic!("broadcast: {} {}", r.status(), r.text().await.unwrap_or_default()),
            Err(e) if Instant::now() >= deadline => panic!("broadcast: {e}"),
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(instance["seq"].is_u64(), "{instance}");

    // Every pod delivers it.
    let value_hex = hex::encode(value.as_bytes());
    let deadline = Instant::now() + Duration::from_secs(40);
    for (c, api) in containers.iter().zip(&apis) {
        assert!(delivered(&client, api, &value_hex, deadline).await, "{c} did not deliver the broadcast; logs:\n{}", logs(c));
    }
    eprintln!(
        "podman: image built in {:.1} s; kube play -> every pod answering /status {:.1} s; broadcast accepted and delivered at all 4 pods in {:.2} s; test {:.1} s",
        image_built.as_secs_f64(),
        all_answered.as_secs_f64(),
        broadcast_at.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}
