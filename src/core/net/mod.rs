//! The forwarding data plane: frame validation and parsing, connection
//! tracking, fragments, routing, ARP, ICMP errors and counters. Plain
//! `no_std + alloc` logic; the firewall node (`crate::firewall`) feeds it
//! frames and the compiled rules as a [`Classifier`].
//!
//! The node calls [`Dataplane::handle_frame`] for every received frame and
//! [`Dataplane::poll`] periodically; see `dataplane.rs` for the contract.
//!
//! # Life of a frame
//!
//! In the kernel, a frame arrives in a receive buffer of NIC `in_if`
//! (`firewall::NicSet::receive`, called by `firewall::Firewall::poll_once`)
//! and, for an interface that is up, comes here:
//!
//! 1. `Dataplane::handle_frame` (forward.rs) → `process`: `parse_ethernet`
//!    (parse.rs) checks the Ethernet header and that the frame is for one
//!    of our MACs (or broadcast/multicast);
//! 2. ARP goes to `arp` → `NeighbourTable::learn` (neighbour.rs), which
//!    releases frames waiting for that neighbour, and on to the local stack;
//! 3. IPv4: `parse_ipv4` validates the header and the transport header and
//!    returns `Ipv4Meta`; `ipv4` drops martians (route.rs) and splits:
//!    - for the firewall itself (`is_local`): `input` → `judge` on the
//!      INPUT chain → `Disposition::Local`, and the node hands the
//!      unchanged frame to the interface's smoltcp stack;
//!    - fragments for the firewall are dropped (its smoltcp stack does
//!      not reassemble);
//!    - otherwise `forward`: a fragment is held in the fragment pool
//!      (fragment.rs) until its datagram is whole, then `forward_fragment`
//!      (defrag.rs) routes, checks the TTL of and judges the datagram once
//!      and sends every fragment as `transmit` does; a whole packet:
//!      `RouteTable::lookup` picks the next hop (no route: ICMP net
//!      unreachable from reply.rs), TTL is checked (ICMP time exceeded),
//!      then `judge` on the FORWARD chain;
//!    - with NAT rules (nat_path.rs, nat/): a new flow's nat PREROUTING
//!      (DNAT) comes before the route lookup and its nat POSTROUTING
//!      (SNAT, MASQUERADE) after the FORWARD chain; the translation kept
//!      in the connection table rewrites every packet of the flow and ICMP
//!      errors about it before `transmit`, and a packet of a translated
//!      flow (or a fragment) to a firewall address is forwarded, not
//!      given to `input`;
//! 4. `judge`: `ConnTrack::track` (conntrack/) gives the state, `packet_key` builds
//!    the `PacketKey`, the classifier (the compiled `image::Image`) gives
//!    the verdict, counted per rule; accepted new flows are confirmed in the
//!    connection table; `refuse` drops, or `reject` answers with an ICMP
//!    error or a TCP RST (reply.rs), rate-limited, through the `FrameSink`;
//! 5. `transmit`: TTL decrement with an incremental checksum update
//!    (checksum.rs); a packet over the output MTU was refused before the
//!    FORWARD chain when it has Don't Fragment (ICMP "fragmentation
//!    needed"), else it leaves in fragments (split.rs, mtu.rs), and a TCP
//!    segmentation offload that must wait for ARP leaves as segments
//!    (segment.rs); `NeighbourTable::resolve` for the next hop's MAC (not
//!    known yet: the frame is copied into the neighbour queue, an ARP
//!    request goes out, `Disposition::Queued`), MAC rewrite, and
//!    `Disposition::Forward { out_if, len }`;
//! 6. back in the node, `NicSet::forward` queues the same buffer on NIC
//!    `out_if` (zero copy) and the buffer returns to its receive queue when
//!    sent (`NicSet::reclaim_and_flush`). Every drop on the way is a
//!    `DropReason` counted once on `in_if` (counters.rs).
//!
//! On a wire side (`Dataplane::set_wire`, wire.rs), `process` hands the
//! frame to `wire` before any MAC check: ARP passes to the peer unchanged,
//! IPv4 is judged by `judge` on the FORWARD chain (`out_if` = the peer) and
//! leaves by the peer byte for byte, with no route, TTL or MAC change.

pub mod addr;
pub mod checksum;
pub mod conntrack;
pub mod counters;
pub mod dataplane;
pub mod defrag;
pub mod forward;
pub mod fragment;
pub mod mss;
pub mod mtu;
pub mod nat;
mod nat_path;
pub mod neighbour;
pub mod options;
pub mod output;
pub mod parse;
pub mod reply;
pub mod route;
pub mod segment;
pub mod sink;
mod source_check;
pub mod split;
pub mod token_bucket;
pub mod wire;

pub use counters::{Counters, DropReason};
pub use dataplane::{Classifier, Dataplane, DataplaneConfig, Disposition};
pub use fragment::FragmentLimits;
pub use neighbour::NeighbourLimits;
pub use route::{ConfigError, InterfaceConfig, LearnedRoute, ReversePathFilter, StaticRoute};
pub use sink::{FrameSink, NullSink, VecSink};
pub use split::Offload;
pub use wire::WireError;
