//! The revocation list: ids of tokens logged out before they expired.
//!
//! A revoked token only needs remembering while it could still pass verification, that is until
//! its own `exp` plus the verification leeway ([`jwt::accepted_at`]: the rule belongs to the
//! token codec, and every store applies it through these functions, never with a leeway of its
//! own). Each entry therefore keeps that `exp`, and
//! [`RevocationStore::purge_expired`] (run by a periodic sweep) forgets entries past it, so the
//! list holds live revoked tokens only. It also has a hard cap (`REVOCATION_LIST_MAX`): when it
//! is full a logout is refused rather than an older revocation forgotten, since forgetting one
//! would make a logged-out token valid again.
//!
//! Every authenticated request reads the list, so its in-process index ([`RevocationIndex`]) is
//! a sharded map (`dashmap`): checks on different tokens never wait for one another. The
//! memory store is the index alone; the embedded store records each revocation in SQLite before
//! adding it to the same index, so a check never touches the disk.

use std::sync::{Mutex, PoisonError};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use futures_util::future::{self, BoxFuture};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::jwt;
use crate::fault::StoreError;

/// One revoked token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedToken {
    /// The token's `jti`.
    pub jti: Uuid,
    /// The token's `exp`, Unix seconds.
    pub exp: u64,
}

/// What a revocation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    /// The token was live and is now revoked.
    Revoked,
    /// The token had already been revoked (a concurrent or repeated logout).
    AlreadyRevoked,
}

/// Why a revocation was not made; in either case nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RevokeError {
    /// The list holds `capacity` live revocations.
    #[error("the revocation list is full ({capacity} entries)")]
    Full {
        /// `REVOCATION_LIST_MAX`.
        capacity: usize,
    },
    /// The store could not record it.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where revoked token ids live. Implementations must be safe to call from many tasks at once.
pub trait RevocationStore: Send + Sync + 'static {
    /// Revokes `token` until its `exp` has passed. `Ok` means it is recorded as durably as the
    /// store promises.
    fn revoke(
        &self,
        token: RevokedToken,
        now: u64,
    ) -> BoxFuture<'_, Result<Revocation, RevokeError>>;

    /// Whether `jti` is revoked at Unix time `now`.
    fn is_revoked(&self, jti: Uuid, now: u64) -> BoxFuture<'_, Result<bool, StoreError>>;

    /// Forgets entries whose token can no longer pass verification; returns how many.
    fn purge_expired(&self, now: u64) -> BoxFuture<'_, Result<usize, StoreError>>;

    /// Number of entries held, as last known (for the gauge).
    fn len(&self) -> usize;

    /// Whether no entry is held.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The cap on entries.
    fn capacity(&self) -> usize;
}

/// The in-process index of revoked tokens, bounded by expiry and by a hard cap.
#[derive(Debug)]
pub struct RevocationIndex {
    /// `jti` -> token `exp`.
    entries: DashMap<Uuid, u64>,
    capacity: usize,
    /// Revocations admitted but not yet in `entries` (being recorded). Also serializes
    /// admissions, so concurrent logouts cannot overshoot the cap.
    pending: Mutex<usize>,
}

/// What [`RevocationIndex::admit`] decided.
#[derive(Debug)]
pub enum Admit {
    /// Nothing to record; this is the answer.
    Skip(Revocation),
    /// Record the revocation, then [`settle`](RevocationIndex::settle) the slot.
    Record(Admission),
}

/// A slot taken in the index by [`RevocationIndex::admit`]; give it to
/// [`RevocationIndex::settle`] once the store has answered.
#[derive(Debug)]
#[must_use = "a slot must be settled, or the index stays one entry short"]
pub struct Admission(());

