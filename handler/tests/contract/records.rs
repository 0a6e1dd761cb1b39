//! Contract cases for medical-record rows: reservation before any byte is stored, one ending
//! (available or rejected) however often it is attempted, newest-first lists inside the
//! caller's scope, soft deletion as compare-and-swap, and the sweep of expired reservations.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use handler::domain::audit::Action;
use handler::domain::file_kind::{ContentKind, FileName};
use handler::domain::record::{
    BlobName, Category, DeleteReason, NewRecord, NewestFirst, Outcome, RecordFilter, RecordStatus, RejectReason,
    Sha256Hex,
};
use handler::domain::{DoctorId, PatientId, RecordId};
use handler::store::{PatientScope, Store, StoreError};

use super::{all_audit, audit, patient};

const ALL: PatientScope = PatientScope::All;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

fn now() -> DateTime<Utc> {
    at("2026-07-01T08:00:00Z")
}

fn sha(c: char) -> Sha256Hex {
    Sha256Hex::parse(&c.to_string().repeat(64)).unwrap()
}

fn new_record(patient: PatientId, name: &str, category: Category, created: DateTime<Utc>) -> NewRecord {
    NewRecord {
        patient_id: patient,
        category,
        file_name: FileName::parse(name).unwrap(),
        declared: Some(ContentKind::Pdf),
        blob_name: BlobName::generate(),
        max_bytes: 25 * 1024 * 1024,
        expected_sha256: Some(sha('a')),
        expected_size: Some(1234),
        upload_expires_at: created + Duration::minutes(10),
        now: created,
    }
}

fn available() -> Outcome {
    Outcome::Available { kind: ContentKind::Pdf, size: 1234, sha256: sha('a') }
}

async fn two_patients(store: &Arc<dyn Store>) -> (PatientId, PatientId) {
    let a =
        store.create_patient(patient("rec-a", "Rec A", "rec-a@mail.example"), None, audit(Action::Create, "patient"));
    let b =
        store.create_patient(patient("rec-b", "Rec B", "rec-b@mail.example"), None, audit(Action::Create, "patient"));
    (a.await.unwrap().id, b.await.unwrap().id)
}

async fn reserve(store: &Arc<dyn Store>, new: NewRecord) -> handler::domain::record::MedicalRecord {
    store.reserve_record(new, audit(Action::Create, "medical_record")).await.unwrap()
}

async fn finish(
    store: &Arc<dyn Store>,
    id: RecordId,
    outcome: Outcome,
) -> (handler::domain::record::MedicalRecord, bool) {
    store.finish_record(id, outcome, now(), audit(Action::Update, "medical_record")).await.unwrap()
}

pub async fn records_are_reserved_then_finished_once(store: Arc<dyn Store>) {
    let (p, _) = two_patients(&store).await;
    let new = new_record(p, "Befund März.pdf", Category::Report, now());
    let blob = new.blob_name.clone();
    let r = reserve(&store, new).await;
    assert_eq!(r.status, RecordStatus::Pending);
    assert_eq!(r.version, 1);
    assert_eq!(r.file_name.as_str(), "Befund März.pdf");
    assert_eq!(r.content_type, Some(ContentKind::Pdf), "the declared type while pending");
    assert_eq!((r.expected_sha256.clone(), r.expected_size), (Some(sha('a')), Some(1234)));
    assert_eq!(r.upload_expires_at, Some(now() + Duration::minutes(10)));
    assert_eq!(r.created_at, now());
    assert_eq!(store.record_by_blob(&blob).await.unwrap().map(|x| x.id), Some(r.id));
    assert_eq!(store.record_by_blob(&BlobName::generate()).await.unwrap(), None);

    let (done, changed) = finish(&store, r.id, available()).await;
    assert!(changed);
    assert_eq!(done.status, RecordStatus::Available);
    assert_eq!((done.size_bytes, done.sha256.clone(), done.version), (Some(1234), Some(sha('a')), 2));
    assert_eq!(done.upload_expires_at, None);
    // A second ending, of either kind, changes nothing and writes no audit row.
    let audited = all_audit(&store).await.len();
    let (again, changed) = finish(&store, r.id, Outcome::Rejected(RejectReason::HashMismatch)).await;
    assert!(!changed);
    assert_eq!(again, done);
    assert_eq!(all_audit(&store).await.len(), audited);
    assert_eq!(store.get_record(r.id, ALL).await.unwrap(), done);

    let rejected = reserve(&store, new_record(p, "b.pdf", Category::Other, now())).await;
    let (rejected, _) = finish(&store, rejected.id, Outcome::Rejected(RejectReason::TypeMismatch)).await;
    assert_eq!((rejected.status, rejected.reject_reason), (RecordStatus::Rejected, Some(RejectReason::TypeMismatch)));
    assert_eq!((rejected.size_bytes, rejected.sha256), (None, None));

    let trail: Vec<_> =
        all_audit(&store).await.into_iter().filter(|e| e.entry.resource_type == "medical_record").collect();
    assert_eq!(trail.len(), 4, "reserve and finish, twice");
    assert!(trail.iter().all(|e| e.entry.patient_id == Some(p) && e.entry.resource_id.is_some()));
    let missing =
        store.finish_record(RecordId::new(999_999).unwrap(), available(), now(), audit(Action::Update, "x")).await;
    assert!(matches!(missing, Err(StoreError::NotFound)));
}

