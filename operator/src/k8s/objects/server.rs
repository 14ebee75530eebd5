//! The server side: the MySQL settings, the headless Service, one StatefulSet per server and the
//! servers' PodDisruptionBudget.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec, StatefulSetUpdateStrategy};
use k8s_openapi::api::core::v1::{
    Affinity, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, ExecAction,
    HTTPGetAction, Lifecycle, LifecycleHandler, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PodAffinityTerm, PodAntiAffinity, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, Service, ServicePort, ServiceSpec, TopologySpreadConstraint, Volume,
    VolumeMount, VolumeResourceRequirements, WeightedPodAffinityTerm,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{
    COMPONENT_SERVER, Ctx, DATA_VOLUME, MYSQL_CONFIG_KEY, MYSQL_UID, NONROOT_UID, backup,
    claim_retention, cluster_token_ref, env, env_secret, labels, mysql_password_ref, restricted,
    runtime_default_seccomp, selector_labels, server_selector_labels,
};
use walshard_k8s_api::names::{self, AGENT_PORT, MYSQL_PORT};
use walshard_k8s_api::spec::EngineFlavor;

/// The database the agent keeps everything in (it creates it too).
const DATABASE: &str = "walshard";
const CONFIG_VOLUME: &str = "mysql-config";
const AGENT_PORT_NAME: &str = "agent";
const AGENT_DATA_DIR: &str = "/data/agent";
/// Included by both images' configuration (`!includedir`).
const CONF_DIR: &str = "/etc/mysql/conf.d";

/// What differs between the MySQL and MariaDB images.
struct Engine {
    root_password_env: &'static str,
    database_env: &'static str,
    /// Extra environment of the engine container.
    extra_env: &'static [(&'static str, &'static str)],
    /// Exits 0 while the server answers (even "access denied"), over the socket.
    ping: &'static [&'static str],
    /// Turns the binary log off (`walshard.cnf`).
    no_binary_log: &'static str,
    /// More `walshard.cnf` lines keeping the server on loopback.
    loopback: &'static str,
}

const MYSQL: Engine = Engine {
    root_password_env: "MYSQL_ROOT_PASSWORD",
    database_env: "MYSQL_DATABASE",
    extra_env: &[],
    ping: &["mysqladmin", "ping", "--silent"],
    no_binary_log: "disable-log-bin",
    loopback: "mysqlx-bind-address = 127.0.0.1\n",
};

const MARIADB: Engine = Engine {
    root_password_env: "MARIADB_ROOT_PASSWORD",
    database_env: "MARIADB_DATABASE",
    // Runs mariadb-upgrade when a newer image starts on an older data directory.
    extra_env: &[("MARIADB_AUTO_UPGRADE", "1")],
    ping: &["mariadb-admin", "ping", "--silent"],
    no_binary_log: "skip-log-bin",
    loopback: "",
};

fn engine(flavor: EngineFlavor) -> &'static Engine {
    match flavor {
        EngineFlavor::Mysql => &MYSQL,
        EngineFlavor::Mariadb => &MARIADB,
    }
}

/// `walshard.cnf` for `flavor`.
fn mysql_settings(flavor: EngineFlavor) -> String {
    let engine = engine(flavor);
    format!(
        "# Written by walshard-operator; a server reads it when it starts.\n\
         [mysqld]\n\
         # The agent's WAL is the durable record (fdatasync per group commit) and every entry after\n\
         # MySQL's applied_lsn is replayed after a crash: InnoDB may flush about once a second, and\n\
         # no binary log is needed.\n\
         innodb_flush_log_at_trx_commit = 2\n\
         {}\n\
         # Only the agent in the same pod connects, over loopback.\n\
         bind-address = 127.0.0.1\n\
         {}\
         port = {MYSQL_PORT}\n\
         skip-name-resolve\n",
        engine.no_binary_log, engine.loopback
    )
}

pub(super) fn mysql_config(ctx: &Ctx<'_>) -> ConfigMap {
    ConfigMap {
        metadata: ctx.meta(names::mysql_config(ctx.db), COMPONENT_SERVER, None),
        data: Some(BTreeMap::from([(
            MYSQL_CONFIG_KEY.to_owned(),
            mysql_settings(ctx.spec.engine.flavor()),
        )])),
        ..ConfigMap::default()
    }
}

