//! The one store contract: every `Store` implementation must pass each case here.
//! `contract_tests!(factory)` expands to one `#[tokio::test]` per case; `factory()` returns a
//! fresh, empty store, or `None` to skip (SQL Server without a connection string).

#![allow(dead_code)]

pub mod appointments;
pub mod notifications;
pub mod records;
pub use appointments::*;
pub use notifications::*;
pub use records::*;

use std::sync::Arc;

use chrono::NaiveDate;
use handler::domain::audit::{Action, Entry, GENESIS, Outcome, Verifier};
use handler::domain::doctor::{DoctorChanges, DoctorFilter, NewDoctor};
use handler::domain::doctor_schedule::{
    AppointmentTypeInput, NewTimeOff, RangeInput, Schedule, ScheduleInput, TimeOffReason,
};
use handler::domain::patient::{NewPatient, PatientChanges, PatientFilter};
use handler::domain::schedule::Interval;
use handler::domain::specialty::{NewSpecialty, SpecialtyChanges};
use handler::domain::user::{Membership, Role, Subject};
use handler::domain::values::{
    EmailAddress, Gender, LongText, PersonName, Phone, SpecialtyCode, TimeZone, Title, Username, parse_search,
};
use handler::domain::{Change, DoctorId, FieldCheck, PageRequest, PatientId, SpecialtyId, time};
use handler::store::{AuditFilter, PatientScope, Store, StoreError};

const ALL: PatientScope = PatientScope::All;

pub fn audit(action: Action, resource_type: &str) -> Entry {
    Entry {
        occurred_at: time::now(),
        request_id: "req-contract".into(),
        actor: Some("staff-1".into()),
        actor_role: "staff".into(),
        action,
        resource_type: resource_type.into(),
        resource_id: None,
        patient_id: None,
        outcome: Outcome::Success,
    }
}

fn created() -> Entry {
    audit(Action::Create, "patient")
}

fn updated() -> Entry {
    audit(Action::Update, "patient")
}

pub async fn all_audit(store: &Arc<dyn Store>) -> Vec<handler::domain::audit::Event> {
    store.list_audit(AuditFilter::default(), PageRequest { after: 0, limit: 100 }).await.unwrap().items
}

pub fn specialty(code: &str) -> NewSpecialty {
    NewSpecialty {
        code: SpecialtyCode::parse(code).unwrap(),
        name: Title::parse(&format!("Specialty {code}")).unwrap(),
        description: Some(LongText::parse("Line one.\nLine two.").unwrap()),
    }
}

pub fn doctor(name: &str, specialty_id: SpecialtyId, email: &str) -> NewDoctor {
    NewDoctor {
        name: PersonName::parse(name).unwrap(),
        specialty_id,
        email: EmailAddress::parse(email).unwrap(),
        time_zone: TimeZone::parse("Europe/Berlin").unwrap(),
        bio: None,
    }
}

pub fn patient(username: &str, name: &str, email: &str) -> NewPatient {
    NewPatient {
        username: Username::parse(username).unwrap(),
        name: PersonName::parse(name).unwrap(),
        email: EmailAddress::parse(email).unwrap(),
        phone: Some(Phone::parse("+49 30 1234567").unwrap()),
        date_of_birth: NaiveDate::from_ymd_opt(1984, 2, 29).unwrap(),
        gender: Some(Gender::Female),
    }
}

fn page(limit: u32) -> PageRequest {
    PageRequest { after: 0, limit }
}

fn next(cursor: &Option<String>, limit: u32) -> PageRequest {
    PageRequest { after: PageRequest::parse_cursor(cursor.as_deref().unwrap()).unwrap(), limit }
}

pub async fn specialty_round_trip(store: Arc<dyn Store>) {
    let created = store.create_specialty(specialty("cardiology")).await.unwrap();
    assert_eq!(created.version, 1);
    assert_eq!(created.created_at, created.updated_at);
    assert_eq!(created.description.as_ref().unwrap().as_str(), "Line one.\nLine two.");
    let fetched = store.get_specialty(created.id).await.unwrap();
    assert_eq!(fetched, created);
    let updated = store
        .update_specialty(
            created.id,
            SpecialtyChanges { name: Some(Title::parse("Heart").unwrap()), description: Change::Clear },
            Some(1),
        )
        .await
        .unwrap();
    assert_eq!(updated.version, 2);
    assert_eq!(updated.name.as_str(), "Heart");
    assert_eq!(updated.description, None);
    assert!(updated.updated_at >= created.updated_at);
    assert_eq!(updated.created_at, created.created_at);
}

