//! `spec.tls`: the authority and certificate the operator generates when no `secretName` is
//! given (a fresh pair on every reconcile, used only if `<db>-tls` does not exist yet, like the
//! credentials), and the authority the hosted control plane trusts.

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;
use walshard_contract::tls::TlsError;
use walshard_contract::tls::authority::Authority;
use walshard_k8s_api::spec::{ShardedDatabase, tls_keys};

use super::{Context, Fleet, ReconcileError};
use crate::k8s::objects::{self, GeneratedTls};

/// A new authority and certificate for `db`, when its `spec.tls` asks the operator for them.
pub(super) fn generate(db: &ShardedDatabase) -> Result<Option<GeneratedTls>, TlsError> {
    let Some(tls) = &db.spec.tls else {
        return Ok(None);
    };
    if tls.secret_name.is_some() {
        return Ok(None);
    }
    let name = db.name_any();
    let namespace = db.namespace().unwrap_or_default();
    let authority = Authority::generate(&format!("walshard {namespace}/{name} CA"))?;
    let served = authority.issue(
        &format!("walshard {namespace}/{name}"),
        &objects::certificate_names(&name, &namespace),
    )?;
    Ok(Some(GeneratedTls {
        ca: authority.pem().cert.clone(),
        cert: served.cert,
        key: served.key,
    }))
}

/// The authority (PEM) in `db`'s TLS Secret, for the clients the operator runs; `Ok(Err(why))`
/// when TLS is on but the Secret or its `ca.crt` is missing.
pub(super) async fn authority<F: Fleet>(
    ctx: &Context<F>,
    db: &ShardedDatabase,
    namespace: &str,
) -> Result<Result<Option<Vec<u8>>, String>, ReconcileError> {
    let Some(name) = objects::tls_secret_name(&db.name_any(), &db.spec) else {
        return Ok(Ok(None));
    };
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let secret = secrets
        .get_opt(&name)
        .await
        .map_err(|e| ReconcileError::api("get", "Secret", &name, e))?;
    let Some(secret) = secret else {
        return Ok(Err(format!("TLS Secret {name} not found")));
    };
    match secret.data.as_ref().and_then(|d| d.get(tls_keys::CA)) {
        Some(ca) if !ca.0.is_empty() => Ok(Ok(Some(ca.0.clone()))),
        _ => Ok(Err(format!("TLS Secret {name} has no {}", tls_keys::CA))),
    }
}
