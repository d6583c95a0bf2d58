//! The `/metrics` server of one interface: a read-only HTTP/1.x endpoint on
//! the interface's own smoltcp stack that answers `GET /metrics` (and
//! `HEAD`) with the Prometheus text of [`super::exposition`], to the source
//! prefixes the rules file's `metrics` statement lists.
//!
//! Its memory is fixed when it starts: [`SOCKETS`] TCP sockets with small
//! buffers, each with a request buffer of [`REQUEST_MAX`] bytes and the
//! exposition's cursor. A SYN finding every socket busy gets a RST from
//! smoltcp. Each poll does bounded work: it reads what arrived, and writes
//! at most the free part of a send buffer, generated from the cursor, so
//! the packet path runs between two pieces of one response.
//!
//! What it refuses: a connection from a source outside the list (reset
//! once accepted, since smoltcp cannot filter SYNs); a request that is not
//! HTTP/1.0 or 1.1 (400, or 505 for another version), another path (404),
//! another method (405), a head over [`REQUEST_MAX`] bytes (431), or one
//! not complete within [`REQUEST_TIMEOUT_MS`] of the connection (408). A
//! response that cannot move for [`STALL_TIMEOUT_MS`], or a connection
//! that does not close within [`CLOSE_TIMEOUT_MS`] of its last byte, is
//! reset. Every response ends the connection (`Connection: close`; the
//! metrics body has no length and ends with the connection).

use alloc::vec;
use alloc::vec::Vec;

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp::{self, State};
use smoltcp::time::Instant;
use smoltcp::wire::IpAddress;

use super::exposition::{Exposition, RulesetFacts, Sources, View};
use crate::image::Image;
use crate::net::addr::Cidr;

/// Connections served at once.
pub const SOCKETS: usize = 2;
/// Receive buffer of each socket (its TCP window).
pub const RECEIVE_BUFFER: usize = 1024;
/// Send buffer of each socket: the most of a response generated ahead.
pub const SEND_BUFFER: usize = 16 * 1024;
/// Longest request head (request line and headers) accepted.
pub const REQUEST_MAX: usize = 2048;
/// A request must be complete this long after its connection arrived.
pub const REQUEST_TIMEOUT_MS: u64 = 5_000;
/// A response that could not queue a byte for this long is reset.
pub const STALL_TIMEOUT_MS: u64 = 10_000;
/// A connection must be closed this long after its last byte left.
pub const CLOSE_TIMEOUT_MS: u64 = 5_000;
/// How long a reset socket waits for its RST to go out before listening.
const RESET_WAIT_MS: u64 = 1_000;

/// The statuses the server answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// 200: the metrics.
    Ok,
    /// 400: not an HTTP/1.x request.
    BadRequest,
    /// 404: a path other than `/metrics`.
    NotFound,
    /// 405: a method other than GET and HEAD.
    MethodNotAllowed,
    /// 408: the request was not complete in time.
    RequestTimeout,
    /// 431: the request head is longer than [`REQUEST_MAX`].
    HeadersTooLarge,
    /// 505: an HTTP version other than 1.0 and 1.1.
    VersionNotSupported,
}

/// Head and body of an error response.
macro_rules! error_response {
    ($status:literal, $extra:literal, $length:literal, $body:literal) => {
        (
            concat!(
                "HTTP/1.1 ",
                $status,
                "\r\nContent-Type: text/plain; charset=utf-8\r\n",
                $extra,
                "Content-Length: ",
                $length,
                "\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
            $body.as_bytes(),
        )
    };
}

impl Status {
    /// Every status, in the order the server counts them.
    pub const ALL: [Status; 7] = [
        Status::Ok,
        Status::BadRequest,
        Status::NotFound,
        Status::MethodNotAllowed,
        Status::RequestTimeout,
        Status::HeadersTooLarge,
        Status::VersionNotSupported,
    ];

    /// The status code.
    pub fn code(self) -> u16 {
        match self {
            Status::Ok => 200,
            Status::BadRequest => 400,
            Status::NotFound => 404,
            Status::MethodNotAllowed => 405,
            Status::RequestTimeout => 408,
            Status::HeadersTooLarge => 431,
            Status::VersionNotSupported => 505,
        }
    }

    /// The response head, and the body of an error (the metrics body is
    /// generated).
    pub fn response(self) -> (&'static [u8], &'static [u8]) {
        match self {
            Status::Ok => (
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
                  Cache-Control: no-store\r\nConnection: close\r\n\r\n",
                b"",
            ),
            Status::BadRequest => error_response!("400 Bad Request", "", "12", "bad request\n"),
            Status::NotFound => error_response!("404 Not Found", "", "36", "not found: the metrics are /metrics\n"),
            Status::MethodNotAllowed => {
                error_response!(
                    "405 Method Not Allowed",
                    "Allow: GET, HEAD\r\n",
                    "36",
                    "method not allowed: use GET or HEAD\n"
                )
            }
            Status::RequestTimeout => error_response!("408 Request Timeout", "", "16", "request timeout\n"),
            Status::HeadersTooLarge => {
                error_response!("431 Request Header Fields Too Large", "", "32", "request header fields too large\n")
            }
            Status::VersionNotSupported => {
                error_response!("505 HTTP Version Not Supported", "", "27", "HTTP version not supported\n")
            }
        }
    }

    fn index(self) -> usize {
        Status::ALL.iter().position(|&s| s == self).unwrap_or(0)
    }
}

/// How the server answers a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// The status.
    pub status: Status,
    /// Whether the response has a body (not for HEAD).
    pub body: bool,
}

