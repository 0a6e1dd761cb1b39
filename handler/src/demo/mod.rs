//! A realistic demo clinic, loaded by `handler seed-demo` or `handler serve --demo-data`.
//! Loading twice changes nothing: existing rows (same code, email or username) are kept.
//! Every person here is fictional; addresses use reserved example domains.

pub mod bench_seed;
pub mod files;
mod records;

use chrono::{Duration, NaiveDate};

use crate::domain::appointment::{AppointmentFilter, Booked, ChangePolicy, NewAppointment, Status, Transition};
use crate::domain::audit::{Action, Entry};
use crate::domain::doctor::{DoctorFilter, NewDoctor};
use crate::domain::doctor_schedule::{
    AppointmentTypeInput, NewTimeOff, RangeInput, Schedule, ScheduleInput, TimeOffReason,
};
use crate::domain::patient::NewPatient;
use crate::domain::schedule::{Availability, Interval, free_slots, local_date, local_midnight};
use crate::domain::specialty::NewSpecialty;
use crate::domain::user::{Membership, Subject};
use crate::domain::values::{
    EmailAddress, Gender, LongText, PersonName, Phone, SpecialtyCode, TimeZone, Title, ValueError,
};
use crate::domain::{PageRequest, PatientId, SpecialtyId, time};
use crate::store::{PatientScope, Store, StoreError};

/// Development identities for the demo clinic (send one in `x-portal-dev-user`): an admin, a
/// staff member, every doctor by the name before the `@` of their email, every patient by
/// username.
pub const DEMO_ADMIN: &str = "dev-admin";
pub const DEMO_STAFF: &str = "dev-staff";

fn system_entry(action: Action, resource_type: &str) -> Entry {
    Entry::by_system("demo-seed", action, resource_type, time::now())
}

