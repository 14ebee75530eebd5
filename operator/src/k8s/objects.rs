//! Everything the operator keeps for one `ShardedDatabase`, as pure functions: [`desired`] turns
//! the resource, the operator's images and freshly generated secrets into the objects to apply.
//! No IO, no clock, no randomness: the same input gives the same objects (golden-tested in
//! `tests/objects.rs`).
//!
//! The shape (one StatefulSet of one replica per server, see [`walshard_k8s_api::names`]):
//!
//! | object | name | what for |
//! | --- | --- | --- |
//! | Secret | `<db>-credentials` | cluster token and MySQL root password; create-only |
//! | Secret | `<db>-tls` | with `spec.tls` and no `secretName`: generated authority and certificate; create-only |
//! | ConfigMap | `<db>-mysql` | `walshard.cnf`: MySQL settings, mounted into `conf.d` |
//! | Service (headless) | `<db>-servers` | a DNS name per server pod for the agents' API |
//! | StatefulSet × server | `<db>-<server>` | the server pod (MySQL + agent) and its PVC |
//! | PodDisruptionBudget | `<db>-servers` | one server down at a time on voluntary disruptions |
//! | Deployment, Service | `<db>-router` | the seed API |
//! | PodDisruptionBudget | `<db>-router` | keeps a router up on voluntary disruptions |
//! | ServiceAccount, Role, RoleBinding | `<db>-router` | the router reads and patches its database |
//! | ConfigMap (with `spec.restore`) | `<db>-restore` | the layout the restore init containers rebuild ([`backup`]) |

pub mod backup;
mod router;
mod server;
mod tls;

pub use tls::{GeneratedTls, certificate_names, secret_name as tls_secret_name};

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{
    Deployment, StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, EnvVar, EnvVarSource, SeccompProfile, Secret, SecretKeySelector,
    SecurityContext, Service, ServiceAccount,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use thiserror::Error;

use walshard_k8s_api::names;
use walshard_k8s_api::spec::{
    self, CredentialsSpec, Resolved, Retention, ShardedDatabase, ShardedDatabaseSpec, SpecError,
};

/// `app.kubernetes.io/name`: always [`APP`].
pub const LABEL_NAME: &str = "app.kubernetes.io/name";
/// `app.kubernetes.io/instance`: the database's name.
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
/// `app.kubernetes.io/component`: [`COMPONENT_SERVER`] or [`COMPONENT_ROUTER`].
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
/// `app.kubernetes.io/managed-by`: always [`MANAGED_BY`].
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// The server's name as in the spec (`Server_4`), on that server's StatefulSet, pod and PVC.
pub const LABEL_SERVER: &str = "walshard.io/server";
/// The value of [`LABEL_NAME`].
pub const APP: &str = "walshard";
/// The value of [`LABEL_MANAGED_BY`].
pub const MANAGED_BY: &str = "walshard-operator";
/// [`LABEL_COMPONENT`] of the server objects (StatefulSets, their pods, the headless Service).
pub const COMPONENT_SERVER: &str = "server";
/// [`LABEL_COMPONENT`] of the router objects.
pub const COMPONENT_ROUTER: &str = "router";

/// Key of the cluster token in the generated Secret.
pub const SECRET_TOKEN_KEY: &str = "token";
/// Key of the MySQL root password in the generated Secret.
pub const SECRET_MYSQL_PASSWORD_KEY: &str = "mysql-password";
/// Key of the router's admin token (`/init`, `/add`, `/rm`) in the generated Secret.
pub const SECRET_ROUTER_ADMIN_TOKEN_KEY: &str = "router-admin-token";
/// Key (and file name) of the MySQL settings in the ConfigMap.
pub const MYSQL_CONFIG_KEY: &str = "walshard.cnf";
/// The volume claim template of every server StatefulSet.
pub const DATA_VOLUME: &str = "data";
/// Longest server StatefulSet name: the pod's `controller-revision-hash` label value is
/// `<statefulset>-<hash of up to 10 characters>`, and label values are at most 63 characters.
pub const MAX_SERVER_SET_NAME: usize = 52;
/// Longest Service name (an RFC 1035 label).
pub const MAX_SERVICE_NAME: usize = 63;
/// `mysql` user and group of the official MySQL and MariaDB images.
pub const MYSQL_UID: i64 = 999;
/// `nonroot` user and group of the distroless agent and router images.
pub const NONROOT_UID: i64 = 65532;

/// The images of the containers the operator runs (from its environment: WALSHARD_AGENT_IMAGE,
/// WALSHARD_ROUTER_IMAGE); `pull_policy` applies to both (the engine image keeps Kubernetes'
/// default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Images {
    /// The agent image (also the restore init container's).
    pub agent: String,
    /// The router image.
    pub router: String,
    /// `imagePullPolicy` of the agent and router containers; Kubernetes' default when `None`.
    pub pull_policy: Option<String>,
}

