//! The firewall node on the host: the NIC set's buffer accounting and one
//! poll of the whole firewall (packet path, smoltcp stacks, counters)
//! against fake virtio-net devices, as virtio-drivers tests its drivers
//! against its `FakeTransport`. The kernel adds only hardware around this.

mod net_common;

use std::collections::VecDeque;

use net_common::*;
use smoltcp::wire::{
    ArpOperation, ArpPacket, EthernetFrame, EthernetProtocol, Icmpv4Message, Icmpv4Packet, IpAddress, Ipv4Packet,
    TcpPacket, UdpPacket,
};
use unifw_core::cmdline::Options;
use unifw_core::firewall::nics::{
    RECEIVE_BUFFERS_BIG, RECEIVE_BUFFERS_BIG_ASSURED, RECEIVE_BUFFERS_BIG_AT_BOOT, RECEIVE_BUFFERS_SMALL, TRANSMIT_POOL,
};
use unifw_core::firewall::worker::HANDOFF_FRAMES;
use unifw_core::firewall::{interface_plan, Buffer, Firewall, Home, InterfacePlan, NetDevice, NicSet, Settings};
use unifw_core::image::{IfAddr, Image};
use unifw_core::net::{checksum, DropReason};
use unifw_core::virtio_net::feature::{CSUM, GUEST_CSUM, GUEST_TSO4, HOST_TSO4, MAC, VERSION_1};
use unifw_core::virtio_net::{HDR_NEEDS_CSUM, SMALL_BUFFER};

/// Modern header (12 bytes), no offloads.
const PLAIN: u64 = MAC | VERSION_1;
const HEADER: usize = 12;

/// A buffer on the host heap.
struct FakeBuffer {
    bytes: Vec<u8>,
    home: Home,
}

impl Buffer for FakeBuffer {
    fn carve(size: usize, count: usize, home: Home) -> Vec<Self> {
        (0..count).map(|_| FakeBuffer { bytes: vec![0; size], home }).collect()
    }
    fn bytes(&self) -> &[u8] {
        &self.bytes
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.bytes
    }
    fn home(&self) -> Home {
        self.home
    }
}

/// A virtio-net device with queues of fixed size: frames are injected into
/// posted receive buffers, transmitted buffers wait until `complete` as the
/// host would hold them, and copies of everything sent are kept.
struct FakeDevice {
    mac: [u8; 6],
    features: u64,
    queue_size: usize,
    posted: VecDeque<FakeBuffer>,
    received: VecDeque<(FakeBuffer, usize)>,
    in_flight: Vec<FakeBuffer>,
    done: Vec<FakeBuffer>,
    sent: Vec<(Vec<u8>, Vec<u8>)>,
    flushes: usize,
}

impl FakeDevice {
    fn new(mac: [u8; 6], features: u64) -> FakeDevice {
        FakeDevice {
            mac,
            features,
            queue_size: 256,
            posted: VecDeque::new(),
            received: VecDeque::new(),
            in_flight: Vec::new(),
            done: Vec::new(),
            sent: Vec::new(),
            flushes: 0,
        }
    }

    /// The host writes `frame` (after a virtio header `header`) into the
    /// next posted buffer; `claimed` overrides the length it reports.
    fn inject_with(&mut self, header: [u8; HEADER], frame: &[u8], claimed: Option<usize>) {
        let mut buffer = self.posted.pop_front().expect("a posted receive buffer");
        buffer.bytes[..HEADER].copy_from_slice(&header);
        buffer.bytes[HEADER..HEADER + frame.len()].copy_from_slice(frame);
        self.received.push_back((buffer, claimed.unwrap_or(HEADER + frame.len())));
    }

    fn inject(&mut self, frame: &[u8]) {
        self.inject_with([0; HEADER], frame, None);
    }

    /// The host finishes sending everything queued.
    fn complete(&mut self) {
        self.done.append(&mut self.in_flight);
    }

    /// Frames sent so far (without their virtio headers), oldest first.
    fn take_sent(&mut self) -> Vec<Vec<u8>> {
        self.sent.drain(..).map(|(_, frame)| frame).collect()
    }
}

impl NetDevice for FakeDevice {
    type Buffer = FakeBuffer;
    fn mac(&self) -> [u8; 6] {
        self.mac
    }
    fn features(&self) -> u64 {
        self.features
    }
    fn post_receive(&mut self, buffer: FakeBuffer) -> Result<(), FakeBuffer> {
        if self.posted.len() + self.received.len() >= self.queue_size {
            return Err(buffer);
        }
        self.posted.push_back(buffer);
        Ok(())
    }
    fn receive(&mut self) -> Option<(FakeBuffer, usize)> {
        self.received.pop_front()
    }
    fn transmit(&mut self, buffer: FakeBuffer, len: usize) -> Result<(), FakeBuffer> {
        if self.in_flight.len() + self.done.len() >= self.queue_size {
            return Err(buffer);
        }
        let bytes = &buffer.bytes[..len];
        self.sent.push((bytes[..HEADER].to_vec(), bytes[HEADER..].to_vec()));
        self.in_flight.push(buffer);
        Ok(())
    }
    fn reclaim_transmitted(&mut self, done: &mut dyn FnMut(FakeBuffer)) {
        for buffer in self.done.drain(..) {
            done(buffer);
        }
    }
    fn flush(&mut self) {
        self.flushes += 1;
    }
    fn receive_ring_size(&self) -> usize {
        self.queue_size
    }
}

fn lab_devices(features: u64) -> Vec<FakeDevice> {
    vec![FakeDevice::new(FW0_MAC, features), FakeDevice::new(FW1_MAC, features)]
}

fn dev(nics: &mut NicSet<FakeDevice>, index: usize) -> &mut FakeDevice {
    nics.device_mut(index).expect("NIC exists")
}

/// Receive buffers of NIC `index` wherever they are: posted, received and
/// not yet taken, or lent to any NIC's transmit queue.
fn receive_buffers_accounted(nics: &mut NicSet<FakeDevice>, index: usize) -> usize {
    let mut count = 0;
    for i in 0..nics.len() {
        let d = dev(nics, i);
        let lent = d.in_flight.iter().chain(&d.done).filter(|b| b.home == Home::Receive(index as u8)).count();
        count += lent;
        if i == index {
            count += d.posted.len() + d.received.len();
        }
    }
    count
}

#[test]
fn a_forwarded_buffer_is_lent_to_the_output_nic_and_comes_home() {
    let mut nics = NicSet::new(lab_devices(PLAIN));
    assert_eq!(dev(&mut nics, 0).posted.len(), RECEIVE_BUFFERS_SMALL);
    assert_eq!(nics.pool_free(0), TRANSMIT_POOL);
    let frame = udp_frame(SENDER, RECEIVER, 1000, 2000, 100);
    dev(&mut nics, 0).inject(&frame);
    let (buffer, range) = nics.receive(0).expect("a frame");
    assert_eq!(range, HEADER..HEADER + frame.len());
    assert_eq!(nics.forward(1, buffer, frame.len()), Ok(()));
    assert_eq!(dev(&mut nics, 1).take_sent(), vec![frame]);
    assert_eq!(dev(&mut nics, 0).posted.len(), RECEIVE_BUFFERS_SMALL - 1, "lent to eth1");
    assert_eq!(receive_buffers_accounted(&mut nics, 0), RECEIVE_BUFFERS_SMALL);
    nics.reclaim_and_flush();
    assert_eq!(dev(&mut nics, 0).posted.len(), RECEIVE_BUFFERS_SMALL - 1, "eth1 still sending it");
    dev(&mut nics, 1).complete();
    nics.reclaim_and_flush();
    assert_eq!(dev(&mut nics, 0).posted.len(), RECEIVE_BUFFERS_SMALL, "home again");
    assert!(dev(&mut nics, 0).flushes > 0 && dev(&mut nics, 1).flushes > 0);
}