async fn ensure_user(
    store: &dyn Store,
    report: &mut DemoReport,
    subject: &str,
    m: Membership,
) -> Result<(), StoreError> {
    let subject = Subject::parse(subject).map_err(invalid)?;
    tally(report, store.create_user(subject, m, system_entry(Action::RoleChange, "user")).await)
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct DemoReport {
    pub created: u32,
    pub already_present: u32,
}

const SPECIALTIES: &[(&str, &str, &str)] = &[
    ("cardiology", "Cardiology", "Heart and blood vessels: chest pain, arrhythmia, hypertension."),
    ("dermatology", "Dermatology", "Skin, hair and nails."),
    ("neurology", "Neurology", "Brain, spine and nerves: headaches, epilepsy, movement disorders."),
    ("pediatrics", "Pediatrics", "Children from birth to 18."),
    ("orthopedics", "Orthopedics", "Bones, joints and sports injuries."),
    ("endocrinology", "Endocrinology", "Diabetes, thyroid and hormone disorders."),
];

/// (name, specialty code, email, IANA zone, bio): zones cover DST in both hemispheres and none.
const DOCTORS: &[(&str, &str, &str, &str, &str)] = &[
    (
        "Dr. Amara Okafor",
        "cardiology",
        "amara.okafor@clinic.example",
        "America/New_York",
        "Interventional cardiologist, 15 years in practice.",
    ),
    ("Dr. Lukas Becker", "cardiology", "lukas.becker@clinic.example", "Europe/Berlin", "Heart rhythm specialist."),
    (
        "Dr. Priya Raman",
        "dermatology",
        "priya.raman@clinic.example",
        "Asia/Kolkata",
        "Medical and paediatric dermatology.",
    ),
    ("Dr. Hiroshi Tanaka", "neurology", "hiroshi.tanaka@clinic.example", "Asia/Tokyo", "Headache and epilepsy clinic."),
    (
        "Dr. Sofia Marquez",
        "pediatrics",
        "sofia.marquez@clinic.example",
        "America/Los_Angeles",
        "General paediatrics and vaccinations.",
    ),
    (
        "Dr. Liam O'Connor",
        "orthopedics",
        "liam.oconnor@clinic.example",
        "Europe/Dublin",
        "Knee and shoulder surgery, sports medicine.",
    ),
    (
        "Dr. Chloe Nguyen",
        "endocrinology",
        "chloe.nguyen@clinic.example",
        "Australia/Sydney",
        "Type 1 and type 2 diabetes care.",
    ),
    ("Dr. Kwame Mensah", "neurology", "kwame.mensah@clinic.example", "UTC", "Telehealth neurology consultations."),
];

/// (username, name, email, phone, birth date, gender)
type DemoPatient = (&'static str, &'static str, &'static str, Option<&'static str>, &'static str, Option<&'static str>);
const PATIENTS: &[DemoPatient] = &[
    ("ana.lopez", "Ana López", "ana.lopez@example.org", Some("+1 555 0100 101"), "1984-02-29", Some("female")),
    ("ben.carter", "Ben Carter", "ben.carter@example.org", Some("+44 20 7946 0101"), "1975-11-03", Some("male")),
    ("chen.wei", "Chen Wei", "chen.wei@example.org", None, "1992-06-17", Some("male")),
    ("dana.kowalski", "Dana Kowalski", "dana.k@example.org", Some("+48 22 555 0102"), "2001-09-09", Some("female")),
    ("elif.yilmaz", "Elif Yılmaz", "elif.yilmaz@example.org", None, "1968-03-21", Some("female")),
    ("femi.adeyemi", "Femi Adeyemi", "femi.adeyemi@example.net", Some("+234 1 555 0103"), "1989-12-01", Some("male")),
    ("greta.lind", "Greta Lind", "greta.lind@example.net", None, "1957-07-30", Some("female")),
    ("hugo.martin", "Hugo Martin", "hugo.martin@example.net", Some("+33 1 55 50 01 04"), "2015-04-12", Some("male")),
    ("isla.morrison", "Isla Morrison", "isla.morrison@example.com", None, "1999-01-05", Some("other")),
    ("jonas.weber", "Jonas Weber", "jonas.weber@example.com", Some("+49 30 5550105"), "1980-10-10", None),
    ("kiri.walker", "Kiri Walker", "kiri.walker@example.com", None, "1972-05-14", Some("female")),
    ("leo.rossi", "Leo Rossi", "leo.rossi@example.com", Some("+39 06 5550 106"), "2010-08-22", Some("male")),
];

fn invalid(e: ValueError) -> StoreError {
    StoreError::Other(format!("demo data is invalid: {}", e.0).into())
}

/// Counts a created row, or an existing one (a duplicate key means it was loaded before).
fn tally<T>(report: &mut DemoReport, result: Result<T, StoreError>) -> Result<(), StoreError> {
    match result {
        Ok(_) => report.created += 1,
        Err(StoreError::Duplicate { .. }) => report.already_present += 1,
        Err(e) => return Err(e),
    }
    Ok(())
}

async fn find_doctor(store: &dyn Store, email: &str) -> Result<crate::domain::doctor::Doctor, StoreError> {
    let mut page = PageRequest { after: 0, limit: crate::domain::page::MAX_LIMIT };
    loop {
        let batch = store.list_doctors(DoctorFilter::default(), page).await?;
        if let Some(d) = batch.items.iter().find(|d| d.email.as_str() == email) {
            return Ok(d.clone());
        }
        match (batch.next_cursor, batch.items.last()) {
            (Some(_), Some(last)) => page.after = last.id.get(),
            _ => return Err(StoreError::NotFound),
        }
    }
}

/// The `n`th demo doctor's week, in their own zone: weekdays with a lunch break, 20- or 30-minute
/// consultations (and a 15-minute follow-up for every other doctor), a 10-minute buffer after
/// every other doctor's visits, two hours' notice and a 90-day horizon. The bench clinic uses
/// the same shapes, so its slots are as real as the demo's.
pub(crate) fn schedule_shape(n: usize) -> Option<Schedule> {
    let (morning, afternoon) = if n.is_multiple_of(2) {
        (("09:00", "12:30"), ("13:30", "17:00"))
    } else {
        (("08:00", "12:00"), ("13:00", "16:00"))
    };
    let day = vec![
        RangeInput { start: morning.0.into(), end: morning.1.into() },
        RangeInput { start: afternoon.0.into(), end: afternoon.1.into() },
    ];
    let mut input = ScheduleInput {
        weekly_hours: ["mon", "tue", "wed", "thu", "fri"].iter().map(|d| ((*d).to_owned(), day.clone())).collect(),
        appointment_types: vec![AppointmentTypeInput {
            code: "consult".into(),
            name: "Consultation".into(),
            minutes: if n.is_multiple_of(3) { 20 } else { 30 },
        }],
        buffer_before_minutes: 0,
        buffer_after_minutes: if n.is_multiple_of(2) { 10 } else { 0 },
        min_notice_minutes: 120,
        horizon_days: 90,
    };
    if !n.is_multiple_of(2) {
        input.appointment_types.push(AppointmentTypeInput {
            code: "follow-up".into(),
            name: "Follow-up visit".into(),
            minutes: 15,
        });
    }
    Schedule::parse(&mut crate::domain::FieldCheck::new(), &input)
}

/// The doctor's demo week and (only when the schedule is new, so a second load changes
/// nothing) a day of training two weeks out.
async fn ensure_schedule(
    store: &dyn Store,
    report: &mut DemoReport,
    doctor: &crate::domain::doctor::Doctor,
    n: usize,
) -> Result<(), StoreError> {
    match store.get_schedule(doctor.id).await {
        // The schedule and its time off are loaded together: both were there already.
        Ok(_) => {
            report.already_present += 2;
            return Ok(());
        }
        Err(StoreError::NotFound) => {}
        Err(e) => return Err(e),
    }
    let schedule = schedule_shape(n).ok_or_else(|| invalid(ValueError("a demo schedule does not validate".into())))?;
    store.put_schedule(doctor.id, schedule, None).await?;
    report.created += 1;
    let zone = doctor.time_zone.tz();
    let day = local_date(zone, time::now()) + chrono::Duration::days(14);
    let (Some(start), Some(end)) = (local_midnight(zone, day), local_midnight(zone, day + chrono::Duration::days(1)))
    else {
        return Ok(());
    };
    let range = Interval::new(start, end).map_err(invalid)?;
    store.add_time_off(doctor.id, NewTimeOff { range, reason: TimeOffReason::Training }).await?;
    report.created += 1;
    Ok(())
}

/// The doctor's free slots in `window` as of `now`, as the slot search computes them.
async fn free_of(
    store: &dyn Store,
    doctor: &crate::domain::doctor::Doctor,
    schedule: &Schedule,
    rules: crate::domain::schedule::SlotRules,
    window: Interval,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<crate::domain::schedule::Slot>, StoreError> {
    let time_off: Vec<Interval> = store.list_time_off(doctor.id, window).await?.iter().map(|t| t.interval()).collect();
    let blocked: Vec<Interval> =
        store.blocked_intervals(&[doctor.id], window, now).await?.into_iter().map(|(_, i)| i).collect();
    let availability = Availability {
        zone: doctor.time_zone.tz(),
        hours: schedule.hours(),
        rules,
        time_off: &time_off,
        blocked: &blocked,
    };
    Ok(free_slots(&availability, window, now))
}

/// A realistic calendar for one doctor: about a third of their free slots over the next five
/// days booked for the demo patients but the first (round robin; a patient already busy then is
/// skipped), and one fulfilled visit a week ago. The first demo patient (ana.lopez, whom the
/// README and walkthrough.http act as) has history but nothing upcoming, so every free slot a
/// new user sees is one she can book. Skipped when the doctor has appointments already, so a second
/// load changes nothing. The report counts a doctor's calendar as one item.
async fn ensure_appointments(
    store: &dyn Store,
    report: &mut DemoReport,
    doctor: &crate::domain::doctor::Doctor,
    n: usize,
    patients: &[PatientId],
) -> Result<(), StoreError> {
    let existing = AppointmentFilter { doctor_id: Some(doctor.id), ..Default::default() };
    if !store.list_appointments(existing, PatientScope::All, None, 1).await?.items.is_empty() {
        report.already_present += 1;
        return Ok(());
    }
    let Ok(stored) = store.get_schedule(doctor.id).await else { return Ok(()) };
    let Some(kind) = stored.schedule.appointment_type(None) else { return Ok(()) };
    let rules = stored.schedule.rules_for(kind);
    let book = |slot: crate::domain::schedule::Slot, patient: PatientId, now| NewAppointment {
        patient_id: patient,
        doctor_id: doctor.id,
        appointment_type: kind.code.clone(),
        reason: None,
        slot: Interval { start: slot.start, end: slot.end },
        blocked: rules.blocked_range(Interval { start: slot.start, end: slot.end }),
        hold_until: None,
        reminders: Default::default(),
        now,
    };
    let now = time::now();
    let window = Interval { start: now, end: now + Duration::days(5) };
    let upcoming = match patients {
        [_, rest @ ..] if !rest.is_empty() => rest,
        all => all,
    };
    for (k, slot) in free_of(store, doctor, &stored.schedule, rules, window, now)
        .await?
        .into_iter()
        .enumerate()
        .filter(|(k, _)| (k + n).is_multiple_of(3))
    {
        let patient = upcoming[(k / 3 + n) % upcoming.len()];
        match store.book_appointment(book(slot, patient, now), None, system_entry(Action::Create, "appointment")).await
        {
            Ok(_) | Err(StoreError::Refused(_)) => {}
            Err(e) => return Err(e),
        }
    }
    // Last week's visit, booked then and since fulfilled.
    let then = now - Duration::days(8);
    let last_week = Interval { start: now - Duration::days(7), end: now - Duration::days(6) };
    if let Some(slot) = free_of(store, doctor, &stored.schedule, rules, last_week, then).await?.into_iter().next() {
        let patient = patients[n % patients.len()];
        let visit = match store
            .book_appointment(book(slot, patient, then), None, system_entry(Action::Create, "appointment"))
            .await
        {
            Ok(Booked::Created(a) | Booked::Replayed(a)) => a,
            Err(StoreError::Refused(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut version = visit.version;
        for to in [Status::CheckedIn, Status::Fulfilled] {
            let change = Transition { to, cancel_reason: None, now: slot.start };
            let offers = ChangePolicy::offers(Duration::minutes(60));
            let entry = system_entry(Action::Update, "appointment");
            version = store
                .transition_appointment(visit.id, PatientScope::All, change, version, offers, entry)
                .await?
                .version;
        }
    }
    report.created += 1;
    Ok(())
}

/// Loads the demo clinic into `store`, and its record files into `records`.
pub async fn seed(store: &dyn Store, records: &dyn crate::blobs::RecordStorage) -> Result<DemoReport, StoreError> {
    let mut report = DemoReport::default();
    for (code, name, description) in SPECIALTIES {
        let new = NewSpecialty {
            code: SpecialtyCode::parse(code).map_err(invalid)?,
            name: Title::parse(name).map_err(invalid)?,
            description: Some(LongText::parse(description).map_err(invalid)?),
        };
        tally(&mut report, store.create_specialty(new).await)?;
    }
    let specialties =
        store.list_specialties(PageRequest { after: 0, limit: crate::domain::page::MAX_LIMIT }).await?.items;
    let specialty_id = |code: &str| -> Result<SpecialtyId, StoreError> {
        specialties
            .iter()
            .find(|s| s.code.as_str() == code)
            .map(|s| s.id)
            .ok_or_else(|| StoreError::Other(format!("demo specialty {code} is missing").into()))
    };
    let mut doctors = Vec::new();
    for (n, (name, specialty, email, zone, bio)) in DOCTORS.iter().enumerate() {
        let new = NewDoctor {
            name: PersonName::parse(name).map_err(invalid)?,
            specialty_id: specialty_id(specialty)?,
            email: EmailAddress::parse(email).map_err(invalid)?,
            time_zone: TimeZone::parse(zone).map_err(invalid)?,
            bio: Some(LongText::parse(bio).map_err(invalid)?),
        };
        let email = new.email.clone();
        let doctor = match store.create_doctor(new).await {
            Ok(d) => {
                report.created += 1;
                d
            }
            Err(StoreError::Duplicate { .. }) => {
                report.already_present += 1;
                find_doctor(store, email.as_str()).await?
            }
            Err(e) => return Err(e),
        };
        let login = email.as_str().split('@').next().unwrap_or_default().to_owned();
        ensure_user(store, &mut report, &login, Membership::Doctor(doctor.id)).await?;
        ensure_schedule(store, &mut report, &doctor, n).await?;
        doctors.push(doctor);
    }
    let mut patients = Vec::new();
    let mut names = Vec::new();
    for (username, name, email, phone, born, gender) in PATIENTS {
        let new = NewPatient {
            username: crate::domain::values::Username::parse(username).map_err(invalid)?,
            name: PersonName::parse(name).map_err(invalid)?,
            email: EmailAddress::parse(email).map_err(invalid)?,
            phone: phone.map(Phone::parse).transpose().map_err(invalid)?,
            date_of_birth: NaiveDate::parse_from_str(born, "%Y-%m-%d")
                .map_err(|_| invalid(ValueError("bad demo birth date".into())))?,
            gender: gender.map(Gender::parse).transpose().map_err(invalid)?,
        };
        let username = new.username.clone();
        tally(&mut report, store.create_patient(new, None, system_entry(Action::Create, "patient")).await)?;
        let patient = store.find_patient_by_username(&username, PatientScope::All).await?;
        ensure_user(store, &mut report, username.as_str(), Membership::Patient(patient.id)).await?;
        patients.push(patient.id);
        names.push((patient.id, *name));
    }
    for (n, doctor) in doctors.iter().enumerate() {
        ensure_appointments(store, &mut report, doctor, n, &patients).await?;
    }
    records::ensure_records(store, records, &mut report, &names).await?;
    ensure_user(store, &mut report, DEMO_ADMIN, Membership::Admin).await?;
    ensure_user(store, &mut report, DEMO_STAFF, Membership::Staff).await?;
    // Touch the doctor list once so a broken filter query fails the seed, not the first user.
    store.list_doctors(DoctorFilter::default(), PageRequest::default()).await?;
    Ok(report)
}
