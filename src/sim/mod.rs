//! Simulating a community against the service: `live` plays bands and
//! volunteers' phones against a running service over real MQTT and HTTP
//! (`onepress simulate`) and `report` sums up what it saw. `model` (the
//! seeded world: places, answer delays and choices) and `tally` (the
//! ledger and its checks) are pure, for any simulator to share. `sweep`
//! runs the real dispatcher on a virtual clock instead, to compare fan-outs
//! and offer timeouts over simulated days (`onepress simulate --sweep`).
//! Nothing here is used by the service itself.

pub mod api;
pub mod link;
pub mod live;
pub mod model;
pub mod report;
pub mod sweep;
pub mod tally;

pub use live::{Plan, Schedule, SimError, Via, run, run_until};
pub use report::Report;
