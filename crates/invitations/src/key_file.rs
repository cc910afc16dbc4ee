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
        Some(v) => Ok(TokenKey::new(v.as_ref().try_into().map_err(|_| {
            InvitationError::Config("the stored invitation token key is not 32 bytes".into())
        })?)),
        None => {
            let k = TokenKey::generate()?;
            store.set_meta(TOKEN_KEY_META, k.bytes())?;
            Ok(k)
        }
    }
}

/// Refuses the token key file at `path` when the state store `db` keeps a generated token key
/// that is another key (`onboard keys export` writes the stored one to a file; the server's
/// start removes the stored copy): it would end every invitation issued, and the removal would
/// take the generated key's only copy. The server checks this before it reads anything else.
/// Replacing the key is done once the generated one is moved out.
pub fn check_key_file(db: &sled::Db, path: &std::path::Path) -> Result<()> {
    let key = load_key_file(path)?;
    match db.open_tree("meta")?.get(TOKEN_KEY_META)? {
        Some(stored) if stored.as_ref() != key.bytes() => Err(InvitationError::Config(format!(
            "invitations.token_key: {} is not the invitation token key this state store generated (it is kept in the store): set the file `onboard keys export --token-key` wrote, start once, then replace the key if you mean to (invitations issued before stop working)",
            path.display()
        ))),
        _ => Ok(()),
    }
}

pub(crate) fn load_key_file(path: &std::path::Path) -> Result<TokenKey> {
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| {
        InvitationError::Config(format!("reading the token key {}: {e}", path.display()))
    })?);
    let mut key = [0u8; 32];
    let text = std::str::from_utf8(&bytes).map(str::trim).unwrap_or("");
    if hex::decode_to_slice(text, &mut key).is_ok() {
        return Ok(TokenKey::new(key));
    }
    let raw: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
        InvitationError::Config(format!(
            "{}: an invitation token key is 32 raw bytes or 64 hex digits",
            path.display()
        ))
    })?;
    Ok(TokenKey::new(raw))
}
