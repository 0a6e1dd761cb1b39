//! WHERE clauses of the filters a request gave. An absent filter is left out of the SQL rather
//! than written as `(?n IS NULL OR col = ?n)`: SQLite plans a statement once, before it sees
//! the values, so a catch-all keeps it off the index the present filter would use (a patient's
//! appointments among a million rows went from a full index walk to a direct lookup).

use rusqlite::types::Value;

#[derive(Debug, Default)]
pub struct Filters {
    clauses: Vec<String>,
    params: Vec<Value>,
}

impl Filters {
    /// Adds `clause`, whose `?` placeholders take `values` in order.
    pub fn and(&mut self, clause: &str, values: impl IntoIterator<Item = Value>) {
        self.clauses.push(clause.to_owned());
        self.params.extend(values);
    }

    /// Adds `clause` (one `?`) only when the filter was given.
    pub fn and_some(&mut self, clause: &str, value: Option<impl Into<Value>>) {
        if let Some(v) = value {
            self.and(clause, [v.into()]);
        }
    }

    /// The conditions, joined (`1` when there are none).
    pub fn sql(&self) -> String {
        if self.clauses.is_empty() { "1".to_owned() } else { self.clauses.join(" AND ") }
    }

    /// The values for the placeholders, then `trailing` (a `LIMIT`, say) after them.
    pub fn params(self, trailing: impl IntoIterator<Item = Value>) -> rusqlite::ParamsFromIter<Vec<Value>> {
        let mut params = self.params;
        params.extend(trailing);
        rusqlite::params_from_iter(params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_given_filters_reach_the_sql_in_order() {
        let mut f = Filters::default();
        f.and_some("patient_id = ?", Some(7_i64));
        f.and_some("doctor_id = ?", None::<i64>);
        f.and(
            "(starts_at > ? OR (starts_at = ? AND id > ?))",
            [Value::from("a".to_owned()), "a".to_owned().into(), 3.into()],
        );
        assert_eq!(f.sql(), "patient_id = ? AND (starts_at > ? OR (starts_at = ? AND id > ?))");
        assert_eq!(Filters::default().sql(), "1");
    }

    #[test]
    fn the_values_bind_in_clause_order() {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        let mut f = Filters::default();
        f.and_some("x = ?", Some(1_i64));
        f.and_some("y = ?", None::<i64>);
        f.and_some("z = ?", Some("b".to_owned()));
        let sql = format!("SELECT count(*) FROM (SELECT 1 AS x, 'b' AS z) WHERE {} LIMIT ?", f.sql());
        let n: i64 = c.query_row(&sql, f.params([Value::from(5_i64)]), |r| r.get(0)).unwrap();
        assert_eq!(n, 1);
    }
}
