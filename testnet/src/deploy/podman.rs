//! The podman variant: one Pod per node, for `podman kube play --network NET FILE`.
//!
//! Why it differs from the cluster variant:
//!
//! - Pods, not StatefulSets: `podman kube play` runs Pods and Deployments but has no
//!   StatefulSet (no ordinals, no volume claim templates), so each node is a Pod named like
//!   the StatefulSet would name it, with only its own key mounted.
//! - Names from the podman network, not cluster DNS: podman has no cluster DNS, but on a
//!   network made with `podman network create` (netavark with aardvark-dns) every pod is
//!   resolvable as `<pod>.dns.podman` from the others (checked with podman 4.3 on Debian 12;
//!   the default `podman` network has DNS off, hence `--network`). The genesis bootstrap list
//!   uses those names, so the nodes dial by DNS exactly as in a cluster.
//! - No data volume in the YAML: the image declares `VOLUME /data`, and podman gives each
//!   container an anonymous volume owned by the image's user (a `persistentVolumeClaim`
//!   would need named volumes made beforehand); `podman kube down` removes them with the
//!   pods. It leaves what `kube play` made of the ConfigMap and the Secrets: podman secrets
//!   named like the Secrets and volumes named like the ConfigMap and Secrets, which a later
//!   play would reuse; remove them by name (README, and the test does).
//! - Genesis and key in one ConfigMap per pod (`<pod>-files`), not Secrets: podman 4.3 (Debian 12's) writes a Secret's `data` into
//!   a secret volume still base64-encoded, ignores `stringData` (an empty volume), and
//!   crashes on a secret volume without `optional` (podman issue 16636); env from a Secret
//!   fails too (issue 16269). A ConfigMap volume holds the file as written. This variant
//!   runs on the machine whose disk holds `DIR/keys` already, so a Secret would protect
//!   nothing more there; the cluster variant keeps one Secret per key.
//! - `restartPolicy: Never`: on one machine a crash should stay visible, not loop.

use super::objects::{Capabilities, ConfigMapVolume, Container, Object, PodSecurityContext, PodSpec, SecurityContext, Volume, VolumeMount};
use super::{API_PORT, DeployError, DeployOptions, KEY_FILE, Material, NODE_UID, NodeKey, P2P_PORT, labels, meta, run_args};
use std::collections::BTreeMap;
use byzgossip_crypto::Genesis;
use byzgossip_node::identity::peer_id;

/// The DNS domain of a podman (netavark/aardvark-dns) network.
pub const PODMAN_DNS_DOMAIN: &str = "dns.podman";

/// The genesis for podman: the cluster genesis with `<pod>.dns.podman` bootstrap addresses
/// (the network id does not cover bootstrap addresses, so both variants are one network).
pub fn podman_genesis(material: &Material) -> Result<Genesis, DeployError> {
    let mut genesis = material.genesis.clone();
    genesis.bootstrap = material
        .members
        .iter()
        .zip(&material.genesis.members)
        .map(|(node, key)| {
            let peer = peer_id(key).ok_or_else(|| DeployError::Keys(anyhow::anyhow!("member {} has no libp2p peer id", node.pod)))?;
            Ok(format!("/dns4/{}.{PODMAN_DNS_DOMAIN}/tcp/{P2P_PORT}/p2p/{peer}", node.pod))
        })
        .collect::<Result<_, DeployError>>()?;
    Ok(genesis)
}

/// Where each pod's ConfigMap (genesis and key) is mounted.
pub const NODE_FILES_DIR: &str = "/etc/byzgossip/node";

/// The ConfigMap of one pod: `<pod>-files`.
pub fn files_configmap_name(pod: &str) -> String {
    format!("{pod}-files")
}

/// One ConfigMap per pod (its genesis and its key), then the Pods, in the order
/// `podman kube play` needs them (ConfigMaps before the Pods that mount them).
///
/// Not one genesis ConfigMap shared by every pod: podman 4.3 rewrites a ConfigMap's volume
/// for every pod that mounts it, so a pod started earlier could read a half-written genesis
/// ("missing field `name`", seen here in about one run of three).
pub fn manifest(options: &DeployOptions, material: &Material) -> Result<Vec<Object>, DeployError> {
    let genesis = podman_genesis(material)?.to_toml();
    let mut objects = Vec::new();
    for (keys, component) in [(&material.members, "member"), (&material.observers, "observer")] {
        objects.extend(keys.iter().map(|k| Object::ConfigMap {
            api_version: "v1".into(),
            metadata: meta(&files_configmap_name(&k.pod), None, labels(options, component)),
            data: BTreeMap::from([("genesis.toml".to_owned(), genesis.clone()), (KEY_FILE.to_owned(), k.file.clone())]),
        }));
    }
    objects.extend(material.members.iter().map(|k| pod(options, k, "member", false)));
    objects.extend(material.observers.iter().map(|k| pod(options, k, "observer", true)));
    Ok(objects)
}

fn pod(options: &DeployOptions, key: &NodeKey, component: &str, observer: bool) -> Object {
    let container = Container {
        name: "byzgossip".into(),
        image: options.image.clone(),
        // Built here by deploy/build-image.sh; nothing can be pulled.
        image_pull_policy: "Never".into(),
        args: run_args(&format!("{NODE_FILES_DIR}/genesis.toml"), &format!("{NODE_FILES_DIR}/{KEY_FILE}"), P2P_PORT, API_PORT, observer),
        env: Vec::new(),
        // No `ports`: podman publishes a declared containerPort on the same host port, so
        // the second pod fails with "address already in use". Pods reach each other (and the
        // host reaches them) at their addresses on the podman network.
        ports: Vec::new(),
        volume_mounts: vec![VolumeMount { name: "files".into(), mount_path: NODE_FILES_DIR.into(), read_only: true }],
        readiness_probe: None,
        liveness_probe: None,
        security_context: Some(SecurityContext { allow_privilege_escalation: false, read_only_root_filesystem: false, capabilities: Capabilities { drop: vec!["ALL".into()] } }),
    };
    Object::Pod {
        api_version: "v1".into(),
        metadata: meta(&key.pod, None, labels(options, component)),
        spec: PodSpec {
            host_network: false,
            hostname: Some(key.pod.clone()),
            restart_policy: Some("Never".into()),
            security_context: Some(PodSecurityContext { run_as_user: NODE_UID, run_as_group: NODE_UID, run_as_non_root: true, fs_group: None }),
            containers: vec![container],
            volumes: vec![Volume { name: "files".into(), config_map: Some(ConfigMapVolume { name: files_configmap_name(&key.pod) }), projected: None }],
        },
    }
}
