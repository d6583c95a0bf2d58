//! The compiled rules image embedded by build.rs.

use unifw_core::image::Image;

#[repr(C, align(64))]
struct Aligned<T: ?Sized>(T);

/// The image bytes, 64-byte aligned (the reader relies on it for speed only).
static IMAGE_BYTES: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/rules.img")));

/// When build.rs compiled the rules (Unix seconds; `SOURCE_DATE_EPOCH`
/// when set, for reproducible builds). Kept out of the image, so that the
/// same rules always give the same tables hash.
pub const RULES_COMPILED_AT: &str = env!("UNIFW_RULES_COMPILED_AT");

/// The embedded rules image, validated (cheap: O(sections), not O(rules)).
/// A build always embeds a valid image, so failure means a corrupted build.
pub fn image() -> Image<'static> {
    match Image::from_bytes(&IMAGE_BYTES.0) {
        Ok(image) => image,
        Err(e) => panic!("embedded rules image is invalid: {e:?}"),
    }
}
