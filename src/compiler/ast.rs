//! The parsed form of a rules file, and the plain linear-scan reference matcher.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

pub use unifw_core::flow::{mask, state_bit, ANY_STATE};
use unifw_core::flow::{proto, Action, Chain, PacketKey, Verdict, BUILTIN_CHAINS};
pub use unifw_core::image::format::{HashlimitSpec, LimitSpec, LogRecord, RecentSpec, Residual};
use unifw_core::image::format::{NatRecord, MAX_CALL_DEPTH, MAX_LOOKUPS};
use unifw_core::image::{IfAddr, InterfaceSpec, RouteSpec};
use unifw_core::net::addr::Cidr;

use super::diag::Diagnostic;

/// An IPv4 prefix; `addr` has no bits set past `len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Prefix {
    /// Network address, host order.
    pub addr: u32,
    /// Prefix length, 0..=32.
    pub len: u8,
}

impl Prefix {
    /// The prefix `addr/len`, with host bits cleared.
    pub fn new(addr: u32, len: u8) -> Self {
        Prefix { addr: addr & mask(len), len: len.min(32) }
    }

    /// Whether `ip` lies inside the prefix.
    pub fn contains(&self, ip: u32) -> bool {
        (ip ^ self.addr) & mask(self.len) == 0
    }

    /// Whether `other` lies wholly inside `self`.
    pub fn covers(&self, other: &Prefix) -> bool {
        self.len <= other.len && self.contains(other.addr)
    }
}

/// Address match: one of `prefixes`, or (negated) none of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrMatch {
    /// `!`: the address must lie outside every prefix.
    pub negated: bool,
    /// The prefixes (a list, or the named set itself: shared, not copied).
    pub prefixes: Arc<[Prefix]>,
}

impl AddrMatch {
    fn matches(&self, ip: u32) -> bool {
        self.prefixes.iter().any(|p| p.contains(ip)) != self.negated
    }
}

/// Port match (TCP/UDP): in one of the inclusive `ranges`, or (negated) in none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMatch {
    /// `!`: the port must lie outside every range.
    pub negated: bool,
    /// Inclusive ranges.
    pub ranges: Vec<(u16, u16)>,
}

impl PortMatch {
    fn matches(&self, port: u16) -> bool {
        self.ranges.iter().any(|&(lo, hi)| lo <= port && port <= hi) != self.negated
    }

    /// `-m multiport --ports` (Linux's `XT_MULTIPORT_EITHER`): the source
    /// or the destination port is in a range; negated, neither is.
    pub fn matches_either(&self, src: u16, dst: u16) -> bool {
        let inside = |p: u16| self.ranges.iter().any(|&(lo, hi)| lo <= p && p <= hi);
        (inside(src) || inside(dst)) != self.negated
    }
}

/// Protocol match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtoMatch {
    /// Any protocol.
    Any,
    /// One of these protocol numbers.
    OneOf(Vec<u8>),
    /// Any protocol but this one.
    Not(u8),
}

impl ProtoMatch {
    /// Whether packets of protocol `p` match.
    pub fn matches(&self, p: u8) -> bool {
        match self {
            ProtoMatch::Any => true,
            ProtoMatch::OneOf(list) => list.contains(&p),
            ProtoMatch::Not(q) => p != *q,
        }
    }

    /// Whether the match admits only TCP and UDP (so ports make sense).
    pub fn has_ports(&self) -> bool {
        matches!(self, ProtoMatch::OneOf(l) if !l.is_empty() && l.iter().all(|&p| p == proto::TCP || p == proto::UDP))
    }

    /// Whether the match admits exactly ICMP.
    pub fn is_icmp(&self) -> bool {
        matches!(self, ProtoMatch::OneOf(l) if !l.is_empty() && l.iter().all(|&p| p == proto::ICMP))
    }
}

/// ICMP type (and code) match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpMatch {
    /// `!`: anything but this type/code.
    pub negated: bool,
    /// ICMP type.
    pub icmp_type: u8,
    /// ICMP code, or any code.
    pub code: Option<u8>,
}

