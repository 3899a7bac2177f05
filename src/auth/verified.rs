//! A bounded cache of tokens whose signature and claims have already been verified.
//!
//! A client sends the same bearer token with every request for the token's whole lifetime, and
//! verifying it again each time (two base64 decodes, an HMAC, two JSON parses) is most of what a
//! protected route costs. The cache maps the token's exact text to its verified
//! [`Principal`] (the claims, and the scopes they grant while the user is configured), as API
//! gateways do (Envoy's `jwt_authn` filter keeps the same kind of cache); so a scope check is
//! one bit test on a cached value:
//!
//! - only tokens that passed [`TokenCodec::verify`](super::jwt::TokenCodec::verify) are stored,
//!   and a hit needs the very same bytes, so no unverified token can ever be served from it;
//! - expiry is checked again on every hit, with the same leeway as the verifier;
//! - revocation is not cached: [`AuthService::authenticate`](super::AuthService::authenticate)
//!   consults the revocation list on every request, hit or miss;
//! - it holds at most `TOKEN_CACHE_CAPACITY` tokens (about 400 bytes each), evicting the least
//!   useful ones (quick_cache's S3-FIFO-like policy); 0 turns it off.
//!
//! The signing key and the users never change while the process runs, so a cached verdict
//! cannot go stale.

use std::sync::Arc;

use quick_cache::sync::Cache;

use super::Principal;
use super::jwt;

/// Verified tokens and what they grant.
pub struct VerifiedTokens {
    cache: Option<Cache<Box<str>, Arc<Principal>>>,
}

impl std::fmt::Debug for VerifiedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedTokens")
            .field("len", &self.len())
            .finish()
    }
}

impl VerifiedTokens {
    /// A cache of at most `capacity` tokens; 0 disables it.
    pub fn new(capacity: usize) -> Self {
        Self {
            cache: (capacity > 0).then(|| Cache::new(capacity)),
        }
    }

    /// What `token` grants if it was verified before and has not expired at `now` (Unix
    /// seconds). An expired entry is dropped, so the caller's full verification reports it.
    pub fn get(&self, token: &str, now: u64) -> Option<Arc<Principal>> {
        let cache = self.cache.as_ref()?;
        let principal = cache.get(token)?;
        if jwt::accepted_at(principal.claims.exp, now) {
            Some(principal)
        } else {
            cache.remove(token);
            None
        }
    }

    /// Remembers that `token` verified to `principal`.
    pub fn insert(&self, token: &str, principal: &Arc<Principal>) {
        if let Some(cache) = &self.cache {
            cache.insert(token.into(), principal.clone());
        }
    }

    /// Tokens currently cached.
    pub fn len(&self) -> usize {
        self.cache.as_ref().map_or(0, Cache::len)
    }

    /// Whether no token is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::access::Scopes;
    use crate::auth::jwt::{Claims, LEEWAY_SECONDS};

    fn claims(exp: u64) -> Arc<Principal> {
        Arc::new(Principal::new(
            Claims {
                user_id: 1,
                username: "admin".into(),
                jti: uuid::Uuid::new_v4(),
                iat: exp.saturating_sub(3600),
                exp,
                iss: "backflow".into(),
                aud: "backflow".into(),
                scope: Scopes::ALL.to_string(),
            },
            Scopes::ALL,
        ))
    }

    #[test]
    fn a_stored_token_is_found_by_its_exact_text_only() {
        let cache = VerifiedTokens::new(10);
        let stored = claims(10_000);
        cache.insert("aaa.bbb.ccc", &stored);
        assert_eq!(cache.get("aaa.bbb.ccc", 5_000), Some(stored));
        assert_eq!(cache.get("aaa.bbb.ccd", 5_000), None);
        assert_eq!(cache.get("aaa.bbb.cc", 5_000), None);
    }

    #[test]
    fn an_expired_token_is_not_served_and_is_dropped() {
        let cache = VerifiedTokens::new(10);
        cache.insert("t", &claims(1_000));
        assert!(
            cache.get("t", 1_000 + LEEWAY_SECONDS).is_some(),
            "within the leeway"
        );
        assert_eq!(cache.get("t", 1_000 + LEEWAY_SECONDS + 1), None);
        assert!(cache.is_empty());
    }

    #[test]
    fn the_capacity_bounds_the_entries_and_zero_disables_it() {
        let cache = VerifiedTokens::new(100);
        for i in 0..1_000 {
            cache.insert(&format!("token-{i}"), &claims(10_000));
        }
        assert!(cache.len() <= 100, "{} entries", cache.len());

        let off = VerifiedTokens::new(0);
        off.insert("t", &claims(10_000));
        assert_eq!(off.get("t", 0), None);
        assert!(off.is_empty());
    }
}
