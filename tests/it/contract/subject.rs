//! The stores under test: one [`Backend`] opened for one behaviour, with the settings it needs,
//! and the means to make it fail where it can fail.
//!
//! - `memory`: [`backflow::store::memory`], in this process;
//! - `embedded`: SQLite in a temporary `DATA_DIR`, over a record that refuses every commit
//!   while it is told to ([`faults`]), as a full or broken disk would;
//! - `redis`: a real `redis-server` of the behaviour's own, keeping an append-only file so that
//!   killing and restarting it is an outage, not a loss; keys under a prefix of their own.

use backflow::Config;
use backflow::metrics::Metrics;
use backflow::store::Stores;
use tempfile::TempDir;

use crate::common::eventually;
use crate::common::faults::{self, FaultSwitch};
use crate::common::redis::{Persistence, RedisServer, unique_prefix};

/// Where the stores keep their state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `STORE=memory`.
    Memory,
    /// `STORE=embedded`.
    Embedded,
    /// `STORE=redis`.
    Redis,
}

/// Named in lower case, as the tests of each backend are, for the table of
/// [`contract!`](super::contract) to call.
impl Backend {
    /// `STORE=memory`.
    pub fn memory() -> Self {
        Self::Memory
    }

    /// `STORE=embedded`.
    pub fn embedded() -> Self {
        Self::Embedded
    }

    /// `STORE=redis`.
    pub fn redis() -> Self {
        Self::Redis
    }

    /// Opens this backend's stores with `settings` (such as `("QUEUE_CAPACITY", "2")`) on a
    /// directory or Redis server of their own.
    pub async fn open(self, settings: &[(&str, &str)]) -> Subject {
        match self {
            Self::Memory => Subject {
                stores: backflow::store::memory(&config(settings)),
                backing: Backing::Memory,
            },
            Self::Embedded => {
                let dir = tempfile::tempdir().expect("a data directory");
                let data_dir = dir.path().to_str().expect("a UTF-8 path").to_owned();
                let mut pairs = vec![("DATA_DIR", data_dir.as_str())];
                pairs.extend_from_slice(settings);
                let (stores, faults) =
                    faults::open_embedded(&config(&pairs), &Metrics::new()).await;
                Subject {
                    stores,
                    backing: Backing::Embedded { faults, _dir: dir },
                }
            }
            Self::Redis => {
                let server = RedisServer::start_with(Persistence::AppendOnly).await;
                let stores = open_redis(&server, settings);
                Subject {
                    stores,
                    backing: Backing::Redis(Some(server)),
                }
            }
        }
    }
}

/// The stores of one behaviour on one backend.
pub struct Subject {
    /// The trait objects every behaviour is written against.
    pub stores: Stores,
    backing: Backing,
}

/// What keeps a subject's state, and how it fails.
enum Backing {
    Memory,
    Embedded {
        faults: FaultSwitch,
        _dir: TempDir,
    },
    /// The server, when the subject has one of its own.
    Redis(Option<RedisServer>),
}

impl Subject {
    /// The Redis stores with `settings` on `server`, which others share: under a prefix of
    /// their own, and unable to [`fail`](Self::fail).
    pub fn on_shared_redis(server: &RedisServer, settings: &[(&str, &str)]) -> Self {
        Self {
            stores: open_redis(server, settings),
            backing: Backing::Redis(None),
        }
    }

    /// From now on every change fails: the embedded store's record refuses each commit, the
    /// Redis server is killed.
    pub fn fail(&mut self) {
        match &mut self.backing {
            Backing::Memory => panic!("the memory store cannot fail"),
            Backing::Embedded { faults, .. } => faults.fail(),
            Backing::Redis(server) => server.as_mut().expect("a server of its own").kill(),
        }
    }

    /// Ends the failure (commits go through again; Redis starts again on its append-only
    /// file) and waits until the stores answer.
    pub async fn recover(&mut self) {
        match &mut self.backing {
            Backing::Memory => panic!("the memory store cannot fail"),
            Backing::Embedded { faults, .. } => faults.recover(),
            Backing::Redis(server) => {
                server
                    .as_mut()
                    .expect("a server of its own")
                    .restart()
                    .await
            }
        }
        let health = &self.stores.health;
        eventually("the stores answer again", || async {
            health.ping().await.is_ok()
        })
        .await;
    }

    /// Finishes pending writes and stops the stores' background tasks.
    pub async fn close(self) {
        self.stores.health.close().await;
    }
}

/// The configuration of `settings`, nothing else.
fn config(settings: &[(&str, &str)]) -> Config {
    Config::from_pairs(settings.iter().copied()).expect("valid settings")
}

/// The Redis stores on `server` with `settings`, under a prefix no other test uses, named
/// after the test that opens them.
fn open_redis(server: &RedisServer, settings: &[(&str, &str)]) -> Stores {
    let url = server.url();
    let test = std::thread::current()
        .name()
        .unwrap_or("contract")
        .to_owned();
    let prefix = unique_prefix(test.rsplit("::").nth(1).unwrap_or(&test));
    let mut pairs = vec![
        ("STORE", "redis"),
        ("REDIS_URL", url.as_str()),
        ("REDIS_PREFIX", prefix.as_str()),
    ];
    pairs.extend_from_slice(settings);
    backflow::store::redis::open(&config(&pairs), &Metrics::new()).expect("the Redis store opens")
}
