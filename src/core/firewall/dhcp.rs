//! What a DHCP lease says about routes: the router option (3) and the
//! classless static routes of option 121 (RFC 3442), which wins over the
//! router option when both are present. smoltcp's DHCP client parses the
//! router option but not option 121, so that is read here from the raw
//! reply the client keeps, with checked reads only: a malformed option is
//! ignored as a whole (RFC 3442 section 4), never a panic.

use alloc::vec::Vec;

use crate::net::addr::Cidr;
use crate::net::route::LearnedRoute;

/// DHCP option codes read here.
pub mod option {
    /// Padding.
    pub const PAD: u8 = 0;
    /// Subnet mask.
    pub const SUBNET_MASK: u8 = 1;
    /// Router (the default gateway).
    pub const ROUTER: u8 = 3;
    /// Domain name servers.
    pub const DNS: u8 = 6;
    /// Interface MTU (RFC 2132 section 5.1).
    pub const INTERFACE_MTU: u8 = 26;
    /// Classless static routes (RFC 3442).
    pub const CLASSLESS_STATIC_ROUTES: u8 = 121;
    /// End of the options.
    pub const END: u8 = 255;
}

/// What the client asks the server for (option 55): the subnet mask, the
/// router, DNS servers (smoltcp's defaults), the interface MTU and
/// classless static routes; servers such as dnsmasq send options 26 and
/// 121 only when asked.
pub const PARAMETER_REQUEST_LIST: &[u8] =
    &[option::SUBNET_MASK, option::ROUTER, option::DNS, option::INTERFACE_MTU, option::CLASSLESS_STATIC_ROUTES];

/// The interface MTU of option 26 in the DHCP message `message`: two bytes,
/// at least 68 (RFC 2132); `None` when absent or malformed. smoltcp's
/// client does not parse this option (its `dhcpv4::Config` has no MTU), so
/// it is read from the raw reply like option 121.
pub fn interface_mtu(message: &[u8]) -> Option<u16> {
    let data = option_data(message, option::INTERFACE_MTU).ok()??;
    let mtu = match data.as_slice() {
        &[high, low] => u16::from_be_bytes([high, low]),
        _ => return None,
    };
    (mtu >= crate::net::mtu::MIN_MTU).then_some(mtu)
}

/// Most routes one lease installs; the rest of a longer option 121 is
/// ignored (with a warning).
pub const MAX_LEARNED_ROUTES: usize = 32;

/// Offset of the options in a DHCP message (after the BOOTP fields).
const OPTIONS_AT: usize = 240;
/// The magic cookie before the options (RFC 2131 section 3).
const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];

/// Why option 121 was ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteOptionError {
    /// No magic cookie, or an option running past the message.
    BadMessage,
    /// A route descriptor with a width above 32 or cut short.
    BadDescriptor,
}

/// The data of every instance of `code` in the DHCP message `message`
/// (from the BOOTP `op` field on), concatenated as RFC 3396 says for long
/// options; `None` if the option is absent. Options in the `sname` and
/// `file` fields (option 52, overload) are not read.
pub fn option_data(message: &[u8], code: u8) -> Result<Option<Vec<u8>>, RouteOptionError> {
    if message.get(OPTIONS_AT - MAGIC_COOKIE.len()..OPTIONS_AT) != Some(&MAGIC_COOKIE[..]) {
        return Err(RouteOptionError::BadMessage);
    }
    let mut rest = message.get(OPTIONS_AT..).unwrap_or(&[]);
    let mut found: Option<Vec<u8>> = None;
    while let Some((&kind, after)) = rest.split_first() {
        match kind {
            option::END => break,
            option::PAD => rest = after,
            _ => {
                let (&len, after) = after.split_first().ok_or(RouteOptionError::BadMessage)?;
                let data = after.get(..usize::from(len)).ok_or(RouteOptionError::BadMessage)?;
                if kind == code {
                    found.get_or_insert_with(Vec::new).extend_from_slice(data);
                }
                rest = after.get(usize::from(len)..).unwrap_or(&[]);
            }
        }
    }
    Ok(found)
}

/// Decodes option 121's data: descriptors of a width (0..=32), the
/// significant octets of the destination, and a router (RFC 3442 section
/// 3). Host bits past the width are cleared. A router of 0.0.0.0 (an
/// on-link route) is kept as such.
pub fn classless_routes(data: &[u8]) -> Result<Vec<LearnedRoute>, RouteOptionError> {
    let mut routes = Vec::new();
    let mut rest = data;
    while let Some((&width, after)) = rest.split_first() {
        if width > 32 {
            return Err(RouteOptionError::BadDescriptor);
        }
        let significant = usize::from(width).div_ceil(8);
        let destination = after.get(..significant).ok_or(RouteOptionError::BadDescriptor)?;
        let router = after.get(significant..significant + 4).ok_or(RouteOptionError::BadDescriptor)?;
        let mut octets = [0u8; 4];
        for (octet, byte) in octets.iter_mut().zip(destination) {
            *octet = *byte;
        }
        let prefix = u32::from_be_bytes(octets) & crate::flow::mask(width);
        let gateway = router.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b));
        routes.push(LearnedRoute { prefix, prefix_len: width, gateway });
        rest = after.get(significant + 4..).unwrap_or(&[]);
    }
    Ok(routes)
}

