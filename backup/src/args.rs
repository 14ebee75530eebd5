//! The command-line flags that name a backup store, shared by every walshard binary.

use crate::store::{BackupStore, StoreError, StoreOptions};

/// `--backup-store URL` and its S3 settings (credentials from `AWS_ACCESS_KEY_ID` and
/// `AWS_SECRET_ACCESS_KEY`, region also from `AWS_REGION`).
#[derive(
    Debug, Clone, Default, PartialEq, Eq, clap::Args, serde::Serialize, serde::Deserialize,
)]
pub struct StoreArgs {
    /// Backup store: `file:///path` or `s3://bucket/prefix`.
    #[arg(long = "backup-store", env = "WALSHARD_BACKUP_STORE")]
    pub url: Option<String>,
    /// Endpoint of an S3-compatible store (path-style requests), e.g. http://127.0.0.1:9000.
    #[arg(long = "backup-s3-endpoint", env = "WALSHARD_BACKUP_S3_ENDPOINT")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_endpoint: Option<String>,
    /// S3 region.
    #[arg(long = "backup-s3-region", env = "WALSHARD_BACKUP_S3_REGION")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_region: Option<String>,
}

impl StoreArgs {
    /// The S3 settings of these flags, as [`StoreOptions`] (other options at their defaults).
    pub fn options(&self) -> StoreOptions {
        StoreOptions {
            endpoint: self.s3_endpoint.clone(),
            region: self.s3_region.clone(),
            ..StoreOptions::default()
        }
    }

    /// The environment that gives an agent process these flags.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        [
            ("WALSHARD_BACKUP_STORE", &self.url),
            ("WALSHARD_BACKUP_S3_ENDPOINT", &self.s3_endpoint),
            ("WALSHARD_BACKUP_S3_REGION", &self.s3_region),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
        .collect()
    }

    /// The store, when a URL was given.
    pub fn open(&self) -> Result<Option<BackupStore>, StoreError> {
        self.url
            .as_deref()
            .map(|url| BackupStore::open(url, &self.options()))
            .transpose()
    }
}
