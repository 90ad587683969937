use std::fmt;

/// Whether an operation that failed may succeed if tried again.
///
/// Every error enum in the engine can say this about each of its variants, so
/// callers (the sync scheduler, the CLI) decide between "retry later" and
/// "tell the user" without string matching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Transient (a peer went away, a lock is held): trying again later may work.
    Later,
    /// Trying again without a change (of input, configuration or disk) will fail the same way.
    Never,
}

impl fmt::Display for Retry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Retry::Later => "retryable",
            Retry::Never => "not retryable",
        })
    }
}

/// The questions every engine error answers, whatever its layer.
pub trait ErrorContext: std::error::Error {
    /// Can retrying help?
    fn retry(&self) -> Retry;
    /// Is this data read back from storage or the network that is damaged
    /// (as opposed to an operation that failed)?
    fn is_corruption(&self) -> bool {
        false
    }
}
