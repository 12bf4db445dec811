//! Conformance suite every blob store must pass.
//!
//! Written once against `&dyn BlobStore`, so the folder of standalone mode
//! and the chunks in PostgreSQL behave exactly alike: streamed puts with
//! their size and digest, range reads across chunk boundaries, puts that
//! fail leaving nothing, deletion and the listing a cleanup uses. Checks
//! never assume an empty store, so they may run twice on one.
//!
//! `run_all` runs every check; each is also public so an implementation's
//! tests can run them one by one (`blob_tests_per_check!`).

use bytes::Bytes;
use futures_util::StreamExt;

use super::{id_created_at, new_id, sha256_hex, BlobError, BlobRead, BlobStore, ByteStream};
use crate::Timestamp;

/// Larger than anything a check stores.
const ROOMY: u64 = 4 << 20;
/// The PostgreSQL store's chunk, which the range checks straddle.
const CHUNK: u64 = 256 * 1024;

pub async fn run_all(store: &dyn BlobStore) {
    round_trip_with_size_and_digest(store).await;
    empty_blob(store).await;
    many_chunks(store).await;
    ranges(store).await;
    too_large_leaves_nothing(store).await;
    a_failing_body_leaves_nothing(store).await;
    delete_removes(store).await;
    unknown_ids_are_not_found(store).await;
    created_before_is_ordered_and_limited(store).await;
    concurrent_puts(store).await;
}

/// Declares, in the calling module, one test per check on a fresh store,
/// and the whole suite twice on one store. `$open` is an async fn giving a
/// guard (what the store lives in) and the store.
#[cfg(test)]
macro_rules! blob_tests_per_check {
    ($open:path) => {
        mod blob_conformance_checks {
            use super::*;

            $crate::blob::conformance::blob_tests_per_check!(
                @each $open;
                round_trip_with_size_and_digest,
                empty_blob,
                many_chunks,
                ranges,
                too_large_leaves_nothing,
                a_failing_body_leaves_nothing,
                delete_removes,
                unknown_ids_are_not_found,
                created_before_is_ordered_and_limited,
                concurrent_puts,
            );

            #[tokio::test]
            async fn whole_blob_suite_twice_on_one_store() {
                let (guard, store) = $open().await;
                $crate::blob::conformance::run_all(&store).await;
                $crate::blob::conformance::run_all(&store).await;
                drop(store);
                drop(guard);
            }
        }
    };
    (@each $open:path; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $check() {
                let (guard, store) = $open().await;
                $crate::blob::conformance::$check(&store).await;
                drop(store);
                drop(guard);
            }
        )*
    };
}

#[cfg(test)]
pub(crate) use blob_tests_per_check;

pub async fn round_trip_with_size_and_digest(store: &dyn BlobStore) {
    let data = "Rechnung März 💳\n".repeat(10).into_bytes();
    let stored = put_ok(store, chunks_of(&data, 7), ROOMY).await;
    assert_eq!(stored.size, data.len() as u64);
    assert_eq!(stored.sha256, sha256_hex(&data));
    assert!(super::is_valid_id(&stored.id), "{}", stored.id);
    let read = get_ok(store, &stored.id, None).await;
    assert_eq!(read.total_size, data.len() as u64);
    assert_eq!(read.served, 0..data.len() as u64);
    assert_eq!(collect(read).await, data);
}

pub async fn empty_blob(store: &dyn BlobStore) {
    let stored = put_ok(store, chunks_of(&[], 1), ROOMY).await;
    assert_eq!(stored.size, 0);
    assert_eq!(stored.sha256, sha256_hex(&[]));
    let read = get_ok(store, &stored.id, None).await;
    assert_eq!((read.total_size, read.served.clone()), (0, 0..0));
    assert!(collect(read).await.is_empty());
    assert_eq!(
        store.get(&stored.id, Some((0, 0))).await.err(),
        Some(BlobError::InvalidRange)
    );
}

/// More than two chunks, not a multiple of one, sent in pieces that never
/// line up with them.
pub async fn many_chunks(store: &dyn BlobStore) {
    let data = pattern(2 * CHUNK as usize + 12_345);
    let stored = put_ok(store, chunks_of(&data, 10_007), ROOMY).await;
    assert_eq!(stored.size, data.len() as u64);
    assert_eq!(stored.sha256, sha256_hex(&data));
    let read = get_ok(store, &stored.id, None).await;
    assert_eq!(collect(read).await, data, "the whole blob");
}

