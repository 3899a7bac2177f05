//! Password hashes: argon2id in the PHC string format, and their verification off the async
//! runtime.
//!
//! A verification costs tens of milliseconds of CPU and the hash's memory (19 MiB with the
//! default [`HashParams`]) on purpose: that is what makes a stolen `AUTH_USERS` slow to
//! crack. So it never runs on a runtime thread: [`PasswordCheck`] sends each one to a blocking
//! pool of its own, `LOGIN_VERIFY_MAX_CONCURRENT` threads, at most that many at once (the
//! others wait their turn without a thread), and the permit travels with the job, so a client
//! that goes away mid-check frees nothing early. The pool's threads run at a lower priority,
//! like the compute pool's (see [`crate::compute::priority`]): a burst of logins takes the CPU
//! time the runtime threads leave, so the light routes keep answering in milliseconds. A login for an unknown user is checked against a dummy hash made with the same
//! parameters as the configured ones, so the answer takes as long as for a wrong password.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

/// The prefix of every secret this server accepts as a hash.
pub const ARGON2ID_PREFIX: &str = "$argon2id$";

/// The cost of new hashes (`backflow hash-password`) and of the dummy one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashParams {
    /// `ARGON2_MEMORY_KIB`.
    pub memory_kib: u32,
    /// `ARGON2_ITERATIONS`.
    pub iterations: u32,
    /// `ARGON2_PARALLELISM`.
    pub parallelism: u32,
}

impl Default for HashParams {
    /// The RFC 9106 / OWASP second recommendation, argon2's own default: 19 MiB, 2 passes, 1
    /// lane.
    fn default() -> Self {
        Self {
            memory_kib: Params::DEFAULT_M_COST,
            iterations: Params::DEFAULT_T_COST,
            parallelism: Params::DEFAULT_P_COST,
        }
    }
}

impl HashParams {
    /// The least work argon2 accepts (8 KiB, one pass): no protection at all, for tests that
    /// need many hashes quickly.
    pub const CHEAPEST: Self = Self {
        memory_kib: 8,
        iterations: 1,
        parallelism: 1,
    };

    fn hasher(self) -> Result<Argon2<'static>, argon2::Error> {
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, None)?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }

    /// The parameters of an argon2 PHC string, if it is one.
    pub fn of(phc: &str) -> Option<Self> {
        let hash = PasswordHash::new(phc).ok()?;
        hash.salt?;
        hash.hash?;
        let params = Params::try_from(&hash).ok()?;
        Some(Self {
            memory_kib: params.m_cost(),
            iterations: params.t_cost(),
            parallelism: params.p_cost(),
        })
    }
}

/// Hashes `password` with a fresh random salt: the PHC string to put in `AUTH_USERS`.
pub fn hash_password(password: &str, params: HashParams) -> Result<String, argon2::Error> {
    let salt = SaltString::generate(&mut OsRng);
    params
        .hasher()?
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|_| argon2::Error::OutputTooShort)
}

/// Whether `phc` is an argon2id hash this server can verify.
pub fn is_argon2id(phc: &str) -> bool {
    phc.starts_with(ARGON2ID_PREFIX) && HashParams::of(phc).is_some()
}

/// Checks `password` against `phc`, in constant time (blocking: tens of milliseconds).
pub fn verify_blocking(phc: &str, password: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|hash| {
        Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok()
    })
}

/// Why a [`PasswordCheck`] could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PasswordCheckError {
    /// argon2 refused the parameters of the dummy hash.
    #[error("cannot make the dummy password hash: {0}")]
    Hash(#[from] argon2::Error),
    /// The verification threads could not be started.
    #[error("cannot start the password verification threads: {0}")]
    Pool(#[from] rayon::ThreadPoolBuildError),
}

/// Verifies hashes on threads of its own, a bounded number at once.
#[derive(Clone)]
pub struct PasswordCheck {
    permits: Arc<Semaphore>,
    pool: Arc<rayon::ThreadPool>,
    dummy: Arc<str>,
    verified: Arc<AtomicU64>,
}

impl std::fmt::Debug for PasswordCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordCheck")
            .field("threads", &self.pool.current_num_threads())
            .field("verified", &self.verifications())
            .finish_non_exhaustive()
    }
}

impl PasswordCheck {
    /// At most `max_concurrent` verifications at once; unknown users are checked against a
    /// hash made with `params`.
    pub fn new(max_concurrent: usize, params: HashParams) -> Result<Self, PasswordCheckError> {
        let threads = max_concurrent.max(1);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("backflow-argon2-{i}"))
            .start_handler(|_| crate::compute::priority::lower_current_thread())
            .build()?;
        Ok(Self {
            permits: Arc::new(Semaphore::new(threads)),
            pool: Arc::new(pool),
            dummy: hash_password("not the password of anyone", params)?.into(),
            verified: Arc::default(),
        })
    }

    /// Whether `password` matches `phc`; with `None` (no such user) a dummy hash is checked
    /// just as long and the answer is `false`.
    pub async fn verify(&self, phc: Option<Arc<str>>, password: &str) -> bool {
        let known = phc.is_some();
        let phc = phc.unwrap_or_else(|| self.dummy.clone());
        let password = password.to_owned();
        let Ok(permit) = self.permits.clone().acquire_owned().await else {
            return false;
        };
        let verified = self.verified.clone();
        let (answer, matched) = tokio::sync::oneshot::channel();
        self.pool.spawn(move || {
            let _permit = permit;
            let matched = verify_blocking(&phc, &password);
            verified.fetch_add(1, Ordering::Relaxed);
            let _ = answer.send(matched);
        });
        // Awaited whoever the user is: an unknown one waits for the dummy hash like the others.
        let matched = matched.await.unwrap_or(false);
        known && matched
    }

    /// Hashes verified so far, the dummy one included.
    pub fn verifications(&self) -> u64 {
        self.verified.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHEAP: HashParams = HashParams::CHEAPEST;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let phc = hash_password("correct horse", CHEAP).expect("hashed");
        assert!(phc.starts_with("$argon2id$v=19$m=8,t=1,p=1$"), "{phc}");
        assert!(is_argon2id(&phc));
        assert!(verify_blocking(&phc, "correct horse"));
        assert!(!verify_blocking(&phc, "correct horse "));
        assert_ne!(phc, hash_password("correct horse", CHEAP).expect("hashed"));
        assert_eq!(HashParams::of(&phc), Some(CHEAP));
    }

    #[test]
    fn other_strings_are_not_argon2id_hashes() {
        for text in [
            "admin123",
            "$argon2id$",
            "$argon2i$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA",
        ] {
            assert!(!is_argon2id(text), "{text}");
            assert!(!verify_blocking(text, "admin123"));
        }
    }

    #[tokio::test]
    async fn an_unknown_user_never_matches() {
        let check = PasswordCheck::new(2, CHEAP).expect("dummy hash");
        let phc: Arc<str> = hash_password("pw", CHEAP).expect("hashed").into();
        assert!(check.verify(Some(phc.clone()), "pw").await);
        assert!(!check.verify(Some(phc), "other").await);
        assert!(!check.verify(None, "not the password of anyone").await);
        assert_eq!(check.verifications(), 3, "the unknown user's check too");
    }
}
