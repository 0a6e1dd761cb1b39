//! tiberius errors to store errors: constraint names to API fields, Azure SQL's transient error
//! numbers and broken connections to `Unavailable` (503), marked retryable where a retry helps.
//!
//! Server messages are never copied into our errors: SQL Server quotes the offending value in
//! many of them ("The duplicate key value is (ana@example.org)"), which is patient data.

use tiberius::error::{Error, IoErrorKind};

use crate::store::StoreError;

/// Unique constraints (named in `sql/mssql/`) → the API field they guard. Matched as substrings:
/// Babelfish reports the PostgreSQL index name, which starts with ours.
const UNIQUE_FIELDS: &[(&str, &str)] = &[
    ("ux_specialties_code", "code"),
    ("ux_doctors_email", "email"),
    ("ux_patients_username", "username"),
    ("ux_patients_email", "email"),
    ("ux_users_subject", "subject"),
    ("ux_users_patient", "patientId"),
    ("ux_users_doctor", "doctorId"),
    ("pk_doctor_schedules", "doctorId"),
    // The filtered backstop on confirmed appointments; `appointments::insert` makes it
    // `Refused(SlotTaken)`, as the SQLite store does with its twin.
    ("ux_appointments_doctor_start", "start"),
    // A second request with the same key while the first is in flight; `appointments::book`
    // makes it `Refused(IdempotencyKeyInFlight)`.
    ("ux_idempotency_keys", "Idempotency-Key"),
    // Blob names are fresh UUIDs: a clash is a bug upstream, never a user's duplicate.
    ("ux_medical_records_blob", "blobName"),
];

/// The audit chain's "one successor per row" key. A violation is not a duplicate the caller
/// made: two appenders chained onto the same tail (locking hints do nothing on Babelfish), the
/// loser's transaction rolled back, and running it again chains onto the winner's row.
const AUDIT_CHAIN_KEY: &str = "ux_audit_events_prev_hash";

/// Foreign keys → the API field that names the missing row.
/// Only backstops for appointments and the waitlist: the booking locks and the named checks find
/// a missing doctor, patient or specialty first.
const FOREIGN_KEYS: &[(&str, &str)] = &[
    ("fk_doctors_specialty", "specialtyId"),
    ("fk_users_patient", "patientId"),
    ("fk_users_doctor", "doctorId"),
    ("fk_appointments_patient", "patientId"),
    ("fk_appointments_doctor", "doctorId"),
    ("fk_waitlist_entries_patient", "patientId"),
    ("fk_waitlist_entries_doctor", "doctorId"),
    ("fk_waitlist_entries_specialty", "specialtyId"),
];

/// Azure SQL's documented transient errors (throttling, failover, gateway, network), plus 1205
/// (deadlock victim: the server rolled the transaction back, so running it again is safe).
/// 18456 (login failed) is deliberately absent: during a failover it can be transient, but it
/// is far more often a wrong password or a missing user, and retrying hides that.
pub const TRANSIENT: &[u32] =
    &[4060, 40197, 40501, 40613, 49918, 49919, 49920, 4221, 40143, 233, 64, 10928, 10929, 10053, 10054, 10060, 1205];

/// Errors that mean "we cannot talk to the database" even though retrying will not fix them
/// (bad login, database missing or full): still a 503, not a 500, and never retried.
const UNAVAILABLE: &[u32] = &[18456, 18452, 40532, 40615, 40544, 40549, 40550, 40551, 40552, 40553, 4064];

const UNIQUE_VIOLATION: [u32; 2] = [2627, 2601];
const REFERENCE_VIOLATION: u32 = 547;

/// A database failure, described without any value from the data.
#[derive(Debug, thiserror::Error)]
#[error("{what}")]
pub struct DbError {
    pub what: String,
    /// The server's error number, when the server reported it.
    pub code: Option<u32>,
    /// Safe to run the same operation again (on a new connection, after a pause).
    pub transient: bool,
    /// Another audit append took this transaction's place in the chain: a write transaction
    /// that failed this way rolled back and may simply run again (see [`is_lost_audit_race`]).
    pub lost_audit_race: bool,
}

impl DbError {
    pub fn unavailable(what: impl Into<String>, transient: bool) -> StoreError {
        StoreError::Unavailable(Box::new(DbError { what: what.into(), code: None, transient, lost_audit_race: false }))
    }
}

/// The server error number behind a store error, if there is one.
pub fn server_code(e: &StoreError) -> Option<u32> {
    match e {
        StoreError::Unavailable(cause) | StoreError::Other(cause) => cause.downcast_ref::<DbError>()?.code,
        _ => None,
    }
}

/// Whether the operation that failed with `e` may be run again.
pub fn is_transient(e: &StoreError) -> bool {
    match e {
        StoreError::Unavailable(cause) => cause.downcast_ref::<DbError>().is_some_and(|d| d.transient),
        _ => false,
    }
}

