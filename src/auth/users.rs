//! The users allowed to log in, and a credential check that leaks nothing through timing.
//!
//! A plain `==` on strings returns at the first differing byte, and a lookup by name answers
//! faster for unknown users, so response times would reveal how much of a guess was right and
//! which usernames exist. Here both the username and the password are reduced to fixed-length
//! SHA-256 digests and compared with `subtle` against *every* configured user, without early exit
//! or data-dependent branches. The digests only serve the comparison: they are not a password
//! storage scheme (the passwords come from configuration in plain text anyway).

use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use crate::config::UserCredential;

type Digest32 = [u8; 32];

/// A successfully authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticatedUser {
    /// Position in `AUTH_USERS`, from 1.
    pub id: u64,
    pub username: String,
}

struct StoredUser {
    id: u64,
    username: String,
    username_digest: Digest32,
    password_digest: Digest32,
}

/// The configured users.
pub struct UserDirectory {
    users: Vec<StoredUser>,
}

impl std::fmt::Debug for UserDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.users.iter().map(|u| &u.username))
            .finish()
    }
}

impl UserDirectory {
    /// The directory of `users`; ids follow their order, from 1 (as in the original demo).
    pub fn new(users: &[UserCredential]) -> Self {
        let users = (1..)
            .zip(users)
            .map(|(id, user)| StoredUser {
                id,
                username: user.username.clone(),
                username_digest: digest(&user.username),
                password_digest: digest(&user.password),
            })
            .collect();
        Self { users }
    }

    /// The user with this username and password, compared in constant time.
    pub fn authenticate(&self, username: &str, password: &str) -> Option<AuthenticatedUser> {
        let username_digest = digest(username);
        let password_digest = digest(password);
        // Ids start at 1, so 0 means "no match"; every user is visited whatever the input.
        let mut matched_id = 0u64;
        for user in &self.users {
            let matches = user.username_digest.ct_eq(&username_digest)
                & user.password_digest.ct_eq(&password_digest);
            matched_id = u64::conditional_select(&matched_id, &user.id, matches);
        }
        self.users
            .iter()
            .find(|user| user.id == matched_id)
            .map(|user| AuthenticatedUser {
                id: user.id,
                username: user.username.clone(),
            })
    }
}

fn digest(text: &str) -> Digest32 {
    Sha256::digest(text.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn directory() -> UserDirectory {
        let user = |u: &str, p: &str| UserCredential {
            username: u.into(),
            password: p.into(),
        };
        UserDirectory::new(&[user("admin", "admin123"), user("user", "user123")])
    }

    #[test]
    fn right_credentials_give_the_user_and_its_id() {
        let users = directory();
        assert_eq!(
            users.authenticate("user", "user123"),
            Some(AuthenticatedUser {
                id: 2,
                username: "user".into()
            })
        );
        assert_eq!(
            users.authenticate("admin", "admin123").map(|u| u.id),
            Some(1)
        );
    }

    #[test]
    fn wrong_or_crossed_credentials_give_nothing() {
        let users = directory();
        for (u, p) in [
            ("admin", "user123"),
            ("user", "admin123"),
            ("admin", "admin1234"),
            ("Admin", "admin123"),
            ("nobody", "admin123"),
            ("", ""),
        ] {
            assert_eq!(users.authenticate(u, p), None, "{u}:{p}");
        }
    }
}
