//! The firewall's counters as Prometheus text (exposition format 0.0.4),
//! written incrementally: [`Exposition::write`] fills whatever room the
//! caller has (the free part of a TCP send buffer), remembers where it
//! stopped (a family and an item in it, plus the rest of a line it could
//! not finish) and goes on from there at the next call. The text is never
//! built whole: with a million rules hit it runs to tens of MB, while the
//! writer holds one line.
//!
//! Each family is a `# HELP` and a `# TYPE` line, then its samples; counters
//! end in `_total`. Label values are escaped as the format asks (`\\`,
//! `\"`, `\n`). Per-rule hits are listed only for rules that have any. The
//! numbers are read as the cursor reaches them, so one scrape is not a
//! snapshot of a single instant (counters only grow, so each is still
//! monotonic from scrape to scrape).

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt::{self, Display, Write};

use super::metrics::{ServerCounts, Status};
use crate::flow::{Chain, Table};
use crate::image::Image;
use crate::net::{Dataplane, DropReason};

/// Bytes of the longest line (every line the writer renders is shorter;
/// one that did not fit would be left out, never cut).
pub const LINE_MAX: usize = 256;
/// Items (lines, or rules without hits skipped) one [`Exposition::write`]
/// examines at most, so that a million idle rules cost several polls of
/// bounded work rather than one long one.
pub const STEPS_PER_WRITE: usize = 65_536;

/// The firewall state the text describes, lent for one write.
pub struct Sources<'s, 'i> {
    /// Interface names, by index.
    pub names: &'s [String],
    /// The packet path: counters, connection and neighbour tables.
    pub dataplane: &'s Dataplane,
    /// The compiled rules.
    pub image: &'s Image<'i>,
    /// Microseconds since boot.
    pub uptime_us: u64,
}

/// What the server knows about the ruleset beyond the image: when it was
/// compiled, and which chain each rule belongs to (the image numbers rules
/// over all chains in file order).
#[derive(Debug, Clone)]
pub struct RulesetFacts {
    /// Unix seconds at which the rules were compiled.
    pub compiled_at: u64,
    /// For each built-in chain other than FORWARD that has rules: bit `r`
    /// set, rule `r` is in it. Rules in none are FORWARD's (rules of user
    /// chains too, which have no label of their own yet).
    chains: Vec<(Chain, Vec<u64>)>,
}

impl RulesetFacts {
    /// The facts of `image`: one pass over the entries of each built-in
    /// chain but FORWARD (a bitmap each, only for chains with rules).
    pub fn new(image: &Image<'_>, compiled_at: u64) -> RulesetFacts {
        let words = (image.total_rules() as usize).div_ceil(64);
        let mut chains = Vec::new();
        for chain in Chain::ALL.into_iter().filter(|&c| c != Chain::Forward && image.rule_count(c) > 0) {
            let mut bits = vec![0u64; words];
            for rule in image.entry_rules(chain) {
                if let Some(word) = bits.get_mut(rule as usize / 64) {
                    *word |= 1 << (rule % 64);
                }
            }
            chains.push((chain, bits));
        }
        RulesetFacts { compiled_at, chains }
    }

    /// The chain of rule `rule`.
    pub fn chain_of(&self, rule: u32) -> Chain {
        let has = |bits: &Vec<u64>| bits.get(rule as usize / 64).copied().unwrap_or(0) & (1 << (rule % 64)) != 0;
        self.chains.iter().find(|(_, bits)| has(bits)).map_or(Chain::Forward, |&(chain, _)| chain)
    }
}

/// Everything one write reads.
pub struct View<'v, 's, 'i> {
    /// The firewall's state.
    pub sources: &'v Sources<'s, 'i>,
    /// The ruleset's compile time and chains.
    pub ruleset: &'v RulesetFacts,
    /// The metrics server's own counts.
    pub server: &'v ServerCounts,
}

/// Where an exposition is: the family, the item in it (0 and 1 are the
/// HELP and TYPE lines), and the line being written with how much of it
/// is out.
pub struct Exposition {
    family: usize,
    item: usize,
    line: Line,
    sent: usize,
    done: bool,
}

impl Default for Exposition {
    fn default() -> Self {
        Exposition::new()
    }
}

impl Exposition {
    /// An exposition at its start.
    pub fn new() -> Exposition {
        Exposition { family: 0, item: 0, line: Line::new(), sent: 0, done: false }
    }

