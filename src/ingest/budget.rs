//! One memory budget for everything ingest holds in flight: a batch reserves its estimated size when it is
//! validated and gives it back only when detection has taken its points in, so batches queued for the writer, a group
//! being committed and commits waiting for detection all count. HJ 212 connections reserve their framing and
//! reassembly buffers from the same budget.
//!
//! Each sender (a principal, an HJ 212 device) may hold at most a share of the budget, and takes its share before
//! the global pool: a flooding sender waits on its own share and cannot take the memory a polite one needs. Both
//! pools are FIFO-fair (tokio's semaphore), so a large batch is not starved by a stream of small ones.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Permits are KiB: a budget of many GiB stays within the semaphore's range and a batch within `u32`.
const KIB: usize = 1024;
/// Past this many idle senders, the share map drops the ones holding nothing.
const PRUNE_SENDERS: usize = 4096;

/// Why a reservation was not granted.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum BudgetError {
    /// The batch alone is larger than a sender's share: it can never fit.
    #[error(
        "the batch needs about {needed_kib} KiB in memory, more than one sender's share of the ingest budget \
         ({share_kib} KiB): split it"
    )]
    TooLarge {
        /// Estimated size of the batch.
        needed_kib: usize,
        /// A sender's share.
        share_kib: usize,
    },
    /// Memory stayed taken for the whole wait: the server is saturated; retry later.
    #[error(
        "ingest memory budget exhausted ({in_use_kib} of {budget_kib} KiB in flight, {own_kib} KiB of it yours) \
         after waiting {waited_ms} ms: retry later"
    )]
    Exhausted {
        /// In flight over all senders.
        in_use_kib: usize,
        /// The budget.
        budget_kib: usize,
        /// Held by this sender.
        own_kib: usize,
        /// How long the request waited.
        waited_ms: u64,
    },
}

/// Memory held by one batch or buffer; dropping it gives the memory back.
#[derive(Debug, Default)]
pub struct Reservation {
    permits: Vec<OwnedSemaphorePermit>,
}

impl Reservation {
    /// Adds another reservation's memory to this one (one release for a group).
    pub fn merge(&mut self, other: Reservation) {
        for permit in other.permits {
            match self
                .permits
                .iter_mut()
                .find(|p| Arc::ptr_eq(p.semaphore(), permit.semaphore()))
            {
                Some(same_pool) => same_pool.merge(permit),
                None => self.permits.push(permit),
            }
        }
    }

    /// Gives back all but `bytes` (a guess made before the batch was read turned out high).
    pub fn shrink_to(&mut self, bytes: usize) {
        let keep = kib(bytes);
        for p in &mut self.permits {
            if p.num_permits() > keep {
                drop(p.split(p.num_permits() - keep));
            }
        }
    }

    /// Bytes held (per pool: a sender's reservation counts once).
    pub fn bytes(&self) -> usize {
        self.permits
            .iter()
            .map(|p| p.num_permits())
            .max()
            .unwrap_or(0)
            * KIB
    }
}

/// Memory of a buffer that grows and shrinks (an HJ 212 connection's framing and reassembly), held in chunks so it
/// can be given back as the buffer empties.
#[derive(Debug, Default)]
pub struct BufferHold {
    chunks: Vec<Reservation>,
}

/// Granularity of a [`BufferHold`].
const HOLD_CHUNK: usize = 64 * KIB;

impl BufferHold {
    /// Makes the hold cover `bytes`, growing from `budget` if it can; returns whether it covers them.
    pub fn fit(&mut self, bytes: usize, budget: &MemoryBudget) -> bool {
        let wanted = bytes.div_ceil(HOLD_CHUNK);
        self.chunks.truncate(wanted);
        while self.chunks.len() < wanted {
            match budget.try_reserve(HOLD_CHUNK) {
                Some(r) => self.chunks.push(r),
                None => return false,
            }
        }
        true
    }

    /// Bytes covered.
    pub fn bytes(&self) -> usize {
        self.chunks.len() * HOLD_CHUNK
    }
}

