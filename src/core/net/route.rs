//! Interfaces, connected subnets and static routes: longest-prefix match.

use alloc::vec::Vec;

use super::addr::{is_class_e, is_limited_broadcast, is_loopback, is_multicast, is_this_network, Cidr};
use crate::flow::IfIndex;

/// Reverse-path filtering of what arrives on an interface: Linux's
/// `rp_filter` (RFC 3704), whose `0`, `1` and `2` are `Off`, `Strict` and
/// `Loose`. A firewall defaults to `Strict`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ReversePathFilter {
    /// The route back to the source must leave by the interface the
    /// packet arrived on (RFC 3704 strict mode).
    #[default]
    Strict,
    /// Some route back to the source must exist, by any interface (RFC
    /// 3704 feasible/loose mode).
    Loose,
    /// No check (the firewall's own addresses are still refused as sources).
    Off,
}

impl ReversePathFilter {
    /// The rules file's word for the mode.
    pub fn name(self) -> &'static str {
        match self {
            ReversePathFilter::Strict => "strict",
            ReversePathFilter::Loose => "loose",
            ReversePathFilter::Off => "off",
        }
    }
}

/// One data-plane interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InterfaceConfig {
    /// The interface's MAC address.
    pub mac: [u8; 6],
    /// The firewall's address on it and its connected subnet (`None`: no
    /// address yet, e.g. while DHCP is in progress).
    pub addr: Option<Cidr>,
    /// The largest IP packet it sends (bytes, Ethernet header not
    /// counted): larger ones are fragmented, or refused with ICMP
    /// "fragmentation needed" when they have Don't Fragment.
    pub mtu: u16,
    /// How the sources of what arrives here are checked.
    pub reverse_path: ReversePathFilter,
}

impl InterfaceConfig {
    /// An interface with `mac` and `addr`, the default MTU (1500),
    /// filtered strictly.
    pub fn new(mac: [u8; 6], addr: Option<Cidr>) -> InterfaceConfig {
        InterfaceConfig { mac, addr, mtu: super::mtu::DEFAULT_MTU, reverse_path: ReversePathFilter::Strict }
    }

    /// The interface's IPv4 address, if it has one.
    pub fn ip(&self) -> Option<u32> {
        self.addr.map(|cidr| cidr.addr)
    }
}

/// A static route (`prefix/prefix_len via gateway`); the output interface
/// is the one whose connected subnet holds the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaticRoute {
    /// Destination prefix, host order.
    pub prefix: u32,
    /// Prefix length, 0..=32 (0 = default route).
    pub prefix_len: u8,
    /// Next-hop router, host order.
    pub gateway: u32,
}

/// A route an interface learned by DHCP (the router option, or a
/// classless static route of option 121): it leaves by that interface,
/// through a gateway on its subnet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LearnedRoute {
    /// Destination prefix, host order (host bits clear).
    pub prefix: u32,
    /// Prefix length, 0..=32 (0 = default route).
    pub prefix_len: u8,
    /// Next-hop router, host order.
    pub gateway: u32,
}

/// Why a configuration was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigError {
    /// A prefix length above 32 (on the interface or route with this index).
    PrefixTooLong(usize),
    /// The gateway of the static route with this index is on no connected subnet.
    GatewayUnreachable(usize),
    /// More interfaces than `IfIndex` can name (the last value is `NO_IF`).
    TooManyInterfaces,
}

/// Where a route sends a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextHop {
    /// Output interface.
    pub out_if: IfIndex,
    /// Address to resolve with ARP: the gateway, or the destination itself.
    pub addr: u32,
}

#[derive(Debug, Clone, Copy)]
struct Route {
    prefix: u32,
    mask: u32,
    out_if: IfIndex,
    gateway: Option<u32>,
}

/// The netmask of a prefix length (`None` above 32).
pub fn netmask(prefix_len: u8) -> Option<u32> {
    match prefix_len {
        0 => Some(0),
        1..=32 => Some(u32::MAX << (32 - u32::from(prefix_len))),
        _ => None,
    }
}

