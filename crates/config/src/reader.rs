//! The one way a setting is read: trimmed, blank meaning unset, every problem collected with the
//! variable's name and the fix.

use std::collections::HashMap;
use std::fmt::Display;
use std::path::Path;
use std::str::FromStr;

use crate::Secret;

pub(crate) struct Reader<'a> {
    vars: &'a HashMap<String, String>,
    pub(crate) errors: Vec<String>,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(vars: &'a HashMap<String, String>) -> Self {
        Self {
            vars,
            errors: Vec::new(),
        }
    }
}

impl Reader<'_> {
    pub(crate) fn raw(&self, name: &str) -> Option<String> {
        self.vars
            .get(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    pub(crate) fn error(&mut self, line: impl Into<String>) {
        self.errors.push(line.into());
    }

    /// `Ok(value)` when nothing was reported, else every problem.
    pub(crate) fn finish<T>(self, value: impl FnOnce() -> T) -> Result<T, crate::ConfigErrors> {
        if self.errors.is_empty() {
            Ok(value())
        } else {
            Err(crate::ConfigErrors(self.errors))
        }
    }

    /// A secret from `NAME` or from the file named by `NAME_FILE` (not both).
    pub(crate) fn secret(&mut self, name: &str) -> Option<Secret> {
        let file_var = format!("{name}_FILE");
        match (self.raw(name), self.raw(&file_var)) {
            (Some(_), Some(_)) => {
                self.error(format!("{name}: set either {name} or {file_var}, not both"));
                None
            }
            (Some(v), None) => Some(Secret::new(v)),
            (None, Some(path)) => match std::fs::read_to_string(Path::new(&path)) {
                Ok(v) if !v.trim().is_empty() => {
                    Some(Secret::new(v.trim_end_matches(['\r', '\n'])))
                }
                Ok(_) => {
                    self.error(format!(
                        "{file_var}: the file {path} is empty; put the secret in it"
                    ));
                    None
                }
                Err(e) => {
                    self.error(format!("{file_var}: cannot read {path} ({e}); mount the secret file or unset {file_var}"));
                    None
                }
            },
            (None, None) => None,
        }
    }

    pub(crate) fn required_secret(&mut self, name: &str, hint: &str) -> Secret {
        self.secret(name).unwrap_or_else(|| {
            self.error(format!(
                "{name}: missing; set {name} (or {name}_FILE), {hint}"
            ));
            Secret::new("")
        })
    }

    pub(crate) fn parse<T: FromStr>(&mut self, name: &str, default: T, expected: &str) -> T {
        match self.raw(name) {
            None => default,
            Some(v) => v.parse().unwrap_or_else(|_| {
                self.error(format!("{name}: '{v}' is not valid; expected {expected}"));
                default
            }),
        }
    }

    /// A number within `range` (inclusive), or the default.
    pub(crate) fn bounded<T>(&mut self, name: &str, default: T, range: Range<T>) -> T
    where
        T: FromStr + PartialOrd + Display + Copy,
    {
        let Range { lo, hi, unit, why } = range;
        let noun = if unit.is_empty() { "a number" } else { unit };
        let v = self.parse(name, default, &format!("{noun} ({lo}-{hi})"));
        if !(lo..=hi).contains(&v) {
            let unit = if unit.is_empty() {
                String::new()
            } else {
                format!(" {unit}")
            };
            let why = if why.is_empty() {
                String::new()
            } else {
                format!("; {why}")
            };
            self.error(format!("{name}: must be between {lo} and {hi}{unit}{why}"));
        }
        v
    }

    pub(crate) fn bool(&mut self, name: &str, default: bool) -> bool {
        match self.raw(name).map(|v| v.to_ascii_lowercase()) {
            None => default,
            Some(v) => match v.as_str() {
                "1" | "true" | "yes" | "on" => true,
                "0" | "false" | "no" | "off" => false,
                _ => {
                    self.error(format!(
                        "{name}: '{v}' is not valid; expected true or false"
                    ));
                    default
                }
            },
        }
    }

    pub(crate) fn list(&self, name: &str) -> Vec<String> {
        self.raw(name)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Reports `name` unless its (non-empty) value is a PostgreSQL URL.
    pub(crate) fn postgres_url(&mut self, name: &str, s: &Secret) {
        let v = s.expose();
        if !v.is_empty() && !has_scheme(v, &["postgres://", "postgresql://"]) {
            self.error(format!(
                "{name}: must be a postgres:// or postgresql:// URL"
            ));
        }
    }
}

/// The inclusive bounds of a setting, its unit (`""` for none) and why the bounds are what
/// they are (`""` when obvious), for [`Reader::bounded`].
pub(crate) struct Range<T> {
    lo: T,
    hi: T,
    unit: &'static str,
    why: &'static str,
}

pub(crate) fn range<T>(lo: T, hi: T, unit: &'static str) -> Range<T> {
    Range {
        lo,
        hi,
        unit,
        why: "",
    }
}

impl<T> Range<T> {
    /// Ends the out-of-range message with the reason for the bounds.
    pub(crate) fn because(self, why: &'static str) -> Self {
        Self { why, ..self }
    }
}

pub(crate) fn has_scheme(url: &str, schemes: &[&str]) -> bool {
    schemes.iter().any(|s| url.starts_with(s))
}