/// CPU turns: how many of one sender's streams may decode and validate at once. Decoding a large batch is the
/// costliest step before the writer; a sender with forty streams would otherwise hold every runtime thread and
/// delay the acks of everyone else.
#[derive(Debug)]
pub struct Turns {
    per_sender: usize,
    senders: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Turns {
    /// `per_sender` streams of one sender at a time.
    pub fn new(per_sender: usize) -> Self {
        Self {
            per_sender: per_sender.max(1),
            senders: Mutex::new(HashMap::new()),
        }
    }

    /// Waits for one of `sender`'s turns; the turn ends when the permit is dropped.
    pub async fn take(&self, sender: &str) -> Option<OwnedSemaphorePermit> {
        let turns = {
            let mut senders = self.senders.lock().unwrap_or_else(|p| p.into_inner());
            if senders.len() >= PRUNE_SENDERS {
                senders.retain(|_, s| Arc::strong_count(s) > 1);
            }
            senders
                .entry(sender.to_string())
                .or_insert_with(|| Arc::new(Semaphore::new(self.per_sender)))
                .clone()
        };
        turns.acquire_owned().await.ok()
    }
}

/// The budget and each sender's share of it.
#[derive(Debug)]
pub struct MemoryBudget {
    budget_kib: usize,
    share_kib: usize,
    global: Arc<Semaphore>,
    shares: Mutex<HashMap<String, Arc<Semaphore>>>,
    refused: AtomicU64,
}

fn kib(bytes: usize) -> usize {
    bytes.div_ceil(KIB).max(1)
}

impl MemoryBudget {
    /// A budget of `budget_bytes`, of which one sender may hold `share_bytes`.
    pub fn new(budget_bytes: usize, share_bytes: usize) -> Self {
        let budget_kib = kib(budget_bytes).min(Semaphore::MAX_PERMITS);
        Self {
            budget_kib,
            share_kib: kib(share_bytes).min(budget_kib),
            global: Arc::new(Semaphore::new(budget_kib)),
            shares: Mutex::new(HashMap::new()),
            refused: AtomicU64::new(0),
        }
    }

    /// Reserves `bytes` for `sender`, waiting up to `wait` for memory to come back.
    ///
    /// # Errors
    /// [`BudgetError::TooLarge`] at once when the batch exceeds a share; [`BudgetError::Exhausted`] after `wait`.
    pub async fn reserve(
        &self,
        sender: &str,
        bytes: usize,
        wait: Duration,
    ) -> Result<Reservation, BudgetError> {
        let need = kib(bytes);
        if need > self.share_kib {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(BudgetError::TooLarge {
                needed_kib: need,
                share_kib: self.share_kib,
            });
        }
        let share = self.share_of(sender);
        let n = u32::try_from(need).unwrap_or(u32::MAX);
        let started = tokio::time::Instant::now();
        let deadline = started + wait;
        let got = async {
            let own = share.clone().acquire_many_owned(n).await.ok()?;
            let global = self.global.clone().acquire_many_owned(n).await.ok()?;
            Some(Reservation {
                permits: vec![own, global],
            })
        };
        match tokio::time::timeout_at(deadline, got).await {
            Ok(Some(r)) => Ok(r),
            _ => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                Err(BudgetError::Exhausted {
                    in_use_kib: self.in_use_kib(),
                    budget_kib: self.budget_kib,
                    own_kib: self.share_kib.saturating_sub(share.available_permits()),
                    waited_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                })
            }
        }
    }

    /// Makes `held` cover `bytes` for `sender`: gives back the excess, or waits for the rest.
    ///
    /// # Errors
    /// As [`MemoryBudget::reserve`] for the missing part; `held` is kept either way.
    pub async fn resize(
        &self,
        held: &mut Reservation,
        sender: &str,
        bytes: usize,
        wait: Duration,
    ) -> Result<(), BudgetError> {
        let have = held.bytes();
        if have >= bytes {
            held.shrink_to(bytes);
            return Ok(());
        }
        if kib(bytes) > self.share_kib {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(BudgetError::TooLarge {
                needed_kib: kib(bytes),
                share_kib: self.share_kib,
            });
        }
        let more = self.reserve(sender, bytes - have, wait).await?;
        held.merge(more);
        Ok(())
    }

    /// A sender's share, bytes.
    pub fn share_bytes(&self) -> usize {
        self.share_kib * KIB
    }

