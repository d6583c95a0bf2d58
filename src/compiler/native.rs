//! Parser for the native rules language (see rules/README.md).

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use unifw_core::flow::{proto, Action, Chain, RejectWith};

use super::ast::{
    state_bit, AddrMatch, IcmpMatch, IfMatch, Jump, Metrics, PortMatch, Prefix, ProtoMatch, Rule, ANY_STATE,
    METRICS_DEFAULT_PORT,
};
use super::diag::Diagnostic;
use super::iptables_nat;
use super::lexer::{utf8_len, Kind, Lexer, Token};
use super::limits::{quote, MAX_LIST_ADDRESSES};
use super::names;
use super::source::{self, Ctx};
use unifw_core::image::format::{NatKind, NatRecord};
use unifw_core::image::{Fallback, IfAddr, InterfaceSpec, RouteSpec, DEFAULT_FALLBACK_SECONDS, MAX_MTU, MIN_MTU};
use unifw_core::net::addr::Cidr;
use unifw_core::net::conntrack::{bytes_per_flow, MAX_CONNTRACK};
use unifw_core::net::ReversePathFilter;

/// An error has been recorded; skip the rest of the statement.
struct Fail;

/// An item of an address list: one prefix, or a named set (and where).
enum Item {
    One(Prefix, Token),
    Set(Arc<[Prefix]>, Token),
}

type R<T> = Result<T, Fail>;

struct Parser<'a, 'c, 'l> {
    lx: Lexer<'a>,
    tok: Token,
    src: &'a [u8],
    name: &'a str,
    file: u16,
    depth: u32,
    ctx: &'c mut Ctx<'l>,
}

/// Parses a native file into `ctx`; returns the number of statements.
pub fn parse(ctx: &mut Ctx, file: u16, name: &str, src: &[u8], depth: u32) -> usize {
    let mut lx = Lexer::new(src);
    let tok = lx.next_token();
    let mut p = Parser { lx, tok, src, name, file, depth, ctx };
    let (mut statements, mut good) = (0, 0);
    loop {
        match p.tok.kind {
            Kind::Eof => break,
            // Past MAX_ERRORS nothing more is reported: stop, in linear time.
            _ if p.ctx.diags.is_full() => break,
            Kind::Newline => p.bump(),
            _ => {
                statements += 1;
                let first = p.tok;
                match p.statement() {
                    Ok(()) => good += 1,
                    // An included file whose first statement fails is likely
                    // not rules at all (`/etc/shadow`): one error, not its lines.
                    Err(Fail) if depth > 0 && good == 0 => {
                        let msg = format!("`{name}` does not look like a rules file: stopped reading it here");
                        let column = (first.start - first.line_start) as u32 + 1;
                        p.ctx.diags.push(Diagnostic::plain(name, first.line, column, msg));
                        break;
                    }
                    Err(Fail) => p.skip_line(),
                }
            }
        }
    }
    statements
}

impl<'a> Parser<'a, '_, '_> {
    fn bump(&mut self) {
        self.tok = self.lx.next_token();
    }

