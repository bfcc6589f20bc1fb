//! A message into the outbox: at the tail (append) or the head (requeue), within the limits,
//! the disk reserve and the backpressure of the group commit.

use super::*;

impl Shared {
    /// Appends (`front` None) or puts at the head with the packet id it was sent with and
    /// whether its PUBREC came.
    pub(super) fn insert(
        &self,
        qos: u8,
        expiry_secs: u32,
        data: Cow<'_, [u8]>,
        front: Option<(u16, bool)>,
    ) -> Result<i64> {
        check_qos(qos)?;
        let len = data.len();
        let max = self.cfg.max_message_bytes as usize;
        if len > max {
            return Err(Error::TooBig { len, max });
        }
        let data = match data {
            Cow::Borrowed(b) => copy_bytes(b)?,
            Cow::Owned(v) => v,
        };
        // Backpressure: when the writer cannot keep up, commit inline first. While the disk
        // is short of space, or the last commit failed, the message itself is committed before
        // this returns: nothing is accepted that cannot be stored.
        let limit = self.cfg.group_commit_count as usize * BACKPRESSURE;
        let mut st = self.lock_open()?;
        if st.space_low {
            // The reserve is spent: what is left of the disk is for the drain's acks. A new
            // message is taken only once the reserve could be put back.
            drop(st);
            let back = lock(&self.db)
                .as_mut()
                .is_some_and(|store| store.restore_reserve());
            st = self.lock_open()?;
            if back && st.space_low {
                st.space_low = false;
                drop(st);
                self.log.warn(&format!(
                    "bridge {:?}: disk space is back; reserve restored",
                    self.cfg.bridge
                ));
                st = self.lock_open()?;
            } else if !back {
                st.refused_nospace = st.refused_nospace.saturating_add(1);
                return Err(Error::NoSpace);
            }
        }
        // (and while the process exits: nothing accepted may wait for a group commit)
        let inline = st.write_failed || st.exiting;
        let p = &st.pending;
        if !inline
            && (p.messages() >= limit
                || p.acks() >= ACKS_DUE * BACKPRESSURE
                || st.pending_bytes >= PENDING_BYTES_MAX)
        {
            drop(st);
            if let Err(e) = self.flush_inner() {
                self.refused(&e);
                return Err(e);
            }
            st = self.lock_open()?;
        }
        if self.cfg.full_policy == FullPolicy::RejectNew {
            let c = &self.cfg;
            if (c.max_messages > 0 && st.messages >= c.max_messages)
                || (c.max_bytes > 0 && st.bytes.saturating_add(len as u64) > c.max_bytes)
            {
                st.dropped_full = st.dropped_full.saturating_add(1);
                return Err(Error::Full);
            }
        }
        let now = now_ms();
        let seq = if front.is_some() {
            st.front_seq -= 1;
            let s = st.front_seq;
            st.reset_cursor(s);
            s
        } else {
            let s = st.next_seq;
            st.next_seq += 1;
            s
        };
        let (packet_id, released) = front.unwrap_or((0, false));
        st.pending.inserts.push(Row {
            seq,
            qos,
            expires_at: if expiry_secs == 0 {
                0
            } else {
                now.saturating_add(expiry_secs as i64 * 1000)
            },
            enqueued_at: now,
            packet_id,
            released,
            attempts: 0,
            data,
        });
        st.pending_since.get_or_insert_with(Instant::now);
        st.pending_bytes = st.pending_bytes.saturating_add(len as u64);
        st.messages = st.messages.saturating_add(1);
        st.bytes = st.bytes.saturating_add(len as u64);
        st.enqueued = st.enqueued.saturating_add(1);
        let wake = !inline && st.writer_due(&self.cfg);
        drop(st);
        if inline {
            if let Err(e) = self.flush_inner() {
                // Not committed: the message is refused, the caller keeps it.
                let mut st = lock(&self.state);
                if st.remove_pending_insert(seq) {
                    st.vanish(seq, len as u64);
                    st.enqueued = st.enqueued.saturating_sub(1);
                }
                drop(st);
                self.refused(&e);
                return Err(e);
            }
        } else if wake {
            self.wake.notify_one();
        }
        Ok(seq)
    }
}
