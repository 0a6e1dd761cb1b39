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

pub const SQLITE: &[Migration] = &[
    migration!("sqlite", 1, "clinic"),
    migration!("sqlite", 2, "access"),
    migration!("sqlite", 3, "schedules"),
    migration!("sqlite", 4, "appointments"),
    migration!("sqlite", 5, "records"),
    migration!("sqlite", 6, "notifications"),
    migration!("sqlite", 7, "doctor_day_index"),
];

/// Same version numbers as [`SQLITE`]; a test checks that the two lists and folders match.
pub const MSSQL: &[Migration] = &[
    migration!("mssql", 1, "clinic"),
    migration!("mssql", 2, "access"),
    migration!("mssql", 3, "schedules"),
    migration!("mssql", 4, "appointments"),
    migration!("mssql", 5, "records"),
    migration!("mssql", 6, "notifications"),
    migration!("mssql", 7, "doctor_day_index"),
];

/// The migrations still to apply, given what `schema_migrations` records as `(version, checksum)`.
/// Refuses a recorded migration whose file changed since, and a database newer than this binary.
pub fn pending<'m>(list: &'m [Migration], applied: &[(u32, String)]) -> Result<Vec<&'m Migration>, super::StoreError> {
    let mut todo = Vec::new();
    for m in list {
        match applied.iter().find(|(v, _)| *v == m.version) {
            Some((_, sum)) if *sum == m.checksum() => {}
            Some(_) => {
                return Err(super::StoreError::Other(
                    format!(
                        "migration V{} ({}) was changed after it was applied; add a new migration instead",
                        m.version, m.name
                    )
                    .into(),
                ));
            }
            None => todo.push(m),
        }
    }
    let newest = applied.iter().map(|(v, _)| *v).max().unwrap_or(0);
    if newest > list.last().map_or(0, |m| m.version) {
        return Err(super::StoreError::Other(
            "the database schema is newer than this handler; deploy the newer handler".into(),
        ));
    }
    Ok(todo)
}

/// Files under `sql/<dialect>/`, so a test can check that every file is listed above.
pub fn file_name(m: &Migration) -> String {
    format!("V{}__{}.sql", m.version, m.name)
}

/// T-SQL batches of a migration: the text between lines that hold only `GO` (the separator
/// sqlcmd and SSMS use; the server itself does not know it). Empty batches are dropped.
pub fn batches(sql: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut offset = 0;
    for line in sql.split_inclusive('\n') {
        if line.trim().eq_ignore_ascii_case("go") {
            out.push(&sql[start..offset]);
            start = offset + line.len();
        }
        offset += line.len();
    }
    out.push(&sql[start..]);
    out.into_iter().filter(|b| b.lines().any(is_code)).collect()
}

/// A line with something other than whitespace or a `--` comment.
fn is_code(line: &str) -> bool {
    let t = line.trim();
    !t.is_empty() && !t.starts_with("--")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_go_lines_only() {
        let sql = "-- intro\nCREATE TABLE a (x INT);\ngo\n\nSELECT 'GO' AS going;\n  GO  \n-- trailing comment\n";
        assert_eq!(batches(sql), vec!["-- intro\nCREATE TABLE a (x INT);\n", "\nSELECT 'GO' AS going;\n"]);
        assert_eq!(batches("SELECT 1"), vec!["SELECT 1"]);
    }

    #[test]
    fn versions_match_across_dialects() {
        let versions = |list: &[Migration]| list.iter().map(|m| (m.version, m.name)).collect::<Vec<_>>();
        assert_eq!(versions(SQLITE), versions(MSSQL));
    }
}
