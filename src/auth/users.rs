//! The users allowed to log in, and a credential check that leaks nothing through timing.
//!
//! A user's secret is an argon2id hash (required in production) or, in development, a plain
//! password. The username is found by comparing fixed-length SHA-256 digests with `subtle`
//! against *every* configured user, without early exit. A hash is then verified on the
//! blocking pool ([`PasswordCheck`]); a plain password is compared digest to digest in
//! constant time. An unknown username still costs a verification, against a dummy hash with the
//! configured users' parameters, so response times tell neither how much of a guess was right
//! nor which usernames exist.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use super::access::Scopes;
use super::password::{self, HashParams, PasswordCheck, PasswordCheckError};
use crate::config::UserCredential;

type Digest32 = [u8; 32];

/// A successfully authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticatedUser {
    /// Position in `AUTH_USERS`, from 1.
    pub id: u64,
    pub username: String,
    /// What the user may do.
    pub scopes: Scopes,
}

enum StoredSecret {
    /// A plain password (development only), as its digest.
    Plain(Digest32),
    /// An argon2id PHC string.
    Hash(Arc<str>),
}

struct StoredUser {
    id: u64,
    username: String,
    username_digest: Digest32,
    secret: StoredSecret,
    scopes: Scopes,
}

/// The configured users.
pub struct UserDirectory {
    users: Vec<StoredUser>,
    /// Verifies hashes; `None` when no user has one (plain passwords only, in development).
    check: Option<PasswordCheck>,
}

impl std::fmt::Debug for UserDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.users.iter().map(|u| &u.username))
            .finish()
    }
}

impl UserDirectory {
    /// The directory of `users`; ids follow their order, from 1 (as in the original demo). At
    /// most `max_concurrent` hashes are verified at once.
    pub fn new(
        users: &[UserCredential],
        max_concurrent: usize,
    ) -> Result<Self, PasswordCheckError> {
        let users: Vec<StoredUser> = (1..)
            .zip(users)
            .map(|(id, user)| StoredUser {
                id,
                username: user.username.clone(),
                username_digest: digest(&user.username),
                secret: if password::is_argon2id(&user.secret) {
                    StoredSecret::Hash(user.secret.as_str().into())
                } else {
                    StoredSecret::Plain(digest(&user.secret))
                },
                scopes: user.scopes,
            })
            .collect();
        // The dummy hash costs what the configured ones cost.
        let params = users.iter().find_map(|user| match &user.secret {
            StoredSecret::Hash(phc) => HashParams::of(phc),
            StoredSecret::Plain(_) => None,
        });
        let check = params
            .map(|params| PasswordCheck::new(max_concurrent, params))
            .transpose()?;
        Ok(Self { users, check })
    }

    /// The user with this username and password.
    pub async fn authenticate(&self, username: &str, password: &str) -> Option<AuthenticatedUser> {
        let user = self.find(username);
        let matched = match (user.map(|u| &u.secret), &self.check) {
            (Some(StoredSecret::Hash(phc)), Some(check)) => {
                check.verify(Some(phc.clone()), password).await
            }
            (None, Some(check)) => check.verify(None, password).await,
            (Some(StoredSecret::Plain(expected)), _) => {
                bool::from(expected.ct_eq(&digest(password)))
            }
            (Some(StoredSecret::Hash(_)) | None, None) => {
                // No hash to compare with: cost the same digest as a plain password would.
                let _ = digest(password);
                false
            }
        };
        let user = user.filter(|_| matched)?;
        Some(AuthenticatedUser {
            id: user.id,
            username: user.username.clone(),
            scopes: user.scopes,
        })
    }

    /// The scopes of the user with this id and name, while it is configured: a token of a user
    /// that was removed (or renamed) is worth nothing.
    pub fn current_scopes(&self, id: u64, username: &str) -> Option<Scopes> {
        let index = usize::try_from(id.checked_sub(1)?).ok()?;
        self.users
            .get(index)
            .filter(|user| user.username == username)
            .map(|user| user.scopes)
    }

    /// Password hashes verified so far (the dummy hash of unknown users included).
    pub fn hash_verifications(&self) -> u64 {
        self.check.as_ref().map_or(0, PasswordCheck::verifications)
    }

    /// The configured user named `username`, found in constant time.
    fn find(&self, username: &str) -> Option<&StoredUser> {
        let wanted = digest(username);
        // Ids start at 1, so 0 means "no match"; every user is visited whatever the input.
        let mut matched_id = 0u64;
        for user in &self.users {
            let matches = user.username_digest.ct_eq(&wanted);
            matched_id = u64::conditional_select(&matched_id, &user.id, matches);
        }
        self.users.iter().find(|user| user.id == matched_id)
    }
}

fn digest(text: &str) -> Digest32 {
    Sha256::digest(text.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHEAP: HashParams = HashParams::CHEAPEST;

    fn user(username: &str, secret: &str, scopes: Scopes) -> UserCredential {
        UserCredential {
            username: username.into(),
            secret: secret.into(),
            scopes,
        }
    }

    fn directory() -> UserDirectory {
        let hashed = password::hash_password("worker-pw", CHEAP).expect("hashed");
        let enqueue = Scopes::parse_list("enqueue").expect("valid");
        UserDirectory::new(
            &[
                user("admin", "admin123", Scopes::ALL),
                user("user", "user123", Scopes::ALL),
                user("worker", &hashed, enqueue),
            ],
            2,
        )
        .expect("directory")
    }

    #[tokio::test]
    async fn right_credentials_give_the_user_its_id_and_scopes() {
        let users = directory();
        assert_eq!(
            users.authenticate("user", "user123").await,
            Some(AuthenticatedUser {
                id: 2,
                username: "user".into(),
                scopes: Scopes::ALL,
            })
        );
        let worker = users
            .authenticate("worker", "worker-pw")
            .await
            .expect("hash");
        assert_eq!(
            (worker.id, worker.scopes.to_string()),
            (3, "enqueue".into())
        );
    }

    #[tokio::test]
    async fn wrong_or_crossed_credentials_give_nothing() {
        let users = directory();
        for (u, p) in [
            ("admin", "user123"),
            ("user", "admin123"),
            ("admin", "admin1234"),
            ("Admin", "admin123"),
            ("nobody", "admin123"),
            ("worker", "admin123"),
            ("", ""),
        ] {
            assert_eq!(users.authenticate(u, p).await, None, "{u}:{p}");
        }
    }

    #[test]
    fn only_configured_users_have_current_scopes() {
        let users = directory();
        assert_eq!(users.current_scopes(1, "admin"), Some(Scopes::ALL));
        assert_eq!(users.current_scopes(1, "user"), None);
        assert_eq!(users.current_scopes(0, "admin"), None);
        assert_eq!(users.current_scopes(9, "admin"), None);
    }
}
