//! IPv4 options (RFC 791) as Linux treats them: malformed options are
//! refused with an ICMP parameter problem (`ip_options_compile`), source
//! routes are dropped (`accept_source_route = 0`), and a forwarded packet's
//! record-route and timestamp options get the firewall's entry
//! (`ip_options_compile` and `ip_forward_options`). Other options (router
//! alert, security, unknown kinds) pass unchanged, as in Linux.

use super::checksum;
use super::parse::IPV4_MIN_HEADER_LEN;

const END: u8 = 0;
const NOOP: u8 = 1;
const RECORD_ROUTE: u8 = 7;
const TIMESTAMP: u8 = 68;
const LOOSE_SOURCE_ROUTE: u8 = 131;
const STRICT_SOURCE_ROUTE: u8 = 137;
const ROUTER_ALERT: u8 = 148;

/// Timestamp option flags (the low nibble of its fourth byte).
const TS_ONLY: u8 = 0;
const TS_AND_ADDRESS: u8 = 1;
const TS_PRESPECIFIED: u8 = 3;

/// Why a packet's options refuse it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionsError {
    /// Malformed: the offset of the offending byte from the start of the IP
    /// header, for the ICMP parameter problem's pointer.
    Malformed(u8),
    /// A loose or strict source route.
    SourceRoute,
}

/// Where a forwarded packet's options take the firewall's entry: offsets of
/// the record-route and timestamp options in the IP header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ipv4Options {
    record_route: Option<u8>,
    timestamp: Option<u8>,
    /// Where the end-of-options byte is, when bytes after it are not zero
    /// (Linux zeroes them).
    end_with_junk: Option<u8>,
}

impl Ipv4Options {
    /// Whether forwarding changes nothing in the header.
    pub fn is_empty(&self) -> bool {
        self.record_route.is_none() && self.timestamp.is_none() && self.end_with_junk.is_none()
    }
}

/// Checks the options of `header` (the whole IP header, 20 bytes and the
/// options) as Linux's `ip_options_compile` does on receive, without
/// changing them.
pub fn check(header: &[u8]) -> Result<Ipv4Options, OptionsError> {
    let mut found = Ipv4Options::default();
    let mut source_route = false;
    let mut at = IPV4_MIN_HEADER_LEN;
    while let Some(&kind) = header.get(at) {
        match kind {
            END => {
                if header.get(at..).is_some_and(|rest| rest.iter().any(|&b| b != END)) {
                    found.end_with_junk = Some(at as u8);
                }
                break;
            }
            NOOP => {
                at += 1;
                continue;
            }
            _ => {}
        }
        let malformed = |offset: usize| OptionsError::Malformed(offset as u8);
        let len = usize::from(*header.get(at + 1).ok_or(malformed(at))?);
        if len < 2 || at + len > header.len() {
            return Err(malformed(at));
        }
        let option = header.get(at..at + len).ok_or(malformed(at))?;
        let pointer = option.get(2).copied().map(usize::from);
        match kind {
            LOOSE_SOURCE_ROUTE | STRICT_SOURCE_ROUTE => {
                let pointer = pointer.ok_or(malformed(at + 1))?;
                if pointer < 4 {
                    return Err(malformed(at + 2));
                }
                // RFC 1812 5.2.4.1: at most one source route.
                if source_route {
                    return Err(malformed(at));
                }
                source_route = true;
            }
            RECORD_ROUTE => {
                if found.record_route.is_some() {
                    return Err(malformed(at));
                }
                let pointer = pointer.ok_or(malformed(at + 1))?;
                if pointer < 4 || (pointer <= len && pointer + 3 > len) {
                    return Err(malformed(at + 2));
                }
                found.record_route = Some(at as u8);
            }
            TIMESTAMP => {
                if found.timestamp.is_some() {
                    return Err(malformed(at));
                }
                check_timestamp(option).map_err(|offset| malformed(at + offset))?;
                found.timestamp = Some(at as u8);
            }
            ROUTER_ALERT if len < 4 => return Err(malformed(at + 1)),
            _ => {}
        }
        at += len;
    }
    if source_route {
        return Err(OptionsError::SourceRoute);
    }
    Ok(found)
}

