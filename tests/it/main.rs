//! The integration tests: one binary, one module per behaviour. Each
//! scenario runs on SQLite + the embedded broker and on PostgreSQL +
//! Mosquitto (see `common`).

mod access;
mod burst;
mod common;
mod faults;
mod flood;
mod hostile;
mod http;
mod ingest;
mod lifecycle;
mod live;
mod notify;
mod ntfy;
mod openapi;
mod pages;
mod push;
mod push_app;
mod qr;
mod restart;
mod settings;
mod simulate;
mod store;
