//! Contract cases for appointments, holds, idempotency keys and the waitlist: the guarantees
//! both stores must give under their own locks (the API adds slot alignment on top).

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use handler::domain::appointment::{
    AppointmentFilter, Booked, CancelReason, ChangePolicy, IdempotencyKey, NewAppointment, NewWaitlistEntry, Refusal,
    Reschedule, Status, Transition, WaitlistStatus, WaitlistTarget,
};
use handler::domain::audit::Action;
use handler::domain::schedule::Interval;
use handler::domain::values::LongText;
use handler::domain::{AppointmentId, DoctorId, PageRequest, PatientId};
use handler::store::{PatientScope, Store, StoreError};

use super::{audit, doctor, patient, specialty};

const ALL: PatientScope = PatientScope::All;
pub(super) const OFFERS: ChangePolicy = ChangePolicy::offers(Duration::minutes(60));

pub(super) fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

/// "Now" for every case: the slots below are days later.
pub(super) fn now() -> DateTime<Utc> {
    at("2026-07-01T08:00:00Z")
}

/// A 30-minute appointment at `start` with 5 minutes before and 10 after blocked.
pub(super) fn new_appt(patient: PatientId, doctor: DoctorId, start: &str) -> NewAppointment {
    let s = at(start);
    let slot = Interval::new(s, s + Duration::minutes(30)).unwrap();
    NewAppointment {
        patient_id: patient,
        doctor_id: doctor,
        appointment_type: "consult".into(),
        reason: Some(LongText::parse("Knee pain after running").unwrap()),
        slot,
        blocked: Interval { start: slot.start - Duration::minutes(5), end: slot.end + Duration::minutes(10) },
        hold_until: None,
        reminders: Default::default(),
        now: now(),
    }
}

pub(super) fn booked(result: Result<Booked, StoreError>) -> handler::domain::appointment::Appointment {
    match result {
        Ok(Booked::Created(a)) => a,
        other => panic!("expected a new booking, got {other:?}"),
    }
}

fn refused(result: Result<impl std::fmt::Debug, StoreError>, want: Refusal) {
    match result {
        Err(StoreError::Refused(r)) if r == want => {}
        other => panic!("expected {want:?}, got {other:?}"),
    }
}

pub(super) fn change(to: Status) -> Transition {
    Transition { to, cancel_reason: (to == Status::Cancelled).then_some(CancelReason::PatientRequest), now: now() }
}

pub(super) struct Clinic {
    pub(super) doctors: Vec<DoctorId>,
    pub(super) patients: Vec<PatientId>,
}

pub(super) async fn clinic(store: &Arc<dyn Store>, tag: &str, doctors: usize, patients: usize) -> Clinic {
    let s = store.create_specialty(specialty(tag)).await.unwrap();
    let mut out = Clinic { doctors: Vec::new(), patients: Vec::new() };
    for i in 0..doctors {
        let d =
            store.create_doctor(doctor(&format!("Dr {i}"), s.id, &format!("{tag}-d{i}@clinic.example"))).await.unwrap();
        out.doctors.push(d.id);
    }
    for i in 0..patients {
        let p = store
            .create_patient(
                patient(&format!("{tag}-p{i}"), &format!("Patient {i}"), &format!("{tag}-p{i}@mail.example")),
                None,
                audit(Action::Create, "patient"),
            )
            .await
            .unwrap();
        out.patients.push(p.id);
    }
    out
}

pub(super) fn book_audit() -> handler::domain::audit::Entry {
    audit(Action::Create, "appointment")
}

