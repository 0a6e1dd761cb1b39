//! Medical records: a file in the `medical-records` container and its row. A record is reserved
//! (`pending`) before a byte is stored, and becomes `available` only once its size, type and
//! SHA-256 are checked, or `rejected` with a reason code; deletion is soft and needs a reason.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::file_kind::{ContentKind, FileName};
pub use super::ids::RecordId;
use super::values::ValueError;
use super::{Page, PageRequest, PatientId};

/// What kind of document it is, as a patient would file it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
#[schemars(rename = "RecordCategory")]
pub enum Category {
    Report,
    Prescription,
    Imaging,
    LabResult,
    Letter,
    Other,
}

macro_rules! code_enum {
    ($ty:ident { $($variant:ident => $code:literal),+ $(,)? }) => {
        impl $ty {
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $code),+ }
            }

            /// A stored or requested code.
            pub fn parse(raw: &str) -> Result<Self, ValueError> {
                $ty::ALL.iter().copied().find(|v| v.as_str() == raw).ok_or_else(|| {
                    ValueError(format!(
                        "must be one of {}",
                        $ty::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ")
                    ))
                })
            }
        }
    };
}

code_enum!(Category {
    Report => "report",
    Prescription => "prescription",
    Imaging => "imaging",
    LabResult => "lab-result",
    Letter => "letter",
    Other => "other",
});

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RecordStatus {
    /// Reserved; its file is being uploaded (or never arrived).
    Pending,
    Available,
    /// The file arrived but failed a check (`rejectReason`); its bytes are deleted.
    Rejected,
    /// Soft-deleted (`deleteReason`): never listed or downloadable again.
    Deleted,
}

code_enum!(RecordStatus {
    Pending => "pending",
    Available => "available",
    Rejected => "rejected",
    Deleted => "deleted",
});

/// Why a file was not accepted. Codes only: no file content or name reaches a reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RejectReason {
    Empty,
    TooLarge,
    UnsupportedType,
    TypeMismatch,
    SizeMismatch,
    HashMismatch,
    /// The upload window closed with no file.
    Expired,
}

code_enum!(RejectReason {
    Empty => "empty",
    TooLarge => "too-large",
    UnsupportedType => "unsupported-type",
    TypeMismatch => "type-mismatch",
    SizeMismatch => "size-mismatch",
    HashMismatch => "hash-mismatch",
    Expired => "expired",
});

impl RejectReason {
    /// The API error code.
    pub fn code(self) -> &'static str {
        match self {
            RejectReason::Empty => "file_empty",
            RejectReason::TooLarge => "payload_too_large",
            RejectReason::UnsupportedType => "unsupported_file_type",
            RejectReason::TypeMismatch => "file_type_mismatch",
            RejectReason::SizeMismatch => "file_size_mismatch",
            RejectReason::HashMismatch => "file_hash_mismatch",
            RejectReason::Expired => "upload_expired",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            RejectReason::TooLarge => 413,
            RejectReason::UnsupportedType | RejectReason::TypeMismatch => 415,
            RejectReason::Expired => 410,
            RejectReason::Empty | RejectReason::SizeMismatch | RejectReason::HashMismatch => 422,
        }
    }

    /// The request field at fault.
    pub fn field(self) -> &'static str {
        match self {
            RejectReason::TypeMismatch => "fileName",
            RejectReason::SizeMismatch => "sizeBytes",
            RejectReason::HashMismatch => "sha256",
            RejectReason::Expired => "uploadUrl",
            RejectReason::Empty | RejectReason::TooLarge | RejectReason::UnsupportedType => "body",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            RejectReason::Empty => "the file is empty",
            RejectReason::TooLarge => "the file is larger than the limit",
            RejectReason::UnsupportedType => {
                "the file is not one of the accepted types (PDF, PNG, JPEG, TIFF, DICOM, plain text), judged by its content"
            }
            RejectReason::TypeMismatch => {
                "the file's content does not match its file name's extension or its declared content type"
            }
            RejectReason::SizeMismatch => "the file's size is not the size declared when the upload was reserved",
            RejectReason::HashMismatch => "the file's SHA-256 is not the one declared when the upload was reserved",
            RejectReason::Expired => "the upload link expired before the file arrived; reserve a new upload",
        }
    }
}

/// Why a record was deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DeleteReason {
    UploadedInError,
    WrongPatient,
    Duplicate,
    PatientRequest,
    Other,
}

