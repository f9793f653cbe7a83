//! Artifacts: the validated shapes of create, replace (PUT) and patch (PATCH) input.
//! The same rules apply to all three.

use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use crate::cursor::Cursor;
use crate::errors::{FieldError, ValidationErrors};
use crate::limits::*;

/// A field of a PATCH body: absent (leave unchanged), explicitly null, or a value.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Patch<T> {
    #[default]
    Absent,
    Null,
    Value(T),
}

impl<T: serde::Serialize> serde::Serialize for Patch<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Patch::Value(v) => v.serialize(s),
            Patch::Absent | Patch::Null => s.serialize_none(),
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Patch<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Option::<T>::deserialize(d)? {
            Some(v) => Patch::Value(v),
            None => Patch::Null,
        })
    }
}

/// Create and PUT input as sent. PUT replaces the whole artifact, so omitted optional fields
/// reset to their defaults.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ArtifactInput {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub artifact_metadata: Map<String, Value>,
    /// Optimistic concurrency for PUT: the version the client last saw.
    #[serde(default, deserialize_with = "whole_number")]
    pub version: Option<i32>,
}

/// PATCH input as sent: only present fields change; `description: null` clears it.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ArtifactPatchInput {
    /// May be absent, not null.
    #[schema(value_type = String)]
    pub name: Patch<String>,
    /// `null` clears it.
    #[schema(value_type = Option<String>)]
    pub description: Patch<String>,
    /// May be absent, not null.
    #[schema(value_type = Vec<String>)]
    pub tags: Patch<Vec<String>>,
    /// May be absent, not null.
    #[schema(value_type = Object)]
    pub artifact_metadata: Patch<Map<String, Value>>,
    #[schema(value_type = Option<i32>)]
    #[serde(deserialize_with = "whole_patch")]
    pub version: Patch<i32>,
}

/// A version as JSON counts integers: `3` and `3.0` alike.
fn whole_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i32>, D::Error> {
    let Some(n) = Option::<f64>::deserialize(d)? else {
        return Ok(None);
    };
    let whole = n.fract() == 0.0 && (f64::from(i32::MIN)..=f64::from(i32::MAX)).contains(&n);
    if whole {
        Ok(Some(n as i32))
    } else {
        Err(serde::de::Error::custom(
            "version must be a whole number within 32 bits",
        ))
    }
}

fn whole_patch<'de, D: Deserializer<'de>>(d: D) -> Result<Patch<i32>, D::Error> {
    Ok(whole_number(d)?.map_or(Patch::Null, Patch::Value))
}

/// A complete, valid artifact body.
#[derive(Debug, Clone, PartialEq)]
pub struct ArtifactFields {
    pub name: String,
    pub description: Option<String>,
    pub tags: Vec<String>,
    pub metadata: Map<String, Value>,
}

/// A valid partial change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ArtifactChanges {
    pub name: Option<String>,
    pub description: Option<Option<String>>,
    pub tags: Option<Vec<String>>,
    pub metadata: Option<Map<String, Value>>,
}

impl ArtifactInput {
    pub fn validate(self) -> Result<ArtifactFields, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let name = errors.collect(parse_name(&self.name));
        let description = errors.collect(parse_description(self.description));
        let tags = errors.collect(parse_tags(self.tags));
        let metadata = errors.collect(parse_metadata(self.artifact_metadata));
        errors.into_result(|| ArtifactFields {
            name: name.unwrap(),
            description: description.unwrap(),
            tags: tags.unwrap(),
            metadata: metadata.unwrap(),
        })
    }
}

impl ArtifactPatchInput {
    pub fn validate(self) -> Result<(ArtifactChanges, Option<i32>), ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let mut changes = ArtifactChanges::default();
        let not_null = |field: &str| {
            FieldError::body(field, "null_not_allowed", format!("{field} cannot be null"))
        };
        match self.name {
            Patch::Absent => {}
            Patch::Null => errors.push(not_null("name")),
            Patch::Value(v) => changes.name = errors.collect(parse_name(&v)),
        }
        match self.description {
            Patch::Absent => {}
            Patch::Null => changes.description = Some(None),
            Patch::Value(v) => changes.description = errors.collect(parse_description(Some(v))),
        }
        match self.tags {
            Patch::Absent => {}
            Patch::Null => errors.push(not_null("tags")),
            Patch::Value(v) => changes.tags = errors.collect(parse_tags(v)),
        }
        match self.artifact_metadata {
            Patch::Absent => {}
            Patch::Null => errors.push(not_null("artifact_metadata")),
            Patch::Value(v) => changes.metadata = errors.collect(parse_metadata(v)),
        }
        let version = match self.version {
            Patch::Value(v) => Some(v),
            _ => None,
        };
        errors.into_result(|| (changes, version))
    }
}

