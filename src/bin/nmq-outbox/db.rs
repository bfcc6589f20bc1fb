//! Opening an outbox file: read-only in one read transaction (works beside a running writer in
//! WAL mode and never writes), or for writing under the same flock the library holds. Also:
//! what the file is (ours, foreign, newer, corrupt), its bridges and rows, who holds it.

use crate::fail::{sql, Code, Fail, Res};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::time::Duration;

pub use nmq_outbox::store::{APPLICATION_ID, SCHEMA_VERSION};

/// Readers wait at most this long for a lock (a WAL reader waits only during WAL recovery).
const READ_BUSY_MS: u64 = 250;
/// Writers (purge, import) wait at most this long for the writer lock of SQLite.
const WRITE_BUSY_MS: u64 = 2000;

const MSG_COLUMNS: [&str; 8] = [
    "bridge_id",
    "seq",
    "qos",
    "expires_at",
    "enqueued_at",
    "packet_id",
    "released",
    "data",
];

/// What the file says about itself.
#[derive(Debug, Clone, Copy)]
pub struct Ident {
    pub application_id: i32,
    pub user_version: i32,
}

/// Whether `msg` has the `attempts` column (schema 2; a file of schema 1 has not, and is read
/// as it is).
fn has_attempts(conn: &Connection) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT count(*) FROM pragma_table_info('msg') WHERE name = 'attempts'",
        [],
        |r| r.get::<_, i64>(0).map(|n| n > 0),
    )
}

pub struct Db {
    pub conn: Connection,
    pub ident: Ident,
}

/// A file opened for writing. `conn` is declared first so that it is closed before the flock
/// fd: closing any fd of a SQLite file drops this process's POSIX locks on it.
pub struct WriteDb {
    pub conn: Connection,
    _lock: Option<File>,
}

#[derive(Debug, Clone)]
pub struct Bridge {
    pub id: i64,
    pub name: String,
}

/// One row as stored (the library's row mapping). Integers are read as i64 so that `check` can
/// report bad values.
pub use nmq_outbox::store::StoredRow as Row;

/// `<name>.corrupt-<secs>` or `<name>.corrupt-<secs>-<n>`: the library renamed a corrupt file
/// aside so. Returns the seconds.
pub fn quarantined(path: &Path) -> Option<i64> {
    let name = path.file_name()?.to_str()?;
    let at = name.rfind(".corrupt-")?;
    let tail = &name[at + ".corrupt-".len()..];
    let secs = tail.split('-').next()?;
    let ok = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !ok(secs) || !tail.split('-').skip(1).all(ok) || tail.split('-').count() > 2 {
        return None;
    }
    secs.parse().ok()
}

/// Size of `<path><suffix>` (the -wal file), if it exists.
pub fn side_size(path: &Path, suffix: &str) -> Option<u64> {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    std::fs::metadata(p).ok().map(|m| m.len())
}

/// Checks that `path` is a regular file that starts like a SQLite database. The fd is closed
/// before any SQLite connection is opened.
fn sniff(path: &Path) -> Res<()> {
    let shown = path.display();
    let meta = std::fs::metadata(path)
        .map_err(|e| Fail::new(Code::CannotOpen, format!("cannot open {shown}: {e}")))?;
    if meta.is_dir() {
        let mut found: Vec<String> = std::fs::read_dir(path)
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|n| n.starts_with("nmq_outbox-") && n.ends_with(".db"))
                    .collect()
            })
            .unwrap_or_default();
        found.sort();
        return Err(Fail::new(
            Code::CannotOpen,
            format!(
                "{shown} is a directory ({}): name one file, or give --bridge",
                if found.is_empty() {
                    "no nmq_outbox-<bridge>.db in it".to_string()
                } else {
                    found.join(", ")
                }
            ),
        ));
    }
    if meta.len() == 0 {
        return Err(Fail::new(
            Code::NotOutbox,
            format!("{shown}: not an outbox file (empty file)"),
        ));
    }
    let mut head = [0u8; 16];
    let mut f = File::open(path)
        .map_err(|e| Fail::new(Code::CannotOpen, format!("cannot open {shown}: {e}")))?;
    let n = f
        .read(&mut head)
        .map_err(|e| Fail::new(Code::CannotOpen, format!("cannot read {shown}: {e}")))?;
    if n < 16 || &head != b"SQLite format 3\0" {
        return Err(Fail::new(
            Code::NotOutbox,
            format!(
                "{shown}: not an outbox file (not a SQLite database, or its header is destroyed)"
            ),
        ));
    }
    Ok(())
}

