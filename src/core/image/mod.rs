//! The compiled rules image: its binary layout ([`format`]), shared with the
//! compiler (`unifw-compiler`, which writes it at build time), and the reader
//! that classifies packets in place: no allocation, no parsing that grows
//! with the rule count, no panics on any bytes.

mod connlimit;
pub mod format;
mod hashlimit;
mod recent;
mod walk;

pub use connlimit::ConnLimits;
pub use hashlimit::HashlimitTables;
pub use recent::RecentTables;

use crate::flow::{mask, proto, state_bit, Action, Chain, PacketKey, Verdict, UNTRACKED_BIT};
use crate::net::addr::Cidr;
use crate::net::ReversePathFilter;

pub use format::FormatError;
use format::*;

/// How an interface gets its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfAddr {
    /// A fixed address and prefix length.
    Static(Cidr),
    /// DHCP.
    Dhcp,
    /// Up, without an address.
    Unconfigured,
}

/// Seconds a DHCP interface waits for a lease before it uses its fallback,
/// unless the rules file says (`dhcp fallback ADDR/LEN after SECONDS`).
pub const DEFAULT_FALLBACK_SECONDS: u8 = 10;

/// The static address a DHCP interface uses while no lease has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fallback {
    /// The address and prefix length.
    pub addr: Cidr,
    /// Seconds after boot without a lease before it applies (1..=255).
    pub after_seconds: u8,
}

/// One interface of the rules file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InterfaceSpec {
    /// 0 = eth0.
    pub index: u8,
    /// Its address.
    pub addr: IfAddr,
    /// The MAC address of the NIC that gets this name, when bound
    /// (`interface eth0 mac 52:54:00:12:34:56 ...`).
    pub mac: Option<[u8; 6]>,
    /// The static fallback of a DHCP interface.
    pub fallback: Option<Fallback>,
    /// The interface's MTU when the rules file sets it (`mtu 1400`);
    /// `None`: [`DEFAULT_MTU`].
    pub mtu: Option<u16>,
    /// Reverse-path filtering of what arrives on it (`rpfilter MODE`).
    pub reverse_path: ReversePathFilter,
    /// The other side of its bump-in-the-wire pair (`wire eth1 eth2`).
    pub wire_peer: Option<u8>,
}

pub use crate::net::mtu::{DEFAULT_MTU, MAX_MTU, MIN_MTU};

impl InterfaceSpec {
    /// Interface `index` with `addr`, bound to no MAC, without fallback,
    /// with the default MTU, filtered strictly.
    pub fn new(index: u8, addr: IfAddr) -> InterfaceSpec {
        InterfaceSpec {
            index,
            addr,
            mac: None,
            fallback: None,
            mtu: None,
            reverse_path: ReversePathFilter::Strict,
            wire_peer: None,
        }
    }
}

/// One static route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteSpec {
    /// Destination network, host order.
    pub dest: u32,
    /// Destination prefix length.
    pub prefix_len: u8,
    /// Next hop, host order.
    pub gateway: u32,
}

/// One source prefix allowed to scrape `GET /metrics` on an interface: the
/// rules file's `metrics` statement gives one per `from` prefix, all with
/// the statement's interface and port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsSource {
    /// The interface the server listens on (0 = eth0).
    pub interface: u8,
    /// Its TCP port.
    pub port: u16,
    /// The allowed source prefix (no host bits set).
    pub from: Cidr,
}

/// Work done by one lookup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cost {
    /// Hash tables probed.
    pub tuples: u32,
    /// Occupied slots compared.
    pub slots: u32,
    /// Entries checked.
    pub entries: u32,
}

/// What the non-terminating targets of a chain asked of a packet (raw
/// `NOTRACK`, mangle `TCPMSS`), besides its verdict.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Marks {
    /// A `NOTRACK` (`CT --notrack`) rule matched: the packet is not tracked.
    pub notrack: bool,
    /// The lowest `--set-mss` of the TCPMSS rules that matched.
    pub set_mss: Option<u16>,
    /// A `TCPMSS --clamp-mss-to-pmtu` rule matched.
    pub clamp_to_pmtu: bool,
}

impl Marks {
    /// Notes a non-terminating target that matched.
    pub fn note(&mut self, target: Target) {
        match target {
            Target::NoTrack => self.notrack = true,
            Target::TcpMss(0) => self.clamp_to_pmtu = true,
            Target::TcpMss(mss) => self.set_mss = Some(self.set_mss.map_or(mss, |m| m.min(mss))),
            _ => {}
        }
    }

