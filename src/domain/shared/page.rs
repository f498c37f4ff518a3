//! One page of a listing, for every paged listing the API has.

/// One page of a listing; `more` says whether anything follows it.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub more: bool,
}

impl<T> Page<T> {
    /// Builds a page from a query that fetched one row beyond `limit`, the
    /// cheapest way to learn whether another page exists.
    pub fn from_overfetch(mut items: Vec<T>, limit: u32) -> Self {
        let limit = limit as usize;
        let more = items.len() > limit;
        items.truncate(limit);
        Self { items, more }
    }
}
