//! The tamper-evident audit trail: one append-only row per access to patient data, sign-in and
//! role change. Each row's hash covers its fields and the previous row's hash, so changing,
//! removing or reordering any row breaks the chain from there on; [`verify`] finds the first
//! broken link.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{AuditId, PatientId, time};

/// The chain's anchor: the `prev_hash` of the first row.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(rename = "AuditAction")]
pub enum Action {
    Read,
    List,
    Create,
    Update,
    Delete,
    DownloadLink,
    SignIn,
    RoleChange,
    AuditExport,
    AuditVerify,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::List => "list",
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::DownloadLink => "download_link",
            Action::SignIn => "sign_in",
            Action::RoleChange => "role_change",
            Action::AuditExport => "audit_export",
            Action::AuditVerify => "audit_verify",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Action::Read,
            Action::List,
            Action::Create,
            Action::Update,
            Action::Delete,
            Action::DownloadLink,
            Action::SignIn,
            Action::RoleChange,
            Action::AuditExport,
            Action::AuditVerify,
        ]
        .into_iter()
        .find(|a| a.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(rename = "AuditOutcome")]
pub enum Outcome {
    Success,
    /// The caller's role may not do this.
    Denied,
    /// Not found, or not the caller's to see (the two are indistinguishable on purpose).
    NotFound,
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Denied => "denied",
            Outcome::NotFound => "not_found",
            Outcome::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Outcome::Success, Outcome::Denied, Outcome::NotFound, Outcome::Failed].into_iter().find(|o| o.as_str() == s)
    }
}

/// What happened, before it is chained. `resource_id` may be filled in by the store (ids of
/// created rows are known only there).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub occurred_at: DateTime<Utc>,
    pub request_id: String,
    /// The actor's subject; `None` for anonymous callers and the system itself.
    pub actor: Option<String>,
    /// `anonymous`, `unregistered`, `system` or a role name.
    pub actor_role: String,
    pub action: Action,
    pub resource_type: String,
    pub resource_id: Option<String>,
    pub patient_id: Option<PatientId>,
    pub outcome: Outcome,
}

/// A stored, chained row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "AuditEvent")]
pub struct Event {
    pub id: AuditId,
    #[serde(flatten)]
    pub entry: Entry,
    pub prev_hash: String,
    pub hash: String,
}

impl Entry {
    /// A successful change the system makes on its own, not for a caller (demo and bench
    /// loads); `request_id` names the run.
    pub fn by_system(request_id: &str, action: Action, resource_type: &str, at: DateTime<Utc>) -> Entry {
        Entry {
            occurred_at: at,
            request_id: request_id.to_owned(),
            actor: None,
            actor_role: "system".into(),
            action,
            resource_type: resource_type.to_owned(),
            resource_id: None,
            patient_id: None,
            outcome: Outcome::Success,
        }
    }

