//! unifw's rule compiler: the rule language (native and iptables-save), its
//! parser, the compiler into the lookup-table image the kernel embeds, the
//! printer, and the scenario and ClassBench generators.
//!
//! A host crate: `build.rs` of the kernel uses it as a build-dependency, and
//! the `unifw-rules` tool (`scripts/rules`) is its binary. The image layout
//! and its reader live in `unifw_core::image`, the one interface that build
//! time and run time share: [`compile`] writes an image,
//! [`unifw_core::image::Image::from_bytes`] reads it.
#![forbid(unsafe_code)]

extern crate alloc;

mod ast;
mod chains;
mod classbench;
mod compiler;
mod diag;
mod expand;
mod fuzz;
mod ifnames;
mod iptables;
mod iptables_commands;
mod iptables_connlimit;
mod iptables_ct_tuple;
mod iptables_folded;
mod iptables_hashlimit;
mod iptables_match;
mod iptables_nat;
mod iptables_physdev;
mod iptables_recent;
mod iptables_split;
mod iptables_string;
mod iptables_target;
mod lexer;
mod limits;
mod metrics;
mod names;
mod native;
mod print;
mod scenario;
mod services;
mod shadow;
mod source;
mod tables;

pub use ast::{
    AddrMatch, IcmpMatch, IfMatch, Jump, LimitSpec, LogRecord, Metrics, PortMatch, Prefix, ProtoMatch, RecentSpec,
    RefState, Residual, Rule, RuleChain, Ruleset, UserChain, METRICS_DEFAULT_PORT,
};
pub use chains::MAX_CHAIN_NAME;
pub use classbench::classbench_to_native;
pub use compiler::{compile, compile_ruleset, parse, CompileStats, Compiled};
pub use diag::{Diagnostic, Diagnostics, MAX_ERRORS};
pub use fuzz::{fuzz_includes, fuzz_one};
pub use iptables_folded::{Folded, OwnerMatch};
pub use iptables_physdev::PhysdevMatch;
pub use limits::{
    read_rules_file, MAX_ENTRIES, MAX_ENTRIES_PER_RULE, MAX_INCLUDES, MAX_INCLUDE_DEPTH, MAX_INPUT_BYTES,
    MAX_LIST_ADDRESSES, MAX_QUOTE, MAX_TOTAL_ADDRESSES, MAX_WORD,
};
pub use print::{render, render_head, render_rule, render_rule_of, render_tail, Format};
pub use scenario::{lab_rule, point_in, random_key, scenario, Rng, ScenarioOptions};
