//! The data plane's single entry point: configuration, all tables
//! allocated once, and the periodic `poll`. The per-frame path is in
//! `forward.rs`.

use alloc::vec::Vec;

use super::addr::Cidr;
use super::conntrack::ConnTrack;
use super::counters::{Counters, RuleLogger};
use super::fragment::{FragmentLimits, FragmentTable};
use super::neighbour::{NeighbourLimits, NeighbourTable};
use super::parse::{parse_ethernet, parse_ipv4, EtherPayload, ETHERNET_HEADER_LEN};
use super::reply::MAX_REPLY_LEN;
use super::route::{netmask, ConfigError, InterfaceConfig, LearnedRoute, RouteTable, StaticRoute};
use super::sink::FrameSink;
use super::split::SplitScratch;
use super::token_bucket::TokenBucket;
use crate::flow::{Chain, CtState, IfIndex, PacketKey, Verdict};
use crate::image::format::{LogRecord, NatRecord};
use crate::image::{HashlimitTables, LimitBucket, Lookup, RecentTables};
use crate::profile::Profile;

/// Longest IPv4 datagram (the total length field's bound).
pub const MAX_DATAGRAM: usize = 65_535;

/// Connection-table entries examined for expiry per handled frame.
pub const SWEEP_PER_FRAME: usize = 2;
/// Connection-table entries examined for expiry per `poll`.
pub const SWEEP_PER_POLL: usize = 256;

/// The rules, as the data plane consults them. The kernel implements it
/// with the compiled rule image; tests with small fakes. Closures
/// `Fn(Chain, &PacketKey) -> Verdict` implement it too.
pub trait Classifier {
    /// The verdict of `chain` for a packet described by `key`.
    fn classify(&self, chain: Chain, key: &PacketKey) -> Verdict;

    /// [`Classifier::classify`] with the rules' runtime state (`-m limit`
    /// buckets, the `LOG` rules passed, what NOTRACK and TCPMSS rules
    /// asked); classifiers without such rules need not implement it.
    fn classify_with(&self, chain: Chain, key: &PacketKey, _lookup: &mut Lookup<'_>) -> Verdict {
        self.classify(chain, key)
    }

    /// Whether some rule reads the residual key fields
    /// ([`crate::flow::KeyExtra`]); when not, the data path skips them.
    fn wants_extra(&self) -> bool {
        true
    }

    /// Whether some rule searches the packet's bytes (`-m string`): then a
    /// fragmented datagram is copied whole for the rules to search.
    fn searches_packets(&self) -> bool {
        true
    }

    /// The `LOG`/`NFLOG` record of a logging rule (prefix, level).
    fn log_record(&self, _rule: u32) -> Option<LogRecord> {
        None
    }

    /// Whether `chain` can change anything (rules, or a policy other than
    /// ACCEPT): the packet path skips the chains that cannot. By default
    /// only INPUT and FORWARD are used (a closure judging every chain alike
    /// is a test's INPUT and FORWARD).
    fn uses(&self, chain: Chain) -> bool {
        matches!(chain, Chain::Input | Chain::Forward)
    }

    /// The translation rule `rule` (a verdict's `rule`) asks for, if it is
    /// a NAT rule (`SNAT`, `MASQUERADE`, `DNAT`); none by default.
    fn nat(&self, _rule: u32) -> Option<NatRecord> {
        None
    }
}

impl<F: Fn(Chain, &PacketKey) -> Verdict> Classifier for F {
    fn classify(&self, chain: Chain, key: &PacketKey) -> Verdict {
        self(chain, key)
    }
}

