//! Checks of the SQL Server store's T-SQL that need no server: every statement it sends and
//! every migration parses with sqlparser's MS SQL dialect and follows our portability rules,
//! and the two dialects' migrations define the same tables, columns and named keys.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use handler::store::migrations::{self, MSSQL, Migration, SQLITE};
use handler::store::mssql::sql::STATEMENTS;
use sqlparser::ast::{AlterTableOperation, Statement, TableConstraint};
use sqlparser::dialect::{Dialect, MsSqlDialect, SQLiteDialect};
use sqlparser::parser::Parser;

/// Statements sqlparser 0.64 cannot parse although SQL Server accepts them: (name, reason).
/// Checked by hand; the test fails if one of them starts parsing, so the list stays short.
const PARSER_GAPS: &[(&str, &str)] = &[];

/// The statement without a trailing `OPTION (RECOMPILE)`, which sqlparser 0.64 does not know.
/// The catch-all lists (`@P IS NULL OR col = @P`) carry it so SQL Server plans each call for
/// the filters it has, and uses the index they name; the rest of the statement is parsed.
fn without_query_hint(sql: &str) -> std::borrow::Cow<'_, str> {
    match sql.strip_suffix("\nOPTION (RECOMPILE);") {
        Some(rest) => format!("{rest};").into(),
        None => sql.into(),
    }
}

#[test]
fn catch_all_filters_are_planned_per_call() {
    for (name, sql) in STATEMENTS {
        let catch_all = sql.match_indices(" IS NULL OR").any(|(at, _)| {
            let before = &sql[..at];
            let token = &before[before.rfind(|c: char| c == '(' || c.is_whitespace()).map_or(0, |i| i + 1)..];
            token.strip_prefix("@P").is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
        });
        if catch_all && sql.trim_start().starts_with("SELECT") {
            assert!(sql.ends_with("\nOPTION (RECOMPILE);"), "{name} filters with IS NULL OR but is planned once");
        }
    }
}

fn parse(dialect: &dyn Dialect, sql: &str) -> Vec<Statement> {
    Parser::parse_sql(dialect, sql).unwrap_or_else(|e| panic!("{e}\n--- in ---\n{sql}"))
}

#[test]
fn every_store_statement_parses_as_tsql() {
    let mut names = BTreeSet::new();
    for (name, sql) in STATEMENTS {
        assert!(names.insert(*name), "{name} listed twice");
        let gap = PARSER_GAPS.iter().find(|(n, _)| n == name);
        match (Parser::parse_sql(&MsSqlDialect {}, &without_query_hint(sql)), gap) {
            (Ok(statements), None) => assert!(!statements.is_empty(), "{name} is empty"),
            (Err(e), None) => panic!("{name} does not parse: {e}\n{sql}"),
            (Ok(_), Some(_)) => panic!("{name} parses now; remove it from PARSER_GAPS"),
            (Err(_), Some(_)) => {}
        }
    }
    assert!(names.len() >= 20, "the list is the store's whole vocabulary");
}

#[test]
fn the_parser_is_not_a_rubber_stamp() {
    for broken in ["SELECT FROM WHERE id = @P1", "UPDATE SET x = 1", "INSERT INTO t VALUES (", "SELECT 'unterminated"] {
        assert!(Parser::parse_sql(&MsSqlDialect {}, broken).is_err(), "{broken}");
    }
}

