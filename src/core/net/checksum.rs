//! Internet checksum helpers: full computation and the RFC 1624 incremental update.

/// Adds `data` to a running one's-complement sum (big-endian 16-bit words;
/// an odd trailing byte is padded with zero).
pub fn sum_words(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for pair in &mut chunks {
        let &[high, low] = pair else { continue };
        sum = sum.wrapping_add(u32::from(u16::from_be_bytes([high, low])));
        // Fold early so the sum never overflows, even for 64 KiB segments.
        sum = (sum & 0xffff) + (sum >> 16);
    }
    if let [last] = chunks.remainder() {
        sum = sum.wrapping_add(u32::from(*last) << 8);
    }
    sum
}

/// Folds a running sum to 16 bits and complements it: the value to store in
/// a checksum field.
pub fn finish(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The Internet checksum of `data` (RFC 1071).
pub fn checksum(data: &[u8]) -> u16 {
    finish(sum_words(0, data))
}

/// RFC 1624 eqn. 3: the new checksum `HC' = ~(~HC + ~m + m')` after one
/// 16-bit word of the covered data changes from `old_word` to `new_word`.
pub fn update(old_checksum: u16, old_word: u16, new_word: u16) -> u16 {
    let sum = u32::from(!old_checksum) + u32::from(!old_word) + u32::from(new_word);
    finish(sum)
}

/// Where a frame's partial checksum is (virtio-net `NEEDS_CSUM`, Linux
/// `CHECKSUM_PARTIAL`): the sender left the pseudo-header sum at
/// `start + offset` and the receiver of the frame is to complete it over
/// `frame[start..]` (offsets from the Ethernet header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartialChecksum {
    /// Where checksumming starts.
    pub start: usize,
    /// Where the checksum field is, from `start`.
    pub offset: usize,
}

/// Completes a partial checksum as a virtio-net `NEEDS_CSUM` frame carries
/// it (Linux `CHECKSUM_PARTIAL`): the 16-bit field at `start + offset`
/// holds the pseudo-header sum, and the checksum over `frame[start..]`
/// goes there. Returns false (frame untouched) if the offsets are outside
/// the frame.
pub fn complete_partial(frame: &mut [u8], start: usize, offset: usize) -> bool {
    let Some(field) = start.checked_add(offset) else { return false };
    let (Some(covered), Some(end)) = (frame.get(start..), field.checked_add(2)) else {
        return false;
    };
    let value = finish(sum_words(0, covered));
    match frame.get_mut(field..end) {
        Some(slot) => {
            slot.copy_from_slice(&value.to_be_bytes());
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IPv4 header from RFC 1071-style examples with a known checksum.
    const HEADER: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8,
        0x00, 0xc7,
    ];

    #[test]
    fn full_checksum_of_valid_header_is_zero() {
        assert_eq!(checksum(&HEADER), 0);
    }

    #[test]
    fn odd_length_is_padded() {
        assert_eq!(checksum(&[0x01]), !0x0100);
    }

    #[test]
    fn incremental_update_matches_recomputation_for_every_ttl() {
        for ttl in 1..=255u8 {
            let mut header = HEADER;
            header[8] = ttl;
            header[10] = 0;
            header[11] = 0;
            let sum = checksum(&header);
            header[10..12].copy_from_slice(&sum.to_be_bytes());
            let old_word = u16::from_be_bytes([header[8], header[9]]);
            header[8] = ttl - 1;
            let new_word = u16::from_be_bytes([header[8], header[9]]);
            let updated = update(sum, old_word, new_word);
            header[10..12].copy_from_slice(&updated.to_be_bytes());
            assert_eq!(checksum(&header), 0, "ttl {ttl}");
        }
    }

    #[test]
    fn partial_checksum_completes_to_the_full_one() {
        // A UDP datagram: pseudo-header sum in the checksum field, as a
        // host with checksum offload hands it over.
        let (src, dst) = ([10u8, 1, 0, 2], [10u8, 2, 0, 2]);
        let mut udp = [0x12u8, 0x34, 0x00, 0x35, 0x00, 0x0d, 0, 0, b'h', b'e', b'l', b'l', b'o'];
        let mut pseudo = sum_words(0, &src);
        pseudo = sum_words(pseudo, &dst);
        pseudo = sum_words(pseudo, &[0, 17, 0, 13]);
        let mut full = udp;
        let want = finish(sum_words(pseudo, &full));
        full[6..8].copy_from_slice(&want.to_be_bytes());
        let mut folded = pseudo;
        while folded > 0xffff {
            folded = (folded & 0xffff) + (folded >> 16);
        }
        udp[6..8].copy_from_slice(&(folded as u16).to_be_bytes());
        let mut frame = [&[0u8; 20][..], &udp[..]].concat();
        assert!(complete_partial(&mut frame, 20, 6));
        assert_eq!(&frame[20..], &full[..]);
        assert!(!complete_partial(&mut frame, 20, 40));
        assert!(!complete_partial(&mut frame, 40, 0));
    }
}
