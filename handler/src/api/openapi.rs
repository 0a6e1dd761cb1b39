//! The OpenAPI 3.1 description of the HTTP API, built from the code: paths, methods, path
//! parameters and security from the route table; request, query and response schemas derived
//! (schemars) from the very types the handlers read and write. Each route's operation below
//! names those types, so a route without one, or one for a route that does not exist, fails
//! `document()`; a test keeps the checked-in `openapi.json` equal to what this builds.

use std::collections::BTreeMap;

use actix_web::HttpResponse;
use schemars::generate::{Contract, SchemaSettings};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{Map, Value, json};

use super::{ApiRoute, AuthLevel, Rule, routes};
use crate::domain::appointment::{Appointment, WaitlistEntry};
use crate::domain::audit::{Event as AuditEvent, Verification};
use crate::domain::doctor::Doctor;
use crate::domain::doctor_schedule::TimeOff;
use crate::domain::notification::Notification;
use crate::domain::page::Page;
use crate::domain::patient::Patient;
use crate::domain::record::MedicalRecord;
use crate::domain::specialty::Specialty;
use crate::domain::user::User;

/// Where the checked-in copy lives, relative to the workspace root.
pub const CHECKED_IN_PATH: &str = "openapi.json";

type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

fn reference<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

/// A query struct's own object schema (its properties become parameters).
fn inline<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    T::json_schema(g)
}

enum Body {
    Json(SchemaFn),
    /// The raw file (uploads).
    File,
}

enum Reply {
    Json(SchemaFn),
    /// Either of two bodies (a list, or one item when a filter names it).
    JsonOneOf(SchemaFn, SchemaFn),
    Calendar,
    File,
    Empty,
}

struct Header {
    name: &'static str,
    required: bool,
    description: &'static str,
}

const IDEMPOTENCY_KEY: Header = Header {
    name: "Idempotency-Key",
    required: false,
    description: "1-255 visible ASCII characters. A retry with the same key and request answers the first \
                  result (with `Idempotent-Replayed: true`) instead of booking twice; kept 24 hours per caller.",
};
const FILE_NAME: Header = Header {
    name: "x-file-name",
    required: true,
    description: "The file's name, percent-encoded UTF-8 (kept out of URLs and access logs).",
};
const RECORD_CATEGORY: Header = Header {
    name: "x-record-category",
    required: false,
    description: "report, prescription, imaging, lab-result, letter or other (default other).",
};

/// What one route's method takes and answers.
struct Operation {
    summary: &'static str,
    query: Option<SchemaFn>,
    body: Option<Body>,
    headers: Vec<Header>,
    status: u16,
    reply: Reply,
    /// Also answers 201 with the same body (a first PUT creates).
    creates_first: bool,
    /// Answers 503 with its own body (health: which dependency is down), not the error shape.
    unavailable_with_body: bool,
    /// Failures this operation can answer besides the ones every operation can.
    errors: &'static [u16],
}

impl Operation {
    fn new(summary: &'static str) -> Self {
        Operation {
            summary,
            query: None,
            body: None,
            headers: Vec::new(),
            status: 200,
            reply: Reply::Empty,
            creates_first: false,
            unavailable_with_body: false,
            errors: &[],
        }
    }
    fn query<T: JsonSchema>(mut self) -> Self {
        self.query = Some(inline::<T>);
        self
    }
    fn json<T: JsonSchema>(mut self) -> Self {
        self.body = Some(Body::Json(reference::<T>));
        self
    }
    fn file(mut self) -> Self {
        self.body = Some(Body::File);
        self
    }
    fn header(mut self, h: Header) -> Self {
        self.headers.push(h);
        self
    }
    fn ok<T: JsonSchema>(mut self) -> Self {
        self.reply = Reply::Json(reference::<T>);
        self
    }
    fn created<T: JsonSchema>(mut self) -> Self {
        self.status = 201;
        self.ok::<T>()
    }
    fn answers(mut self, status: u16, reply: Reply) -> Self {
        self.status = status;
        self.reply = reply;
        self
    }
    fn unavailable_with_body(mut self) -> Self {
        self.unavailable_with_body = true;
        self
    }
    fn or_created(mut self) -> Self {
        self.creates_first = true;
        self
    }
    fn errors(mut self, errors: &'static [u16]) -> Self {
        self.errors = errors;
        self
    }
}

