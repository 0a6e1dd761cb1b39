//! `GET /api/me`: who the portal thinks the caller is, so a front end can route them.

use actix_web::HttpResponse;
use serde::Serialize;

use crate::auth::access::Caller;
use crate::domain::{DoctorId, PatientId, UserId};

#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Me<'a> {
    subject: Option<&'a str>,
    role: &'static str,
    user_id: Option<UserId>,
    patient_id: Option<PatientId>,
    doctor_id: Option<DoctorId>,
    /// True for a signed-in identity that should register as a patient first.
    needs_registration: bool,
}

pub async fn get(caller: Caller) -> HttpResponse {
    let (user_id, patient_id, doctor_id) = match &caller {
        Caller::User { user, .. } => (Some(user.id), user.patient_id, user.doctor_id),
        _ => (None, None, None),
    };
    HttpResponse::Ok().json(Me {
        subject: caller.subject().map(|s| s.as_str()),
        role: caller.role_name(),
        user_id,
        patient_id,
        doctor_id,
        needs_registration: matches!(caller, Caller::Unregistered(_)),
    })
}