    /// The MSS the TCPMSS rules ask, given the path MTU (`--clamp-mss-to-pmtu`
    /// takes it less 40); `None` when none matched. Applying several
    /// TCPMSS rules in turn (each only lowers) is applying the lowest.
    pub fn mss(&self, path_mtu: u16) -> Option<u16> {
        let clamp = self.clamp_to_pmtu.then(|| path_mtu.saturating_sub(crate::net::mss::CLAMP_OVERHEAD));
        match (self.set_mss, clamp) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// A tuple record, decoded at load time.
#[derive(Debug, Clone, Copy, Default)]
struct Tuple {
    src_mask: u32,
    dst_mask: u32,
    min_rule: u32,
    slot_start: u32,
    slot_count: u32,
    port_keyed: bool,
}

/// A chain record's fields the lookup needs, its tuples aside.
#[derive(Debug, Clone, Copy)]
struct ChainHead {
    rules: u32,
    all: u128,
    tuple_start: u32,
    shift: u32,
    entry_start: u32,
    entry_count: u32,
    dst: Side,
    src: Side,
}

/// A filter chain, decoded at load time with its tuples.
#[derive(Debug, Clone, Copy)]
struct ChainInfo {
    head: ChainHead,
    tuples: [Tuple; MAX_TUPLES],
}

/// One side (destination or source) of a chain's cell index.
#[derive(Debug, Clone, Copy)]
struct Side {
    unindexed: u128,
    index: Option<u32>,
    mask_start: u32,
}

/// A validated rules image, read in place.
#[derive(Debug, Clone, Copy)]
pub struct Image<'a> {
    sections: [&'a [u8]; SECTIONS],
    rule_count: u32,
    conntrack_max: u32,
    /// The built-in chains' policies, by [`Chain::index`].
    policies: [Action; BUILTIN_CHAINS],
    /// The filter chains (input, forward, output), which judge every
    /// packet, decoded; the other chains' records are read as probed.
    chains: [ChainInfo; DECODED_CHAINS],
    /// Chain records, the built-in ones included.
    chain_count: u32,
    /// The rules' target words (empty: every rule is a verdict).
    targets: &'a [u8],
    /// Each rule's residual record number (empty: no rule has one).
    residual_of: &'a [u8],
    /// The residual records ([`Residual::LEN`] bytes each).
    residuals: &'a [u8],
    /// The log records ([`LogRecord::LEN`] bytes each).
    logs: &'a [u8],
    /// Runtime `-m limit` buckets the rules need.
    limit_count: u32,
    /// The NAT records ([`NatRecord`]) the targets of kind 5 name.
    nats: &'a [u8],
    /// The `-m string` records ([`StringSpec::LEN`] bytes each).
    strings: &'a [u8],
    tables_hash: u64,
    total_len: usize,
}

/// Adds a MAC binding, fallback or MTU record to the interface it names.
fn add_to_spec(mut spec: InterfaceSpec, record: InterfaceRecord) -> InterfaceSpec {
    match record {
        InterfaceRecord::Mac { index, mac } if index == spec.index => spec.mac = Some(mac),
        InterfaceRecord::Fallback { index, fallback } if index == spec.index => spec.fallback = Some(fallback),
        InterfaceRecord::ReversePath { index, mode } if index == spec.index => spec.reverse_path = mode,
        InterfaceRecord::Mtu { index, mtu } if index == spec.index => spec.mtu = Some(mtu),
        InterfaceRecord::Wire { index, peer } if index == spec.index => spec.wire_peer = Some(peer),
        _ => {}
    }
    spec
}

/// The states of an entry that admits every tracked state.
const ENTRY_ANY_STATE: u8 = 0x0f;

/// Most `LOG` rules one lookup records ([`Lookup::logged`]); more are
/// counted in [`Lookup::logs_dropped`].
pub const MAX_LOGGED: usize = 8;

/// One rule's `-m limit` state (`xt_limit_priv`): credits and the
/// millisecond they were last topped up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitBucket {
    /// Credits left.
    pub credit: u32,
    /// When they were last topped up (ms).
    pub prev: u64,
}

impl LimitBucket {
    /// `limit_mt` of `xt_limit.c`: tops the credits up by the jiffies
    /// passed (wrapping as its u32 does), caps them, and spends `cost` if
    /// there are enough.
    pub fn take(&mut self, l: &LimitSpec, now_ms: u64) -> bool {
        let passed = now_ms.wrapping_sub(self.prev);
        self.prev = now_ms;
        self.credit = self.credit.wrapping_add(passed.wrapping_mul(u64::from(CREDITS_PER_JIFFY)) as u32);
        if self.credit > l.cap {
            self.credit = l.cap;
        }
        if self.credit >= l.cost {
            self.credit -= l.cost;
            return true;
        }
        false
    }
}

/// The runtime state of one lookup: the clock and `-m limit` buckets, and
/// the `LOG` rules it passed (non-terminating: matching went on).
#[derive(Debug)]
pub struct Lookup<'s> {
    /// Now, in milliseconds (the limit clock: HZ = 1000).
    pub now_ms: u64,
    /// The buckets, [`Image::limit_count`] of them ([`Image::init_limits`]);
    /// empty: every limit has room.
    pub limits: &'s mut [LimitBucket],
    /// The `LOG` rules passed, in order (the first [`Lookup::log_count`]).
    pub logged: [u32; MAX_LOGGED],
    /// How many of `logged` are set.
    pub log_count: usize,
    /// `LOG` rules passed beyond [`MAX_LOGGED`].
    pub logs_dropped: u32,
    /// What the non-terminating NOTRACK and TCPMSS rules passed asked.
    pub marks: Marks,
    /// The `-m recent` tables ([`Image::recent_tables`]); `None`: `--set`
    /// holds, the other commands find nothing, nothing is remembered.
    pub recent: Option<&'s mut RecentTables>,
    /// The `-m hashlimit` tables ([`Image::hashlimit_tables`]); `None`:
    /// every hashlimit is under its limit.
    pub hashlimit: Option<&'s mut HashlimitTables>,
    /// The `-m connlimit` counts; `None`: each packet's connection is alone.
    pub connlimit: Option<&'s mut ConnLimits>,
    /// Set when a `-m hashlimit` table was full or a `-m connlimit` found
    /// no counter for the packet's address: the packet is dropped (Linux's
    /// hot drop), whatever the rules after say.
    pub hotdrop: Option<HotDrop>,
    /// The packet from its IP header to its end, which `-m string`
    /// searches; empty (no packet at hand): no pattern is found.
    pub packet: &'s [u8],
}

