//! The interface plan: how each NIC gets its address, from the rules
//! image, overridden per NIC by the kernel command line.

use crate::cmdline::{IfOverride, Options, MAX_NICS};
use crate::image::{IfAddr, Image};

/// The plan for eth0..eth7: `None` leaves the NIC down.
pub type Plan = [Option<IfAddr>; MAX_NICS];

/// The image's interface settings, then the command line's (`unifw.ethN=`).
pub fn interface_plan(image: &Image, options: &Options) -> Plan {
    let mut plan = [None; MAX_NICS];
    for spec in image.interfaces() {
        if let Some(slot) = plan.get_mut(usize::from(spec.index)) {
            *slot = Some(spec.addr);
        }
    }
    for (slot, over) in plan.iter_mut().zip(options.interfaces.iter()) {
        match over {
            Some(IfOverride::Static(cidr)) => *slot = Some(IfAddr::Static(*cidr)),
            Some(IfOverride::Dhcp) => *slot = Some(IfAddr::Dhcp),
            Some(IfOverride::Off) => *slot = None,
            None => {}
        }
    }
    plan
}
