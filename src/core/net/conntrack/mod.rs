//! Connection tracking: flow keys, the TCP state machine, timeouts and the
//! bounded table that classifies packets as new, established, related or
//! invalid.

pub mod key;
pub mod nat;
pub mod table;
pub mod tcp;
pub mod timeouts;
pub mod tuples;

pub use key::FlowKey;
pub use nat::{default_port_range, Manip, NatExhausted};
pub use table::{
    bytes_per_flow, bytes_per_flow_with, ConnTrack, TableFull, Tracked, EARLY_DROP_SCAN, MAX_CONNTRACK, MIN_FLOWS,
};
pub use tcp::{Direction, TcpState};
