//! The audit chain on SQL Server: the same rows and hashes as the SQLite store's.
//!
//! Appends run inside the caller's write transaction. Reading the tail `WITH (UPDLOCK,
//! HOLDLOCK)` makes concurrent appenders queue on SQL Server; where the hint does nothing
//! (Babelfish) two of them may chain onto the same row, and the unique index on `prev_hash`
//! fails the later one. That error is a lost race ([`super::errors::is_lost_audit_race`]): the
//! transaction rolled back whole, and the store's write loop runs it again.

use chrono::SubsecRound;
use tiberius::Row;

use super::conn::MssqlConn;
use super::{rows, sql};
use crate::domain::audit::{Action, Entry, Event, GENESIS, Outcome, chain};
use crate::domain::{AuditId, Page, PageRequest, PatientId};
use crate::store::{AuditFilter, StoreError};

/// Runs inside the caller's transaction.
pub async fn append(c: &mut MssqlConn, entries: Vec<Entry>) -> Result<(), StoreError> {
    if entries.is_empty() {
        return Ok(());
    }
    let last = match c.row(sql::AUDIT_LAST_HASH, &[]).await? {
        Some(row) => Some(rows::text(&row, 0)?),
        None => None,
    };
    // Stored as the SQLite store stores them (microseconds), so both read back the same rows;
    // the hash covers the same microsecond text either way.
    let entries = entries.into_iter().map(|mut e| {
        e.occurred_at = e.occurred_at.trunc_subsecs(6);
        e
    });
    for (e, prev, hash) in chain(last.as_deref().unwrap_or(GENESIS), entries.collect()) {
        let occurred_at = e.occurred_at.naive_utc();
        let patient = e.patient_id.map(PatientId::get);
        c.rows(
            sql::AUDIT_INSERT,
            &[
                &occurred_at,
                &e.request_id.as_str(),
                &e.actor.as_deref(),
                &e.actor_role.as_str(),
                &e.action.as_str(),
                &e.resource_type.as_str(),
                &e.resource_id.as_deref(),
                &patient,
                &e.outcome.as_str(),
                &prev.as_str(),
                &hash.as_str(),
            ],
        )
        .await?;
    }
    Ok(())
}

fn from_row(r: &Row) -> Result<Event, StoreError> {
    Ok(Event {
        id: rows::id(r, 0, AuditId::new)?,
        entry: Entry {
            occurred_at: rows::instant(r, 1)?,
            request_id: rows::text(r, 2)?,
            actor: rows::text_opt(r, 3)?,
            actor_role: rows::text(r, 4)?,
            action: rows::parsed(r, 5, |s| Action::parse(s).ok_or(()), "an audit action")?,
            resource_type: rows::text(r, 6)?,
            resource_id: rows::text_opt(r, 7)?,
            patient_id: rows::id_opt(r, 8, PatientId::new)?,
            outcome: rows::parsed(r, 9, |s| Outcome::parse(s).ok_or(()), "an audit outcome")?,
        },
        prev_hash: rows::text(r, 10)?,
        hash: rows::text(r, 11)?,
    })
}

pub async fn list(c: &mut MssqlConn, filter: &AuditFilter, page: PageRequest) -> Result<Page<Event>, StoreError> {
    let patient = filter.patient_id.map(PatientId::get);
    // Compared at the microseconds stored, as the SQLite store compares its text.
    let from = filter.from.map(|t| t.trunc_subsecs(6).naive_utc());
    let to = filter.to.map(|t| t.trunc_subsecs(6).naive_utc());
    let found = c.rows(sql::AUDIT_LIST, &[&page.after, &patient, &from, &to, &page.fetch_limit()]).await?;
    let items = found.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_rows(items, page, |e| e.id.get()))
}
