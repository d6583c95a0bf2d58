//! The interface plan: for each name (eth0..eth7), how it gets its address
//! and which NIC takes it, from the rules image, overridden per name by the
//! kernel command line; and the naming of the NICs found at boot.
//!
//! Naming ([`assign_names`]): a NIC whose MAC address a name is bound to
//! takes that name; the other NICs, in discovery order, take the names
//! bound to no MAC, lowest first. A bound name whose NIC is missing stays
//! empty (down): no other NIC gets the addresses and rules meant for it.

use alloc::vec::Vec;

use crate::cmdline::{IfOverride, Options, MAX_NICS};
use crate::image::{Fallback, IfAddr, Image};
use crate::net::addr::MacAddr;
use crate::net::ReversePathFilter;

/// What the firewall does with one interface name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InterfacePlan {
    /// How it gets its address; `None` leaves it down.
    pub addr: Option<IfAddr>,
    /// The static fallback of a DHCP interface.
    pub fallback: Option<Fallback>,
    /// The MAC address of the NIC that takes this name; `None`: the name
    /// goes to a NIC no name is bound to, in discovery order.
    pub mac: Option<[u8; 6]>,
    /// Reverse-path filtering of what arrives on it.
    pub reverse_path: ReversePathFilter,
    /// The MTU the rules file gives (`None`: the default, 1500); a DHCP
    /// lease's interface MTU (option 26) replaces it.
    pub mtu: Option<u16>,
}

impl InterfacePlan {
    /// `addr`, bound to no MAC, without fallback.
    pub fn with_addr(addr: IfAddr) -> InterfacePlan {
        InterfacePlan { addr: Some(addr), ..InterfacePlan::default() }
    }
}

/// The plan for eth0..eth7.
pub type Plan = [InterfacePlan; MAX_NICS];

/// The image's interface settings, then the command line's (`unifw.ethN=`
/// replaces the address and the fallback, `unifw.ethN.mac=` the MAC
/// binding, `unifw.ethN.mtu=` the MTU). Names bound to the same MAC are all left down, with an error
/// on the console.
pub fn interface_plan(image: &Image, options: &Options) -> Plan {
    let mut plan = [InterfacePlan::default(); MAX_NICS];
    for spec in image.interfaces() {
        match plan.get_mut(usize::from(spec.index)) {
            Some(slot) => {
                *slot = InterfacePlan {
                    addr: Some(spec.addr),
                    fallback: spec.fallback,
                    mac: spec.mac,
                    mtu: spec.mtu,
                    reverse_path: spec.reverse_path,
                }
            }
            None => log::warn!("eth{}: unifw drives at most {MAX_NICS} NICs (eth0..eth7); ignored", spec.index),
        }
    }
    for ((slot, over), mac) in plan.iter_mut().zip(options.interfaces.iter()).zip(options.macs.iter()) {
        match over {
            Some(IfOverride::Static(cidr)) => {
                *slot = InterfacePlan { addr: Some(IfAddr::Static(*cidr)), fallback: None, ..*slot }
            }
            Some(IfOverride::Dhcp) => *slot = InterfacePlan { addr: Some(IfAddr::Dhcp), fallback: None, ..*slot },
            Some(IfOverride::Off) => slot.addr = None,
            None => {}
        }
        if mac.is_some() {
            slot.mac = *mac;
        }
    }
    for (slot, mtu) in plan.iter_mut().zip(options.mtus.iter()) {
        if mtu.is_some() {
            slot.mtu = *mtu;
        }
    }
    for index in 0..plan.len() {
        let Some(mac) = plan.get(index).and_then(|slot| slot.mac) else { continue };
        let sharing: Vec<usize> =
            (0..plan.len()).filter(|&i| plan.get(i).is_some_and(|s| s.mac == Some(mac))).collect();
        if sharing.len() > 1 && sharing.first() == Some(&index) {
            let names: Vec<_> = sharing.iter().map(|i| alloc::format!("eth{i}")).collect();
            log::error!("{} are all bound to MAC {}; all left down", names.join(", "), MacAddr(mac));
            for i in sharing {
                if let Some(slot) = plan.get_mut(i) {
                    slot.addr = None;
                }
            }
        }
    }
    plan
}

