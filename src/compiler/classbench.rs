//! Converts ClassBench filter sets into native rules.
//!
//! ClassBench has no actions: line `i` (1-based) gets accept, drop or reject
//! from a fixed hash of `i` (1/2, 3/8, 1/8). Its flags column holds TCP
//! flags, which unifw does not match (it matches connection state); the
//! column is dropped, which only widens TCP rules and is the same for the
//! compiled tables and the reference. A wildcard protocol with port ranges
//! becomes `proto tcp,udp`, since only those protocols have ports.

use alloc::format;
use alloc::string::String;

use super::names::prefix;

fn field<'a>(it: &mut impl Iterator<Item = &'a str>, line: usize) -> Result<&'a str, String> {
    it.next().ok_or_else(|| format!("line {line}: missing field"))
}

/// The action of ClassBench line `line` (1-based).
pub fn classbench_action(line: usize) -> &'static str {
    match ((line as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 61) as u8 {
        0..=3 => "accept",
        4..=6 => "drop",
        _ => "reject",
    }
}

/// The native rules file for a ClassBench filter set (forward chain, policy drop).
pub fn classbench_to_native(text: &str) -> Result<String, String> {
    let mut out = String::from("# converted from ClassBench (see src/rules/classbench.rs)\npolicy forward drop\n");
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let l = line.trim_start_matches('@');
        let mut it = l.split_whitespace();
        let src = field(&mut it, i + 1)?;
        let dst = field(&mut it, i + 1)?;
        let mut ports = [0u32; 4];
        for p in &mut ports {
            let v = field(&mut it, i + 1)?;
            *p = v.parse().map_err(|_| format!("line {}: bad port `{v}`", i + 1))?;
            if v != ":" && it.clone().next() == Some(":") {
                it.next();
            }
        }
        let proto = field(&mut it, i + 1)?;
        let (pv, pm) = proto.split_once('/').ok_or_else(|| format!("line {}: bad protocol `{proto}`", i + 1))?;
        let pv =
            u8::from_str_radix(pv.trim_start_matches("0x"), 16).map_err(|_| format!("line {}: bad protocol", i + 1))?;
        let pm = u8::from_str_radix(pm.trim_start_matches("0x"), 16)
            .map_err(|_| format!("line {}: bad protocol mask", i + 1))?;
        for p in [src, dst] {
            prefix(p).map_err(|e| format!("line {}: {e}", i + 1))?;
        }
        let full_ports = ports[0] == 0 && ports[1] == 65535 && ports[2] == 0 && ports[3] == 65535;
        let proto_text = match (pm, full_ports) {
            (0, true) => String::new(),
            (0, false) => String::from(" proto tcp,udp"),
            (0xff, _) => format!(" proto {pv}"),
            _ => return Err(format!("line {}: partial protocol mask", i + 1)),
        };
        let port_ok = pm == 0 || pv == 6 || pv == 17;
        let mut rule = format!("forward {}{proto_text} from {src} to {dst}", classbench_action(i + 1));
        if !full_ports && port_ok {
            let range = |a: u32, b: u32| {
                if a == b {
                    format!("{a}")
                } else {
                    format!("{a}-{b}")
                }
            };
            rule.push_str(&format!(" sport {} dport {}", range(ports[0], ports[1]), range(ports[2], ports[3])));
        }
        out.push_str(&rule);
        out.push('\n');
    }
    Ok(out)
}
