use chrono::{DateTime, Utc};
use serde::Serialize;

use super::SpecialtyId;
use super::values::{LongText, SpecialtyCode, Title};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Specialty {
    pub id: SpecialtyId,
    pub code: SpecialtyCode,
    pub name: Title,
    pub description: Option<LongText>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSpecialty {
    pub code: SpecialtyCode,
    pub name: Title,
    pub description: Option<LongText>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecialtyChanges {
    pub name: Option<Title>,
    pub description: super::Change<LongText>,
}

impl Specialty {
    /// The state after `changes`; the store persists it with a compare-and-swap on `version`.
    pub fn with_changes(mut self, changes: SpecialtyChanges) -> Self {
        if let Some(name) = changes.name {
            self.name = name;
        }
        self.description = changes.description.apply(self.description);
        self
    }
}