    fn text(&self) -> &'a str {
        self.lx.text(&self.tok)
    }

    fn diag(&self, t: &Token, msg: String) -> Diagnostic {
        Diagnostic::at(self.name, self.src, t.line, t.line_start, t.start, msg)
    }

    fn fail<T>(&mut self, msg: String) -> R<T> {
        let t = self.tok;
        self.fail_at(&t, msg)
    }

    fn fail_at<T>(&mut self, t: &Token, msg: String) -> R<T> {
        let d = self.diag(t, msg);
        self.ctx.diags.push(d);
        Err(Fail)
    }

    fn skip_line(&mut self) {
        while !matches!(self.tok.kind, Kind::Newline | Kind::Eof) {
            self.bump();
        }
    }

    fn describe(&self) -> String {
        match self.tok.kind {
            Kind::Eof => "end of file".into(),
            Kind::Newline => "end of line".into(),
            Kind::Bad => {
                let b = self.lx.bytes(&self.tok);
                match utf8_len(b) {
                    Some(_) => {
                        format!("`{}` (rules are ASCII outside comments)", core::str::from_utf8(b).unwrap_or("?"))
                    }
                    None => format!("byte 0x{:02x} (not UTF-8)", b.first().copied().unwrap_or(0)),
                }
            }
            Kind::Unterminated => "a string without its closing quote".into(),
            _ => format!("`{}`", self.text()),
        }
    }

    fn unexpected<T>(&mut self, wanted: &str) -> R<T> {
        let msg = format!("expected {wanted}, found {}", self.describe());
        self.fail(msg)
    }

    fn word(&mut self, wanted: &str) -> R<(&'a str, Token)> {
        if self.tok.kind != Kind::Word {
            return self.unexpected(wanted);
        }
        let (t, s) = (self.tok, self.text());
        self.bump();
        Ok((s, t))
    }

    fn is_word(&self, w: &str) -> bool {
        self.tok.kind == Kind::Word && self.text() == w
    }

    fn eat_bang(&mut self) -> bool {
        let b = self.tok.kind == Kind::Bang;
        if b {
            self.bump();
        }
        b
    }

    /// Applies `f` to the text of a word, reporting its error at the word.
    fn value<T>(&mut self, wanted: &str, f: impl FnOnce(&str) -> Result<T, String>) -> R<T> {
        let (s, t) = self.word(wanted)?;
        match f(s) {
            Ok(v) => Ok(v),
            Err(e) => self.fail_at(&t, e),
        }
    }

    fn end_of_statement(&mut self) -> R<()> {
        match self.tok.kind {
            Kind::Newline | Kind::Eof => Ok(()),
            _ => self.unexpected("end of line"),
        }
    }

    fn statement(&mut self) -> R<()> {
        let (kw, t) = self.word(
            "a statement (interface, wire, route, policy, conntrack, set, include, metrics, input, forward, output, snat, masquerade, dnat)",
        )?;
        match kw {
            "interface" => self.interface(&t)?,
            "wire" => self.wire(&t)?,
            "route" => self.route()?,
            "policy" => self.policy()?,
            "conntrack" => self.conntrack()?,
            "set" => self.set_def()?,
            "include" => self.include()?,
            "metrics" => self.metrics(&t)?,
            "input" => self.rule(Chain::Input, &t)?,
            "forward" => self.rule(Chain::Forward, &t)?,
            "output" => self.rule(Chain::Output, &t)?,
            "snat" | "masquerade" | "dnat" => self.nat_rule(kw, &t)?,
            _ => {
                let msg = format!("unknown statement `{kw}` (expected interface, wire, route, policy, conntrack, set, include, metrics, input, forward, output, snat, masquerade or dnat)");
                return self.fail_at(&t, msg);
            }
        }
        self.end_of_statement()
    }

    /// `interface NAME [mac MAC] (ADDR/LEN | dhcp [fallback ADDR/LEN [after SECONDS]] | none) [mtu BYTES]`.
    fn interface(&mut self, kw: &Token) -> R<()> {
        let (name, nt) = self.word("an interface name like eth0")?;
        let index = names::interface(name).or_else(|e| self.fail_at(&nt, e))?;
        let mac = if self.is_word("mac") {
            self.bump();
            let (text, mt) = self.word("a MAC address like 52:54:00:12:34:56")?;
            let mac = names::mac(text).or_else(|e| self.fail_at(&mt, e))?;
            if let Some(other) = self.ctx.set.interfaces.iter().find(|i| i.mac == Some(mac)) {
                let msg = format!("MAC {} is already bound to eth{}", names::mac_text(&mac), other.index);
                return self.fail_at(&mt, msg);
            }
            Some(mac)
        } else {
            None
        };
        if mac.is_some() && self.is_word("mac") {
            let t = self.tok;
            return self.fail_at(&t, "`mac` is given twice".into());
        }
        let (spec, st) = self.word("an address like 10.1.0.1/24, `dhcp` or `none`")?;
        let addr = match spec {
            "dhcp" => IfAddr::Dhcp,
            "none" => IfAddr::Unconfigured,
            _ => IfAddr::Static(self.interface_address(spec, &st)?),
        };
        let fallback = if self.is_word("fallback") {
            let ft = self.tok;
            self.bump();
            if addr != IfAddr::Dhcp {
                return self.fail_at(&ft, "only a `dhcp` interface has a fallback address".into());
            }
            Some(self.fallback()?)
        } else {
            None
        };
        let (mtu, reverse_path, aliases) = self.interface_options()?;
        if self.ctx.set.interfaces.iter().any(|i| i.index == index && i.wire_peer.is_some()) {
            let msg = format!(
                "{name} is already a wire side; declare `interface {name} none ...` before the `wire` statement"
            );
            return self.fail_at(kw, msg);
        }
        if self.ctx.declared_ifs & (1 << index) != 0 {
            return self.fail_at(kw, format!("interface {name} is declared twice"));
        }
        self.ctx.declared_ifs |= 1 << index;
        self.ctx.if_names.extend(aliases.into_iter().map(|a| (a, index)));
        self.ctx.set.interfaces.push(InterfaceSpec { index, addr, mac, fallback, mtu, reverse_path, wire_peer: None });
        self.ctx.set.interfaces.sort_by_key(|i| i.index);
        Ok(())
    }

    /// `wire NAME NAME`: a bump-in-the-wire pair of address-less
    /// interfaces (declared `none` before, or declared here).
    fn wire(&mut self, kw: &Token) -> R<()> {
        let mut sides = [0u8; 2];
        for side in &mut sides {
            let (name, nt) = self.word("an interface name like eth1")?;
            *side = names::interface(name).or_else(|e| self.fail_at(&nt, e))?;
        }
        let [a, b] = sides;
        if a == b {
            return self.fail_at(kw, format!("a wire pairs two interfaces, not eth{a} with itself"));
        }
        for (side, peer) in [(a, b), (b, a)] {
            let existing = self.ctx.set.interfaces.iter().find(|i| i.index == side).copied();
            if let Some(paired) = existing.and_then(|i| i.wire_peer) {
                return self.fail_at(kw, format!("eth{side} is already in a wire pair with eth{paired}"));
            }
            if existing.is_some_and(|i| i.addr != IfAddr::Unconfigured) {
                let msg = format!("eth{side} has an address: a wire side has none (`interface eth{side} none`)");
                return self.fail_at(kw, msg);
            }
            if self.ctx.set.metrics.iter().any(|m| m.interface == side) {
                return self.fail_at(kw, format!("eth{side} serves metrics: a wire side has no address"));
            }
            let spec = existing.unwrap_or_else(|| InterfaceSpec::new(side, IfAddr::Unconfigured));
            self.ctx.set.interfaces.retain(|i| i.index != side);
            self.ctx.set.interfaces.push(InterfaceSpec { wire_peer: Some(peer), ..spec });
            self.ctx.declared_ifs |= 1 << side;
        }
        self.ctx.set.interfaces.sort_by_key(|i| i.index);
        Ok(())
    }

    /// An interface's `ADDR/LEN` (host bits allowed: it is an address).
    fn interface_address(&mut self, spec: &str, at: &Token) -> R<Cidr> {
        let parsed = spec
            .split_once('/')
            .ok_or_else(|| "an interface address needs a prefix length, like 10.1.0.1/24".into())
            .and_then(|(a, l)| {
                Ok::<_, String>((
                    names::ipv4(a)?,
                    names::number(l, 32).map_err(|_| format!("bad prefix length `/{l}` (0-32)"))?,
                ))
            });
        let (addr, len) = parsed.or_else(|e| self.fail_at(at, e))?;
        Ok(Cidr { addr, prefix_len: len as u8 })
    }

    /// An interface's options after its address, in any order: `mtu
    /// BYTES` and `rpfilter strict|loose|off` at most once, `name NAME,...`
    /// any number of times.
    fn interface_options(&mut self) -> R<(Option<u16>, ReversePathFilter, Vec<String>)> {
        let (mut mtu, mut reverse_path, mut aliases) = (None, None, Vec::new());
        loop {
            let t = self.tok;
            if self.is_word("name") {
                self.bump();
                for alias in self.list("an interface name like wan0", |s| Ok(String::from(s)))? {
                    self.interface_alias(&alias, &t, &mut aliases)?;
                }
            } else if self.is_word("mtu") && mtu.is_none() {
                self.bump();
                mtu = Some(self.mtu()?);
            } else if self.is_word("rpfilter") && reverse_path.is_none() {
                self.bump();
                reverse_path = Some(self.reverse_path()?);
            } else if self.is_word("mtu") || self.is_word("rpfilter") {
                return self.fail_at(&t, "this interface option is given twice".into());
            } else {
                return Ok((mtu, reverse_path.unwrap_or_default(), aliases));
            }
        }
    }

    /// Checks one `name` of an interface (Linux's rules, unique across
    /// interfaces) and adds it to `aliases`.
    fn interface_alias(&mut self, alias: &str, at: &Token, aliases: &mut Vec<String>) -> R<()> {
        if let Err(e) = super::ifnames::check_alias(alias) {
            return self.fail_at(at, e);
        }
        if let Some((_, i)) = self.ctx.if_names.iter().find(|(a, _)| a == alias) {
            return self.fail_at(at, format!("interface name `{alias}` already names eth{i}"));
        }
        if aliases.iter().any(|a| a == alias) {
            return self.fail_at(at, format!("interface name `{alias}` is given twice"));
        }
        aliases.push(alias.into());
        Ok(())
    }

    /// After `rpfilter`: strict, loose or off.
    fn reverse_path(&mut self) -> R<ReversePathFilter> {
        let (mode, mt) = self.word("a reverse-path filter mode: strict, loose or off")?;
        match mode {
            "strict" => Ok(ReversePathFilter::Strict),
            "loose" => Ok(ReversePathFilter::Loose),
            "off" => Ok(ReversePathFilter::Off),
            _ => self.fail_at(&mt, format!("unknown reverse-path filter mode `{mode}` (strict, loose or off)")),
        }
    }

    /// After `mtu`: the interface's MTU in bytes, [`MIN_MTU`]..=[`MAX_MTU`]
    /// (the receive and transmit buffers hold a 9000-byte packet).
    fn mtu(&mut self) -> R<u16> {
        let (text, t) = self.word("an MTU in bytes, like 1500")?;
        let mtu = names::number(text, u32::from(MAX_MTU)).ok().filter(|&n| n >= u32::from(MIN_MTU));
        match mtu {
            Some(mtu) => Ok(mtu as u16),
            None => self.fail_at(&t, format!("bad MTU `{text}`: {MIN_MTU} to {MAX_MTU} bytes")),
        }
    }

    /// After `fallback`: `ADDR/LEN [after SECONDS]`.
    fn fallback(&mut self) -> R<Fallback> {
        let (spec, st) = self.word("a fallback address like 10.3.0.5/24")?;
        let addr = self.interface_address(spec, &st)?;
        let mut after_seconds = DEFAULT_FALLBACK_SECONDS;
        if self.is_word("after") {
            self.bump();
            let (text, tt) = self.word("seconds, like 10 or 10s")?;
            let digits = text.strip_suffix('s').unwrap_or(text);
            let seconds = names::number(digits, 255).ok().filter(|&n| n >= 1);
            let Some(seconds) = seconds else {
                return self.fail_at(&tt, format!("bad fallback delay `{text}`: 1 to 255 seconds"));
            };
            after_seconds = seconds as u8;
        }
        Ok(Fallback { addr, after_seconds })
    }

    fn route(&mut self) -> R<()> {
        let dest = if self.is_word("default") {
            self.bump();
            Prefix::new(0, 0)
        } else {
            self.value("a destination prefix like 10.9.0.0/16 or `default`", names::prefix)?
        };
        let (via, vt) = self.word("`via`")?;
        if via != "via" {
            return self.fail_at(&vt, format!("expected `via`, found `{via}`"));
        }
        let gateway = self.value("a gateway address", names::ipv4)?;
        self.ctx.set.routes.push(RouteSpec { dest: dest.addr, prefix_len: dest.len, gateway });
        Ok(())
    }

    fn policy(&mut self) -> R<()> {
        let (c, ct) = self.word("a chain (input, forward or output)")?;
        let chain = match c {
            "input" => Chain::Input,
            "forward" => Chain::Forward,
            "output" => Chain::Output,
            _ => return self.fail_at(&ct, format!("unknown chain `{c}` (input, forward or output)")),
        };
        let mut action = self.action()?;
        if let Action::Reject(_) = action {
            if self.is_word("with") {
                self.bump();
                action = Action::Reject(self.value("a reject kind", names::reject_with)?);
            }
        }
        self.ctx.set.set_policy(chain, action);
        Ok(())
    }

    fn action(&mut self) -> R<Action> {
        let (a, at) = self.word("an action (accept, drop or reject)")?;
        Ok(match a {
            "accept" => Action::Accept,
            "drop" => Action::Drop,
            "reject" => Action::Reject(RejectWith::PortUnreachable),
            _ => return self.fail_at(&at, format!("unknown action `{a}` (accept, drop or reject)")),
        })
    }

    fn conntrack(&mut self) -> R<()> {
        let (m, mt) = self.word("`max`")?;
        if m != "max" {
            return self.fail_at(&mt, format!("expected `max`, found `{m}`"));
        }
        let n = self.value("a table size", |s| {
            let n = names::number(s, u32::MAX).map_err(|_| format!("expected a number, found `{s}`"))?;
            if n > MAX_CONNTRACK {
                let mib = |n: u32| (n as usize * bytes_per_flow()) >> 20;
                return Err(format!(
                    "conntrack max {n} needs about {} MiB of guest memory; at most {MAX_CONNTRACK} flows ({} MiB)",
                    mib(n),
                    mib(MAX_CONNTRACK)
                ));
            }
            Ok(n)
        })?;
        self.ctx.set.conntrack_max = n.max(1);
        Ok(())
    }

    fn include(&mut self) -> R<()> {
        if self.tok.kind != Kind::Str {
            return self.unexpected("a quoted file name");
        }
        let (t, path) = (self.tok, String::from(self.text()));
        self.bump();
        self.end_of_statement()?;
        let (name, src, depth) = (self.name, self.src, self.depth);
        let at = |m: String| Diagnostic::at(name, src, t.line, t.line_start, t.start, m);
        source::include(self.ctx, name, &path, depth, &at);
        Ok(())
    }

    /// `metrics IFACE [port N] from SOURCES`, `port` and `from` in either order.
    fn metrics(&mut self, kw: &Token) -> R<()> {
        let (name, nt) = self.word("an interface name like eth2")?;
        let interface = names::interface(name).or_else(|e| self.fail_at(&nt, e))?;
        if self.ctx.declared_ifs & (1 << interface) == 0 {
            let msg = format!("unknown interface {name} (declare it first with `interface {name} ...`)");
            return self.fail_at(&nt, msg);
        }
        if self.ctx.set.interfaces.iter().any(|i| i.index == interface && i.wire_peer.is_some()) {
            return self.fail_at(&nt, format!("{name} is a wire side: it has no address to serve metrics on"));
        }
        if self.ctx.set.metrics.iter().any(|m| m.interface == interface) {
            return self.fail_at(kw, format!("metrics on {name} is given twice"));
        }
        let (mut port, mut from) = (None, None);
        while self.tok.kind == Kind::Word && (self.is_word("port") || self.is_word("from")) {
            let (option, ot) = (self.text(), self.tok);
            self.bump();
            if (option == "port" && port.is_some()) || (option == "from" && from.is_some()) {
                return self.fail_at(&ot, format!("`{option}` is given twice"));
            }
            if option == "port" {
                port = Some(self.value("a TCP port like 9100", |s| match names::number(s, 65535) {
                    Ok(0) | Err(_) => Err(format!("bad port `{s}` (1-65535)")),
                    Ok(n) => Ok(n as u16),
                })?);
                continue;
            }
            if self.tok.kind == Kind::Bang {
                return self.fail("`!` is not allowed here: list the sources that may scrape".into());
            }
            let at = self.tok;
            let sources = self.addr_match()?.prefixes;
            if sources.is_empty() {
                return self.fail_at(&at, "the `from` list is empty".into());
            }
            from = Some(sources.to_vec());
        }
        let Some(from) = from else {
            return self.unexpected("`from` and the sources that may scrape (like `from 10.3.0.0/24`), or `port`");
        };
        let column = (kw.start - kw.line_start) as u32 + 1;
        let port = port.unwrap_or(METRICS_DEFAULT_PORT);
        self.ctx.set.metrics.push(Metrics { interface, port, from, file: self.file, line: kw.line, column });
        Ok(())
    }

    fn set_def(&mut self) -> R<()> {
        let (name, nt) = self.word("a set name")?;
        if self.ctx.sets.contains_key(name) {
            return self.fail_at(&nt, format!("set `{name}` is defined twice"));
        }
        if self.tok.kind != Kind::LBrace {
            return self.unexpected("`{`");
        }
        let open = self.tok;
        self.bump();
        let mut items = Vec::new();
        loop {
            match self.tok.kind {
                Kind::RBrace => break,
                Kind::Newline | Kind::Comma => self.bump(),
                Kind::Eof => return self.fail_at(&open, format!("set `{name}`: `{{` is never closed")),
                _ if self.ctx.diags.is_full() => return Err(Fail),
                _ => {
                    // A bad item is reported and skipped; the set goes on.
                    let _ = self.addr_item().and_then(|item| self.push_item(&mut items, item));
                    if !matches!(self.tok.kind, Kind::Comma | Kind::Newline | Kind::RBrace | Kind::Eof) {
                        let _: R<()> = self.unexpected("`,` or `}`");
                        self.bump();
                    }
                }
            }
        }
        self.bump();
        self.ctx.sets.insert(name.into(), items.into());
        Ok(())
    }

    fn addr_item(&mut self) -> R<Item> {
        match self.tok.kind {
            Kind::Var => {
                let (t, name) = (self.tok, self.text());
                self.bump();
                match self.ctx.sets.get(name) {
                    Some(items) => Ok(Item::Set(Arc::clone(items), t)),
                    None => {
                        self.fail_at(&t, format!("unknown set `${}` (sets must be defined before use)", quote(name)))
                    }
                }
            }
            Kind::Word if self.text() == "any" => {
                let t = self.tok;
                self.bump();
                Ok(Item::One(Prefix::new(0, 0), t))
            }
            _ => {
                let t = self.tok;
                Ok(Item::One(self.value("an address, prefix or $set", names::prefix)?, t))
            }
        }
    }

    /// Appends an item to a list being built, within the list and total caps.
    fn push_item(&mut self, out: &mut Vec<Prefix>, item: Item) -> R<()> {
        let (items, at): (&[Prefix], Token) = match &item {
            Item::One(p, t) => (core::slice::from_ref(p), *t),
            Item::Set(s, t) => (s, *t),
        };
        if out.len() + items.len() > MAX_LIST_ADDRESSES {
            let msg = format!("more than {MAX_LIST_ADDRESSES} addresses in one list (a set or a rule's from/to)");
            return self.fail_at(&at, msg);
        }
        if let Err(e) = self.ctx.count_addresses(items.len()) {
            return self.fail_at(&at, e);
        }
        out.extend_from_slice(items);
        Ok(())
    }

    /// `[!] ITEM, ...`; a lone `$set` is shared with the set, not copied.
    fn addr_match(&mut self) -> R<AddrMatch> {
        let negated = self.eat_bang();
        let first = self.addr_item()?;
        if let (Item::Set(shared, at), false) = (&first, self.tok.kind == Kind::Comma) {
            if let Err(e) = self.ctx.count_addresses(shared.len()) {
                return self.fail_at(at, e);
            }
            return Ok(AddrMatch { negated, prefixes: Arc::clone(shared) });
        }
        let mut prefixes = Vec::new();
        self.push_item(&mut prefixes, first)?;
        while self.tok.kind == Kind::Comma {
            self.bump();
            let item = self.addr_item()?;
            self.push_item(&mut prefixes, item)?;
        }
        Ok(AddrMatch { negated, prefixes: prefixes.into() })
    }

    fn list<T>(&mut self, wanted: &str, mut f: impl FnMut(&str) -> Result<T, String>) -> R<Vec<T>> {
        let mut out = alloc::vec![self.value(wanted, &mut f)?];
        while self.tok.kind == Kind::Comma {
            self.bump();
            out.push(self.value(wanted, &mut f)?);
        }
        Ok(out)
    }

    fn rule(&mut self, chain: Chain, first: &Token) -> R<()> {
        let mut rule = Rule::any(chain, self.action()?);
        self.rule_matches(&mut rule, first)?;
        self.ctx.set.rules.push(rule);
        Ok(())
    }

    /// `snat ADDR[-ADDR][:PORT[-PORT]] [random] [persistent] MATCHES`,
    /// `masquerade [ports PORT-PORT] [random] MATCHES` (nat POSTROUTING),
    /// `dnat ADDR[-ADDR][:PORT[-PORT]] MATCHES` (nat PREROUTING).
    fn nat_rule(&mut self, kw: &str, first: &Token) -> R<()> {
        let kind = match kw {
            "snat" => NatKind::Snat,
            "dnat" => NatKind::Dnat,
            _ => NatKind::Masquerade,
        };
        let (addrs, ports) = if kind == NatKind::Masquerade {
            ((0, 0), None)
        } else {
            self.value("an address (or range) like 203.0.113.5, with :PORT or :PORT-PORT", iptables_nat::range)?
        };
        let mut record = NatRecord { kind, addrs, ports, random: false, random_fully: false, persistent: false };
        loop {
            let t = self.tok;
            if self.is_word("random") && !record.random {
                self.bump();
                record.random = true;
            } else if self.is_word("persistent") && kind != NatKind::Masquerade && !record.persistent {
                self.bump();
                record.persistent = true;
            } else if self.is_word("ports") && kind == NatKind::Masquerade && record.ports.is_none() {
                self.bump();
                record.ports = Some(self.value("a port range like 1024-65535", names::port_range)?);
            } else if self.is_word("random") || self.is_word("persistent") || self.is_word("ports") {
                return self.fail_at(&t, format!("`{}` is given twice or does not belong to `{kw}`", self.text()));
            } else {
                break;
            }
        }
        let chain = if kind == NatKind::Dnat { Chain::NatPrerouting } else { Chain::NatPostrouting };
        let mut rule = Rule::any(chain, Action::Accept);
        rule.jump = Some(Jump::Nat(self.ctx.set.nats.len() as u32));
        self.ctx.set.nats.push(record);
        self.rule_matches(&mut rule, first)?;
        if rule.log || rule.out_if.is_some() && kind == NatKind::Dnat || rule.in_if.is_some() && kind != NatKind::Dnat {
            let msg = match kind {
                _ if rule.log => "`log` does not belong to a NAT rule".into(),
                NatKind::Dnat => {
                    "`out` cannot match in dnat: it is decided before the route lookup (as iptables' PREROUTING)".into()
                }
                _ => format!("`in` cannot match in {kw}: it is decided at POSTROUTING (as iptables refuses -i there)"),
            };
            return self.fail_at(first, msg);
        }
        if let Err(e) = iptables_nat::finish(&self.ctx.set, &rule) {
            return self.fail_at(first, e.replace("`-p tcp` or `-p udp`", "`tcp` or `udp`"));
        }
        self.ctx.set.rules.push(rule);
        Ok(())
    }

    /// The matches after a rule's action (or NAT target), checked.
    fn rule_matches(&mut self, rule: &mut Rule, first: &Token) -> R<()> {
        rule.file = self.file;
        rule.line = first.line;
        rule.column = (first.start - first.line_start) as u32 + 1;
        let mut seen = 0u32;
        while self.tok.kind == Kind::Word {
            let (kw, t) = (self.text(), self.tok);
            // Protocol words share one slot, as do `port` and `dport`.
            let group = match kw {
                "udp" | "icmp" | "any" | "proto" => "tcp",
                "port" => "dport",
                k => k,
            };
            let bit = 1u32 << (KEYWORDS.iter().position(|k| *k == group).unwrap_or(31) as u32);
            if seen & bit != 0 && kw != "log" {
                return self.fail_at(&t, format!("`{kw}` is given twice in one rule"));
            }
            seen |= bit;
            self.bump();
            self.rule_match(rule, kw, &t)?;
        }
        self.check_rule(rule, first)
    }

    fn rule_match(&mut self, rule: &mut Rule, kw: &str, t: &Token) -> R<()> {
        match kw {
            "tcp" | "udp" | "icmp" | "any" | "proto" => rule.proto = self.proto(kw, t)?,
            "from" => rule.src = Some(self.addr_match()?),
            "to" => rule.dst = Some(self.addr_match()?),
            "sport" => rule.sport = Some(self.ports()?),
            "dport" | "port" => rule.dport = Some(self.ports()?),
            "type" => rule.icmp = Some(self.icmp()?),
            "in" if rule.chain == Chain::Output => {
                return self.fail_at(t, "`in` in an output rule: the firewall's own traffic arrives on no interface (iptables refuses `-i` in OUTPUT)".into())
            }
            "in" | "out" => {
                let negated = self.eat_bang();
                let mut set = 0u16;
                for name in self.list("an interface name", |s| Ok(String::from(s)))? {
                    set |= self.interface_set(&name, t)?;
                }
                let m = Some(IfMatch { negated, set });
                if kw == "in" {
                    rule.in_if = m
                } else {
                    rule.out_if = m
                }
            }
            "state" => {
                let negated = self.eat_bang();
                let bits = self.list("a state", names::state)?.into_iter().fold(0, |m, s| m | state_bit(s));
                rule.states = if negated { ANY_STATE & !bits } else { bits };
            }
            "log" => rule.log = true,
            "with" => match rule.action {
                Action::Reject(_) => rule.action = Action::Reject(self.value("a reject kind", names::reject_with)?),
                _ => return self.fail_at(t, "`with` belongs to `reject`".into()),
            },
            _ => {
                let msg = format!("unknown match `{kw}` (expected one of: {})", KEYWORDS.join(", "));
                return self.fail_at(t, msg);
            }
        }
        Ok(())
    }

    /// The NICs a name of `in`/`out` stands for: a declared `ethN`, a name
    /// an `interface ... name` gave, or `lo` (none, with a note).
    fn interface_set(&mut self, name: &str, t: &Token) -> R<u16> {
        let set = super::ifnames::lookup(self.ctx, name);
        if set != 0 || name == "lo" {
            let (file, src) = (self.name, self.src);
            let at = |m: String| Diagnostic::at(file, src, t.line, t.line_start, t.start, m);
            return super::ifnames::resolve(self.ctx, name, &at).or_else(|e| self.fail_at(t, e));
        }
        let msg = match names::interface(name) {
            Ok(i) => format!("unknown interface eth{i} (declare it first with `interface eth{i} ...`)"),
            Err(_) => format!("unknown interface `{name}` (declare it first with `interface ethN ... name {name}`)"),
        };
        self.fail_at(t, msg)
    }

    fn proto(&mut self, kw: &str, t: &Token) -> R<ProtoMatch> {
        match kw {
            "any" => Ok(ProtoMatch::Any),
            "proto" => {
                let neg = self.eat_bang();
                let list = self.list("a protocol", names::protocol)?;
                match (neg, list.as_slice()) {
                    (true, [p]) => Ok(ProtoMatch::Not(*p)),
                    (true, _) => self.fail_at(t, "`!` takes a single protocol".into()),
                    _ => Ok(ProtoMatch::OneOf(list)),
                }
            }
            _ => Ok(ProtoMatch::OneOf(alloc::vec![names::protocol(kw).unwrap_or(0)])),
        }
    }

    fn ports(&mut self) -> R<PortMatch> {
        let negated = self.eat_bang();
        Ok(PortMatch { negated, ranges: self.list("a port or range like 80 or 1024-65535", names::port_range)? })
    }

    fn icmp(&mut self) -> R<IcmpMatch> {
        let negated = self.eat_bang();
        let (icmp_type, mut code) = self.value("an ICMP type", names::icmp_type)?;
        if self.is_word("code") {
            self.bump();
            code = Some(self.value("an ICMP code", |s| names::number(s, 255))? as u8);
        }
        Ok(IcmpMatch { negated, icmp_type, code })
    }

    fn check_rule(&mut self, rule: &Rule, first: &Token) -> R<()> {
        if (rule.sport.is_some() || rule.dport.is_some()) && !rule.proto.has_ports() {
            return self.fail_at(first, "port matches need `tcp` or `udp` (or `proto tcp,udp`)".into());
        }
        if rule.icmp.is_some() && !rule.proto.is_icmp() {
            return self.fail_at(first, "`type` needs `icmp`".into());
        }
        if rule.action == Action::Reject(RejectWith::TcpReset)
            && rule.proto != ProtoMatch::OneOf(alloc::vec![proto::TCP])
        {
            return self.fail_at(first, "`reject with tcp-reset` needs `tcp`".into());
        }
        Ok(())
    }
}

/// The words that may follow a rule's action.
const KEYWORDS: &[&str] = &[
    "tcp", "udp", "icmp", "any", "proto", "from", "to", "sport", "dport", "port", "type", "in", "out", "state", "log",
    "with",
];
