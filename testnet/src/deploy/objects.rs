//! The subset of the Kubernetes API that `deploy k8s` writes, as typed serde structs.
//!
//! Why types and not text templates: a key file or a genesis is multi-line text that YAML must
//! quote or indent exactly, and a misspelt field is silently ignored by `kubectl apply`; here
//! the serializer does the quoting and the compiler checks the field names (camelCase, as the
//! API spells them). Only the fields the manifests use exist; `None` and empty fields are left
//! out of the output, so the YAML reads like a hand-written manifest. The same types parse
//! the manifests back in tests.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `metadata` of every object.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    /// Object name.
    pub name: String,
    /// Namespace (absent for cluster-scoped objects and podman).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations (Prometheus scrape hints live here).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// One manifest document: every kind `deploy k8s` writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum Object {
    /// `v1/Namespace`.
    Namespace {
        /// `v1`.
        #[serde(rename = "apiVersion")]
        api_version: String,
        /// Metadata.
        metadata: ObjectMeta,
    },
    /// `v1/ConfigMap`.
    ConfigMap {
        /// `v1`.
        #[serde(rename = "apiVersion")]
        api_version: String,
        /// Metadata.
        metadata: ObjectMeta,
        /// File name -> content.
        data: BTreeMap<String, String>,
    },
    /// `v1/Secret` (type Opaque), content as `data` (base64, the form every client reads).
    Secret {
        /// `v1`.
        #[serde(rename = "apiVersion")]
        api_version: String,
        /// Metadata.
        metadata: ObjectMeta,
        /// `Opaque`.
        #[serde(rename = "type")]
        secret_type: String,
        /// File name -> content, base64 ([`secret_data`] makes it, [`secret_text`] reads it).
        data: BTreeMap<String, String>,
    },
    /// `v1/Service`.
    Service {
        /// `v1`.
        #[serde(rename = "apiVersion")]
        api_version: String,
        /// Metadata.
        metadata: ObjectMeta,
        /// Spec.
        spec: ServiceSpec,
    },
    /// `apps/v1/StatefulSet`.
    StatefulSet {
        /// `apps/v1`.
        #[serde(rename = "apiVersion")]
        api_version: String,
        /// Metadata.
        metadata: ObjectMeta,
        /// Spec.
        spec: StatefulSetSpec,
    },
    /// `v1/Pod` (the podman variant).
    Pod {
        /// `v1`.
        #[serde(rename = "apiVersion")]
        api_version: String,
        /// Metadata.
        metadata: ObjectMeta,
        /// Spec.
        spec: PodSpec,
    },
}

impl Object {
    /// The object's metadata.
    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Object::Namespace { metadata, .. }
            | Object::ConfigMap { metadata, .. }
            | Object::Secret { metadata, .. }
            | Object::Service { metadata, .. }
            | Object::StatefulSet { metadata, .. }
            | Object::Pod { metadata, .. } => metadata,
        }
    }
}

/// Service spec (headless: `clusterIP: None`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// `None` for a headless service: DNS answers with the pods' own addresses.
    #[serde(rename = "clusterIP")]
    pub cluster_ip: String,
    /// Publish DNS records of pods that are not ready yet: members must find each other to
    /// become ready at all.
    pub publish_not_ready_addresses: bool,
    /// Pod selector.
    pub selector: BTreeMap<String, String>,
    /// Ports.
    pub ports: Vec<ServicePort>,
}

/// A service port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    /// Port name.
    pub name: String,
    /// Port number.
    pub port: u16,
    /// The container port it maps to.
    pub target_port: u16,
    /// `TCP`.
    pub protocol: String,
}

/// StatefulSet spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatefulSetSpec {
    /// The headless service that gives pods their DNS names.
    pub service_name: String,
    /// Pods.
    pub replicas: usize,
    /// `Parallel`: every member starts at once (with `OrderedReady` pod 1 would wait for pod 0
    /// to be ready, and a member is only useful with its peers).
    pub pod_management_policy: String,
    /// Pod selector.
    pub selector: LabelSelector,
    /// Pod template.
    pub template: PodTemplate,
    /// One data volume per pod, kept across restarts and rescheduling.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_claim_templates: Vec<PersistentVolumeClaim>,
}

/// A label selector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    /// Labels to match.
    pub match_labels: BTreeMap<String, String>,
}

/// A pod template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodTemplate {
    /// Labels and annotations of every pod (no name: the StatefulSet names them).
    pub metadata: TemplateMeta,
    /// Pod spec.
    pub spec: PodSpec,
}

/// Template metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TemplateMeta {
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A persistent volume claim template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PersistentVolumeClaim {
    /// Name (the volume name mounts refer to).
    pub metadata: ObjectMeta,
    /// Spec.
    pub spec: PvcSpec,
}

/// PVC spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PvcSpec {
    /// `ReadWriteOnce`.
    pub access_modes: Vec<String>,
    /// Size request.
    pub resources: Resources,
}

