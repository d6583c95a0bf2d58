//! The kernel command line: per-NIC address overrides, log level, panic
//! policy, and the virtio-mmio device list QEMU's microvm appends.
//!
//! Syntax (space-separated `key=value` tokens; anything not starting with
//! `unifw.` or `virtio_mmio.device=` is ignored, so a habitual
//! `console=ttyS0` does no harm):
//!
//! | token | meaning |
//! |---|---|
//! | `unifw.eth0=10.1.0.1/24` | static address and prefix for eth0 |
//! | `unifw.eth2=dhcp` | configure eth2 by DHCP |
//! | `unifw.eth1=off` | leave eth1 down |
//! | `unifw.eth0.mac=52:54:00:12:34:56` | the NIC with this MAC is eth0 (replaces the rules file's binding) |
//! | `unifw.eth1.mtu=1400` | eth1's MTU, 68..=9000 (replaces the rules file's; a DHCP lease's option 26 still wins) |
//! | `unifw.log=debug` | log level: off, error, warn, info, debug, trace |
//! | `unifw.panic=reset` | after a panic: `halt` (default) or `reset` |
//! | `unifw.offload=off` | do not negotiate virtio-net checksum/TSO offloads (default `on`) |
//! | `unifw.eventidx=off` | do not negotiate virtio's `RING_EVENT_IDX` (notification suppression by the rings' flags instead; default `on`) |
//! | `unifw.cpus=2` | use at most this many vCPUs, 1..=8 (default: all the machine has, up to 8); each NIC then asks for as many queue pairs |
//! | `unifw.crashtest=1` | panic on vCPU 1 (0..=7) once it serves its queues: tests the panic policy (every vCPU stops; then halt or reset). Never in service |
//! | `unifw.busypoll=500` | microseconds of busy polling after the last frame before sleeping (default 0: sleep at once) |
//! | `unifw.path=bounce` | benchmark the platform: frames through the firewall cross eth0 <-> eth1 unfiltered, MACs rewritten only (default `firewall`; never in service) |
//! | `unifw.profile=on` | time each step of the work on frames and print ns per frame with each counter report (default `off`) |
//! | `unifw.stats=10` | report counters on the console every 10 s when they changed (default 60; 0 = never) |
//!
//! A bad value is reported and, for an interface, leaves that NIC down.

use alloc::vec::Vec;
use core::fmt;

use crate::net::addr::Cidr;
use crate::net::mtu::{MAX_MTU, MIN_MTU};

/// Highest number of NICs the command line can address (eth0..eth7).
pub const MAX_NICS: usize = 8;
/// Most vCPUs the firewall uses.
pub const MAX_CPUS: u8 = 8;

/// An interface setting from the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfOverride {
    /// A static address and prefix length.
    Static(Cidr),
    /// Configure by DHCP.
    Dhcp,
    /// Leave the NIC down (also the result of a bad value).
    Off,
}

/// Log verbosity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Nothing.
    Off,
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// The default.
    Info,
    /// Debugging detail.
    Debug,
    /// Everything.
    Trace,
}

/// A virtio-mmio transport announced by QEMU (`virtio_mmio.device=SIZE@BASE:IRQ`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MmioDevice {
    /// Physical base address.
    pub base: u64,
    /// Size of the register window.
    pub size: u64,
    /// Global system interrupt.
    pub irq: u32,
}

/// A token the parser rejected, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmdlineError<'a> {
    /// The whole offending token.
    pub token: &'a str,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl fmt::Display for CmdlineError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "kernel command line: `{}`: {}", self.token, self.reason)
    }
}

/// Everything the command line says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// Per-NIC overrides, by index (eth0 = 0).
    pub interfaces: [Option<IfOverride>; MAX_NICS],
    /// MAC bindings (`unifw.ethN.mac=`), by index.
    pub macs: [Option<[u8; 6]>; MAX_NICS],
    /// MTUs (`unifw.ethN.mtu=`), by index.
    pub mtus: [Option<u16>; MAX_NICS],
    /// Log level, when given.
    pub log_level: Option<LogLevel>,
    /// Reset (true) or halt (false) after a panic, when given.
    pub panic_reset: Option<bool>,
    /// Whether to negotiate virtio-net offloads, when given.
    pub offload: Option<bool>,
    /// Whether to negotiate `RING_EVENT_IDX`, when given.
    pub event_idx: Option<bool>,
    /// Seconds between counter reports (0 = never), when given.
    pub stats_seconds: Option<u32>,
    /// Microseconds of busy polling before sleeping, when given.
    pub busy_poll_us: Option<u32>,
    /// Most vCPUs to use (1..=8), when given.
    pub cpus: Option<u8>,
    /// `unifw.crashtest=N`: the vCPU that panics on purpose once it serves.
    pub crash_test: Option<u8>,
    /// Whether to profile the work on frames, when given.
    pub profile: Option<bool>,
    /// `unifw.path=bounce` (true) or `firewall`, when given.
    pub bounce: Option<bool>,
    /// virtio-mmio transports, in command-line order.
    pub mmio_devices: Vec<MmioDevice>,
}

