//! Accounts: e-mail addresses, passwords and person names.

use crate::errors::FieldError;
use crate::limits::{EMAIL_MAX, PASSWORD_MAX, PASSWORD_MIN, PERSON_NAME_MAX};

/// A syntactically valid e-mail address, lower-cased so that one mailbox is one account.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

/// Top-level domains reserved for special use: mail to them can never be delivered.
pub const SPECIAL_USE_TLDS: &[&str] = &["arpa", "invalid", "local", "localhost", "onion", "test"];

impl Email {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let s = raw.trim();
        if s.is_empty() {
            return Err("Email is required");
        }
        if s.chars().count() > EMAIL_MAX {
            return Err("Email must be at most 255 characters");
        }
        let (local, domain) = s.rsplit_once('@').ok_or("Email must contain an @ sign")?;
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && local
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c));
        if !local_ok {
            return Err("Email has an invalid part before the @ sign");
        }
        let domain = domain.to_ascii_lowercase();
        let labels: Vec<&str> = domain.split('.').collect();
        let labels_ok = labels.len() >= 2
            && labels.iter().all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        let tld = labels.last().copied().unwrap_or_default();
        if !labels_ok || tld.len() < 2 || !tld.chars().all(|c| c.is_ascii_alphabetic()) {
            return Err("Email has an invalid domain");
        }
        if SPECIAL_USE_TLDS.contains(&tld) {
            return Err("Email domain is a special-use name that cannot receive mail");
        }
        Ok(Self(format!("{}@{domain}", local.to_lowercase())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// The characters that count as "special" in the password policy.
pub const PASSWORD_SPECIALS: &str = "!@#$%^&*()_+-=[]{}|;:,.<>?";

/// The registration password policy; the first failing rule is reported.
pub fn check_password_strength(password: &str) -> Result<(), &'static str> {
    let n = password.chars().count();
    if n < PASSWORD_MIN {
        return Err("Password must be at least 8 characters long");
    }
    if n > PASSWORD_MAX {
        return Err("Password must be at most 128 characters long");
    }
    if !password.chars().any(char::is_uppercase) {
        return Err("Password must contain at least one uppercase letter");
    }
    if !password.chars().any(char::is_lowercase) {
        return Err("Password must contain at least one lowercase letter");
    }
    if !password.chars().any(char::is_numeric) {
        return Err("Password must contain at least one digit");
    }
    if !password.chars().any(|c| PASSWORD_SPECIALS.contains(c)) {
        return Err("Password must contain at least one special character (one of !@#$%^&*()_+-=[]{}|;:,.<>?)");
    }
    Ok(())
}

/// A first or last name: NUL and CR removed, line feeds folded to spaces, trimmed, at most 50
/// characters. Stored verbatim otherwise (escaping is the renderer's job).
pub fn parse_person_name(field: &str, raw: Option<String>) -> Result<Option<String>, FieldError> {
    let Some(raw) = raw else { return Ok(None) };
    let cleaned: String = raw
        .chars()
        .filter(|c| *c != '\0' && *c != '\r')
        .map(|c| if c == '\n' { ' ' } else { c })
        .collect();
    let trimmed = cleaned.trim();
    if trimmed.chars().count() > PERSON_NAME_MAX {
        return Err(FieldError::body(
            field,
            "string_too_long",
            "Name must be at most 50 characters",
        ));
    }
    Ok(Some(trimmed.to_string()))
}

/// The display name: "first last", whichever is set, else the e-mail's local part.
pub fn full_name(first: Option<&str>, last: Option<&str>, email: &str) -> String {
    let first = first.filter(|s| !s.is_empty());
    let last = last.filter(|s| !s.is_empty());
    match (first, last) {
        (Some(f), Some(l)) => format!("{f} {l}"),
        (Some(n), None) | (None, Some(n)) => n.to_string(),
        (None, None) => email.split('@').next().unwrap_or(email).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_is_lower_cased_and_checked() {
        assert_eq!(
            Email::parse(" Alice@Example.COM ").unwrap().as_str(),
            "alice@example.com"
        );
        for bad in [
            "",
            "no-at",
            "@x.com",
            "a@b",
            "a@-x.com",
            "a..b@x.com",
            "a@x.test",
            "a@x.localhost",
            "a b@x.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn password_policy_reports_first_failure() {
        assert_eq!(
            check_password_strength("Ab1!"),
            Err("Password must be at least 8 characters long")
        );
        assert_eq!(
            check_password_strength("abcdefg1!"),
            Err("Password must contain at least one uppercase letter")
        );
        assert_eq!(
            check_password_strength("ABCDEFG1!"),
            Err("Password must contain at least one lowercase letter")
        );
        assert_eq!(
            check_password_strength("Abcdefgh!"),
            Err("Password must contain at least one digit")
        );
        assert!(check_password_strength("Abcdefg1~").is_err());
        assert!(check_password_strength("Abcdefg1!").is_ok());
        assert!(check_password_strength(&format!("Ab1!{}", "x".repeat(124))).is_ok());
        assert!(check_password_strength(&format!("Ab1!{}", "x".repeat(125))).is_err());
    }

    #[test]
    fn names_are_cleaned_and_bounded() {
        assert_eq!(
            parse_person_name("first_name", Some(" A\nB\r ".into())).unwrap(),
            Some("A B".into())
        );
        assert_eq!(
            parse_person_name("first_name", Some("<b>&'".into())).unwrap(),
            Some("<b>&'".into())
        );
        assert!(parse_person_name("first_name", Some("x".repeat(51))).is_err());
        assert_eq!(full_name(Some(""), None, "bob@x.com"), "bob");
        assert_eq!(full_name(Some("A"), Some("B"), "bob@x.com"), "A B");
    }
}
