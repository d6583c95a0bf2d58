//! The firewall's main loop. Every received frame goes through the packet
//! path (`unifw_core::net::Dataplane`: validation, connection tracking, the
//! compiled rules, routing, ARP); forwarded frames leave by their output
//! NIC, frames for the firewall itself go to its IP stack. Polling is
//! adaptive: busy while frames flow, then NIC interrupts and `hlt` until a
//! frame or the next deadline.

use crate::kernel::arch::idt::{NIC_INTERRUPTS, TIMER_INTERRUPTS};
use crate::kernel::arch::{apic, clock, cpu};
use crate::kernel::nics::NicSet;
use crate::kernel::port::StackPort;
use crate::kernel::stack::Stack;
use crate::kernel::virtio::buffers::Slot;
use crate::kernel::virtio::net::{feature, HDR_NEEDS_CSUM};
use crate::kernel::virtio::FoundNic;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::ops::Range;
use core::sync::atomic::Ordering;
use smoltcp::time::Instant;
use smoltcp::wire::EthernetAddress;
use unifw_core::flow::{Chain, PacketKey, Verdict};
use unifw_core::image::IfAddr;
use unifw_core::image::Image;
use unifw_core::net::{Dataplane, DataplaneConfig, Disposition, DropReason, InterfaceConfig, StaticRoute};

/// Keep polling this long after the last frame before sleeping, by
/// default (`unifw.busypoll=MICROSECONDS` sets it): longer trades host CPU
/// for latency, since waking a halted vCPU costs the host a thread wake-up.
pub const BUSY_POLL_DEFAULT_US: u32 = 500;
/// Frames taken from one NIC before looking at the others.
const RX_BUDGET: usize = 64;
/// Wake-up period for NICs whose interrupts cannot reach us.
const FALLBACK_POLL_US: u64 = 1_000;
/// The packet path's housekeeping (ARP retries, flow expiry): this often
/// while busy, and at least this often while idle.
const HOUSEKEEPING_BUSY_MS: u64 = 100;
const HOUSEKEEPING_IDLE_MS: u64 = 1_000;
/// Counters are reported on the console this often by default, when they
/// changed (`unifw.stats=SECONDS` sets it; 0 turns reports off).
pub const REPORT_DEFAULT_SECONDS: u32 = 60;

/// All NICs, the packet path and the loop that serves them.
pub struct Firewall {
    names: Vec<String>,
    nics: NicSet,
    stacks: Vec<Option<Stack>>,
    all_can_wake: bool,
    dataplane: RefCell<Dataplane>,
    image: Image<'static>,
    /// Frames received on NICs that are down.
    dropped_down: Vec<u64>,
    next_housekeeping_ms: u64,
    next_report_ms: u64,
    report_ms: u64,
    reported: u64,
    busy_poll_us: u64,
}

impl Firewall {
    /// Brings up each found NIC with its address plan (eth0 first) and
    /// builds the packet path with the image's routes and limits.
    pub fn new(
        found: Vec<FoundNic>,
        plan: &[Option<IfAddr>],
        image: Image<'static>,
        report_seconds: u32,
        busy_poll_us: u32,
    ) -> Firewall {
        let count = found.len();
        let all_can_wake = found.iter().all(|nic| nic.can_wake);
        let names: Vec<String> = (0..count).map(|index| format!("eth{index}")).collect();
        let interfaces = found
            .iter()
            .enumerate()
            .map(|(index, nic)| announce(&names[index], nic, plan.get(index).copied().flatten()))
            .collect();
        let nics = NicSet::new(found.into_iter().map(|nic| nic.driver).collect());
        let dataplane = RefCell::new(build_dataplane(interfaces, &image));
        let stacks =
            (0..count).map(|i| bring_up(&names[i], i, plan.get(i).copied().flatten(), &nics, &dataplane)).collect();
        let report_ms = u64::from(report_seconds) * 1000;
        Firewall {
            names,
            nics,
            stacks,
            all_can_wake,
            dataplane,
            image,
            dropped_down: alloc::vec![0; count],
            next_housekeeping_ms: 0,
            next_report_ms: report_ms,
            report_ms,
            reported: 0,
            busy_poll_us: u64::from(busy_poll_us),
        }
    }