code_enum!(DeleteReason {
    UploadedInError => "uploaded-in-error",
    WrongPatient => "wrong-patient",
    Duplicate => "duplicate",
    PatientRequest => "patient-request",
    Other => "other",
});

/// A blob name we generated: a random UUID, the only thing storage paths are built from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlobName(String);

impl BlobName {
    pub fn generate() -> Self {
        BlobName(uuid::Uuid::new_v4().hyphenated().to_string())
    }

    /// Only the exact shape `generate` makes (lower-case hyphenated UUID), so a name from a
    /// trigger or a URL can never point outside the container or the records folder.
    pub fn parse(raw: &str) -> Option<Self> {
        let ok = raw.len() == 36
            && uuid::Uuid::try_parse(raw).is_ok()
            && raw.bytes().all(|b| b == b'-' || b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        ok.then(|| BlobName(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A SHA-256 as 64 lower-case hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct Sha256Hex(String);

impl Sha256Hex {
    pub fn of_digest(digest: &[u8]) -> Self {
        Sha256Hex(digest.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// 64 hex digits (either case; stored lower-case).
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        if raw.len() == 64 && raw.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Sha256Hex(raw.to_ascii_lowercase()))
        } else {
            Err(ValueError("must be a SHA-256 as 64 hexadecimal digits".into()))
        }
    }

    pub fn from_trusted(raw: String) -> Self {
        Sha256Hex(raw)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MedicalRecord {
    pub id: RecordId,
    pub patient_id: PatientId,
    pub category: Category,
    /// The name the patient gave (patient data: never logged, never in a URL).
    pub file_name: FileName,
    /// The sniffed type once available; the declared one (if any) while pending.
    pub content_type: Option<ContentKind>,
    pub size_bytes: Option<i64>,
    pub sha256: Option<Sha256Hex>,
    pub status: RecordStatus,
    pub reject_reason: Option<RejectReason>,
    pub delete_reason: Option<DeleteReason>,
    /// Until when a reserved upload may arrive.
    pub upload_expires_at: Option<DateTime<Utc>>,
    #[serde(skip)]
    pub blob_name: BlobName,
    /// The most a direct upload may hold (set at reservation).
    #[serde(skip)]
    pub max_bytes: i64,
    /// What the uploader said the file would be, checked at finalization.
    #[serde(skip)]
    pub expected_sha256: Option<Sha256Hex>,
    #[serde(skip)]
    pub expected_size: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

/// A record to reserve before its bytes are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRecord {
    pub patient_id: PatientId,
    pub category: Category,
    pub file_name: FileName,
    pub declared: Option<ContentKind>,
    pub blob_name: BlobName,
    pub max_bytes: i64,
    pub expected_sha256: Option<Sha256Hex>,
    pub expected_size: Option<i64>,
    pub upload_expires_at: DateTime<Utc>,
    pub now: DateTime<Utc>,
}

/// What the checks found in a stored file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspected {
    pub size: u64,
    pub sha256: Sha256Hex,
    /// `None`: not a type we accept.
    pub kind: Option<ContentKind>,
}

impl Inspected {
    /// The verdict on a file for `record`: available with its sniffed type, or rejected.
    pub fn verdict(&self, record: &MedicalRecord) -> Result<ContentKind, RejectReason> {
        if self.size == 0 {
            return Err(RejectReason::Empty);
        }
        if self.size > record.max_bytes.max(0) as u64 {
            return Err(RejectReason::TooLarge);
        }
        if record.expected_size.is_some_and(|s| s.max(0) as u64 != self.size) {
            return Err(RejectReason::SizeMismatch);
        }
        let kind = self.kind.ok_or(RejectReason::UnsupportedType)?;
        let declared_other = record.content_type.is_some_and(|d| d != kind);
        if declared_other || !record.file_name.agrees_with(kind) {
            return Err(RejectReason::TypeMismatch);
        }
        if record.expected_sha256.as_ref().is_some_and(|h| *h != self.sha256) {
            return Err(RejectReason::HashMismatch);
        }
        Ok(kind)
    }
}

/// How a pending record ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Available { kind: ContentKind, size: i64, sha256: Sha256Hex },
    Rejected(RejectReason),
}

/// What a store writes for an outcome: status, content type, size, SHA-256, reject reason.
pub type OutcomeColumns<'a> = (&'static str, Option<&'static str>, Option<i64>, Option<&'a str>, Option<&'static str>);

impl Outcome {
    pub fn columns(&self) -> OutcomeColumns<'_> {
        match self {
            Outcome::Available { kind, size, sha256 } => {
                ("available", Some(kind.mime()), Some(*size), Some(sha256.as_str()), None)
            }
            Outcome::Rejected(r) => ("rejected", None, None, None, Some(r.as_str())),
        }
    }
}

/// Which records a list returns (newest first); the caller's scope narrows it further.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordFilter {
    pub category: Option<Category>,
    /// Statuses to include; `available` when empty. `deleted` is never listed.
    pub statuses: Vec<RecordStatus>,
    /// Created at or after.
    pub from: Option<DateTime<Utc>>,
    /// Created before.
    pub to: Option<DateTime<Utc>>,
}

/// Newest-first keyset paging: rows with an id below `before`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewestFirst {
    pub before: Option<RecordId>,
    pub limit: u32,
}

impl NewestFirst {
    pub fn page(mut rows: Vec<MedicalRecord>, limit: u32) -> Page<MedicalRecord> {
        let next_cursor = if rows.len() > limit as usize {
            rows.truncate(limit as usize);
            rows.last().map(|r| PageRequest::cursor_for(r.id.get()))
        } else {
            None
        };
        Page { items: rows, next_cursor }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> MedicalRecord {
        let now = Utc::now();
        MedicalRecord {
            id: RecordId::new(1).unwrap(),
            patient_id: PatientId::new(1).unwrap(),
            category: Category::Report,
            file_name: FileName::parse("report.pdf").unwrap(),
            content_type: Some(ContentKind::Pdf),
            size_bytes: None,
            sha256: None,
            status: RecordStatus::Pending,
            reject_reason: None,
            delete_reason: None,
            upload_expires_at: Some(now),
            blob_name: BlobName::generate(),
            max_bytes: 100,
            expected_sha256: None,
            expected_size: None,
            created_at: now,
            updated_at: now,
            version: 1,
        }
    }

    fn found(size: u64, kind: Option<ContentKind>) -> Inspected {
        Inspected { size, sha256: Sha256Hex::of_digest(&[0; 32]), kind }
    }

    #[test]
    fn verdicts() {
        let r = record();
        assert_eq!(found(10, Some(ContentKind::Pdf)).verdict(&r), Ok(ContentKind::Pdf));
        assert_eq!(found(0, None).verdict(&r), Err(RejectReason::Empty));
        assert_eq!(found(101, Some(ContentKind::Pdf)).verdict(&r), Err(RejectReason::TooLarge));
        assert_eq!(found(10, None).verdict(&r), Err(RejectReason::UnsupportedType));
        assert_eq!(found(10, Some(ContentKind::Png)).verdict(&r), Err(RejectReason::TypeMismatch));
        let sized = MedicalRecord { expected_size: Some(9), ..record() };
        assert_eq!(found(10, Some(ContentKind::Pdf)).verdict(&sized), Err(RejectReason::SizeMismatch));
        let hashed = MedicalRecord { expected_sha256: Some(Sha256Hex::parse(&"a".repeat(64)).unwrap()), ..record() };
        assert_eq!(found(10, Some(ContentKind::Pdf)).verdict(&hashed), Err(RejectReason::HashMismatch));
        let undeclared = MedicalRecord { content_type: None, file_name: FileName::parse("x.png").unwrap(), ..record() };
        assert_eq!(found(10, Some(ContentKind::Png)).verdict(&undeclared), Ok(ContentKind::Png));
    }

    #[test]
    fn blob_names_are_only_our_uuids() {
        let n = BlobName::generate();
        assert_eq!(BlobName::parse(n.as_str()), Some(n));
        for bad in ["../x", "", "ABCDEF00-0000-4000-8000-000000000000", "0000000000000000000000000000000000ab"] {
            assert_eq!(BlobName::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn codes_round_trip() {
        for c in Category::ALL {
            assert_eq!(Category::parse(c.as_str()), Ok(*c));
            assert_eq!(serde_json::to_value(c).unwrap(), serde_json::json!(c.as_str()));
        }
        for r in RejectReason::ALL {
            assert_eq!(serde_json::to_value(r).unwrap(), serde_json::json!(r.as_str()));
        }
        for r in DeleteReason::ALL {
            assert_eq!(serde_json::to_value(r).unwrap(), serde_json::json!(r.as_str()));
        }
        assert!(Category::parse("x-ray").is_err());
    }
}
