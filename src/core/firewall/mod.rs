//! The firewall node: NICs, the packet path and the firewall's own IP
//! stacks, and one poll of all of them. The kernel (`src/kernel/`) finds
//! the devices, then calls [`Firewall::poll_once`] in a loop and sleeps
//! when it returns no work, until a NIC interrupt or
//! [`Firewall::sleep_budget_us`]. Everything here runs on the host too,
//! against fake devices (`tests/firewall.rs`).
//!
//! Life of a frame (see also `net::forward`):
//! 1. [`NicSet::receive`] takes the buffer from the NIC's receive queue;
//! 2. [`Dataplane::handle_frame`] validates and parses it, tracks its
//!    connection, classifies it with the compiled rules
//!    ([`Image::classify`]), routes it and resolves the next hop's MAC,
//!    rewriting it in place; it returns a [`Disposition`];
//! 3. `Forward`: [`NicSet::forward`] queues the same buffer on the output
//!    NIC (zero copy); it returns home when that NIC is done with it
//!    ([`NicSet::reclaim_and_flush`]);
//!    `Local`: the checksum is completed and [`StackPort`] hands the frame
//!    to the interface's smoltcp stack ([`Stack::poll`]), whose replies go
//!    out through the NIC's transmit pool;
//!    `Queued`/`Drop`: the buffer goes straight back to its receive queue.
//!
//! Every step counts into the data plane's one set of [`Counters`].
//!
//! [`Counters`]: crate::net::Counters

mod bounce;
pub mod dhcp;
pub mod exposition;
pub mod metrics;
pub mod nics;
pub mod plan;
pub mod port;
pub mod report;
pub mod stack;
pub mod worker;

use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::ops::Range;

use smoltcp::time::Instant;
use smoltcp::wire::EthernetAddress;
use spin::{Mutex, MutexGuard};

use crate::flow::{Chain, IfIndex, PacketKey, Verdict};
use crate::image::{IfAddr, Image};
use crate::net::addr::MacAddr;
use crate::net::mtu::clamp_mtu;
use crate::net::{Classifier, ConfigError, Dataplane, DataplaneConfig, InterfaceConfig};
use crate::profile::{Profile, Step};
use bounce::Bounce;
pub use metrics::MetricsServer;
pub use nics::{Buffer, Home, NetDevice, NicSet, Notifications};
pub use plan::{assign_names, interface_plan, InterfacePlan, Naming, Plan};
pub use port::StackPort;
pub use report::Wakeups;
pub use stack::{Address, AddressChange, AddressSource, Stack};
use worker::{clock_now, serve_one, span_stop, Lane, Served, HANDOFF_FRAMES, MAX_WORKERS};
pub use worker::{Shared, Worker};

/// Frames taken from one NIC before looking at the others.
pub const RX_BUDGET: usize = 64;
/// The packet path's housekeeping (ARP retries, flow expiry): this often
/// while busy, and at least this often while idle.
pub const HOUSEKEEPING_BUSY_MS: u64 = 100;
/// At least this often while idle.
pub const HOUSEKEEPING_IDLE_MS: u64 = 1_000;
/// A stack with nothing due is still polled this often (microseconds): a
/// bound on any wake-up its deadlines might not tell of.
pub const STACK_POLL_MAX_US: u64 = 10_000;
/// Counters are reported on the console this often by default, when they
/// changed (`unifw.stats=SECONDS` sets it; 0 turns reports off).
pub const REPORT_DEFAULT_SECONDS: u32 = 60;

impl Classifier for Image<'_> {
    fn classify(&self, chain: Chain, key: &PacketKey) -> Verdict {
        Image::classify(self, chain, key)
    }

    fn classify_with(&self, chain: Chain, key: &PacketKey, lookup: &mut crate::image::Lookup<'_>) -> Verdict {
        Image::classify_with(self, chain, key, lookup)
    }

    fn wants_extra(&self) -> bool {
        Image::has_residuals(self)
    }

    fn searches_packets(&self) -> bool {
        Image::has_strings(self)
    }

    fn log_record(&self, rule: u32) -> Option<crate::image::format::LogRecord> {
        Image::rule_log(self, rule)
    }

    fn uses(&self, chain: Chain) -> bool {
        Image::uses(self, chain)
    }

    fn nat(&self, rule: u32) -> Option<crate::image::format::NatRecord> {
        self.nat_of_rule(rule)
    }
}