/// The operation of every route, by function and method. Names the handler's own types.
fn operations() -> Vec<((&'static str, &'static str), Operation)> {
    use super::{appointments, audit, doctors, health, input, me, notifications, patients, records, schedules};
    use super::{specialties, users, waitlist};
    const CONFLICT: &[u16] = &[409];
    vec![
        (
            ("OpenApi", "GET"),
            Operation::new("This document (OpenAPI 3.1)").answers(200, Reply::Json(|_| Schema::from(true))),
        ),
        (
            ("Health", "GET"),
            Operation::new("Liveness and each dependency's state and latency")
                .ok::<health::Health>()
                .unavailable_with_body(),
        ),
        (("Me", "GET"), Operation::new("The caller's role and linked patient or doctor").ok::<me::Me<'static>>()),
        (
            ("Specialties", "GET"),
            Operation::new("List specialties").query::<input::PageQuery>().ok::<Page<Specialty>>(),
        ),
        (
            ("Specialties", "POST"),
            Operation::new("Create a specialty")
                .json::<specialties::CreateSpecialty>()
                .created::<Specialty>()
                .errors(CONFLICT),
        ),
        (("Specialty", "GET"), Operation::new("Read a specialty").ok::<Specialty>()),
        (
            ("Specialty", "PATCH"),
            Operation::new("Update a specialty (compare-and-swap on version)")
                .json::<specialties::UpdateSpecialty>()
                .ok::<Specialty>()
                .errors(CONFLICT),
        ),
        (("Doctors", "GET"), Operation::new("List doctors").query::<doctors::ListQuery>().ok::<Page<Doctor>>()),
        (
            ("Doctors", "POST"),
            Operation::new("Create a doctor").json::<doctors::CreateDoctor>().created::<Doctor>().errors(CONFLICT),
        ),
        (("Doctor", "GET"), Operation::new("Read a doctor").ok::<Doctor>()),
        (
            ("Doctor", "PATCH"),
            Operation::new("Update a doctor (the doctor: not their specialty or active flag)")
                .json::<doctors::UpdateDoctor>()
                .ok::<Doctor>()
                .errors(CONFLICT),
        ),
        (
            ("DoctorSchedule", "GET"),
            Operation::new("A doctor's weekly hours, appointment types and booking rules")
                .ok::<schedules::ScheduleBody<'static>>(),
        ),
        (
            ("DoctorSchedule", "PUT"),
            Operation::new("Set a doctor's schedule: 201 for the first, then 200 with compare-and-swap on version")
                .json::<schedules::PutSchedule>()
                .ok::<schedules::ScheduleBody<'static>>()
                .or_created()
                .errors(CONFLICT),
        ),
        (
            ("DoctorTimeOff", "GET"),
            Operation::new("Time off in a window (reasons only for the doctor and staff)")
                .query::<schedules::WindowQuery>()
                .ok::<input::Items<TimeOff>>(),
        ),
        (
            ("DoctorTimeOff", "POST"),
            Operation::new("Add time off").json::<schedules::AddTimeOff>().created::<TimeOff>().errors(CONFLICT),
        ),
        (("DoctorTimeOffEntry", "DELETE"), Operation::new("Remove one time-off entry").answers(204, Reply::Empty)),
        (
            ("DoctorSlots", "GET"),
            Operation::new("A doctor's free slots (UTC and the doctor's wall clock)")
                .query::<schedules::SlotsQuery>()
                .ok::<schedules::DoctorSlots<'static>>(),
        ),
        (
            ("Slots", "GET"),
            Operation::new("The earliest free slots across a specialty's doctors")
                .query::<schedules::SearchQuery>()
                .ok::<schedules::SlotSearch>(),
        ),
        (
            ("Appointments", "GET"),
            Operation::new("List appointments (by patient, doctor, status, period or day)")
                .query::<appointments::ListQuery>()
                .ok::<Page<Appointment>>(),
        ),
        (
            ("Appointments", "POST"),
            Operation::new("Book a free slot, or hold it while the patient confirms")
                .json::<appointments::BookRequest>()
                .header(IDEMPOTENCY_KEY)
                .created::<Appointment>()
                .errors(&[409, 422]),
        ),
        (("Appointment", "GET"), Operation::new("Read an appointment").ok::<Appointment>()),
        (
            ("AppointmentStatus", "POST"),
            Operation::new("Change an appointment's status (compare-and-swap on version)")
                .json::<appointments::StatusRequest>()
                .ok::<Appointment>()
                .errors(CONFLICT),
        ),
        (
            ("AppointmentReschedule", "POST"),
            Operation::new("Move an appointment to another free slot, atomically")
                .json::<appointments::RescheduleRequest>()
                .created::<appointments::Rescheduled>()
                .errors(CONFLICT),
        ),
        (
            ("AppointmentCalendar", "GET"),
            Operation::new("The appointment as an iCalendar event").answers(200, Reply::Calendar),
        ),
        (
            ("AppointmentNotifications", "GET"),
            Operation::new("The status of each message the appointment owes").ok::<input::Items<Notification>>(),
        ),
        (
            ("NotificationResend", "POST"),
            Operation::new("Send a failed message again (staff)")
                .answers(202, Reply::Json(reference::<Notification>))
                .errors(CONFLICT),
        ),
        (
            ("TestEmail", "POST"),
            Operation::new("Send one test message through the configured transport (staff)")
                .json::<notifications::TestEmail>()
                .ok::<notifications::TestEmailSent>(),
        ),
        (
            ("Waitlist", "GET"),
            Operation::new("List waitlist entries").query::<waitlist::ListQuery>().ok::<Page<WaitlistEntry>>(),
        ),
        (
            ("Waitlist", "POST"),
            Operation::new("Ask to be offered an earlier slot with a doctor or a specialty")
                .json::<waitlist::JoinRequest>()
                .created::<WaitlistEntry>()
                .errors(CONFLICT),
        ),
        (("WaitlistEntry", "DELETE"), Operation::new("Leave the waitlist").ok::<WaitlistEntry>().errors(CONFLICT)),
        (
            ("Patients", "GET"),
            Operation::new("List patients (staff), or find one by username")
                .query::<patients::ListQuery>()
                .answers(200, Reply::JsonOneOf(reference::<Page<Patient>>, reference::<Patient>)),
        ),
        (
            ("Patients", "POST"),
            Operation::new("Register a patient (the caller, or anyone for staff)")
                .json::<patients::RegisterPatient>()
                .created::<Patient>()
                .errors(CONFLICT),
        ),
        (("Patient", "GET"), Operation::new("Read a patient").ok::<Patient>()),
        (
            ("Patient", "PATCH"),
            Operation::new("Update a patient (compare-and-swap on version)")
                .json::<patients::UpdatePatient>()
                .ok::<Patient>()
                .errors(CONFLICT),
        ),
        (
            ("PatientRecords", "GET"),
            Operation::new("A patient's records, newest first")
                .query::<records::ListQuery>()
                .ok::<Page<MedicalRecord>>(),
        ),
        (
            ("PatientRecords", "POST"),
            Operation::new("Upload a record (the raw file as the body)")
                .file()
                .header(FILE_NAME)
                .header(RECORD_CATEGORY)
                .created::<MedicalRecord>()
                .errors(&[413, 415, 422]),
        ),
        (
            ("PatientRecordUpload", "POST"),
            Operation::new("Reserve a record and get a create-only link for its file")
                .json::<records::ReserveRequest>()
                .created::<records::UploadLink>(),
        ),
        (
            ("UploadMedicalRecord", "POST"),
            Operation::new("Upload a record (the original article's route)")
                .query::<records::LegacyQuery>()
                .file()
                .created::<MedicalRecord>()
                .errors(&[413, 415, 422]),
        ),
        (("Record", "GET"), Operation::new("A record's metadata").ok::<MedicalRecord>()),
        (
            ("Record", "DELETE"),
            Operation::new("Soft-delete a record with a reason (compare-and-swap on version)")
                .json::<records::DeleteRequest>()
                .ok::<MedicalRecord>()
                .errors(CONFLICT),
        ),
        (
            ("RecordDownload", "GET"),
            Operation::new("A read-only link to the file, valid for minutes")
                .ok::<records::DownloadLink>()
                .errors(CONFLICT),
        ),
        (
            ("RecordContent", "GET"),
            Operation::new("Local storage: the file a signed link names (SHA-256 checked)")
                .query::<records::LinkQuery>()
                .answers(200, Reply::File),
        ),
        (
            ("RecordContent", "PUT"),
            Operation::new("Local storage: the direct upload a signed link allows")
                .query::<records::LinkQuery>()
                .file()
                .created::<MedicalRecord>()
                .errors(&[410, 413, 415, 422]),
        ),
        (("Users", "GET"), Operation::new("List users (admins)").query::<input::PageQuery>().ok::<Page<User>>()),
        (
            ("Users", "POST"),
            Operation::new("Give an identity a role (admins)")
                .json::<users::CreateUser>()
                .created::<User>()
                .errors(CONFLICT),
        ),
        (
            ("User", "PATCH"),
            Operation::new("Change a user's role (admins, compare-and-swap on version)")
                .json::<users::UpdateUser>()
                .ok::<User>()
                .errors(CONFLICT),
        ),
        (
            ("Audit", "GET"),
            Operation::new("Export the audit trail (admins)").query::<audit::ListQuery>().ok::<Page<AuditEvent>>(),
        ),
        (("AuditVerify", "GET"), Operation::new("Walk the audit hash chain (admins)").ok::<Verification>()),
    ]
}

/// Failures every operation can answer, and the shared responses they point at.
const COMMON_ERRORS: &[u16] = &[400, 401, 403, 404, 422, 429, 500, 503];

fn error_description(status: u16) -> &'static str {
    match status {
        400 => "Malformed request: not JSON, wrong type, unknown field, bad query parameter",
        401 => "No valid function key, or the route needs a signed-in caller (`WWW-Authenticate: Bearer`)",
        403 => "Signed in, but the role may not do this",
        404 => "Unknown id, or one the caller may not see",
        409 => "Stale version, duplicate, or a booking rule said no (`slot_taken`, `patient_busy`, …)",
        410 => "The upload link expired",
        413 => "Body over the limit (`limitBytes`)",
        415 => "Not a type we keep, or one its name or declared type contradicts",
        422 => "Well-formed but invalid values; every bad field listed",
        429 => "An abuse limit was hit; `Retry-After` says when to come back",
        500 => "Opaque; the cause is logged under the request id",
        503 => "The database or storage is unavailable; `Retry-After` is set",
        _ => "Error",
    }
}

