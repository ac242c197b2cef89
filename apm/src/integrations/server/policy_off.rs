//! The rules compiled out (`enable` off): no agent ever runs, so nothing is traced and the
//! integrations call the services they wrap as they are.

/// No rules: nothing is traced.
#[derive(Debug, Default)]
pub(crate) struct ServerPolicy {
    _none: (),
}

impl ServerPolicy {
    /// By value: nothing to share, and nothing allocated per request.
    pub(crate) fn current() -> ServerPolicy {
        ServerPolicy::default()
    }
    pub(crate) fn ignore<'a>(
        &self,
        _path: &str,
        _user_agent: impl FnOnce() -> Option<&'a str>,
    ) -> bool {
        true
    }
    pub(crate) fn regroup(&self, _name: &mut String) {}
    #[cfg(apm_body_capture)]
    pub(crate) fn capture_body(&self) -> bool {
        false
    }
}
