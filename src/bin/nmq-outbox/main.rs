//! `nmq-outbox`: the operator's command for outbox files (see `nmq-outbox --help`).
//!
//! Reads open the file read-only in one read transaction, beside a running NanoMQ; writes
//! (`purge`, `import`) take the library's flock, so they refuse a file a running NanoMQ holds.

mod check;
mod db;
mod dead;
mod decode;
mod fail;
mod human;
mod purge;
mod show;
mod transfer;

use clap::{Args, Parser, Subcommand};
use decode::Proto;
use fail::{Code, Fail, EXIT_CODES};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

const IN_FLIGHT: &str = "\
IN FLIGHT counts rows sent and not yet acknowledged (a packet id is bound: packet_id != 0). In a \
file nobody holds, these are the rows that were in flight at the last close or crash: they are \
sent again first, with DUP set and the same packet id. RELEASED counts QoS 2 rows whose PUBREC \
came: they resume with PUBREL.";

#[derive(Parser)]
#[command(
    name = "nmq-outbox",
    version,
    about = "Inspect, copy and trim nmq-outbox files (the durable outbox of NanoMQ's MQTT bridge)",
    long_about = "Inspect, copy and trim nmq-outbox files (the durable outbox of NanoMQ's MQTT \
                  bridge).\n\nReading (stats, list, export, check, dead list, dead export) works \
                  on a file a running NanoMQ holds: it opens the file read-only in one read \
                  transaction and never blocks the writer or changes the database. Writing \
                  (purge, import, dead requeue, dead purge) takes the same lock the library \
                  takes, so it refuses a file a running NanoMQ holds.",
    after_help = EXIT_CODES,
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Per bridge: messages, bytes, in flight, oldest age; file and WAL size, schema version
    #[command(after_help = format!("{IN_FLIGHT}\n\nDrop counters are kept in memory by the \
        running bridge (the file stores none): shown as \"-\".\n\n{EXIT_CODES}"))]
    Stats {
        /// The outbox file (e.g. /var/lib/nanomq/nmq_outbox-emqx1.db), or the directory of
        /// per-bridge files (with --bridge)
        file: PathBuf,
        /// Only this bridge
        #[arg(long, short)]
        bridge: Option<String>,
        /// One JSON object on stdout
        #[arg(long)]
        json: bool,
    },
    /// The waiting messages in FIFO order, decoded from the stored PUBLISH
    #[command(after_help = format!("STATE is queued (never sent), inflight (sent, unacked: \
        resent with DUP and the same packet id) or released (QoS 2, PUBREC came: resumes \
        with PUBREL). SIZE is the payload size; AGE since the message was stored.\n\n\
        {EXIT_CODES}"))]
    List {
        /// The outbox file, or the directory of per-bridge files (with --bridge)
        file: PathBuf,
        /// Only this bridge (with a directory as FILE: its nmq_outbox-<bridge>.db)
        #[arg(long, short)]
        bridge: Option<String>,
        /// At most N rows per bridge (0 = all)
        #[arg(long, short = 'n', default_value_t = 100)]
        limit: u64,
        /// One JSON array on stdout
        #[arg(long)]
        json: bool,
        /// How to read the stored PUBLISH (the file does not record the MQTT version)
        #[arg(long, value_enum, default_value_t = Proto::Auto)]
        mqtt: Proto,
    },
    /// Every row in FIFO order, to stdout or a file (jsonl: lossless; mqtt: raw packets)
    #[command(after_help = format!("jsonl: one object per row: bridge, seq, qos, topic, \
        packet_id, dup, released, enqueued_at and expires_at (Unix ms, 0 = never), \
        payload_b64 and packet_b64 (the stored PUBLISH, what import reads).\nmqtt: the stored \
        PUBLISH packets back to back (MQTT framing delimits them); nothing else is kept.\n\n\
        {EXIT_CODES}"))]
    Export {
        /// The outbox file, or the directory of per-bridge files (with --bridge)
        file: PathBuf,
        /// Only this bridge (with a directory as FILE: its nmq_outbox-<bridge>.db)
        #[arg(long, short)]
        bridge: Option<String>,
        #[arg(long, short, value_enum, default_value_t = transfer::Format::Jsonl)]
        format: transfer::Format,
        /// Write here instead of stdout
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// How to read the stored PUBLISH (the file does not record the MQTT version)
        #[arg(long, value_enum, default_value_t = Proto::Auto)]
        mqtt: Proto,
    },
    /// Append an export to an outbox file (created if missing), after its rows, in order
    #[command(after_help = format!("Rows get new seqs after the bridge's last row, in the \
        order of the input. Packet ids and the QoS 2 released state belong to the MQTT session \
        of the gateway that exported them: they are cleared (the rows are sent as new \
        messages) unless --keep-state (the same remote session continues, e.g. the same \
        client id to the same broker). The import is one transaction: all or nothing.\n\n\
        {EXIT_CODES}"))]
    Import {
        /// The outbox file to write (must not be held by a running NanoMQ)
        file: PathBuf,
        /// Read from this file instead of stdin ("-" = stdin)
        #[arg(long, short)]
        input: Option<PathBuf>,
        /// Input format (default: from the first byte, '{' = jsonl)
        #[arg(long, short, value_enum)]
        format: Option<transfer::Format>,
        /// Put every row into this bridge (required for --format mqtt)
        #[arg(long, short)]
        bridge: Option<String>,
        /// Keep packet ids and the released state from a jsonl export
        #[arg(long)]
        keep_state: bool,
        /// How to read the stored PUBLISH (the file does not record the MQTT version)
        #[arg(long, value_enum, default_value_t = Proto::Auto)]
        mqtt: Proto,
    },
    /// Remove a bridge's rows: older than a duration, on a topic (filter), or all
    #[command(after_help = format!("Refuses while the file is held by a running process \
        (NanoMQ) unless --force; with --force the running bridge keeps stale counters and may \
        still send rows it had read ahead, until it restarts. While purge runs (a moment) it holds \
        the file's lock: a NanoMQ starting then finds the file held.\n\n{EXIT_CODES}"))]
    Purge {
        /// The outbox file, or the directory of per-bridge files (with --bridge)
        file: PathBuf,
        /// The bridge whose rows go (with a directory as FILE: its nmq_outbox-<bridge>.db)
        #[arg(long, short)]
        bridge: String,
        /// Rows stored longer ago than this (90s, 15m, 2h, 1d, 1h30m)
        #[arg(long, value_parser = parse_age, required_unless_present_any = ["topic", "all"])]
        older_than: Option<i64>,
        /// Rows whose topic matches this MQTT filter (+ and # allowed); with --older-than both
        /// must match
        #[arg(long)]
        topic: Option<String>,
        /// Every row of the bridge
        #[arg(long, conflicts_with_all = ["older_than", "topic"])]
        all: bool,
        /// Write even though a running process holds the file
        #[arg(long)]
        force: bool,
        /// Report what would be removed; change nothing
        #[arg(long, short = 'n')]
        dry_run: bool,
        /// How to read the stored PUBLISH (the file does not record the MQTT version)
        #[arg(long, value_enum, default_value_t = Proto::Auto)]
        mqtt: Proto,
    },
    /// Dead letters: messages the remote refused for good, kept in the file (list, export,
    /// requeue, purge)
    #[command(subcommand, after_help = format!("{DEAD}\n\n{EXIT_CODES}"))]
    Dead(DeadCmd),
    /// SQLite integrity check plus the outbox's invariants; exit 1 on a problem
    #[command(after_help = format!("Invariants: every row belongs to a bridge; seq strictly \
        increasing in FIFO order; qos 0..2; packet_id 0..65535; released only on a sent QoS 2 \
        row; times sane (expires_at 0 or after enqueued_at); data a complete MQTT PUBLISH of \
        the row's QoS; row counts agree. A quarantined file (<name>.corrupt-<secs>: the \
        library renamed it aside as corrupt) is a problem.\n\n{EXIT_CODES}"))]
    Check {
        /// The outbox file
        file: PathBuf,
        /// PRAGMA quick_check instead of integrity_check (faster on big files)
        #[arg(long)]
        quick: bool,
        #[arg(long)]
        json: bool,
        /// How to read the stored PUBLISH (the file does not record the MQTT version)
        #[arg(long, value_enum, default_value_t = Proto::Auto)]
        mqtt: Proto,
    },
}