/// Gives every server pod a DNS name (`<pod>.<db>-servers`), ready or not: agents reach each
/// other and the control plane reaches them during elections, before they are ready.
pub(super) fn headless_service(ctx: &Ctx<'_>) -> Service {
    Service {
        metadata: ctx.meta(names::servers_service(ctx.db), COMPONENT_SERVER, None),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_owned()),
            publish_not_ready_addresses: Some(true),
            selector: Some(selector_labels(ctx.db, COMPONENT_SERVER)),
            ports: Some(vec![ServicePort {
                name: Some(AGENT_PORT_NAME.to_owned()),
                port: i32::from(AGENT_PORT),
                target_port: Some(IntOrString::String(AGENT_PORT_NAME.to_owned())),
                protocol: Some("TCP".to_owned()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// At most one server pod down at a time for evictions (node drains): with 3 replicas per
/// shard, a majority of every shard stays up.
pub(super) fn pdb(ctx: &Ctx<'_>) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: ctx.meta(names::servers_pdb(ctx.db), COMPONENT_SERVER, None),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(match_labels(selector_labels(ctx.db, COMPONENT_SERVER))),
            // A crash-looping server must not block a node drain.
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".to_owned()),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}

/// `server`'s StatefulSet: one pod (MySQL + agent) and one claim `data` (subPath `mysql` for
/// MySQL, `agent` for the WAL).
///
/// `updateStrategy: OnDelete`: a template change (image, resources) restarts nothing by itself;
/// every server's StatefulSet would otherwise roll its pod at once and take every shard's
/// quorum with it. The reconciler restarts outdated servers one at a time
/// (`status.currentRevision != status.updateRevision`).
pub(super) fn stateful_set(ctx: &Ctx<'_>, server: &str) -> StatefulSet {
    let name = names::server_set(ctx.db, server);
    let storage = &ctx.spec.storage;
    let claim = PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(DATA_VOLUME.to_owned()),
            labels: Some(labels(ctx.db, COMPONENT_SERVER, Some(server))),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
            storage_class_name: storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_owned(),
                    Quantity(storage.size.clone()),
                )])),
                limits: None,
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    };
    StatefulSet {
        metadata: ctx.meta(name, COMPONENT_SERVER, Some(server)),
        spec: StatefulSetSpec {
            replicas: Some(1),
            service_name: Some(names::servers_service(ctx.db)),
            pod_management_policy: Some("Parallel".to_owned()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("OnDelete".to_owned()),
                rolling_update: None,
            }),
            selector: match_labels(server_selector_labels(ctx.db, server)),
            persistent_volume_claim_retention_policy: Some(claim_retention(ctx.spec)),
            volume_claim_templates: Some(vec![claim]),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some({
                        let mut all = ctx.spec.pod.labels.clone();
                        all.extend(labels(ctx.db, COMPONENT_SERVER, Some(server)));
                        all
                    }),
                    annotations: Some({
                        let mut all = ctx.spec.pod.annotations.clone();
                        all.insert(
                            "kubectl.kubernetes.io/default-container".to_owned(),
                            "agent".to_owned(),
                        );
                        all
                    }),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod_spec(ctx, server)),
            },
            ..StatefulSetSpec::default()
        },
        ..StatefulSet::default()
    }
}

fn pod_spec(ctx: &Ctx<'_>, server: &str) -> PodSpec {
    let pod = &ctx.spec.pod;
    let mut volumes = vec![Volume {
        name: CONFIG_VOLUME.to_owned(),
        config_map: Some(ConfigMapVolumeSource {
            name: names::mysql_config(ctx.db),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    }];
    volumes.extend(super::tls::volume(ctx));
    // A restoring database: MySQL runs as a native sidecar, so that the restore init container
    // can fill it before the agent starts (see `backup`).
    let (init_containers, containers) = match &ctx.spec.restore {
        Some(restore) => {
            volumes.push(backup::restore_volume(ctx));
            (
                Some(vec![
                    backup::as_sidecar(mysql_container(ctx)),
                    backup::restore_container(ctx, restore, server, AGENT_DATA_DIR),
                ]),
                vec![agent_container(ctx, server)],
            )
        }
        None => (
            None,
            vec![mysql_container(ctx), agent_container(ctx, server)],
        ),
    };
    PodSpec {
        init_containers,
        containers,
        volumes: Some(volumes),
        // MySQL runs as its image's `mysql` (999), the agent as distroless `nonroot` (65532);
        // fsGroup 999 makes the claim (and its subPath directories) writable by both.
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            fs_group: Some(ctx.spec.pod.fs_group.unwrap_or_else(|| mysql_uid(ctx))),
            fs_group_change_policy: Some("OnRootMismatch".to_owned()),
            seccomp_profile: Some(runtime_default_seccomp()),
            ..PodSecurityContext::default()
        }),
        affinity: Some(
            pod.affinity
                .clone()
                .unwrap_or_else(|| spread(ctx.db, COMPONENT_SERVER)),
        ),
        topology_spread_constraints: Some(if pod.topology_spread_constraints.is_empty() {
            vec![zone_spread(ctx.db)]
        } else {
            pod.topology_spread_constraints.clone()
        }),
        node_selector: Some(pod.node_selector.clone()).filter(|m| !m.is_empty()),
        tolerations: Some(pod.tolerations.clone()).filter(|t| !t.is_empty()),
        priority_class_name: pod.priority_class_name.clone(),
        termination_grace_period_seconds: Some(ctx.spec.pod.termination_grace_period_seconds),
        // Server pods never call the Kubernetes API.
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        ..PodSpec::default()
    }
}

