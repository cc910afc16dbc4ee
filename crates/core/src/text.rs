//! Which characters a name or a free-text field that reaches Entra or an email may hold.
//!
//! Two rules, from Unicode's own data (ICU4X `icu_properties` and `icu_normalizer`, already
//! built into the service for IDNA host names, so no new code is compiled in):
//! - **Visible characters only.** Refused: controls (general category Cc: NUL, BEL, ESC, DEL…),
//!   format characters (Cf: bidi overrides and isolates, zero-width space and joiners, the BOM,
//!   soft hyphen, tags), other default-ignorable code points (Hangul fillers, variation
//!   selectors: rendered as nothing), private-use (Co) and unassigned (Cn) code points, and the
//!   line and paragraph separators (Zl, Zp). They let a name look like another, reorder the text
//!   around it (U+202E), or carry terminal escapes into logs and consoles.
//! - **NFKC.** A text that Unicode compatibility normalisation (NFKC, UAX #15) would change is
//!   refused, with the character and its normal form: fullwidth `Ａ` (U+FF21) for `A`, the
//!   ligature `ﬁ`, superscripts, a decomposed `e` + U+0301 for `é`, NBSP for a space. Refused
//!   rather than silently normalised, so that what was asked for is exactly what Entra shows and
//!   what uniqueness is checked on, and two names that render alike cannot both exist.
//!
//! Not covered: look-alikes across scripts (Cyrillic `а` for Latin `a`, UTS #39 confusables),
//! which NFKC leaves alone.

use std::fmt;

use icu_normalizer::ComposingNormalizerBorrowed;
use icu_properties::props::{DefaultIgnorableCodePoint, GeneralCategory};
use icu_properties::{CodePointMapData, CodePointSetData};
use serde::{Deserialize, Serialize};

/// What kind of invisible or meaningless character was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Invisible {
    /// General category Cc (C0 and C1 controls, DEL).
    Control,
    /// General category Cf: bidi controls, zero-width characters, BOM, soft hyphen, tags.
    Format,
    /// Default-ignorable in another category (Hangul fillers, variation selectors).
    Ignorable,
    /// General category Co: meaningful only by private agreement.
    PrivateUse,
    /// General category Cn: not assigned in the Unicode version we know.
    Unassigned,
    /// General categories Zl and Zp (U+2028, U+2029).
    Separator,
}

impl Invisible {
    /// How the message describes it.
    fn describe(self) -> &'static str {
        match self {
            Invisible::Control => "a control character",
            Invisible::Format => "an invisible format character",
            Invisible::Ignorable => "a character that renders as nothing",
            Invisible::PrivateUse => "a private-use character",
            Invisible::Unassigned => "an unassigned code point",
            Invisible::Separator => "a line or paragraph separator",
        }
    }
}

/// A broken character rule: which character, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "rule")]
pub enum CharRule {
    /// An invisible or meaningless character.
    Invisible {
        /// The first such character.
        found: char,
        /// Why it is refused.
        kind: Invisible,
    },
    /// The text is not in NFKC form.
    NotNfkc {
        /// The first character that normalisation changes (or composes with what precedes).
        found: char,
        /// The whole text in NFKC form, to suggest.
        nfkc: String,
    },
}

impl fmt::Display for CharRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CharRule::Invisible { found, kind } => write!(
                f,
                "must not contain {} ({})",
                CodePoint(*found),
                kind.describe()
            ),
            CharRule::NotNfkc { found, nfkc } => write!(
                f,
                "must be in Unicode NFKC form: {} is a compatibility or decomposed form (as NFKC: {nfkc:?})",
                CodePoint(*found)
            ),
        }
    }
}

/// A character as `U+XXXX` and, for the characters most used to hide or disguise text, its
/// Unicode name (controls by their NameAliases.txt alias).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodePoint(
    /// The character.
    pub char,
);

impl fmt::Display for CodePoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cp = u32::from(self.0);
        write!(f, "U+{cp:04X}")?;
        match NAMES.binary_search_by_key(&cp, |(c, _)| *c) {
            Ok(i) => write!(f, " {}", NAMES[i].1),
            Err(_) => Ok(()),
        }
    }
}

