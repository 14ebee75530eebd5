//! What backups and restores add to a database's objects (docs/backup.md, "On Kubernetes").
//!
//! - `spec.backup`: the agent container gets the store ([`archive_env`]: `WALSHARD_BACKUP_*`,
//!   `WALSHARD_ARCHIVE_INTERVAL_MS`, and `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` from the
//!   credentials Secret), so every shard's primary archives continuously.
//! - `spec.restore`: the ConfigMap `<db>-restore` holds the layout (`layout.json`, the seed's
//!   `/init` body: schema, shards, placement), and every server pod gets two init containers:
//!   MySQL itself as a native sidecar (`restartPolicy: Always`, started once its startup probe
//!   passes, running for the pod's life and stopped after the agent), then [`restore_container`],
//!   the agent image's `walshard-agent restore-server`, which, only when the agent's data dir
//!   holds no state yet, rebuilds this server's shards in MySQL from the source store and
//!   prepares the agent's data dir at the restored point. The agent then starts as usual.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, EnvVar, Volume, VolumeMount,
};
use walshard_k8s_api::names::{self, MYSQL_PORT};
use walshard_k8s_api::spec::{BackupSpec, RestoreSpec, S3Spec, backup::S3_CREDENTIAL_KEYS};

use super::{
    COMPONENT_SERVER, Ctx, DATA_VOLUME, NONROOT_UID, env, env_secret, key_selector,
    mysql_password_ref, restricted,
};

/// Key (and file name) of the layout in the restore ConfigMap.
pub const RESTORE_LAYOUT_KEY: &str = "layout.json";
/// Where the restore init container finds the layout.
pub const RESTORE_LAYOUT_DIR: &str = "/etc/walshard/restore";
/// The name of the restore init container.
pub const RESTORE_CONTAINER: &str = "restore";
const RESTORE_VOLUME: &str = "restore-layout";

/// The environment that names a store and its S3 access, as the agent's flags read it
/// (`walshard_backup::args::StoreArgs`), with the credentials from the Secret.
pub(super) fn store_env(store: &str, s3: Option<&S3Spec>) -> Vec<EnvVar> {
    let mut vars = vec![env("WALSHARD_BACKUP_STORE", store)];
    if let Some(s3) = s3 {
        if let Some(endpoint) = &s3.endpoint {
            vars.push(env("WALSHARD_BACKUP_S3_ENDPOINT", endpoint.as_str()));
        }
        if let Some(region) = &s3.region {
            vars.push(env("WALSHARD_BACKUP_S3_REGION", region.as_str()));
        }
        if let Some(secret) = &s3.credentials_secret_ref {
            vars.extend(
                S3_CREDENTIAL_KEYS
                    .iter()
                    .map(|key| env_secret(key, key_selector(&secret.name, key))),
            );
        }
    }
    vars
}

/// The agent container's archiving environment for `spec.backup`.
pub(super) fn archive_env(backup: &BackupSpec) -> Vec<EnvVar> {
    let mut vars = store_env(&backup.store, backup.s3.as_ref());
    if let Some(ms) = backup.archive_interval_ms {
        vars.push(env("WALSHARD_ARCHIVE_INTERVAL_MS", ms.to_string()));
    }
    vars
}

/// The ConfigMap with the layout the servers of a restoring database are rebuilt for.
pub(super) fn restore_config(ctx: &Ctx<'_>) -> ConfigMap {
    let layout = serde_json::to_string_pretty(&ctx.layout.init_body()).unwrap_or_default();
    ConfigMap {
        metadata: ctx.meta(names::restore_layout(ctx.db), COMPONENT_SERVER, None),
        data: Some(BTreeMap::from([(RESTORE_LAYOUT_KEY.to_owned(), layout)])),
        ..ConfigMap::default()
    }
}

/// The volume of the restore ConfigMap.
pub(super) fn restore_volume(ctx: &Ctx<'_>) -> Volume {
    Volume {
        name: RESTORE_VOLUME.to_owned(),
        config_map: Some(ConfigMapVolumeSource {
            name: names::restore_layout(ctx.db),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// `walshard-agent restore-server` for `server`: MySQL (the sidecar before it) on loopback, the
/// agent's data dir on the claim, the source store and target from `spec.restore`.
pub(super) fn restore_container(
    ctx: &Ctx<'_>,
    restore: &RestoreSpec,
    server: &str,
    agent_data_dir: &str,
) -> Container {
    let mut vars = vec![
        env("WALSHARD_DATA_DIR", agent_data_dir),
        env("WALSHARD_SERVER_NAME", server),
        env("WALSHARD_MYSQL_HOST", "127.0.0.1"),
        env("WALSHARD_MYSQL_PORT", MYSQL_PORT.to_string()),
        env("WALSHARD_MYSQL_USER", "root"),
        env_secret(
            "WALSHARD_MYSQL_PASSWORD",
            mysql_password_ref(ctx.db, &ctx.spec.credentials),
        ),
        env(
            "WALSHARD_RESTORE_LAYOUT",
            format!("{RESTORE_LAYOUT_DIR}/{RESTORE_LAYOUT_KEY}"),
        ),
    ];
    vars.extend(store_env(&restore.store, restore.s3.as_ref()));
    if let Some(id) = &restore.backup_id {
        vars.push(env("WALSHARD_RESTORE_BACKUP", id.as_str()));
    }
    if let Some(time) = &restore.to_time {
        vars.push(env("WALSHARD_RESTORE_TO_TIME", time.as_str()));
    }
    vars.push(env("WALSHARD_LOG_FORMAT", "json"));
    Container {
        name: RESTORE_CONTAINER.to_owned(),
        image: Some(ctx.images.agent.clone()),
        image_pull_policy: ctx.images.pull_policy.clone(),
        args: Some(vec!["restore-server".to_owned()]),
        env: Some(vars),
        volume_mounts: Some(vec![
            VolumeMount {
                name: DATA_VOLUME.to_owned(),
                mount_path: agent_data_dir.to_owned(),
                sub_path: Some("agent".to_owned()),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: RESTORE_VOLUME.to_owned(),
                mount_path: RESTORE_LAYOUT_DIR.to_owned(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
        ]),
        resources: ctx.spec.resources.agent.clone(),
        security_context: Some(restricted(NONROOT_UID, true)),
        ..Container::default()
    }
}

/// MySQL as a native sidecar: an init container that keeps running (`restartPolicy: Always`);
/// the next init container starts once its startup probe passed.
pub(super) fn as_sidecar(mut mysql: Container) -> Container {
    mysql.restart_policy = Some("Always".to_owned());
    mysql
}
