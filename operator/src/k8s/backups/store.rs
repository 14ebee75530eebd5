//! A database's backup store, opened with its S3 settings and the credentials from its Secret.

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use walshard_backup::{BackupStore, StoreOptions};
use walshard_k8s_api::spec::S3Spec;
use walshard_k8s_api::spec::backup::S3_CREDENTIAL_KEYS;

use super::BackupError;

/// The store options of `s3`, with the credentials `secret` holds (its `AWS_ACCESS_KEY_ID` and
/// `AWS_SECRET_ACCESS_KEY`); an error names a missing key.
pub fn store_options(
    s3: Option<&S3Spec>,
    secret: Option<&Secret>,
) -> Result<StoreOptions, BackupError> {
    let mut options = StoreOptions {
        endpoint: s3.and_then(|s| s.endpoint.clone()),
        region: s3.and_then(|s| s.region.clone()),
        ..StoreOptions::default()
    };
    if let Some(secret) = secret {
        let name = secret.metadata.name.clone().unwrap_or_default();
        let value = |key: &str| {
            secret
                .data
                .as_ref()
                .and_then(|d| d.get(key))
                .map(|v| String::from_utf8_lossy(&v.0).into_owned())
                .filter(|v| !v.is_empty())
                .ok_or_else(|| BackupError::Credentials {
                    secret: name.clone(),
                    reason: format!("no non-empty key {key}"),
                })
        };
        let [id, key] = S3_CREDENTIAL_KEYS;
        options.access_key_id = Some(value(id)?);
        options.secret_access_key = Some(value(key)?);
    }
    Ok(options)
}

/// Opens `url` with `s3`'s settings, reading its credentials Secret from `namespace`.
pub async fn open(
    client: &kube::Client,
    namespace: &str,
    url: &str,
    s3: Option<&S3Spec>,
) -> Result<BackupStore, BackupError> {
    let secret = match s3.and_then(|s| s.credentials_secret_ref.as_ref()) {
        Some(r) => {
            let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
            let found = secrets
                .get_opt(&r.name)
                .await
                .map_err(|e| BackupError::Credentials {
                    secret: r.name.clone(),
                    reason: e.to_string(),
                })?;
            Some(found.ok_or_else(|| BackupError::Credentials {
                secret: r.name.clone(),
                reason: "not found".to_owned(),
            })?)
        }
        None => None,
    };
    let options = store_options(s3, secret.as_ref())?;
    Ok(BackupStore::open(url, &options)?)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::ByteString;

    use super::*;

    #[test]
    fn credentials_come_from_the_secrets_two_keys() {
        let s3 = S3Spec {
            endpoint: Some("http://minio:9000".into()),
            region: Some("us-east-1".into()),
            credentials_secret_ref: None,
        };
        let mut secret = Secret::default();
        secret.metadata.name = Some("s3".into());
        secret.data = Some(BTreeMap::from([
            ("AWS_ACCESS_KEY_ID".to_owned(), ByteString(b"id".to_vec())),
            (
                "AWS_SECRET_ACCESS_KEY".to_owned(),
                ByteString(b"key".to_vec()),
            ),
        ]));
        let o = store_options(Some(&s3), Some(&secret)).unwrap();
        assert_eq!(o.endpoint.as_deref(), Some("http://minio:9000"));
        assert_eq!(
            (o.access_key_id.as_deref(), o.secret_access_key.as_deref()),
            (Some("id"), Some("key"))
        );
        secret
            .data
            .as_mut()
            .unwrap()
            .remove("AWS_SECRET_ACCESS_KEY");
        let err = store_options(Some(&s3), Some(&secret)).unwrap_err();
        assert!(
            err.to_string().contains("s3") && err.to_string().contains("AWS_SECRET_ACCESS_KEY"),
            "{err}"
        );
        assert!(store_options(None, None).unwrap().access_key_id.is_none());
    }
}