/// Names of the characters most used to hide or disguise text (UnicodeData.txt; for controls,
/// which have no name, NameAliases.txt), sorted by code point. Any other character is named
/// by its code point alone.
const NAMES: &[(u32, &str)] = &[
    (0x00, "NULL"),
    (0x07, "ALERT"),
    (0x08, "BACKSPACE"),
    (0x09, "CHARACTER TABULATION"),
    (0x0A, "LINE FEED"),
    (0x0B, "LINE TABULATION"),
    (0x0C, "FORM FEED"),
    (0x0D, "CARRIAGE RETURN"),
    (0x1B, "ESCAPE"),
    (0x7F, "DELETE"),
    (0x85, "NEXT LINE"),
    (0x9B, "CONTROL SEQUENCE INTRODUCER"),
    (0xA0, "NO-BREAK SPACE"),
    (0xAD, "SOFT HYPHEN"),
    (0x34F, "COMBINING GRAPHEME JOINER"),
    (0x61C, "ARABIC LETTER MARK"),
    (0x115F, "HANGUL CHOSEONG FILLER"),
    (0x1160, "HANGUL JUNGSEONG FILLER"),
    (0x180E, "MONGOLIAN VOWEL SEPARATOR"),
    (0x200B, "ZERO WIDTH SPACE"),
    (0x200C, "ZERO WIDTH NON-JOINER"),
    (0x200D, "ZERO WIDTH JOINER"),
    (0x200E, "LEFT-TO-RIGHT MARK"),
    (0x200F, "RIGHT-TO-LEFT MARK"),
    (0x2028, "LINE SEPARATOR"),
    (0x2029, "PARAGRAPH SEPARATOR"),
    (0x202A, "LEFT-TO-RIGHT EMBEDDING"),
    (0x202B, "RIGHT-TO-LEFT EMBEDDING"),
    (0x202C, "POP DIRECTIONAL FORMATTING"),
    (0x202D, "LEFT-TO-RIGHT OVERRIDE"),
    (0x202E, "RIGHT-TO-LEFT OVERRIDE"),
    (0x2060, "WORD JOINER"),
    (0x2061, "FUNCTION APPLICATION"),
    (0x2062, "INVISIBLE TIMES"),
    (0x2063, "INVISIBLE SEPARATOR"),
    (0x2064, "INVISIBLE PLUS"),
    (0x2066, "LEFT-TO-RIGHT ISOLATE"),
    (0x2067, "RIGHT-TO-LEFT ISOLATE"),
    (0x2068, "FIRST STRONG ISOLATE"),
    (0x2069, "POP DIRECTIONAL ISOLATE"),
    (0x3164, "HANGUL FILLER"),
    (0xFE0F, "VARIATION SELECTOR-16"),
    (0xFEFF, "ZERO WIDTH NO-BREAK SPACE"),
    (0xFFA0, "HALFWIDTH HANGUL FILLER"),
    (0xFFF9, "INTERLINEAR ANNOTATION ANCHOR"),
    (0xFFFA, "INTERLINEAR ANNOTATION SEPARATOR"),
    (0xFFFB, "INTERLINEAR ANNOTATION TERMINATOR"),
];

/// Why `c` is refused as invisible or meaningless, if it is.
pub fn invisible(c: char) -> Option<Invisible> {
    let kind = match CodePointMapData::<GeneralCategory>::new().get(c) {
        GeneralCategory::Control => Invisible::Control,
        GeneralCategory::Format => Invisible::Format,
        GeneralCategory::PrivateUse => Invisible::PrivateUse,
        GeneralCategory::Unassigned => Invisible::Unassigned,
        GeneralCategory::LineSeparator | GeneralCategory::ParagraphSeparator => {
            Invisible::Separator
        }
        _ if CodePointSetData::new::<DefaultIgnorableCodePoint>().contains(c) => {
            Invisible::Ignorable
        }
        _ => return None,
    };
    Some(kind)
}

/// The first invisible or meaningless character of `text`, if any.
pub fn check_visible(text: &str) -> Result<(), CharRule> {
    match text
        .chars()
        .find_map(|c| invisible(c).map(|kind| (c, kind)))
    {
        Some((found, kind)) => Err(CharRule::Invisible { found, kind }),
        None => Ok(()),
    }
}

