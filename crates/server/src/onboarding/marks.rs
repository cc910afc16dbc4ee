//! The invitation link of an onboarding (which invitation started it), and durable marks kept
//! beside it in the onboarding-links tree, sealed like every state record (a mark without a
//! valid MAC is refused): a signed-in onboarding cancelled before its run, and the idempotency key of the Provision call that
//! started its run (a repeat after a server restart still only follows the run), written before
//! the run starts and put back if it does not (`start.rs`).
//! The secret hand-over's mark (`claim.rs`) is read here too; it is set by a compare-and-swap
//! of its own.

use sha2::{Digest, Sha256};

use super::OnboardingService;
use crate::app::LINKS_TREE;
use crate::error::Result;

/// Key prefix of "this signed-in onboarding was cancelled before its run" (value: epoch ms,
/// big-endian).
const CANCELLED_PREFIX: &str = "cancelled/";
/// Key prefix of the idempotency key that started the onboarding's run (value: the SHA-256 of
/// the caller's invitation token and the key, so neither is kept, and the same key from another
/// caller, such as a hand-off link's holder continuing the run, is not a repeat).
const IDEMPOTENCY_PREFIX: &str = "idempotency/";

impl OnboardingService {
    /// Remembers which invitation an onboarding came from, durably.
    pub(super) fn link(&self, onboarding_id: &str, invitation_id: &str) -> Result<()> {
        let sealed = self.app.record_mac().seal(
            LINKS_TREE,
            onboarding_id.as_bytes(),
            invitation_id.as_bytes(),
        );
        self.app
            .onboarding_links()
            .insert(onboarding_id.as_bytes(), sealed)?;
        Ok(())
    }

    pub(super) fn invitation_of(&self, onboarding_id: &str) -> Result<String> {
        let Some(stored) = self.app.onboarding_links().get(onboarding_id.as_bytes())? else {
            return Ok(String::new());
        };
        let id = self
            .app
            .record_mac()
            .open(LINKS_TREE, onboarding_id.as_bytes(), &stored)?;
        Ok(String::from_utf8_lossy(id).into_owned())
    }

    /// The mark `prefix` on `id`, opened.
    pub(super) fn mark(&self, prefix: &str, id: &str) -> Result<Option<Vec<u8>>> {
        let key = format!("{prefix}{id}");
        let Some(stored) = self.app.onboarding_links().get(key.as_bytes())? else {
            return Ok(None);
        };
        let value = self
            .app
            .record_mac()
            .open(LINKS_TREE, key.as_bytes(), &stored)?;
        Ok(Some(value.to_vec()))
    }

    /// Sets the mark `prefix` on `id` to `value`, durably.
    async fn set_mark(&self, prefix: &str, id: &str, value: &[u8]) -> Result<()> {
        let key = format!("{prefix}{id}");
        let sealed = self
            .app
            .record_mac()
            .seal(LINKS_TREE, key.as_bytes(), value);
        self.app.onboarding_links().insert(key.as_bytes(), sealed)?;
        self.app.flush_onboarding_links().await
    }

    /// When `id` was cancelled while signed in, before any run (ms since the epoch); a mark
    /// without a valid MAC is refused like any other state record.
    pub(super) fn cancelled_before_run(&self, id: &str) -> Result<Option<i64>> {
        let mark = self.mark(CANCELLED_PREFIX, id)?;
        Ok(mark.map(|v| <[u8; 8]>::try_from(v.as_slice()).map_or(0, i64::from_be_bytes)))
    }

    /// Every onboarding cancelled before its run, with when (ms since the epoch); a mark without
    /// a valid MAC is refused like any other state record.
    pub(super) fn all_cancelled_before_run(&self) -> Result<Vec<(String, i64)>> {
        let mut all = Vec::new();
        for kv in self.app.onboarding_links().scan_prefix(CANCELLED_PREFIX) {
            let (key, stored) = kv?;
            let value = self.app.record_mac().open(LINKS_TREE, &key, &stored)?;
            let at = <[u8; 8]>::try_from(value).map_or(0, i64::from_be_bytes);
            let id = String::from_utf8_lossy(&key[CANCELLED_PREFIX.len()..]).into_owned();
            all.push((id, at));
        }
        Ok(all)
    }

    /// Marks `id` cancelled before its run, durably, before the caller hears CANCELLED.
    pub(super) async fn mark_cancelled_before_run(&self, id: &str, at_ms: i64) -> Result<()> {
        self.set_mark(CANCELLED_PREFIX, id, &at_ms.to_be_bytes())
            .await
    }