/// The objects of one `ShardedDatabase`, every one in its namespace with the labels above and
/// the database as controller owner (the Secret only when `storage.retention.whenDeleted` is
/// `Delete`, see [`desired`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    /// Create-only: never overwritten once it exists. Holds only the keys no credentials ref
    /// replaces (no keys at all when both refs are set).
    pub secret: Secret,
    /// Create-only, like `secret`: the generated TLS Secret (`spec.tls` without a
    /// `secretName`, when `GeneratedSecrets::tls` is given).
    pub tls_secret: Option<Secret>,
    /// The MySQL settings; with `spec.restore`, then the layout the servers are restored for.
    pub config_maps: Vec<ConfigMap>,
    /// The headless servers Service, then the router Service.
    pub services: Vec<Service>,
    /// One per server, replicas 1, in server-name order.
    pub stateful_sets: Vec<StatefulSet>,
    /// The router.
    pub deployments: Vec<Deployment>,
    /// Servers (maxUnavailable 1), then router.
    pub pdbs: Vec<PodDisruptionBudget>,
    /// The router's.
    pub service_accounts: Vec<ServiceAccount>,
    /// The router's: read and patch its database.
    pub roles: Vec<Role>,
    /// The router's, binding its Role to its ServiceAccount.
    pub role_bindings: Vec<RoleBinding>,
}

/// Random values the reconciler generates for a Secret that does not exist yet. Only used in
/// [`Desired::secret`]; every other object refers to the Secret by key, so fresh values on every
/// reconcile change nothing else. The password goes into a URL unescaped: generate it from
/// `[A-Za-z0-9]`.
#[derive(Clone, PartialEq, Eq)]
pub struct GeneratedSecrets {
    /// The token agents, routers and the control plane authenticate each other with.
    pub cluster_token: String,
    /// MySQL's root password.
    pub mysql_password: String,
    /// The router's admin token (`/init`, `/add`, `/rm`).
    pub router_admin_token: String,
    /// A fresh authority and certificate, for `spec.tls` without a `secretName`.
    pub tls: Option<GeneratedTls>,
}

impl fmt::Debug for GeneratedSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GeneratedSecrets { .. }")
    }
}

/// Why the desired objects of a database cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ObjectsError {
    /// The object lacks this metadata field (it was not read from the API).
    #[error("the ShardedDatabase has no metadata.{0} (build objects from one read from the API)")]
    MissingMetadata(&'static str),
    /// The spec does not resolve.
    #[error("invalid ShardedDatabase spec: {0}")]
    Spec(#[from] SpecError),
    /// A generated object name is too long for Kubernetes.
    #[error(
        "{object} name {name:?} is {len} characters, at most {max} allowed ({why}): shorten the ShardedDatabase or server name"
    )]
    NameTooLong {
        /// The kind of object.
        object: &'static str,
        /// The generated name.
        name: String,
        /// Its length.
        len: usize,
        /// The longest allowed.
        max: usize,
        /// Why that is the limit.
        why: &'static str,
    },
    /// A generated object name is not a DNS label.
    #[error("{object} name {name:?} is not a DNS label: {rule}")]
    NotDnsLabel {
        /// The kind of object.
        object: &'static str,
        /// The generated name.
        name: String,
        /// The rule it breaks.
        rule: &'static str,
    },
    /// A server name that cannot become a label value.
    #[error(
        "server name {0:?} must start and end with a letter or digit (it becomes a label value and part of object names)"
    )]
    ServerName(String),
    /// An image of the operator's configuration is empty (which one).
    #[error("the {0} image is empty (operator configuration)")]
    EmptyImage(&'static str),
    /// The operator's image pull policy is not a Kubernetes one.
    #[error(
        "image pull policy {0:?} is not Always, IfNotPresent or Never (operator configuration)"
    )]
    PullPolicy(String),
}