impl RevocationIndex {
    /// An empty index holding at most `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: DashMap::new(),
            capacity,
            pending: Mutex::new(0),
        }
    }

    /// An index holding the entries still in force at `now`; expired ones are dropped. All are
    /// kept even past the cap: they were acknowledged.
    pub fn from_entries(
        capacity: usize,
        entries: impl IntoIterator<Item = RevokedToken>,
        now: u64,
    ) -> Self {
        let index = Self::new(capacity);
        for entry in entries {
            if jwt::accepted_at(entry.exp, now) {
                index.entries.insert(entry.jti, entry.exp);
            }
        }
        index
    }

    /// Whether `jti` is revoked at `now`.
    pub fn contains(&self, jti: &Uuid, now: u64) -> bool {
        self.entries
            .get(jti)
            .is_some_and(|exp| jwt::accepted_at(*exp, now))
    }

    /// Decides whether `token` needs recording, and if so takes a slot for it: `Skip` when
    /// there is nothing to record (already revoked, or expired and so refused by verification
    /// anyway), `Record` when there is room, `Full` otherwise.
    pub fn admit(&self, token: RevokedToken, now: u64) -> Result<Admit, RevokeError> {
        if !jwt::accepted_at(token.exp, now) {
            return Ok(Admit::Skip(Revocation::Revoked));
        }
        if self.contains(&token.jti, now) {
            return Ok(Admit::Skip(Revocation::AlreadyRevoked));
        }
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if self.entries.len() + *pending >= self.capacity {
            return Err(RevokeError::Full {
                capacity: self.capacity,
            });
        }
        *pending += 1;
        Ok(Admit::Record(Admission(())))
    }

    /// Frees an admission's slot, adding `token` when it was `recorded`. Of concurrent
    /// revocations of one token, exactly one is told `Revoked`.
    pub fn settle(&self, slot: Admission, token: RevokedToken, recorded: bool) -> Revocation {
        let Admission(()) = slot;
        let outcome = if recorded {
            match self.entries.entry(token.jti) {
                Entry::Occupied(_) => Revocation::AlreadyRevoked,
                Entry::Vacant(vacant) => {
                    vacant.insert(token.exp);
                    Revocation::Revoked
                }
            }
        } else {
            Revocation::Revoked
        };
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        *pending = pending.saturating_sub(1);
        outcome
    }

    /// Forgets entries past their expiry at `now`; returns how many.
    pub fn purge_expired(&self, now: u64) -> usize {
        let before = self.entries.len();
        self.entries.retain(|_, exp| jwt::accepted_at(*exp, now));
        if self.entries.capacity() > 4 * self.entries.len().max(64) {
            self.entries.shrink_to_fit();
        }
        before.saturating_sub(self.entries.len())
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the index holds no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

/// The revocation list of `STORE=memory`: the index alone. A restart forgets every logout.
#[derive(Debug)]
pub struct MemoryRevocations {
    index: RevocationIndex,
}

impl MemoryRevocations {
    /// An empty list holding at most `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        Self {
            index: RevocationIndex::new(capacity),
        }
    }

    /// Revokes `token` at once.
    pub fn revoke_now(&self, token: RevokedToken, now: u64) -> Result<Revocation, RevokeError> {
        match self.index.admit(token, now)? {
            Admit::Skip(outcome) => Ok(outcome),
            Admit::Record(slot) => Ok(self.index.settle(slot, token, true)),
        }
    }
}

