//! The read-ahead of the replay: rows read from disk in batches, behind the cursor.

use super::*;

/// Rows read ahead from disk at once for the replay: at least this many...
pub(super) const READ_AHEAD_MIN: usize = 256;

/// ...and at most this many (bounds memory during a drain)...
pub(super) const READ_AHEAD_MAX: usize = 512;

/// ...and no more rows once their data reaches this many bytes (a large row is read alone).
pub(super) const READ_AHEAD_BYTES: usize = 4 * 1024 * 1024;

impl Shared {
    /// Reads the next rows after the cursor: committed rows from disk, merged with inserts not
    /// yet committed (so a failing commit never stops the replay). False when there is
    /// nothing to read.
    pub(super) fn refill(&self, generation: u64) -> Result<bool> {
        let mut db = lock(&self.db);
        let Some(store) = db.as_mut() else {
            return Err(Error::Closed);
        };
        let (cursor, want) = {
            let st = self.lock_open()?;
            if st.generation != generation {
                return Ok(true);
            }
            let want = (st.window as usize * 4).clamp(READ_AHEAD_MIN, READ_AHEAD_MAX);
            (st.cursor, want)
        };
        let (mut rows, more) = store.read_from(cursor, want, READ_AHEAD_BYTES)?;
        // Installed with the db lock still held: no commit can slip in between.
        let mut st = self.lock_open()?;
        if st.generation != generation || !st.ahead.is_empty() || st.cursor != cursor {
            return Ok(true);
        }
        // Writes still pending apply to what was read: a session reset clears the packet ids
        // and PUBRECs of the old session, deletes hide acked rows, binds give the packet id
        // a resend must reuse.
        if st.pending.reset_all {
            for r in rows.iter_mut() {
                r.packet_id = 0;
                r.released = false;
            }
        }
        if st.pending.deletes.iter().any(|&s| s >= cursor)
            || st.pending.buries.iter().any(|b| b.seq >= cursor)
        {
            let gone: HashSet<i64> = st
                .pending
                .deletes
                .iter()
                .copied()
                .chain(st.pending.buries.iter().map(|b| b.seq))
                .collect();
            rows.retain(|r| !gone.contains(&r.seq));
        }
        // (Acks and packet ids pile up to ACKS_DUE between commits; those of rows below the
        // cursor cannot apply: no set is built for them.)
        if st.pending.binds.iter().any(|&(s, _)| s >= cursor) {
            let pids: HashMap<i64, u16> = st.pending.binds.iter().copied().collect();
            for r in rows.iter_mut() {
                if let Some(&pid) = pids.get(&r.seq) {
                    r.packet_id = pid;
                }
            }
        }
        if st.pending.attempts.iter().any(|&(s, _)| s >= cursor) {
            let attempts: HashMap<i64, u32> = st.pending.attempts.iter().copied().collect();
            for r in rows.iter_mut() {
                if let Some(&n) = attempts.get(&r.seq) {
                    r.attempts = n;
                }
            }
        }
        if st.pending.releases.iter().any(|&s| s >= cursor) {
            let released: HashSet<i64> = st.pending.releases.iter().copied().collect();
            for r in rows.iter_mut() {
                r.released |= released.contains(&r.seq);
            }
        }
        // Inserts not yet committed that belong in this stretch of the FIFO (up to the last
        // row read when more may follow it on disk).
        let upto = match rows.last() {
            Some(r) if more => r.seq,
            _ => i64::MAX,
        };
        let mut extra: Vec<&Row> = st
            .pending
            .inserts
            .iter()
            .filter(|r| {
                r.seq >= cursor
                    && r.seq <= upto
                    && !st.inflight.contains_key(&r.seq)
                    && !st.buried(r.seq)
            })
            .collect();
        let ahead: VecDeque<Row> = if extra.is_empty() {
            rows.into()
        } else {
            // Merged in seq order into a prefix of the FIFO within the byte budget.
            extra.sort_unstable_by_key(|r| r.seq);
            let mut merged = VecDeque::with_capacity(rows.len() + extra.len());
            let mut disk = rows.into_iter().peekable();
            let mut mem = extra.into_iter().peekable();
            let mut bytes = 0usize;
            loop {
                let from_disk = match (disk.peek(), mem.peek()) {
                    (Some(d), Some(m)) => d.seq < m.seq,
                    (Some(_), None) => true,
                    (None, Some(_)) => false,
                    (None, None) => break,
                };
                let len = if from_disk {
                    disk.peek().map_or(0, |r| r.data.len())
                } else {
                    mem.peek().map_or(0, |r| r.data.len())
                };
                if !merged.is_empty() && bytes.saturating_add(len) > READ_AHEAD_BYTES {
                    break;
                }
                bytes = bytes.saturating_add(len);
                match (
                    from_disk,
                    disk.next_if(|_| from_disk),
                    mem.next_if(|_| !from_disk),
                ) {
                    (true, Some(r), _) => merged.push_back(r),
                    (false, _, Some(r)) => merged.push_back(r.with_data(copy_bytes(&r.data)?)),
                    _ => break,
                }
            }
            merged
        };
        if ahead.is_empty() {
            return Ok(false);
        }
        st.ahead = ahead;
        st.generation += 1;
        Ok(true)
    }
}
