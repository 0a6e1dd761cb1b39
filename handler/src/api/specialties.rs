use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::extract::{ValidJson, ValidQuery, nullable, path_id};
use super::input;
use crate::domain::specialty::{NewSpecialty, SpecialtyChanges};
use crate::domain::values::{LongText, SpecialtyCode, Title};
use crate::domain::{FieldCheck, SpecialtyId};
use crate::error::ApiError;
use crate::startup::AppState;

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateSpecialty {
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9-]{0,62}[a-z0-9]$"))]
    code: String,
    name: String,
    description: Option<String>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdateSpecialty {
    #[serde(default, deserialize_with = "nullable")]
    name: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    description: Option<Option<String>>,
    #[schemars(range(min = 1))]
    version: Option<i64>,
}

pub async fn create(
    state: web::Data<AppState>,
    ValidJson(body): ValidJson<CreateSpecialty>,
) -> Result<HttpResponse, ApiError> {
    let mut check = FieldCheck::new();
    let code = check.check("code", SpecialtyCode::parse(&body.code));
    let name = check.check("name", Title::parse(&body.name));
    let description = check.check_opt("description", body.description.as_deref(), LongText::parse);
    let new = input::finish(check, || Some(NewSpecialty { code: code?, name: name?, description: description? }))?;
    let created = state.store.create_specialty(new).await?;
    Ok(input::created(format!("/api/specialties/{}", created.id), &created))
}

pub async fn get(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let id = path_id(&req, SpecialtyId::parse)?;
    Ok(HttpResponse::Ok().json(state.store.get_specialty(id).await?))
}

pub async fn list(
    state: web::Data<AppState>,
    ValidQuery(q): ValidQuery<input::PageQuery>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(state.store.list_specialties(q.into_page()?).await?))
}

pub async fn update(
    state: web::Data<AppState>,
    req: HttpRequest,
    ValidJson(body): ValidJson<UpdateSpecialty>,
) -> Result<HttpResponse, ApiError> {
    let id = path_id(&req, SpecialtyId::parse)?;
    let mut check = FieldCheck::new();
    let changes = SpecialtyChanges {
        name: input::set_only(&mut check, "name", body.name, Title::parse),
        description: input::change(&mut check, "description", body.description, LongText::parse),
    };
    let version = input::version(&mut check, body.version);
    input::finish(check, || Some(()))?;
    Ok(HttpResponse::Ok().json(state.store.update_specialty(id, changes, version).await?))
}
