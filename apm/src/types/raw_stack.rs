//! A stack as raw instruction pointers, as the application thread takes it (an error's, a
//! log record's, a slow span's): symbols are looked up on the transport thread.

/// Instruction pointers of a stack, innermost first: taken on the application thread (no
/// symbol lookup there), turned into frames on the transport thread.
#[derive(Debug)]
pub(crate) struct RawStack {
    /// Allocated once at the largest size the walk may fill, and kept so (no second
    /// allocation on the application thread to shrink it).
    pub(crate) ips: Vec<usize>,
    /// Frames kept once the agent's own are removed (`stack_trace_limit`; `None`: all).
    pub(crate) limit: Option<usize>,
    /// Taken in the panic hook: the panic machinery's frames come first.
    pub(crate) from_panic: bool,
    /// Frames resolved already, instead of `ips`: the backtrace an error carried (an
    /// `anyhow::Error`'s), as `std::backtrace::Backtrace`'s `Debug` writes it.
    pub(crate) resolved: Option<Box<str>>,
}
