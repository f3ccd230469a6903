//! The writer's side of [`Handoff`]: which deliveries of a batch were leased at birth, and
//! which targets got queued ones, so that after the commit each dispatcher hears only what it
//! needs (a mailbox of jobs, or a wake-up to claim).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::TargetId;
use crate::store::Job;
use crate::store::handoff::Handoff;

/// Every target's mailbox, shared by the store handle (dispatchers ask for theirs) and the
/// writer.
pub type Mailboxes = Arc<Mutex<HashMap<TargetId, Arc<Handoff>>>>;

/// The mailbox of `target`, created on first use.
pub fn mailbox(mailboxes: &Mailboxes, target: &TargetId) -> Arc<Handoff> {
    // A poisoned lock only means another thread panicked while inserting; the map is valid.
    let mut map = mailboxes.lock().unwrap_or_else(|p| p.into_inner());
    map.entry(target.clone()).or_default().clone()
}

/// What one batch hands over, delivered only once its transaction committed.
pub struct Handing {
    mailboxes: Mailboxes,
    /// This process's mark on the deliveries it leases (`leased_by`).
    lessee: i64,
    /// Jobs leased at birth, per mailbox, in insertion order (a batch names few targets).
    handed: Vec<(Arc<Handoff>, Vec<Job>)>,
    /// Targets that got deliveries to claim.
    queued: Vec<TargetId>,
}

impl Handing {
    pub fn new(mailboxes: &Mailboxes, lessee: i64) -> Handing {
        Handing {
            mailboxes: mailboxes.clone(),
            lessee,
            handed: Vec::new(),
            queued: Vec::new(),
        }
    }

    /// A credit of `target`'s dispatcher, if it offered room: the lease to store with.
    /// The mark this process leaves on what it leases.
    pub fn lessee(&self) -> i64 {
        self.lessee
    }

    pub fn reserve(&mut self, target: &TargetId) -> Option<(Arc<Handoff>, Duration)> {
        // Only dispatchers create mailboxes: a target nobody delivers is never handed to.
        let mailbox = {
            let map = self.mailboxes.lock().unwrap_or_else(|p| p.into_inner());
            map.get(target)?.clone()
        };
        let lease = mailbox.reserve()?;
        Some((mailbox, lease))
    }

    /// A delivery stored leased, for `mailbox` once committed.
    pub fn hand(&mut self, mailbox: Arc<Handoff>, job: Job) {
        match self
            .handed
            .iter_mut()
            .find(|(m, _)| Arc::ptr_eq(m, &mailbox))
        {
            Some((_, jobs)) => jobs.push(job),
            None => self.handed.push((mailbox, vec![job])),
        }
    }

    /// A delivery stored queued: its dispatcher must claim.
    pub fn queued(&mut self, target: &TargetId) {
        if !self.queued.contains(target) {
            self.queued.push(target.clone());
        }
    }

    /// The batch committed: fills the mailboxes and returns the targets to wake.
    pub fn committed(mut self) -> Vec<TargetId> {
        for (mailbox, jobs) in std::mem::take(&mut self.handed) {
            mailbox.put(jobs);
        }
        std::mem::take(&mut self.queued)
    }
}

impl Drop for Handing {
    /// Not committed (rolled back): the places reserved in the mailboxes are free again.
    fn drop(&mut self) {
        for (mailbox, jobs) in &self.handed {
            mailbox.unreserve(jobs.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::store::DeliveryId;

    fn job(id: i64) -> Job {
        Job {
            id: DeliveryId(id),
            event_id: format!("e{id}"),
            event_type: None,
            body: bytes::Bytes::new(),
            parsed: Default::default(),
            signature: String::new(),
            received_at: SystemTime::UNIX_EPOCH,
            attempts: 0,
            created_at: SystemTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn a_batch_that_rolled_back_frees_the_places_it_reserved() {
        let mailboxes = Mailboxes::default();
        let a = TargetId(Arc::from("a"));
        let mailbox = mailbox(&mailboxes, &a);
        mailbox.offer(1, Duration::from_secs(60));
        let mut handing = Handing::new(&mailboxes, 1);
        let (m, _) = handing.reserve(&a).expect("room for one");
        handing.hand(m, job(1));
        assert!(handing.reserve(&a).is_none(), "the one place is reserved");
        drop(handing);
        let mut handing = Handing::new(&mailboxes, 1);
        let (m, _) = handing.reserve(&a).expect("free again after the rollback");
        handing.hand(m, job(2));
        assert!(handing.committed().is_empty());
        let ids: Vec<_> = mailbox.take().iter().map(|j| j.id).collect();
        assert_eq!(ids, [DeliveryId(2)]);
    }

    #[test]
    fn a_target_without_a_dispatcher_gets_no_mailbox() {
        let mailboxes = Mailboxes::default();
        let mut handing = Handing::new(&mailboxes, 1);
        assert!(handing.reserve(&TargetId(Arc::from("nobody"))).is_none());
        assert!(mailboxes.lock().expect("lock").is_empty());
    }
}
