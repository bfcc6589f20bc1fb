//! The counters of a bridge as an operator reads them: a JSON object (for NanoMQ's REST API,
//! `GET /api/v4/bridges/<name>`) and Prometheus' text format (for `GET /api/v4/prometheus`).
//! Pure formatting, no I/O.

use crate::outbox::Stats;
use std::fmt::Write;

/// JSON string literal of `s` (quotes and escapes as RFC 8259 requires).
fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One bridge's outbox as a JSON object, e.g.
/// `{"bridge":"emqx1","file":"/var/lib/nanomq/nmq_outbox-emqx1.db","link_up":true,...}`.
pub fn json(bridge: &str, file: &str, s: &Stats) -> String {
    format!(
        concat!(
            "{{\"bridge\":{},\"file\":{},\"link_up\":{},\"messages\":{},\"bytes\":{},",
            "\"inflight\":{},\"oldest_age_ms\":{},\"enqueued\":{},\"acked\":{},\"resent\":{},",
            "\"dropped\":{{\"full\":{},\"expired\":{},\"rejected\":{},\"malformed\":{},",
            "\"unwritten\":{},\"fallback_queue\":{},\"fallback_send\":{},",
            "\"dead_letters\":{}}},",
            "\"refused_nospace\":{},\"space_low\":{},\"window\":{},",
            "\"committed_seq\":{},\"qos_downgraded\":{},\"retain_cleared\":{},",
            "\"dead_letters\":{},\"dead_lettered\":{},\"backoffs\":{},",
            "\"backing_off\":{},\"probing\":{},\"acks_ignored\":{}}}"
        ),
        json_str(bridge),
        json_str(file),
        s.link_up,
        s.messages,
        s.bytes,
        s.inflight,
        s.oldest_age_ms,
        s.enqueued,
        s.acked,
        s.resent,
        s.dropped_full,
        s.dropped_expired,
        s.dropped_rejected,
        s.dropped_malformed,
        s.dropped_unwritten,
        s.lost_fallback_queue,
        s.lost_fallback_send,
        s.dropped_dead_letters,
        s.refused_nospace,
        s.space_low,
        s.window,
        s.committed_seq,
        s.qos_downgraded,
        s.retain_cleared,
        s.dead_letters,
        s.dead_lettered,
        s.backoffs,
        s.backing_off,
        s.probing,
        s.acks_ignored
    )
}