/// Why a lookup dropped its packet outright (Linux's `par->hotdrop`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HotDrop {
    /// A new entry for a full `-m hashlimit` table.
    Hashlimit,
    /// No free `-m connlimit` counter for the packet's address.
    Connlimit,
}

impl<'s> Lookup<'s> {
    /// A lookup at `now_ms` with `limits`.
    pub fn new(now_ms: u64, limits: &'s mut [LimitBucket]) -> Lookup<'s> {
        Lookup {
            now_ms,
            limits,
            logged: [0; MAX_LOGGED],
            log_count: 0,
            logs_dropped: 0,
            marks: Marks::default(),
            recent: None,
            hashlimit: None,
            connlimit: None,
            hotdrop: None,
            packet: &[],
        }
    }

    /// This lookup with the packet's bytes (from its IP header) for `-m string`.
    pub fn with_packet(self, packet: &'s [u8]) -> Lookup<'s> {
        Lookup { packet, ..self }
    }

    /// This lookup with the `-m hashlimit` tables.
    pub fn with_hashlimit(self, hashlimit: &'s mut HashlimitTables) -> Lookup<'s> {
        Lookup { hashlimit: Some(hashlimit), ..self }
    }

    /// This lookup with the `-m recent` tables.
    pub fn with_recent(self, recent: &'s mut RecentTables) -> Lookup<'s> {
        Lookup { recent: Some(recent), ..self }
    }

    /// This lookup with the `-m connlimit` counts.
    pub fn with_connlimit(self, connlimit: &'s mut ConnLimits) -> Lookup<'s> {
        Lookup { connlimit: Some(connlimit), ..self }
    }

    /// Without limits: every limit has room.
    pub fn stateless() -> Lookup<'static> {
        Lookup::new(0, &mut [])
    }

    /// The `LOG` rules passed.
    pub fn logged(&self) -> &[u32] {
        self.logged.get(..self.log_count).unwrap_or(&[])
    }

    fn log(&mut self, rule: u32) {
        match self.logged.get_mut(self.log_count) {
            Some(slot) => {
                *slot = rule;
                self.log_count += 1;
            }
            None => self.logs_dropped = self.logs_dropped.saturating_add(1),
        }
    }
}

/// The rule extras after the target words ([`NO_RESIDUAL`] describes them).
#[derive(Default)]
struct Extras<'a> {
    residual_of: &'a [u8],
    residuals: &'a [u8],
    logs: &'a [u8],
    nats: &'a [u8],
    strings: &'a [u8],
    limit_count: u32,
}

/// Splits the rule extras of an image with `n` bytes of target words.
fn extras_of(extras: &[u8], n: usize) -> Option<Extras<'_>> {
    if extras.is_empty() {
        return Some(Extras::default());
    }
    let (residual_of, rest) = (extras.get(..n)?, extras.get(n..)?);
    let (r, l, limit_count) = (u32_item(rest, 0) as usize, u32_item(rest, 1) as usize, u32_item(rest, 2));
    let s = u32_item(rest, 3) as usize;
    let rest = rest.get(16..)?;
    let r_len = r.checked_mul(Residual::LEN)?;
    let l_len = l.checked_mul(LogRecord::LEN)?;
    let s_len = s.checked_mul(StringSpec::LEN)?;
    let nats = rest.get(r_len.checked_add(l_len)?.checked_add(s_len)?..)?;
    if !nats.len().is_multiple_of(NatRecord::LEN) {
        return None;
    }
    let (residuals, rest) = rest.split_at(r_len);
    let (logs, rest) = rest.split_at(l_len);
    let strings = rest.get(..s_len)?;
    if residual_of.chunks_exact(4).map(|w| u32_item(w, 0)).any(|x| x != NO_RESIDUAL && x as usize >= r) {
        return None;
    }
    Some(Extras { residual_of, residuals, logs, nats, strings, limit_count })
}

/// "No matching rule yet" in the lookup.
const NONE: u32 = u32::MAX;

/// Chains [`Image`] keeps decoded: records 0 to 2, the filter table's.
const DECODED_CHAINS: usize = 3;

impl<'a> Image<'a> {
    /// Checks the header, the sections and the chain and tuple records
    /// (O(sections + tuples)); entries are bounds-checked as they are read.
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Image<'a>, FormatError> {
        let header = Header::decode(bytes)?;
        let total = header.total_len as usize;
        if total > bytes.len() {
            return Err(FormatError::Truncated);
        }
        let mut sections: [&[u8]; SECTIONS] = [&[]; SECTIONS];
        for (i, ((s, place), record)) in sections.iter_mut().zip(header.sections).zip(RECORD).enumerate() {
            let (off, len) = (place.offset as usize, place.len as usize);
            let end = off.checked_add(len).ok_or(FormatError::BadSection(i))?;
            if off < HEADER_LEN || end > total || !len.is_multiple_of(record) {
                return Err(FormatError::BadSection(i));
            }
            *s = bytes.get(off..end).ok_or(FormatError::BadSection(i))?;
        }
        let rule_count = header.rule_count;
        let words = sections[sec::LINES].len() / RECORD[sec::LINES];
        if (words != rule_count as usize && words < 2 * rule_count as usize)
            || sections[sec::ACTIONS].len() != rule_count as usize
        {
            return Err(FormatError::BadSection(sec::LINES));
        }
        let n = rule_count as usize * 4;
        let (lines, rest) = sections[sec::LINES].split_at(n);
        sections[sec::LINES] = lines;
        let (targets, extras) = rest.split_at(rest.len().min(n));
        let extras = extras_of(extras, n).ok_or(FormatError::BadSection(sec::LINES))?;
        let chain_count = sections[sec::CHAINS].len() / ChainRecord::LEN;
        if !(BUILTIN_CHAINS..=MAX_CHAINS).contains(&chain_count) {
            return Err(FormatError::BadChain);
        }
        let chains = [chain_info(&sections, 0)?, chain_info(&sections, 1)?, chain_info(&sections, 2)?];
        let mut policies = [Action::Accept; BUILTIN_CHAINS];
        for (n, policy) in policies.iter_mut().enumerate() {
            *policy = chain_record(&sections, n)?.policy;
        }
        for n in DECODED_CHAINS..chain_count {
            chain_info(&sections, n)?;
        }
        Ok(Image {
            sections,
            rule_count,
            conntrack_max: header.conntrack_max,
            policies,
            chains,
            chain_count: chain_count as u32,
            targets,
            residual_of: extras.residual_of,
            residuals: extras.residuals,
            logs: extras.logs,
            limit_count: extras.limit_count,
            nats: extras.nats,
            strings: extras.strings,
            tables_hash: header.tables_hash,
            total_len: total,
        })
    }

    /// The interfaces the rules file configures, each with its MAC binding
    /// and fallback (records of other kinds for the same interface).
    pub fn interfaces(&self) -> impl Iterator<Item = InterfaceSpec> + '_ {
        let records =
            || self.sections[sec::IFACES].chunks_exact(InterfaceRecord::LEN).filter_map(InterfaceRecord::decode);
        records().filter_map(move |record| match record {
            InterfaceRecord::Address { index, addr } => {
                Some(records().fold(InterfaceSpec::new(index, addr), add_to_spec))
            }
            _ => None,
        })
    }