/// The routes of a lease and where they came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseRoutes {
    /// The routes to install, through gateways on the leased subnet.
    pub routes: Vec<LearnedRoute>,
    /// Whether they came from option 121 (then the router option, if
    /// any, was ignored).
    pub classless: bool,
    /// Whether a router option was present but ignored for option 121.
    pub router_ignored: bool,
}

/// A route of a lease that is not installed, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skipped {
    /// Option 121 was malformed and ignored as a whole.
    Malformed(RouteOptionError),
    /// Its gateway is not on the leased subnet (ARP cannot reach it).
    OffSubnet(LearnedRoute),
    /// An on-link route (router 0.0.0.0): not supported.
    OnLink(LearnedRoute),
    /// Past [`MAX_LEARNED_ROUTES`].
    TooMany(LearnedRoute),
}

/// The routes a lease on `subnet` installs: option 121's when the reply
/// (`message`, the raw DHCP reply, if the client kept it) has a
/// well-formed one, and then the router option is ignored (RFC 3442);
/// otherwise a default route via `router` (option 3). Each route left out
/// goes to `skipped`.
pub fn lease_routes(
    subnet: Cidr,
    router: Option<u32>,
    message: Option<&[u8]>,
    skipped: &mut dyn FnMut(Skipped),
) -> LeaseRoutes {
    let classless = message.map(|m| {
        option_data(m, option::CLASSLESS_STATIC_ROUTES).and_then(|data| data.map(|d| classless_routes(&d)).transpose())
    });
    let (candidates, from_121) = match classless {
        Some(Ok(Some(routes))) => (routes, true),
        Some(Err(e)) => {
            skipped(Skipped::Malformed(e));
            (default_via(router), false)
        }
        Some(Ok(None)) | None => (default_via(router), false),
    };
    let mut routes = Vec::new();
    for route in candidates {
        if route.gateway == 0 {
            skipped(Skipped::OnLink(route));
        } else if !subnet.contains(route.gateway) || route.gateway == subnet.addr {
            skipped(Skipped::OffSubnet(route));
        } else if routes.len() >= MAX_LEARNED_ROUTES {
            skipped(Skipped::TooMany(route));
        } else {
            routes.push(route);
        }
    }
    LeaseRoutes { routes, classless: from_121, router_ignored: from_121 && router.is_some() }
}

