//! The order of the changes file writes make to the queue. Pushes from many
//! producers write side by side; what each write changes in the queue waits for its
//! turn, so chunks are queued in the order their pushes were planned, as if one at
//! a time.

use std::sync::Arc;

use super::state::{Shared, State};

/// A place in the order of the changes that file writes make to the queue: taken
/// under the state lock when the write is planned, waited for once the write is
/// done. Dropped (the change made, or given up), it lets the next one go.
pub(super) struct Turn {
    shared: Arc<Shared>,
    number: u64,
}

impl Turn {
    /// Takes the next turn. `st` is the locked state of `shared`.
    pub(super) fn take(shared: &Arc<Shared>, st: &mut State) -> Self {
        let number = st.next_turn;
        st.next_turn += 1;
        st.turns.insert(number);
        Self {
            shared: shared.clone(),
            number,
        }
    }

    /// Leaves the order while a write that failed waits for its next attempt, so
    /// that it holds up no write planned before or meanwhile: a chunk that does not
    /// fit in what is left of a full disk must not keep smaller ones from being
    /// written and delivered, which is also what gives a segment's room back.
    pub(super) fn leave(&mut self) {
        self.shared.lock().turns.remove(&self.number);
        self.shared.turns.notify_waiters();
    }

    /// Takes the last place in the order again, for the next attempt.
    pub(super) fn rejoin(&mut self) {
        let mut st = self.shared.lock();
        self.number = st.next_turn;
        st.next_turn += 1;
        st.turns.insert(self.number);
    }

    /// Waits until every earlier turn is over.
    pub(super) async fn wait(&self) {
        loop {
            let over = self.shared.turns.notified();
            tokio::pin!(over);
            over.as_mut().enable();
            if self.shared.lock().turns.first() == Some(&self.number) {
                return;
            }
            over.await;
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        // Never dropped with the state locked: it locks the state itself.
        self.shared.lock().turns.remove(&self.number);
        self.shared.turns.notify_waiters();
    }
}
