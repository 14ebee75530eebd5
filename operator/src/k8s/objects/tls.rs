//! `spec.tls` in the pods: the TLS Secret mounted read-only, the `WALSHARD_TLS_*` variables
//! that point the agent and the router at its files, and the generated Secret's names.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{EnvVar, Secret, SecretVolumeSource, Volume, VolumeMount};
use walshard_k8s_api::names;
use walshard_k8s_api::spec::{ShardedDatabaseSpec, tls_keys};

use super::{COMPONENT_SERVER, Ctx, env};

/// The TLS Secret's volume and mount name.
const VOLUME: &str = "tls";
/// Where the TLS Secret is mounted.
const DIR: &str = "/etc/walshard/tls";

/// The Secret the pods mount for `spec`'s TLS: the user's, or the generated `<db>-tls`.
pub fn secret_name(db: &str, spec: &ShardedDatabaseSpec) -> Option<String> {
    let tls = spec.tls.as_ref()?;
    Some(
        tls.secret_name
            .clone()
            .unwrap_or_else(|| names::tls_secret(db)),
    )
}

/// The names a generated certificate holds: every server pod through the headless Service,
/// and the router's Service.
pub fn certificate_names(db: &str, namespace: &str) -> Vec<String> {
    let servers = names::servers_service(db);
    let router = names::router(db);
    vec![
        format!("*.{servers}.{namespace}.svc"),
        format!("*.{servers}.{namespace}.svc.cluster.local"),
        format!("{router}.{namespace}.svc"),
        format!("{router}.{namespace}.svc.cluster.local"),
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
    ]
}

/// The pod volume of the TLS Secret, when TLS is on.
pub(super) fn volume(ctx: &Ctx<'_>) -> Option<Volume> {
    Some(Volume {
        name: VOLUME.to_owned(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret_name(ctx.db, ctx.spec)?),
            // Readable through the pod's fsGroup by the non-root containers.
            default_mode: Some(0o440),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    })
}

/// The container mount of [`volume`], when TLS is on.
pub(super) fn mount(ctx: &Ctx<'_>) -> Option<VolumeMount> {
    ctx.spec.tls.as_ref()?;
    Some(VolumeMount {
        name: VOLUME.to_owned(),
        mount_path: DIR.to_owned(),
        read_only: Some(true),
        ..VolumeMount::default()
    })
}

/// The agent's variables: serve with the certificate, trust the authority.
pub(super) fn serving_env(ctx: &Ctx<'_>) -> Vec<EnvVar> {
    if ctx.spec.tls.is_none() {
        return Vec::new();
    }
    vec![
        env("WALSHARD_TLS_CERT", format!("{DIR}/{}", tls_keys::CERT)),
        env("WALSHARD_TLS_KEY", format!("{DIR}/{}", tls_keys::KEY)),
        env("WALSHARD_TLS_CA", format!("{DIR}/{}", tls_keys::CA)),
    ]
}

/// The router's variable: trust the authority (its client API stays plain HTTP).
pub(super) fn trust_env(ctx: &Ctx<'_>) -> Vec<EnvVar> {
    if ctx.spec.tls.is_none() {
        return Vec::new();
    }
    vec![env("WALSHARD_TLS_CA", format!("{DIR}/{}", tls_keys::CA))]
}

/// The probes' scheme: the agent serves HTTPS with TLS (the kubelet does not verify it).
pub(super) fn probe_scheme(ctx: &Ctx<'_>) -> Option<String> {
    ctx.spec.tls.as_ref().map(|_| "HTTPS".to_owned())
}

/// A generated authority and certificate, PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct GeneratedTls {
    /// The authority's certificate.
    pub ca: String,
    /// The certificate the pods serve.
    pub cert: String,
    /// Its key.
    pub key: String,
}

/// The generated `<db>-tls` Secret (type `kubernetes.io/tls`, plus `ca.crt`).
pub(super) fn generated_secret(ctx: &Ctx<'_>, tls: &GeneratedTls) -> Secret {
    let data = BTreeMap::from([
        (
            tls_keys::CA.to_owned(),
            ByteString(tls.ca.clone().into_bytes()),
        ),
        (
            tls_keys::CERT.to_owned(),
            ByteString(tls.cert.clone().into_bytes()),
        ),
        (
            tls_keys::KEY.to_owned(),
            ByteString(tls.key.clone().into_bytes()),
        ),
    ]);
    Secret {
        metadata: ctx.meta(names::tls_secret(ctx.db), COMPONENT_SERVER, None),
        type_: Some("kubernetes.io/tls".to_owned()),
        data: Some(data),
        ..Secret::default()
    }
}
