//! Buffers lent to connections while they have requests to answer, and
//! kept in a shared pool while they wait: a connection waiting for its next
//! request holds none, and one that is busy takes a buffer without asking
//! the allocator or zeroing it again.
//!
//! The pool is a lock-free queue shared by every scheduler thread, not a
//! thread-local: a coroutine can move to another thread at any yield, and
//! the compiler may keep a thread-local's address across one, so code on
//! coroutines does not touch thread-locals it could hold across a yield.

use std::sync::LazyLock;

use crossbeam_queue::ArrayQueue;

/// Buffers kept, of each kind; more are freed.
const KEPT: usize = 256;

/// Buffers larger than this are freed rather than kept.
const KEEP_CAPACITY: usize = 64 * 1024;

static READ: LazyLock<ArrayQueue<Vec<u8>>> = LazyLock::new(|| ArrayQueue::new(KEPT));
static WRITE: LazyLock<ArrayQueue<Vec<u8>>> = LazyLock::new(|| ArrayQueue::new(KEPT));

/// A buffer to read into: its length is what is initialised (zeroed once,
/// when it was first grown), not what is filled.
pub fn take_read() -> Vec<u8> {
    READ.pop().unwrap_or_default()
}

/// Gives back a read buffer.
pub fn give_read(buffer: Vec<u8>) {
    give(&READ, buffer);
}

/// An empty buffer to write answers into.
pub fn take_write(capacity: usize) -> Vec<u8> {
    WRITE.pop().unwrap_or_else(|| Vec::with_capacity(capacity))
}

/// Gives back a write buffer.
pub fn give_write(mut buffer: Vec<u8>) {
    buffer.clear();
    give(&WRITE, buffer);
}

fn give(kept: &ArrayQueue<Vec<u8>>, buffer: Vec<u8>) {
    if buffer.capacity() != 0 && buffer.capacity() <= KEEP_CAPACITY {
        // A full pool frees the buffer instead.
        let _ = kept.push(buffer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_buffers_of_a_useful_size_are_kept_and_kept_ones_stay_as_they_were() {
        let kept = ArrayQueue::new(2);
        give(&kept, Vec::new());
        give(&kept, vec![1; KEEP_CAPACITY + 1]);
        assert!(kept.is_empty(), "empty and oversized buffers are freed");
        give(&kept, vec![7; 100]);
        assert_eq!(kept.pop(), Some(vec![7; 100]));
        for _ in 0..3 {
            give(&kept, vec![0; 10]);
        }
        assert_eq!(kept.len(), 2, "a full pool frees what it cannot keep");
    }
}