pub async fn booking_refuses_overlaps_for_doctor_and_patient(store: Arc<dyn Store>) {
    let c = clinic(&store, "ovl", 2, 3).await;
    let (d0, d1) = (c.doctors[0], c.doctors[1]);
    let (p0, p1, p2) = (c.patients[0], c.patients[1], c.patients[2]);
    let first = booked(store.book_appointment(new_appt(p0, d0, "2026-07-06T09:00:00Z"), None, book_audit()).await);
    assert_eq!(first.status, Status::Booked);
    assert_eq!((first.patient_id, first.doctor_id), (p0, d0));
    assert_eq!(first.start, at("2026-07-06T09:00:00Z"));
    assert_eq!(first.end, at("2026-07-06T09:30:00Z"));
    assert_eq!(first.reason.as_ref().map(LongText::as_str), Some("Knee pain after running"));
    assert_eq!(first.version, 1);
    assert!(first.hold_expires_at.is_none() && first.cancel_reason.is_none());
    assert_eq!(store.get_appointment(first.id, ALL).await.unwrap(), first);
    // The same slot, and one that reaches into its buffer (09:30 + 10 min), are taken.
    refused(
        store.book_appointment(new_appt(p1, d0, "2026-07-06T09:00:00Z"), None, book_audit()).await,
        Refusal::SlotTaken,
    );
    refused(
        store.book_appointment(new_appt(p1, d0, "2026-07-06T09:35:00Z"), None, book_audit()).await,
        Refusal::SlotTaken,
    );
    // Both buffers clear: 09:30 + 10 after, next 09:45 has 5 before = 09:40.
    booked(store.book_appointment(new_appt(p1, d0, "2026-07-06T09:45:00Z"), None, book_audit()).await);
    // The patient cannot be in two places at once, even with another doctor.
    refused(
        store.book_appointment(new_appt(p0, d1, "2026-07-06T09:15:00Z"), None, book_audit()).await,
        Refusal::PatientBusy,
    );
    // Buffers are the doctor's, not the patient's: straight after is fine for the patient.
    booked(store.book_appointment(new_appt(p0, d1, "2026-07-06T09:30:00Z"), None, book_audit()).await);
    // Missing references name their field.
    let ghost_d = DoctorId::new(d1.get() + 1000).unwrap();
    let ghost_p = PatientId::new(p2.get() + 1000).unwrap();
    assert!(matches!(
        store.book_appointment(new_appt(p2, ghost_d, "2026-07-07T09:00:00Z"), None, book_audit()).await,
        Err(StoreError::Reference { field: "doctorId" })
    ));
    assert!(matches!(
        store.book_appointment(new_appt(ghost_p, d0, "2026-07-07T09:00:00Z"), None, book_audit()).await,
        Err(StoreError::Reference { field: "patientId" })
    ));
    // The slot search sees the blocked ranges, one query for both doctors.
    let day = Interval::new(at("2026-07-06T00:00:00Z"), at("2026-07-07T00:00:00Z")).unwrap();
    let blocked = store.blocked_intervals(&[d0, d1], day, now()).await.unwrap();
    assert_eq!(blocked.len(), 3);
    assert!(blocked.contains(&(d0, first.blocked)));
    assert_eq!(first.blocked, Interval::new(at("2026-07-06T08:55:00Z"), at("2026-07-06T09:40:00Z")).unwrap());
    // Another window, and cancelled appointments, block nothing.
    let next_day = Interval::new(at("2026-07-07T00:00:00Z"), at("2026-07-08T00:00:00Z")).unwrap();
    assert!(store.blocked_intervals(&[d0, d1], next_day, now()).await.unwrap().is_empty());
    store
        .transition_appointment(
            first.id,
            ALL,
            change(Status::Cancelled),
            1,
            OFFERS,
            audit(Action::Update, "appointment"),
        )
        .await
        .unwrap();
    assert_eq!(store.blocked_intervals(&[d0], day, now()).await.unwrap().len(), 1);
    booked(store.book_appointment(new_appt(p2, d0, "2026-07-06T09:00:00Z"), None, book_audit()).await);
}

