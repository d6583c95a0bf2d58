//! The firewall's main loop: per-NIC smoltcp interfaces (ARP, ICMP echo,
//! DHCP) and adaptive polling — busy-poll while frames flow, then enable
//! NIC interrupts and `hlt` until a frame or the next stack deadline.

use crate::kernel::arch::{apic, clock, cpu};
use crate::kernel::config::IfAddr;
use crate::kernel::port::{recycle, PortStats, StackPort};
use crate::kernel::virtio::{FoundNic, NetDevice};
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;
use smoltcp::iface::{Config, Interface, PollResult, SocketHandle, SocketSet};
use smoltcp::socket::dhcpv4;
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Address, Ipv4Cidr};

/// Keep polling this long after the last frame before sleeping.
const BUSY_POLL_US: u64 = 500;
/// Frames taken from one NIC before looking at the others.
const RX_BUDGET: usize = 64;
/// Wake-up period for NICs whose interrupts cannot reach us.
const FALLBACK_POLL_US: u64 = 1_000;

struct Stack {
    iface: Interface,
    sockets: SocketSet<'static>,
    dhcp: Option<SocketHandle>,
}

/// One NIC and, when it is up, its IP stack.
pub struct Nic {
    name: String,
    device: RefCell<Box<NetDevice>>,
    stats: RefCell<PortStats>,
    can_wake: bool,
    stack: Option<Stack>,
    /// Frames received while the NIC is down.
    dropped_down: u64,
}

/// All NICs and the loop that serves them.
pub struct Firewall {
    nics: Vec<Nic>,
}

fn now_instant() -> Instant {
    Instant::from_micros(clock::now_us() as i64)
}

impl Firewall {
    /// Brings up each found NIC with its address plan (eth0 first).
    pub fn new(found: Vec<FoundNic>, plan: &[IfAddr]) -> Firewall {
        let nics = found
            .into_iter()
            .enumerate()
            .map(|(index, nic)| {
                Nic::new(index, nic, plan.get(index).copied().unwrap_or(IfAddr::Off))
            })
            .collect();
        Firewall { nics }
    }

    /// Serves the network forever.
    pub fn run(&mut self) -> ! {
        let mut last_work = clock::now_us();
        loop {
            let now = clock::now_us();
            if self.poll_once(now) {
                last_work = now;
            } else if now.saturating_sub(last_work) < BUSY_POLL_US {
                cpu::relax();
            } else {
                self.sleep();
                last_work = clock::now_us();
            }
        }
    }

    fn poll_once(&mut self, now_us: u64) -> bool {
        let timestamp = Instant::from_micros(now_us as i64);
        let mut work = false;
        for nic in &mut self.nics {
            work |= nic.poll(timestamp);
        }
        work
    }

    /// Sleeps until a NIC interrupt or the stacks' next deadline.
    fn sleep(&mut self) {
        cpu::disable_interrupts();
        let mut pending = false;
        let mut all_can_wake = true;
        for nic in &self.nics {
            let mut device = nic.device.borrow_mut();
            device.enable_interrupts();
            device.ack_interrupt();
            pending |= device.can_recv();
            all_can_wake &= nic.can_wake;
        }
        if !pending {
            let timestamp = now_instant();
            let mut delay = self
                .nics
                .iter_mut()
                .filter_map(|nic| nic.poll_delay(timestamp))
                .min();
            if !all_can_wake {
                delay = Some(delay.map_or(FALLBACK_POLL_US, |d| d.min(FALLBACK_POLL_US)));
            }
            apic::timer_oneshot(delay);
            cpu::enable_interrupts_and_halt();
            cpu::disable_interrupts();
            apic::timer_oneshot(None);
        }
        for nic in &self.nics {
            nic.device.borrow_mut().disable_interrupts();
        }
    }
}

impl Nic {
    fn new(index: usize, found: FoundNic, addr: IfAddr) -> Nic {
        let name = format!("eth{index}");
        let mac = EthernetAddress(found.device.mac_address());
        let wake = if found.can_wake {
            "interrupts"
        } else {
            "polled (no interrupt route)"
        };
        log::info!(
            "{name}: virtio-net {} mac {mac} wake {wake}",
            found.location
        );
        let device = RefCell::new(found.device);
        let stats = RefCell::new(PortStats::default());
        let stack = match addr {
            IfAddr::Off => {
                log::info!("{name}: down");
                None
            }
            _ => {
                let mut port = StackPort::new(&device, &stats);
                Some(Stack::new(&name, mac, addr, &mut port))
            }
        };
        Nic {
            name,
            device,
            stats,
            can_wake: found.can_wake,
            stack,
            dropped_down: 0,
        }
    }

    /// Takes received frames and runs the stack; true if anything happened.
    fn poll(&mut self, timestamp: Instant) -> bool {
        let mut work = false;
        for _ in 0..RX_BUDGET {
            let Ok(frame) = self.device.borrow_mut().receive() else {
                break;
            };
            work = true;
            match &mut self.stack {
                Some(stack) => {
                    let mut port = StackPort::new(&self.device, &self.stats);
                    port.deliver(frame);
                    stack.iface.poll(timestamp, &mut port, &mut stack.sockets);
                    port.flush();
                }
                None => {
                    self.dropped_down += 1;
                    recycle(&self.device, frame);
                }
            }
        }
        if let Some(stack) = &mut self.stack {
            let mut port = StackPort::new(&self.device, &self.stats);
            work |= stack.iface.poll(timestamp, &mut port, &mut stack.sockets) != PollResult::None;
            stack.poll_dhcp(&self.name);
        }
        work
    }

    fn poll_delay(&mut self, timestamp: Instant) -> Option<u64> {
        let stack = self.stack.as_mut()?;
        stack
            .iface
            .poll_delay(timestamp, &stack.sockets)
            .map(|d| d.total_micros())
    }
}

impl Stack {
    fn new(name: &str, mac: EthernetAddress, addr: IfAddr, port: &mut StackPort) -> Stack {
        let config = Config::new(HardwareAddress::Ethernet(mac));
        let mut iface = Interface::new(config, port, now_instant());
        let mut sockets = SocketSet::new(vec![]);
        let mut dhcp = None;
        match addr {
            IfAddr::Static { addr, prefix_len } => {
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
            IfAddr::Off => {}
        }
        Stack {
            iface,
            sockets,
            dhcp,
        }
    }

    fn poll_dhcp(&mut self, name: &str) {
        let Some(handle) = self.dhcp else { return };
        let event = self.sockets.get_mut::<dhcpv4::Socket>(handle).poll();
        match event {
            None => {}
            Some(dhcpv4::Event::Configured(config)) => {
                log::info!(
                    "{name}: DHCP address {} router {:?}",
                    config.address,
                    config.router
                );
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
            }
            Some(dhcpv4::Event::Deconfigured) => {
                log::warn!("{name}: DHCP lease lost");
                self.iface.update_ip_addrs(|addrs| addrs.clear());
                self.iface.routes_mut().remove_default_ipv4_route();
            }
        }
    }
}
