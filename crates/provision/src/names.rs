//! The app-registration name rules of the vendor's wizard (entra-reference.md §1.2, PRODUCT.md
//! step 4): 3–15 characters, none of `\ / : * ? " < > |`, no dot, no blank, not the reserved word
//! `audit`. Uniqueness per service needs the store and is checked by the engine
//! ([`crate::ProvisionError::NameTaken`]); everything here is a pure function.
//!
//! The manual's "letters, numbers and special characters" is read with Unicode's eyes
//! ([`chars`]): no invisible characters (controls, bidi overrides, zero-width characters…) and
//! NFKC form only (no fullwidth or other compatibility look-alikes). The same character rules
//! hold for every free-text field that reaches Entra or an email: [`check_free_text`].

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::ProvisionError;

/// The character rules, shared with every free-text field (`onboard_core::text`).
pub use onboard_core::text as chars;

pub use chars::{CharRule, CodePoint, Invisible, TextViolation, check_free_text};

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
    /// A character rule every free-text field shares ([`CharRule`]): an invisible character
    /// (control, bidi, zero-width…), checked before the length it would distort; or text not
    /// in Unicode NFKC form (a fullwidth look-alike, a decomposed accent), refused, not
    /// normalised, so the name asked for is the name created. Serialised as the [`CharRule`]
    /// itself (`{"rule": "invisible", …}`): the wizard keys its words on that tag.
    #[serde(untagged)]
    Chars(CharRule),
}

impl fmt::Display for NameRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameRule::Chars(rule) => rule.fmt(f),
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

impl From<CharRule> for NameRule {
    fn from(rule: CharRule) -> Self {
        NameRule::Chars(rule)
    }
}

/// Checks `name` against every rule that needs no store and names the first one broken:
/// visible characters first, then the manual's rules in its order, then NFKC (after the
/// manual's rules, so a plain `a.b` is told about its dot).
pub fn check_name(name: &str) -> Result<(), NameRule> {
    match broken_rules(name).into_iter().next() {
        Some(rule) => Err(rule),
        None => Ok(()),
    }
}

