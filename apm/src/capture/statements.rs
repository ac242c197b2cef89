//! The statements an application thread runs, remembered with their signature: a statement
//! seen before (the same text at the same address, as a `&'static str` literal always is)
//! gives its span a shared pointer, with no allocation and no scan of its SQL. A small table
//! per thread, indexed by the text's address and length; a statement that misses replaces
//! the one in its slot.

use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::Arc;

use crate::queue::tracer;
use crate::types::db::{DbStatement, SqlText};
use crate::util::text::{truncate, DEFAULT_LONG_LIMIT};

/// Slots per thread.
const SLOTS: usize = 64;
/// Longer statements are not remembered (bounding what a thread keeps to `SLOTS` times this).
const MAX_REMEMBERED: usize = 4096;

thread_local! {
    static SEEN: RefCell<[Option<Arc<SqlText>>; SLOTS]> = const { RefCell::new([const { None }; SLOTS]) };
}

/// The text and signature of `statement`, shared with earlier runs of it on this thread.
pub(crate) fn sql_text(statement: DbStatement<'_>) -> Arc<SqlText> {
    let (address, len) = match statement {
        DbStatement::Sql(sql) => (sql.as_ptr() as usize, sql.len()),
        DbStatement::Unknown(name) => (name.as_ptr() as usize, name.len()),
    };
    let slot = slot_of(address, len);
    let remembered = SEEN
        .try_with(|seen| {
            let seen = seen.try_borrow().ok()?;
            let text = seen[slot].as_ref()?;
            is(text, statement).then(|| Arc::clone(text))
        })
        .ok()
        .flatten();
    if let Some(text) = remembered {
        return text;
    }
    let text = Arc::new(new_text(statement));
    let fits = match statement {
        DbStatement::Sql(sql) => text
            .statement
            .as_deref()
            .is_some_and(|s| s.len() == sql.len()),
        DbStatement::Unknown(_) => true,
    };
    if fits && len <= MAX_REMEMBERED {
        let _ = SEEN.try_with(|seen| {
            if let Ok(mut seen) = seen.try_borrow_mut() {
                seen[slot] = Some(Arc::clone(&text));
            }
        });
    }
    text
}

/// The slot of a text at `address` of `len` bytes (Fibonacci hashing of both).
#[inline]
fn slot_of(address: usize, len: usize) -> usize {
    let mixed = (address as u64 ^ (len as u64).rotate_left(32)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (mixed >> (64 - SLOTS.trailing_zeros())) as usize
}

/// `text` was made from `statement` (the same characters: an address can be reused by
/// another text).
#[inline]
fn is(text: &SqlText, statement: DbStatement<'_>) -> bool {
    match statement {
        DbStatement::Sql(sql) => text.statement.as_deref() == Some(sql),
        DbStatement::Unknown(name) => text.statement.is_none() && text.name == name,
    }
}

#[cold]
fn new_text(statement: DbStatement<'_>) -> SqlText {
    match statement {
        DbStatement::Sql(sql) => {
            let limit =
                tracer::get().map_or(DEFAULT_LONG_LIMIT, |t| t.live.long_field_max_length());
            SqlText {
                statement: Some(truncate(sql, limit).into_owned().into_boxed_str()),
                name: Cow::Owned(crate::sql::signature(sql)),
            }
        }
        DbStatement::Unknown(name) => SqlText {
            statement: None,
            name: Cow::Borrowed(name),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_statement_seen_before_is_shared_and_another_text_at_its_address_is_not() {
        let a = sql_text(DbStatement::Sql("SELECT * FROM item"));
        let b = sql_text(DbStatement::Sql("SELECT * FROM item"));
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(a.name, "SELECT FROM item");
        let mut owned = String::from("SELECT * FROM a");
        let first = sql_text(DbStatement::Sql(&owned));
        owned.replace_range(14.., "b");
        let second = sql_text(DbStatement::Sql(&owned));
        assert_eq!(first.name, "SELECT FROM a");
        assert_eq!(second.name, "SELECT FROM b");
        let unknown = sql_text(DbStatement::Unknown("SQLite"));
        assert_eq!(
            (unknown.statement.as_deref(), &*unknown.name),
            (None, "SQLite")
        );
    }

    #[test]
    fn a_long_statement_is_cut_when_captured_and_named_from_all_of_it() {
        let sql = format!("UPDATE item SET name = '{}'", "x".repeat(20_000));
        let text = sql_text(DbStatement::Sql(&sql));
        assert_eq!(
            text.statement.as_deref().map(|s| s.chars().count()),
            Some(DEFAULT_LONG_LIMIT)
        );
        assert_eq!(text.name, "UPDATE item");
    }
}
