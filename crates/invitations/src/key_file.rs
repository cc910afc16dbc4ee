//! The invitation token key: from its file (`[invitations] token_key`), or generated into the
//! state store's `meta` tree at the first start when no file is set.

use zeroize::Zeroizing;

use crate::error::{InvitationError, Result};
use crate::store::Store;
use crate::token::TokenKey;

/// The key of a generated token key in the state store's `meta` tree (the server's
/// `onboard keys export` reads it there, and removes it once a key file is configured).
pub const TOKEN_KEY_META: &str = "invitation_token_key";

/// The token key kept in the state store (generated there at the first start) when no key
/// file is set; said at every start, as it lives next to what it protects.
pub(crate) fn stored_key(store: &Store) -> Result<TokenKey> {
    tracing::warn!(
        "invitations.token_key is not set: the invitation token key is kept in the state \
         store, so a copy of the data directory can forge invitation tokens; move it to a key \
         file with `onboard keys export` (docs/operations.md, \"Keys: backup and rotation\")"
    );
    match store.meta(TOKEN_KEY_META)? {
        Some(v) => {
            let mut key = Zeroizing::new([0u8; 32]);
            if v.len() != key.len() {
                return Err(InvitationError::Config(
                    "the stored invitation token key is not 32 bytes".into(),
                ));
            }
            key.copy_from_slice(&v);
            Ok(TokenKey::new(key))
        }
        None => {
            let k = TokenKey::generate()?;
            store.set_meta(TOKEN_KEY_META, k.bytes())?;
            Ok(k)
        }
    }
}

pub(crate) fn load_key_file(path: &std::path::Path) -> Result<TokenKey> {
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| {
        InvitationError::Config(format!("reading the token key {}: {e}", path.display()))
    })?);
    let key = onboard_core::key_file::parse(&bytes).ok_or_else(|| {
        InvitationError::Config(format!(
            "{}: an invitation token key is 32 raw bytes or 64 hex digits",
            path.display()
        ))
    })?;
    Ok(TokenKey::new(key))
}