/// What the firewall takes besides its devices and rules.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Seconds between counter reports (0: never).
    pub report_seconds: u32,
    /// Secret for the connection table's hash.
    pub hash_seed: u64,
    /// When the rules were compiled (unix seconds), for `/metrics`.
    pub rules_compiled_at: u64,
    /// Bytes the connection table may take (the kernel: its free heap less
    /// a reserve); a smaller table than `conntrack max` is said on the console.
    pub conntrack_budget: usize,
    /// The cycle counter for `unifw.profile=on` (None: no profile).
    pub profile: Option<crate::profile::Clock>,
    /// `unifw.path=bounce`: frames through the firewall cross unfiltered
    /// (bounce.rs; a measure of the platform, never a firewall).
    pub bounce: bool,
}

/// All NICs, the packet path and the firewall's own stacks.
pub struct Firewall<'a, D: NetDevice> {
    names: Vec<String>,
    /// Each interface's MTU by the rules file (a DHCP lease may replace it).
    mtus: Vec<u16>,
    nics: NicSet<D>,
    stacks: Vec<Option<Stack>>,
    /// The packet path and the rules, shared with the other vCPUs' workers.
    shared: Arc<Shared<'a>>,
    /// By interface index, the NIC's place in discovery order (for the
    /// workers' devices, which come in that order).
    order: Vec<Option<usize>>,
    /// Workers made so far (vCPUs 1 ..).
    workers: usize,
    /// Frames this vCPU received.
    received: u64,
    /// What this vCPU's packet path has not counted yet, and its waits.
    lane: Lane,
    next_housekeeping_ms: u64,
    next_report_ms: u64,
    report_ms: u64,
    reported: u64,
    /// `unifw.path=bounce`'s peers, when on.
    bounce: Option<Bounce>,
    /// When each NIC's stack is next due a poll (microseconds): its
    /// timers' deadline, now after it took a frame, at most
    /// [`STACK_POLL_MAX_US`] away. Not polling stacks with nothing to do
    /// saves a busy pass most of its fixed cost.
    stack_due_us: Vec<u64>,
    wakeups: Wakeups,
}