/// Rules every engine we target (SQL Server 2019+, Azure SQL, Babelfish) needs.
fn check_portable(name: &str, sql: &str) {
    // Comments may name what is banned; code may not.
    let code: String = sql.lines().map(|l| l.split("--").next().unwrap_or("")).collect::<Vec<_>>().join("\n");
    let upper = code.to_ascii_uppercase();
    let words: Vec<&str> = upper.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).collect();
    for banned in ["MERGE", "ROWVERSION", "WAITFOR", "SERIALIZABLE"] {
        assert!(!words.contains(&banned), "{name}: {banned} is not portable (see verified-here.md)");
    }
    assert!(!upper.contains("CREATE OR ALTER"), "{name}: CREATE OR ALTER fails on Babelfish");
    // `OUTPUT` without `INTO` fails on tables with triggers.
    for (i, _) in upper.match_indices("OUTPUT ") {
        let clause = &upper[i..upper[i..].find('\n').map_or(upper.len(), |n| i + n)];
        assert!(clause.contains(" INTO "), "{name}: OUTPUT must go INTO a table variable: {clause}");
    }
}

/// `@P1..@Pn` with no gaps, so each parameter the code binds is used.
fn parameters(sql: &str) -> BTreeSet<u32> {
    let mut found = BTreeSet::new();
    for (i, _) in sql.match_indices("@P") {
        let digits: String = sql[i + 2..].chars().take_while(char::is_ascii_digit).collect();
        if let Ok(n) = digits.parse() {
            found.insert(n);
        }
    }
    found
}

#[test]
fn statements_are_portable_and_numbered() {
    for (name, sql) in STATEMENTS {
        check_portable(name, sql);
        let params = parameters(sql);
        let expected: BTreeSet<u32> = (1..=params.len() as u32).collect();
        assert_eq!(params, expected, "{name}: parameters must be @P1..@Pn without gaps");
    }
}

#[test]
fn every_mssql_migration_batch_parses_and_is_portable() {
    for m in MSSQL {
        let batches = migrations::batches(m.sql);
        assert!(!batches.is_empty(), "V{} is empty", m.version);
        for batch in batches {
            assert!(!parse(&MsSqlDialect {}, batch).is_empty(), "V{}: a batch with no statement", m.version);
            check_portable(&migrations::file_name(m), batch);
        }
    }
}

/// Tables (by unqualified name) → column names, plus the named unique keys and indexes.
#[derive(Debug, Default, PartialEq, Eq)]
struct Schema {
    tables: BTreeMap<String, Vec<String>>,
    unique_keys: BTreeSet<String>,
    indexes: BTreeSet<String>,
}

fn collect(statements: &[Statement], schema: &mut Schema) {
    for s in statements {
        match s {
            Statement::CreateTable(t) => {
                let table = t.name.0.last().unwrap().to_string();
                let columns = t.columns.iter().map(|c| c.name.value.to_ascii_lowercase()).collect();
                assert!(schema.tables.insert(table.clone(), columns).is_none(), "{table} created twice");
                for c in &t.constraints {
                    if let TableConstraint::Unique(u) = c {
                        schema.unique_keys.insert(u.name.as_ref().unwrap().value.clone());
                    }
                }
            }
            // `ALTER TABLE t ADD [COLUMN] c ...` (SQLite's form and T-SQL's, the latter inside
            // its `IF NOT EXISTS (... sys.columns ...)` guard): the column joins the table's list,
            // at the end, where both engines put it.
            Statement::AlterTable(a) => {
                let table = a.name.0.last().unwrap().to_string();
                for op in &a.operations {
                    match op {
                        AlterTableOperation::AddColumn { column_def, .. } => {
                            let columns = schema
                                .tables
                                .get_mut(&table)
                                .unwrap_or_else(|| panic!("ALTER TABLE {table} before CREATE TABLE {table}"));
                            let column = column_def.name.value.to_ascii_lowercase();
                            assert!(!columns.contains(&column), "{table}.{column} added twice");
                            columns.push(column);
                        }
                        AlterTableOperation::AddConstraint { constraint: TableConstraint::Unique(u), .. } => {
                            schema.unique_keys.insert(u.name.as_ref().unwrap().value.clone());
                        }
                        other => panic!("the parity check does not know ALTER TABLE {table} {other}; teach it"),
                    }
                }
            }
            Statement::CreateIndex(i) => {
                schema.indexes.insert(i.name.as_ref().unwrap().0.last().unwrap().to_string());
            }
            Statement::If(i) => {
                collect(i.if_block.statements(), schema);
                assert!(i.else_block.is_none() && i.elseif_blocks.is_empty(), "guards have no ELSE");
            }
            _ => {}
        }
    }
}

