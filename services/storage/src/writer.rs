//! Bulk inserts into one shard, idempotent by (channel_id, message_id).

use chatmesh_db::{DbError, Shard};
use diesel_async::RunQueryDsl as _;

use crate::rows::Row;
use crate::schema::messages;

/// Rows per INSERT: 7 columns each keeps a statement far below Postgres'
/// limit of 65,535 bind parameters.
pub(crate) const ROWS_PER_INSERT: usize = 2_000;

/// Inserts `rows` into `shard` in one transaction, skipping rows already
/// stored. Returns how many were new.
pub(crate) async fn insert(shard: &Shard, rows: &[Row]) -> Result<usize, DbError> {
    let mut conn = shard.pool.get().await?;
    let inserted = diesel_async::AsyncConnection::transaction(&mut *conn, async |conn| {
        let mut inserted = 0;
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            inserted += diesel::insert_into(messages::table)
                .values(chunk)
                .on_conflict((messages::channel_id, messages::message_id))
                .do_nothing()
                .execute(conn)
                .await?;
        }
        Ok::<_, diesel::result::Error>(inserted)
    })
    .await?;
    Ok(inserted)
}
