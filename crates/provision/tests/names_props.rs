//! Properties of the name and free-text rules over arbitrary input: every string is accepted or
//! refused with a rule, never a panic; a refusal names the character by code point; what is
//! accepted has only visible characters, is in NFKC form and keeps the manual's rules.

use proptest::prelude::*;
use provision::names::{self, CharRule, NameRule, check_free_text};
use provision::{check_name, validate_name};

/// Strings mixing what the rules look at: ASCII, the forbidden set, controls, bidi and
/// zero-width characters, fullwidth and other compatibility forms, combining marks, and any
/// Unicode scalar value.
fn text() -> impl Strategy<Value = String> {
    let interesting = prop_oneof![
        4 => proptest::char::range('a', 'z'),
        2 => proptest::char::range('0', '9'),
        1 => prop::sample::select(vec![
            '\\', '/', ':', '*', '?', '"', '<', '>', '|', '.', ' ', '-', '_', '#', '\'',
        ]),
        1 => proptest::char::range('\u{0}', '\u{1f}'),
        1 => prop::sample::select(vec![
            '\u{7f}', '\u{85}', '\u{9b}', '\u{a0}', '\u{ad}', '\u{200b}', '\u{200d}',
            '\u{200e}', '\u{202a}', '\u{202e}', '\u{2066}', '\u{2069}', '\u{2028}', '\u{3000}',
            '\u{3164}', '\u{fe0f}', '\u{feff}', '\u{e0041}', '\u{e000}', '\u{10ffff}',
        ]),
        1 => proptest::char::range('\u{ff01}', '\u{ff5e}'),
        1 => proptest::char::range('\u{300}', '\u{36f}'),
        1 => prop::sample::select(vec!['é', 'ü', 'ß', 'Ж', 'ж', '中', 'ع', 'ﬁ', '²', 'Ⅻ']),
        1 => any::<char>(),
    ];
    prop::collection::vec(interesting, 0..24).prop_map(|v| v.into_iter().collect())
}

/// A refusal for a character names that character, by code point, in its message.
fn names_the_character(rule: &CharRule, text: &str) -> bool {
    let (found, message) = match rule {
        CharRule::Invisible { found, .. } | CharRule::NotNfkc { found, .. } => {
            (*found, rule.to_string())
        }
    };
    text.contains(found) && message.contains(&format!("U+{:04X}", u32::from(found)))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn every_name_is_accepted_or_refused_with_a_rule(name in text()) {
        match check_name(&name) {
            Ok(()) => {
                let n = name.chars().count();
                prop_assert!((names::MIN_LEN..=names::MAX_LEN).contains(&n));
                prop_assert!(name.chars().all(|c| names::chars::invisible(c).is_none()));
                prop_assert!(names::chars::check_nfkc(&name).is_ok());
                prop_assert!(!name.chars().any(|c| names::FORBIDDEN.contains(&c) || c == '.'));
                prop_assert!(!name.chars().any(char::is_whitespace));
                prop_assert!(validate_name(&name).is_ok());
            }
            Err(rule) => {
                prop_assert!(!rule.to_string().is_empty());
                let error = validate_name(&name).err().map(|e| e.to_string());
                prop_assert!(error.is_some_and(|m| m.contains(&rule.to_string())));
                match &rule {
                    NameRule::Chars(r @ CharRule::Invisible { found, .. }) => {
                        prop_assert!(names_the_character(r, &name), "{rule}");
                        // The first invisible character is the one named.
                        prop_assert_eq!(
                            name.chars().find(|c| names::chars::invisible(*c).is_some()),
                            Some(*found)
                        );
                    }
                    NameRule::Chars(r @ CharRule::NotNfkc { nfkc, .. }) => {
                        prop_assert!(names_the_character(r, &name), "{rule}");
                        prop_assert!(nfkc != &name);
                    }
                    NameRule::ForbiddenCharacter { found } => {
                        prop_assert!(name.contains(*found));
                    }
                    NameRule::Length { chars } => {
                        prop_assert_eq!(*chars, name.chars().count());
                    }
                    NameRule::Dot | NameRule::Blank | NameRule::Reserved => {}
                    NameRule::NotUnique => prop_assert!(false, "needs the store"),
                }
            }
        }
    }

    #[test]
    fn every_free_text_is_accepted_or_refused_naming_field_and_character(value in text()) {
        match check_free_text("customer", &value) {
            Ok(()) => {
                prop_assert!(value.chars().all(|c| names::chars::invisible(c).is_none()));
                prop_assert!(names::chars::check_nfkc(&value).is_ok());
            }
            Err(v) => {
                prop_assert_eq!(v.field, "customer");
                prop_assert!(v.to_string().starts_with("customer must "));
                prop_assert!(names_the_character(&v.rule, &value), "{v}");
            }
        }
    }

    #[test]
    fn a_suggested_nfkc_form_passes_the_nfkc_rule(value in text()) {
        if let Err(CharRule::NotNfkc { nfkc, .. }) = names::chars::check_nfkc(&value) {
            prop_assert!(names::chars::check_nfkc(&nfkc).is_ok());
        }
    }
}
