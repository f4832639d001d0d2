-- Every query pts sends, by name. pts/store/queries.py loads this file; each
-- query starts with a `-- name: NAME` line and runs up to the next one.
-- Parameters are written $1, $2, ... (asyncpg style); the psycopg store
-- rewrites them. No dollar-quoting here, so that rewrite stays trivial.
-- Rows are read by column name, never by position: name every computed column.
--
-- A stream row (pts/store/rows.py turns it into a StreamInfo) has the columns of
-- the fragment `stream_columns`, listed here once and written `{stream_columns}`
-- where a query returns one: pts/store/queries.py substitutes it at load time.
-- A fragment, not a view or a function: an INSERT or UPDATE can only RETURN
-- columns of its own table (a view cannot be RETURNING's source), a function
-- returning the row type comes back as one composite column that the drivers
-- decode by position, and `*` would send every column the table grows
-- (producer state, Stream-Seq) with jsonb decoded differently per driver.

-- fragment: stream_columns
id, client_id, path, content_type, status, size, closed, abort_reason, error,
created_at, updated_at, heartbeat_at, finished_at, expires_at, metadata::text AS metadata,
owner, ttl_seconds, forked_from, fork_offset, fork_sub_offset, deleted_at

-- name: create_stream
-- $8, a TTL in seconds (the caller gives it or $7, not both), expires the stream
-- $8 seconds from now by the database's clock, as every other time pts records.
INSERT INTO pts.streams (client_id, path, content_type, status, metadata, owner, expires_at,
                         heartbeat_at)
VALUES ($1, $2, $3, $4::text, $5::jsonb, $6,
        coalesce($7::timestamptz, now() + make_interval(secs => $8::float8)),
        CASE WHEN $4::text = 'streaming' THEN now() END)
RETURNING {stream_columns};

-- name: get_stream
SELECT {stream_columns}
  FROM pts.streams
 WHERE id = $1;

-- name: get_stream_by_client_id
SELECT {stream_columns}
  FROM pts.streams
 WHERE client_id = $1;

-- name: get_stream_by_path
SELECT {stream_columns}
  FROM pts.streams
 WHERE path = $1;

-- name: append
-- Appends $3 at byte offset $2, which must be the stream's current size, and
-- optionally finishes the stream with status $4 in the same statement ($5 is
-- then the abort reason for 'aborted', the error for 'error' and 'timeout').
-- Concurrent appends at one offset serialize on the row lock; the loser sees
-- the new size, matches no row and inserts nothing. With $6, the stream's size
-- cap, an append that would pass it matches no row either (checked under the
-- same lock, so concurrent appends cannot pass it together). Returns no row on
-- failure.
WITH updated AS (
    UPDATE pts.streams
       SET size = size + octet_length($3::bytea),
           updated_at = now(),
           heartbeat_at = CASE WHEN status = 'streaming' THEN now() ELSE heartbeat_at END,
           status = coalesce($4::text, status),
           closed = closed OR $4::text IS NOT NULL,
           finished_at = CASE WHEN $4::text IS NOT NULL THEN now() ELSE finished_at END,
           abort_reason = CASE WHEN $4::text = 'aborted' THEN $5::text ELSE abort_reason END,
           error = CASE WHEN $4::text IN ('error', 'timeout') THEN $5::text ELSE error END
     WHERE id = $1 AND size = $2::bigint AND NOT closed
       AND ($6::bigint IS NULL OR size + octet_length($3::bytea) <= $6::bigint)
    RETURNING id, size
), inserted AS (
    INSERT INTO pts.chunks (stream_id, start_offset, data)
    SELECT id, $2::bigint, $3::bytea FROM updated WHERE octet_length($3::bytea) > 0
)
SELECT size FROM updated;

-- name: append_batch
-- Several appends in one transaction (pts.append_batch_v1): arrays of stream ids,
-- offsets, bytes, final statuses and reasons; $6 the size cap, $7 whether to notify
-- on pts_v1 (PTS_NOTIFY_V1) rather than pts_v2. One row per append: `ord` (from 1)
-- and the new size, NULL where the append matched nothing (then ask append_state).
SELECT ord, size
  FROM pts.append_batch_v1($1::uuid[], $2::bigint[], $3::bytea[], $4::text[], $5::text[],
                           $6::bigint, $7::boolean);

-- name: append_state
-- Why an append matched no row: the stream's current size and state.
SELECT size, status, closed FROM pts.streams WHERE id = $1;

-- name: read
-- The bytes from offset $2 to the end (or, with $3, of the original chunks that
-- start before $2 + $3: a read always ends where an appended chunk ended), with
-- the stream's state, in one statement so both come from one snapshot: one row
-- per stored row, in order (the first cut at $2), each carrying the state; one
-- row with NULL data when there are no bytes. (Rows, not string_agg: several
-- times faster for megabytes.) A fork shares its source's offsets: below its
-- fork_offset the bytes are the source's (and so on up the lineage, each
-- ancestor up to the lowest fork point below it); an ancestor's row is clipped
-- at that point (a merged row may straddle it). A merged row (pts.compact_v1)
-- lists in `boundaries` where each original chunk began, so reads are the same
-- before and after a compaction. `at_boundary` is true on some row when $2 is
-- where an original chunk starts (or the end): JSON streams may only be read
-- from there. Each ancestor is one primary-key lookup of pts.streams and its
-- rows one range scan of the chunks' primary key (LATERAL ... OFFSET 0 keeps
-- the planner from hashing or scanning a whole table), so a read costs by the
-- rows it returns, not by the tables' sizes.
WITH RECURSIVE lineage AS (
    SELECT s.id, s.forked_from, s.fork_offset, NULL::bigint AS upto
      FROM pts.streams s
     WHERE s.id = $1
    UNION ALL
    SELECT p.id, p.forked_from, p.fork_offset, least(l.fork_offset, l.upto)
      FROM lineage l
     CROSS JOIN LATERAL (SELECT a.id, a.forked_from, a.fork_offset
                           FROM pts.streams a
                          WHERE a.id = l.forked_from
                         OFFSET 0) p
), pieces AS (
    SELECT c.start_offset, c.data, c.boundaries,
           greatest(c.start_offset, $2::bigint) AS cut_from,
           least(c.start_offset + octet_length(c.data), l.upto) AS end_offset
      FROM lineage l
     CROSS JOIN LATERAL (
           SELECT c.start_offset, c.data, c.boundaries
             FROM pts.chunks c
            WHERE c.stream_id = l.id
              AND c.start_offset >= coalesce((SELECT max(f.start_offset)
                                                FROM pts.chunks f
                                               WHERE f.stream_id = l.id
                                                 AND f.start_offset <= $2::bigint), 0)
              AND c.start_offset < coalesce(least(l.upto, $2::bigint + $3::bigint),
                                            9223372036854775807)
           OFFSET 0) c
     WHERE least(c.start_offset + octet_length(c.data), l.upto) > $2::bigint
)
SELECT s.size, s.status, s.closed,
       coalesce($2::bigint = s.size OR p.start_offset = $2::bigint
                OR (p.start_offset < $2::bigint AND ($2::bigint - p.start_offset) = ANY (p.boundaries)),
                false) AS at_boundary,
       CASE WHEN p.cut_from = p.start_offset AND p.cut_to = p.start_offset + octet_length(p.data)
            THEN p.data
            ELSE substring(p.data FROM (p.cut_from - p.start_offset)::integer + 1
                                  FOR (p.cut_to - p.cut_from)::integer) END AS data
  FROM pts.streams s
  LEFT JOIN LATERAL (
       SELECT q.start_offset, q.data, q.boundaries, q.cut_from,
              -- A page ends where the first original chunk at or past $2 + $3 begins.
              CASE WHEN $3::bigint IS NULL OR q.boundaries IS NULL
                        OR q.end_offset <= $2::bigint + $3::bigint
                   THEN q.end_offset
                   ELSE coalesce((SELECT q.start_offset + min(b)
                                    FROM unnest(q.boundaries) AS b
                                   WHERE q.start_offset + b >= $2::bigint + $3::bigint
                                     AND q.start_offset + b < q.end_offset), q.end_offset)
              END AS cut_to
         FROM pieces q) p ON true
 WHERE s.id = $1
 ORDER BY p.start_offset;

