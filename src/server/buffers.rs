//! Buffers lent to connections while they have requests to answer, and
//! kept in a shared pool while they wait: a connection waiting for its next
//! request holds none, and one that is busy takes a buffer without asking
//! the allocator or zeroing it again.
//!
//! A connection's buffers (to read into, to write answers into, and the
//! handler's [`Response`]) are kept together, so lending them costs one
//! queue operation each way; a new connection takes ones already grown to
//! the size answers need.
//!
//! The pool is a lock-free queue shared by every scheduler thread, not a
//! thread-local: a coroutine can move to another thread at any yield, and
//! the compiler may keep a thread-local's address across one, so code on
//! coroutines does not touch thread-locals it could hold across a yield.

use std::sync::LazyLock;

use crossbeam_queue::ArrayQueue;

use crate::server::Response;

/// Sets of buffers kept; more are freed.
const KEPT: usize = 256;

/// Buffers larger than this are freed rather than kept: a kept set holds
/// at most four times this, and the pool [`KEPT`] sets. Answers and
/// requests of ordinary size fit; a connection that makes a larger one
/// grows its buffer again, from the allocator.
pub(crate) const KEEP_CAPACITY: usize = 16 * 1024;

static POOL: LazyLock<ArrayQueue<Buffers>> = LazyLock::new(|| ArrayQueue::new(KEPT));

/// A connection's buffers.
#[derive(Default)]
pub struct Buffers {
    /// To read into: its length is what is initialised (zeroed once, when
    /// it was first grown), not what is filled.
    pub read: Vec<u8>,
    /// To write answers into; empty.
    pub write: Vec<u8>,
    /// For the handler to write its answer into; cleared.
    pub response: Response,
}

/// A set of buffers, kept ones if there are any; a new write buffer has
/// room for `write_capacity` bytes.
pub fn take(write_capacity: usize) -> Buffers {
    let mut buffers = POOL.pop().unwrap_or_default();
    if buffers.write.capacity() == 0 {
        buffers.write.reserve(write_capacity);
    }
    buffers
}

/// Gives buffers back.
pub fn give(buffers: Buffers) {
    give_to(&POOL, buffers);
}

fn give_to(pool: &ArrayQueue<Buffers>, mut buffers: Buffers) {
    buffers.write.clear();
    buffers.response.clear();
    let [headers, body] = buffers.response.buffers_mut();
    for buffer in [&mut buffers.read, &mut buffers.write, headers, body] {
        if buffer.capacity() > KEEP_CAPACITY {
            *buffer = Vec::new();
        }
    }
    if buffers.read.capacity() != 0 || buffers.write.capacity() != 0 {
        // A full pool frees the buffers instead.
        let _ = pool.push(buffers);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(read: Vec<u8>, write: Vec<u8>) -> Buffers {
        Buffers {
            read,
            write,
            response: Response::default(),
        }
    }

    #[test]
    fn only_buffers_of_a_useful_size_are_kept_and_kept_ones_stay_as_they_were() {
        let pool = ArrayQueue::new(2);
        give_to(&pool, pair(Vec::new(), Vec::new()));
        give_to(
            &pool,
            pair(vec![1; KEEP_CAPACITY + 1], Vec::with_capacity(KEEP_CAPACITY + 1)),
        );
        assert!(pool.is_empty(), "empty and oversized buffers are freed");
        give_to(&pool, pair(vec![7; 100], vec![8; KEEP_CAPACITY + 1]));
        let kept = pool.pop().expect("the read buffer is kept");
        assert_eq!(
            (kept.read, kept.write.capacity()),
            (vec![7; 100], 0),
            "the oversized one is freed"
        );
        give_to(&pool, pair(Vec::new(), vec![9; 100]));
        let kept = pool.pop().expect("the write buffer is kept");
        assert!(kept.write.is_empty() && kept.write.capacity() >= 100, "kept empty");
        for _ in 0..3 {
            give_to(&pool, pair(vec![0; 10], Vec::new()));
        }
        assert_eq!(pool.len(), 2, "a full pool frees what it cannot keep");
    }

    #[test]
    fn a_kept_response_is_cleared_and_keeps_only_small_buffers() {
        let pool = ArrayQueue::new(1);
        let mut buffers = pair(vec![0; 10], Vec::new());
        buffers.response.set_status(404);
        buffers.response.header("X-A", "b");
        buffers
            .response
            .body_mut()
            .extend_from_slice(&[b'x'; KEEP_CAPACITY + 1]);
        let headers_capacity = buffers.response.buffers_mut()[0].capacity();
        give_to(&pool, buffers);
        let mut kept = pool.pop().expect("kept");
        assert_eq!(kept.response.status(), 200);
        let [headers, body] = kept.response.buffers_mut();
        assert!(
            headers.is_empty() && headers.capacity() == headers_capacity,
            "kept, emptied"
        );
        assert_eq!(body.capacity(), 0, "the oversized body is freed");
    }
}
