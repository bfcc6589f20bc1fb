//! Configuration of one outbox handle (one bridge in one database file).

use crate::error::{Error, Result};
use crate::log::Logger;
use std::path::PathBuf;

/// `PRAGMA synchronous`: NORMAL survives a process crash (WAL), FULL also a power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    #[default]
    Normal,
    Full,
}

impl SyncMode {
    /// The statement that sets it on a connection.
    pub fn pragma(self) -> &'static str {
        match self {
            SyncMode::Normal => "PRAGMA synchronous=NORMAL;",
            SyncMode::Full => "PRAGMA synchronous=FULL;",
        }
    }
}

/// What happens when a bridge reaches `max_messages` or `max_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FullPolicy {
    /// Delete the oldest queued rows of this bridge (NanoMQ's behaviour), counted as dropped.
    #[default]
    DropOldest,
    /// Refuse the new message with [`Error::Full`]; the caller keeps it.
    RejectNew,
}

pub const DEFAULT_GROUP_COMMIT_COUNT: u32 = 100;
pub const DEFAULT_GROUP_COMMIT_MS: u32 = 20;
pub const DEFAULT_WINDOW: u32 = 32;
/// MQTT's largest packet (variable byte integer limit).
pub const DEFAULT_MAX_MESSAGE_BYTES: u32 = 268_435_455;
pub const DEFAULT_BUSY_TIMEOUT_MS: u32 = 5000;
/// Dead letters kept per bridge; beyond it the oldest is deleted (counted, logged).
pub const DEFAULT_DEAD_LETTER_LIMIT: u32 = 1000;
/// Connections the remote may close on a row alone in flight before it is a dead letter.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// First back-off after a transient refusal (quota exceeded, server busy); it doubles per
/// refusal in a row, up to 60 times this (one minute by default).
pub const DEFAULT_BACKOFF_MS: u32 = 1000;

#[derive(Clone)]
pub struct Config {
    /// The database file. Ours alone: never NanoMQ's `mqtt_client.db`.
    pub path: PathBuf,
    /// The bridge name, the partition key of every row.
    pub bridge: String,
    /// Limit in messages for this bridge; 0 = unlimited (`cache.disk_cache_size`).
    pub max_messages: u64,
    /// Limit in bytes of stored message data for this bridge; 0 = unlimited.
    pub max_bytes: u64,
    /// Largest message accepted, in bytes.
    pub max_message_bytes: u32,
    pub full_policy: FullPolicy,
    pub sync: SyncMode,
    /// Commit once this many appends (and QoS 2 PUBRECs) are pending
    /// (`cache.flush_mem_threshold`); 1 = every append. Acks and packet ids of the replay do
    /// not count: they ride with that commit, the timer (`ack_linger_ms`), or 4096 of them.
    pub group_commit_count: u32,
    /// Commit pending writes at the latest this many milliseconds after the first one.
    pub group_commit_ms: u32,
    /// A batch of acks and packet ids alone (no append in it) waits at most
    /// `max(group_commit_ms, ack_linger_ms)` (default 20 ms, `DEFAULT_GROUP_COMMIT_MS`): with
    /// `group_commit_ms = 0` (a host that acks its publishers after the commit) appends commit
    /// at once, and the replay's acks ride with them instead of a commit each.
    pub ack_linger_ms: u32,
    /// The host commits its appends itself with [`Outbox::commit`](crate::Outbox::commit),
    /// on its own thread and outside its own locks, instead of waking the writer thread for
    /// them: for a host that acks its publishers after the commit, no hand-over to the writer
    /// and back. An append then wakes the writer only when a batch is due by count or bytes;
    /// a `commit` during the writer's checkpoint wakes it for the rest. Acks and packet ids
    /// are still the writer's (`ack_linger_ms`); so is the WAL checkpoint. Off by default.
    pub caller_commits: bool,
    /// In-flight window for replayed rows (capped by the remote's Receive Maximum).
    pub window: u32,
    /// Dead letters kept for this bridge (`DEFAULT_DEAD_LETTER_LIMIT`); the oldest go beyond.
    pub dead_letter_limit: u32,
    /// A row alone in flight when the remote closed the connection on it this many times
    /// becomes a dead letter (`DEFAULT_MAX_ATTEMPTS`).
    pub max_attempts: u32,
    /// First back-off after a transient refusal, doubling up to 60 times it
    /// (`DEFAULT_BACKOFF_MS`).
    pub backoff_ms: u32,
    /// Every QoS 0 message is stored and sent by the replay, deleted once the remote is known
    /// to have read past it (never `SendNow`): none is lost in a cut. NanoMQ's `retry_qos_0`.
    pub store_qos0: bool,
    pub logger: Logger,
}

impl Config {
    pub fn new(path: impl Into<PathBuf>, bridge: impl Into<String>) -> Self {
        Config {
            path: path.into(),
            bridge: bridge.into(),
            max_messages: 0,
            max_bytes: 0,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            full_policy: FullPolicy::DropOldest,
            sync: SyncMode::Normal,
            group_commit_count: DEFAULT_GROUP_COMMIT_COUNT,
            group_commit_ms: DEFAULT_GROUP_COMMIT_MS,
            ack_linger_ms: DEFAULT_GROUP_COMMIT_MS,
            caller_commits: false,
            window: DEFAULT_WINDOW,
            dead_letter_limit: DEFAULT_DEAD_LETTER_LIMIT,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            backoff_ms: DEFAULT_BACKOFF_MS,
            store_qos0: false,
            logger: Logger::default(),
        }
    }

    /// Checks the config; zero means "default" for the tuning knobs.
    pub fn validate(mut self) -> Result<Self> {
        if self.bridge.is_empty() {
            return Err(Error::Invalid("bridge name is empty".into()));
        }
        if self.path.as_os_str().is_empty() {
            return Err(Error::Invalid("database path is empty".into()));
        }
        if self.group_commit_count == 0 {
            self.group_commit_count = DEFAULT_GROUP_COMMIT_COUNT;
        }
        if self.window == 0 {
            self.window = DEFAULT_WINDOW;
        }
        if self.window > 65535 {
            return Err(Error::Invalid("window above 65535 packet ids".into()));
        }
        if self.dead_letter_limit == 0 {
            self.dead_letter_limit = DEFAULT_DEAD_LETTER_LIMIT;
        }
        if self.max_attempts == 0 {
            self.max_attempts = DEFAULT_MAX_ATTEMPTS;
        }
        if self.backoff_ms == 0 {
            self.backoff_ms = DEFAULT_BACKOFF_MS;
        }
        if self.max_message_bytes == 0 {
            self.max_message_bytes = DEFAULT_MAX_MESSAGE_BYTES;
        }
        Ok(self)
    }
}