#[test]
fn a_full_transmit_queue_sends_the_buffer_home_with_a_reason() {
    let mut nics = NicSet::new(lab_devices(PLAIN));
    dev(&mut nics, 1).queue_size = 2;
    let frame = udp_frame(SENDER, RECEIVER, 1000, 2000, 10);
    let mut results = Vec::new();
    for _ in 0..3 {
        dev(&mut nics, 0).inject(&frame);
        let (buffer, _) = nics.receive(0).expect("a frame");
        results.push(nics.forward(1, buffer, frame.len()));
    }
    assert_eq!(results, [Ok(()), Ok(()), Err(DropReason::TransmitQueueFull)]);
    assert_eq!(receive_buffers_accounted(&mut nics, 0), RECEIVE_BUFFERS_SMALL);
    assert_eq!(dev(&mut nics, 0).posted.len(), RECEIVE_BUFFERS_SMALL - 2);
}

#[test]
fn a_checksum_the_output_nic_cannot_offload_is_completed_in_software() {
    let mut devices = lab_devices(PLAIN | CSUM | GUEST_CSUM);
    devices[1].features = PLAIN;
    let mut nics = NicSet::new(devices);
    let (frame, mut header) = partial_udp();
    header[0] |= 2; // DATA_VALID, which is cleared on transmit
    header[10] = 1; // num_buffers, likewise
                    // Toward a NIC that has the offload, the header keeps only NEEDS_CSUM
                    // and the checksum stays partial.
    dev(&mut nics, 0).inject_with(header, &frame, None);
    let (buffer, _) = nics.receive(0).expect("a frame");
    assert_eq!(nics.forward(0, buffer, frame.len()), Ok(()));
    let (sent_header, sent) = dev(&mut nics, 0).sent.pop().expect("sent");
    assert_eq!((sent_header[0], &sent_header[10..12]), (HDR_NEEDS_CSUM, &[0u8, 0][..]));
    assert!(!udp_checksum_ok(&sent));
    // Toward one without it, the firewall completes the checksum.
    dev(&mut nics, 0).inject_with(header, &frame, None);
    let (buffer, _) = nics.receive(0).expect("a frame");
    assert_eq!(nics.forward(1, buffer, frame.len()), Ok(()));
    let (sent_header, sent) = dev(&mut nics, 1).sent.pop().expect("sent");
    assert_eq!(sent_header, vec![0u8; HEADER], "a plain header");
    assert!(udp_checksum_ok(&sent));
}

#[test]
fn a_segmentation_the_output_nic_cannot_offload_is_refused() {
    let mut devices = lab_devices(PLAIN | CSUM | GUEST_CSUM | GUEST_TSO4 | HOST_TSO4);
    devices[1].features = PLAIN | CSUM;
    let mut nics = NicSet::new(devices);
    let (frame, mut header) = partial_udp();
    header[1] = 1; // GSO_TCPV4
    for bad in [header, {
        header[8] = 0xff;
        header
    }] {
        dev(&mut nics, 0).inject_with(bad, &frame, None);
        let (buffer, _) = nics.receive(0).expect("a frame");
        assert_eq!(nics.forward(1, buffer, frame.len()), Err(DropReason::OffloadMissing));
    }
    // A checksum whose offsets fall outside the frame cannot be completed.
    let (frame, mut header) = partial_udp();
    header[8] = 0xff;
    let mut nics = NicSet::new(lab_devices(PLAIN));
    dev(&mut nics, 0).inject_with(header, &frame, None);
    let (buffer, _) = nics.receive(0).expect("a frame");
    assert_eq!(nics.forward(1, buffer, frame.len()), Err(DropReason::OffloadMissing));
    assert_eq!(receive_buffers_accounted(&mut nics, 0), RECEIVE_BUFFERS_SMALL);
}

#[test]
fn a_tcp_segmentation_the_output_nic_cannot_offload_is_done_in_software() {
    let mut devices = lab_devices(PLAIN | CSUM | GUEST_CSUM | GUEST_TSO4 | HOST_TSO4);
    devices[1].features = PLAIN | CSUM;
    let mut nics = NicSet::new(devices);
    let frame = Tcp::new(SENDER, RECEIVER, 40000, 5201).ack(7000, 1).payload(3000).frame();
    let mut header = [0u8; HEADER];
    header[1] = 1; // GSO_TCPV4
    header[4..6].copy_from_slice(&1448u16.to_le_bytes());
    dev(&mut nics, 0).inject_with(header, &frame, None);
    let (buffer, _) = nics.receive(0).expect("a frame");
    assert_eq!(nics.forward(1, buffer, frame.len()), Ok(()));
    let sent: Vec<_> = dev(&mut nics, 1).sent.drain(..).collect();
    assert_eq!(sent.iter().map(|(_, f)| f.len()).collect::<Vec<_>>(), [14 + 40 + 1448, 14 + 40 + 1448, 14 + 40 + 104]);
    let mut stream = Vec::new();
    for (header, f) in &sent {
        assert_eq!(header, &vec![0u8; HEADER], "plain frames");
        let ip = Ipv4Packet::new_checked(&f[ETH_LEN..]).unwrap();
        let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
        assert!(tcp.verify_checksum(&IpAddress::Ipv4(ip.src_addr()), &IpAddress::Ipv4(ip.dst_addr())));
        stream.extend_from_slice(tcp.payload());
    }
    assert_eq!(stream, frame[ETH_LEN + 40..]);
    assert_eq!(receive_buffers_accounted(&mut nics, 0), RECEIVE_BUFFERS_BIG_AT_BOOT, "the buffer went home");
}

#[test]
fn the_transmit_pool_runs_dry_and_refills_after_completion() {
    let mut nics = NicSet::new(lab_devices(PLAIN));
    let frame = [0xabu8; 60];
    for _ in 0..TRANSMIT_POOL {
        assert_eq!(nics.send_copy(0, &frame), Ok(()));
    }
    assert_eq!(nics.send_copy(0, &frame), Err(DropReason::TransmitPoolEmpty));
    assert_eq!(nics.send_copy(0, &[0u8; 1515]), Err(DropReason::TransmitPoolEmpty));
    dev(&mut nics, 0).complete();
    assert_eq!(nics.send_copy(0, &frame), Ok(()), "take_frame reclaims finished buffers");
    assert_eq!(nics.send_copy(0, &[0u8; 1515]), Err(DropReason::TransmitTooLarge));
    let sent = dev(&mut nics, 0).take_sent();
    assert_eq!(sent.len(), TRANSMIT_POOL + 1);
    assert!(sent.iter().all(|f| f == &frame));
    assert_eq!(nics.pool_free(0) + dev(&mut nics, 0).in_flight.len(), TRANSMIT_POOL);
}