/// The file a command works on: `path`, or the bridge's file when `path` is a directory
/// (`<dir>/nmq_outbox-<bridge>.db`, as the library names it).
pub fn resolve(path: &Path, bridge: Option<&str>) -> std::path::PathBuf {
    match bridge {
        Some(b) => nmq_outbox::files::resolve(path, b),
        None => path.to_path_buf(),
    }
}

/// Tells our file from a foreign or newer one. Runs inside the caller's transaction.
fn identify(conn: &Connection, path: &Path) -> Res<Ident> {
    let shown = path.display().to_string();
    let q = |p: &str| -> Res<i32> {
        conn.query_row(&format!("PRAGMA {p}"), [], |r| r.get(0))
            .map_err(|e| sql(&shown, e))
    };
    let ident = Ident {
        application_id: q("application_id")?,
        user_version: q("user_version")?,
    };
    if ident.application_id != APPLICATION_ID && ident.application_id != 0 {
        return Err(Fail::new(
            Code::NotOutbox,
            format!(
                "{shown}: not an outbox file (SQLite application_id 0x{:08x}, nmq-outbox's is 0x{:08x})",
                ident.application_id, APPLICATION_ID
            ),
        ));
    }
    let columns = |table: &str| -> Res<Vec<String>> {
        let mut st = conn
            .prepare("SELECT name FROM pragma_table_info(?1)")
            .map_err(|e| sql(&shown, e))?;
        let cols = st
            .query_map(params![table], |r| r.get::<_, String>(0))
            .and_then(|it| it.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| sql(&shown, e));
        cols
    };
    let msg = columns("msg")?;
    let bridge = columns("bridge")?;
    let has = |cols: &[String], want: &[&str]| want.iter().all(|w| cols.iter().any(|c| c == w));
    let schema_ok = has(&msg, &MSG_COLUMNS) && has(&bridge, &["id", "name"]);
    if ident.user_version > SCHEMA_VERSION && (schema_ok || ident.application_id == APPLICATION_ID)
    {
        return Err(Fail::new(
            Code::NewerSchema,
            format!(
                "{shown}: newer schema {}, this tool reads up to {SCHEMA_VERSION} (use the \
                 nmq-outbox that wrote it)",
                ident.user_version
            ),
        ));
    }
    if !schema_ok {
        return Err(if ident.application_id == APPLICATION_ID {
            Fail::new(
                Code::Corrupt,
                format!("{shown}: an outbox file without its tables (bridge, msg)"),
            )
        } else {
            Fail::new(
                Code::NotOutbox,
                format!(
                    "{shown}: not an outbox file (a SQLite database without nmq-outbox's tables)"
                ),
            )
        });
    }
    Ok(ident)
}