/// Refuses `text` unless NFKC leaves it as it is; the error names the first character that
/// normalisation changes.
pub fn check_nfkc(text: &str) -> Result<(), CharRule> {
    let nfkc = ComposingNormalizerBorrowed::new_nfkc();
    if nfkc.is_normalized(text) {
        return Ok(());
    }
    // The first character whose prefix stops being normalised: a compatibility character
    // itself, or a combining mark that composes with the one before it.
    let found = text
        .char_indices()
        .map(|(i, c)| (i + c.len_utf8(), c))
        .find(|(end, _)| !nfkc.is_normalized(&text[..*end]))
        .or_else(|| text.chars().last().map(|c| (text.len(), c)))
        .map(|(_, c)| c)
        .unwrap_or(char::REPLACEMENT_CHARACTER);
    Err(CharRule::NotNfkc {
        found,
        nfkc: nfkc.normalize(text).into_owned(),
    })
}

/// Both character rules, visibility first.
pub fn check_chars(text: &str) -> Result<(), CharRule> {
    check_visible(text)?;
    check_nfkc(text)
}

/// A free-text field that reaches Entra or an email was refused: which field, which rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextViolation {
    /// The field, as the caller named it (e.g. `customer`).
    pub field: &'static str,
    /// The character rule broken.
    pub rule: CharRule,
}

impl fmt::Display for TextViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.field, self.rule)
    }
}

/// The app-name character rules for any free text that reaches Entra or an email (customer
/// and provider names, server names, admin UPNs, service ids in secret names): visible
/// characters only, NFKC form. Length and other per-field rules stay with the caller.
pub fn check_free_text(field: &'static str, value: &str) -> Result<(), TextViolation> {
    check_chars(value).map_err(|rule| TextViolation { field, rule })
}

/// The shape of a user principal name, wherever one enters (an invitation's expected admin,
/// the UPN an admin types): `user@domain` with both parts non-empty, one `@`, no blank, at
/// most 256 characters; and, since it is compared with the signed-in account and written to
/// the audit log, the [`check_chars`] rules (a control character would make an invitation no
/// sign-in can match). Callers trim first. `Err` says the rule broken.
pub fn check_upn(upn: &str) -> Result<(), String> {
    let shaped = upn.chars().count() <= 256
        && !upn.chars().any(char::is_whitespace)
        && upn.split_once('@').is_some_and(|(user, domain)| {
            !user.is_empty() && !domain.is_empty() && !domain.contains('@')
        });
    if !shaped {
        return Err(
            "must look like user@domain (one '@', no blanks, at most 256 characters)".into(),
        );
    }
    check_chars(upn).map_err(|rule| rule.to_string())
}

/// The customer's Entra tenant as an invitation names it: a tenant id (a GUID,
/// `8-4-4-4-12` hex digits) or a domain name (ASCII labels of letters, digits and `-`, 1 to 63
/// characters each, not starting or ending with `-`; at least two labels; at most 253
/// characters), the two forms Microsoft's `{tenant}` authority segment takes besides the
/// tenant-independent `organizations`, `common` and `consumers`, which name no tenant and are
/// refused. Callers trim first; the form to store is [`tenant_key`]. `Err` says the rule broken.
pub fn check_tenant(tenant: &str) -> Result<(), String> {
    if is_guid(tenant) {
        return Ok(());
    }
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let labels: Vec<&str> = tenant.split('.').collect();
    if tenant.len() <= 253 && labels.len() >= 2 && labels.iter().all(|l| label_ok(l)) {
        return Ok(());
    }
    Err(
        "must be a tenant id (a GUID) or a domain name such as contoso.onmicrosoft.com \
         (letters, digits, '-' and '.', at least two labels); organizations, common and \
         consumers name no tenant"
            .into(),
    )
}

/// The stored form of a tenant that passed [`check_tenant`]: lower case (tenant ids and domain
/// names compare case-insensitively).
pub fn tenant_key(tenant: &str) -> String {
    tenant.trim().to_ascii_lowercase()
}

