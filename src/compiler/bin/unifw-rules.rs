//! Host tool behind `scripts/rules`: check, identify, explain, classify, gen, classbench, bench.

use std::io::{self, BufRead, BufWriter, Read, Write};
use std::process::ExitCode;
use std::time::Instant;

/// Prints a line; a closed stdout (`| head`) is not an error worth a panic.
macro_rules! say {
    ($($t:tt)*) => {{
        let _ = writeln!(io::stdout(), $($t)*);
    }};
}

use unifw_compiler::{self as rules, Compiled, Format, ScenarioOptions};
use unifw_core::flow::{proto, Action, Chain, CtState, PacketKey, Verdict, NO_IF};
use unifw_core::image::Image;

const USAGE: &str = "usage: unifw-rules check FILE
       unifw-rules identify KERNEL_OR_RAW_DISK
       unifw-rules explain FILE 'PROTO SRC[:PORT] -> DST[:PORT]' [in ethN] [out ethN] [state S] [chain input|forward]
       unifw-rules classify FILE < lines 'PROTO SRC_IP SRC_PORT DST_IP DST_PORT'
       unifw-rules gen N [--seed S] [--format unifw|iptables]
       unifw-rules classbench FILE
       unifw-rules bench FILE [--trace lab|boxes] [--linear]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("check") if args.len() == 2 => check(&args[1]),
        Some("identify") if args.len() == 2 => identify(&args[1]),
        Some("explain") if args.len() >= 3 => explain(&args[1], &args[2], &args[3..]),
        Some("classify") if args.len() == 2 => classify(&args[1]),
        Some("gen") if args.len() >= 2 => gen(&args[1..]),
        Some("classbench") if args.len() == 2 => classbench(&args[1]),
        Some("bench") if args.len() >= 2 => bench(&args[1], &args[2..]),
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Reads and compiles FILE, resolving includes against the file system.
/// Finds the rules image a kernel ELF (or a raw disk holding one) embeds,
/// checks that its stored identity is the hash of its bytes, and prints
/// what the kernel will report at boot. Reads the file as it is: nothing is
/// compiled, so it answers "which ruleset is in this image?".
fn identify(path: &str) -> Result<(), String> {
    use unifw_core::image::format::{tables_hash, MAGIC};
    let bytes = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(offset) = bytes.get(at..).and_then(|rest| rest.windows(MAGIC.len()).position(|w| w == MAGIC)) {
        let start = at + offset;
        at = start + 1;
        let Some(candidate) = bytes.get(start..) else { break };
        let Ok(image) = Image::from_bytes(candidate) else { continue };
        let Some(exact) = candidate.get(..image.total_len()) else { continue };
        let verified = tables_hash(exact) == image.tables_hash();
        found.push((start, image, verified));
    }
    let [(offset, image, verified)] = found.as_slice() else {
        return Err(match found.len() {
            0 => format!("{path}: no rules image inside (not a unifw kernel?)"),
            n => format!("{path}: {n} rules images inside; expected one"),
        });
    };
    if !verified {
        return Err(format!("{path}: the rules image at byte {offset} does not match its identity (corrupted?)"));
    }
    say!("{path}: rules image at byte {offset}, {} bytes", image.total_len());
    say!(
        "rules:        {} ({} input, {} forward)",
        image.total_rules(),
        image.rule_count(Chain::Input),
        image.rule_count(Chain::Forward)
    );
    say!("identity:     {:016x} (verified)", image.tables_hash());
    Ok(())
}