pub async fn concurrent_bookings_one_wins(store: Arc<dyn Store>) {
    let c = clinic(&store, "race", 1, 16).await;
    let d = c.doctors[0];
    let tasks: Vec<_> = c
        .patients
        .iter()
        .map(|&p| {
            let store = store.clone();
            tokio::spawn(async move {
                store.book_appointment(new_appt(p, d, "2026-07-06T10:00:00Z"), None, book_audit()).await
            })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(Booked::Created(_)) => won += 1,
            Err(StoreError::Refused(Refusal::SlotTaken)) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(won, 1);
    let filter = AppointmentFilter { doctor_id: Some(d), ..Default::default() };
    assert_eq!(store.list_appointments(filter, ALL, None, 100).await.unwrap().items.len(), 1);
}

pub async fn idempotent_bookings_replay_the_first_result(store: Arc<dyn Store>) {
    let c = clinic(&store, "idem", 1, 2).await;
    let (d, p0, p1) = (c.doctors[0], c.patients[0], c.patients[1]);
    let key =
        |owner: &str, hash: &str| IdempotencyKey { owner: owner.into(), key: "k-1".into(), request_hash: hash.into() };
    let first = booked(
        store.book_appointment(new_appt(p0, d, "2026-07-06T11:00:00Z"), Some(key("alice", "h1")), book_audit()).await,
    );
    match store.book_appointment(new_appt(p0, d, "2026-07-06T11:00:00Z"), Some(key("alice", "h1")), book_audit()).await
    {
        Ok(Booked::Replayed(a)) => assert_eq!(a, first),
        other => panic!("expected a replay, got {other:?}"),
    }
    refused(
        store.book_appointment(new_appt(p0, d, "2026-07-06T13:00:00Z"), Some(key("alice", "h2")), book_audit()).await,
        Refusal::IdempotencyKeyReused,
    );
    // Keys are per owner: bob's "k-1" is a booking of its own.
    let bobs = booked(
        store.book_appointment(new_appt(p1, d, "2026-07-06T14:00:00Z"), Some(key("bob", "h1")), book_audit()).await,
    );
    assert_ne!(bobs.id, first.id);
    let filter = AppointmentFilter { doctor_id: Some(d), ..Default::default() };
    assert_eq!(store.list_appointments(filter, ALL, None, 100).await.unwrap().items.len(), 2);
}

pub async fn holds_block_until_they_expire(store: Arc<dyn Store>) {
    let c = clinic(&store, "hold", 1, 2).await;
    let (d, p0, p1) = (c.doctors[0], c.patients[0], c.patients[1]);
    let mut ask = new_appt(p0, d, "2026-07-06T09:00:00Z");
    ask.hold_until = Some(now() + Duration::minutes(5));
    let hold = booked(store.book_appointment(ask, None, book_audit()).await);
    assert_eq!(hold.status, Status::Pending);
    assert_eq!(hold.hold_expires_at, Some(now() + Duration::minutes(5)));
    refused(
        store.book_appointment(new_appt(p1, d, "2026-07-06T09:00:00Z"), None, book_audit()).await,
        Refusal::SlotTaken,
    );
    let day = Interval::new(at("2026-07-06T00:00:00Z"), at("2026-07-07T00:00:00Z")).unwrap();
    assert_eq!(store.blocked_intervals(&[d], day, now()).await.unwrap().len(), 1);
    let later = now() + Duration::minutes(6);
    assert!(store.blocked_intervals(&[d], day, later).await.unwrap().is_empty(), "an expired hold blocks nothing");
    // Confirming too late is refused; the slot went back to everyone.
    let late = Transition { to: Status::Booked, cancel_reason: None, now: later };
    refused(
        store.transition_appointment(hold.id, ALL, late, 1, OFFERS, audit(Action::Update, "appointment")).await,
        Refusal::HoldExpired,
    );
    let mut other = new_appt(p1, d, "2026-07-06T09:00:00Z");
    other.now = later;
    let taken = booked(store.book_appointment(other, None, book_audit()).await);
    // The sweep retires the hold.
    let swept = store.expire_holds(later, 100, OFFERS).await.unwrap();
    assert_eq!(swept.expired, 1);
    let retired = store.get_appointment(hold.id, ALL).await.unwrap();
    assert_eq!((retired.status, retired.cancel_reason), (Status::Cancelled, Some(CancelReason::HoldExpired)));
    assert_eq!(retired.version, 2);
    assert_eq!(store.expire_holds(later, 100, OFFERS).await.unwrap().expired, 0, "once");
    assert_eq!(store.get_appointment(taken.id, ALL).await.unwrap().status, Status::Booked);
    // A hold confirmed in time becomes a booking.
    let mut ask = new_appt(p0, d, "2026-07-07T09:00:00Z");
    ask.hold_until = Some(now() + Duration::minutes(5));
    let hold = booked(store.book_appointment(ask, None, book_audit()).await);
    let ok = store
        .transition_appointment(hold.id, ALL, change(Status::Booked), 1, OFFERS, audit(Action::Update, "appointment"))
        .await
        .unwrap();
    assert_eq!((ok.status, ok.hold_expires_at, ok.version), (Status::Booked, None, 2));
    assert!(ok.ical_sequence > hold.ical_sequence, "tentative to confirmed is a calendar change");
}

pub async fn transitions_follow_the_lifecycle_with_compare_and_swap(store: Arc<dyn Store>) {
    let c = clinic(&store, "life", 2, 2).await;
    let (d0, d1, p0, p1) = (c.doctors[0], c.doctors[1], c.patients[0], c.patients[1]);
    let a = booked(store.book_appointment(new_appt(p0, d0, "2026-07-06T09:00:00Z"), None, book_audit()).await);
    let upd = || audit(Action::Update, "appointment");
    assert!(matches!(
        store.transition_appointment(a.id, ALL, change(Status::CheckedIn), 2, OFFERS, upd()).await,
        Err(StoreError::StaleVersion)
    ));
    refused(
        store.transition_appointment(a.id, ALL, change(Status::Fulfilled), 1, OFFERS, upd()).await,
        Refusal::IllegalTransition,
    );
    // Out of scope is not found, whatever the version.
    for scope in [PatientScope::Only(p1), PatientScope::TreatedBy(d1)] {
        assert!(matches!(
            store.transition_appointment(a.id, scope, change(Status::CheckedIn), 1, OFFERS, upd()).await,
            Err(StoreError::NotFound)
        ));
        assert!(matches!(store.get_appointment(a.id, scope).await, Err(StoreError::NotFound)));
    }
    let checked = store
        .transition_appointment(a.id, PatientScope::TreatedBy(d0), change(Status::CheckedIn), 1, OFFERS, upd())
        .await
        .unwrap();
    assert_eq!((checked.status, checked.version), (Status::CheckedIn, 2));
    assert_eq!(checked.ical_sequence, a.ical_sequence, "booked and checked-in look the same in a calendar");
    let done = store.transition_appointment(a.id, ALL, change(Status::Fulfilled), 2, OFFERS, upd()).await.unwrap();
    assert_eq!(done.status, Status::Fulfilled);
    refused(
        store.transition_appointment(a.id, ALL, change(Status::Cancelled), 3, OFFERS, upd()).await,
        Refusal::IllegalTransition,
    );
    let error =
        store.transition_appointment(a.id, ALL, change(Status::EnteredInError), 3, OFFERS, upd()).await.unwrap();
    assert_eq!(error.status, Status::EnteredInError);
    // Cancel keeps its reason code and frees the doctor and the patient.
    let b = booked(store.book_appointment(new_appt(p1, d1, "2026-07-06T09:00:00Z"), None, book_audit()).await);
    let cancelled = store
        .transition_appointment(b.id, PatientScope::Only(p1), change(Status::Cancelled), 1, OFFERS, upd())
        .await
        .unwrap();
    assert_eq!((cancelled.status, cancelled.cancel_reason), (Status::Cancelled, Some(CancelReason::PatientRequest)));
    assert!(cancelled.ical_sequence > b.ical_sequence);
    booked(store.book_appointment(new_appt(p1, d1, "2026-07-06T09:00:00Z"), None, book_audit()).await);
    // Every change left an audit row naming the patient.
    let rows = store.list_audit(Default::default(), PageRequest { after: 0, limit: 100 }).await.unwrap().items;
    let updates =
        rows.iter().filter(|e| e.entry.resource_type == "appointment" && e.entry.action == Action::Update).count();
    assert_eq!(updates, 4);
    assert!(rows.iter().filter(|e| e.entry.resource_type == "appointment").all(|e| e.entry.patient_id.is_some()));
}

pub async fn concurrent_transitions_one_wins(store: Arc<dyn Store>) {
    let c = clinic(&store, "cas", 1, 1).await;
    let a = booked(
        store.book_appointment(new_appt(c.patients[0], c.doctors[0], "2026-07-06T09:00:00Z"), None, book_audit()).await,
    );
    let tasks: Vec<_> = [Status::CheckedIn, Status::Cancelled, Status::NoShow, Status::CheckedIn, Status::Cancelled]
        .into_iter()
        .map(|to| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .transition_appointment(a.id, ALL, change(to), 1, OFFERS, audit(Action::Update, "appointment"))
                    .await
            })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => won += 1,
            Err(StoreError::StaleVersion) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(won, 1);
    assert_eq!(store.get_appointment(a.id, ALL).await.unwrap().version, 2);
}

pub(super) fn moved(start: &str) -> Reschedule {
    let s = at(start);
    let slot = Interval::new(s, s + Duration::minutes(30)).unwrap();
    Reschedule {
        appointment_type: "consult".into(),
        slot,
        blocked: Interval { start: slot.start - Duration::minutes(5), end: slot.end + Duration::minutes(10) },
        now: now(),
    }
}

pub async fn reschedule_moves_only_into_a_free_slot(store: Arc<dyn Store>) {
    let c = clinic(&store, "move", 2, 2).await;
    let (d, p0, p1) = (c.doctors[0], c.patients[0], c.patients[1]);
    let upd = || audit(Action::Update, "appointment");
    let a = booked(store.book_appointment(new_appt(p0, d, "2026-07-06T09:00:00Z"), None, book_audit()).await);
    let b = booked(store.book_appointment(new_appt(p1, d, "2026-07-06T11:00:00Z"), None, book_audit()).await);
    refused(
        store.reschedule_appointment(a.id, ALL, moved("2026-07-06T11:00:00Z"), 1, OFFERS, upd()).await,
        Refusal::SlotTaken,
    );
    assert_eq!(store.get_appointment(a.id, ALL).await.unwrap(), a, "a refused move changes nothing");
    assert!(matches!(
        store.reschedule_appointment(a.id, ALL, moved("2026-07-06T14:00:00Z"), 7, OFFERS, upd()).await,
        Err(StoreError::StaleVersion)
    ));
    // Moving by 15 minutes overlaps only itself.
    let (old, new) =
        store.reschedule_appointment(a.id, ALL, moved("2026-07-06T09:15:00Z"), 1, OFFERS, upd()).await.unwrap();
    assert_eq!(
        (old.status, old.cancel_reason, old.rescheduled_to),
        (Status::Cancelled, Some(CancelReason::Rescheduled), Some(new.id))
    );
    assert_eq!((new.status, new.rescheduled_from, new.start), (Status::Booked, Some(a.id), at("2026-07-06T09:15:00Z")));
    assert_eq!(new.ical_uid, a.ical_uid, "the calendar event moves");
    assert_eq!(new.ical_sequence, a.ical_sequence + 1);
    assert_eq!(new.reason, a.reason);
    let day = Interval::new(at("2026-07-06T00:00:00Z"), at("2026-07-07T00:00:00Z")).unwrap();
    let blocked: Vec<Interval> =
        store.blocked_intervals(&[d], day, now()).await.unwrap().into_iter().map(|(_, i)| i).collect();
    assert_eq!(blocked, vec![new.blocked, b.blocked]);
    // Only a booked appointment moves.
    refused(
        store.reschedule_appointment(old.id, ALL, moved("2026-07-06T15:00:00Z"), old.version, OFFERS, upd()).await,
        Refusal::IllegalTransition,
    );
    // The patient may not move onto the time of their appointment with another doctor.
    booked(store.book_appointment(new_appt(p0, c.doctors[1], "2026-07-06T16:00:00Z"), None, book_audit()).await);
    refused(
        store.reschedule_appointment(new.id, ALL, moved("2026-07-06T16:00:00Z"), 1, OFFERS, upd()).await,
        Refusal::PatientBusy,
    );
}

pub async fn concurrent_reschedules_into_one_slot_one_wins(store: Arc<dyn Store>) {
    let c = clinic(&store, "mvrace", 1, 8).await;
    let d = c.doctors[0];
    let mut booked_ids = Vec::new();
    for (i, &p) in c.patients.iter().enumerate() {
        let start = at("2026-07-07T09:00:00Z") + Duration::hours(i as i64);
        let mut ask = new_appt(p, d, "2026-07-07T09:00:00Z");
        ask.slot = Interval::new(start, start + Duration::minutes(30)).unwrap();
        ask.blocked = Interval { start: start - Duration::minutes(5), end: start + Duration::minutes(40) };
        booked_ids.push(booked(store.book_appointment(ask, None, book_audit()).await).id);
    }
    let tasks: Vec<_> = booked_ids
        .iter()
        .map(|&id| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .reschedule_appointment(
                        id,
                        ALL,
                        moved("2026-07-08T09:00:00Z"),
                        1,
                        OFFERS,
                        audit(Action::Update, "appointment"),
                    )
                    .await
            })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => won += 1,
            Err(StoreError::Refused(Refusal::SlotTaken)) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(won, 1);
    let day = Interval::new(at("2026-07-08T00:00:00Z"), at("2026-07-09T00:00:00Z")).unwrap();
    assert_eq!(store.blocked_intervals(&[d], day, now()).await.unwrap().len(), 1);
    let still = {
        let mut n = 0;
        for id in &booked_ids {
            let a = store.get_appointment(*id, ALL).await.unwrap();
            if a.status == Status::Booked && a.version == 1 {
                n += 1;
            }
        }
        n
    };
    assert_eq!(still, booked_ids.len() - 1, "every loser is untouched");
}

