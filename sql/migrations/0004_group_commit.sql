-- Issue 14: group commit (0004)
-- Appends that arrive together commit together: one statement, one transaction,
-- one NOTIFY (Postgres takes a global lock at the commit of every transaction that
-- notified, so a NOTIFY per append capped the append rate).

-- The row trigger, version 2: as version 1, except inside a batch (which sets
-- pts.notify = 'batched' for its own transaction) it stays quiet: the batch
-- announces every stream it changed itself, at its end (pts.notify_batch_v1).
-- Every other writer (plain SQL, processes from before 0004) still gets the
-- per-row notification on 'pts_v1'.
CREATE FUNCTION pts.notify_change_v2() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('pts.notify', true) = 'batched' THEN
        RETURN NULL;  -- an AFTER trigger's result is ignored
    END IF;
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('pts_v1', json_build_object(
            'id', OLD.id, 'size', OLD.size, 'status', 'deleted', 'closed', true)::text);
        RETURN OLD;
    END IF;
    PERFORM pg_notify('pts_v1', json_build_object(
        'id', NEW.id, 'size', NEW.size, 'status', NEW.status, 'closed', NEW.closed)::text);
    RETURN NEW;
END;
$$;

DROP TRIGGER streams_notify_insert ON pts.streams;
CREATE TRIGGER streams_notify_insert
    AFTER INSERT ON pts.streams
    FOR EACH ROW EXECUTE FUNCTION pts.notify_change_v2();

DROP TRIGGER streams_notify_update ON pts.streams;
CREATE TRIGGER streams_notify_update
    AFTER UPDATE ON pts.streams
    FOR EACH ROW
    WHEN (OLD.size IS DISTINCT FROM NEW.size
          OR OLD.status IS DISTINCT FROM NEW.status
          OR OLD.closed IS DISTINCT FROM NEW.closed)
    EXECUTE FUNCTION pts.notify_change_v2();

DROP TRIGGER streams_notify_delete ON pts.streams;
CREATE TRIGGER streams_notify_delete
    AFTER DELETE ON pts.streams
    FOR EACH ROW EXECUTE FUNCTION pts.notify_change_v2();

-- Announces the final state of the streams p_ids: on 'pts_v2', JSON arrays of the
-- version-1 objects {"id", "size", "status", "closed"}, as many NOTIFYs as it takes
-- to keep each payload under Postgres's 8000-byte limit; or, with p_v1 (a rolling
-- upgrade: processes from before 0004 listen on 'pts_v1' only), one 'pts_v1'
-- notification per stream instead, which the new listeners hear as well.
-- Delivered at commit, like every NOTIFY. A stream no longer there is skipped.
CREATE FUNCTION pts.notify_batch_v1(p_ids uuid[], p_v1 boolean) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    entry text;
    buf text := '';
    sent integer := 0;
BEGIN
    FOR entry IN
        SELECT json_build_object('id', s.id, 'size', s.size, 'status', s.status,
                                 'closed', s.closed)::text
          FROM pts.streams s
         WHERE s.id = ANY (p_ids)
         ORDER BY s.id
    LOOP
        IF p_v1 THEN
            PERFORM pg_notify('pts_v1', entry);
            sent := sent + 1;
            CONTINUE;
        END IF;
        -- '[' || buf || ',' || entry || ']' must stay under 8000 bytes.
        IF buf <> '' AND octet_length(buf) + octet_length(entry) + 3 >= 8000 THEN
            PERFORM pg_notify('pts_v2', '[' || buf || ']');
            sent := sent + 1;
            buf := '';
        END IF;
        buf := CASE WHEN buf = '' THEN entry ELSE buf || ',' || entry END;
    END LOOP;
    IF buf <> '' THEN
        PERFORM pg_notify('pts_v2', '[' || buf || ']');
        sent := sent + 1;
    END IF;
    RETURN sent;
END;
$$;

-- A batch of protocol appends (the arguments of pts.ds_append_v2, one array element
-- per append), applied in one transaction. Appends to different streams are applied
-- in path order (so that concurrent batches lock rows in one order), those to one
-- stream in the order given. Each append's outcome is its own (ds_append_v2 answers
-- with an outcome rather than raising): one row per append, `ord` its place in the
-- input (from 1). One notification round (pts.notify_batch_v1) for the streams that
-- changed.
CREATE FUNCTION pts.ds_append_batch_v1(
    p_paths text[], p_data bytea[], p_media_types text[], p_close boolean[],
    p_stream_seqs text[], p_producers text[], p_epochs bigint[], p_seqs bigint[],
    p_max_size bigint, p_notify_v1 boolean
) RETURNS TABLE (ord integer, outcome text, stream_id uuid, size bigint, closed boolean,
                 epoch bigint, seq bigint, expected_seq bigint)
