//! The patient portal backend: an Azure Functions custom handler. See the README for the map.

pub mod api;
pub mod auth;
pub mod blobs;
pub mod config;
pub mod demo;
pub mod domain;
pub mod error;
pub mod functions;
pub mod lifecycle;
pub mod notify;
pub mod startup;
pub mod store;
pub mod telemetry;
