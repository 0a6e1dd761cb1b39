//! Reading our own stored values back into domain types. Errors name the column position and
//! the expected kind, never the value.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use tiberius::{FromSql, FromSqlOwned, Row};

use crate::store::StoreError;

fn bad(idx: usize, what: &str) -> StoreError {
    StoreError::Other(format!("stored value in column {idx} is not {what}").into())
}

fn required<'a, T: FromSql<'a>>(row: &'a Row, idx: usize, what: &str) -> Result<T, StoreError> {
    row.try_get::<T, _>(idx).map_err(|_| bad(idx, what))?.ok_or_else(|| bad(idx, what))
}

fn optional<'a, T: FromSql<'a>>(row: &'a Row, idx: usize, what: &str) -> Result<Option<T>, StoreError> {
    row.try_get::<T, _>(idx).map_err(|_| bad(idx, what))
}

pub fn int(row: &Row, idx: usize) -> Result<i64, StoreError> {
    required::<i64>(row, idx, "a bigint")
}

pub fn int_opt(row: &Row, idx: usize) -> Result<Option<i64>, StoreError> {
    optional::<i64>(row, idx, "a bigint")
}

pub fn int32(row: &Row, idx: usize) -> Result<i32, StoreError> {
    required::<i32>(row, idx, "an int")
}

pub fn text(row: &Row, idx: usize) -> Result<String, StoreError> {
    required::<&str>(row, idx, "text").map(str::to_owned)
}

pub fn text_opt(row: &Row, idx: usize) -> Result<Option<String>, StoreError> {
    optional::<&str>(row, idx, "text").map(|s| s.map(str::to_owned))
}

pub fn flag(row: &Row, idx: usize) -> Result<bool, StoreError> {
    required::<bool>(row, idx, "a bit")
}

/// `DATETIME2` columns hold UTC.
pub fn instant(row: &Row, idx: usize) -> Result<DateTime<Utc>, StoreError> {
    required::<NaiveDateTime>(row, idx, "a UTC timestamp").map(|n| n.and_utc())
}

pub fn instant_opt(row: &Row, idx: usize) -> Result<Option<DateTime<Utc>>, StoreError> {
    optional::<NaiveDateTime>(row, idx, "a UTC timestamp").map(|n| n.map(|n| n.and_utc()))
}

/// An optional positive integer id column as its typed id.
pub fn id_opt<T>(row: &Row, idx: usize, new: fn(i64) -> Option<T>) -> Result<Option<T>, StoreError> {
    int_opt(row, idx)?.map(|v| new(v).ok_or_else(|| bad(idx, "a positive id"))).transpose()
}

pub fn date(row: &Row, idx: usize) -> Result<NaiveDate, StoreError> {
    required::<NaiveDate>(row, idx, "a date")
}

pub fn parsed<T, E>(
    row: &Row,
    idx: usize,
    parse: impl FnOnce(&str) -> Result<T, E>,
    what: &str,
) -> Result<T, StoreError> {
    let s = required::<&str>(row, idx, what)?;
    parse(s).map_err(|_| bad(idx, what))
}

pub fn parsed_opt<T, E>(
    row: &Row,
    idx: usize,
    parse: impl FnOnce(&str) -> Result<T, E>,
    what: &str,
) -> Result<Option<T>, StoreError> {
    optional::<&str>(row, idx, what)?.map(|s| parse(s).map_err(|_| bad(idx, what))).transpose()
}

/// A positive integer id column as its typed id.
pub fn id<T>(row: &Row, idx: usize, new: fn(i64) -> Option<T>) -> Result<T, StoreError> {
    new(int(row, idx)?).ok_or_else(|| bad(idx, "a positive id"))
}

/// The single value of a one-row, one-column answer (an inserted id, a row count).
pub fn scalar<T: FromSqlOwned>(row: Option<Row>, what: &str) -> Result<T, StoreError> {
    let row = row.ok_or_else(|| StoreError::Other(format!("the database returned no {what}").into()))?;
    row.into_iter()
        .next()
        .map(T::from_sql_owned)
        .transpose()
        .map_err(|_| bad(0, what))?
        .flatten()
        .ok_or_else(|| bad(0, what))
}
