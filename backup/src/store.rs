//! The backup store: a local directory (`file:///path`) or S3-compatible storage
//! (`s3://bucket/prefix`), through `object_store`. Keys are relative to the URL's path.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::chunk::{self, ArchivedEntry, ChunkError};
use crate::manifest::{Manifest, PartRef, ShardArchiveMark};
use crate::names::{self, ChunkName};

/// S3 settings; each unset one comes from the usual `AWS_*` environment variables.
#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    /// e.g. `http://127.0.0.1:9000` for an S3-compatible server (path-style requests).
    pub endpoint: Option<String>,
    /// S3 region (else `AWS_REGION`).
    pub region: Option<String>,
    /// Access key id (else `AWS_ACCESS_KEY_ID`).
    pub access_key_id: Option<String>,
    /// Secret access key (else `AWS_SECRET_ACCESS_KEY`).
    pub secret_access_key: Option<String>,
}

/// A failed store operation; [`StoreError::code`] classifies it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store URL does not parse, has an unsupported scheme, no bucket or a bad path, or
    /// its directory or S3 client could not be set up.
    #[error("backup store URL {url}: {reason}")]
    Url {
        /// The store URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading, writing, listing or deleting an object failed (other than it not existing).
    #[error("backup store {url}: {key}: {source}")]
    Io {
        /// The store URL.
        url: String,
        /// The key (or listed directory) the operation was on.
        key: String,
        /// The `object_store` error.
        source: object_store::Error,
    },
    /// A read object does not exist.
    #[error("backup store {url}: {key} is missing")]
    Missing {
        /// The store URL.
        url: String,
        /// The missing object's key.
        key: String,
    },
    /// A backup part's size or checksum differs from its manifest's, or a JSON object does not
    /// (de)serialize.
    #[error("backup store {url}: {key} is damaged: {reason}")]
    Damaged {
        /// The store URL.
        url: String,
        /// The damaged object's key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A WAL chunk could not be encoded, or a stored one failed its checks.
    #[error("backup store {url}: {source}")]
    Chunk {
        /// The store URL.
        url: String,
        /// Why the chunk was refused.
        source: ChunkError,
    },
}

impl StoreError {
    /// A machine-readable code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::Url { .. } => "backup-store-invalid",
            StoreError::Io { .. } => "backup-store-unavailable",
            StoreError::Missing { .. } => "backup-object-missing",
            StoreError::Damaged { .. } | StoreError::Chunk { .. } => "backup-object-damaged",
        }
    }
}

/// A store and the prefix every key lives under.
#[derive(Debug, Clone)]
pub struct BackupStore {
    inner: Arc<dyn ObjectStore>,
    prefix: Path,
    url: String,
}

impl BackupStore {
    /// Opens `file:///dir` (created if missing) or `s3://bucket[/prefix]`.
    pub fn open(url: &str, options: &StoreOptions) -> Result<BackupStore, StoreError> {
        let bad = |reason: String| StoreError::Url {
            url: url.to_owned(),
            reason,
        };
        let parsed = url::Url::parse(url).map_err(|e| bad(e.to_string()))?;
        let (inner, prefix): (Arc<dyn ObjectStore>, Path) = match parsed.scheme() {
            "file" => {
                let dir = parsed
                    .to_file_path()
                    .map_err(|()| bad("not an absolute local path".into()))?;
                std::fs::create_dir_all(&dir)
                    .map_err(|e| bad(format!("{}: {e}", dir.display())))?;
                let fs = LocalFileSystem::new_with_prefix(&dir).map_err(|e| bad(e.to_string()))?;
                (Arc::new(fs), Path::default())
            }
            "s3" => {
                let bucket = parsed
                    .host_str()
                    .filter(|b| !b.is_empty())
                    .ok_or_else(|| bad("no bucket".into()))?;
                let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
                if let Some(endpoint) = &options.endpoint {
                    builder = builder
                        .with_endpoint(endpoint)
                        .with_allow_http(endpoint.starts_with("http://"))
                        .with_virtual_hosted_style_request(false);
                }
                if let Some(region) = &options.region {
                    builder = builder.with_region(region);
                }
                if let Some(key) = &options.access_key_id {
                    builder = builder.with_access_key_id(key);
                }
                if let Some(secret) = &options.secret_access_key {
                    builder = builder.with_secret_access_key(secret);
                }
                let s3 = builder.build().map_err(|e| bad(e.to_string()))?;
                let prefix =
                    Path::parse(parsed.path().trim_matches('/')).map_err(|e| bad(e.to_string()))?;
                (Arc::new(s3), prefix)
            }
            other => return Err(bad(format!("unsupported scheme {other:?} (file or s3)"))),
        };
        Ok(BackupStore {
            inner,
            prefix,
            url: url.to_owned(),
        })
    }

