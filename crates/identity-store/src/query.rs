//! What most repository queries share: the tenant scoping they all start with, and
//! the select-run-decode they end with, so each repository states only its filters.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::dsl::{AsSelect, Eq, Limit, Select};
use diesel::expression::{AsExpression, Expression};
use diesel::prelude::*;
use diesel::query_builder::QueryId;
use diesel::query_dsl::LoadQuery;
use diesel::query_dsl::methods::{LimitDsl, SelectDsl};
use diesel::sql_types::SqlType;

use gatehouse_core::ids::UserId;

use crate::db::MultiBackend;
use crate::{AnyConnection, StoreError, StoreResult};

/// A store item read from one row type (`Group` from `GroupRow`): the row's columns
/// are what a query selects, and decoding fails only on a corrupt row.
pub(crate) trait FromRow: Sized {
    type Row: Selectable<MultiBackend, SelectExpression: QueryId + Expression>;

    fn from_row(row: Self::Row) -> StoreResult<Self>;
}

/// The query selecting `T`'s row.
type Rows<Q, T> = Select<Q, AsSelect<<T as FromRow>::Row, MultiBackend>>;

/// Runs a query for store items: selects the item's row and decodes what it finds.
pub(crate) trait LoadItems: Sized {
    /// The first item the query finds, if any.
    fn first_item<'q, T>(self, conn: &mut AnyConnection) -> StoreResult<Option<T>>
    where
        T: FromRow,
        Self: SelectDsl<AsSelect<T::Row, MultiBackend>>,
        Rows<Self, T>: LimitDsl + RunQueryDsl<AnyConnection>,
        Limit<Rows<Self, T>>: LoadQuery<'q, AnyConnection, T::Row>,
    {
        self.select(T::Row::as_select())
            .first(conn)
            .optional()?
            .map(T::from_row)
            .transpose()
    }

    /// [`LoadItems::first_item`] for a query that must find one: `NotFound` for
    /// `entity` when it does not.
    fn one_item<'q, T>(self, conn: &mut AnyConnection, entity: &'static str) -> StoreResult<T>
    where
        T: FromRow,
        Self: SelectDsl<AsSelect<T::Row, MultiBackend>>,
        Rows<Self, T>: LimitDsl + RunQueryDsl<AnyConnection>,
        Limit<Rows<Self, T>>: LoadQuery<'q, AnyConnection, T::Row>,
    {
        self.first_item(conn)?
            .ok_or(StoreError::NotFound { entity })
    }

    /// Every item the query finds, in its order.
    fn load_items<'q, T>(self, conn: &mut AnyConnection) -> StoreResult<Vec<T>>
    where
        T: FromRow,
        Self: SelectDsl<AsSelect<T::Row, MultiBackend>>,
        Rows<Self, T>: LoadQuery<'q, AnyConnection, T::Row> + RunQueryDsl<AnyConnection>,
    {
        self.select(T::Row::as_select())
            .load(conn)?
            .into_iter()
            .map(T::from_row)
            .collect()
    }
}

impl<Q> LoadItems for Q {}

/// The rows of a tenant-scoped table that belong to `tenant`: where every query of
/// a tenant's data starts, so none can forget the scope.
macro_rules! tenant_rows {
    ($table:ident, $tenant:expr) => {
        $table::table.filter($table::tenant_id.eq($tenant.to_string()))
    };
}

/// The tenant's row of `$table` with this `id` (one row, or none in this tenant):
/// what a get, update or delete of one row addresses.
macro_rules! tenant_row {
    ($table:ident, $tenant:expr, $id:expr) => {
        $crate::query::tenant_rows!($table, $tenant).filter($table::id.eq($id.to_string()))
    };
}

pub(crate) use {tenant_row, tenant_rows};

/// Rows of a join with a link table (group members, role assignments) as
/// `(user id, row)` pairs, collected into each user's items in the order read.
pub(crate) fn items_by_user<T: FromRow>(
    rows: Vec<(String, T::Row)>,
    link_table: &'static str,
) -> StoreResult<HashMap<UserId, Vec<T>>> {
    let mut out: HashMap<UserId, Vec<T>> = HashMap::new();
    for (user, row) in rows {
        let user = user
            .parse()
            .map_err(|e| StoreError::corrupt(link_table, &e))?;
        out.entry(user).or_default().push(T::from_row(row)?);
    }
    Ok(out)
}

/// What [`closed`] assigns: the closing time and the reason.
pub(crate) type Closing<'r, A, R> = (Eq<A, Option<NaiveDateTime>>, Eq<R, Option<&'r str>>);

/// The assignments that close a row for good, saying when (`at_column`, now) and
/// why (`reason_column`): a recovery cancelled, a grant revoked, a session ended.
pub(crate) fn closed<'r, A, R>(
    at_column: A,
    reason_column: R,
    now: DateTime<Utc>,
    reason: &'r str,
) -> Closing<'r, A, R>
where
    A: ExpressionMethods,
    A::SqlType: SqlType,
    Option<NaiveDateTime>: AsExpression<A::SqlType>,
    R: ExpressionMethods,
    R::SqlType: SqlType,
    Option<&'r str>: AsExpression<R::SqlType>,
{
    (
        at_column.eq(Some(now.naive_utc())),
        reason_column.eq(Some(reason)),
    )
}

/// `value` as a literal inside a LIKE pattern: `%`, `_` and `\` escaped, for
/// `LIKE … ESCAPE '\'` (the same on both backends).
pub(crate) fn like_literal(value: &str) -> String {
    let mut pattern = String::with_capacity(value.len() + 2);
    for c in value.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern
}
