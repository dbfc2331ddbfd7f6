//! The writer's record format, shared by the writer (`tests/writer/writer.rs`) and the check of a
//! snapshot's records (`tests/common`): `<seq, 10 digits> <100 × x> <checksum, 16 hex>`.
//!
//! The checksum is 64-bit FNV-1a of the body: it only has to tell a torn or corrupt record from
//! a whole one, and the writer is a bin of the `lightsnap` package, so it can use no
//! dev-dependency and a hash crate would become a dependency of the shipped library.

/// The body of record `seq`: what the checksum covers.
pub fn body(seq: u64) -> String {
    format!("{seq:010} {}", "x".repeat(100))
}

/// The checksum of a body, as written after it.
pub fn checksum(body: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in body {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// Record `seq` as a line, newline included.
pub fn line(seq: u64) -> String {
    let body = body(seq);
    let sum = checksum(body.as_bytes());
    format!("{body} {sum}\n")
}