LANGUAGE plpgsql AS $$
DECLARE
    i integer;
    r record;
    changed uuid[] := '{}';
    previous text := current_setting('pts.notify', true);
BEGIN
    PERFORM set_config('pts.notify', 'batched', true);
    FOR i IN SELECT g.i FROM generate_subscripts(p_paths, 1) AS g(i)
              ORDER BY p_paths[g.i] COLLATE "C", g.i
    LOOP
        SELECT * INTO r FROM pts.ds_append_v2(p_paths[i], p_data[i], p_media_types[i],
            p_close[i], p_stream_seqs[i], p_producers[i], p_epochs[i], p_seqs[i], p_max_size);
        IF r.outcome = 'appended' THEN
            changed := changed || r.stream_id;
        END IF;
        ord := i;
        outcome := r.outcome;
        stream_id := r.stream_id;
        size := r.size;
        closed := r.closed;
        epoch := r.epoch;
        seq := r.seq;
        expected_seq := r.expected_seq;
        RETURN NEXT;
    END LOOP;
    PERFORM set_config('pts.notify', coalesce(previous, ''), true);
    PERFORM pts.notify_batch_v1(changed, p_notify_v1);
END;
$$;

-- A batch of driven appends (the `append` query of queries.sql, one array element
-- per append: stream, offset, bytes, final status or NULL, reason), applied in one
-- transaction, in stream order (and, for one stream, in the order given). An append
-- whose offset is not the stream's size, whose stream is closed or missing, or that
-- would pass the size cap p_max_size changes nothing and answers a NULL size; the
-- caller asks why, as after a failed single append. One row per append, `ord` its
-- place in the input (from 1), `size` the stream's new size.
CREATE FUNCTION pts.append_batch_v1(
    p_ids uuid[], p_offsets bigint[], p_data bytea[], p_finish text[], p_reasons text[],
    p_max_size bigint, p_notify_v1 boolean
) RETURNS TABLE (ord integer, size bigint)
LANGUAGE plpgsql AS $$
DECLARE
    i integer;
    new_size bigint;
    changed uuid[] := '{}';
    previous text := current_setting('pts.notify', true);
BEGIN
    PERFORM set_config('pts.notify', 'batched', true);
    FOR i IN SELECT g.i FROM generate_subscripts(p_ids, 1) AS g(i) ORDER BY p_ids[g.i], g.i
    LOOP
        UPDATE pts.streams t
           SET size = t.size + octet_length(p_data[i]),
               updated_at = now(),
               heartbeat_at = CASE WHEN t.status = 'streaming' THEN now() ELSE t.heartbeat_at END,
               status = coalesce(p_finish[i], t.status),
               closed = t.closed OR p_finish[i] IS NOT NULL,
               finished_at = CASE WHEN p_finish[i] IS NOT NULL THEN now() ELSE t.finished_at END,
               abort_reason = CASE WHEN p_finish[i] = 'aborted' THEN p_reasons[i]
                                   ELSE t.abort_reason END,
               error = CASE WHEN p_finish[i] IN ('error', 'timeout') THEN p_reasons[i]
                            ELSE t.error END
         WHERE t.id = p_ids[i] AND t.size = p_offsets[i] AND NOT t.closed
           AND (p_max_size IS NULL OR t.size + octet_length(p_data[i]) <= p_max_size)
        RETURNING t.size INTO new_size;
        IF FOUND THEN
            IF octet_length(p_data[i]) > 0 THEN
                INSERT INTO pts.chunks (stream_id, start_offset, data)
                VALUES (p_ids[i], p_offsets[i], p_data[i]);
            END IF;
            changed := changed || p_ids[i];
        ELSE
            new_size := NULL;
        END IF;
        ord := i;
        size := new_size;
        RETURN NEXT;
    END LOOP;
    PERFORM set_config('pts.notify', coalesce(previous, ''), true);
    PERFORM pts.notify_batch_v1(changed, p_notify_v1);
END;
$$;
