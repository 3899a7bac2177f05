//! The rows of the embedded store: a plan of the queue's index as SQL, and the file read back
//! into the index's records.
//!
//! A task is one row of `tasks`, keyed by its arrival number: written whole when it arrives,
//! its state columns at each change, and deleted when it leaves the queue, so the file holds
//! exactly the records the index holds once a plan is settled. An acknowledgement is a row
//! appended to `acked`. Every value read back is checked by the same parsers
//! as the API's input.

use rusqlite::{Connection, Row, Transaction, params};
use uuid::Uuid;

use crate::auth::RevokedToken;
use crate::queue::QueueSettings;
use crate::queue::index::{IndexBuilder, KeyRecord, Plan, QueueIndex, Snapshot, Tombstone};
use crate::queue::limits::{ErrorText, IdempotencyKey, LeaseId, MaxAttempts};
use crate::queue::record::{Enqueued, TaskRecord, TaskState};
use crate::queue::{Fingerprint, Priority, QueuedTask, TaskText};

/// `tasks.state` of each [`TaskState`].
const QUEUED: i64 = 0;
const DELAYED: i64 = 1;
const LEASED: i64 = 2;
const DEAD: i64 = 3;

/// SQLite integers are signed 64-bit; every value stored here (arrival numbers, times in ms)
/// is far below `i64::MAX`, and a larger one is clamped rather than wrapped.
pub fn to_sql_int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Records `plan`: every changed task written whole or deleted, acknowledgements and the
/// idempotency key remembered. Returns the rows changed.
pub fn write_plan(tx: &Transaction<'_>, plan: &Plan) -> rusqlite::Result<usize> {
    let mut changed = 0;
    for change in plan.changes() {
        changed += match &change.after {
            Some(record) if change.before.is_some() => update_task(tx, record)?,
            Some(record) => upsert_task(tx, record)?,
            None => {
                let seq = change
                    .before
                    .as_ref()
                    .map_or(i64::MAX, |before| to_sql_int(before.seq));
                tx.prepare_cached("DELETE FROM tasks WHERE seq = ?1")?
                    .execute([seq])?
            }
        };
    }
    for tombstone in plan.tombstones() {
        changed += tx
            .prepare_cached("INSERT INTO acked (id, lease_id, until_ms) VALUES (?1, ?2, ?3)")?
            .execute(params![
                tombstone.id.as_bytes(),
                tombstone.lease.as_uuid().as_bytes(),
                to_sql_int(tombstone.until_ms),
            ])?;
    }
    if let Some(key) = plan.key() {
        let answer = serde_json::to_string(&key.answer)
            .map_err(|err| rusqlite::Error::ToSqlConversionFailure(Box::new(err)))?;
        changed += tx
            .prepare_cached(
                "INSERT OR REPLACE INTO idempotency (key, fingerprint, answer, expires_ms)
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![
                key.key.as_str(),
                key.fingerprint.0.as_slice(),
                answer,
                to_sql_int(key.expires_ms),
            ])?;
    }
    Ok(changed)
}

/// Forgets acknowledgements and idempotency keys that expired before `before_ms`.
pub fn forget_before(tx: &Transaction<'_>, before_ms: u64) -> rusqlite::Result<usize> {
    let before = to_sql_int(before_ms);
    let acks = tx
        .prepare_cached("DELETE FROM acked WHERE until_ms < ?1")?
        .execute([before])?;
    let keys = tx
        .prepare_cached("DELETE FROM idempotency WHERE expires_ms < ?1")?
        .execute([before])?;
    Ok(acks + keys)
}

/// The columns of a task that change after its arrival: `max_attempts`, `attempt`, `state`,
/// `at_ms`, `lease_id` and `last_error`.
type Changing<'a> = (
    u32,
    u32,
    i64,
    Option<i64>,
    Option<[u8; 16]>,
    Option<&'a str>,
);

fn changing(record: &TaskRecord) -> Changing<'_> {
    let (state, at_ms, lease) = match record.state {
        TaskState::Queued => (QUEUED, None, None),
        TaskState::Delayed { until_ms } => (DELAYED, Some(until_ms), None),
        TaskState::Leased { lease, expires_ms } => (LEASED, Some(expires_ms), Some(lease)),
        TaskState::Dead { at_ms } => (DEAD, Some(at_ms), None),
    };
    (
        record.max_attempts.get(),
        record.attempt,
        state,
        at_ms.map(to_sql_int),
        lease.map(|lease| *lease.as_uuid().as_bytes()),
        record.last_error.as_ref().map(ErrorText::as_str),
    )
}