fn parse_name(raw: &str) -> Result<String, FieldError> {
    let n = raw.chars().count();
    if n == 0 {
        return Err(FieldError::body(
            "name",
            "string_too_short",
            "Name must have at least 1 character",
        ));
    }
    if n > ARTIFACT_NAME_MAX {
        return Err(FieldError::body(
            "name",
            "string_too_long",
            "Name must be at most 255 characters",
        ));
    }
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(FieldError::body(
            "name",
            "value_error",
            "Name cannot be empty",
        ));
    }
    if trimmed.contains('\0') {
        return Err(FieldError::body(
            "name",
            "value_error",
            "Name contains invalid characters",
        ));
    }
    Ok(trimmed.to_string())
}

fn parse_description(raw: Option<String>) -> Result<Option<String>, FieldError> {
    let Some(raw) = raw else { return Ok(None) };
    let trimmed = raw.trim();
    if trimmed.chars().count() > ARTIFACT_DESCRIPTION_MAX {
        return Err(FieldError::body(
            "description",
            "string_too_long",
            "Description cannot exceed 2000 characters",
        ));
    }
    if trimmed.contains('\0') {
        return Err(FieldError::body(
            "description",
            "value_error",
            "Description contains invalid characters",
        ));
    }
    Ok((!trimmed.is_empty()).then(|| trimmed.to_string()))
}

/// Normalises one tag: trimmed, lower-cased; `None` for an empty entry.
pub fn normalise_tag(raw: &str) -> Result<Option<String>, &'static str> {
    let t = raw.trim();
    if t.is_empty() {
        return Ok(None);
    }
    if t.chars().count() > ARTIFACT_TAG_MAX {
        return Err("Tag length cannot exceed 50 characters");
    }
    if !t
        .chars()
        .all(|c| c.is_alphanumeric() || c == '-' || c == '_' || c.is_whitespace())
    {
        return Err("Tags can only contain letters, numbers, hyphens, underscores, and spaces");
    }
    Ok(Some(t.to_lowercase()))
}