    /// Serves the network forever.
    pub fn run(&mut self) -> ! {
        let mut last_work = clock::now_us();
        loop {
            let now = clock::now_us();
            if self.poll_once(now) {
                last_work = now;
            } else if now.saturating_sub(last_work) < self.busy_poll_us {
                cpu::relax();
            } else {
                self.sleep();
                // Poll once more; only frames found then restart the busy
                // window (a timer wake-up with nothing to do sleeps again).
                last_work = clock::now_us().saturating_sub(self.busy_poll_us);
            }
        }
    }

    fn poll_once(&mut self, now_us: u64) -> bool {
        let now_ms = now_us / 1000;
        let timestamp = Instant::from_micros(now_us as i64);
        let mut work = false;
        for index in 0..self.nics.len() {
            for _ in 0..RX_BUDGET {
                let Some((slot, frame)) = self.nics.receive(index) else {
                    break;
                };
                work = true;
                self.handle_frame(index, slot, frame, now_ms, timestamp);
            }
        }
        for index in 0..self.nics.len() {
            work |= self.poll_stack(index, now_ms, timestamp);
        }
        // Frames queued above leave before any housekeeping runs.
        self.nics.reclaim_and_flush();
        if now_ms >= self.next_housekeeping_ms {
            self.housekeeping(now_ms);
            self.nics.reclaim_and_flush();
        }
        work
    }

    /// One frame through the packet path, then out, up or back to its NIC.
    fn handle_frame(&mut self, index: usize, mut slot: Slot, frame: Range<usize>, now_ms: u64, timestamp: Instant) {
        let Some(stack) = self.stacks[index].as_mut() else {
            self.dropped_down[index] += 1;
            self.nics.recycle(slot);
            return;
        };
        let image = &self.image;
        let classifier = |chain: Chain, key: &PacketKey| -> Verdict { image.classify(chain, key) };
        let mut sink = &self.nics;
        let Some(bytes) = slot.bytes_mut().get_mut(frame.clone()) else {
            // The device claimed more bytes than the buffer holds.
            if let Some(nic) = self.nics.nic(index) {
                nic.borrow_mut().stats.bad_length += 1;
            }
            self.nics.recycle(slot);
            return;
        };
        let disposition = self.dataplane.borrow_mut().handle_frame(now_ms, index as u8, bytes, &classifier, &mut sink);
        match disposition {
            Disposition::Forward { out_if, len } => self.nics.forward(usize::from(out_if), slot, len),
            Disposition::Local => {
                complete_checksum(&mut slot, frame.clone());
                let mut port = StackPort::new(&self.nics, index, &self.dataplane, now_ms);
                port.deliver(slot, frame);
                stack.poll(timestamp, &mut port);
            }
            Disposition::Queued | Disposition::Drop(_) => self.nics.recycle(slot),
        }
    }

    /// Runs one NIC's stack for timers and DHCP; true if it did anything.
    fn poll_stack(&mut self, index: usize, now_ms: u64, timestamp: Instant) -> bool {
        let Some(stack) = self.stacks[index].as_mut() else {
            return false;
        };
        let mut port = StackPort::new(&self.nics, index, &self.dataplane, now_ms);
        let work = stack.poll(timestamp, &mut port);
        drop(port);
        if let Some(change) = stack.poll_dhcp(&self.names[index]) {
            let result = self.dataplane.borrow_mut().set_interface_address(index as u8, change.addr, change.prefix_len);
            if let Err(e) = result {
                log::error!("{}: the packet path refused the DHCP address: {e:?}", self.names[index]);
            }
        }
        work
    }

