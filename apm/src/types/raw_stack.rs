//! A stack as raw instruction pointers, as the application thread takes it (an error's, a
//! log record's, a slow span's): symbols are looked up on the transport thread.

/// Instruction pointers of a stack, innermost first: taken on the application thread (no
/// symbol lookup there), turned into frames on the transport thread.
#[derive(Debug)]
pub(crate) struct RawStack {
    pub(crate) ips: Box<[usize]>,
    /// Frames kept once the agent's own are removed (`stack_trace_limit`; `None`: all).
    pub(crate) limit: Option<usize>,
    /// Taken in the panic hook: the panic machinery's frames come first.
    pub(crate) from_panic: bool,
}
