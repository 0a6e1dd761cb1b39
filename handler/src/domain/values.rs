//! Value types built at the edge ("parse, don't validate"). Each constructor returns a
//! [`ValueError`] whose message is safe to show: it never echoes the rejected value, which may be
//! patient data.

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueError(pub String);

fn fail<T>(message: &str) -> Result<T, ValueError> {
    Err(ValueError(message.to_owned()))
}

fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// Trimmed text of bounded length without control characters.
fn bounded_text(raw: &str, max_chars: usize, allow_newlines: bool) -> Result<String, ValueError> {
    let s = raw.trim();
    if s.is_empty() {
        return fail("must not be empty");
    }
    if s.chars().count() > max_chars {
        return Err(ValueError(format!("must be at most {max_chars} characters")));
    }
    let bad = if allow_newlines {
        s.chars().any(|c| c.is_control() && c != '\n' && c != '\r' && c != '\t')
    } else {
        has_control(s)
    };
    if bad {
        return fail("must not contain control characters");
    }
    Ok(s.to_owned())
}

macro_rules! string_value {
    ($name:ident) => {
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// For values read back from our own store, which only ever holds parsed values.
            pub fn from_trusted(s: String) -> Self {
                Self(s)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_value!(PersonName);
string_value!(EmailAddress);
string_value!(Username);
string_value!(Phone);
string_value!(LongText);
string_value!(SpecialtyCode);
string_value!(Title);

impl PersonName {
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        bounded_text(raw, 200, false).map(Self)
    }
}

impl Title {
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        bounded_text(raw, 120, false).map(Self)
    }
}

impl LongText {
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        bounded_text(raw, 4000, true).map(Self)
    }
}

impl EmailAddress {
    /// A pragmatic address check (RFC 5321 lengths, one `@`, a dotted domain of letters, digits and
    /// hyphens). Stored lower-cased, so uniqueness is case-insensitive on every engine.
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        let s = raw.trim();
        if s.is_empty() {
            return fail("must not be empty");
        }
        if s.len() > 254 {
            return fail("must be at most 254 characters");
        }
        let Some((local, domain)) = s.split_once('@') else {
            return fail("must be an email address like name@example.org");
        };
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && local.chars().all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c));
        let labels: Vec<&str> = domain.split('.').collect();
        let domain_ok = labels.len() >= 2
            && labels.iter().all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            })
            && labels.last().is_some_and(|tld| tld.chars().all(|c| c.is_ascii_alphabetic()) && tld.len() >= 2);
        if !(local_ok && domain_ok) {
            return fail("must be an email address like name@example.org");
        }
        Ok(Self(s.to_ascii_lowercase()))
    }
}

impl Username {
    /// 3–64 characters of lower-case letters, digits, `.`, `_` and `-`, starting with a letter or
    /// digit. Lower-cased on input, so `Ana` and `ana` are the same user everywhere.
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        let s = raw.trim().to_ascii_lowercase();
        if !(3..=64).contains(&s.len()) {
            return fail("must be 3 to 64 characters");
        }
        if !s.starts_with(|c: char| c.is_ascii_alphanumeric())
            || !s.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return fail("may contain only letters, digits, '.', '_' and '-', and must start with a letter or digit");
        }
        Ok(Self(s))
    }
}

impl Phone {
    /// International or national numbers: digits with optional `+` prefix, spaces, dashes,
    /// dots and parentheses; 7 to 15 digits (E.164 allows 15).
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        let s = raw.trim();
        let digits = s.chars().filter(char::is_ascii_digit).count();
        let allowed = s.char_indices().all(|(i, c)| c.is_ascii_digit() || " -.()".contains(c) || (c == '+' && i == 0));
        if !allowed || !(7..=15).contains(&digits) || s.len() > 32 {
            return fail("must be a phone number of 7 to 15 digits, optionally starting with +");
        }
        Ok(Self(s.to_owned()))
    }
}

impl SpecialtyCode {
    /// A stable, URL-safe code such as `cardiology` or `ear-nose-throat`.
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        let s = raw.trim();
        if !(2..=64).contains(&s.len())
            || !s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            || s.starts_with('-')
            || s.ends_with('-')
        {
            return fail("must be 2 to 64 lower-case letters, digits or '-'");
        }
        Ok(Self(s.to_owned()))
    }
}

