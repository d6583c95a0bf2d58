//! The host-side entry points: parse a rules file and compile it to an image.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use unifw_core::flow::{Chain, BUILTIN_CHAINS};

use super::ast::Ruleset;
use super::diag::{Diagnostic, Diagnostics};
use super::expand::expand;
use super::limits::{MAX_ENTRIES, MAX_ENTRIES_PER_RULE, MAX_INPUT_BYTES};
use super::shadow::shadowed;
use super::source::{is_iptables, parse_file, Ctx};
use super::tables::write_image;
use unifw_core::image::format::MAX_RULES;

/// Sizes of a compiled image.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompileStats {
    /// Rules per chain (input, forward).
    pub rules: [usize; 2],
    /// Table entries per chain.
    pub entries: [usize; 2],
    /// Tuples (hash tables) per chain.
    pub tuples: [usize; 2],
    /// Bytes of the image.
    pub image_bytes: usize,
}

/// A compiled rules file.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The image to embed (read it with [`super::Image::from_bytes`]).
    pub image: Vec<u8>,
    /// Warnings (rules that can never match, ...).
    pub warnings: Vec<Diagnostic>,
    /// Rules in both chains.
    pub rule_count: usize,
    /// Sizes.
    pub stats: CompileStats,
    /// The parsed rules (for tools that explain verdicts).
    pub ruleset: Ruleset,
}

impl Compiled {
    /// The ruleset's identity: the tables hash stored in the image header
    /// (`unifw_core::image::format::tables_hash`).
    pub fn tables_hash(&self) -> u64 {
        unifw_core::image::format::tables_hash(&self.image)
    }
}

/// Parses a rules file (native or iptables-save, detected from its text);
/// `load` reads an included file by its path, already resolved relative to
/// the directory of the including file's name.
pub fn parse(
    name: &str,
    text: &[u8],
    load: &mut dyn FnMut(&str) -> Result<Vec<u8>, String>,
) -> Result<Ruleset, Diagnostics> {
    let mut ctx = Ctx::new(load);
    if text.len() > MAX_INPUT_BYTES {
        ctx.diags.push(Diagnostic::plain(name, 1, 1, super::limits::too_big(MAX_INPUT_BYTES)));
        return Err(ctx.diags);
    }
    let iptables = is_iptables(text);
    if iptables {
        ctx.any_interface = true;
        ctx.set.interfaces = Ruleset::lab_interfaces();
    }
    parse_file(&mut ctx, name, text, 0);
    for (file, line, msg) in super::iptables_hashlimit::check_first(&ctx.hashlimit, &ctx.set) {
        let file = ctx.set.files.get(usize::from(file)).cloned().unwrap_or_else(|| name.into());
        ctx.diags.push(Diagnostic::plain(&file, line, 1, msg));
    }
    let mut unsupported: Vec<(String, usize)> = core::mem::take(&mut ctx.unsupported).into_iter().collect();
    unsupported.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    ctx.diags.unsupported = unsupported;
    if ctx.set.rules.len() > MAX_RULES {
        ctx.diags.push(Diagnostic::plain(
            name,
            1,
            1,
            format!("{} rules is more than the {MAX_RULES} an image can hold", ctx.set.rules.len()),
        ));
    }
    if ctx.diags.is_empty() {
        Ok(ctx.set)
    } else {
        Err(ctx.diags)
    }
}

/// Compiles a rules file to an image (see [`parse`] for `load`).
pub fn compile(
    name: &str,
    text: &[u8],
    load: &mut dyn FnMut(&str) -> Result<Vec<u8>, String>,
) -> Result<Compiled, Diagnostics> {
    let set = parse(name, text, load)?;
    compile_ruleset(set)
}

fn too_many_entries() -> String {
    format!("the rules expand to more than {MAX_ENTRIES} table entries in all (the most an image may have)")
}

/// Compiles an already parsed ruleset.
pub fn compile_ruleset(set: Ruleset) -> Result<Compiled, Diagnostics> {
    let mut diags = Diagnostics::default();
    if let Err((rule, msg)) = super::chains::check(&set).and_then(|()| super::iptables_nat::check_hooks(&set)) {
        let (file, line, column) = set.rules.get(rule).map_or((0, 0, 0), |r| (r.file, r.line, r.column));
        let file = set.files.get(usize::from(file)).map_or("?", |f| f.as_str());
        diags.push(Diagnostic::plain(file, line, column, msg));
        return Err(diags);
    }
    let mut chains: Vec<Vec<_>> = (0..BUILTIN_CHAINS + set.chains.len()).map(|_| Vec::new()).collect();
    let mut total = 0usize;
    for (i, r) in set.rules.iter().enumerate() {
        let Some(out) = chains.get_mut(r.chain.number()) else { continue };
        let before = out.len();
        let file = set.files.get(usize::from(r.file)).map_or("?", |f| f.as_str());
        // Never past the total: what is allocated stays within the cap.
        let cap = MAX_ENTRIES_PER_RULE.min(MAX_ENTRIES.saturating_sub(total));
        match expand(r, i as u32, cap, out) {
            Ok(()) => total += out.len() - before,
            Err(n) if n > MAX_ENTRIES_PER_RULE => {
                let msg = format!(
                    "rule expands to {n} table entries, more than {MAX_ENTRIES_PER_RULE} (fewer list items or negations)"
                );
                diags.push(Diagnostic::plain(file, r.line, r.column, msg));
                if diags.is_full() {
                    return Err(diags);
                }
            }
            Err(_) => {
                diags.push(Diagnostic::plain(file, r.line, r.column, too_many_entries()));
                return Err(diags);
            }
        }
    }
    if !diags.is_empty() {
        return Err(diags);
    }
    let mut warnings = set.warnings.clone();
    warnings.extend(shadowed(&set));
    warnings.extend(super::metrics::input_warnings(&set));
    let (image, ts) = write_image(&set, chains);
    let count = |c: Chain| set.rules.iter().filter(|r| r.chain == c).count();
    let rules = [count(Chain::Input), count(Chain::Forward)];
    let stats = CompileStats { rules, entries: ts.entries, tuples: ts.tuples, image_bytes: image.len() };
    Ok(Compiled { image, warnings, rule_count: set.rules.len(), stats, ruleset: set })
}
