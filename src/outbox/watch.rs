//! Commits told to an ack gate (`crate::gate`): a hook called after every commit that advanced
//! the committed seq, and once at the close, always with no lock of ours held; and a
//! [`Committer`], the part of an outbox a gate's waiting ack keeps (commit, committed seq).

use super::*;

/// Called with the committed seq after a commit advanced it (`closed` false), on the thread
/// that committed (the writer thread, or a caller's commit, flush or inline append), and once
/// more by the close (`closed` true, the last committed seq) on the closing thread. Never with
/// a lock of the outbox held.
pub type CommitHook = Box<dyn Fn(i64, bool) + Send + Sync>;

/// An outbox as an ack gate sees it: it can be committed and asked how far it committed,
/// and it identifies the outbox (`key`), also after the outbox was closed.
#[derive(Clone)]
pub struct Committer(Arc<Shared>);

impl Committer {
    /// Same as [`Outbox::commit`].
    pub fn commit(&self) -> Result<bool> {
        self.0.commit()
    }

    /// Whether the host commits its appends itself (`caller_commits`); otherwise the writer
    /// thread does, and its commit tells the hook.
    pub fn caller_commits(&self) -> bool {
        self.0.cfg.caller_commits
    }

    /// The committed seq and whether the outbox is closed (then that seq is final).
    pub fn committed(&self) -> (i64, bool) {
        let st = lock(&self.0.state);
        (st.committed_seq, st.closed)
    }

    /// Identifies the outbox while any `Committer` of it lives.
    pub fn key(&self) -> usize {
        Arc::as_ptr(&self.0) as usize
    }
}

impl Outbox {
    /// The outbox as an ack gate keeps it.
    pub fn committer(&self) -> Committer {
        Committer(Arc::clone(&self.shared))
    }

    /// Sets the commit hook of `owner` (an id of the caller's choosing). Once per outbox:
    /// `Ok(true)` when set now, `Ok(false)` when `owner` had set it already, `Busy` when another
    /// owner did, `Closed` after the close.
    pub fn watch(&self, owner: usize, hook: CommitHook) -> Result<bool> {
        let sh = &self.shared;
        sh.check_open()?;
        let mut set = false;
        let (id, _) = sh.hook.get_or_init(|| {
            set = true;
            (owner, hook)
        });
        if *id != owner {
            return Err(Error::Busy(format!(
                "bridge {:?}: the outbox's commits are watched by another ack gate",
                sh.cfg.bridge
            )));
        }
        Ok(set)
    }
}

impl Shared {
    /// Tells the hook, when one is set. No lock of ours may be held.
    pub(super) fn tell_hook(&self, seq: i64, closed: bool) {
        if let Some((_, hook)) = self.hook.get() {
            if catch_unwind(AssertUnwindSafe(|| hook(seq, closed))).is_err() {
                self.log.error(&format!(
                    "bridge {:?}: the commit hook panicked (a bug)",
                    self.cfg.bridge
                ));
            }
        }
    }
}