pub async fn specialty_conflicts_and_missing(store: Arc<dyn Store>) {
    let created = store.create_specialty(specialty("neurology")).await.unwrap();
    assert!(matches!(
        store.create_specialty(specialty("neurology")).await,
        Err(StoreError::Duplicate { field: "code" })
    ));
    assert!(matches!(
        store.update_specialty(created.id, SpecialtyChanges::default(), Some(7)).await,
        Err(StoreError::StaleVersion)
    ));
    let missing = SpecialtyId::new(created.id.get() + 1000).unwrap();
    assert!(matches!(store.get_specialty(missing).await, Err(StoreError::NotFound)));
    assert!(matches!(
        store.update_specialty(missing, SpecialtyChanges::default(), None).await,
        Err(StoreError::NotFound)
    ));
}

pub async fn specialties_page_in_id_order(store: Arc<dyn Store>) {
    for code in ["aa", "bb", "cc", "dd", "ee"] {
        store.create_specialty(specialty(code)).await.unwrap();
    }
    let first = store.list_specialties(page(2)).await.unwrap();
    assert_eq!(first.items.iter().map(|s| s.code.as_str()).collect::<Vec<_>>(), ["aa", "bb"]);
    let second = store.list_specialties(next(&first.next_cursor, 2)).await.unwrap();
    assert_eq!(second.items.iter().map(|s| s.code.as_str()).collect::<Vec<_>>(), ["cc", "dd"]);
    let third = store.list_specialties(next(&second.next_cursor, 2)).await.unwrap();
    assert_eq!(third.items.len(), 1);
    assert_eq!(third.next_cursor, None);
    let exact = store.list_specialties(page(5)).await.unwrap();
    assert_eq!(exact.items.len(), 5);
    assert_eq!(exact.next_cursor, None, "no next page when the page is exactly full");
}

pub async fn doctor_requires_existing_specialty(store: Arc<dyn Store>) {
    let missing = SpecialtyId::new(999_999).unwrap();
    assert!(matches!(
        store.create_doctor(doctor("Dr. A", missing, "a@clinic.example")).await,
        Err(StoreError::Reference { field: "specialtyId" })
    ));
    let s = store.create_specialty(specialty("derm")).await.unwrap();
    let d = store.create_doctor(doctor("Dr. A", s.id, "a@clinic.example")).await.unwrap();
    assert!(matches!(
        store.update_doctor(d.id, DoctorChanges { specialty_id: Some(missing), ..Default::default() }, None).await,
        Err(StoreError::Reference { field: "specialtyId" })
    ));
    assert_eq!(store.get_doctor(d.id).await.unwrap(), d, "a refused update changes nothing");
}

pub async fn doctor_round_trip_and_unique_email(store: Arc<dyn Store>) {
    let s = store.create_specialty(specialty("ortho")).await.unwrap();
    let mut new = doctor("Dr. Zoë Müller", s.id, "Zoe@Clinic.Example");
    new.time_zone = TimeZone::parse("America/New_York").unwrap();
    new.bio = Some(LongText::parse("Knees. «Shoulders».").unwrap());
    let d = store.create_doctor(new).await.unwrap();
    assert_eq!(d.email.as_str(), "zoe@clinic.example");
    assert_eq!(d.time_zone.name(), "America/New_York");
    assert!(d.active);
    assert_eq!(store.get_doctor(d.id).await.unwrap(), d);
    assert!(matches!(
        store.create_doctor(doctor("Dr. Other", s.id, "ZOE@clinic.example")).await,
        Err(StoreError::Duplicate { field: "email" })
    ));
    let other = store.create_doctor(doctor("Dr. Other", s.id, "other@clinic.example")).await.unwrap();
    assert!(matches!(
        store
            .update_doctor(
                other.id,
                DoctorChanges { email: Some(EmailAddress::parse("zoe@clinic.example").unwrap()), ..Default::default() },
                None
            )
            .await,
        Err(StoreError::Duplicate { field: "email" })
    ));
    let updated = store
        .update_doctor(
            d.id,
            DoctorChanges { active: Some(false), bio: Change::Clear, ..Default::default() },
            Some(d.version),
        )
        .await
        .unwrap();
    assert!(!updated.active);
    assert_eq!(updated.bio, None);
    assert_eq!(updated.version, d.version + 1);
    assert!(matches!(store.get_doctor(DoctorId::new(d.id.get() + 1000).unwrap()).await, Err(StoreError::NotFound)));
}