/// Reads and compiles FILE, resolving includes against the file system.
fn compile(path: &str) -> Result<(Compiled, f64), String> {
    let text = rules::read_rules_file(path).map_err(|e| format!("{path}: {e}"))?;
    let start = Instant::now();
    let mut load = |p: &str| rules::read_rules_file(p);
    let compiled = rules::compile(path, &text, &mut load).map_err(|d| d.to_string())?;
    Ok((compiled, start.elapsed().as_secs_f64()))
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

fn check(path: &str) -> Result<(), String> {
    let (c, secs) = compile(path)?;
    for w in &c.warnings {
        eprintln!("{w}");
    }
    let image = Image::from_bytes(&c.image).map_err(|e| e.to_string())?;
    let s = c.stats;
    say!("{path}: ok");
    say!("rules:        {} ({} input, {} forward)", c.rule_count, s.rules[0], s.rules[1]);
    say!(
        "entries:      {} input, {} forward; tuples {} input, {} forward",
        s.entries[0],
        s.entries[1],
        s.tuples[0],
        s.tuples[1]
    );
    say!(
        "image:        {} bytes ({} bytes of tables, {:.1} bytes/rule)",
        s.image_bytes,
        image.table_bytes(),
        image.table_bytes() as f64 / c.rule_count.max(1) as f64
    );
    say!("identity:     {:016x} (tables hash; the kernel reports it at boot)", image.tables_hash());
    for m in &c.ruleset.metrics {
        let from: Vec<String> =
            m.from.iter().map(|p| format!("{}/{}", std::net::Ipv4Addr::from(p.addr), p.len)).collect();
        say!("metrics:      GET /metrics on eth{} port {} from {}", m.interface, m.port, from.join(", "));
    }
    say!("compile time: {:.3} s, peak memory {:.0} MiB", secs, peak_rss_mib());
    say!("warnings:     {}", c.warnings.len());
    Ok(())
}

fn parse_proto(s: &str) -> Result<u8, String> {
    match s.to_ascii_lowercase().as_str() {
        "tcp" => Ok(proto::TCP),
        "udp" => Ok(proto::UDP),
        "icmp" => Ok(proto::ICMP),
        n => n.parse().map_err(|_| format!("bad protocol `{s}`")),
    }
}

fn parse_ip(s: &str) -> Result<u32, String> {
    s.parse::<std::net::Ipv4Addr>().map(u32::from).map_err(|_| format!("bad address `{s}`"))
}

fn endpoint(s: &str) -> Result<(u32, u16), String> {
    match s.rsplit_once(':') {
        Some((a, p)) => Ok((parse_ip(a)?, p.parse().map_err(|_| format!("bad port `{p}`"))?)),
        None => Ok((parse_ip(s)?, 0)),
    }
}

fn key(p: u8, src: u32, sport: u16, dst: u32, dport: u16) -> PacketKey {
    let icmp = p == proto::ICMP;
    PacketKey {
        proto: p,
        src,
        dst,
        src_port: if icmp { 0 } else { sport },
        dst_port: if icmp { 0 } else { dport },
        icmp_type: if icmp { sport as u8 } else { 0 },
        icmp_code: if icmp { dport as u8 } else { 0 },
        in_if: NO_IF,
        out_if: NO_IF,
        state: CtState::New,
        extra: Default::default(),
    }
}

fn action_word(a: Action) -> &'static str {
    match a {
        Action::Accept => "accept",
        Action::Drop => "drop",
        Action::Reject(_) => "reject",
    }
}

fn explain(path: &str, packet: &str, opts: &[String]) -> Result<(), String> {
    let (c, _) = compile(path)?;
    let image = Image::from_bytes(&c.image).map_err(|e| e.to_string())?;
    let words: Vec<&str> = packet.split_whitespace().filter(|w| *w != "->").collect();
    let [p, s, d] = words.as_slice() else {
        return Err("packet must look like 'tcp 10.1.0.2:40000 -> 10.2.0.2:80' (ICMP: 'icmp A:TYPE -> B:CODE')".into());
    };
    let (p, (src, sport), (dst, dport)) = (parse_proto(p)?, endpoint(s)?, endpoint(d)?);
    let mut k = key(p, src, sport, dst, dport);
    let mut chain = Chain::Forward;
    for pair in opts.chunks(2) {
        let v = pair.get(1).ok_or("option without a value")?;
        let iface = || v.strip_prefix("eth").and_then(|n| n.parse::<u8>().ok()).ok_or(format!("bad interface `{v}`"));
        match pair[0].as_str() {
            "in" => k.in_if = iface()?,
            "out" => k.out_if = iface()?,
            "state" => {
                k.state = match v.as_str() {
                    "new" => CtState::New,
                    "established" => CtState::Established,
                    "related" => CtState::Related,
                    "invalid" => CtState::Invalid,
                    "untracked" => CtState::Untracked,
                    _ => return Err(format!("bad state `{v}`")),
                }
            }
            "chain" => chain = if v == "input" { Chain::Input } else { Chain::Forward },
            o => return Err(format!("unknown option `{o}` (in, out, state, chain)")),
        }
    }
    let (v, cost) = image.classify_cost(chain, &k);
    eprintln!(
        "lookup cost: {} hash tables probed, {} slots compared, {} entries checked",
        cost.tuples, cost.slots, cost.entries
    );
    print_explanation(&c, &image, chain, v);
    Ok(())
}