pub async fn lists_page_by_start_then_id_within_scope(store: Arc<dyn Store>) {
    let c = clinic(&store, "list", 2, 2).await;
    let (d0, d1, p0, p1) = (c.doctors[0], c.doctors[1], c.patients[0], c.patients[1]);
    let mut made = Vec::new();
    for (p, d, start) in [
        (p0, d0, "2026-07-06T12:00:00Z"),
        (p1, d1, "2026-07-06T09:00:00Z"),
        (p0, d1, "2026-07-06T10:00:00Z"),
        (p0, d0, "2026-07-06T09:00:00Z"),
        (p0, d0, "2026-07-07T09:00:00Z"),
    ] {
        made.push(booked(store.book_appointment(new_appt(p, d, start), None, book_audit()).await));
    }
    let mut expected = made.clone();
    expected.sort_by_key(|a| (a.start, a.id));
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store.list_appointments(AppointmentFilter::default(), ALL, after, 2).await.unwrap();
        assert!(page.items.len() <= 2);
        seen.extend(page.items.iter().cloned());
        match page.next_cursor {
            Some(c) => after = Some(handler::domain::appointment::AppointmentCursor::parse(&c).unwrap()),
            None => break,
        }
    }
    assert_eq!(seen, expected, "(start, id) order, nothing twice, nothing lost");
    let mine = store.list_appointments(AppointmentFilter::default(), PatientScope::Only(p1), None, 100).await.unwrap();
    assert_eq!(mine.items.iter().map(|a| a.id).collect::<Vec<_>>(), vec![made[1].id]);
    let doctors =
        store.list_appointments(AppointmentFilter::default(), PatientScope::TreatedBy(d1), None, 100).await.unwrap();
    assert!(doctors.items.iter().all(|a| a.doctor_id == d1) && doctors.items.len() == 2);
    let day = AppointmentFilter {
        doctor_id: Some(d0),
        from: Some(at("2026-07-06T00:00:00Z")),
        to: Some(at("2026-07-07T00:00:00Z")),
        ..Default::default()
    };
    let listed: Vec<AppointmentId> =
        store.list_appointments(day, ALL, None, 100).await.unwrap().items.iter().map(|a| a.id).collect();
    assert_eq!(listed, vec![made[3].id, made[0].id]);
    store
        .transition_appointment(
            made[0].id,
            ALL,
            change(Status::Cancelled),
            1,
            OFFERS,
            audit(Action::Update, "appointment"),
        )
        .await
        .unwrap();
    let cancelled = AppointmentFilter { statuses: vec![Status::Cancelled], ..Default::default() };
    let listed = store.list_appointments(cancelled, ALL, None, 100).await.unwrap().items;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, made[0].id);
    let by_patient = AppointmentFilter {
        patient_id: Some(p0),
        statuses: vec![Status::Booked, Status::Pending],
        ..Default::default()
    };
    assert_eq!(store.list_appointments(by_patient, ALL, None, 100).await.unwrap().items.len(), 3);
}