/// The answer to a complete request head: everything up to and including
/// the empty line that ends it (lines end in CRLF, or a bare LF).
pub fn answer(head: &[u8]) -> Answer {
    let body = !head.starts_with(b"HEAD ");
    let status = judge(head).unwrap_or_else(|status| status);
    Answer { status, body }
}

fn judge(head: &[u8]) -> Result<Status, Status> {
    let mut lines = head.split(|&b| b == b'\n').map(|line| line.strip_suffix(b"\r").unwrap_or(line));
    let (method, target) = request_line(lines.next().unwrap_or(&[]))?;
    for line in lines.filter(|line| !line.is_empty()) {
        // A field line is `name: value`; an obsolete continuation line
        // (starting with a blank) is refused, as RFC 9112 5.2 allows.
        let name = line.iter().position(|&b| b == b':').and_then(|colon| line.get(..colon)).unwrap_or(&[]);
        if name.is_empty() || !name.iter().copied().all(is_tchar) {
            return Err(Status::BadRequest);
        }
    }
    let path = target.split(|&b| b == b'?').next().unwrap_or(&[]);
    if path != b"/metrics" {
        return Err(Status::NotFound);
    }
    match method {
        b"GET" | b"HEAD" => Ok(Status::Ok),
        _ => Err(Status::MethodNotAllowed),
    }
}

/// The method and target of a request line `METHOD SP TARGET SP HTTP/1.x`.
fn request_line(line: &[u8]) -> Result<(&[u8], &[u8]), Status> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Status::BadRequest);
    };
    if method.is_empty() || !method.iter().copied().all(is_tchar) {
        return Err(Status::BadRequest);
    }
    if !target.starts_with(b"/") || !target.iter().all(|b| (0x21..0x7f).contains(b)) {
        return Err(Status::BadRequest);
    }
    match version {
        b"HTTP/1.0" | b"HTTP/1.1" => Ok((method, target)),
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor] if major.is_ascii_digit() && minor.is_ascii_digit() => {
            Err(Status::VersionNotSupported)
        }
        _ => Err(Status::BadRequest),
    }
}

/// A token character (RFC 9110 5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Bytes a request head may hold: visible ASCII, space, tab, CR, LF.
fn is_head_byte(b: u8) -> bool {
    (0x20..0x7f).contains(&b) || b == b'\t' || b == b'\r' || b == b'\n'
}

/// Where a request head ends: just past its empty line.
fn head_end(data: &[u8]) -> Option<usize> {
    data.windows(2).enumerate().find_map(|(i, pair)| match pair {
        b"\n\n" => Some(i + 2),
        b"\n\r" if data.get(i + 2) == Some(&b'\n') => Some(i + 3),
        _ => None,
    })
}

/// A request as it arrives, in a fixed buffer.
pub struct RequestReader {
    bytes: [u8; REQUEST_MAX],
    len: usize,
}

impl Default for RequestReader {
    fn default() -> Self {
        RequestReader::new()
    }
}

impl RequestReader {
    /// An empty reader.
    pub fn new() -> RequestReader {
        RequestReader { bytes: [0; REQUEST_MAX], len: 0 }
    }

    /// Forgets the request.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// The free part of the buffer.
    pub fn room(&mut self) -> &mut [u8] {
        self.bytes.get_mut(self.len..).unwrap_or(&mut [])
    }

