//! TCP connection tracking: Linux's state table and a simplified
//! `tcp_in_window` sequence check.
//!
//! States follow `nf_conntrack_proto_tcp.c` (without its SYN_SENT2
//! simultaneous-open state: a SYN from the responder while in SYN_SENT is
//! ignored). A flow starts only with a SYN (Linux with
//! `nf_conntrack_tcp_loose=0`): mid-stream pick-up is refused, so after a
//! reboot old connections classify as invalid.
//!
//! Window check (per direction, Linux's `td_end`, `td_maxend`, `td_maxwin`,
//! `td_scale`): a segment `[seq, end)` with ack `ack` passes when
//!   I.   `seq <= sender.maxend` (not beyond what the receiver allowed),
//!   II.  `end >= sender.end - receiver.maxwin` (not older than a window),
//!   III. `ack <= receiver.end` (does not ack data never sent),
//!   IV.  `ack >= receiver.end - max(66000, sender.maxwin)`.
//! Window scaling counts only when both SYNs carried the option. Left out
//! from Linux: SACK blocks, the "RST with seq 0 answering a SYN" special
//! case, retransmission counting and the liberal mode.

use super::timeouts;
use crate::net::parse::{tcp_flags, TcpSegment};

/// TCP connection states (Linux's conntrack states).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpState {
    /// SYN seen from the originator.
    SynSent,
    /// SYN-ACK seen from the responder.
    SynRecv,
    /// Three-way handshake completed.
    Established,
    /// A FIN was seen.
    FinWait,
    /// The first FIN was acknowledged.
    CloseWait,
    /// FINs seen from both sides.
    LastAck,
    /// Last ACK seen.
    TimeWait,
    /// A RST was seen.
    Close,
}

impl TcpState {
    /// How long a connection in this state lives without traffic.
    pub fn timeout_ms(self) -> u64 {
        match self {
            TcpState::SynSent => timeouts::TCP_SYN_SENT_MS,
            TcpState::SynRecv => timeouts::TCP_SYN_RECV_MS,
            TcpState::Established => timeouts::TCP_ESTABLISHED_MS,
            TcpState::FinWait => timeouts::TCP_FIN_WAIT_MS,
            TcpState::CloseWait => timeouts::TCP_CLOSE_WAIT_MS,
            TcpState::LastAck => timeouts::TCP_LAST_ACK_MS,
            TcpState::TimeWait => timeouts::TCP_TIME_WAIT_MS,
            TcpState::Close => timeouts::TCP_CLOSE_MS,
        }
    }
}

/// Direction of a packet relative to the connection's originator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the originator.
    Original,
    /// From the responder.
    Reply,
}

/// What the state machine makes of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpUpdate {
    /// Valid; the state may have changed.
    Accepted,
    /// Passed without changing state (Linux's `sIG`).
    Ignored,
    /// Invalid transition, bad flags or out of window; state unchanged.
    Invalid,
    /// A SYN reopening a closed connection: start a new flow.
    Reopen,
}

/// Sequence tracking of one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Peer {
    /// Highest sequence number sent + 1 (`td_end`).
    end: u32,
    /// Highest sequence number the other side allowed (`td_maxend`).
    maxend: u32,
    /// Largest window this side advertised, scaled (`td_maxwin`).
    maxwin: u32,
    /// Window-scale shift this side declared in its SYN.
    declared_scale: Option<u8>,
    /// Effective shift for this side's windows.
    scale: u8,
    /// Whether this side sent anything yet.
    seen: bool,
}

/// The tracked state of one TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpConn {
    state: TcpState,
    /// Index 0: originator, 1: responder.
    peers: [Peer; 2],
}

/// Linux `tcp_valid_flags`: the flag combinations (PSH ignored) a segment may carry.
pub fn flags_valid(flags: u8) -> bool {
    use tcp_flags::*;
    let f = flags & (FIN | SYN | RST | ACK | URG);
    matches!(f, x if x == SYN || x == SYN | URG || x == SYN | ACK || x == RST || x == RST | ACK
        || x == FIN | ACK || x == FIN | ACK | URG || x == ACK || x == ACK | URG)
}

/// Whether `a` comes before `b` in sequence space.
fn before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

fn after(a: u32, b: u32) -> bool {
    before(b, a)
}

#[derive(Clone, Copy)]
enum FlagClass {
    Syn,
    SynAck,
    Fin,
    Ack,
    Rst,
    None,
}