impl IcmpMatch {
    fn matches(&self, t: u8, c: u8) -> bool {
        (t == self.icmp_type && self.code.is_none_or(|code| code == c)) != self.negated
    }
}

/// Interface match: the packet's interface is in `set` (bit i = NIC i),
/// or (negated) is not. An empty set is a name no NIC has (`-i lo`, an
/// absent interface): it matches nothing, and negated everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IfMatch {
    /// `!`: any interface outside the set.
    pub negated: bool,
    /// The interfaces, bit i = eth<i> (bits 0..=14).
    pub set: u16,
}

impl IfMatch {
    /// A match of the one interface `index` (0 = eth0).
    pub fn one(negated: bool, index: u8) -> Self {
        IfMatch { negated, set: 1u16.checked_shl(u32::from(index)).unwrap_or(0) }
    }

    /// The interface indexes of the set, lowest first.
    pub fn indexes(&self) -> impl Iterator<Item = u8> + '_ {
        (0..16u8).filter(move |i| self.set & (1 << i) != 0)
    }

    /// Whether a packet on interface `i` matches. "No interface" (the
    /// output side of input traffic) is outside every set, except that a
    /// negated set of several interfaces is stored as its complement over
    /// eth0..eth14, which does not hold "no interface" either (iptables
    /// refuses `-o` in INPUT, so only a native rule can ask this).
    pub fn matches(&self, i: u8) -> bool {
        let inside = i < 16 && self.set & (1 << i) != 0;
        if self.negated && self.set.count_ones() > 1 && i >= 15 {
            return false;
        }
        inside != self.negated
    }
}

/// The chain a rule belongs to: a built-in one or a user chain (iptables
/// `-N`), numbered from 0 in [`Ruleset::chains`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleChain {
    /// INPUT or FORWARD.
    Builtin(Chain),
    /// A user chain.
    User(u16),
}

impl PartialEq<Chain> for RuleChain {
    fn eq(&self, other: &Chain) -> bool {
        *self == RuleChain::Builtin(*other)
    }
}

impl RuleChain {
    /// The chain's number in the image: the built-in chains in
    /// [`Chain::index`] order, then the user chains from [`BUILTIN_CHAINS`].
    pub fn number(self) -> usize {
        match self {
            RuleChain::Builtin(c) => c.index(),
            RuleChain::User(n) => user_chain_number(n),
        }
    }
}

/// The image chain number of user chain `n`.
pub fn user_chain_number(n: u16) -> usize {
    BUILTIN_CHAINS + usize::from(n)
}

/// Where evaluation goes when a rule matches, instead of its action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Jump {
    /// `-j CHAIN`: the user chain, then back to the next rule.
    Call(u16),
    /// `-g CHAIN`: the user chain, whose return goes to the caller's caller.
    Goto(u16),
    /// `-j RETURN`: back to the caller (in a built-in chain: its policy).
    Return,
    /// raw `-j NOTRACK` (`-j CT --notrack`): the packet is not tracked;
    /// matching continues with the next rule.
    NoTrack,
    /// `-j TCPMSS`: the SYN's MSS is lowered to this (0: the path MTU
    /// less 40); matching continues with the next rule.
    TcpMss(u16),
    /// `-j DNAT`, `SNAT`, `MASQUERADE` (nat table): the translation
    /// [`Ruleset::nats`]`[n]`; terminal, like ACCEPT.
    Nat(u32),
    /// No `-j` on a rule whose `-m recent` changes its table: the change is
    /// made and matching continues with the next rule.
    Continue,
}

/// A user-defined chain (iptables `:NAME -` or `-N NAME`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserChain {
    /// Its name.
    pub name: String,
    /// Index of the file that declares it in [`Ruleset::files`].
    pub file: u16,
    /// 1-based line of the declaration.
    pub line: u32,
}

