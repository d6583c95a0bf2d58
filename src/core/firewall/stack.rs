//! The firewall's own IP stack on one NIC: a smoltcp interface that answers
//! ARP and ICMP echo on the firewall's address, a DHCP client when the
//! interface is configured by DHCP, and the `/metrics` server when the
//! rules ask for one there.
//!
//! DHCP: smoltcp's client discovers, requests, renews (at T1, unicast to
//! its server) and rebinds (at T2, broadcast), and reports each change.
//! Each lease's routes come from its reply ([`super::dhcp`]: option 121,
//! else the router option). With a fallback, the interface takes its
//! static fallback address once `after_seconds` have passed since boot
//! without a lease (and at once when a lease is lost after that); the
//! client keeps asking, and a lease that comes replaces the fallback.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::net::Ipv4Addr;

use super::dhcp::{self, LeaseRoutes, Skipped};
use super::exposition::Sources;
use super::metrics::MetricsServer;
use crate::image::{Fallback, IfAddr};
use crate::net::addr::Cidr;
use crate::net::route::LearnedRoute;
use smoltcp::iface::{Config, Interface, PollResult, SocketHandle, SocketSet};
use smoltcp::phy::Device;
use smoltcp::socket::dhcpv4;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Address, Ipv4Cidr};

/// Room for the DHCP reply the client keeps for us (its options hold the
/// classless static routes): the largest that fits a 1500-byte IP packet.
const DHCP_MESSAGE_MAX: usize = 1500 - 20 - 8;

/// Where an interface's address came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressSource {
    /// The rules file or the command line.
    Static,
    /// A DHCP lease.
    Dhcp,
    /// The DHCP interface's static fallback.
    Fallback,
}

/// An interface's address and where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Address {
    /// The address and prefix length.
    pub cidr: Cidr,
    /// Where it came from.
    pub source: AddressSource,
}

impl core::fmt::Display for Address {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.source {
            AddressSource::Static => write!(f, "{}", self.cidr),
            AddressSource::Dhcp => write!(f, "{} by DHCP", self.cidr),
            AddressSource::Fallback => write!(f, "{} fallback", self.cidr),
        }
    }
}

/// A change the rest of the firewall must follow: the interface's address
/// now (`None`: it has none) and the routes it learned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressChange {
    /// The address, if any.
    pub address: Option<Address>,
    /// The routes of the lease (none for a static or fallback address).
    pub routes: Vec<LearnedRoute>,
    /// The lease's interface MTU (DHCP option 26), which replaces the
    /// rules file's; `None` without a lease or without the option.
    pub mtu: Option<u16>,
}

/// The DHCP client's state beside smoltcp's socket.
struct DhcpClient {
    handle: SocketHandle,
    /// Whether a lease is held.
    leased: bool,
    /// The static fallback, and from when it applies.
    fallback: Option<(Fallback, Instant)>,
    /// The routes of the lease held.
    routes: Vec<LearnedRoute>,
    /// The interface MTU of the lease held (option 26), if it gave one.
    mtu: Option<u16>,
}

/// What the DHCP client reported.
enum News {
    /// A lease: its address, router option, routes and interface MTU.
    Lease(Cidr, Option<u32>, LeaseRoutes, Option<u16>),
    /// The lease is gone (expired or refused).
    Lost,
}

/// smoltcp interface, its sockets, and the DHCP client if any.
pub struct Stack {
    iface: Interface,
    sockets: SocketSet<'static>,
    dhcp: Option<DhcpClient>,
    address: Option<Address>,
    /// The firewall's addresses on its other NICs, answered here too.
    others: Vec<u32>,
    metrics: Option<MetricsServer>,
}

