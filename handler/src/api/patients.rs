use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;
use serde::Deserialize;

use super::extract::{ValidJson, ValidQuery, nullable, path_id};
use super::input;
use crate::auth::access::{Caller, patient_scope};
use crate::domain::audit::{Action, Outcome};
use crate::domain::patient::{NewPatient, Patient, PatientChanges, PatientFilter};
use crate::domain::values::{EmailAddress, Gender, PersonName, Phone, Username, parse_birth_date, parse_search};
use crate::domain::{FieldCheck, PatientId};
use crate::error::ApiError;
use crate::startup::AppState;
use crate::store::StoreError;

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RegisterPatient {
    #[schemars(regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{2,63}$"))]
    username: String,
    name: String,
    #[schemars(email, length(max = 254))]
    email: String,
    phone: Option<String>,
    #[schemars(with = "chrono::NaiveDate")]
    date_of_birth: String,
    #[schemars(with = "Option<crate::domain::values::Gender>")]
    gender: Option<String>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdatePatient {
    #[serde(default, deserialize_with = "nullable")]
    name: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schemars(email, length(max = 254))]
    email: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    phone: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schemars(with = "Option<Option<chrono::NaiveDate>>")]
    date_of_birth: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schemars(with = "Option<Option<crate::domain::values::Gender>>")]
    gender: Option<Option<String>>,
    /// `false` turns reminder emails off (bookings, changes and cancellations still go out).
    reminder_emails: Option<bool>,
    #[schemars(range(min = 1))]
    version: Option<i64>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// The original article's lookup: `GET /api/patients?username=` answers that one patient.
    username: Option<String>,
    q: Option<String>,
    #[schemars(with = "Option<u32>", range(min = 1, max = 100))]
    limit: Option<String>,
    cursor: Option<String>,
}

/// Registration: a signed-in identity without a user registers itself (and is linked to the new
/// record); staff register patients who sign in later.
pub async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    ValidJson(body): ValidJson<RegisterPatient>,
) -> Result<HttpResponse, ApiError> {
    let today = Utc::now().date_naive();
    let mut check = FieldCheck::new();
    let username = check.check("username", Username::parse(&body.username));
    let name = check.check("name", PersonName::parse(&body.name));
    let email = check.check("email", EmailAddress::parse(&body.email));
    let phone = check.check_opt("phone", body.phone.as_deref(), Phone::parse);
    let date_of_birth = check.check("dateOfBirth", parse_birth_date(&body.date_of_birth, today));
    let gender = check.check_opt("gender", body.gender.as_deref(), Gender::parse);
    let new = input::finish(check, || {
        Some(NewPatient {
            username: username?,
            name: name?,
            email: email?,
            phone: phone?,
            date_of_birth: date_of_birth?,
            gender: gender?,
        })
    })?;
    let link = match &caller {
        Caller::Unregistered(subject) => Some(subject.clone()),
        _ => None,
    };
    let audit = caller.audit(Action::Create, "patient", None, None, Outcome::Success);
    let created = state.store.create_patient(new, link, audit).await.map_err(|e| match e {
        StoreError::Duplicate { field: "subject" } => {
            ApiError::Conflict { message: "this sign-in is already registered".into(), field: None }
        }
        other => other.into(),
    })?;
    Ok(input::created(format!("/api/patients/{}", created.id), &created))
}

pub async fn get(state: web::Data<AppState>, caller: Caller, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let id = path_id(&req, PatientId::parse)?;
    let found = state.store.get_patient(id, patient_scope(&caller)?).await;
    let patient = audited(&state, &caller, Action::Read, id, found).await?;
    Ok(HttpResponse::Ok().json(patient))
}

/// Records a read or a failed attempt on one patient's record before answering. If the audit
/// row cannot be written, no patient data leaves. The row names the patient asked about even
/// when the caller may not see them, so that patient's audit export shows the attempt.
async fn audited(
    state: &AppState,
    caller: &Caller,
    action: Action,
    id: PatientId,
    result: Result<Patient, StoreError>,
) -> Result<Patient, ApiError> {
    let outcome = input::audit_outcome(&result);
    let entry = caller.audit(action, "patient", Some(id.to_string()), Some(id), outcome);
    state.store.append_audit(vec![entry]).await?;
    Ok(result?)
}

pub async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    ValidQuery(q): ValidQuery<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let scope = patient_scope(&caller)?;
    let mut check = FieldCheck::new();
    if let Some(raw) = q.username.as_deref() {
        if q.q.is_some() || q.limit.is_some() || q.cursor.is_some() {
            check.fail("username", "cannot be combined with q, limit or cursor");
        }
        let username = check.check("username", Username::parse(raw));
        let username = input::finish(check, || username)?;
        let found = state.store.find_patient_by_username(&username, scope).await;
        let outcome = if found.is_ok() { Outcome::Success } else { Outcome::NotFound };
        let entry = caller.audit(
            Action::Read,
            "patient",
            found.as_ref().ok().map(|p| p.id.to_string()),
            found.as_ref().ok().map(|p| p.id),
            outcome,
        );
        state.store.append_audit(vec![entry]).await?;
        return Ok(HttpResponse::Ok().json(found?));
    }
    let page = input::page(&mut check, q.limit.as_deref(), q.cursor.as_deref());
    let text_contains = check.check_opt("q", q.q.as_deref(), parse_search).flatten();
    input::finish(check, || Some(()))?;
    let filter = PatientFilter { text_contains };
    let listed = state.store.list_patients(filter, scope, page).await?;
    // One row for the query, one per patient disclosed (accounting of disclosures).
    let mut entries = vec![caller.audit(Action::List, "patient", None, None, Outcome::Success)];
    entries.extend(
        listed
            .items
            .iter()
            .map(|p| caller.audit(Action::Read, "patient", Some(p.id.to_string()), Some(p.id), Outcome::Success)),
    );
    state.store.append_audit(entries).await?;
    Ok(HttpResponse::Ok().json(listed))
}

pub async fn update(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    ValidJson(body): ValidJson<UpdatePatient>,
) -> Result<HttpResponse, ApiError> {
    let id = path_id(&req, PatientId::parse)?;
    let scope = patient_scope(&caller)?;
    let today = Utc::now().date_naive();
    let mut check = FieldCheck::new();
    let changes = PatientChanges {
        name: input::set_only(&mut check, "name", body.name, PersonName::parse),
        email: input::set_only(&mut check, "email", body.email, EmailAddress::parse),
        phone: input::change(&mut check, "phone", body.phone, Phone::parse),
        date_of_birth: input::set_only(&mut check, "dateOfBirth", body.date_of_birth, |s| parse_birth_date(s, today)),
        gender: input::change(&mut check, "gender", body.gender, Gender::parse),
        reminder_emails: body.reminder_emails,
    };
    let version = input::version(&mut check, body.version);
    input::finish(check, || Some(()))?;
    let entry = caller.audit(Action::Update, "patient", Some(id.to_string()), Some(id), Outcome::Success);
    match state.store.update_patient(id, scope, changes, version, entry).await {
        Ok(updated) => Ok(HttpResponse::Ok().json(updated)),
        // The change was rolled back with its audit row; record the attempt on its own.
        Err(e) => audited(&state, &caller, Action::Update, id, Err(e)).await.map(|p| HttpResponse::Ok().json(p)),
    }
}
