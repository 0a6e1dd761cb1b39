//! The one authorization module: every route names a [`Rule`], every patient query takes the
//! caller's [`PatientScope`]. Deny by default: a caller is let through only by a rule that
//! names their role.

use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpMessage, HttpRequest};

use crate::domain::audit::{Action, Entry, Outcome};
use crate::domain::user::{Membership, Role, Subject, User};
use crate::domain::{DoctorId, PatientId, time};
use crate::error::{ApiError, current_request_id};
use crate::store::PatientScope;

/// Who may call a route. Staff-level rules also admit admins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// No identity needed (health).
    Anonymous,
    /// Any signed-in identity, registered or not (directory of specialties and doctors).
    SignedIn,
    /// Registration: a signed-in identity without a user yet (registers itself), or staff.
    Register,
    /// Patient records: patients (their own), doctors (their patients), staff; the scope does
    /// the narrowing, inside the SQL.
    PatientRecords,
    /// A doctor's own profile, or staff.
    DoctorSelfOrStaff,
    Staff,
    Admin,
}

/// The caller of one request, resolved by the auth middleware.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Anonymous,
    /// Signed in, but not (yet) a portal user: may register as a patient.
    Unregistered(Subject),
    User {
        user: User,
        membership: Membership,
    },
}

/// Why a caller was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 401: no identity at all.
    NotSignedIn,
    /// 403: known, but the role may not do this.
    Forbidden,
}

impl Caller {
    pub fn role_name(&self) -> &'static str {
        match self {
            Caller::Anonymous => "anonymous",
            Caller::Unregistered(_) => "unregistered",
            Caller::User { membership, .. } => membership.role().as_str(),
        }
    }

    pub fn subject(&self) -> Option<&Subject> {
        match self {
            Caller::Anonymous => None,
            Caller::Unregistered(s) => Some(s),
            Caller::User { user, .. } => Some(&user.subject),
        }
    }

    pub fn role(&self) -> Option<Role> {
        match self {
            Caller::User { membership, .. } => Some(membership.role()),
            _ => None,
        }
    }

    fn is_staff(&self) -> bool {
        matches!(self.role(), Some(Role::Staff | Role::Admin))
    }

    /// Whose patient records this caller may touch; `None` means none at all.
    pub fn patient_scope(&self) -> Option<PatientScope> {
        match self {
            Caller::User { membership: Membership::Patient(p), .. } => Some(PatientScope::Only(*p)),
            Caller::User { membership: Membership::Doctor(d), .. } => Some(PatientScope::TreatedBy(*d)),
            Caller::User { membership: Membership::Staff | Membership::Admin, .. } => Some(PatientScope::All),
            _ => None,
        }
    }

    pub fn doctor_id(&self) -> Option<DoctorId> {
        match self {
            Caller::User { membership, .. } => membership.doctor_id(),
            _ => None,
        }
    }

    /// An audit entry for this caller, in this request.
    pub fn audit(
        &self,
        action: Action,
        resource_type: &str,
        resource_id: Option<String>,
        patient_id: Option<PatientId>,
        outcome: Outcome,
    ) -> Entry {
        Entry {
            occurred_at: time::now(),
            request_id: current_request_id().unwrap_or_else(|| "-".to_owned()),
            actor: self.subject().map(|s| s.as_str().to_owned()),
            actor_role: self.role_name().to_owned(),
            action,
            resource_type: resource_type.to_owned(),
            resource_id,
            patient_id,
            outcome,
        }
    }
}