/// Every rule that needs no store `name` breaks, in [`check_name`]'s order (its first is
/// `check_name`'s answer), so a form can mark them all at once: `my app.` breaks both the
/// dot and the blank rule. The length counts visible characters only, so an invisible
/// character neither makes a short name long enough nor is counted twice.
pub fn broken_rules(name: &str) -> Vec<NameRule> {
    let mut broken = Vec::new();
    if let Err(rule) = chars::check_visible(name) {
        broken.push(rule.into());
    }
    let chars = name
        .chars()
        .filter(|c| chars::invisible(*c).is_none())
        .count();
    if !(MIN_LEN..=MAX_LEN).contains(&chars) {
        broken.push(NameRule::Length { chars });
    }
    if let Some(found) = name.chars().find(|c| FORBIDDEN.contains(c)) {
        broken.push(NameRule::ForbiddenCharacter { found });
    }
    if name.contains('.') {
        broken.push(NameRule::Dot);
    }
    if name.chars().any(char::is_whitespace) {
        broken.push(NameRule::Blank);
    }
    match chars::check_nfkc(name) {
        // Fullwidth `ａｕｄｉｔ` or `ａ／ｂ` stop here, before the reserved word is compared.
        Err(rule) => broken.push(rule.into()),
        // The manual's "|audit" reads as the whole word being reserved; a name merely
        // containing it (e.g. `auditors`) is allowed, since nothing suggests substrings were
        // meant.
        Ok(()) if name.eq_ignore_ascii_case(RESERVED_WORD) => broken.push(NameRule::Reserved),
        Ok(()) => {}
    }
    broken
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
        assert_eq!(check_name("my\u{3000}app"), Err(NameRule::Blank));
        assert_eq!(check_name(" abc"), Err(NameRule::Blank));
        assert_eq!(check_name("audit"), Err(NameRule::Reserved));
        assert_eq!(check_name("AuDiT"), Err(NameRule::Reserved));
    }

    #[test]
    fn invisible_characters_are_refused_by_code_point() {
        // What the probe got through: NUL, BEL, ESC, DEL, ZWSP, RLO, a tab.
        for (name, found, kind) in [
            ("ab\0cd", '\0', Invisible::Control),
            ("ab\u{7}cd", '\u{7}', Invisible::Control),
            ("Ab\u{1b}[2J\u{202e}cd", '\u{1b}', Invisible::Control),
            ("abc\u{7f}", '\u{7f}', Invisible::Control),
            ("my\tapp", '\t', Invisible::Control),
            ("ab\u{200b}cd", '\u{200b}', Invisible::Format),
            ("ab\u{202e}cd", '\u{202e}', Invisible::Format),
            ("\u{feff}abc", '\u{feff}', Invisible::Format),
            ("ab\u{3164}cd", '\u{3164}', Invisible::Ignorable),
            // Checked before the length, which invisible characters distort.
            (&"\u{200d}".repeat(20), '\u{200d}', Invisible::Format),
        ] {
            assert_eq!(
                check_name(name),
                Err(NameRule::Chars(CharRule::Invisible { found, kind })),
                "{name:?}"
            );
        }
        let e = validate_name("ab\u{202e}cd").err().map(|e| e.to_string());
        assert!(
            e.as_deref()
                .is_some_and(|m| m.contains("U+202E RIGHT-TO-LEFT OVERRIDE")),
            "{e:?}"
        );
    }

    #[test]
    fn look_alikes_are_refused_with_their_nfkc_form() {
        assert_eq!(
            check_name("\u{ff21}\u{ff42}\u{ff43}"),
            Err(NameRule::Chars(CharRule::NotNfkc {
                found: '\u{ff21}',
                nfkc: "Abc".into()
            }))
        );
        // A fullwidth solidus is not the forbidden `/`, and fullwidth `audit` not the word, but
        // both are refused as look-alikes.
        assert!(matches!(
            check_name("ab\u{ff0f}cd"),
            Err(NameRule::Chars(CharRule::NotNfkc {
                found: '\u{ff0f}',
                ..
            }))
        ));
        assert!(matches!(
            check_name("\u{ff41}udit"),
            Err(NameRule::Chars(CharRule::NotNfkc { .. }))
        ));
        assert!(matches!(
            check_name("Cafe\u{301}1"),
            Err(NameRule::Chars(CharRule::NotNfkc {
                found: '\u{301}',
                ..
            }))
        ));
        assert_eq!(check_name("Café1"), Ok(()));
    }

    #[test]
    fn free_text_names_the_field_and_the_character() {
        assert_eq!(check_free_text("customer", "Contoso <script> Ltd"), Ok(()));
        assert_eq!(
            check_free_text("customer", "Zürich Versicherungen AG"),
            Ok(())
        );
        let e = check_free_text("customer", "Contoso\u{202e}dtL").expect_err("bidi");
        assert_eq!(e.field, "customer");
        assert_eq!(
            e.to_string(),
            "customer must not contain U+202E RIGHT-TO-LEFT OVERRIDE (an invisible format character)"
        );
        let e = check_free_text("provider_name", "Acme\u{a0}UC").expect_err("nbsp");
        assert!(e.to_string().contains("U+00A0 NO-BREAK SPACE"), "{e}");
        assert!(check_free_text("admin_upn", "admin@\u{ff43}ontoso.com").is_err());
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

    #[test]
    fn character_rules_serialise_under_their_own_tag() {
        let rule = NameRule::Chars(CharRule::Invisible {
            found: '\u{200b}',
            kind: Invisible::Format,
        });
        let value = serde_json::to_value(&rule).expect("serialises");
        assert_eq!(value["rule"], "invisible", "{value}");
        assert_eq!(serde_json::from_value::<NameRule>(value).ok(), Some(rule));
        let value = serde_json::to_value(NameRule::Dot).expect("serialises");
        assert_eq!(value, serde_json::json!({"rule": "dot"}));
    }

    #[test]
    fn every_broken_rule_is_listed_first_as_check_name_says() {
        for (name, want) in [
            ("Sbc1", vec![]),
            ("my app.", vec![NameRule::Dot, NameRule::Blank]),
            (
                "a/ b",
                vec![NameRule::ForbiddenCharacter { found: '/' }, NameRule::Blank],
            ),
            (
                "x.y/z with blanks",
                vec![
                    NameRule::Length { chars: 17 },
                    NameRule::ForbiddenCharacter { found: '/' },
                    NameRule::Dot,
                    NameRule::Blank,
                ],
            ),
            // The invisible character is not counted: two visible characters are too few.
            (
                "ab\u{200b}",
                vec![
                    NameRule::Chars(CharRule::Invisible {
                        found: '\u{200b}',
                        kind: Invisible::Format,
                    }),
                    NameRule::Length { chars: 2 },
                ],
            ),
            ("AUDIT", vec![NameRule::Reserved]),
        ] {
            let broken = broken_rules(name);
            assert_eq!(broken, want, "{name:?}");
            assert_eq!(check_name(name).err(), broken.first().cloned(), "{name:?}");
        }
    }
}
