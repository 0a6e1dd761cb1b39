//! HTTP routes, one module per resource. The route table below is the single source of truth:
//! it registers the actix routes, and tests check it against every `functions/*/function.json`
//! (so the Functions host and the handler always agree on what exists).

pub mod appointments;
pub mod audit;
pub mod doctors;
pub mod extract;
pub mod health;
pub mod input;
pub mod me;
pub mod notifications;
pub mod openapi;
pub mod patients;
pub mod records;
pub mod schedules;
pub mod specialties;
pub mod users;
pub mod waitlist;

use actix_web::http::Method;
use actix_web::web;

pub use crate::auth::access::Rule;
pub use crate::auth::rate_limit::LimitClass;

/// Who the Functions host lets through to a function (function.json `authLevel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthLevel {
    Anonymous,
    Function,
}

impl AuthLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthLevel::Anonymous => "anonymous",
            AuthLevel::Function => "function",
        }
    }
}

/// One HTTP function's method on one route.
pub struct ApiRoute {
    /// The Azure Function (folder under `functions/`) that serves this route.
    pub function: &'static str,
    pub method: Method,
    /// The route as written in function.json (no `api/` prefix), with its constraints.
    pub route: &'static str,
    pub auth_level: AuthLevel,
    /// Who may call it (checked by the auth middleware before the handler runs).
    pub rule: Rule,
    /// Whether it reads or writes patient data (refusals are audited too).
    pub patient_data: bool,
    /// Which abuse limit it counts against; named on every route, so a booking, upload or
    /// notification route cannot fall into `General` by omission.
    pub limit: LimitClass,
    pub handler: fn() -> actix_web::Route,
}

impl ApiRoute {
    /// The actix path: `/api/` + the route without `{name:constraint}` constraints.
    pub fn path(&self) -> String {
        format!("/api/{}", strip_constraints(self.route))
    }
}

/// `doctors/{id:int}` → `doctors/{id}`.
pub fn strip_constraints(route: &str) -> String {
    let mut out = String::with_capacity(route.len());
    let mut in_param = false;
    let mut skipping = false;
    for c in route.chars() {
        match c {
            '{' => {
                in_param = true;
                out.push(c);
            }
            '}' => {
                in_param = false;
                skipping = false;
                out.push(c);
            }
            ':' if in_param => skipping = true,
            _ if skipping => {}
            _ => out.push(c),
        }
    }
    out
}

macro_rules! route {
    ($function:literal, $method:ident, $route:literal, $level:ident, $rule:ident, $phi:literal, $limit:ident, $handler:path) => {
        ApiRoute {
            function: $function,
            method: Method::$method,
            route: $route,
            auth_level: AuthLevel::$level,
            rule: Rule::$rule,
            patient_data: $phi,
            limit: LimitClass::$limit,
            handler: || web::route().method(Method::$method).to($handler),
        }
    };
}

