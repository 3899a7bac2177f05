//! The SQLite file of the embedded store: opening it, its schema and their migrations, reading
//! it back at start-up, and committing the journal's writes (the rows themselves are in
//! `rows.rs`).
//!
//! The file is `DATA_DIR/backflow.db` in WAL mode. `synchronous=NORMAL` (the default) makes a
//! commit a write of the WAL to the operating system, which survives a crash of the process;
//! `FSYNC_COMMITS=true` selects `synchronous=FULL`, which also syncs the WAL to the disk before
//! the commit returns, so a commit survives a crash of the machine. The file carries an
//! application id and a schema version, so a foreign or newer file is refused rather than
//! misread.
//!
//! The store holds the queue's tasks and the revoked token ids, which are nobody else's
//! business: a directory it creates is `0700`, and the database is `0600` before SQLite first
//! opens it (SQLite gives its `-wal` and `-shm` files the database's mode).

use std::path::{Path, PathBuf};

use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior};

use super::journal::Record;
use super::{Write, rows};
use crate::auth::RevokedToken;
use crate::fault::StoreError;
use crate::queue::QueueSettings;
use crate::queue::index::QueueIndex;

/// Name of the database file in `DATA_DIR`.
pub const DATABASE_FILE: &str = "backflow.db";

/// `PRAGMA application_id` of a BackFlow store ("BFLW").
pub(super) const APPLICATION_ID: i32 = 0x4246_4c57;

/// The schema, one step per version: a new file runs them all, an older one the steps it
/// lacks, each in the transaction that also sets `user_version` to its number.
pub(super) const MIGRATIONS: [&str; 3] = [
    // 1: the queue in arrival order, the revocations, the readiness probe's row.
    "
    -- `seq` is the arrival order: a task's place among equal priorities, kept for its life.
    CREATE TABLE tasks (
        seq            INTEGER PRIMARY KEY,
        id             BLOB    NOT NULL,
        task           TEXT    NOT NULL,
        priority       INTEGER NOT NULL,
        enqueued_at_ms INTEGER NOT NULL
    );
    -- Revoked tokens, until their `exp` (Unix seconds).
    CREATE TABLE revocations (
        jti BLOB    PRIMARY KEY,
        exp INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX revocations_by_exp ON revocations (exp);
    -- Written by readiness checks, so /ready proves that a commit goes through.
    CREATE TABLE readiness (
        id         INTEGER PRIMARY KEY CHECK (id = 1),
        checked_ms INTEGER NOT NULL
    );
    ",
    // 2: reliable delivery: each task's state and deliveries, acknowledgements remembered
    // until their lease would have run out, idempotency keys with their first answer.
    "
    -- state: 0 queued, 1 delayed (until at_ms), 2 leased (by lease_id until at_ms), 3 dead
    -- (since at_ms). A task of version 1 is queued and gets the default of 5 attempts.
    ALTER TABLE tasks ADD COLUMN max_attempts INTEGER NOT NULL DEFAULT 5;
    ALTER TABLE tasks ADD COLUMN attempt      INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE tasks ADD COLUMN state        INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE tasks ADD COLUMN at_ms        INTEGER;
    ALTER TABLE tasks ADD COLUMN lease_id     BLOB;
    ALTER TABLE tasks ADD COLUMN last_error   TEXT;
    CREATE TABLE acked (
        id       BLOB    PRIMARY KEY,
        lease_id BLOB    NOT NULL,
        until_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX acked_by_end ON acked (until_ms);
    CREATE TABLE idempotency (
        key         TEXT    PRIMARY KEY,
        fingerprint BLOB    NOT NULL,
        answer      TEXT    NOT NULL,
        expires_ms  INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX idempotency_by_end ON idempotency (expires_ms);
    DROP TABLE IF EXISTS imports;
    ",
    // 3: acknowledgements in the order they are made. Keyed by the task's id, each one wrote a
    // page of the table chosen by a random number, so a commit of many acknowledgements wrote
    // as many pages to the WAL; in a rowid table each one is appended to the last page.
    "
    CREATE TABLE acked_in_order (
        id       BLOB    NOT NULL,
        lease_id BLOB    NOT NULL,
        until_ms INTEGER NOT NULL
    );
    INSERT INTO acked_in_order (id, lease_id, until_ms)
        SELECT id, lease_id, until_ms FROM acked ORDER BY until_ms;
    DROP TABLE acked;
    ALTER TABLE acked_in_order RENAME TO acked;
    CREATE INDEX acked_by_end ON acked (until_ms);
    ",
];

/// `PRAGMA user_version` of a file with every migration applied.
const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// How long a statement waits for a lock held by another connection (a backup tool, say).
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Why the store could not be opened: one line naming the file and what to do.
#[derive(Debug, thiserror::Error)]
#[error("cannot open the store {}: {reason}; {advice}", path.display())]
pub struct OpenError {
    /// The file or directory at fault.
    pub path: PathBuf,
    /// What went wrong.
    pub reason: String,
    /// What the operator can do about it.
    pub advice: &'static str,
}

/// The advice for a file that is not, or no longer, a readable store.
pub const MOVE_IT_AWAY: &str = "move the file away to start with an empty store, or restore it \
    from a backup";
/// The advice for a directory or file the server cannot write.
pub const MAKE_IT_WRITABLE: &str = "set DATA_DIR to a directory this user can create and write";

impl OpenError {
    /// An error about `path`.
    pub fn new(path: &Path, reason: impl std::fmt::Display, advice: &'static str) -> Self {
        Self {
            path: path.to_path_buf(),
            reason: reason.to_string(),
            advice,
        }
    }

    fn sqlite(path: &Path, err: &rusqlite::Error) -> Self {
        let unreadable = matches!(
            err.sqlite_error_code(),
            Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt)
        );
        Self::new(
            path,
            err,
            if unreadable {
                MOVE_IT_AWAY
            } else {
                MAKE_IT_WRITABLE
            },
        )
    }
}

/// Maps SQLite errors to [`OpenError`]s about `path`.
fn at(path: &Path) -> impl Fn(rusqlite::Error) -> OpenError + Copy + '_ {
    move |err| OpenError::sqlite(path, &err)
}

/// What the file holds, read at start-up.
#[derive(Debug)]
pub struct Contents {
    /// Every task in every state, acknowledgements and idempotency keys.
    pub queue: QueueIndex,
    /// Revocations still in force.
    pub revocations: Vec<RevokedToken>,
}

/// Creates `dir` and its missing parents readable by this user only.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Creates the database file `0600` if it is missing, and makes it and its companion files
/// `0600` if they exist with a wider mode.
fn private_files(database: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(database)?;
        for suffix in ["", "-wal", "-shm"] {
            let mut name = database.as_os_str().to_owned();
            name.push(suffix);
            let file = Path::new(&name);
            match std::fs::metadata(file) {
                Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
                    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))?;
                }
                Ok(_) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(err),
            }
        }
    }
    #[cfg(not(unix))]
    let _ = database;
    Ok(())
}