/// Whether a write failed because a concurrent audit append chained onto the same row first.
/// Only the write path retries this, and only a bounded number of times; if it keeps losing,
/// the error stays a 503 (the database is too busy), never a 409 or a 500.
pub fn is_lost_audit_race(e: &StoreError) -> bool {
    match e {
        StoreError::Unavailable(cause) => cause.downcast_ref::<DbError>().is_some_and(|d| d.lost_audit_race),
        _ => false,
    }
}

pub fn map_error(e: Error) -> StoreError {
    match &e {
        Error::Server(t) => classify_server(t.code(), t.class(), t.state(), t.message()),
        // A command timeout leaves the server possibly still working: report it, don't pile on.
        Error::Io { kind: IoErrorKind::TimedOut, .. } => {
            DbError::unavailable("the database did not answer within the command timeout", false)
        }
        Error::Io { kind, .. } => DbError::unavailable(format!("connection to the database failed ({kind:?})"), true),
        Error::Tls(m) => DbError::unavailable(format!("TLS with the database failed: {m}"), false),
        Error::Routing { .. } => DbError::unavailable("the database redirected the connection more than once", true),
        other => StoreError::Other(Box::new(DbError {
            what: other.to_string(),
            code: None,
            transient: false,
            lost_audit_race: false,
        })),
    }
}