    /// Records `n` bytes written into [`RequestReader::room`].
    pub fn filled(&mut self, n: usize) {
        self.len = (self.len + n).min(REQUEST_MAX);
    }

    /// Adds `data` (what fits); returns the bytes taken.
    pub fn push(&mut self, data: &[u8]) -> usize {
        let room = self.room();
        let n = data.len().min(room.len());
        if let (Some(to), Some(from)) = (room.get_mut(..n), data.get(..n)) {
            to.copy_from_slice(from);
        }
        self.filled(n);
        n
    }

    /// The answer, as soon as the bytes so far decide it: a complete head,
    /// or a byte no head may hold, or a first line that is no request line,
    /// or a full buffer.
    pub fn answer(&self) -> Option<Answer> {
        let data = self.bytes.get(..self.len).unwrap_or(&[]);
        let body = !data.starts_with(b"HEAD ");
        if let Some(end) = head_end(data) {
            let head = data.get(..end).unwrap_or(data);
            return Some(if head.iter().all(|&b| is_head_byte(b)) {
                answer(head)
            } else {
                Answer { status: Status::BadRequest, body }
            });
        }
        let refuse = |status| Some(Answer { status, body });
        if !data.iter().all(|&b| is_head_byte(b)) {
            return refuse(Status::BadRequest);
        }
        if let Some(first) = data.iter().position(|&b| b == b'\n').and_then(|nl| data.get(..nl)) {
            if let Err(status) = request_line(first) {
                return refuse(status);
            }
        }
        if self.len >= REQUEST_MAX {
            return refuse(Status::HeadersTooLarge);
        }
        None
    }
}

/// What a server counts about itself (also exported in its metrics).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerCounts {
    /// The interface it serves (0 = eth0).
    pub interface: u8,
    /// Responses by status, in [`Status::ALL`] order.
    pub responses: [u64; Status::ALL.len()],
    /// Connections reset because their source is not allowed.
    pub refused: u64,
    /// Connections reset because a response stalled or did not close.
    pub timed_out: u64,
}

/// Where a connection slot is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No connection: the socket listens (or is made to).
    Idle,
    /// Reading the request of a connection that arrived at `since_ms`.
    Reading { since_ms: u64 },
    /// Sending `answer`: `sent` bytes of its head and fixed body are out,
    /// the last byte was queued at `progress_ms`.
    Responding { answer: Answer, sent: usize, progress_ms: u64 },
    /// Everything queued and the close asked for at `since_ms`, when
    /// `queued` bytes were still unacknowledged.
    Closing { since_ms: u64, queued: usize },
    /// Reset at `since_ms`; listens again once the RST is out.
    Resetting { since_ms: u64 },
}

/// One socket and its connection's state.
struct Slot {
    handle: SocketHandle,
    phase: Phase,
    request: RequestReader,
    body: Exposition,
}

/// The server's settings and counts, which its slots share.
struct Shared<'a> {
    port: u16,
    from: &'a [Cidr],
    ruleset: &'a RulesetFacts,
    counts: &'a mut ServerCounts,
}

/// The `/metrics` server of one interface.
pub struct MetricsServer {
    port: u16,
    from: Vec<Cidr>,
    ruleset: RulesetFacts,
    counts: ServerCounts,
    slots: Vec<Slot>,
}

impl MetricsServer {
    /// The server the image asks for on `interface`, if any (its port and
    /// allowed sources); `compiled_at` is the rules' compile time (unix
    /// seconds).
    pub fn for_interface(image: &Image<'_>, interface: u8, compiled_at: u64) -> Option<MetricsServer> {
        let mut sources = image.metrics_sources().filter(|m| m.interface == interface).peekable();
        let port = sources.peek()?.port;
        let from = sources.map(|m| m.from).collect();
        let ruleset = RulesetFacts::new(image, compiled_at);
        let counts = ServerCounts { interface, ..ServerCounts::default() };
        Some(MetricsServer { port, from, ruleset, counts, slots: Vec::new() })
    }

    /// The TCP port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The source prefixes it serves.
    pub fn sources(&self) -> &[Cidr] {
        &self.from
    }

    /// Its counts.
    pub fn counts(&self) -> &ServerCounts {
        &self.counts
    }

    /// Adds its sockets to a stack's set (once); they listen from the next
    /// poll.
    pub fn open(&mut self, sockets: &mut SocketSet<'static>) {
        while self.slots.len() < SOCKETS {
            let rx = tcp::SocketBuffer::new(vec![0; RECEIVE_BUFFER]);
            let tx = tcp::SocketBuffer::new(vec![0; SEND_BUFFER]);
            let handle = sockets.add(tcp::Socket::new(rx, tx));
            self.slots.push(Slot {
                handle,
                phase: Phase::Idle,
                request: RequestReader::new(),
                body: Exposition::new(),
            });
        }
    }