/// The open database: the record the journal commits to.
#[derive(Debug)]
pub struct Database {
    conn: Connection,
    path: PathBuf,
}

impl Database {
    /// Opens (creating if needed) the store in `dir`, checks it is one of ours, and sets the
    /// durability of commits.
    pub fn open(dir: &Path, fsync_commits: bool) -> Result<Self, OpenError> {
        private_dir(dir).map_err(|err| OpenError::new(dir, err, MAKE_IT_WRITABLE))?;
        let path = dir.join(DATABASE_FILE);
        private_files(&path).map_err(|err| OpenError::new(&path, err, MAKE_IT_WRITABLE))?;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&path, flags)
            .map_err(|err| OpenError::sqlite(&path, &err))?;
        let mut db = Self { conn, path };
        db.configure(fsync_commits)
            .map_err(|err| OpenError::sqlite(&db.path, &err))?;
        db.migrate()?;
        Ok(db)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn configure(&self, fsync_commits: bool) -> rusqlite::Result<()> {
        self.conn.busy_timeout(BUSY_TIMEOUT)?;
        let mode: String =
            self.conn
                .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(rusqlite::Error::InvalidParameterName(format!(
                "the file cannot use write-ahead logging (journal_mode is {mode})"
            )));
        }
        let synchronous = if fsync_commits { "FULL" } else { "NORMAL" };
        self.conn.pragma_update(None, "synchronous", synchronous)
    }

    /// Creates the schema in a new file; refuses a file of another application or of a newer
    /// version.
    fn migrate(&mut self) -> Result<(), OpenError> {
        let read = |name: &str| -> Result<i32, OpenError> {
            self.conn
                .pragma_query_value(None, name, |row| row.get(0))
                .map_err(|err| OpenError::sqlite(&self.path, &err))
        };
        let application_id = read("application_id")?;
        let version = read("user_version")?;
        if application_id != 0 && application_id != APPLICATION_ID {
            return Err(OpenError::new(
                &self.path,
                "the file belongs to another application",
                MOVE_IT_AWAY,
            ));
        }
        if version > SCHEMA_VERSION {
            return Err(OpenError::new(
                &self.path,
                format!(
                    "the file has schema version {version}, newer than this server's {SCHEMA_VERSION}"
                ),
                "run the newer server, or restore a backup made by this version",
            ));
        }
        let sqlite = at(&self.path);
        if version == 0 {
            let has_tables: bool = self
                .conn
                .query_row("SELECT count(*) > 0 FROM sqlite_schema", [], |row| {
                    row.get(0)
                })
                .map_err(sqlite)?;
            if has_tables {
                return Err(OpenError::new(
                    &self.path,
                    "the file is an SQLite database of another application",
                    MOVE_IT_AWAY,
                ));
            }
        }
        for (step, migration) in (1..)
            .zip(MIGRATIONS)
            .skip(usize::try_from(version).unwrap_or(0))
        {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sqlite)?;
            tx.execute_batch(migration).map_err(sqlite)?;
            tx.pragma_update(None, "application_id", APPLICATION_ID)
                .map_err(sqlite)?;
            tx.pragma_update(None, "user_version", step)
                .map_err(sqlite)?;
            tx.commit().map_err(sqlite)?;
        }
        Ok(())
    }

    /// Forgets revocations whose token expired before `purge_before` (Unix seconds), then
    /// reads everything back (the queue as the index `settings` configure, at `now_ms`). A row that breaks the API's rules means the file was damaged or
    /// edited by hand: the start-up stops, naming the file.
    pub fn load(
        &mut self,
        purge_before: u64,
        settings: QueueSettings,
        now_ms: u64,
    ) -> Result<Contents, OpenError> {
        let sqlite = at(&self.path);
        self.conn
            .execute(
                "DELETE FROM revocations WHERE exp < ?1",
                [rows::to_sql_int(purge_before)],
            )
            .map_err(sqlite)?;
        let damaged = |reason: String| OpenError::new(&self.path, reason, MOVE_IT_AWAY);
        Ok(Contents {
            queue: rows::read_queue(&self.conn, settings, now_ms, sqlite, damaged)?,
            revocations: rows::read_revocations(&self.conn).map_err(sqlite)?,
        })
    }
}