fn schema_of(dialect: &dyn Dialect, list: &[Migration], split: bool) -> Schema {
    let mut schema = Schema::default();
    for m in list {
        let parts = if split { migrations::batches(m.sql) } else { vec![m.sql] };
        for part in parts {
            collect(&parse(dialect, part), &mut schema);
        }
    }
    schema
}

#[test]
fn both_dialects_define_the_same_schema() {
    let sqlite = schema_of(&SQLiteDialect {}, SQLITE, false);
    let mssql = schema_of(&MsSqlDialect {}, MSSQL, true);
    assert!(sqlite.tables.contains_key("patients"), "{sqlite:?}");
    assert_eq!(sqlite, mssql);
    // Not equal by both missing something: the ALTERs (T-SQL's inside its guard), V4's and V6's objects.
    assert_eq!(mssql.tables["doctors"].last().map(String::as_str), Some("booking_version"));
    let patients = &mssql.tables["patients"];
    assert_eq!(patients[patients.len() - 2..], ["booking_version", "reminder_emails"]);
    for table in ["appointments", "idempotency_keys", "waitlist_entries", "notifications"] {
        assert!(mssql.tables.contains_key(table), "{table}");
    }
    assert!(mssql.unique_keys.contains("ux_idempotency_keys"));
    assert!(mssql.indexes.contains("ux_appointments_doctor_start"));
    assert!(mssql.unique_keys.contains("ux_notifications_operation") && mssql.indexes.contains("ix_notifications_due"));
}

#[test]
fn added_columns_join_their_table_in_both_dialects() {
    let mut schema = Schema::default();
    let create = "CREATE TABLE t (id INTEGER);";
    collect(&parse(&SQLiteDialect {}, create), &mut schema);
    collect(&parse(&SQLiteDialect {}, "ALTER TABLE t ADD COLUMN a INTEGER NOT NULL DEFAULT 0;"), &mut schema);
    let tsql = "IF NOT EXISTS (SELECT 1 FROM sys.columns WHERE name = N'b' AND object_id = OBJECT_ID(N'dbo.t'))
ALTER TABLE dbo.t ADD b BIGINT NOT NULL CONSTRAINT df_t_b DEFAULT 0;";
    collect(&parse(&MsSqlDialect {}, tsql), &mut schema);
    assert_eq!(schema.tables["t"], ["id", "a", "b"]);
}

#[test]
#[should_panic(expected = "does not know ALTER TABLE")]
fn unknown_alterations_are_not_skipped() {
    let mut schema = Schema::default();
    collect(&parse(&MsSqlDialect {}, "CREATE TABLE t (id INT);"), &mut schema);
    collect(&parse(&MsSqlDialect {}, "ALTER TABLE t DROP COLUMN id;"), &mut schema);
}

fn files_in(dialect: &str) -> BTreeSet<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("sql").join(dialect);
    std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".sql"))
        .collect()
}

#[test]
fn migration_folders_match_each_other_and_the_lists() {
    let listed = |list: &[Migration]| list.iter().map(migrations::file_name).collect::<BTreeSet<_>>();
    assert_eq!(files_in("sqlite"), listed(SQLITE), "every sql/sqlite file is listed in migrations.rs");
    assert_eq!(files_in("mssql"), listed(MSSQL), "every sql/mssql file is listed in migrations.rs");
    let versions = |list: &[Migration]| list.iter().map(|m| m.version).collect::<Vec<_>>();
    assert_eq!(versions(SQLITE), versions(MSSQL), "same version numbers in both dialects");
    assert!(versions(MSSQL).windows(2).all(|w| w[0] < w[1]), "versions ascend");
}
