//! `RefreshStats`: a request to recompute a pool's stats. It changes no
//! record, so it needs no batch state: it only names the pool, which the
//! processor then marks for recomputing like any pool a command changed.

use chat_shared::envelope::ReplyBody;

use super::Decision;

pub(super) fn refresh_stats(pool: &str) -> Decision {
    let mut decision = Decision::reply(ReplyBody::Done);
    decision.stats_pools.push(pool.to_owned());
    decision
}