impl Stack {
    /// Brings the stack up on `device` with `addr` (and for DHCP, the
    /// `fallback`), at time `now`.
    pub fn new<D: Device>(
        name: &str,
        mac: EthernetAddress,
        (addr, fallback): (IfAddr, Option<Fallback>),
        device: &mut D,
        now: Instant,
    ) -> Stack {
        let config = Config::new(HardwareAddress::Ethernet(mac));
        let iface = Interface::new(config, device, now);
        let mut stack = Stack {
            iface,
            sockets: SocketSet::new(vec![]),
            dhcp: None,
            address: None,
            others: Vec::new(),
            metrics: None,
        };
        match addr {
            IfAddr::Static(cidr) => {
                stack.set_address(Some(Address { cidr, source: AddressSource::Static }), &[]);
                log::info!("{name}: up {cidr}");
            }
            IfAddr::Dhcp => {
                let mut socket = dhcpv4::Socket::new();
                socket.set_parameter_request_list(dhcp::PARAMETER_REQUEST_LIST);
                // The stack lives as long as the firewall: this one buffer
                // per DHCP interface is never freed.
                socket.set_receive_packet_buffer(Box::leak(vec![0u8; DHCP_MESSAGE_MAX].into_boxed_slice()));
                let handle = stack.sockets.add(socket);
                let fallback = fallback.map(|f| (f, now + Duration::from_secs(u64::from(f.after_seconds))));
                stack.dhcp = Some(DhcpClient { handle, leased: false, fallback, routes: Vec::new(), mtu: None });
                match fallback {
                    Some((f, _)) => log::info!(
                        "{name}: up, asking DHCP for an address (fallback {} after {} s)",
                        f.addr,
                        f.after_seconds
                    ),
                    None => log::info!("{name}: up, asking DHCP for an address"),
                }
            }
            IfAddr::Unconfigured => log::info!("{name}: up, no address"),
        }
        stack
    }

    /// The interface's address now.
    pub fn address(&self) -> Option<Address> {
        self.address
    }

    /// The firewall's addresses on its other NICs: the stack answers for
    /// them too (as /32s: no subnet of theirs is on this link), as Linux
    /// does for any of its addresses on any interface (the weak host
    /// model: a ping from the sender's side to the receiver's side address
    /// gets its reply). The packet path has already judged such a packet
    /// local, by the INPUT chain.
    pub fn set_other_addresses(&mut self, others: &[u32]) {
        if self.others != others {
            self.others = others.to_vec();
            self.apply_addresses();
        }
    }

    /// Whether the interface should have an address and has none yet (a
    /// DHCP interface without lease or fallback).
    pub fn is_waiting(&self) -> bool {
        self.dhcp.is_some() && self.address.is_none()
    }

    /// Whether the interface runs a DHCP client.
    pub fn is_dhcp(&self) -> bool {
        self.dhcp.is_some()
    }

    /// Serves `/metrics` from this stack's own sockets.
    pub fn serve_metrics(&mut self, mut server: MetricsServer) {
        server.open(&mut self.sockets);
        self.metrics = Some(server);
    }

    /// Runs the metrics server once (after [`Stack::poll`]); true if it did
    /// anything, which the next poll sends.
    pub fn poll_metrics(&mut self, timestamp: Instant, sources: &Sources<'_, '_>) -> bool {
        let Some(server) = self.metrics.as_mut() else { return false };
        server.poll(timestamp, &mut self.sockets, sources)
    }

    /// The metrics server, if this stack has one.
    pub fn metrics(&self) -> Option<&MetricsServer> {
        self.metrics.as_ref()
    }

    /// Runs the stack once on `device` (which may hold one received frame).
    /// True if anything happened.
    pub fn poll<D: Device>(&mut self, timestamp: Instant, device: &mut D) -> bool {
        self.iface.poll(timestamp, device, &mut self.sockets) != PollResult::None
    }