    fn housekeeping(&mut self, now_ms: u64) {
        let mut sink = &self.nics;
        let deadline = self.dataplane.borrow_mut().poll(now_ms, &mut sink);
        let periodic = now_ms + HOUSEKEEPING_BUSY_MS;
        self.next_housekeeping_ms = deadline.map_or(periodic, |d| d.min(periodic));
        if self.report_ms > 0 && now_ms >= self.next_report_ms {
            self.next_report_ms = now_ms + self.report_ms;
            self.report();
        }
    }

    /// Logs the counters if they changed since the last report.
    fn report(&mut self) {
        let dataplane = self.dataplane.borrow();
        let counters = dataplane.counters();
        let mut total = 0;
        for (index, name) in self.names.iter().enumerate() {
            let (Some(c), Some(nic)) = (counters.interfaces.get(index), self.nics.nic(index)) else {
                continue;
            };
            let s = nic.borrow().stats;
            total += s.received + s.sent;
            log::info!(
                "{name}: received {} forwarded out {} local {} dropped {} (down {}, bad length {}) sent {} not sent {}",
                s.received,
                c.forwarded_out,
                c.local,
                c.total_drops(),
                self.dropped_down[index],
                s.bad_length,
                s.sent,
                s.queue_full + s.pool_empty + s.offload_missing + s.too_large
            );
        }
        if total != self.reported {
            for (index, name) in self.names.iter().enumerate() {
                let Some(c) = counters.interfaces.get(index) else { continue };
                for reason in DropReason::ALL {
                    let n = c.drop_count(reason);
                    if n > 0 {
                        log::info!("{name}: dropped {n} {reason:?}");
                    }
                }
            }
            let e = &counters.events;
            log::info!(
                "flows {} of {}; ICMP errors sent {} (rate-limited {}); RSTs sent {}; ARP requests {}; \
                 woken by NICs {} and by the timer {}",
                dataplane.conntrack().len(),
                dataplane.conntrack().capacity(),
                e.icmp_errors_sent,
                e.icmp_errors_rate_limited,
                e.tcp_resets_sent,
                e.arp_requests_sent,
                NIC_INTERRUPTS.load(Ordering::Relaxed),
                TIMER_INTERRUPTS.load(Ordering::Relaxed)
            );
        }
        self.reported = total;
    }

    /// Sleeps until a NIC interrupt or the next deadline.
    fn sleep(&mut self) {
        // Idle time is when receive rings grow to full size (clearing 64 KiB
        // buffers at boot would delay the first reply).
        if self.nics.grow() {
            return;
        }
        cpu::disable_interrupts();
        let mut pending = false;
        for index in 0..self.nics.len() {
            let Some(nic) = self.nics.nic(index) else {
                continue;
            };
            let driver = &mut nic.borrow_mut().driver;
            driver.set_receive_interrupts(true);
            driver.ack_interrupt();
            pending |= driver.can_receive();
        }
        if !pending {
            apic::timer_oneshot(Some(self.sleep_budget_us()));
            cpu::enable_interrupts_and_halt();
            cpu::disable_interrupts();
            apic::timer_oneshot(None);
        }
        for index in 0..self.nics.len() {
            if let Some(nic) = self.nics.nic(index) {
                nic.borrow_mut().driver.set_receive_interrupts(false);
            }
        }
    }

    /// How long the loop may sleep: until the stacks' next deadline, the
    /// packet path's housekeeping, or the fallback poll for NICs that
    /// cannot interrupt.
    fn sleep_budget_us(&mut self) -> u64 {
        let now_us = clock::now_us();
        let timestamp = Instant::from_micros(now_us as i64);
        let housekeeping = self.next_housekeeping_ms.max(now_us / 1000 + HOUSEKEEPING_IDLE_MS);
        let mut budget = (housekeeping * 1000).saturating_sub(now_us);
        for stack in self.stacks.iter_mut().flatten() {
            if let Some(delay) = stack.poll_delay(timestamp) {
                budget = budget.min(delay);
            }
        }
        if !self.all_can_wake {
            budget = budget.min(FALLBACK_POLL_US);
        }
        budget
    }
}

