//! What an idle keep-alive connection costs in memory. Run by the test
//! command against the release build only (`cargo test --release --test
//! idle_memory`): the figure is the optimized build's frames, and a debug
//! build's are several times larger, so the file is empty without
//! optimizations rather than holding a bound that means nothing there.
#![cfg(not(debug_assertions))]

mod common;

use common::{Conn, Server};

/// Coroutines may makes at start-up, with their stacks; connections take
/// these first, so a measurement starts after as many.
const MAY_POOL: u64 = 1000;

/// Connections measured, after the pool's.
const MEASURED: u64 = 1000;

/// What an idle keep-alive connection costs is mostly its coroutine's
/// stack, resident by the page: the bottom page, which may's overflow
/// check marks when the stack is made, and the pages its deepest request
/// touched. Answering `GET /tasks/{id}` stays within the top page, so such
/// connections cost two pages each, not three.
#[test]
fn an_idle_keep_alive_connection_holds_two_stack_pages_not_three() {
    let needed = 2 * (MAY_POOL + MEASURED) + 100;
    let files = raise_file_limit();
    assert!(
        files >= needed,
        "the hard limit on open files, {files}, is below the {needed} this test needs"
    );
    let server = Server::start(&[("MAX_CONNECTIONS", "5000")]);
    let target = format!("/tasks/{}", server.create_task("t"));
    let open_idle = |count: u64| -> Vec<Conn> {
        (0..count)
            .map(|_| {
                let mut conn = server.connect();
                assert_eq!(conn.get(&target).status, 200);
                conn
            })
            .collect()
    };
    let on_pooled_stacks = open_idle(MAY_POOL);
    let before = server.rss_bytes();
    let measured = open_idle(MEASURED);
    let each = server.rss_bytes().saturating_sub(before) / MEASURED;
    // Two pages and the connection's share of the heap measure 8.6 KiB;
    // a third page would make it 12.6.
    assert!(each < 10 * 1024 + 512, "{each} bytes of RSS per idle connection");
    drop((on_pooled_stacks, measured));
}

/// Raises this process's soft limit on open files to its hard limit, and
/// returns it; the server started afterwards inherits it. Each connection
/// takes a descriptor on both sides.
fn raise_file_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into `limit`, which this frame owns.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) }, 0);
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: setrlimit only reads `limit`, which this frame owns.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
    limit.rlim_cur
}
