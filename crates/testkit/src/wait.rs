//! Waiting for what a test cannot be told about (a background task's audit entry, a scheduler's
//! next pass, a file another process writes): polled, with a deadline, and a failure that says
//! what was awaited and what was seen last.
//!
//! The poll starts at 10 ms and doubles up to 250 ms, so a quick change is seen quickly and a
//! slow one does not spin; the deadline is a bound for a loaded machine, never a measurement.

use std::fmt::Debug;
use std::ops::ControlFlow;
use std::time::Duration;

use anyhow::{Result, bail};
use tokio::time::Instant;

/// The first pause between two looks.
const FIRST: Duration = Duration::from_millis(10);
/// The longest pause between two looks.
const LONGEST: Duration = Duration::from_millis(250);

/// Looks until `look` answers `Break(value)` and returns that value. An error from `look` ends
/// the wait at once. When `limit` has passed, fails saying `what` was awaited and the last
/// `Continue(seen)`.
pub async fn until<T, S: Debug>(
    what: &str,
    limit: Duration,
    mut look: impl AsyncFnMut() -> Result<ControlFlow<T, S>>,
) -> Result<T> {
    let deadline = Instant::now() + limit;
    let mut pause = FIRST;
    loop {
        let seen = match look().await? {
            ControlFlow::Break(value) => return Ok(value),
            ControlFlow::Continue(seen) => seen,
        };
        let now = Instant::now();
        if now >= deadline {
            bail!("{what}: not within {limit:?}; last seen: {seen:#?}");
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(LONGEST);
    }
}

/// [`until`] for a condition with nothing more to say than whether it holds.
pub async fn until_true(
    what: &str,
    limit: Duration,
    mut holds: impl AsyncFnMut() -> Result<bool>,
) -> Result<()> {
    until(what, limit, async || {
        Ok(match holds().await? {
            true => ControlFlow::Break(()),
            false => ControlFlow::Continue("not yet"),
        })
    })
    .await
}

/// `Break(value)` when `done`, else `Continue(seen)`: the answer of a look that keeps what it
/// saw for the failure message.
pub fn settled<T, S>(done: bool, value: T, seen: S) -> ControlFlow<T, S> {
    match done {
        true => ControlFlow::Break(value),
        false => ControlFlow::Continue(seen),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_look_that_settles_gives_its_value() -> Result<()> {
        let mut looks = 0;
        let got = until("the third look", Duration::from_secs(5), async || {
            looks += 1;
            Ok(settled(looks == 3, looks * 10, looks))
        })
        .await?;
        assert_eq!((got, looks), (30, 3));
        Ok(())
    }

    #[tokio::test]
    async fn a_look_that_never_settles_fails_with_what_it_saw() {
        let err = until_true("never", Duration::from_millis(50), async || Ok(false))
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.starts_with("never: not within 50ms"), "{err}");
        assert!(err.contains("not yet"), "{err}");
    }

    #[tokio::test]
    async fn an_error_ends_the_wait_at_once() {
        let mut looks = 0;
        let r = until::<(), ()>("an error", Duration::from_secs(5), async || {
            looks += 1;
            bail!("broken")
        })
        .await;
        assert!(r.is_err_and(|e| e.to_string() == "broken"));
        assert_eq!(looks, 1);
    }
}