impl Record for Database {
    fn commit(&mut self, writes: &[Write]) -> Result<Vec<usize>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(StoreError::new)?;
        let changed = writes
            .iter()
            .map(|write| apply(&tx, write))
            .collect::<rusqlite::Result<Vec<usize>>>()
            .map_err(StoreError::new)?;
        tx.commit().map_err(StoreError::new)?;
        Ok(changed)
    }

    fn close(&mut self) {
        // Folds the WAL back into the database file, so a backup of the file alone is complete.
        if let Err(err) = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        {
            tracing::warn!(%err, path = %self.path.display(), "the store's final checkpoint failed");
        }
    }
}

fn apply(tx: &rusqlite::Transaction<'_>, write: &Write) -> rusqlite::Result<usize> {
    match write {
        Write::Queue(plan) => rows::write_plan(tx, plan),
        Write::ForgetAcknowledgements { before_ms } => rows::forget_before(tx, *before_ms),
        Write::Revoke(token) => rows::insert_revocation(tx, token),
        Write::PurgeRevocations { before } => tx
            .prepare_cached("DELETE FROM revocations WHERE exp < ?1")?
            .execute([rows::to_sql_int(*before)]),
        Write::Touch { at_ms } => tx
            .prepare_cached(
                "INSERT INTO readiness (id, checked_ms) VALUES (1, ?1)
                 ON CONFLICT (id) DO UPDATE SET checked_ms = excluded.checked_ms",
            )?
            .execute([rows::to_sql_int(*at_ms)]),
    }
}
