//! Logging: the host routes our log lines into its own logger through one callback.

use std::sync::Arc;

/// Severity of a log line. The numbers are the C values of `nmq_outbox_log_level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
}

/// A log sink. Called from any thread, possibly inside any outbox call and from the writer
/// thread, never with an outbox lock held. It must not call back into the outbox.
pub type LogFn = Arc<dyn Fn(Level, &str) + Send + Sync>;

/// The logger of one handle: a sink and the most verbose level it wants.
#[derive(Clone)]
pub struct Logger {
    sink: Option<LogFn>,
    max: Level,
}

impl Logger {
    pub fn new(sink: Option<LogFn>, max: Level) -> Self {
        Logger { sink, max }
    }

    pub fn log(&self, level: Level, msg: &str) {
        if level > self.max {
            return;
        }
        match &self.sink {
            Some(f) => f(level, msg),
            None => eprintln!("nmq_outbox {level:?}: {msg}"),
        }
    }

    pub fn error(&self, msg: &str) {
        self.log(Level::Error, msg)
    }
    pub fn warn(&self, msg: &str) {
        self.log(Level::Warn, msg)
    }
    pub fn info(&self, msg: &str) {
        self.log(Level::Info, msg)
    }
    pub fn debug(&self, msg: &str) {
        self.log(Level::Debug, msg)
    }
}

impl Default for Logger {
    fn default() -> Self {
        Logger::new(None, Level::Warn)
    }
}