pub async fn doctor_filters(store: Arc<dyn Store>) {
    let heart = store.create_specialty(specialty("heart")).await.unwrap();
    let skin = store.create_specialty(specialty("skin")).await.unwrap();
    let a = store.create_doctor(doctor("Dr. Zoë Müller", heart.id, "z@c.example")).await.unwrap();
    store.create_doctor(doctor("Dr. Ann Lee", skin.id, "ann@c.example")).await.unwrap();
    let c = store.create_doctor(doctor("Dr. Mia Müllerson", heart.id, "mia@c.example")).await.unwrap();
    store.create_doctor(doctor("Dr. 100% Sure_Thing", skin.id, "pct@c.example")).await.unwrap();
    store.update_doctor(c.id, DoctorChanges { active: Some(false), ..Default::default() }, None).await.unwrap();

    let names = |f: DoctorFilter| {
        let store = store.clone();
        async move {
            store
                .list_doctors(f, page(50))
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|d| d.name.to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(names(DoctorFilter { specialty_id: Some(heart.id), ..Default::default() }).await.len(), 2);
    assert_eq!(
        names(DoctorFilter { name_contains: Some(parse_search("MÜLLER").unwrap()), ..Default::default() }).await,
        ["Dr. Zoë Müller", "Dr. Mia Müllerson"]
    );
    assert_eq!(
        names(DoctorFilter {
            name_contains: Some(parse_search("müller").unwrap()),
            active: Some(true),
            ..Default::default()
        })
        .await,
        ["Dr. Zoë Müller"]
    );
    // Wildcards in the search text are literal.
    assert_eq!(
        names(DoctorFilter { name_contains: Some(parse_search("%").unwrap()), ..Default::default() }).await,
        ["Dr. 100% Sure_Thing"]
    );
    assert_eq!(
        names(DoctorFilter { name_contains: Some(parse_search("e_t").unwrap()), ..Default::default() }).await,
        ["Dr. 100% Sure_Thing"]
    );
    assert!(names(DoctorFilter { name_contains: Some("[a]".into()), ..Default::default() }).await.is_empty());
    let first = store.list_doctors(DoctorFilter::default(), page(1)).await.unwrap();
    assert_eq!(first.items[0].id, a.id);
    assert!(first.next_cursor.is_some());
}

pub async fn patient_round_trip(store: Arc<dyn Store>) {
    let p = store.create_patient(patient("ana.lopez", "Ana López", "ana@example.org"), None, created()).await.unwrap();
    assert_eq!(p.version, 1);
    assert_eq!(p.date_of_birth, NaiveDate::from_ymd_opt(1984, 2, 29).unwrap());
    assert_eq!(store.get_patient(p.id, ALL).await.unwrap(), p);
    assert_eq!(store.find_patient_by_username(&Username::parse("ANA.LOPEZ").unwrap(), ALL).await.unwrap(), p);
    assert!(matches!(
        store.find_patient_by_username(&Username::parse("nobody").unwrap(), ALL).await,
        Err(StoreError::NotFound)
    ));
    let changed = store
        .update_patient(
            p.id,
            ALL,
            PatientChanges {
                phone: Change::Clear,
                gender: Change::Set(Gender::Other),
                date_of_birth: Some(NaiveDate::from_ymd_opt(1990, 12, 31).unwrap()),
                ..Default::default()
            },
            Some(1),
            updated(),
        )
        .await
        .unwrap();
    assert_eq!(changed.phone, None);
    assert_eq!(changed.gender, Some(Gender::Other));
    assert_eq!(changed.username, p.username, "usernames do not change");
    assert_eq!(changed.version, 2);
    assert!(matches!(
        store.update_patient(p.id, ALL, PatientChanges::default(), Some(1), updated()).await,
        Err(StoreError::StaleVersion)
    ));
    assert!(matches!(
        store.get_patient(PatientId::new(p.id.get() + 1000).unwrap(), ALL).await,
        Err(StoreError::NotFound)
    ));
}

pub async fn patient_unique_username_and_email(store: Arc<dyn Store>) {
    store.create_patient(patient("ben", "Ben", "ben@example.org"), None, created()).await.unwrap();
    assert!(matches!(
        store.create_patient(patient("BEN", "Other Ben", "other@example.org"), None, created()).await,
        Err(StoreError::Duplicate { field: "username" })
    ));
    assert!(matches!(
        store.create_patient(patient("ben2", "Ben Two", "BEN@example.org"), None, created()).await,
        Err(StoreError::Duplicate { field: "email" })
    ));
    let second = store.create_patient(patient("ben2", "Ben Two", "ben2@example.org"), None, created()).await.unwrap();
    assert!(matches!(
        store
            .update_patient(
                second.id,
                ALL,
                PatientChanges { email: Some(EmailAddress::parse("ben@example.org").unwrap()), ..Default::default() },
                None,
                updated()
            )
            .await,
        Err(StoreError::Duplicate { field: "email" })
    ));
    assert_eq!(store.get_patient(second.id, ALL).await.unwrap(), second, "a refused update changes nothing");
}

pub async fn patient_search_and_paging(store: Arc<dyn Store>) {
    for i in 0..7 {
        store
            .create_patient(
                patient(&format!("user{i}"), &format!("Person {i}"), &format!("p{i}@example.org")),
                None,
                created(),
            )
            .await
            .unwrap();
    }
    store.create_patient(patient("elodie.d", "Élodie Durand", "elodie@example.org"), None, created()).await.unwrap();
    let search = |q: &str| PatientFilter { text_contains: Some(parse_search(q).unwrap()) };
    let found = store.list_patients(search("ÉLODIE"), ALL, page(10)).await.unwrap();
    assert_eq!(found.items.len(), 1, "Unicode-insensitive name search");
    let by_username = store.list_patients(search("user3"), ALL, page(10)).await.unwrap();
    assert_eq!(by_username.items.len(), 1, "username search");
    let mut seen = Vec::new();
    let mut request = page(3);
    loop {
        let p = store.list_patients(PatientFilter::default(), ALL, request).await.unwrap();
        seen.extend(p.items.iter().map(|x| x.id));
        match p.next_cursor {
            Some(_) => request = next(&p.next_cursor, 3),
            None => break,
        }
    }
    assert_eq!(seen.len(), 8);
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "stable id order without repeats");
}

/// Many writers with the same expected version: exactly one wins.
pub async fn concurrent_updates_compare_and_swap(store: Arc<dyn Store>) {
    let p = store.create_patient(patient("race", "Race Condition", "race@example.org"), None, created()).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .update_patient(
                    p.id,
                    ALL,
                    PatientChanges {
                        name: Some(PersonName::parse(&format!("Writer {i}")).unwrap()),
                        ..Default::default()
                    },
                    Some(1),
                    updated(),
                )
                .await
        }));
    }
    let mut wins = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => wins += 1,
            Err(StoreError::StaleVersion) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(wins, 1);
    assert_eq!(store.get_patient(p.id, ALL).await.unwrap().version, 2);
}