/// One rule: all present matches must hold (an absent match is "any").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Which chain it belongs to.
    pub chain: RuleChain,
    /// What it does (unless it jumps).
    pub action: Action,
    /// A jump, goto or return, which replaces the action.
    pub jump: Option<Jump>,
    /// Whether a match is logged.
    pub log: bool,
    /// Index of the source file (0 = the main file) in [`Ruleset::files`].
    pub file: u16,
    /// 1-based line in that file.
    pub line: u32,
    /// 1-based column of the rule's first token (for warnings).
    pub column: u32,
    /// Protocol.
    pub proto: ProtoMatch,
    /// Source address.
    pub src: Option<AddrMatch>,
    /// Destination address.
    pub dst: Option<AddrMatch>,
    /// Source port (TCP/UDP rules only).
    pub sport: Option<PortMatch>,
    /// Destination port (TCP/UDP rules only).
    pub dport: Option<PortMatch>,
    /// ICMP type/code (ICMP rules only).
    pub icmp: Option<IcmpMatch>,
    /// Input interface.
    pub in_if: Option<IfMatch>,
    /// Output interface.
    pub out_if: Option<IfMatch>,
    /// Connection states ([`ANY_STATE`] = any).
    pub states: u8,
    /// Matches the tuple lookup does not index (`--tcp-flags`, `-m ttl`,
    /// `-m limit`, ...), checked once an entry matched (the limit's slot
    /// is numbered by the image writer).
    pub residual: Residual,
    /// `-j LOG`/`-j NFLOG`: the rule logs and matching goes on.
    pub log_target: Option<LogRecord>,
    /// Matches decided at compile time (`-f`, `-m owner`, `-m mark`), as
    /// written: their result is in `residual` (never) or `states`.
    pub folded: Vec<super::iptables_folded::Folded>,
    /// `-m multiport --ports`: the source or the destination port (TCP/UDP
    /// rules only; the index holds it as two boxes, see `expand.rs`).
    pub ports: Option<PortMatch>,
    /// `-m string`: searched in the packet's bytes after the lookup (the
    /// image writer puts it in the string table; `residual.string` names
    /// its record there).
    pub string: Option<unifw_core::image::format::StringSpec>,
}

impl Rule {
    /// A rule matching everything, in `chain`, doing `action`.
    pub fn any(chain: Chain, action: Action) -> Self {
        Rule {
            chain: RuleChain::Builtin(chain),
            action,
            jump: None,
            log: false,
            file: 0,
            line: 0,
            column: 0,
            proto: ProtoMatch::Any,
            src: None,
            dst: None,
            sport: None,
            dport: None,
            icmp: None,
            in_if: None,
            out_if: None,
            states: ANY_STATE,
            residual: Residual::default(),
            log_target: None,
            folded: Vec::new(),
            ports: None,
            string: None,
        }
    }

    /// The rule's residual record as the image holds it: its residual
    /// matches, plus the exact states when its entries cannot say them
    /// (some but not all states with `UNTRACKED`, or the four tracked ones).
    pub fn image_residual(&self) -> Option<Residual> {
        let mut r = self.residual;
        let untracked = self.states & unifw_core::flow::UNTRACKED_BIT != 0;
        // (A `--ctstate` with SNAT or DNAT holds `residual.states` already;
        // the parser refuses it beside such a state match.)
        if self.states != ANY_STATE && (untracked || self.states == 0x0f) && r.states.is_none() {
            r.states = Some(self.states);
        }
        if self.string.is_some() {
            r.string = Some(0); // the record's number is the image writer's
        }
        (r != Residual::default()).then_some(r)
    }