pub async fn doctors_see_patients_they_treat(store: Arc<dyn Store>) {
    let c = clinic(&store, "treat", 2, 2).await;
    let (d0, d1, p0, p1) = (c.doctors[0], c.doctors[1], c.patients[0], c.patients[1]);
    let scope = PatientScope::TreatedBy(d0);
    assert!(matches!(store.get_patient(p0, scope).await, Err(StoreError::NotFound)));
    let mut ask = new_appt(p0, d0, "2026-07-06T09:00:00Z");
    ask.hold_until = Some(now() + Duration::minutes(5));
    let hold = booked(store.book_appointment(ask, None, book_audit()).await);
    assert!(matches!(store.get_patient(p0, scope).await, Err(StoreError::NotFound)), "a hold grants nothing");
    store
        .transition_appointment(hold.id, ALL, change(Status::Booked), 1, OFFERS, audit(Action::Update, "appointment"))
        .await
        .unwrap();
    assert_eq!(store.get_patient(p0, scope).await.unwrap().id, p0);
    assert!(matches!(store.get_patient(p1, scope).await, Err(StoreError::NotFound)));
    assert!(matches!(store.get_patient(p0, PatientScope::TreatedBy(d1)).await, Err(StoreError::NotFound)));
    let listed = store.list_patients(Default::default(), scope, PageRequest::default()).await.unwrap();
    assert_eq!(listed.items.iter().map(|p| p.id).collect::<Vec<_>>(), vec![p0]);
}

