//! The `Date` field, formatted once a second per thread.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

/// An IMF-fixdate is always 29 bytes.
const DATE_LEN: usize = 29;

thread_local! {
    static CACHED: RefCell<(u64, [u8; DATE_LEN])> = const { RefCell::new((0, [0; DATE_LEN])) };
}

/// Calls `f` with the current time as an HTTP date.
pub(crate) fn http_date<R>(f: impl FnOnce(&[u8]) -> R) -> R {
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHED.with(|cached| {
        let mut cached = cached.borrow_mut();
        if cached.0 != second {
            let text = httpdate::fmt_http_date(now);
            let bytes = text.as_bytes();
            if bytes.len() == DATE_LEN {
                cached.1.copy_from_slice(bytes);
                cached.0 = second;
            }
        }
        f(&cached.1)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates_are_imf_fixdates() {
        let date = super::http_date(|d| String::from_utf8(d.to_vec()).unwrap());
        assert!(httpdate::parse_http_date(&date).is_ok(), "{date}");
    }
}