const DEAD: &str = "\
A dead letter is a message the remote refused for good: a PUBACK/PUBREC reason code >= 0x80 \
(REASON rejected, CODE the reason code), a PUBLISH above the remote's Maximum Packet Size \
(packet_too_large), or a message the remote closed the connection on max_attempts times \
(refused_by_close, CODE the DISCONNECT reason if any). The bridge never sends it again by \
itself; it keeps at most dead_letter_limit per bridge (the oldest go, counted and logged).";

#[derive(Subcommand)]
enum DeadCmd {
    /// The dead letters in FIFO order: seq, QoS, size, since when, why, topic
    #[command(after_help = format!("{DEAD}\n\n{EXIT_CODES}"))]
    List {
        /// The outbox file, or the directory of per-bridge files (with --bridge)
        file: PathBuf,
        /// Only this bridge (with a directory as FILE: its nmq_outbox-<bridge>.db)
        #[arg(long, short)]
        bridge: Option<String>,
        /// At most N per bridge (0 = all)
        #[arg(long, short = 'n', default_value_t = 100)]
        limit: u64,
        /// One JSON array on stdout
        #[arg(long)]
        json: bool,
        /// How to read the stored PUBLISH (the file does not record the MQTT version)
        #[arg(long, value_enum, default_value_t = Proto::Auto)]
        mqtt: Proto,
    },
    /// Every dead letter, lossless: one JSON object per line (or one array with --json)
    #[command(after_help = format!("Each object: bridge, seq, qos, topic, reason, \
        reason_code, attempts, enqueued_at, expires_at and dead_at (Unix ms), payload_b64 and \
        packet_b64 (the stored PUBLISH). The lines are what `nmq-outbox import` reads: an \
        export can go into a queue (at its tail), here or on another gateway.\n\n{DEAD}\n\n\
        {EXIT_CODES}"))]
    Export {
        /// The outbox file, or the directory of per-bridge files (with --bridge)
        file: PathBuf,
        /// Only this bridge (with a directory as FILE: its nmq_outbox-<bridge>.db)
        #[arg(long, short)]
        bridge: Option<String>,
        /// Write here instead of stdout
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// One JSON array instead of one object per line
        #[arg(long)]
        json: bool,
        /// How to read the stored PUBLISH (the file does not record the MQTT version)
        #[arg(long, value_enum, default_value_t = Proto::Auto)]
        mqtt: Proto,
    },
    /// Put dead letters back in the queue (all, or by seq), to be sent again
    #[command(after_help = format!("Each goes back at its place in the FIFO (its seq: it was \
        the head when it died, so it is sent first), as never sent (no packet id, 0 attempts); \
        at the tail if a row took its seq meanwhile. Refuses while the file is held by a \
        running process (NanoMQ) unless --force (the running bridge would not see them until \
        it restarts). One transaction: all or nothing.\n\n{DEAD}\n\n{EXIT_CODES}"))]
    Requeue(DeadChange),
    /// Delete dead letters (all, or by seq) for good
    #[command(after_help = format!("Refuses while the file is held by a running process \
        (NanoMQ) unless --force. One transaction: all or nothing. `dead export` first keeps a \
        copy.\n\n{DEAD}\n\n{EXIT_CODES}"))]
    Purge(DeadChange),
}

