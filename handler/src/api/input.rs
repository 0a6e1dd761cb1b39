//! Shared request-parsing helpers: pagination, PATCH field changes, comma-separated lists, and
//! the audit outcome of a read.

use actix_web::HttpResponse;
use actix_web::http::header;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::audit::Outcome;
use crate::domain::values::ValueError;
use crate::domain::{Change, FieldCheck, PageRequest};
use crate::store::StoreError;

/// A comma-separated list (`status=booked,checked-in`), each item trimmed and parsed, repeats
/// dropped, order kept.
pub fn comma_list<T: PartialEq>(
    raw: &str,
    parse: impl Fn(&str) -> Result<T, ValueError>,
) -> Result<Vec<T>, ValueError> {
    let mut out = Vec::new();
    for part in raw.split(',') {
        let item = parse(part.trim())?;
        if !out.contains(&item) {
            out.push(item);
        }
    }
    Ok(out)
}

/// How a read of one resource ends up in the audit trail: found, not found (absent, or outside
/// the caller's scope), or failed.
pub fn audit_outcome<T>(result: &Result<T, StoreError>) -> Outcome {
    match result {
        Ok(_) => Outcome::Success,
        Err(StoreError::NotFound) => Outcome::NotFound,
        Err(_) => Outcome::Failed,
    }
}

/// `limit` and `cursor` query parameters.
/// An optional `from`/`to` filter: each parsed with `parse` when given, and `to` after `from`
/// when both are.
pub fn optional_period(
    check: &mut FieldCheck,
    from: Option<&str>,
    to: Option<&str>,
    parse: fn(&str) -> Result<DateTime<Utc>, ValueError>,
) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
    let from = check.check_opt("from", from, parse).flatten();
    let to = check.check_opt("to", to, parse).flatten();
    if let (Some(f), Some(t)) = (from, to)
        && t <= f
    {
        check.fail("to", "must be after from");
    }
    (from, to)
}

pub fn page(check: &mut FieldCheck, limit: Option<&str>, cursor: Option<&str>) -> PageRequest {
    let limit = check
        .check_opt("limit", limit, PageRequest::parse_limit)
        .flatten()
        .unwrap_or(crate::domain::page::DEFAULT_LIMIT);
    let after = check.check_opt("cursor", cursor, PageRequest::parse_cursor).flatten().unwrap_or(0);
    PageRequest { after, limit }
}

/// The query of a list with no filters: only `limit` and `cursor`.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    #[schemars(with = "Option<u32>", range(min = 1, max = 100))]
    limit: Option<String>,
    cursor: Option<String>,
}

impl PageQuery {
    pub fn into_page(self) -> Result<PageRequest, crate::error::ApiError> {
        let mut check = FieldCheck::new();
        let request = page(&mut check, self.limit.as_deref(), self.cursor.as_deref());
        finish(check, || Some(request))
    }
}

/// A PATCH field that may be changed but not cleared.
pub fn set_only<T>(
    check: &mut FieldCheck,
    field: &str,
    input: Option<Option<String>>,
    parse: impl FnOnce(&str) -> Result<T, ValueError>,
) -> Option<T> {
    match input {
        None => None,
        Some(None) => {
            check.fail(field, "must not be null");
            None
        }
        Some(Some(raw)) => check.check(field, parse(&raw)),
    }
}

/// A PATCH field that may be changed or cleared with `null`.
pub fn change<T>(
    check: &mut FieldCheck,
    field: &str,
    input: Option<Option<String>>,
    parse: impl FnOnce(&str) -> Result<T, ValueError>,
) -> Change<T> {
    match input {
        None => Change::Keep,
        Some(None) => Change::Clear,
        Some(Some(raw)) => check.check(field, parse(&raw)).map_or(Change::Keep, Change::Set),
    }
}

/// An optional version for compare-and-swap updates.
pub fn version(check: &mut FieldCheck, version: Option<i64>) -> Option<i64> {
    match version {
        Some(v) if v < 1 => {
            check.fail("version", "must be a positive whole number");
            None
        }
        v => v,
    }
}

/// A list that is not paged (it is bounded by its filter): `{"items": [...]}`.
#[derive(Serialize, schemars::JsonSchema)]
#[schemars(rename = "{T}List")]
pub struct Items<T> {
    pub items: Vec<T>,
}

/// 201 with a Location header.
pub fn created(location: String, body: &impl Serialize) -> HttpResponse {
    HttpResponse::Created().insert_header((header::LOCATION, location)).json(body)
}

/// Collects errors from `check`; if there are none, returns the value from `build`.
pub fn finish<T>(check: FieldCheck, build: impl FnOnce() -> Option<T>) -> Result<T, crate::error::ApiError> {
    if !check.is_ok() {
        return Err(crate::error::ApiError::Validation(check.into_errors()));
    }
    build().ok_or_else(|| crate::error::ApiError::invalid("body", "is invalid"))
}