-- name: claim
-- pending -> streaming, atomically: of two concurrent claims exactly one gets a row.
UPDATE pts.streams
   SET status = 'streaming', heartbeat_at = now(), updated_at = now()
 WHERE id = $1 AND status = 'pending'
RETURNING {stream_columns};

-- name: set_status
-- Moves the stream to status $2 if its current status is one of $4 (the
-- transition rules live in pts/store/base.py). $3 is the abort reason for
-- 'aborted', the error message for 'error' and 'timeout'.
UPDATE pts.streams
   SET status = $2::text,
       closed = closed OR $2::text NOT IN ('pending', 'streaming'),
       abort_reason = CASE WHEN $2::text = 'aborted' THEN $3::text ELSE abort_reason END,
       error = CASE WHEN $2::text IN ('error', 'timeout') THEN $3::text ELSE error END,
       heartbeat_at = CASE WHEN $2::text = 'streaming' THEN now() ELSE heartbeat_at END,
       finished_at = CASE WHEN $2::text NOT IN ('pending', 'streaming') THEN now() ELSE finished_at END,
       updated_at = now()
 WHERE id = $1 AND status = ANY($4::text[])
RETURNING {stream_columns};

-- name: heartbeat
UPDATE pts.streams
   SET heartbeat_at = now()
 WHERE id = ANY($1::uuid[]) AND status = 'streaming'
