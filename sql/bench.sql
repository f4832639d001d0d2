-- The benchmarks' own queries (`pts bench ...`), by name, as in queries.sql:
-- pts/bench/common.py loads this file. pts itself never sends these. They fill
-- tables faster than appends would, and count what no store call counts; the
-- figures the benchmarks report are then measured through pts over HTTP.

-- name: bench_grow_stream
-- Appends $2 chunk rows to stream $1 after its last byte, as $2 appends would:
-- row g holds g as 10 digits then the bytes $3, so each row is distinct and its
-- place checkable. The size moves with the rows, in the same statement (the
-- streams trigger notifies once).
WITH s AS (
    SELECT id, size FROM pts.streams WHERE id = $1::uuid FOR UPDATE
), added AS (
    INSERT INTO pts.chunks (stream_id, start_offset, data)
    SELECT s.id, s.size + (g - 1) * (10 + octet_length($3::bytea)),
           convert_to(lpad(g::text, 10, '0'), 'UTF8') || $3::bytea
      FROM s, generate_series(1, $2::bigint) g
)
UPDATE pts.streams t
   SET size = s.size + $2::bigint * (10 + octet_length($3::bytea)), updated_at = now()
  FROM s
 WHERE t.id = s.id
RETURNING t.size;

-- name: bench_fill_streams
-- $1 new Durable Streams streams at paths $3 || 1..$1, each with $2 chunk rows
-- of the bytes $4 (a path, so no sweeper times them out as unclaimed streams).
WITH made AS (
    INSERT INTO pts.streams (path, content_type, size)
    SELECT $3::text || n, 'text/plain', $2::bigint * octet_length($4::bytea)
      FROM generate_series(1, $1::int) n
    RETURNING id
)
INSERT INTO pts.chunks (stream_id, start_offset, data)
SELECT made.id, (g - 1) * octet_length($4::bytea), $4::bytea
  FROM made, generate_series(1, $2::bigint) g;

-- name: bench_settle_chunks
-- What autovacuum does soon after a table grows (the visibility map, hint
-- bits, fresh planner statistics), done now rather than while reads are timed.
VACUUM (ANALYZE) pts.chunks;

-- name: bench_table_rows
SELECT count(*) AS rows FROM pts.chunks;

-- name: bench_stream_rows
SELECT count(*) AS rows FROM pts.chunks WHERE stream_id = $1::uuid;

-- name: bench_xact_commit
-- Transactions committed in database $1 so far. The statistics lag: a backend
-- reports its counts when it goes idle, at most once a second, and an idle one
-- within 10 s (PGSTAT_IDLE_INTERVAL), so read this once the database is quiet.
SELECT xact_commit FROM pg_stat_database WHERE datname = $1::text;

-- name: bench_next_xid
-- The next transaction id of the whole cluster (reading it assigns none): its
-- delta is how many transactions wrote anything, in every database.
SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS next_xid;

-- name: bench_chunk_rows
-- Per stream of $1: its rows in pts.chunks and the bytes they hold
-- (`pts bench driven`: what flushing per sentence saves).
SELECT stream_id, count(*) AS n, sum(octet_length(data)) AS bytes
  FROM pts.chunks WHERE stream_id = ANY($1::uuid[]) GROUP BY stream_id;

-- name: bench_server_connections
-- The client connections to database $1 but those whose application_name is
-- $2 (`pts bench fanout`: the server's connections, not the load's own).
SELECT count(*) AS open, count(*) FILTER (WHERE state = 'active') AS active
  FROM pg_stat_activity
 WHERE datname = $1 AND backend_type = 'client backend'
   AND application_name IS DISTINCT FROM $2;