#[test]
fn big_receive_buffers_grow_in_steps_to_their_goal() {
    let offloads = PLAIN | GUEST_CSUM | GUEST_TSO4 | CSUM | HOST_TSO4;
    let mut nics = NicSet::new(lab_devices(offloads));
    assert_eq!(nics.receive_buffers(0), Some((RECEIVE_BUFFERS_BIG_AT_BOOT, RECEIVE_BUFFERS_BIG)));
    assert!(dev(&mut nics, 0).posted[0].bytes.len() > 65_535);
    // Without spare memory, growth stops at the assured buffers.
    let mut steps = 0;
    while nics.grow(false) {
        steps += 1;
    }
    assert_eq!(nics.receive_buffers(0), Some((RECEIVE_BUFFERS_BIG_ASSURED, RECEIVE_BUFFERS_BIG)));
    assert_eq!(nics.receive_buffers(1), Some((RECEIVE_BUFFERS_BIG_ASSURED, RECEIVE_BUFFERS_BIG)));
    assert!(nics.held_back(0) && nics.held_back(1), "held at the assured buffers, and said so");
    while nics.grow(true) {
        steps += 1;
    }
    assert!(!nics.held_back(0) && !nics.held_back(1), "no longer held once grown");
    assert_eq!(nics.receive_buffers(0), Some((RECEIVE_BUFFERS_BIG, RECEIVE_BUFFERS_BIG)));
    assert_eq!(nics.receive_buffers(1), Some((RECEIVE_BUFFERS_BIG, RECEIVE_BUFFERS_BIG)));
    assert_eq!(steps, 2 * (RECEIVE_BUFFERS_BIG - RECEIVE_BUFFERS_BIG_AT_BOOT) / 8);
    assert_eq!(dev(&mut nics, 1).posted.len(), RECEIVE_BUFFERS_BIG);
    // At the goal nothing waits, whatever memory says.
    assert!(!nics.grow(false) && !nics.held_back(0));
}

#[test]
fn receive_buffers_fill_the_ring_up_to_256() {
    let offloads = PLAIN | GUEST_CSUM | GUEST_TSO4 | CSUM | HOST_TSO4;
    for (ring, goal, assured) in [(1024, RECEIVE_BUFFERS_BIG, RECEIVE_BUFFERS_BIG_ASSURED), (32, 32, 32)] {
        for features in [offloads, PLAIN] {
            let mut devices = lab_devices(features);
            for device in &mut devices {
                device.queue_size = ring;
            }
            let mut nics = NicSet::new(devices);
            while nics.grow(false) {}
            let small = features == PLAIN;
            let expected = if small { goal } else { assured };
            assert_eq!(nics.receive_buffers(0), Some((expected, goal)), "ring {ring}, small buffers {small}");
            while nics.grow(true) {}
            assert_eq!(nics.receive_buffers(1), Some((goal, goal)), "ring {ring}, small buffers {small}");
            assert_eq!(dev(&mut nics, 1).posted.len(), goal);
        }
    }
}

const RULES: &str = "interface eth0 10.1.0.1/24
interface eth1 10.2.0.1/24
route 10.9.0.0/16 via 10.7.0.1
policy input drop
policy forward drop
input accept icmp type echo-request
input accept state established,related
forward accept state established,related
forward accept from 10.1.0.0/24 to 10.2.0.0/24
";

fn compiled(text: &str) -> Vec<u8> {
    unifw_compiler::compile("t.rules", text.as_bytes(), &mut |p| Err(p.into())).expect("compiles").image
}

fn firewall<'a>(image: &'a [u8], plan: &[InterfacePlan]) -> Firewall<'a, FakeDevice> {
    firewall_with(image, plan, PLAIN)
}

fn firewall_with<'a>(image: &'a [u8], plan: &[InterfacePlan], features: u64) -> Firewall<'a, FakeDevice> {
    firewall_of(lab_devices(features), image, plan, 0)
}

/// The firewall on `devices` (in discovery order), started at `now_us`.
fn firewall_of<'a>(
    devices: Vec<FakeDevice>,
    image: &'a [u8],
    plan: &[InterfacePlan],
    now_us: u64,
) -> Firewall<'a, FakeDevice> {
    firewall_set(devices, image, plan, now_us, settings())
}

/// The settings of these tests: no reports, no profile, the firewall path.
fn settings() -> Settings {
    Settings {
        report_seconds: 0,
        hash_seed: 7,
        rules_compiled_at: 1_700_000_000,
        conntrack_budget: usize::MAX,
        profile: None,
        bounce: false,
    }
}

/// The firewall on `devices` with `settings`.
fn firewall_set<'a>(
    devices: Vec<FakeDevice>,
    image: &'a [u8],
    plan: &[InterfacePlan],
    now_us: u64,
    settings: Settings,
) -> Firewall<'a, FakeDevice> {
    let image = Image::from_bytes(image).expect("valid image");
    Firewall::new(devices, plan, image, settings, now_us).expect("configuration accepted")
}

/// The image's plan, as the kernel makes it without a command line.
fn lab_plan(image: &[u8]) -> Vec<InterfacePlan> {
    interface_plan(&Image::from_bytes(image).expect("valid"), &Options::default()).to_vec()
}

fn ethertype(frame: &[u8]) -> EthernetProtocol {
    EthernetFrame::new_checked(frame).expect("Ethernet").ethertype()
}

#[test]
fn the_firewall_answers_arp_and_ping_from_its_own_stack() {
    let image = compiled(RULES);
    let mut fw = firewall(&image, &lab_plan(&image));
    assert!(fw.is_up(0) && fw.is_up(1));
    let nics = fw.nics_mut();
    dev(nics, 0).inject(&arp_frame(ArpOperation::Request, SENDER_MAC, SENDER, [0; 6], FW0));
    dev(nics, 0).inject(&echo_frame(SENDER, FW0, true, 9, 1, 64));
    assert!(fw.poll_once(1_000));
    let sent = dev(fw.nics_mut(), 0).take_sent();
    let arp = sent.iter().find(|f| ethertype(f) == EthernetProtocol::Arp).expect("an ARP reply");
    let arp = ArpPacket::new_checked(&arp[ETH_LEN..]).expect("ARP");
    assert_eq!(arp.operation(), ArpOperation::Reply);
    assert_eq!(arp.source_hardware_addr(), FW0_MAC);
    let reply = sent.iter().find(|f| ethertype(f) == EthernetProtocol::Ipv4).expect("an echo reply");
    let ip = Ipv4Packet::new_checked(&reply[ETH_LEN..]).expect("IPv4");
    assert_eq!((u32::from(ip.src_addr()), u32::from(ip.dst_addr())), (FW0, SENDER));
    let icmp = Icmpv4Packet::new_checked(ip.payload()).expect("ICMP");
    assert_eq!(icmp.msg_type(), Icmpv4Message::EchoReply);
    let c = fw.dataplane().counters().interfaces[0].clone();
    assert_eq!((c.received, c.local, c.sent, c.total_drops()), (2, 2, 2, 0));
    // Both stack frames came from the pool and went back after completion.
    dev(fw.nics_mut(), 0).complete();
    fw.poll_once(2_000);
    assert_eq!(fw.nics().pool_free(0), TRANSMIT_POOL);
    assert_eq!(receive_buffers_accounted(fw.nics_mut(), 0), RECEIVE_BUFFERS_SMALL);
}