/// Routes sorted longest prefix first; a linear scan suits the handful of
/// routes a firewall appliance has (connected subnets plus a few statics).
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    /// Connected routes of `interfaces` (those with an address) plus
    /// `statics`, each of whose gateways must be on a connected subnet.
    pub fn new(interfaces: &[InterfaceConfig], statics: &[StaticRoute]) -> Result<RouteTable, ConfigError> {
        let (table, skipped) = RouteTable::build(interfaces, statics, &[])?;
        match skipped.first() {
            Some(&index) => Err(ConfigError::GatewayUnreachable(index)),
            None => Ok(table),
        }
    }

    /// Connected routes of `interfaces`, the `statics` whose gateway is on a
    /// connected subnet (the indices of the others are returned), and the
    /// routes each interface learned (`learned[i]` for interface `i`; one
    /// whose gateway is not on that interface's subnet is left out). Among
    /// equal prefixes, connected routes win, then static ones.
    pub fn build(
        interfaces: &[InterfaceConfig],
        statics: &[StaticRoute],
        learned: &[Vec<LearnedRoute>],
    ) -> Result<(RouteTable, Vec<usize>), ConfigError> {
        if interfaces.len() >= usize::from(crate::flow::NO_IF) {
            return Err(ConfigError::TooManyInterfaces);
        }
        let mut routes = Vec::with_capacity(interfaces.len() + statics.len());
        for (index, interface) in interfaces.iter().enumerate() {
            if let Some(cidr) = interface.addr {
                let mask = netmask(cidr.prefix_len).ok_or(ConfigError::PrefixTooLong(index))?;
                let out_if = index as IfIndex;
                routes.push(Route { prefix: cidr.addr & mask, mask, out_if, gateway: None });
            }
        }
        let connected = RouteTable { routes: routes.clone() };
        let mut skipped = Vec::new();
        for (index, route) in statics.iter().enumerate() {
            let mask = netmask(route.prefix_len).ok_or(ConfigError::PrefixTooLong(index))?;
            match connected.lookup(route.gateway) {
                Some(via) => routes.push(Route {
                    prefix: route.prefix & mask,
                    mask,
                    out_if: via.out_if,
                    gateway: Some(route.gateway),
                }),
                None => skipped.push(index),
            }
        }
        for ((index, interface), learned) in interfaces.iter().enumerate().zip(learned) {
            let Some(cidr) = interface.addr else { continue };
            for route in learned.iter().filter(|route| cidr.contains(route.gateway)) {
                let Some(mask) = netmask(route.prefix_len) else { continue };
                let (prefix, out_if, gateway) = (route.prefix & mask, index as IfIndex, Some(route.gateway));
                routes.push(Route { prefix, mask, out_if, gateway });
            }
        }
        // Stable sort: among equal prefixes, the order above.
        routes.sort_by_key(|route| core::cmp::Reverse(route.mask.count_ones()));
        Ok((RouteTable { routes }, skipped))
    }

    /// The longest-prefix route to `dst`.
    pub fn lookup(&self, dst: u32) -> Option<NextHop> {
        let route = self.routes.iter().find(|route| dst & route.mask == route.prefix)?;
        Some(NextHop { out_if: route.out_if, addr: route.gateway.unwrap_or(dst) })
    }
}

/// RFC 1812 5.3.7 / 4.2.2.11: a source address no packet may carry here
/// (0/8, 127/8, multicast, class E and limited broadcast).
pub fn is_martian_source(addr: u32) -> bool {
    is_this_network(addr) || is_loopback(addr) || is_multicast(addr) || is_class_e(addr)
}