/// The MySQL container's user: `spec.pod.runAsUser`, else the official images' `mysql` (999).
fn mysql_uid(ctx: &Ctx<'_>) -> i64 {
    ctx.spec.pod.run_as_user.unwrap_or(MYSQL_UID)
}

/// Server pods spread over zones, softly: nothing changes where nodes have no zone label.
fn zone_spread(db: &str) -> TopologySpreadConstraint {
    TopologySpreadConstraint {
        max_skew: 1,
        topology_key: "topology.kubernetes.io/zone".to_owned(),
        when_unsatisfiable: "ScheduleAnyway".to_owned(),
        label_selector: Some(match_labels(selector_labels(db, COMPONENT_SERVER))),
        ..TopologySpreadConstraint::default()
    }
}

/// Prefer one pod of `component` of this database per node. A shard's replicas sit on distinct
/// servers by placement, so spreading the servers spreads every shard's replicas; preferred, not
/// required, so a database with more pods than nodes still schedules.
pub(super) fn spread(db: &str, component: &str) -> Affinity {
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: PodAffinityTerm {
                        label_selector: Some(match_labels(selector_labels(db, component))),
                        topology_key: "kubernetes.io/hostname".to_owned(),
                        ..PodAffinityTerm::default()
                    },
                },
            ]),
            ..PodAntiAffinity::default()
        }),
        ..Affinity::default()
    }
}

fn mysql_container(ctx: &Ctx<'_>) -> Container {
    let flavor = ctx.spec.engine.flavor();
    let engine = engine(flavor);
    let mut env_vars = vec![
        env_secret(
            engine.root_password_env,
            mysql_password_ref(ctx.db, &ctx.spec.credentials),
        ),
        env(engine.database_env, DATABASE),
    ];
    env_vars.extend(engine.extra_env.iter().map(|(k, v)| env(k, *v)));
    let ping = || Some(exec(engine.ping));
    Container {
        name: "mysql".to_owned(),
        image: Some(ctx.spec.engine.image.clone()),
        env: Some(env_vars),
        volume_mounts: Some(vec![
            VolumeMount {
                name: DATA_VOLUME.to_owned(),
                mount_path: "/var/lib/mysql".to_owned(),
                sub_path: Some("mysql".to_owned()),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: CONFIG_VOLUME.to_owned(),
                mount_path: format!("{CONF_DIR}/{MYSQL_CONFIG_KEY}"),
                sub_path: Some(MYSQL_CONFIG_KEY.to_owned()),
                read_only: Some(true),
                ..VolumeMount::default()
            },
        ]),
        // First start initializes the data directory; crash recovery can take long too.
        startup_probe: Some(Probe {
            period_seconds: Some(10),
            timeout_seconds: Some(5),
            failure_threshold: Some(60),
            ..ping_probe(ping())
        }),
        liveness_probe: Some(Probe {
            period_seconds: Some(10),
            timeout_seconds: Some(5),
            failure_threshold: Some(6),
            ..ping_probe(ping())
        }),
        resources: Some(
            ctx.spec
                .resources
                .mysql
                .clone()
                .unwrap_or_else(|| requests("250m", "512Mi")),
        ),
        // MySQL outlives the agent: on deletion the agent keeps serving until its primaries are
        // switched over, and needs MySQL until it has stopped listening.
        lifecycle: Some(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                exec: Some(exec(&["bash", "-c", &mysql_pre_stop()])),
                ..LifecycleHandler::default()
            }),
            ..Lifecycle::default()
        }),
        // The image's entrypoint writes outside the data directory (socket, temporary files).
        security_context: Some(restricted(mysql_uid(ctx), false)),
        ..Container::default()
    }
}