/// Every HTTP route the handler serves: one line each, so the table reads as a table.
#[rustfmt::skip]
pub fn routes() -> Vec<ApiRoute> {
    vec![
        route!("Health", GET, "health", Anonymous, Anonymous, false, General, health::get),
        route!("OpenApi", GET, "openapi.json", Function, Anonymous, false, General, openapi::get),
        route!("Me", GET, "me", Function, SignedIn, false, General, me::get),
        route!("Specialties", GET, "specialties", Function, SignedIn, false, General, specialties::list),
        route!("Specialties", POST, "specialties", Function, Staff, false, General, specialties::create),
        route!("Specialty", GET, "specialties/{id:int}", Function, SignedIn, false, General, specialties::get),
        route!("Specialty", PATCH, "specialties/{id:int}", Function, Staff, false, General, specialties::update),
        route!("Doctors", GET, "doctors", Function, SignedIn, false, General, doctors::list),
        route!("Doctors", POST, "doctors", Function, Staff, false, General, doctors::create),
        route!("Doctor", GET, "doctors/{id:int}", Function, SignedIn, false, General, doctors::get),
        route!("Doctor", PATCH, "doctors/{id:int}", Function, DoctorSelfOrStaff, false, General, doctors::update),
        route!("DoctorSchedule", GET, "doctors/{id:int}/schedule", Function, SignedIn, false, General, schedules::get_schedule),
        route!("DoctorSchedule", PUT, "doctors/{id:int}/schedule", Function, DoctorSelfOrStaff, false, General, schedules::put_schedule),
        route!("DoctorTimeOff", GET, "doctors/{id:int}/time-off", Function, SignedIn, false, General, schedules::list_time_off),
        route!("DoctorTimeOff", POST, "doctors/{id:int}/time-off", Function, DoctorSelfOrStaff, false, General, schedules::add_time_off),
        route!("DoctorTimeOffEntry", DELETE, "doctors/{id:int}/time-off/{offId:int}", Function, DoctorSelfOrStaff, false, General, schedules::delete_time_off),
        route!("DoctorSlots", GET, "doctors/{id:int}/slots", Function, SignedIn, false, General, schedules::doctor_slots),
        route!("Slots", GET, "slots", Function, SignedIn, false, General, schedules::search),
        route!("Appointments", GET, "appointments", Function, PatientRecords, true, General, appointments::list),
        route!("Appointments", POST, "appointments", Function, PatientRecords, true, Booking, appointments::book),
        route!("Appointment", GET, "appointments/{id:int}", Function, PatientRecords, true, General, appointments::get),
        route!("AppointmentStatus", POST, "appointments/{id:int}/status", Function, PatientRecords, true, Booking, appointments::set_status),
        route!("AppointmentReschedule", POST, "appointments/{id:int}/reschedule", Function, PatientRecords, true, Booking, appointments::reschedule),
        route!("AppointmentCalendar", GET, "appointments/{id:int}/calendar.ics", Function, PatientRecords, true, General, appointments::calendar),
        route!("AppointmentNotifications", GET, "appointments/{id:int}/notifications", Function, PatientRecords, true, General, notifications::list),
        route!("NotificationResend", POST, "notifications/{id:int}/resend", Function, Staff, true, Notification, notifications::resend),
        route!("TestEmail", POST, "test/email", Function, Staff, false, Notification, notifications::test_email),
        route!("Waitlist", GET, "waitlist", Function, PatientRecords, true, General, waitlist::list),
        route!("Waitlist", POST, "waitlist", Function, PatientRecords, true, Booking, waitlist::join),
        route!("WaitlistEntry", DELETE, "waitlist/{id:int}", Function, PatientRecords, true, Booking, waitlist::leave),
        route!("Patients", GET, "patients", Function, PatientRecords, true, General, patients::list),
        route!("Patients", POST, "patients", Function, Register, true, SignIn, patients::create),
        route!("Patient", GET, "patients/{id:int}", Function, PatientRecords, true, General, patients::get),
        route!("Patient", PATCH, "patients/{id:int}", Function, PatientRecords, true, General, patients::update),
        route!("PatientRecords", GET, "patients/{id:int}/records", Function, PatientRecords, true, General, records::list),
        route!("PatientRecords", POST, "patients/{id:int}/records", Function, PatientRecords, true, Upload, records::upload),
        route!("PatientRecordUpload", POST, "patients/{id:int}/records/upload-url", Function, PatientRecords, true, Upload, records::reserve_upload),
        route!("UploadMedicalRecord", POST, "upload/medical-records", Function, PatientRecords, true, Upload, records::legacy_upload),
        route!("Record", GET, "records/{id:int}", Function, PatientRecords, true, General, records::get),
        route!("Record", DELETE, "records/{id:int}", Function, PatientRecords, true, General, records::delete),
        route!("RecordDownload", GET, "records/{id:int}/download-url", Function, PatientRecords, true, General, records::download_url),
        route!("RecordContent", GET, "records/{id:int}/content", Anonymous, Anonymous, true, General, records::content),
        route!("RecordContent", PUT, "records/{id:int}/content", Anonymous, Anonymous, true, Upload, records::put_content),
        route!("Users", GET, "users", Function, Admin, false, General, users::list),
        route!("Users", POST, "users", Function, Admin, false, General, users::create),
        route!("User", PATCH, "users/{id:int}", Function, Admin, false, General, users::update),
        route!("Audit", GET, "audit", Function, Admin, true, General, audit::list),
        route!("AuditVerify", GET, "audit/verify", Function, Admin, false, General, audit::verify),
    ]
}

/// Registers every route, grouped by path so one resource answers 405 for a method it lacks.
pub fn configure(cfg: &mut web::ServiceConfig) {
    let table = routes();
    let mut paths: Vec<String> = Vec::new();
    for path in table.iter().map(ApiRoute::path) {
        if !paths.contains(&path) {
            paths.push(path);
        }
    }
    for path in paths {
        let mut resource = web::resource(path.as_str());
        let mut allowed = Vec::new();
        for r in table.iter().filter(|r| r.path() == path) {
            resource = resource.route((r.handler)());
            allowed.push(r.method.as_str());
        }
        let allow = allowed.join(", ");
        cfg.service(resource.default_service(web::to(move || std::future::ready(method_not_allowed(&allow)))));
    }
}

/// 405 with the `Allow` header RFC 9110 requires: the methods the resource has.
fn method_not_allowed(allow: &str) -> actix_web::HttpResponse {
    use actix_web::ResponseError;
    let mut response = crate::error::ApiError::MethodNotAllowed.error_response();
    if let Ok(value) = actix_web::http::header::HeaderValue::from_str(allow) {
        response.headers_mut().insert(actix_web::http::header::ALLOW, value);
    }
    response
}

/// Anything not routed: a JSON 404 like every other error.
pub async fn not_found() -> Result<actix_web::HttpResponse, crate::error::ApiError> {
    Err(crate::error::ApiError::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constraints_are_stripped() {
        assert_eq!(strip_constraints("doctors/{id:int}/slots"), "doctors/{id}/slots");
        assert_eq!(strip_constraints("health"), "health");
    }

    #[test]
    fn each_function_has_one_route_and_one_auth_level() {
        let table = routes();
        for r in &table {
            for other in table.iter().filter(|o| o.function == r.function) {
                assert_eq!(other.route, r.route, "{} serves one route", r.function);
                assert_eq!(other.auth_level, r.auth_level, "{}", r.function);
            }
        }
    }
}