    /// The NAT record of rule `rule`'s target, if it is a NAT target
    /// (kind 5) naming a valid record.
    pub fn nat_of_rule(&self, rule: u32) -> Option<NatRecord> {
        if self.targets.is_empty() {
            return None;
        }
        match Target::decode(u32_item(self.targets, rule as usize)) {
            Target::Nat(n) => NatRecord::decode(self.nats.get((n as usize).checked_mul(NatRecord::LEN)?..)?),
            _ => None,
        }
    }

    /// Whether the rules translate addresses (the connection table then
    /// keeps a second key per flow).
    pub fn has_nat(&self) -> bool {
        !self.nats.is_empty()
    }

    /// The sources allowed to scrape `/metrics`, by interface and port (none:
    /// no server anywhere).
    pub fn metrics_sources(&self) -> impl Iterator<Item = MetricsSource> + '_ {
        self.sections[sec::METRICS].chunks_exact(MetricsSource::LEN).filter_map(MetricsSource::decode)
    }

    /// The rule of each entry of `chain`'s tables, in table order: a rule
    /// appears once per entry it expanded into, and a rule without entries
    /// (it can never match) not at all. Rules are numbered in file order
    /// over all chains; this tells which chain a rule belongs to.
    pub fn entry_rules(&self, chain: Chain) -> impl Iterator<Item = u32> + '_ {
        let entries = match self.head(chain.index() as u32) {
            Some(c) => self.entries_of(&c),
            None => &[],
        };
        entries.chunks_exact(EntryRecord::LEN).filter_map(EntryView::from_slice).map(|e| e.rule())
    }

    /// The ruleset's identity as the compiler stored it ([`format::tables_hash`]
    /// of the image; not recomputed here, so reading it costs nothing at boot).
    pub fn tables_hash(&self) -> u64 {
        self.tables_hash
    }

    /// Bytes in the whole image (the header's length; the slice it was
    /// read from may be longer).
    pub fn total_len(&self) -> usize {
        self.total_len
    }

    /// The static routes.
    pub fn routes(&self) -> impl Iterator<Item = RouteSpec> + '_ {
        self.sections[sec::ROUTES].chunks_exact(RouteSpec::LEN).filter_map(RouteSpec::decode)
    }

    /// The default policy of a chain.
    pub fn policy(&self, chain: Chain) -> Action {
        self.policies.get(chain.index()).copied().unwrap_or(Action::Drop)
    }

    /// Capacity of the connection-tracking table.
    pub fn conntrack_capacity(&self) -> u32 {
        self.conntrack_max
    }

    /// Rules in a chain.
    pub fn rule_count(&self, chain: Chain) -> u32 {
        self.head(chain.index() as u32).map_or(0, |c| c.rules)
    }

    /// Rules in all chains.
    pub fn total_rules(&self) -> u32 {
        self.rule_count
    }

    /// 1-based source line of a rule (0 if there is no such rule).
    pub fn rule_line(&self, rule: u32) -> u32 {
        u32_item(self.sections[sec::LINES], rule as usize)
    }

    /// Bytes of lookup tables (everything but the header, interfaces and routes).
    pub fn table_bytes(&self) -> usize {
        self.sections.iter().skip(sec::LINES).map(|s| s.len()).sum()
    }

    /// The verdict for `key` in `chain`: that of the first matching rule in
    /// file order, or the chain's policy.
    /// Without runtime state, every `-m limit` has room and `LOG` rules
    /// are passed unrecorded; the data path uses [`Image::classify_with`].
    pub fn classify(&self, chain: Chain, key: &PacketKey) -> Verdict {
        self.classify_counting::<false>(chain, key, &mut Cost::default(), &mut Lookup::stateless())
    }

    /// [`Image::classify`] with the rules' runtime state: `-m limit`
    /// buckets (spent as Linux's `xt_limit` does, at `lookup.now_ms`) and
    /// the `LOG`/`NFLOG` rules passed on the way, in `lookup.logged`.
    pub fn classify_with(&self, chain: Chain, key: &PacketKey, lookup: &mut Lookup<'_>) -> Verdict {
        self.classify_counting::<false>(chain, key, &mut Cost::default(), lookup)
    }

    /// [`Image::classify`], also counting the work done (for `explain` and tuning).
    pub fn classify_cost(&self, chain: Chain, key: &PacketKey) -> (Verdict, Cost) {
        let mut cost = Cost::default();
        (self.classify_counting::<true>(chain, key, &mut cost, &mut Lookup::stateless()), cost)
    }

    #[inline]
    /// Whether built-in `chain` can do anything: it has rules, or a
    /// policy other than ACCEPT. An unused chain need not be asked.
    pub fn uses(&self, chain: Chain) -> bool {
        let rules = self.head(chain.index() as u32).map_or(0, |c| c.rules);
        rules > 0 || self.policy(chain) != Action::Accept
    }

    #[inline]
    fn classify_counting<const COUNT: bool>(
        &self,
        chain: Chain,
        key: &PacketKey,
        cost: &mut Cost,
        lookup: &mut Lookup<'_>,
    ) -> Verdict {
        let best = self.first_match_in::<COUNT>(chain.index() as u32, key, 0, cost);
        if self.targets.is_empty() {
            return self.verdict(chain, best); // no jumps: the first match decides
        }
        self.walk((chain, key), best, |n, from, cost| self.first_match_in::<COUNT>(n, key, from, cost), cost, lookup)
    }

    /// Whether some rule has residual matches (so lookups read
    /// [`crate::flow::KeyExtra`]).
    pub fn has_residuals(&self) -> bool {
        !self.residuals.is_empty()
    }

    /// Runtime `-m limit` buckets the rules need ([`Image::init_limits`]).
    pub fn limit_count(&self) -> u32 {
        self.limit_count
    }

    /// Fills `buckets` (at least [`Image::limit_count`] long; allocated at
    /// boot) as `xt_limit`'s `checkentry` does: full, last spent `now_ms`.
    pub fn init_limits(&self, buckets: &mut [LimitBucket], now_ms: u64) {
        for r in self.residuals.chunks_exact(Residual::LEN).filter_map(Residual::decode) {
            if let Some(l) = r.limit {
                if let Some(b) = buckets.get_mut(l.slot as usize) {
                    *b = LimitBucket { credit: l.cap, prev: now_ms };
                }
            }
        }
    }

    /// The `-m recent` tables the rules name, allocated now (empty ones;
    /// Linux creates them when the rules load). Their timestamps together
    /// stay within [`MAX_RECENT_STAMPS`]: a table past it (a hand-made
    /// image) gets none and remembers nothing.
    pub fn recent_tables(&self) -> RecentTables {
        let mut masks: alloc::vec::Vec<u16> = alloc::vec::Vec::new();
        for r in self.residuals.chunks_exact(Residual::LEN).filter_map(Residual::decode) {
            let Some(rc) = r.recent else { continue };
            let t = usize::from(rc.table);
            if t >= masks.len() {
                masks.resize(t + 1, 0);
            }
            if let Some(m) = masks.get_mut(t) {
                *m = (*m).max(rc.stamps_mask);
            }
        }
        let mut total = 0usize;
        let mut usable = 0;
        for &m in &masks {
            total = total.saturating_add(RECENT_ENTRIES.saturating_mul(usize::from(m) + 1));
            if total > MAX_RECENT_STAMPS {
                break;
            }
            usable += 1;
        }
        RecentTables::new(masks.get(..usable).unwrap_or(&[]))
    }

    /// The `-m hashlimit` tables the rules name, allocated now (empty;
    /// Linux creates them when the rules load), each with the
    /// configuration its rules carry (the first rule's, as in Linux),
    /// hashed with `seed`, the garbage collection's clock starting at
    /// `now_ms`.
    pub fn hashlimit_tables(&self, seed: u64, now_ms: u64) -> HashlimitTables {
        let mut configs: alloc::vec::Vec<format::HashlimitSpec> = alloc::vec::Vec::new();
        for r in self.residuals.chunks_exact(Residual::LEN).filter_map(Residual::decode) {
            let Some(hl) = r.hashlimit else { continue };
            let t = usize::from(hl.table);
            if t >= configs.len() {
                configs.resize(t + 1, format::HashlimitSpec { max: 1, gc_interval: 1, ..Default::default() });
            }
            if let Some(c) = configs.get_mut(t) {
                *c = format::HashlimitSpec { invert: false, ..hl };
            }
        }
        HashlimitTables::new(&configs, seed, now_ms)
    }

    /// Counter sets the `-m connlimit` rules need (one per rule,
    /// [`crate::image::format::ConnlimitSpec::slot`]).
    pub fn connlimit_rules(&self) -> usize {
        let slots = self.residuals.chunks_exact(Residual::LEN).filter_map(Residual::decode);
        slots.filter_map(|r| r.connlimit).map(|c| usize::from(c.slot) + 1).max().unwrap_or(0)
    }

    /// Whether some rule has `-m string` (searches the packet's bytes).
    pub fn has_strings(&self) -> bool {
        !self.strings.is_empty()
    }

    /// `-m string` record `n`, if the image has it.
    pub fn string_spec(&self, n: u16) -> Option<StringSpec> {
        let at = usize::from(n).checked_mul(StringSpec::LEN)?;
        StringSpec::decode(self.strings.get(at..)?)
    }

    /// Log record `n` (`LOG`/`NFLOG` targets), if the image has it.
    pub fn log_record(&self, n: u32) -> Option<LogRecord> {
        let at = (n as usize).checked_mul(LogRecord::LEN)?;
        LogRecord::decode(self.logs.get(at..)?)
    }

    /// Rule `rule`'s residual record, if it has one.
    #[inline]
    fn residual(&self, rule: u32) -> Option<Residual> {
        if self.residual_of.is_empty() {
            return None;
        }
        let n = u32_item(self.residual_of, rule as usize);
        if n == NO_RESIDUAL {
            return None;
        }
        Residual::decode(self.residuals.get((n as usize).checked_mul(Residual::LEN)?..)?)
    }

    /// Whether rule `rule` passes its residual matches (the limit aside).
    #[inline]
    fn residual_ok(&self, rule: u32, key: &PacketKey) -> bool {
        self.residual(rule).is_none_or(|r| r.matches(key))
    }

    /// The first rule of chain `c` at or after rule `from` that matches
    /// `key`, or [`NONE`]: the tuples in order of their lowest rule, each
    /// probed while it may still hold a rule below the best so far.
    #[inline]
    fn first_match<const COUNT: bool, T: Fn(usize) -> Option<Tuple>>(
        &self,
        c: &ChainHead,
        tuples: T,
        key: &PacketKey,
        from: u32,
        cost: &mut Cost,
    ) -> u32 {
        let (p1, p2) = port_fields(key);
        let mut todo = (self.cell_mask(c, &c.dst, key.dst) & self.cell_mask(c, &c.src, key.src)) & c.all;
        let mut best = NONE;
        while todo != 0 {
            let t = todo.trailing_zeros() as usize;
            todo &= todo - 1;
            let Some(tuple) = tuples(t) else { break };
            if tuple.min_rule >= best {
                break;
            }
            best = self.probe::<COUNT>(&tuple, key, (p1, p2), from, best, cost);
        }
        best
    }

    /// The same verdict by a linear scan of every entry of the chain (for tests
    /// and as the benchmark's baseline). Entries are grouped by tuple, not in
    /// rule order, so every one is checked: what a first-match scan costs when
    /// the last rule matches.
    pub fn classify_linear(&self, chain: Chain, key: &PacketKey) -> Verdict {
        let best = match self.head(chain.index() as u32) {
            Some(c) => self.first_linear(&c, key, 0),
            None => NONE,
        };
        if self.targets.is_empty() {
            return self.verdict(chain, best);
        }
        let find = |n: u32, from: u32, _: &mut Cost| match self.head(n) {
            Some(c) => self.first_linear(&c, key, from),
            None => NONE,
        };
        self.walk((chain, key), best, find, &mut Cost::default(), &mut Lookup::stateless())
    }

    fn first_linear(&self, c: &ChainHead, key: &PacketKey, from: u32) -> u32 {
        let (p1, p2) = port_fields(key);
        let mut best = NONE;
        for chunk in self.entries_of(c).chunks_exact(EntryRecord::LEN) {
            let Some(entry) = EntryView::from_slice(chunk) else { break };
            let rule = entry.rule();
            if rule < best && rule >= from && entry_matches(entry, key, p1, p2) && self.residual_ok(rule, key) {
                best = rule;
            }
        }
        best
    }

    fn entries_of(&self, c: &ChainHead) -> &'a [u8] {
        let start = (c.entry_start as usize).saturating_mul(EntryRecord::LEN);
        let len = (c.entry_count as usize).saturating_mul(EntryRecord::LEN);
        self.sections[sec::ENTRIES].get(start..start.saturating_add(len)).unwrap_or(&[])
    }

    fn verdict(&self, chain: Chain, best: u32) -> Verdict {
        match self.sections[sec::ACTIONS].get(best as usize) {
            Some(&a) if best != NONE => {
                let RuleAction { action, log } = RuleAction::decode(a);
                Verdict { action, rule: Some(best), log }
            }
            _ => Verdict { action: self.policy(chain), rule: None, log: false },
        }
    }

    /// Tuples that may hold a match for `addr` on one side.
    #[inline]
    fn cell_mask(&self, c: &ChainHead, side: &Side, addr: u32) -> u128 {
        let Some(index) = side.index else {
            return side.unindexed;
        };
        let cell = addr.checked_shr(c.shift).unwrap_or(0) as usize;
        let n = u16_item(self.sections[sec::INDEX], (index as usize).saturating_add(cell));
        side.unindexed | u128_item(self.sections[sec::MASKS], (side.mask_start as usize).saturating_add(usize::from(n)))
    }

    #[inline(always)]
    fn probe<const COUNT: bool>(
        &self,
        t: &Tuple,
        key: &PacketKey,
        (p1, p2): (u16, u16),
        from: u32,
        best: u32,
        cost: &mut Cost,
    ) -> u32 {
        if COUNT {
            cost.tuples += 1;
        }
        let (ks, kd) = (key.src & t.src_mask, key.dst & t.dst_mask);
        let slots = self.sections[sec::SLOTS];
        let mut i = slot_of(ks, if t.port_keyed { kd ^ port_mix(p2) } else { kd }, t.slot_count);
        for _ in 0..t.slot_count {
            let e = u32_item(slots, t.slot_start as usize + i as usize);
            let Some(entry) = self.entry(e) else { return best };
            if COUNT {
                cost.slots += 1;
            }
            if entry.src() & t.src_mask == ks && entry.dst() & t.dst_mask == kd && (!t.port_keyed || entry.p2().0 == p2)
            {
                return self.scan::<COUNT>(e, key, (p1, p2), from, best, cost);
            }
            i += 1;
            if i == t.slot_count {
                i = 0;
            }
        }
        best
    }

    #[inline]
    fn entry(&self, e: u32) -> Option<EntryView<'a>> {
        let at = (e as usize).checked_mul(EntryRecord::LEN)?;
        EntryView::from_slice(self.sections[sec::ENTRIES].get(at..)?)
    }

    /// Walks the run of entries from `e`; returns the first matching rule
    /// at or after `from` and below `best`.
    fn scan<const COUNT: bool>(
        &self,
        mut e: u32,
        key: &PacketKey,
        (p1, p2): (u16, u16),
        from: u32,
        best: u32,
        cost: &mut Cost,
    ) -> u32 {
        while let Some(entry) = self.entry(e) {
            if COUNT {
                cost.entries += 1;
            }
            let rule = entry.rule();
            if rule >= best {
                return best;
            }
            if rule >= from && entry_matches(entry, key, p1, p2) && self.residual_ok(rule, key) {
                return rule;
            }
            if entry.last() {
                return best;
            }
            e = e.wrapping_add(1);
        }
        best
    }
}