#[test]
fn the_firewall_answers_for_its_other_address_on_any_nic() {
    // Linux's weak host model: a ping from the sender's side to the
    // receiver's side address (eth1's) is answered, from that address, on
    // eth0; the stack of eth0 does not answer ARP for a stranger.
    let image = compiled(RULES);
    let mut fw = firewall(&image, &lab_plan(&image));
    let nics = fw.nics_mut();
    dev(nics, 0).inject(&arp_frame(ArpOperation::Request, SENDER_MAC, SENDER, [0; 6], FW0));
    dev(nics, 0).inject(&echo_frame(SENDER, FW1, true, 9, 1, 64));
    dev(nics, 0).inject(&arp_frame(ArpOperation::Request, SENDER_MAC, SENDER, [0; 6], SENDER + 5));
    assert!(fw.poll_once(1_000));
    let sent = dev(fw.nics_mut(), 0).take_sent();
    let reply = sent.iter().find(|f| ethertype(f) == EthernetProtocol::Ipv4).expect("an echo reply on eth0");
    let ip = Ipv4Packet::new_checked(&reply[ETH_LEN..]).expect("IPv4");
    assert_eq!((u32::from(ip.src_addr()), u32::from(ip.dst_addr())), (FW1, SENDER));
    assert_eq!(Icmpv4Packet::new_checked(ip.payload()).expect("ICMP").msg_type(), Icmpv4Message::EchoReply);
    assert_eq!(sent.iter().filter(|f| ethertype(f) == EthernetProtocol::Arp).count(), 1, "one ARP reply: ours");
    assert!(dev(fw.nics_mut(), 1).take_sent().is_empty(), "nothing on eth1");
}

#[test]
fn a_frame_waits_for_arp_then_the_next_one_is_forwarded_without_a_copy() {
    let image = compiled(RULES);
    let mut fw = firewall(&image, &lab_plan(&image));
    let first = udp_frame(SENDER, RECEIVER, 1000, 2000, 50);
    dev(fw.nics_mut(), 0).inject(&first);
    fw.poll_once(1_000);
    let asked = dev(fw.nics_mut(), 1).take_sent();
    assert_eq!(asked.len(), 1, "an ARP request for the receiver");
    assert_eq!(ethertype(&asked[0]), EthernetProtocol::Arp);
    let answer = arp_frame(ArpOperation::Reply, RECEIVER_MAC, RECEIVER, FW1_MAC, FW1);
    dev(fw.nics_mut(), 1).inject(&answer);
    fw.poll_once(2_000);
    let released = dev(fw.nics_mut(), 1).take_sent();
    assert_eq!(released.len(), 1, "the queued frame leaves once the MAC is known");
    assert_eq!(&released[0][..6], &RECEIVER_MAC);
    // The second frame leaves in its own receive buffer (zero copy).
    dev(fw.nics_mut(), 0).inject(&udp_frame(SENDER, RECEIVER, 1000, 2000, 50));
    fw.poll_once(3_000);
    let lent = dev(fw.nics_mut(), 1).in_flight.iter().filter(|b| b.home == Home::Receive(0)).count();
    assert_eq!(lent, 1);
    let forwarded = dev(fw.nics_mut(), 1).take_sent();
    assert_eq!(forwarded.len(), 1);
    let ip = Ipv4Packet::new_checked(&forwarded[0][ETH_LEN..]).expect("IPv4");
    assert_eq!(ip.hop_limit(), 63, "TTL decremented");
    let counters = fw.dataplane().counters().clone();
    assert_eq!((counters.interfaces[0].received, counters.interfaces[0].total_drops()), (2, 0));
    assert_eq!((counters.interfaces[1].forwarded_out, counters.interfaces[1].sent), (2, 3));
    dev(fw.nics_mut(), 1).complete();
    fw.poll_once(4_000);
    assert_eq!(receive_buffers_accounted(fw.nics_mut(), 0), RECEIVE_BUFFERS_SMALL);
    assert_eq!(dev(fw.nics_mut(), 0).posted.len(), RECEIVE_BUFFERS_SMALL);
}

#[test]
fn the_bounce_path_crosses_frames_unfiltered_once_it_knows_both_peers() {
    // FORWARD drops everything; the bounce path does not look.
    let rules = "interface eth0 10.1.0.1/24\ninterface eth1 10.2.0.1/24\npolicy forward drop\n";
    let image = compiled(rules);
    let plan = lab_plan(&image);
    let mut fw = firewall_set(lab_devices(PLAIN), &image, &plan, 0, Settings { bounce: true, ..settings() });
    // The receiver's MAC is not known yet: the firewall path (dropped).
    dev(fw.nics_mut(), 0).inject(&udp_frame(SENDER, RECEIVER, 1000, 2000, 50));
    fw.poll_once(1_000);
    assert!(dev(fw.nics_mut(), 1).take_sent().is_empty());
    // A frame from the receiver's side teaches its MAC and crosses.
    let mut back = udp_frame(RECEIVER, SENDER, 2000, 1000, 50);
    back[..6].copy_from_slice(&FW1_MAC);
    back[6..12].copy_from_slice(&RECEIVER_MAC);
    dev(fw.nics_mut(), 1).inject(&back);
    fw.poll_once(2_000);
    let crossed = dev(fw.nics_mut(), 0).take_sent();
    assert_eq!(crossed.len(), 1);
    assert_eq!((&crossed[0][..6], &crossed[0][6..12]), (&SENDER_MAC[..], &FW0_MAC[..]));
    dev(fw.nics_mut(), 0).inject(&udp_frame(SENDER, RECEIVER, 1000, 2000, 50));
    fw.poll_once(3_000);
    let crossed = dev(fw.nics_mut(), 1).take_sent();
    assert_eq!(crossed.len(), 1);
    assert_eq!(&crossed[0][..6], &RECEIVER_MAC[..]);
    let ip = Ipv4Packet::new_checked(&crossed[0][ETH_LEN..]).expect("IPv4");
    assert_eq!(ip.hop_limit(), 64, "the bounce path leaves the TTL alone");
    let counters = fw.dataplane().counters().clone();
    assert_eq!((counters.interfaces[0].received, counters.interfaces[0].total_drops()), (2, 1));
    assert_eq!(counters.interfaces[1].forwarded_out, 1);
    // A ping to the firewall still goes to its own stack.
    dev(fw.nics_mut(), 0).inject(&echo_frame(SENDER, FW0, true, 7, 1, 64));
    fw.poll_once(4_000);
    assert_eq!(fw.dataplane().counters().interfaces[0].local, 1);
    assert!(dev(fw.nics_mut(), 1).take_sent().is_empty());
}

#[test]
fn a_stack_is_polled_when_due_or_after_a_frame_for_it_not_on_every_pass() {
    use unifw_core::firewall::STACK_POLL_MAX_US;
    let image = compiled(RULES);
    let mut fw = firewall(&image, &lab_plan(&image));
    // The first pass polls every stack; with no timers (static addresses,
    // no sockets) each is due again after the longest wait.
    fw.poll_once(1_000);
    assert_eq!(fw.stack_due_us(0), Some(1_000 + STACK_POLL_MAX_US));
    // Forwarded frames do not poll the stacks: their due times stay.
    dev(fw.nics_mut(), 0).inject(&udp_frame(SENDER, RECEIVER, 1000, 2000, 50));
    fw.poll_once(2_000);
    assert_eq!(fw.stack_due_us(0), Some(1_000 + STACK_POLL_MAX_US));
    assert_eq!(fw.stack_due_us(1), Some(1_000 + STACK_POLL_MAX_US));
    // A frame for the firewall polls its NIC's stack in the same pass.
    dev(fw.nics_mut(), 0).inject(&echo_frame(SENDER, FW0, true, 7, 1, 64));
    fw.poll_once(3_000);
    assert_eq!(fw.stack_due_us(0), Some(3_000 + STACK_POLL_MAX_US));
    assert_eq!(fw.stack_due_us(1), Some(1_000 + STACK_POLL_MAX_US));
    // Once due, a stack is polled with nothing received.
    fw.poll_once(1_000 + STACK_POLL_MAX_US);
    assert_eq!(fw.stack_due_us(1), Some(1_000 + 2 * STACK_POLL_MAX_US));
    assert_eq!(fw.stack_due_us(0), Some(3_000 + STACK_POLL_MAX_US));
}