fn error_response(status: u16) -> Value {
    let mut r = json!({
        "description": error_description(status),
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } },
    });
    if matches!(status, 429 | 503) {
        r["headers"] = json!({ "Retry-After": { "$ref": "#/components/headers/RetryAfter" } });
    }
    r
}

/// `{id:int}` segments of a function.json route, as path parameters.
fn path_parameters(route: &str) -> Vec<Value> {
    route
        .split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
        .map(|param| {
            let (name, constraint) = param.split_once(':').unwrap_or((param, ""));
            let schema = if constraint == "int" {
                json!({ "type": "integer", "format": "int64", "minimum": 1 })
            } else {
                json!({ "type": "string" })
            };
            json!({ "name": name, "in": "path", "required": true, "schema": schema })
        })
        .collect()
}

/// A query struct's properties as query parameters. Every query value is text on the wire, so
/// the `null` an optional field allows in JSON is dropped.
fn query_parameters(schema: &Schema) -> Result<Vec<Value>, String> {
    let object = schema.as_object().ok_or("a query schema must be an object")?;
    let required: Vec<&str> =
        object.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    let Some(properties) = object.get("properties").and_then(Value::as_object) else {
        return Err("a query schema must have properties".into());
    };
    Ok(properties
        .iter()
        .map(|(name, property)| {
            let mut property = property.clone();
            let description = property.as_object_mut().and_then(|p| p.remove("description"));
            if let Some(types) = property.get_mut("type").and_then(Value::as_array_mut) {
                types.retain(|t| t != "null");
                if types.len() == 1 {
                    property["type"] = types[0].clone();
                }
            }
            let mut p = json!({ "name": name, "in": "query", "required": required.contains(&name.as_str()), "schema": property });
            if let Some(d) = description {
                p["description"] = d;
            }
            p
        })
        .collect())
}

