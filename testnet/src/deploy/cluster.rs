//! The cluster variant: StatefulSets behind headless Services.
//!
//! A StatefulSet gives each pod a stable name (`<name>-<i>`) and, through its headless
//! Service, a stable DNS name (`<name>-<i>.<name>.<ns>.svc.cluster.local`) that the
//! genesis bootstrap list holds; pod IPs change on every reschedule, names do not. Each pod
//! keeps its data volume (a PVC per ordinal), so a rescheduled member resumes as itself.

use super::objects::{
    Capabilities, Container, ContainerPort, EnvSource, EnvVar, FieldRef, HttpGet, KeyToPath, LabelSelector, Object, PersistentVolumeClaim,
    PodSecurityContext, PodSpec, PodTemplate, Probe, ProjectedSecret, ProjectedSource, ProjectedVolume, PvcSpec, Resources, SecurityContext,
    ServicePort, ServiceSpec, StatefulSetSpec, TemplateMeta, Volume, VolumeMount,
};
use super::{
    API_PORT, DATA_DIR, DeployOptions, GENESIS_DIR, KEY_FILE, KEYS_DIR, Material, NODE_UID, NodeKey, P2P_PORT, genesis_configmap, key_secrets, labels, meta, run_args,
};
use std::collections::BTreeMap;

/// The manifest files, in the order they must be applied (their names sort that way).
pub fn manifests(options: &DeployOptions, material: &Material) -> Vec<(String, Vec<Object>)> {
    let ns = Some(options.namespace.as_str());
    let mut files = vec![
        ("00-namespace.yaml".to_owned(), vec![Object::Namespace { api_version: "v1".into(), metadata: meta(&options.namespace, None, labels(options, "namespace")) }]),
        ("10-genesis.yaml".to_owned(), vec![genesis_configmap(options, &material.genesis, ns)]),
    ];
    let mut secrets = key_secrets(options, &material.members, "member", ns);
    secrets.extend(key_secrets(options, &material.observers, "observer", ns));
    files.push(("20-keys.yaml".to_owned(), secrets));
    let mut services = vec![headless_service(options, &options.members(), "member", ns)];
    if !material.observers.is_empty() {
        services.push(headless_service(options, &options.observers(), "observer", ns));
    }
    files.push(("30-services.yaml".to_owned(), services));
    files.push(("40-members.yaml".to_owned(), vec![stateful_set(options, &options.members(), "member", &material.members, false)]));
    if !material.observers.is_empty() {
        files.push(("41-observers.yaml".to_owned(), vec![stateful_set(options, &options.observers(), "observer", &material.observers, true)]));
    }
    files
}

fn headless_service(options: &DeployOptions, name: &str, component: &str, namespace: Option<&str>) -> Object {
    Object::Service {
        api_version: "v1".into(),
        metadata: meta(name, namespace, labels(options, component)),
        spec: ServiceSpec {
            cluster_ip: "None".into(),
            publish_not_ready_addresses: true,
            selector: labels(options, component),
            ports: vec![
                ServicePort { name: "p2p".into(), port: P2P_PORT, target_port: P2P_PORT, protocol: "TCP".into() },
                ServicePort { name: "api".into(), port: API_PORT, target_port: API_PORT, protocol: "TCP".into() },
            ],
        },
    }
}

/// Prometheus scrape hints, read by the common `kubernetes_sd_configs` relabelling (README);
/// the same job, port and path as `byzgossip_testnet::monitoring::prometheus_config`.
fn scrape_annotations() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("prometheus.io/scrape".to_owned(), "true".to_owned()),
        ("prometheus.io/port".to_owned(), API_PORT.to_string()),
        ("prometheus.io/path".to_owned(), "/metrics".to_owned()),
    ])
}

/// `/status` answers: the node runs and serves its API. Not quorum: a liveness probe that
/// wanted 2f+1 peers would restart every member when a quorum is lost, making it worse.
fn status_probe(failure_threshold: u32) -> Probe {
    Probe { http_get: HttpGet { path: "/status".into(), port: API_PORT }, period_seconds: 10, failure_threshold }
}

fn stateful_set(options: &DeployOptions, name: &str, component: &str, keys: &[NodeKey], observer: bool) -> Object {
    let container = Container {
        name: "byzgossip".into(),
        image: options.image.clone(),
        image_pull_policy: "IfNotPresent".into(),
        // Kubernetes expands $(POD_NAME) from `env`: pod <name>-<i> picks key <name>-<i>.key.
        args: run_args(&format!("{GENESIS_DIR}/genesis.toml"), &format!("{KEYS_DIR}/$(POD_NAME).key"), P2P_PORT, API_PORT, observer),
        env: vec![EnvVar { name: "POD_NAME".into(), value_from: EnvSource { field_ref: FieldRef { field_path: "metadata.name".into() } } }],
        ports: vec![
            ContainerPort { name: "p2p".into(), container_port: P2P_PORT, protocol: "TCP".into() },
            ContainerPort { name: "api".into(), container_port: API_PORT, protocol: "TCP".into() },
        ],
        volume_mounts: vec![
            VolumeMount { name: "genesis".into(), mount_path: GENESIS_DIR.into(), read_only: true },
            VolumeMount { name: "keys".into(), mount_path: KEYS_DIR.into(), read_only: true },
            VolumeMount { name: "data".into(), mount_path: DATA_DIR.into(), read_only: false },
        ],
        readiness_probe: Some(status_probe(3)),
        liveness_probe: Some(status_probe(6)),
        security_context: Some(SecurityContext { allow_privilege_escalation: false, read_only_root_filesystem: true, capabilities: Capabilities { drop: vec!["ALL".into()] } }),
    };
    let keys_volume = ProjectedVolume {
        // Readable by the pod's group (fsGroup), nobody else.
        default_mode: 0o440,
        sources: keys
            .iter()
            .map(|k| ProjectedSource { secret: ProjectedSecret { name: k.secret.clone(), items: vec![KeyToPath { key: KEY_FILE.into(), path: format!("{}.key", k.pod) }] } })
            .collect(),
    };
    let spec = PodSpec {
        host_network: false,
        hostname: None,
        restart_policy: None,
        security_context: Some(PodSecurityContext { run_as_user: NODE_UID, run_as_group: NODE_UID, run_as_non_root: true, fs_group: Some(NODE_UID) }),
        containers: vec![container],
        volumes: vec![
            Volume { name: "genesis".into(), config_map: Some(super::objects::ConfigMapVolume { name: options.genesis_configmap() }), projected: None },
            Volume { name: "keys".into(), config_map: None, projected: Some(keys_volume) },
        ],
    };
    Object::StatefulSet {
        api_version: "apps/v1".into(),
        metadata: meta(name, Some(&options.namespace), labels(options, component)),
        spec: StatefulSetSpec {
            service_name: name.into(),
            replicas: keys.len(),
            pod_management_policy: "Parallel".into(),
            selector: LabelSelector { match_labels: labels(options, component) },
            template: PodTemplate { metadata: TemplateMeta { labels: labels(options, component), annotations: scrape_annotations() }, spec },
            volume_claim_templates: vec![PersistentVolumeClaim {
                metadata: meta("data", None, BTreeMap::new()),
                spec: PvcSpec {
                    access_modes: vec!["ReadWriteOnce".into()],
                    resources: Resources { requests: BTreeMap::from([("storage".to_owned(), options.storage.clone())]) },
                },
            }],
        },
    }
}