    /// Serves its connections once, after the stack's poll at `now`: reads
    /// requests, queues as much of each response as fits, closes and
    /// resets. True if anything happened (the stack should poll again to
    /// send it).
    pub fn poll(&mut self, now: Instant, sockets: &mut SocketSet<'_>, sources: &Sources<'_, '_>) -> bool {
        let now_ms = now.total_millis().max(0) as u64;
        let MetricsServer { port, from, ruleset, counts, slots } = self;
        let mut shared = Shared { port: *port, from, ruleset, counts };
        let mut work = false;
        for slot in slots.iter_mut() {
            let socket = sockets.get_mut::<tcp::Socket>(slot.handle);
            // A connection may go from arrival to response in one poll.
            for _ in 0..4 {
                let (moved, busy) = slot.step(now_ms, socket, &mut shared, sources);
                work |= busy || moved;
                if !moved {
                    break;
                }
            }
        }
        work
    }
}

impl core::fmt::Display for MetricsServer {
    /// What it serves, for the boot log.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "GET /metrics on port {} for", self.port)?;
        for (i, cidr) in self.from.iter().enumerate() {
            write!(f, "{} {cidr}", if i == 0 { "" } else { "," })?;
        }
        Ok(())
    }
}

impl Slot {
    /// One step of the slot's state machine: (whether its phase changed,
    /// whether it did work without changing phase).
    fn step(
        &mut self,
        now_ms: u64,
        socket: &mut tcp::Socket<'_>,
        shared: &mut Shared<'_>,
        sources: &Sources<'_, '_>,
    ) -> (bool, bool) {
        let elapsed = |since_ms: u64| now_ms.saturating_sub(since_ms);
        match self.phase {
            Phase::Idle => (self.accept(now_ms, socket, shared), false),
            Phase::Reading { since_ms } => {
                if socket.can_recv() {
                    if let Ok(n) = socket.recv_slice(self.request.room()) {
                        self.request.filled(n);
                    }
                }
                let timeout = elapsed(since_ms) >= REQUEST_TIMEOUT_MS;
                let answer = self.request.answer().or_else(|| {
                    let status = Status::RequestTimeout;
                    timeout.then_some(Answer { status, body: true })
                });
                if let Some(answer) = answer {
                    if let Some(count) = shared.counts.responses.get_mut(answer.status.index()) {
                        *count += 1;
                    }
                    self.body = Exposition::new();
                    self.phase = Phase::Responding { answer, sent: 0, progress_ms: now_ms };
                    return (true, false);
                }
                match socket.state() {
                    State::SynReceived | State::Established => (false, false),
                    // Reset by the peer (back to listening, or closed).
                    State::Listen | State::Closed | State::TimeWait => {
                        self.phase = Phase::Idle;
                        (true, false)
                    }
                    // The peer closed before a whole request.
                    _ => {
                        self.close(now_ms, socket);
                        (true, false)
                    }
                }
            }
            Phase::Responding { progress_ms, .. } => {
                if !socket.may_send() {
                    match socket.state() {
                        State::Listen | State::Closed | State::TimeWait => self.phase = Phase::Idle,
                        // Half-open (a 408 before the handshake ended), or closing.
                        _ => self.reset(now_ms, socket),
                    }
                    return (true, false);
                }
                let view = View { sources, ruleset: shared.ruleset, server: shared.counts };
                let progress = self.respond(socket, &view);
                if self.finished() {
                    self.close(now_ms, socket);
                    return (true, false);
                }
                if progress {
                    if let Phase::Responding { progress_ms, .. } = &mut self.phase {
                        *progress_ms = now_ms;
                    }
                    return (false, true);
                }
                if elapsed(progress_ms) >= STALL_TIMEOUT_MS {
                    shared.counts.timed_out += 1;
                    self.reset(now_ms, socket);
                    return (true, false);
                }
                (false, false)
            }
            Phase::Closing { since_ms, queued } => {
                if !socket.is_open() {
                    self.phase = Phase::Idle;
                    return (true, false);
                }
                let now_queued = socket.send_queue();
                if now_queued < queued {
                    self.phase = Phase::Closing { since_ms: now_ms, queued: now_queued };
                    return (false, false);
                }
                if elapsed(since_ms) >= CLOSE_TIMEOUT_MS {
                    shared.counts.timed_out += 1;
                    self.reset(now_ms, socket);
                    return (true, false);
                }
                (false, false)
            }
            Phase::Resetting { since_ms } => {
                // smoltcp forgets the peer once the RST has gone out.
                if socket.remote_endpoint().is_none() || elapsed(since_ms) >= RESET_WAIT_MS {
                    self.phase = Phase::Idle;
                    return (true, false);
                }
                (false, false)
            }
        }
    }

