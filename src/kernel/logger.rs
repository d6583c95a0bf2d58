//! The `log` backend: every line on the serial console, stamped with the
//! level and the time since boot (`[   1.234567] INFO  message`).

use crate::kernel::arch::clock;
use crate::kernel::serial::Serial;
use core::fmt::Write;
use log::{Level, LevelFilter, Log, Metadata, Record};
use spin::Mutex;

static LOCK: Mutex<()> = Mutex::new(());
static LOGGER: SerialLogger = SerialLogger;

struct SerialLogger;

impl Log for SerialLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        // virtio-drivers reports negotiated features at info level: detail
        // that belongs to debug here.
        let quiet = metadata.target().starts_with("virtio_drivers") && log::max_level() < LevelFilter::Debug;
        metadata.level() <= log::max_level() && !(quiet && metadata.level() > Level::Warn)
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let us = clock::now_us();
        // Interrupt handlers never log, so this lock cannot deadlock.
        let _guard = LOCK.lock();
        let _ =
            writeln!(Serial, "[{:5}.{:06}] {:<5} {}", us / 1_000_000, us % 1_000_000, record.level(), record.args());
    }

    fn flush(&self) {}
}

/// Installs the logger at `level`.
pub fn init(level: LevelFilter) {
    Serial::init();
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}

/// Changes the level (from the kernel command line).
pub fn set_level(level: LevelFilter) {
    log::set_max_level(level);
}