    /// Reserves `bytes` from the global pool if they are free now (buffers that grow byte by byte, whose own caps
    /// already bound one connection).
    pub fn try_reserve(&self, bytes: usize) -> Option<Reservation> {
        let n = u32::try_from(kib(bytes)).ok()?;
        match self.global.clone().try_acquire_many_owned(n) {
            Ok(p) => Some(Reservation { permits: vec![p] }),
            Err(_) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// KiB in flight now.
    pub fn in_use_kib(&self) -> usize {
        self.budget_kib
            .saturating_sub(self.global.available_permits())
    }

    /// The budget, KiB.
    pub fn budget_kib(&self) -> usize {
        self.budget_kib
    }

    /// Reservations refused so far (too large, or not granted in time).
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    fn share_of(&self, sender: &str) -> Arc<Semaphore> {
        let mut shares = self.shares.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = shares.get(sender) {
            return s.clone();
        }
        if shares.len() >= PRUNE_SENDERS {
            // A share nobody holds a permit of is the map's only reference.
            shares.retain(|_, s| Arc::strong_count(s) > 1);
        }
        let s = Arc::new(Semaphore::new(self.share_kib));
        shares.insert(sender.to_string(), s.clone());
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(50);

    #[tokio::test]
    async fn a_reservation_holds_memory_until_dropped() {
        let b = MemoryBudget::new(100 * KIB, 60 * KIB);
        let r = b.reserve("a", 40 * KIB, MS).await.expect("fits");
        assert_eq!(b.in_use_kib(), 40);
        drop(r);
        assert_eq!(b.in_use_kib(), 0);
    }

    #[tokio::test]
    async fn one_sender_cannot_take_more_than_its_share() {
        let b = MemoryBudget::new(100 * KIB, 60 * KIB);
        let _held = b.reserve("flood", 50 * KIB, MS).await.expect("fits");
        let err = b
            .reserve("flood", 20 * KIB, MS)
            .await
            .expect_err("over share");
        assert!(
            matches!(
                err,
                BudgetError::Exhausted {
                    own_kib: 50,
                    in_use_kib: 50,
                    ..
                }
            ),
            "{err:?}"
        );
        // Another sender still gets the rest of the budget.
        let polite = b
            .reserve("polite", 40 * KIB, MS)
            .await
            .expect("other share");
        assert_eq!(b.in_use_kib(), 90);
        drop(polite);
        assert_eq!(b.refused(), 1);
    }

    #[tokio::test]
    async fn the_global_budget_bounds_all_senders_together() {
        let b = MemoryBudget::new(100 * KIB, 60 * KIB);
        let _a = b.reserve("a", 60 * KIB, MS).await.expect("a");
        let _b = b.reserve("b", 40 * KIB, MS).await.expect("b");
        assert!(b.reserve("c", 1, MS).await.is_err());
        assert!(b.try_reserve(1).is_none());
    }

    #[tokio::test]
    async fn a_guess_is_resized_to_the_batch() {
        let b = MemoryBudget::new(100 * KIB, 60 * KIB);
        let mut held = b.reserve("a", 30 * KIB, MS).await.expect("guess");
        b.resize(&mut held, "a", 10 * KIB, MS)
            .await
            .expect("smaller");
        assert_eq!((b.in_use_kib(), held.bytes()), (10, 10 * KIB));
        b.resize(&mut held, "a", 50 * KIB, MS)
            .await
            .expect("larger");
        assert_eq!((b.in_use_kib(), held.bytes()), (50, 50 * KIB));
        assert!(b.resize(&mut held, "a", 61 * KIB, MS).await.is_err());
        let mut group = Reservation::default();
        group.merge(held);
        group.merge(b.reserve("b", 5 * KIB, MS).await.expect("b"));
        assert_eq!(b.in_use_kib(), 55);
        drop(group);
        assert_eq!(b.in_use_kib(), 0);
    }

    #[tokio::test]
    async fn a_batch_larger_than_a_share_is_refused_at_once() {
        let b = MemoryBudget::new(100 * KIB, 60 * KIB);
        let started = std::time::Instant::now();
        let err = b
            .reserve("a", 61 * KIB, Duration::from_secs(30))
            .await
            .expect_err("never fits");
        assert!(matches!(
            err,
            BudgetError::TooLarge {
                needed_kib: 61,
                share_kib: 60
            }
        ));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_waiting_sender_gets_memory_when_it_is_given_back() {
        let b = Arc::new(MemoryBudget::new(100 * KIB, 100 * KIB));
        let held = b.reserve("a", 100 * KIB, MS).await.expect("all");
        let waiter = {
            let b = b.clone();
            tokio::spawn(async move {
                b.reserve("b", 10 * KIB, Duration::from_secs(30))
                    .await
                    .is_ok()
            })
        };
        tokio::time::sleep(MS).await;
        drop(held);
        assert!(waiter.await.expect("join"));
    }

    #[tokio::test]
    async fn a_buffer_hold_grows_while_memory_is_free_and_gives_it_back() {
        let b = MemoryBudget::new(4 * HOLD_CHUNK, 4 * HOLD_CHUNK);
        let mut hold = BufferHold::default();
        assert!(hold.fit(HOLD_CHUNK + 1, &b));
        assert_eq!(b.in_use_kib(), 128);
        let _other = b.reserve("x", HOLD_CHUNK, MS).await.expect("room");
        assert!(!hold.fit(4 * HOLD_CHUNK, &b), "only three chunks are free");
        assert_eq!(hold.bytes(), 3 * HOLD_CHUNK);
        assert!(hold.fit(10, &b));
        assert_eq!(b.in_use_kib(), 128);
    }

    #[test]
    fn idle_senders_are_pruned() {
        let b = MemoryBudget::new(100 * KIB, 10 * KIB);
        for i in 0..PRUNE_SENDERS + 10 {
            let _ = b.share_of(&format!("s{i}"));
        }
        let n = b.shares.lock().map(|m| m.len()).unwrap_or(0);
        assert!(n <= PRUNE_SENDERS, "{n}");
    }
}