/// Writes the changing columns of a task already in the file (its text, priority and arrival
/// never change); a task the file lacks is written whole.
fn update_task(tx: &Transaction<'_>, record: &TaskRecord) -> rusqlite::Result<usize> {
    let (max_attempts, attempt, state, at_ms, lease, last_error) = changing(record);
    let updated = tx
        .prepare_cached(
            "UPDATE tasks SET max_attempts = ?2, attempt = ?3, state = ?4, at_ms = ?5,
                              lease_id = ?6, last_error = ?7
             WHERE seq = ?1",
        )?
        .execute(params![
            to_sql_int(record.seq),
            max_attempts,
            attempt,
            state,
            at_ms,
            lease,
            last_error,
        ])?;
    if updated == 0 {
        return upsert_task(tx, record);
    }
    Ok(updated)
}

fn upsert_task(tx: &Transaction<'_>, record: &TaskRecord) -> rusqlite::Result<usize> {
    let (max_attempts, attempt, state, at_ms, lease, last_error) = changing(record);
    let task = &record.task;
    tx.prepare_cached(
        "INSERT INTO tasks (seq, id, task, priority, enqueued_at_ms, max_attempts, attempt,
                            state, at_ms, lease_id, last_error)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
         ON CONFLICT (seq) DO UPDATE SET
            max_attempts = excluded.max_attempts, attempt = excluded.attempt,
            state = excluded.state, at_ms = excluded.at_ms, lease_id = excluded.lease_id,
            last_error = excluded.last_error",
    )?
    .execute(params![
        to_sql_int(record.seq),
        task.id.as_bytes(),
        task.task.as_str(),
        task.priority.get(),
        to_sql_int(task.enqueued_at_ms),
        max_attempts,
        attempt,
        state,
        at_ms,
        lease,
        last_error,
    ])
}

/// Remembers a revocation (a second one of the same token changes nothing).
pub fn insert_revocation(tx: &Transaction<'_>, token: &RevokedToken) -> rusqlite::Result<usize> {
    tx.prepare_cached("INSERT OR IGNORE INTO revocations (jti, exp) VALUES (?1, ?2)")?
        .execute(params![token.jti.as_bytes(), to_sql_int(token.exp)])
}

/// Every revocation in the file.
pub fn read_revocations(conn: &Connection) -> rusqlite::Result<Vec<RevokedToken>> {
    let mut statement = conn.prepare("SELECT jti, exp FROM revocations")?;
    let rows = statement.query_map([], |row| {
        let jti: [u8; 16] = row.get(0)?;
        let exp: i64 = row.get(1)?;
        Ok(RevokedToken {
            jti: Uuid::from_bytes(jti),
            exp: u64::try_from(exp).unwrap_or_default(),
        })
    })?;
    rows.collect()
}

/// Every task, acknowledgement and idempotency key in the file. `sqlite` maps an SQLite error,
/// `damaged` a row that breaks the API's rules.
pub fn read_queue<E>(
    conn: &Connection,
    settings: QueueSettings,
    now_ms: u64,
    sqlite: impl Fn(rusqlite::Error) -> E + Copy,
    damaged: impl Fn(String) -> E,
) -> Result<QueueIndex, E> {
    // Each row goes straight into the index, which is sized up front: a large queue is never
    // held twice, nor copied as it grows.
    let count: i64 = conn
        .query_row("SELECT count(*) FROM tasks", [], |row| row.get(0))
        .map_err(sqlite)?;
    let mut builder = IndexBuilder::with_capacity(usize::try_from(count).unwrap_or_default());
    let mut snapshot = Snapshot::default();
    let mut tasks = conn
        .prepare(
            "SELECT seq, id, task, priority, enqueued_at_ms, max_attempts, attempt, state, at_ms,
                    lease_id, last_error
             FROM tasks",
        )
        .map_err(sqlite)?;
    let mut rows = tasks.query([]).map_err(sqlite)?;
    while let Some(row) = rows.next().map_err(sqlite)? {
        let seq: i64 = row.get(0).map_err(sqlite)?;
        let record =
            task_of(row).map_err(|reason| damaged(format!("task {seq} is invalid: {reason}")))?;
        builder.task(record);
    }
    drop(rows);
    drop(tasks);
    let mut acked = conn
        .prepare("SELECT id, lease_id, until_ms FROM acked")
        .map_err(sqlite)?;
    let tombstones = acked
        .query_map([], |row| {
            Ok(Tombstone {
                id: Uuid::from_bytes(row.get(0)?),
                lease: LeaseId::from_uuid(Uuid::from_bytes(row.get(1)?)),
                until_ms: u64::try_from(row.get::<_, i64>(2)?).unwrap_or_default(),
            })
        })
        .map_err(sqlite)?;
    for tombstone in tombstones {
        snapshot.tombstones.push(tombstone.map_err(sqlite)?);
    }
    let mut keys = conn
        .prepare("SELECT key, fingerprint, answer, expires_ms FROM idempotency")
        .map_err(sqlite)?;
    let mut rows = keys.query([]).map_err(sqlite)?;
    while let Some(row) = rows.next().map_err(sqlite)? {
        let key: String = row.get(0).map_err(sqlite)?;
        let record = key_of(row)
            .map_err(|reason| damaged(format!("idempotency key {key:?} is invalid: {reason}")))?;
        snapshot.keys.push(record);
    }
    Ok(builder.build(settings, snapshot, now_ms))
}