/// Whether `s` has a GUID's shape, `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` in hex digits (a
/// tenant id, a client id).
pub fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_upn_is_user_at_domain() {
        assert!(check_upn("admin@contoso.onmicrosoft.com").is_ok());
        for bad in [
            "",
            "@",
            "a@",
            "@contoso.com",
            "a@b@c",
            "a b@c.com",
            " a@c.com",
            "a@c.com\t",
        ] {
            assert!(check_upn(bad).is_err(), "{bad:?}");
        }
        assert!(check_upn(&format!("{}@c.com", "a".repeat(251))).is_err());
    }

    #[test]
    fn the_name_table_is_sorted_so_lookups_find_every_entry() {
        assert!(NAMES.windows(2).all(|w| w[0].0 < w[1].0));
        for (cp, name) in NAMES {
            let c = char::from_u32(*cp).expect("a character");
            assert_eq!(CodePoint(c).to_string(), format!("U+{cp:04X} {name}"));
        }
        assert_eq!(CodePoint('\u{E000}').to_string(), "U+E000");
    }

    #[test]
    fn categories_from_unicode_data() {
        assert_eq!(invisible('\0'), Some(Invisible::Control));
        assert_eq!(invisible('\u{7f}'), Some(Invisible::Control));
        assert_eq!(invisible('\u{9b}'), Some(Invisible::Control));
        assert_eq!(invisible('\u{202e}'), Some(Invisible::Format));
        assert_eq!(invisible('\u{200b}'), Some(Invisible::Format));
        assert_eq!(invisible('\u{feff}'), Some(Invisible::Format));
        assert_eq!(invisible('\u{e0041}'), Some(Invisible::Format)); // TAG LATIN CAPITAL LETTER A
        assert_eq!(invisible('\u{3164}'), Some(Invisible::Ignorable));
        assert_eq!(invisible('\u{fe0f}'), Some(Invisible::Ignorable));
        assert_eq!(invisible('\u{e000}'), Some(Invisible::PrivateUse));
        assert_eq!(invisible('\u{10ffff}'), Some(Invisible::Unassigned));
        assert_eq!(invisible('\u{2028}'), Some(Invisible::Separator));
        for c in [
            'a', 'Z', '9', '-', '_', '#', 'é', 'ß', 'ж', '中', 'ع', ' ', '\u{a0}',
        ] {
            assert_eq!(invisible(c), None, "{c:?}");
        }
    }

    #[test]
    fn nfkc_names_the_changed_character() {
        assert_eq!(check_nfkc("Abc"), Ok(()));
        assert_eq!(check_nfkc("Zürich"), Ok(()));
        assert_eq!(
            check_nfkc("A\u{ff42}c"),
            Err(CharRule::NotNfkc {
                found: '\u{ff42}',
                nfkc: "Abc".into()
            })
        );
        // A decomposed é: each character alone is normalised, the pair is not.
        assert_eq!(
            check_nfkc("cafe\u{301}"),
            Err(CharRule::NotNfkc {
                found: '\u{301}',
                nfkc: "café".into()
            })
        );
        assert_eq!(
            check_nfkc("\u{fb01}le"),
            Err(CharRule::NotNfkc {
                found: '\u{fb01}',
                nfkc: "file".into()
            })
        );
    }

    #[test]
    fn messages_name_the_code_point() {
        let e = check_chars("Ab\u{1b}[2J\u{202e}cd").expect_err("escape");
        assert_eq!(
            e.to_string(),
            "must not contain U+001B ESCAPE (a control character)"
        );
        let e = check_chars("ab\u{202e}cd").expect_err("override");
        assert_eq!(
            e.to_string(),
            "must not contain U+202E RIGHT-TO-LEFT OVERRIDE (an invisible format character)"
        );
        let e = check_chars("\u{ff21}bc").expect_err("fullwidth");
        assert!(e.to_string().contains("U+FF21") && e.to_string().contains("\"Abc\""));
    }
    #[test]
    fn a_tenant_is_a_guid_or_a_domain() {
        for ok in [
            "72f988bf-86f1-41af-91ab-2d7cd011db47",
            "72F988BF-86F1-41AF-91AB-2D7CD011DB47",
            "contoso.onmicrosoft.com",
            "contoso.com",
            "x-1.co.uk",
        ] {
            assert!(check_tenant(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "organizations",
            "common",
            "consumers",
            "contoso",
            "-contoso.com",
            "contoso-.com",
            "contoso..com",
            "contoso.com/",
            "a b.com",
            "contoso.com.",
            "72f988bf-86f1-41af-91ab-2d7cd011db4",
            "72f988bf86f141af91ab2d7cd011db47x",
            "zürich.ch",
        ] {
            assert!(check_tenant(bad).is_err(), "{bad:?}");
        }
        assert!(check_tenant(&format!("{}.com", "a".repeat(64))).is_err());
        assert_eq!(tenant_key(" Contoso.COM "), "contoso.com");
    }
}
