//! Atomic, durable JSON files (feature `process`): written to a temp file, fsynced, renamed over
//! the target, then the directory fsynced. After a crash the file holds the old or the new value.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why a JSON file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum DurableError {
    /// Reading, writing, syncing or renaming failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// `"reading"` or `"writing"`.
        action: &'static str,
        /// The target file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid JSON of the expected shape (or the value cannot be serialized).
    #[error("{} is not valid: {source}", path.display())]
    Json {
        /// The target file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
}

impl DurableError {
    /// The file concerned.
    pub fn path(&self) -> &Path {
        match self {
            DurableError::Io { path, .. } | DurableError::Json { path, .. } => path,
        }
    }
}

/// Writes `value` as pretty JSON to `path` atomically and durably.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), DurableError> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|source| DurableError::Json {
        path: path.to_owned(),
        source,
    })?;
    let tmp = path.with_extension("json.tmp");
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let write = || -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    };
    write().map_err(|source| DurableError::Io {
        action: "writing",
        path: path.to_owned(),
        source,
    })
}

/// Reads JSON written by [`write_json`]; `None` if the file does not exist.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, DurableError> {
    match fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| DurableError::Json {
                    path: path.to_owned(),
                    source,
                })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(DurableError::Io {
            action: "reading",
            path: path.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_json_reads_back_and_a_missing_file_is_none() {
        let dir = std::env::temp_dir().join(format!("walshard-durable-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("x.json");
        assert_eq!(read_json::<Vec<u32>>(&path).expect("missing"), None);
        write_json(&path, &vec![1u32, 2]).expect("write");
        write_json(&path, &vec![3u32]).expect("overwrite");
        assert_eq!(read_json::<Vec<u32>>(&path).expect("read"), Some(vec![3]));
        assert!(!path.with_extension("json.tmp").exists());
        fs::write(&path, b"{not json").expect("corrupt");
        let err = read_json::<Vec<u32>>(&path).expect_err("corrupt");
        assert!(err.to_string().contains("x.json"), "{err}");
        fs::remove_dir_all(&dir).expect("cleanup");
    }
}