/// The two 16-bit fields entries match: ports, or ICMP type and code.
#[inline]
fn port_fields(key: &PacketKey) -> (u16, u16) {
    if key.proto == proto::ICMP {
        (u16::from(key.icmp_type), u16::from(key.icmp_code))
    } else {
        (key.src_port, key.dst_port)
    }
}

#[inline]
fn entry_matches(e: EntryView<'_>, key: &PacketKey, p1: u16, p2: u16) -> bool {
    if (key.src ^ e.src()) & mask(e.src_len()) != 0 || (key.dst ^ e.dst()) & mask(e.dst_len()) != 0 {
        return false;
    }
    let ((p1_low, p1_high), (p2_low, p2_high)) = (e.p1(), e.p2());
    if p1 < p1_low || p1 > p1_high || p2 < p2_low || p2 > p2_high {
        return false;
    }
    if !e.proto_any() && ((key.proto == e.proto()) == e.proto_neg()) {
        return false;
    }
    // Entries hold the four tracked states; an untracked packet passes
    // those of rules that admit every state (the residual record says
    // when a rule's states are not what its entry shows).
    let bit = state_bit(key.state);
    if e.states() & bit == 0 && !(bit == UNTRACKED_BIT && e.states() == ENTRY_ANY_STATE) {
        return false;
    }
    let (in_if, out_if) = (e.in_if(), e.out_if());
    (in_if == ANY_IF || (key.in_if == in_if) != e.in_neg())
        && (out_if == ANY_IF || (key.out_if == out_if) != e.out_neg())
}

