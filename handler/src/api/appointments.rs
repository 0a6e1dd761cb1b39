//! Appointments: booking and holds, reading, the status lifecycle, reschedules and the
//! iCalendar view. The rules about who may do what to which appointment live here; the
//! guarantees under concurrency (no double booking, compare-and-swap) live in the store.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::extract::{ValidJson, ValidQuery, path_id};
use super::input;
use crate::auth::access::{Caller, patient_scope};
use crate::domain::appointment::{
    Appointment, AppointmentCursor, AppointmentFilter, Booked, CancelReason, ChangePolicy, IdempotencyKey,
    NewAppointment, Refusal, Reschedule, Status, Transition,
};
use crate::domain::audit::{Action, Outcome};
use crate::domain::doctor::Doctor;
use crate::domain::doctor_schedule::{StoredSchedule, TimeOff, parse_instant};
use crate::domain::ical::{self, EventInfo};
use crate::domain::schedule::{Availability, Interval, SlotRules, local_midnight, slot_at};
use crate::domain::user::Membership;
use crate::domain::values::{LongText, ValueError};
use crate::domain::{AppointmentId, DoctorId, FieldCheck, PatientId};
use crate::error::ApiError;
use crate::startup::AppState;
use crate::store::StoreError;

/// Bookings, blocked ranges and time off are read this far around a slot, so a booking whose
/// buffers reach into it is seen.
const MARGIN: Duration = Duration::hours(24);
/// A reschedule chain is followed at most this far for the calendar view.
const MAX_CHAIN: usize = 20;

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BookRequest {
    /// Required for staff and doctors; a patient books for themselves.
    patient_id: Option<i64>,
    doctor_id: i64,
    #[schemars(with = "chrono::DateTime<chrono::Utc>")]
    start: String,
    #[serde(rename = "type")]
    #[schemars(length(min = 1, max = 32))]
    appointment_type: Option<String>,
    reason: Option<String>,
    /// Hold the slot (pending) instead of booking it; confirm with a status change to booked.
    #[serde(default)]
    hold: bool,
}

/// Who the booking is for, given who asks: patients book for themselves, doctors with
/// themselves, staff for anyone.
fn booking_patient(caller: &Caller, requested: Option<PatientId>, doctor: DoctorId) -> Result<PatientId, ApiError> {
    match caller {
        Caller::User { membership: Membership::Patient(own), .. } => match requested {
            None => Ok(*own),
            Some(p) if p == *own => Ok(p),
            Some(_) => Err(ApiError::Forbidden),
        },
        Caller::User { membership: Membership::Doctor(me), .. } if *me != doctor => Err(ApiError::Forbidden),
        Caller::User { membership: Membership::Doctor(_) | Membership::Staff | Membership::Admin, .. } => {
            requested.ok_or_else(|| ApiError::invalid("patientId", "is required"))
        }
        _ => Err(ApiError::Forbidden),
    }
}

/// The doctor, their schedule and the rules of one appointment type: what a slot is checked
/// against. Missing pieces are the request's fault, so they name its field.
struct Bookable {
    doctor: Doctor,
    schedule: StoredSchedule,
    type_code: String,
    rules: SlotRules,
}

async fn bookable(state: &AppState, doctor: DoctorId, type_code: Option<&str>) -> Result<Bookable, ApiError> {
    let doctor = match state.store.get_doctor(doctor).await {
        Err(StoreError::NotFound) => {
            return Err(ApiError::invalid("doctorId", "refers to a record that does not exist"));
        }
        other => other?,
    };
    if !doctor.active {
        return Err(ApiError::invalid("doctorId", "is not taking bookings"));
    }
    let schedule = match state.store.get_schedule(doctor.id).await {
        Err(StoreError::NotFound) => return Err(ApiError::invalid("doctorId", "has no working hours to book")),
        other => other?,
    };
    let kind = schedule
        .schedule
        .appointment_type(type_code)
        .ok_or_else(|| ApiError::invalid("type", "is not an appointment type of this doctor"))?
        .clone();
    let rules = schedule.schedule.rules_for(&kind);
    Ok(Bookable { doctor, schedule, type_code: kind.code, rules })
}

