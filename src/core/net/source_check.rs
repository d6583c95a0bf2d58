//! Source address validation of what arrives from outside, as Linux's
//! `fib_validate_source` does it: the firewall's own addresses are never a
//! packet's source, and each interface filters reverse paths (RFC 3704).

use super::counters::DropReason;
use super::dataplane::Dataplane;
use super::route::ReversePathFilter;
use crate::flow::IfIndex;

impl Dataplane {
    /// Whether `src`, seen on `in_if`, is a believable source. Drops are
    /// silent, as in Linux. `exempt` skips the reverse-path filter, for
    /// what the firewall's DHCP client must see on an interface that has no
    /// address (or only its fallback) yet; Linux's client reads those with
    /// a packet socket, before the IP layer.
    ///
    /// - One of the firewall's own addresses as source: dropped on every
    ///   interface and in every mode (Linux: unless `accept_local`).
    /// - `Strict`: the route back to `src` must leave by `in_if`.
    /// - `Loose`: some route back to `src` must exist.
    /// - With either, a broadcast of one of the firewall's subnets is not a
    ///   source (Linux: the route back is not unicast).
    pub(super) fn validate_source(&self, in_if: IfIndex, src: u32, exempt: bool) -> Result<(), DropReason> {
        if self.is_own_address(src) {
            return Err(DropReason::OwnAddressSource);
        }
        let mode = self.interfaces.get(usize::from(in_if)).map_or(ReversePathFilter::Off, |i| i.reverse_path);
        if exempt || mode == ReversePathFilter::Off {
            return Ok(());
        }
        if self.is_broadcast(src) {
            return Err(DropReason::ReversePath);
        }
        match self.routes.lookup(src) {
            Some(hop) if mode == ReversePathFilter::Loose || hop.out_if == in_if => Ok(()),
            _ => Err(DropReason::ReversePath),
        }
    }
}
