//! What every store promises, written once per trait and run on every backend: the queue
//! ([`queue`], `QueueStore`), the revocation list ([`revocations`], `RevocationStore`) and the
//! event stream ([`events`], `EventBus`), each against `memory`, `embedded` and `redis`.
//!
//! A behaviour is an `async fn(Backend)` that opens the stores it needs
//! ([`Backend::open`]) and speaks only to the trait objects of their
//! [`Stores`](backflow::store::Stores) bundle, so it cannot tell the backends apart. The
//! [`contract!`] table under each module makes one test per (behaviour, backend), named
//! `contract::<trait>::<behaviour>::<backend>`: a failure names both. A new behaviour is a
//! function and a name in that table; "a failure changes nothing" runs on the backends that
//! can fail ([`Subject::fail`]).

use std::time::Duration;

pub use subject::{Backend, Subject};

/// A bound on any single wait of a behaviour (a delivery, a background task): a guard against
/// a hang, not a timing.
pub const GUARD: Duration = Duration::from_secs(10);

/// One `#[tokio::test]` per (behaviour, backend), as `<behaviour>::<backend>`.
///
/// ```ignore
/// contract!(every backend: tasks_leave_by_priority, a_full_queue_refuses);
/// contract!(embedded, redis: a_failed_change_changes_nothing);
/// ```
macro_rules! contract {
    (every backend: $($behaviour:ident),+ $(,)?) => {
        contract!(memory, embedded, redis: $($behaviour),+);
    };
    ($($backend:ident),+ : $($behaviour:ident),+ $(,)?) => {
        contract!(@each [$($backend)+] $($behaviour)+);
    };
    (@each $backends:tt $($behaviour:ident)+) => {
        $( contract!(@behaviour $behaviour $backends); )+
    };
    (@behaviour $behaviour:ident [$($backend:ident)+]) => {
        mod $behaviour {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $backend() {
                    super::$behaviour($crate::contract::Backend::$backend()).await;
                }
            )+
        }
    };
}

// After the table's definition, so that every module sees it.
mod events;
mod leases;
mod queue;
mod revocations;
mod subject;
