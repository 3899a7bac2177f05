//! Naive recursive Fibonacci: the deliberately expensive computation of the heavy-task routes.
//!
//! The point of these routes is the CPU cost, so nothing here memoizes or uses the closed form:
//! `fib(n)` makes about `2 * fib(n + 1)` calls. [`fib_cancellable`] is the same recursion with a
//! stop check at coarse levels only (`n >= CANCEL_CHECK_MIN_N`); below that it calls [`fib`], so
//! the hot part of the tree runs exactly as fast as plain recursion while a cancelled job still
//! stops within a few milliseconds.

/// Largest `n` whose Fibonacci number fits in a `u64` (`fib(93) = 12200160415121876738`).
pub const MAX_N: u32 = 93;

/// Subtrees below this `n` run without checking for cancellation. `fib(25)` takes well under
/// a millisecond in a release build (a few in a debug build), which bounds how long a cancelled
/// job keeps running, while the number of checks stays tiny (20 for `n = 30`, about 28 000 for
/// `n = 45`).
pub const CANCEL_CHECK_MIN_N: u32 = 25;

/// The job was asked to stop before it finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("computation cancelled")]
pub struct Cancelled;

/// The `n`-th Fibonacci number by naive recursion (`fib(0) = 0`, `fib(1) = 1`).
///
/// `n` must be at most [`MAX_N`]; beyond it the sum overflows (a panic in debug builds).
pub fn fib(n: u32) -> u64 {
    if n < 2 {
        u64::from(n)
    } else {
        fib(n - 1) + fib(n - 2)
    }
}

/// [`fib`], stopping early once `should_stop` returns `true`.
///
/// `should_stop` is called only at recursion levels with `n >= CANCEL_CHECK_MIN_N`, so a small
/// `n` always completes and a large one stops within one `fib(CANCEL_CHECK_MIN_N)` subtree.
pub fn fib_cancellable(n: u32, should_stop: &impl Fn() -> bool) -> Result<u64, Cancelled> {
    if n < CANCEL_CHECK_MIN_N {
        return Ok(fib(n));
    }
    if should_stop() {
        return Err(Cancelled);
    }
    Ok(fib_cancellable(n - 1, should_stop)? + fib_cancellable(n - 2, should_stop)?)
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    /// Linear-time reference, independent of the code under test (`u128` so that computing
    /// `fib(n + 1)` along the way cannot overflow).
    fn fib_iterative(n: u32) -> u64 {
        let (mut a, mut b) = (0u128, 1u128);
        for _ in 0..n {
            (a, b) = (b, a + b);
        }
        u64::try_from(a).expect("fib(n) fits in u64 for n <= MAX_N")
    }

    #[test]
    fn reference_matches_known_values() {
        assert_eq!(fib_iterative(0), 0);
        assert_eq!(fib_iterative(1), 1);
        assert_eq!(fib_iterative(30), 832_040);
        assert_eq!(fib_iterative(40), 102_334_155);
        assert_eq!(fib_iterative(MAX_N), 12_200_160_415_121_876_738);
    }

    #[test]
    fn recursion_matches_the_reference() {
        for n in 0..=27 {
            assert_eq!(fib(n), fib_iterative(n), "fib({n})");
        }
    }

    #[test]
    fn cancellable_recursion_matches_when_never_stopped() {
        for n in [0, 1, 2, 24, 25, 26, 30] {
            assert_eq!(
                fib_cancellable(n, &|| false),
                Ok(fib_iterative(n)),
                "n = {n}"
            );
        }
    }

    #[test]
    fn a_stopped_job_returns_cancelled() {
        assert_eq!(fib_cancellable(30, &|| true), Err(Cancelled));
        assert_eq!(fib_cancellable(MAX_N, &|| true), Err(Cancelled));
    }

    #[test]
    fn small_inputs_complete_without_checking() {
        let checks = Cell::new(0u32);
        let stop = || {
            checks.set(checks.get() + 1);
            true
        };
        assert_eq!(fib_cancellable(CANCEL_CHECK_MIN_N - 1, &stop), Ok(46_368));
        assert_eq!(checks.get(), 0);
    }

    #[test]
    fn checks_happen_only_at_coarse_levels() {
        // Nodes of the call tree with n >= CANCEL_CHECK_MIN_N, each checked once.
        fn coarse_nodes(n: u32) -> u32 {
            if n < CANCEL_CHECK_MIN_N {
                0
            } else {
                1 + coarse_nodes(n - 1) + coarse_nodes(n - 2)
            }
        }
        let checks = Cell::new(0u32);
        let count = || {
            checks.set(checks.get() + 1);
            false
        };
        assert_eq!(fib_cancellable(30, &count), Ok(832_040));
        assert_eq!(checks.get(), coarse_nodes(30));
        assert_eq!(checks.get(), 20);
    }

    #[test]
    fn a_job_stops_soon_after_the_request() {
        let checks = Cell::new(0u32);
        let stop_on_third = || {
            checks.set(checks.get() + 1);
            checks.get() >= 3
        };
        assert_eq!(fib_cancellable(40, &stop_on_third), Err(Cancelled));
        assert_eq!(checks.get(), 3, "no check after the stop was seen");
    }
}
