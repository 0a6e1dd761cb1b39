use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;
use serde::Deserialize;

use super::extract::{ValidJson, ValidQuery, nullable, path_id};
use super::input;
use crate::domain::patient::{NewPatient, PatientChanges, PatientFilter};
use crate::domain::values::{EmailAddress, Gender, PersonName, Phone, Username, parse_birth_date, parse_search};
use crate::domain::{FieldCheck, PatientId};
use crate::error::ApiError;
use crate::startup::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RegisterPatient {
    username: String,
    name: String,
    email: String,
    phone: Option<String>,
    date_of_birth: String,
    gender: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdatePatient {
    #[serde(default, deserialize_with = "nullable")]
    name: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    email: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    phone: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    date_of_birth: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    gender: Option<Option<String>>,
    version: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// The original article's lookup: `GET /api/patients?username=` answers that one patient.
    username: Option<String>,
    q: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

pub async fn create(
    state: web::Data<AppState>,
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
    let created = state.store.create_patient(new).await?;
    Ok(input::created(format!("/api/patients/{}", created.id), &created))
}

pub async fn get(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let id = path_id(&req, PatientId::parse)?;
    Ok(HttpResponse::Ok().json(state.store.get_patient(id).await?))
}

pub async fn list(state: web::Data<AppState>, ValidQuery(q): ValidQuery<ListQuery>) -> Result<HttpResponse, ApiError> {
    let mut check = FieldCheck::new();
    if let Some(raw) = q.username.as_deref() {
        if q.q.is_some() || q.limit.is_some() || q.cursor.is_some() {
            check.fail("username", "cannot be combined with q, limit or cursor");
        }
        let username = check.check("username", Username::parse(raw));
        let username = input::finish(check, || username)?;
        return Ok(HttpResponse::Ok().json(state.store.find_patient_by_username(&username).await?));
    }
    let page = input::page(&mut check, q.limit.as_deref(), q.cursor.as_deref());
    let text_contains = check.check_opt("q", q.q.as_deref(), parse_search).flatten();
    input::finish(check, || Some(()))?;
    let filter = PatientFilter { text_contains };
    Ok(HttpResponse::Ok().json(state.store.list_patients(filter, page).await?))
}

pub async fn update(
    state: web::Data<AppState>,
    req: HttpRequest,
    ValidJson(body): ValidJson<UpdatePatient>,
) -> Result<HttpResponse, ApiError> {
    let id = path_id(&req, PatientId::parse)?;
    let today = Utc::now().date_naive();
    let mut check = FieldCheck::new();
    let changes = PatientChanges {
        name: input::set_only(&mut check, "name", body.name, PersonName::parse),
        email: input::set_only(&mut check, "email", body.email, EmailAddress::parse),
        phone: input::change(&mut check, "phone", body.phone, Phone::parse),
        date_of_birth: input::set_only(&mut check, "dateOfBirth", body.date_of_birth, |s| parse_birth_date(s, today)),
        gender: input::change(&mut check, "gender", body.gender, Gender::parse),
    };
    let version = input::version(&mut check, body.version);
    input::finish(check, || Some(()))?;
    Ok(HttpResponse::Ok().json(state.store.update_patient(id, changes, version).await?))
}
