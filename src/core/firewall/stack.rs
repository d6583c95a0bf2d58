//! The firewall's own IP stack on one NIC: a smoltcp interface that answers
//! ARP and ICMP echo on the firewall's address, and a DHCP client when the
//! interface is configured by DHCP.

use crate::image::IfAddr;
use crate::net::addr::Cidr;
use alloc::vec;
use smoltcp::iface::{Config, Interface, PollResult, SocketHandle, SocketSet};
use smoltcp::phy::Device;
use smoltcp::socket::dhcpv4;
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Address, Ipv4Cidr};

/// An address change the rest of the firewall must follow: the new
/// address, or `None` when the lease was lost.
pub type AddressChange = Option<Cidr>;

/// smoltcp interface, its sockets, and the DHCP client if any.
pub struct Stack {
    iface: Interface,
    sockets: SocketSet<'static>,
    dhcp: Option<SocketHandle>,
    leased: bool,
}

impl Stack {
    /// Brings the stack up on `device` with `addr`, at time `now`.
    pub fn new<D: Device>(name: &str, mac: EthernetAddress, addr: IfAddr, device: &mut D, now: Instant) -> Stack {
        let config = Config::new(HardwareAddress::Ethernet(mac));
        let mut iface = Interface::new(config, device, now);
        let mut sockets = SocketSet::new(vec![]);
        let mut dhcp = None;
        match addr {
            IfAddr::Static(Cidr { addr, prefix_len }) => {
                let cidr = Ipv4Cidr::new(Ipv4Address::from_bits(addr), prefix_len);
                iface.update_ip_addrs(|addrs| {
                    let _ = addrs.push(IpCidr::Ipv4(cidr));
                });
                log::info!("{name}: up {cidr}");
            }
            IfAddr::Dhcp => {
                dhcp = Some(sockets.add(dhcpv4::Socket::new()));
                log::info!("{name}: up, asking DHCP for an address");
            }
            IfAddr::Unconfigured => log::info!("{name}: up, no address"),
        }
        Stack { iface, sockets, dhcp, leased: false }
    }

    /// Runs the stack once on `device` (which may hold one received frame).
    /// True if anything happened.
    pub fn poll<D: Device>(&mut self, timestamp: Instant, device: &mut D) -> bool {
        self.iface.poll(timestamp, device, &mut self.sockets) != PollResult::None
    }

    /// Microseconds until the stack needs polling again, if it has a deadline.
    pub fn poll_delay(&mut self, timestamp: Instant) -> Option<u64> {
        self.iface.poll_delay(timestamp, &self.sockets).map(|d| d.total_micros())
    }

    /// Applies DHCP events; returns the address change to propagate.
    pub fn poll_dhcp(&mut self, name: &str) -> Option<AddressChange> {
        let handle = self.dhcp?;
        match self.sockets.get_mut::<dhcpv4::Socket>(handle).poll()? {
            dhcpv4::Event::Configured(config) => {
                self.leased = true;
                log::info!("{name}: DHCP address {} router {:?}", config.address, config.router);
                self.iface.update_ip_addrs(|addrs| {
                    addrs.clear();
                    let _ = addrs.push(IpCidr::Ipv4(config.address));
                });
                match config.router {
                    Some(router) => {
                        let _ = self.iface.routes_mut().add_default_ipv4_route(router);
                    }
                    None => {
                        self.iface.routes_mut().remove_default_ipv4_route();
                    }
                }
                Some(Cidr::new(config.address.address().to_bits(), config.address.prefix_len()))
            }
            dhcpv4::Event::Deconfigured => {
                // smoltcp also reports this once at start, before any lease.
                if !self.leased {
                    return None;
                }
                self.leased = false;
                log::warn!("{name}: DHCP lease lost");
                self.iface.update_ip_addrs(|addrs| addrs.clear());
                self.iface.routes_mut().remove_default_ipv4_route();
                Some(None)
            }
        }
    }
}