pub(super) fn wait(patient: PatientId, target: WaitlistTarget) -> NewWaitlistEntry {
    NewWaitlistEntry {
        patient_id: patient,
        target,
        appointment_type: None,
        window: Interval::new(at("2026-07-02T00:00:00Z"), at("2026-07-31T00:00:00Z")).unwrap(),
    }
}

pub async fn freed_slots_go_to_the_waitlist_in_order(store: Arc<dyn Store>) {
    let c = clinic(&store, "wait", 2, 4).await;
    let (d, elsewhere) = (c.doctors[0], c.doctors[1]);
    let (owner, first, second, busy) = (c.patients[0], c.patients[1], c.patients[2], c.patients[3]);
    let specialty = store.get_doctor(d).await.unwrap().specialty_id;
    let add = || audit(Action::Create, "waitlist_entry");
    let oldest = store.add_waitlist_entry(wait(busy, WaitlistTarget::Doctor(d)), add()).await.unwrap();
    let w1 = store.add_waitlist_entry(wait(first, WaitlistTarget::Doctor(d)), add()).await.unwrap();
    let w2 = store.add_waitlist_entry(wait(second, WaitlistTarget::Specialty(specialty)), add()).await.unwrap();
    assert_eq!((w1.status, w1.doctor_id, w2.specialty_id), (WaitlistStatus::Active, Some(d), Some(specialty)));
    // The longest-waiting patient is with another doctor at that time, so they are passed over.
    booked(store.book_appointment(new_appt(busy, elsewhere, "2026-07-06T10:00:00Z"), None, book_audit()).await);
    let a = booked(store.book_appointment(new_appt(owner, d, "2026-07-06T10:00:00Z"), None, book_audit()).await);
    store
        .transition_appointment(a.id, ALL, change(Status::Cancelled), 1, OFFERS, audit(Action::Update, "appointment"))
        .await
        .unwrap();
    assert_eq!(store.get_waitlist_entry(oldest.id, ALL).await.unwrap().status, WaitlistStatus::Active);
    let w1_now = store.get_waitlist_entry(w1.id, ALL).await.unwrap();
    assert_eq!(w1_now.status, WaitlistStatus::Offered);
    let offer = store.get_appointment(w1_now.offered_appointment_id.unwrap(), ALL).await.unwrap();
    assert_eq!((offer.patient_id, offer.status, offer.start), (first, Status::Pending, a.start));
    assert_eq!(offer.waitlist_entry_id, Some(w1.id));
    assert_eq!(offer.hold_expires_at, Some(now() + Duration::minutes(60)));
    assert!(offer.reason.is_none(), "the freed appointment's reason stays with it");
    // Nobody else can take the offered slot meanwhile.
    refused(
        store.book_appointment(new_appt(owner, d, "2026-07-06T10:00:00Z"), None, book_audit()).await,
        Refusal::SlotTaken,
    );
    // The offer lapses: the entry waits again and the slot goes to the next in line (w2, by
    // specialty), not back to w1 and not to the still-busy oldest entry.
    let later = now() + Duration::minutes(61);
    let swept = store.expire_holds(later, 100, OFFERS).await.unwrap();
    assert_eq!((swept.expired, swept.offered), (1, 1));
    assert_eq!(store.get_waitlist_entry(w1.id, ALL).await.unwrap().status, WaitlistStatus::Active);
    let w2_now = store.get_waitlist_entry(w2.id, ALL).await.unwrap();
    assert_eq!(w2_now.status, WaitlistStatus::Offered);
    let offer = store.get_appointment(w2_now.offered_appointment_id.unwrap(), ALL).await.unwrap();
    assert_eq!(offer.patient_id, second);
    // Confirming fulfils the entry.
    let confirm = Transition { to: Status::Booked, cancel_reason: None, now: later };
    let done = store
        .transition_appointment(
            offer.id,
            PatientScope::Only(second),
            confirm,
            1,
            OFFERS,
            audit(Action::Update, "appointment"),
        )
        .await
        .unwrap();
    assert_eq!(done.status, Status::Booked);
    assert_eq!(store.get_waitlist_entry(w2.id, ALL).await.unwrap().status, WaitlistStatus::Fulfilled);
    // Leaving the list: own entries only, and only once.
    let leave = || audit(Action::Delete, "waitlist_entry");
    assert!(matches!(
        store.cancel_waitlist_entry(w1.id, PatientScope::Only(second), leave()).await,
        Err(StoreError::NotFound)
    ));
    let left = store.cancel_waitlist_entry(w1.id, PatientScope::Only(first), leave()).await.unwrap();
    assert_eq!(left.status, WaitlistStatus::Cancelled);
    refused(store.cancel_waitlist_entry(w1.id, ALL, leave()).await, Refusal::IllegalTransition);
    let mine = store.list_waitlist(None, PatientScope::Only(first), PageRequest::default()).await.unwrap();
    assert_eq!(mine.items.iter().map(|e| e.id).collect::<Vec<_>>(), vec![w1.id]);
    let page = store.list_waitlist(None, ALL, PageRequest { after: 0, limit: 2 }).await.unwrap();
    assert_eq!(page.items.iter().map(|e| e.id).collect::<Vec<_>>(), vec![oldest.id, w1.id]);
    assert!(page.next_cursor.is_some());
    // Unknown targets name their field.
    let ghost = DoctorId::new(elsewhere.get() + 1000).unwrap();
    assert!(matches!(
        store.add_waitlist_entry(wait(first, WaitlistTarget::Doctor(ghost)), add()).await,
        Err(StoreError::Reference { field: "doctorId" })
    ));
}

pub async fn slots_too_soon_are_not_offered(store: Arc<dyn Store>) {
    let c = clinic(&store, "soon", 1, 2).await;
    let d = c.doctors[0];
    store.put_schedule(d, super::schedule(30), None).await.unwrap(); // 120 minutes of notice
    let entry = store
        .add_waitlist_entry(wait(c.patients[1], WaitlistTarget::Doctor(d)), audit(Action::Create, "waitlist_entry"))
        .await
        .unwrap();
    let mut ask = new_appt(c.patients[0], d, "2026-07-06T09:00:00Z");
    ask.slot = Interval::new(now() + Duration::minutes(60), now() + Duration::minutes(90)).unwrap();
    ask.blocked = ask.slot;
    let a = booked(store.book_appointment(ask, None, book_audit()).await);
    store
        .transition_appointment(a.id, ALL, change(Status::Cancelled), 1, OFFERS, audit(Action::Update, "appointment"))
        .await
        .unwrap();
    assert_eq!(
        store.get_waitlist_entry(entry.id, ALL).await.unwrap().status,
        WaitlistStatus::Active,
        "an hour away is inside the notice"
    );
}
