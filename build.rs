//! Build script: compiles the rules file named by `UNIFW_RULES` (default
//! `rules/default.rules`) into the lookup-table image the kernel embeds
//! (`OUT_DIR/rules.img`), and links the kernel with `boot/linker.ld`.
//!
//! The compiler is the `unifw-compiler` crate (a build-dependency); the
//! image layout it writes is defined once, in `unifw_core::image::format`,
//! which the kernel reads at run time.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::exit;
use std::time::Instant;

const DEFAULT_RULES: &str = "rules/default.rules";

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo:rerun-if-changed=boot/linker.ld");
    println!("cargo:rerun-if-changed=boot/entry.S");
    println!("cargo:rerun-if-env-changed=UNIFW_RULES");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    if env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        println!("cargo:rustc-link-arg-bin=unifw=-T{}", manifest.join("boot/linker.ld").display());
        println!("cargo:rustc-link-arg-bin=unifw=--no-pie");
    }
    let rules = env::var("UNIFW_RULES").unwrap_or_else(|_| DEFAULT_RULES.to_string());
    let path = if Path::new(&rules).is_absolute() { PathBuf::from(&rules) } else { manifest.join(&rules) };
    compile_rules(&path, &out_dir.join("rules.img"));
}

/// Compiles `path` into `out`, or prints every diagnostic and fails the build.
fn compile_rules(path: &Path, out: &Path) {
    println!("cargo:rerun-if-changed={}", path.display());
    let name = path.display().to_string();
    let text = match unifw_compiler::read_rules_file(&name) {
        Ok(text) => text,
        Err(e) => fail(&format!("{name}: cannot read the rules file: {e} (set UNIFW_RULES to a rules file)")),
    };
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut load = |include: &str| -> Result<Vec<u8>, String> {
        let included = base.join(include);
        println!("cargo:rerun-if-changed={}", included.display());
        unifw_compiler::read_rules_file(&included.display().to_string())
    };
    let started = Instant::now();
    let compiled = match unifw_compiler::compile(&name, &text, &mut load) {
        Ok(compiled) => compiled,
        Err(diagnostics) => fail(&diagnostics.to_string()),
    };
    for warning in &compiled.warnings {
        println!("cargo:warning={warning}");
    }
    if let Err(e) = fs::write(out, &compiled.image) {
        fail(&format!("cannot write {}: {e}", out.display()));
    }
    let compiled_at = env::var("SOURCE_DATE_EPOCH").ok().and_then(|s| s.parse::<u64>().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
    });
    println!("cargo:rustc-env=UNIFW_RULES_COMPILED_AT={compiled_at}");
    eprintln!(
        "unifw: {name}: {} rules, {} table bytes, identity {:016x}, compiled in {:.3} s",
        compiled.rule_count,
        compiled.image.len(),
        compiled.tables_hash(),
        started.elapsed().as_secs_f64()
    );
}

fn fail(message: &str) -> ! {
    for line in message.lines() {
        eprintln!("error: {line}");
    }
    exit(1);
}