/// The tuple mask of a chain with `count` tuples (at most [`MAX_TUPLES`]).
fn all_of(count: u32) -> u128 {
    match count {
        0 => 0,
        n if n as usize >= MAX_TUPLES => u128::MAX,
        n => (1u128 << n) - 1,
    }
}

/// The lookup's view of a chain record (no checks: the reads it leads to are).
fn head_of(c: &ChainRecord) -> ChainHead {
    let all = all_of(c.tuple_count);
    let side = |c: CellIndexSide| Side { unindexed: c.unindexed & all, index: c.index_start, mask_start: c.mask_start };
    ChainHead {
        rules: c.rules,
        all,
        tuple_start: c.tuple_start,
        shift: 32 - c.index_bits.min(MAX_INDEX_BITS),
        entry_start: c.entry_start,
        entry_count: c.entry_count,
        dst: side(c.dst),
        src: side(c.src),
    }
}

/// The lookup's view of a tuple record.
fn tuple_of(r: TupleRecord) -> Tuple {
    Tuple {
        src_mask: mask(r.src_len),
        dst_mask: mask(r.dst_len),
        min_rule: r.min_rule,
        slot_start: r.slot_start,
        slot_count: r.slot_count,
        port_keyed: r.port_keyed,
    }
}

/// Chain record `n`, unchecked.
fn chain_record(s: &[&[u8]; SECTIONS], n: usize) -> Result<ChainRecord, FormatError> {
    s[sec::CHAINS].chunks_exact(ChainRecord::LEN).nth(n).and_then(ChainRecord::decode).ok_or(FormatError::BadChain)
}