fn print_explanation(c: &Compiled, image: &Image, chain: Chain, v: Verdict) {
    match v.rule {
        Some(r) => {
            let rule = &c.ruleset.rules[r as usize];
            let file = c.ruleset.files.get(usize::from(rule.file)).map_or("?", String::as_str);
            say!(
                "{} (rule {} at {}:{}{})",
                action_word(v.action),
                r,
                file,
                image.rule_line(r),
                if v.log { ", logged" } else { "" }
            );
            say!("    {}", rules::render_rule(rule, Format::Unifw).unwrap_or_default());
        }
        None => say!(
            "{} (policy of the {} chain)",
            action_word(v.action),
            if chain == Chain::Input { "input" } else { "forward" }
        ),
    }
}

fn classify(path: &str) -> Result<(), String> {
    let (c, _) = compile(path)?;
    let image = Image::from_bytes(&c.image).map_err(|e| e.to_string())?;
    let stdin = io::stdin().lock();
    let mut out = BufWriter::with_capacity(1 << 16, io::stdout().lock());
    for (n, line) in stdin.lines().enumerate() {
        let line = line.map_err(|e| e.to_string())?;
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.is_empty() {
            continue;
        }
        let [p, s, sp, d, dp] = f.as_slice() else {
            return Err(format!("stdin line {}: expected PROTO SRC_IP SRC_PORT DST_IP DST_PORT", n + 1));
        };
        let port = |x: &str| x.parse::<u16>().map_err(|_| format!("stdin line {}: bad port `{x}`", n + 1));
        let k = key(parse_proto(p)?, parse_ip(s)?, port(sp)?, parse_ip(d)?, port(dp)?);
        let v = image.classify(Chain::Forward, &k);
        let r = match v.rule {
            Some(r) => writeln!(out, "{} {}", action_word(v.action), image.rule_line(r)),
            None => writeln!(out, "{} policy", action_word(v.action)),
        };
        r.map_err(|e| e.to_string())?;
    }
    out.flush().map_err(|e| e.to_string())
}

fn gen(args: &[String]) -> Result<(), String> {
    let n: usize = args[0].parse().map_err(|_| format!("bad rule count `{}`", args[0]))?;
    let (mut seed, mut format) = (1u64, Format::Unifw);
    for pair in args[1..].chunks(2) {
        let v = pair.get(1).ok_or("option without a value")?;
        match pair[0].as_str() {
            "--seed" => seed = v.parse().map_err(|_| format!("bad seed `{v}`"))?,
            "--format" => {
                format = match v.as_str() {
                    "unifw" => Format::Unifw,
                    "iptables" => Format::Iptables,
                    _ => return Err(format!("bad format `{v}`")),
                }
            }
            o => return Err(format!("unknown option `{o}`")),
        }
    }
    let set = rules::scenario(ScenarioOptions { rules: n.max(1), seed });
    let mut out = BufWriter::with_capacity(1 << 16, io::stdout().lock());
    let io = |e: io::Error| e.to_string();
    let comment = format!(
        "# unifw scenario: {n} forward rules, seed {seed}; only the last rule allows the lab (10.1.0.2 <-> 10.2.0.2)\n"
    );
    out.write_all(comment.as_bytes()).map_err(io)?;
    out.write_all(rules::render_head(&set, format)?.as_bytes()).map_err(io)?;
    for r in &set.rules {
        out.write_all(rules::render_rule_of(&set, r, format)?.as_bytes()).map_err(io)?;
        out.write_all(b"\n").map_err(io)?;
    }
    out.write_all(rules::render_tail(format).as_bytes()).map_err(io)?;
    out.flush().map_err(io)
}