/// Parses a command line. Every rejected token is passed to `on_error`;
/// parsing always continues.
pub fn parse<'a>(line: &'a str, mut on_error: impl FnMut(CmdlineError<'a>)) -> Options {
    let mut options = Options::default();
    for token in line.split_ascii_whitespace() {
        if let Err(reason) = apply(&mut options, token) {
            on_error(CmdlineError { token, reason });
        }
    }
    options
}

fn apply(options: &mut Options, token: &str) -> Result<(), &'static str> {
    if let Some(spec) = token.strip_prefix("virtio_mmio.device=") {
        options.mmio_devices.push(parse_mmio_device(spec)?);
        return Ok(());
    }
    let Some(setting) = token.strip_prefix("unifw.") else {
        return Ok(());
    };
    let (key, value) = setting.split_once('=').ok_or("expected unifw.KEY=VALUE")?;
    if let Some(name) = key.strip_prefix("eth") {
        let (index, attribute) = match name.split_once('.') {
            Some((index, attribute)) => (index, Some(attribute)),
            None => (name, None),
        };
        let index: usize = parse_decimal(index).ok_or("unknown interface (eth0..eth7)")?;
        let slot = options.interfaces.get_mut(index).ok_or("unknown interface (eth0..eth7)")?;
        if attribute == Some("mtu") {
            let mtu = parse_decimal(value).and_then(|n| u16::try_from(n).ok());
            let mtu = mtu.filter(|mtu| (MIN_MTU..=MAX_MTU).contains(mtu)).ok_or("expected an MTU of 68 to 9000")?;
            if let Some(slot) = options.mtus.get_mut(index) {
                *slot = Some(mtu);
            }
            return Ok(());
        }
        if let Some(attribute) = attribute {
            if attribute != "mac" {
                return Err("unknown interface setting (unifw.ethN=..., unifw.ethN.mac=... or unifw.ethN.mtu=...)");
            }
            let Some(mac) = parse_mac(value).filter(|mac| mac[0] & 1 == 0) else {
                // The NIC that takes this name may not be the one meant.
                *slot = Some(IfOverride::Off);
                return Err("expected a unicast MAC address like 52:54:00:12:34:56; interface left down");
            };
            if let Some(binding) = options.macs.get_mut(index) {
                *binding = Some(mac);
            }
            return Ok(());
        }
        let parsed = parse_interface(value);
        *slot = Some(parsed.unwrap_or(IfOverride::Off));
        return parsed.map(|_| ());
    }
    match key {
        "log" => options.log_level = Some(parse_log_level(value)?),
        "panic" => options.panic_reset = Some(parse_choice(value, ("halt", "reset"), "expected halt or reset")?),
        "offload" => options.offload = Some(parse_choice(value, ("off", "on"), "expected on or off")?),
        "eventidx" => options.event_idx = Some(parse_choice(value, ("off", "on"), "expected on or off")?),
        "profile" => options.profile = Some(parse_choice(value, ("off", "on"), "expected on or off")?),
        "path" => options.bounce = Some(parse_choice(value, ("firewall", "bounce"), "expected firewall or bounce")?),
        "stats" => {
            let seconds = parse_decimal(value).and_then(|v| u32::try_from(v).ok());
            options.stats_seconds = Some(seconds.ok_or("expected a number of seconds")?);
        }
        "busypoll" => {
            let us = parse_decimal(value).and_then(|v| u32::try_from(v).ok());
            options.busy_poll_us = Some(us.ok_or("expected microseconds")?);
        }
        "cpus" => {
            let cpus = parse_decimal(value).and_then(|v| u8::try_from(v).ok()).filter(|v| (1..=MAX_CPUS).contains(v));
            options.cpus = Some(cpus.ok_or("expected 1 to 8 vCPUs")?);
        }
        "crashtest" => {
            let cpu = parse_decimal(value).and_then(|v| u8::try_from(v).ok()).filter(|&v| v < MAX_CPUS);
            options.crash_test = Some(cpu.ok_or("expected a vCPU, 0 to 7")?);
        }
        _ => return Err(
            "unknown unifw option (eth0..eth7, log, panic, offload, eventidx, path, profile, stats, busypoll, cpus, crashtest)",
        ),
    }
    Ok(())
}

