//! The revocation list: ids of tokens logged out before they expired.
//!
//! A revoked token only needs remembering while it could still pass verification, that is until
//! its own `exp` (plus the verification leeway). Each entry therefore keeps that `exp`, and
//! [`RevocationList::purge_expired`] (run by a periodic sweep) forgets entries past it, so memory
//! is bounded by the revoked tokens that are still alive, never by history.
//!
//! Every authenticated request reads this list, so the in-memory store is a sharded map
//! (`dashmap`): checks on different tokens never wait for one another and a logout only locks one
//! shard. A multi-instance deployment would put a Redis-backed store behind the same trait.

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One revoked token, as saved in the snapshot.
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

/// A store of revoked token ids. Implementations must be safe to call from many tasks at once.
pub trait RevocationList: Send + Sync + 'static {
    /// Revokes `token` until its `exp` has passed.
    fn revoke(&self, token: RevokedToken, now: u64) -> Revocation;

    /// Whether `jti` is revoked at Unix time `now`.
    fn is_revoked(&self, jti: &Uuid, now: u64) -> bool;

    /// Forgets entries whose token can no longer pass verification; returns how many.
    fn purge_expired(&self, now: u64) -> usize;

    /// Number of entries held (revoked tokens not purged yet).
    fn len(&self) -> usize;

    /// Whether no entry is held.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The entries still in force at `now`, for the snapshot written at shutdown. A store that is
    /// durable by itself may return an empty list.
    fn live_entries(&self, now: u64) -> Vec<RevokedToken>;
}

/// The default, in-process [`RevocationList`].
#[derive(Debug)]
pub struct InMemoryRevocationList {
    /// `jti` -> token `exp`.
    entries: DashMap<Uuid, u64>,
    /// Seconds a token outlives its `exp` at verification; entries are kept that much longer.
    leeway: u64,
}

impl InMemoryRevocationList {
    /// An empty list for tokens verified with `leeway` seconds of tolerance.
    pub fn new(leeway: u64) -> Self {
        Self {
            entries: DashMap::new(),
            leeway,
        }
    }

    /// A list holding the still-live `entries` (from a snapshot); expired ones are dropped.
    pub fn from_entries(
        leeway: u64,
        entries: impl IntoIterator<Item = RevokedToken>,
        now: u64,
    ) -> Self {
        let list = Self::new(leeway);
        for entry in entries {
            list.revoke(entry, now);
        }
        list
    }

    fn in_force(&self, exp: u64, now: u64) -> bool {
        exp.saturating_add(self.leeway) >= now
    }
}

impl RevocationList for InMemoryRevocationList {
    fn revoke(&self, token: RevokedToken, now: u64) -> Revocation {
        if !self.in_force(token.exp, now) {
            // Expired tokens are refused by verification anyway; remembering them is waste.
            return Revocation::Revoked;
        }
        match self.entries.entry(token.jti) {
            Entry::Occupied(_) => Revocation::AlreadyRevoked,
            Entry::Vacant(slot) => {
                slot.insert(token.exp);
                Revocation::Revoked
            }
        }
    }

    fn is_revoked(&self, jti: &Uuid, now: u64) -> bool {
        self.entries
            .get(jti)
            .is_some_and(|exp| self.in_force(*exp, now))
    }

    fn purge_expired(&self, now: u64) -> usize {
        let before = self.entries.len();
        self.entries.retain(|_, exp| self.in_force(*exp, now));
        if self.entries.capacity() > 4 * self.entries.len().max(64) {
            self.entries.shrink_to_fit();
        }
        before.saturating_sub(self.entries.len())
    }

    fn len(&self) -> usize {
        self.entries.len()
    }

    fn live_entries(&self, now: u64) -> Vec<RevokedToken> {
        self.entries
            .iter()
            .filter(|entry| self.in_force(*entry.value(), now))
            .map(|entry| RevokedToken {
                jti: *entry.key(),
                exp: *entry.value(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    const NOW: u64 = 1_000_000;

    fn token(exp: u64) -> RevokedToken {
        RevokedToken {
            jti: Uuid::new_v4(),
            exp,
        }
    }

    #[test]
    fn revoked_token_is_reported_until_it_expires() {
        let list = InMemoryRevocationList::new(1);
        let t = token(NOW + 10);
        assert!(!list.is_revoked(&t.jti, NOW));
        assert_eq!(list.revoke(t, NOW), Revocation::Revoked);
        assert!(list.is_revoked(&t.jti, NOW));
        assert!(list.is_revoked(&t.jti, NOW + 11), "kept through the leeway");
        assert!(
            !list.is_revoked(&t.jti, NOW + 12),
            "lazily ignored once expired"
        );
    }

    #[test]
    fn revoking_twice_says_so() {
        let list = InMemoryRevocationList::new(0);
        let t = token(NOW + 10);
        assert_eq!(list.revoke(t, NOW), Revocation::Revoked);
        assert_eq!(list.revoke(t, NOW), Revocation::AlreadyRevoked);
        assert_eq!(list.len(), 1);
    }

    #[test]
    fn purge_forgets_only_expired_entries() {
        let list = InMemoryRevocationList::new(0);
        let short = token(NOW + 5);
        let long = token(NOW + 500);
        list.revoke(short, NOW);
        list.revoke(long, NOW);
        assert_eq!(list.purge_expired(NOW + 5), 0);
        assert_eq!(list.purge_expired(NOW + 6), 1);
        assert_eq!(list.len(), 1);
        assert!(list.is_revoked(&long.jti, NOW + 6));
    }

    #[test]
    fn already_expired_tokens_are_not_stored() {
        let list = InMemoryRevocationList::new(0);
        assert_eq!(list.revoke(token(NOW - 1), NOW), Revocation::Revoked);
        assert!(list.is_empty());
    }

    #[test]
    fn restoring_drops_expired_entries() {
        let live = token(NOW + 60);
        let list = InMemoryRevocationList::from_entries(0, [live, token(NOW - 60)], NOW);
        assert_eq!(list.live_entries(NOW), vec![live]);
    }

    #[test]
    fn concurrent_revocations_of_one_token_succeed_once() {
        let list = Arc::new(InMemoryRevocationList::new(0));
        let shared = token(NOW + 60);
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let list = Arc::clone(&list);
                std::thread::spawn(move || {
                    let mine = token(NOW + 60);
                    let first = list.revoke(shared, NOW);
                    list.revoke(mine, NOW);
                    assert!(list.is_revoked(&mine.jti, NOW));
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
