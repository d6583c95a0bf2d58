//! `unifw.path=bounce`: the platform's limit, not a firewall. IPv4 frames
//! sent to the firewall's MAC but not to its addresses cross from eth0 to
//! eth1 (eth2 to eth3, ...) and back with only their MACs rewritten: no
//! parsing past the addresses, no connection tracking, no rules, no TTL.
//! What this mode forwards per second is what the hypervisor, the virtio
//! queues and unifw's own loop allow; the packet path's share of a frame's
//! cost is the difference (`scripts/bench-forward --systems bounce`).
//!
//! Everything else (ARP, frames to the firewall, frames toward a side
//! whose peer MAC is not yet known) takes the normal path, so the lab's
//! pings and ARP work as usual and teach it the MACs.

use alloc::vec;
use alloc::vec::Vec;

use crate::net::parse::ETHERNET_HEADER_LEN;

const ETHERTYPE_IPV4: [u8; 2] = [0x08, 0x00];

/// The NICs' MACs, and the MAC last seen as a source on each NIC (the
/// peer frames to that side are sent to).
#[derive(Debug)]
pub struct Bounce {
    macs: Vec<[u8; 6]>,
    peers: Vec<Option<[u8; 6]>>,
}

impl Bounce {
    /// For NICs with `macs`.
    pub fn new(macs: Vec<[u8; 6]>) -> Bounce {
        let peers = vec![None; macs.len()];
        Bounce { macs, peers }
    }

    /// Whether `frame` (Ethernet header first), received on NIC `index`,
    /// bounces: then it is rewritten in place and the output NIC
    /// returned. `own` tells the firewall's addresses.
    pub fn bounce(&mut self, index: usize, frame: &mut [u8], own: impl Fn(u32) -> bool) -> Option<usize> {
        let macs = &self.macs;
        let (Some(dst), Some(src), Some(ethertype), Some(ip_dst)) = (
            frame.get(0..6),
            frame.get(6..12),
            frame.get(12..14),
            frame.get(ETHERNET_HEADER_LEN + 16..ETHERNET_HEADER_LEN + 20),
        ) else {
            return None;
        };
        let src: [u8; 6] = src.try_into().ok()?;
        if ethertype != ETHERTYPE_IPV4 || Some(dst) != macs.get(index).map(|m| &m[..]) || src[0] & 1 != 0 {
            return None;
        }
        if let Some(peer) = self.peers.get_mut(index) {
            *peer = Some(src);
        }
        let ip_dst = u32::from_be_bytes(ip_dst.try_into().ok()?);
        let out = index ^ 1;
        let (Some(Some(peer)), Some(out_mac)) = (self.peers.get(out).copied(), macs.get(out)) else {
            return None;
        };
        if own(ip_dst) {
            return None;
        }
        frame.get_mut(0..6)?.copy_from_slice(&peer);
        frame.get_mut(6..12)?.copy_from_slice(out_mac);
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MACS: [[u8; 6]; 2] = [[2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]];
    const SENDER: [u8; 6] = [2, 0, 0, 0, 0, 0x10];
    const RECEIVER: [u8; 6] = [2, 0, 0, 0, 0, 0x20];

    fn frame(dst: [u8; 6], src: [u8; 6], ip_dst: u32) -> Vec<u8> {
        let mut f = vec![0u8; 60];
        f[0..6].copy_from_slice(&dst);
        f[6..12].copy_from_slice(&src);
        f[12..14].copy_from_slice(&ETHERTYPE_IPV4);
        f[14] = 0x45;
        f[30..34].copy_from_slice(&ip_dst.to_be_bytes());
        f
    }

    #[test]
    fn frames_cross_once_both_peers_are_known_and_not_to_the_firewall() {
        let own = |a: u32| a == 0x0a01_0001;
        let mut bounce = Bounce::new(MACS.to_vec());
        // eth1's peer is unknown: the normal path (which resolves it).
        let mut f = frame(MACS[0], SENDER, 0x0a02_0002);
        assert_eq!(bounce.bounce(0, &mut f, own), None);
        let mut back = frame(MACS[1], RECEIVER, 0x0a01_0002);
        assert_eq!(bounce.bounce(1, &mut back, own), Some(0));
        assert_eq!((&back[0..6], &back[6..12]), (&SENDER[..], &MACS[0][..]));
        assert_eq!(bounce.bounce(0, &mut f, own), Some(1));
        assert_eq!((&f[0..6], &f[6..12]), (&RECEIVER[..], &MACS[1][..]));
        // To the firewall, to another MAC, or not IPv4: the normal path.
        assert_eq!(bounce.bounce(0, &mut frame(MACS[0], SENDER, 0x0a01_0001), own), None);
        assert_eq!(bounce.bounce(0, &mut frame(MACS[1], SENDER, 0x0a02_0002), own), None);
        let mut arp = frame(MACS[0], SENDER, 0x0a02_0002);
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(bounce.bounce(0, &mut arp, own), None);
        assert_eq!(bounce.bounce(0, &mut [0u8; 20], own), None);
    }
}
