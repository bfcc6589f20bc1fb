//! What the remote's CONNACK decides (issue 20): the window (Receive Maximum), whether the
//! remote kept our session (Session Present), and how each row is sent (Maximum QoS,
//! Maximum Packet Size, Retain Available). A child module of `outbox`: it works on the
//! outbox's state under its lock.

use super::*;
use crate::mqtt::Connack;

/// What the remote allows, from its last CONNACK. `Limits::default()` knows nothing (the
/// host called `link_up` with a Receive Maximum only): every row goes as it is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// The MQTT version of the connection (0 = unknown).
    pub proto_ver: u8,
    /// Maximum QoS (2 = no limit).
    pub max_qos: u8,
    /// Maximum Packet Size (None = MQTT's own limit).
    pub max_packet_size: Option<u32>,
    /// Retain Available.
    pub retain: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            proto_ver: 0,
            max_qos: 2,
            max_packet_size: None,
            retain: true,
        }
    }
}

/// What `State::shape` changed in a row.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Shaped {
    pub downgraded: bool,
    pub retain_cleared: bool,
}

impl Limits {
    /// Whether a PUBLISH of `qos`, RETAIN `retain`, `packet_len` bytes cannot go to this remote
    /// as it is (above Maximum Packet Size, RETAIN without Retain Available, above Maximum QoS).
    pub fn would_change(&self, qos: u8, retain: bool, packet_len: usize) -> bool {
        self.max_packet_size
            .is_some_and(|max| packet_len > max as usize)
            || (retain && !self.retain)
            || qos > self.max_qos
    }

    /// These limits with Maximum QoS at most `max_qos` (what the remote's refusals taught).
    pub fn learned(mut self, max_qos: u8) -> Limits {
        self.max_qos = self.max_qos.min(max_qos);
        self
    }

    pub fn of(c: &Connack) -> Limits {
        Limits {
            proto_ver: c.proto_ver,
            max_qos: c.max_qos(),
            max_packet_size: c.maximum_packet_size,
            retain: c.retain(),
        }
    }
}

impl State {
    /// How `row` is sent to this remote: at min(its QoS, Maximum QoS), and with RETAIN cleared
    /// when the remote has no retained messages (Retain Available 0: RETAIN would be a
    /// protocol error, 0x9A), its bytes rewritten to say so when they are a PUBLISH (a released
    /// QoS 2 row resumes with PUBREL: QoS 2, no PUBLISH).
    /// Returns the QoS it is sent at.
    pub(super) fn shape(&self, row: &mut Row) -> (u8, Shaped) {
        let l = self.limits;
        let mut qos = row.qos;
        let mut shaped = Shaped::default();
        if row.released {
            return (qos, shaped);
        }
        if qos > l.max_qos {
            qos = l.max_qos;
            shaped.downgraded = true;
        }
        if shaped.downgraded || !l.retain {
            // Bytes that are no PUBLISH (a host storing its own format) go as they are: the
            // host encodes them at the item's QoS.
            let cleared = crate::mqtt::reshape_publish(&mut row.data, qos, !l.retain);
            shaped.retain_cleared = cleared.unwrap_or(false);
        }
        (qos, shaped)
    }

    /// Counts what `shape` did to a row that is sent.
    pub(super) fn count_shape(&mut self, s: Shaped) {
        if s.downgraded {
            self.qos_downgraded = self.qos_downgraded.saturating_add(1);
        }
        if s.retain_cleared {
            self.retain_cleared = self.retain_cleared.saturating_add(1);
        }
    }

    /// The size of the PUBLISH the replay sends for `row` (shaped), when it is above the
    /// remote's Maximum Packet Size (MQTT 5 3.1.2.24: such a packet must not be sent). Bytes
    /// that are no PUBLISH count as they are. A PUBREL (released row) is never too large.
    pub(super) fn too_large(&self, row: &Row, expiry_secs: u32) -> Option<usize> {
        let max = self.limits.max_packet_size? as usize;
        if row.released {
            return None;
        }
        let size = crate::mqtt::resend_size(&row.data, self.limits.proto_ver, expiry_secs)
            .unwrap_or(row.data.len());
        (size > max).then_some(size)
    }

