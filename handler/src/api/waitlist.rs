//! The waitlist: a patient asks to be offered an earlier slot with a doctor, or with anyone in a
//! specialty, inside a date range. Offers are made by the store when a slot frees (see
//! `store::Store::transition_appointment`), as holds the patient confirms like any other.

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Duration;
use serde::Deserialize;

use super::extract::{ValidJson, ValidQuery, path_id};
use super::input;
use crate::auth::access::{Caller, patient_scope};
use crate::domain::appointment::{NewWaitlistEntry, WaitlistTarget};
use crate::domain::audit::{Action, Outcome};
use crate::domain::doctor_schedule::parse_instant;
use crate::domain::schedule::Interval;
use crate::domain::user::Membership;
use crate::domain::values::ValueError;
use crate::domain::{DoctorId, FieldCheck, PatientId, SpecialtyId, WaitlistId};
use crate::error::ApiError;
use crate::startup::AppState;

/// A wait longer than this is a standing request, not a waitlist.
const MAX_WINDOW_DAYS: i64 = 366;

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JoinRequest {
    /// Required for staff; a patient joins for themselves.
    patient_id: Option<i64>,
    doctor_id: Option<i64>,
    specialty_id: Option<i64>,
    #[serde(rename = "type")]
    appointment_type: Option<String>,
    #[schemars(with = "chrono::DateTime<chrono::Utc>")]
    from: String,
    #[schemars(with = "chrono::DateTime<chrono::Utc>")]
    to: String,
}

pub async fn join(
    state: web::Data<AppState>,
    caller: Caller,
    ValidJson(body): ValidJson<JoinRequest>,
) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let mut check = FieldCheck::new();
    let requested = check
        .check_opt("patientId", body.patient_id, |p| PatientId::new(p).ok_or(ValueError("must be a patient id".into())))
        .flatten();
    let target = match (body.doctor_id, body.specialty_id) {
        (Some(d), None) => check
            .check("doctorId", DoctorId::new(d).ok_or(ValueError("must be a doctor id".into())))
            .map(WaitlistTarget::Doctor),
        (None, Some(s)) => check
            .check("specialtyId", SpecialtyId::new(s).ok_or(ValueError("must be a specialty id".into())))
            .map(WaitlistTarget::Specialty),
        _ => {
            check.fail("doctorId", "give exactly one of doctorId and specialtyId");
            None
        }
    };
    let appointment_type = match body.appointment_type {
        Some(t) if t.is_empty() || t.len() > 40 => {
            check.fail("type", "must be an appointment type code");
            None
        }
        other => other,
    };
    let from = check.check("from", parse_instant(&body.from));
    let to = check.check("to", parse_instant(&body.to));
    let window = match (from, to) {
        (Some(f), Some(t)) if t <= f => {
            check.fail("to", "must be after from");
            None
        }
        (Some(_), Some(t)) if t <= now => {
            check.fail("to", "must be in the future");
            None
        }
        (Some(f), Some(t)) if t - f.max(now) > Duration::days(MAX_WINDOW_DAYS) => {
            check.fail("to", format!("must be at most {MAX_WINDOW_DAYS} days away"));
            None
        }
        (Some(f), Some(t)) => Some(Interval { start: f, end: t }),
        _ => None,
    };
    let (target, window) = input::finish(check, || Some((target?, window?)))?;
    let patient = match &caller {
        Caller::User { membership: Membership::Patient(own), .. } => match requested {
            Some(p) if p != *own => return Err(ApiError::Forbidden),
            _ => *own,
        },
        Caller::User { membership: Membership::Staff | Membership::Admin, .. } => {
            requested.ok_or_else(|| ApiError::invalid("patientId", "is required"))?
        }
        _ => return Err(ApiError::Forbidden),
    };
    let new = NewWaitlistEntry { patient_id: patient, target, appointment_type, window };
    let audit = caller.audit(Action::Create, "waitlist_entry", None, Some(patient), Outcome::Success);
    let entry = state.store.add_waitlist_entry(new, audit).await?;
    Ok(input::created(format!("/api/waitlist/{}", entry.id), &entry))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ListQuery {
    #[schemars(with = "Option<i64>")]
    patient_id: Option<String>,
    #[schemars(with = "Option<u32>", range(min = 1, max = 100))]
    limit: Option<String>,
    cursor: Option<String>,
}

pub async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    ValidQuery(q): ValidQuery<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let scope = patient_scope(&caller)?;
    let mut check = FieldCheck::new();
    let patient = check
        .check_opt("patientId", q.patient_id.as_deref(), |s| {
            PatientId::parse(s).ok_or(ValueError("must be a patient id".into()))
        })
        .flatten();
    let page = input::page(&mut check, q.limit.as_deref(), q.cursor.as_deref());
    input::finish(check, || Some(()))?;
    let listed = state.store.list_waitlist(patient, scope, page).await?;
    let mut entries = vec![caller.audit(Action::List, "waitlist_entry", None, patient, Outcome::Success)];
    entries.extend(listed.items.iter().map(|e| {
        caller.audit(Action::Read, "waitlist_entry", Some(e.id.to_string()), Some(e.patient_id), Outcome::Success)
    }));
    state.store.append_audit(entries).await?;
    Ok(HttpResponse::Ok().json(listed))
}

/// Leaves the waitlist (the patient or staff). A slot already offered stays held until it
/// expires or is cancelled.
pub async fn leave(state: web::Data<AppState>, caller: Caller, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let id = path_id(&req, WaitlistId::parse)?;
    let scope = patient_scope(&caller)?;
    // The request is the patient's: a doctor sees who waits for them but does not withdraw it.
    if caller.doctor_id().is_some() {
        return Err(ApiError::Forbidden);
    }
    let audit = caller.audit(Action::Delete, "waitlist_entry", Some(id.to_string()), None, Outcome::Success);
    let entry = state.store.cancel_waitlist_entry(id, scope, audit).await?;
    Ok(HttpResponse::Ok().json(entry))
}