    /// Where the cursor is (family, item, bytes of the current line out):
    /// it moves whenever a write examined anything.
    pub fn position(&self) -> (usize, usize, usize) {
        (self.family, self.item, self.sent)
    }

    /// Whether every byte has been written.
    pub fn is_done(&self) -> bool {
        self.done && self.sent >= self.line.len
    }

    /// Writes the next bytes of the text into `out`, as many as fit (lines
    /// may be split between calls), after examining at most
    /// [`STEPS_PER_WRITE`] items. Returns the bytes written; 0 with
    /// [`Exposition::is_done`] false means the step budget ran out first.
    pub fn write(&mut self, view: &View<'_, '_, '_>, out: &mut [u8]) -> usize {
        let mut written = 0;
        let mut steps = 0;
        loop {
            let pending = self.line.bytes().get(self.sent..).unwrap_or(&[]);
            if !pending.is_empty() {
                let room = out.get_mut(written..).unwrap_or(&mut []);
                let n = pending.len().min(room.len());
                if let (Some(to), Some(from)) = (room.get_mut(..n), pending.get(..n)) {
                    to.copy_from_slice(from);
                }
                written += n;
                self.sent += n;
                if self.sent < self.line.len {
                    return written;
                }
            }
            if self.done || steps >= STEPS_PER_WRITE {
                return written;
            }
            steps += 1;
            self.line.clear();
            self.sent = 0;
            self.next_line(view);
        }
    }

    /// Renders the line at the cursor (possibly none) and moves on.
    fn next_line(&mut self, view: &View<'_, '_, '_>) {
        let Some(&family) = FAMILIES.get(self.family) else {
            self.done = true;
            return;
        };
        let (name, kind, help) = family.describe();
        let item = self.item;
        self.item += 1;
        let line = &mut self.line;
        let _ = match item {
            0 => {
                let _ = write!(line, "# HELP {name} ");
                write!(Escape { out: line, quotes: false }, "{help}").and_then(|()| line.write_char('\n'))
            }
            1 => writeln!(line, "# TYPE {name} {kind}"),
            _ => {
                if !family.sample(item - 2, view, name, line) {
                    self.family += 1;
                    self.item = 0;
                }
                Ok(())
            }
        };
        if line.overflow {
            line.clear();
        }
    }
}

/// One line being rendered: a fixed buffer that refuses what does not fit.
struct Line {
    bytes: [u8; LINE_MAX],
    len: usize,
    overflow: bool,
}

impl Line {
    fn new() -> Line {
        Line { bytes: [0; LINE_MAX], len: 0, overflow: false }
    }

    fn clear(&mut self) {
        self.len = 0;
        self.overflow = false;
    }

    fn bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or(&[])
    }
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        match self.bytes.get_mut(self.len..end) {
            Some(to) => {
                to.copy_from_slice(s.as_bytes());
                self.len = end;
                Ok(())
            }
            None => {
                self.overflow = true;
                Err(fmt::Error)
            }
        }
    }
}

/// Escapes what is written through it: `\` and newlines (HELP text), and
/// `"` too (label values).
struct Escape<'w, W: Write> {
    out: &'w mut W,
    quotes: bool,
}

impl<W: Write> Write for Escape<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            match c {
                '\\' => self.out.write_str("\\\\")?,
                '\n' => self.out.write_str("\\n")?,
                '"' if self.quotes => self.out.write_str("\\\"")?,
                c => self.out.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// A sample line: `name{label="value",...} value`.
fn sample(out: &mut Line, name: &str, labels: &[(&str, &dyn Display)], value: impl Display) {
    let _ = out.write_str(name);
    for (i, (label, v)) in labels.iter().enumerate() {
        let _ = write!(out, "{}{label}=\"", if i == 0 { '{' } else { ',' });
        let _ = write!(Escape { out: &mut *out, quotes: true }, "{v}");
        let _ = out.write_char('"');
    }
    if !labels.is_empty() {
        let _ = out.write_char('}');
    }
    let _ = writeln!(out, " {value}");
}

/// The `chain` label of a built-in chain: the filter table's chains by
/// their own name (`input`), the others with their table's (`nat_prerouting`).
fn chain_name(chain: Chain) -> &'static str {
    match chain {
        Chain::Input => "input",
        Chain::Forward => "forward",
        Chain::Output => "output",
        Chain::NatPrerouting => "nat_prerouting",
        Chain::NatPostrouting => "nat_postrouting",
        Chain::RawPrerouting => "raw_prerouting",
        Chain::RawOutput => "raw_output",
        Chain::ManglePrerouting => "mangle_prerouting",
        Chain::MangleInput => "mangle_input",
        Chain::MangleForward => "mangle_forward",
        Chain::MangleOutput => "mangle_output",
        Chain::ManglePostrouting => "mangle_postrouting",
    }
}

