//! A deterministic companion of the `rules_parse` cargo-fuzz target (which
//! scripts/test also runs, coverage-guided): the same body over the seed corpus, mutations of it
//! (byte flips, truncations, splices, repeats) and random bytes, and over
//! corrupted compiled images. Passing means no panic and bounded time.

use std::time::Instant;

use unifw_compiler::{self as rules, fuzz_includes, fuzz_one, Rng};

fn seeds() -> Vec<Vec<u8>> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/seeds/rules_parse");
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| std::fs::read(e.ok()?.path()).ok()).collect())
        .unwrap_or_else(|e| panic!("{dir}: {e} (the seeds are part of the repository)"));
    assert!(!out.is_empty(), "{dir} holds no seeds");
    out.push(b"forward accept tcp from 10.1.0.0/24 to 10.2.0.2 port 80,443 state new log\n".to_vec());
    out
}

fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(8) {
        let at = rng.below(v.len() as u64 + 1) as usize;
        match rng.below(6) {
            0 if !v.is_empty() => {
                let i = at.min(v.len() - 1);
                v[i] = rng.next_u64() as u8;
            }
            1 => v.truncate(at),
            2 => v.splice(at..at, other.iter().take(rng.below(64) as usize).copied()).for_each(drop),
            3 => v.splice(at..at, b"!,{}$/:-\n\"".iter().copied().skip(rng.below(10) as usize).take(1)).for_each(drop),
            4 if !v.is_empty() => {
                let end = (at + rng.below(32) as usize).min(v.len());
                let piece = v[at.min(end)..end].to_vec();
                v.splice(at.min(end)..at.min(end), piece.repeat(1 + rng.below(4) as usize)).for_each(drop);
            }
            _ => v.extend((0..rng.below(16)).map(|_| rng.next_u64() as u8)),
        }
    }
    v
}

#[test]
fn rules_parse_mutations_do_not_panic() {
    let seeds = seeds();
    let mut rng = Rng::new(11);
    let start = Instant::now();
    for i in 0..3000 {
        let a = &seeds[i % seeds.len()];
        let b = &seeds[rng.below(seeds.len() as u64) as usize];
        fuzz_one(&mutate(&mut rng, a, b));
    }
    assert!(start.elapsed().as_secs() < 60, "fuzzing took too long");
}

#[test]
fn corrupted_images_do_not_panic() {
    let text = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/seeds/rules_parse/scenario20.rules"))
        .expect("seed");
    let image = rules::compile("s.rules", &text, &mut |p| Err(p.into())).expect("compiles").image;
    let mut rng = Rng::new(12);
    for _ in 0..3000 {
        let mut bad = image.clone();
        for _ in 0..1 + rng.below(6) {
            let at = rng.below(bad.len() as u64) as usize;
            bad[at] = rng.next_u64() as u8;
        }
        if rng.pct(10) {
            bad.truncate(rng.below(bad.len() as u64) as usize);
        }
        fuzz_one(&bad);
    }
}

/// The `rules_include` target's body over its seeds and their mutations:
/// include graphs with cycles and fan-outs end quickly, without a panic.
#[test]
fn include_graphs() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/seeds/rules_include");
    let seeds: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| std::fs::read(e.ok()?.path()).ok()).collect())
        .unwrap_or_else(|e| panic!("{dir}: {e} (the seeds are part of the repository)"));
    assert!(!seeds.is_empty(), "{dir} holds no seeds");
    let mut rng = Rng::new(13);
    let start = Instant::now();
    for round in 0..300 {
        let seed = &seeds[round % seeds.len()];
        let other = &seeds[(round + 1) % seeds.len()];
        let input = if round < seeds.len() { seed.clone() } else { mutate(&mut rng, seed, other) };
        fuzz_includes(&input);
    }
    assert!(start.elapsed().as_secs() < 60, "{:?}", start.elapsed());
}