impl<'a, D: NetDevice> Firewall<'a, D> {
    /// Takes the devices in discovery order, names them by the plan's MAC
    /// bindings ([`assign_names`]), builds the packet path with the
    /// image's routes and limits, and brings up a stack on each NIC the
    /// plan configures. Forwarding starts once every interface that should
    /// have an address has one (at once when all are static). Static
    /// routes whose gateway is on no connected subnet are reported and
    /// left out until one is.
    pub fn new(
        devices: Vec<D>,
        plan: &[InterfacePlan],
        image: Image<'a>,
        settings: Settings,
        now_us: u64,
    ) -> Result<Self, ConfigError> {
        let (slots, order) = name_devices(devices, plan);
        let names: Vec<String> = (0..slots.len()).map(|index| format!("eth{index}")).collect();
        let interfaces = slots
            .iter()
            .enumerate()
            .map(|(index, device)| {
                let mac = device.as_ref().map_or([0; 6], NetDevice::mac);
                let config = interface_config(mac, plan.get(index));
                InterfaceConfig { reverse_path: plan.get(index).map(|p| p.reverse_path).unwrap_or_default(), ..config }
            })
            .collect::<Vec<_>>();
        let mtus: Vec<u16> = interfaces.iter().map(|i: &InterfaceConfig| i.mtu).collect();
        for (index, mtu) in mtus.iter().enumerate().filter(|(_, &mtu)| mtu != crate::net::mtu::DEFAULT_MTU) {
            log::info!("eth{index}: MTU {mtu}");
        }
        let routes = image
            .routes()
            .map(|r| crate::net::StaticRoute { prefix: r.dest, prefix_len: r.prefix_len, gateway: r.gateway })
            .collect();
        let mut config =
            DataplaneConfig::new(interfaces, routes, image.total_rules() as usize, image.conntrack_capacity() as usize);
        config.hash_seed = settings.hash_seed;
        config.forwarding = false;
        config.conntrack_budget = settings.conntrack_budget;
        config.limit_count = image.limit_count() as usize;
        config.nat = image.has_nat();
        // The connlimit counts take their share of the table's budget.
        let keys = if config.nat { 2 } else { 1 };
        let per_flow = crate::net::conntrack::bytes_per_flow_with(keys);
        config.conntrack_budget =
            crate::image::ConnLimits::budget(config.conntrack_budget, per_flow, image.connlimit_rules());
        let mut dataplane = Dataplane::new(config)?;
        dataplane.set_profile(Profile::new(settings.profile));
        image.init_limits(dataplane.rule_limits_mut(), now_us / 1000);
        dataplane.set_recent_tables(image.recent_tables());
        dataplane.set_hashlimit_tables(image.hashlimit_tables(settings.hash_seed, now_us / 1000));
        dataplane.set_connlimit(image.connlimit_rules());
        for spec in image.interfaces() {
            let Some(peer) = spec.wire_peer.filter(|&peer| peer > spec.index) else { continue };
            match dataplane.set_wire(spec.index, peer) {
                Ok(()) => log::info!("eth{} and eth{peer}: a bump-in-the-wire pair", spec.index),
                Err(e) => log::error!("wire eth{} eth{peer}: {e:?}; not paired", spec.index),
            }
        }
        let (configured, granted) = (image.conntrack_capacity(), dataplane.conntrack().capacity());
        if granted < configured as usize {
            log::warn!(
                "conntrack: table shrunk to {granted} flows (conntrack max {configured}): the guest's memory holds no more"
            );
        }
        for route in dataplane.skipped_routes() {
            log::warn!("route {route:?}: its gateway is on no connected subnet; ignored until it is");
        }
        let mut nics = NicSet::with_slots_and_mtus(slots, &mtus);
        let now_ms = now_us / 1000;
        let timestamp = Instant::from_micros(now_us as i64);
        let stacks: Vec<Option<Stack>> = names
            .iter()
            .enumerate()
            .map(|(index, name)| {
                let mac = nics.device(index).map(NetDevice::mac)?;
                let Some(setup) = plan.get(index).and_then(|p| p.addr.map(|addr| (addr, p.fallback))) else {
                    log::info!("{name}: down");
                    return None;
                };
                dataplane.set_dhcp_client(index as IfIndex, setup.0 == IfAddr::Dhcp);
                let mut port = StackPort::new((&mut nics, &mut dataplane, &image), index, now_ms);
                let mut stack = Stack::new(name, EthernetAddress(mac), setup, &mut port, timestamp);
                if let Some(server) = MetricsServer::for_interface(&image, index as u8, settings.rules_compiled_at) {
                    log::info!("{name}: {server}");
                    stack.serve_metrics(server);
                }
                Some(stack)
            })
            .collect();
        let report_ms = u64::from(settings.report_seconds) * 1000;
        let nic_count = names.len();
        let bounce = settings.bounce.then(|| {
            log::warn!(
                "unifw.path=bounce: frames through the firewall cross between eth0 and eth1 UNFILTERED \
                 (a benchmark of the platform, not a firewall)"
            );
            Bounce::new(dataplane.interfaces().iter().map(|i| i.mac).collect())
        });
        let up = stacks.iter().map(Option::is_some).collect();
        let shared = Arc::new(Shared {
            clock: dataplane.profile_mut().clock(),
            dataplane: Mutex::new(dataplane),
            image,
            up,
            handoff: Mutex::new(VecDeque::with_capacity(HANDOFF_FRAMES)),
            workers: Default::default(),
        });
        let mut firewall = Firewall {
            names,
            mtus,
            nics,
            stacks,
            shared,
            order,
            workers: 0,
            received: 0,
            lane: Lane::default(),
            next_housekeeping_ms: 0,
            next_report_ms: now_ms + report_ms,
            report_ms,
            reported: 0,
            bounce,
            stack_due_us: vec![0; nic_count],
            wakeups: Wakeups::default(),
        };
        firewall.share_addresses();
        firewall.update_forwarding(true);
        Ok(firewall)
    }

