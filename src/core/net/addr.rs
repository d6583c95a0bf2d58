//! Special IPv4 and Ethernet addresses, named once: the forwarding
//! decision, the martian checks and the ICMP error rules all ask these.
//! IPv4 addresses are host-order `u32`s.

/// An interface's IPv4 address and the prefix length of its subnet: the
/// one type for it, whether it comes from the rules file, the kernel
/// command line or DHCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    /// The address, host order.
    pub addr: u32,
    /// The subnet's prefix length, 0..=32.
    pub prefix_len: u8,
}

impl Cidr {
    /// `addr/prefix_len`; `None` for a prefix length above 32.
    pub fn new(addr: u32, prefix_len: u8) -> Option<Cidr> {
        (prefix_len <= 32).then_some(Cidr { addr, prefix_len })
    }

    /// The subnet mask (0 for /0).
    pub fn netmask(&self) -> u32 {
        crate::flow::mask(self.prefix_len)
    }

    /// Whether `ip` is on this subnet.
    pub fn contains(&self, ip: u32) -> bool {
        (ip ^ self.addr) & self.netmask() == 0
    }

    /// The subnet's directed broadcast address; `None` on /31 and /32
    /// subnets, which have none (RFC 3021).
    pub fn broadcast(&self) -> Option<u32> {
        (self.prefix_len < 31).then(|| self.addr | !self.netmask())
    }
}

impl core::fmt::Display for Cidr {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}/{}", core::net::Ipv4Addr::from(self.addr), self.prefix_len)
    }
}

/// A MAC address shown as the rules file and the command line write it
/// (`52:54:00:12:34:56`; smoltcp's `EthernetAddress` uses dashes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MacAddr(pub [u8; 6]);

impl core::fmt::Display for MacAddr {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// 0.0.0.0, "this host on this network" (RFC 1122 3.2.1.3 (a)): only ever a
/// source, while a host learns its address (DHCP).
pub fn is_unspecified(addr: u32) -> bool {
    addr == 0
}

/// 0.0.0.0/8, "this network" (RFC 1122 3.2.1.3 (a)/(b), RFC 6890).
pub fn is_this_network(addr: u32) -> bool {
    addr >> 24 == 0
}

/// 127.0.0.0/8, loopback (RFC 1122 3.2.1.3 (g)): never on a wire.
pub fn is_loopback(addr: u32) -> bool {
    addr >> 24 == 127
}

/// 224.0.0.0/4, multicast (class D, RFC 1112 4, RFC 5771).
pub fn is_multicast(addr: u32) -> bool {
    addr >> 28 == 0xe
}

/// 240.0.0.0/4, reserved (class E, RFC 1112 4, RFC 6890); it includes the
/// limited broadcast address.
pub fn is_class_e(addr: u32) -> bool {
    addr >> 28 == 0xf
}

/// 255.255.255.255, the limited broadcast (RFC 919, RFC 1122 3.2.1.3 (c)).
pub fn is_limited_broadcast(addr: u32) -> bool {
    addr == u32::MAX
}

/// Whether an Ethernet destination is a group address, multicast or
/// broadcast: IEEE 802's I/G bit, the least significant bit of the first
/// octet (RFC 1122 3.3.6 counts both as link-layer broadcasts).
pub fn mac_is_group(mac: &[u8; 6]) -> bool {
    mac[0] & 1 != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_masks_contains_and_broadcasts() {
        let lab = Cidr::new(0x0a01_0001, 24).expect("valid");
        assert_eq!(lab.netmask(), 0xffff_ff00);
        assert!(lab.contains(0x0a01_00fe) && !lab.contains(0x0a02_0001));
        assert_eq!(lab.broadcast(), Some(0x0a01_00ff));
        assert_eq!(Cidr::new(0x0a01_0001, 31).and_then(|c| c.broadcast()), None);
        assert_eq!(Cidr::new(1, 33), None);
        assert!(Cidr::new(5, 0).expect("valid").contains(u32::MAX));
        assert_eq!(alloc::format!("{lab}"), "10.1.0.1/24");
    }

    #[test]
    fn ipv4_classes() {
        assert!(is_unspecified(0) && !is_unspecified(1));
        assert!(is_this_network(0) && is_this_network(0x00ff_ffff) && !is_this_network(0x0100_0000));
        assert!(is_loopback(0x7f00_0001) && is_loopback(0x7fff_ffff) && !is_loopback(0x8000_0000));
        assert!(is_multicast(0xe000_0000) && is_multicast(0xefff_ffff));
        assert!(!is_multicast(0xdfff_ffff) && !is_multicast(0xf000_0000));
        assert!(is_class_e(0xf000_0000) && is_class_e(u32::MAX) && !is_class_e(0xefff_ffff));
        assert!(is_limited_broadcast(u32::MAX) && !is_limited_broadcast(0xffff_fffe));
    }

    #[test]
    fn ethernet_group_addresses() {
        assert!(mac_is_group(&[0xff; 6]), "broadcast");
        assert!(mac_is_group(&[0x01, 0x00, 0x5e, 0, 0, 1]), "IPv4 multicast");
        assert!(!mac_is_group(&[0x52, 0x54, 0, 0x12, 0x34, 0x56]));
        assert!(!mac_is_group(&[0x02, 0, 0, 0, 0, 0]), "locally administered unicast");
    }
}