    /// The reference semantics: whether this rule matches `key`.
    pub fn matches(&self, key: &PacketKey) -> bool {
        self.proto.matches(key.proto)
            && self.src.as_ref().is_none_or(|m| m.matches(key.src))
            && self.dst.as_ref().is_none_or(|m| m.matches(key.dst))
            && self.sport.as_ref().is_none_or(|m| m.matches(key.src_port))
            && self.dport.as_ref().is_none_or(|m| m.matches(key.dst_port))
            && self.ports.as_ref().is_none_or(|m| m.matches_either(key.src_port, key.dst_port))
            && self.icmp.is_none_or(|m| m.matches(key.icmp_type, key.icmp_code))
            && self.in_if.is_none_or(|m| m.matches(key.in_if))
            && self.out_if.is_none_or(|m| m.matches(key.out_if))
            && self.states & state_bit(key.state) != 0
            && self.residual.matches(key)
    }
}

/// A `metrics` statement: serve `GET /metrics` on an interface's own
/// address to the listed sources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metrics {
    /// The interface (0 = eth0).
    pub interface: u8,
    /// TCP port ([`METRICS_DEFAULT_PORT`] unless given).
    pub port: u16,
    /// Sources allowed to scrape (at least one).
    pub from: Vec<Prefix>,
    /// Index of the source file in [`Ruleset::files`].
    pub file: u16,
    /// 1-based line of the statement.
    pub line: u32,
    /// 1-based column of the statement.
    pub column: u32,
}

/// The port of a `metrics` statement without `port` (Prometheus's node
/// exporter's).
pub const METRICS_DEFAULT_PORT: u16 = 9100;

/// Everything a rules file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ruleset {
    /// Source file names; `Rule::file` indexes this.
    pub files: Vec<String>,
    /// Interfaces, in index order.
    pub interfaces: Vec<InterfaceSpec>,
    /// Static routes.
    pub routes: Vec<RouteSpec>,
    /// The built-in chains' policies, by [`Chain::index`] (see
    /// [`Ruleset::policy`]).
    pub policies: [Action; BUILTIN_CHAINS],
    /// Connection-tracking table size.
    pub conntrack_max: u32,
    /// All rules of every chain, in file order.
    pub rules: Vec<Rule>,
    /// User chains ([`RuleChain::User`] numbers index this).
    pub chains: Vec<UserChain>,
    /// `metrics` statements (at most one per interface).
    pub metrics: Vec<Metrics>,
    /// Address translations of the nat rules ([`Jump::Nat`] indexes this).
    pub nats: Vec<NatRecord>,
    /// The user chains declared in the nat table.
    pub nat_chains: Vec<u16>,
    /// Warnings and notes found while parsing (interface names no NIC has, ...).
    pub warnings: Vec<Diagnostic>,
}

/// The reference evaluator's runtime state: a clock, `xt_limit` buckets
/// by rule number (started full at time `start` when first met), and the
/// `LOG` rules passed.
#[derive(Debug, Clone, Default)]
pub struct RefState {
    /// Now (ms); `None`: no limit state, every limit has room.
    pub now_ms: Option<u64>,
    /// When the buckets started full (boot).
    pub start: u64,
    /// (credit, last ms) per rule.
    pub buckets: alloc::collections::BTreeMap<usize, (u32, u64)>,
    /// `LOG` rules passed, in order.
    pub logged: Vec<u32>,
    /// `-m recent` tables by number, each a list from the least to the
    /// most recently updated entry (Linux's LRU list).
    pub recent: alloc::collections::BTreeMap<u16, Vec<RefRecent>>,
    /// `-m hashlimit` tables by number: (masked key, credit, last packet).
    pub hashlimit: alloc::collections::BTreeMap<u8, Vec<RefHashEntry>>,
    /// Packets dropped because their `-m hashlimit` table was full.
    pub hotdrops: u64,
    /// `-m connlimit`'s input: the connections (the packet's own included)
    /// rule `n` counts under masked address `a`, by (n, a); absent: the
    /// packet's own only (1).
    pub connections: alloc::collections::BTreeMap<(usize, u32), u32>,
    /// The packet from its IP header, which `-m string` searches (empty:
    /// no pattern is found).
    pub packet: Vec<u8>,
}

/// One entry of a reference `-m hashlimit` table: (masked source,
/// destination, ports), credit, last packet (ms).
pub type RefHashEntry = ((u32, u32, u32), u64, u64);

