//! What the server integrations share: the per-request rules compiled from the configuration
//! in effect, the error event of a handler that panicked, and which request bodies are worth
//! buffering for `capture_body`.

cfg_enable! {
    mod policy;
    pub(crate) use policy::ServerPolicy;
}
#[cfg(not(feature = "enable"))]
mod policy_off;
#[cfg(not(feature = "enable"))]
pub(crate) use policy_off::ServerPolicy;

/// The error event of a request handler that panicked: its message is the panic's (server
/// integrations send it, then let the panic go on).
#[derive(Debug)]
pub(crate) struct HandlerPanic(std::borrow::Cow<'static, str>);

impl HandlerPanic {
    pub(crate) fn from_payload(payload: &(dyn std::any::Any + Send)) -> HandlerPanic {
        use std::borrow::Cow;
        if let Some(s) = payload.downcast_ref::<&'static str>() {
            HandlerPanic(Cow::Borrowed(s))
        } else if let Some(s) = payload.downcast_ref::<String>() {
            HandlerPanic(Cow::Owned(s.clone()))
        } else {
            HandlerPanic(Cow::Borrowed("handler panicked (non-string payload)"))
        }
    }
}

impl std::fmt::Display for HandlerPanic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HandlerPanic {}

/// Request bodies larger than this are not captured by default (the spec leaves the limit to
/// agents).
#[cfg(apm_body_capture)]
pub(crate) const DEFAULT_BODY_LIMIT: usize = 16 * 1024;

/// Whether a request body is worth buffering for `capture_body`: textual, and of a known,
/// small length (a body of unknown length is never buffered: that could change how it
/// streams to the handler).
#[cfg(apm_body_capture)]
pub(crate) fn body_capturable(
    content_type: Option<&str>,
    content_length: Option<&str>,
    limit: usize,
) -> bool {
    let textual = content_type.is_some_and(|t| {
        t.starts_with("text/")
            || t.starts_with("application/json")
            || t.starts_with("application/x-www-form-urlencoded")
            || t.starts_with("application/xml")
    });
    let small = content_length
        .and_then(|v| v.trim().parse::<usize>().ok())
        .is_some_and(|n| n > 0 && n <= limit);
    textual && small
}
