//! Failure counters in the database, so every node sees the same count (sign-in
//! throttling, resend limits). Increments are single UPDATE statements, so
//! concurrent failures are all counted.

use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use diesel::prelude::*;
use gatehouse_core::ids::TenantId;

use crate::error::is_unique_violation;
use crate::schema::rate_limits;
use crate::{AnyConnection, StoreResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter {
    pub failures: i32,
    pub window_started_at: DateTime<Utc>,
    pub locked_until: Option<DateTime<Utc>>,
}

impl Counter {
    pub fn is_locked(&self, now: DateTime<Utc>) -> bool {
        self.locked_until.is_some_and(|until| until > now)
    }
}

fn key(tenant: TenantId, bucket: &str) -> (String, String) {
    (tenant.to_string(), bucket.to_owned())
}

pub fn get(
    conn: &mut AnyConnection,
    tenant: TenantId,
    bucket: &str,
) -> StoreResult<Option<Counter>> {
    let row: Option<(i32, NaiveDateTime, Option<NaiveDateTime>)> = rate_limits::table
        .find(key(tenant, bucket))
        .select((
            rate_limits::failures,
            rate_limits::window_started_at,
            rate_limits::locked_until,
        ))
        .first(conn)
        .optional()?;
    Ok(row.map(|(failures, window, locked)| Counter {
        failures,
        window_started_at: window.and_utc(),
        locked_until: locked.map(|t| t.and_utc()),
    }))
}

/// Counts one more failure in `bucket`. Failures older than `window` are forgotten
/// first. `lock_for(failures)` says how long the bucket is then locked.
pub fn record_failure(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    bucket: &str,
    window: Duration,
    lock_for: impl Fn(i32) -> Option<Duration>,
) -> StoreResult<Counter> {
    let (tenant_key, bucket_key) = key(tenant, bucket);
    for _ in 0..3 {
        let result = crate::db::transaction(conn, |conn| {
            let target = || {
                rate_limits::table
                    .filter(rate_limits::tenant_id.eq(&tenant_key))
                    .filter(rate_limits::bucket.eq(&bucket_key))
            };
            diesel::update(
                target().filter(rate_limits::window_started_at.le((now - window).naive_utc())),
            )
            .set((
                rate_limits::failures.eq(0),
                rate_limits::window_started_at.eq(now.naive_utc()),
            ))
            .execute(conn)?;
            let bumped = diesel::update(target())
                .set(rate_limits::failures.eq(rate_limits::failures + 1))
                .execute(conn)?;
            if bumped == 0 {
                diesel::insert_into(rate_limits::table)
                    .values((
                        rate_limits::tenant_id.eq(&tenant_key),
                        rate_limits::bucket.eq(&bucket_key),
                        rate_limits::failures.eq(1),
                        rate_limits::window_started_at.eq(now.naive_utc()),
                    ))
                    .execute(conn)?;
            }
            let mut counter = get(conn, tenant, bucket)?.ok_or(crate::StoreError::NotFound {
                entity: "rate limit",
            })?;
            if let Some(duration) = lock_for(counter.failures) {
                let until = now + duration;
                diesel::update(target())
                    .set(rate_limits::locked_until.eq(Some(until.naive_utc())))
                    .execute(conn)?;
                counter.locked_until = Some(until);
            }
            Ok(counter)
        });
        match result {
            // Two first failures raced to insert; the loser counts again as an update.
            Err(crate::StoreError::Database(e)) if is_unique_violation(&e) => continue,
            other => return other,
        }
    }
    get(conn, tenant, bucket)?.ok_or(crate::StoreError::NotFound {
        entity: "rate limit",
    })
}

/// Forgets the bucket (after a successful sign-in).
pub fn reset(conn: &mut AnyConnection, tenant: TenantId, bucket: &str) -> StoreResult<()> {
    diesel::delete(rate_limits::table.find(key(tenant, bucket))).execute(conn)?;
    Ok(())
}

/// Forgets every counter of the tenant (its deletion).
pub fn delete_for_tenant(conn: &mut AnyConnection, tenant: TenantId) -> StoreResult<usize> {
    Ok(
        diesel::delete(rate_limits::table.filter(rate_limits::tenant_id.eq(tenant.to_string())))
            .execute(conn)?,
    )
}
