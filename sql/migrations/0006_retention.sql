-- Retention (issue 15): `pts prune --finished-before DURATION` deletes finished
-- streams by age, in batches; each batch takes the oldest candidates from this
-- index (the `prune` query of sql/queries.sql). Soft-deleted streams are left
-- out: the garbage collection removes them once their last fork goes.
--
-- IF NOT EXISTS: on a large table, building the index here blocks writes to
-- pts.streams until it is built (migrations run in one transaction). An
-- operator may build it first, outside any transaction, without blocking:
--   CREATE INDEX CONCURRENTLY streams_finished_at_idx ON pts.streams (finished_at)
--    WHERE status IN ('done', 'error', 'timeout', 'aborted') AND deleted_at IS NULL;
-- and this migration then finds it in place.
CREATE INDEX IF NOT EXISTS streams_finished_at_idx
    ON pts.streams (finished_at)
    WHERE status IN ('done', 'error', 'timeout', 'aborted') AND deleted_at IS NULL;
