use chrono::{DateTime, Utc};
use serde::Serialize;

use super::values::{EmailAddress, LongText, PersonName, TimeZone};
use super::{Change, DoctorId, SpecialtyId};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Doctor {
    pub id: DoctorId,
    pub name: PersonName,
    pub specialty_id: SpecialtyId,
    pub email: EmailAddress,
    pub time_zone: TimeZone,
    pub bio: Option<LongText>,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDoctor {
    pub name: PersonName,
    pub specialty_id: SpecialtyId,
    pub email: EmailAddress,
    pub time_zone: TimeZone,
    pub bio: Option<LongText>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DoctorChanges {
    pub name: Option<PersonName>,
    pub specialty_id: Option<SpecialtyId>,
    pub email: Option<EmailAddress>,
    pub time_zone: Option<TimeZone>,
    pub bio: Change<LongText>,
    pub active: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DoctorFilter {
    pub specialty_id: Option<SpecialtyId>,
    /// Lower-cased substring of the name.
    pub name_contains: Option<String>,
    pub active: Option<bool>,
}

impl Doctor {
    pub fn with_changes(mut self, c: DoctorChanges) -> Self {
        if let Some(v) = c.name {
            self.name = v;
        }
        if let Some(v) = c.specialty_id {
            self.specialty_id = v;
        }
        if let Some(v) = c.email {
            self.email = v;
        }
        if let Some(v) = c.time_zone {
            self.time_zone = v;
        }
        if let Some(v) = c.active {
            self.active = v;
        }
        self.bio = c.bio.apply(self.bio);
        self
    }
}
