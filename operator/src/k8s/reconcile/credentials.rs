//! Credentials: the generated Secret (created once, never rewritten; keys a newer operator
//! generates are added) and the cluster token the agents use.

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use rand::distr::{Alphanumeric, SampleString};
use tracing::info;
use walshard_k8s_api::spec::ShardedDatabase;

use super::report::publish;
use super::{AgentAccess, Context, FIELD_MANAGER, Fleet, GENERATED_SECRET_LEN, ReconcileError};
use crate::k8s::objects;
use walshard_contract::http_client::TrustedCa;

/// The generated Secret: created when it does not exist, never written once it does.
pub(super) async fn ensure_secret<F: Fleet>(
    ctx: &Context<F>,
    db: &ShardedDatabase,
    secret: &Secret,
) -> Result<Secret, ReconcileError> {
    let namespace = db.namespace().unwrap_or_default();
    let name = secret.name_any();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let get = || async {
        secrets
            .get_opt(&name)
            .await
            .map_err(|e| ReconcileError::api("get", "Secret", &name, e))
    };
    if let Some(existing) = get().await? {
        return add_missing_keys(&secrets, existing, secret).await;
    }
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PostParams::default()
    };
    let created = match secrets.create(&params, secret).await {
        Ok(created) => created,
        // Created concurrently (another reconcile, or a user): keep that one.
        Err(kube::Error::Api(status)) if status.is_already_exists() => {
            return get().await?.ok_or_else(|| {
                ReconcileError::api("get", "Secret", &name, kube::Error::Api(status))
            });
        }
        Err(e) => return Err(ReconcileError::api("create", "Secret", &name, e)),
    };
    info!(secret = %name, "created a generated Secret");
    publish(
        ctx,
        db,
        Some(created.object_ref(&())),
        EventType::Normal,
        "Created",
        "CreateCredentials",
        if created.type_.as_deref() == Some("kubernetes.io/tls") {
            format!("created Secret {name} with a generated TLS authority and certificate")
        } else {
            format!("created Secret {name} with a generated cluster token and MySQL password")
        },
    )
    .await;
    Ok(created)
}

/// Adds the keys `desired` has and `existing` lacks (a key a newer operator generates, e.g. the
/// router's admin token), with a JSON merge patch of those keys only: a key, once written, is
/// never changed.
pub(super) async fn add_missing_keys(
    secrets: &Api<Secret>,
    existing: Secret,
    desired: &Secret,
) -> Result<Secret, ReconcileError> {
    let have = existing.data.as_ref();
    let missing: std::collections::BTreeMap<&String, &k8s_openapi::ByteString> = desired
        .data
        .iter()
        .flatten()
        .filter(|(k, _)| !have.is_some_and(|d| d.contains_key(*k)))
        .collect();
    if missing.is_empty() {
        return Ok(existing);
    }
    let name = existing.name_any();
    let keys: Vec<&str> = missing.keys().map(|k| k.as_str()).collect();
    info!(secret = %name, ?keys, "adding generated keys to the credentials Secret");
    let patch = serde_json::json!({ "data": missing });
    secrets
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| ReconcileError::api("patch", "Secret", &name, e))
}

/// How the control plane reaches `db`'s agents: the cluster token and, with `spec.tls`, the
/// authority of its TLS Secret (a user's Secret may not exist yet, e.g. before cert-manager
/// issued it). `Ok(Err(why))` when either is missing.
pub(super) async fn agent_access<F: Fleet>(
    ctx: &Context<F>,
    db: &ShardedDatabase,
    namespace: &str,
    generated: &Secret,
) -> Result<Result<AgentAccess, String>, ReconcileError> {
    let token = match cluster_token(ctx, db, namespace, generated).await? {
        Ok(token) => token,
        Err(missing) => return Ok(Err(missing)),
    };
    let trust = match super::tls::authority(ctx, db, namespace).await? {
        Ok(None) => None,
        Ok(Some(pem)) => match TrustedCa::from_pem(&pem) {
            Ok(ca) => Some(ca),
            Err(e) => return Ok(Err(e.to_string())),
        },
        Err(missing) => return Ok(Err(missing)),
    };
    Ok(Ok(AgentAccess { token, trust }))
}

/// The cluster token the agents use: from `credentials.clusterTokenSecretRef` or the generated
/// Secret `generated`. `Ok(Err(why))` when it is missing.
pub(super) async fn cluster_token<F: Fleet>(
    ctx: &Context<F>,
    db: &ShardedDatabase,
    namespace: &str,
    generated: &Secret,
) -> Result<Result<String, String>, ReconcileError> {
    let selector = objects::cluster_token_ref(&db.name_any(), &db.spec.credentials);
    let fetched;
    let secret = if selector.name == generated.name_any() {
        generated
    } else {
        let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
        fetched = secrets
            .get_opt(&selector.name)
            .await
            .map_err(|e| ReconcileError::api("get", "Secret", &selector.name, e))?;
        match &fetched {
            Some(secret) => secret,
            None => return Ok(Err(format!("Secret {} not found", selector.name))),
        }
    };
    let value = secret
        .data
        .as_ref()
        .and_then(|d| d.get(&selector.key))
        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
        .filter(|v| !v.is_empty());
    Ok(value.ok_or_else(|| {
        format!(
            "Secret {} has no non-empty key {:?}",
            selector.name, selector.key
        )
    }))
}

pub(super) fn random_secret() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), GENERATED_SECRET_LEN)
}
