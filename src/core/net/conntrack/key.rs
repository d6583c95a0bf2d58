//! Flow keys: one canonical key per connection, whichever way a packet goes.

use crate::net::parse::Transport;

/// Which end of a flow key a packet's source is.
pub type Side = u8;

/// A connection's identity. TCP, UDP and other protocols put the
/// numerically smaller (address, port) endpoint first, so both directions
/// find the same entry with one lookup. ICMP queries put the requester
/// first and use (id, request type) as "ports", as Linux's ICMP tuple does,
/// so that A pinging B and B pinging A with the same id stay distinct.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// IP protocol.
    pub proto: u8,
    /// The two endpoint addresses, host order.
    pub addrs: [u32; 2],
    /// The two ports (for ICMP queries: id and request type).
    pub ports: [u16; 2],
}

impl FlowKey {
    /// The key of a packet from `src` to `dst`, and the side its source is on.
    pub fn of(proto: u8, src: u32, dst: u32, transport: Transport) -> (FlowKey, Side) {
        match transport {
            Transport::Ports { src_port, dst_port } => ordered(proto, (src, src_port), (dst, dst_port)),
            Transport::IcmpQuery { request_type, id, is_request } => {
                let (requester, responder) = if is_request { (src, dst) } else { (dst, src) };
                let key = FlowKey { proto, addrs: [requester, responder], ports: [id, u16::from(request_type)] };
                (key, Side::from(!is_request))
            }
            Transport::None => ordered(proto, (src, 0), (dst, 0)),
        }
    }
}

fn ordered(proto: u8, src: (u32, u16), dst: (u32, u16)) -> (FlowKey, Side) {
    // A flow from an endpoint to itself has one side only: always side 0.
    let (low, high, side) = if src <= dst { (src, dst, 0) } else { (dst, src, 1) };
    let key = FlowKey { proto, addrs: [low.0, high.0], ports: [low.1, high.1] };
    (key, side)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_directions_share_a_key() {
        let ports = |s, d| Transport::Ports { src_port: s, dst_port: d };
        let (forward, side_f) = FlowKey::of(6, 0x0a01_0002, 0x0a02_0002, ports(40000, 80));
        let (reverse, side_r) = FlowKey::of(6, 0x0a02_0002, 0x0a01_0002, ports(80, 40000));
        assert_eq!(forward, reverse);
        assert_ne!(side_f, side_r);
    }

    #[test]
    fn icmp_queries_key_on_requester() {
        let query = |req| Transport::IcmpQuery { request_type: 8, id: 7, is_request: req };
        let (request, side_q) = FlowKey::of(1, 1, 2, query(true));
        let (reply, side_r) = FlowKey::of(1, 2, 1, query(false));
        let (other_way, _) = FlowKey::of(1, 2, 1, query(true));
        assert_eq!(request, reply);
        assert_eq!((side_q, side_r), (0, 1));
        assert_ne!(request, other_way);
    }
}
