//! Deliveries handed to an idle dispatcher as they are stored, instead of claimed afterwards.
//!
//! A dispatcher that has caught up with its queue would otherwise claim each new delivery
//! right after its ingest committed: one more writer transaction (a select that reads the body
//! back, an update that moves two index entries, a commit) and one more round trip before the
//! first attempt. Instead it *offers* room in a mailbox. For each delivery it inserts for that
//! target while there is room, the writer stores the delivery already leased (in flight, the
//! lease running from the insert), and once the transaction has committed puts the job in the
//! mailbox. The lease is in the file like any claim's, so a crash or a stop loses
//! nothing: the delivery is released at the next start, or claimed again when the lease ends.
//!
//! Only unordered deliveries are handed over (an ordered one must wait for its head), and only
//! while the dispatcher has offered room: it withdraws the offer whenever its queue has a
//! backlog (claims then keep the order by due time and priority) or its target may not send.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;

use super::Job;

/// One target's mailbox of deliveries leased at birth.
#[derive(Default)]
pub struct Handoff {
    state: Mutex<State>,
    /// Notified when jobs are put in the mailbox.
    arrived: Notify,
}

#[derive(Default)]
struct State {
    /// How many jobs the mailbox may hold (counting those reserved by a transaction not yet
    /// committed); zero while the dispatcher offers no room.
    room: usize,
    /// The lease the dispatcher asked for with its offer.
    lease: Duration,
    /// Credits taken by transactions not yet committed (or rolled back).
    reserved: usize,
    /// Committed deliveries, leased to this target's dispatcher, not yet taken.
    jobs: Vec<Job>,
}

impl Handoff {
    /// Dispatcher: the mailbox may hold up to `room` deliveries, each leased for `lease`, until
    /// the offer is withdrawn. Taking jobs makes room again.
    pub fn offer(&self, room: usize, lease: Duration) {
        let mut state = self.lock();
        state.room = room;
        state.lease = lease;
    }

    /// Dispatcher: the jobs handed over so far, oldest first.
    pub fn take(&self) -> Vec<Job> {
        std::mem::take(&mut self.lock().jobs)
    }

    /// Dispatcher: withdraws the offer and returns what was already handed over, which the
    /// caller must attempt or release. A delivery reserved just before this may still arrive
    /// afterwards; it waits here for the next [`Handoff::take`] or [`Handoff::withdraw`],
    /// leased, so it is never lost.
    pub fn withdraw(&self) -> Vec<Job> {
        let mut state = self.lock();
        state.room = 0;
        std::mem::take(&mut state.jobs)
    }

    /// Completes when jobs were put in the mailbox since the last call completed.
    pub async fn arrived(&self) {
        self.arrived.notified().await
    }

    /// Tests: the jobs in the mailbox, waiting (at most 10 s) for the first. The writer answers
    /// a batch's requests before it fills the mailboxes, so an answered ingest may not have been
    /// handed over yet.
    #[cfg(test)]
    pub(crate) async fn next_jobs(&self) -> Vec<Job> {
        loop {
            let jobs = self.take();
            if !jobs.is_empty() {
                return jobs;
            }
            tokio::time::timeout(Duration::from_secs(10), self.arrived())
                .await
                .unwrap_or_else(|_| panic!("no jobs handed over within 10 s"));
        }
    }

    /// Writer: reserves a place for one delivery, returning the lease to store it with, or
    /// `None` when the mailbox has no room.
    pub(crate) fn reserve(&self) -> Option<Duration> {
        let mut state = self.lock();
        if state.jobs.len() + state.reserved >= state.room {
            return None;
        }
        state.reserved += 1;
        Some(state.lease)
    }

    /// Writer: the transaction that reserved `places` rolled back.
    pub(crate) fn unreserve(&self, places: usize) {
        let mut state = self.lock();
        state.reserved = state.reserved.saturating_sub(places);
    }

    /// Writer: the transaction that leased these jobs committed.
    pub(crate) fn put(&self, jobs: Vec<Job>) {
        let mut state = self.lock();
        state.reserved = state.reserved.saturating_sub(jobs.len());
        state.jobs.extend(jobs);
        drop(state);
        self.arrived.notify_one();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Poisoned only if a holder panicked; the state is counters and a list, still valid.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}