/// Everything the operator keeps for `db`. Fails when the spec does not resolve, a name does
/// not fit Kubernetes, or `db` was not read from the API (no namespace or uid).
///
/// The Secret's owner reference follows `storage.retention.whenDeleted`: with `Retain` the data
/// claims outlive the database, and so must the password that opens them (MySQL keeps the root
/// password of its first start), so the Secret gets no owner reference and is reused when a
/// database of the same name comes back.
pub fn desired(
    db: &ShardedDatabase,
    images: &Images,
    generated: &GeneratedSecrets,
) -> Result<Desired, ObjectsError> {
    let name = db
        .metadata
        .name
        .clone()
        .ok_or(ObjectsError::MissingMetadata("name"))?;
    let namespace = db
        .metadata
        .namespace
        .clone()
        .ok_or(ObjectsError::MissingMetadata("namespace"))?;
    let mut owner = db
        .controller_owner_ref(&())
        .ok_or(ObjectsError::MissingMetadata("uid"))?;
    owner.block_owner_deletion = Some(true);
    check_images(images)?;
    check_database_name(&name)?;
    let resolved = db.spec.resolve()?;
    for server in resolved.placement.keys() {
        check_server_name(&name, server)?;
    }
    let ctx = Ctx {
        db: &name,
        namespace: &namespace,
        owner,
        spec: &db.spec,
        images,
        layout: &resolved,
    };
    let tls_secret = match (&db.spec.tls, &generated.tls) {
        (Some(t), Some(g)) if t.secret_name.is_none() => Some(tls::generated_secret(&ctx, g)),
        _ => None,
    };
    let mut config_maps = vec![server::mysql_config(&ctx)];
    if db.spec.restore.is_some() {
        config_maps.push(backup::restore_config(&ctx));
    }
    Ok(Desired {
        secret: secret(&ctx, generated),
        tls_secret,
        config_maps,
        services: vec![server::headless_service(&ctx), router::service(&ctx)],
        stateful_sets: resolved
            .placement
            .keys()
            .map(|server| server::stateful_set(&ctx, server))
            .collect(),
        deployments: vec![router::deployment(&ctx)],
        pdbs: vec![server::pdb(&ctx), router::pdb(&ctx)],
        service_accounts: vec![router::service_account(&ctx)],
        roles: vec![router::role(&ctx)],
        role_bindings: vec![router::role_binding(&ctx)],
    })
}

/// The labels of every object of `db`'s `component`, and of `server`'s own objects.
pub fn labels(db: &str, component: &str, server: Option<&str>) -> BTreeMap<String, String> {
    let mut labels = selector_labels(db, component);
    labels.insert(LABEL_MANAGED_BY.to_owned(), MANAGED_BY.to_owned());
    if let Some(server) = server {
        labels.insert(LABEL_SERVER.to_owned(), server.to_owned());
    }
    labels
}

/// Selects the pods of `db`'s `component` (servers: the headless Service, the servers' PDB and
/// anti-affinity; router: its Service, Deployment and PDB).
pub fn selector_labels(db: &str, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_NAME.to_owned(), APP.to_owned()),
        (LABEL_INSTANCE.to_owned(), db.to_owned()),
        (LABEL_COMPONENT.to_owned(), component.to_owned()),
    ])
}

/// Selects `server`'s pod: its StatefulSet's (immutable) selector.
pub fn server_selector_labels(db: &str, server: &str) -> BTreeMap<String, String> {
    let mut labels = selector_labels(db, COMPONENT_SERVER);
    labels.insert(LABEL_SERVER.to_owned(), server.to_owned());
    labels
}

