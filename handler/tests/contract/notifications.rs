//! Contract cases for the notification ledger: the rows each appointment change writes in its
//! own transaction, voiding what a change makes untrue, and the sweep's exclusive claims,
//! leases that lapse, compare-and-swap outcomes, retries, failures and staff re-sends.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use handler::domain::appointment::{Appointment, Status};
use handler::domain::audit::Action;
use handler::domain::notification::{
    Attempt, Notification, NotificationKind as Kind, NotificationStatus as State, operation_id,
};
use handler::domain::{AppointmentId, NotificationId};
use handler::store::{PatientScope, Store, StoreError};

use super::appointments::{OFFERS, at, book_audit, booked, change, clinic, moved, new_appt, now, wait};
use super::audit;

const ALL: PatientScope = PatientScope::All;
const LEASE: Duration = Duration::minutes(5);

async fn rows(store: &Arc<dyn Store>, appointment: AppointmentId) -> Vec<Notification> {
    store.list_notifications(appointment, ALL).await.unwrap()
}

fn shape(rows: &[Notification]) -> Vec<(Kind, i64, i64, State)> {
    rows.iter().map(|n| (n.kind, n.appointment_version, n.offset_minutes, n.status)).collect()
}

async fn update(store: &Arc<dyn Store>, a: &Appointment, to: Status) -> Appointment {
    store
        .transition_appointment(a.id, ALL, change(to), a.version, OFFERS, audit(Action::Update, "appointment"))
        .await
        .unwrap()
}

pub async fn bookings_write_their_messages_and_reminders(store: Arc<dyn Store>) {
    let c = clinic(&store, "ntf", 1, 3).await;
    let d = c.doctors[0];
    // Now is 2026-07-01T08:00Z: a visit days ahead gets the confirmation and both reminders.
    let a =
        booked(store.book_appointment(new_appt(c.patients[0], d, "2026-07-06T09:00:00Z"), None, book_audit()).await);
    let ledger = rows(&store, a.id).await;
    assert_eq!(
        shape(&ledger),
        vec![
            (Kind::Booked, 1, 0, State::Pending),
            (Kind::Reminder, 1, 1440, State::Pending),
            (Kind::Reminder, 1, 120, State::Pending)
        ]
    );
    assert_eq!(ledger[0].send_at, now());
    assert_eq!(ledger[1].send_at, at("2026-07-05T09:00:00Z"));
    assert_eq!(ledger[2].send_at, at("2026-07-06T07:00:00Z"));
    assert_eq!(ledger[2].operation_id, operation_id(a.id, 1, Kind::Reminder, 120));
    assert!(ledger.iter().all(|n| n.patient_id == c.patients[0] && n.attempts == 0 && n.last_error.is_none()));

    // Booked inside the 2 h window: the confirmation only, no reminder already past due.
    let soon =
        booked(store.book_appointment(new_appt(c.patients[1], d, "2026-07-01T09:30:00Z"), None, book_audit()).await);
    assert_eq!(shape(&rows(&store, soon.id).await), vec![(Kind::Booked, 1, 0, State::Pending)]);

    // A hold writes nothing until it is confirmed; confirming books it, with its reminders.
    let mut hold = new_appt(c.patients[2], d, "2026-07-08T09:00:00Z");
    hold.hold_until = Some(now() + Duration::minutes(5));
    let hold = booked(store.book_appointment(hold, None, book_audit()).await);
    assert!(rows(&store, hold.id).await.is_empty());
    let confirmed = update(&store, &hold, Status::Booked).await;
    assert_eq!(
        shape(&rows(&store, confirmed.id).await),
        vec![
            (Kind::Booked, 2, 0, State::Pending),
            (Kind::Reminder, 2, 1440, State::Pending),
            (Kind::Reminder, 2, 120, State::Pending)
        ]
    );
    let visible = store.list_notifications(a.id, PatientScope::Only(c.patients[1])).await;
    assert!(matches!(visible, Err(StoreError::NotFound)), "another patient's appointment");
}

pub async fn cancelling_voids_reminders_and_writes_the_cancellation(store: Arc<dyn Store>) {
    let c = clinic(&store, "ncx", 1, 1).await;
    let a = booked(
        store.book_appointment(new_appt(c.patients[0], c.doctors[0], "2026-07-06T09:00:00Z"), None, book_audit()).await,
    );
    let cancelled = update(&store, &a, Status::Cancelled).await;
    assert_eq!(
        shape(&rows(&store, a.id).await),
        vec![
            (Kind::Booked, 1, 0, State::Void),
            (Kind::Reminder, 1, 1440, State::Void),
            (Kind::Reminder, 1, 120, State::Void),
            (Kind::Cancelled, cancelled.version, 0, State::Pending),
        ]
    );
    assert!(rows(&store, a.id).await[..3].iter().all(|n| n.last_error.as_deref() == Some("superseded")));

    // A check-in owes no message and ends the reminders.
    let b = booked(
        store.book_appointment(new_appt(c.patients[0], c.doctors[0], "2026-07-07T09:00:00Z"), None, book_audit()).await,
    );
    update(&store, &b, Status::CheckedIn).await;
    let after = rows(&store, b.id).await;
    assert!(after.iter().all(|n| n.status == State::Void), "{:?}", shape(&after));
}

