//! Portal users: an identity (Entra object id) with one role, linked to a patient or doctor row.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::values::ValueError;
use super::{DoctorId, PatientId, UserId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Patient,
    Doctor,
    Staff,
    Admin,
}

impl Role {
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "patient" => Ok(Role::Patient),
            "doctor" => Ok(Role::Doctor),
            "staff" => Ok(Role::Staff),
            "admin" => Ok(Role::Admin),
            _ => Err(ValueError("must be one of patient, doctor, staff, admin".into())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Patient => "patient",
            Role::Doctor => "doctor",
            Role::Staff => "staff",
            Role::Admin => "admin",
        }
    }
}

/// An identity's stable id: the Entra object id (a GUID), or a development name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct Subject(String);

impl Subject {
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        let s = raw.trim();
        if s.is_empty() || s.len() > 128 || !s.chars().all(|c| c.is_ascii_alphanumeric() || "-._@".contains(c)) {
            return Err(ValueError("must be 1 to 128 letters, digits, '-', '.', '_' or '@'".into()));
        }
        Ok(Subject(s.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn from_trusted(s: String) -> Self {
        Subject(s)
    }
}

/// A role together with the record it speaks for; the store enforces the pairing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    Patient(PatientId),
    Doctor(DoctorId),
    Staff,
    Admin,
}

impl Membership {
    pub fn role(self) -> Role {
        match self {
            Membership::Patient(_) => Role::Patient,
            Membership::Doctor(_) => Role::Doctor,
            Membership::Staff => Role::Staff,
            Membership::Admin => Role::Admin,
        }
    }

    pub fn patient_id(self) -> Option<PatientId> {
        match self {
            Membership::Patient(id) => Some(id),
            _ => None,
        }
    }

    pub fn doctor_id(self) -> Option<DoctorId> {
        match self {
            Membership::Doctor(id) => Some(id),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: UserId,
    pub subject: Subject,
    pub role: Role,
    pub patient_id: Option<PatientId>,
    pub doctor_id: Option<DoctorId>,
    pub last_sign_in_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

impl User {
    pub fn membership(&self) -> Option<Membership> {
        match (self.role, self.patient_id, self.doctor_id) {
            (Role::Patient, Some(p), None) => Some(Membership::Patient(p)),
            (Role::Doctor, None, Some(d)) => Some(Membership::Doctor(d)),
            (Role::Staff, None, None) => Some(Membership::Staff),
            (Role::Admin, None, None) => Some(Membership::Admin),
            _ => None,
        }
    }
}
