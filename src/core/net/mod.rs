//! The forwarding data plane: frame validation and parsing, connection
//! tracking, fragments, routing, ARP, ICMP errors and counters. Plain
//! `no_std + alloc` logic; the kernel feeds it frames and a classifier.
//!
//! The kernel calls `Dataplane::handle_frame` for every received frame and
//! `Dataplane::poll` periodically; see `dataplane.rs` for the contract.

pub mod addr;
pub mod checksum;
pub mod conntrack;
pub mod counters;
pub mod dataplane;
pub mod forward;
pub mod fragment;
pub mod neighbour;
pub mod parse;
pub mod reply;
pub mod route;
pub mod sink;
pub mod token_bucket;

pub use counters::{Counters, DropReason};
pub use dataplane::{Classifier, Dataplane, DataplaneConfig, Disposition};
pub use neighbour::NeighbourLimits;
pub use route::{ConfigError, InterfaceConfig, StaticRoute};
pub use sink::{FrameSink, NullSink, VecSink};