/// FHIR AdministrativeGender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Gender {
    Female,
    Male,
    Other,
    Unknown,
}

impl Gender {
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "female" => Ok(Gender::Female),
            "male" => Ok(Gender::Male),
            "other" => Ok(Gender::Other),
            "unknown" => Ok(Gender::Unknown),
            _ => fail("must be one of female, male, other, unknown"),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Gender::Female => "female",
            Gender::Male => "male",
            Gender::Other => "other",
            Gender::Unknown => "unknown",
        }
    }
}

/// A birth date in ISO format, not in the future and not before 1900.
pub fn parse_birth_date(raw: &str, today: NaiveDate) -> Result<NaiveDate, ValueError> {
    let date = NaiveDate::parse_from_str(raw.trim(), "%Y-%m-%d")
        .map_err(|_| ValueError("must be a date in the form YYYY-MM-DD".into()))?;
    if date > today {
        return fail("must not be in the future");
    }
    if date.year() < 1900 {
        return fail("must be in 1900 or later");
    }
    Ok(date)
}

/// An IANA time-zone name known to the pinned tz database (chrono-tz).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeZone(chrono_tz::Tz);

impl TimeZone {
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        raw.trim()
            .parse::<chrono_tz::Tz>()
            .map(TimeZone)
            .map_err(|_| ValueError("must be an IANA time-zone name such as Europe/Berlin".into()))
    }

    pub fn tz(self) -> chrono_tz::Tz {
        self.0
    }

    pub fn name(self) -> &'static str {
        self.0.name()
    }
}

impl schemars::JsonSchema for TimeZone {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "TimeZone".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "An IANA time-zone name",
            "examples": ["Europe/Berlin"],
        })
    }
}

impl Serialize for TimeZone {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// Free-text search input: trimmed, 1–100 characters, lower-cased for case-insensitive matching
/// against the stored `search_key` columns.
pub fn parse_search(raw: &str) -> Result<String, ValueError> {
    let s = bounded_text(raw, 100, false)?;
    Ok(search_key(&s))
}

/// The normalized form used for name search on every engine (Unicode lower case).
pub fn search_key(s: &str) -> String {
    s.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert_eq!(EmailAddress::parse(" Ana.Lopez@Example.ORG ").unwrap().as_str(), "ana.lopez@example.org");
        for bad in [
            "",
            "a",
            "a@b",
            "a@b.c",
            "@example.org",
            "a@@example.org",
            "a b@example.org",
            "a..b@example.org",
            "a@-x.org",
            "a@exa mple.org",
            "ä@example.org",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn usernames_are_lowercase_and_restricted() {
        assert_eq!(Username::parse("Ana_L").unwrap().as_str(), "ana_l");
        for bad in ["ab", "-ana", "ana lopez", "ana/../x", &"x".repeat(65)] {
            assert!(Username::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn phones() {
        assert!(Phone::parse("+49 30 1234567").is_ok());
        assert!(Phone::parse("(555) 010-0199").is_ok());
        for bad in ["12345", "+1 555 CALL NOW", "1+5550100199", "1234567890123456"] {
            assert!(Phone::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn birth_dates() {
        let today = NaiveDate::from_ymd_opt(2026, 12, 3).unwrap();
        assert!(parse_birth_date("1981-02-29", today).is_err());
        assert!(parse_birth_date("1984-02-29", today).is_ok());
        assert!(parse_birth_date("2026-12-04", today).is_err());
        assert!(parse_birth_date("1899-12-31", today).is_err());
        assert!(parse_birth_date("03/12/1980", today).is_err());
    }

    #[test]
    fn names_and_zones() {
        assert!(PersonName::parse("  ").is_err());
        assert!(PersonName::parse("Ana\u{0}").is_err());
        assert_eq!(PersonName::parse(" Zoë Müller ").unwrap().as_str(), "Zoë Müller");
        assert_eq!(TimeZone::parse("America/New_York").unwrap().name(), "America/New_York");
        assert!(TimeZone::parse("Mars/Olympus").is_err());
        assert!(TimeZone::parse("").is_err());
    }

    #[test]
    fn errors_never_echo_input() {
        let secret = "jane.doe.1980@";
        let e = EmailAddress::parse(secret).unwrap_err();
        assert!(!e.0.contains("jane"));
    }
}
