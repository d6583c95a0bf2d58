//! The compiled rules image embedded by build.rs, and the interface plan:
//! addresses from the image, overridden per NIC by the kernel command line.

use unifw_core::cmdline::{IfOverride, Options};
use unifw_core::image::{IfAddr, Image};

#[repr(C, align(64))]
struct Aligned<T: ?Sized>(T);

/// The image bytes, 64-byte aligned (the reader relies on it for speed only).
static IMAGE_BYTES: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/rules.img")));

/// The embedded rules image, validated (cheap: O(sections), not O(rules)).
/// A build always embeds a valid image, so failure means a corrupted build.
pub fn image() -> Image<'static> {
    match Image::from_bytes(&IMAGE_BYTES.0) {
        Ok(image) => image,
        Err(e) => panic!("embedded rules image is invalid: {e:?}"),
    }
}

/// Maximum NICs the firewall drives.
pub const MAX_NICS: usize = unifw_core::cmdline::MAX_NICS;

/// The plan for eth0..eth7 (`None`: down): the image's settings, then the
/// command line's.
pub fn interface_plan(image: &Image, options: &Options) -> [Option<IfAddr>; MAX_NICS] {
    let mut plan = [None; MAX_NICS];
    for spec in image.interfaces() {
        if let Some(slot) = plan.get_mut(usize::from(spec.index)) {
            *slot = Some(spec.addr);
        }
    }
    for (slot, over) in plan.iter_mut().zip(options.interfaces.iter()) {
        match over {
            Some(IfOverride::Static { addr, prefix_len }) => {
                *slot = Some(IfAddr::Static { addr: *addr, prefix_len: *prefix_len })
            }
            Some(IfOverride::Dhcp) => *slot = Some(IfAddr::Dhcp),
            Some(IfOverride::Off) => *slot = None,
            None => {}
        }
    }
    plan
}