impl RevocationStore for MemoryRevocations {
    fn revoke(
        &self,
        token: RevokedToken,
        now: u64,
    ) -> BoxFuture<'_, Result<Revocation, RevokeError>> {
        Box::pin(future::ready(self.revoke_now(token, now)))
    }

    fn is_revoked(&self, jti: Uuid, now: u64) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(future::ready(Ok(self.index.contains(&jti, now))))
    }

    fn purge_expired(&self, now: u64) -> BoxFuture<'_, Result<usize, StoreError>> {
        Box::pin(future::ready(Ok(self.index.purge_expired(now))))
    }

    fn len(&self) -> usize {
        self.index.len()
    }

    fn capacity(&self) -> usize {
        self.index.capacity()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::auth::jwt::LEEWAY_SECONDS;

    const NOW: u64 = 1_000_000;

    fn token(exp: u64) -> RevokedToken {
        RevokedToken {
            jti: Uuid::new_v4(),
            exp,
        }
    }

    #[test]
    fn revoked_token_is_reported_until_it_expires() {
        let list = MemoryRevocations::new(10);
        let t = token(NOW + 10);
        assert!(!list.index.contains(&t.jti, NOW));
        assert_eq!(list.revoke_now(t, NOW), Ok(Revocation::Revoked));
        assert!(list.index.contains(&t.jti, NOW));
        assert!(
            list.index.contains(&t.jti, NOW + 11),
            "kept through the leeway"
        );
        assert!(
            !list.index.contains(&t.jti, NOW + 12),
            "lazily ignored once expired"
        );
    }

    #[test]
    fn revoking_twice_says_so() {
        let list = MemoryRevocations::new(10);
        let t = token(NOW + 10);
        assert_eq!(list.revoke_now(t, NOW), Ok(Revocation::Revoked));
        assert_eq!(list.revoke_now(t, NOW), Ok(Revocation::AlreadyRevoked));
        assert_eq!(list.len(), 1);
    }

    #[test]
    fn purge_forgets_only_expired_entries() {
        let list = MemoryRevocations::new(10);
        let short = token(NOW + 5);
        let long = token(NOW + 500);
        list.revoke_now(short, NOW).unwrap();
        list.revoke_now(long, NOW).unwrap();
        let past_short = NOW + 5 + LEEWAY_SECONDS;
        assert_eq!(list.index.purge_expired(past_short), 0);
        assert_eq!(list.index.purge_expired(past_short + 1), 1);
        assert_eq!(list.len(), 1);
        assert!(list.index.contains(&long.jti, past_short + 1));
    }

    #[test]
    fn already_expired_tokens_are_not_stored() {
        let list = MemoryRevocations::new(10);
        assert_eq!(
            list.revoke_now(token(NOW - LEEWAY_SECONDS - 1), NOW),
            Ok(Revocation::Revoked)
        );
        assert!(list.is_empty());
    }

    #[test]
    fn a_full_list_refuses_new_revocations_and_keeps_the_old_ones() {
        let list = MemoryRevocations::new(2);
        let kept = [token(NOW + 60), token(NOW + 60)];
        for t in kept {
            list.revoke_now(t, NOW).expect("room");
        }
        assert_eq!(
            list.revoke_now(token(NOW + 60), NOW),
            Err(RevokeError::Full { capacity: 2 })
        );
        assert_eq!(
            list.revoke_now(kept[0], NOW),
            Ok(Revocation::AlreadyRevoked),
            "a repeated logout is still recognised when full"
        );
        assert!(kept.iter().all(|t| list.index.contains(&t.jti, NOW)));
        let later = NOW + 60 + LEEWAY_SECONDS + 1;
        list.index.purge_expired(later);
        assert_eq!(
            list.revoke_now(token(NOW + 120), later),
            Ok(Revocation::Revoked)
        );
    }

    #[test]
    fn an_index_rebuilt_from_a_record_drops_expired_entries_and_keeps_the_rest() {
        let live = token(NOW + 60);
        let index = RevocationIndex::from_entries(1, [live, token(NOW - 60), token(NOW + 5)], NOW);
        assert_eq!(
            index.len(),
            2,
            "all live entries are kept, even past the cap"
        );
        assert!(index.contains(&live.jti, NOW));
    }

    #[test]
    fn an_unrecorded_admission_frees_its_slot() {
        let index = RevocationIndex::new(1);
        let t = token(NOW + 60);
        let Ok(Admit::Record(slot)) = index.admit(t, NOW) else {
            panic!("room for one");
        };
        assert!(matches!(
            index.admit(token(NOW + 60), NOW),
            Err(RevokeError::Full { .. })
        ));
        index.settle(slot, t, false);
        assert!(!index.contains(&t.jti, NOW));
        assert!(matches!(index.admit(t, NOW), Ok(Admit::Record(_))));
    }

    #[test]
    fn concurrent_revocations_of_one_token_succeed_once() {
        let list = Arc::new(MemoryRevocations::new(100));
        let shared = token(NOW + 60);
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let list = Arc::clone(&list);
                std::thread::spawn(move || {
                    let mine = token(NOW + 60);
                    let first = list.revoke_now(shared, NOW).expect("room");
                    list.revoke_now(mine, NOW).expect("room");
                    assert!(list.index.contains(&mine.jti, NOW));
                    first
                })
            })
            .collect();
        let outcomes: Vec<Revocation> = threads
            .into_iter()
            .map(|t| t.join().expect("no panic"))
            .collect();
        let winners = outcomes
            .iter()
            .filter(|o| **o == Revocation::Revoked)
            .count();
        assert_eq!(winners, 1);
        assert_eq!(list.len(), 9);
    }
}