pub async fn records_need_a_patient_and_a_blob_of_their_own(store: Arc<dyn Store>) {
    let (p, _) = two_patients(&store).await;
    let nobody = PatientId::new(999_999).unwrap();
    let res =
        store.reserve_record(new_record(nobody, "a.pdf", Category::Other, now()), audit(Action::Create, "x")).await;
    assert!(matches!(res, Err(StoreError::Reference { field: "patientId" })), "{res:?}");
    let first = new_record(p, "a.pdf", Category::Other, now());
    let mut second = new_record(p, "b.pdf", Category::Other, now());
    second.blob_name = first.blob_name.clone();
    reserve(&store, first).await;
    let res = store.reserve_record(second, audit(Action::Create, "x")).await;
    assert!(matches!(res, Err(StoreError::Duplicate { .. })), "{res:?}");
}

pub async fn records_list_newest_first_inside_the_scope(store: Arc<dyn Store>) {
    let (p, q) = two_patients(&store).await;
    let mut ids = Vec::new();
    for (n, category) in
        [Category::Report, Category::Imaging, Category::Report, Category::LabResult].into_iter().enumerate()
    {
        let r = reserve(&store, new_record(p, &format!("r{n}.pdf"), category, now() + Duration::hours(n as i64))).await;
        finish(&store, r.id, available()).await;
        ids.push(r.id);
    }
    let pending = reserve(&store, new_record(p, "pending.pdf", Category::Report, now())).await;
    let theirs = reserve(&store, new_record(q, "q.pdf", Category::Report, now())).await;
    finish(&store, theirs.id, available()).await;

    let list = |filter: RecordFilter, scope: PatientScope, before: Option<RecordId>, limit: u32| {
        let store = store.clone();
        async move { store.list_records(p, filter, scope, NewestFirst { before, limit }).await }
    };
    let of = |page: &handler::domain::Page<handler::domain::record::MedicalRecord>| {
        page.items.iter().map(|r| r.id).collect::<Vec<_>>()
    };
    let newest_first: Vec<RecordId> = ids.iter().rev().copied().collect();
    let all = list(RecordFilter::default(), ALL, None, 20).await.unwrap();
    assert_eq!(of(&all), newest_first, "available only by default, newest first");
    assert!(all.next_cursor.is_none());

    let first = list(RecordFilter::default(), ALL, None, 3).await.unwrap();
    assert_eq!(of(&first), newest_first[..3]);
    let cursor = first.next_cursor.as_deref().unwrap();
    let before = RecordId::new(handler::domain::PageRequest::parse_cursor(cursor).unwrap());
    let rest = list(RecordFilter::default(), ALL, before, 3).await.unwrap();
    assert_eq!(of(&rest), newest_first[3..]);

    let reports = RecordFilter { category: Some(Category::Report), ..Default::default() };
    assert_eq!(of(&list(reports, ALL, None, 20).await.unwrap()), vec![ids[2], ids[0]]);
    let with_pending = RecordFilter { statuses: vec![RecordStatus::Pending], ..Default::default() };
    assert_eq!(of(&list(with_pending, ALL, None, 20).await.unwrap()), vec![pending.id]);
    let window = RecordFilter {
        from: Some(now() + Duration::hours(1)),
        to: Some(now() + Duration::hours(3)),
        ..Default::default()
    };
    assert_eq!(of(&list(window, ALL, None, 20).await.unwrap()), vec![ids[2], ids[1]], "from inclusive, to exclusive");

    let own = list(RecordFilter::default(), PatientScope::Only(p), None, 20).await.unwrap();
    assert_eq!(of(&own), newest_first);
    let stranger = list(RecordFilter::default(), PatientScope::Only(q), None, 20).await;
    assert!(matches!(stranger, Err(StoreError::NotFound)));
    let untreated = list(RecordFilter::default(), PatientScope::TreatedBy(DoctorId::new(1).unwrap()), None, 20).await;
    assert!(matches!(untreated, Err(StoreError::NotFound)), "a doctor who never saw the patient");
    assert!(matches!(store.get_record(ids[0], PatientScope::Only(q)).await, Err(StoreError::NotFound)));
    assert_eq!(store.get_record(ids[0], PatientScope::Only(p)).await.unwrap().id, ids[0]);
    let unknown = store.list_records(
        PatientId::new(999_999).unwrap(),
        RecordFilter::default(),
        ALL,
        NewestFirst { before: None, limit: 5 },
    );
    assert!(matches!(unknown.await, Err(StoreError::NotFound)));
}