    /// The URL the store was opened with.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn path(&self, key: &str) -> Path {
        key.split('/')
            .filter(|p| !p.is_empty())
            .fold(self.prefix.clone(), |p, part| p.join(part))
    }

    fn io(&self, key: &str, source: object_store::Error) -> StoreError {
        match source {
            object_store::Error::NotFound { .. } => StoreError::Missing {
                url: self.url.clone(),
                key: key.to_owned(),
            },
            source => StoreError::Io {
                url: self.url.clone(),
                key: key.to_owned(),
                source,
            },
        }
    }

    /// Writes an object, replacing any under the same key.
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), StoreError> {
        self.inner
            .put(&self.path(key), bytes.into())
            .await
            .map(drop)
            .map_err(|e| self.io(key, e))
    }

    /// An object's bytes; [`StoreError::Missing`] when it does not exist.
    pub async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        let got = self.inner.get(&self.path(key)).await;
        match got {
            Ok(r) => r.bytes().await.map_err(|e| self.io(key, e)),
            Err(e) => Err(self.io(key, e)),
        }
    }

    /// `None` when the object does not exist.
    pub async fn get_opt(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        match self.get(key).await {
            Ok(b) => Ok(Some(b)),
            Err(StoreError::Missing { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Deletes an object; deleting one that does not exist succeeds.
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match self.inner.delete(&self.path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.io(key, e)),
        }
    }

    /// Every key under `dir` (relative to the store's prefix), with its size.
    pub async fn list(&self, dir: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let base = self.path(dir);
        let strip = self.prefix.parts().count();
        let metas: Vec<_> = self
            .inner
            .list(Some(&base))
            .try_collect()
            .await
            .map_err(|e| self.io(dir, e))?;
        let mut keys: Vec<(String, u64)> = metas
            .into_iter()
            .map(|m| {
                let key: Vec<String> = m
                    .location
                    .parts()
                    .skip(strip)
                    .map(|p| p.as_ref().to_owned())
                    .collect();
                (key.join("/"), m.size)
            })
            .collect();
        keys.sort();
        Ok(keys)
    }

    /// Stores a part of a backup and returns what it must hash to.
    pub async fn put_part(&self, key: &str, bytes: Bytes) -> Result<PartRef, StoreError> {
        let part = PartRef {
            key: key.to_owned(),
            bytes: bytes.len() as u64,
            crc32c: crc32c::crc32c(&bytes),
        };
        self.put(key, bytes).await?;
        Ok(part)
    }

    /// A part's bytes, after checking its size and checksum.
    pub async fn get_part(&self, part: &PartRef) -> Result<Bytes, StoreError> {
        let bytes = self.get(&part.key).await?;
        let crc = crc32c::crc32c(&bytes);
        if bytes.len() as u64 != part.bytes || crc != part.crc32c {
            return Err(StoreError::Damaged {
                url: self.url.clone(),
                key: part.key.clone(),
                reason: format!(
                    "{} bytes with crc32c {crc:08x}, the manifest says {} bytes with {:08x}",
                    bytes.len(),
                    part.bytes,
                    part.crc32c
                ),
            });
        }
        Ok(bytes)
    }

    /// Archives consecutive committed entries of a shard as one chunk.
    pub async fn put_chunk(
        &self,
        shard: &str,
        entries: &[ArchivedEntry],
    ) -> Result<ChunkName, StoreError> {
        let (name, bytes) = chunk::encode(shard, entries).map_err(|source| StoreError::Chunk {
            url: self.url.clone(),
            source,
        })?;
        self.put(&name.key(), bytes).await?;
        Ok(name)
    }

    /// A chunk's entries, checked against its checksum and name.
    pub async fn get_chunk(&self, name: &ChunkName) -> Result<Vec<ArchivedEntry>, StoreError> {
        let bytes = self.get(&name.key()).await?;
        chunk::decode(name, &bytes).map_err(|source| StoreError::Chunk {
            url: self.url.clone(),
            source,
        })
    }

    /// Every archived chunk (of one shard, or all), in LSN order per shard.
    pub async fn chunks(&self, shard: Option<&str>) -> Result<Vec<ChunkName>, StoreError> {
        let dir = shard.map_or_else(|| names::WAL.to_owned(), |s| format!("{}/{s}", names::WAL));
        Ok(self
            .list(&dir)
            .await?
            .iter()
            .filter_map(|(key, _)| ChunkName::parse(key))
            .collect())
    }

    /// A shard's archive mark, if one was written.
    pub async fn mark(&self, shard: &str) -> Result<Option<ShardArchiveMark>, StoreError> {
        let key = names::mark_key(shard);
        match self.get_json(&key).await {
            Ok(mark) => Ok(Some(mark)),
            Err(StoreError::Missing { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes a shard's archive mark, replacing the previous one.
    pub async fn put_mark(&self, shard: &str, mark: ShardArchiveMark) -> Result<(), StoreError> {
        self.put_json(&names::mark_key(shard), &mark).await
    }

    /// Every shard's archive mark.
    pub async fn marks(&self) -> Result<BTreeMap<String, ShardArchiveMark>, StoreError> {
        let mut marks = BTreeMap::new();
        for (key, _) in self.list(names::WAL).await? {
            let Some(shard) = key
                .strip_prefix(names::WAL)
                .and_then(|k| k.strip_prefix('/'))
                .and_then(|k| k.strip_suffix(names::MARK))
                .and_then(|k| k.strip_suffix('/'))
            else {
                continue;
            };
            marks.insert(shard.to_owned(), self.get_json(&key).await?);
        }
        Ok(marks)
    }

    /// Writes a base backup's manifest, which makes the backup complete: call it last.
    pub async fn put_manifest(&self, manifest: &Manifest) -> Result<(), StoreError> {
        self.put_json(&manifest.id.manifest_key(), manifest).await
    }

    /// Every complete base backup (one whose manifest was written), oldest first.
    pub async fn manifests(&self) -> Result<Vec<Manifest>, StoreError> {
        let mut out: Vec<Manifest> = Vec::new();
        for (key, _) in self.list(names::BASE).await? {
            if key.ends_with(&format!("/{}", names::MANIFEST)) {
                out.push(self.get_json(&key).await?);
            }
        }
        out.sort_by(|a, b| {
            a.finished_at_ms
                .cmp(&b.finished_at_ms)
                .then(a.id.cmp(&b.id))
        });
        Ok(out)
    }

    /// Deletes every object of a base backup, its manifest first (so it is never half there
    /// and still listed).
    pub async fn delete_backup(&self, id: &names::BackupId) -> Result<(), StoreError> {
        self.delete(&id.manifest_key()).await?;
        for (key, _) in self.list(&id.dir()).await? {
            self.delete(&key).await?;
        }
        Ok(())
    }

    /// Writes `value` as pretty-printed JSON.
    pub async fn put_json<T: serde::Serialize>(
        &self,
        key: &str,
        value: &T,
    ) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec_pretty(value).map_err(|e| StoreError::Damaged {
            url: self.url.clone(),
            key: key.to_owned(),
            reason: e.to_string(),
        })?;
        self.put(key, Bytes::from(bytes)).await
    }

    /// Reads a JSON object; [`StoreError::Damaged`] when it does not deserialize as `T`.
    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<T, StoreError> {
        let bytes = self.get(key).await?;
        serde_json::from_slice(&bytes).map_err(|e| StoreError::Damaged {
            url: self.url.clone(),
            key: key.to_owned(),
            reason: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::BackupId;

    fn entry(lsn: u64) -> ArchivedEntry {
        ArchivedEntry {
            epoch: 1,
            lsn,
            op_id: u128::from(lsn),
            at_ms: 1000 + lsn,
            payload: Bytes::from(format!("op {lsn}")),
        }
    }

    #[tokio::test]
    async fn a_directory_store_keeps_chunks_parts_and_marks() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}/store", dir.path().display());
        let store = BackupStore::open(&url, &StoreOptions::default()).unwrap();
        let entries: Vec<ArchivedEntry> = (1..=3).map(entry).collect();
        let name = store.put_chunk("sh1", &entries).await.unwrap();
        store.put_chunk("sh2", &[entry(1)]).await.unwrap();
        assert_eq!(store.chunks(Some("sh1")).await.unwrap(), vec![name.clone()]);
        assert_eq!(store.chunks(None).await.unwrap().len(), 2);
        assert_eq!(store.get_chunk(&name).await.unwrap(), entries);

        let mark = ShardArchiveMark {
            through_lsn: 3,
            at_ms: 99,
        };
        store.put_mark("sh1", mark).await.unwrap();
        assert_eq!(store.marks().await.unwrap()["sh1"], mark);

        let id = BackupId::at(5);
        let part = store
            .put_part(&id.part_key("sh1", 0), Bytes::from_static(b"rows"))
            .await
            .unwrap();
        assert_eq!(
            store.get_part(&part).await.unwrap(),
            Bytes::from_static(b"rows")
        );
        store
            .put(&part.key, Bytes::from_static(b"rowz"))
            .await
            .unwrap();
        let err = store.get_part(&part).await.unwrap_err();
        assert_eq!(err.code(), "backup-object-damaged");
        assert!(err.to_string().contains(&part.key), "{err}");
        store.delete(&part.key).await.unwrap();
        let err = store.get_part(&part).await.unwrap_err();
        assert_eq!(err.code(), "backup-object-missing");
    }

    #[test]
    fn unsupported_urls_are_refused() {
        for url in ["http://x/y", "s3:///p", "not a url"] {
            assert!(
                BackupStore::open(url, &StoreOptions::default()).is_err(),
                "{url}"
            );
        }
    }
}
