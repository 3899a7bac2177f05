//! The SQLite file of the embedded store: opening it, its schema, reading it back at start-up,
//! and the writes the journal commits.
//!
//! The file is `DATA_DIR/backflow.db` in WAL mode. `synchronous=NORMAL` (the default) makes a
//! commit a write of the WAL to the operating system, which survives a crash of the process;
//! `FSYNC_COMMITS=true` selects `synchronous=FULL`, which also syncs the WAL to the disk before
//! the commit returns, so a commit survives a crash of the machine. The file carries an
//! application id and a schema version, so a foreign or newer file is refused rather than
//! misread.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior, params};
use uuid::Uuid;

use super::Write;
use super::journal::Record;
use crate::auth::RevokedToken;
use crate::fault::StoreError;
use crate::queue::{Entry, Priority, QueuedTask, TaskText};

/// Name of the database file in `DATA_DIR`.
pub const DATABASE_FILE: &str = "backflow.db";

/// `PRAGMA application_id` of a BackFlow store ("BFLW").
const APPLICATION_ID: i32 = 0x4246_4c57;

/// `PRAGMA user_version` of the schema below.
const SCHEMA_VERSION: i32 = 1;

/// How long a statement waits for a lock held by another connection (a backup tool, say).
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

const SCHEMA: &str = "
    -- The queue. `seq` is the arrival order: the heap is rebuilt ordered by (priority, seq).
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
";

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
#[derive(Debug, Default)]
pub struct Contents {
    /// Every queued task with its arrival number, in no particular order.
    pub tasks: Vec<Entry>,
    /// Revocations still in force.
    pub revocations: Vec<RevokedToken>,
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
        std::fs::create_dir_all(dir).map_err(|err| OpenError::new(dir, err, MAKE_IT_WRITABLE))?;
        let path = dir.join(DATABASE_FILE);
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
        if version == SCHEMA_VERSION {
            return Ok(());
        }
        let sqlite = at(&self.path);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sqlite)?;
        let has_tables: bool = tx
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
        tx.execute_batch(SCHEMA).map_err(sqlite)?;
        tx.pragma_update(None, "application_id", APPLICATION_ID)
            .map_err(sqlite)?;
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(sqlite)?;
        tx.commit().map_err(sqlite)
    }

    /// Forgets revocations that expired before `purge_before`, then reads everything back.
    /// A row that breaks the API's rules means the file was damaged or edited by hand.
    pub fn load(&mut self, purge_before: u64) -> Result<Contents, OpenError> {
        let sqlite = at(&self.path);
        self.conn
            .execute(
                "DELETE FROM revocations WHERE exp < ?1",
                [to_sql_int(purge_before)],
            )
            .map_err(sqlite)?;
        let mut contents = Contents::default();
        let mut tasks = self
            .conn
            .prepare("SELECT seq, id, task, priority, enqueued_at_ms FROM tasks")
            .map_err(sqlite)?;
        let mut rows = tasks.query([]).map_err(sqlite)?;
        while let Some(row) = rows.next().map_err(sqlite)? {
            let seq: i64 = row.get(0).map_err(sqlite)?;
            let entry = (|| -> Result<Entry, String> {
                let id: [u8; 16] = row.get(1).map_err(|e| e.to_string())?;
                let text: String = row.get(2).map_err(|e| e.to_string())?;
                let priority: i64 = row.get(3).map_err(|e| e.to_string())?;
                let enqueued_at_ms: i64 = row.get(4).map_err(|e| e.to_string())?;
                Ok(Entry {
                    seq: u64::try_from(seq).map_err(|e| e.to_string())?,
                    task: QueuedTask {
                        id: Uuid::from_bytes(id),
                        task: TaskText::parse(text).map_err(|e| e.to_string())?,
                        priority: Priority::new(priority).map_err(|e| e.to_string())?,
                        enqueued_at_ms: u64::try_from(enqueued_at_ms).map_err(|e| e.to_string())?,
                    },
                })
            })()
            .map_err(|reason| {
                OpenError::new(
                    &self.path,
                    format!("task {seq} is invalid: {reason}"),
                    MOVE_IT_AWAY,
                )
            })?;
            contents.tasks.push(entry);
        }
        drop(rows);
        drop(tasks);
        let mut revocations = self
            .conn
            .prepare("SELECT jti, exp FROM revocations")
            .map_err(sqlite)?;
        let mut rows = revocations.query([]).map_err(sqlite)?;
        while let Some(row) = rows.next().map_err(sqlite)? {
            let jti: [u8; 16] = row.get(0).map_err(sqlite)?;
            let exp: i64 = row.get(1).map_err(sqlite)?;
            contents.revocations.push(RevokedToken {
                jti: Uuid::from_bytes(jti),
                exp: u64::try_from(exp).unwrap_or_default(),
            });
        }
        Ok(contents)
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
        Write::InsertTask { seq, task } => insert_task(tx, to_sql_int(*seq), task),
        Write::DeleteTask { seq } => tx
            .prepare_cached("DELETE FROM tasks WHERE seq = ?1")?
            .execute([to_sql_int(*seq)]),
        Write::Revoke(token) => insert_revocation(tx, token),
        Write::PurgeRevocations { before } => tx
            .prepare_cached("DELETE FROM revocations WHERE exp < ?1")?
            .execute([to_sql_int(*before)]),
        Write::Touch { at_ms } => tx
            .prepare_cached(
                "INSERT INTO readiness (id, checked_ms) VALUES (1, ?1)
                 ON CONFLICT (id) DO UPDATE SET checked_ms = excluded.checked_ms",
            )?
            .execute([to_sql_int(*at_ms)]),
    }
}

fn insert_task(
    tx: &rusqlite::Transaction<'_>,
    seq: i64,
    task: &QueuedTask,
) -> rusqlite::Result<usize> {
    tx.prepare_cached(
        "INSERT INTO tasks (seq, id, task, priority, enqueued_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        seq,
        task.id.as_bytes(),
        task.task.as_str(),
        task.priority.get(),
        to_sql_int(task.enqueued_at_ms),
    ])
}

fn insert_revocation(
    tx: &rusqlite::Transaction<'_>,
    token: &RevokedToken,
) -> rusqlite::Result<usize> {
    tx.prepare_cached("INSERT OR IGNORE INTO revocations (jti, exp) VALUES (?1, ?2)")?
        .execute(params![token.jti.as_bytes(), to_sql_int(token.exp)])
}

/// SQLite integers are signed 64-bit; every value stored here (arrival numbers, Unix times)
/// is far below `i64::MAX`, and a larger one is clamped rather than wrapped.
fn to_sql_int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
