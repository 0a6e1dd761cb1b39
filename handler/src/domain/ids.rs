//! Typed ids, so a patient id can never be passed where a doctor id is expected.

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($name:ident) => {
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
        )]
        #[serde(transparent)]
        pub struct $name(i64);

        impl $name {
            pub fn new(raw: i64) -> Option<Self> {
                (raw > 0).then_some(Self(raw))
            }

            /// Route segments that are not positive integers name nothing (404), like the
            /// host's `{id:int}` route constraint.
            pub fn parse(segment: &str) -> Option<Self> {
                if segment.is_empty() || segment.len() > 18 || !segment.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                segment.parse::<i64>().ok().and_then(Self::new)
            }

            pub fn get(self) -> i64 {
                self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(SpecialtyId);
id_type!(DoctorId);
id_type!(PatientId);
id_type!(UserId);
id_type!(AuditId);
id_type!(TimeOffId);
id_type!(AppointmentId);
id_type!(WaitlistId);
id_type!(RecordId);
id_type!(NotificationId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_positive_decimal_ids_parse() {
        assert_eq!(PatientId::parse("42").map(PatientId::get), Some(42));
        for bad in ["", "0", "-1", "+1", "1e3", "abc", " 1", "99999999999999999999", "١٢"] {
            assert!(PatientId::parse(bad).is_none(), "{bad}");
        }
    }
}
