//! One pooled connection and the only ways to talk through it. Every call drains its whole
//! response, and any doubt about the connection's state marks it broken, so the pool drops it
//! instead of handing a half-read stream or an open transaction to the next caller (tiberius
//! has no `sp_reset_connection`).

use tiberius::{Client, Row, ToSql};
use tokio::net::TcpStream;
use tokio_util::compat::Compat;

use super::errors::map_error;
use crate::store::StoreError;

pub type TdsClient = Client<Compat<TcpStream>>;

/// Whether a connection may go back into the pool.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ConnState {
    /// A request was sent and its response not fully read: set before sending, cleared after
    /// the drain, so a future dropped midway (client gone, task cancelled) leaves it set.
    in_flight: bool,
    /// `BEGIN TRANSACTION` ran and neither `COMMIT` nor `ROLLBACK` has finished.
    in_transaction: bool,
    /// Some call failed; the session state is unknown.
    failed: bool,
}

impl ConnState {
    pub fn is_broken(&self) -> bool {
        self.in_flight || self.in_transaction || self.failed
    }
    pub fn failed(&self) -> bool {
        self.failed
    }
    fn start(&mut self) {
        self.in_flight = true;
    }
    fn finish<T, E>(&mut self, result: &Result<T, E>) {
        match result {
            Ok(_) => self.in_flight = false,
            Err(_) => self.failed = true,
        }
    }
    fn transaction_opened(&mut self) {
        self.in_transaction = true;
    }
    fn transaction_closed(&mut self) {
        self.in_transaction = false;
    }
}

pub struct MssqlConn {
    client: TdsClient,
    state: ConnState,
}

impl MssqlConn {
    pub fn new(client: TdsClient) -> Self {
        MssqlConn { client, state: ConnState::default() }
    }

    pub fn state(&self) -> ConnState {
        self.state
    }

    /// Runs a parameterized statement (`sp_executesql`) and returns the rows of every result
    /// set, in order. `sql` is `'static` so it can only be one of our constants.
    pub async fn rows(&mut self, sql: &'static str, params: &[&dyn ToSql]) -> Result<Vec<Row>, StoreError> {
        self.state.start();
        let result = async { self.client.query(sql, params).await?.into_results().await }.await;
        self.state.finish(&result);
        Ok(result.map_err(map_error)?.into_iter().flatten().collect())
    }

    /// The first row, if any (the whole response is still drained).
    pub async fn row(&mut self, sql: &'static str, params: &[&dyn ToSql]) -> Result<Option<Row>, StoreError> {
        Ok(self.rows(sql, params).await?.into_iter().next())
    }

    /// Runs a parameterless batch as it is (no `sp_executesql` scope): `SET`, transaction
    /// control, migrations.
    pub async fn batch(&mut self, sql: &'static str) -> Result<(), StoreError> {
        self.state.start();
        let result = async { self.client.simple_query(sql).await?.into_results().await }.await;
        self.state.finish(&result);
        result.map(drop).map_err(map_error)
    }

    pub async fn begin(&mut self) -> Result<(), StoreError> {
        // Marked first: if BEGIN's answer is lost, the server may still hold a transaction.
        self.state.transaction_opened();
        self.batch(super::sql::BEGIN).await
    }

    pub async fn commit(&mut self) -> Result<(), StoreError> {
        self.batch(super::sql::COMMIT).await?;
        self.state.transaction_closed();
        Ok(())
    }

    /// Rolls back unless the connection already failed: then it is dropped instead, which makes
    /// the server roll back (and `XACT_ABORT` already has, for any error inside).
    pub async fn rollback(&mut self) {
        if self.state.failed {
            return;
        }
        if self.batch(super::sql::ROLLBACK).await.is_ok() {
            self.state.transaction_closed();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthy_until_something_goes_wrong() {
        let mut s = ConnState::default();
        assert!(!s.is_broken());
        s.start();
        assert!(s.is_broken(), "a response not yet drained");
        s.finish(&Ok::<(), ()>(()));
        assert!(!s.is_broken());
        s.start();
        s.finish(&Err::<(), ()>(()));
        assert!(s.is_broken() && s.failed());
    }

    #[test]
    fn an_open_transaction_is_broken_until_closed() {
        let mut s = ConnState::default();
        s.transaction_opened();
        s.start();
        s.finish(&Ok::<(), ()>(()));
        assert!(s.is_broken(), "returned mid-transaction, e.g. a cancelled request");
        s.transaction_closed();
        assert!(!s.is_broken());
    }

    #[test]
    fn a_dropped_call_leaves_it_broken() {
        let mut s = ConnState::default();
        s.start();
        // The future was dropped here: `finish` never ran.
        assert!(s.is_broken());
    }
}
