//! Workspaces (tenants): create and update input.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::artifact::numbers_in_range;
use crate::errors::{FieldError, ValidationErrors};
use crate::limits::{WORKSPACE_DESCRIPTION_MAX, WORKSPACE_NAME_MAX, WORKSPACE_SLUG_MAX};

fn parse_settings(raw: &Map<String, Value>) -> Result<(), FieldError> {
    if raw.values().all(numbers_in_range) {
        Ok(())
    } else {
        Err(FieldError::body(
            "settings",
            "value_error",
            "Settings numbers must be within 1e300 in magnitude",
        ))
    }
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceInput {
    pub name: String,
    pub slug: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub settings: Map<String, Value>,
}

/// Update input: absent or null fields are left unchanged; the slug is immutable.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceUpdateInput {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub settings: Option<Map<String, Value>>,
    #[serde(default)]
    pub is_active: Option<bool>,
    /// Accepted and ignored, so a workspace read can be sent back: the slug is immutable.
    #[serde(default)]
    pub slug: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewWorkspace {
    pub name: String,
    pub slug: String,
    pub description: Option<String>,
    pub settings: Map<String, Value>,
}

fn parse_name(raw: &str) -> Result<String, FieldError> {
    match raw.chars().count() {
        0 => Err(FieldError::body(
            "name",
            "string_too_short",
            "Name must have at least 1 character",
        )),
        n if n > WORKSPACE_NAME_MAX => Err(FieldError::body(
            "name",
            "string_too_long",
            "Name must be at most 255 characters",
        )),
        _ => Ok(raw.to_string()),
    }
}

fn parse_description(raw: &str) -> Result<String, FieldError> {
    if raw.chars().count() > WORKSPACE_DESCRIPTION_MAX {
        return Err(FieldError::body(
            "description",
            "string_too_long",
            "Description must be at most 1000 characters",
        ));
    }
    Ok(raw.to_string())
}

/// Slugs are URL-safe: 1-100 of `a-z`, `0-9` and `-`.
pub fn parse_slug(raw: &str) -> Result<String, FieldError> {
    let ok = !raw.is_empty()
        && raw.len() <= WORKSPACE_SLUG_MAX
        && raw
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(raw.to_string())
    } else {
        Err(FieldError::body(
            "slug",
            "string_pattern_mismatch",
            "Slug must be 1-100 characters of a-z, 0-9 and '-'",
        ))
    }
}

impl WorkspaceInput {
    pub fn validate(self) -> Result<NewWorkspace, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let name = errors.collect(parse_name(&self.name));
        let slug = errors.collect(parse_slug(&self.slug));
        errors.collect(parse_settings(&self.settings));
        let description = self
            .description
            .map(|d| errors.collect(parse_description(&d)));
        errors.into_result(|| NewWorkspace {
            name: name.unwrap(),
            slug: slug.unwrap(),
            description: description.flatten(),
            settings: self.settings,
        })
    }
}

impl WorkspaceUpdateInput {
    pub fn validate(self) -> Result<Self, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        if let Some(n) = &self.name {
            errors.collect(parse_name(n));
        }
        if let Some(d) = &self.description {
            errors.collect(parse_description(d));
        }
        if let Some(s) = &self.settings {
            errors.collect(parse_settings(s));
        }
        errors.into_result(|| self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert!(parse_slug("acme-corp-2").is_ok());
        for bad in ["", "Acme", "a_b", "a b", &"a".repeat(101)] {
            assert!(parse_slug(bad).is_err(), "{bad}");
        }
    }
}
