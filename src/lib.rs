//! onepress: one press on a wristband, a volunteer on the way.
//!
//! The crate's face: `domain` holds the rules (no I/O); `mqtt`, `store` and
//! `http` are thin adapters around it; `app` wires them together. The binary
//! in `main.rs` only parses the command line and calls in here, so tests can
//! build the same application.

pub mod access;
pub mod app;
pub mod config;
pub mod domain;
pub mod engine;
pub mod http;
pub mod mqtt;
pub mod notify;
pub mod sim;
pub mod store;
pub mod telemetry;
