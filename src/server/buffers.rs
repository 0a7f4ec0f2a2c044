//! Buffers lent to connections while they have requests to answer, and
//! kept per scheduler thread while they wait: a connection waiting for its
//! next request holds none, and one that is busy takes a buffer without
//! asking the allocator or zeroing it again.

use std::cell::RefCell;

/// Buffers kept per thread, of each kind; more are freed.
const KEPT: usize = 32;

/// Buffers larger than this are freed rather than kept.
const KEEP_CAPACITY: usize = 64 * 1024;

thread_local! {
    static READ: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    static WRITE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// A buffer to read into: its length is what is initialised (zeroed once,
/// when it was first grown), not what is filled.
pub fn take_read() -> Vec<u8> {
    READ.with_borrow_mut(Vec::pop).unwrap_or_default()
}

/// Gives back a read buffer.
pub fn give_read(buffer: Vec<u8>) {
    give(&READ, buffer);
}

/// An empty buffer to write answers into.
pub fn take_write(capacity: usize) -> Vec<u8> {
    WRITE
        .with_borrow_mut(Vec::pop)
        .unwrap_or_else(|| Vec::with_capacity(capacity))
}

/// Gives back a write buffer.
pub fn give_write(mut buffer: Vec<u8>) {
    buffer.clear();
    give(&WRITE, buffer);
}

fn give(kept: &'static std::thread::LocalKey<RefCell<Vec<Vec<u8>>>>, buffer: Vec<u8>) {
    if buffer.capacity() == 0 || buffer.capacity() > KEEP_CAPACITY {
        return;
    }
    // `try_with`: a thread being torn down frees the buffer instead.
    let _ = kept.try_with(|kept| {
        let mut kept = kept.borrow_mut();
        if kept.len() < KEPT {
            kept.push(buffer);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_given_back_are_lent_again_and_large_ones_are_not_kept() {
        let mut read = take_read();
        read.resize(100, 7);
        let address = read.as_ptr();
        give_read(read);
        let again = take_read();
        assert_eq!(
            (again.as_ptr(), again.len()),
            (address, 100),
            "kept as it was, initialised"
        );
        give_write(vec![1; KEEP_CAPACITY + 1]);
        let fresh = take_write(16);
        assert!(fresh.capacity() < KEEP_CAPACITY && fresh.is_empty());
    }
}