    /// Remembers `tag` ([`idempotency_tag`]: the idempotency key and caller of the Provision
    /// call that started `id`'s run).
    pub(super) async fn remember_idempotency_key(&self, id: &str, tag: &[u8]) -> Result<()> {
        self.set_mark(IDEMPOTENCY_PREFIX, id, tag).await
    }

    /// Marks `id`'s run as started by `tag` before it starts (`start.rs`); what the mark was,
    /// to put back with [`Self::unmark_start`] if the run does not start. No tag: nothing is
    /// written (`None`). The mark also keeps when the onboarding's record was last written
    /// (empty: there was none): a crash after the mark and before the run saved its record
    /// leaves the record as it was, so [`Self::started_with_idempotency_key`] does not take
    /// the call's repeat for a reconnect to a run that never started (a privileged admin's
    /// retry would otherwise only follow the wait it came to end).
    pub(super) async fn mark_start(
        &self,
        id: &str,
        tag: Option<&[u8]>,
    ) -> Result<Option<Option<Vec<u8>>>> {
        let Some(tag) = tag else {
            return Ok(None);
        };
        let previous = self.mark(IDEMPOTENCY_PREFIX, id)?;
        let mark = [tag, b"@", self.record_written_at(id)?.as_bytes()].concat();
        self.remember_idempotency_key(id, &mark).await?;
        Ok(Some(previous))
    }

    /// When `id`'s record was last written (its `updated_at`), or `""` without one.
    fn record_written_at(&self, id: &str) -> Result<String> {
        Ok(self
            .app
            .engine()
            .get(id)?
            .map(|o| o.updated_at)
            .unwrap_or_default())
    }

    /// Puts back the mark [`Self::mark_start`] replaced (removed if there was none).
    pub(super) async fn unmark_start(
        &self,
        id: &str,
        previous: Option<Option<Vec<u8>>>,
    ) -> Result<()> {
        match previous {
            None => Ok(()),
            Some(Some(tag)) => self.remember_idempotency_key(id, &tag).await,
            Some(None) => {
                let key = format!("{IDEMPOTENCY_PREFIX}{id}");
                self.app.onboarding_links().remove(key.as_bytes())?;
                self.app.flush_onboarding_links().await
            }
        }
    }

    /// Whether `tag` ([`idempotency_tag`]) is what started `id`'s run: the mark names it, and
    /// the run it was written for has saved its record since ([`Self::mark_start`]).
    pub(super) fn started_with_idempotency_key(&self, id: &str, tag: &[u8]) -> Result<bool> {
        let Some(mark) = self.mark(IDEMPOTENCY_PREFIX, id)? else {
            return Ok(false);
        };
        Ok(run_started(&mark, tag, &self.record_written_at(id)?))
    }
}

/// Whether a run-start `mark` ([`OnboardingService::mark_start`]: the tag, `@`, then the
/// record's `updated_at` before the run) says that the call tagged `tag` started a run, the
/// record now being last written at `written_at` (`""`: there is none). A mark of the tag
/// alone (written before this release) says so by itself.
fn run_started(mark: &[u8], tag: &[u8], written_at: &str) -> bool {
    match mark.strip_prefix(tag) {
        Some([]) => true,
        Some([b'@', before @ ..]) => before != written_at.as_bytes(),
        _ => false,
    }
}

/// What is kept of a Provision call's caller and idempotency key: `caller` is the invitation
/// token of a customer, `operator <identity>` of an operator (a token holds no blank). Runs
/// started by an operator before this release were kept with an empty caller: their
/// reconnect after the upgrade is refused as running (watch it instead), never taken as
/// another caller's.
pub(super) fn idempotency_tag(caller: &str, key: &str) -> Vec<u8> {
    let mut h = Sha256::new();
    for part in ["onboard idempotency v1", caller, key] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_says_a_run_started_only_once_its_record_was_written_since() {
        let tag = idempotency_tag("token", "key");
        let other = idempotency_tag("token", "another key");
        let before = "2026-12-06T21:00:00.000000000Z";
        let mark = |was: &str| [tag.as_slice(), b"@", was.as_bytes()].concat();
        // A crash after the mark, before the run saved the record: the record is as it was.
        assert!(!run_started(&mark(before), &tag, before));
        // The run saved its record: a repeat follows it.
        assert!(run_started(
            &mark(before),
            &tag,
            "2026-12-06T21:00:01.000000000Z"
        ));
        // The first run of an onboarding: no record before, and none after such a crash.
        assert!(!run_started(&mark(""), &tag, ""));
        assert!(run_started(&mark(""), &tag, before));
        // Another key never matches; a mark of the tag alone (an older release's) as before.
        assert!(!run_started(&mark(before), &other, "later"));
        assert!(run_started(&tag, &tag, before));
        assert!(!run_started(&other, &tag, before));
    }
}
