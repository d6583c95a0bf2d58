//! The rule language, its build-time compiler and the lookup tables the kernel reads in place.
//!
//! This module is compiled twice: as `unifw::rules` (no_std + alloc) and by
//! `build.rs` through `#[path = "src/rules/mod.rs"] mod rules;` next to
//! `#[path = "src/flow.rs"] mod flow;`. So it uses only `core::`, `alloc::`,
//! its own modules and `crate::flow`.
//!
//! Host side: [`compile`] turns a rules file (native or iptables-save) into an
//! image ([`Compiled::image`]). Both sides: [`Image::from_bytes`] validates an
//! image cheaply and [`Image::classify`] judges packets without allocating.

mod ast;
mod classbench;
mod compiler;
mod diag;
mod expand;
mod format;
mod fuzz;
mod image;
mod iptables;
mod lexer;
mod names;
mod native;
mod print;
mod scenario;
mod shadow;
mod source;
mod tables;

pub use ast::{AddrMatch, IcmpMatch, IfMatch, PortMatch, Prefix, ProtoMatch, Rule, Ruleset};
pub use classbench::classbench_to_native;
pub use compiler::{compile, compile_ruleset, parse, CompileStats, Compiled};
pub use diag::{Diagnostic, Diagnostics, MAX_ERRORS};
pub use format::FormatError;
pub use fuzz::fuzz_one;
pub use image::{Cost, IfAddr, Image, InterfaceSpec, RouteSpec};
pub use print::{render, render_head, render_rule, render_tail, Format};
pub use scenario::{lab_rule, point_in, random_key, scenario, Rng, ScenarioOptions};