/// A slot on the doctor's grid: the appointment, its blocked range, and whether it looked free
/// (the store decides for sure, under its locks).
struct GridSlot {
    core: Interval,
    blocked: Interval,
    free: bool,
}

impl GridSlot {
    /// A taken slot is refused here, unless the store may still replay an earlier result for the
    /// request's idempotency key (a retry of a booking that went through finds its own slot
    /// taken); the store then checks again and refuses the same way.
    fn require_free(&self, replayable: bool) -> Result<(), ApiError> {
        if self.free || replayable { Ok(()) } else { Err(ApiError::Refused(Refusal::SlotTaken)) }
    }
}

/// The slot starting at `start`, or 422 when it is not a slot at all (not aligned, outside
/// hours, in time off, too soon or too far). `moving` is a blocked range to ignore (the
/// appointment being rescheduled).
async fn grid_slot(
    state: &AppState,
    b: &Bookable,
    start: DateTime<Utc>,
    now: DateTime<Utc>,
    moving: Option<Interval>,
) -> Result<GridSlot, ApiError> {
    let around = Interval { start: start - MARGIN, end: start + MARGIN };
    let time_off: Vec<Interval> =
        state.store.list_time_off(b.doctor.id, around).await?.iter().map(TimeOff::interval).collect();
    let mut blocked: Vec<Interval> =
        state.store.blocked_intervals(&[b.doctor.id], around, now).await?.into_iter().map(|(_, i)| i).collect();
    if let Some(own) = moving
        && let Some(i) = blocked.iter().position(|x| *x == own)
    {
        blocked.swap_remove(i);
    }
    let mut availability = Availability {
        zone: b.doctor.time_zone.tz(),
        hours: b.schedule.schedule.hours(),
        rules: b.rules,
        time_off: &time_off,
        blocked: &blocked,
    };
    let mut free = true;
    let mut found = slot_at(&availability, start, now);
    if found.is_none() {
        availability.blocked = &[];
        found = slot_at(&availability, start, now);
        free = false;
    }
    if let Some(slot) = found {
        let core = Interval { start: slot.start, end: slot.end };
        return Ok(GridSlot { core, blocked: b.rules.blocked_range(core), free });
    }
    Err(ApiError::invalid(
        "start",
        "is not a slot of this doctor: pick one from GET /api/doctors/{id}/slots (aligned, in working hours, within notice and horizon)",
    ))
}

fn hex_sha256(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for p in parts {
        // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
        hasher.update((p.len() as u64).to_be_bytes());
        hasher.update(p.as_bytes());
    }
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn idempotency_key(req: &HttpRequest, caller: &Caller, request: &[&str]) -> Result<Option<IdempotencyKey>, ApiError> {
    let Some(raw) = req.headers().get("idempotency-key") else { return Ok(None) };
    let key = raw
        .to_str()
        .map_err(|_| ValueError("must be visible ASCII".into()))
        .and_then(IdempotencyKey::parse_key)
        .map_err(|e| ApiError::bad_field("Idempotency-Key", e.0))?;
    let owner = caller.subject().map(|s| s.as_str()).unwrap_or("-");
    Ok(Some(IdempotencyKey { owner: hex_sha256(&[owner]), key, request_hash: hex_sha256(request) }))
}

fn offers(state: &AppState) -> ChangePolicy {
    state.booking.policy()
}

pub async fn book(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    ValidJson(body): ValidJson<BookRequest>,
) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let mut check = FieldCheck::new();
    let doctor = check.check("doctorId", DoctorId::new(body.doctor_id).ok_or(ValueError("must be a doctor id".into())));
    let requested = check
        .check_opt("patientId", body.patient_id, |p| PatientId::new(p).ok_or(ValueError("must be a patient id".into())))
        .flatten();
    let start = check.check("start", parse_instant(&body.start));
    let reason = check.check_opt("reason", body.reason.as_deref(), LongText::parse).flatten();
    let (doctor, start) = input::finish(check, || Some((doctor?, start?)))?;
    let patient = booking_patient(&caller, requested, doctor)?;
    let b = bookable(&state, doctor, body.appointment_type.as_deref()).await?;
    let hold_until = body.hold.then_some(now + state.booking.hold);
    let key = idempotency_key(
        &req,
        &caller,
        &[
            &patient.to_string(),
            &doctor.to_string(),
            &start.timestamp_micros().to_string(),
            &b.type_code,
            reason.as_ref().map_or("", LongText::as_str),
            if body.hold { "hold" } else { "book" },
        ],
    )?;
    let slot = grid_slot(&state, &b, start, now, None).await?;
    if slot.require_free(key.is_some()).is_err() {
        let taken = Err::<(), _>(StoreError::Refused(Refusal::SlotTaken));
        audited_failure(&state, &caller, Action::Create, None, Some(patient), taken).await?;
    }
    let new = NewAppointment {
        patient_id: patient,
        doctor_id: doctor,
        appointment_type: b.type_code.clone(),
        reason,
        slot: slot.core,
        blocked: slot.blocked,
        hold_until: hold_until.map(|h| h.min(slot.core.start)),
        reminders: state.booking.reminders,
        now,
    };
    let audit = caller.audit(Action::Create, "appointment", None, Some(patient), Outcome::Success);
    let booked = state.store.book_appointment(new, key, audit).await;
    let booked = audited_failure(&state, &caller, Action::Create, None, Some(patient), booked).await?;
    match booked {
        Booked::Created(a) => {
            crate::notify::sweep::kick(state.clone());
            Ok(input::created(format!("/api/appointments/{}", a.id), &a.effective(now)))
        }
        Booked::Replayed(a) => Ok(HttpResponse::Created()
            .insert_header((header::LOCATION, format!("/api/appointments/{}", a.id)))
            .insert_header(("Idempotent-Replayed", "true"))
            .json(a.effective(now))),
    }
}