/// A timestamp option's consistency; `Err` with the offending byte's
/// offset in the option.
fn check_timestamp(option: &[u8]) -> Result<(), usize> {
    let len = option.len();
    if len < 4 {
        return Err(1);
    }
    let (pointer, flags) = match option {
        [_, _, pointer, flags, ..] => (usize::from(*pointer), *flags),
        _ => return Err(1),
    };
    if pointer < 5 {
        return Err(2);
    }
    if pointer <= len {
        let with_address = matches!(flags & 0xf, TS_AND_ADDRESS | TS_PRESPECIFIED);
        if pointer + 3 > len || (with_address && pointer + 7 > len) {
            return Err(2);
        }
    } else if flags & 0xf != TS_PRESPECIFIED && flags >> 4 == 15 {
        // The overflow count would wrap.
        return Err(3);
    }
    Ok(())
}

/// Gives a forwarded packet's options the firewall's entry, as Linux's
/// `ip_options_compile` and `ip_forward_options` do: its output address
/// `out_addr` in a record route; in a timestamp option, the time
/// (`now_ms`) alone, or with `out_addr`, or when the next prespecified
/// address is one of the firewall's (`is_own`); a full timestamp option
/// counts an overflow. The header checksum is recomputed. `header` is the
/// whole IP header whose options [`check`] accepted.
pub fn stamp(header: &mut [u8], options: Ipv4Options, out_addr: u32, now_ms: u64, is_own: impl Fn(u32) -> bool) {
    if options.is_empty() {
        return;
    }
    if let Some(at) = options.end_with_junk {
        if let Some(rest) = header.get_mut(usize::from(at)..) {
            rest.fill(END);
        }
    }
    if let Some(at) = options.record_route {
        record_route(header, usize::from(at), out_addr);
    }
    if let Some(at) = options.timestamp {
        timestamp(header, usize::from(at), out_addr, time_of_day(now_ms), is_own);
    }
    if let Some(sum) = header.get_mut(10..12) {
        sum.fill(0);
    }
    let sum = checksum::checksum(header);
    if let Some(field) = header.get_mut(10..12) {
        field.copy_from_slice(&sum.to_be_bytes());
    }
}

/// RFC 791's timestamp: milliseconds since midnight UT. The firewall has
/// no wall clock, so it sends its uptime modulo a day with the high-order
/// bit set, which RFC 791 reserves for a time that is not UT.
fn time_of_day(now_ms: u64) -> u32 {
    (now_ms % 86_400_000) as u32 | 0x8000_0000
}

fn record_route(header: &mut [u8], at: usize, out_addr: u32) {
    let (Some(&len), Some(&pointer)) = (header.get(at + 1), header.get(at + 2)) else { return };
    if pointer > len {
        return; // Full: Linux records nothing and says nothing.
    }
    put(header, at + usize::from(pointer) - 1, out_addr);
    if let Some(p) = header.get_mut(at + 2) {
        *p = pointer + 4;
    }
}

fn timestamp(header: &mut [u8], at: usize, out_addr: u32, time: u32, is_own: impl Fn(u32) -> bool) {
    let (Some(&len), Some(&pointer), Some(&flags)) = (header.get(at + 1), header.get(at + 2), header.get(at + 3))
    else {
        return;
    };
    if pointer > len {
        // Full: count an overflow in the high nibble (check() refused 15).
        if flags & 0xf != TS_PRESPECIFIED {
            if let Some(f) = header.get_mut(at + 3) {
                *f = (flags & 0xf) | (((flags >> 4) + 1) << 4);
            }
        }
        return;
    }
    let entry = at + usize::from(pointer) - 1;
    let advance = match flags & 0xf {
        TS_ONLY => {
            put(header, entry, time);
            4
        }
        TS_AND_ADDRESS => {
            put(header, entry, out_addr);
            put(header, entry + 4, time);
            8
        }
        // Only when the next prespecified address is the firewall's.
        TS_PRESPECIFIED => {
            let addr = header.get(entry..entry + 4).and_then(|b| b.try_into().ok()).map_or(0, u32::from_be_bytes);
            if !is_own(addr) {
                return;
            }
            put(header, entry + 4, time);
            8
        }
        _ => return,
    };
    if let Some(p) = header.get_mut(at + 2) {
        *p = pointer + advance;
    }
}

fn put(header: &mut [u8], at: usize, value: u32) {
    if let Some(field) = header.get_mut(at..at + 4) {
        field.copy_from_slice(&value.to_be_bytes());
    }
}
