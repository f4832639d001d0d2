-- Issue 14: compaction. A finished stream's chunk rows are merged into few large
-- rows (pts.compact_v1), so a finished 1,000-flush answer is one row, the chunk
-- index stays small and a catch-up read costs by bytes, not by rows.
--
-- `boundaries` keeps, in a merged row, where each original chunk began,
-- relative to the row's start_offset (ascending, the first is 0); NULL means the
-- row is one original chunk. Reads use it to behave exactly as before the merge:
-- `at_boundary` is still true only where an original chunk began (JSON streams
-- are read from there), and a page read (max_bytes) still ends where an original
-- chunk ended, so a reader paging across a compaction loses and repeats nothing.
--
-- A fork's fork_offset may now fall inside a merged row of its source: the read
-- query and pts.stream_bodies clip every ancestor's row at the fork point
-- (before, no ancestor row could straddle it; clipping is then a no-op).
-- Both also take the lowest fork point on the way up the lineage: a fork of
-- a fork made below its parent's fork point read its grandparent's bytes up to
-- the parent's fork point (the view is fixed here, the read query with it).
--
-- Code from before this migration reads merged rows as whole chunks: byte
-- offsets stay right, but its pages and `at_boundary` are coarser, so run
-- `pts serve` processes of one version while the sweeper compacts.
ALTER TABLE pts.chunks ADD COLUMN boundaries integer[];
ALTER TABLE pts.chunks ADD CONSTRAINT chunks_boundaries_check
    CHECK (boundaries IS NULL OR (boundaries[1] = 0 AND array_ndims(boundaries) = 1));
-- Merged rows are large: stored out of line, uncompressed, so that a read from
-- inside one fetches only the slices it needs (substring of an EXTERNAL value)
-- and a catch-up does not pay for decompression. Small rows stay inline as before.
ALTER TABLE pts.chunks ALTER COLUMN data SET STORAGE EXTERNAL;

-- When the stream's rows were merged; NULL while not yet (or never closed).
ALTER TABLE pts.streams ADD COLUMN compacted_at timestamptz;
-- The sweeper's compaction looks for finished streams not yet compacted.
CREATE INDEX streams_uncompacted_idx
    ON pts.streams (finished_at) WHERE closed AND compacted_at IS NULL;

-- Merges the chunk rows of closed stream p_id that start in the same p_target-byte
-- window of offsets into one row (rows of p_target bytes or more stay as they
-- are), in one statement: a concurrent read sees the old rows or the new, never
-- a mix. The stream's row lock keeps a second compaction (it then finds nothing
-- to merge) and a delete out meanwhile; readers never wait. Marks the stream
-- compacted. Returns how many rows went (0 if it is not closed or already compact).
CREATE FUNCTION pts.compact_v1(p_id uuid, p_target bigint) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    removed integer;
BEGIN
    PERFORM 1 FROM pts.streams WHERE id = p_id AND closed FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    WITH windows AS (
        SELECT c.start_offset / p_target AS bucket
          FROM pts.chunks c
         WHERE c.stream_id = p_id AND octet_length(c.data) < p_target
         GROUP BY 1
        HAVING count(*) > 1
    ), doomed AS (
        DELETE FROM pts.chunks c
         USING windows w
         WHERE c.stream_id = p_id AND octet_length(c.data) < p_target
           AND c.start_offset / p_target = w.bucket
        RETURNING w.bucket, c.start_offset, c.data, c.boundaries, c.created_at
    ), merged AS (
        SELECT d.bucket, min(d.start_offset) AS start_at, count(*) AS rows_in,
               string_agg(d.data, ''::bytea ORDER BY d.start_offset) AS data,
               max(d.created_at) AS created_at
          FROM doomed d
         GROUP BY d.bucket
    ), marks AS (
        SELECT d.bucket,
               array_agg((d.start_offset - m.start_at + u.rel)::integer
                         ORDER BY d.start_offset, u.rel) AS boundaries
          FROM doomed d
          JOIN merged m ON m.bucket = d.bucket
         CROSS JOIN LATERAL unnest(coalesce(d.boundaries, ARRAY[0])) AS u(rel)
         GROUP BY d.bucket
    ), inserted AS (
        INSERT INTO pts.chunks (stream_id, start_offset, data, boundaries, created_at)
        SELECT p_id, m.start_at, m.data, k.boundaries, m.created_at
          FROM merged m
          JOIN marks k ON k.bucket = m.bucket
        RETURNING 1
    )
    SELECT coalesce((SELECT sum(rows_in) FROM merged), 0) - (SELECT count(*) FROM inserted)
      INTO removed;
    UPDATE pts.streams SET compacted_at = now() WHERE id = p_id;
    RETURN removed;
END;
$$;

-- Whole bodies, as before; an ancestor's row is now clipped at the fork point.
CREATE OR REPLACE VIEW pts.stream_bodies AS
SELECT s.id,
       s.status,
       convert_from(b.body, 'UTF8') AS text,
       s.size,
       s.closed,
       s.content_type,
       s.client_id,
       s.path,
       s.abort_reason,
       s.error,
       s.metadata,
       s.owner,
       s.created_at,
       s.updated_at,
       s.finished_at,
       b.body
  FROM pts.streams s
 CROSS JOIN LATERAL (
       WITH RECURSIVE lineage AS (
           SELECT s.id, s.forked_from, s.fork_offset, NULL::bigint AS upto
           UNION ALL
           SELECT p.id, p.forked_from, p.fork_offset, least(l.fork_offset, l.upto)
             FROM lineage l
             JOIN pts.streams p ON p.id = l.forked_from
       )
       SELECT coalesce(string_agg(
                  CASE WHEN l.upto IS NOT NULL AND c.start_offset + octet_length(c.data) > l.upto
                       THEN substring(c.data FROM 1 FOR (l.upto - c.start_offset)::integer)
                       ELSE c.data END,
                  ''::bytea ORDER BY c.start_offset), ''::bytea) AS body
         FROM lineage l
         JOIN pts.chunks c ON c.stream_id = l.id AND (l.upto IS NULL OR c.start_offset < l.upto)
       ) b;
