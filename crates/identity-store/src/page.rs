//! Cursor pagination: pages are ordered by id (UUIDv7, so by creation time) and the
//! cursor is the last id returned. Stable under concurrent inserts, unlike OFFSET.

use diesel::dsl::{Asc, Filter, Gt, Limit, Order};
use diesel::expression::AsExpression;
use diesel::prelude::*;
use diesel::query_dsl::methods::{FilterDsl, LimitDsl, OrderDsl};
use diesel::sql_types::SqlType;

use crate::{StoreError, StoreResult};

pub const MAX_PAGE_SIZE: u32 = 500;

#[derive(Debug, Clone, Default)]
pub struct PageRequest {
    pub after: Option<String>,
    pub limit: u32,
}

impl PageRequest {
    pub fn first(limit: u32) -> Self {
        PageRequest { after: None, limit }
    }

    pub fn after(cursor: impl Into<String>, limit: u32) -> Self {
        PageRequest {
            after: Some(cursor.into()),
            limit,
        }
    }

    /// The number of rows to fetch: one more than asked, to learn whether a next page exists.
    pub(crate) fn fetch_limit(&self) -> StoreResult<i64> {
        if self.limit == 0 || self.limit > MAX_PAGE_SIZE {
            return Err(StoreError::invalid(
                "page request",
                format!("limit must be between 1 and {MAX_PAGE_SIZE}"),
            ));
        }
        Ok(i64::from(self.limit) + 1)
    }

    pub(crate) fn cursor(&self) -> &str {
        self.after.as_deref().unwrap_or("")
    }

    /// `query` narrowed to this page: the rows whose `id` comes after the cursor, in
    /// `id` order, [`PageRequest::fetch_limit`] of them.
    pub(crate) fn of_rows<Q, C>(&self, query: Q, id: C) -> StoreResult<PageOf<Q, C>>
    where
        C: ExpressionMethods + Copy,
        C::SqlType: SqlType,
        String: AsExpression<C::SqlType>,
        Q: FilterDsl<Gt<C, String>>,
        Filter<Q, Gt<C, String>>: OrderDsl<Asc<C>>,
        Order<Filter<Q, Gt<C, String>>, Asc<C>>: LimitDsl,
    {
        Ok(query
            .filter(id.gt(self.cursor().to_owned()))
            .order(id.asc())
            .limit(self.fetch_limit()?))
    }
}

/// What [`PageRequest::of_rows`] makes of a query.
pub(crate) type PageOf<Q, C> = Limit<Order<Filter<Q, Gt<C, String>>, Asc<C>>>;

#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass to [`PageRequest::after`] for the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from `limit + 1` fetched rows.
    pub(crate) fn from_rows(
        mut items: Vec<T>,
        request: &PageRequest,
        id: impl Fn(&T) -> String,
    ) -> Self {
        let limit = request.limit as usize;
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(id)
        } else {
            None
        };
        Page { items, next_cursor }
    }
}

/// Every item a paged listing has, read a page of `page_size` at a time (for
/// operators' lists and caches that want all of a tenant's rows, never for user
/// input that could ask for millions).
pub fn every<T, E>(
    page_size: u32,
    mut list: impl FnMut(&PageRequest) -> Result<Page<T>, E>,
) -> Result<Vec<T>, E> {
    let mut all = Vec::new();
    let mut request = PageRequest::first(page_size);
    loop {
        let page = list(&request)?;
        all.extend(page.items);
        match page.next_cursor {
            Some(cursor) => request = PageRequest::after(cursor, page_size),
            None => return Ok(all),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reads_page_after_page_until_there_is_no_cursor() {
        let rows: Vec<u32> = (1..=7).collect();
        let mut calls = 0;
        let all = every(3, |request: &PageRequest| -> StoreResult<Page<u32>> {
            calls += 1;
            let after: u32 = request
                .after
                .as_deref()
                .map_or(0, |c| c.parse().unwrap_or(0));
            let fetched: Vec<u32> = rows
                .iter()
                .copied()
                .filter(|r| *r > after)
                .take(request.fetch_limit()? as usize)
                .collect();
            Ok(Page::from_rows(fetched, request, u32::to_string))
        })
        .unwrap();
        assert_eq!(all, rows);
        assert_eq!(calls, 3);
    }
}
