//! The router: Deployment, Service, PodDisruptionBudget, and the ServiceAccount, Role and
//! RoleBinding that let it watch and patch its `ShardedDatabase`.

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, ObjectFieldSelector,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, Service, ServiceAccount, ServicePort,
    ServiceSpec,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::server::{match_labels, spread};
use super::{
    COMPONENT_ROUTER, Ctx, NONROOT_UID, cluster_token_ref, env, env_secret, key_selector, labels,
    restricted, runtime_default_seccomp, selector_labels,
};
use walshard_k8s_api::names::{self, ROUTER_PORT};
use walshard_k8s_api::spec::{self, ServiceType};

const PORT_NAME: &str = "http";

pub(super) fn deployment(ctx: &Ctx<'_>) -> Deployment {
    let name = names::router(ctx.db);
    Deployment {
        metadata: ctx.meta(name.clone(), COMPONENT_ROUTER, None),
        spec: DeploymentSpec {
            replicas: Some(ctx.spec.router.replicas),
            selector: match_labels(selector_labels(ctx.db, COMPONENT_ROUTER)),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(ctx.db, COMPONENT_ROUTER, None)),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(name),
                    containers: vec![container(ctx)],
                    volumes: super::tls::volume(ctx).map(|v| vec![v]),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        seccomp_profile: Some(runtime_default_seccomp()),
                        ..PodSecurityContext::default()
                    }),
                    affinity: Some(spread(ctx.db, COMPONENT_ROUTER)),
                    enable_service_links: Some(false),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        },
        ..Deployment::default()
    }
}

fn container(ctx: &Ctx<'_>) -> Container {
    let router = &ctx.spec.router;
    let mut env_vars = vec![
        env("WALSHARD_LISTEN", format!("0.0.0.0:{ROUTER_PORT}")),
        env("WALSHARD_KUBE_DATABASE", ctx.db),
        EnvVar {
            name: "POD_NAMESPACE".to_owned(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    api_version: Some("v1".to_owned()),
                    field_path: "metadata.namespace".to_owned(),
                }),
                ..EnvVarSource::default()
            }),
        },
        env_secret(
            "WALSHARD_TOKEN",
            cluster_token_ref(ctx.db, &ctx.spec.credentials),
        ),
    ];
    env_vars.extend(
        walshard_contract::process::SERVER_ENV
            .iter()
            .map(|(name, value)| env(name, *value)),
    );
    if let Some(r) = &router.api_token_secret_ref {
        env_vars.push(env_secret(
            "WALSHARD_API_TOKEN",
            key_selector(&r.name, r.key_or(spec::TOKEN_KEY)),
        ));
    }
    // Secure by default: the admin endpoints need the generated token; reads and writes stay
    // open unless router.apiTokenSecretRef asks for a token.
    env_vars.push(env_secret(
        "WALSHARD_ADMIN_TOKEN",
        key_selector(
            &names::credentials_secret(ctx.db),
            super::SECRET_ROUTER_ADMIN_TOKEN_KEY,
        ),
    ));
    env_vars.push(env("WALSHARD_LOG_FORMAT", "json"));
    env_vars.extend(super::tls::trust_env(ctx));
    // /metrics answers without the API token.
    let metrics = || HTTPGetAction {
        path: Some("/metrics".to_owned()),
        port: IntOrString::String(PORT_NAME.to_owned()),
        ..HTTPGetAction::default()
    };
    Container {
        name: "router".to_owned(),
        image: Some(ctx.images.router.clone()),
        image_pull_policy: ctx.images.pull_policy.clone(),
        env: Some(env_vars),
        ports: Some(vec![ContainerPort {
            name: Some(PORT_NAME.to_owned()),
            container_port: i32::from(ROUTER_PORT),
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        }]),
        volume_mounts: super::tls::mount(ctx).map(|m| vec![m]),
        readiness_probe: Some(Probe {
            http_get: Some(metrics()),
            period_seconds: Some(5),
            timeout_seconds: Some(2),
            failure_threshold: Some(2),
            ..Probe::default()
        }),
        liveness_probe: Some(Probe {
            http_get: Some(metrics()),
            period_seconds: Some(10),
            timeout_seconds: Some(5),
            failure_threshold: Some(6),
            ..Probe::default()
        }),
        resources: Some(
            router
                .resources
                .clone()
                .unwrap_or_else(|| super::server::requests("100m", "64Mi")),
        ),
        security_context: Some(restricted(NONROOT_UID, true)),
        ..Container::default()
    }
}

pub(super) fn service(ctx: &Ctx<'_>) -> Service {
    let service_type = match ctx.spec.router.service_type {
        ServiceType::ClusterIP => "ClusterIP",
        ServiceType::NodePort => "NodePort",
        ServiceType::LoadBalancer => "LoadBalancer",
    };
    Service {
        metadata: ctx.meta(names::router(ctx.db), COMPONENT_ROUTER, None),
        spec: Some(ServiceSpec {
            type_: Some(service_type.to_owned()),
            selector: Some(selector_labels(ctx.db, COMPONENT_ROUTER)),
            ports: Some(vec![ServicePort {
                name: Some(PORT_NAME.to_owned()),
                port: i32::from(ROUTER_PORT),
                target_port: Some(IntOrString::String(PORT_NAME.to_owned())),
                protocol: Some("TCP".to_owned()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// Several replicas: keep one up. One replica: let a drain evict it (a budget of
/// `minAvailable: 1` over one pod would block every drain).
pub(super) fn pdb(ctx: &Ctx<'_>) -> PodDisruptionBudget {
    let (min_available, max_unavailable) = if ctx.spec.router.replicas > 1 {
        (Some(IntOrString::Int(1)), None)
    } else {
        (None, Some(IntOrString::Int(1)))
    };
    PodDisruptionBudget {
        metadata: ctx.meta(names::router(ctx.db), COMPONENT_ROUTER, None),
        spec: Some(PodDisruptionBudgetSpec {
            min_available,
            max_unavailable,
            selector: Some(match_labels(selector_labels(ctx.db, COMPONENT_ROUTER))),
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".to_owned()),
        }),
        ..PodDisruptionBudget::default()
    }
}

pub(super) fn service_account(ctx: &Ctx<'_>) -> ServiceAccount {
    ServiceAccount {
        metadata: ctx.meta(names::router(ctx.db), COMPONENT_ROUTER, None),
        ..ServiceAccount::default()
    }
}

/// Its own database only: get and watch it (status carries the topology), patch its spec for
/// `/init`, `/add`, `/rm`. With `resourceNames`, list and watch need the field selector
/// `metadata.name=<db>`.
pub(super) fn role(ctx: &Ctx<'_>) -> Role {
    Role {
        metadata: ctx.meta(names::router(ctx.db), COMPONENT_ROUTER, None),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![spec::GROUP.to_owned()]),
            resources: Some(vec!["shardeddatabases".to_owned()]),
            resource_names: Some(vec![ctx.db.to_owned()]),
            verbs: ["get", "list", "watch", "patch"]
                .map(str::to_owned)
                .to_vec(),
            ..PolicyRule::default()
        }]),
    }
}

pub(super) fn role_binding(ctx: &Ctx<'_>) -> RoleBinding {
    let name = names::router(ctx.db);
    RoleBinding {
        metadata: ctx.meta(name.clone(), COMPONENT_ROUTER, None),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".to_owned()),
            kind: "Role".to_owned(),
            name: name.clone(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_owned(),
            name,
            namespace: Some(ctx.namespace.to_owned()),
            api_group: None,
        }]),
    }
}