pub async fn ranges(store: &dyn BlobStore) {
    let data = pattern(3 * CHUNK as usize + 777);
    let size = data.len() as u64;
    let stored = put_ok(store, chunks_of(&data, 65_536), ROOMY).await;
    let cases = [
        ("start", 0, 99),
        ("middle", 1_000, 5_000),
        ("suffix", size - 100, size - 1),
        ("single byte", size / 2, size / 2),
        ("first byte of a chunk", CHUNK, CHUNK),
        ("last byte of a chunk", CHUNK - 1, CHUNK - 1),
        ("across a chunk boundary", CHUNK - 10, CHUNK + 10),
        ("across two boundaries", CHUNK - 1, 2 * CHUNK),
        ("the last chunk", 3 * CHUNK, size - 1),
        ("the whole blob", 0, size - 1),
    ];
    for (what, start, end) in cases {
        let read = get_ok(store, &stored.id, Some((start, end))).await;
        assert_eq!(read.total_size, size, "{what}");
        assert_eq!(read.served, start..end + 1, "{what}");
        let bytes = collect(read).await;
        assert_eq!(bytes.len() as u64, end - start + 1, "{what}");
        assert!(
            bytes == data[start as usize..=end as usize],
            "{what}: other bytes"
        );
    }
    let past_the_end = get_ok(store, &stored.id, Some((size - 10, size + 1_000))).await;
    assert_eq!(
        past_the_end.served,
        size - 10..size,
        "an end past the blob is its end"
    );
    assert_eq!(collect(past_the_end).await, data[data.len() - 10..]);
    for (start, end) in [(size, size + 1), (size + 5, size + 9), (10, 5)] {
        assert_eq!(
            store.get(&stored.id, Some((start, end))).await.err(),
            Some(BlobError::InvalidRange),
            "{start}-{end}"
        );
    }
}

pub async fn too_large_leaves_nothing(store: &dyn BlobStore) {
    let before = everything(store).await;
    let data = pattern(CHUNK as usize + 100);
    let refused = store.put(chunks_of(&data, 10_000), CHUNK).await;
    assert_eq!(
        refused.err(),
        Some(BlobError::TooLarge { max_bytes: CHUNK }),
        "one chunk and a bit, against a bound of one chunk"
    );
    assert_eq!(everything(store).await, before, "nothing was kept");
    let exactly = put_ok(store, chunks_of(&data[..CHUNK as usize], 9_999), CHUNK).await;
    assert_eq!(exactly.size, CHUNK, "a blob of exactly the bound is kept");
}

pub async fn a_failing_body_leaves_nothing(store: &dyn BlobStore) {
    let before = everything(store).await;
    let data = pattern(CHUNK as usize * 2);
    let failed = store.put(failing_after(&data, 50_000), ROOMY).await;
    assert!(
        matches!(failed, Err(BlobError::Interrupted(_))),
        "the body's error ends the put: {failed:?}"
    );
    assert_eq!(everything(store).await, before, "nothing was kept");
}

pub async fn delete_removes(store: &dyn BlobStore) {
    let stored = put_ok(
        store,
        chunks_of(&pattern(CHUNK as usize + 1), 100_000),
        ROOMY,
    )
    .await;
    assert_eq!(store.delete(&stored.id).await, Ok(true));
    assert_eq!(
        store.get(&stored.id, None).await.err(),
        Some(BlobError::NotFound)
    );
    assert_eq!(store.delete(&stored.id).await, Ok(false), "deleting twice");
    assert!(!everything(store).await.contains(&stored.id));
}

pub async fn unknown_ids_are_not_found(store: &dyn BlobStore) {
    for id in [
        new_id(),
        "not-an-id".into(),
        "../../etc/passwd".into(),
        String::new(),
    ] {
        assert_eq!(
            store.get(&id, None).await.err(),
            Some(BlobError::NotFound),
            "{id:?}"
        );
        assert_eq!(store.delete(&id).await, Ok(false), "{id:?}");
    }
}