fn classify_flags(flags: u8) -> FlagClass {
    use tcp_flags::*;
    if flags & RST != 0 {
        FlagClass::Rst
    } else if flags & SYN != 0 {
        if flags & ACK != 0 {
            FlagClass::SynAck
        } else {
            FlagClass::Syn
        }
    } else if flags & FIN != 0 {
        FlagClass::Fin
    } else if flags & ACK != 0 {
        FlagClass::Ack
    } else {
        FlagClass::None
    }
}

/// Transition outcome before the window check.
enum Step {
    To(TcpState),
    Ignore,
    Invalid,
    Reopen,
}

/// Linux's `tcp_conntracks` table, minus sNO and sS2.
fn transition(state: TcpState, dir: Direction, class: FlagClass) -> Step {
    use Direction::*;
    use FlagClass as F;
    use TcpState::*;
    match (class, dir, state) {
        (F::Rst, _, _) => Step::To(Close),
        (F::None, _, _) => Step::Invalid,
        (F::Syn, Original, SynSent) => Step::To(SynSent),
        (F::Syn, Original, TimeWait | Close) => Step::Reopen,
        (F::Syn, Original, _) => Step::Ignore,
        (F::Syn, Reply, SynSent) => Step::Ignore,
        (F::Syn, Reply, _) => Step::Invalid,
        (F::SynAck, Original, SynRecv) => Step::To(SynRecv),
        (F::SynAck, Original, _) => Step::Invalid,
        (F::SynAck, Reply, SynSent) => Step::To(SynRecv),
        (F::SynAck, Reply, _) => Step::Ignore,
        (F::Fin, _, SynSent) => Step::Invalid,
        (F::Fin, _, SynRecv | Established) => Step::To(FinWait),
        (F::Fin, _, FinWait | CloseWait | LastAck) => Step::To(LastAck),
        (F::Fin, _, s) => Step::To(s),
        (F::Ack, Original, SynSent) => Step::Invalid,
        (F::Ack, Reply, SynSent) => Step::Ignore,
        (F::Ack, Original, SynRecv) => Step::To(Established),
        (F::Ack, Reply, SynRecv) => Step::To(SynRecv),
        (F::Ack, _, FinWait | CloseWait) => Step::To(CloseWait),
        (F::Ack, _, LastAck | TimeWait) => Step::To(TimeWait),
        (F::Ack, _, s) => Step::To(s),
    }
}

impl TcpConn {
    /// A connection opened by `syn` (a SYN without ACK from the originator);
    /// `None` for any other segment.
    pub fn open(syn: &TcpSegment) -> Option<TcpConn> {
        if syn.flags & (tcp_flags::SYN | tcp_flags::ACK) != tcp_flags::SYN || !flags_valid(syn.flags) {
            return None;
        }
        let mut conn = TcpConn { state: TcpState::SynSent, peers: [Peer::default(); 2] };
        conn.in_window(Direction::Original, syn).then_some(conn)
    }

    /// The connection state.
    pub fn state(&self) -> TcpState {
        self.state
    }

    /// Applies `seg` travelling in `dir`.
    pub fn update(&mut self, dir: Direction, seg: &TcpSegment) -> TcpUpdate {
        if !flags_valid(seg.flags) {
            return TcpUpdate::Invalid;
        }
        match transition(self.state, dir, classify_flags(seg.flags)) {
            Step::Invalid => TcpUpdate::Invalid,
            Step::Ignore => TcpUpdate::Ignored,
            Step::Reopen => TcpUpdate::Reopen,
            Step::To(next) => {
                if !self.in_window(dir, seg) {
                    return TcpUpdate::Invalid;
                }
                self.state = next;
                TcpUpdate::Accepted
            }
        }
    }