/// A label selector string (`k=v,k=v`) for list and watch calls.
pub fn selector_string(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Selects everything the operator made for `db` (to find orphans: list, subtract desired names).
pub fn managed_selector(db: &str) -> String {
    format!("{LABEL_NAME}={APP},{LABEL_INSTANCE}={db},{LABEL_MANAGED_BY}={MANAGED_BY}")
}

/// The PersistentVolumeClaim of `server`, from its StatefulSet's claim template.
pub fn data_claim(db: &str, server: &str) -> String {
    format!("{DATA_VOLUME}-{}", names::server_pod(db, server))
}

/// The claim retention of a server StatefulSet as rendered: `whenDeleted` from
/// `retention.whenDeleted` (deleting the database garbage-collects its StatefulSets);
/// `whenScaled` always `Retain`, so scaling a server to 0 by hand never deletes its data.
pub fn claim_retention(
    spec: &ShardedDatabaseSpec,
) -> StatefulSetPersistentVolumeClaimRetentionPolicy {
    retention_policy(spec.storage.retention.when_deleted)
}

/// The claim retention to apply to a drained server's StatefulSet before deleting it, so that
/// `retention.whenRemoved` applies rather than `whenDeleted`.
pub fn removal_claim_retention(
    spec: &ShardedDatabaseSpec,
) -> StatefulSetPersistentVolumeClaimRetentionPolicy {
    retention_policy(spec.storage.retention.when_removed)
}

/// Where the cluster token of `db` lives: `credentials.clusterTokenSecretRef` or the generated
/// Secret.
pub fn cluster_token_ref(db: &str, credentials: &CredentialsSpec) -> SecretKeySelector {
    match &credentials.cluster_token_secret_ref {
        Some(r) => key_selector(&r.name, r.key_or(spec::TOKEN_KEY)),
        None => key_selector(&names::credentials_secret(db), SECRET_TOKEN_KEY),
    }
}

/// Where the MySQL root password of `db` lives: `credentials.mysqlSecretRef` or the generated
/// Secret.
pub fn mysql_password_ref(db: &str, credentials: &CredentialsSpec) -> SecretKeySelector {
    match &credentials.mysql_secret_ref {
        Some(r) => key_selector(&r.name, r.key_or(spec::MYSQL_PASSWORD_KEY)),
        None => key_selector(&names::credentials_secret(db), SECRET_MYSQL_PASSWORD_KEY),
    }
}

/// What the builders share.
struct Ctx<'a> {
    db: &'a str,
    namespace: &'a str,
    owner: OwnerReference,
    spec: &'a ShardedDatabaseSpec,
    images: &'a Images,
    /// The resolved layout (the restore ConfigMap's content).
    layout: &'a Resolved,
}

impl Ctx<'_> {
    /// Metadata of an object of `component` (of `server`, if given), owned by the database.
    fn meta(&self, name: String, component: &str, server: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.namespace.to_owned()),
            labels: Some(labels(self.db, component, server)),
            owner_references: Some(vec![self.owner.clone()]),
            ..ObjectMeta::default()
        }
    }
}

fn secret(ctx: &Ctx<'_>, generated: &GeneratedSecrets) -> Secret {
    let credentials = &ctx.spec.credentials;
    let mut data = BTreeMap::new();
    if credentials.cluster_token_secret_ref.is_none() {
        data.insert(
            SECRET_TOKEN_KEY.to_owned(),
            ByteString(generated.cluster_token.clone().into_bytes()),
        );
    }
    if credentials.mysql_secret_ref.is_none() {
        data.insert(
            SECRET_MYSQL_PASSWORD_KEY.to_owned(),
            ByteString(generated.mysql_password.clone().into_bytes()),
        );
    }
    data.insert(
        SECRET_ROUTER_ADMIN_TOKEN_KEY.to_owned(),
        ByteString(generated.router_admin_token.clone().into_bytes()),
    );
    let mut metadata = ctx.meta(names::credentials_secret(ctx.db), COMPONENT_SERVER, None);
    if ctx.spec.storage.retention.when_deleted == Retention::Retain {
        metadata.owner_references = None;
    }
    Secret {
        metadata,
        type_: Some("Opaque".to_owned()),
        data: Some(data),
        ..Secret::default()
    }
}

fn retention_policy(when_deleted: Retention) -> StatefulSetPersistentVolumeClaimRetentionPolicy {
    let when_deleted = match when_deleted {
        Retention::Retain => "Retain",
        Retention::Delete => "Delete",
    };
    StatefulSetPersistentVolumeClaimRetentionPolicy {
        when_deleted: Some(when_deleted.to_owned()),
        when_scaled: Some("Retain".to_owned()),
    }
}

fn key_selector(name: &str, key: &str) -> SecretKeySelector {
    SecretKeySelector {
        name: name.to_owned(),
        key: key.to_owned(),
        optional: None,
    }
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.into()),
        value_from: None,
    }
}