pub async fn created_before_is_ordered_and_limited(store: &dyn BlobStore) {
    let mut ours = Vec::new();
    for n in 0..3u8 {
        ours.push(put_ok(store, chunks_of(&[n; 10], 10), ROOMY).await.id);
    }
    let all = everything(store).await;
    let positions: Vec<usize> = ours
        .iter()
        .map(|id| all.iter().position(|other| other == id).expect("listed"))
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "oldest first: {positions:?}"
    );
    let limited = ok(store.created_before(Timestamp(i64::MAX), None, 2).await);
    assert_eq!(limited, all[..2.min(all.len())], "the first two");
    let next = ok(store
        .created_before(Timestamp(i64::MAX), Some(&ours[0]), 2)
        .await);
    assert_eq!(
        next,
        [ours[1].clone(), ours[2].clone()],
        "paged on from the first"
    );
    let first_at = id_created_at(&ours[0]).expect("time of the id");
    let last_at = id_created_at(&ours[2]).expect("time of the id");
    let earlier = ok(store.created_before(first_at, None, usize::MAX >> 1).await);
    assert!(!earlier.contains(&ours[0]), "strictly before");
    let later = ok(store
        .created_before(Timestamp(last_at.0 + 1), None, 100_000)
        .await);
    for id in &ours {
        assert!(later.contains(id), "{id} is before a later time");
    }
}

pub async fn concurrent_puts(store: &dyn BlobStore) {
    let bodies: Vec<Vec<u8>> = (0..8)
        .map(|n| pattern(CHUNK as usize / 2 + n * 1_001))
        .collect();
    let puts = bodies
        .iter()
        .map(|data| store.put(chunks_of(data, 30_000), ROOMY));
    let stored = futures_util::future::join_all(puts).await;
    let mut ids = Vec::new();
    for (data, stored) in bodies.iter().zip(stored) {
        let stored = ok(stored);
        assert_eq!(stored.sha256, sha256_hex(data));
        assert_eq!(collect(get_ok(store, &stored.id, None).await).await, *data);
        ids.push(stored.id);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), bodies.len(), "every put has its own id");
}

// ---------------------------------------------------------------------------
// Helpers, also for implementations' own tests

/// `data` as a body of chunks of `size` bytes.
pub fn chunks_of(data: &[u8], size: usize) -> ByteStream {
    let chunks: Vec<Result<Bytes, BlobError>> = data
        .chunks(size.max(1))
        .map(|chunk| Ok(Bytes::copy_from_slice(chunk)))
        .collect();
    Box::pin(futures_util::stream::iter(chunks))
}

/// The first half of `data` in chunks of `size`, then an error, as when
/// an uploader goes away.
pub fn failing_after(data: &[u8], size: usize) -> ByteStream {
    let half = &data[..data.len() / 2];
    let error = futures_util::stream::iter([Err(BlobError::Interrupted("the body broke".into()))]);
    Box::pin(chunks_of(half, size).chain(error))
}

/// Bytes that differ from one position to the next, so a misplaced range
/// shows.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(31) ^ (i >> 8)) as u8)
        .collect()
}

/// All the bytes of a read.
pub async fn collect(read: BlobRead) -> Vec<u8> {
    let mut body = read.body;
    let mut bytes = Vec::new();
    while let Some(chunk) = body.next().await {
        bytes.extend_from_slice(&ok(chunk));
    }
    bytes
}

/// Every blob of the store, oldest first.
async fn everything(store: &dyn BlobStore) -> Vec<String> {
    ok(store
        .created_before(Timestamp(i64::MAX), None, usize::MAX >> 1)
        .await)
}

async fn put_ok(store: &dyn BlobStore, body: ByteStream, max_bytes: u64) -> super::StoredBlob {
    ok(store.put(body, max_bytes).await)
}

async fn get_ok(store: &dyn BlobStore, id: &str, range: Option<(u64, u64)>) -> BlobRead {
    ok(store.get(id, range).await)
}

fn ok<T>(result: Result<T, BlobError>) -> T {
    match result {
        Ok(value) => value,
        Err(error) => panic!("blob store call failed: {error}"),
    }
}
