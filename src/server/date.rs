//! The `Date` header line, formatted once a second per thread rather than
//! once per answer.

use std::cell::RefCell;

/// `Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n`.
pub(crate) const LINE_LEN: usize = 37;

struct Cached {
    second: u64,
    line: [u8; LINE_LEN],
}

thread_local! {
    static CACHED: RefCell<Cached> = const { RefCell::new(Cached { second: u64::MAX, line: [0; LINE_LEN] }) };
}

/// The `Date` header line for now, with its CRLF; one clock read per call,
/// so callers take it once per batch of answers. Never inlined: the
/// compiler may keep a thread-local's address across a call, and the
/// connection coroutines that call this change threads when they yield;
/// here the address is taken afresh on every call.
#[inline(never)]
pub fn line() -> [u8; LINE_LEN] {
    let second = unix_seconds();
    CACHED.with_borrow_mut(|cached| {
        if cached.second != second {
            cached.second = second;
            cached.line = format_line(second);
        }
        cached.line
    })
}

/// Seconds since the Unix epoch, from `time(2)`: the whole seconds are all
/// a `Date` shows, and on Linux `time` reads them from the vDSO's coarse
/// clock (`line` costs 40 instructions with it, 107 with `SystemTime::now`
/// and `duration_since`; callgrind). The coarse clock turns to the next
/// second up to a tick, a few milliseconds, late.
fn unix_seconds() -> u64 {
    // SAFETY: `time` accepts a null pointer, and then only returns the
    // time; it has no other effect and cannot fail.
    let seconds = unsafe { libc::time(std::ptr::null_mut()) };
    u64::try_from(seconds).unwrap_or(0)
}

/// Formats the IMF-fixdate (RFC 9110 section 5.6.7) of `unix_seconds`.
fn format_line(unix_seconds: u64) -> [u8; LINE_LEN] {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
    ];
    let days = unix_seconds / 86_400;
    let seconds = unix_seconds % 86_400;
    let (year, month, day) = civil_from_days(days as i64);
    let mut line = *b"Date: Thu, 01 Jan 1970 00:00:00 GMT\r\n";
    line[6..9].copy_from_slice(DAYS[(days % 7) as usize]);
    two_digits(&mut line[11..13], day);
    line[14..17].copy_from_slice(MONTHS[month as usize - 1]);
    let year = year.clamp(0, 9999) as u32;
    two_digits(&mut line[18..20], year / 100);
    two_digits(&mut line[20..22], year % 100);
    two_digits(&mut line[23..25], (seconds / 3600) as u32);
    two_digits(&mut line[26..28], (seconds / 60 % 60) as u32);
    two_digits(&mut line[29..31], (seconds % 60) as u32);
    line
}

fn two_digits(out: &mut [u8], value: u32) {
    out[0] = b'0' + (value / 10 % 10) as u8;
    out[1] = b'0' + (value % 10) as u8;
}

/// Year, month (1-12) and day (1-31) of a count of days since 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn formatted(unix_seconds: u64) -> String {
        String::from_utf8(format_line(unix_seconds).to_vec()).unwrap()
    }

    #[test]
    fn formats_imf_fixdate() {
        assert_eq!(formatted(0), "Date: Thu, 01 Jan 1970 00:00:00 GMT\r\n");
        assert_eq!(formatted(784_111_777), "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n");
        assert_eq!(formatted(951_782_400), "Date: Tue, 29 Feb 2000 00:00:00 GMT\r\n");
        assert_eq!(formatted(1_795_906_800), "Date: Sat, 28 Nov 2026 23:00:00 GMT\r\n");
        assert_eq!(formatted(4_102_444_799), "Date: Thu, 31 Dec 2099 23:59:59 GMT\r\n");
    }

    #[test]
    fn the_cached_line_is_now() {
        use std::time::{SystemTime, UNIX_EPOCH};
        let now = || SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let before = now();
        let line = line();
        let after = now();
        // The coarse clock may be a tick behind the precise one.
        let plausible: Vec<_> = (before.saturating_sub(1)..=after).map(format_line).collect();
        assert!(plausible.contains(&line), "{:?}", String::from_utf8_lossy(&line));
    }
}