fn task_of(row: &Row<'_>) -> Result<TaskRecord, String> {
    let text = |err: rusqlite::Error| err.to_string();
    let id: [u8; 16] = row.get(1).map_err(text)?;
    let state: i64 = row.get(7).map_err(text)?;
    let at_ms: Option<i64> = row.get(8).map_err(text)?;
    let lease: Option<[u8; 16]> = row.get(9).map_err(text)?;
    let at = || {
        at_ms
            .and_then(|at| u64::try_from(at).ok())
            .ok_or_else(|| format!("state {state} needs a time"))
    };
    let state = match state {
        QUEUED => TaskState::Queued,
        DELAYED => TaskState::Delayed { until_ms: at()? },
        LEASED => TaskState::Leased {
            lease: LeaseId::from_uuid(Uuid::from_bytes(
                lease.ok_or("a leased task needs its lease id")?,
            )),
            expires_ms: at()?,
        },
        DEAD => TaskState::Dead { at_ms: at()? },
        other => return Err(format!("unknown state {other}")),
    };
    let last_error: Option<String> = row.get(10).map_err(text)?;
    Ok(TaskRecord {
        seq: u64::try_from(row.get::<_, i64>(0).map_err(text)?).map_err(|e| e.to_string())?,
        task: QueuedTask {
            id: Uuid::from_bytes(id),
            task: TaskText::parse(row.get(2).map_err(text)?).map_err(|e| e.to_string())?,
            priority: Priority::new(row.get(3).map_err(text)?).map_err(|e| e.to_string())?,
            enqueued_at_ms: u64::try_from(row.get::<_, i64>(4).map_err(text)?)
                .map_err(|e| e.to_string())?,
        },
        max_attempts: MaxAttempts::new(
            u64::try_from(row.get::<_, i64>(5).map_err(text)?).map_err(|e| e.to_string())?,
        )
        .map_err(|e| e.to_string())?,
        attempt: u32::try_from(row.get::<_, i64>(6).map_err(text)?).map_err(|e| e.to_string())?,
        state,
        last_error: last_error
            .map(ErrorText::parse)
            .transpose()
            .map_err(|e| e.to_string())?,
    })
}

fn key_of(row: &Row<'_>) -> Result<KeyRecord, String> {
    let text = |err: rusqlite::Error| err.to_string();
    let key: String = row.get(0).map_err(text)?;
    let fingerprint: [u8; 32] = row.get(1).map_err(text)?;
    let answer: String = row.get(2).map_err(text)?;
    let answer: Enqueued = serde_json::from_str(&answer).map_err(|e| e.to_string())?;
    Ok(KeyRecord {
        key: IdempotencyKey::parse(key.as_bytes()).map_err(|e| e.to_string())?,
        fingerprint: Fingerprint(fingerprint),
        answer,
        expires_ms: u64::try_from(row.get::<_, i64>(3).map_err(text)?)
            .map_err(|e| e.to_string())?,
    })
}

/// Whether the file has a table named `name` (for the migration checks of tests).
#[cfg(test)]
pub fn has_table(conn: &Connection, name: &str) -> bool {
    use rusqlite::OptionalExtension;
    conn.query_row(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name = ?1",
        [name],
        |row| row.get::<_, String>(0),
    )
    .optional()
    .ok()
    .flatten()
    .is_some()
}