/// `no` (false) or `yes` (true) of the two words, else `error`.
fn parse_choice(value: &str, (no, yes): (&str, &str), error: &'static str) -> Result<bool, &'static str> {
    if value == no {
        Ok(false)
    } else if value == yes {
        Ok(true)
    } else {
        Err(error)
    }
}

fn parse_interface(value: &str) -> Result<IfOverride, &'static str> {
    match value {
        "dhcp" => return Ok(IfOverride::Dhcp),
        "off" => return Ok(IfOverride::Off),
        _ => {}
    }
    let (addr, prefix) =
        value.split_once('/').ok_or("expected ADDRESS/PREFIX (like 10.1.0.1/24), dhcp or off; interface left down")?;
    let addr = parse_ipv4(addr).ok_or("bad IPv4 address; interface left down")?;
    let prefix_len =
        parse_decimal(prefix).filter(|p| *p <= 32).ok_or("prefix length must be 0..32; interface left down")?;
    Ok(IfOverride::Static(Cidr { addr, prefix_len: prefix_len as u8 }))
}

fn parse_log_level(value: &str) -> Result<LogLevel, &'static str> {
    Ok(match value {
        "off" => LogLevel::Off,
        "error" => LogLevel::Error,
        "warn" => LogLevel::Warn,
        "info" => LogLevel::Info,
        "debug" => LogLevel::Debug,
        "trace" => LogLevel::Trace,
        _ => return Err("expected off, error, warn, info, debug or trace"),
    })
}

fn parse_mmio_device(spec: &str) -> Result<MmioDevice, &'static str> {
    const BAD: &str = "expected SIZE@BASE:IRQ";
    let (size, rest) = spec.split_once('@').ok_or(BAD)?;
    let (base, irq) = rest.split_once(':').ok_or(BAD)?;
    let size = parse_size(size).ok_or(BAD)?;
    let base = parse_number(base).ok_or(BAD)?;
    let irq = parse_decimal(irq).and_then(|v| u32::try_from(v).ok()).ok_or(BAD)?;
    Ok(MmioDevice { base, size, irq })
}

/// A size with an optional K/M/G suffix, as Linux's `memparse`.
fn parse_size(s: &str) -> Option<u64> {
    let (digits, shift) = match s.as_bytes().last()? {
        b'K' | b'k' => (&s[..s.len() - 1], 10),
        b'M' | b'm' => (&s[..s.len() - 1], 20),
        b'G' | b'g' => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    parse_number(digits)?.checked_mul(1 << shift)
}

fn parse_number(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) if !hex.is_empty() => u64::from_str_radix(hex, 16).ok(),
        Some(_) => None,
        None => parse_decimal(s).map(|v| v as u64),
    }
}