/// The decision for a caller on a route's rule.
pub fn check(rule: Rule, caller: &Caller) -> Result<(), Refusal> {
    let allowed = match rule {
        Rule::Anonymous => true,
        Rule::SignedIn => !matches!(caller, Caller::Anonymous),
        Rule::Register => matches!(caller, Caller::Unregistered(_)) || caller.is_staff(),
        Rule::PatientRecords => caller.patient_scope().is_some(),
        Rule::DoctorSelfOrStaff => caller.is_staff() || caller.doctor_id().is_some(),
        Rule::Staff => caller.is_staff(),
        Rule::Admin => caller.role() == Some(Role::Admin),
    };
    match (allowed, caller) {
        (true, _) => Ok(()),
        (false, Caller::Anonymous) => Err(Refusal::NotSignedIn),
        (false, _) => Err(Refusal::Forbidden),
    }
}

/// A doctor may change only their own profile; staff any.
pub fn require_doctor_self_or_staff(caller: &Caller, doctor: DoctorId) -> Result<(), ApiError> {
    if caller.is_staff() || caller.doctor_id() == Some(doctor) { Ok(()) } else { Err(ApiError::Forbidden) }
}

/// The caller's patient scope, or 403 when they may not see patient records at all.
pub fn patient_scope(caller: &Caller) -> Result<PatientScope, ApiError> {
    caller.patient_scope().ok_or(ApiError::Forbidden)
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    /// Set by the auth middleware for every API route; absent means the route was not guarded,
    /// which must never serve a caller-dependent answer.
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(req.extensions().get::<Caller>().cloned().ok_or(ApiError::NotSignedIn))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::UserId;

    fn user(m: Membership) -> Caller {
        let now = time::now();
        Caller::User {
            user: User {
                id: UserId::new(1).unwrap(),
                subject: Subject::parse("u").unwrap(),
                role: m.role(),
                patient_id: m.patient_id(),
                doctor_id: m.doctor_id(),
                last_sign_in_at: None,
                created_at: now,
                updated_at: now,
                version: 1,
            },
            membership: m,
        }
    }

    #[test]
    fn rules_by_role() {
        let p = user(Membership::Patient(PatientId::new(1).unwrap()));
        let d = user(Membership::Doctor(DoctorId::new(1).unwrap()));
        let s = user(Membership::Staff);
        let a = user(Membership::Admin);
        let u = Caller::Unregistered(Subject::parse("new").unwrap());
        let n = Caller::Anonymous;
        use Refusal::*;
        let table = [
            (Rule::Anonymous, [Ok(()), Ok(()), Ok(()), Ok(()), Ok(()), Ok(())]),
            (Rule::SignedIn, [Err(NotSignedIn), Ok(()), Ok(()), Ok(()), Ok(()), Ok(())]),
            (Rule::Register, [Err(NotSignedIn), Ok(()), Err(Forbidden), Err(Forbidden), Ok(()), Ok(())]),
            (Rule::PatientRecords, [Err(NotSignedIn), Err(Forbidden), Ok(()), Ok(()), Ok(()), Ok(())]),
            (Rule::DoctorSelfOrStaff, [Err(NotSignedIn), Err(Forbidden), Err(Forbidden), Ok(()), Ok(()), Ok(())]),
            (Rule::Staff, [Err(NotSignedIn), Err(Forbidden), Err(Forbidden), Err(Forbidden), Ok(()), Ok(())]),
            (Rule::Admin, [Err(NotSignedIn), Err(Forbidden), Err(Forbidden), Err(Forbidden), Err(Forbidden), Ok(())]),
        ];
        for (rule, expected) in table {
            for (caller, want) in [&n, &u, &p, &d, &s, &a].iter().zip(expected) {
                assert_eq!(check(rule, caller), want, "{rule:?} for {}", caller.role_name());
            }
        }
        assert_eq!(p.patient_scope(), Some(PatientScope::Only(PatientId::new(1).unwrap())));
        assert_eq!(d.patient_scope(), Some(PatientScope::TreatedBy(DoctorId::new(1).unwrap())));
        assert_eq!(u.patient_scope(), None);
        assert!(require_doctor_self_or_staff(&d, DoctorId::new(1).unwrap()).is_ok());
        assert!(require_doctor_self_or_staff(&d, DoctorId::new(2).unwrap()).is_err());
    }
}
