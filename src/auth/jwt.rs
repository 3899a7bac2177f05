//! Issuing and verifying the HS256 access tokens.
//!
//! The verifier is deliberately narrow: the algorithm is pinned to HS256 (so `alg: none` and
//! algorithm-substitution tokens are refused before any signature work), `exp`, `iss` and `aud`
//! are required (`iss` and `aud` equal to `JWT_ISSUER` and `JWT_AUDIENCE`, so a token minted
//! for another service sharing the key is refused), the
//! clock leeway is an explicit constant rather than the library's 60 s default, and the payload
//! must carry every claim of [`Claims`]. Any failure is reported as one opaque
//! [`InvalidToken`]: the client is told "invalid or expired", never which check failed.

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::access::Scopes;
use crate::config::JwtSecret;

/// Seconds a token is still accepted after its `exp`. JWT times have one-second granularity, so
/// one second absorbs rounding between instances whose clocks agree; NTP keeps them closer.
pub const LEEWAY_SECONDS: u64 = 1;

/// Whether a token expiring at `exp` still passes verification at `now` (Unix seconds): until
/// its `exp` plus the leeway. The revocation list and the cache of verified tokens keep an entry
/// exactly that long.
pub fn accepted_at(exp: u64, now: u64) -> bool {
    exp.saturating_add(LEEWAY_SECONDS) >= now
}

/// The oldest `exp` a token can have and still pass verification at `now`: a revocation of a
/// token that expires earlier can be forgotten.
pub fn oldest_accepted_exp(now: u64) -> u64 {
    now.saturating_sub(LEEWAY_SECONDS)
}

/// Longest bearer token considered. Ours are about 250 bytes; anything far longer is refused
/// before base64 decoding so a huge header cannot buy CPU time.
pub const MAX_TOKEN_BYTES: usize = 4096;

/// The claims of an access token, in the wire names of the original API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Claims {
    /// Position of the user in `AUTH_USERS`, from 1 (the demo users are 1 and 2, as before).
    #[serde(rename = "userId")]
    pub user_id: u64,
    pub username: String,
    /// Unique token id (UUID v4); the key of the revocation list, shown as `tokenId` at login.
    pub jti: Uuid,
    /// Issued at, Unix seconds.
    pub iat: u64,
    /// Expires at, Unix seconds.
    pub exp: u64,
    /// Issuer: `JWT_ISSUER`.
    pub iss: String,
    /// Audience: `JWT_AUDIENCE`.
    pub aud: String,
    /// The user's scopes, space-separated (RFC 6749 section 3.3), e.g. `"enqueue consume"`.
    pub scope: String,
}

/// A token that failed verification, for whatever reason (deliberately not said).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid or expired token")]
pub struct InvalidToken;

/// Signs and verifies tokens with one HS256 key.
pub struct TokenCodec {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    lifetime: Duration,
    issuer: String,
    audience: String,
}

impl std::fmt::Debug for TokenCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCodec")
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

impl TokenCodec {
    /// A codec for `secret` issuing tokens valid for `lifetime` (whole seconds), from `issuer`
    /// to `audience`, and accepting only those.
    pub fn new(secret: &JwtSecret, lifetime: Duration, issuer: &str, audience: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_exp = true;
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
            lifetime,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
        }
    }

    /// How long issued tokens live.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// Signs a fresh token for this user and its scopes, issued at `now` (Unix seconds).
    pub fn issue(
        &self,
        user_id: u64,
        username: &str,
        scopes: Scopes,
        now: u64,
    ) -> Result<(String, Claims), jsonwebtoken::errors::Error> {
        let claims = Claims {
            user_id,
            username: username.to_owned(),
            jti: Uuid::new_v4(),
            iat: now,
            exp: now.saturating_add(self.lifetime.as_secs()),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            scope: scopes.to_string(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?;
        Ok((token, claims))
    }

    /// Checks the signature, algorithm, expiry and claim shapes of `token`.
    pub fn verify(&self, token: &str) -> Result<Claims, InvalidToken> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(InvalidToken);
        }
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|err| {
                tracing::debug!(%err, "token refused");
                InvalidToken
            })
    }
}