fn classbench(path: &str) -> Result<(), String> {
    let mut text = String::new();
    std::fs::File::open(path).and_then(|mut f| f.read_to_string(&mut text)).map_err(|e| format!("{path}: {e}"))?;
    print!("{}", rules::classbench_to_native(&text)?);
    Ok(())
}

/// Packets for a benchmark: the lab's traffic, or points inside rules plus random ones.
fn trace(c: &Compiled, kind: &str, n: usize) -> Vec<PacketKey> {
    let mut rng = rules::Rng::new(7);
    let lab = |rng: &mut rules::Rng| {
        let p = [proto::TCP, proto::UDP, proto::ICMP][rng.below(3) as usize];
        let (a, b) =
            if p == proto::ICMP { (8, 0) } else { (1024 + rng.below(64000) as u16, 1 + rng.below(65535) as u16) };
        key(p, 0x0a01_0002, a, 0x0a02_0002, b)
    };
    let fwd: Vec<&rules::Rule> = c.ruleset.rules.iter().filter(|r| r.chain == Chain::Forward).collect();
    (0..n)
        .map(|_| match kind {
            "boxes" if !fwd.is_empty() && !rng.pct(25) => {
                rules::point_in(fwd[rng.below(fwd.len() as u64) as usize], &mut rng)
            }
            "boxes" => rules::random_key(&mut rng),
            _ => lab(&mut rng),
        })
        .collect()
}

/// Median lookups/s of `f` over `trace`, 5 runs of at least `min_secs` each.
fn rate(trace: &[PacketKey], min_secs: f64, f: &dyn Fn(&PacketKey) -> Verdict) -> f64 {
    let mut runs: Vec<f64> = (0..5)
        .map(|_| {
            let start = Instant::now();
            let mut done = 0usize;
            while start.elapsed().as_secs_f64() < min_secs {
                for k in trace {
                    std::hint::black_box(f(std::hint::black_box(k)));
                }
                done += trace.len();
            }
            done as f64 / start.elapsed().as_secs_f64()
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    runs[2]
}

fn bench(path: &str, opts: &[String]) -> Result<(), String> {
    let (c, secs) = compile(path)?;
    let rss = peak_rss_mib();
    let image = Image::from_bytes(&c.image).map_err(|e| e.to_string())?;
    let kind = opts.iter().position(|o| o == "--trace").and_then(|i| opts.get(i + 1)).map_or("lab", String::as_str);
    let keys = trace(&c, kind, 4096);
    for k in keys.iter().take(512) {
        let (a, b) = (image.classify(Chain::Forward, k), c.ruleset.classify_linear(Chain::Forward, k));
        if a != b {
            return Err(format!("MISMATCH on {k:?}: tables {a:?}, reference {b:?}"));
        }
    }
    let fast = rate(&keys, 0.3, &|k| image.classify(Chain::Forward, k));
    let cost = keys
        .iter()
        .map(|k| image.classify_cost(Chain::Forward, k).1)
        .fold([0u64; 3], |a, c| [a[0] + u64::from(c.tuples), a[1] + u64::from(c.slots), a[2] + u64::from(c.entries)]);
    let per = |x: u64| x as f64 / keys.len() as f64;
    eprintln!(
        "per lookup: {:.1} tuples probed, {:.1} slots compared, {:.1} entries checked",
        per(cost[0]),
        per(cost[1]),
        per(cost[2])
    );
    let linear = if opts.iter().any(|o| o == "--linear") {
        let few = &keys[..keys.len().min(64)];
        format!("{:.0}", rate(few, 0.2, &|k| image.classify_linear(Chain::Forward, k)))
    } else {
        "-".into()
    };
    let table = image.table_bytes();
    say!(
        "rules={} lookups_per_s={:.0} table_bytes={} bytes_per_rule={:.1} compile_s={:.3} peak_rss_mib={:.0} linear_lookups_per_s={} trace={kind}",
        c.rule_count, fast, table, table as f64 / c.rule_count.max(1) as f64, secs, rss, linear
    );
    Ok(())
}