    /// The simplified `tcp_in_window`: checks I-IV and updates both peers.
    fn in_window(&mut self, dir: Direction, seg: &TcpSegment) -> bool {
        let [original, reply] = &mut self.peers;
        let (sender, receiver) = match dir {
            Direction::Original => (original, reply),
            Direction::Reply => (reply, original),
        };
        let syn = seg.flags & tcp_flags::SYN != 0;
        let has_ack = seg.flags & tcp_flags::ACK != 0;
        let end = seg.seq.wrapping_add(seg.seq_len);
        let win = u32::from(seg.window);
        if !sender.seen {
            init_sender(sender, receiver, seg, end);
            if syn && !has_ack {
                return true;
            }
        } else if syn && !has_ack && self.state == TcpState::SynSent && after(end, sender.end) {
            // A retransmitted SYN with a new ISN restarts the originator's side.
            sender.end = end;
            sender.maxend = end;
            sender.maxwin = win.max(1);
            sender.declared_scale = seg.window_scale;
        }
        let ack = if !has_ack || (seg.flags & tcp_flags::RST != 0 && seg.ack == 0) { receiver.end } else { seg.ack };
        let max_ack_window = sender.maxwin.max(66_000);
        let in_receive_window =
            receiver.maxwin == 0 || after(end, sender.end.wrapping_sub(receiver.maxwin).wrapping_sub(1));
        let ok = before(seg.seq, sender.maxend.wrapping_add(1))
            && in_receive_window
            && before(ack, receiver.end.wrapping_add(1))
            && after(ack, receiver.end.wrapping_sub(max_ack_window).wrapping_sub(1));
        if ok {
            let win = if syn { win } else { win << sender.scale };
            record_accepted(sender, receiver, end, ack, win);
        }
        ok
    }
}

/// First segment from `sender`: initialise its tracking (Linux's
/// `td_maxwin == 0` branch) and settle window scaling once both SYNs are seen.
fn init_sender(sender: &mut Peer, receiver: &mut Peer, seg: &TcpSegment, end: u32) {
    let win = u32::from(seg.window);
    sender.seen = true;
    if seg.flags & tcp_flags::SYN != 0 {
        sender.end = end;
        sender.maxend = end;
        sender.maxwin = win.max(1);
        sender.declared_scale = seg.window_scale;
        let (own, other) = match (sender.declared_scale, receiver.declared_scale) {
            (Some(own), Some(other)) => (own, other),
            _ => (0, 0),
        };
        sender.scale = own;
        receiver.scale = other;
    } else {
        sender.end = end;
        sender.maxwin = (win << sender.scale).max(1);
        sender.maxend = end.wrapping_add(sender.maxwin);
        if !receiver.seen {
            receiver.end = seg.ack;
            receiver.maxend = seg.ack;
        }
    }
}

