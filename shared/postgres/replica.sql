-- The read replica's health and lag (replica.go).

-- name: PrimaryWALPosition
-- Where the primary's flushed WAL ends: what a caught-up replica has replayed.
SELECT pg_current_wal_flush_lsn()::text;

-- name: ReplicaLag
-- On the replica: whether it is a standby, whether it has replayed up to
-- the primary's position $1 (NULL: up to what it has received), and the
-- seconds since the last transaction it replayed was committed.
SELECT pg_is_in_recovery(),
       CASE WHEN $1::text IS NULL
            THEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn()
            ELSE COALESCE(pg_last_wal_replay_lsn() >= $1::text::pg_lsn, false)
       END,
       COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0)::float8;
