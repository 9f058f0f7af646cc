//! The integration tests: one binary, one module per behaviour. Each
//! scenario runs on SQLite + the embedded broker and on PostgreSQL +
//! Mosquitto (see `common`).

mod access;
mod burst;
mod common;
mod hostile;
mod http;
mod ingest;
mod lifecycle;
mod live;
mod openapi;
mod pages;
mod qr;
mod restart;
mod settings;
mod store;
