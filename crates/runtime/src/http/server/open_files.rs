//! The process's open-file limit (`RLIMIT_NOFILE`) against `HTTP_MAX_CONNECTIONS`: each
//! connection is a file descriptor, and so is every socket to the model, the broker and
//! the database.
//!
//! Many systems start processes with a soft limit of 1024 and a much higher hard limit
//! (systemd, containerd 2); like Go's runtime, the server raises its soft limit towards
//! the hard one when it needs more. HTTP connections get at most half of the limit; the
//! other half is left for the rest of the process.

/// How many connections [`serve`](super::serve) may hold open: `wanted`, or half of the
/// open-file limit when that is smaller (at least 1), after raising the soft limit
/// towards `2 × wanted` where the hard limit allows.
pub(super) fn connection_budget(wanted: usize) -> usize {
    let need = u64::try_from(wanted).unwrap_or(u64::MAX).saturating_mul(2);
    let Some(limit) = open_file_limit(need) else {
        return wanted;
    };
    let budget = usize::try_from(limit / 2).unwrap_or(usize::MAX).max(1);
    if budget < wanted {
        tracing::warn!(
            open_file_limit = limit,
            max_connections = budget,
            "HTTP_MAX_CONNECTIONS={wanted} is more than half the open-file limit allows; \
             serving at most {budget} connections at once (raise `ulimit -n`)"
        );
        return budget;
    }
    wanted
}

/// The soft open-file limit after trying to raise it to `need` (never above the hard
/// limit); `None` when unlimited or unknown.
#[cfg(unix)]
fn open_file_limit(need: u64) -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let soft = limit.current?;
    if soft >= need {
        return Some(soft);
    }
    let raised = limit.maximum.map_or(need, |hard| hard.min(need));
    if raised > soft {
        let new = Rlimit {
            current: Some(raised),
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, new) {
            Ok(()) => {
                tracing::info!(from = soft, to = raised, "raised the open-file limit");
                return Some(raised);
            }
            Err(err) => tracing::debug!(error = %err, "cannot raise the open-file limit"),
        }
    }
    Some(soft)
}

#[cfg(not(unix))]
fn open_file_limit(_need: u64) -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_is_never_zero_and_never_above_what_is_wanted() {
        assert_eq!(connection_budget(1), 1);
        let budget = connection_budget(usize::MAX / 4);
        assert!((1..=usize::MAX / 4).contains(&budget), "{budget}");
    }
}