/// Label value in Prometheus' text format (backslash, quote and newline escaped).
fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Every bridge's outbox in Prometheus' text exposition format: one family per counter or
/// gauge (`nanomq_bridge_outbox_*`), each with its HELP and TYPE lines once and one sample per
/// bridge, labelled `bridge="<name>"` (drops also by `reason`).
pub fn prometheus(bridges: &[(&str, &Stats)]) -> String {
    type Get = fn(&Stats) -> u64;
    let families: [(&str, &str, &str, Get); 16] = [
        (
            "messages",
            "gauge",
            "Messages held in the outbox (queued or in flight).",
            |s| s.messages,
        ),
        (
            "bytes",
            "gauge",
            "Bytes of message data held in the outbox.",
            |s| s.bytes,
        ),
        (
            "inflight",
            "gauge",
            "Messages sent from the outbox and not yet acknowledged.",
            |s| s.inflight,
        ),
        (
            "oldest_age_seconds",
            "gauge",
            "Age of the oldest message held, 0 when empty.",
            |s| s.oldest_age_ms / 1000,
        ),
        (
            "link_up",
            "gauge",
            "1 when the bridge's link to the remote is up.",
            |s| s.link_up as u64,
        ),
        (
            "enqueued_total",
            "counter",
            "Messages accepted into the outbox since it was opened.",
            |s| s.enqueued,
        ),
        (
            "acked_total",
            "counter",
            "Messages acknowledged by the remote (QoS 0: written) since the outbox was opened.",
            |s| s.acked,
        ),
        (
            "resent_total",
            "counter",
            "Messages sent again after a link loss or a restart.",
            |s| s.resent,
        ),
        (
            "qos_downgraded_total",
            "counter",
            "Messages sent at a lower QoS than stored: the remote's Maximum QoS.",
            |s| s.qos_downgraded,
        ),
        (
            "retain_cleared_total",
            "counter",
            "Messages sent with RETAIN cleared: the remote has no retained messages.",
            |s| s.retain_cleared,
        ),
        (
            "dead_letters",
            "gauge",
            "Dead letters kept in the outbox file: messages the remote refused for good.",
            |s| s.dead_letters,
        ),
        (
            "dead_lettered_total",
            "counter",
            "Messages made dead letters since the outbox was opened.",
            |s| s.dead_lettered,
        ),
        (
            "backoffs_total",
            "counter",
            "Transient refusals by the remote (quota, load) that made the replay back off.",
            |s| s.backoffs,
        ),
        (
            "backing_off",
            "gauge",
            "1 while the replay waits for a back-off to pass.",
            |s| s.backing_off as u64,
        ),
        (
            "probing",
            "gauge",
            "1 while the replay sends one message at a time to find one the remote refuses.",
            |s| s.probing as u64,
        ),
        (
            "acks_ignored_total",
            "counter",
            "Acks from the remote that matched no message in flight.",
            |s| s.acks_ignored,
        ),
    ];
    let mut out = String::new();
    for (name, kind, help, get) in families {
        let _ = writeln!(out, "# HELP nanomq_bridge_outbox_{name} {help}");
        let _ = writeln!(out, "# TYPE nanomq_bridge_outbox_{name} {kind}");
        for (bridge, s) in bridges {
            let _ = writeln!(
                out,
                "nanomq_bridge_outbox_{name}{{bridge=\"{}\"}} {}",
                label(bridge),
                get(s)
            );
        }
    }
    let drops: [(&str, Get); 9] = [
        ("full", |s| s.dropped_full),
        ("expired", |s| s.dropped_expired),
        ("rejected", |s| s.dropped_rejected),
        ("malformed", |s| s.dropped_malformed),
        ("unwritten", |s| s.dropped_unwritten),
        ("refused_nospace", |s| s.refused_nospace),
        ("fallback_queue", |s| s.lost_fallback_queue),
        ("fallback_send", |s| s.lost_fallback_send),
        ("dead_letters", |s| s.dropped_dead_letters),
    ];
    out.push_str(
        "# HELP nanomq_bridge_outbox_dropped_total Messages dropped or refused, by reason.\n",
    );
    out.push_str("# TYPE nanomq_bridge_outbox_dropped_total counter\n");
    for (bridge, s) in bridges {
        for (reason, get) in drops {
            let _ = writeln!(
                out,
                "nanomq_bridge_outbox_dropped_total{{bridge=\"{}\",reason=\"{reason}\"}} {}",
                label(bridge),
                get(s)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Stats {
        Stats {
            messages: 812,
            bytes: 81_200,
            inflight: 32,
            enqueued: 1170,
            acked: 358,
            resent: 3,
            dropped_full: 1,
            dropped_expired: 2,
            dropped_rejected: 3,
            dropped_malformed: 4,
            dropped_unwritten: 5,
            refused_nospace: 6,
            lost_fallback_queue: 7,
            lost_fallback_send: 8,
            oldest_age_ms: 95_500,
            committed_seq: 1170,
            link_up: true,
            window: 32,
            space_low: false,
            qos_downgraded: 9,
            retain_cleared: 10,
            dead_letters: 11,
            dead_lettered: 12,
            dropped_dead_letters: 13,
            backoffs: 14,
            backing_off: true,
            probing: true,
            acks_ignored: 15,
        }
    }

    #[test]
    fn json_has_every_counter_and_escapes_names() {
        let j = json("em\"qx\\1\n", "/var/lib/nanomq/x.db", &sample());
        assert!(j.starts_with("{\"bridge\":\"em\\\"qx\\\\1\\n\",\"file\":\"/var/lib/nanomq/x.db\""));
        for part in [
            "\"link_up\":true",
            "\"messages\":812",
            "\"inflight\":32",
            "\"oldest_age_ms\":95500",
            concat!(
                "\"dropped\":{\"full\":1,\"expired\":2,\"rejected\":3,\"malformed\":4,",
                "\"unwritten\":5,\"fallback_queue\":7,\"fallback_send\":8,",
                "\"dead_letters\":13}"
            ),
            "\"refused_nospace\":6",
            "\"space_low\":false",
            "\"committed_seq\":1170,\"qos_downgraded\":9,\"retain_cleared\":10,",
            "\"dead_letters\":11,\"dead_lettered\":12,\"backoffs\":14,\"backing_off\":true,",
            "\"probing\":true,\"acks_ignored\":15}",
        ] {
            assert!(j.contains(part), "{part} in {j}");
        }
        assert_eq!(j.matches('{').count(), j.matches('}').count());
        assert_eq!(json_str("\u{1}"), "\"\\u0001\"");
    }

    #[test]
    fn prometheus_groups_each_family_once_with_a_sample_per_bridge() {
        let a = sample();
        let mut b = sample();
        b.messages = 0;
        b.link_up = false;
        let text = prometheus(&[("emqx1", &a), ("b\"2", &b)]);
        assert!(text.ends_with('\n'));
        assert!(text.contains("nanomq_bridge_outbox_messages{bridge=\"emqx1\"} 812\n"));
        assert!(text.contains("nanomq_bridge_outbox_messages{bridge=\"b\\\"2\"} 0\n"));
        assert!(text.contains("nanomq_bridge_outbox_oldest_age_seconds{bridge=\"emqx1\"} 95\n"));
        assert!(text.contains(
            "nanomq_bridge_outbox_dropped_total{bridge=\"emqx1\",reason=\"refused_nospace\"} 6\n"
        ));
        assert!(text.contains(
            "nanomq_bridge_outbox_dropped_total{bridge=\"emqx1\",reason=\"fallback_queue\"} 7\n"
        ));
        assert!(text.contains(
            "nanomq_bridge_outbox_dropped_total{bridge=\"b\\\"2\",reason=\"fallback_send\"} 8\n"
        ));
        // Each family's HELP and TYPE appear once, before all of its samples.
        let mut seen = std::collections::HashSet::new();
        let mut current = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap().to_string();
                assert!(seen.insert(name.clone()), "{name} twice");
                current = name;
            } else if !line.starts_with('#') {
                let name = line.split('{').next().unwrap();
                assert_eq!(name, current, "{line} outside its family");
            }
        }
        assert!(text.contains(
            "nanomq_bridge_outbox_dropped_total{bridge=\"emqx1\",reason=\"dead_letters\"} 13\n"
        ));
        assert!(text.contains("nanomq_bridge_outbox_dead_letters{bridge=\"emqx1\"} 11\n"));
        assert_eq!(seen.len(), 17);
    }
}