/// Tags: at most 20 entries as sent, each normalised, empties dropped, duplicates removed
/// keeping the first occurrence.
pub fn parse_tags(raw: Vec<String>) -> Result<Vec<String>, FieldError> {
    if raw.len() > ARTIFACT_TAGS_MAX {
        return Err(FieldError::body(
            "tags",
            "too_long",
            "Maximum 20 tags allowed",
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(raw.len());
    for (i, t) in raw.iter().enumerate() {
        match normalise_tag(t) {
            Ok(Some(tag)) if !out.contains(&tag) => out.push(tag),
            Ok(_) => {}
            Err(msg) => {
                return Err(FieldError {
                    loc: vec!["body".into(), "tags".into(), i.into()],
                    msg: msg.into(),
                    kind: "value_error",
                })
            }
        }
    }
    Ok(out)
}

/// Whether every number in `v`, however deeply nested, is within [`JSON_NUMBER_MAX`].
pub fn numbers_in_range(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.as_f64().is_none_or(|f| f.abs() <= JSON_NUMBER_MAX),
        Value::Array(items) => items.iter().all(numbers_in_range),
        Value::Object(fields) => fields.values().all(numbers_in_range),
        _ => true,
    }
}

fn parse_metadata(raw: Map<String, Value>) -> Result<Map<String, Value>, FieldError> {
    let err = |msg: String| FieldError::body("artifact_metadata", "value_error", msg);
    if raw.len() > METADATA_KEYS_MAX {
        return Err(err("Maximum 50 metadata keys allowed".into()));
    }
    for (k, v) in &raw {
        let key_ok = !k.is_empty()
            && k.chars().count() <= METADATA_KEY_MAX
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
        if !key_ok {
            return Err(err(format!(
                "Metadata key '{k}' must be 1-100 characters of letters, digits, '_', '-' or '.'"
            )));
        }
        match v {
            Value::String(s) if s.chars().count() > METADATA_STRING_MAX => {
                return Err(err(format!(
                    "Metadata value for '{k}' exceeds 1000 characters"
                )));
            }
            Value::String(s) if s.contains('\0') => {
                return Err(err(format!(
                    "Metadata value for '{k}' contains invalid characters"
                )));
            }
            Value::Number(_) if !numbers_in_range(v) => {
                return Err(err(format!(
                    "Metadata value for '{k}' exceeds 1e300 in magnitude"
                )));
            }
            Value::Array(_) | Value::Object(_) => {
                return Err(err(
                    "Metadata values must be strings, numbers, booleans, or null".into(),
                ));
            }
            _ => {}
        }
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input(v: Value) -> ArtifactInput {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn tags_are_normalised() {
        let tags = parse_tags(vec![
            "  API  ".into(),
            "Test".into(),
            "api".into(),
            "".into(),
            "TEST".into(),
        ])
        .unwrap();
        assert_eq!(tags, vec!["api", "test"]);
        assert!(parse_tags(vec!["x".into(); 21]).is_err());
        assert!(parse_tags(vec!["a,b".into()]).is_err());
        assert!(parse_tags(vec!["x".repeat(51)]).is_err());
    }

    #[test]
    fn create_reports_every_bad_field() {
        let e = input(
            json!({"name": "  ", "description": "x".repeat(2001), "artifact_metadata": {"a": [1]}}),
        )
        .validate()
        .unwrap_err();
        let fields: Vec<_> = e.0.iter().map(|f| f.loc[1].clone()).collect();
        assert_eq!(
            fields,
            vec![
                json!("name"),
                json!("description"),
                json!("artifact_metadata")
            ]
        );
    }

    #[test]
    fn names_keep_markup_characters() {
        let f = input(json!({"name": " <b>Tom & Jerry's</b> ", "description": "   "}))
            .validate()
            .unwrap();
        assert_eq!(f.name, "<b>Tom & Jerry's</b>");
        assert_eq!(f.description, None);
    }

    #[test]
    fn patch_distinguishes_absent_null_and_value() {
        let p: ArtifactPatchInput =
            serde_json::from_value(json!({"description": null, "tags": ["A"]})).unwrap();
        let (c, v) = p.validate().unwrap();
        assert_eq!(c.description, Some(None));
        assert_eq!(c.tags, Some(vec!["a".to_string()]));
        assert_eq!(c.name, None);
        assert_eq!(v, None);
        let p: ArtifactPatchInput =
            serde_json::from_value(json!({"name": null, "artifact_metadata": null})).unwrap();
        assert_eq!(p.validate().unwrap_err().0.len(), 2);
    }
}

/// How `q` matches: the original's case-insensitive substring match on name or description
/// (wildcards literal), or ranked full-text search over name, tags and description
/// (web-search syntax: quotes, `or`, `-word`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SearchMode {
    #[default]
    Substring,
    Fulltext,
}

/// Whether an artifact must carry any (the original's behaviour) or all of the filter tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TagMode {
    #[default]
    Any,
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SortField {
    CreatedAt,
    UpdatedAt,
    Name,
    /// Full-text relevance; only meaningful with `search_mode=fulltext`.
    Relevance,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SortOrder {
    Asc,
    Desc,
}

/// A validated listing request.
#[derive(Debug, Clone, PartialEq)]
pub struct ListQuery {
    pub q: Option<String>,
    pub mode: SearchMode,
    pub tags: Vec<String>,
    pub tag_mode: TagMode,
    pub created_after: Option<chrono::DateTime<chrono::Utc>>,
    pub created_before: Option<chrono::DateTime<chrono::Utc>>,
    pub sort: SortField,
    pub order: SortOrder,
    pub limit: i64,
    pub offset: i64,
    /// Start after this row (keyset paging) instead of at `offset`.
    pub after: Option<Cursor>,
}

impl ListQuery {
    /// Whether anything narrows the listing below the whole workspace (so its total must be
    /// counted rather than read from the maintained count).
    pub fn is_filtered(&self) -> bool {
        self.q.is_some()
            || !self.tags.is_empty()
            || self.created_after.is_some()
            || self.created_before.is_some()
    }
}

/// Raw listing parameters, before validation.
#[derive(Debug, Clone, Default)]
pub struct ListParams {
    pub q: Option<String>,
    pub mode: SearchMode,
    pub tags: Vec<String>,
    pub tag_mode: TagMode,
    pub created_after: Option<chrono::DateTime<chrono::Utc>>,
    pub created_before: Option<chrono::DateTime<chrono::Utc>>,
    pub sort: Option<SortField>,
    pub order: Option<SortOrder>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
    pub cursor: Option<String>,
}

impl ListParams {
    /// `name_first_when_searching` is the advanced-search default: by name when `q` is given.
    pub fn validate(self, name_first_when_searching: bool) -> Result<ListQuery, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let limit = self.limit.unwrap_or(PAGE_LIMIT_DEFAULT);
        if !(1..=PAGE_LIMIT_MAX).contains(&limit) {
            errors.push(FieldError::query(
                "limit",
                "out_of_range",
                "limit must be between 1 and 100",
            ));
        }
        let offset = self.offset.unwrap_or(0);
        if !(0..=PAGE_OFFSET_MAX).contains(&offset) {
            errors.push(FieldError::query(
                "offset",
                "out_of_range",
                format!("offset must be between 0 and {PAGE_OFFSET_MAX}; page deeper with cursor"),
            ));
        }
        let after = self
            .cursor
            .as_deref()
            .and_then(|c| errors.collect(Cursor::decode(c)));
        if after.is_some() && offset != 0 {
            errors.push(FieldError::query(
                "offset",
                "value_error",
                "offset cannot be combined with cursor",
            ));
        }
        let q = self
            .q
            .map(|q| q.trim().to_string())
            .filter(|q| !q.is_empty());
        if q.as_ref().is_some_and(|q| q.contains('\0')) {
            errors.push(FieldError::query(
                "q",
                "value_error",
                "q must not contain NUL characters",
            ));
        }
        if q.as_ref()
            .is_some_and(|q| q.chars().count() > SEARCH_QUERY_MAX)
        {
            errors.push(FieldError::query(
                "q",
                "string_too_long",
                "q must be at most 200 characters",
            ));
        }
        if self.tags.len() > FILTER_TAGS_MAX {
            errors.push(FieldError::query(
                "tags",
                "too_long",
                "at most 20 tags can be filtered on",
            ));
        }
        let mut tags = Vec::new();
        for t in &self.tags {
            match normalise_tag(t) {
                Ok(Some(tag)) if !tags.contains(&tag) => tags.push(tag),
                Ok(_) => {}
                Err(msg) => errors.push(FieldError::query("tags", "value_error", msg)),
            }
        }
        let fulltext = self.mode == SearchMode::Fulltext && q.is_some();
        // A cursor carries the order it continues, which is the default then.
        let sort = self.sort.or(after.as_ref().map(|c| c.sort));
        let order = self.order.or(after.as_ref().map(|c| c.order));
        // Without full-text search there is no rank: relevance is the default order then.
        let sort = match sort {
            Some(SortField::Relevance) if !fulltext => SortField::CreatedAt,
            Some(s) => s,
            None if fulltext => SortField::Relevance,
            None if name_first_when_searching && q.is_some() => SortField::Name,
            None => SortField::CreatedAt,
        };
        let order = order.unwrap_or(match sort {
            SortField::Name => SortOrder::Asc,
            _ => SortOrder::Desc,
        });
        if after
            .as_ref()
            .is_some_and(|c| (c.sort, c.order) != (sort, order))
        {
            errors.push(FieldError::query(
                "cursor",
                "value_error",
                "cursor continues another sort or order; send it without sort and order, or start again without it",
            ));
        }
        errors.into_result(|| ListQuery {
            q,
            mode: self.mode,
            tags,
            tag_mode: self.tag_mode,
            created_after: self.created_after,
            created_before: self.created_before,
            sort,
            order,
            limit,
            offset,
            after,
        })
    }
}

/// `q` as a literal ILIKE pattern: `%`, `_` and `\` lose their wildcard meaning.
pub fn substring_pattern(q: &str) -> String {
    let mut p = String::with_capacity(q.len() + 2);
    p.push('%');
    for c in q.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

#[cfg(test)]
mod query_tests {
    use super::*;

    #[test]
    fn defaults_and_limits() {
        let q = ListParams::default().validate(false).unwrap();
        assert_eq!(
            (q.limit, q.offset, q.sort, q.order),
            (20, 0, SortField::CreatedAt, SortOrder::Desc)
        );
        let e = ListParams {
            limit: Some(101),
            offset: Some(-1),
            ..Default::default()
        }
        .validate(false)
        .unwrap_err();
        assert_eq!(e.0.len(), 2);
        assert!(ListParams {
            limit: Some(0),
            ..Default::default()
        }
        .validate(false)
        .is_err());
    }

    #[test]
    fn filter_tags_are_normalised_and_search_defaults_sort() {
        let q = ListParams {
            tags: vec![" API ".into(), "api".into()],
            q: Some("x".into()),
            ..Default::default()
        }
        .validate(true)
        .unwrap();
        assert_eq!(q.tags, vec!["api"]);
        assert_eq!((q.sort, q.order), (SortField::Name, SortOrder::Asc));
        let q = ListParams {
            q: Some("x".into()),
            mode: SearchMode::Fulltext,
            ..Default::default()
        }
        .validate(false)
        .unwrap();
        assert_eq!(q.sort, SortField::Relevance);
    }

    #[test]
    fn wildcards_are_literal() {
        assert_eq!(substring_pattern("50%_a\\b"), "%50\\%\\_a\\\\b%");
    }

    #[test]
    fn nul_in_search_text_is_refused() {
        let e = ListParams {
            q: Some("a\0b".into()),
            ..Default::default()
        }
        .validate(false)
        .unwrap_err();
        assert_eq!(
            e.0[0].loc,
            vec![serde_json::json!("query"), serde_json::json!("q")]
        );
    }
}
