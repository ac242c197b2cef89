//! The rules compiled out (`enable` off): no agent ever runs, so nothing is traced and the
//! integrations call the services they wrap as they are.

use std::sync::Arc;

/// No rules: nothing is traced.
#[derive(Debug, Default)]
pub(crate) struct ServerPolicy {
    _none: (),
}

impl ServerPolicy {
    pub(crate) fn current() -> Arc<ServerPolicy> {
        Arc::new(ServerPolicy::default())
    }
    pub(crate) fn ignore(&self, _path: &str, _user_agent: Option<&str>) -> bool {
        true
    }
    pub(crate) fn regroup(&self, _name: &mut String) {}
    #[cfg(apm_body_capture)]
    pub(crate) fn capture_body(&self) -> bool {
        false
    }
}