RETURNING id;

-- name: find_stale
SELECT {stream_columns}
  FROM pts.streams
 WHERE status = 'streaming' AND heartbeat_at < now() - make_interval(secs => $1::float8)
 ORDER BY heartbeat_at
 LIMIT $2::int;

-- name: timeout_stale
-- The sweeper: marks streams whose driver stopped heartbeating as 'timeout'.
-- SKIP LOCKED lets sweepers in many processes run at once without waiting on
-- each other or marking a stream twice.
UPDATE pts.streams
   SET status = 'timeout', closed = true, error = $2::text,
       finished_at = now(), updated_at = now()
 WHERE id IN (SELECT id
                FROM pts.streams
               WHERE status = 'streaming'
                 AND heartbeat_at < now() - make_interval(secs => $1::float8)
               ORDER BY heartbeat_at
               LIMIT $3::int
                 FOR UPDATE SKIP LOCKED)
RETURNING {stream_columns};

-- name: timeout_pending
-- The sweeper: marks 'timeout' the pts streams nobody claimed: 'pending' with no
-- change for $1 seconds. Only streams without a path: a Durable Streams protocol
-- stream (it always has one) is 'pending' while open and has its own TTL. The
-- created_at condition is implied by the updated_at one (a row is never updated
-- before it is made); it is there for the index (migration 0007).
UPDATE pts.streams
   SET status = 'timeout', closed = true, error = $2::text,
       finished_at = now(), updated_at = now()
 WHERE id IN (SELECT id
                FROM pts.streams
               WHERE status = 'pending' AND path IS NULL
                 AND created_at < now() - make_interval(secs => $1::float8)
                 AND updated_at < now() - make_interval(secs => $1::float8)
               ORDER BY updated_at
               LIMIT $3::int
                 FOR UPDATE SKIP LOCKED)
   AND status = 'pending'
RETURNING {stream_columns};

-- name: delete_stream
-- 'deleted', 'soft_deleted' (live forks still read its bytes) or 'not_found'.
SELECT pts.ds_delete_v1($1::uuid) AS outcome;

