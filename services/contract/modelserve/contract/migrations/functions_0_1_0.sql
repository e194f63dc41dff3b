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
-- With a reservation id, the reserved amounts are recorded under it, with the request's
-- subject, team and model, to be settled by contract_settle or, when nobody settles it in
-- time, charged by contract_charge_expired.
CREATE OR REPLACE FUNCTION contract_reserve(
    p_scopes text[], p_metrics text[], p_units text[], p_used bigint[], p_reserved bigint[],
    p_limits bigint[], p_reservation uuid, p_ttl_seconds double precision,
    p_subject text, p_team text, p_model text
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
        INSERT INTO reservations (id, scopes, metrics, window_starts, tokens, expires_at,
                                  subject, team, model)
        VALUES (p_reservation, held_scopes, held_metrics, held_windows, held,
                now() + make_interval(secs => p_ttl_seconds), p_subject, p_team, p_model);
    END IF;
END
$$;

-- Turn a reservation into usage, in the windows it was made in: its reserved tokens are
-- given back and `p_tokens` counted. A reservation charged at its expiry (its tokens
-- counted as used then) is corrected to `p_tokens` instead, never below 0. Either way
-- the reservation is gone afterwards. False if there is no such reservation (settled,
-- never made, or charged longer ago than charged reservations are kept).
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
    IF r.charged_at IS NULL THEN
        UPDATE counters AS c
        SET reserved = greatest(c.reserved - r.tokens, 0), used = c.used + p_tokens
        FROM unnest(r.scopes, r.metrics, r.window_starts) AS w(scope, metric, window_start)
        WHERE c.scope = w.scope AND c.metric = w.metric AND c.window_start = w.window_start;
    ELSE
        UPDATE counters AS c SET used = greatest(c.used + p_tokens - r.tokens, 0)
        FROM unnest(r.scopes, r.metrics, r.window_starts) AS w(scope, metric, window_start)
        WHERE c.scope = w.scope AND c.metric = w.metric AND c.window_start = w.window_start;
    END IF;
    RETURN true;
END
$$;

-- Charge the reservations nobody settled in time (a gateway that crashed mid-request
-- never sends their usage): their reserved tokens become used tokens in the same windows,
-- and each counts as one request of its subject, team and model in the day's usage (all
-- its tokens as completion tokens). A charged reservation is kept, marked charged, for
-- `p_keep_seconds`, so that a usage record arriving late corrects it (contract_settle);
-- then it is deleted. Returns how many were charged. One run at a time, across replicas.
CREATE OR REPLACE FUNCTION contract_charge_expired(p_keep_seconds double precision)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_ids uuid[];
    v_scopes text[];
    v_metrics text[];
    v_windows timestamptz[];
    v_tokens bigint[];
    charged integer;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('contract_charge_expired', 0));
    DELETE FROM reservations WHERE charged_at IS NOT NULL AND expires_at < now();
    WITH due AS (
        UPDATE reservations
        SET charged_at = now(), expires_at = now() + make_interval(secs => p_keep_seconds)
        WHERE charged_at IS NULL AND expires_at < now()
        RETURNING *
    )
    SELECT array_agg(DISTINCT due.id), array_agg(w.scope), array_agg(w.metric),
           array_agg(w.window_start), array_agg(due.tokens), count(DISTINCT due.id)
    INTO v_ids, v_scopes, v_metrics, v_windows, v_tokens, charged
    FROM due, unnest(due.scopes, due.metrics, due.window_starts)
        AS w(scope, metric, window_start);
    IF charged = 0 THEN
        RETURN 0;
    END IF;
    PERFORM contract_lock(v_scopes, v_metrics, v_windows);
    UPDATE counters AS c
    SET reserved = greatest(c.reserved - t.tokens, 0), used = c.used + t.tokens
    FROM (
        SELECT k.scope, k.metric, k.window_start, sum(k.tokens)::bigint AS tokens
        FROM unnest(v_scopes, v_metrics, v_windows, v_tokens)
            AS k(scope, metric, window_start, tokens)
        GROUP BY 1, 2, 3
    ) AS t
    WHERE c.scope = t.scope AND c.metric = t.metric AND c.window_start = t.window_start;
    -- Reservations made before they named their subject are charged in the counters only.
    INSERT INTO usage AS u (day, subject, team, model, requests, prompt_tokens,
                            completion_tokens)
    SELECT (now() AT TIME ZONE 'UTC')::date, r.subject, coalesce(r.team, ''), r.model,
           count(*), 0, sum(r.tokens)::bigint
    FROM reservations AS r
    WHERE r.id = ANY (v_ids) AND r.subject IS NOT NULL AND r.model IS NOT NULL
    GROUP BY r.subject, coalesce(r.team, ''), r.model
    ORDER BY 2, 3, 4
    ON CONFLICT (day, subject, team, model) DO UPDATE SET
        requests = u.requests + excluded.requests,
        completion_tokens = u.completion_tokens + excluded.completion_tokens;
    RETURN charged;
END
$$;

-- The name replicas of an earlier release call during a rolling update: they charge too,
-- keeping charged reservations for store.RECEIPT_DAYS (7 days).
CREATE OR REPLACE FUNCTION contract_release_expired() RETURNS integer
LANGUAGE sql AS $$
    SELECT contract_charge_expired(7 * 86400)
$$;