/// Opens `path` read-only and starts one read transaction: every read of the command sees one
/// snapshot, a running writer is never blocked (WAL), and nothing is written (no checkpoint,
/// no schema). A file nobody holds gets the empty -wal/-shm side files any SQLite reader
/// creates; the database itself is never changed.
pub fn open_read(path: &Path) -> Res<Db> {
    sniff(path)?;
    let shown = path.display().to_string();
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| sql(&format!("cannot open {shown}"), e))?;
    conn.busy_timeout(Duration::from_millis(READ_BUSY_MS))
        .map_err(|e| sql(&shown, e))?;
    conn.execute_batch("BEGIN").map_err(|e| sql(&shown, e))?;
    let ident = identify(&conn, path).map_err(|f| {
        if f.code == Code::CannotOpen
            && (f.msg.contains("unable to open") || f.msg.contains("readonly"))
        {
            Fail::new(
                Code::CannotOpen,
                format!(
                    "{} (reading a WAL database needs its -shm file, or write access to its \
                     directory to create one: run as the file's owner)",
                    f.msg
                ),
            )
        } else {
            f
        }
    })?;
    Ok(Db { conn, ident })
}

/// Processes holding a flock on `path` (the library holds one while a handle is open), from
/// /proc/locks: reading it takes no lock and so cannot disturb a NanoMQ that starts meanwhile.
/// None when /proc/locks cannot be read.
pub fn holders(path: &Path) -> Option<Vec<i64>> {
    let meta = std::fs::metadata(path).ok()?;
    let dev = meta.dev();
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    let want = format!("{major:02x}:{minor:02x}:{}", meta.ino());
    let locks = read_proc("/proc/locks")?;
    let mut pids = Vec::new();
    for line in locks.lines() {
        // "1: FLOCK  ADVISORY  WRITE 4242 fd:01:1234 0 EOF" ("->" marks a waiter)
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() >= 6 && f[1] == "FLOCK" && f[5] == want {
            if let Ok(pid) = f[4].parse::<i64>() {
                if !pids.contains(&pid) {
                    pids.push(pid);
                }
            }
        }
    }
    Some(pids)
}

/// A /proc file in reads as large as the kernel gives. /proc/locks comes a page of records per
/// read, listed under the kernel's lock-list lock; the next read resumes by position, so a
/// lock listed earlier that goes away in between makes a record skipped. `read_to_string`
/// starts with a 32-byte read (a record or two per read): under other processes' locking the
/// holder was missed now and then. One read takes a page (a few dozen locks): consistent.
fn read_proc(path: &str) -> Option<String> {
    let mut f = File::open(path).ok()?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(len * 2, 0);
        }
        match f.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    buf.truncate(len);
    String::from_utf8(buf).ok()
}

fn held_msg(path: &Path) -> String {
    let who = match holders(path) {
        Some(p) if !p.is_empty() => {
            let p: Vec<String> = p.iter().map(|x| x.to_string()).collect();
            format!(" (pid {})", p.join(", "))
        }
        _ => String::new(),
    };
    format!(
        "{} is held by a running process{who}: stop it (NanoMQ) first, or pass --force",
        path.display()
    )
}

/// Opens `path` for writing: takes the library's flock first (refusing a held file unless
/// `force`), then checks what the file is. The caller writes in one transaction.
pub fn open_write(path: &Path, force: bool) -> Res<WriteDb> {
    sniff(path)?;
    let shown = path.display().to_string();
    let lock = File::open(path)
        .map_err(|e| Fail::new(Code::CannotOpen, format!("cannot open {shown}: {e}")))?;
    // SAFETY: flock on an fd we own; no memory is passed.
    let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    let lock = if rc == 0 {
        Some(lock)
    } else {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(Fail::new(
                Code::CannotOpen,
                format!("cannot lock {shown}: {err}"),
            ));
        }
        if !force {
            return Err(Fail::new(Code::Held, held_msg(path)));
        }
        eprintln!(
            "nmq-outbox: warning: {}; writing anyway (--force): the running bridge keeps \
             stale counters and may still send rows it had read ahead, until it restarts",
            held_msg(path).split(": stop").next().unwrap_or_default()
        );
        None
    };
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| sql(&format!("cannot open {shown}"), e))?;
    conn.busy_timeout(Duration::from_millis(WRITE_BUSY_MS))
        .map_err(|e| sql(&shown, e))?;
    identify(&conn, path)?;
    Ok(WriteDb { conn, _lock: lock })
}