/// The metric families, in the order they are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Uptime,
    RulesetInfo,
    Rules,
    RulesCompiled,
    ReceivedPackets,
    ReceivedBytes,
    SentPackets,
    SentBytes,
    ForwardedPackets,
    LocalPackets,
    DroppedPackets,
    Drops,
    RuleHits,
    PolicyHits,
    ConntrackEntries,
    ConntrackLimit,
    ConntrackEvictions,
    Neighbours,
    NeighbourPending,
    NeighbourQueued,
    ArpRequests,
    IcmpErrors,
    IcmpRateLimited,
    IcmpSuppressed,
    TcpResets,
    FragmentEvictions,
    FragmentTimeouts,
    FragmentsHeld,
    FragmentBytesHeld,
    LogSuppressed,
    HashlimitFull,
    NatTranslations,
    NatAllocationFailures,
    MasqueradeFlushed,
    ConnlimitFull,
    Responses,
    Refused,
    TimedOut,
}

const FAMILIES: [Family; 38] = [
    Family::Uptime,
    Family::RulesetInfo,
    Family::Rules,
    Family::RulesCompiled,
    Family::ReceivedPackets,
    Family::ReceivedBytes,
    Family::SentPackets,
    Family::SentBytes,
    Family::ForwardedPackets,
    Family::LocalPackets,
    Family::DroppedPackets,
    Family::Drops,
    Family::RuleHits,
    Family::PolicyHits,
    Family::ConntrackEntries,
    Family::ConntrackLimit,
    Family::ConntrackEvictions,
    Family::Neighbours,
    Family::NeighbourPending,
    Family::NeighbourQueued,
    Family::ArpRequests,
    Family::IcmpErrors,
    Family::IcmpRateLimited,
    Family::IcmpSuppressed,
    Family::TcpResets,
    Family::FragmentEvictions,
    Family::FragmentTimeouts,
    Family::FragmentsHeld,
    Family::FragmentBytesHeld,
    Family::LogSuppressed,
    Family::HashlimitFull,
    Family::NatTranslations,
    Family::NatAllocationFailures,
    Family::MasqueradeFlushed,
    Family::ConnlimitFull,
    Family::Responses,
    Family::Refused,
    Family::TimedOut,
];

const COUNTER: &str = "counter";
const GAUGE: &str = "gauge";

