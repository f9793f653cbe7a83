//! Reads from a hot standby with read-your-writes (`DATABASE_REPLICA_URL`, off by default).
//!
//! After a caller's write commits, the primary's WAL position is kept in Redis under the
//! caller's id (the highest one seen, so concurrent writes cannot move it back). A read that
//! may run on the standby ([`crate::extract::StandbyRead`]) does so only when the standby has
//! replayed past that position and finds the caller's live session and membership there; in
//! every other case (the standby behind, down, not a standby, the caller unknown there, Redis
//! unreachable) it runs on the primary. So a caller always sees their own writes; what others
//! wrote (a revoked membership, a session ended elsewhere) shows once the standby replays it.

use std::time::Duration;

use ghostworks_auth::tokens::Claims;
use ghostworks_db::users::{self, Entry, Server};
use ghostworks_db::Tx;
use redis::aio::ConnectionManager;
use redis::Script;
use sqlx::PgPool;
use uuid::Uuid;

/// How long a caller's last write position is kept. A standby further behind than this would
/// serve older data than the caller wrote; one that far behind is broken, not lagging.
const REMEMBER: Duration = Duration::from_secs(3600);

/// Keeps the higher of the stored and the new position, and renews the key's lifetime.
const NOTE_LUA: &str = r"
local stored = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > stored then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
else
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return 1
";

pub struct Replica {
    pool: PgPool,
    redis: ConnectionManager,
    prefix: String,
    note_script: Script,
}

impl Replica {
    pub fn new(pool: PgPool, redis: ConnectionManager, prefix: &str) -> Self {
        Replica {
            pool,
            redis,
            prefix: prefix.to_string(),
            note_script: Script::new(NOTE_LUA),
        }
    }

    fn key(&self, user: Uuid) -> String {
        format!("{}:last-write-lsn:{user}", self.prefix)
    }

    /// Remembers that `user`'s write has committed on `primary`. A failure is logged: the
    /// write stands, and the caller's reads may then reach a standby that has not replayed it
    /// until it does (normally milliseconds).
    #[tracing::instrument(name = "redis.note_write", target = "ghostworks::redis", skip_all, fields(db.system = "redis", otel.kind = "client"))]
    pub async fn note_write(&self, primary: &PgPool, user: Uuid) {
        let noted = async {
            let position = ghostworks_db::wal_position(primary).await?;
            let mut conn = self.redis.clone();
            self.note_script
                .key(self.key(user))
                .arg(position)
                .arg(REMEMBER.as_secs())
                .invoke_async::<i64>(&mut conn)
                .await?;
            anyhow::Ok(())
        }
        .await;
        if let Err(e) = noted {
            tracing::error!(error = %e, user_id = %user, "the position of a write was not kept; the standby may serve this user older data until it replays it");
        }
    }

    /// The caller's read transaction on the standby, when the standby has replayed the
    /// caller's last write and finds them a live member of `tenant`; None: read from the
    /// primary.
    pub async fn enter(
        &self,
        tenant: Uuid,
        claims: &Claims,
        statement_timeout: Option<Duration>,
    ) -> Option<(Tx, Entry)> {
        let mut conn = self.redis.clone();
        let replayed_past = match redis::cmd("GET")
            .arg(self.key(claims.sub))
            .query_async::<Option<i64>>(&mut conn)
            .await
        {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "last write positions unavailable; reading from the primary");
                return None;
            }
        };
        let server = Server::Standby { replayed_past };
        let entered = users::enter_workspace(
            &self.pool,
            server,
            tenant,
            claims.sub,
            claims.sid,
            statement_timeout,
        )
        .await;
        match entered {
            Ok((tx, entry @ Entry::Member { .. })) => Some((tx, entry)),
            // Behind, or the caller is not (yet) known there: the primary decides.
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(error = %e, "the standby did not answer; reading from the primary");
                None
            }
        }
    }
}
