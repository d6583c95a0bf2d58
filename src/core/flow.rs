//! Types shared by the rule engine and the packet path: what a packet looks
//! like to the rules (`PacketKey`) and what the rules decide (`Verdict`).

/// IP protocol numbers the rule language names.
pub mod proto {
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
}

/// The table a built-in chain belongs to (iptables' `*filter`, `*nat`,
/// `*raw`, `*mangle`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    /// Verdicts: accept, drop, reject.
    Filter,
    /// Address translation, decided on a connection's first packet.
    Nat,
    /// Before connection tracking: `NOTRACK`.
    Raw,
    /// Packet changes: `TCPMSS`.
    Mangle,
}

impl Table {
    /// iptables' name of the table (`filter`, `nat`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            Table::Filter => "filter",
            Table::Nat => "nat",
            Table::Raw => "raw",
            Table::Mangle => "mangle",
        }
    }
}

/// A built-in chain: a table's rules at one point of the packet path
/// (iptables' hooks). Each has a chain record in the image, numbered by
/// [`Chain::index`]; user chains come after them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Chain {
    /// filter INPUT: traffic addressed to the firewall itself.
    Input,
    /// filter FORWARD: traffic routed through the firewall.
    Forward,
    /// filter OUTPUT: traffic the firewall sends itself.
    Output,
    /// nat PREROUTING: destination NAT, before the route lookup.
    NatPrerouting,
    /// nat POSTROUTING: source NAT, after the route lookup.
    NatPostrouting,
    /// raw PREROUTING: arriving traffic, before connection tracking.
    RawPrerouting,
    /// raw OUTPUT: the firewall's own traffic, before connection tracking.
    RawOutput,
    /// mangle PREROUTING.
    ManglePrerouting,
    /// mangle INPUT.
    MangleInput,
    /// mangle FORWARD.
    MangleForward,
    /// mangle OUTPUT.
    MangleOutput,
    /// mangle POSTROUTING.
    ManglePostrouting,
}

/// Built-in chains: the image's first chain records; user chains are
/// numbered from here.
pub const BUILTIN_CHAINS: usize = 12;

impl Chain {
    /// Every built-in chain, in [`Chain::index`] order.
    pub const ALL: [Chain; BUILTIN_CHAINS] = [
        Chain::Input,
        Chain::Forward,
        Chain::Output,
        Chain::NatPrerouting,
        Chain::NatPostrouting,
        Chain::RawPrerouting,
        Chain::RawOutput,
        Chain::ManglePrerouting,
        Chain::MangleInput,
        Chain::MangleForward,
        Chain::MangleOutput,
        Chain::ManglePostrouting,
    ];

    /// Its chain record's number in the image (0 = filter INPUT).
    #[inline]
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The built-in chain of record `n`, if `n` is one.
    pub fn from_index(n: usize) -> Option<Chain> {
        Chain::ALL.get(n).copied()
    }

    /// The table it belongs to.
    pub const fn table(self) -> Table {
        match self {
            Chain::Input | Chain::Forward | Chain::Output => Table::Filter,
            Chain::NatPrerouting | Chain::NatPostrouting => Table::Nat,
            Chain::RawPrerouting | Chain::RawOutput => Table::Raw,
            Chain::ManglePrerouting
            | Chain::MangleInput
            | Chain::MangleForward
            | Chain::MangleOutput
            | Chain::ManglePostrouting => Table::Mangle,
        }
    }

    /// iptables' name of the chain within its table (`INPUT`, `PREROUTING`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            Chain::Input | Chain::MangleInput => "INPUT",
            Chain::Forward | Chain::MangleForward => "FORWARD",
            Chain::Output | Chain::RawOutput | Chain::MangleOutput => "OUTPUT",
            Chain::NatPrerouting | Chain::RawPrerouting | Chain::ManglePrerouting => "PREROUTING",
            Chain::NatPostrouting | Chain::ManglePostrouting => "POSTROUTING",
        }
    }

    /// The built-in chain `name` of `table`, if the table has it.
    pub fn of(table: Table, name: &str) -> Option<Chain> {
        Chain::ALL.into_iter().find(|c| c.table() == table && c.name() == name)
    }
}

