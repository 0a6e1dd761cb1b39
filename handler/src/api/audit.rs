//! The audit trail for admins: a paged export by patient and period, and the chain check.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::extract::ValidQuery;
use super::input;
use crate::auth::access::Caller;
use crate::domain::audit::{Action, Outcome};
use crate::domain::values::ValueError;
use crate::domain::{FieldCheck, PatientId};
use crate::error::ApiError;
use crate::startup::AppState;
use crate::store::{AuditFilter, verify_audit_chain};

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ListQuery {
    #[schemars(with = "Option<i64>")]
    patient_id: Option<String>,
    #[schemars(with = "Option<chrono::DateTime<chrono::Utc>>")]
    from: Option<String>,
    #[schemars(with = "Option<chrono::DateTime<chrono::Utc>>")]
    to: Option<String>,
    #[schemars(with = "Option<u32>", range(min = 1, max = 100))]
    limit: Option<String>,
    cursor: Option<String>,
}

fn instant(raw: &str) -> Result<DateTime<Utc>, ValueError> {
    DateTime::parse_from_rfc3339(raw.trim())
        .map(|t| t.to_utc())
        .map_err(|_| ValueError("must be an RFC 3339 time such as 2026-12-01T00:00:00Z".into()))
}

pub async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    ValidQuery(q): ValidQuery<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let mut check = FieldCheck::new();
    let page = input::page(&mut check, q.limit.as_deref(), q.cursor.as_deref());
    let patient_id = check
        .check_opt("patientId", q.patient_id.as_deref(), |s| {
            PatientId::parse(s).ok_or(ValueError("must be a patient id".into()))
        })
        .flatten();
    let (from, to) = input::optional_period(&mut check, q.from.as_deref(), q.to.as_deref(), instant);
    input::finish(check, || Some(()))?;
    let entry = caller.audit(Action::AuditExport, "audit", None, patient_id, Outcome::Success);
    state.store.append_audit(vec![entry]).await?;
    Ok(HttpResponse::Ok().json(state.store.list_audit(AuditFilter { patient_id, from, to }, page).await?))
}

pub async fn verify(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    let result = verify_audit_chain(state.store.as_ref()).await?;
    let outcome = if result.first_broken.is_none() { Outcome::Success } else { Outcome::Failed };
    state.store.append_audit(vec![caller.audit(Action::AuditVerify, "audit", None, None, outcome)]).await?;
    Ok(HttpResponse::Ok().json(result))
}