    /// The NICs (for what only the kernel does: interrupts, buffer growth).
    pub fn nics_mut(&mut self) -> &mut NicSet<D> {
        &mut self.nics
    }

    /// The NICs.
    pub fn nics(&self) -> &NicSet<D> {
        &self.nics
    }

    /// The packet path (counters, tables), locked from the workers while
    /// the guard lives.
    pub fn dataplane(&self) -> MutexGuard<'_, Dataplane> {
        self.shared.dataplane.lock()
    }

    /// A worker for another vCPU, serving `devices` (one per NIC, in
    /// discovery order as the kernel found them: that NIC's queue pair
    /// for this vCPU) through the same packet path. Local frames it
    /// receives are handed to this firewall's stacks.
    ///
    /// Workers are numbered from 1 (their vCPU) in the order made; at most
    /// [`MAX_WORKERS`]: past that, None.
    pub fn worker(&mut self, devices: Vec<Option<D>>) -> Option<Worker<'a, D>> {
        if self.workers >= MAX_WORKERS {
            return None;
        }
        let mut devices = devices;
        let slots =
            self.order.iter().map(|nic| nic.and_then(|nic| devices.get_mut(nic).and_then(Option::take))).collect();
        let nics = NicSet::with_slots_and_mtus(slots, &self.mtus);
        let bounce =
            self.bounce.as_ref().map(|_| Bounce::new(self.dataplane().interfaces().iter().map(|i| i.mac).collect()));
        self.workers += 1;
        Some(Worker::new(Arc::clone(&self.shared), nics, bounce, self.workers - 1))
    }

    /// When NIC `index`'s stack is next due a poll (microseconds).
    pub fn stack_due_us(&self, index: usize) -> Option<u64> {
        self.stack_due_us.get(index).copied()
    }

    /// The profile's report line, if it has one (`unifw.profile=on`).
    pub fn take_profile_line(&mut self) -> Option<String> {
        self.dataplane().profile_mut().take_line()
    }

    /// Whether NIC `index` has a stack (is up).
    pub fn is_up(&self, index: usize) -> bool {
        self.stacks.get(index).is_some_and(Option::is_some)
    }

    /// Records the kernel's wake-up counts for the next report.
    pub fn note_wakeups(&mut self, wakeups: Wakeups) {
        self.wakeups = wakeups;
    }

    /// Serves every NIC once at time `now_us`: received frames through the
    /// packet path, frames the workers handed over, the stacks' timers,
    /// buffers home, housekeeping and reports when due. True if there was
    /// anything to do.
    pub fn poll_once(&mut self, now_us: u64) -> bool {
        let now_ms = now_us / 1000;
        let timestamp = Instant::from_micros(now_us as i64);
        let shared = Arc::clone(&self.shared);
        let mut work = false;
        let poll_started = if shared.clock.is_some() { shared.dataplane.lock().profile_mut().begin_pass() } else { 0 };
        for index in 0..self.nics.len() {
            for _ in 0..RX_BUDGET {
                match serve_one(&shared, &mut self.lane, &mut self.nics, self.bounce.as_mut(), index, now_ms) {
                    Served::Empty => break,
                    Served::Done => {}
                    Served::Local(buffer, frame) => self.deliver(index, buffer, frame, now_ms, timestamp),
                }
                work = true;
                self.received += 1;
            }
        }
        if self.workers > 0 {
            work |= self.take_handoff(now_ms, timestamp);
        }
        // The lock only to count what was sent, or to profile: the rest
        // of the pass is this vCPU's own queues and stacks.
        self.lane.settle_now(&shared);
        let started = clock_now(&shared);
        for index in 0..self.nics.len() {
            if self.stack_due_us.get(index).is_some_and(|&due| now_us >= due) {
                work |= self.poll_stack(index, now_ms, timestamp);
            }
        }
        span_stop(&shared, Step::Stack, started);
        // Frames queued above leave before any housekeeping runs.
        let started = clock_now(&shared);
        self.nics.reclaim();
        span_stop(&shared, Step::Reclaim, started);
        let started = clock_now(&shared);
        self.nics.notify();
        span_stop(&shared, Step::Notify, started);
        if now_ms >= self.next_housekeeping_ms {
            let started = clock_now(&shared);
            self.housekeeping(now_ms);
            self.nics.reclaim_and_flush();
            span_stop(&shared, Step::Housekeeping, started);
        }
        if !work {
            span_stop(&shared, Step::EmptyPoll, poll_started);
        }
        work
    }

    /// Hands a local frame (the packet path has judged it) to NIC
    /// `index`'s stack and runs the stack on it.
    fn deliver(&mut self, index: usize, buffer: D::Buffer, frame: Range<usize>, now_ms: u64, at: Instant) {
        let shared = Arc::clone(&self.shared);
        let Some(stack) = self.stacks.get_mut(index).and_then(Option::as_mut) else {
            self.nics.recycle(buffer);
            return;
        };
        let mut dataplane = shared.dataplane.lock();
        let mut port = StackPort::new((&mut self.nics, &mut dataplane, &shared.image), index, now_ms);
        port.deliver(buffer, frame);
        stack.poll(at, &mut port);
        drop(port);
        drop(dataplane);
        // Now, while the DHCP client still holds this reply.
        self.follow_stack(index, at);
        // The rest (its metrics server) in this pass's stack poll.
        if let Some(due) = self.stack_due_us.get_mut(index) {
            *due = 0;
        }
    }

    /// Delivers the local frames the workers received (copied into this
    /// vCPU's transmit pools, which they return to); true if there were any.
    fn take_handoff(&mut self, now_ms: u64, at: Instant) -> bool {
        let mut work = false;
        for _ in 0..HANDOFF_FRAMES {
            let Some((index, bytes)) = self.shared.handoff.lock().pop_front() else {
                break;
            };
            work = true;
            let index = usize::from(index);
            match self.nics.take_frame(index, bytes.len()) {
                Ok(mut frame) => {
                    frame.bytes_mut().copy_from_slice(&bytes);
                    let (buffer, range) = frame.into_parts();
                    self.deliver(index, buffer, range, now_ms, at);
                }
                Err(reason) => self.dataplane().counters_mut().count_drop(index as IfIndex, reason),
            }
        }
        work
    }

    /// Runs one NIC's stack for timers and DHCP; true if it did anything.
    fn poll_stack(&mut self, index: usize, now_ms: u64, at: Instant) -> bool {
        let shared = Arc::clone(&self.shared);
        let Some(stack) = self.stacks.get_mut(index).and_then(Option::as_mut) else {
            return false;
        };
        let mut dataplane = shared.dataplane.lock();
        let mut port = StackPort::new((&mut self.nics, &mut dataplane, &shared.image), index, now_ms);
        let mut work = stack.poll(at, &mut port);
        drop(port);
        let uptime_us = at.total_micros().max(0) as u64;
        let sources =
            exposition::Sources { names: &self.names, dataplane: &dataplane, image: &shared.image, uptime_us };
        if stack.poll_metrics(at, &sources) {
            // What the metrics server queued leaves now.
            work = true;
            stack.poll(at, &mut StackPort::new((&mut self.nics, &mut dataplane, &shared.image), index, now_ms));
        }
        drop(dataplane);
        let delay = stack.poll_delay(at).map_or(STACK_POLL_MAX_US, |d| d.min(STACK_POLL_MAX_US));
        if let Some(due) = self.stack_due_us.get_mut(index) {
            *due = uptime_us.saturating_add(delay);
        }
        self.follow_stack(index, at);
        work
    }

    /// Carries a change of NIC `index`'s address (DHCP, fallback) into the
    /// packet path, then starts or stops forwarding as the interfaces'
    /// addresses now say.
    /// Tells each NIC's stack the firewall's addresses on the other NICs
    /// (at start, and after any address change: DHCP, fallback).
    fn share_addresses(&mut self) {
        let all: Vec<u32> = self.stacks.iter().flatten().filter_map(|s| s.address().map(|a| a.cidr.addr)).collect();
        for stack in self.stacks.iter_mut().flatten() {
            let own = stack.address().map(|a| a.cidr.addr);
            let others: Vec<u32> = all.iter().copied().filter(|&a| Some(a) != own).collect();
            stack.set_other_addresses(&others);
        }
    }

    fn follow_stack(&mut self, index: usize, at: Instant) {
        let (Some(stack), Some(name)) = (self.stacks.get_mut(index).and_then(Option::as_mut), self.names.get(index))
        else {
            return;
        };
        let Some(change) = stack.update(name, at) else {
            return;
        };
        let cidr = change.address.map(|a| a.cidr);
        let shared = Arc::clone(&self.shared);
        let mut dataplane = shared.dataplane.lock();
        if let Err(e) = dataplane.configure_interface(index as IfIndex, cidr, change.routes) {
            log::error!("{name}: the packet path refused the address {cidr:?}: {e:?}");
        }
        // The lease's MTU, else the rules file's; no larger than the
        // transmit buffers carved at start for the file's.
        let file_mtu = self.mtus.get(index).copied().unwrap_or(crate::net::mtu::DEFAULT_MTU);
        let largest = self.nics.largest_frame(index).saturating_sub(crate::net::parse::ETHERNET_HEADER_LEN);
        let mtu =
            change.mtu.map_or(file_mtu, |mtu| clamp_mtu(Some(mtu)).min(u16::try_from(largest).unwrap_or(u16::MAX)));
        dataplane.set_interface_mtu(index as IfIndex, mtu);
        for route in dataplane.skipped_routes() {
            log::debug!("route {route:?}: its gateway is on no connected subnet; ignored until it is");
        }
        drop(dataplane);
        self.share_addresses();
        self.update_forwarding(false);
    }

    /// Fail closed: forwarding is on while every interface that should
    /// have an address (static, DHCP or its fallback) has one. Logs each
    /// change, and with `first` the state at start.
    fn update_forwarding(&mut self, first: bool) {
        let waiting: Vec<&str> = self
            .names
            .iter()
            .zip(&self.stacks)
            .filter(|(_, stack)| stack.as_ref().is_some_and(Stack::is_waiting))
            .map(|(name, _)| name.as_str())
            .collect();
        let ready = waiting.is_empty();
        if ready == self.dataplane().forwarding() && !first {
            return;
        }
        self.dataplane().set_forwarding(ready);
        if ready {
            let addressed: Vec<String> = self
                .names
                .iter()
                .zip(&self.stacks)
                .filter_map(|(name, stack)| stack.as_ref()?.address().map(|a| format!("{name} {a}")))
                .collect();
            let list =
                if addressed.is_empty() { String::from("no interface has an address") } else { addressed.join(", ") };
            log::info!("forwarding: on ({list})");
        } else if first {
            log::info!(
                "forwarding: off until {} {} an address (DHCP)",
                waiting.join(", "),
                if waiting.len() == 1 { "has" } else { "have" }
            );
        } else {
            log::warn!(
                "forwarding: off: {} {} no address",
                waiting.join(", "),
                if waiting.len() == 1 { "has" } else { "have" }
            );
        }
    }

    /// The address of NIC `index`, if it has one.
    pub fn address(&self, index: usize) -> Option<Address> {
        self.stacks.get(index)?.as_ref()?.address()
    }

    fn housekeeping(&mut self, now_ms: u64) {
        let deadline = self.shared.dataplane.lock().poll(now_ms, &mut self.nics);
        let periodic = now_ms + HOUSEKEEPING_BUSY_MS;
        self.next_housekeeping_ms = deadline.map_or(periodic, |d| d.min(periodic));
        if self.report_ms > 0 && now_ms >= self.next_report_ms {
            self.next_report_ms = now_ms + self.report_ms;
            self.report();
        }
    }

    /// Logs the counters (the details only if traffic moved since the last
    /// report).
    pub fn report(&mut self) {
        let shared = Arc::clone(&self.shared);
        let mut dataplane = shared.dataplane.lock();
        let counters = dataplane.counters();
        let total = report::traffic(counters);
        let conntrack = dataplane.conntrack();
        let neighbours = dataplane.neighbours();
        let flows = report::Flows {
            tracked: conntrack.len(),
            capacity: conntrack.capacity(),
            neighbours: neighbours.len(),
            neighbours_pending: neighbours.pending(),
        };
        let mut notifications = self.nics.notifications();
        let of_workers = shared.worker_notifications();
        notifications.sent += of_workers.sent;
        notifications.suppressed += of_workers.suppressed;
        let wakeups = Wakeups { notifications, ..self.wakeups };
        let detailed = total != self.reported;
        for line in report::lines(&self.names, counters, flows, wakeups, detailed) {
            log::info!("{line}");
        }
        if detailed && self.workers > 0 {
            let frames: Vec<String> = core::iter::once((self.received, self.lane.waits))
                .chain(shared.worker_frames(self.workers))
                .enumerate()
                .map(|(cpu, (n, waits))| format!("{cpu}: {n} (waited for the path {waits})"))
                .collect();
            log::info!(
                "vCPUs: frames received by each: {}; woken for their frames by vCPU 0 {} times",
                frames.join(", "),
                self.wakeups.relayed
            );
        }
        if let Some(line) = dataplane.profile_mut().take_line() {
            log::info!("{line}");
        }
        self.reported = total;
    }

    /// How long the loop may sleep from `now_us`: until the stacks' next
    /// deadline or the packet path's housekeeping.
    pub fn sleep_budget_us(&mut self, now_us: u64) -> u64 {
        let timestamp = Instant::from_micros(now_us as i64);
        let housekeeping = self.next_housekeeping_ms.max(now_us / 1000 + HOUSEKEEPING_IDLE_MS);
        let mut budget = (housekeeping * 1000).saturating_sub(now_us);
        for stack in self.stacks.iter_mut().flatten() {
            if let Some(delay) = stack.poll_delay(timestamp) {
                budget = budget.min(delay);
            }
        }
        budget
    }
}

