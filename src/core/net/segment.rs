//! TCP segmentation in software: one offloaded TCP/IPv4 segment (virtio-net
//! `GSO_TCPV4`) cut into the segments of `gso_size` payload bytes that a
//! NIC with TSO would have sent, as Linux's `tcp_gso_segment` cuts them.

use super::checksum;
use super::mtu::{put_u16, refresh_header_checksum};
use super::parse::ETHERNET_HEADER_LEN;

const TCP: u8 = 6;
const FIN: u8 = 0x01;
const PSH: u8 = 0x08;
const CWR: u8 = 0x80;
/// Offsets in the TCP header.
const TCP_SEQ: usize = 4;
const TCP_FLAGS: usize = 13;
const TCP_CHECKSUM: usize = 16;

/// How one TCP segment of an Ethernet frame is cut into segments of at
/// most `mss` payload bytes. Each gets the headers with its own IP total
/// length, IP identification (incremented per segment), sequence number
/// and full checksums; FIN and PSH stay only on the last, CWR only on the
/// first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segmenter {
    ip_header_len: usize,
    tcp_header_len: usize,
    payload_len: usize,
    mss: usize,
}

impl Segmenter {
    /// The plan for the TCP/IPv4 packet in `frame` (from its Ethernet
    /// header) and segment size `mss`; `None` unless it is an unfragmented
    /// TCP packet with consistent lengths and `mss` is not zero.
    pub fn new(frame: &[u8], mss: u16) -> Option<Segmenter> {
        let ip = frame.get(ETHERNET_HEADER_LEN..)?;
        let ip_header_len = usize::from(ip.first()? & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
        let fragment = u16::from_be_bytes([*ip.get(6)?, *ip.get(7)?]) & 0x3fff != 0;
        if ip_header_len < 20 || *ip.get(9)? != TCP || fragment || total > ip.len() {
            return None;
        }
        let tcp_header_len = usize::from(ip.get(ip_header_len + 12)? >> 4) * 4;
        let payload_len = total.checked_sub(ip_header_len + tcp_header_len)?;
        (tcp_header_len >= 20 && mss > 0).then_some(Segmenter {
            ip_header_len,
            tcp_header_len,
            payload_len,
            mss: usize::from(mss),
        })
    }

    /// The number of segments.
    pub fn count(&self) -> usize {
        self.payload_len.div_ceil(self.mss).max(1)
    }

    /// Bytes of Ethernet, IP and TCP headers in front of each segment's payload.
    pub fn headers_len(&self) -> usize {
        ETHERNET_HEADER_LEN + self.ip_header_len + self.tcp_header_len
    }

    /// The IP length of the largest segment (what the MTU is judged by).
    pub fn max_ip_len(&self) -> usize {
        self.ip_header_len + self.tcp_header_len + self.mss.min(self.payload_len)
    }

    /// Writes segment `index` of `frame`, Ethernet header first, into `out`
    /// and returns its length; `None` past the last segment or when `out`
    /// is too short.
    pub fn write(&self, frame: &[u8], index: usize, out: &mut [u8]) -> Option<usize> {
        if index >= self.count() {
            return None;
        }
        let start = index.checked_mul(self.mss)?;
        let end = start.saturating_add(self.mss).min(self.payload_len);
        let headers = self.headers_len();
        let len = headers + (end - start);
        let (head, payload) = out.get_mut(..len)?.split_at_mut(headers);
        head.copy_from_slice(frame.get(..headers)?);
        payload.copy_from_slice(frame.get(headers + start..headers + end)?);
        let (_, ip) = head.split_at_mut(ETHERNET_HEADER_LEN);
        let (ip, tcp) = ip.split_at_mut(self.ip_header_len);
        let ident = u16::from_be_bytes([*ip.get(4)?, *ip.get(5)?]).wrapping_add(index as u16);
        put_u16(ip, 2, (self.ip_header_len + self.tcp_header_len + (end - start)) as u16)?;
        put_u16(ip, 4, ident)?;
        refresh_header_checksum(ip)?;
        let seq = tcp.get(TCP_SEQ..TCP_SEQ + 4)?;
        let seq = u32::from_be_bytes([*seq.first()?, *seq.get(1)?, *seq.get(2)?, *seq.get(3)?]);
        let seq = seq.wrapping_add(start as u32);
        tcp.get_mut(TCP_SEQ..TCP_SEQ + 4)?.copy_from_slice(&seq.to_be_bytes());
        let flags = tcp.get_mut(TCP_FLAGS)?;
        if end < self.payload_len {
            *flags &= !(FIN | PSH);
        }
        if index > 0 {
            *flags &= !CWR;
        }
        let sum = pseudo_header_sum(ip, tcp.len() + payload.len())?;
        put_u16(tcp, TCP_CHECKSUM, 0)?;
        let sum = checksum::finish(checksum::sum_words(checksum::sum_words(sum, tcp), payload));
        put_u16(tcp, TCP_CHECKSUM, sum)?;
        Some(len)
    }
}

/// The TCP pseudo-header's sum for the IPv4 header `ip` and `tcp_len`.
fn pseudo_header_sum(ip: &[u8], tcp_len: usize) -> Option<u32> {
    let addresses = ip.get(12..20)?;
    let sum = checksum::sum_words(0, addresses);
    Some(checksum::sum_words(sum, &[0, TCP, (tcp_len >> 8) as u8, tcp_len as u8]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::wire::{IpAddress, Ipv4Packet, TcpPacket};

    /// An Ethernet frame with one TCP segment (timestamps option, flags
    /// CWR|PSH|FIN|ACK) of `payload_len` bytes counting up.
    fn frame(payload_len: usize) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
        let total = 20 + 32 + payload_len;
        f.extend_from_slice(&[0x45, 0, (total >> 8) as u8, total as u8, 0xff, 0xfe, 0x40, 0, 64, 6, 0, 0]);
        f.extend_from_slice(&[10, 1, 0, 2, 10, 2, 0, 2]);
        f.extend_from_slice(&[0x9c, 0x40, 0x14, 0x51, 0xff, 0xff, 0xff, 0x00, 0, 0, 0, 1]);
        f.extend_from_slice(&[0x80, CWR | PSH | FIN | 0x10, 0x01, 0xf5, 0, 0, 0, 0]);
        f.extend_from_slice(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
        f.extend((0..payload_len).map(|i| (i * 7) as u8));
        f
    }

    #[test]
    fn segments_reproduce_the_stream_with_valid_headers() {
        let original = frame(4000);
        let plan = Segmenter::new(&original, 1448).unwrap();
        assert_eq!((plan.count(), plan.max_ip_len()), (3, 1500));
        let mut out = vec![0u8; 2000];
        let mut stream = Vec::new();
        for i in 0..plan.count() {
            let len = plan.write(&original, i, &mut out).unwrap();
            let ip = Ipv4Packet::new_checked(&out[14..len]).unwrap();
            assert!(ip.verify_checksum());
            assert_eq!(ip.ident(), 0xfffe_u16.wrapping_add(i as u16));
            let (src, dst) = (IpAddress::Ipv4(ip.src_addr()), IpAddress::Ipv4(ip.dst_addr()));
            let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
            assert!(tcp.verify_checksum(&src, &dst), "segment {i}");
            assert_eq!(tcp.seq_number().0 as u32, 0xffff_ff00_u32.wrapping_add(1448 * i as u32));
            let last = i == plan.count() - 1;
            assert_eq!((tcp.fin(), tcp.psh(), tcp.cwr(), tcp.ack()), (last, last, i == 0, true));
            assert_eq!(tcp.options(), &original[14 + 40..14 + 52]);
            stream.extend_from_slice(tcp.payload());
        }
        assert_eq!(stream, original[14 + 52..]);
        assert!(plan.write(&original, 3, &mut out).is_none());
        assert!(plan.write(&original, 0, &mut out[..1000]).is_none(), "too short a buffer");
    }

    #[test]
    fn refuses_what_is_not_a_whole_tcp_packet() {
        let original = frame(100);
        assert!(Segmenter::new(&original, 0).is_none());
        let mut udp = original.clone();
        udp[14 + 9] = 17;
        assert!(Segmenter::new(&udp, 1000).is_none());
        let mut fragment = original.clone();
        fragment[14 + 6] = 0x20;
        assert!(Segmenter::new(&fragment, 1000).is_none());
        assert!(Segmenter::new(&original[..100], 1000).is_none(), "total length beyond the frame");
        assert_eq!(Segmenter::new(&original, 1000).unwrap().count(), 1);
    }
}
