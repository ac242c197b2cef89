//! The live rules a server integration applies to each request, compiled once per
//! configuration in effect.

use std::cell::RefCell;
use std::sync::Arc;

use super::super::facade::{derived, Derived};
use crate::util::wildcard::{WildcardList, WildcardMatcher};

/// The live rules a server integration applies to each request: `transaction_ignore_urls`,
/// `transaction_ignore_user_agents`, `transaction_name_groups`, `capture_body`. Compiled once
/// per configuration in effect on each thread, used by the thread's requests until the
/// configuration changes.
#[derive(Debug, Default)]
pub(crate) struct ServerPolicy {
    /// `None` when no agent runs: nothing is traced.
    rules: Option<Rules>,
}

#[derive(Debug)]
struct Rules {
    ignore_urls: WildcardList,
    ignore_user_agents: WildcardList,
    name_groups: Vec<(String, WildcardMatcher)>,
    #[cfg(apm_body_capture)]
    capture_body: bool,
}

impl Rules {
    fn from_config(c: &crate::Config) -> Rules {
        Rules {
            ignore_urls: WildcardList::parse(&c.transaction_ignore_urls),
            ignore_user_agents: WildcardList::parse(&c.transaction_ignore_user_agents),
            name_groups: c
                .transaction_name_groups
                .iter()
                .map(|p| (p.clone(), WildcardMatcher::new(p)))
                .collect(),
            // Bodies are read whenever something may send them; the serialiser keeps them out of
            // the events `capture_body` excludes.
            #[cfg(apm_body_capture)]
            capture_body: c.capture_body != crate::config::CaptureBody::Off,
        }
    }
}

impl ServerPolicy {
    /// The rules in force now (nothing traced when no agent runs).
    pub(crate) fn current() -> Arc<ServerPolicy> {
        thread_local! {
            static POLICY: Derived<ServerPolicy> = const { RefCell::new(None) };
            /// With no agent, the same empty rules for every request: not one allocated for each.
            static NO_AGENT: Arc<ServerPolicy> = Arc::default();
        }
        derived(&POLICY, |c| ServerPolicy {
            rules: Some(Rules::from_config(c)),
        })
        .or_else(|| NO_AGENT.try_with(Arc::clone).ok())
        .unwrap_or_default()
    }

    /// Whether a request to `path` is not to be traced; `user_agent` gives its `User-Agent`,
    /// asked for only when `transaction_ignore_user_agents` has patterns.
    pub(crate) fn ignore<'a>(
        &self,
        path: &str,
        user_agent: impl FnOnce() -> Option<&'a str>,
    ) -> bool {
        self.rules.as_ref().is_none_or(|r| {
            r.ignore_urls.any_match(path)
                || (!r.ignore_user_agents.is_empty()
                    && user_agent().is_some_and(|ua| r.ignore_user_agents.any_match(ua)))
        })
    }

    /// The group a transaction name falls in (`transaction_name_groups`), if any.
    fn group<'a>(&'a self, name: &str) -> Option<&'a str> {
        let r = self.rules.as_ref()?;
        r.name_groups
            .iter()
            .find(|(_, m)| m.matches(name))
            .map(|(p, _)| p.as_str())
    }

    /// `name` becomes the name of its group, when `transaction_name_groups` has one for it.
    pub(crate) fn regroup(&self, name: &mut String) {
        if let Some(group) = self.group(name) {
            name.clear();
            name.push_str(group);
        }
    }

    /// Whether request bodies are read (`capture_body` is not `off`).
    #[cfg(apm_body_capture)]
    pub(crate) fn capture_body(&self) -> bool {
        self.rules.as_ref().is_some_and(|r| r.capture_body)
    }
}
