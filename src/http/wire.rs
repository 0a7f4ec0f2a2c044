//! Direct use of a connection's socket, for what may_minihttp 0.1.11 cannot
//! do through its `Response`: close a connection, send an interim
//! `100 Continue`, and answer a request whose body cannot be framed (the
//! library would read that body as the next request and drop the batch).
//!
//! The library hands each connection's service the socket's descriptor as
//! its id and keeps the socket open for as long as the service lives, so a
//! [`Socket`] is only ever used while its descriptor is valid. This module is
//! the one to delete once the library grows these features.

use std::os::fd::RawFd;

/// The descriptor of one connection's socket, borrowed from the library.
#[derive(Clone, Copy, Debug)]
pub struct Socket {
    fd: RawFd,
}

/// How many times a send that would block is retried (yielding in between)
/// before the rest of an answer is given up on.
const SEND_RETRIES: usize = 64;

impl Socket {
    /// Wraps the id may_minihttp gives `new_service`: the socket's descriptor.
    pub fn from_connection_id(id: usize) -> Self {
        Self { fd: id as RawFd }
    }

    /// Writes `bytes` ahead of whatever the library has buffered for this
    /// connection. Best effort: false if the peer is gone or stops reading.
    pub fn send(&self, mut bytes: &[u8]) -> bool {
        let mut retries = 0;
        while !bytes.is_empty() {
            // SAFETY: `fd` is this connection's open socket (see the module
            // doc); the pointer and length describe the live slice `bytes`.
            // MSG_NOSIGNAL turns a closed peer into EPIPE instead of SIGPIPE.
            let sent = unsafe { libc::send(self.fd, bytes.as_ptr().cast(), bytes.len(), libc::MSG_NOSIGNAL) };
            if sent > 0 {
                bytes = &bytes[sent as usize..];
                continue;
            }
            let err = std::io::Error::last_os_error();
            let would_block = err.kind() == std::io::ErrorKind::WouldBlock;
            if sent == 0 || !would_block || retries == SEND_RETRIES {
                return false;
            }
            retries += 1;
            may::coroutine::yield_now();
        }
        true
    }

    /// Stops reading requests: once the library has written the answers it
    /// holds, its next read sees end-of-file and it closes the connection.
    pub fn stop_reading(&self) {
        self.shutdown(libc::SHUT_RD);
    }

    /// Ends the connection both ways now; the library closes it on its next
    /// read or write.
    pub fn close(&self) {
        self.shutdown(libc::SHUT_RDWR);
    }

    fn shutdown(&self, how: libc::c_int) {
        // SAFETY: `fd` is this connection's open socket (see the module doc);
        // shutdown only changes the socket's state and touches no memory.
        // An error (the peer already gone) leaves nothing to do.
        unsafe {
            libc::shutdown(self.fd, how);
        }
    }

    /// Bytes the kernel has received on this socket since it was opened
    /// (`tcpi_bytes_received` of `TCP_INFO`), or `None` if it cannot say.
    pub fn bytes_received(&self) -> Option<u64> {
        // SAFETY: tcp_info is plain old data, for which all-zero is valid.
        let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        // SAFETY: `fd` is an open socket (the guard only calls this while
        // the connection is registered, see `guard`); `info` and `len` are
        // live locals and `len` holds the size of `info`, so the kernel
        // writes at most that many bytes.
        let status = unsafe {
            libc::getsockopt(
                self.fd,
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                (&mut info as *mut libc::tcp_info).cast(),
                &mut len,
            )
        };
        let complete = len as usize >= std::mem::offset_of!(libc::tcp_info, tcpi_bytes_received) + 8;
        (status == 0 && complete).then_some(info.tcpi_bytes_received)
    }
}
