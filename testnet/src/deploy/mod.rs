//! `byzgossip-testnet deploy k8s`: a committee as Kubernetes manifests, and the same committee
//! as a file `podman kube play` runs on one machine.
//!
//! What it writes into `--out DIR`:
//!
//! - `keys/`: `genesis.toml` and `node-<i>.key` from [`write_testnet_with_addresses`] (the
//!   same code as `byzgossip genesis`), plus `observer-<j>.key` for non-member nodes. The
//!   manifests carry these files; keep the directory offline or delete it.
//! - `k8s/`: a Namespace, the genesis as a ConfigMap, one Secret per key, headless Services
//!   and two StatefulSets (members; observers run with `--observer`), in files numbered in
//!   the order `kubectl apply -f DIR/k8s` must create them. See [`cluster`].
//! - `podman/byzgossip.yaml`: one ConfigMap (genesis and key) and one Pod per node, for
//!   `podman kube play --network NET` (see [`podman`] for why Pods, a network and no
//!   Secrets).
//! - `README.md`: how to apply both.
//!
//! Keys map to pods by name: a StatefulSet names its pods `<set>-<ordinal>`, every pod mounts
//! the set's Secrets as `<set>-<ordinal>.key` in one projected volume, and the container
//! starts with `--key /etc/byzgossip/keys/$(POD_NAME).key` (Kubernetes expands `$(POD_NAME)`
//! from the downward API). The image is `FROM scratch`, so there is no shell to run an init
//! script in; the expansion needs none. The price: each pod of a set can read every key of
//! its set (README says so, and how to avoid it).

pub mod cluster;
pub mod objects;
pub mod podman;

use byzgossip_crypto::{Genesis, GossipPolicy, Keypair};
use byzgossip_node::testnet_keys::{TestnetSpec, write_testnet_with_addresses};
use objects::{Object, ObjectMeta};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// TCP port every node listens on for libp2p, in its own pod.
pub const P2P_PORT: u16 = 7000;
/// Port of every node's HTTP API (`/status`, `/metrics`, ...), in its own pod.
pub const API_PORT: u16 = 8080;
/// UID and GID the image runs as (deploy/Containerfile writes them into /etc/passwd).
pub const NODE_UID: u32 = 10001;
/// Where the genesis ConfigMap is mounted.
pub const GENESIS_DIR: &str = "/etc/byzgossip/genesis";
/// Where the key Secrets are mounted.
pub const KEYS_DIR: &str = "/etc/byzgossip/keys";
/// The data volume.
pub const DATA_DIR: &str = "/data";
/// The key inside each key Secret.
pub const KEY_FILE: &str = "node.key";
/// Largest committee: pod names and Secrets stay well within API limits, and a bigger
/// committee is not what a local command line should make by accident.
pub const MAX_NODES: usize = 1000;

/// What to write.
#[derive(Debug, Clone)]
pub struct DeployOptions {
    /// Committee size (at least 1; f = floor((n-1)/3)).
    pub nodes: usize,
    /// Observer (non-member) nodes.
    pub observers: usize,
    /// Kubernetes namespace (an RFC 1123 label); it is part of every member's DNS name in the
    /// genesis, so the manifests only work in this namespace.
    pub namespace: String,
    /// The deployment's name (an RFC 1123 label, at most 40 characters so pod and volume
    /// names stay within 63): the members' StatefulSet, Service and pods are `<name>`,
    /// `<name>-<i>`, the observers' `<name>-observer`, the genesis ConfigMap
    /// `<name>-genesis`, the key Secrets `<name>-key-<i>` and `<name>-observer-key-<j>`.
    /// Two committees can share a namespace (or a podman host) under different names.
    pub name: String,
    /// Image name, e.g. `localhost/byzgossip:latest` (deploy/build-image.sh).
    pub image: String,
    /// Network name in the genesis.
    pub network: String,
    /// Size of each member's data volume, e.g. `1Gi`.
    pub storage: String,
}

impl Default for DeployOptions {
    fn default() -> Self {
        DeployOptions {
            nodes: 4,
            observers: 0,
            namespace: "byzgossip".into(),
            name: "byzgossip".into(),
            image: "localhost/byzgossip:latest".into(),
            network: "byzgossip".into(),
            storage: "1Gi".into(),
        }
    }
}

/// Why nothing (or not everything) was written.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The committee size is out of range.
    #[error("--nodes must be between 1 and {MAX_NODES}, not {0}")]
    Nodes(usize),
    /// Too many observers.
    #[error("--observers must be at most {MAX_NODES}, not {0}")]
    Observers(usize),
    /// A name that Kubernetes would refuse.
    #[error("{what} {value:?} is not a DNS label (1 to 63 of a-z, 0-9 and '-', starting and ending with a letter or digit)")]
    Name {
        /// Which option.
        what: &'static str,
        /// Its value.
        value: String,
    },
    /// A volume size Kubernetes would refuse.
    #[error("--storage {0:?} is not a size such as 1Gi or 500Mi")]
    Storage(String),
    /// The output directory already holds keys: new keys would not match existing manifests.
    #[error("{0} already exists: choose an empty --out directory (keys are never overwritten)")]
    Exists(PathBuf),
    /// Generating or reading keys and the genesis failed.
    #[error("keys and genesis: {0:#}")]
    Keys(anyhow::Error),
    /// A file could not be written or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Serializing a manifest failed.
    #[error("writing YAML: {0}")]
    Yaml(#[from] serde_norway::Error),
}