impl Family {
    /// Name, type and help text.
    fn describe(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Family::Uptime => ("unifw_uptime_seconds", GAUGE, "Seconds since the firewall booted."),
            Family::RulesetInfo => (
                "unifw_ruleset_info",
                GAUGE,
                "The compiled ruleset: its identity (the image's tables hash) and rule count. Always 1.",
            ),
            Family::Rules => ("unifw_rules", GAUGE, "Rules of each chain in the compiled ruleset."),
            Family::RulesCompiled => {
                ("unifw_rules_compiled_timestamp_seconds", GAUGE, "When the ruleset was compiled (unix time).")
            }
            Family::ReceivedPackets => {
                ("unifw_interface_received_packets_total", COUNTER, "Frames the interface received.")
            }
            Family::ReceivedBytes => (
                "unifw_interface_received_bytes_total",
                COUNTER,
                "Bytes of the frames the interface received (Ethernet header included, no FCS).",
            ),
            Family::SentPackets => (
                "unifw_interface_sent_packets_total",
                COUNTER,
                "Frames handed to the interface for sending: forwarded, and the firewall's own.",
            ),
            Family::SentBytes => {
                ("unifw_interface_sent_bytes_total", COUNTER, "Bytes of the frames handed to the interface.")
            }
            Family::ForwardedPackets => (
                "unifw_interface_forwarded_packets_total",
                COUNTER,
                "Frames forwarded out of the interface (sent, or queued until ARP resolves).",
            ),
            Family::LocalPackets => (
                "unifw_interface_local_packets_total",
                COUNTER,
                "Frames received on the interface for the firewall itself.",
            ),
            Family::DroppedPackets => (
                "unifw_interface_dropped_packets_total",
                COUNTER,
                "Frames dropped for any reason, counted on the interface they arrived on.",
            ),
            Family::Drops => ("unifw_drops_total", COUNTER, "Frames dropped, by interface and reason."),
            Family::RuleHits => (
                "unifw_rule_hits_total",
                COUNTER,
                "Packets decided by each rule (only rules with hits): chain, rule number, source line.",
            ),
            Family::PolicyHits => ("unifw_policy_hits_total", COUNTER, "Packets decided by a chain's policy."),
            Family::ConntrackEntries => ("unifw_conntrack_entries", GAUGE, "Connections tracked."),
            Family::ConntrackLimit => ("unifw_conntrack_limit", GAUGE, "Capacity of the connection table."),
            Family::ConntrackEvictions => (
                "unifw_conntrack_evictions_total",
                COUNTER,
                "Connections evicted early to make room in the connection table.",
            ),
            Family::Neighbours => ("unifw_neighbours", GAUGE, "Entries of the neighbour (ARP) table."),
            Family::NeighbourPending => {
                ("unifw_neighbour_resolutions_pending", GAUGE, "Neighbours awaiting ARP resolution.")
            }
            Family::NeighbourQueued => {
                ("unifw_neighbour_queued_frames", GAUGE, "Frames waiting for a neighbour's ARP resolution.")
            }
            Family::ArpRequests => ("unifw_arp_requests_sent_total", COUNTER, "ARP requests sent."),
            Family::IcmpErrors => {
                ("unifw_icmp_errors_sent_total", COUNTER, "ICMP errors sent (time exceeded, unreachable).")
            }
            Family::IcmpRateLimited => {
                ("unifw_icmp_errors_rate_limited_total", COUNTER, "ICMP errors not sent because of the rate limit.")
            }
            Family::IcmpSuppressed => (
                "unifw_icmp_errors_suppressed_total",
                COUNTER,
                "ICMP errors not sent because RFC 1122 forbids answering the packet.",
            ),
            Family::TcpResets => {
                ("unifw_tcp_resets_sent_total", COUNTER, "TCP resets sent for rules that reject with tcp-reset.")
            }
            Family::FragmentEvictions => (
                "unifw_fragment_evictions_total",
                COUNTER,
                "Fragmented datagrams evicted because their source held its share of the fragment pool.",
            ),
            Family::FragmentTimeouts => {
                ("unifw_fragment_timeouts_total", COUNTER, "Fragmented datagrams dropped incomplete after 30 s.")
            }
            Family::FragmentsHeld => ("unifw_fragments_held", GAUGE, "Fragments held until their datagram is whole."),
            Family::FragmentBytesHeld => {
                ("unifw_fragment_bytes_held", GAUGE, "Bytes of the fragments held until their datagram is whole.")
            }
            Family::LogSuppressed => {
                ("unifw_log_lines_suppressed_total", COUNTER, "Rule log lines suppressed by the log rate limit.")
            }
            Family::HashlimitFull => (
                "unifw_hashlimit_full_drops_total",
                COUNTER,
                "Packets dropped because their -m hashlimit table was full (htable-max entries), as Linux drops them.",
            ),
            Family::NatTranslations => {
                ("unifw_nat_translations", GAUGE, "Connections with an address translation (NAT) now.")
            }
            Family::NatAllocationFailures => (
                "unifw_nat_allocation_failures_total",
                COUNTER,
                "New connections dropped because their NAT rule found no free port or ICMP id.",
            ),
            Family::ConnlimitFull => (
                "unifw_connlimit_full_drops_total",
                COUNTER,
                "Packets dropped because a -m connlimit rule found no free counter for their address (Linux hot-drops them).",
            ),
            Family::MasqueradeFlushed => (
                "unifw_nat_masquerade_flushed_total",
                COUNTER,
                "Masqueraded connections forgotten because their interface's address changed.",
            ),
            Family::Responses => {
                ("unifw_metrics_responses_total", COUNTER, "Responses of this metrics server, by status code.")
            }
            Family::Refused => (
                "unifw_metrics_connections_refused_total",
                COUNTER,
                "Connections to this metrics server reset because their source is not allowed.",
            ),
            Family::TimedOut => (
                "unifw_metrics_connections_timed_out_total",
                COUNTER,
                "Connections to this metrics server reset because a response stalled or did not close.",
            ),
        }
    }

    /// Renders sample `item` of the family into `out` (nothing for a rule
    /// without hits); false past the last one.
    fn sample(self, item: usize, view: &View<'_, '_, '_>, name: &str, out: &mut Line) -> bool {
        let s = view.sources;
        let counters = s.dataplane.counters();
        let names = s.names;
        let events = &counters.events;
        // Families of one sample.
        let single = |value: u64, out: &mut Line| {
            if item == 0 {
                sample(out, name, &[], value);
            }
            item == 0
        };
        // Families of one sample per interface.
        let per_interface = |value: &dyn Fn(&crate::net::counters::InterfaceCounters) -> u64, out: &mut Line| {
            let (Some(interface), Some(c)) = (names.get(item), counters.interfaces.get(item)) else {
                return false;
            };
            sample(out, name, &[("interface", interface)], value(c));
            true
        };
        match self {
            Family::Uptime => {
                if item == 0 {
                    let (seconds, ms) = (s.uptime_us / 1_000_000, s.uptime_us / 1000 % 1000);
                    let _ = writeln!(out, "{name} {seconds}.{ms:03}");
                }
                item == 0
            }
            Family::RulesetInfo => {
                if item == 0 {
                    let identity = Hex16(s.image.tables_hash());
                    let rules = s.image.total_rules();
                    sample(out, name, &[("identity", &identity), ("rules", &rules)], 1);
                }
                item == 0
            }
            Family::Rules | Family::PolicyHits => {
                let Some(&chain) = Chain::ALL.get(item) else {
                    return false;
                };
                // The filter table's chains always, the others once they have rules.
                if chain.table() == Table::Filter || s.image.rule_count(chain) > 0 {
                    let value = match self {
                        Family::Rules => u64::from(s.image.rule_count(chain)),
                        _ => counters.policy_hits.get(chain.index()).copied().unwrap_or(0),
                    };
                    sample(out, name, &[("chain", &chain_name(chain))], value);
                }
                true
            }
            Family::RulesCompiled => single(view.ruleset.compiled_at, out),
            Family::ReceivedPackets => per_interface(&|c| c.received, out),
            Family::ReceivedBytes => per_interface(&|c| c.received_bytes, out),
            Family::SentPackets => per_interface(&|c| c.sent, out),
            Family::SentBytes => per_interface(&|c| c.sent_bytes, out),
            Family::ForwardedPackets => per_interface(&|c| c.forwarded_out, out),
            Family::LocalPackets => per_interface(&|c| c.local, out),
            Family::DroppedPackets => per_interface(&|c| c.total_drops(), out),
            Family::Drops => {
                let (index, reason) = (item / DropReason::COUNT, item % DropReason::COUNT);
                let (Some(interface), Some(c), Some(&reason)) =
                    (names.get(index), counters.interfaces.get(index), DropReason::ALL.get(reason))
                else {
                    return false;
                };
                sample(out, name, &[("interface", interface), ("reason", &reason.name())], c.drop_count(reason));
                true
            }
            Family::RuleHits => {
                let Some(&hits) = counters.rule_hits.get(item) else {
                    return false;
                };
                if hits > 0 {
                    let rule = item as u32;
                    let chain = chain_name(view.ruleset.chain_of(rule));
                    let line = s.image.rule_line(rule);
                    sample(out, name, &[("chain", &chain), ("rule", &rule), ("line", &line)], hits);
                }
                true
            }
            Family::ConntrackEntries => single(s.dataplane.conntrack().len() as u64, out),
            Family::ConntrackLimit => single(s.dataplane.conntrack().capacity() as u64, out),
            Family::ConntrackEvictions => single(events.conntrack_early_drops, out),
            Family::Neighbours => single(s.dataplane.neighbours().len() as u64, out),
            Family::NeighbourPending => single(s.dataplane.neighbours().pending() as u64, out),
            Family::NeighbourQueued => single(s.dataplane.neighbours().queued_frames() as u64, out),
            Family::ArpRequests => single(events.arp_requests_sent, out),
            Family::IcmpErrors => single(events.icmp_errors_sent, out),
            Family::IcmpRateLimited => single(events.icmp_errors_rate_limited, out),
            Family::IcmpSuppressed => single(events.icmp_errors_suppressed, out),
            Family::TcpResets => single(events.tcp_resets_sent, out),
            Family::FragmentEvictions => single(events.fragment_evictions, out),
            Family::FragmentTimeouts => single(events.fragment_timeouts, out),
            Family::FragmentsHeld => single(events.fragments_held, out),
            Family::FragmentBytesHeld => single(events.fragment_bytes_held, out),
            Family::LogSuppressed => single(events.log_suppressed, out),
            Family::HashlimitFull => single(events.hashlimit_full, out),
            Family::NatTranslations => single(events.nat_translations, out),
            Family::NatAllocationFailures => single(events.nat_allocation_failures, out),
            Family::MasqueradeFlushed => single(events.masquerade_flushed, out),
            Family::ConnlimitFull => single(events.connlimit_full, out),
            Family::Responses => {
                let Some(&status) = Status::ALL.get(item) else {
                    return false;
                };
                let interface = names.get(usize::from(view.server.interface)).map_or("?", String::as_str);
                let count = view.server.responses.get(item).copied().unwrap_or(0);
                sample(out, name, &[("interface", &interface), ("code", &status.code())], count);
                true
            }
            Family::Refused | Family::TimedOut => {
                if item == 0 {
                    let interface = names.get(usize::from(view.server.interface)).map_or("?", String::as_str);
                    let value = if self == Family::Refused { view.server.refused } else { view.server.timed_out };
                    sample(out, name, &[("interface", &interface)], value);
                }
                item == 0
            }
        }
    }
}

