//! The compiler's input limits (rules/README.md, "Limits"), and reading a
//! rules file within them: no input may hang the compiler or exhaust its
//! memory. Each cap comfortably admits the 1,000,000-rule scenario
//! (64 MB, 1.2 M table entries) and the ClassBench sets.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;

/// Most bytes of rules input, all files together (4x the 1M-rule scenario).
pub const MAX_INPUT_BYTES: usize = 256 << 20;
/// Most `include` statements followed in one compilation (a fan-out of
/// includes otherwise reads the same files exponentially often).
pub const MAX_INCLUDES: usize = 1024;
/// How deep `include` may nest.
pub const MAX_INCLUDE_DEPTH: u32 = 8;
/// Most addresses in one list: a set, or a rule's `from`/`to` after its
/// sets are spliced in (a set doubling itself line by line stops here).
pub const MAX_LIST_ADDRESSES: usize = 1 << 16;
/// Most addresses named by all sets and rules together, a set counting its
/// size at every use (it is shared, not copied, but each use is expanded).
pub const MAX_TOTAL_ADDRESSES: usize = 1 << 24;
/// Most table entries one rule may expand into (lists times negations).
pub const MAX_ENTRIES_PER_RULE: usize = 1 << 16;
/// Most table entries in one image (14x the 1M-rule scenario's 1.2 M).
pub const MAX_ENTRIES: usize = 1 << 24;
/// Longest excerpt of an offending line quoted under an error: an include
/// of a file that is not rules (`/etc/shadow`) must not copy its lines into
/// build logs.
pub const MAX_QUOTE: usize = 40;
/// Longest `word` (or path) quoted in an error message.
pub const MAX_WORD: usize = 100;

/// Reads a rules file for the compiler: only a regular file (a FIFO would
/// block, `/dev/zero` never ends, a directory is no text), and at most
/// [`MAX_INPUT_BYTES`] of it. The error says why, without the path.
pub fn read_rules_file(path: &str) -> Result<Vec<u8>, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err(format!("not a regular file ({})", kind(&meta.file_type())));
    }
    // O_NONBLOCK: should the path turn into a FIFO after the check, opening
    // it does not wait for a writer (Linux's value of the flag).
    const O_NONBLOCK: i32 = 0o4000;
    let file = OpenOptions::new().read(true).custom_flags(O_NONBLOCK).open(path).map_err(|e| e.to_string())?;
    read_capped(file, MAX_INPUT_BYTES)
}

/// At most `cap` bytes of `file`: reads `cap + 1` to tell "more" apart.
fn read_capped(file: File, cap: usize) -> Result<Vec<u8>, String> {
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err(format!("not a regular file ({})", kind(&meta.file_type())));
    }
    let mut bytes = Vec::new();
    file.take(cap as u64 + 1).read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    if bytes.len() > cap {
        return Err(too_big(cap));
    }
    Ok(bytes)
}

/// The error for input past `cap` bytes.
pub fn too_big(cap: usize) -> String {
    format!("larger than {cap} bytes, the most rules input may have (all files together)")
}

fn kind(t: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a file"
    }
}

/// At most [`MAX_WORD`] characters of `s` for a message (`...` if cut).
pub fn quote(s: &str) -> String {
    match s.char_indices().nth(MAX_WORD) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_is_not_a_regular_file() {
        assert!(read_rules_file("/dev/zero").unwrap_err().contains("character device"));
        assert!(read_rules_file("/").unwrap_err().contains("directory"));
        assert!(read_rules_file("/nonexistent/x.rules").is_err());
        let dir = std::env::temp_dir().join(format!("unifw-limits-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().is_ok_and(|s| s.success());
        if made {
            assert!(read_rules_file(fifo.to_str().unwrap()).unwrap_err().contains("FIFO"));
        }
        let file = dir.join("ok.rules");
        std::fs::write(&file, b"policy forward drop\n").unwrap();
        assert_eq!(read_rules_file(file.to_str().unwrap()).unwrap(), b"policy forward drop\n");
        assert!(read_capped(File::open(&file).unwrap(), 20).is_ok());
        assert!(read_capped(File::open(&file).unwrap(), 19).unwrap_err().contains("larger than 19 bytes"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn quotes_are_short() {
        assert_eq!(quote("short"), "short");
        let long = "x".repeat(1000);
        assert_eq!(quote(&long).len(), MAX_WORD + 3);
    }
}
