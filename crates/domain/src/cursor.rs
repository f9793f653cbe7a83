//! Keyset paging: a page's `next_cursor` names the last row it showed (its sort key and id)
//! and the order it was shown in, so the next page starts right after that row with an index
//! condition instead of skipping `offset` rows. Opaque to clients: base64url of
//! `<sort>:<order>`, the key and the id, one per line.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use uuid::Uuid;

use crate::artifact::{SortField, SortOrder};
use crate::FieldError;

/// The sort key of the row a page ended at.
#[derive(Debug, Clone, PartialEq)]
pub enum CursorKey {
    Time(DateTime<Utc>),
    Name(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Cursor {
    pub sort: SortField,
    pub order: SortOrder,
    pub key: CursorKey,
    pub id: Uuid,
}

fn sort_name(s: SortField) -> Option<&'static str> {
    match s {
        SortField::CreatedAt => Some("created_at"),
        SortField::UpdatedAt => Some("updated_at"),
        SortField::Name => Some("name"),
        // A rank is not a key a row keeps: relevance pages by offset only.
        SortField::Relevance => None,
    }
}

impl Cursor {
    /// The cursor after a row shown in `sort` order, or `None` for an order without one.
    pub fn after(sort: SortField, order: SortOrder, key: CursorKey, id: Uuid) -> Option<Self> {
        sort_name(sort)?;
        Some(Cursor {
            sort,
            order,
            key,
            id,
        })
    }

    pub fn encode(&self) -> String {
        let sort = sort_name(self.sort).expect("cursors exist for keyed sorts only");
        let order = match self.order {
            SortOrder::Asc => "asc",
            SortOrder::Desc => "desc",
        };
        let key = match &self.key {
            CursorKey::Time(t) => t.to_rfc3339_opts(SecondsFormat::Micros, true),
            CursorKey::Name(n) => n.clone(),
        };
        URL_SAFE_NO_PAD.encode(format!("{sort}:{order}\n{key}\n{}", self.id))
    }

    /// A cursor this API issued, or a 422 naming the `cursor` parameter.
    pub fn decode(raw: &str) -> Result<Self, FieldError> {
        Self::parse(raw).ok_or_else(|| {
            FieldError::query(
                "cursor",
                "value_error",
                "cursor must be a next_cursor value from a previous page; start again without it",
            )
        })
    }

    fn parse(raw: &str) -> Option<Self> {
        let text = String::from_utf8(URL_SAFE_NO_PAD.decode(raw.trim()).ok()?).ok()?;
        let (head, rest) = text.split_once('\n')?;
        let (key, id) = rest.rsplit_once('\n')?;
        let (sort, order) = head.split_once(':')?;
        let sort = [SortField::CreatedAt, SortField::UpdatedAt, SortField::Name]
            .into_iter()
            .find(|s| sort_name(*s) == Some(sort))?;
        let order = match order {
            "asc" => SortOrder::Asc,
            "desc" => SortOrder::Desc,
            _ => return None,
        };
        let key = match sort {
            SortField::Name => CursorKey::Name(key.to_string()),
            _ => CursorKey::Time(DateTime::parse_from_rfc3339(key).ok()?.with_timezone(&Utc)),
        };
        Some(Cursor {
            sort,
            order,
            key,
            id: id.parse().ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let t = DateTime::parse_from_rfc3339("2024-05-01T10:20:30.123456Z")
            .unwrap()
            .with_timezone(&Utc);
        let keys = [
            (SortField::CreatedAt, CursorKey::Time(t)),
            (
                SortField::Name,
                CursorKey::Name("a\nname: with lines".into()),
            ),
        ];
        for (sort, key) in keys {
            let c = Cursor::after(sort, SortOrder::Desc, key, Uuid::new_v4()).unwrap();
            assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        }
        assert!(Cursor::after(
            SortField::Relevance,
            SortOrder::Desc,
            CursorKey::Time(t),
            Uuid::nil()
        )
        .is_none());
        for bad in [
            "",
            "!!!",
            "bm90IGEgY3Vyc29y",
            &URL_SAFE_NO_PAD.encode("relevance:desc\nx\n00000000-0000-0000-0000-000000000000"),
        ] {
            let e = Cursor::decode(bad).unwrap_err();
            assert_eq!(e.loc, vec!["query", "cursor"], "{bad}");
        }
    }
}
