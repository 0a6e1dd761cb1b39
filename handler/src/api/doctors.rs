use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::extract::{ValidJson, ValidQuery, nullable, path_id};
use super::input;
use crate::auth::access::{Caller, require_doctor_self_or_staff};
use crate::domain::doctor::{DoctorChanges, DoctorFilter, NewDoctor};
use crate::domain::user::Role;
use crate::domain::values::{EmailAddress, LongText, PersonName, TimeZone, ValueError, parse_search};
use crate::domain::{DoctorId, FieldCheck, SpecialtyId};
use crate::error::ApiError;
use crate::startup::AppState;

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateDoctor {
    name: String,
    specialty_id: i64,
    #[schemars(email, length(max = 254))]
    email: String,
    #[schemars(with = "crate::domain::values::TimeZone")]
    time_zone: String,
    bio: Option<String>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdateDoctor {
    #[serde(default, deserialize_with = "nullable")]
    name: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    specialty_id: Option<Option<i64>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schemars(email, length(max = 254))]
    email: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schemars(with = "Option<Option<crate::domain::values::TimeZone>>")]
    time_zone: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    bio: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    active: Option<Option<bool>>,
    #[schemars(range(min = 1))]
    version: Option<i64>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[schemars(with = "Option<i64>")]
    specialty: Option<String>,
    name: Option<String>,
    #[schemars(with = "Option<bool>")]
    active: Option<String>,
    #[schemars(with = "Option<u32>", range(min = 1, max = 100))]
    limit: Option<String>,
    cursor: Option<String>,
}

fn specialty_id(raw: i64) -> Result<SpecialtyId, ValueError> {
    SpecialtyId::new(raw).ok_or(ValueError("must be the id of a specialty".into()))
}

pub async fn create(
    state: web::Data<AppState>,
    ValidJson(body): ValidJson<CreateDoctor>,
) -> Result<HttpResponse, ApiError> {
    let mut check = FieldCheck::new();
    let name = check.check("name", PersonName::parse(&body.name));
    let specialty = check.check("specialtyId", specialty_id(body.specialty_id));
    let email = check.check("email", EmailAddress::parse(&body.email));
    let zone = check.check("timeZone", TimeZone::parse(&body.time_zone));
    let bio = check.check_opt("bio", body.bio.as_deref(), LongText::parse);
    let new = input::finish(check, || {
        Some(NewDoctor { name: name?, specialty_id: specialty?, email: email?, time_zone: zone?, bio: bio? })
    })?;
    let created = state.store.create_doctor(new).await?;
    Ok(input::created(format!("/api/doctors/{}", created.id), &created))
}

pub async fn get(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let id = path_id(&req, DoctorId::parse)?;
    Ok(HttpResponse::Ok().json(state.store.get_doctor(id).await?))
}

pub async fn list(state: web::Data<AppState>, ValidQuery(q): ValidQuery<ListQuery>) -> Result<HttpResponse, ApiError> {
    let mut check = FieldCheck::new();
    let page = input::page(&mut check, q.limit.as_deref(), q.cursor.as_deref());
    let specialty_id = check
        .check_opt("specialty", q.specialty.as_deref(), |s| {
            SpecialtyId::parse(s).ok_or(ValueError("must be a specialty id".into()))
        })
        .flatten();
    let name_contains = check.check_opt("name", q.name.as_deref(), parse_search).flatten();
    let active = check
        .check_opt("active", q.active.as_deref(), |s| match s {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(ValueError("must be true or false".into())),
        })
        .flatten();
    input::finish(check, || Some(()))?;
    let filter = DoctorFilter { specialty_id, name_contains, active };
    Ok(HttpResponse::Ok().json(state.store.list_doctors(filter, page).await?))
}

pub async fn update(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    ValidJson(body): ValidJson<UpdateDoctor>,
) -> Result<HttpResponse, ApiError> {
    let id = path_id(&req, DoctorId::parse)?;
    require_doctor_self_or_staff(&caller, id)?;
    let mut check = FieldCheck::new();
    let specialty_id = match body.specialty_id {
        None => None,
        Some(None) => {
            check.fail("specialtyId", "must not be null");
            None
        }
        Some(Some(raw)) => check.check("specialtyId", specialty_id(raw)),
    };
    let active = match body.active {
        Some(None) => {
            check.fail("active", "must not be null");
            None
        }
        other => other.flatten(),
    };
    let changes = DoctorChanges {
        name: input::set_only(&mut check, "name", body.name, PersonName::parse),
        specialty_id,
        email: input::set_only(&mut check, "email", body.email, EmailAddress::parse),
        time_zone: input::set_only(&mut check, "timeZone", body.time_zone, TimeZone::parse),
        bio: input::change(&mut check, "bio", body.bio, LongText::parse),
        active,
    };
    let version = input::version(&mut check, body.version);
    input::finish(check, || Some(()))?;
    // A doctor edits their own profile; which specialty they practise and whether they take
    // bookings is the clinic's decision.
    if caller.role() == Some(Role::Doctor) && (changes.specialty_id.is_some() || changes.active.is_some()) {
        return Err(ApiError::Forbidden);
    }
    Ok(HttpResponse::Ok().json(state.store.update_doctor(id, changes, version).await?))
}