/// What the caller does with a received frame after `handle_frame`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Rewritten in place (MACs, TTL, checksum): send `frame[..len]` out of `out_if`.
    Forward {
        /// Output interface.
        out_if: IfIndex,
        /// Bytes to send (Ethernet padding and trailing junk trimmed).
        len: usize,
    },
    /// For the firewall itself (or ARP): give the unchanged frame to the local stack.
    Local,
    /// Copied into a neighbour queue until ARP resolves, into the fragment
    /// pool until its datagram is whole, or sent as copies (fragments,
    /// software segments); the buffer is free.
    Queued,
    /// Dropped and counted; any ICMP error or RST already went to the sink.
    Drop(super::counters::DropReason),
}

/// Everything the data plane needs at start.
#[derive(Debug, Clone)]
pub struct DataplaneConfig {
    /// Interfaces, indexed by `IfIndex`.
    pub interfaces: Vec<InterfaceConfig>,
    /// Static routes.
    pub routes: Vec<StaticRoute>,
    /// Rules in the compiled image (sizes the hit counters).
    pub rule_count: usize,
    /// `-m limit` buckets the rules need ([`crate::image::Image::limit_count`]).
    pub limit_count: usize,
    /// Connection-table capacity (from the rules file).
    pub conntrack_capacity: usize,
    /// Bytes the connection table may take: it shrinks to fit
    /// ([`ConnTrack::within`]); the kernel passes what its heap has free.
    pub conntrack_budget: usize,
    /// Sizes of the pool of fragments held until their datagram is whole.
    pub fragments: FragmentLimits,
    /// Neighbour-table sizes.
    pub neighbour: NeighbourLimits,
    /// Secret for the connection table's hash (e.g. from RDRAND or the TSC).
    pub hash_seed: u64,
    /// ICMP errors per second, and burst (Linux: 1000/s, burst 50).
    pub icmp_rate: (u32, u32),
    /// Log lines per second, and burst.
    pub log_rate: (u32, u32),
    /// Whether frames are forwarded from the start (the firewall node
    /// starts with `false` and turns it on when every interface has its
    /// address: fail closed).
    pub forwarding: bool,
    /// Whether the rules translate addresses: the connection table then
    /// keeps two keys per flow ([`ConnTrack::within_with`]).
    pub nat: bool,
}

impl DataplaneConfig {
    /// A configuration with default limits for the other fields.
    pub fn new(
        interfaces: Vec<InterfaceConfig>,
        routes: Vec<StaticRoute>,
        rule_count: usize,
        conntrack_capacity: usize,
    ) -> DataplaneConfig {
        DataplaneConfig {
            interfaces,
            routes,
            rule_count,
            limit_count: 0,
            conntrack_capacity,
            conntrack_budget: usize::MAX,
            fragments: FragmentLimits::default(),
            neighbour: NeighbourLimits::default(),
            hash_seed: 0x756e_6966_775f_6374,
            icmp_rate: (1000, 50),
            log_rate: (10, 20),
            forwarding: true,
            nat: false,
        }
    }
}