#[test]
fn the_profile_reports_where_each_frames_time_went() {
    use std::sync::OnceLock;
    use std::time::Instant;
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    /// Nanoseconds: a 1 GHz counter.
    fn nanoseconds() -> u64 {
        EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
    }
    let image = compiled(RULES);
    let clock = unifw_core::profile::Clock { read: nanoseconds, khz: 1_000_000 };
    let mut fw =
        firewall_set(lab_devices(PLAIN), &image, &lab_plan(&image), 0, Settings { profile: Some(clock), ..settings() });
    // The receiver's MAC first (the first frame waits for it).
    dev(fw.nics_mut(), 0).inject(&udp_frame(SENDER, RECEIVER, 1000, 2000, 50));
    fw.poll_once(1_000);
    dev(fw.nics_mut(), 1).inject(&arp_frame(ArpOperation::Reply, RECEIVER_MAC, RECEIVER, FW1_MAC, FW1));
    fw.poll_once(2_000);
    assert_eq!(dev(fw.nics_mut(), 1).take_sent().len(), 2, "the ARP request and the frame");
    fw.take_profile_line();
    // Enough passes with a frame each that some are timed.
    let passes = 3 * unifw_core::profile::SAMPLE_EVERY as u64;
    for at in 0..passes {
        dev(fw.nics_mut(), 0).inject(&udp_frame(SENDER, RECEIVER, 1000, 2000, 50));
        fw.poll_once(3_000 + at * 1_000);
    }
    assert_eq!(dev(fw.nics_mut(), 1).take_sent().len(), passes as usize);
    let line = fw.take_profile_line().expect("a line");
    assert!(line.starts_with("profile: 3 frames timed, ns per frame: receive "), "{line}");
    assert!(line.contains("; 3 busy passes (1.0 frames each), 0 empty; a clock read "), "{line}");
    let value = |step: &str| -> f64 {
        line.split(&format!(" {step} "))
            .nth(1)
            .and_then(|rest| rest.split([' ', ';']).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{step} in {line}"))
    };
    // Every step but "empty poll" (housekeeping may fall in a timed pass,
    // and is near 0 only when the host does not take the thread away).
    let steps = [
        "receive",
        "parse and checks",
        "conntrack",
        "lookup",
        "rewrite",
        "enqueue",
        "stack",
        "reclaim",
        "notify",
        "housekeeping",
        "waiting for the path",
    ];
    let sum: f64 = steps.iter().map(|s| value(s)).sum();
    assert!(sum > 0.0 && (value("total") - sum).abs() <= steps.len() as f64, "{line}");
}

#[test]
fn frames_on_a_down_nic_and_overlong_frames_are_counted_and_recycled() {
    let image = compiled(RULES);
    let mut plan = lab_plan(&image);
    plan[1].addr = None;
    let mut fw = firewall(&image, &plan);
    assert!(!fw.is_up(1));
    dev(fw.nics_mut(), 1).inject(&echo_frame(RECEIVER, FW1, true, 1, 1, 64));
    let echo = echo_frame(SENDER, FW0, true, 1, 1, 64);
    dev(fw.nics_mut(), 0).inject_with([0; HEADER], &echo, Some(HEADER + SMALL_BUFFER + 1));
    fw.poll_once(1_000);
    let counters = fw.dataplane().counters().clone();
    assert_eq!(counters.interfaces[1].drop_count(DropReason::InterfaceDown), 1);
    assert_eq!(counters.interfaces[0].drop_count(DropReason::BadLength), 1);
    assert_eq!((counters.interfaces[0].received, counters.interfaces[1].received), (1, 1));
    assert!(dev(fw.nics_mut(), 0).take_sent().is_empty() && dev(fw.nics_mut(), 1).take_sent().is_empty());
    for index in 0..2 {
        assert_eq!(dev(fw.nics_mut(), index).posted.len(), RECEIVE_BUFFERS_SMALL);
    }
}

#[test]
fn a_route_whose_gateway_is_unreachable_is_skipped_and_reported() {
    let image = compiled(RULES);
    let fw = firewall(&image, &lab_plan(&image));
    let skipped = fw.dataplane().skipped_routes().to_vec();
    assert_eq!(skipped.len(), 1);
    assert_eq!((skipped[0].prefix, skipped[0].prefix_len, skipped[0].gateway), (0x0a09_0000, 16, 0x0a07_0001));
}

#[test]
fn a_partial_checksum_is_completed_before_the_stack_sees_the_frame() {
    let image = compiled(RULES);
    let mut fw = firewall(&image, &lab_plan(&image));
    dev(fw.nics_mut(), 0).inject(&arp_frame(ArpOperation::Request, SENDER_MAC, SENDER, [0; 6], FW0));
    fw.poll_once(500);
    dev(fw.nics_mut(), 0).take_sent();
    // An echo request whose ICMP checksum field is zeroed and left to the
    // receiver (NEEDS_CSUM from offset 34, field at +2): smoltcp would drop
    // it as corrupt if the firewall did not complete it.
    let mut echo = echo_frame(SENDER, FW0, true, 5, 1, 64);
    echo[ETH_LEN + 20 + 2..ETH_LEN + 20 + 4].fill(0);
    let mut header = [0u8; HEADER];
    header[0] = HDR_NEEDS_CSUM;
    header[6..8].copy_from_slice(&34u16.to_le_bytes());
    header[8..10].copy_from_slice(&2u16.to_le_bytes());
    dev(fw.nics_mut(), 0).inject_with(header, &echo, None);
    fw.poll_once(1_000);
    let sent = dev(fw.nics_mut(), 0).take_sent();
    assert_eq!(sent.len(), 1, "the firewall answered the echo");
    assert_eq!(ethertype(&sent[0]), EthernetProtocol::Ipv4);
}

/// A UDP frame from the sender to the receiver whose checksum its sender
/// left partial (the pseudo-header sum in the field, `NEEDS_CSUM` in the
/// virtio header), as a Linux sender with checksum offload hands it over.
fn partial_udp() -> (Vec<u8>, [u8; HEADER]) {
    let mut frame = udp_frame(SENDER, RECEIVER, 1000, 53, 40);
    let udp_at = ETH_LEN + 20;
    let udp_len = (frame.len() - udp_at) as u16;
    let mut sum = checksum::sum_words(0, &SENDER.to_be_bytes());
    sum = checksum::sum_words(sum, &RECEIVER.to_be_bytes());
    sum = checksum::sum_words(sum, &[0, 17]);
    sum = checksum::sum_words(sum, &udp_len.to_be_bytes());
    // The folded pseudo-header sum, not complemented.
    let pseudo = !checksum::finish(sum);
    frame[udp_at + 6..udp_at + 8].copy_from_slice(&pseudo.to_be_bytes());
    let mut header = [0u8; HEADER];
    header[0] = HDR_NEEDS_CSUM;
    header[6..8].copy_from_slice(&(udp_at as u16).to_le_bytes());
    header[8..10].copy_from_slice(&6u16.to_le_bytes());
    (frame, header)
}

fn udp_checksum_ok(frame: &[u8]) -> bool {
    let ip = Ipv4Packet::new_checked(&frame[ETH_LEN..]).expect("IPv4");
    let udp = UdpPacket::new_checked(ip.payload()).expect("UDP");
    udp.verify_checksum(&ip.src_addr().into(), &ip.dst_addr().into())
}

#[test]
fn a_partial_checksum_is_completed_in_a_frame_that_waits_for_arp() {
    let image = compiled(RULES);
    let mut fw = firewall_with(&image, &lab_plan(&image), PLAIN | CSUM | GUEST_CSUM);
    let (frame, header) = partial_udp();
    assert!(!udp_checksum_ok(&frame), "the test frame starts with a partial checksum");
    dev(fw.nics_mut(), 0).inject_with(header, &frame, None);
    fw.poll_once(1_000);
    assert_eq!(dev(fw.nics_mut(), 1).take_sent().len(), 1, "an ARP request");
    let answer = arp_frame(ArpOperation::Reply, RECEIVER_MAC, RECEIVER, FW1_MAC, FW1);
    dev(fw.nics_mut(), 1).inject(&answer);
    fw.poll_once(2_000);
    let (sent_header, released) = dev(fw.nics_mut(), 1).sent.pop().expect("the queued frame leaves");
    assert_eq!(sent_header[0], 0, "it leaves from the pool, with a plain header");
    assert!(udp_checksum_ok(&released), "so its checksum was completed");
    // Once the neighbour is known, the frame keeps its offload: the output
    // NIC completes the checksum.
    dev(fw.nics_mut(), 0).inject_with(header, &frame, None);
    fw.poll_once(3_000);
    let (sent_header, forwarded) = dev(fw.nics_mut(), 1).sent.pop().expect("forwarded");
    assert_eq!(sent_header[0], HDR_NEEDS_CSUM);
    assert!(!udp_checksum_ok(&forwarded));
}

#[test]
fn idle_sleep_lasts_until_housekeeping_or_the_stacks_next_deadline() {
    let image = compiled(RULES);
    let mut fw = firewall(&image, &lab_plan(&image));
    fw.poll_once(1_000);
    // Static addresses only: nothing due before the idle housekeeping, 1 s on.
    assert_eq!(fw.sleep_budget_us(2_000), 1_000_000);
    // A DHCP client wants to send its discover now.
    let mut plan = lab_plan(&image);
    plan[1] = InterfacePlan::with_addr(IfAddr::Dhcp);
    let mut fw = firewall(&image, &plan);
    assert!(fw.sleep_budget_us(0) < 1_000_000);
}

/// eth2's MAC in the three-NIC tests.
const FW2_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x03];