/// A lifetime in the style of the original's `expiresIn` (`"1h"`, `"30m"`, `"45s"`, `"1d"`):
/// the largest unit that divides it exactly.
pub fn format_lifetime(lifetime: Duration) -> String {
    let secs = lifetime.as_secs();
    let (value, unit) = [(86_400, 'd'), (3_600, 'h'), (60, 'm')]
        .into_iter()
        .find(|(unit_secs, _)| secs > 0 && secs.is_multiple_of(*unit_secs))
        .map_or((secs, 's'), |(unit_secs, unit)| (secs / unit_secs, unit));
    format!("{value}{unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codec(secret: &str) -> TokenCodec {
        TokenCodec::new(
            &JwtSecret::new(secret),
            Duration::from_secs(3600),
            "backflow",
            "backflow",
        )
    }

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    #[test]
    fn issued_token_verifies_to_the_same_claims() {
        let codec = codec("a-secret");
        let (token, claims) = codec.issue(7, "alice", Scopes::ALL, now()).expect("signed");
        assert_eq!(claims.exp - claims.iat, 3600);
        assert_eq!(codec.verify(&token), Ok(claims));
    }

    #[test]
    fn each_token_has_a_fresh_id() {
        let codec = codec("a-secret");
        let (_, a) = codec.issue(1, "a", Scopes::ALL, now()).expect("signed");
        let (_, b) = codec.issue(1, "a", Scopes::ALL, now()).expect("signed");
        assert_ne!(a.jti, b.jti);
        assert_eq!(a.jti.get_version_num(), 4);
    }

    #[test]
    fn another_issuer_or_audience_is_refused() {
        let secret = JwtSecret::new("k");
        let ttl = Duration::from_secs(60);
        let (token, claims) = TokenCodec::new(&secret, ttl, "other", "backflow")
            .issue(1, "a", Scopes::ALL, now())
            .expect("signed");
        assert_eq!(claims.scope, "enqueue consume compute");
        assert_eq!(codec("k").verify(&token), Err(InvalidToken));
        let (token, _) = TokenCodec::new(&secret, ttl, "backflow", "other")
            .issue(1, "a", Scopes::ALL, now())
            .expect("signed");
        assert_eq!(codec("k").verify(&token), Err(InvalidToken));
    }

    #[test]
    fn another_key_is_refused() {
        let (token, _) = codec("key-one")
            .issue(1, "a", Scopes::ALL, now())
            .expect("signed");
        assert_eq!(codec("key-two").verify(&token), Err(InvalidToken));
    }

    #[test]
    fn expired_beyond_the_leeway_is_refused() {
        let codec = codec("k");
        let issued = now() - 3600 - LEEWAY_SECONDS - 2;
        let (token, _) = codec.issue(1, "a", Scopes::ALL, issued).expect("signed");
        assert_eq!(codec.verify(&token), Err(InvalidToken));
    }

    #[test]
    fn garbage_and_oversized_tokens_are_refused() {
        let codec = codec("k");
        for token in ["", "abc", "a.b.c", "....", &"x".repeat(MAX_TOKEN_BYTES + 1)] {
            assert_eq!(codec.verify(token), Err(InvalidToken), "{token:.20}");
        }
    }

    #[test]
    fn lifetimes_are_written_like_the_original() {
        let cases = [
            (3600, "1h"),
            (1800, "30m"),
            (45, "45s"),
            (86_400, "1d"),
            (172_800, "2d"),
            (5400, "90m"),
            (3661, "3661s"),
            (7200, "2h"),
        ];
        for (secs, text) in cases {
            assert_eq!(format_lifetime(Duration::from_secs(secs)), text, "{secs}");
        }
    }
}