/// Which NIC takes each name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Naming {
    /// By interface index: the NIC's place in discovery order, if a NIC
    /// took the name. No longer than the highest name taken.
    pub nics: Vec<Option<usize>>,
    /// Names bound to a MAC address no NIC has.
    pub missing: Vec<usize>,
    /// NICs (discovery order) left without a name: every name was bound
    /// elsewhere or taken.
    pub unnamed: Vec<usize>,
}

impl Naming {
    /// Whether NIC `nic` (discovery order) took its name by MAC binding.
    pub fn is_bound(&self, name: usize, bindings: &[Option<[u8; 6]>]) -> bool {
        bindings.get(name).is_some_and(Option::is_some) && self.nics.get(name).is_some_and(Option::is_some)
    }
}

/// Names the NICs found (`discovered`: their MACs in discovery order) by
/// `bindings` (by name: the MAC bound to it, if any), as the module
/// documentation says.
pub fn assign_names(discovered: &[[u8; 6]], bindings: &[Option<[u8; 6]>]) -> Naming {
    let mut nics: Vec<Option<usize>> = alloc::vec![None; bindings.len()];
    let mut taken = alloc::vec![false; discovered.len()];
    let mut missing = Vec::new();
    for (name, binding) in bindings.iter().enumerate() {
        let Some(mac) = binding else { continue };
        let found = discovered.iter().zip(taken.iter()).position(|(m, &t)| m == mac && !t);
        match (found, nics.get_mut(name)) {
            (Some(nic), Some(slot)) => {
                *slot = Some(nic);
                if let Some(t) = taken.get_mut(nic) {
                    *t = true;
                }
            }
            _ => missing.push(name),
        }
    }
    let mut free_names = bindings.iter().enumerate().filter(|(_, b)| b.is_none()).map(|(name, _)| name);
    let mut unnamed = Vec::new();
    for nic in (0..discovered.len()).filter(|&nic| !taken.get(nic).copied().unwrap_or(true)) {
        match free_names.next().and_then(|name| nics.get_mut(name)) {
            Some(slot) => *slot = Some(nic),
            None => unnamed.push(nic),
        }
    }
    let used = nics.iter().rposition(Option::is_some).map_or(0, |last| last + 1);
    nics.truncate(used);
    Naming { nics, missing, unnamed }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
    const B: [u8; 6] = [2, 0, 0, 0, 0, 0xb];
    const C: [u8; 6] = [2, 0, 0, 0, 0, 0xc];
    const D: [u8; 6] = [2, 0, 0, 0, 0, 0xd];

    fn names(discovered: &[[u8; 6]], bindings: &[Option<[u8; 6]>]) -> Naming {
        assign_names(discovered, bindings)
    }

    #[test]
    fn without_bindings_the_order_of_discovery_names_the_nics() {
        let n = names(&[A, B, C], &[None; 8]);
        assert_eq!(n, Naming { nics: alloc::vec![Some(0), Some(1), Some(2)], ..Naming::default() });
    }

    #[test]
    fn bound_nics_take_their_names_and_the_others_fill_the_rest_in_order() {
        // eth1 is bound to A (found third), eth0 to D (found first).
        let mut bindings = [None; 8];
        bindings[1] = Some(A);
        bindings[0] = Some(D);
        let n = names(&[D, B, A, C], &bindings);
        assert_eq!(n.nics, [Some(0), Some(2), Some(1), Some(3)]);
        assert!(n.missing.is_empty() && n.unnamed.is_empty());
        assert!(n.is_bound(1, &bindings) && !n.is_bound(2, &bindings));
    }

    #[test]
    fn a_missing_bound_nic_leaves_its_name_empty() {
        let mut bindings = [None; 8];
        bindings[0] = Some(D);
        let n = names(&[A, B], &bindings);
        assert_eq!(n.nics, [None, Some(0), Some(1)]);
        assert_eq!(n.missing, [0]);
        // Only bound names are left: no NIC gets eth0's or eth1's setup.
        let n = names(&[A], &[Some(C), Some(D)]);
        assert_eq!((n.nics.len(), n.missing, n.unnamed), (0, alloc::vec![0, 1], alloc::vec![0]));
    }

    #[test]
    fn one_nic_for_two_names_bound_to_its_mac_goes_to_the_first() {
        let n = names(&[B, A], &[Some(A), Some(A), None]);
        assert_eq!(n.nics, [Some(1), None, Some(0)]);
        assert_eq!(n.missing, [1]);
    }
}
