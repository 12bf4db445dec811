//! The DEFLATE transform of permessage-deflate (RFC 7692 §7.2) for one
//! whole message at a time: compress with a sync flush and drop the
//! trailing `00 00 ff ff`, or put it back and inflate with a ceiling.
//!
//! Both sides of the connection agree on no context takeover, so a message
//! never depends on the ones before it: one compressor and one decompressor
//! per runtime thread, reset before each message, serve every connection.
//! An idle connection therefore holds no deflate state at all, and a large
//! message costs no allocation of a compressor's tables.

use std::cell::RefCell;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// What a sync flush ends with; the sender strips it and the receiver puts
/// it back (§7.2.1, §7.2.2).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Compression level: chat frames are JSON, which the fastest levels
/// already shrink several times over; a higher level costs the gateway
/// CPU on every large frame for a few percent more.
const LEVEL: u32 = 1;

/// How much room a first inflate gets per compressed byte; more is added
/// as needed, up to the ceiling.
const FIRST_GUESS_RATIO: usize = 4;

thread_local! {
    static COMPRESSOR: RefCell<Compress> = RefCell::new(Compress::new(Compression::new(LEVEL), false));
    static DECOMPRESSOR: RefCell<Decompress> = RefCell::new(Decompress::new(false));
}

/// Why a compressed message could not be inflated.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InflateError {
    #[error("compressed message inflates past {limit} bytes")]
    TooLarge { limit: usize },
    #[error("compressed message is not valid DEFLATE data: {0}")]
    Corrupt(String),
}

/// Appends the compressed form of `payload` to `out` when it is smaller
/// than `payload` itself; otherwise leaves `out` as it was and returns
/// false (the message then goes out uncompressed).
pub fn deflate_into(payload: &[u8], out: &mut Vec<u8>) -> bool {
    let start = out.len();
    // Room for exactly as much as would still be a gain, plus the tail the
    // flush writes: running out of room means compression does not pay.
    out.reserve_exact(payload.len() + TAIL.len());
    let room = out.capacity() - start;
    COMPRESSOR.with(|cell| {
        let mut compressor = cell.borrow_mut();
        compressor.reset();
        let before = compressor.total_in();
        let status = compressor.compress_vec(payload, out, FlushCompress::Sync);
        let consumed = compressor.total_in() - before;
        let produced = out.len() - start;
        let finished = matches!(status, Ok(Status::Ok) | Ok(Status::BufError))
            && usize::try_from(consumed).ok() == Some(payload.len())
            && produced < room
            && out.ends_with(&TAIL);
        if finished && produced - TAIL.len() < payload.len() {
            out.truncate(out.len() - TAIL.len());
            true
        } else {
            out.truncate(start);
            false
        }
    })
}

/// Inflates one message's payload (its frames' payloads joined), refusing
/// to produce more than `limit` bytes: a small compressed frame cannot make
/// the gateway allocate more than an uncompressed frame could.
pub fn inflate(compressed: &[u8], limit: usize) -> Result<Vec<u8>, InflateError> {
    let ceiling = limit.saturating_add(1);
    let first = compressed
        .len()
        .saturating_mul(FIRST_GUESS_RATIO)
        .clamp(256, ceiling);
    let mut out = Vec::with_capacity(first);
    DECOMPRESSOR.with(|cell| {
        let mut decompressor = cell.borrow_mut();
        decompressor.reset(false);
        for input in [compressed, &TAIL[..]] {
            let mut offset = 0;
            loop {
                let (in_before, out_before) = (decompressor.total_in(), out.len());
                let status = decompressor
                    .decompress_vec(&input[offset..], &mut out, FlushDecompress::Sync)
                    .map_err(|error| InflateError::Corrupt(error.to_string()))?;
                let consumed = usize::try_from(decompressor.total_in() - in_before)
                    .map_err(|error| InflateError::Corrupt(error.to_string()))?;
                offset += consumed;
                if out.len() > limit {
                    return Err(InflateError::TooLarge { limit });
                }
                if status == Status::StreamEnd {
                    // A final block: whatever follows it is not data.
                    return Ok(out);
                }
                if out.len() == out.capacity() {
                    let grown = out.capacity().saturating_mul(2).min(ceiling);
                    out.reserve_exact(grown - out.len());
                    continue;
                }
                if offset == input.len() {
                    break;
                }
                if consumed == 0 && out.len() == out_before {
                    return Err(InflateError::Corrupt("no progress".into()));
                }
            }
        }
        Ok(out)
    })
}