/// A write that failed rolled back with its audit row; this records the attempt on its own
/// (not found, or refused), so a patient's audit export shows it too.
async fn audited_failure<T>(
    state: &AppState,
    caller: &Caller,
    action: Action,
    id: Option<AppointmentId>,
    patient: Option<PatientId>,
    result: Result<T, StoreError>,
) -> Result<T, ApiError> {
    let outcome = match &result {
        Ok(_) => return Ok(result?),
        Err(StoreError::NotFound) => Outcome::NotFound,
        Err(StoreError::Unavailable(_) | StoreError::Other(_)) => return Ok(result?),
        Err(_) => Outcome::Failed,
    };
    let entry = caller.audit(action, "appointment", id.map(|i| i.to_string()), patient, outcome);
    state.store.append_audit(vec![entry]).await?;
    Ok(result?)
}

/// Records a read (or a failed attempt) of one appointment before answering; if the audit row
/// cannot be written, nothing leaves.
async fn audited_read(
    state: &AppState,
    caller: &Caller,
    id: AppointmentId,
    result: Result<Appointment, StoreError>,
) -> Result<Appointment, ApiError> {
    let outcome = input::audit_outcome(&result);
    let patient = result.as_ref().ok().map(|a| a.patient_id);
    let entry = caller.audit(Action::Read, "appointment", Some(id.to_string()), patient, outcome);
    state.store.append_audit(vec![entry]).await?;
    Ok(result?)
}

