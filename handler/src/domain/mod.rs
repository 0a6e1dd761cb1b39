//! Pure types and rules: values are parsed once at the edge into these types, and the store takes
//! only these. No I/O here.

pub mod appointment;
pub mod audit;
pub mod doctor;
pub mod doctor_schedule;
pub mod file_kind;
pub mod ical;
pub mod ids;
pub mod notification;
pub mod page;
pub mod patient;
pub mod record;
pub mod schedule;
pub mod specialty;
pub mod time;
pub mod user;
pub mod values;

pub use ids::{
    AppointmentId, AuditId, DoctorId, NotificationId, PatientId, RecordId, SpecialtyId, TimeOffId, UserId, WaitlistId,
};
pub use page::{Page, PageRequest};

use crate::error::FieldError;

/// Collects field errors while parsing a request, so one answer names every bad field.
#[derive(Debug, Default)]
pub struct FieldCheck {
    errors: Vec<FieldError>,
}

impl FieldCheck {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the error, if any, under `field` and returns the value.
    pub fn check<T>(&mut self, field: &str, result: Result<T, values::ValueError>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.errors.push(FieldError::new(field, e.0));
                None
            }
        }
    }

    /// Like [`check`](Self::check) for optional input: `None` stays `Some(None)`.
    pub fn check_opt<T, I>(
        &mut self,
        field: &str,
        input: Option<I>,
        parse: impl FnOnce(I) -> Result<T, values::ValueError>,
    ) -> Option<Option<T>> {
        match input {
            None => Some(None),
            Some(i) => self.check(field, parse(i)).map(Some),
        }
    }

    pub fn fail(&mut self, field: &str, message: impl Into<String>) {
        self.errors.push(FieldError::new(field, message));
    }

    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }

    pub fn into_errors(self) -> Vec<FieldError> {
        self.errors
    }
}

/// A change to a nullable field: absent (keep), null (clear) or a new value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Change<T> {
    #[default]
    Keep,
    Clear,
    Set(T),
}

impl<T> Change<T> {
    pub fn apply(self, current: Option<T>) -> Option<T> {
        match self {
            Change::Keep => current,
            Change::Clear => None,
            Change::Set(v) => Some(v),
        }
    }
}
