//! Exit codes and the one error type of the command: every failure is one line and a code.

use std::fmt;

/// The process exit codes (documented in `--help` and the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// `check` found a problem (integrity, an invariant, a quarantined file).
    Problems = 1,
    /// Bad command line (clap's own code).
    #[allow(dead_code)]
    Usage = 2,
    /// The file cannot be opened or read (missing, permission, I/O error, busy).
    CannotOpen = 3,
    /// Not an outbox file: not SQLite, or SQLite without our schema.
    NotOutbox = 4,
    /// The outbox file is corrupt.
    Corrupt = 5,
    /// The file was written by a newer nmq-outbox (schema version above what this tool reads).
    NewerSchema = 6,
    /// No such bridge in the file.
    NoBridge = 7,
    /// The file is held by a running process (NanoMQ) and the command writes.
    Held = 8,
    /// `import`: the input is not a valid export.
    BadInput = 9,
    /// `dead requeue|purge --seq`: no dead letter has that seq.
    NoDeadLetter = 10,
}

/// The exit-code table shown after `--help`.
pub const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  check: a problem was found (integrity, an invariant, a quarantined file)
  2  usage error
  3  cannot open or read the file (missing, permission, I/O error, locked)
  4  not an outbox file (not SQLite, or SQLite without nmq-outbox's schema)
  5  the outbox file is corrupt
  6  the file has a newer schema than this tool reads
  7  no such bridge in the file
  8  the file is held by a running process (purge/import; see --force)
  9  import: the input is not a valid export
 10  dead requeue/purge: no dead letter with that seq";

#[derive(Debug)]
pub struct Fail {
    pub code: Code,
    pub msg: String,
}

impl Fail {
    pub fn new(code: Code, msg: impl Into<String>) -> Fail {
        Fail {
            code,
            msg: msg.into(),
        }
    }
}

impl fmt::Display for Fail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

pub type Res<T> = std::result::Result<T, Fail>;

/// Maps a SQLite error met while reading `what` to a failure with the right code.
pub fn sql(what: &str, e: rusqlite::Error) -> Fail {
    use rusqlite::ffi::ErrorCode;
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseCorrupt) => {
            Fail::new(Code::Corrupt, format!("{what}: corrupt: {e}"))
        }
        Some(ErrorCode::NotADatabase) => Fail::new(
            Code::NotOutbox,
            format!("{what}: not an outbox file (not a SQLite database, or a corrupt one): {e}"),
        ),
        _ => Fail::new(Code::CannotOpen, format!("{what}: {e}")),
    }
}

/// Maps an error writing our output.
pub fn out(e: std::io::Error) -> Fail {
    Fail::new(Code::CannotOpen, format!("cannot write the output: {e}"))
}