    /// Idle: keeps the socket listening; takes a connection that arrived,
    /// or resets it if its source is not allowed. True if one arrived.
    fn accept(&mut self, now_ms: u64, socket: &mut tcp::Socket<'_>, shared: &mut Shared<'_>) -> bool {
        if !socket.is_open() {
            // Closed, or TIME-WAIT after a close (which nothing here needs).
            let _ = socket.listen(shared.port);
            return false;
        }
        if socket.is_listening() {
            return false;
        }
        let allowed = socket.remote_endpoint().is_some_and(|peer| match peer.addr {
            IpAddress::Ipv4(addr) => shared.from.iter().any(|cidr| cidr.contains(addr.to_bits())),
            #[allow(unreachable_patterns)]
            _ => false,
        });
        if !allowed {
            log::debug!("metrics: connection from {:?} refused (not in `from`)", socket.remote_endpoint());
            shared.counts.refused += 1;
            self.reset(now_ms, socket);
            return true;
        }
        self.request.clear();
        self.phase = Phase::Reading { since_ms: now_ms };
        true
    }

    /// Queues what fits of the response; true if anything was queued or
    /// the exposition moved on.
    fn respond(&mut self, socket: &mut tcp::Socket<'_>, view: &View<'_, '_, '_>) -> bool {
        let before = self.body.position();
        let mut queued = 0;
        // The send buffer is a ring: its free space may come in two parts.
        for _ in 0..2 {
            let n = socket.send(|room| {
                let n = self.fill(room, view);
                (n, n)
            });
            match n {
                Ok(n) if n > 0 => queued += n,
                _ => break,
            }
        }
        queued > 0 || self.body.position() != before
    }

    /// Writes the next bytes of the response into `out`: the head, the
    /// fixed body of an error, or the generated metrics.
    fn fill(&mut self, out: &mut [u8], view: &View<'_, '_, '_>) -> usize {
        let Phase::Responding { answer, sent, .. } = &mut self.phase else {
            return 0;
        };
        let (head, fixed_body) = answer.status.response();
        let fixed_body = if answer.body { fixed_body } else { &[] };
        let mut written = 0;
        for (start, part) in [(0, head), (head.len(), fixed_body)] {
            let rest = sent.checked_sub(start).and_then(|done| part.get(done..)).unwrap_or(&[]);
            let room = out.get_mut(written..).unwrap_or(&mut []);
            let n = rest.len().min(room.len());
            if let (Some(to), Some(from)) = (room.get_mut(..n), rest.get(..n)) {
                to.copy_from_slice(from);
            }
            written += n;
            *sent += n;
        }
        if *sent >= head.len() + fixed_body.len() && answer.status == Status::Ok && answer.body {
            written += self.body.write(view, out.get_mut(written..).unwrap_or(&mut []));
        }
        written
    }

    /// Whether the whole response is queued.
    fn finished(&self) -> bool {
        let Phase::Responding { answer, sent, .. } = self.phase else {
            return false;
        };
        let (head, body) = answer.status.response();
        let fixed = head.len() + if answer.body { body.len() } else { 0 };
        let generated = answer.status == Status::Ok && answer.body;
        sent >= fixed && (!generated || self.body.is_done())
    }

    /// Asks for a close after what is queued.
    fn close(&mut self, now_ms: u64, socket: &mut tcp::Socket<'_>) {
        socket.close();
        self.phase = Phase::Closing { since_ms: now_ms, queued: socket.send_queue() };
    }