/// What `dead requeue` and `dead purge` take.
#[derive(Args)]
struct DeadChange {
    /// The outbox file, or the directory of per-bridge files (with --bridge)
    file: PathBuf,
    /// The bridge (with a directory as FILE: its nmq_outbox-<bridge>.db)
    #[arg(long, short)]
    bridge: String,
    /// These dead letters (repeat, or comma-separated)
    #[arg(long, value_delimiter = ',', required_unless_present = "all")]
    seq: Vec<i64>,
    /// Every dead letter of the bridge
    #[arg(long, conflicts_with = "seq")]
    all: bool,
    /// Write even though a running process holds the file
    #[arg(long)]
    force: bool,
    /// Report what would be done; change nothing
    #[arg(long, short = 'n')]
    dry_run: bool,
}

impl DeadChange {
    fn split(self) -> (PathBuf, dead::Change) {
        let c = dead::Change {
            bridge: self.bridge,
            seqs: (!self.all).then_some(self.seq),
            force: self.force,
            dry_run: self.dry_run,
        };
        (self.file, c)
    }
}

fn run_dead(cmd: DeadCmd, out: &mut impl Write) -> Result<(), Fail> {
    match cmd {
        DeadCmd::List {
            file,
            bridge,
            limit,
            json,
            mqtt,
        } => dead::list(&file, bridge.as_deref(), limit, json, mqtt, out),
        DeadCmd::Export {
            file,
            bridge,
            output,
            json,
            mqtt,
        } => dead::export(&file, bridge.as_deref(), output.as_deref(), json, mqtt, out),
        DeadCmd::Requeue(c) => {
            let (file, c) = c.split();
            dead::change(&file, dead::Op::Requeue, &c, out)
        }
        DeadCmd::Purge(c) => {
            let (file, c) = c.split();
            dead::change(&file, dead::Op::Purge, &c, out)
        }
    }
}

