//! Snapshot files written by earlier versions on graceful shutdown (`queue.json`,
//! `revocations.json`), imported once into the store so that an upgrade loses nothing.
//!
//! Each file is imported in one transaction that also records its name, then renamed to
//! `<name>.imported`: a crash between the two leaves the file in place but marked imported, and
//! the next start only renames it. A file that cannot be read stops the start-up (moving it away
//! is the operator's decision, not the server's).

use std::path::Path;

use serde::Deserialize;

use super::database::{Database, MOVE_SNAPSHOT_AWAY, OpenError};
use crate::auth::RevokedToken;
use crate::queue::QueuedTask;

/// The queue snapshot of earlier versions.
pub const QUEUE_FILE: &str = "queue.json";
/// The revocation snapshot of earlier versions.
pub const REVOCATIONS_FILE: &str = "revocations.json";

/// The only version of `queue.json` ever written.
const QUEUE_VERSION: u32 = 1;

#[derive(Deserialize)]
struct QueueSnapshot {
    version: u32,
    /// In dequeue order.
    tasks: Vec<QueuedTask>,
}

#[derive(Deserialize)]
struct RevocationSnapshot {
    revoked: Vec<RevokedToken>,
}

/// Imports the snapshots found in `dir` that are not imported yet, then renames them.
pub fn import_snapshots(db: &mut Database, dir: &Path, now_ms: u64) -> Result<(), OpenError> {
    if let Some(snapshot) = read::<QueueSnapshot>(dir, QUEUE_FILE, db)? {
        if snapshot.version != QUEUE_VERSION {
            return Err(OpenError::new(
                &dir.join(QUEUE_FILE),
                format!("unknown snapshot version {}", snapshot.version),
                MOVE_SNAPSHOT_AWAY,
            ));
        }
        // The snapshot lists tasks in dequeue order: arrival numbers given in that order keep
        // FIFO among equal priorities.
        db.import(QUEUE_FILE, &snapshot.tasks, &[], now_ms)?;
        tracing::info!(
            tasks = snapshot.tasks.len(),
            "queue snapshot of an earlier version imported"
        );
    }
    if let Some(snapshot) = read::<RevocationSnapshot>(dir, REVOCATIONS_FILE, db)? {
        db.import(REVOCATIONS_FILE, &[], &snapshot.revoked, now_ms)?;
        tracing::info!(
            revocations = snapshot.revoked.len(),
            "revocation snapshot of an earlier version imported"
        );
    }
    for name in [QUEUE_FILE, REVOCATIONS_FILE] {
        let path = dir.join(name);
        if path.exists() && db.imported(name)? {
            let imported = dir.join(format!("{name}.imported"));
            std::fs::rename(&path, &imported)
                .map_err(|err| OpenError::new(&path, err, super::database::MAKE_IT_WRITABLE))?;
        }
    }
    Ok(())
}

/// The snapshot `name` if it exists and is not imported yet.
fn read<T: for<'de> Deserialize<'de>>(
    dir: &Path,
    name: &str,
    db: &Database,
) -> Result<Option<T>, OpenError> {
    let path = dir.join(name);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(OpenError::new(&path, err, MOVE_SNAPSHOT_AWAY)),
    };
    if db.imported(name)? {
        return Ok(None);
    }
    serde_json::from_slice(&bytes).map(Some).map_err(|err| {
        OpenError::new(
            &path,
            format!("unreadable snapshot: {err}"),
            MOVE_SNAPSHOT_AWAY,
        )
    })
}