/// Connection-tracking state of a packet, as rules match it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CtState {
    /// First packet of a flow the tracker has not seen.
    New,
    /// Part of a tracked flow that has seen traffic both ways (or a later packet of it).
    Established,
    /// Related to a tracked flow (an ICMP error quoting it).
    Related,
    /// Does not fit any tracked flow's state (a stray ACK, a bad sequence number, ...).
    Invalid,
    /// Not tracked at all: a raw-table `NOTRACK` rule exempted it.
    Untracked,
}

/// Interface index as the rules see it: 0 = eth0, 1 = eth1, ...
pub type IfIndex = u8;

/// "No interface": the input interface of locally generated traffic, or the
/// output interface of traffic addressed to the firewall.
pub const NO_IF: IfIndex = u8::MAX;

/// The fields of a packet that rules can match. Addresses are host-order
/// `u32` (10.1.0.2 is 0x0a01_0002). For TCP and UDP, `src_port`/`dst_port`
/// are the ports and `icmp_type`/`icmp_code` are 0; for ICMP the ports are 0;
/// for other protocols all four are 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PacketKey {
    /// IP protocol number.
    pub proto: u8,
    /// Source IPv4 address, host order.
    pub src: u32,
    /// Destination IPv4 address, host order.
    pub dst: u32,
    /// TCP/UDP source port.
    pub src_port: u16,
    /// TCP/UDP destination port.
    pub dst_port: u16,
    /// ICMP type.
    pub icmp_type: u8,
    /// ICMP code.
    pub icmp_code: u8,
    /// Input interface, or `NO_IF`.
    pub in_if: IfIndex,
    /// Output interface, or `NO_IF`.
    pub out_if: IfIndex,
    /// Connection-tracking state.
    pub state: CtState,
}

/// How a `reject` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectWith {
    /// ICMP destination unreachable, code 3 (port unreachable).
    PortUnreachable,
    /// ICMP destination unreachable, code 13 (communication administratively prohibited).
    AdminProhibited,
    /// ICMP destination unreachable, code 0 (net unreachable).
    NetUnreachable,
    /// ICMP destination unreachable, code 1 (host unreachable).
    HostUnreachable,
    /// ICMP destination unreachable, code 2 (protocol unreachable).
    ProtoUnreachable,
    /// ICMP destination unreachable, code 9 (network administratively prohibited).
    NetProhibited,
    /// ICMP destination unreachable, code 10 (host administratively
    /// prohibited; iptables' `icmp-host-prohibited`, the CentOS default).
    HostProhibited,
    /// TCP RST (only for TCP packets).
    TcpReset,
}

/// What a rule (or a chain policy) does with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Let it through.
    Accept,
    /// Discard it silently.
    Drop,
    /// Discard it and answer with an error.
    Reject(RejectWith),
}

/// The decision for one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Verdict {
    /// What to do.
    pub action: Action,
    /// Index of the matching rule in the compiled image (rule order), or
    /// `None` when the chain's default policy decided.
    pub rule: Option<u32>,
    /// Whether the matching rule carries the `log` flag.
    pub log: bool,
}

/// The netmask of a prefix length (0 for /0).
pub fn mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len.min(32)))
    }
}

/// Connection-state bits ([`state_bit`]); all five set = any state.
pub const ANY_STATE: u8 = 0x2f;

/// The bit of a connection state in a state mask.
pub fn state_bit(s: CtState) -> u8 {
    match s {
        CtState::New => 1,
        CtState::Established => 2,
        CtState::Related => 4,
        CtState::Invalid => 8,
        CtState::Untracked => 0x20,
    }
}
