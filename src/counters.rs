//! The counters and gauges of one bridge's outbox, declared once.
//!
//! The list below is the only place a counter is named. From it come:
//! - [`Stats`], the struct `Outbox::stats` returns;
//! - [`FIELDS`], which [`crate::metrics`] walks to write the REST API's JSON object and the
//!   Prometheus families (names, types, help texts, drop reasons);
//! - [`for_each_counter!`], which `ffi::stats` uses to fill the C struct `nmq_outbox_stats`
//!   field by field: a counter missing from the header, or a field of the header missing
//!   here, fails the build (bindgen's struct and the generated literal must match exactly).
//!
//! Each entry: the doc text, `name: type`, then where it shows:
//! - `json`: `top("key")` (a member of the bridge's object) or `dropped("key")` (a member of
//!   its `"dropped"` object);
//! - `prom`: `gauge(...)`/`counter(...)` (a family `nanomq_bridge_outbox_<name>` with its help
//!   text; `div` scales a millisecond value to seconds), `drop("reason")` (a sample of
//!   `nanomq_bridge_outbox_dropped_total{reason=...}`) or `none_prom`.

/// A counter's value, whatever its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value {
    U(u64),
    I(i64),
    B(bool),
}

impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Value::U(v)
    }
}
impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Value::U(v as u64)
    }
}
impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::I(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::B(v)
    }
}

impl Value {
    /// As a Prometheus sample: booleans are 0 or 1, negatives 0.
    pub fn as_u64(self) -> u64 {
        match self {
            Value::U(v) => v,
            Value::I(v) => v.max(0) as u64,
            Value::B(b) => b as u64,
        }
    }
}

/// Where a counter shows in the REST API's JSON object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Json {
    /// A member of the bridge's object.
    Top(&'static str),
    /// A member of its `"dropped"` object.
    Dropped(&'static str),
}

/// Where a counter shows in Prometheus' text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prom {
    None,
    /// Its own family `nanomq_bridge_outbox_<name>`; the value is divided by `div`.
    Family {
        name: &'static str,
        kind: &'static str,
        help: &'static str,
        div: u64,
    },
    /// A sample of `nanomq_bridge_outbox_dropped_total` with this `reason` label.
    Drop(&'static str),
}

/// One counter: its name (the field of [`Stats`] and of the C struct), how to read it, where
/// it shows.
#[derive(Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    pub get: fn(&Stats) -> Value,
    pub json: Json,
    pub prom: Prom,
}

const fn gauge(name: &'static str, help: &'static str) -> Prom {
    Prom::Family {
        name,
        kind: "gauge",
        help,
        div: 1,
    }
}
const fn counter(name: &'static str, help: &'static str) -> Prom {
    Prom::Family {
        name,
        kind: "counter",
        help,
        div: 1,
    }
}
const fn top(key: &'static str) -> Json {
    Json::Top(key)
}
const fn dropped(key: &'static str) -> Json {
    Json::Dropped(key)
}
const fn drop(reason: &'static str) -> Prom {
    Prom::Drop(reason)
}
#[allow(non_upper_case_globals)]
const none_prom: Prom = Prom::None;

