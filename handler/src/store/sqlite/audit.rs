//! The audit chain in SQLite. Appends run inside the caller's write transaction, which holds
//! the database's write lock, so reading the last hash and chaining onto it cannot race.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::filters::Filters;
use super::{map_error, rows};
use crate::domain::audit::{Action, Entry, Event, GENESIS, Outcome, chain};
use crate::domain::{AuditId, Page, PageRequest, PatientId, time};
use crate::store::{AuditFilter, StoreError};

pub fn append(c: &Connection, entries: Vec<Entry>) -> Result<(), StoreError> {
    if entries.is_empty() {
        return Ok(());
    }
    let last: Option<String> = c
        .query_row("SELECT hash FROM audit_events ORDER BY id DESC LIMIT 1", [], |r| r.get(0))
        .optional()
        .map_err(map_error)?;
    let mut insert = c
        .prepare_cached(
            "INSERT INTO audit_events (occurred_at, request_id, actor, actor_role, action, resource_type,
                                       resource_id, patient_id, outcome, prev_hash, hash)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )
        .map_err(map_error)?;
    for (e, prev, hash) in chain(last.as_deref().unwrap_or(GENESIS), entries) {
        insert
            .execute(params![
                time::to_db_text(e.occurred_at),
                e.request_id,
                e.actor,
                e.actor_role,
                e.action.as_str(),
                e.resource_type,
                e.resource_id,
                e.patient_id.map(PatientId::get),
                e.outcome.as_str(),
                prev,
                hash
            ])
            .map_err(map_error)?;
    }
    Ok(())
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<Event> {
    Ok(Event {
        id: rows::id(r, 0, AuditId::new)?,
        entry: Entry {
            occurred_at: rows::instant(r, 1)?,
            request_id: r.get(2)?,
            actor: r.get(3)?,
            actor_role: r.get(4)?,
            action: rows::parsed(r, 5, |s| Action::parse(s).ok_or(()), "an audit action")?,
            resource_type: r.get(6)?,
            resource_id: r.get(7)?,
            patient_id: r.get::<_, Option<i64>>(8)?.and_then(PatientId::new),
            outcome: rows::parsed(r, 9, |s| Outcome::parse(s).ok_or(()), "an audit outcome")?,
        },
        prev_hash: r.get(10)?,
        hash: r.get(11)?,
    })
}

pub fn list(c: &Connection, filter: &AuditFilter, page: PageRequest) -> Result<Page<Event>, StoreError> {
    let mut wanted = Filters::default();
    wanted.and("id > ?", [page.after.into()]);
    wanted.and_some("patient_id = ?", filter.patient_id.map(PatientId::get));
    wanted.and_some("occurred_at >= ?", filter.from.map(time::to_db_text));
    wanted.and_some("occurred_at < ?", filter.to.map(time::to_db_text));
    let sql = format!(
        "SELECT id, occurred_at, request_id, actor, actor_role, action, resource_type, resource_id,
                patient_id, outcome, prev_hash, hash
         FROM audit_events WHERE {} ORDER BY id LIMIT ?",
        wanted.sql()
    );
    let rows = c
        .prepare_cached(&sql)
        .and_then(|mut s| {
            s.query_map(wanted.params([page.fetch_limit().into()]), from_row)?.collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(map_error)?;
    Ok(Page::from_rows(rows, page, |e| e.id.get()))
}