/// RULES with a DHCP management NIC that falls back to 10.3.0.9/24 after 2 s.
fn dhcp_rules() -> String {
    format!("{RULES}interface eth2 dhcp fallback 10.3.0.9/24 after 2\ninput accept udp in eth2 sport 67 dport 68\n")
}

/// A DHCP server's reply (UDP 67 -> 68) on eth2, to the address it offers.
fn dhcp_reply_frame(offered: u32) -> Vec<u8> {
    let server = 0x0a03_0001;
    let repr = smoltcp::wire::UdpRepr { src_port: 67, dst_port: 68 };
    let ip = |a: u32| smoltcp::wire::IpAddress::from(smoltcp::wire::Ipv4Address::from(a));
    ipv4_frame(
        ([0x02, 0, 0, 0, 0x03, 0x01], FW2_MAC),
        (server, offered),
        smoltcp::wire::IpProtocol::Udp,
        64,
        8 + 4,
        |buf| {
            repr.emit(
                &mut UdpPacket::new_unchecked(buf),
                &ip(server),
                &ip(offered),
                4,
                |p| p.copy_from_slice(&[0; 4]),
                &smoltcp::phy::ChecksumCapabilities::default(),
            );
        },
    )
}

#[test]
fn forwarding_waits_for_the_dhcp_interface_then_starts_on_its_fallback() {
    let image = compiled(&dhcp_rules());
    let devices =
        vec![FakeDevice::new(FW0_MAC, PLAIN), FakeDevice::new(FW1_MAC, PLAIN), FakeDevice::new(FW2_MAC, PLAIN)];
    let mut fw = firewall_of(devices, &image, &lab_plan(&image), 0);
    assert!(!fw.dataplane().forwarding(), "eth2 has no address yet: fail closed");
    assert_eq!(fw.address(2), None);
    // Before: a frame to forward is dropped as not ready; the firewall's
    // own traffic (ping to eth0) is answered.
    dev(fw.nics_mut(), 0).inject(&udp_frame(SENDER, RECEIVER, 1000, 2000, 50));
    dev(fw.nics_mut(), 0).inject(&echo_frame(SENDER, FW0, true, 9, 1, 64));
    fw.poll_once(1_000);
    let c = fw.dataplane().counters().interfaces[0].clone();
    assert_eq!((c.drop_count(DropReason::NotReady), c.local), (1, 1));
    assert!(dev(fw.nics_mut(), 1).take_sent().is_empty(), "nothing left by eth1");
    fw.poll_once(1_900_000);
    assert!(!fw.dataplane().forwarding(), "the fallback waits its 2 s");
    // After 2 s without a lease: the fallback, and forwarding.
    fw.poll_once(2_100_000);
    let address = fw.address(2).expect("the fallback address");
    assert_eq!((address.cidr.addr, address.cidr.prefix_len), (0x0a03_0009, 24));
    assert_eq!(address.source, unifw_core::firewall::AddressSource::Fallback);
    assert!(fw.dataplane().forwarding());
    dev(fw.nics_mut(), 0).inject(&udp_frame(SENDER, RECEIVER, 1000, 2000, 50));
    fw.poll_once(2_200_000);
    let asked = dev(fw.nics_mut(), 1).take_sent();
    assert!(asked.iter().any(|f| ethertype(f) == EthernetProtocol::Arp), "forwarded: ARP for the receiver");
    // On its fallback, a DHCP reply to an offered address (not eth2's) is
    // the stack's, not forwarded.
    dev(fw.nics_mut(), 2).inject(&dhcp_reply_frame(0x0a03_0037));
    fw.poll_once(2_300_000);
    let c = fw.dataplane().counters().interfaces[2].clone();
    assert_eq!((c.local, c.total_drops()), (1, 0));
}

#[test]
fn nics_bound_by_mac_take_their_names_whatever_their_order() {
    let text = RULES
        .replace("interface eth0 10.1.0.1/24", "interface eth0 mac 02:00:00:00:00:01 10.1.0.1/24")
        .replace("interface eth1 10.2.0.1/24", "interface eth1 mac 02:00:00:00:00:02 10.2.0.1/24");
    let image = compiled(&text);
    // Found in the other order: eth1's NIC first.
    let devices = vec![FakeDevice::new(FW1_MAC, PLAIN), FakeDevice::new(FW0_MAC, PLAIN)];
    let mut fw = firewall_of(devices, &image, &lab_plan(&image), 0);
    assert_eq!(fw.nics().device(0).map(NetDevice::mac), Some(FW0_MAC));
    assert_eq!(fw.nics().device(1).map(NetDevice::mac), Some(FW1_MAC));
    // The stack learns the sender's MAC from its ARP request, then answers.
    dev(fw.nics_mut(), 0).inject(&arp_frame(ArpOperation::Request, SENDER_MAC, SENDER, [0; 6], FW0));
    dev(fw.nics_mut(), 0).inject(&echo_frame(SENDER, FW0, true, 9, 1, 64));
    fw.poll_once(1_000);
    let sent = dev(fw.nics_mut(), 0).take_sent();
    assert!(sent.iter().any(|f| ethertype(f) == EthernetProtocol::Ipv4 && f[6..12] == FW0_MAC), "eth0 answers");
    // A name bound to a MAC no NIC has is down; it never takes another NIC.
    let missing = RULES.replace("interface eth1 10.2.0.1/24", "interface eth1 mac 02:00:00:00:00:09 10.2.0.1/24");
    let image = compiled(&missing);
    let fw = firewall_of(lab_devices(PLAIN), &image, &lab_plan(&image), 0);
    assert!(fw.is_up(0) && !fw.is_up(1));
    assert!(fw.nics().device(1).is_none());
}