pub async fn rescheduling_moves_the_reminders_to_the_new_time(store: Arc<dyn Store>) {
    let c = clinic(&store, "nrs", 1, 1).await;
    let a = booked(
        store.book_appointment(new_appt(c.patients[0], c.doctors[0], "2026-07-06T09:00:00Z"), None, book_audit()).await,
    );
    let (old, new) = store
        .reschedule_appointment(
            a.id,
            ALL,
            moved("2026-07-09T14:00:00Z"),
            a.version,
            OFFERS,
            audit(Action::Update, "appointment"),
        )
        .await
        .unwrap();
    assert!(rows(&store, old.id).await.iter().all(|n| n.status == State::Void));
    let moved_rows = rows(&store, new.id).await;
    assert_eq!(
        shape(&moved_rows),
        vec![
            (Kind::Rescheduled, 1, 0, State::Pending),
            (Kind::Reminder, 1, 1440, State::Pending),
            (Kind::Reminder, 1, 120, State::Pending)
        ]
    );
    assert_eq!(moved_rows[2].send_at, at("2026-07-09T12:00:00Z"));
}

pub async fn waitlist_offers_are_notified(store: Arc<dyn Store>) {
    let c = clinic(&store, "nwl", 1, 2).await;
    let (d, owner, waiting) = (c.doctors[0], c.patients[0], c.patients[1]);
    let entry = store
        .add_waitlist_entry(
            wait(waiting, handler::domain::appointment::WaitlistTarget::Doctor(d)),
            audit(Action::Create, "waitlist_entry"),
        )
        .await
        .unwrap();
    let a = booked(store.book_appointment(new_appt(owner, d, "2026-07-06T10:00:00Z"), None, book_audit()).await);
    update(&store, &a, Status::Cancelled).await;
    let offer_id = store.get_waitlist_entry(entry.id, ALL).await.unwrap().offered_appointment_id.unwrap();
    let offer_rows = rows(&store, offer_id).await;
    assert_eq!(shape(&offer_rows), vec![(Kind::WaitlistOffer, 1, 0, State::Pending)]);
    assert_eq!(offer_rows[0].patient_id, waiting);
    // The offer lapses unanswered: its message, if still unsent, is void.
    store.expire_holds(now() + Duration::minutes(61), 10, OFFERS).await.unwrap();
    assert_eq!(shape(&rows(&store, offer_id).await), vec![(Kind::WaitlistOffer, 1, 0, State::Void)]);
}

/// Books `n` appointments (one patient each) whose confirmations are due now.
async fn due_rows(store: &Arc<dyn Store>, tag: &str, n: usize) -> HashSet<NotificationId> {
    let c = clinic(store, tag, 1, n).await;
    let mut ids = HashSet::new();
    for (i, p) in c.patients.iter().enumerate() {
        let start = (at("2026-07-20T08:00:00Z") + Duration::hours(i as i64)).to_rfc3339();
        let a = booked(store.book_appointment(new_appt(*p, c.doctors[0], &start), None, book_audit()).await);
        ids.insert(rows(store, a.id).await[0].id);
    }
    ids
}

fn ids(claimed: &[Notification]) -> HashSet<NotificationId> {
    claimed.iter().map(|n| n.id).collect()
}