fn security(route: &ApiRoute) -> Value {
    match (route.auth_level, route.rule) {
        (AuthLevel::Anonymous, _) => json!([]),
        (AuthLevel::Function, Rule::Anonymous) => json!([{ "functionKey": [] }, { "functionKeyQuery": [] }]),
        (AuthLevel::Function, _) => json!([
            { "functionKey": [], "bearer": [] },
            { "functionKeyQuery": [], "bearer": [] },
        ]),
    }
}

fn responses(op: &Operation, replies: &mut SchemaGenerator) -> Value {
    let mut out = Map::new();
    let described = match op.status {
        201 => "Created (`Location` names it)",
        202 => "Accepted",
        204 => "No content",
        _ => "OK",
    };
    let mut ok = json!({ "description": described });
    match &op.reply {
        Reply::Json(schema) => ok["content"] = json!({ "application/json": { "schema": schema(replies) } }),
        Reply::JsonOneOf(a, b) => {
            ok["content"] = json!({ "application/json": { "schema": { "oneOf": [a(replies), b(replies)] } } });
        }
        Reply::Calendar => ok["content"] = json!({ "text/calendar": { "schema": { "type": "string" } } }),
        Reply::File => {
            ok["content"] =
                json!({ "*/*": { "schema": { "type": "string", "contentMediaType": "application/octet-stream" } } });
            ok["headers"] = json!({ "Content-Disposition": { "schema": { "type": "string" }, "description": "The original file name (RFC 6266, RFC 8187 `filename*`)" } });
        }
        Reply::Empty => {}
    }
    let location = json!({ "Location": { "schema": { "type": "string" }, "description": "The created resource" } });
    if op.creates_first {
        let mut created = ok.clone();
        created["description"] = json!("Created (the first time; `Location` names it)");
        created["headers"] = location.clone();
        out.insert("201".into(), created);
    }
    if op.status == 201 {
        ok["headers"] = location;
    }
    let unavailable = op.unavailable_with_body.then(|| {
        let mut down = ok.clone();
        down["description"] = json!("The database or record storage is down (the body says which)");
        down
    });
    out.insert(op.status.to_string(), ok);
    // A body can be too large or not of the type the operation reads.
    let body_errors: &[u16] = if op.body.is_some() { &[413, 415] } else { &[] };
    let mut errors: Vec<u16> = COMMON_ERRORS.iter().chain(op.errors).chain(body_errors).copied().collect();
    errors.sort_unstable();
    errors.dedup();
    for status in errors {
        out.insert(status.to_string(), json!({ "$ref": format!("#/components/responses/E{status}") }));
    }
    if let Some(down) = unavailable {
        out.insert("503".into(), down);
    }
    Value::Object(out)
}

