//! Keyset pagination: stable order by id, an opaque cursor, a bounded page size.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;

use super::values::ValueError;

pub const DEFAULT_LIMIT: u32 = 20;
pub const MAX_LIMIT: u32 = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// Return rows with an id greater than this.
    pub after: i64,
    pub limit: u32,
}

impl Default for PageRequest {
    fn default() -> Self {
        PageRequest { after: 0, limit: DEFAULT_LIMIT }
    }
}

impl PageRequest {
    pub fn parse_limit(raw: &str) -> Result<u32, ValueError> {
        raw.parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or(ValueError(format!("must be a whole number from 1 to {MAX_LIMIT}")))
    }

    pub fn parse_cursor(raw: &str) -> Result<i64, ValueError> {
        URL_SAFE_NO_PAD
            .decode(raw)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.strip_prefix("id:").and_then(|n| n.parse::<i64>().ok()))
            .filter(|n| *n >= 0)
            .ok_or(ValueError("is not a cursor this API returned".into()))
    }

    pub fn cursor_for(last_id: i64) -> String {
        URL_SAFE_NO_PAD.encode(format!("id:{last_id}"))
    }

    /// Rows to fetch: one more than the page, to know whether another page follows.
    pub fn fetch_limit(&self) -> i64 {
        i64::from(self.limit) + 1
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "{T}Page")]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` rows ordered by id.
    pub fn from_rows(mut rows: Vec<T>, request: PageRequest, id_of: impl Fn(&T) -> i64) -> Self {
        let limit = request.limit as usize;
        let next_cursor = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(|last| PageRequest::cursor_for(id_of(last)))
        } else {
            None
        };
        Page { items: rows, next_cursor }
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page { items: self.items.into_iter().map(f).collect(), next_cursor: self.next_cursor }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let c = PageRequest::cursor_for(1234);
        assert_eq!(PageRequest::parse_cursor(&c).unwrap(), 1234);
        assert!(PageRequest::parse_cursor("1234").is_err());
        assert!(PageRequest::parse_cursor("!!").is_err());
    }

    #[test]
    fn extra_row_means_next_page() {
        let req = PageRequest { after: 0, limit: 2 };
        let page = Page::from_rows(vec![1, 2, 3], req, |v| *v);
        assert_eq!(page.items, vec![1, 2]);
        assert_eq!(page.next_cursor, Some(PageRequest::cursor_for(2)));
        let last = Page::from_rows(vec![3], req, |v| *v);
        assert_eq!(last.next_cursor, None);
    }

    #[test]
    fn limits_are_bounded() {
        assert!(PageRequest::parse_limit("0").is_err());
        assert!(PageRequest::parse_limit("101").is_err());
        assert_eq!(PageRequest::parse_limit("100").unwrap(), 100);
    }
}
