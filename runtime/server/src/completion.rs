//! Changes that run to their end whoever stops waiting for them.
//!
//! A request's future is dropped when its client hangs up (the connection's
//! pending answers go with it), but a write the store already took lands
//! anyway: the memory that mirrors the store must follow it, so such a
//! change runs in a task of its own (docs/design/0021).

use std::future::Future;

/// Runs `op` in a task of its own and waits for its result: a caller that
/// stops waiting no longer cuts it off.
pub(crate) async fn to_completion<T: Send + 'static>(
    op: impl Future<Output = T> + Send + 'static,
) -> T {
    match tokio::spawn(op).await {
        Ok(out) => out,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Cancelled: the runtime is shutting down, and this caller is
        // dropped with it before any answer could be sent.
        Err(_) => std::future::pending().await,
    }
}