/// A u64 as 16 hexadecimal digits.
struct Hex16(u64);

impl Display for Hex16 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::addr::Cidr;
    use crate::net::{DataplaneConfig, InterfaceConfig};
    use alloc::collections::{BTreeMap, BTreeSet};
    use alloc::format;
    use alloc::string::ToString;

    const RULES: &str = "interface eth0 10.1.0.1/24
interface eth1 10.2.0.1/24
policy input drop
forward accept tcp port 80
input accept icmp
forward drop udp
input accept tcp in eth0 dport 9100 from 10.1.0.2
metrics eth0 from 10.1.0.2
";

    fn image_bytes() -> Vec<u8> {
        unifw_compiler::compile("t.rules", RULES.as_bytes(), &mut |p| Err(p.into())).expect("compiles").image
    }

    fn dataplane(rules: usize) -> Dataplane {
        let interfaces = vec![
            InterfaceConfig::new([2, 0, 0, 0, 0, 1], Cidr::new(0x0a01_0001, 24)),
            InterfaceConfig::new([2, 0, 0, 0, 0, 2], Cidr::new(0x0a02_0001, 24)),
        ];
        Dataplane::new(DataplaneConfig::new(interfaces, vec![], rules, 64)).expect("config")
    }

    fn names() -> Vec<String> {
        vec!["eth0".to_string(), "eth1".to_string()]
    }

    /// Writes the whole text through windows of the given sizes (cycled);
    /// also returns how many calls wrote nothing (the step budget).
    fn render(view: &View<'_, '_, '_>, windows: &[usize]) -> (String, usize) {
        let mut e = Exposition::new();
        let mut out = Vec::new();
        let mut idle = 0;
        for n in windows.iter().cycle() {
            if e.is_done() {
                break;
            }
            let mut buf = vec![0u8; *n];
            let w = e.write(view, &mut buf);
            idle += usize::from(w == 0);
            assert!(idle < 10_000, "no progress");
            out.extend_from_slice(&buf[..w]);
        }
        (String::from_utf8(out).expect("UTF-8"), idle)
    }

    /// Parses text exposition 0.0.4 strictly enough for what we write:
    /// every line is a HELP or TYPE comment or a sample of the family typed
    /// last; names and labels are valid; counters end in `_total`; no
    /// family or series appears twice. Returns each series' value.
    fn parse(text: &str) -> BTreeMap<String, f64> {
        let name_ok = |n: &str| {
            !n.is_empty()
                && !n.starts_with(|c: char| c.is_ascii_digit())
                && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        };
        assert!(text.ends_with('\n'));
        let mut families = BTreeSet::new();
        let mut helped = BTreeSet::new();
        let mut current: Option<(String, String)> = None;
        let mut series = BTreeMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').expect("HELP name text");
                assert!(name_ok(name) && !help.is_empty(), "{line}");
                assert!(helped.insert(name.to_string()), "HELP twice: {line}");
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE name type");
                assert!(name_ok(name), "{line}");
                assert!(kind == "counter" || kind == "gauge", "{line}");
                assert!(kind != "counter" || name.ends_with("_total"), "{line}");
                assert!(helped.contains(name), "TYPE before HELP: {line}");
                assert!(families.insert(name.to_string()), "family twice: {line}");
                current = Some((name.to_string(), kind.to_string()));
                continue;
            }
            assert!(!line.starts_with('#'), "{line}");
            let (key, value) = line.rsplit_once(' ').expect("sample value");
            value.parse::<f64>().unwrap_or_else(|_| panic!("bad value: {line}"));
            let (name, labels) = match key.split_once('{') {
                Some((name, labels)) => (name, labels.strip_suffix('}').expect("labels close")),
                None => (key, ""),
            };
            let (family, _) = current.as_ref().expect("a sample after TYPE");
            assert_eq!(name, family, "{line}");
            let mut rest = labels;
            while !rest.is_empty() {
                let (label, after) = rest.split_once("=\"").expect("label=\"");
                assert!(name_ok(label) && !label.contains(':'), "{line}");
                // The value runs to the first unescaped quote.
                let mut end = None;
                let mut escaped = false;
                for (i, c) in after.char_indices() {
                    match (escaped, c) {
                        (true, '\\' | '"' | 'n') => escaped = false,
                        (true, _) => panic!("bad escape in {line}"),
                        (false, '\\') => escaped = true,
                        (false, '"') => {
                            end = Some(i);
                            break;
                        }
                        (false, '\n') => panic!("raw newline"),
                        _ => {}
                    }
                }
                let end = end.expect("closing quote");
                rest = &after[end + 1..];
                rest = rest.strip_prefix(',').unwrap_or(rest);
            }
            assert!(series.insert(key.to_string(), value.parse().unwrap()).is_none(), "series twice: {line}");
        }
        series
    }

    fn busy_dataplane(rules: usize) -> Dataplane {
        let mut dp = dataplane(rules);
        let c = dp.counters_mut();
        c.count_received(0, 1514);
        c.count_received(1, 60);
        c.count_transmit(0, 1, 1514, Ok(()));
        c.count_drop(0, DropReason::NotOurMac);
        c.rule_hits[0] = 5;
        c.rule_hits[3] = 2;
        c.policy_hits[0] = 7;
        c.events.icmp_errors_sent = 4;
        c.events.tcp_resets_sent = 1;
        dp
    }

    #[test]
    fn every_line_is_a_comment_or_a_sample_and_the_numbers_are_there() {
        let bytes = image_bytes();
        let image = Image::from_bytes(&bytes).expect("valid");
        let dp = busy_dataplane(image.total_rules() as usize);
        let names = names();
        let sources = Sources { names: &names, dataplane: &dp, image: &image, uptime_us: 12_345_678 };
        let ruleset = RulesetFacts::new(&image, 1_700_000_000);
        let mut server = ServerCounts { interface: 0, ..ServerCounts::default() };
        server.responses[0] = 3;
        server.refused = 2;
        let view = View { sources: &sources, ruleset: &ruleset, server: &server };
        let (text, _) = render(&view, &[1 << 20]);
        let series = parse(&text);
        let identity = format!("{:016x}", image.tables_hash());
        let want = [
            ("unifw_uptime_seconds".to_string(), 12.345),
            (format!("unifw_ruleset_info{{identity=\"{identity}\",rules=\"4\"}}"), 1.0),
            ("unifw_rules{chain=\"input\"}".into(), 2.0),
            ("unifw_rules{chain=\"forward\"}".into(), 2.0),
            ("unifw_rules_compiled_timestamp_seconds".into(), 1.7e9),
            ("unifw_interface_received_bytes_total{interface=\"eth0\"}".into(), 1514.0),
            ("unifw_interface_received_packets_total{interface=\"eth1\"}".into(), 1.0),
            ("unifw_interface_sent_bytes_total{interface=\"eth1\"}".into(), 1514.0),
            ("unifw_interface_dropped_packets_total{interface=\"eth0\"}".into(), 1.0),
            ("unifw_drops_total{interface=\"eth0\",reason=\"not_our_mac\"}".into(), 1.0),
            ("unifw_drops_total{interface=\"eth1\",reason=\"not_our_mac\"}".into(), 0.0),
            ("unifw_rule_hits_total{chain=\"forward\",rule=\"0\",line=\"4\"}".into(), 5.0),
            ("unifw_rule_hits_total{chain=\"input\",rule=\"3\",line=\"7\"}".into(), 2.0),
            ("unifw_policy_hits_total{chain=\"input\"}".into(), 7.0),
            ("unifw_conntrack_limit".into(), 64.0),
            ("unifw_icmp_errors_sent_total".into(), 4.0),
            ("unifw_tcp_resets_sent_total".into(), 1.0),
            ("unifw_metrics_responses_total{interface=\"eth0\",code=\"200\"}".into(), 3.0),
            ("unifw_metrics_connections_refused_total{interface=\"eth0\"}".into(), 2.0),
        ];
        for (key, value) in want {
            assert_eq!(series.get(&key), Some(&value), "{key} in\n{text}");
        }
        // Rules without hits are left out.
        assert_eq!(series.keys().filter(|k| k.starts_with("unifw_rule_hits_total")).count(), 2);
        assert_eq!(series.keys().filter(|k| k.starts_with("unifw_drops_total")).count(), 2 * DropReason::COUNT);
        assert!(text.lines().all(|l| l.len() < LINE_MAX));
    }

    #[test]
    fn tiny_windows_give_the_same_bytes_as_one_big_one() {
        let bytes = image_bytes();
        let image = Image::from_bytes(&bytes).expect("valid");
        let dp = busy_dataplane(image.total_rules() as usize);
        let names = names();
        let sources = Sources { names: &names, dataplane: &dp, image: &image, uptime_us: 1 };
        let ruleset = RulesetFacts::new(&image, 5);
        let server = ServerCounts::default();
        let view = View { sources: &sources, ruleset: &ruleset, server: &server };
        let (whole, _) = render(&view, &[1 << 20]);
        for windows in [&[1][..], &[2], &[3, 1, 7], &[0, 5], &[255, 256, 257]] {
            assert_eq!(render(&view, windows).0, whole, "windows {windows:?}");
        }
    }

    #[test]
    fn many_idle_rules_are_skipped_a_budget_at_a_time() {
        let bytes = image_bytes();
        let image = Image::from_bytes(&bytes).expect("valid");
        // More hit counters than the image has rules: the writer goes by
        // the counters; rules past the image have line 0 and chain forward.
        let rules = 3 * STEPS_PER_WRITE + 10;
        let mut dp = dataplane(rules);
        dp.counters_mut().rule_hits[rules - 1] = 9;
        let names = names();
        let sources = Sources { names: &names, dataplane: &dp, image: &image, uptime_us: 0 };
        let ruleset = RulesetFacts::new(&image, 0);
        let server = ServerCounts::default();
        let view = View { sources: &sources, ruleset: &ruleset, server: &server };
        let (text, idle) = render(&view, &[4096]);
        assert!(idle >= 2, "the budget paused the scan ({idle} empty writes)");
        let line = format!("unifw_rule_hits_total{{chain=\"forward\",rule=\"{}\",line=\"0\"}} 9\n", rules - 1);
        assert!(text.contains(&line), "{text}");
        parse(&text);
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        let mut line = Line::new();
        sample(&mut line, "x", &[("a", &"q\"b\\s\nn"), ("b", &7)], 1);
        assert_eq!(line.bytes(), b"x{a=\"q\\\"b\\\\s\\nn\",b=\"7\"} 1\n");
        let mut help = Line::new();
        let _ = write!(Escape { out: &mut help, quotes: false }, "a\\b\n\"c\"");
        assert_eq!(help.bytes(), b"a\\\\b\\n\"c\"");
        let mut full = Line::new();
        assert!(full.write_str(&"y".repeat(LINE_MAX + 1)).is_err());
        assert!(full.overflow && full.len == 0);
    }

    #[test]
    fn rule_chains_come_from_the_input_chain_entries() {
        let bytes = image_bytes();
        let image = Image::from_bytes(&bytes).expect("valid");
        let facts = RulesetFacts::new(&image, 0);
        let chains: Vec<Chain> = (0..5).map(|r| facts.chain_of(r)).collect();
        assert_eq!(chains, [Chain::Forward, Chain::Input, Chain::Forward, Chain::Input, Chain::Forward]);
    }
}
