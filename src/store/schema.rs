//! The file's schema: what makes a file ours (application_id, user_version), the tables, the
//! migration from older schemas, and what a bridge holds at open.

use super::{Resume, Store};
use crate::config::Config;
use crate::error::{Error, Result};
use rusqlite::{params, Connection};

/// `PRAGMA application_id` of an outbox file ("nmqo").
pub const APPLICATION_ID: i32 = 0x6e6d_716f;
/// `PRAGMA user_version`: the schema below. A file of a newer schema is refused; an older one
/// is migrated at open (1 to 2: `msg.attempts` and the `dead` table of dead letters).
pub const SCHEMA_VERSION: i32 = 2;

/// The schema (also used by the benchmarks' raw-SQLite baselines, so they insert the same rows).
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS bridge(
    id   INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS msg(
    bridge_id   INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    qos         INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    enqueued_at INTEGER NOT NULL,
    packet_id   INTEGER NOT NULL DEFAULT 0,
    released    INTEGER NOT NULL DEFAULT 0,
    data        BLOB NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY(bridge_id, seq)
) WITHOUT ROWID;
";

impl Store {
    /// Checks that the file is ours (or empty) and of a schema we know, and creates the schema.
    pub(super) fn schema(conn: &Connection, cfg: &Config) -> Result<()> {
        let (app, version): (i32, i32) = conn.query_row(
            "SELECT * FROM pragma_application_id, pragma_user_version",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        if version > SCHEMA_VERSION {
            return Err(Error::Io(format!(
                "{} has schema version {version}, newer than this library's {SCHEMA_VERSION}",
                cfg.path.display()
            )));
        }
        if app != APPLICATION_ID && app != 0 {
            return Err(Error::Io(format!(
                "{} is not an nmq-outbox file (application_id 0x{app:08x})",
                cfg.path.display()
            )));
        }
        // A file of version 0.1 of this library has no application_id but only our tables.
        let foreign: i64 = conn.query_row(
            "SELECT count(*) FROM sqlite_master
             WHERE name NOT IN ('bridge', 'msg', 'dead', 'sqlite_autoindex_bridge_1')",
            [],
            |r| r.get(0),
        )?;
        if app == 0 && foreign > 0 {
            return Err(Error::Io(format!(
                "{} is a SQLite file of another program, not an nmq-outbox file",
                cfg.path.display()
            )));
        }
        conn.execute_batch(SCHEMA)?;
        migrate(conn)?;
        if app == 0 || version < SCHEMA_VERSION {
            conn.execute_batch(&format!(
                "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {SCHEMA_VERSION};"
            ))?;
        }
        Ok(())
    }
}

/// Brings a file of an older schema to this one, in the caller's transaction (idempotent):
/// version 1 to 2 adds `msg.attempts` (0 for every row) and the `dead` table.
pub fn migrate(conn: &Connection) -> Result<()> {
    let has_attempts: bool = conn.query_row(
        "SELECT count(*) FROM pragma_table_info('msg') WHERE name = 'attempts'",
        [],
        |r| r.get::<_, i64>(0).map(|n| n > 0),
    )?;
    if !has_attempts {
        conn.execute_batch("ALTER TABLE msg ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0")?;
    }
    conn.execute_batch(crate::dead::SCHEMA)?;
    Ok(())
}

/// Counts, bytes and the seq range of one bridge's rows (queue and dead letters): what a
/// reopen resumes from.
pub(super) fn query_resume(conn: &Connection, bridge_id: i64) -> Result<Resume> {
    let mut res = conn.query_row(
        "SELECT count(*), coalesce(sum(length(data)), 0), min(seq), max(seq)
         FROM msg WHERE bridge_id = ?1",
        params![bridge_id],
        |r| {
            Ok(Resume {
                messages: r.get::<_, i64>(0)?.max(0) as u64,
                bytes: r.get::<_, i64>(1)?.max(0) as u64,
                min_seq: r.get(2)?,
                max_seq: r.get(3)?,
                dead: 0,
            })
        },
    )?;
    res.dead = crate::dead::count(conn, bridge_id)?;
    let (lo, hi) = crate::dead::seq_range(conn, bridge_id)?;
    res.min_seq = match (res.min_seq, lo) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    res.max_seq = res.max_seq.max(hi);
    Ok(res)
}
