-- Hardening (issue 10): a size cap on Durable Streams appends, and an index for
-- the sweeper's timeout of pending pts streams nobody claimed.
--
-- pts.ds_append_v2 is ds_append_v1 with a size cap (p_max_size) checked under the
-- stream's row lock, so concurrent appends cannot pass it together; v1 stays, as
-- a call of v2 without a cap, so code from before this migration keeps working
-- while both run during an upgrade.
--
-- It also repairs rows older code let in that Python cannot read back (every
-- read, HEAD and DELETE of them failed): an expiry outside years 1..9999 is
-- moved to the nearest representable day, and a sliding TTL so long that
-- now() + TTL passes year 9999 is shortened to 7000 years. pts now refuses
-- such values before writing (pts/store/validate.py).
UPDATE pts.streams SET expires_at = '0001-01-02 00:00:00+00'
 WHERE expires_at < '0001-01-02 00:00:00+00';
UPDATE pts.streams SET expires_at = '9999-12-30 00:00:00+00'
 WHERE expires_at > '9999-12-30 00:00:00+00';
UPDATE pts.streams SET ttl_seconds = 220903200000
 WHERE ttl_seconds > 220903200000;

-- The sweeper's pending timeout looks for pts streams (no path) nobody claimed.
CREATE INDEX streams_pending_updated_at_idx
    ON pts.streams (updated_at) WHERE status = 'pending' AND path IS NULL;

-- POST: append p_data (possibly empty) and/or close, atomically, under the
-- stream's row lock. The producer rules and Stream-Seq are checked before
-- anything is written, so a refused request changes nothing.
-- Outcomes: 'appended' | 'duplicate' (a producer retry: nothing written) |
-- 'not_found' | 'gone' | 'driven' (a pts driver writes this stream) |
-- 'closed' | 'content_type' | 'stale_epoch' | 'bad_epoch_seq' | 'seq_gap' |
-- 'seq_conflict' | 'too_large' (p_data would take the stream past p_max_size
-- bytes; NULL: no cap). epoch/seq are the producer state to report (for a gap,
-- seq is the one received), expected_seq the sequence number a gap expected.
CREATE FUNCTION pts.ds_append_v2(
    p_path text, p_data bytea, p_media_type text, p_close boolean, p_stream_seq text,
    p_producer text, p_epoch bigint, p_seq bigint, p_max_size bigint
) RETURNS TABLE (outcome text, stream_id uuid, size bigint, closed boolean,
                 epoch bigint, seq bigint, expected_seq bigint)
LANGUAGE plpgsql AS $$
DECLARE
    s pts.streams%ROWTYPE;
    known boolean := false;
    state_epoch bigint;
    state_seq bigint;
    added bigint := octet_length(p_data);
