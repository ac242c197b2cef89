//! What messaging integrations share: `ignore_message_queues`, compiled once per
//! configuration in effect.

/// Whether messages sent to or received from `queue` (a queue, topic or exchange) are not to
/// be traced (`ignore_message_queues`). Nothing is ignored when no agent runs: nothing is
/// recorded then anyway.
#[cfg(feature = "enable")]
pub(crate) fn ignored(queue: &str) -> bool {
    use std::sync::Arc;

    use parking_lot::RwLock;

    use super::facade::{effective_config, EffectiveConfig};
    use crate::util::wildcard::WildcardList;

    type Cached = Option<(EffectiveConfig, Arc<WildcardList>)>;
    static CACHE: RwLock<Cached> = RwLock::new(None);
    let seen = CACHE.read().as_ref().map(|(c, _)| *c);
    let list = match effective_config(seen, |c| WildcardList::parse(&c.ignore_message_queues)) {
        None => return false,
        Some((_, None)) => match CACHE.read().as_ref() {
            Some((_, list)) => Arc::clone(list),
            None => return false,
        },
        Some((now, Some(list))) => {
            let list = Arc::new(list);
            *CACHE.write() = Some((now, Arc::clone(&list)));
            list
        }
    };
    list.any_match(queue)
}

/// The agent is compiled out: nothing is recorded, nothing ignored.
#[cfg(not(feature = "enable"))]
pub(crate) fn ignored(_queue: &str) -> bool {
    false
}
