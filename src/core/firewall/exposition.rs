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
use crate::flow::Chain;
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
/// over both chains in file order).
#[derive(Debug, Clone)]
pub struct RulesetFacts {
    /// Unix seconds at which the rules were compiled.
    pub compiled_at: u64,
    /// Bit `r` set: rule `r` is an input rule.
    input: Vec<u64>,
}

impl RulesetFacts {
    /// The facts of `image`: one pass over the input chain's entries.
    pub fn new(image: &Image<'_>, compiled_at: u64) -> RulesetFacts {
        let mut input = vec![0u64; (image.total_rules() as usize).div_ceil(64)];
        for rule in image.entry_rules(Chain::Input) {
            if let Some(word) = input.get_mut(rule as usize / 64) {
                *word |= 1 << (rule % 64);
            }
        }
        RulesetFacts { compiled_at, input }
    }

    /// The chain of rule `rule`.
    pub fn chain_of(&self, rule: u32) -> Chain {
        let word = self.input.get(rule as usize / 64).copied().unwrap_or(0);
        if word & (1 << (rule % 64)) != 0 {
            Chain::Input
        } else {
            Chain::Forward
        }
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

fn chain_name(chain: Chain) -> &'static str {
    match chain {
        Chain::Input => "input",
        Chain::Forward => "forward",
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
    LogSuppressed,
    Responses,
    Refused,
    TimedOut,
}

const FAMILIES: [Family; 30] = [
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
    Family::LogSuppressed,
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
            Family::FragmentEvictions => {
                ("unifw_fragment_evictions_total", COUNTER, "Fragment-table entries evicted to make room.")
            }
            Family::LogSuppressed => {
                ("unifw_log_lines_suppressed_total", COUNTER, "Rule log lines suppressed by the log rate limit.")
            }
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
                let Some(&chain) = [Chain::Input, Chain::Forward].get(item) else {
                    return false;
                };
                let [input, forward] = counters.policy_hits;
                let value = match (self, chain) {
                    (Family::Rules, _) => u64::from(s.image.rule_count(chain)),
                    (_, Chain::Input) => input,
                    (_, Chain::Forward) => forward,
                };
                sample(out, name, &[("chain", &chain_name(chain))], value);
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
            Family::LogSuppressed => single(events.log_suppressed, out),
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