fn request_body(body: &Body, requests: &mut SchemaGenerator) -> Value {
    match body {
        Body::Json(schema) => json!({
            "required": true,
            "content": { "application/json": { "schema": schema(requests) } },
        }),
        Body::File => json!({
            "required": true,
            "description": "The raw file: PDF, PNG, JPEG, TIFF, DICOM or UTF-8 text (the type is sniffed from the bytes)",
            "content": { "*/*": { "schema": { "type": "string", "contentMediaType": "application/octet-stream" } } },
        }),
    }
}

fn generator(contract: Contract) -> SchemaGenerator {
    let mut settings = SchemaSettings::draft2020_12();
    settings.definitions_path = "/components/schemas".into();
    settings.meta_schema = None;
    settings.contract = contract;
    settings.into_generator()
}

/// The whole document, or what keeps the route table and the operations from agreeing.
pub fn document() -> Result<Value, String> {
    // Requests are described as they are read (defaults, unknown fields refused), replies as
    // they are written.
    let mut requests = generator(Contract::Deserialize);
    let mut replies = generator(Contract::Serialize);
    let mut paths: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    let mut missing = Vec::new();
    let mut described: BTreeMap<(&str, &str), Operation> = operations().into_iter().collect();
    let table = routes();
    for route in &table {
        let method = route.method.as_str().to_ascii_lowercase();
        let Some(op) = described.remove(&(route.function, route.method.as_str())) else {
            missing.push(format!("{} {}", route.method, route.route));
            continue;
        };
        let mut parameters = path_parameters(route.route);
        if let Some(query) = op.query {
            parameters.extend(query_parameters(&query(&mut requests))?);
        }
        for h in &op.headers {
            parameters.push(json!({
                "name": h.name, "in": "header", "required": h.required,
                "description": h.description, "schema": { "type": "string" },
            }));
        }
        let mut operation = json!({
            "operationId": format!("{}{}", route.function, capitalized(&method)),
            "summary": op.summary,
            "tags": [tag(route.route)],
            "security": security(route),
            "responses": responses(&op, &mut replies),
        });
        if !parameters.is_empty() {
            operation["parameters"] = Value::Array(parameters);
        }
        if let Some(body) = &op.body {
            operation["requestBody"] = request_body(body, &mut requests);
        }
        paths.entry(route.path()).or_default().insert(method, operation);
    }
    if !missing.is_empty() {
        return Err(format!("routes without an operation in api::openapi: {}", missing.join(", ")));
    }
    if !described.is_empty() {
        let stale: Vec<String> = described.keys().map(|(f, m)| format!("{m} {f}")).collect();
        return Err(format!("operations for routes that do not exist: {}", stale.join(", ")));
    }
    reference::<crate::error::ErrorBody<'static>>(&mut replies);
    let schemas = merged_definitions(requests.take_definitions(true), replies.take_definitions(true))?;
    let mut errors = Map::new();
    for status in [400, 401, 403, 404, 409, 410, 413, 415, 422, 429, 500, 503] {
        errors.insert(format!("E{status}"), error_response(status));
    }
    Ok(json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Patient portal API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Patients find specialists, book and manage appointments, reach their records and get reminders; doctors publish their hours; staff run the clinic. JSON in and out, camelCase fields, one error shape. Every call goes through the Functions front end with a function key (`x-functions-key` header or `code` query parameter); calls that act as a person also carry a Microsoft Entra ID bearer token (or come through App Service Authentication).",
            "license": { "name": "MIT", "identifier": "MIT" },
        },
        "servers": [
            { "url": "http://127.0.0.1:7071", "description": "standalone or `func start`" },
            { "url": "https://{app}.azurewebsites.net", "variables": { "app": { "default": "portal" } } },
        ],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": errors,
            "headers": {
                "RetryAfter": { "description": "Seconds to wait before trying again", "schema": { "type": "integer", "minimum": 0 } },
            },
            "securitySchemes": {
                "functionKey": { "type": "apiKey", "in": "header", "name": "x-functions-key", "description": "A function or host key of the function app" },
                "functionKeyQuery": { "type": "apiKey", "in": "query", "name": "code", "description": "The same key as a query parameter (prefer the header: URLs get logged)" },
                "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT", "description": "A Microsoft Entra ID access token for the portal's API" },
            },
        },
    }))
}

