//! The rules every piece of client text must pass before it reaches SQL, the audit trail or a
//! log line: one function per kind of field, each refusing NUL and other control characters,
//! bounding the length and naming the field in its error.
//!
//! Handlers never check text themselves: the extractors in [`crate::http::extract`] require
//! their target type to implement [`Validate`], so a body, query or path that skips these rules
//! does not compile. The OpenAPI document takes its patterns from the constants below, so the
//! document and the server cannot disagree.

use crate::error::ApiError;

/// A request type whose text fields have been checked against the rules of this module.
///
/// Implemented by every type the API deserializes from a body, query string or path; the
/// extractors call it right after deserializing and answer 422 with the rule's code on failure.
pub trait Validate {
    /// Checks every text field; the error names the field and the rule.
    fn validate(&self) -> Result<(), ApiError>;
}

/// A rule a text field broke: the stable code and a message naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InputError {
    /// Stable code, e.g. `invalid_symbol`.
    pub code: &'static str,
    /// Human explanation naming the field.
    pub message: String,
}

impl From<InputError> for ApiError {
    fn from(e: InputError) -> ApiError {
        ApiError::Unprocessable {
            code: e.code,
            message: e.message,
        }
    }
}

/// Registration usernames: 3 to 32 ASCII letters, digits, `_`, `.`, `-`.
pub const USERNAME_PATTERN: &str = "^[A-Za-z0-9_.-]{3,32}$";
/// Instrument symbols, as `INSTRUMENTS` defines them: 1 to 32 of `A-Z`, `0-9`, `.`, `_`, `-`.
pub const SYMBOL_PATTERN: &str = "^[A-Z0-9._-]{1,32}$";
/// `client_order_id`: 1 to 64 visible ASCII characters (`!` to `~`; no space).
pub const CLIENT_ORDER_ID_PATTERN: &str = "^[!-~]{1,64}$";
/// Passwords: 8 to 128 characters, none of them a control character.
pub const PASSWORD_PATTERN: &str = "^[^\\x00-\\x1F\\x7F-\\x9F]{8,128}$";
/// Login names, refresh tokens and other free text: 1 to 256 characters, no control character.
/// A login name is looked up whatever its shape, so names created before a rule changed still
/// log in; only what could not be stored or logged safely is refused.
pub const TEXT_PATTERN: &str = "^[^\\x00-\\x1F\\x7F-\\x9F]{1,256}$";
/// Longest free-text field ([`TEXT_PATTERN`]).
pub const MAX_TEXT: usize = 256;

fn refuse(code: &'static str, field: &str, rule: &str, found: Option<String>) -> InputError {
    let message = match found {
        Some(found) => format!("{field} must be {rule} ({found})"),
        None => format!("{field} must be {rule}"),
    };
    InputError { code, message }
}

/// Describes the first control character of `value`, if any, for the error message.
fn control_char(value: &str) -> Option<String> {
    value
        .chars()
        .enumerate()
        .find(|(_, c)| c.is_control())
        .map(|(i, c)| {
            format!(
                "found the control character U+{:04X} at position {i}",
                c as u32
            )
        })
}

/// Checks a login or registration username ([`USERNAME_PATTERN`]); 422 `invalid_username`.
pub fn username(field: &str, value: &str) -> Result<(), InputError> {
    let ok = (3..=32).contains(&value.len())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if ok {
        return Ok(());
    }
    Err(refuse(
        "invalid_username",
        field,
        "3 to 32 characters of letters, digits, '_', '.', '-'",
        control_char(value),
    ))
}

/// Checks a password ([`PASSWORD_PATTERN`]); 422 `invalid_password`. The password itself is
/// never echoed.
pub fn password(field: &str, value: &str) -> Result<(), InputError> {
    let ok = (8..=128).contains(&value.chars().count()) && control_char(value).is_none();
    if ok {
        return Ok(());
    }
    Err(refuse(
        "invalid_password",
        field,
        "8 to 128 characters, none of them a control character",
        None,
    ))
}

/// Checks an instrument symbol ([`SYMBOL_PATTERN`]); 422 `invalid_symbol`. Whether the symbol
/// is configured is a separate question (404 or 422 `unknownSymbol`).
pub fn symbol(field: &str, value: &str) -> Result<(), InputError> {
    let ok = (1..=32).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok {
        return Ok(());
    }
    Err(refuse(
        "invalid_symbol",
        field,
        "1 to 32 characters of A-Z, 0-9, '.', '_', '-'",
        control_char(value),
    ))
}

/// Checks a `client_order_id` ([`CLIENT_ORDER_ID_PATTERN`]); 422 `invalidClientOrderId`.
pub fn client_order_id(field: &str, value: &str) -> Result<(), InputError> {
    if (1..=64).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_graphic()) {
        return Ok(());
    }
    Err(refuse(
        "invalidClientOrderId",
        field,
        "1 to 64 visible ASCII characters ('!' to '~', no space)",
        control_char(value),
    ))
}

