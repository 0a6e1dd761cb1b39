//! Admins manage who is staff, doctor or admin. Patients register themselves.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::extract::{ValidJson, ValidQuery, path_id};
use super::input;
use crate::auth::access::Caller;
use crate::domain::audit::{Action, Outcome};
use crate::domain::user::{Membership, Role, Subject};
use crate::domain::{DoctorId, FieldCheck, PatientId, UserId};
use crate::error::ApiError;
use crate::startup::AppState;

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateUser {
    subject: String,
    #[schemars(with = "crate::domain::user::Role")]
    role: String,
    patient_id: Option<i64>,
    doctor_id: Option<i64>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdateUser {
    #[schemars(with = "crate::domain::user::Role")]
    role: String,
    patient_id: Option<i64>,
    doctor_id: Option<i64>,
    #[schemars(range(min = 1))]
    version: Option<i64>,
}

/// A role with exactly the link it needs: patients name a patient, doctors a doctor.
fn membership(check: &mut FieldCheck, role: &str, patient: Option<i64>, doctor: Option<i64>) -> Option<Membership> {
    let role = check.check("role", Role::parse(role))?;
    let id_of = |raw: Option<i64>, field: &str, check: &mut FieldCheck| -> Option<i64> {
        match raw {
            Some(v) if v > 0 => Some(v),
            Some(_) => {
                check.fail(field, "must be a positive id");
                None
            }
            None => {
                check.fail(field, "is required for this role");
                None
            }
        }
    };
    let forbid = |raw: Option<i64>, field: &str, check: &mut FieldCheck| {
        if raw.is_some() {
            check.fail(field, "must not be given for this role");
        }
    };
    match role {
        Role::Patient => {
            forbid(doctor, "doctorId", check);
            id_of(patient, "patientId", check).and_then(PatientId::new).map(Membership::Patient)
        }
        Role::Doctor => {
            forbid(patient, "patientId", check);
            id_of(doctor, "doctorId", check).and_then(DoctorId::new).map(Membership::Doctor)
        }
        Role::Staff | Role::Admin => {
            forbid(patient, "patientId", check);
            forbid(doctor, "doctorId", check);
            Some(if role == Role::Staff { Membership::Staff } else { Membership::Admin })
        }
    }
}

pub async fn list(
    state: web::Data<AppState>,
    ValidQuery(q): ValidQuery<input::PageQuery>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(state.store.list_users(q.into_page()?).await?))
}

pub async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    ValidJson(body): ValidJson<CreateUser>,
) -> Result<HttpResponse, ApiError> {
    let mut check = FieldCheck::new();
    let subject = check.check("subject", Subject::parse(&body.subject));
    let membership = membership(&mut check, &body.role, body.patient_id, body.doctor_id);
    let (subject, membership) = input::finish(check, || Some((subject?, membership?)))?;
    let audit = caller.audit(Action::RoleChange, "user", None, membership.patient_id(), Outcome::Success);
    let user = state.store.create_user(subject, membership, audit).await?;
    Ok(input::created(format!("/api/users/{}", user.id), &user))
}

pub async fn update(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    ValidJson(body): ValidJson<UpdateUser>,
) -> Result<HttpResponse, ApiError> {
    let id = path_id(&req, UserId::parse)?;
    let mut check = FieldCheck::new();
    let membership = membership(&mut check, &body.role, body.patient_id, body.doctor_id);
    let version = input::version(&mut check, body.version);
    let membership = input::finish(check, || membership)?;
    if let Caller::User { user, .. } = &caller
        && user.id == id
        && membership != Membership::Admin
    {
        // The last admin demoting themselves would lock the clinic out.
        return Err(ApiError::invalid("role", "admins cannot change their own role; ask another admin"));
    }
    let audit =
        caller.audit(Action::RoleChange, "user", Some(id.to_string()), membership.patient_id(), Outcome::Success);
    Ok(HttpResponse::Ok().json(state.store.update_user(id, membership, version, audit).await?))
}