/// The forwarding data plane: tables, counters and rate limiters.
pub struct Dataplane {
    pub(super) interfaces: Vec<InterfaceConfig>,
    pub(super) static_routes: Vec<StaticRoute>,
    skipped_routes: Vec<StaticRoute>,
    /// Routes each interface learned by DHCP, by interface index.
    learned: Vec<Vec<LearnedRoute>>,
    /// Interfaces with a DHCP client, whose replies are always local.
    dhcp_clients: Vec<bool>,
    /// Whether frames are forwarded at all (else dropped as `NotReady`).
    pub(super) forwarding: bool,
    pub(super) routes: RouteTable,
    pub(super) conntrack: ConnTrack,
    /// Secret that spreads NAT clients over addresses and ports.
    pub(super) nat_seed: u32,
    pub(super) fragments: FragmentTable,
    pub(super) neighbours: NeighbourTable,
    pub(super) counters: Counters,
    pub(super) logger: RuleLogger,
    /// The rules' `-m limit` buckets (allocated here, filled at boot by
    /// [`crate::image::Image::init_limits`]).
    pub(super) limits: Vec<LimitBucket>,
    /// The rules' `-m recent` tables (allocated at boot by
    /// [`crate::image::Image::recent_tables`]).
    pub(super) recent: RecentTables,
    /// The rules' `-m hashlimit` tables (allocated at boot by
    /// [`crate::image::Image::hashlimit_tables`]).
    pub(super) hashlimit: HashlimitTables,
    pub(super) icmp_limit: TokenBucket,
    /// Where ICMP errors and RSTs are built before going to the sink.
    pub(super) scratch: [u8; MAX_REPLY_LEN],
    /// Where the segments and fragments of a split packet are built.
    pub(super) split: SplitScratch,
    /// A fragmented datagram copied whole (IP header on), for `-m string`
    /// while its rules run ([`MAX_DATAGRAM`] bytes, allocated at start).
    pub(super) whole: Vec<u8>,
    /// The copy's length and the address of the first fragment's frame
    /// it stands for (`run_chain` uses it for that frame only; 0: none).
    pub(super) whole_of: (usize, usize),
    /// Each interface's wire peer, if it is a bump-in-the-wire side (wire.rs).
    pub(super) wires: Vec<Option<IfIndex>>,
    /// The connection state of the packet judged last (for the RST that
    /// answers it: Linux attaches it to the packet's connection).
    pub(super) last_state: CtState,
    /// Cycles per step, with `unifw.profile=on` (profile.rs).
    pub(super) profile: Profile,
}

impl Dataplane {
    /// The rules' `-m limit` buckets, to fill at boot.
    pub fn rule_limits_mut(&mut self) -> &mut [LimitBucket] {
        &mut self.limits
    }

    /// Counts connections for the image's `-m connlimit` rules
    /// ([`crate::image::Image::connlimit_rules`]; memory allocated now).
    pub fn set_connlimit(&mut self, rules: usize) {
        self.conntrack.set_connlimit(rules, crate::image::format::CONNLIMIT_KEYS);
    }

    /// [`Dataplane::set_connlimit`] with `counters` counters (tests fill a
    /// small table).
    pub fn set_connlimit_counters(&mut self, rules: usize, counters: usize) {
        self.conntrack.set_connlimit(rules, counters);
    }

    /// Installs the rules' `-m recent` tables (allocated at boot).
    pub fn set_recent_tables(&mut self, recent: RecentTables) {
        self.recent = recent;
    }

    /// Installs the rules' `-m hashlimit` tables (allocated at boot).
    pub fn set_hashlimit_tables(&mut self, hashlimit: HashlimitTables) {
        self.hashlimit = hashlimit;
    }

    /// Builds the data plane, allocating every table now. A static route
    /// whose gateway is on no connected subnet is left out and listed in
    /// [`Dataplane::skipped_routes`] until an address change puts its
    /// gateway on one; any other inconsistency is an error.
    pub fn new(config: DataplaneConfig) -> Result<Dataplane, ConfigError> {
        let learned = alloc::vec![Vec::new(); config.interfaces.len()];
        let (routes, skipped) = RouteTable::build(&config.interfaces, &config.routes, &learned)?;
        Ok(Dataplane {
            skipped_routes: skipped_of(&config.routes, &skipped),
            learned,
            dhcp_clients: alloc::vec![false; config.interfaces.len()],
            forwarding: config.forwarding,
            counters: Counters::new(config.interfaces.len(), config.rule_count),
            conntrack: ConnTrack::within_with(
                config.conntrack_capacity,
                config.hash_seed,
                config.conntrack_budget,
                config.nat,
            ),
            nat_seed: (config.hash_seed >> 32) as u32 ^ config.hash_seed as u32,
            fragments: FragmentTable::new(config.fragments),
            neighbours: NeighbourTable::new(config.neighbour),
            logger: RuleLogger::new(config.log_rate.0, config.log_rate.1),
            limits: alloc::vec![LimitBucket::default(); config.limit_count],
            recent: RecentTables::default(),
            hashlimit: HashlimitTables::default(),
            icmp_limit: TokenBucket::new(config.icmp_rate.0, config.icmp_rate.1),
            interfaces: config.interfaces,
            static_routes: config.routes,
            routes,
            scratch: [0; MAX_REPLY_LEN],
            split: SplitScratch::new(),
            whole: alloc::vec![0; MAX_DATAGRAM],
            whole_of: (0, 0),
            wires: Vec::new(),
            last_state: CtState::Invalid,
            profile: Profile::default(),
        })
    }

