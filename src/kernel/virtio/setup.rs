//! Bringing a virtio-net device up: features, queue pairs (several with
//! `VIRTIO_NET_F_MQ`, their count set through the control queue), and one
//! `NetDriver` per pair. The decisions are `unifw_core::virtio_net`'s
//! (`negotiate`, `plan_queues`), tested on the host; this file does the
//! register work and logs every way it falls back to one pair.

use super::control::ControlQueue;
use super::net::{Device, NetDriver, PairParts};
use super::ring::KernelRing;
use super::{AnyTransport, MAX_QUEUE_SIZE};
use alloc::vec::Vec;
use unifw_core::virtio_net::{
    config, feature, negotiate, offered_pairs, plan_queues, receive_queue, transmit_queue, QueuePlan,
};
use unifw_core::virtqueue::{Layout, SplitQueue};
use virtio_drivers::transport::{DeviceStatus, Transport};
use virtio_drivers::Error;

/// A device brought up: its queue pairs (at least one) and how many it offers.
pub struct Initialised {
    /// Pair 0 first.
    pub pairs: Vec<NetDriver>,
    /// `max_virtqueue_pairs` when the device offers `MQ`, else 1.
    pub offered_pairs: u16,
}

/// Sets up queue `index` with the device's size, at most `MAX_QUEUE_SIZE`
/// (the largest power of two within both; a legacy device's own size).
fn queue(transport: &mut AnyTransport, index: u16, event_idx: bool) -> Result<SplitQueue<KernelRing>, Error> {
    if transport.queue_used(index) {
        return Err(Error::AlreadyUsed);
    }
    let device_size = transport.max_queue_size(index);
    let offered = device_size.min(MAX_QUEUE_SIZE);
    if offered == 0 {
        return Err(Error::InvalidParam);
    }
    let size = 1u32 << offered.ilog2();
    // A legacy device fixes the size and the ring layout follows from it:
    // a size the driver cannot take cannot be driven.
    if transport.fixed_queue_size() && size != device_size {
        log::error!(
            "virtio-net: legacy queue {index} has {device_size} entries; a power of two up to {MAX_QUEUE_SIZE} is supported"
        );
        return Err(Error::InvalidParam);
    }
    let layout = u16::try_from(size).ok().and_then(Layout::new).ok_or(Error::InvalidParam)?;
    let memory = KernelRing::allocate(layout).ok_or(Error::DmaError)?;
    let base = memory.address();
    transport.queue_set(index, size, base, base + layout.avail as u64, base + layout.used as u64);
    Ok(SplitQueue::new(memory, layout, event_idx))
}

/// Sets up pair `pair`'s queues, its receive queue's MSI-X vector and its
/// doorbells.
fn pair_queues(transport: &mut AnyTransport, pair: u16, event_idx: bool) -> Result<PairParts, Error> {
    let (rx_index, tx_index) = (receive_queue(pair), transmit_queue(pair));
    let rx = queue(transport, rx_index, event_idx)?;
    let receive_vector = transport.set_receive_vector(rx_index, pair);
    let mut tx = queue(transport, tx_index, event_idx)?;
    // Transmit completions keep their interrupts: the CPU never takes
    // them while it polls (interrupts masked), and with them off the
    // 64-byte rate fell from 74,478 to 59,973 frames/s (event index)
    // and 29,707 (flags) while notifying cost 9.9 us a frame instead
    // of 1.1 (README, "Notification suppression").
    tx.set_interrupts(true);
    let (rx_doorbell, tx_doorbell) = (transport.doorbell(rx_index), transport.doorbell(tx_index));
    Ok(PairParts { rx, tx, rx_doorbell, tx_doorbell, receive_vector })
}

/// Resets and initialises the device, negotiating `wanted` offloads and
/// `RING_EVENT_IDX` (of `feature::OFFLOADS | RING_EVENT_IDX`) where the
/// device offers them, and with `queue_pairs` > 1 `MQ` and `CTRL_VQ`: then
/// up to `queue_pairs` pairs (as many as the device offers). With 1, the
/// device is driven exactly as without multiqueue support.
pub fn initialise(mut transport: AnyTransport, wanted: u64, queue_pairs: u16) -> Result<Initialised, Error> {
    transport.set_status(DeviceStatus::empty());
    transport.set_status(DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER);
    let offered = transport.read_device_features();
    let multiqueue = if queue_pairs > 1 { feature::MULTIQUEUE } else { 0 };
    let features = negotiate(offered, wanted | multiqueue);
    transport.write_driver_features(features);
    transport.set_status(DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER | DeviceStatus::FEATURES_OK);
    if !transport.get_status().contains(DeviceStatus::FEATURES_OK) {
        transport.set_status(DeviceStatus::FAILED);
        return Err(Error::Unsupported);
    }
    transport.set_guest_page_size(4096);
    let mac = if features & feature::MAC != 0 { transport.read_config_space::<[u8; 6]>(config::MAC)? } else { [0; 6] };
    // The field is there whenever the device offers MQ; read even when
    // MQ is not negotiated, for the boot log only.
    let max_pairs = if offered & feature::MQ != 0 {
        transport.read_config_space::<u16>(config::MAX_VIRTQUEUE_PAIRS).unwrap_or(0)
    } else {
        0
    };
    let plan = plan(features, queue_pairs, max_pairs);
    let event_idx = features & feature::RING_EVENT_IDX != 0;
    let mut pairs = Vec::new();
    for pair in 0..plan.pairs {
        match pair_queues(&mut transport, pair, event_idx) {
            Ok(parts) => pairs.push(parts),
            Err(e) if pair == 0 => return Err(e),
            Err(e) => {
                log::error!("virtio-net: queue pair {pair} not set up ({e:?}); using {pair} pairs");
                break;
            }
        }
    }
    let mut control = plan.control.and_then(|index| match ControlQueue::new(&mut transport, index, event_idx) {
        Ok(control) => Some(control),
        Err(e) => {
            log::error!("virtio-net: queue {index}: {e}; using one queue pair");
            None
        }
    });
    if control.is_none() {
        pairs.truncate(1);
    }
    transport.finish_init();
    if let Some(control) = control.as_mut() {
        let count = pairs.len() as u16;
        match control.set_queue_pairs(&mut transport, count) {
            Ok(()) => log::info!("virtio-net: VQ_PAIRS_SET {count} acknowledged OK"),
            Err(e) => {
                log::error!("virtio-net: VQ_PAIRS_SET {count}: {e}; using one queue pair");
                pairs.truncate(1);
            }
        }
    }
    let interrupt = transport.interrupt_ack();
    let device = Device::new(transport, control);
    let pairs = (0u16..)
        .zip(pairs)
        .map(|(pair, parts)| NetDriver::new(device.clone(), pair, parts, interrupt, mac, features))
        .collect();
    Ok(Initialised { pairs, offered_pairs: offered_pairs(offered, max_pairs) })
}

/// The queues to set up; one pair (logged) when the device's pair count
/// is unusable or it offers no multiqueue although more were wanted.
fn plan(features: u64, queue_pairs: u16, max_pairs: u16) -> QueuePlan {
    if queue_pairs > 1 && features & feature::MQ == 0 {
        log::info!("virtio-net: {queue_pairs} queue pairs wanted; the device offers no MQ with CTRL_VQ: one pair");
    }
    plan_queues(features, queue_pairs, max_pairs).unwrap_or_else(|e| {
        log::error!("virtio-net: multiqueue refused ({e:?}); using one queue pair");
        QueuePlan { offered: 1, pairs: 1, control: None }
    })
}
