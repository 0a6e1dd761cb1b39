//! Schema migrations, one folder per dialect with the same version numbers. They are compiled
//! into the binary so a deployed handler always carries the schema it expects; a checksum per
//! migration catches a file edited after it was applied.

use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
}

impl Migration {
    pub fn checksum(&self) -> String {
        let digest = Sha256::digest(self.sql.as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

macro_rules! migration {
    ($dialect:literal, $version:literal, $name:literal) => {
        Migration {
            version: $version,
            name: $name,
            sql: include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../sql/",
                $dialect,
                "/V",
                stringify!($version),
                "__",
                $name,
                ".sql"
            )),
        }
    };
}

pub const SQLITE: &[Migration] = &[migration!("sqlite", 1, "clinic")];

/// Files under `sql/<dialect>/`, so a test can check that every file is listed above.
pub fn file_name(m: &Migration) -> String {
    format!("V{}__{}.sql", m.version, m.name)
}
