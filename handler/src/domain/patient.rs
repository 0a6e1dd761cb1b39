use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use super::values::{EmailAddress, Gender, PersonName, Phone, Username};
use super::{Change, PatientId};

/// A patient, with the original article's fields. There is deliberately no password: identity
/// comes from Entra ID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Patient {
    pub id: PatientId,
    pub username: Username,
    pub name: PersonName,
    pub email: EmailAddress,
    pub phone: Option<Phone>,
    pub date_of_birth: NaiveDate,
    pub gender: Option<Gender>,
    /// Whether the patient wants reminder emails (on unless they turn them off). Bookings,
    /// changes and cancellations are always sent.
    pub reminder_emails: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPatient {
    pub username: Username,
    pub name: PersonName,
    pub email: EmailAddress,
    pub phone: Option<Phone>,
    pub date_of_birth: NaiveDate,
    pub gender: Option<Gender>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PatientChanges {
    pub name: Option<PersonName>,
    pub email: Option<EmailAddress>,
    pub phone: Change<Phone>,
    pub date_of_birth: Option<NaiveDate>,
    pub gender: Change<Gender>,
    pub reminder_emails: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PatientFilter {
    /// Lower-cased substring of the name or the username.
    pub text_contains: Option<String>,
}

impl Patient {
    pub fn with_changes(mut self, c: PatientChanges) -> Self {
        if let Some(v) = c.name {
            self.name = v;
        }
        if let Some(v) = c.email {
            self.email = v;
        }
        if let Some(v) = c.date_of_birth {
            self.date_of_birth = v;
        }
        self.phone = c.phone.apply(self.phone);
        self.gender = c.gender.apply(self.gender);
        if let Some(v) = c.reminder_emails {
            self.reminder_emails = v;
        }
        self
    }
}
