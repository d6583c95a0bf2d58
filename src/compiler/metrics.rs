//! Checks of the `metrics` statement: the scrape is local traffic, so the
//! input chain must let it in like any other; a ruleset that would drop it
//! compiles, with a warning.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use unifw_core::flow::{proto, Action, Chain, CtState, PacketKey, NO_IF};
use unifw_core::image::IfAddr;

use super::ast::Ruleset;
use super::diag::Diagnostic;
use super::names::{dotted, prefix_text};

/// The source port of the connection the check imagines (an ephemeral one).
const CLIENT_PORT: u16 = 49152;

/// A warning for each `metrics` statement whose first allowed source would
/// not get a new TCP connection to the port through the input chain: its
/// first address (the first host address for prefixes up to /30), to the
/// interface's static address (0.0.0.0 for DHCP), from port 49152.
pub fn input_warnings(set: &Ruleset) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for m in &set.metrics {
        let Some(first) = m.from.first() else { continue };
        let src = if first.len <= 30 { first.addr | 1 } else { first.addr };
        let own = set.interfaces.iter().find(|i| i.index == m.interface).map(|i| i.addr);
        let dst = match own {
            Some(IfAddr::Static(cidr)) => cidr.addr,
            _ => 0,
        };
        let key = PacketKey {
            proto: proto::TCP,
            src,
            dst,
            src_port: CLIENT_PORT,
            dst_port: m.port,
            icmp_type: 0,
            icmp_code: 0,
            in_if: m.interface,
            out_if: NO_IF,
            state: CtState::New,
            extra: Default::default(),
        };
        let verdict = set.classify_linear(Chain::Input, &key);
        let verb = match verdict.action {
            Action::Accept => continue,
            Action::Drop => "drops",
            Action::Reject(_) => "rejects",
        };
        let file_of = |index: u16| set.files.get(usize::from(index)).map_or("?", String::as_str);
        let by = match verdict.rule.and_then(|r| set.rules.get(r as usize)) {
            Some(rule) => format!("the rule at {}:{}", file_of(rule.file), rule.line),
            None => String::from("the input policy"),
        };
        let sources: Vec<String> = m.from.iter().map(prefix_text).collect();
        let (eth, port) = (m.interface, m.port);
        let msg = format!(
            "warning: metrics on eth{eth} port {port}: the input chain {verb} a new TCP connection from {} \
             ({by}); allow the scrapes, e.g. `input accept tcp in eth{eth} dport {port} from {}`",
            dotted(src),
            sources.join(",")
        );
        out.push(Diagnostic::plain(file_of(m.file), m.line, m.column, msg));
    }
    out
}

#[cfg(test)]
mod tests {
    use alloc::string::ToString;
    use alloc::vec::Vec;

    use unifw_core::image::{Image, MetricsSource};
    use unifw_core::net::addr::Cidr;

    fn compile(text: &str) -> crate::Compiled {
        crate::compile("m.rules", text.as_bytes(), &mut |p| Err(p.into())).expect("compiles")
    }

    const LAB: &str = "interface eth0 10.1.0.1/24\ninterface eth2 dhcp\npolicy input drop\n";

    #[test]
    fn sources_reach_the_image_one_record_per_prefix() {
        let c =
            compile(&alloc::format!("{LAB}metrics eth2 from 10.3.0.0/24, 10.1.0.2\nmetrics eth0 port 8080 from any\n"));
        let image = Image::from_bytes(&c.image).expect("valid");
        let got: Vec<MetricsSource> = image.metrics_sources().collect();
        let source =
            |interface, port, addr, prefix_len| MetricsSource { interface, port, from: Cidr { addr, prefix_len } };
        assert_eq!(got, [source(2, 9100, 0x0a03_0000, 24), source(2, 9100, 0x0a01_0002, 32), source(0, 8080, 0, 0)]);
        let none = compile(LAB);
        assert_eq!(Image::from_bytes(&none.image).expect("valid").metrics_sources().count(), 0);
    }

    #[test]
    fn an_input_chain_that_refuses_the_scrape_is_a_warning() {
        let c = compile(&alloc::format!("{LAB}metrics eth0 port 9100 from 10.1.0.0/24\n"));
        assert_eq!(c.warnings.len(), 1);
        let w = c.warnings[0].to_string();
        assert!(w.starts_with("m.rules:4:1: warning: metrics on eth0 port 9100: the input chain drops"), "{w}");
        assert!(w.contains("from 10.1.0.1 (the input policy)"), "{w}");
        assert!(w.contains("`input accept tcp in eth0 dport 9100 from 10.1.0.0/24`"), "{w}");
        let by_rule = compile(&alloc::format!("{LAB}input reject tcp dport 9000-9200\nmetrics eth0 from 10.1.0.2\n"));
        let w = by_rule.warnings[0].to_string();
        assert!(w.contains("rejects a new TCP connection from 10.1.0.2 (the rule at m.rules:4)"), "{w}");
        let allowed = compile(&alloc::format!(
            "{LAB}input accept tcp in eth0 dport 9100 from 10.1.0.2\nmetrics eth0 from 10.1.0.2\n"
        ));
        assert!(allowed.warnings.is_empty(), "{:?}", allowed.warnings);
    }

    #[test]
    fn the_statement_prints_back() {
        let c = compile(&alloc::format!("{LAB}metrics eth2 from 10.3.0.0/24,10.1.0.2 port 9200\n"));
        let text = crate::render(&c.ruleset, crate::Format::Unifw).expect("renders");
        assert!(text.contains("metrics eth2 port 9200 from 10.3.0.0/24,10.1.0.2\n"), "{text}");
        assert_eq!(
            compile(&text).ruleset.metrics,
            c.ruleset.metrics.iter().map(|m| crate::Metrics { line: 5, ..m.clone() }).collect::<Vec<_>>()
        );
        assert!(crate::render(&c.ruleset, crate::Format::Iptables).is_err());
    }
}