/// Resource requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    /// e.g. `storage: 1Gi`.
    pub requests: BTreeMap<String, String>,
}

/// Pod spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    /// Share the host's network (podman variant only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub host_network: bool,
    /// Pod hostname (podman variant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// `Never` for the podman variant (the test wants a failure to stay visible), absent in
    /// StatefulSets (which require `Always`, the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<String>,
    /// Pod-wide security context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<PodSecurityContext>,
    /// Containers.
    pub containers: Vec<Container>,
    /// Volumes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
}

/// Pod security context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSecurityContext {
    /// UID of every container.
    pub run_as_user: u32,
    /// GID of every container.
    pub run_as_group: u32,
    /// Refuse to start as root.
    pub run_as_non_root: bool,
    /// Group owning mounted volumes, so the node can write its data volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fs_group: Option<u32>,
}

/// A container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    /// Name.
    pub name: String,
    /// Image.
    pub image: String,
    /// `IfNotPresent` / `Never`: the image is built locally, not pulled.
    pub image_pull_policy: String,
    /// Arguments to the image's entrypoint (`byzgossip`).
    pub args: Vec<String>,
    /// Environment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ContainerPort>,
    /// Mounts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,
    /// Ready: `/status` answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<Probe>,
    /// Alive: `/status` answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Option<Probe>,
    /// Container security context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<SecurityContext>,
}

/// An environment variable from the downward API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvVar {
    /// Name.
    pub name: String,
    /// Source.
    pub value_from: EnvSource,
}

/// Where an environment variable's value comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvSource {
    /// A field of the pod.
    pub field_ref: FieldRef,
}

/// A pod field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldRef {
    /// e.g. `metadata.name`.
    pub field_path: String,
}

/// A container port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPort {
    /// Name (the Prometheus annotation and probes refer to the number).
    pub name: String,
    /// Number.
    pub container_port: u16,
    /// `TCP`.
    pub protocol: String,
}

/// A volume mount.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeMount {
    /// Volume name.
    pub name: String,
    /// Where.
    pub mount_path: String,
    /// Read-only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
}

/// An HTTP probe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Probe {
    /// GET this path on this port.
    pub http_get: HttpGet,
    /// Seconds between probes.
    pub period_seconds: u32,
    /// Failures in a row before acting.
    pub failure_threshold: u32,
}

/// A probe's HTTP GET.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpGet {
    /// Path.
    pub path: String,
    /// Port.
    pub port: u16,
}

/// Container security context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityContext {
    /// No setuid escalation.
    pub allow_privilege_escalation: bool,
    /// The image is one static binary; only the data volume is written.
    pub read_only_root_filesystem: bool,
    /// Drop every capability.
    pub capabilities: Capabilities,
}

/// Capabilities.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Capabilities {
    /// `ALL`.
    pub drop: Vec<String>,
}

/// A volume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    /// Name.
    pub name: String,
    /// A ConfigMap's files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapVolume>,
    /// Several Secrets' files in one directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub projected: Option<ProjectedVolume>,
}

/// ConfigMap volume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigMapVolume {
    /// ConfigMap name.
    pub name: String,
}

/// Projected volume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectedVolume {
    /// File mode.
    pub default_mode: u32,
    /// The Secrets.
    pub sources: Vec<ProjectedSource>,
}

/// One Secret of a projected volume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectedSource {
    /// The Secret and the paths of its keys.
    pub secret: ProjectedSecret,
}

/// A Secret in a projected volume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectedSecret {
    /// Secret name.
    pub name: String,
    /// Key -> file.
    pub items: Vec<KeyToPath>,
}

/// A key of a ConfigMap or Secret and the file it becomes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyToPath {
    /// Key.
    pub key: String,
    /// Relative path.
    pub path: String,
}

/// A Secret's `data` value for `text`.
pub fn secret_data(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text.as_bytes())
}

/// The text of a Secret's `data` value, if it is base64 of UTF-8.
pub fn secret_text(data: &str) -> Option<String> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD.decode(data.trim()).ok()?;
    String::from_utf8(bytes).ok()
}

/// Writes `objects` as one multi-document YAML text (`---` between documents).
pub fn to_yaml(objects: &[Object]) -> Result<String, serde_norway::Error> {
    let mut out = String::new();
    for object in objects {
        out.push_str("---\n");
        out.push_str(&serde_norway::to_string(object)?);
    }
    Ok(out)
}

/// Parses a multi-document YAML text written by [`to_yaml`] (or by hand, with these kinds).
pub fn from_yaml(text: &str) -> Result<Vec<Object>, serde_norway::Error> {
    let mut objects = Vec::new();
    for document in serde_norway::Deserializer::from_str(text) {
        let value = serde_norway::Value::deserialize(document)?;
        if !value.is_null() {
            objects.push(serde_norway::from_value(value)?);
        }
    }
    Ok(objects)
}