    /// Resets the connection (one RST).
    fn reset(&mut self, now_ms: u64, socket: &mut tcp::Socket<'_>) {
        socket.abort();
        self.phase = Phase::Resetting { since_ms: now_ms };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(head: &[u8]) -> (Status, bool) {
        let a = answer(head);
        (a.status, a.body)
    }

    #[test]
    fn requests_are_judged_as_rfc_9112_says() {
        assert_eq!(status(b"GET /metrics HTTP/1.1\r\nHost: fw\r\n\r\n"), (Status::Ok, true));
        assert_eq!(status(b"GET /metrics?x=1 HTTP/1.0\n\n"), (Status::Ok, true), "a query and bare LFs");
        assert_eq!(status(b"HEAD /metrics HTTP/1.1\r\n\r\n"), (Status::Ok, false));
        assert_eq!(status(b"GET / HTTP/1.1\r\n\r\n").0, Status::NotFound);
        assert_eq!(status(b"GET /metrics/ HTTP/1.1\r\n\r\n").0, Status::NotFound);
        assert_eq!(status(b"GET /../metrics HTTP/1.1\r\n\r\n").0, Status::NotFound);
        assert_eq!(status(b"POST /metrics HTTP/1.1\r\n\r\n").0, Status::MethodNotAllowed);
        assert_eq!(status(b"DELETE /metrics HTTP/1.1\r\n\r\n").0, Status::MethodNotAllowed);
        assert_eq!(status(b"GET /metrics HTTP/2.0\r\n\r\n").0, Status::VersionNotSupported);
        assert_eq!(status(b"GET /metrics HTTP/0.9\r\n\r\n").0, Status::VersionNotSupported);
        for bad in [
            &b"GET /metrics\r\n\r\n"[..],
            b"GET  /metrics HTTP/1.1\r\n\r\n",
            b"GET /metrics HTTP/1.1 extra\r\n\r\n",
            b"GET metrics HTTP/1.1\r\n\r\n",
            b"G(T /metrics HTTP/1.1\r\n\r\n",
            b"GET /metrics HTTP/1.1\r\nno colon\r\n\r\n",
            b"GET /metrics HTTP/1.1\r\n: empty name\r\n\r\n",
            b"GET /metrics HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
            b"GET /metrics HTTPS/1.1\r\n\r\n",
            b"\r\n\r\n",
        ] {
            assert_eq!(status(bad).0, Status::BadRequest, "{:?}", core::str::from_utf8(bad));
        }
        // Every response head ends in an empty line, and each error's
        // Content-Length is its body's length.
        for s in Status::ALL {
            let (head, body) = s.response();
            assert!(head.ends_with(b"\r\n\r\n") && head.starts_with(b"HTTP/1.1 "), "{s:?}");
            let text = core::str::from_utf8(head).expect("ASCII");
            assert!(text.starts_with(&alloc::format!("HTTP/1.1 {} ", s.code())), "{text}");
            if s != Status::Ok {
                assert!(text.contains(&alloc::format!("Content-Length: {}\r\n", body.len())), "{text}");
            }
            assert!(text.contains("Connection: close\r\n"));
        }
    }

    #[test]
    fn the_reader_decides_as_early_as_the_bytes_allow_and_never_grows() {
        let mut r = RequestReader::new();
        assert_eq!(r.answer(), None, "nothing yet");
        for piece in [&b"GET /met"[..], b"rics HTTP/1.1\r\n", b"Host: fw\r\n", b"\r"] {
            r.push(piece);
            assert_eq!(r.answer(), None, "incomplete after {piece:?}");
        }
        r.push(b"\n");
        assert_eq!(r.answer(), Some(Answer { status: Status::Ok, body: true }));

        // A bad request line is refused as soon as it ends, before the head.
        let mut r = RequestReader::new();
        r.push(b"BREW /pot HTCPCP/1.0\r\n");
        assert_eq!(r.answer().map(|a| a.status), Some(Status::BadRequest));
        // A byte no head may hold, at once.
        let mut r = RequestReader::new();
        r.push(b"GET /met\0");
        assert_eq!(r.answer().map(|a| a.status), Some(Status::BadRequest));

        // An endless header fills the fixed buffer and is refused with 431;
        // what does not fit is not taken.
        let mut r = RequestReader::new();
        r.push(b"GET /metrics HTTP/1.1\r\nX: ");
        let mut taken = 0;
        for _ in 0..100 {
            taken += r.push(&[b'a'; 1000]);
        }
        assert_eq!(taken, REQUEST_MAX - 26);
        assert!(r.room().is_empty());
        assert_eq!(r.answer().map(|a| a.status), Some(Status::HeadersTooLarge));
        r.clear();
        assert_eq!((r.room().len(), r.answer()), (REQUEST_MAX, None));

        // A HEAD that is refused still gets no body.
        let mut r = RequestReader::new();
        r.push(b"HEAD /x HTTP/1.1\r\n\r\n");
        assert_eq!(r.answer(), Some(Answer { status: Status::NotFound, body: false }));
    }
}