/// Every bridge, by name.
pub fn bridges(conn: &Connection) -> Res<Vec<Bridge>> {
    let mut st = conn
        .prepare("SELECT id, name FROM bridge ORDER BY name")
        .map_err(|e| sql("bridges", e))?;
    let v = st
        .query_map([], |r| {
            Ok(Bridge {
                id: r.get(0)?,
                name: r.get(1)?,
            })
        })
        .and_then(|it| it.collect::<rusqlite::Result<Vec<_>>>())
        .map_err(|e| sql("bridges", e));
    v
}

/// The bridges a command works on: the one named (it must exist), or every bridge.
pub fn select(conn: &Connection, path: &Path, name: Option<&str>) -> Res<Vec<Bridge>> {
    let all = bridges(conn)?;
    let Some(name) = name else { return Ok(all) };
    match all.iter().find(|b| b.name == name) {
        Some(b) => Ok(vec![b.clone()]),
        None => {
            let names: Vec<&str> = all.iter().map(|b| b.name.as_str()).collect();
            Err(Fail::new(
                Code::NoBridge,
                format!(
                    "{}: no bridge {name:?} (bridges: {})",
                    path.display(),
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                ),
            ))
        }
    }
}

/// Rows of one bridge in FIFO order (seq), at most `limit` (0 = all), to `f`; `f` returns
/// false to stop.
pub fn each_row(
    conn: &Connection,
    bridge_id: i64,
    limit: u64,
    mut f: impl FnMut(Row) -> Res<bool>,
) -> Res<()> {
    let select = if has_attempts(conn).map_err(|e| sql("rows", e))? {
        nmq_outbox::store::SELECT_ROWS
    } else {
        nmq_outbox::store::SELECT_ROWS_SCHEMA1
    };
    let mut st = conn.prepare(select).map_err(|e| sql("rows", e))?;
    let limit = if limit == 0 { -1 } else { limit as i64 };
    let mut rows = st
        .query(params![bridge_id, i64::MIN, limit])
        .map_err(|e| sql("rows", e))?;
    while let Some(r) = rows.next().map_err(|e| sql("rows", e))? {
        let row = r
            .get::<_, Vec<u8>>(nmq_outbox::store::DATA_COLUMN)
            .and_then(|data| Row::from_sql(r, data))
            .map_err(|e| match e {
                rusqlite::Error::InvalidColumnType(..)
                | rusqlite::Error::FromSqlConversionFailure(..) => Fail::new(
                    Code::Corrupt,
                    format!("a row of unexpected type ({e}); run `nmq-outbox check`"),
                ),
                e => sql("rows", e),
            })?;
        if !f(row)? {
            break;
        }
    }
    Ok(())
}

/// Number of rows of one bridge.
pub fn count(conn: &Connection, bridge_id: i64) -> Res<u64> {
    conn.query_row(
        "SELECT count(*) FROM msg WHERE bridge_id = ?1",
        params![bridge_id],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n as u64)
    .map_err(|e| sql("count", e))
}

/// The id of bridge `name`, created if missing (import).
pub fn bridge_id_or_create(conn: &Connection, name: &str) -> Res<i64> {
    let get = || {
        conn.query_row(
            "SELECT id FROM bridge WHERE name = ?1",
            params![name],
            |r| r.get::<_, i64>(0),
        )
        .optional()
        .map_err(|e| sql("bridge", e))
    };
    if let Some(id) = get()? {
        return Ok(id);
    }
    conn.execute("INSERT INTO bridge(name) VALUES (?1)", params![name])
        .map_err(|e| sql("bridge", e))?;
    get()?.ok_or_else(|| Fail::new(Code::CannotOpen, "bridge insert vanished"))
}

/// A progress bar on stderr for `total` steps, drawn only when stderr is a terminal and the
/// work is large enough to wait for.
pub fn progress(total: u64, what: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if total < 5000 || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new(total);
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {pos}/{len} rows, {per_sec}, eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}