fn env_secret(name: &str, selector: SecretKeySelector) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(selector),
            ..EnvVarSource::default()
        }),
    }
}

/// A container that runs as `uid` with no privileges.
fn restricted(uid: i64, read_only_root: bool) -> SecurityContext {
    SecurityContext {
        run_as_user: Some(uid),
        run_as_group: Some(uid),
        run_as_non_root: Some(true),
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(read_only_root),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            add: None,
        }),
        seccomp_profile: Some(runtime_default_seccomp()),
        ..SecurityContext::default()
    }
}

fn runtime_default_seccomp() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".to_owned(),
        localhost_profile: None,
    }
}

fn check_images(images: &Images) -> Result<(), ObjectsError> {
    if images.agent.trim().is_empty() {
        return Err(ObjectsError::EmptyImage("agent"));
    }
    if images.router.trim().is_empty() {
        return Err(ObjectsError::EmptyImage("router"));
    }
    match images.pull_policy.as_deref() {
        None | Some("Always" | "IfNotPresent" | "Never") => Ok(()),
        Some(other) => Err(ObjectsError::PullPolicy(other.to_owned())),
    }
}

/// The database's name must make Service names (RFC 1035 labels) and leave room for servers.
fn check_database_name(db: &str) -> Result<(), ObjectsError> {
    for service in [names::servers_service(db), names::router(db)] {
        check_label(
            "Service",
            &service,
            MAX_SERVICE_NAME,
            true,
            "an RFC 1035 label",
        )?;
    }
    Ok(())
}

fn check_server_name(db: &str, server: &str) -> Result<(), ObjectsError> {
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !alnum(server.chars().next()) || !alnum(server.chars().last()) {
        return Err(ObjectsError::ServerName(server.to_owned()));
    }
    check_label(
        "server StatefulSet",
        &names::server_set(db, server),
        MAX_SERVER_SET_NAME,
        false,
        "the controller-revision-hash label of its pod appends up to 11 characters",
    )
}

/// `name` is an RFC 1123 label (`rfc1035`: starting with a letter) of at most `max` characters.
fn check_label(
    object: &'static str,
    name: &str,
    max: usize,
    rfc1035: bool,
    why: &'static str,
) -> Result<(), ObjectsError> {
    let lower_alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let first_ok = name.chars().next().is_some_and(|c| {
        if rfc1035 {
            c.is_ascii_lowercase()
        } else {
            lower_alnum(c)
        }
    });
    let rule = if rfc1035 {
        "lowercase letters, digits and '-', starting with a letter and ending with a letter or digit"
    } else {
        "lowercase letters, digits and '-', starting and ending with a letter or digit"
    };
    if !first_ok
        || !name.chars().all(|c| lower_alnum(c) || c == '-')
        || !name.chars().last().is_some_and(lower_alnum)
    {
        return Err(ObjectsError::NotDnsLabel {
            object,
            name: name.to_owned(),
            rule,
        });
    }
    if name.len() > max {
        return Err(ObjectsError::NameTooLong {
            object,
            name: name.to_owned(),
            len: name.len(),
            max,
            why,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_checks_follow_rfc_1123_and_1035() {
        assert!(check_label("x", "a-0", 63, true, "").is_ok());
        assert!(check_label("x", "0a", 63, false, "").is_ok());
        for bad in ["0a", "-a", "a-", "a.b", "A", ""] {
            assert!(check_label("x", bad, 63, true, "").is_err(), "{bad}");
        }
        assert!(matches!(
            check_label("x", &"a".repeat(64), 63, true, ""),
            Err(ObjectsError::NameTooLong {
                len: 64,
                max: 63,
                ..
            })
        ));
    }

    #[test]
    fn selector_strings_list_every_label() {
        assert_eq!(
            selector_string(&selector_labels("studt", COMPONENT_ROUTER)),
            "app.kubernetes.io/component=router,app.kubernetes.io/instance=studt,app.kubernetes.io/name=walshard"
        );
        assert_eq!(
            managed_selector("studt"),
            "app.kubernetes.io/name=walshard,app.kubernetes.io/instance=studt,app.kubernetes.io/managed-by=walshard-operator"
        );
        assert_eq!(data_claim("studt", "Server_4"), "data-studt-server-4-0");
    }
}
