//! Reading our own stored values back into domain types.

use chrono::{DateTime, NaiveDate, Utc};
use rusqlite::Row;
use rusqlite::types::Type;

use crate::domain::time;

fn bad(idx: usize, what: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, format!("stored value is not {what}").into())
}

pub fn instant(row: &Row<'_>, idx: usize) -> rusqlite::Result<DateTime<Utc>> {
    let s: String = row.get(idx)?;
    time::from_db_text(&s).ok_or_else(|| bad(idx, "a UTC timestamp"))
}

pub fn date(row: &Row<'_>, idx: usize) -> rusqlite::Result<NaiveDate> {
    let s: String = row.get(idx)?;
    time::date_from_db_text(&s).ok_or_else(|| bad(idx, "a date"))
}

pub fn parsed<T, E>(
    row: &Row<'_>,
    idx: usize,
    parse: impl FnOnce(&str) -> Result<T, E>,
    what: &str,
) -> rusqlite::Result<T> {
    let s: String = row.get(idx)?;
    parse(&s).map_err(|_| bad(idx, what))
}

pub fn parsed_opt<T, E>(
    row: &Row<'_>,
    idx: usize,
    parse: impl FnOnce(&str) -> Result<T, E>,
    what: &str,
) -> rusqlite::Result<Option<T>> {
    let s: Option<String> = row.get(idx)?;
    s.map(|s| parse(&s).map_err(|_| bad(idx, what))).transpose()
}

/// A positive integer id column as its typed id.
pub fn id<T>(row: &Row<'_>, idx: usize, new: fn(i64) -> Option<T>) -> rusqlite::Result<T> {
    let v: i64 = row.get(idx)?;
    new(v).ok_or(rusqlite::Error::IntegralValueOutOfRange(idx, v))
}