/// One address of a reference `-m recent` table (`struct recent_entry`).
#[derive(Debug, Clone)]
pub struct RefRecent {
    addr: u32,
    ttl: u8,
    /// Where the next timestamp goes (the ring's length wraps it).
    index: usize,
    nstamps: usize,
    stamps: Vec<u64>,
}

impl RefState {
    /// `recent_mt` of Linux's `xt_recent.c`, written out again on lists:
    /// whether `rc` holds for `key`, changing its table. `ring`: the
    /// table's timestamps per address (the next power of two at or above
    /// the largest `--hitcount` of the rules naming it; 32 without one).
    fn recent(&mut self, rc: &RecentSpec, ring: usize, key: &PacketKey) -> bool {
        use unifw_core::image::format::{RECENT_ENTRIES, RECENT_REMOVE, RECENT_SET, RECENT_UPDATE};
        let set = rc.cmd == RECENT_SET;
        let Some(now) = self.now_ms else { return rc.invert != set };
        let later = |a: u64, b: u64| (b.wrapping_sub(a) as i64) < 0;
        let list = self.recent.entry(rc.table).or_default();
        let addr = (if rc.dest { key.dst } else { key.src }) & rc.mask;
        // xt_recent uses the TTL as received: a forwarded packet's is one
        // less in FORWARD and POSTROUTING, so one is added back.
        let forwarded = key.in_if != unifw_core::flow::NO_IF && key.out_if != unifw_core::flow::NO_IF;
        let ttl = if forwarded { key.extra.ttl.wrapping_add(1) } else { key.extra.ttl };
        let want = if rc.rttl { ttl } else { 0 };
        let found = list.iter().position(|e| e.addr == addr && (want == 0 || e.ttl == 0 || e.ttl == want));
        let Some(mut p) = found else {
            if set {
                if list.len() >= RECENT_ENTRIES {
                    list.remove(0);
                }
                let mut stamps = alloc::vec![0; ring];
                stamps[0] = now;
                list.push(RefRecent { addr, ttl, index: 1, nstamps: 1, stamps });
            }
            return rc.invert != set;
        };
        let holds;
        if rc.cmd == RECENT_REMOVE {
            list.remove(p);
            return !rc.invert;
        } else if set {
            holds = true;
        } else {
            let time = now.wrapping_sub(u64::from(rc.seconds) * 1000);
            let e = &list[p];
            let fresh = e.stamps[..e.nstamps].iter().filter(|&&t| rc.seconds == 0 || !later(time, t)).count();
            holds = fresh > 0 && (rc.hitcount == 0 || fresh >= usize::from(rc.hitcount));
            let updating = rc.cmd == RECENT_UPDATE && (holds != rc.invert);
            if rc.reap && !(p == 0 && updating) {
                let head = &list[0];
                if later(time, head.stamps[head.index - 1]) {
                    list.remove(0);
                    if p == 0 {
                        return holds != rc.invert; // the entry itself went (not to be updated)
                    }
                    p -= 1;
                }
            }
        }
        let ret = holds != rc.invert;
        if set || (rc.cmd == RECENT_UPDATE && ret) {
            let mut e = list.remove(p);
            e.index %= ring;
            e.stamps[e.index] = now;
            e.index += 1;
            e.nstamps = e.nstamps.max(e.index);
            e.ttl = ttl;
            list.push(e);
        }
        ret
    }