/// Checks free text ([`TEXT_PATTERN`]); 422 `invalid_text`.
pub fn text(field: &str, value: &str) -> Result<(), InputError> {
    let len = value.chars().count();
    if (1..=MAX_TEXT).contains(&len) && control_char(value).is_none() {
        return Ok(());
    }
    Err(refuse(
        "invalid_text",
        field,
        "1 to 256 characters, none of them a control character",
        control_char(value).or_else(|| (len > MAX_TEXT).then(|| format!("{len} characters"))),
    ))
}

/// Applies `rule` to an optional field.
pub fn optional(
    rule: fn(&str, &str) -> Result<(), InputError>,
    field: &str,
    value: Option<&str>,
) -> Result<(), InputError> {
    value.map_or(Ok(()), |v| rule(field, v))
}

/// The key under which usernames are unique: the UTS #39 confusable skeleton of the
/// case-folded name, case-folded again (skeleton prototypes may be upper case, e.g. `0` → `O`).
/// `Admin`, `ADMIN` and `adrnin` all have the key of `admin`.
///
/// Migration `0010_username_key` computes the same key in SQL for existing names of the
/// registration alphabet; a test keeps the two in step.
pub fn username_key(name: &str) -> String {
    let folded = name.to_lowercase();
    unicode_security::confusable_detection::skeleton(&folded)
        .collect::<String>()
        .to_lowercase()
}

/// A bounded copy of `value` for the audit trail and logs: at most `max` characters, control
/// characters replaced by U+FFFD, and a marker when it was cut.
pub fn bounded(value: &str, max: usize) -> String {
    let mut out: String = value
        .chars()
        .take(max)
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect();
    if value.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_refused_in_every_kind_of_field_with_the_field_named() {
        for rule in [username, password, symbol, client_order_id, text] {
            for bad in [
                "a\0bcdefghij",
                "ABC\u{7}DEFGHIJ",
                "abc\u{9f}defghij",
                "x\ny-zzzzzzz",
            ] {
                let err = rule("the_field", bad).expect_err(bad);
                assert!(err.message.starts_with("the_field must be"), "{err:?}");
                assert!(
                    !err.message.contains(bad),
                    "the raw value is not echoed: {err:?}"
                );
            }
        }
        let err = symbol("symbol", "BTC\0USD").expect_err("nul");
        assert_eq!(err.code, "invalid_symbol");
        assert!(err.message.contains("U+0000 at position 3"), "{err:?}");
    }

    #[test]
    fn the_rules_accept_what_their_patterns_describe() {
        type Rule = fn(&str, &str) -> Result<(), InputError>;
        let cases: [(Rule, &str, &[&str], &[&str]); 5] = [
            (
                username,
                USERNAME_PATTERN,
                &["bob", "a.b-c_9", &"x".repeat(32)],
                &["ab", "bob!", "bøb", &"x".repeat(33)],
            ),
            (
                symbol,
                SYMBOL_PATTERN,
                &["BTC-USD", "A", "X.Y_Z"],
                &["", "aapl", "BTC USD", &"X".repeat(33)],
            ),
            (
                client_order_id,
                CLIENT_ORDER_ID_PATTERN,
                &["a", "!~#{}", &"x".repeat(64)],
                &["", "a b", "é", &"x".repeat(65)],
            ),
            (
                password,
                PASSWORD_PATTERN,
                &["12345678", "pass word é", &"p".repeat(128)],
                &["short", &"p".repeat(129)],
            ),
            (
                text,
                TEXT_PATTERN,
                &["x", "any text, even spaces and ünïcode"],
                &["", &"t".repeat(257)],
            ),
        ];
        for (rule, pattern, good, bad) in cases {
            let re = regex::Regex::new(pattern).expect("pattern");
            for g in good {
                assert!(rule("f", g).is_ok(), "{pattern} {g:?}");
                assert!(re.is_match(g), "{pattern} {g:?}");
            }
            for b in bad {
                assert!(rule("f", b).is_err(), "{pattern} {b:?}");
                assert!(!re.is_match(b), "{pattern} {b:?}");
            }
        }
    }

    #[test]
    fn username_keys_fold_case_and_look_alikes() {
        let admin = username_key("admin");
        for same in [
            "ADMIN",
            "Admin",
            "adrnin",
            "ADRNIN",
            "\u{430}dmin",
            "adm\u{456}n",
        ] {
            assert_eq!(username_key(same), admin, "{same}");
        }
        assert_eq!(username_key("b0b"), username_key("BOB"));
        assert_eq!(username_key("a1ice"), username_key("alice"));
        assert_ne!(username_key("alice"), username_key("alicia"));
    }

    #[test]
    fn bounded_copies_are_short_and_printable() {
        assert_eq!(bounded("abc", 10), "abc");
        assert_eq!(bounded("a\0b", 10), "a\u{FFFD}b");
        let long = "x".repeat(100_000);
        assert_eq!(bounded(&long, 64).chars().count(), 65);
    }
}