    /// SHA-256 (hex) over the previous hash and every field, each length-prefixed so no two
    /// different rows can serialise the same.
    pub fn chain_hash(&self, prev_hash: &str) -> String {
        let occurred = time::to_db_text(self.occurred_at);
        let patient = self.patient_id.map(|p| p.get().to_string());
        let fields: [Option<&str>; 10] = [
            Some(prev_hash),
            Some(&occurred),
            Some(&self.request_id),
            self.actor.as_deref(),
            Some(&self.actor_role),
            Some(self.action.as_str()),
            Some(&self.resource_type),
            self.resource_id.as_deref(),
            patient.as_deref(),
            Some(self.outcome.as_str()),
        ];
        let mut h = Sha256::new();
        for f in fields {
            match f {
                Some(v) => {
                    h.update(b"S");
                    h.update((v.len() as u64).to_be_bytes());
                    h.update(v.as_bytes());
                }
                None => h.update(b"N"),
            }
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// The result of walking the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    pub checked: u64,
    /// The hash of the last row checked: record it elsewhere to detect a truncated tail later.
    pub last_hash: String,
    pub first_broken: Option<BrokenLink>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BrokenLink {
    pub id: AuditId,
    pub reason: &'static str,
}

/// Verifies rows in id order, page by page: feed every page to [`Verifier::check`].
#[derive(Debug, Clone)]
pub struct Verifier {
    expected_prev: String,
    checked: u64,
    broken: Option<BrokenLink>,
}

impl Default for Verifier {
    fn default() -> Self {
        Verifier { expected_prev: GENESIS.to_owned(), checked: 0, broken: None }
    }
}

impl Verifier {
    /// Returns false once a broken link was found (no need to read further).
    pub fn check(&mut self, events: &[Event]) -> bool {
        for e in events {
            if self.broken.is_some() {
                return false;
            }
            self.checked += 1;
            let reason = if e.prev_hash != self.expected_prev {
                Some("its previous-hash does not match the row before it (a row was removed, added or reordered)")
            } else if e.entry.chain_hash(&e.prev_hash) != e.hash {
                Some("its content does not match its hash (the row was changed)")
            } else {
                None
            };
            if let Some(reason) = reason {
                self.broken = Some(BrokenLink { id: e.id, reason });
                return false;
            }
            self.expected_prev = e.hash.clone();
        }
        true
    }

    pub fn finish(self) -> Verification {
        Verification { checked: self.checked, last_hash: self.expected_prev, first_broken: self.broken }
    }
}

/// Chains `entries` after `prev_hash`, returning each entry with its (prev, hash).
pub fn chain(prev_hash: &str, entries: Vec<Entry>) -> Vec<(Entry, String, String)> {
    let mut prev = prev_hash.to_owned();
    entries
        .into_iter()
        .map(|e| {
            let hash = e.chain_hash(&prev);
            let linked = (e, prev.clone(), hash.clone());
            prev = hash;
            linked
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u32) -> Entry {
        Entry {
            occurred_at: time::now(),
            request_id: format!("req{n}"),
            actor: Some("user-1".into()),
            actor_role: "staff".into(),
            action: Action::Read,
            resource_type: "patient".into(),
            resource_id: Some(n.to_string()),
            patient_id: PatientId::new(i64::from(n)),
            outcome: Outcome::Success,
        }
    }

    fn events(n: u32) -> Vec<Event> {
        chain(GENESIS, (1..=n).map(entry).collect())
            .into_iter()
            .enumerate()
            .map(|(i, (entry, prev_hash, hash))| Event {
                id: AuditId::new(i as i64 + 1).unwrap(),
                entry,
                prev_hash,
                hash,
            })
            .collect()
    }

    fn verify(events: &[Event]) -> Verification {
        let mut v = Verifier::default();
        for page in events.chunks(3) {
            if !v.check(page) {
                break;
            }
        }
        v.finish()
    }

    #[test]
    fn intact_chain_verifies() {
        let ev = events(10);
        let result = verify(&ev);
        assert_eq!(result.checked, 10);
        assert_eq!(result.first_broken, None);
        assert_eq!(result.last_hash, ev[9].hash);
    }

    #[test]
    fn any_change_removal_or_swap_is_found_at_its_row() {
        let mut changed = events(10);
        changed[4].entry.outcome = Outcome::Denied;
        assert_eq!(verify(&changed).first_broken.unwrap().id.get(), 5);

        let mut removed = events(10);
        removed.remove(6);
        assert_eq!(verify(&removed).first_broken.unwrap().id.get(), 8);

        let mut swapped = events(10);
        swapped.swap(2, 3);
        assert_eq!(verify(&swapped).first_broken.unwrap().id.get(), 4);

        let mut rehashed = events(10);
        rehashed[4].entry.actor = None;
        rehashed[4].hash = rehashed[4].entry.chain_hash(&rehashed[4].prev_hash);
        assert_eq!(verify(&rehashed).first_broken.unwrap().id.get(), 6, "re-hashing one row breaks the next link");
    }

    #[test]
    fn none_and_empty_hash_differently() {
        let mut a = entry(1);
        let mut b = entry(1);
        a.resource_id = None;
        b.resource_id = Some(String::new());
        assert_ne!(a.chain_hash(GENESIS), b.chain_hash(GENESIS));
    }
}
