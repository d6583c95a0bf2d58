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
    /// Not tracked: a raw-table `NOTRACK` exempted it (iptables' `UNTRACKED`).
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
    /// What only per-rule residual matches read (TCP flags, TTL, length,
    /// link-layer facts, address types).
    pub extra: KeyExtra,
}

/// How a frame was addressed at the link layer (iptables' `-m pkttype`;
/// Linux's `PACKET_HOST`, `PACKET_BROADCAST`, `PACKET_MULTICAST`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PktType {
    /// To this host's MAC (or locally generated).
    #[default]
    Unicast,
    /// To ff:ff:ff:ff:ff:ff.
    Broadcast,
    /// To a group MAC (low bit of the first byte set).
    Multicast,
}

/// Address-type bits of `-m addrtype` (Linux's `XT_ADDRTYPE_*`, the route
/// types `RTN_*` as bits).
pub mod addrtype {
    /// 0.0.0.0.
    pub const UNSPEC: u16 = 1 << 0;
    /// An ordinary address.
    pub const UNICAST: u16 = 1 << 1;
    /// One of the firewall's own addresses.
    pub const LOCAL: u16 = 1 << 2;
    /// 255.255.255.255 or a directly connected subnet's broadcast address.
    pub const BROADCAST: u16 = 1 << 3;
    /// Anycast (never produced for IPv4 by Linux).
    pub const ANYCAST: u16 = 1 << 4;
    /// 224.0.0.0/4.
    pub const MULTICAST: u16 = 1 << 5;
    /// Route types unifw's routing never produces (no such routes).
    pub const BLACKHOLE: u16 = 1 << 6;
    /// See [`BLACKHOLE`].
    pub const UNREACHABLE: u16 = 1 << 7;
    /// See [`BLACKHOLE`].
    pub const PROHIBIT: u16 = 1 << 8;
    /// See [`BLACKHOLE`].
    pub const THROW: u16 = 1 << 9;
    /// See [`BLACKHOLE`].
    pub const NAT: u16 = 1 << 10;
    /// See [`BLACKHOLE`].
    pub const XRESOLVE: u16 = 1 << 11;
}

/// The residual fields of a [`PacketKey`]: read only by rules whose
/// matches the tuple lookup cannot index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct KeyExtra {
    /// TCP flags byte (FIN 0x01 ... CWR 0x80); 0 for other protocols.
    pub tcp_flags: u8,
    /// IP time to live.
    pub ttl: u8,
    /// IP total length in bytes.
    pub len: u16,
    /// Link-layer addressing of the frame.
    pub pkt_type: PktType,
    /// Source MAC of the frame (zero for locally generated traffic).
    pub src_mac: [u8; 6],
    /// Whether the frame came from the wire (so `src_mac` is real).
    pub has_mac: bool,
    /// [`addrtype`] bits of the source address, as the firewall sees it now.
    pub src_type: u16,
    /// [`addrtype`] bits of the destination address.
    pub dst_type: u16,
    /// [`addrtype`] bits of the source address on the input interface only.
    pub src_type_in: u16,
    /// [`addrtype`] bits of the destination address on the input interface only.
    pub dst_type_in: u16,
    /// [`addrtype`] bits of the source address on the output interface only.
    pub src_type_out: u16,
    /// [`addrtype`] bits of the destination address on the output interface only.
    pub dst_type_out: u16,
    /// TCP options present (bit N of word N/64 = option kind N).
    pub tcp_options: [u64; 4],
    /// The connection's NAT status so far ([`CT_SNAT`], [`CT_DNAT`]): in
    /// FORWARD a new connection has its DNAT but not yet its SNAT, as in
    /// Linux (SNAT is decided in POSTROUTING).
    pub ct_status: u8,
    /// The TCP MSS option's value as Linux's `xt_tcpmss` finds it.
    pub tcp_mss: Option<u16>,
    /// The protocol of the packet's connection (`--ctproto`): the
    /// packet's own, or for an ICMP error RELATED to a connection, the
    /// quoted packet's. Read only when the state says there is one.
    pub ct_proto: u8,
    /// The connection's tuples and the packet's direction in it
    /// (`--ctorigdstport`, ...); read only when the state says there is one.
    pub ct_tuples: crate::image::format::ct_tuple::CtTuples,
}

impl KeyExtra {
    /// Whether TCP option kind `n` is present.
    pub fn has_tcp_option(&self, n: u8) -> bool {
        self.tcp_options.get(usize::from(n / 64)).is_some_and(|w| w >> (n % 64) & 1 != 0)
    }
}

/// The address type of `addr` (one [`addrtype`] bit) as Linux's
/// `inet_dev_addr_type` gives it from the firewall's current addresses
/// `own` (interface, address, prefix length): 0.0.0.0/8 and
/// 255.255.255.255 are BROADCAST, 224.0.0.0/4 MULTICAST; then the local
/// table: the firewall's own addresses (and 127.0.0.0/8, loopback's) are
/// LOCAL, each connected subnet's broadcast address (prefixes up to /30)
/// BROADCAST; the rest UNICAST. With `dev` (`--limit-iface-in/out`), a
/// local-table route counts only if it is that interface's (loopback's
/// never is); `None` for `dev` = [`NO_IF`]'s interface matches none.
pub fn addr_type(addr: u32, own: impl Iterator<Item = (IfIndex, u32, u8)>, dev: Option<IfIndex>) -> u16 {
    if addr >> 24 == 0 || addr == u32::MAX {
        return addrtype::BROADCAST;
    }
    if addr >> 28 == 0xe {
        return addrtype::MULTICAST;
    }
    let mut t = addrtype::UNICAST;
    for (i, a, len) in own {
        let on_dev = dev.is_none_or(|d| d == i);
        if a == addr && on_dev {
            return addrtype::LOCAL;
        }
        let m = mask(len);
        if len < 31 && a & m == addr & m && addr | m == u32::MAX && on_dev {
            t = addrtype::BROADCAST;
        }
    }
    if t == addrtype::UNICAST && dev.is_none() && addr >> 24 == 127 {
        return if addr == 0x7fff_ffff { addrtype::BROADCAST } else { addrtype::LOCAL };
    }
    t
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

/// Connection-state bits (`1 << state as u8`); all five set = any state.
pub const ANY_STATE: u8 = 0x1f;

/// The bit of [`CtState::Untracked`]: entries keep only the four tracked
/// states; a rule whose states are neither all five nor free of it is
/// checked by its residual record.
pub const UNTRACKED_BIT: u8 = 0x10;

/// `--ctstate SNAT`: the connection's source was translated (Linux's
/// `IPS_SRC_NAT`). With [`CT_DNAT`], a status bit beside the five states in
/// a state mask (and in [`KeyExtra::ct_status`]).
pub const CT_SNAT: u8 = 0x20;
/// `--ctstate DNAT`: the connection's destination was translated (`IPS_DST_NAT`).
pub const CT_DNAT: u8 = 0x40;

/// The bit of a connection state in a state mask.
pub fn state_bit(s: CtState) -> u8 {
    match s {
        CtState::New => 1,
        CtState::Established => 2,
        CtState::Related => 4,
        CtState::Invalid => 8,
        CtState::Untracked => UNTRACKED_BIT,
    }
}
