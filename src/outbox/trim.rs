//! The drop_oldest limit: the oldest rows beyond `max_messages`/`max_bytes` are dropped,
//! counted and logged, never a row in flight.

use super::*;

impl State {
    /// (messages, bytes) above the drop_oldest limits.
    pub(super) fn over_limit(&self, cfg: &Config) -> (u64, u64) {
        if cfg.full_policy != FullPolicy::DropOldest {
            return (0, 0);
        }
        let m = match cfg.max_messages {
            0 => 0,
            max => self.messages.saturating_sub(max),
        };
        let b = match cfg.max_bytes {
            0 => 0,
            max => self.bytes.saturating_sub(max),
        };
        (m, b)
    }
}

impl Shared {
    /// drop_oldest: chooses the oldest rows beyond the limits under the state lock and turns
    /// them into deletes (like acks), so a row handed out meanwhile is never trimmed. Returns
    /// how many were dropped.
    pub(super) fn trim(&self, store: &mut Store) -> Result<u64> {
        let mut after = i64::MIN;
        let mut dropped = 0u64;
        loop {
            let want = {
                let st = lock(&self.state);
                let (m, b) = st.over_limit(&self.cfg);
                if m == 0 && b == 0 {
                    break;
                }
                let skip = st.inflight.len() + st.pending.deletes.len() + st.pending.buries.len();
                if b > 0 {
                    skip.saturating_add(256)
                } else {
                    skip.saturating_add(m.min(4096) as usize).saturating_add(16)
                }
            };
            let disk = store.oldest(after, want)?;
            let exhausted = disk.len() < want;
            let upto = match disk.last() {
                Some(&(s, _)) if !exhausted => s,
                _ => i64::MAX,
            };
            let mut st = lock(&self.state);
            let gone: HashSet<i64> = st
                .pending
                .deletes
                .iter()
                .copied()
                .chain(st.pending.buries.iter().map(|b| b.seq))
                .collect();
            let mut cands: Vec<(i64, u64)> = disk;
            cands.extend(
                st.pending
                    .inserts
                    .iter()
                    .filter(|r| r.seq > after && r.seq <= upto)
                    .map(|r| (r.seq, r.data.len() as u64)),
            );
            cands.sort_unstable_by_key(|c| c.0);
            let (mut m, mut b) = st.over_limit(&self.cfg);
            for (seq, len) in cands {
                if m == 0 && b == 0 {
                    break;
                }
                if st.inflight.contains_key(&seq) || gone.contains(&seq) {
                    continue;
                }
                st.discard(seq, len);
                st.dropped_full = st.dropped_full.saturating_add(1);
                dropped += 1;
                m = m.saturating_sub(1);
                b = b.saturating_sub(len);
            }
            if exhausted || (m == 0 && b == 0) {
                break;
            }
            after = upto;
        }
        Ok(dropped)
    }

    pub(super) fn log_trim(&self, dropped: u64) {
        if dropped > 0 {
            self.log.warn(&format!(
                "bridge {:?}: limit reached, dropped the {dropped} oldest messages",
                self.cfg.bridge
            ));
        }
    }
}