fn default_via(router: Option<u32>) -> Vec<LearnedRoute> {
    router.map(|gateway| LearnedRoute { prefix: 0, prefix_len: 0, gateway }).into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DHCP message: 236 BOOTP bytes, the cookie, then `options`.
    fn message(options: &[u8]) -> Vec<u8> {
        let mut m = vec![0u8; 236];
        m.extend_from_slice(&MAGIC_COOKIE);
        m.extend_from_slice(options);
        m
    }

    const SUBNET: Cidr = Cidr { addr: 0x0a03_0032, prefix_len: 24 };

    fn route(prefix: u32, prefix_len: u8, gateway: u32) -> LearnedRoute {
        LearnedRoute { prefix, prefix_len, gateway }
    }

    #[test]
    fn rfc_3442_descriptors() {
        // The examples of RFC 3442 section 3, through router 10.3.0.1.
        let data = [
            0, 10, 3, 0, 1, // default
            8, 10, 10, 3, 0, 1, // 10.0.0.0/8
            24, 10, 4, 0, 10, 3, 0, 1, // 10.4.0.0/24
            25, 10, 4, 0, 128, 10, 3, 0, 1, // 10.4.0.128/25
            32, 10, 9, 9, 9, 10, 3, 0, 1, // host route
            9, 10, 255, 10, 3, 0, 1, // host bits past /9 are cleared: 10.128.0.0/9
        ];
        let want = [
            route(0, 0, 0x0a03_0001),
            route(0x0a00_0000, 8, 0x0a03_0001),
            route(0x0a04_0000, 24, 0x0a03_0001),
            route(0x0a04_0080, 25, 0x0a03_0001),
            route(0x0a09_0909, 32, 0x0a03_0001),
            route(0x0a80_0000, 9, 0x0a03_0001),
        ];
        assert_eq!(classless_routes(&data), Ok(want.to_vec()));
        assert_eq!(classless_routes(&[]), Ok(vec![]));
        for bad in [&[33, 10, 0, 0, 0, 1, 2, 3, 4][..], &[24, 10, 4, 0, 10, 3, 0], &[8]] {
            assert_eq!(classless_routes(bad), Err(RouteOptionError::BadDescriptor), "{bad:?}");
        }
    }

    #[test]
    fn the_interface_mtu_of_option_26() {
        assert_eq!(interface_mtu(&message(&[3, 4, 10, 3, 0, 254, 26, 2, 0x05, 0x78, 255])), Some(1400));
        assert_eq!(interface_mtu(&message(&[26, 2, 0, 67, 255])), None, "below 68");
        assert_eq!(interface_mtu(&message(&[26, 3, 5, 120, 0, 255])), None, "not two bytes");
        assert_eq!(interface_mtu(&message(&[3, 4, 10, 3, 0, 254, 255])), None, "absent");
        assert_eq!(interface_mtu(&[0; 10]), None, "no cookie");
    }

    #[test]
    fn options_are_walked_and_long_ones_concatenated() {
        // Pad, router, 121 split in two instances (RFC 3396) with a pad
        // between them, end, then junk.
        let m = message(&[0, 3, 4, 10, 3, 0, 254, 121, 3, 24, 10, 4, 0, 121, 5, 0, 10, 3, 0, 1, 255, 121, 9]);
        assert_eq!(option_data(&m, option::CLASSLESS_STATIC_ROUTES), Ok(Some(vec![24, 10, 4, 0, 10, 3, 0, 1])));
        let routes = classless_routes(&[24, 10, 4, 0, 10, 3, 0, 1]);
        assert_eq!(routes, Ok(vec![route(0x0a04_0000, 24, 0x0a03_0001)]), "the descriptor spans both instances");
        assert_eq!(option_data(&m, option::ROUTER), Ok(Some(vec![10, 3, 0, 254])));
        assert_eq!(option_data(&m, 42), Ok(None));
        // Without an end option the options stop with the message.
        assert_eq!(option_data(&message(&[3, 4, 1, 2, 3, 4]), 3), Ok(Some(vec![1, 2, 3, 4])));
        assert_eq!(option_data(&message(&[3, 4, 1, 2]), 3), Err(RouteOptionError::BadMessage));
        assert_eq!(option_data(&message(&[3]), 3), Err(RouteOptionError::BadMessage));
        assert_eq!(option_data(&[0u8; 239], 3), Err(RouteOptionError::BadMessage));
        let mut no_cookie = message(&[]);
        no_cookie[237] = 0;
        assert_eq!(option_data(&no_cookie, 3), Err(RouteOptionError::BadMessage));
    }

    #[test]
    fn option_121_wins_over_the_router_option() {
        let m = message(&[3, 4, 10, 3, 0, 254, 121, 8, 24, 10, 4, 0, 10, 3, 0, 1, 255]);
        let mut skipped = vec![];
        let got = lease_routes(SUBNET, Some(0x0a03_00fe), Some(&m), &mut |s| skipped.push(s));
        assert_eq!(got.routes, [route(0x0a04_0000, 24, 0x0a03_0001)]);
        assert!(got.classless && got.router_ignored && skipped.is_empty());
        // Without option 121: the router is the default route.
        let got = lease_routes(SUBNET, Some(0x0a03_00fe), Some(&message(&[255])), &mut |s| skipped.push(s));
        assert_eq!((got.routes, got.classless), (vec![route(0, 0, 0x0a03_00fe)], false));
        let got = lease_routes(SUBNET, None, None, &mut |s| skipped.push(s));
        assert_eq!(got, LeaseRoutes::default());
        assert!(skipped.is_empty());
    }

    #[test]
    fn a_malformed_option_121_is_ignored_and_the_router_used() {
        let m = message(&[121, 4, 40, 1, 2, 3, 255]);
        let mut skipped = vec![];
        let got = lease_routes(SUBNET, Some(0x0a03_00fe), Some(&m), &mut |s| skipped.push(s));
        assert_eq!(got.routes, [route(0, 0, 0x0a03_00fe)]);
        assert_eq!(skipped, [Skipped::Malformed(RouteOptionError::BadDescriptor)]);
    }

    #[test]
    fn unusable_routes_are_skipped_and_the_count_bounded() {
        let mut data = vec![
            24, 10, 5, 0, 0, 0, 0, 0, // on-link
            24, 10, 6, 0, 10, 9, 0, 1, // gateway off the subnet
            24, 10, 7, 0, 10, 3, 0, 50, // gateway is our own address
        ];
        for i in 0..MAX_LEARNED_ROUTES as u8 + 2 {
            data.extend_from_slice(&[32, 10, 8, 0, i, 10, 3, 0, 1]);
        }
        let mut m = message(&[]);
        for chunk in data.chunks(255) {
            m.extend_from_slice(&[121, chunk.len() as u8]);
            m.extend_from_slice(chunk);
        }
        m.push(255);
        let mut skipped = vec![];
        let got = lease_routes(SUBNET, None, Some(&m), &mut |s| skipped.push(s));
        assert_eq!(got.routes.len(), MAX_LEARNED_ROUTES);
        assert!(matches!(skipped[0], Skipped::OnLink(_)));
        assert!(matches!(skipped[1], Skipped::OffSubnet(_)) && matches!(skipped[2], Skipped::OffSubnet(_)));
        assert_eq!(skipped.len(), 5);
        assert!(matches!(skipped[4], Skipped::TooMany(_)));
    }
}