/// The stack's echo reply meets OUTPUT: ESTABLISHED (the request was
/// tracked on the way in), so `:OUTPUT DROP` with an ESTABLISHED rule lets
/// it out, and without one it is dropped and counted on eth0.
#[test]
fn output_judges_the_stacks_echo_replies() {
    let base = "interface eth0 10.1.0.1/24\ninterface eth1 10.2.0.1/24\npolicy output drop\n";
    for (extra, answered) in [("output accept state established,related\n", true), ("", false)] {
        let image = compiled(&format!("{base}{extra}"));
        let mut fw = firewall(&image, &lab_plan(&image));
        dev(fw.nics_mut(), 0).inject(&arp_frame(ArpOperation::Request, SENDER_MAC, SENDER, [0; 6], FW0));
        dev(fw.nics_mut(), 0).inject(&echo_frame(SENDER, FW0, true, 9, 1, 64));
        fw.poll_once(1_000);
        let sent = dev(fw.nics_mut(), 0).take_sent();
        assert!(sent.iter().any(|f| ethertype(f) == EthernetProtocol::Arp), "ARP is no IP: OUTPUT never sees it");
        let replies = sent.iter().filter(|f| ethertype(f) == EthernetProtocol::Ipv4).count();
        assert_eq!(replies, usize::from(answered), "{extra:?}");
        let drops = fw.dataplane().counters().interfaces[0].drop_count(unifw_core::net::DropReason::RuleDrop);
        assert_eq!(drops, u64::from(!answered));
        dev(fw.nics_mut(), 0).complete();
        fw.poll_once(2_000);
        assert_eq!(fw.nics().pool_free(0), TRANSMIT_POOL, "a refused frame's buffer goes home");
    }
}

#[test]
fn a_full_hashlimit_table_drops_the_packet_and_counts_it() {
    // One entry: the sender's ping takes it; the receiver's ping (a new
    // source) is dropped whatever the policy says, as Linux's hot drop.
    let image = compiled(
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         -A INPUT -p icmp -m hashlimit --hashlimit-name full --hashlimit-upto 100/s --hashlimit-mode srcip \
         --hashlimit-htable-size 1 --hashlimit-htable-max 1 -j ACCEPT\nCOMMIT\n",
    );
    let mut fw = firewall(&image, &lab_plan(&image));
    dev(fw.nics_mut(), 0).inject(&arp_frame(ArpOperation::Request, SENDER_MAC, SENDER, [0; 6], FW0));
    dev(fw.nics_mut(), 0).inject(&echo_frame(SENDER, FW0, true, 9, 1, 64));
    dev(fw.nics_mut(), 1).inject(&arp_frame(ArpOperation::Request, RECEIVER_MAC, RECEIVER, [0; 6], FW1));
    dev(fw.nics_mut(), 1).inject(&echo_frame(RECEIVER, FW1, true, 9, 1, 64));
    fw.poll_once(1_000);
    let ipv4 = |frames: Vec<Vec<u8>>| frames.iter().filter(|f| ethertype(f) == EthernetProtocol::Ipv4).count();
    assert_eq!(ipv4(dev(fw.nics_mut(), 0).take_sent()), 1, "the sender's ping is answered");
    assert_eq!(ipv4(dev(fw.nics_mut(), 1).take_sent()), 0, "the receiver's is dropped");
    let counters = fw.dataplane().counters().clone();
    assert_eq!(counters.events.hashlimit_full, 1);
    assert_eq!(counters.interfaces[1].drop_count(DropReason::RuleDrop), 1);
}

/// The devices of a second vCPU: the same NICs' queue pair 1.
fn worker_devices() -> Vec<Option<FakeDevice>> {
    lab_devices(PLAIN).into_iter().map(Some).collect()
}

/// A UDP frame of flow `port` whose payload starts with `seq`.
fn numbered(port: u16, seq: u32) -> Vec<u8> {
    let mut frame = udp_frame(SENDER, RECEIVER, port, 2000, 16);
    let at = frame.len() - 16;
    frame[at..at + 4].copy_from_slice(&seq.to_be_bytes());
    // The UDP checksum is optional in IPv4: none, so the payload may change.
    frame[ETH_LEN + 20 + 6..ETH_LEN + 20 + 8].copy_from_slice(&[0, 0]);
    frame
}

#[test]
fn a_worker_forwards_on_its_own_queues_and_hands_frames_for_the_firewall_to_vcpu_0() {
    let image = compiled(RULES);
    let mut fw = firewall(&image, &lab_plan(&image));
    let mut worker = fw.worker(worker_devices()).expect("a worker");
    // A flow the host steered to queue pair 1: resolved and forwarded there.
    dev(worker.nics_mut(), 0).inject(&udp_frame(SENDER, RECEIVER, 1000, 2000, 50));
    assert!(worker.poll_once(1_000));
    let asked = dev(worker.nics_mut(), 1).take_sent();
    assert_eq!(asked.len(), 1, "the ARP request leaves on the worker's own queue");
    assert_eq!(ethertype(&asked[0]), EthernetProtocol::Arp);
    dev(worker.nics_mut(), 1).inject(&arp_frame(ArpOperation::Reply, RECEIVER_MAC, RECEIVER, FW1_MAC, FW1));
    worker.poll_once(2_000);
    dev(worker.nics_mut(), 0).inject(&udp_frame(SENDER, RECEIVER, 1000, 2000, 50));
    worker.poll_once(3_000);
    let forwarded = dev(worker.nics_mut(), 1).take_sent();
    assert_eq!(forwarded.len(), 2, "the queued frame and the next, both on queue pair 1");
    assert!(dev(fw.nics_mut(), 1).take_sent().is_empty(), "nothing on vCPU 0's queues");
    // The receiver's MAC learnt on vCPU 1 serves vCPU 0: one table.
    dev(fw.nics_mut(), 0).inject(&udp_frame(SENDER, RECEIVER, 1001, 2000, 50));
    fw.poll_once(4_000);
    let sent = dev(fw.nics_mut(), 1).take_sent();
    assert_eq!(sent.len(), 1, "forwarded at once, no ARP: {sent:?}");
    assert_eq!(&sent[0][..6], &RECEIVER_MAC);
    // A ping to the firewall on queue pair 1: handed to vCPU 0, whose stack answers.
    dev(worker.nics_mut(), 0).inject(&arp_frame(ArpOperation::Request, SENDER_MAC, SENDER, [0; 6], FW0));
    dev(worker.nics_mut(), 0).inject(&echo_frame(SENDER, FW0, true, 9, 1, 64));
    worker.poll_once(5_000);
    assert!(dev(worker.nics_mut(), 0).take_sent().is_empty(), "workers have no stack");
    assert!(fw.poll_once(5_000));
    let replies = dev(fw.nics_mut(), 0).take_sent();
    let reply = replies.iter().find(|f| ethertype(f) == EthernetProtocol::Ipv4).expect("an echo reply");
    let ip = Ipv4Packet::new_checked(&reply[ETH_LEN..]).expect("IPv4");
    assert_eq!(Icmpv4Packet::new_checked(ip.payload()).expect("ICMP").msg_type(), Icmpv4Message::EchoReply);
    // One set of counters: what both vCPUs received.
    let c = fw.dataplane().counters().interfaces[0].clone();
    assert_eq!((c.received, c.local, c.total_drops()), (5, 2, 0));
    // Every buffer of the worker's queues is home once the host is done.
    for index in 0..2 {
        dev(worker.nics_mut(), index).complete();
    }
    worker.poll_once(6_000);
    assert_eq!(receive_buffers_accounted(worker.nics_mut(), 0), RECEIVE_BUFFERS_SMALL);
    assert_eq!(receive_buffers_accounted(worker.nics_mut(), 1), RECEIVE_BUFFERS_SMALL);
}