-- name: ds_lookup
-- The stream at Durable Streams path $1 (or, with $3, the stream with that
-- id), judged by the database's clock: `expired` and, for a soft-deleted one,
-- whether live forks still hold it (`referenced`). With $2 a sliding TTL is
-- renewed (every access but HEAD renews it), in the same statement; the new
-- expiry is `renewed_expires_at` (NULL if nothing was renewed), as the row
-- found is the statement's snapshot, from before the renewal.
WITH found AS (
    SELECT {stream_columns}, coalesce(expires_at <= now(), false) AS expired
      FROM pts.streams
     WHERE ($1::text IS NOT NULL AND path = $1::text) OR ($3::uuid IS NOT NULL AND id = $3::uuid)
     LIMIT 1
), touched AS (
    UPDATE pts.streams t
       SET expires_at = now() + make_interval(secs => t.ttl_seconds)
      FROM found f
     WHERE $2::boolean AND t.id = f.id AND t.ttl_seconds IS NOT NULL
       AND t.deleted_at IS NULL AND NOT f.expired
    RETURNING t.expires_at
)
SELECT f.*,
       (SELECT expires_at FROM touched) AS renewed_expires_at,
       CASE WHEN f.deleted_at IS NOT NULL THEN pts.ds_referenced_v1(f.id) END AS referenced
  FROM found f;

-- name: ds_create
SELECT outcome, stream_id
  FROM pts.ds_create_v1($1::text, $2::text, $3::bigint, $4::timestamptz, $5::boolean, $6::bytea,
                        $7::uuid, $8::bigint, $9::bigint, $10::bytea);

-- name: request_stop
-- Asks the process driving stream $1 to end it 'aborted' with the reason $2,
-- after storing what it buffered: an entry with "stop": true on pts_v2 (older
-- processes ignore the key, and see an unchanged stream). Sent, and a row
-- returned, only while the stream is streaming and the reason fits a payload.
SELECT pg_notify('pts_v2', json_build_array(json_build_object(
           'id', id, 'size', size, 'status', status, 'closed', closed,
           'stop', true, 'reason', $2::text))::text) IS NOT NULL AS sent
  FROM pts.streams
 WHERE id = $1::uuid AND status = 'streaming' AND deleted_at IS NULL
   AND coalesce(octet_length($2::text), 0) <= 4000;

-- name: ds_append
-- $9 is the stream size cap (NULL: none): 'too_large' if this append would pass it.
SELECT outcome, stream_id, size, closed, epoch, seq, expected_seq
  FROM pts.ds_append_v2($1::text, $2::bytea, $3::text, $4::boolean, $5::text, $6::text,
                        $7::bigint, $8::bigint, $9::bigint);

-- name: ds_append_batch
-- Several protocol appends in one transaction (pts.ds_append_batch_v1): the
-- arguments of ds_append as arrays, then the size cap and whether to notify on
-- pts_v1 rather than pts_v2. One row per append, `ord` (from 1) its place.
SELECT ord, outcome, stream_id, size, closed, epoch, seq, expected_seq
  FROM pts.ds_append_batch_v1($1::text[], $2::bytea[], $3::text[], $4::boolean[],
                              $5::text[], $6::text[], $7::bigint[], $8::bigint[],
                              $9::bigint, $10::boolean);

-- name: compact
-- Merges closed stream $1's chunk rows into rows of about $2 bytes; how many went.
SELECT pts.compact_v1($1::uuid, $2::bigint) AS removed;

-- name: compact_finished
-- The sweeper: compacts up to $1 closed streams not yet compacted (oldest
-- finished first), rows of about $2 bytes. SKIP LOCKED lets sweepers in many
-- processes run at once, each on other streams, none waiting.
SELECT count(*) AS streams, coalesce(sum(pts.compact_v1(todo.id, $2::bigint)), 0)::bigint AS removed
  FROM (SELECT id
          FROM pts.streams
         WHERE closed AND compacted_at IS NULL
         ORDER BY finished_at
         LIMIT $1::int
           FOR NO KEY UPDATE SKIP LOCKED) todo;

