-- Counters change only through these functions: one statement per decision, atomic
-- under PostgreSQL's row locks, so that limits hold across every replica of the service.
-- Windows start at the database's clock (UTC), never at a replica's.

-- Every writer takes the counter rows it needs here first, creating the missing ones, in
-- one order (scope, metric, window): two transactions that need the same rows then wait
-- for each other instead of deadlocking.
CREATE OR REPLACE FUNCTION contract_lock(p_scopes text[], p_metrics text[], p_windows timestamptz[])
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO counters (scope, metric, window_start, used, reserved)
    SELECT DISTINCT k.scope, k.metric, k.window_start, 0::bigint, 0::bigint
    FROM unnest(p_scopes, p_metrics, p_windows) AS k(scope, metric, window_start)
    ORDER BY 1, 2, 3
    ON CONFLICT DO NOTHING;
    PERFORM 1 FROM counters AS c
    JOIN unnest(p_scopes, p_metrics, p_windows) AS k(scope, metric, window_start)
      ON c.scope = k.scope AND c.metric = k.metric AND c.window_start = k.window_start
    ORDER BY c.scope, c.metric, c.window_start
    FOR UPDATE OF c;
END
$$;

-- The start of the window of `unit` (minute, day, month) that now is in, by UTC.
CREATE OR REPLACE FUNCTION contract_window(unit text) RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT date_trunc(unit, now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
$$;

-- Count p_used[i] and reserve p_reserved[i] in counter i, unless that would take it over
-- p_limits[i] (NULL: no limit). The first counter that would go over aborts the whole
-- statement with SQLSTATE MS001 and i as its message: nothing is counted then.
-- With a reservation id, the reserved amounts are recorded under it, to be settled by
-- contract_settle or given back by contract_release_expired.
CREATE OR REPLACE FUNCTION contract_reserve(
    p_scopes text[], p_metrics text[], p_units text[], p_used bigint[], p_reserved bigint[],
    p_limits bigint[], p_reservation uuid, p_ttl_seconds double precision
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    i int;
    v_window timestamptz;
    counted boolean;
    held_scopes text[] := '{}';
    held_metrics text[] := '{}';
    held_windows timestamptz[] := '{}';
    held bigint := 0;
BEGIN
    -- The charges come sorted by (scope, metric), the order of contract_lock: the upserts
    -- below take their rows in it.
    FOR i IN 1 .. coalesce(array_length(p_scopes, 1), 0) LOOP
        v_window := contract_window(p_units[i]);
        IF p_limits[i] IS NOT NULL AND p_used[i] + p_reserved[i] > p_limits[i] THEN
            RAISE EXCEPTION USING ERRCODE = 'MS001', MESSAGE = i::text;
        END IF;
        counted := NULL;
        INSERT INTO counters AS c (scope, metric, window_start, used, reserved)
        VALUES (p_scopes[i], p_metrics[i], v_window, p_used[i], p_reserved[i])
        ON CONFLICT (scope, metric, window_start) DO UPDATE
            SET used = c.used + excluded.used, reserved = c.reserved + excluded.reserved
            WHERE p_limits[i] IS NULL
               OR c.used + c.reserved + excluded.used + excluded.reserved <= p_limits[i]
        RETURNING true INTO counted;
        IF counted IS NULL THEN
            RAISE EXCEPTION USING ERRCODE = 'MS001', MESSAGE = i::text;
        END IF;
        IF p_reserved[i] > 0 THEN
            held_scopes := held_scopes || p_scopes[i];
            held_metrics := held_metrics || p_metrics[i];
            held_windows := held_windows || v_window;
            held := p_reserved[i];
        END IF;
    END LOOP;
    IF p_reservation IS NOT NULL AND held > 0 THEN
        INSERT INTO reservations (id, scopes, metrics, window_starts, tokens, expires_at)
        VALUES (p_reservation, held_scopes, held_metrics, held_windows, held,
                now() + make_interval(secs => p_ttl_seconds));
    END IF;
END
$$;

-- Turn a reservation into usage: its reserved tokens are given back and `p_tokens` counted
-- in the same windows. False if there is no such reservation (settled or expired).
CREATE OR REPLACE FUNCTION contract_settle(p_reservation uuid, p_tokens bigint)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    r reservations%ROWTYPE;
BEGIN
    DELETE FROM reservations WHERE id = p_reservation RETURNING * INTO r;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM contract_lock(r.scopes, r.metrics, r.window_starts);
    UPDATE counters AS c
    SET reserved = greatest(c.reserved - r.tokens, 0), used = c.used + p_tokens
    FROM unnest(r.scopes, r.metrics, r.window_starts) AS w(scope, metric, window_start)
    WHERE c.scope = w.scope AND c.metric = w.metric AND c.window_start = w.window_start;
    RETURN true;
END
$$;

-- Give back the tokens of reservations nobody settled in time; returns how many.
CREATE OR REPLACE FUNCTION contract_release_expired() RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_scopes text[];
    v_metrics text[];
    v_windows timestamptz[];
    v_tokens bigint[];
    released integer;
BEGIN
    WITH gone AS (DELETE FROM reservations WHERE expires_at < now() RETURNING *)
    SELECT array_agg(w.scope), array_agg(w.metric), array_agg(w.window_start),
           array_agg(gone.tokens), count(DISTINCT gone.id)
    INTO v_scopes, v_metrics, v_windows, v_tokens, released
    FROM gone, unnest(gone.scopes, gone.metrics, gone.window_starts)
        AS w(scope, metric, window_start);
    IF released = 0 THEN
        RETURN 0;
    END IF;
    PERFORM contract_lock(v_scopes, v_metrics, v_windows);
    UPDATE counters AS c SET reserved = greatest(c.reserved - t.tokens, 0)
    FROM (
        SELECT k.scope, k.metric, k.window_start, sum(k.tokens) AS tokens
        FROM unnest(v_scopes, v_metrics, v_windows, v_tokens)
            AS k(scope, metric, window_start, tokens)
        GROUP BY 1, 2, 3
    ) AS t
    WHERE c.scope = t.scope AND c.metric = t.metric AND c.window_start = t.window_start;
    RETURN released;
END
$$;