fn parse_age(s: &str) -> Result<i64, String> {
    human::parse_duration(s)
}

fn run(cli: Cli) -> Result<Code0, Fail> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let r = match cli.cmd {
        Cmd::Stats { file, bridge, json } => {
            show::stats(&file, bridge.as_deref(), json, &mut out).map(|_| Code0::Ok)
        }
        Cmd::List {
            file,
            bridge,
            limit,
            json,
            mqtt,
        } => show::list(&file, bridge.as_deref(), limit, json, mqtt, &mut out).map(|_| Code0::Ok),
        Cmd::Export {
            file,
            bridge,
            format,
            output,
            mqtt,
        } => transfer::export(
            &file,
            bridge.as_deref(),
            format,
            output.as_deref(),
            mqtt,
            &mut out,
        )
        .map(|_| Code0::Ok),
        Cmd::Import {
            file,
            input,
            format,
            bridge,
            keep_state,
            mqtt,
        } => transfer::import(
            &file,
            input.as_deref(),
            format,
            bridge.as_deref(),
            keep_state,
            mqtt,
            &mut out,
        )
        .map(|_| Code0::Ok),
        Cmd::Purge {
            file,
            bridge,
            older_than,
            topic,
            all,
            force,
            dry_run,
            mqtt,
        } => purge::run(
            &file,
            &purge::Args {
                bridge,
                older_than_ms: older_than,
                topic,
                all,
                force,
                dry_run,
                mqtt,
            },
            &mut out,
        )
        .map(|_| Code0::Ok),
        Cmd::Dead(cmd) => run_dead(cmd, &mut out).map(|_| Code0::Ok),
        Cmd::Check {
            file,
            quick,
            json,
            mqtt,
        } => check::run(&file, quick, json, mqtt, &mut out).map(|ok| {
            if ok {
                Code0::Ok
            } else {
                Code0::Problems
            }
        }),
    };
    let flushed = out.flush().map_err(fail::out);
    let code = r?;
    flushed?;
    Ok(code)
}

enum Code0 {
    Ok,
    Problems,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(Code0::Ok) => ExitCode::SUCCESS,
        Ok(Code0::Problems) => ExitCode::from(Code::Problems as u8),
        // A reader that went away (`| head`) is not an error.
        Err(f) if f.msg.contains("Broken pipe") => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("nmq-outbox: {}", f.msg);
            ExitCode::from(f.code as u8)
        }
    }
}