-- name: ds_collect
-- Removes streams nobody can reach any more: expired or deleted, with no live
-- fork (and then their ancestors that became unreachable). Returns how many.
-- Both candidate sets come from partial indexes; those still held by live
-- forks are passed over, so they never crowd out the collectable ones. An
-- expired stream that is still 'streaming' is no candidate: its driver would
-- lose the answer mid-write; it goes at the first collection after it ends.
SELECT coalesce(sum(pts.ds_collect_v1(dead.id)), 0)::bigint AS collected
  FROM (SELECT id
          FROM ((SELECT id FROM pts.streams WHERE expires_at <= now() AND status <> 'streaming')
                UNION
                (SELECT id FROM pts.streams WHERE deleted_at IS NOT NULL)) candidates
         WHERE NOT pts.ds_referenced_v1(id)
         LIMIT $1::int) dead;

-- name: prune
-- Retention (`pts prune`): deletes up to $2 finished streams whose finished_at is
-- before $1, oldest first, each as pts.ds_delete_v1 deletes one (soft-deleted
-- while live forks still read its bytes; a soft-deleted stream is no candidate
-- again, so batch after batch makes progress). SKIP LOCKED: a row another
-- transaction holds (a delete, a concurrent prune) is left for a later batch,
-- never waited for, so one batch is one short transaction. The candidates come
-- from streams_finished_at_idx (sql/migrations/0006_retention.sql).
SELECT count(*) FILTER (WHERE pts.ds_delete_v1(doomed.id) <> 'not_found') AS pruned
  FROM (SELECT id
          FROM pts.streams
         WHERE status IN ('done', 'error', 'timeout', 'aborted') AND deleted_at IS NULL
           AND finished_at < $1::timestamptz
         ORDER BY finished_at
         LIMIT $2::int
           FOR UPDATE SKIP LOCKED) doomed;

-- name: count_prunable
-- How many streams `prune` would delete for $1 (`pts prune --dry-run`).
SELECT count(*) AS prunable
  FROM pts.streams
 WHERE status IN ('done', 'error', 'timeout', 'aborted') AND deleted_at IS NULL
   AND finished_at < $1::timestamptz;

-- name: migrations_lock
-- Held until the migration transaction ends: concurrent `pts migrate` runs queue up.
SELECT pg_advisory_xact_lock(hashtext('pts.migrate'));

-- name: migrations_state
SELECT to_regclass('pts.schema_migrations') IS NOT NULL AS has_migrations_table,
       to_regclass('pts.streams') IS NOT NULL AS has_streams_table;

-- name: create_migrations_table
CREATE SCHEMA IF NOT EXISTS pts;
CREATE TABLE IF NOT EXISTS pts.schema_migrations (
    version     integer     PRIMARY KEY,
    name        text        NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);

-- name: applied_migrations
SELECT version FROM pts.schema_migrations ORDER BY version;

-- name: record_migration
INSERT INTO pts.schema_migrations (version, name) VALUES ($1, $2);

-- name: listener_probe
-- The listener's liveness probe: proves its LISTEN connection still answers
-- when no notification arrived for a while.
SELECT 1;

-- name: session_setup
-- Run once on every pooled connection when it opens (not behind a transaction
-- pooler, where a session setting would leak to other clients). pts's queries
-- are prepared once per connection and their plans cached; Postgres replans a
-- prepared query on every call ("custom plans") while their average cost is
-- below the generic plan's, and that average is kept from the first calls. A
-- connection that first read while the tables were small so went on replanning
-- the read for ever once they grew: with a million chunk rows, 1 ms of
-- planning for 0.2 ms of work, per read. Every pts query is written to have one
-- plan whatever its parameters (primary-key lookups, LATERAL range scans),
-- so the generic plan is always the right one. Not a startup parameter: a
-- session-mode pooler may refuse unknown ones.
SELECT set_config('plan_cache_mode', 'force_generic_plan', false) AS plan_cache_mode;