    /// Sends due ARP retries, drops frames of neighbours that never
    /// answered and fragments of datagrams that stayed incomplete, and
    /// sweeps expired flows. Call it every few hundred ms and by the
    /// returned time (ms) at the latest, if any.
    pub fn poll(&mut self, now_ms: u64, out: &mut dyn FrameSink) -> Option<u64> {
        let next = self.neighbours.poll(now_ms, &self.interfaces, &mut self.counters, out);
        let fragments_next = self.fragments.expire(now_ms, &mut self.counters);
        self.conntrack.sweep(now_ms, SWEEP_PER_POLL);
        self.sync_events();
        match (next, fragments_next) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Tracks a frame the local stack sends (the OUTPUT path, accepted
    /// without rules), so that replies to the firewall's own connections
    /// classify as established on the input chain.
    pub fn track_local_output(&mut self, now_ms: u64, frame: &[u8]) {
        let Ok(eth) = parse_ethernet(frame) else {
            return;
        };
        if eth.payload != EtherPayload::Ipv4 {
            return;
        }
        let Some(Ok(meta)) = frame.get(ETHERNET_HEADER_LEN..).map(parse_ipv4) else {
            return;
        };
        if meta.frag_offset == 0 {
            let tracked = self.conntrack.track(&meta, now_ms);
            let _ = self.conntrack.confirm(&tracked, now_ms);
        }
    }

    /// Changes an interface's address (e.g. after DHCP; `None` when the
    /// lease is lost), drops the routes it learned, and rebuilds the routes.
    pub fn set_interface_address(&mut self, interface: IfIndex, addr: Option<Cidr>) -> Result<(), ConfigError> {
        self.configure_interface(interface, addr, Vec::new())
    }

    /// Changes an interface's address and the routes it learned (by DHCP)
    /// in one step, and rebuilds the routes: static routes are
    /// reconsidered too (one whose gateway is now on a connected subnet is
    /// installed, one whose gateway no longer is, skipped). A learned
    /// route whose gateway is not on the interface's subnet is not used.
    pub fn configure_interface(
        &mut self,
        interface: IfIndex,
        addr: Option<Cidr>,
        routes: Vec<LearnedRoute>,
    ) -> Result<(), ConfigError> {
        let index = usize::from(interface);
        if let Some(cidr) = addr {
            netmask(cidr.prefix_len).ok_or(ConfigError::PrefixTooLong(index))?;
        }
        let mut interfaces = self.interfaces.clone();
        let entry = interfaces.get_mut(index).ok_or(ConfigError::TooManyInterfaces)?;
        entry.addr = addr;
        let mut learned = self.learned.clone();
        if let Some(slot) = learned.get_mut(index) {
            *slot = routes;
        }
        let (table, skipped) = RouteTable::build(&interfaces, &self.static_routes, &learned)?;
        let old = self.interfaces.get(index).and_then(|i| i.addr).map(|c| c.addr);
        if old.is_some_and(|old| Some(old) != addr.map(|c| c.addr)) {
            // Masqueraded flows from the old address die with it (Linux).
            let gone = old.map_or(0, |a| self.conntrack.forget_masqueraded(a));
            self.counters.events.masquerade_flushed += gone as u64;
        }
        self.routes = table;
        self.skipped_routes = skipped_of(&self.static_routes, &skipped);
        self.interfaces = interfaces;
        self.learned = learned;
        Ok(())
    }

    /// Sets an interface's MTU (e.g. from a DHCP lease's option 26),
    /// brought into 68..=9000.
    pub fn set_interface_mtu(&mut self, interface: IfIndex, mtu: u16) {
        if let Some(entry) = self.interfaces.get_mut(usize::from(interface)) {
            entry.mtu = super::mtu::clamp_mtu(Some(mtu));
        }
    }

    /// The routes interface `interface` learned by DHCP.
    pub fn learned_routes(&self, interface: IfIndex) -> &[LearnedRoute] {
        self.learned.get(usize::from(interface)).map_or(&[], Vec::as_slice)
    }

    /// Marks an interface as running a DHCP client: DHCP replies to it
    /// (UDP from port 67 to 68) go to the input chain and the local stack
    /// whatever their destination address, as the offer of a new address
    /// is unicast to that address while the interface has another (its
    /// fallback).
    pub fn set_dhcp_client(&mut self, interface: IfIndex, on: bool) {
        if let Some(flag) = self.dhcp_clients.get_mut(usize::from(interface)) {
            *flag = on;
        }
    }

    /// Whether interface `interface` runs a DHCP client.
    pub fn is_dhcp_client(&self, interface: IfIndex) -> bool {
        self.dhcp_clients.get(usize::from(interface)).copied().unwrap_or(false)
    }

    /// Starts or stops forwarding; while stopped, every frame that would
    /// be forwarded is dropped as [`DropReason::NotReady`] (the firewall's
    /// own traffic still flows).
    ///
    /// [`DropReason::NotReady`]: super::DropReason::NotReady
    pub fn set_forwarding(&mut self, on: bool) {
        self.forwarding = on;
    }

    /// Whether frames are forwarded.
    pub fn forwarding(&self) -> bool {
        self.forwarding
    }

    /// All counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// All counters, for the NIC side of the firewall to count what it
    /// sees (frames received, sent, and transmit failures).
    pub fn counters_mut(&mut self) -> &mut Counters {
        &mut self.counters
    }

    /// Where the time goes, step by step (off unless [`Self::set_profile`]).
    pub fn profile_mut(&mut self) -> &mut Profile {
        &mut self.profile
    }

    /// Profiles the packet path (and whoever records into it) with `profile`.
    pub fn set_profile(&mut self, profile: Profile) {
        self.profile = profile;
    }

    /// The static routes left out because their gateway is on no
    /// connected subnet (yet).
    pub fn skipped_routes(&self) -> &[StaticRoute] {
        &self.skipped_routes
    }

    /// The interfaces.
    pub fn interfaces(&self) -> &[InterfaceConfig] {
        &self.interfaces
    }

    /// The connection table.
    pub fn conntrack(&self) -> &ConnTrack {
        &self.conntrack
    }

    /// The fragments held until their datagram is whole.
    pub fn fragments(&self) -> &FragmentTable {
        &self.fragments
    }

    /// The neighbour table.
    pub fn neighbours(&self) -> &NeighbourTable {
        &self.neighbours
    }

    /// Copies event counts kept by the tables into `counters.events`.
    pub(super) fn sync_events(&mut self) {
        let events = &mut self.counters.events;
        events.arp_requests_sent = self.neighbours.requests_sent();
        events.conntrack_early_drops = self.conntrack.early_drops();
        events.fragment_evictions = self.fragments.evictions();
        events.fragment_timeouts = self.fragments.timeouts();
        events.fragments_held = self.fragments.held_fragments() as u64;
        events.fragment_bytes_held = self.fragments.held_bytes() as u64;
        events.nat_translations = self.conntrack.translations() as u64;
    }
}

/// The static routes at `indices`.
fn skipped_of(statics: &[StaticRoute], indices: &[usize]) -> Vec<StaticRoute> {
    indices.iter().filter_map(|&i| statics.get(i).copied()).collect()
}