pub async fn only_pending_reservations_are_discarded(store: Arc<dyn Store>) {
    let (p, _) = two_patients(&store).await;
    let pending = reserve(&store, new_record(p, "a.pdf", Category::Other, now())).await;
    let kept = reserve(&store, new_record(p, "b.pdf", Category::Other, now())).await;
    finish(&store, kept.id, available()).await;
    store.discard_record(pending.id).await.unwrap();
    assert!(matches!(store.get_record(pending.id, ALL).await, Err(StoreError::NotFound)));
    assert!(matches!(store.discard_record(pending.id).await, Err(StoreError::NotFound)));
    assert!(matches!(store.discard_record(kept.id).await, Err(StoreError::NotFound)));
    assert_eq!(store.get_record(kept.id, ALL).await.unwrap().status, RecordStatus::Available);
}

pub async fn soft_deletion_is_compare_and_swap(store: Arc<dyn Store>) {
    let (p, q) = two_patients(&store).await;
    let r = reserve(&store, new_record(p, "a.pdf", Category::Other, now())).await;
    let delete = |id: RecordId, scope: PatientScope, version: i64| {
        let store = store.clone();
        async move {
            store
                .delete_record(
                    id,
                    scope,
                    DeleteReason::WrongPatient,
                    version,
                    now(),
                    audit(Action::Delete, "medical_record"),
                )
                .await
        }
    };
    let res = delete(r.id, ALL, 1).await;
    assert!(matches!(res, Err(StoreError::Refused(_))), "a pending upload is not deleted: {res:?}");
    let (done, _) = finish(&store, r.id, available()).await;
    assert!(matches!(delete(r.id, ALL, done.version - 1).await, Err(StoreError::StaleVersion)));
    assert!(matches!(delete(r.id, PatientScope::Only(q), done.version).await, Err(StoreError::NotFound)));
    let deleted = delete(r.id, PatientScope::Only(p), done.version).await.unwrap();
    assert_eq!((deleted.status, deleted.delete_reason), (RecordStatus::Deleted, Some(DeleteReason::WrongPatient)));
    assert_eq!(deleted.version, done.version + 1);
    assert!(matches!(store.get_record(r.id, ALL).await, Err(StoreError::NotFound)));
    assert!(matches!(delete(r.id, ALL, deleted.version).await, Err(StoreError::NotFound)));
    let every = RecordFilter {
        statuses: vec![RecordStatus::Pending, RecordStatus::Available, RecordStatus::Rejected],
        ..Default::default()
    };
    let listed = store.list_records(p, every, ALL, NewestFirst { before: None, limit: 20 }).await.unwrap();
    assert!(listed.items.is_empty());
    // The row stays (soft), so the blob trigger still recognises the blob as ours.
    let by_blob = store.record_by_blob(&r.blob_name).await.unwrap().unwrap();
    assert_eq!(by_blob.status, RecordStatus::Deleted);
    let rejected = reserve(&store, new_record(p, "b.pdf", Category::Other, now())).await;
    let (rejected, _) = finish(&store, rejected.id, Outcome::Rejected(RejectReason::Empty)).await;
    assert_eq!(delete(rejected.id, ALL, rejected.version).await.unwrap().status, RecordStatus::Deleted);
}

pub async fn expired_reservations_come_oldest_first(store: Arc<dyn Store>) {
    let (p, _) = two_patients(&store).await;
    let mut made = Vec::new();
    for minutes in [30, 10, 20, 90] {
        let mut new = new_record(p, "a.pdf", Category::Other, now());
        new.upload_expires_at = now() + Duration::minutes(minutes);
        made.push(reserve(&store, new).await.id);
    }
    finish(&store, made[2], available()).await;
    let at_hour = now() + Duration::hours(1);
    let due: Vec<_> = store.expired_uploads(at_hour, 10).await.unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(due, vec![made[1], made[0]], "pending and past their window, oldest first");
    let one: Vec<_> = store.expired_uploads(at_hour, 1).await.unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(one, vec![made[1]]);
    assert!(store.expired_uploads(now(), 10).await.unwrap().is_empty());
}

pub async fn concurrent_endings_one_wins(store: Arc<dyn Store>) {
    let (p, _) = two_patients(&store).await;
    let r = reserve(&store, new_record(p, "a.pdf", Category::Other, now())).await;
    let attempts = (0..16).map(|n| {
        let store = store.clone();
        let outcome = if n % 2 == 0 { available() } else { Outcome::Rejected(RejectReason::HashMismatch) };
        tokio::spawn(
            async move { store.finish_record(r.id, outcome, now(), audit(Action::Update, "medical_record")).await },
        )
    });
    let results: Vec<_> =
        futures_util::future::join_all(attempts).await.into_iter().map(|j| j.unwrap().unwrap()).collect();
    assert_eq!(results.iter().filter(|(_, changed)| *changed).count(), 1);
    let ended = store.get_record(r.id, ALL).await.unwrap();
    assert!(results.iter().all(|(rec, _)| rec.status == ended.status && rec.version == 2));
    let updates = all_audit(&store).await.into_iter().filter(|e| e.entry.resource_type == "medical_record").count();
    assert_eq!(updates, 2, "one reserve, one ending");
}
