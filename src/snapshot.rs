//! Durable snapshots in `DATA_DIR`: what the revocation list and the queue write on graceful
//! shutdown and read back at start.
//!
//! A snapshot is written to a temporary file in the same directory, flushed to disk, then renamed
//! over the old one, so a crash mid-write leaves either the old or the new file, never half of
//! one. Reading is forgiving by design: a missing file is a first start and a corrupt one is
//! logged and skipped, so a bad snapshot can never keep the server from starting.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Serializes `value` as JSON into `dir/name`, atomically. Runs on the blocking pool.
pub async fn save<T>(dir: &Path, name: &str, value: &T) -> io::Result<PathBuf>
where
    T: Serialize + ?Sized,
{
    let bytes = serde_json::to_vec(value).map_err(io::Error::other)?;
    let dir = dir.to_path_buf();
    let name = name.to_owned();
    tokio::task::spawn_blocking(move || write_atomic(&dir, &name, &bytes))
        .await
        .map_err(io::Error::other)?
}

/// Reads `dir/name` as JSON: `None` when it is missing or cannot be parsed (logged).
pub async fn load<T>(dir: &Path, name: &str) -> Option<T>
where
    T: DeserializeOwned + Send + 'static,
{
    let path = dir.join(name);
    let read_path = path.clone();
    let bytes = match tokio::task::spawn_blocking(move || std::fs::read(read_path)).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(err)) if err.kind() == io::ErrorKind::NotFound => {
            tracing::info!(path = %path.display(), "no snapshot, starting empty");
            return None;
        }
        Ok(Err(err)) => {
            tracing::warn!(path = %path.display(), %err, "cannot read snapshot, starting empty");
            return None;
        }
        Err(err) => {
            tracing::warn!(path = %path.display(), %err, "snapshot reader failed, starting empty");
            return None;
        }
    };
    match serde_json::from_slice(&bytes) {
        Ok(value) => Some(value),
        Err(err) => {
            tracing::warn!(path = %path.display(), %err, "corrupt snapshot ignored, starting empty");
            None
        }
    }
}

/// Writes `bytes` to `dir/name` through a synced temporary file and a rename.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let target = dir.join(name);
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, &target)?;
        // Persist the rename itself; not every platform can open a directory, so best effort.
        if let Ok(dir) = std::fs::File::open(dir) {
            let _ = dir.sync_all();
        }
        Ok(target.clone())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("backflow-snapshot-{tag}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[tokio::test]
    async fn round_trip() {
        let dir = temp_dir("rt");
        save(&dir, "x.json", &vec![3, 1, 2]).await.expect("saved");
        let back: Option<Vec<i32>> = load(&dir, "x.json").await;
        assert_eq!(back, Some(vec![3, 1, 2]));
        let leftovers: Vec<_> = std::fs::read_dir(&dir).expect("dir").collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn missing_and_corrupt_files_load_as_none() {
        let dir = temp_dir("bad");
        assert_eq!(load::<Vec<i32>>(&dir, "absent.json").await, None);
        std::fs::write(dir.join("bad.json"), b"{not json").expect("write");
        assert_eq!(load::<Vec<i32>>(&dir, "bad.json").await, None);
        std::fs::remove_dir_all(dir).ok();
    }
}