BEGIN
    SELECT * INTO s FROM pts.streams t WHERE t.path = p_path FOR UPDATE;
    IF NOT FOUND OR (s.expires_at IS NOT NULL AND s.expires_at <= now()) THEN
        RETURN QUERY SELECT 'not_found'::text, s.id, s.size, s.closed, NULL::bigint, NULL::bigint, NULL::bigint;
        RETURN;
    END IF;
    IF s.deleted_at IS NOT NULL THEN
        RETURN QUERY SELECT CASE WHEN pts.ds_referenced_v1(s.id) THEN 'gone' ELSE 'not_found' END,
                            s.id, s.size, s.closed, NULL::bigint, NULL::bigint, NULL::bigint;
        RETURN;
    END IF;
    IF s.status = 'streaming' THEN
        RETURN QUERY SELECT 'driven'::text, s.id, s.size, s.closed, NULL::bigint, NULL::bigint, NULL::bigint;
        RETURN;
    END IF;
    IF s.closed THEN
        IF p_producer IS NOT NULL AND s.closed_by_producer = p_producer
           AND s.closed_by_epoch = p_epoch AND s.closed_by_seq = p_seq THEN
            RETURN QUERY SELECT 'duplicate'::text, s.id, s.size, true, p_epoch, p_seq, NULL::bigint;
        ELSIF added = 0 AND p_close AND p_producer IS NULL THEN
            -- Closing a closed stream again is a no-op, not an error.
            RETURN QUERY SELECT 'appended'::text, s.id, s.size, true, NULL::bigint, NULL::bigint, NULL::bigint;
        ELSE
            RETURN QUERY SELECT 'closed'::text, s.id, s.size, true, NULL::bigint, NULL::bigint, NULL::bigint;
        END IF;
        RETURN;
    END IF;
    IF added > 0 AND lower(btrim(split_part(s.content_type, ';', 1))) <> p_media_type THEN
        RETURN QUERY SELECT 'content_type'::text, s.id, s.size, s.closed, NULL::bigint, NULL::bigint, NULL::bigint;
        RETURN;
    END IF;
    IF p_producer IS NOT NULL THEN
        SELECT pr.epoch, pr.last_seq INTO state_epoch, state_seq
          FROM pts.producers pr
         WHERE pr.stream_id = s.id AND pr.producer_id = p_producer
           FOR UPDATE;
        known := FOUND;
        IF NOT known THEN
            IF p_seq <> 0 THEN
                RETURN QUERY SELECT 'seq_gap'::text, s.id, s.size, s.closed, p_epoch, p_seq, 0::bigint;
                RETURN;
            END IF;
        ELSIF p_epoch < state_epoch THEN
            RETURN QUERY SELECT 'stale_epoch'::text, s.id, s.size, s.closed, state_epoch, state_seq, NULL::bigint;
            RETURN;
        ELSIF p_epoch > state_epoch THEN
            IF p_seq <> 0 THEN
                RETURN QUERY SELECT 'bad_epoch_seq'::text, s.id, s.size, s.closed, state_epoch, state_seq, NULL::bigint;
                RETURN;
            END IF;
        ELSIF p_seq <= state_seq THEN
            RETURN QUERY SELECT 'duplicate'::text, s.id, s.size, s.closed, state_epoch, state_seq, NULL::bigint;
            RETURN;
        ELSIF p_seq > state_seq + 1 THEN
            RETURN QUERY SELECT 'seq_gap'::text, s.id, s.size, s.closed, state_epoch, p_seq, state_seq + 1;
            RETURN;
        END IF;
    END IF;
    IF p_stream_seq IS NOT NULL AND s.stream_seq IS NOT NULL
       AND p_stream_seq COLLATE "C" <= s.stream_seq COLLATE "C" THEN
        RETURN QUERY SELECT 'seq_conflict'::text, s.id, s.size, s.closed, NULL::bigint, NULL::bigint, NULL::bigint;
        RETURN;
    END IF;
    -- The size cap, last: a producer's retry of an accepted append stays a duplicate.
    IF p_max_size IS NOT NULL AND s.size + added > p_max_size THEN
        RETURN QUERY SELECT 'too_large'::text, s.id, s.size, s.closed, NULL::bigint, NULL::bigint, NULL::bigint;
        RETURN;
    END IF;
    -- Every check passed: write.
    IF p_producer IS NOT NULL THEN
        INSERT INTO pts.producers AS pr (stream_id, producer_id, epoch, last_seq)
        VALUES (s.id, p_producer, p_epoch, p_seq)
        ON CONFLICT ON CONSTRAINT producers_pkey
        DO UPDATE SET epoch = excluded.epoch, last_seq = excluded.last_seq, updated_at = now();
    END IF;
    IF added > 0 THEN
        INSERT INTO pts.chunks (stream_id, start_offset, data) VALUES (s.id, s.size, p_data);
    END IF;
    UPDATE pts.streams t
       SET size = t.size + added,
           stream_seq = coalesce(p_stream_seq, t.stream_seq),
           closed = t.closed OR p_close,
           status = CASE WHEN p_close THEN 'done' ELSE t.status END,
           finished_at = CASE WHEN p_close THEN now() ELSE t.finished_at END,
           closed_by_producer = CASE WHEN p_close THEN p_producer ELSE t.closed_by_producer END,
           closed_by_epoch = CASE WHEN p_close THEN p_epoch ELSE t.closed_by_epoch END,
           closed_by_seq = CASE WHEN p_close THEN p_seq ELSE t.closed_by_seq END,
           expires_at = CASE WHEN t.ttl_seconds IS NOT NULL
                             THEN now() + make_interval(secs => t.ttl_seconds)
                             ELSE t.expires_at END,
           updated_at = now()
     WHERE t.id = s.id;
    RETURN QUERY SELECT 'appended'::text, s.id, s.size + added, s.closed OR p_close, p_epoch, p_seq, NULL::bigint;
END;
$$;

-- The version-1 append (no size cap), for code from before migration 0003.
CREATE OR REPLACE FUNCTION pts.ds_append_v1(
    p_path text, p_data bytea, p_media_type text, p_close boolean, p_stream_seq text,
    p_producer text, p_epoch bigint, p_seq bigint
) RETURNS TABLE (outcome text, stream_id uuid, size bigint, closed boolean,
                 epoch bigint, seq bigint, expected_seq bigint)
LANGUAGE sql AS $$
    SELECT * FROM pts.ds_append_v2(p_path, p_data, p_media_type, p_close, p_stream_seq,
                                   p_producer, p_epoch, p_seq, NULL);
$$;