    /// `hashlimit_mt_common` of Linux's `xt_hashlimit.c` (packet rates),
    /// written out again on a list, the garbage collection run whole at
    /// `start + k * gc_interval`: `Some(holds)`, or `None` for a hot drop
    /// (a new entry for a full table).
    fn hashlimit(&mut self, hl: &HashlimitSpec, key: &PacketKey) -> Option<bool> {
        use unifw_core::image::format::{HASHLIMIT_CREDITS_PER_JIFFY, HL_DIP, HL_DPT, HL_SIP, HL_SPT};
        let Some(now) = self.now_ms else { return Some(!hl.invert) };
        let list = self.hashlimit.entry(hl.table).or_default();
        let runs = (now - self.start) / u64::from(hl.gc_interval);
        if runs > 0 {
            let last_run = self.start + runs * u64::from(hl.gc_interval);
            list.retain(|&(_, _, prev)| prev + u64::from(hl.expire) > last_run);
        }
        let prefix = |a: u32, len: u8| if len == 0 { 0 } else { a >> (32 - u32::from(len)) << (32 - u32::from(len)) };
        let on = |bit: u8| hl.mode & bit != 0;
        let k = (
            if on(HL_SIP) { prefix(key.src, hl.srcmask) } else { 0 },
            if on(HL_DIP) { prefix(key.dst, hl.dstmask) } else { 0 },
            (if on(HL_SPT) { u32::from(key.src_port) } else { 0 }) << 16
                | if on(HL_DPT) { u32::from(key.dst_port) } else { 0 },
        );
        let (cost, cap) = (hl.cost(), hl.cap());
        let p = match list.iter().position(|e| e.0 == k) {
            Some(p) => {
                let e = &mut list[p];
                if now != e.2 {
                    e.1 = e.1.wrapping_add((now - e.2).wrapping_mul(HASHLIMIT_CREDITS_PER_JIFFY)).min(cap);
                    e.2 = now;
                }
                p
            }
            None if list.len() as u32 >= hl.max => {
                self.hotdrops += 1;
                return None;
            }
            None => {
                list.push((k, cap, now));
                list.len() - 1
            }
        };
        let e = &mut list[p];
        let under = e.1 >= cost;
        if under {
            e.1 -= cost;
        }
        Some(under != hl.invert)
    }

    /// `limit_mt` of Linux's `xt_limit.c`, written out again.
    fn take(&mut self, rule: usize, l: &LimitSpec) -> bool {
        let Some(now) = self.now_ms else { return true };
        let (credit, prev) = self.buckets.entry(rule).or_insert((l.cap, self.start));
        let gained = (now - *prev).wrapping_mul(u64::from(unifw_core::image::format::CREDITS_PER_JIFFY));
        *prev = now;
        *credit = (u64::from(*credit) + gained) as u32; // u32 += unsigned long, as in C
        *credit = (*credit).min(l.cap);
        if *credit < l.cost {
            return false;
        }
        *credit -= l.cost;
        true
    }
}

/// Default connection-tracking capacity.
pub const DEFAULT_CONNTRACK_MAX: u32 = 65536;

impl Default for Ruleset {
    fn default() -> Self {
        Ruleset {
            files: Vec::new(),
            interfaces: Vec::new(),
            routes: Vec::new(),
            policies: [Action::Accept; BUILTIN_CHAINS],
            conntrack_max: DEFAULT_CONNTRACK_MAX,
            rules: Vec::new(),
            chains: Vec::new(),
            metrics: Vec::new(),
            nats: Vec::new(),
            nat_chains: Vec::new(),
            warnings: Vec::new(),
        }
    }
}

impl Ruleset {
    /// The lab's interfaces (CONVENTIONS.md): eth0 10.1.0.1/24, eth1 10.2.0.1/24.
    pub fn lab_interfaces() -> Vec<InterfaceSpec> {
        alloc::vec![
            InterfaceSpec::new(0, IfAddr::Static(Cidr { addr: 0x0a01_0001, prefix_len: 24 })),
            InterfaceSpec::new(1, IfAddr::Static(Cidr { addr: 0x0a02_0001, prefix_len: 24 })),
        ]
    }

    /// The policy of `chain`.
    pub fn policy(&self, chain: Chain) -> Action {
        self.policies.get(chain.index()).copied().unwrap_or(Action::Accept)
    }

    /// Sets the policy of `chain`.
    pub fn set_policy(&mut self, chain: Chain, action: Action) {
        if let Some(p) = self.policies.get_mut(chain.index()) {
            *p = action;
        }
    }