#[test]
fn frames_for_the_firewall_past_the_hand_off_queue_are_counted_and_their_buffers_go_home() {
    let image = compiled(RULES);
    let mut fw = firewall(&image, &lab_plan(&image));
    let mut worker = fw.worker(worker_devices()).expect("a worker");
    let total = HANDOFF_FRAMES + 10;
    for round in 0..total.div_ceil(64) {
        for seq in round * 64..total.min(round * 64 + 64) {
            dev(worker.nics_mut(), 0).inject(&echo_frame(SENDER, FW0, true, 9, seq as u16, 64));
        }
        worker.poll_once(1_000 + round as u64);
    }
    let dropped = fw.dataplane().counters().interfaces[0].drop_count(DropReason::LocalHandoffFull);
    assert_eq!(dropped, 10);
    assert_eq!(dev(worker.nics_mut(), 0).posted.len(), RECEIVE_BUFFERS_SMALL);
    // vCPU 0 answers what was handed over (as far as its transmit pool goes).
    fw.poll_once(2_000);
    let local = fw.dataplane().counters().interfaces[0].local;
    assert_eq!(local, total as u64);
    assert!(!dev(fw.nics_mut(), 0).take_sent().is_empty());
}

#[test]
fn two_vcpus_at_once_keep_each_flows_order_and_lose_nothing() {
    // vCPU 0 and a worker on two threads, each with its own flows (as the
    // host steers them), 20,000 frames each through one packet path.
    const FRAMES: u32 = 20_000;
    const FLOWS: u16 = 8;
    let image = compiled(RULES);
    let mut fw = firewall(&image, &lab_plan(&image));
    let mut worker = fw.worker(worker_devices()).expect("a worker");
    // The receiver's MAC, learnt once for both.
    dev(fw.nics_mut(), 0).inject(&udp_frame(SENDER, RECEIVER, 999, 2000, 50));
    fw.poll_once(1_000);
    dev(fw.nics_mut(), 1).inject(&arp_frame(ArpOperation::Reply, RECEIVER_MAC, RECEIVER, FW1_MAC, FW1));
    fw.poll_once(1_001);
    dev(fw.nics_mut(), 1).take_sent();
    let (vcpu0, vcpu1) = std::thread::scope(|scope| {
        let vcpu1 = scope.spawn(move || {
            let mut out = Vec::new();
            let mut seq = 0;
            while seq < FRAMES {
                for _ in 0..32 {
                    dev(worker.nics_mut(), 0).inject(&numbered(3000 + (seq % u32::from(FLOWS)) as u16, seq));
                    seq += 1;
                }
                worker.poll_once(2_000);
                let d = dev(worker.nics_mut(), 1);
                out.extend(d.take_sent());
                d.complete();
            }
            out
        });
        let mut out = Vec::new();
        let mut seq = 0;
        while seq < FRAMES {
            for _ in 0..32 {
                dev(fw.nics_mut(), 0).inject(&numbered(4000 + (seq % u32::from(FLOWS)) as u16, seq));
                seq += 1;
            }
            fw.poll_once(2_000);
            let d = dev(fw.nics_mut(), 1);
            out.extend(d.take_sent());
            d.complete();
        }
        (out, vcpu1.join().expect("worker thread"))
    });
    for (sent, base) in [(&vcpu0, 4000u16), (&vcpu1, 3000)] {
        assert_eq!(sent.len(), FRAMES as usize, "nothing lost");
        let mut last = vec![None; usize::from(FLOWS)];
        for frame in sent {
            let udp = UdpPacket::new_checked(&frame[ETH_LEN + 20..]).expect("UDP");
            let flow = usize::from(udp.src_port() - base);
            let seq = u32::from_be_bytes(udp.payload()[..4].try_into().expect("4 bytes"));
            assert!(last[flow].is_none_or(|l| l < seq), "flow {flow}: {seq} after {:?}", last[flow]);
            last[flow] = Some(seq);
        }
    }
    let dataplane = fw.dataplane();
    assert_eq!(dataplane.counters().interfaces[1].forwarded_out, 2 * u64::from(FRAMES) + 1);
    // Sent outside the lock, counted by the end of each vCPU's pass (and
    // the ARP request before).
    assert_eq!(dataplane.counters().interfaces[1].sent, 2 * u64::from(FRAMES) + 2);
    assert_eq!(dataplane.conntrack().len(), 2 * usize::from(FLOWS) + 1, "both vCPUs' flows in one table");
}

#[test]
fn a_worker_waits_for_the_path_while_another_vcpu_holds_it_and_counts_the_wait() {
    let image = compiled(RULES);
    let mut fw = firewall(&image, &lab_plan(&image));
    let mut worker = fw.worker(worker_devices()).expect("a worker");
    dev(worker.nics_mut(), 0).inject(&udp_frame(SENDER, RECEIVER, 1000, 2000, 50));
    dev(worker.nics_mut(), 0).inject(&udp_frame(SENDER, RECEIVER, 1000, 2000, 50));
    let held = fw.dataplane();
    let worker = std::thread::scope(|scope| {
        let running = scope.spawn(move || {
            worker.poll_once(1_000);
            worker
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!running.is_finished(), "the worker waits for the path");
        drop(held);
        running.join().expect("worker thread")
    });
    assert_eq!(worker.path_waits(), 1, "the first frame waited, the second found the path free");
    assert_eq!(fw.dataplane().counters().interfaces[0].received, 2);
}

#[test]
fn a_worker_bounces_on_the_bounce_path_and_only_there() {
    let rules = "interface eth0 10.1.0.1/24\ninterface eth1 10.2.0.1/24\npolicy forward drop\n";
    let image = compiled(rules);
    let plan = lab_plan(&image);
    let mut back = udp_frame(RECEIVER, SENDER, 2000, 1000, 50);
    back[..6].copy_from_slice(&FW1_MAC);
    back[6..12].copy_from_slice(&RECEIVER_MAC);
    for bounce in [true, false] {
        let mut fw = firewall_set(lab_devices(PLAIN), &image, &plan, 0, Settings { bounce, ..settings() });
        let mut worker = fw.worker(worker_devices()).expect("a worker");
        // Both peers learnt on the worker's queues, then a frame crosses
        // unfiltered (bounce), or is dropped by FORWARD's policy (firewall).
        dev(worker.nics_mut(), 0).inject(&udp_frame(SENDER, RECEIVER, 1000, 2000, 50));
        dev(worker.nics_mut(), 1).inject(&back);
        worker.poll_once(1_000);
        dev(worker.nics_mut(), 0).take_sent();
        dev(worker.nics_mut(), 0).inject(&udp_frame(SENDER, RECEIVER, 1000, 2000, 50));
        worker.poll_once(2_000);
        let crossed = dev(worker.nics_mut(), 1).take_sent();
        let udp_out = crossed.iter().filter(|f| ethertype(f) == EthernetProtocol::Ipv4).count();
        assert_eq!(udp_out, usize::from(bounce), "bounce {bounce}: {crossed:?}");
        let forwarded = fw.dataplane().counters().interfaces[1].forwarded_out;
        assert_eq!(forwarded, u64::from(bounce));
    }
}