/// Logs what a NIC is and returns its configuration for the packet path.
fn announce(name: &str, nic: &FoundNic, addr: Option<IfAddr>) -> InterfaceConfig {
    let mac = nic.driver.mac();
    let wake = if nic.can_wake { "interrupts" } else { "polled (no interrupt route)" };
    log::info!(
        "{name}: virtio-net {} mac {} wake {wake}, offloads {}",
        nic.location,
        EthernetAddress(mac),
        describe_offloads(nic.driver.features())
    );
    match addr {
        Some(IfAddr::Static { addr, prefix_len }) => InterfaceConfig { mac, addr, prefix_len },
        _ => InterfaceConfig { mac, addr: 0, prefix_len: 0 },
    }
}

/// The IP stack of NIC `index`, or `None` when the NIC is down.
fn bring_up(
    name: &str,
    index: usize,
    addr: Option<IfAddr>,
    nics: &NicSet,
    dataplane: &RefCell<Dataplane>,
) -> Option<Stack> {
    let Some(addr) = addr else {
        log::info!("{name}: down");
        return None;
    };
    let mut port = StackPort::new(nics, index, dataplane, clock::now_ms());
    let mac = nics.nic(index).map_or([0; 6], |nic| nic.borrow().driver.mac());
    Some(Stack::new(name, EthernetAddress(mac), addr, &mut port))
}

/// A frame for the firewall's own stack may carry a partial checksum (the
/// host offloaded it, `NEEDS_CSUM` in the virtio header): smoltcp verifies
/// checksums, so complete it first.
fn complete_checksum(slot: &mut Slot, frame: Range<usize>) {
    let bytes = slot.bytes_mut();
    let Some(header) = bytes.get(..10) else { return };
    if header[0] & HDR_NEEDS_CSUM == 0 {
        return;
    }
    let start = usize::from(u16::from_le_bytes([header[6], header[7]]));
    let offset = usize::from(u16::from_le_bytes([header[8], header[9]]));
    if let Some(frame) = bytes.get_mut(frame) {
        unifw_core::net::checksum::complete_partial(frame, start, offset);
    }
}

/// The negotiated offloads, for the boot log.
fn describe_offloads(features: u64) -> &'static str {
    let rx = features & feature::GUEST_TSO4 != 0;
    let tx = features & feature::HOST_TSO4 != 0;
    match (rx, tx, features & (feature::CSUM | feature::GUEST_CSUM) != 0) {
        (true, true, _) => "csum+tso4 both ways",
        (true, false, _) => "csum+tso4 receive only",
        (false, true, _) => "csum+tso4 transmit only",
        (false, false, true) => "checksum only",
        (false, false, false) => "none",
    }
}

/// The packet path, from the NICs' addresses and the image's routes and
/// limits. A route the packet path rejects is reported and left out.
fn build_dataplane(interfaces: Vec<InterfaceConfig>, image: &Image) -> Dataplane {
    let mut routes: Vec<StaticRoute> =
        image.routes().map(|r| StaticRoute { prefix: r.dest, prefix_len: r.prefix_len, gateway: r.gateway }).collect();
    let rules = image.total_rules() as usize;
    let capacity = image.conntrack_capacity() as usize;
    loop {
        let mut config = DataplaneConfig::new(interfaces.clone(), routes.clone(), rules, capacity);
        config.hash_seed = cpu::random_seed();
        match Dataplane::new(config) {
            Ok(dataplane) => return dataplane,
            Err(unifw_core::net::ConfigError::GatewayUnreachable(i)) if i < routes.len() => {
                log::error!("route {:?}: its gateway is on no connected subnet; route ignored", routes[i]);
                routes.remove(i);
            }
            Err(e) => panic!("packet path configuration refused: {e:?}"),
        }
    }
}