/// One node's key, as the manifests need it. `Debug` leaves the key file out: it holds the
/// secret, which is never printed or logged.
#[derive(Clone)]
pub struct NodeKey {
    /// Pod name, e.g. `byzgossip-2` or `byzgossip-observer-0`.
    pub pod: String,
    /// The key Secret's name.
    pub secret: String,
    /// The key file's text (TOML with the hex secret).
    pub file: String,
}

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeKey").field("pod", &self.pod).field("secret", &self.secret).finish_non_exhaustive()
    }
}

/// Keys and genesis shared by both variants.
#[derive(Debug, Clone)]
pub struct Material {
    /// The cluster genesis (bootstrap list: the members' cluster DNS names).
    pub genesis: Genesis,
    /// Members in committee order.
    pub members: Vec<NodeKey>,
    /// Observers.
    pub observers: Vec<NodeKey>,
}

/// What [`write`] wrote.
#[derive(Debug, Clone)]
pub struct Written {
    /// Every file, in writing order.
    pub files: Vec<PathBuf>,
    /// The cluster manifests directory (`DIR/k8s`).
    pub k8s_dir: PathBuf,
    /// The podman file (`DIR/podman/byzgossip.yaml`).
    pub podman_file: PathBuf,
    /// Keys and genesis.
    pub material: Material,
}

/// Longest `--name`: `<name>-observer-key-<j>` and PVC names `data-<name>-observer-<j>` must
/// stay DNS labels (63 characters) for up to [`MAX_NODES`] nodes.
pub const MAX_NAME_LEN: usize = 40;

impl DeployOptions {
    /// The members' StatefulSet and Service: `<name>`.
    pub fn members(&self) -> String {
        self.name.clone()
    }

    /// The observers' StatefulSet and Service: `<name>-observer`.
    pub fn observers(&self) -> String {
        format!("{}-observer", self.name)
    }

    /// The genesis ConfigMap: `<name>-genesis`.
    pub fn genesis_configmap(&self) -> String {
        format!("{}-genesis", self.name)
    }

    /// Member `index`'s DNS name in the cluster: `<name>-<i>.<name>.<ns>.svc.cluster.local`.
    pub fn member_dns_name(&self, index: usize) -> String {
        format!("{0}-{index}.{0}.{1}.svc.cluster.local", self.name, self.namespace)
    }
}

/// Checks an RFC 1123 label (namespaces and generated names must be one).
fn check_label(what: &'static str, value: &str) -> Result<(), DeployError> {
    let ok = (1..=63).contains(&value.len())
        && value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-');
    if ok { Ok(()) } else { Err(DeployError::Name { what, value: value.to_owned() }) }
}

impl DeployOptions {
    /// Checks the options before anything is written.
    pub fn validate(&self) -> Result<(), DeployError> {
        if !(1..=MAX_NODES).contains(&self.nodes) {
            return Err(DeployError::Nodes(self.nodes));
        }
        if self.observers > MAX_NODES {
            return Err(DeployError::Observers(self.observers));
        }
        check_label("--namespace", &self.namespace)?;
        check_label("--name", &self.name)?;
        if self.name.len() > MAX_NAME_LEN {
            return Err(DeployError::Name { what: "--name (at most 40 characters)", value: self.name.clone() });
        }
        // A plain Kubernetes quantity: digits, then an optional binary or decimal suffix.
        let digits = self.storage.trim_end_matches(|c: char| c.is_ascii_alphabetic());
        let suffix = &self.storage[digits.len()..];
        let suffixes = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "k", "M", "G", "T", "P", "E"];
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || !suffixes.contains(&suffix) {
            return Err(DeployError::Storage(self.storage.clone()));
        }
        Ok(())
    }
}

/// Writes keys, genesis, the cluster manifests, the podman file and the README into `out`
/// (created if missing; refused if it already holds keys).
pub fn write<R: rand::CryptoRng + ?Sized>(options: &DeployOptions, out: &Path, rng: &mut R) -> Result<Written, DeployError> {
    options.validate()?;
    let keys_dir = out.join("keys");
    if keys_dir.exists() {
        return Err(DeployError::Exists(keys_dir));
    }
    let material = generate(options, &keys_dir, rng)?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(&keys_dir)
        .map_err(|source| DeployError::Io { path: keys_dir.clone(), source })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();

    let k8s_dir = out.join("k8s");
    for (name, objects) in cluster::manifests(options, &material) {
        let path = k8s_dir.join(name);
        write_file(&path, &objects::to_yaml(&objects)?)?;
        files.push(path);
    }
    let podman_file = out.join("podman").join("byzgossip.yaml");
    write_file(&podman_file, &objects::to_yaml(&podman::manifest(options, &material)?)?)?;
    files.push(podman_file.clone());
    let readme = out.join("README.md");
    write_file(&readme, &readme_text(options))?;
    files.push(readme);
    Ok(Written { files, k8s_dir, podman_file, material })
}