/// Updates both peers after an in-window segment `[.., end)` acking `ack`
/// with (scaled) window `win`.
fn record_accepted(sender: &mut Peer, receiver: &mut Peer, end: u32, ack: u32, win: u32) {
    if sender.maxwin < win {
        sender.maxwin = win;
    }
    if after(end, sender.end) {
        sender.end = end;
    }
    if receiver.maxwin != 0 && after(end, sender.maxend) {
        receiver.maxwin = receiver.maxwin.wrapping_add(end.wrapping_sub(sender.maxend));
    }
    let right_edge = ack.wrapping_add(win);
    if after(right_edge, receiver.maxend.wrapping_sub(1)) {
        receiver.maxend = right_edge.wrapping_add(u32::from(win == 0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tcp_flags::*;

    fn seg(flags: u8, seq: u32, ack: u32, data: u32) -> TcpSegment {
        let seq_len = data + u32::from(flags & SYN != 0) + u32::from(flags & FIN != 0);
        TcpSegment {
            seq,
            ack,
            window: 1000,
            flags,
            all_flags: flags,
            options: [0; 4],
            mss: None,
            seq_len,
            window_scale: None,
        }
    }

    fn established() -> TcpConn {
        let mut conn = TcpConn::open(&seg(SYN, 100, 0, 0)).unwrap();
        assert_eq!(conn.update(Direction::Reply, &seg(SYN | ACK, 5000, 101, 0)), TcpUpdate::Accepted);
        assert_eq!(conn.state(), TcpState::SynRecv);
        assert_eq!(conn.update(Direction::Original, &seg(ACK, 101, 5001, 0)), TcpUpdate::Accepted);
        assert_eq!(conn.state(), TcpState::Established);
        conn
    }

    #[test]
    fn handshake_data_and_close() {
        let mut conn = established();
        assert_eq!(conn.update(Direction::Original, &seg(ACK | PSH, 101, 5001, 500)), TcpUpdate::Accepted);
        assert_eq!(conn.update(Direction::Reply, &seg(ACK, 5001, 601, 0)), TcpUpdate::Accepted);
        assert_eq!(conn.update(Direction::Original, &seg(FIN | ACK, 601, 5001, 0)), TcpUpdate::Accepted);
        assert_eq!(conn.state(), TcpState::FinWait);
        assert_eq!(conn.update(Direction::Reply, &seg(ACK, 5001, 602, 0)), TcpUpdate::Accepted);
        assert_eq!(conn.state(), TcpState::CloseWait);
        assert_eq!(conn.update(Direction::Reply, &seg(FIN | ACK, 5001, 602, 0)), TcpUpdate::Accepted);
        assert_eq!(conn.state(), TcpState::LastAck);
        assert_eq!(conn.update(Direction::Original, &seg(ACK, 602, 5002, 0)), TcpUpdate::Accepted);
        assert_eq!(conn.state(), TcpState::TimeWait);
        assert_eq!(conn.update(Direction::Original, &seg(SYN, 9000, 0, 0)), TcpUpdate::Reopen);
    }

    #[test]
    fn out_of_window_segments_are_invalid() {
        let mut conn = established();
        // Far beyond what the receiver's window allows.
        assert_eq!(conn.update(Direction::Original, &seg(ACK, 101 + 50_000, 5001, 10)), TcpUpdate::Invalid);
        // Acks data the other side never sent.
        assert_eq!(conn.update(Direction::Original, &seg(ACK, 101, 9000, 0)), TcpUpdate::Invalid);
        // A RST far out of window does not close the connection.
        assert_eq!(conn.update(Direction::Reply, &seg(RST, 1_000_000, 0, 0)), TcpUpdate::Invalid);
        assert_eq!(conn.state(), TcpState::Established);
        assert_eq!(conn.update(Direction::Reply, &seg(RST, 5001, 0, 0)), TcpUpdate::Accepted);
        assert_eq!(conn.state(), TcpState::Close);
    }

    #[test]
    fn syn_ack_must_ack_the_syn() {
        let mut conn = TcpConn::open(&seg(SYN, 100, 0, 0)).unwrap();
        assert_eq!(conn.update(Direction::Reply, &seg(SYN | ACK, 5000, 4242, 0)), TcpUpdate::Invalid);
        assert_eq!(conn.state(), TcpState::SynSent);
    }

    #[test]
    fn bad_flags_and_non_syn_openers() {
        assert!(TcpConn::open(&seg(ACK, 1, 1, 0)).is_none());
        assert!(TcpConn::open(&seg(SYN | FIN, 1, 0, 0)).is_none());
        assert!(!flags_valid(SYN | RST));
        assert!(!flags_valid(0));
        assert!(flags_valid(ACK | PSH));
        let mut conn = established();
        assert_eq!(conn.update(Direction::Original, &seg(FIN | SYN | ACK, 101, 5001, 0)), TcpUpdate::Invalid);
    }

    #[test]
    fn window_scaling_applies_when_both_sides_offer_it() {
        let mut syn = seg(SYN, 100, 0, 0);
        syn.window_scale = Some(7);
        let mut conn = TcpConn::open(&syn).unwrap();
        let mut syn_ack = seg(SYN | ACK, 5000, 101, 0);
        syn_ack.window_scale = Some(7);
        assert_eq!(conn.update(Direction::Reply, &syn_ack), TcpUpdate::Accepted);
        assert_eq!(conn.update(Direction::Original, &seg(ACK, 101, 5001, 0)), TcpUpdate::Accepted);
        // Responder advertises 1000 << 7 = 128000 bytes: 100 kB in flight is fine.
        assert_eq!(conn.update(Direction::Reply, &seg(ACK, 5001, 101, 0)), TcpUpdate::Accepted);
        assert_eq!(conn.update(Direction::Original, &seg(ACK, 101 + 100_000, 5001, 1000)), TcpUpdate::Accepted);
    }

    #[test]
    fn sequence_space_wraps() {
        let mut conn = TcpConn::open(&seg(SYN, u32::MAX - 10, 0, 0)).unwrap();
        assert_eq!(conn.update(Direction::Reply, &seg(SYN | ACK, 7, u32::MAX - 9, 0)), TcpUpdate::Accepted);
        assert_eq!(conn.update(Direction::Original, &seg(ACK, u32::MAX - 9, 8, 0)), TcpUpdate::Accepted);
        assert_eq!(conn.update(Direction::Original, &seg(ACK, u32::MAX - 9, 8, 500)), TcpUpdate::Accepted);
        assert_eq!(conn.update(Direction::Reply, &seg(ACK, 8, 490, 0)), TcpUpdate::Accepted);
    }
}