fn parse_decimal(s: &str) -> Option<usize> {
    if s.is_empty() || s.len() > 12 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses a MAC address written as six two-digit hex bytes separated by
/// colons (`52:54:00:12:34:56`, either case).
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for byte in &mut mac {
        let part = parts.next()?;
        if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Parses dotted-quad IPv4 into a host-order `u32`.
pub fn parse_ipv4(s: &str) -> Option<u32> {
    let mut parts = s.split('.');
    let mut addr = 0u32;
    for _ in 0..4 {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        addr = (addr << 8) | u32::from(part.parse::<u8>().ok()?);
    }
    parts.next().is_none().then_some(addr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn parse_all(line: &str) -> (Options, Vec<String>) {
        let mut errors = vec![];
        let options = parse(line, |e| errors.push(e.to_string()));
        (options, errors)
    }

    #[test]
    fn interfaces_log_panic() {
        let (o, e) = parse_all("console=ttyS0 unifw.eth0=10.1.0.1/24 unifw.eth2=dhcp unifw.eth1=off unifw.log=debug unifw.panic=reset unifw.offload=off unifw.eventidx=off");
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(o.interfaces[0], Some(IfOverride::Static(Cidr { addr: 0x0a01_0001, prefix_len: 24 })));
        assert_eq!(o.interfaces[1], Some(IfOverride::Off));
        assert_eq!(o.interfaces[2], Some(IfOverride::Dhcp));
        assert_eq!(o.interfaces[3], None);
        assert_eq!(o.log_level, Some(LogLevel::Debug));
        assert_eq!(o.panic_reset, Some(true));
        assert_eq!(o.offload, Some(false));
        assert_eq!(o.event_idx, Some(false));
        let (o, e) = parse_all("unifw.profile=on unifw.profile=yes unifw.path=bounce unifw.path=none");
        assert_eq!((o.profile, o.bounce, e.len()), (Some(true), Some(true), 2));
        let (o, e) = parse_all("unifw.stats=5 unifw.stats=x unifw.busypoll=20000 unifw.busypoll=-1");
        assert_eq!((o.stats_seconds, o.busy_poll_us, e.len()), (Some(5), Some(20000), 2));
        let (o, e) = parse_all("unifw.cpus=2 unifw.cpus=0 unifw.cpus=9 unifw.cpus=two");
        assert_eq!((o.cpus, e.len()), (Some(2), 3));
        let (o, e) = parse_all("unifw.crashtest=1 unifw.crashtest=8 unifw.crashtest=x");
        assert_eq!((o.crash_test, e.len()), (Some(1), 2));
        assert_eq!(parse_all("unifw.crashtest=0").0.crash_test, Some(0));
    }

    #[test]
    fn bad_interface_values_leave_the_nic_down_and_say_why() {
        for bad in ["10.1.0.1/33", "10.1.0.256/24", "10.1.0/24", "10.1.0.1", "fish", "1.2.3.4/", "01234.1.1.1/8"] {
            let (o, e) = parse_all(&format!("unifw.eth1={bad}"));
            assert_eq!(o.interfaces[1], Some(IfOverride::Off), "{bad}");
            assert_eq!(e.len(), 1, "{bad}");
            assert!(e[0].contains(bad) && e[0].contains("left down"), "{}", e[0]);
        }
    }

    #[test]
    fn unknown_keys_and_interfaces_are_errors() {
        let (o, e) = parse_all(
            "unifw.eth8=dhcp unifw.ethx=dhcp unifw.colour=blue unifw.log=loud unifw.panic \
             unifw.offload=maybe",
        );
        assert_eq!(e.len(), 6, "{e:?}");
        assert_eq!(o, Options::default());
    }

    #[test]
    fn mtus() {
        let (o, e) = parse_all("unifw.eth1.mtu=1400 unifw.eth0.mtu=9000 unifw.eth2.mtu=68");
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(o.mtus[..3], [Some(9000), Some(1400), Some(68)]);
        assert_eq!(o.interfaces, [None; MAX_NICS], "an MTU leaves the address alone");
        for bad in ["67", "9001", "", "1e3", "99999999"] {
            let (o, e) = parse_all(&format!("unifw.eth1.mtu={bad}"));
            assert_eq!((o.mtus[1], o.interfaces[1]), (None, None), "{bad}");
            assert!(e.len() == 1 && e[0].contains("68 to 9000"), "{e:?}");
        }
    }

    #[test]
    fn mac_bindings() {
        let (o, e) = parse_all("unifw.eth0.mac=52:54:00:12:34:5F unifw.eth7.mac=02:00:00:00:00:01");
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(o.macs[0], Some([0x52, 0x54, 0, 0x12, 0x34, 0x5f]));
        assert_eq!(o.macs[7], Some([2, 0, 0, 0, 0, 1]));
        assert_eq!(o.interfaces, [None; MAX_NICS], "a binding leaves the address alone");
        // A bad or group MAC: a message, and that name is left down.
        for bad in
            ["52:54:00:12:34", "52:54:00:12:34:56:78", "5:54:00:12:34:56", "zz:54:00:12:34:56", "01:00:5e:00:00:01"]
        {
            let (o, e) = parse_all(&format!("unifw.eth1.mac={bad}"));
            assert_eq!((o.macs[1], o.interfaces[1]), (None, Some(IfOverride::Off)), "{bad}");
            assert!(e.len() == 1 && e[0].contains(bad) && e[0].contains("left down"), "{e:?}");
        }
        let (o, e) = parse_all("unifw.eth8.mac=52:54:00:12:34:56 unifw.eth1.colour=blue");
        assert_eq!((e.len(), o), (2, Options::default()));
    }

    #[test]
    fn microvm_devices() {
        let (o, e) = parse_all("virtio_mmio.device=512@0xfeb00e00:12 virtio_mmio.device=4K@0xfeb00c00:35");
        assert!(e.is_empty());
        assert_eq!(
            o.mmio_devices,
            vec![
                MmioDevice { base: 0xfeb0_0e00, size: 512, irq: 12 },
                MmioDevice { base: 0xfeb0_0c00, size: 4096, irq: 35 }
            ]
        );
        let (_, e) = parse_all("virtio_mmio.device=512@0xfeb00e00 virtio_mmio.device=x@0x0:1");
        assert_eq!(e.len(), 2);
    }

    #[test]
    fn ipv4() {
        assert_eq!(parse_ipv4("255.255.255.255"), Some(u32::MAX));
        assert_eq!(parse_ipv4("0.0.0.0"), Some(0));
        assert_eq!(parse_ipv4("1.2.3.4.5"), None);
        assert_eq!(parse_ipv4("1.2.3.-4"), None);
        assert_eq!(parse_ipv4("+1.2.3.4"), None);
    }
}