    /// The remote has no session for us (Session Present 0): no packet id of ours and no
    /// PUBREC means anything there. Every row (in flight before, released, queued) is sent
    /// again as a new PUBLISH: packet id 0, no DUP, not released; on disk at the next commit.
    pub(super) fn forget_session(&mut self) {
        self.drop_flight();
        self.pending.reset_session();
        self.pending_since.get_or_insert_with(Instant::now);
    }

    /// The link went down, or a new connection replaced it: every row in flight returns to
    /// the head of the queue in order (its packet id kept, for a resend with DUP).
    pub(super) fn drop_flight(&mut self) {
        self.inflight.clear();
        self.by_pid.clear();
        self.forget_pings();
        self.reset_cursor(i64::MIN);
    }
}

impl Outbox {
    /// [`Outbox::decide`] for a new PUBLISH of `qos`, RETAIN `retain`, `packet_len` bytes:
    /// never SendNow for one the remote's limits would change (the host's transport would send
    /// it as it is, or refuse it and close the connection): above Maximum Packet Size (MQTT 5
    /// 3.1.2.24), RETAIN with Retain Available 0, a QoS above Maximum QoS. Stored instead,
    /// the replay sends it shaped ([`State::shape`]) or makes it a dead letter
    /// ("packet_too_large").
    pub fn decide_publish(&self, qos: u8, retain: bool, packet_len: usize) -> Result<Decision> {
        check_qos(qos)?;
        let st = self.shared.lock_open()?;
        Ok(
            if st.may_send_now(qos, &self.shared.cfg)
                && !st.limits.would_change(qos, retain, packet_len)
            {
                Decision::SendNow
            } else {
                Decision::Store
            },
        )
    }

    /// The link is up with this CONNACK (see [`crate::mqtt::parse_connack`]): the window is
    /// the configured one capped by Receive Maximum. An earlier connection the outbox still
    /// took for up is gone (its rows in flight go back to the head, as at `link_down`).
    /// A refusal (MQTT 5 reason code >= 0x80, 3.1.1 return code != 0) is
    /// [`Error::Refused`], and the link stays down.
    pub fn link_up_connack(&self, c: &Connack) -> Result<()> {
        let sh = &self.shared;
        let mut st = sh.lock_open()?;
        if st.link_up {
            st.drop_flight();
            st.link_up = false;
        }
        if !c.accepted() {
            drop(st);
            let why = format!(
                "CONNACK with {} 0x{:02x}{}: the link stays down",
                if c.proto_ver == 5 {
                    "reason code"
                } else {
                    "return code"
                },
                c.reason_code,
                c.reason_string
                    .as_deref()
                    .map_or(String::new(), |r| format!(" ({r:?})"))
            );
            return Err(Error::Refused(why));
        }
        st.link_up = true;
        st.window = sh.cfg.window.min(c.receive_max() as u32);
        st.limits = Limits::of(c).learned(st.learned_max_qos);
        let window = st.window;
        let mut wake = false;
        if !c.session_present {
            st.forget_session();
            wake = st.writer_due(&sh.cfg);
        }
        drop(st);
        if wake {
            sh.wake.notify_one();
        }
        sh.log.info(&format!(
            "bridge {:?}: link up (MQTT {}, {}, window {window}, Maximum QoS {}{}{})",
            sh.cfg.bridge,
            if c.proto_ver == 5 { "5" } else { "3.1.1" },
            if c.session_present {
                "session present: exchanges resume"
            } else {
                "new session: rows in flight and released ones go again as new PUBLISHes"
            },
            c.max_qos(),
            c.maximum_packet_size
                .map_or(String::new(), |m| format!(", Maximum Packet Size {m}")),
            if c.retain() {
                ""
            } else {
                ", no retained messages: RETAIN cleared"
            }
        ));
        Ok(())
    }
}
