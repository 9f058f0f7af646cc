//! The domain: ids, positions, alerts and the dispatcher's rules.
//!
//! Nothing here does I/O, spawns a task or reads the clock; it imports
//! nothing of `mqtt`, `store` or `http`. Adapters turn their input into these
//! types at the edge.

pub mod alert;
pub mod dispatcher;
pub mod geo;
pub mod ids;
pub mod nearby;
pub mod notice;
pub mod registry;
pub mod sla;

pub use alert::{
    Actor, Alert, AlertKind, AlertState, BandNotice, Offer, OfferOutcome, Outgoing, PhoneMessage,
    SeniorCard, TimelineEvent, TimelineKind, Timestamp, WithdrawReason,
};
pub use dispatcher::{
    ActiveAlert, Command, DispatchError, Dispatcher, Effects, IngestedEvent, Milestone,
    MilestoneKind, OfferRecord, Press, PressKind, PressOutcome, Reply, Rules, Snapshot, Volunteer,
};
pub use geo::Position;
pub use ids::{AlertId, DeviceId, EventId, GatewayId, IdError, SeniorId, VolunteerId};
pub use notice::{Audience, Notification};