/// One set of component schemas: a name both generators produced must mean the same thing,
/// or the document would describe one of the two directions wrongly.
fn merged_definitions(requests: Map<String, Value>, replies: Map<String, Value>) -> Result<Map<String, Value>, String> {
    let mut out = replies;
    let mut clashes = Vec::new();
    for (name, schema) in requests {
        match out.get(&name) {
            Some(existing) if *existing != schema => clashes.push(name),
            Some(_) => {}
            None => {
                out.insert(name, schema);
            }
        }
    }
    if clashes.is_empty() {
        Ok(out)
    } else {
        Err(format!("schemas that differ between requests and replies: {}", clashes.join(", ")))
    }
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
}

/// The first path segment, as the operation's tag.
fn tag(route: &str) -> &str {
    route.split('/').next().unwrap_or(route)
}

/// The document as served and checked in: pretty, with a trailing newline.
pub fn rendered() -> Result<String, String> {
    let doc = document()?;
    serde_json::to_string_pretty(&doc).map(|s| s + "\n").map_err(|e| e.to_string())
}

/// `GET /api/openapi.json`: built once per process.
pub async fn get() -> HttpResponse {
    static DOCUMENT: std::sync::OnceLock<Result<String, String>> = std::sync::OnceLock::new();
    match DOCUMENT.get_or_init(rendered) {
        Ok(body) => HttpResponse::Ok().content_type("application/json").body(body.clone()),
        Err(e) => {
            tracing::error!(cause = %e, "the OpenAPI document cannot be built");
            HttpResponse::InternalServerError().finish()
        }
    }
}