fn agent_container(ctx: &Ctx<'_>, server: &str) -> Container {
    let credentials = &ctx.spec.credentials;
    let archive = ctx.spec.backup.as_ref().map(backup::archive_env);
    let heartbeat = || HTTPGetAction {
        path: Some("/heartbeat".to_owned()),
        port: IntOrString::String(AGENT_PORT_NAME.to_owned()),
        scheme: super::tls::probe_scheme(ctx),
        ..HTTPGetAction::default()
    };
    let mut env_vars = vec![
        env("WALSHARD_LISTEN", format!("0.0.0.0:{AGENT_PORT}")),
        // From parts: the password goes from the Secret to the agent verbatim, never
        // through a URL (any character a Secret holds works).
        env("WALSHARD_MYSQL_HOST", "127.0.0.1"),
        env("WALSHARD_MYSQL_PORT", MYSQL_PORT.to_string()),
        env("WALSHARD_MYSQL_USER", "root"),
        env_secret(
            "WALSHARD_MYSQL_PASSWORD",
            mysql_password_ref(ctx.db, credentials),
        ),
        env("WALSHARD_DATA_DIR", AGENT_DATA_DIR),
        env("WALSHARD_SERVER_NAME", server),
        env_secret("WALSHARD_TOKEN", cluster_token_ref(ctx.db, credentials)),
        env("WALSHARD_CONTROLLED", "true"),
        env("WALSHARD_WAL_FSYNC", ctx.spec.durability.wal_fsync.as_str()),
        env("WALSHARD_LOG_FORMAT", "json"),
        env(
            "WALSHARD_SHUTDOWN_HANDOVER_SECONDS",
            ctx.spec.pod.handover_seconds().to_string(),
        ),
    ];
    env_vars.extend(
        walshard_contract::process::SERVER_ENV
            .iter()
            .map(|(name, value)| env(name, *value)),
    );
    env_vars.extend(super::tls::serving_env(ctx));
    env_vars.extend(archive.into_iter().flatten());
    Container {
        name: "agent".to_owned(),
        image: Some(ctx.images.agent.clone()),
        image_pull_policy: ctx.images.pull_policy.clone(),
        env: Some(env_vars),
        ports: Some(vec![ContainerPort {
            name: Some(AGENT_PORT_NAME.to_owned()),
            container_port: i32::from(AGENT_PORT),
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        }]),
        volume_mounts: Some(
            [VolumeMount {
                name: DATA_VOLUME.to_owned(),
                mount_path: AGENT_DATA_DIR.to_owned(),
                sub_path: Some("agent".to_owned()),
                ..VolumeMount::default()
            }]
            .into_iter()
            .chain(super::tls::mount(ctx))
            .collect(),
        ),
        // The agent listens once MySQL answers and its WAL is replayed.
        startup_probe: Some(Probe {
            http_get: Some(heartbeat()),
            period_seconds: Some(5),
            timeout_seconds: Some(2),
            failure_threshold: Some(180),
            ..Probe::default()
        }),
        readiness_probe: Some(Probe {
            http_get: Some(heartbeat()),
            period_seconds: Some(5),
            timeout_seconds: Some(2),
            failure_threshold: Some(2),
            ..Probe::default()
        }),
        // Lenient: a restart costs the shards it leads an election.
        liveness_probe: Some(Probe {
            http_get: Some(heartbeat()),
            period_seconds: Some(10),
            timeout_seconds: Some(5),
            failure_threshold: Some(6),
            ..Probe::default()
        }),
        resources: Some(
            ctx.spec
                .resources
                .agent
                .clone()
                .unwrap_or_else(|| requests("100m", "128Mi")),
        ),
        // Writes only to its data directory.
        security_context: Some(restricted(NONROOT_UID, true)),
        ..Container::default()
    }
}

/// MySQL's `preStop`: wait while the agent still listens on its port (bash's `/dev/tcp`; the
/// MySQL and MariaDB images ship bash), then 2 s for its last requests. The kubelet's grace
/// period bounds it.
fn mysql_pre_stop() -> String {
    format!(
        "while (exec 3<>/dev/tcp/127.0.0.1/{AGENT_PORT}) 2>/dev/null; do sleep 0.5; done; sleep 2"
    )
}

/// Requests (no limits) for a container the spec gives no resources: a pod with none is
/// BestEffort, the first evicted under node pressure, and each eviction of a primary's pod is a
/// failover.
pub(super) fn requests(cpu: &str, memory: &str) -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), Quantity(cpu.to_owned())),
            ("memory".to_owned(), Quantity(memory.to_owned())),
        ])),
        ..ResourceRequirements::default()
    }
}

fn exec(command: &[&str]) -> ExecAction {
    ExecAction {
        command: Some(command.iter().map(|s| (*s).to_owned()).collect()),
    }
}

fn ping_probe(exec: Option<ExecAction>) -> Probe {
    Probe {
        exec,
        ..Probe::default()
    }
}

pub(super) fn match_labels(labels: BTreeMap<String, String>) -> LabelSelector {
    LabelSelector {
        match_labels: Some(labels),
        match_expressions: None,
    }
}