/// The owner filter is in the query: out-of-scope ids are simply not found, for reads, lists
/// and updates alike, and a refused update writes nothing (no audit row either).
pub async fn patient_scopes_filter_in_the_query(store: Arc<dyn Store>) {
    let a = store.create_patient(patient("scope.a", "Scope A", "a@scope.example"), None, created()).await.unwrap();
    let b = store.create_patient(patient("scope.b", "Scope B", "b@scope.example"), None, created()).await.unwrap();
    let own = PatientScope::Only(a.id);
    assert_eq!(store.get_patient(a.id, own).await.unwrap(), a);
    assert!(matches!(store.get_patient(b.id, own).await, Err(StoreError::NotFound)));
    let uname = Username::parse("scope.b").unwrap();
    assert!(matches!(store.find_patient_by_username(&uname, own).await, Err(StoreError::NotFound)));
    let listed = store.list_patients(PatientFilter::default(), own, page(50)).await.unwrap();
    assert_eq!(listed.items.iter().map(|p| p.id).collect::<Vec<_>>(), [a.id]);
    let before = all_audit(&store).await.len();
    assert!(matches!(
        store.update_patient(b.id, own, PatientChanges::default(), None, updated()).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(all_audit(&store).await.len(), before, "a refused write leaves no audit row");
    assert_eq!(store.get_patient(b.id, ALL).await.unwrap(), b);
    // A doctor sees no patient without an appointment (none exist yet).
    let s = store.create_specialty(specialty("scopes")).await.unwrap();
    let d = store.create_doctor(doctor("Dr. Scope", s.id, "scope@c.example")).await.unwrap();
    let treated = PatientScope::TreatedBy(d.id);
    assert!(matches!(store.get_patient(a.id, treated).await, Err(StoreError::NotFound)));
    assert!(store.list_patients(PatientFilter::default(), treated, page(50)).await.unwrap().items.is_empty());
}

/// Registration links the signing-in identity to the new patient in the same transaction.
pub async fn register_links_user_and_audits(store: Arc<dyn Store>) {
    let subject = Subject::parse("0f1e2d3c-aaaa-bbbb-cccc-000000000001").unwrap();
    let p = store
        .create_patient(patient("linked", "Linked Person", "linked@example.org"), Some(subject.clone()), created())
        .await
        .unwrap();
    let user = store.user_by_subject(&subject).await.unwrap().unwrap();
    assert_eq!(user.role, Role::Patient);
    assert_eq!(user.patient_id, Some(p.id));
    assert_eq!(user.membership(), Some(Membership::Patient(p.id)));
    // The same identity cannot register a second patient: nothing of the second is kept.
    assert!(matches!(
        store
            .create_patient(patient("linked2", "Second", "linked2@example.org"), Some(subject.clone()), created())
            .await,
        Err(StoreError::Duplicate { field: "subject" })
    ));
    assert!(matches!(
        store.find_patient_by_username(&Username::parse("linked2").unwrap(), ALL).await,
        Err(StoreError::NotFound)
    ));
    let rows = all_audit(&store).await;
    let for_patient: Vec<_> = rows.iter().filter(|e| e.entry.patient_id == Some(p.id)).collect();
    assert_eq!(for_patient.len(), 2, "the create and the link");
    assert!(
        for_patient.iter().any(|e| e.entry.action == Action::Create && e.entry.resource_id == Some(p.id.to_string()))
    );
    assert!(for_patient.iter().any(|e| e.entry.action == Action::RoleChange && e.entry.resource_type == "user"));
}

pub async fn users_roles_and_sign_ins(store: Arc<dyn Store>) {
    let s = store.create_specialty(specialty("users")).await.unwrap();
    let d = store.create_doctor(doctor("Dr. User", s.id, "user@c.example")).await.unwrap();
    let staff = store
        .create_user(Subject::parse("staff-one").unwrap(), Membership::Staff, audit(Action::RoleChange, "user"))
        .await
        .unwrap();
    assert_eq!((staff.role, staff.patient_id, staff.doctor_id, staff.version), (Role::Staff, None, None, 1));
    assert!(matches!(
        store
            .create_user(Subject::parse("STAFF-ONE").unwrap(), Membership::Admin, audit(Action::RoleChange, "user"))
            .await,
        Err(StoreError::Duplicate { field: "subject" })
    ));
    let doc = store
        .create_user(Subject::parse("doc-one").unwrap(), Membership::Doctor(d.id), audit(Action::RoleChange, "user"))
        .await
        .unwrap();
    assert_eq!(doc.doctor_id, Some(d.id));
    assert!(matches!(
        store
            .create_user(
                Subject::parse("doc-two").unwrap(),
                Membership::Doctor(d.id),
                audit(Action::RoleChange, "user")
            )
            .await,
        Err(StoreError::Duplicate { field: "doctorId" })
    ));
    assert!(matches!(
        store
            .create_user(
                Subject::parse("ghost").unwrap(),
                Membership::Patient(PatientId::new(999_999).unwrap()),
                audit(Action::RoleChange, "user")
            )
            .await,
        Err(StoreError::Reference { field: "patientId" })
    ));
    let promoted =
        store.update_user(staff.id, Membership::Admin, Some(1), audit(Action::RoleChange, "user")).await.unwrap();
    assert_eq!((promoted.role, promoted.version), (Role::Admin, 2));
    assert!(matches!(
        store.update_user(staff.id, Membership::Staff, Some(1), audit(Action::RoleChange, "user")).await,
        Err(StoreError::StaleVersion)
    ));
    assert_eq!(promoted.last_sign_in_at, None);
    let mut sign_in = audit(Action::SignIn, "session");
    sign_in.occurred_at = time::now();
    store.record_sign_in(staff.id, sign_in.clone()).await.unwrap();
    assert_eq!(store.get_user(staff.id).await.unwrap().last_sign_in_at, Some(sign_in.occurred_at));
    let listed = store.list_users(page(10)).await.unwrap();
    assert_eq!(listed.items.len(), 2);
    assert_eq!(store.user_by_subject(&Subject::parse("nobody").unwrap()).await.unwrap(), None);
}

/// Rows come back in chain order, filter by patient and time, and verify end to end.
pub async fn audit_chain_appends_and_verifies(store: Arc<dyn Store>) {
    assert!(all_audit(&store).await.is_empty());
    let mut batch = Vec::new();
    for i in 1..=5 {
        let mut e = audit(Action::Read, "patient");
        e.patient_id = PatientId::new(if i % 2 == 0 { 2 } else { 1 });
        e.resource_id = Some(i.to_string());
        batch.push(e);
    }
    store.append_audit(batch.clone()).await.unwrap();
    store.append_audit(vec![audit(Action::List, "patient")]).await.unwrap();
    let rows = all_audit(&store).await;
    assert_eq!(rows.len(), 6);
    assert_eq!(rows[0].prev_hash, GENESIS);
    assert!(rows.windows(2).all(|w| w[1].prev_hash == w[0].hash && w[0].id < w[1].id));
    assert_eq!(rows[0].entry, batch[0], "every field reads back exactly");
    let mut v = Verifier::default();
    v.check(&rows);
    let result = v.finish();
    assert_eq!(result.first_broken, None);
    assert_eq!(result.checked, 6);
    let two =
        store.list_audit(AuditFilter { patient_id: PatientId::new(2), ..Default::default() }, page(10)).await.unwrap();
    assert_eq!(two.items.len(), 2);
    let none = store
        .list_audit(
            AuditFilter { from: Some(time::now() + chrono::Duration::hours(1)), ..Default::default() },
            page(10),
        )
        .await
        .unwrap();
    assert!(none.items.is_empty());
    let paged = store.list_audit(AuditFilter::default(), page(4)).await.unwrap();
    assert_eq!(paged.items.len(), 4);
    let rest = store.list_audit(AuditFilter::default(), next(&paged.next_cursor, 4)).await.unwrap();
    assert_eq!(rest.items.len(), 2);
}

/// Concurrent appends never fork the chain.
pub async fn concurrent_audit_appends_keep_one_chain(store: Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move { store.append_audit(vec![audit(Action::Read, "patient")]).await }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let rows = all_audit(&store).await;
    assert_eq!(rows.len(), 12);
    let mut v = Verifier::default();
    v.check(&rows);
    assert_eq!(v.finish().first_broken, None);
}

pub async fn ping_works(store: Arc<dyn Store>) {
    store.ping().await.unwrap();
    assert!(["sqlite", "mssql"].contains(&store.provider()));
}

// ---------------------------------------------------------------- schedules and time off

pub fn schedule_input(minutes: i64) -> ScheduleInput {
    let day = vec![
        RangeInput { start: "09:00".into(), end: "12:00".into() },
        RangeInput { start: "13:00".into(), end: "17:00".into() },
    ];
    ScheduleInput {
        weekly_hours: ["mon", "tue", "wed", "thu", "fri"].iter().map(|d| ((*d).to_owned(), day.clone())).collect(),
        appointment_types: vec![
            AppointmentTypeInput { code: "consult".into(), name: "Consultation".into(), minutes },
            AppointmentTypeInput { code: "follow-up".into(), name: "Follow-up".into(), minutes: 15 },
        ],
        buffer_before_minutes: 5,
        buffer_after_minutes: 10,
        min_notice_minutes: 120,
        horizon_days: 60,
    }
}

pub fn schedule(minutes: i64) -> Schedule {
    let mut check = FieldCheck::new();
    Schedule::parse(&mut check, &schedule_input(minutes)).unwrap()
}

fn at(s: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

fn span(a: &str, b: &str) -> Interval {
    Interval::new(at(a), at(b)).unwrap()
}

fn off(a: &str, b: &str, reason: TimeOffReason) -> NewTimeOff {
    NewTimeOff { range: span(a, b), reason }
}

pub async fn schedule_put_is_compare_and_swap(store: Arc<dyn Store>) {
    let s = store.create_specialty(specialty("sched")).await.unwrap();
    let d = store.create_doctor(doctor("Dr Sched", s.id, "sched@clinic.example")).await.unwrap();
    assert!(matches!(store.get_schedule(d.id).await, Err(StoreError::NotFound)));
    assert!(matches!(store.put_schedule(d.id, schedule(30), Some(1)).await, Err(StoreError::StaleVersion)));
    let first = store.put_schedule(d.id, schedule(30), None).await.unwrap();
    assert_eq!(first.version, 1);
    assert_eq!(first.doctor_id, d.id);
    assert_eq!(first.schedule, schedule(30));
    assert_eq!(store.get_schedule(d.id).await.unwrap(), first);
    // A second "first" put, and a put at an old version, are both stale.
    assert!(matches!(store.put_schedule(d.id, schedule(45), None).await, Err(StoreError::StaleVersion)));
    let second = store.put_schedule(d.id, schedule(45), Some(1)).await.unwrap();
    assert_eq!(second.version, 2);
    assert_eq!(second.schedule.appointment_type(None).unwrap().minutes, 45);
    assert!(second.updated_at >= first.updated_at);
    assert!(matches!(store.put_schedule(d.id, schedule(20), Some(1)).await, Err(StoreError::StaleVersion)));
    assert_eq!(store.get_schedule(d.id).await.unwrap(), second);
    let missing = DoctorId::new(d.id.get() + 1000).unwrap();
    assert!(matches!(store.put_schedule(missing, schedule(30), None).await, Err(StoreError::NotFound)));
    assert!(matches!(store.get_schedule(missing).await, Err(StoreError::NotFound)));
}

pub async fn concurrent_first_schedules_one_wins(store: Arc<dyn Store>) {
    let s = store.create_specialty(specialty("race")).await.unwrap();
    let d = store.create_doctor(doctor("Dr Race", s.id, "race@clinic.example")).await.unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.put_schedule(d.id, schedule(20 + i), None).await })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => won += 1,
            Err(StoreError::StaleVersion) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(won, 1);
    assert_eq!(store.get_schedule(d.id).await.unwrap().version, 1);
}

pub async fn time_off_is_per_doctor(store: Arc<dyn Store>) {
    let s = store.create_specialty(specialty("away")).await.unwrap();
    let a = store.create_doctor(doctor("Dr A", s.id, "a@clinic.example")).await.unwrap();
    let b = store.create_doctor(doctor("Dr B", s.id, "b@clinic.example")).await.unwrap();
    let july = store
        .add_time_off(a.id, off("2026-07-01T00:00:00Z", "2026-07-15T00:00:00Z", TimeOffReason::Vacation))
        .await
        .unwrap();
    assert_eq!(july.doctor_id, a.id);
    assert_eq!(july.starts_at, at("2026-07-01T00:00:00Z"));
    assert_eq!(july.reason, TimeOffReason::Vacation);
    let june = store
        .add_time_off(a.id, off("2026-06-20T08:00:00Z", "2026-06-20T12:30:00Z", TimeOffReason::Training))
        .await
        .unwrap();
    let other = store
        .add_time_off(b.id, off("2026-07-02T00:00:00Z", "2026-07-03T00:00:00Z", TimeOffReason::Sick))
        .await
        .unwrap();
    let listed = store.list_time_off(a.id, span("2026-06-01T00:00:00Z", "2026-08-01T00:00:00Z")).await.unwrap();
    assert_eq!(listed, vec![june.clone(), july.clone()], "by start, and only doctor A's");
    // Overlap, not containment: a window inside the vacation finds it; one ending at its start does not.
    let inside = store.list_time_off(a.id, span("2026-07-05T00:00:00Z", "2026-07-06T00:00:00Z")).await.unwrap();
    assert_eq!(inside, vec![july.clone()]);
    let before = store.list_time_off(a.id, span("2026-06-25T00:00:00Z", "2026-07-01T00:00:00Z")).await.unwrap();
    assert!(before.is_empty());
    // Another doctor's entry cannot be deleted through this doctor.
    assert!(matches!(store.delete_time_off(a.id, other.id).await, Err(StoreError::NotFound)));
    store.delete_time_off(a.id, july.id).await.unwrap();
    assert!(matches!(store.delete_time_off(a.id, july.id).await, Err(StoreError::NotFound)));
    let listed = store.list_time_off(a.id, span("2026-06-01T00:00:00Z", "2026-08-01T00:00:00Z")).await.unwrap();
    assert_eq!(listed, vec![june]);
    assert_eq!(
        store.list_time_off(b.id, span("2026-06-01T00:00:00Z", "2026-08-01T00:00:00Z")).await.unwrap(),
        vec![other]
    );
    let missing = DoctorId::new(b.id.get() + 1000).unwrap();
    assert!(matches!(
        store.add_time_off(missing, off("2026-07-01T00:00:00Z", "2026-07-02T00:00:00Z", TimeOffReason::Other)).await,
        Err(StoreError::NotFound)
    ));
}

pub async fn specialty_calendars_gather_active_doctors(store: Arc<dyn Store>) {
    let s = store.create_specialty(specialty("search")).await.unwrap();
    let elsewhere = store.create_specialty(specialty("elsewhere")).await.unwrap();
    let a = store.create_doctor(doctor("Dr A", s.id, "ca@clinic.example")).await.unwrap();
    let b = store.create_doctor(doctor("Dr B", s.id, "cb@clinic.example")).await.unwrap();
    let no_schedule = store.create_doctor(doctor("Dr C", s.id, "cc@clinic.example")).await.unwrap();
    let inactive = store.create_doctor(doctor("Dr D", s.id, "cd@clinic.example")).await.unwrap();
    let other = store.create_doctor(doctor("Dr E", elsewhere.id, "ce@clinic.example")).await.unwrap();
    for d in [a.id, b.id, inactive.id, other.id] {
        store.put_schedule(d, schedule(30), None).await.unwrap();
    }
    store.update_doctor(inactive.id, DoctorChanges { active: Some(false), ..Default::default() }, None).await.unwrap();
    let window = span("2026-07-01T00:00:00Z", "2026-07-08T00:00:00Z");
    store.add_time_off(b.id, off("2026-07-02T00:00:00Z", "2026-07-03T00:00:00Z", TimeOffReason::Sick)).await.unwrap();
    store.add_time_off(b.id, off("2026-07-20T00:00:00Z", "2026-07-21T00:00:00Z", TimeOffReason::Sick)).await.unwrap();
    store
        .add_time_off(inactive.id, off("2026-07-02T00:00:00Z", "2026-07-03T00:00:00Z", TimeOffReason::Sick))
        .await
        .unwrap();
    store
        .add_time_off(other.id, off("2026-07-02T00:00:00Z", "2026-07-03T00:00:00Z", TimeOffReason::Sick))
        .await
        .unwrap();
    let calendars = store.specialty_calendars(s.id, window).await.unwrap();
    let ids: Vec<DoctorId> = calendars.iter().map(|c| c.doctor.id).collect();
    assert_eq!(ids, vec![a.id, b.id], "active, with a schedule, this specialty, in id order");
    assert_eq!(calendars[0].doctor, store.get_doctor(a.id).await.unwrap());
    assert_eq!(calendars[0].schedule, store.get_schedule(a.id).await.unwrap());
    assert!(calendars[0].time_off.is_empty());
    assert_eq!(calendars[1].time_off, vec![span("2026-07-02T00:00:00Z", "2026-07-03T00:00:00Z")], "only the window's");
    assert!(store.blocked_intervals(&ids, window, time::now()).await.unwrap().is_empty(), "no appointments exist yet");
    let _ = no_schedule;
}

/// One `#[tokio::test]` per contract case for the store made by `$factory`
/// (an async fn returning `Option<Arc<dyn Store>>`; `None` skips).
#[macro_export]
macro_rules! contract_tests {
    ($factory:path) => {
        $crate::contract_tests!(@cases $factory;
            specialty_round_trip, specialty_conflicts_and_missing, specialties_page_in_id_order,
            doctor_requires_existing_specialty, doctor_round_trip_and_unique_email, doctor_filters,
            patient_round_trip, patient_unique_username_and_email, patient_search_and_paging,
            concurrent_updates_compare_and_swap, patient_scopes_filter_in_the_query,
            register_links_user_and_audits, users_roles_and_sign_ins, audit_chain_appends_and_verifies,
            concurrent_audit_appends_keep_one_chain, ping_works, schedule_put_is_compare_and_swap,
            concurrent_first_schedules_one_wins, time_off_is_per_doctor, specialty_calendars_gather_active_doctors,
            booking_refuses_overlaps_for_doctor_and_patient, concurrent_bookings_one_wins,
            idempotent_bookings_replay_the_first_result, holds_block_until_they_expire,
            transitions_follow_the_lifecycle_with_compare_and_swap, concurrent_transitions_one_wins,
            reschedule_moves_only_into_a_free_slot, concurrent_reschedules_into_one_slot_one_wins,
            lists_page_by_start_then_id_within_scope, doctors_see_patients_they_treat,
            freed_slots_go_to_the_waitlist_in_order, slots_too_soon_are_not_offered,
            records_are_reserved_then_finished_once, records_need_a_patient_and_a_blob_of_their_own,
            records_list_newest_first_inside_the_scope, only_pending_reservations_are_discarded,
            soft_deletion_is_compare_and_swap, expired_reservations_come_oldest_first, concurrent_endings_one_wins,
            bookings_write_their_messages_and_reminders, cancelling_voids_reminders_and_writes_the_cancellation,
            rescheduling_moves_the_reminders_to_the_new_time, waitlist_offers_are_notified,
            concurrent_claims_never_share_a_row_and_lapsed_leases_return,
            released_claims_are_pending_again_at_once_and_uncounted,
            retries_wait_failures_stay_visible_and_staff_resend);
    };
    (@cases $factory:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                match $factory().await {
                    Some(store) => contract::$case(store).await,
                    None => eprintln!("skipped: no database for this store"),
                }
            }
        )*
    };
}