    /// Microseconds until the stack needs polling again (smoltcp's timers
    /// and the fallback's), if it has a deadline.
    pub fn poll_delay(&mut self, timestamp: Instant) -> Option<u64> {
        let stack = self.iface.poll_delay(timestamp, &self.sockets).map(|d| d.total_micros());
        let fallback = self.pending_fallback().map(|(_, at)| (at - timestamp).total_micros());
        match (stack, fallback) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The fallback and when it applies, while it is still to come.
    fn pending_fallback(&self) -> Option<(Fallback, Instant)> {
        let client = self.dhcp.as_ref()?;
        let on_fallback = self.address.is_some_and(|a| a.source == AddressSource::Fallback);
        client.fallback.filter(|_| !client.leased && !on_fallback)
    }

    /// Applies the DHCP client's news and the fallback timer at `now`;
    /// returns the change the packet path must follow, if any. Call it
    /// after every [`Stack::poll`]: the client keeps only the last reply it
    /// took, whose options give the routes.
    pub fn update(&mut self, name: &str, now: Instant) -> Option<AddressChange> {
        let client = self.dhcp.as_mut()?;
        let news = match self.sockets.get_mut::<dhcpv4::Socket>(client.handle).poll() {
            Some(dhcpv4::Event::Configured(config)) => {
                let cidr = Cidr::new(config.address.address().to_bits(), config.address.prefix_len());
                let router = config.router.map(Ipv4Addr::to_bits);
                let message = config.packet.map(|packet| packet.into_inner());
                let mtu = message.and_then(dhcp::interface_mtu);
                cidr.map(|cidr| News::Lease(cidr, router, lease_routes(name, cidr, router, message), mtu))
            }
            // smoltcp also reports this once at start, before any lease.
            Some(dhcpv4::Event::Deconfigured) if client.leased => Some(News::Lost),
            Some(dhcpv4::Event::Deconfigured) | None => None,
        };
        match news {
            Some(News::Lease(cidr, router, lease, mtu)) => return self.leased(name, cidr, router, (lease, mtu)),
            Some(News::Lost) => {
                client.leased = false;
                client.routes.clear();
                client.mtu = None;
                log::warn!("{name}: DHCP lease lost");
                return Some(self.after_lease_lost(name, now));
            }
            None => {}
        }
        let (fallback, at) = self.pending_fallback()?;
        if now < at || self.address.is_some() {
            return None;
        }
        log::warn!(
            "{name}: no DHCP lease within {} s; using the fallback {} (DHCP keeps asking)",
            fallback.after_seconds,
            fallback.addr
        );
        Some(self.change(Some(Address { cidr: fallback.addr, source: AddressSource::Fallback }), Vec::new()))
    }

    /// A lease (new, renewed or changed): the change to follow, if any.
    fn leased(
        &mut self,
        name: &str,
        cidr: Cidr,
        router: Option<u32>,
        (lease, mtu): (LeaseRoutes, Option<u16>),
    ) -> Option<AddressChange> {
        let client = self.dhcp.as_mut()?;
        let address = Address { cidr, source: AddressSource::Dhcp };
        let renewed =
            client.leased && self.address == Some(address) && client.routes == lease.routes && client.mtu == mtu;
        client.leased = true;
        client.mtu = mtu;
        if let Some(mtu) = mtu {
            log::info!("{name}: DHCP interface MTU {mtu} (option 26)");
        }
        if renewed {
            log::debug!("{name}: DHCP lease of {cidr} renewed");
            return None;
        }
        client.routes.clone_from(&lease.routes);
        let replaces = match self.address {
            Some(old) if old.source == AddressSource::Fallback => format!(" (replaces the fallback {})", old.cidr),
            Some(old) if old.cidr != cidr => format!(" (replaces {})", old.cidr),
            _ => String::new(),
        };
        log::info!("{name}: DHCP address {cidr}{replaces}; {}", describe_routes(&lease, router));
        Some(self.change(Some(address), lease.routes))
    }

    /// After a lease was lost: the fallback if its time has come, else no
    /// address.
    fn after_lease_lost(&mut self, name: &str, now: Instant) -> AddressChange {
        let fallback = self.dhcp.as_ref().and_then(|c| c.fallback).filter(|&(_, at)| now >= at);
        match fallback {
            Some((f, _)) => {
                log::warn!("{name}: using the fallback {} (DHCP keeps asking)", f.addr);
                self.change(Some(Address { cidr: f.addr, source: AddressSource::Fallback }), Vec::new())
            }
            None => self.change(None, Vec::new()),
        }
    }

    /// Sets the address and routes in the stack and returns the change.
    fn change(&mut self, address: Option<Address>, routes: Vec<LearnedRoute>) -> AddressChange {
        self.set_address(address, &routes);
        let mtu = self.dhcp.as_ref().filter(|client| client.leased).and_then(|client| client.mtu);
        AddressChange { address, routes, mtu }
    }

    /// The smoltcp interface's address and default route (the learned one,
    /// for the stack's own replies; the packet path routes by all of them).
    fn set_address(&mut self, address: Option<Address>, routes: &[LearnedRoute]) {
        self.address = address;
        self.apply_addresses();
        match routes.iter().find(|r| r.prefix_len == 0) {
            Some(default) => {
                let _ = self.iface.routes_mut().add_default_ipv4_route(Ipv4Address::from_bits(default.gateway));
            }
            None => {
                self.iface.routes_mut().remove_default_ipv4_route();
            }
        }
    }
}

impl Stack {
    /// The smoltcp interface's addresses: its own first (source address
    /// selection prefers it), then the others as /32s (at most
    /// `MAX_NICS`, the addresses smoltcp is built to hold).
    fn apply_addresses(&mut self) {
        let own = self.address.map(|a| a.cidr);
        let others = &self.others;
        self.iface.update_ip_addrs(|addrs| {
            addrs.clear();
            if let Some(a) = own {
                let cidr = Ipv4Cidr::new(Ipv4Address::from_bits(a.addr), a.prefix_len);
                let _ = addrs.push(IpCidr::Ipv4(cidr));
            }
            for &other in others.iter().filter(|&&o| Some(o) != own.map(|a| a.addr)) {
                let _ = addrs.push(IpCidr::Ipv4(Ipv4Cidr::new(Ipv4Address::from_bits(other), 32)));
            }
        });
    }
}

/// The lease's routes, each one left out reported on the console.
fn lease_routes(name: &str, cidr: Cidr, router: Option<u32>, message: Option<&[u8]>) -> LeaseRoutes {
    dhcp::lease_routes(cidr, router, message, &mut |skipped| match skipped {
        Skipped::Malformed(e) => log::warn!("{name}: DHCP option 121 is malformed ({e:?}); ignored"),
        Skipped::OffSubnet(r) => log::warn!("{name}: DHCP route {}: gateway not on {cidr}; ignored", route_text(&r)),
        Skipped::OnLink(r) => {
            log::warn!("{name}: DHCP route {}: on-link routes are not supported; ignored", route_text(&r))
        }
        Skipped::TooMany(r) => {
            log::warn!("{name}: DHCP route {}: more than {} routes; ignored", route_text(&r), dhcp::MAX_LEARNED_ROUTES)
        }
    })
}

/// `10.4.0.0/24 via 10.3.0.1`, or `default via ...`.
fn route_text(route: &LearnedRoute) -> String {
    let via = Ipv4Addr::from(route.gateway);
    match route.prefix_len {
        0 => format!("default via {via}"),
        len => format!("{}/{len} via {via}", Ipv4Addr::from(route.prefix)),
    }
}

/// The console's account of a lease's routes.
fn describe_routes(lease: &LeaseRoutes, router: Option<u32>) -> String {
    let list: Vec<String> = lease.routes.iter().map(route_text).collect();
    let list = if list.is_empty() { String::from("no routes") } else { format!("routes {}", list.join(", ")) };
    match (lease.classless, router) {
        (true, Some(router)) => format!("{list} (option 121; router option {} ignored)", Ipv4Addr::from(router)),
        (true, None) => format!("{list} (option 121)"),
        (false, Some(_)) => format!("{list} (router option)"),
        (false, None) => list,
    }
}
