//! Page sizes shared by the list RPCs.

use crate::error::{Result, ServerError};

/// The page size when a request sets none.
pub const DEFAULT_PAGE: usize = 100;
/// The largest page a request may ask for; bounds one response's size and work.
pub const MAX_PAGE: usize = 1000;

/// The page size to use for a request's `page_size`.
pub fn page_size(requested: u32) -> Result<usize> {
    match usize::try_from(requested) {
        Ok(0) => Ok(DEFAULT_PAGE),
        Ok(n) if n <= MAX_PAGE => Ok(n),
        _ => Err(ServerError::invalid(
            "page_size",
            format!("at most {MAX_PAGE}"),
        )),
    }
}