pub async fn get(state: web::Data<AppState>, caller: Caller, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let id = path_id(&req, AppointmentId::parse)?;
    let found = state.store.get_appointment(id, patient_scope(&caller)?).await;
    let appointment = audited_read(&state, &caller, id, found).await?;
    Ok(HttpResponse::Ok().json(appointment.effective(state.clock.now())))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ListQuery {
    #[schemars(with = "Option<i64>")]
    patient_id: Option<String>,
    #[schemars(with = "Option<i64>")]
    doctor_id: Option<String>,
    /// Comma-separated statuses.
    status: Option<String>,
    #[schemars(with = "Option<chrono::DateTime<chrono::Utc>>")]
    from: Option<String>,
    #[schemars(with = "Option<chrono::DateTime<chrono::Utc>>")]
    to: Option<String>,
    /// A day on the doctor's wall clock (needs `doctorId`): the doctor's day view.
    #[schemars(with = "Option<chrono::NaiveDate>")]
    date: Option<String>,
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
    let patient_id = check
        .check_opt("patientId", q.patient_id.as_deref(), |s| {
            PatientId::parse(s).ok_or(ValueError("must be a patient id".into()))
        })
        .flatten();
    let doctor_id = check
        .check_opt("doctorId", q.doctor_id.as_deref(), |s| {
            DoctorId::parse(s).ok_or(ValueError("must be a doctor id".into()))
        })
        .flatten();
    let statuses = check
        .check_opt("status", q.status.as_deref(), |raw| input::comma_list(raw, Status::parse))
        .flatten()
        .unwrap_or_default();
    let (mut from, mut to) = input::optional_period(&mut check, q.from.as_deref(), q.to.as_deref(), parse_instant);
    let date = check
        .check_opt("date", q.date.as_deref(), |s| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| ValueError("must be a date (YYYY-MM-DD)".into()))
        })
        .flatten();
    if date.is_some() && (q.from.is_some() || q.to.is_some()) {
        check.fail("date", "cannot be combined with from or to");
    }
    if date.is_some() && doctor_id.is_none() {
        check.fail("date", "needs doctorId: the day is the doctor's own, in their time zone");
    }
    let limit = check
        .check_opt("limit", q.limit.as_deref(), crate::domain::PageRequest::parse_limit)
        .flatten()
        .unwrap_or(crate::domain::page::DEFAULT_LIMIT);
    let after = check.check_opt("cursor", q.cursor.as_deref(), AppointmentCursor::parse).flatten();
    input::finish(check, || Some(()))?;
    if let (Some(day), Some(doctor)) = (date, doctor_id) {
        let zone = match state.store.get_doctor(doctor).await {
            Err(StoreError::NotFound) => {
                return Err(ApiError::invalid("doctorId", "refers to a record that does not exist"));
            }
            other => other?.time_zone.tz(),
        };
        from = local_midnight(zone, day);
        to = day.succ_opt().and_then(|next| local_midnight(zone, next));
    }
    let filter = AppointmentFilter { patient_id, doctor_id, statuses, from, to };
    let listed = state.store.list_appointments(filter, scope, after, limit).await?;
    // One row for the query, one per appointment disclosed (accounting of disclosures).
    let mut entries = vec![caller.audit(Action::List, "appointment", None, patient_id, Outcome::Success)];
    entries.extend(listed.items.iter().map(|a| {
        caller.audit(Action::Read, "appointment", Some(a.id.to_string()), Some(a.patient_id), Outcome::Success)
    }));
    state.store.append_audit(entries).await?;
    let now = state.clock.now();
    Ok(HttpResponse::Ok().json(listed.map(|a| a.effective(now))))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StatusRequest {
    #[schemars(with = "crate::domain::appointment::Status")]
    status: String,
    #[schemars(range(min = 1))]
    version: i64,
    /// A cancellation reason code; required when cancelling, refused otherwise.
    #[schemars(with = "Option<crate::domain::appointment::CancelReason>")]
    reason: Option<String>,
}

/// Which statuses a role may move an appointment to (the lifecycle itself is checked in the
/// store, against the current row): patients confirm their holds and cancel; doctors run their
/// day; staff do everything, including marking entries made in error.
fn may_set(caller: &Caller, to: Status) -> bool {
    match caller {
        Caller::User { membership: Membership::Patient(_), .. } => matches!(to, Status::Booked | Status::Cancelled),
        Caller::User { membership: Membership::Doctor(_), .. } => {
            matches!(to, Status::CheckedIn | Status::Fulfilled | Status::NoShow | Status::Cancelled)
        }
        Caller::User { membership: Membership::Staff | Membership::Admin, .. } => true,
        _ => false,
    }
}

fn positive_version(check: &mut FieldCheck, version: i64) -> Option<i64> {
    input::version(check, Some(version))
}

