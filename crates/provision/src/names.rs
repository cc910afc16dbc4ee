//! The app-registration name rules of the vendor's wizard (entra-reference.md §1.2, PRODUCT.md
//! step 4): 3–15 characters, none of `\ / : * ? " < > |`, no dot, no blank, not the reserved word
//! `audit`. Uniqueness per service needs the store and is checked by the engine
//! ([`crate::ProvisionError::NameTaken`]); everything here is a pure function.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::ProvisionError;

/// Shortest allowed name, in characters.
pub const MIN_LEN: usize = 3;
/// Longest allowed name, in characters.
pub const MAX_LEN: usize = 15;
/// Characters the manual forbids.
pub const FORBIDDEN: &[char] = &['\\', '/', ':', '*', '?', '"', '<', '>', '|'];
/// The word every copy of the manual prints after the forbidden list; we treat it as reserved.
pub const RESERVED_WORD: &str = "audit";

/// Which name rule was broken; the gRPC layer turns it into a field violation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "rule")]
pub enum NameRule {
    /// Fewer than [`MIN_LEN`] or more than [`MAX_LEN`] characters.
    Length {
        /// The length found, in characters (not bytes: names may hold non-ASCII letters).
        chars: usize,
    },
    /// One of `\ / : * ? " < > |`.
    ForbiddenCharacter {
        /// The first offending character.
        found: char,
    },
    /// A `.` anywhere.
    Dot,
    /// Any whitespace ("no blanks" in the manual; tabs and newlines are blanks too).
    Blank,
    /// The reserved word `audit`, in any case.
    Reserved,
    /// Already used by another onboarding of this service (checked against the store).
    NotUnique,
}

impl fmt::Display for NameRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameRule::Length { chars } => write!(
                f,
                "must be {MIN_LEN} to {MAX_LEN} characters long (it has {chars})"
            ),
            NameRule::ForbiddenCharacter { found } => write!(
                f,
                "must not contain {found:?} (none of \\ / : * ? \" < > | is allowed)"
            ),
            NameRule::Dot => write!(f, "must not contain a dot"),
            NameRule::Blank => write!(f, "must not contain blanks"),
            NameRule::Reserved => write!(f, "must not be the reserved word \"audit\""),
            NameRule::NotUnique => write!(f, "is already used by another onboarding"),
        }
    }
}

/// Checks `name` against every rule that needs no store, in the manual's order, and names the
/// first one broken.
pub fn check_name(name: &str) -> Result<(), NameRule> {
    let chars = name.chars().count();
    if !(MIN_LEN..=MAX_LEN).contains(&chars) {
        return Err(NameRule::Length { chars });
    }
    if let Some(found) = name.chars().find(|c| FORBIDDEN.contains(c)) {
        return Err(NameRule::ForbiddenCharacter { found });
    }
    if name.contains('.') {
        return Err(NameRule::Dot);
    }
    if name.chars().any(char::is_whitespace) {
        return Err(NameRule::Blank);
    }
    // The manual's "|audit" reads as the whole word being reserved; a name merely containing
    // it (e.g. `auditors`) is allowed, since nothing suggests substrings were meant.
    if name.eq_ignore_ascii_case(RESERVED_WORD) {
        return Err(NameRule::Reserved);
    }
    Ok(())
}

/// [`check_name`] as the crate's error type.
pub fn validate_name(name: &str) -> Result<(), ProvisionError> {
    check_name(name).map_err(|rule| ProvisionError::InvalidName {
        name: name.to_owned(),
        rule,
    })
}

/// The key two names collide on: Entra display names are compared case-insensitively by people,
/// so `Sbc1` and `SBC1` count as the same name.
pub fn name_key(name: &str) -> String {
    name.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_names_within_the_rules() {
        for ok in [
            "abc",
            "Sandbox1-sp2",
            "ABCdef123456789",
            "a_b-c#d",
            "o'brien",
            "auditors",
            "Zürich1",
        ] {
            assert_eq!(check_name(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn length_counts_characters() {
        assert_eq!(check_name("ab"), Err(NameRule::Length { chars: 2 }));
        assert_eq!(check_name(""), Err(NameRule::Length { chars: 0 }));
        assert_eq!(
            check_name("abcdefghijklmnop"),
            Err(NameRule::Length { chars: 16 })
        );
        // 15 two-byte characters are 30 bytes but a valid length.
        assert_eq!(check_name(&"é".repeat(15)), Ok(()));
    }

    #[test]
    fn every_forbidden_character_is_refused() {
        for c in FORBIDDEN {
            let name = format!("ab{c}cd");
            assert_eq!(
                check_name(&name),
                Err(NameRule::ForbiddenCharacter { found: *c }),
                "{name}"
            );
        }
    }

    #[test]
    fn dots_blanks_and_the_reserved_word() {
        assert_eq!(check_name("my.app"), Err(NameRule::Dot));
        assert_eq!(check_name("my app"), Err(NameRule::Blank));
        assert_eq!(check_name("my\tapp"), Err(NameRule::Blank));
        assert_eq!(check_name(" abc"), Err(NameRule::Blank));
        assert_eq!(check_name("audit"), Err(NameRule::Reserved));
        assert_eq!(check_name("AuDiT"), Err(NameRule::Reserved));
    }

    #[test]
    fn errors_name_the_rule() {
        let e = validate_name("a.b").err().map(|e| e.to_string());
        assert!(e.as_deref().is_some_and(|m| m.contains("dot")), "{e:?}");
        let e = validate_name("audit").err().map(|e| e.to_string());
        assert!(
            e.as_deref().is_some_and(|m| m.contains("reserved")),
            "{e:?}"
        );
    }
}
