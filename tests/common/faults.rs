//! The embedded store over a record that fails while it is told to, as a full or broken disk
//! would: for the tests of what a failure changes (nothing), in the store and over HTTP.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use backflow::Config;
use backflow::metrics::Metrics;
use backflow::store::embedded::database::Database;
use backflow::store::embedded::journal::Record;
use backflow::store::embedded::{self, Write};
use backflow::store::{StoreError, Stores};

/// Turns the failure of one store's record on and off.
#[derive(Debug, Clone, Default)]
pub struct FaultSwitch(Arc<AtomicBool>);

impl FaultSwitch {
    /// From now on, every commit fails.
    pub fn fail(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// From now on, commits go through again.
    pub fn recover(&self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// Opens the embedded store of `config` over a record that refuses every commit while the
/// returned switch says so.
pub async fn open_embedded(config: &Config, metrics: &Metrics) -> (Stores, FaultSwitch) {
    let switch = FaultSwitch::default();
    let failing = switch.clone();
    let stores = embedded::open_with(config, metrics, move |inner| Faulty { inner, failing })
        .await
        .expect("the embedded store opens");
    (stores, switch)
}

/// The store's own record, refusing every commit while its switch is on.
struct Faulty {
    inner: Database,
    failing: FaultSwitch,
}

impl Record for Faulty {
    fn commit(&mut self, writes: &[Write]) -> Result<Vec<usize>, StoreError> {
        if self.failing.0.load(Ordering::SeqCst) {
            return Err(StoreError::new("disk I/O error (injected)"));
        }
        self.inner.commit(writes)
    }

    fn close(&mut self) {
        self.inner.close();
    }
}