    /// Reference classification with iptables' semantics, by linear scans
    /// in file order: the first matching rule of the chain decides, a jump
    /// enters its chain and comes back to the next rule when that chain
    /// returns (`RETURN` or its end), a goto enters its chain without a
    /// return point, and with no return point left the built-in chain's
    /// policy decides. Deeper than [`MAX_CALL_DEPTH`] or longer than
    /// [`MAX_LOOKUPS`] (rulesets the compiler refuses) drops, as the image does.
    /// Without limit state (every limit has room) and logging nothing.
    pub fn classify_linear(&self, chain: Chain, key: &PacketKey) -> Verdict {
        self.classify_reference(chain, key, &mut RefState::default())
    }

    /// [`Ruleset::classify_linear`] with `-m limit` buckets per rule at a
    /// deterministic clock, recording the `LOG` rules passed.
    pub fn classify_reference(&self, chain: Chain, key: &PacketKey, st: &mut RefState) -> Verdict {
        let policy = Verdict { action: self.policy(chain), rule: None, log: false };
        let mut stack: Vec<(RuleChain, usize)> = Vec::new();
        let (mut current, mut from) = (RuleChain::Builtin(chain), 0);
        for _ in 0..MAX_LOOKUPS {
            let hit =
                self.rules.iter().enumerate().skip(from).find(|(_, r)| {
                    r.chain == current && r.matches(key) && r.string.is_none_or(|s| s.holds(&st.packet))
                });
            if let Some((i, r)) = hit {
                if let Some(rc) = r.residual.recent {
                    let ring = self
                        .rules
                        .iter()
                        .filter_map(|o| o.residual.recent.filter(|x| x.table == rc.table))
                        .map(|x| if x.hitcount == 0 { 32 } else { usize::from(x.hitcount).next_power_of_two() })
                        .max()
                        .unwrap_or(32);
                    if !st.recent(&rc, ring, key) {
                        from = i + 1;
                        continue;
                    }
                }
                if let Some(hl) = r.residual.hashlimit {
                    match st.hashlimit(&hl, key) {
                        Some(true) => {}
                        Some(false) => {
                            from = i + 1;
                            continue;
                        }
                        None => return Verdict { action: Action::Drop, rule: None, log: false },
                    }
                }
                if let Some(l) = r.residual.limit {
                    if !st.take(i, &l) {
                        from = i + 1;
                        continue;
                    }
                }
                if let Some(c) = r.residual.connlimit {
                    // `connlimit_mt`: (count > limit) XOR invert.
                    let addr = if c.dest { key.dst } else { key.src } & c.mask;
                    let count = st.connections.get(&(i, addr)).copied().unwrap_or(1);
                    if (count > c.limit) == c.invert {
                        from = i + 1;
                        continue;
                    }
                }
                if r.log_target.is_some() {
                    st.logged.push(i as u32);
                    from = i + 1;
                    continue;
                }
            }
            match hit {
                Some((i, r)) if matches!(r.jump, Some(Jump::NoTrack | Jump::TcpMss(_) | Jump::Continue)) => {
                    from = i + 1
                }
                Some((i, r)) if matches!(r.jump, None | Some(Jump::Nat(_))) => {
                    return Verdict { action: r.action, rule: Some(i as u32), log: r.log }
                }
                Some((i, r)) if matches!(r.jump, Some(Jump::Call(_) | Jump::Goto(_))) => {
                    let (Some(Jump::Call(to)) | Some(Jump::Goto(to))) = r.jump else { break };
                    if matches!(r.jump, Some(Jump::Call(_))) {
                        if stack.len() == MAX_CALL_DEPTH {
                            break;
                        }
                        stack.push((current, i + 1));
                    }
                    (current, from) = (RuleChain::User(to), 0);
                }
                _ => match stack.pop() {
                    Some(back) => (current, from) = back,
                    None => return policy,
                },
            }
        }
        Verdict { action: Action::Drop, rule: None, log: false }
    }
}