/// A destination never forwarded or accepted: 0/8, 127/8 and class E
/// (limited broadcast 255.255.255.255 excepted).
pub fn is_martian_destination(addr: u32) -> bool {
    is_this_network(addr) || is_loopback(addr) || (is_class_e(addr) && !is_limited_broadcast(addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interfaces() -> [InterfaceConfig; 2] {
        [
            InterfaceConfig::new([2, 0, 0, 0, 0, 1], Cidr::new(0x0a01_0001, 24)),
            InterfaceConfig::new([2, 0, 0, 0, 0, 2], Cidr::new(0x0a02_0001, 24)),
        ]
    }

    #[test]
    fn longest_prefix_wins() {
        let statics = [
            StaticRoute { prefix: 0, prefix_len: 0, gateway: 0x0a02_00fe },
            StaticRoute { prefix: 0xc0a8_0000, prefix_len: 16, gateway: 0x0a01_00fe },
        ];
        let table = RouteTable::new(&interfaces(), &statics).unwrap();
        assert_eq!(table.lookup(0x0a01_0002), Some(NextHop { out_if: 0, addr: 0x0a01_0002 }));
        assert_eq!(table.lookup(0x0a02_0009), Some(NextHop { out_if: 1, addr: 0x0a02_0009 }));
        assert_eq!(table.lookup(0xc0a8_0102), Some(NextHop { out_if: 0, addr: 0x0a01_00fe }));
        assert_eq!(table.lookup(0x0808_0808), Some(NextHop { out_if: 1, addr: 0x0a02_00fe }));
    }

    #[test]
    fn no_default_means_no_route() {
        let table = RouteTable::new(&interfaces(), &[]).unwrap();
        assert_eq!(table.lookup(0x0808_0808), None);
    }

    #[test]
    fn bad_configuration_is_refused() {
        let unreachable = [StaticRoute { prefix: 0, prefix_len: 0, gateway: 0x0b00_0001 }];
        assert_eq!(RouteTable::new(&interfaces(), &unreachable).unwrap_err(), ConfigError::GatewayUnreachable(0));
        let long = [StaticRoute { prefix: 0, prefix_len: 33, gateway: 0x0a01_0002 }];
        assert_eq!(RouteTable::new(&interfaces(), &long).unwrap_err(), ConfigError::PrefixTooLong(0));
    }

    #[test]
    fn learned_routes_leave_by_their_interface_after_connected_and_static_ones() {
        let statics = [
            StaticRoute { prefix: 0, prefix_len: 0, gateway: 0x0a02_00fe },
            StaticRoute { prefix: 0x0a09_0000, prefix_len: 16, gateway: 0x0a03_00fe },
        ];
        let learned = [
            vec![
                LearnedRoute { prefix: 0, prefix_len: 0, gateway: 0x0a01_00fe },
                LearnedRoute { prefix: 0x0a04_0000, prefix_len: 24, gateway: 0x0a01_00fd },
                LearnedRoute { prefix: 0x0a02_0000, prefix_len: 24, gateway: 0x0a01_00fd },
                // Not on eth0's subnet: left out.
                LearnedRoute { prefix: 0x0a05_0000, prefix_len: 24, gateway: 0x0a02_00fd },
            ],
            vec![],
        ];
        let (table, skipped) = RouteTable::build(&interfaces(), &statics, &learned).unwrap();
        assert_eq!(skipped, [1], "no interface on 10.3.0.0/24 yet");
        assert_eq!(table.lookup(0x0a04_0009), Some(NextHop { out_if: 0, addr: 0x0a01_00fd }));
        assert_eq!(table.lookup(0x0a02_0009), Some(NextHop { out_if: 1, addr: 0x0a02_0009 }), "connected wins");
        assert_eq!(table.lookup(0x0808_0808), Some(NextHop { out_if: 1, addr: 0x0a02_00fe }), "static wins");
        assert_eq!(table.lookup(0x0a05_0001), Some(NextHop { out_if: 1, addr: 0x0a02_00fe }));
        // Without an address, an interface's learned routes are not used.
        let mut down = interfaces();
        down[0].addr = None;
        let (table, _) = RouteTable::build(&down, &[], &learned).unwrap();
        assert_eq!(table.lookup(0x0a04_0009), None);
    }

    #[test]
    fn martians() {
        assert!(is_martian_source(0x7f00_0001));
        assert!(is_martian_source(0xe000_0001));
        assert!(is_martian_source(u32::MAX));
        assert!(!is_martian_source(0x0a01_0002));
        assert!(!is_martian_destination(u32::MAX));
        assert!(is_martian_destination(0xf000_0001));
        assert!(is_martian_destination(0));
    }
}
