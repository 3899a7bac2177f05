//! The process's limit on open files, raised as far as it goes at start-up.
//!
//! Every connection is a file descriptor, and the soft limit that many shells and service
//! managers leave (1 024) is far below what one instance can hold. The hard limit is the ceiling
//! an unprivileged process may raise its own soft limit to, which is what Go's runtime does at
//! start. Failing to raise it never stops start-up: `MAX_CONNECTIONS` is then sized from the
//! limit in force.

/// Raises the soft limit on open files to the hard limit, logs both, and returns the soft limit
/// now in force (`None` when there is none, or it cannot be read).
#[cfg(target_os = "linux")]
pub fn raise_open_file_limit() -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

    let Rlimit {
        current: soft,
        maximum: hard,
    } = getrlimit(Resource::Nofile);
    // With no hard limit, the kernel still refuses a soft limit above `fs.nr_open`.
    let ceiling = hard.or_else(kernel_ceiling);
    let (Some(soft), Some(ceiling)) = (soft, ceiling) else {
        tracing::info!(soft = shown(soft), hard = shown(hard), "open-file limit");
        return soft;
    };
    if ceiling <= soft {
        tracing::info!(
            soft,
            hard = shown(hard),
            "open-file limit (already the hard limit)"
        );
        return Some(soft);
    }
    let raised = Rlimit {
        current: Some(ceiling),
        maximum: hard,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => {
            tracing::info!(
                soft_before = soft,
                soft = ceiling,
                hard = shown(hard),
                "open-file limit raised to the hard limit"
            );
            Some(ceiling)
        }
        Err(err) => {
            tracing::warn!(
                soft,
                hard = shown(hard),
                error = %err,
                "cannot raise the open-file limit; connections are sized from the soft limit"
            );
            Some(soft)
        }
    }
}

/// Without the means to read or raise the limit: nothing known.
#[cfg(not(target_os = "linux"))]
pub fn raise_open_file_limit() -> Option<u64> {
    None
}

/// `fs.nr_open`, the most file descriptors the kernel lets one process have.
#[cfg(target_os = "linux")]
fn kernel_ceiling() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(target_os = "linux")]
fn shown(limit: Option<u64>) -> String {
    limit.map_or_else(|| "unlimited".to_owned(), |n| n.to_string())
}