/// Chain record `n`, checked against the sections, with its tuples.
fn chain_info(s: &[&[u8]; SECTIONS], n: usize) -> Result<ChainInfo, FormatError> {
    let c = chain_record(s, n)?;
    let (tuple_start, tuple_count) = (c.tuple_start as usize, c.tuple_count as usize);
    let slots = s[sec::SLOTS].len() / RECORD[sec::SLOTS];
    if tuple_count > MAX_TUPLES || tuple_start + tuple_count > s[sec::TUPLES].len() / TupleRecord::LEN {
        return Err(FormatError::BadChain);
    }
    let mut tuples = [Tuple::default(); MAX_TUPLES];
    let records = s[sec::TUPLES].chunks_exact(TupleRecord::LEN).skip(tuple_start).map(TupleRecord::decode);
    for (t, r) in tuples.iter_mut().zip(records).take(tuple_count) {
        *t = tuple_of(r.ok_or(FormatError::BadChain)?);
        if t.slot_count == 0 || t.slot_start as usize + t.slot_count as usize > slots {
            return Err(FormatError::BadChain);
        }
    }
    let info = ChainInfo { head: head_of(&c), tuples };
    let index_len = s[sec::INDEX].len() / RECORD[sec::INDEX];
    for ix in [info.head.dst.index, info.head.src.index].into_iter().flatten() {
        if ix as usize + (1usize << (32 - info.head.shift)) > index_len {
            return Err(FormatError::BadChain);
        }
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_bad_headers() {
        assert_eq!(Image::from_bytes(&[]).unwrap_err(), FormatError::Truncated);
        assert_eq!(Image::from_bytes(&[0u8; 200]).unwrap_err(), FormatError::BadMagic);
        let mut header = Header {
            total_len: 200,
            rule_count: 0,
            conntrack_max: 1,
            sections: [format::Section { offset: HEADER_LEN as u32, len: 0 }; SECTIONS],
            tables_hash: 0,
        };
        let mut b = alloc::vec![0u8; 200];
        b[..HEADER_LEN].copy_from_slice(&header.encode());
        assert_eq!(Image::from_bytes(&b).unwrap_err(), FormatError::BadChain, "no chain records");
        header.sections[sec::ROUTES].len = 80;
        b[..HEADER_LEN].copy_from_slice(&header.encode());
        assert_eq!(Image::from_bytes(&b).unwrap_err(), FormatError::BadSection(sec::ROUTES));
        header.total_len = 201;
        b[..HEADER_LEN].copy_from_slice(&header.encode());
        assert_eq!(Image::from_bytes(&b).unwrap_err(), FormatError::Truncated);
    }
}