/// Makes the keys and the cluster genesis with the code `byzgossip genesis` uses, then reads
/// the key files back for the Secrets.
fn generate<R: rand::CryptoRng + ?Sized>(options: &DeployOptions, keys_dir: &Path, rng: &mut R) -> Result<Material, DeployError> {
    let spec = TestnetSpec { nodes: options.nodes, f: None, name: options.network.clone(), policy: GossipPolicy::Committee, base_port: None };
    let files = write_testnet_with_addresses(keys_dir, &spec, rng, |i| Ok(Some(format!("/dns4/{}/tcp/{P2P_PORT}", options.member_dns_name(i)))))
        .map_err(DeployError::Keys)?;
    let (members_set, observers_set) = (options.members(), options.observers());
    let genesis = Genesis::load(&files.genesis).map_err(|e| DeployError::Keys(e.into()))?;
    let members = files
        .keys
        .iter()
        .enumerate()
        .map(|(i, path)| node_key(path, format!("{members_set}-{i}"), format!("{members_set}-key-{i}")))
        .collect::<Result<Vec<_>, _>>()?;
    let mut observers = Vec::new();
    for j in 0..options.observers {
        let path = keys_dir.join(format!("observer-{j}.key"));
        Keypair::generate(rng).save(&path).map_err(|e| DeployError::Keys(e.into()))?;
        observers.push(node_key(&path, format!("{observers_set}-{j}"), format!("{observers_set}-key-{j}"))?);
    }
    Ok(Material { genesis, members, observers })
}

fn node_key(path: &Path, pod: String, secret: String) -> Result<NodeKey, DeployError> {
    // Load first: the file is one the node will accept.
    Keypair::load(path).map_err(|e| DeployError::Keys(e.into()))?;
    let file = std::fs::read_to_string(path).map_err(|source| DeployError::Io { path: path.to_owned(), source })?;
    Ok(NodeKey { pod, secret, file })
}

fn write_file(path: &Path, text: &str) -> Result<(), DeployError> {
    let io = |source| DeployError::Io { path: path.to_owned(), source };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    std::fs::write(path, text).map_err(io)
}

/// Labels of one deployment's objects of one component (`member`, `observer`, ...); the
/// instance label keeps two deployments' selectors apart.
pub(crate) fn labels(options: &DeployOptions, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "byzgossip".to_owned()),
        ("app.kubernetes.io/instance".to_owned(), options.name.clone()),
        ("app.kubernetes.io/component".to_owned(), component.to_owned()),
    ])
}

/// Metadata with a name, labels and an optional namespace.
pub(crate) fn meta(name: &str, namespace: Option<&str>, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta { name: name.to_owned(), namespace: namespace.map(str::to_owned), labels, annotations: BTreeMap::new() }
}

/// The genesis ConfigMap.
pub(crate) fn genesis_configmap(options: &DeployOptions, genesis: &Genesis, namespace: Option<&str>) -> Object {
    Object::ConfigMap {
        api_version: "v1".into(),
        metadata: meta(&options.genesis_configmap(), namespace, labels(options, "genesis")),
        data: BTreeMap::from([("genesis.toml".to_owned(), genesis.to_toml())]),
    }
}

/// One Secret per key.
pub(crate) fn key_secrets(options: &DeployOptions, keys: &[NodeKey], component: &str, namespace: Option<&str>) -> Vec<Object> {
    keys.iter()
        .map(|k| Object::Secret {
            api_version: "v1".into(),
            metadata: meta(&k.secret, namespace, labels(options, component)),
            secret_type: "Opaque".into(),
            data: BTreeMap::from([(KEY_FILE.to_owned(), objects::secret_data(&k.file))]),
        })
        .collect()
}

/// The `byzgossip run` arguments of a node with these genesis and key files.
pub(crate) fn run_args(genesis: &str, key: &str, listen_port: u16, api_port: u16, observer: bool) -> Vec<String> {
    let mut args: Vec<String> = [
        "run",
        "--genesis",
        genesis,
        "--key",
        key,
        "--data",
        DATA_DIR,
        "--listen",
        &format!("/ip4/0.0.0.0/tcp/{listen_port}"),
        "--api",
        &format!("0.0.0.0:{api_port}"),
        "--log-format",
        "json",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    if observer {
        args.push("--observer".into());
    }
    args
}

fn readme_text(options: &DeployOptions) -> String {
    include_str!("README.md.in")
        .replace("@NODES@", &options.nodes.to_string())
        .replace("@OBSERVERS@", &options.observers.to_string())
        .replace("@NAMESPACE@", &options.namespace)
        .replace("@IMAGE@", &options.image)
        .replace("@STORAGE@", &options.storage)
        .replace("@MEMBER0@", &options.member_dns_name(0))
        .replace("@NAME@", &options.name)
        .replace("@P2P_PORT@", &P2P_PORT.to_string())
        .replace("@API_PORT@", &API_PORT.to_string())
}