pub async fn concurrent_claims_never_share_a_row_and_lapsed_leases_return(store: Arc<dyn Store>) {
    let due = due_rows(&store, "ncl", 12).await;
    let t = now() + Duration::seconds(1);
    let claims = (0..4).map(|_| {
        let store = store.clone();
        tokio::spawn(async move { store.claim_notifications(t, 5, LEASE).await.unwrap() })
    });
    let claimed: Vec<Vec<Notification>> =
        futures_util::future::join_all(claims).await.into_iter().map(|j| j.unwrap()).collect();
    let total: usize = claimed.iter().map(Vec::len).sum();
    let union: HashSet<_> = claimed.iter().flat_map(|c| ids(c)).collect();
    assert_eq!(total, union.len(), "no row claimed twice");
    // Only the confirmations are due (reminders are days away).
    assert_eq!(union, due);
    let all: Vec<Notification> = claimed.into_iter().flatten().collect();
    assert!(all.iter().all(|n| n.status == State::Sending && n.attempts == 1 && n.lease_until == Some(t + LEASE)));
    assert!(store.claim_notifications(t + Duration::minutes(1), 50, LEASE).await.unwrap().is_empty(), "leases hold");

    // Half finish; the other half's sweep "crashed": their leases lapse and they come back.
    let (done, lost): (Vec<_>, Vec<_>) = all.iter().partition(|n| n.id.get() % 2 == 0);
    for n in &done {
        assert!(store.finish_notification(n.id, n.attempts, Attempt::Sent, t).await.unwrap());
    }
    let later = t + LEASE + Duration::seconds(1);
    let again = store.claim_notifications(later, 50, LEASE).await.unwrap();
    assert_eq!(ids(&again), lost.iter().map(|n| n.id).collect::<HashSet<_>>());
    assert!(again.iter().all(|n| n.attempts == 2));
    // The crashed sweep wakes up late: its outcome no longer counts.
    let stale = lost[0];
    assert!(!store.finish_notification(stale.id, stale.attempts, Attempt::Sent, later).await.unwrap());
    let current = store.get_notification(stale.id).await.unwrap();
    assert_eq!((current.status, current.attempts), (State::Sending, 2));
    let sent = store.get_notification(done[0].id).await.unwrap();
    assert_eq!((sent.status, sent.sent_at, sent.lease_until), (State::Sent, Some(t), None));
}

pub async fn released_claims_are_pending_again_at_once_and_uncounted(store: Arc<dyn Store>) {
    let due = due_rows(&store, "nrl", 2).await;
    let t = now() + Duration::seconds(1);
    let claimed = store.claim_notifications(t, 10, LEASE).await.unwrap();
    assert_eq!(ids(&claimed), due);
    let (a, b) = (&claimed[0], &claimed[1]);
    assert!(store.finish_notification(a.id, a.attempts, Attempt::Sent, t).await.unwrap());
    assert!(!store.release_notification(a.id, a.attempts, t).await.unwrap(), "a finished row is not released");
    assert!(store.release_notification(b.id, b.attempts, t).await.unwrap());
    let released = store.get_notification(b.id).await.unwrap();
    assert_eq!((released.status, released.attempts, released.lease_until), (State::Pending, 0, None));
    assert!(!store.release_notification(b.id, b.attempts, t).await.unwrap(), "a claim is released once");
    // Claimable again now, long before its lease would have lapsed.
    let again = store.claim_notifications(t + Duration::seconds(1), 10, LEASE).await.unwrap();
    assert_eq!((again.len(), again[0].id, again[0].attempts), (1, b.id, 1));
    assert_eq!(store.get_notification(a.id).await.unwrap().status, State::Sent);
}

pub async fn retries_wait_failures_stay_visible_and_staff_resend(store: Arc<dyn Store>) {
    let due = due_rows(&store, "nrt", 2).await;
    let t = now() + Duration::seconds(1);
    let claimed = store.claim_notifications(t, 10, LEASE).await.unwrap();
    assert_eq!(ids(&claimed), due);
    let (a, b) = (&claimed[0], &claimed[1]);
    let retry_at = t + Duration::minutes(5);
    let retry = Attempt::Retry { at: retry_at, code: "http-503".into() };
    assert!(store.finish_notification(a.id, a.attempts, retry, t).await.unwrap());
    assert!(
        store
            .finish_notification(b.id, b.attempts, Attempt::Failed { code: "InvalidRecipient".into() }, t)
            .await
            .unwrap()
    );
    let waiting = store.get_notification(a.id).await.unwrap();
    assert_eq!(
        (waiting.status, waiting.send_at, waiting.last_error.as_deref()),
        (State::Pending, retry_at, Some("http-503"))
    );
    assert!(store.claim_notifications(retry_at - Duration::seconds(1), 10, LEASE).await.unwrap().is_empty());
    let retried = store.claim_notifications(retry_at, 10, LEASE).await.unwrap();
    assert_eq!((retried.len(), retried[0].id, retried[0].attempts), (1, a.id, 2));

    let failed = store.get_notification(b.id).await.unwrap();
    assert_eq!((failed.status, failed.last_error.as_deref()), (State::Failed, Some("InvalidRecipient")));
    let resent = store.resend_notification(b.id, retry_at, audit(Action::Update, "notification")).await.unwrap();
    assert_eq!((resent.status, resent.attempts, resent.send_at), (State::Pending, 0, retry_at));
    assert_ne!(resent.operation_id, failed.operation_id, "a re-send is a new operation");
    let again = store.resend_notification(b.id, retry_at, audit(Action::Update, "notification")).await;
    assert!(matches!(again, Err(StoreError::Refused(_))), "only a failed message is re-sent: {again:?}");
    let missing = store.get_notification(NotificationId::new(999_999).unwrap()).await;
    assert!(matches!(missing, Err(StoreError::NotFound)));
    let _: DateTime<Utc> = resent.updated_at;
}
