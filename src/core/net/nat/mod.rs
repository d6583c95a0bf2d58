//! Network address translation, the pieces that do not depend on where
//! translations are stored: rewriting a packet's addresses, ports and
//! ICMP ids in place with incremental checksums (`rewrite`), and choosing
//! a free source port for a new translation (`ports`).
//!
//! As Linux's `nf_nat`: a translation is decided on a connection's first
//! packet and applied to every later packet of both directions; the
//! original direction gets the new source (SNAT, MASQUERADE) or
//! destination (DNAT), the reply direction the inverse.

pub mod ports;
pub mod rewrite;

pub use ports::{allocate_port, PortPolicy, MAX_PORT_TRIES};
pub use rewrite::{rewrite_icmp_error, rewrite_packet, NatError};

/// An IPv4 address and a port (for an ICMP query, its id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// Address, host order.
    pub addr: u32,
    /// TCP or UDP port, or ICMP query id; 0 for other protocols.
    pub port: u16,
}

/// The source and destination a packet leaves with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rewrite {
    /// The new source.
    pub src: Endpoint,
    /// The new destination.
    pub dst: Endpoint,
}