/// XORs `data` with `key` as RFC 6455 §5.3 masks it, `offset` bytes into
/// the frame's payload; masking and unmasking are the same operation.
pub fn apply_mask(data: &mut [u8], key: [u8; 4], offset: usize) {
    for (index, byte) in data.iter_mut().enumerate() {
        *byte ^= key[(offset + index) % 4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_like(bytes: usize) -> Vec<u8> {
        let mut text = String::new();
        let mut n = 0;
        while text.len() < bytes {
            text.push_str(&format!(
                r#"{{"seq":{n},"senderId":"agent-1","content":"message number {n}"}},"#
            ));
            n += 1;
        }
        text.into_bytes()
    }

    #[test]
    fn what_is_deflated_inflates_back_to_the_same_bytes() {
        let payload = json_like(20_000);
        let mut out = vec![1, 2, 3];
        assert!(deflate_into(&payload, &mut out));
        assert_eq!(&out[..3], &[1, 2, 3], "what was in the buffer stays");
        assert!(out.len() - 3 < payload.len() / 3, "JSON shrinks well");
        assert!(!out.ends_with(&TAIL));
        assert_eq!(inflate(&out[3..], 64 * 1024).unwrap(), payload);
    }

    #[test]
    fn data_that_does_not_shrink_is_left_alone() {
        // Bytes with no repetition to find: their deflated form is larger.
        let mut state = 0x1234_5678_u32;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                state.to_le_bytes()[0]
            })
            .collect();
        let mut out = vec![9];
        assert!(!deflate_into(&noise, &mut out));
        assert_eq!(out, vec![9]);
    }

    #[test]
    fn a_bomb_stops_at_the_limit() {
        let zeros = vec![b'a'; 1_000_000];
        let mut compressed = Vec::new();
        assert!(deflate_into(&zeros, &mut compressed));
        assert!(compressed.len() < 10_000);
        assert_eq!(
            inflate(&compressed, 64 * 1024),
            Err(InflateError::TooLarge { limit: 64 * 1024 })
        );
        // Exactly the limit is allowed.
        let mut exact = Vec::new();
        assert!(deflate_into(&zeros[..64 * 1024], &mut exact));
        assert_eq!(inflate(&exact, 64 * 1024).unwrap().len(), 64 * 1024);
    }

    #[test]
    fn garbage_is_refused() {
        assert!(matches!(
            inflate(&[0xff, 0xff, 0xff, 0xff, 0x00], 1024),
            Err(InflateError::Corrupt(_))
        ));
    }

    #[test]
    fn each_message_stands_alone() {
        // Compressing the same text twice gives the same bytes: nothing of
        // the first message is referred to by the second.
        let payload = json_like(5_000);
        let (mut first, mut second) = (Vec::new(), Vec::new());
        assert!(deflate_into(&payload, &mut first));
        assert!(deflate_into(&payload, &mut second));
        assert_eq!(first, second);
        assert_eq!(inflate(&second, 1 << 20).unwrap(), payload);
    }

    #[test]
    fn masking_twice_gives_the_original() {
        let mut data = b"hello, masked world".to_vec();
        apply_mask(&mut data, [1, 2, 3, 4], 0);
        assert_ne!(&data, b"hello, masked world");
        apply_mask(&mut data[..5], [1, 2, 3, 4], 0);
        apply_mask(&mut data[5..], [1, 2, 3, 4], 5);
        assert_eq!(&data, b"hello, masked world");
    }
}