/// A server-reported error by number. Split out because tiberius offers no way to build its
/// `TokenError` outside the crate, and this is where all the decisions are.
fn classify_server(code: u32, class: u8, state: u8, message: &str) -> StoreError {
    if UNIQUE_VIOLATION.contains(&code)
        && let Some((_, field)) = UNIQUE_FIELDS.iter().find(|(name, _)| message.contains(name))
    {
        return StoreError::Duplicate { field };
    }
    if UNIQUE_VIOLATION.contains(&code) && message.contains(AUDIT_CHAIN_KEY) {
        return StoreError::Unavailable(Box::new(DbError {
            what: format!("another audit append took the same place in the chain (SQL Server error {code})"),
            code: Some(code),
            transient: false,
            lost_audit_race: true,
        }));
    }
    if code == REFERENCE_VIOLATION
        && let Some((_, field)) = FOREIGN_KEYS.iter().find(|(name, _)| message.contains(name))
    {
        return StoreError::Reference { field };
    }
    // Number, class and state only: the message may quote data.
    let error = DbError {
        what: format!("SQL Server error {code} (class {class}, state {state})"),
        code: Some(code),
        transient: TRANSIENT.contains(&code),
        lost_audit_race: false,
    };
    if error.transient || UNAVAILABLE.contains(&code) {
        StoreError::Unavailable(Box::new(error))
    } else {
        StoreError::Other(Box::new(error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_and_foreign_key_violations_name_the_api_field() {
        let sqlserver = "Violation of UNIQUE KEY constraint 'ux_patients_email'. Cannot insert duplicate key in \
                         object 'dbo.patients'. The duplicate key value is (ana@example.org).";
        assert!(matches!(classify_server(2627, 14, 1, sqlserver), StoreError::Duplicate { field: "email" }));
        let index = "Cannot insert duplicate key row in object 'dbo.patients' with unique index \
                     'ux_patients_username'. The duplicate key value is (ana).";
        assert!(matches!(classify_server(2601, 14, 1, index), StoreError::Duplicate { field: "username" }));
        let babelfish = "duplicate key value violates unique constraint \"ux_specialties_codespecialties_a1b2\"";
        assert!(matches!(classify_server(2627, 14, 1, babelfish), StoreError::Duplicate { field: "code" }));
        let fk = "The INSERT statement conflicted with the FOREIGN KEY constraint \"fk_doctors_specialty\". \
                  The conflict occurred in database \"portal\", table \"dbo.specialties\", column 'id'.";
        assert!(matches!(classify_server(547, 16, 0, fk), StoreError::Reference { field: "specialtyId" }));
        let check = "The UPDATE statement conflicted with the CHECK constraint \"ck_patients_gender\".";
        assert!(matches!(classify_server(547, 16, 0, check), StoreError::Other(_)));
    }

    #[test]
    fn user_keys_name_their_field() {
        let subject = "Violation of UNIQUE KEY constraint 'ux_users_subject'. Cannot insert duplicate key in \
                       object 'dbo.users'. The duplicate key value is (0000-aaaa).";
        assert!(matches!(classify_server(2627, 14, 1, subject), StoreError::Duplicate { field: "subject" }));
        let patient = "Cannot insert duplicate key row in object 'dbo.users' with unique index \
                       'ux_users_patient'. The duplicate key value is (7).";
        assert!(matches!(classify_server(2601, 14, 1, patient), StoreError::Duplicate { field: "patientId" }));
        let doctor =
            "duplicate key value violates unique constraint \"ux_users_doctorusers1f0e3dad99908345f7439f8ffabdffc4\"";
        assert!(matches!(classify_server(2601, 14, 1, doctor), StoreError::Duplicate { field: "doctorId" }));
        let fk = "The INSERT statement conflicted with the FOREIGN KEY constraint \"fk_users_doctor\".";
        assert!(matches!(classify_server(547, 16, 0, fk), StoreError::Reference { field: "doctorId" }));
        let fk = "The UPDATE statement conflicted with the FOREIGN KEY constraint \"fk_users_patient\".";
        assert!(matches!(classify_server(547, 16, 0, fk), StoreError::Reference { field: "patientId" }));
    }

    #[test]
    fn booking_keys_name_their_field() {
        let slot = "Cannot insert duplicate key row in object 'dbo.appointments' with unique index \
                    'ux_appointments_doctor_start'. The duplicate key value is (3, 2026-03-02 09:00:00.0000000).";
        assert!(matches!(classify_server(2601, 14, 1, slot), StoreError::Duplicate { field: "start" }));
        let babelfish = "duplicate key value violates unique constraint \
                         \"ux_appointments_doctor_startappointments2b7e1f0c3a9d8e7f6a5\"";
        assert!(matches!(classify_server(2601, 14, 1, babelfish), StoreError::Duplicate { field: "start" }));
        let key = "Violation of UNIQUE KEY constraint 'ux_idempotency_keys'. Cannot insert duplicate key in \
                   object 'dbo.idempotency_keys'. The duplicate key value is (ab12, k-1).";
        let e = classify_server(2627, 14, 1, key);
        assert!(matches!(e, StoreError::Duplicate { field: "Idempotency-Key" }), "{e:?}");
        let fk = "The INSERT statement conflicted with the FOREIGN KEY constraint \"fk_waitlist_entries_specialty\".";
        assert!(matches!(classify_server(547, 16, 0, fk), StoreError::Reference { field: "specialtyId" }));
        let fk = "The INSERT statement conflicted with the FOREIGN KEY constraint \"fk_appointments_doctor\".";
        assert!(matches!(classify_server(547, 16, 0, fk), StoreError::Reference { field: "doctorId" }));
        // The self-references and the offer link are no caller's field.
        let fk = "The UPDATE statement conflicted with the FOREIGN KEY constraint \"fk_appointments_rescheduled_to\".";
        assert!(matches!(classify_server(547, 16, 0, fk), StoreError::Other(_)));
    }

    #[test]
    fn a_forked_audit_chain_is_a_lost_race_not_a_duplicate() {
        let sqlserver = "Violation of UNIQUE KEY constraint 'ux_audit_events_prev_hash'. Cannot insert duplicate \
                         key in object 'dbo.audit_events'. The duplicate key value is (9f86d0...).";
        // Babelfish: index name, table name and an md5, cut at 63 bytes from the end.
        let babelfish = "duplicate key value violates unique constraint \
                         \"ux_audit_events_prev_hashaudit_events6f1ed002ab5595859014ebf0951\"";
        for (code, message) in [(2627, sqlserver), (2601, babelfish)] {
            let e = classify_server(code, 14, 1, message);
            assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
            assert!(is_lost_audit_race(&e), "{message}");
            assert!(!is_transient(&e), "retried by the write loop only, not as a transient fault");
            assert!(!crate::error::error_chain(&e).contains("9f86d0"), "no stored value in our error");
        }
        assert!(!is_lost_audit_race(&classify_server(2627, 14, 1, "Violation of 'ux_users_subject'.")));
        assert!(!is_lost_audit_race(&classify_server(1205, 13, 51, "deadlock")));
        // Another error that merely mentions the name (a CHECK, say) is not a race.
        assert!(!is_lost_audit_race(&classify_server(547, 16, 0, "ux_audit_events_prev_hash")));
    }

    #[test]
    fn messages_with_data_never_reach_our_errors() {
        let e = classify_server(
            2627,
            14,
            1,
            "Violation of constraint 'ux_other'. The duplicate key value is (secret@x.org).",
        );
        assert!(matches!(e, StoreError::Other(_)));
        assert!(!crate::error::error_chain(&e).contains("secret"));
    }

    #[test]
    fn transient_numbers_are_retryable_503s() {
        for code in [40613, 40197, 40501, 49918, 10928, 4060, 233, 10054, 1205] {
            let e = classify_server(code, 20, 1, "");
            assert!(matches!(e, StoreError::Unavailable(_)), "{code}");
            assert!(is_transient(&e), "{code}");
        }
        let login = classify_server(18456, 14, 1, "Login failed for user 'app'.");
        assert!(matches!(login, StoreError::Unavailable(_)));
        assert!(!is_transient(&login), "login failures are not retried");
        assert!(!is_transient(&classify_server(208, 16, 1, "Invalid object name")));
    }

    #[test]
    fn connection_failures_are_unavailable() {
        let reset = map_error(Error::Io { kind: IoErrorKind::ConnectionReset, message: "reset".into() });
        assert!(matches!(reset, StoreError::Unavailable(_)) && is_transient(&reset));
        let timeout = map_error(Error::Io { kind: IoErrorKind::TimedOut, message: "slow".into() });
        assert!(matches!(timeout, StoreError::Unavailable(_)) && !is_transient(&timeout));
        let tls = map_error(Error::Tls("invalid peer certificate".into()));
        assert!(matches!(tls, StoreError::Unavailable(_)) && !is_transient(&tls));
    }
}