/// The devices by interface index, as [`assign_names`] names them from the
/// plan's MAC bindings; each naming is logged, and so is each bound name
/// whose NIC is missing (that interface is down).
fn name_devices<D: NetDevice>(devices: Vec<D>, plan: &[InterfacePlan]) -> (Vec<Option<D>>, Vec<Option<usize>>) {
    let macs: Vec<[u8; 6]> = devices.iter().map(NetDevice::mac).collect();
    let bindings: Vec<Option<[u8; 6]>> = plan.iter().map(|p| p.mac).collect();
    let naming = assign_names(&macs, &bindings);
    for name in &naming.missing {
        if let Some(mac) = bindings.get(*name).copied().flatten() {
            log::error!("eth{name}: bound to MAC {}, which no NIC has; eth{name} is down", MacAddr(mac));
        }
    }
    for nic in &naming.unnamed {
        if let Some(mac) = macs.get(*nic) {
            log::warn!("NIC {nic} (mac {}): every name is bound elsewhere or taken; not used", MacAddr(*mac));
        }
    }
    let mut devices: Vec<Option<D>> = devices.into_iter().map(Some).collect();
    let mut slots = Vec::with_capacity(naming.nics.len());
    for (name, nic) in naming.nics.iter().enumerate() {
        let device = nic.and_then(|nic| devices.get_mut(nic).and_then(Option::take));
        if let (Some(device), Some(nic)) = (&device, nic) {
            let how = if naming.is_bound(name, &bindings) { "bound by MAC" } else { "in discovery order" };
            log::info!("eth{name}: NIC {nic}, mac {} ({how})", MacAddr(device.mac()));
        }
        slots.push(device);
    }
    (slots, naming.nics)
}

/// The packet path's view of an interface: its MAC, its MTU, and its
/// address when the plan gives a static one (DHCP fills it in later).
fn interface_config(mac: [u8; 6], plan: Option<&InterfacePlan>) -> InterfaceConfig {
    let addr = match plan.and_then(|p| p.addr) {
        Some(IfAddr::Static(cidr)) => Some(cidr),
        _ => None,
    };
    InterfaceConfig { mtu: clamp_mtu(plan.and_then(|p| p.mtu)), ..InterfaceConfig::new(mac, addr) }
}