pub async fn set_status(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    ValidJson(body): ValidJson<StatusRequest>,
) -> Result<HttpResponse, ApiError> {
    let id = path_id(&req, AppointmentId::parse)?;
    let scope = patient_scope(&caller)?;
    let mut check = FieldCheck::new();
    let to = check.check("status", Status::parse(&body.status));
    let reason = check.check_opt("reason", body.reason.as_deref(), CancelReason::parse).flatten();
    let version = positive_version(&mut check, body.version);
    match (to, reason) {
        (Some(Status::Cancelled), None) => check.fail("reason", "is required when cancelling"),
        (Some(s), Some(_)) if s != Status::Cancelled => check.fail("reason", "is only for cancelling"),
        _ => {}
    }
    let (to, version) = input::finish(check, || Some((to?, version?)))?;
    if to == Status::Pending {
        return Err(ApiError::Refused(Refusal::IllegalTransition));
    }
    if !may_set(&caller, to) {
        return Err(ApiError::Forbidden);
    }
    let change = Transition { to, cancel_reason: reason, now: state.clock.now() };
    let audit = caller.audit(Action::Update, "appointment", Some(id.to_string()), None, Outcome::Success);
    let updated = state.store.transition_appointment(id, scope, change, version, offers(&state), audit).await;
    let updated = audited_failure(&state, &caller, Action::Update, Some(id), None, updated).await?;
    crate::notify::sweep::kick(state.clone());
    Ok(HttpResponse::Ok().json(updated.effective(change.now)))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RescheduleRequest {
    #[schemars(with = "chrono::DateTime<chrono::Utc>")]
    start: String,
    #[schemars(range(min = 1))]
    version: i64,
    /// Another of the doctor's appointment types; the current one when absent.
    #[serde(rename = "type")]
    appointment_type: Option<String>,
}

pub async fn reschedule(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    ValidJson(body): ValidJson<RescheduleRequest>,
) -> Result<HttpResponse, ApiError> {
    let id = path_id(&req, AppointmentId::parse)?;
    let scope = patient_scope(&caller)?;
    let mut check = FieldCheck::new();
    let start = check.check("start", parse_instant(&body.start));
    let version = positive_version(&mut check, body.version);
    let (start, version) = input::finish(check, || Some((start?, version?)))?;
    let now = state.clock.now();
    let current = state.store.get_appointment(id, scope).await?;
    let b = bookable(
        &state,
        current.doctor_id,
        Some(body.appointment_type.as_deref().unwrap_or(&current.appointment_type)),
    )
    .await?;
    let moving = current.is_live(now).then_some(current.blocked);
    let slot = grid_slot(&state, &b, start, now, moving).await?;
    slot.require_free(false)?;
    let change = Reschedule { appointment_type: b.type_code.clone(), slot: slot.core, blocked: slot.blocked, now };
    let audit =
        caller.audit(Action::Update, "appointment", Some(id.to_string()), Some(current.patient_id), Outcome::Success);
    let moved = state.store.reschedule_appointment(id, scope, change, version, offers(&state), audit).await;
    let (old, new) =
        audited_failure(&state, &caller, Action::Update, Some(id), Some(current.patient_id), moved).await?;
    crate::notify::sweep::kick(state.clone());
    Ok(input::created(
        format!("/api/appointments/{}", new.id),
        &Rescheduled { appointment: new.effective(now), previous: old.effective(now) },
    ))
}

/// A reschedule's two sides.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub struct Rescheduled {
    /// The new appointment (a new id).
    pub appointment: Appointment,
    /// The old one, now cancelled with `rescheduledTo` pointing at the new one.
    pub previous: Appointment,
}

/// The appointment as an iCalendar event. A rescheduled appointment answers with the event it
/// became (same UID, higher SEQUENCE), so a calendar that re-fetches an old link moves the event
/// instead of cancelling it.
pub async fn calendar(state: web::Data<AppState>, caller: Caller, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let id = path_id(&req, AppointmentId::parse)?;
    let scope = patient_scope(&caller)?;
    let found = state.store.get_appointment(id, scope).await;
    let mut appointment = audited_read(&state, &caller, id, found).await?;
    for _ in 0..MAX_CHAIN {
        let Some(next) = appointment.rescheduled_to else { break };
        appointment = state.store.get_appointment(next, scope).await?;
    }
    let now = state.clock.now();
    let appointment = appointment.effective(now);
    let doctor = state.store.get_doctor(appointment.doctor_id).await?;
    let body = ical::render(
        &EventInfo {
            appointment: &appointment,
            doctor_name: doctor.name.as_str(),
            time_zone: doctor.time_zone.tz(),
            organizer_email: None,
            stamp: now,
        },
        ical::Method::Publish,
    );
    Ok(HttpResponse::Ok()
        .content_type(ical::Method::Publish.content_type())
        .insert_header((header::CONTENT_DISPOSITION, format!("attachment; filename=\"appointment-{id}.ics\"")))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body))
}
