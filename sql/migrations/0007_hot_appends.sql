-- Appends as HOT updates (issue 14). Every append updates its stream's row
-- (size, updated_at). Postgres can make that a HOT update, which writes no
-- index entry and leaves the old version for on-page pruning, only when no
-- index covers a column the update changes. One did: the sweeper's index of
-- unclaimed pending streams was on updated_at, so every append wrote a new
-- entry into each of the table's ten indexes, and left a dead row version and
-- dead index entries for vacuum to collect (at 75 connections appending,
-- Postgres spent about 7 % more CPU per append with it than without, over 16
-- alternating rounds).
--
-- The sweeper's index is on created_at instead, which nothing updates. The
-- `timeout_pending` query of sql/queries.sql asks for created_at before the
-- cutoff as well as updated_at: a stream's updated_at is never before its
-- created_at, so every stream past the cutoff is found through the index, and
-- updated_at still decides. (A process from before this migration asks for
-- updated_at alone, which no index answers now: its sweep reads the table
-- until it is upgraded. Correct, only slower.)
--
-- IF [NOT] EXISTS: on a large table an operator may build the new index first,
-- outside any transaction, without blocking writes:
--   CREATE INDEX CONCURRENTLY streams_pending_created_at_idx ON pts.streams (created_at)
--    WHERE status = 'pending' AND path IS NULL;
-- and this migration then finds it in place.
DROP INDEX IF EXISTS pts.streams_pending_updated_at_idx;
CREATE INDEX IF NOT EXISTS streams_pending_created_at_idx
    ON pts.streams (created_at) WHERE status = 'pending' AND path IS NULL;