macro_rules! counters {
    ($d:tt $( $(#[doc = $doc:literal])* $name:ident : $ty:ty, json $json:expr, prom $prom:expr; )*) => {
        /// Counters and gauges of one bridge (declared once, in `src/counters.rs`).
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub struct Stats {
            $( $(#[doc = $doc])* pub $name: $ty, )*
        }

        /// Every counter, in the order of the JSON object.
        pub const FIELDS: &[Field] = &[
            $( Field {
                name: stringify!($name),
                get: |s: &Stats| Value::from(s.$name),
                json: $json,
                prom: $prom,
            }, )*
        ];

        /// Calls `$cb!(name, name, ...)` with every counter's name.
        macro_rules! for_each_counter {
            ($d cb:ident) => { $d cb! { $($name),* } };
        }
        pub(crate) use for_each_counter;
    };
}

counters! { $
    /// 1 when the bridge's link to the remote is up (CONNACK to the pipe's close).
    link_up: bool, json top("link_up"),
        prom gauge("link_up", "1 when the bridge's link to the remote is up.");
    /// Rows held (queued or in flight).
    messages: u64, json top("messages"),
        prom gauge("messages", "Messages held in the outbox (queued or in flight).");
    /// Their data bytes.
    bytes: u64, json top("bytes"),
        prom gauge("bytes", "Bytes of message data held in the outbox.");
    /// Rows handed out and not yet acknowledged.
    inflight: u64, json top("inflight"),
        prom gauge("inflight", "Messages sent from the outbox and not yet acknowledged.");
    /// Milliseconds since the oldest held row was accepted (0 when empty).
    oldest_age_ms: u64, json top("oldest_age_ms"),
        prom Prom::Family { name: "oldest_age_seconds", kind: "gauge",
            help: "Age of the oldest message held, 0 when empty.", div: 1000 };
    /// Rows accepted since open.
    enqueued: u64, json top("enqueued"),
        prom counter("enqueued_total", "Messages accepted into the outbox since it was opened.");
    /// Rows deleted on ack since open (PUBACK, PUBCOMP; for QoS 0: once confirmed).
    acked: u64, json top("acked"),
        prom counter("acked_total",
            "Messages acknowledged by the remote (QoS 0: written) since the outbox was opened.");
    /// Rows handed out again (after a link loss, an unlease, or a restart).
    resent: u64, json top("resent"),
        prom counter("resent_total", "Messages sent again after a link loss or a restart.");
    /// Dropped by the limit policy (drop_oldest, or refused).
    dropped_full: u64, json dropped("full"), prom drop("full");
    /// Expired before they could be sent.
    dropped_expired: u64, json dropped("expired"), prom drop("expired");
    /// Acknowledged with a reason code >= 0x80.
    dropped_rejected: u64, json dropped("rejected"), prom drop("rejected");
    /// Rows that cannot be stored or sent as they are: dropped by the host (`drop_row`, e.g. a
    /// row that does not split into a PUBLISH) or refused by SQLite at commit (key collision).
    dropped_malformed: u64, json dropped("malformed"), prom drop("malformed");
    /// Accepted rows that never reached the disk: the final commit at close failed (disk
    /// full, file lost). Also logged.
    dropped_unwritten: u64, json dropped("unwritten"), prom drop("unwritten");
    /// Messages this outbox refused that the host then lost on its own path (`count_lost`):
    /// its fallback queue was full (NanoMQ's `ctx_msgs` drops its oldest)...
    lost_fallback_queue: u64, json dropped("fallback_queue"), prom drop("fallback_queue");
    /// ...or its fallback send failed (no link and nowhere to keep it, timeout, socket closed).
    lost_fallback_send: u64, json dropped("fallback_send"), prom drop("fallback_send");
    /// The oldest dead letters deleted beyond `dead_letter_limit` (each logged with its reason).
    dropped_dead_letters: u64, json dropped("dead_letters"), prom drop("dead_letters");
    /// Appends refused with `NoSpace` (the caller kept the message).
    refused_nospace: u64, json top("refused_nospace"), prom drop("refused_nospace");
    /// The disk was found full and the reserve is spent: appends are refused with `NoSpace`
    /// (the space left is for the drain's acks) until the reserve can be put back.
    space_low: bool, json top("space_low"), prom none_prom;
    /// Effective window (config window capped by Receive Maximum).
    window: u32, json top("window"), prom none_prom;
    /// Every row appended with a seq <= this is committed to disk.
    committed_seq: i64, json top("committed_seq"), prom none_prom;
    /// Rows handed out at a lower QoS than stored (the remote's Maximum QoS).
    qos_downgraded: u64, json top("qos_downgraded"),
        prom counter("qos_downgraded_total",
            "Messages sent at a lower QoS than stored: the remote's Maximum QoS.");
    /// Rows sent with RETAIN cleared: the remote has no retained messages (Retain Available 0).
    retain_cleared: u64, json top("retain_cleared"),
        prom counter("retain_cleared_total",
            "Messages sent with RETAIN cleared: the remote has no retained messages.");
    /// Dead letters kept in the file now (rows the remote refused for good: not replayed).
    dead_letters: u64, json top("dead_letters"),
        prom gauge("dead_letters",
            "Dead letters kept in the outbox file: messages the remote refused for good.");
    /// Rows made dead letters since open.
    dead_lettered: u64, json top("dead_lettered"),
        prom counter("dead_lettered_total", "Messages made dead letters since the outbox was opened.");
    /// Transient refusals (PUBACK/PUBREC 0x97, a DISCONNECT for quota or load) that made the
    /// replay back off.
    backoffs: u64, json top("backoffs"),
        prom counter("backoffs_total",
            "Transient refusals by the remote (quota, load) that made the replay back off.");
    /// The replay waits for a back-off to pass (`lease` gives nothing until then).
    backing_off: bool, json top("backing_off"),
        prom gauge("backing_off", "1 while the replay waits for a back-off to pass.");
    /// The replay sends one row at a time, to find a row the remote refuses by closing the
    /// connection (until a row is acknowledged).
    probing: bool, json top("probing"),
        prom gauge("probing",
            "1 while the replay sends one message at a time to find one the remote refuses.");
    /// Acks given to the outbox that matched no row of it in flight (NOT_OURS: an unknown
    /// packet id, a second ack, an ack of the wrong type; with hosts that pass the acks of
    /// their direct sends too, those as well).
    acks_ignored: u64, json top("acks_ignored"),
        prom counter("acks_ignored_total", "Acks from the remote that matched no message in flight.");
    /// QoS 0 messages the host dropped because they could not go now (no link, no free lane)
    /// and QoS 0 is not stored (`store_qos0` off: NanoMQ's `retry_qos_0 = false`)
    /// (`count_event`).
    dropped_qos0: u64, json top("dropped_qos0"), prom drop("qos0");
    /// Messages this outbox refused (disk full, too big, closed) that the host then sent on
    /// its own path instead (`count_event`); those it lost there are in `lost_fallback_*`.
    fallbacks: u64, json top("fallbacks"),
        prom counter("fallbacks_total",
            "Messages the outbox refused (disk full, too big, closed) that took NanoMQ's own path.");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_json_keys_and_families_are_each_used_once() {
        let mut names = std::collections::HashSet::new();
        let mut keys = std::collections::HashSet::new();
        let mut fams = std::collections::HashSet::new();
        let mut reasons = std::collections::HashSet::new();
        for f in FIELDS {
            assert!(names.insert(f.name), "{} twice", f.name);
            match f.json {
                Json::Top(k) => assert!(keys.insert(("top", k)), "json {k} twice"),
                Json::Dropped(k) => assert!(keys.insert(("dropped", k)), "json dropped.{k} twice"),
            }
            match f.prom {
                Prom::Family {
                    name, kind, div, ..
                } => {
                    assert!(fams.insert(name), "family {name} twice");
                    assert!(kind == "gauge" || kind == "counter");
                    assert!(div >= 1);
                    assert_eq!(kind == "counter", name.ends_with("_total"), "{name}");
                }
                Prom::Drop(r) => assert!(reasons.insert(r), "drop reason {r} twice"),
                Prom::None => {}
            }
        }
        // "dropped" is an object of its own: no counter may take its key at the top.
        assert!(!keys.contains(&("top", "dropped")));
    }

    #[test]
    fn every_field_reads_its_own_counter() {
        // Each field's `get` reads the field of its name: set one at a time and look.
        for (i, f) in FIELDS.iter().enumerate() {
            let mut s = Stats::default();
            macro_rules! set_nth {
                ($($n:ident),*) => {{
                    let mut k = 0usize;
                    $(
                        if k == i {
                            s.$n = Default::default();
                            set_one(&mut s.$n);
                        }
                        k += 1;
                    )*
                    let _ = k;
                }};
            }
            for_each_counter!(set_nth);
            assert_ne!((f.get)(&s), (f.get)(&Stats::default()), "{}", f.name);
            for (j, g) in FIELDS.iter().enumerate() {
                if j != i {
                    assert_eq!(
                        (g.get)(&s),
                        (g.get)(&Stats::default()),
                        "{} moved {}",
                        f.name,
                        g.name
                    );
                }
            }
        }
    }

    trait One {
        fn one(&mut self);
    }
    impl One for u64 {
        fn one(&mut self) {
            *self = 7;
        }
    }
    impl One for u32 {
        fn one(&mut self) {
            *self = 7;
        }
    }
    impl One for i64 {
        fn one(&mut self) {
            *self = 7;
        }
    }
    impl One for bool {
        fn one(&mut self) {
            *self = true;
        }
    }
    fn set_one<T: One>(v: &mut T) {
        v.one();
    }
}
