//! TCP MSS clamping: iptables' `TCPMSS` target (`--set-mss N`,
//! `--clamp-mss-to-pmtu`), byte for byte as Linux's `xt_TCPMSS` mangles a
//! SYN: an MSS option above the new value is lowered (never raised); a SYN
//! without one, and without data, gets one (at most 536, RFC 879's default,
//! as Linux) inserted first among the options; every checksum follows
//! incrementally, a partial (offloaded) one only for the pseudo header.

use super::checksum;

/// IPv4 and TCP headers without options: what `--clamp-mss-to-pmtu`
/// subtracts from the path MTU.
pub const CLAMP_OVERHEAD: u16 = 40;
/// The MSS a SYN without the option is given at most (RFC 879, Linux).
pub const DEFAULT_MSS: u16 = 536;

const TCP_MIN_HEADER: usize = 20;
const OPTION_NOP: u8 = 1;
const OPTION_MSS: u8 = 2;
const MSS_LEN: usize = 4;

/// What clamping did to a SYN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MssChange {
    /// Its MSS option went from this value down to the new one.
    Lowered(u16),
    /// It had an MSS option no larger than the new value, or had data and
    /// no option (nothing can be inserted), or no room to grow: unchanged.
    Unchanged,
    /// It had none and got one: the packet is 4 bytes longer.
    Added,
}

/// The packet cannot be clamped and is dropped, as Linux drops it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MssError;

/// Clamps the MSS of the TCP SYN in the IPv4 packet at the start of
/// `buffer` (header `header_len` bytes, `total_len` bytes in all; the
/// buffer may be longer, which is where an inserted option goes) to
/// `mss`. `partial`: the TCP checksum field holds a partial sum.
/// Returns the change and the packet's new total length.
pub fn clamp_mss(
    buffer: &mut [u8],
    (header_len, total_len): (usize, usize),
    mss: u16,
    partial: bool,
) -> Result<(MssChange, usize), MssError> {
    let tcp_len = total_len.checked_sub(header_len).ok_or(MssError)?;
    let (ip, rest) = buffer.split_at_mut_checked(header_len).ok_or(MssError)?;
    let tcp_header = usize::from(rest.get(12).ok_or(MssError)? >> 4) * 4;
    if tcp_header < TCP_MIN_HEADER || tcp_len < tcp_header {
        return Err(MssError);
    }
    if let Some(at) = find_mss(rest.get(TCP_MIN_HEADER..tcp_header).ok_or(MssError)?) {
        let at = TCP_MIN_HEADER + at + 2;
        let old = get_u16(rest, at)?;
        if old <= mss {
            return Ok((MssChange::Unchanged, total_len));
        }
        put_u16(rest, at, mss)?;
        if !partial {
            let sum = checksum::update(get_u16(rest, 16)?, old, mss);
            put_u16(rest, 16, sum)?;
        }
        return Ok((MssChange::Lowered(old), total_len));
    }
    // Linux inserts only into a SYN without data, and only while the data
    // offset can grow.
    if tcp_len > tcp_header || tcp_header + MSS_LEN > 60 || rest.len() < tcp_len + MSS_LEN {
        return Ok((MssChange::Unchanged, total_len));
    }
    insert_mss(rest, tcp_header, mss.min(DEFAULT_MSS), partial)?;
    let new_total = total_len + MSS_LEN;
    let old_total = u16::try_from(total_len).map_err(|_| MssError)?;
    let new_total16 = u16::try_from(new_total).map_err(|_| MssError)?;
    put_u16(ip, 2, new_total16)?;
    let sum = checksum::update(get_u16(ip, 10)?, old_total, new_total16);
    put_u16(ip, 10, sum)?;
    Ok((MssChange::Added, new_total))
}

/// The offset of a well-formed MSS option in `options`, walked as Linux's
/// `optlen` walks them.
fn find_mss(options: &[u8]) -> Option<usize> {
    let mut at = 0;
    while at + MSS_LEN <= options.len() {
        let kind = *options.get(at)?;
        let len = *options.get(at + 1)?;
        if kind == OPTION_MSS && usize::from(len) == MSS_LEN {
            return Some(at);
        }
        at += if kind <= OPTION_NOP || len == 0 { 1 } else { usize::from(len) };
    }
    None
}

/// Moves the options 4 bytes on and writes `mss` first, updating the data
/// offset and the checksum (pseudo-header length, offset word, new option).
fn insert_mss(tcp: &mut [u8], header: usize, mss: u16, partial: bool) -> Result<(), MssError> {
    let old_len = u16::try_from(header).map_err(|_| MssError)?;
    tcp.copy_within(TCP_MIN_HEADER..header, TCP_MIN_HEADER + MSS_LEN);
    let option = [OPTION_MSS, MSS_LEN as u8, (mss >> 8) as u8, mss as u8];
    tcp.get_mut(TCP_MIN_HEADER..TCP_MIN_HEADER + MSS_LEN).ok_or(MssError)?.copy_from_slice(&option);
    let old_offset_word = get_u16(tcp, 12)?;
    let offset = tcp.get_mut(12).ok_or(MssError)?;
    *offset = (*offset & 0x0f) | ((((header + MSS_LEN) / 4) as u8) << 4);
    let new_offset_word = get_u16(tcp, 12)?;
    let mut sum = get_u16(tcp, 16)?;
    // A partial field holds the pseudo-header sum: only the TCP length
    // (in the pseudo header) changes it; see nat/rewrite.rs.
    if partial {
        sum = !checksum::update(!sum, old_len, old_len + MSS_LEN as u16);
    } else {
        sum = checksum::update(sum, old_len, old_len + MSS_LEN as u16);
        sum = checksum::update(sum, old_offset_word, new_offset_word);
        sum = checksum::update(sum, 0, u16::from_be_bytes([option[0], option[1]]));
        sum = checksum::update(sum, 0, mss);
    }
    put_u16(tcp, 16, sum)
}

fn get_u16(bytes: &[u8], at: usize) -> Result<u16, MssError> {
    match bytes.get(at..at + 2) {
        Some(&[hi, lo]) => Ok(u16::from_be_bytes([hi, lo])),
        _ => Err(MssError),
    }
}

fn put_u16(bytes: &mut [u8], at: usize, value: u16) -> Result<(), MssError> {
    bytes.get_mut(at..at + 2).ok_or(MssError)?.copy_from_slice(&value.to_be_bytes());
    Ok(())
}
