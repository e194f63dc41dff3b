-- The functions of revision 0002 (leases): frozen with it, like functions_0_1_0.sql; a
-- change is a new revision.
--
-- A lease is a slice of one limited counter (scope, metric, window) granted to one holder,
-- a gateway process, which decides requests from it in its own memory. Every granted slice
-- sits in the counter's `reserved` until usage records settle it or its holder gives it
-- back, so `used + reserved` never exceeds the limit, whatever the number of replicas.
--
-- What a lease still holds in `reserved`: coalesce(taken, granted) - settled (never below
-- 0). A settle, a give-back or a charge never takes more than that out of `reserved`, so
-- a holder that misreports cannot free what other leases hold.
--
-- Lock order, in every function here: leases (by id), then reservations (by id), then
-- counter rows (contract_lock's order), so that concurrent calls wait, never deadlock.

-- The end of the window of `p_unit` that starts at `p_start`, by UTC (no daylight saving
-- time: the arithmetic is done on UTC wall-clock time).
CREATE OR REPLACE FUNCTION contract_window_end(p_unit text, p_start timestamptz)
RETURNS timestamptz LANGUAGE sql STABLE AS $$
    SELECT ((p_start AT TIME ZONE 'UTC') + ('1 ' || p_unit)::interval) AT TIME ZONE 'UTC'
$$;

-- One call of POST /leases, in one transaction: give back p_back (with what was taken of
-- each), renew p_renew, then grant the wants (scope, metric, unit, amount, limit), each
-- `least(amount, limit - used - reserved)` in the current window of its unit. Returns one
-- row per renewed lease (r_ord NULL) and one per want (r_ord its index, r_lease NULL when
-- nothing was granted). Leases of another holder, given back or charged are left alone.
CREATE OR REPLACE FUNCTION contract_leases(
    p_holder text,
    p_back uuid[], p_taken bigint[],
    p_renew uuid[],
    p_scopes text[], p_metrics text[], p_units text[], p_amounts bigint[], p_limits bigint[],
    p_ttl_seconds double precision, p_keep_seconds double precision
) RETURNS TABLE (r_ord integer, r_lease uuid, r_granted bigint, r_window_ends_in double precision)
LANGUAGE plpgsql AS $$
DECLARE
    i int;
    v_windows timestamptz[];
    v_scopes text[];
    v_metrics text[];
    v_starts timestamptz[];
    v_granted bigint;
    v_id uuid;
BEGIN
    PERFORM 1 FROM leases AS l
    WHERE l.id = ANY (coalesce(p_back, '{}') || coalesce(p_renew, '{}'))
    ORDER BY l.id FOR UPDATE;
    SELECT coalesce(array_agg(contract_window(x.unit) ORDER BY x.n), '{}')
    INTO v_windows FROM unnest(p_units) WITH ORDINALITY AS x(unit, n);
    -- Every counter row this call changes, locked at once in the one order.
    SELECT array_agg(k.scope), array_agg(k.metric), array_agg(k.window_start)
    INTO v_scopes, v_metrics, v_starts
    FROM (
        SELECT l.scope, l.metric, l.window_start FROM leases AS l
        WHERE l.id = ANY (p_back) AND l.holder = p_holder
          AND l.taken IS NULL AND l.charged_at IS NULL
        UNION
        SELECT w.scope, w.metric, w.window_start
        FROM unnest(p_scopes, p_metrics, v_windows) AS w(scope, metric, window_start)
    ) AS k;
    PERFORM contract_lock(v_scopes, v_metrics, v_starts);

    -- Give back: what was not taken leaves `reserved`; the lease waits (p_keep_seconds) for
    -- the usage records of what was taken.
    WITH back AS (
        SELECT DISTINCT ON (b.id) b.id, least(greatest(coalesce(b.taken, 0), 0), l.granted) AS taken
        FROM unnest(p_back, p_taken) AS b(id, taken)
        JOIN leases AS l ON l.id = b.id
        WHERE l.holder = p_holder AND l.taken IS NULL AND l.charged_at IS NULL
        ORDER BY b.id
    ), released AS (
        UPDATE leases AS l
        SET taken = back.taken, expires_at = now() + make_interval(secs => p_keep_seconds)
        FROM back WHERE l.id = back.id
        RETURNING l.scope, l.metric, l.window_start,
            greatest(l.granted - l.settled, 0) - greatest(back.taken - l.settled, 0) AS freed
    )
    UPDATE counters AS c SET reserved = greatest(c.reserved - f.freed, 0)
    FROM (
        SELECT r.scope, r.metric, r.window_start, sum(r.freed) AS freed
        FROM released AS r GROUP BY 1, 2, 3
    ) AS f
    WHERE c.scope = f.scope AND c.metric = f.metric AND c.window_start = f.window_start;
    -- Given back and every record of it already in: nothing is left to wait for.
    DELETE FROM leases AS l
    WHERE l.id = ANY (p_back) AND l.holder = p_holder AND l.charged_at IS NULL
      AND l.taken IS NOT NULL AND l.settled >= l.taken;

    RETURN QUERY
    UPDATE leases AS l SET expires_at = now() + make_interval(secs => p_ttl_seconds)
    WHERE l.id = ANY (p_renew) AND l.holder = p_holder
      AND l.taken IS NULL AND l.charged_at IS NULL
    RETURNING NULL::integer, l.id, NULL::bigint, NULL::double precision;

    FOR i IN 1 .. coalesce(array_length(p_scopes, 1), 0) LOOP
        SELECT least(p_amounts[i], greatest(p_limits[i]::numeric - c.used - c.reserved, 0))::bigint
        INTO v_granted
        FROM counters AS c
        WHERE c.scope = p_scopes[i] AND c.metric = p_metrics[i] AND c.window_start = v_windows[i];
        v_id := NULL;
        IF coalesce(v_granted, 0) > 0 THEN
            UPDATE counters AS c SET reserved = c.reserved + v_granted
            WHERE c.scope = p_scopes[i] AND c.metric = p_metrics[i]
              AND c.window_start = v_windows[i];
            v_id := gen_random_uuid();
            INSERT INTO leases (id, holder, scope, metric, window_start, granted, taken, settled,
                                expires_at, charged_at)
            VALUES (v_id, p_holder, p_scopes[i], p_metrics[i], v_windows[i], v_granted, NULL, 0,
                    now() + make_interval(secs => p_ttl_seconds), NULL);
        END IF;
        r_ord := i;
        r_lease := v_id;
        r_granted := coalesce(v_granted, 0);
        r_window_ends_in := extract(epoch FROM contract_window_end(p_units[i], v_windows[i]) - now());
        RETURN NEXT;
    END LOOP;
END
$$;

-- Record usage records, all in one transaction with set-based statements. Per record i
-- (p_ids .. p_reservations): its receipt (an id seen before, or a second time in this
-- call, counts nothing), its reservation (the shape of POST /decide: settled as
-- contract_settle settles it, or corrected when it was charged), and its day's usage.
-- Per counter entry j (p_records[j] names its record): with a lease of that scope and
-- metric, the lease is settled in its own window (used += actual, the hold leaves
-- `reserved`; a charged lease's hold was counted as used: used += actual - hold);
-- otherwise actual is counted in the current window of the metric's unit, without limit.
-- actual = 1 for requests/*, the record's tokens for tokens/*. An entry with
-- p_fallback[j] counts only when its record's reservation is not found (the tokens of a
-- reservation that is gone). Returns per record: duplicate, reservation found.
CREATE OR REPLACE FUNCTION contract_record_usage(
    p_ids uuid[], p_subjects text[], p_teams text[], p_models text[],
    p_prompt bigint[], p_completion bigint[], p_reservations uuid[],
    p_records integer[], p_scopes text[], p_metrics text[], p_leases uuid[], p_holds bigint[],
    p_fallback boolean[]
) RETURNS TABLE (r_ord integer, r_duplicate boolean, r_found boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_fresh integer[];
    v_found integer[];
    v_res uuid[];
    e_scopes text[];
    e_metrics text[];
    e_windows timestamptz[];
    e_leases uuid[];
    e_holds bigint[];
    e_actuals bigint[];
    k_scopes text[];
    k_metrics text[];
    k_windows timestamptz[];
BEGIN
    -- Receipts, in id order; the first record of an id in this call is the one counted.
    WITH recs AS (
        SELECT r.id, r.n::integer AS n FROM unnest(p_ids) WITH ORDINALITY AS r(id, n)
    ), firsts AS (
        SELECT DISTINCT ON (r.id) r.id, r.n FROM recs AS r WHERE r.id IS NOT NULL
        ORDER BY r.id, r.n
    ), inserted AS (
        INSERT INTO usage_receipts (id) SELECT f.id FROM firsts AS f ORDER BY f.id
        ON CONFLICT DO NOTHING RETURNING id
    )
    SELECT coalesce(array_agg(r.n), '{}') INTO v_fresh
    FROM recs AS r
    WHERE r.id IS NULL OR r.n IN (SELECT f.n FROM firsts AS f JOIN inserted AS i ON i.id = f.id);

    -- Leases, then reservations, locked in id order before any counter row.
    PERFORM 1 FROM leases AS l
    WHERE l.id IN (
        SELECT e.lease FROM unnest(p_records, p_leases) AS e(rec, lease)
        WHERE e.rec = ANY (v_fresh)
    )
    ORDER BY l.id FOR UPDATE;
    SELECT coalesce(array_agg(DISTINCT p_reservations[n]), '{}') INTO v_res
    FROM unnest(v_fresh) AS n WHERE p_reservations[n] IS NOT NULL;
    PERFORM 1 FROM reservations AS r WHERE r.id = ANY (v_res) ORDER BY r.id FOR UPDATE;
    -- The record that settles each reservation: the first fresh one naming it.
    SELECT coalesce(array_agg(x.n), '{}') INTO v_found
    FROM (
        SELECT DISTINCT ON (r.id) f.n
        FROM unnest(v_fresh) AS f(n)
        JOIN reservations AS r ON r.id = p_reservations[f.n]
        ORDER BY r.id, f.n
    ) AS x;

    -- The counter entries that count, each with the window it counts in.
    SELECT array_agg(t.scope), array_agg(t.metric), array_agg(t.window_start),
           array_agg(t.lease), array_agg(t.hold), array_agg(t.actual)
    INTO e_scopes, e_metrics, e_windows, e_leases, e_holds, e_actuals
    FROM (
        SELECT e.scope, e.metric,
               coalesce(l.window_start, contract_window(split_part(e.metric, '/', 2)))
                   AS window_start,
               l.id AS lease, e.hold,
               CASE WHEN e.metric LIKE 'requests/%' THEN 1
                    ELSE p_prompt[e.rec] + p_completion[e.rec] END AS actual
        FROM unnest(p_records, p_scopes, p_metrics, p_leases, p_holds, p_fallback)
            AS e(rec, scope, metric, lease, hold, fallback)
        LEFT JOIN leases AS l ON l.id = e.lease AND l.scope = e.scope AND l.metric = e.metric
        WHERE e.rec = ANY (v_fresh) AND NOT (e.fallback AND e.rec = ANY (v_found))
    ) AS t;

    -- Every counter row to change: the entries' and the found reservations'.
    SELECT array_agg(k.scope), array_agg(k.metric), array_agg(k.window_start)
    INTO k_scopes, k_metrics, k_windows
    FROM (
        SELECT e.scope, e.metric, e.window_start
        FROM unnest(e_scopes, e_metrics, e_windows) AS e(scope, metric, window_start)
        UNION
        SELECT w.scope, w.metric, w.window_start
        FROM reservations AS r
        CROSS JOIN LATERAL unnest(r.scopes, r.metrics, r.window_starts)
            AS w(scope, metric, window_start)
        WHERE r.id IN (SELECT p_reservations[n] FROM unnest(v_found) AS n)
    ) AS k;
    PERFORM contract_lock(k_scopes, k_metrics, k_windows);

    UPDATE counters AS c
    SET used = greatest(c.used + d.used, 0), reserved = greatest(c.reserved - d.freed, 0)
    FROM (
        SELECT x.scope, x.metric, x.window_start, sum(x.used) AS used, sum(x.freed) AS freed
        FROM (
            -- Entries without a lease: counted where they fall.
            SELECT e.scope, e.metric, e.window_start, e.actual::numeric AS used, 0 AS freed
            FROM unnest(e_scopes, e_metrics, e_windows, e_leases, e_actuals)
                AS e(scope, metric, window_start, lease, actual)
            WHERE e.lease IS NULL
            UNION ALL
            -- Entries of a lease: its holds leave `reserved`, at most what it still holds;
            -- a charged lease counted that as used already.
            SELECT l.scope, l.metric, l.window_start,
                   CASE WHEN l.charged_at IS NULL THEN s.actual ELSE s.actual - s.covered END,
                   CASE WHEN l.charged_at IS NULL THEN s.covered ELSE 0 END
            FROM (
                SELECT e.lease, sum(e.actual) AS actual,
                       least(sum(e.hold),
                             greatest(coalesce(min(l.taken), min(l.granted)) - min(l.settled), 0))
                           AS covered
                FROM unnest(e_leases, e_holds, e_actuals) AS e(lease, hold, actual)
                JOIN leases AS l ON l.id = e.lease
                GROUP BY e.lease
            ) AS s
            JOIN leases AS l ON l.id = s.lease
            UNION ALL
            -- Reservations: the held tokens leave `reserved` and the record's count; one
            -- that was charged is corrected by the difference.
            SELECT w.scope, w.metric, w.window_start,
                   CASE WHEN r.charged_at IS NULL THEN p_prompt[f.n] + p_completion[f.n]
                        ELSE p_prompt[f.n] + p_completion[f.n] - r.tokens END,
                   CASE WHEN r.charged_at IS NULL THEN r.tokens ELSE 0 END
            FROM unnest(v_found) AS f(n)
            JOIN reservations AS r ON r.id = p_reservations[f.n]
            CROSS JOIN LATERAL unnest(r.scopes, r.metrics, r.window_starts)
                AS w(scope, metric, window_start)
        ) AS x
        GROUP BY 1, 2, 3
    ) AS d
    WHERE c.scope = d.scope AND c.metric = d.metric AND c.window_start = d.window_start;

    UPDATE leases AS l SET settled = l.settled + s.hold
    FROM (
        SELECT e.lease, sum(e.hold) AS hold
        FROM unnest(e_leases, e_holds) AS e(lease, hold)
        WHERE e.lease IS NOT NULL GROUP BY e.lease
    ) AS s
    WHERE l.id = s.lease;
    DELETE FROM leases AS l
    WHERE l.id = ANY (e_leases) AND l.charged_at IS NULL
      AND l.taken IS NOT NULL AND l.settled >= l.taken;

    -- A charged reservation counted one request of its tokens in the usage of the day it
    -- was charged: that day gets the real tokens instead, and no second request.
    UPDATE usage AS u
    SET prompt_tokens = u.prompt_tokens + a.prompt,
        completion_tokens = greatest(u.completion_tokens + a.completion - a.held, 0)
    FROM (
        SELECT (r.charged_at AT TIME ZONE 'UTC')::date AS day, r.subject,
               coalesce(r.team, '') AS team, r.model, sum(p_prompt[f.n]) AS prompt,
               sum(p_completion[f.n]) AS completion, sum(r.tokens) AS held
        FROM unnest(v_found) AS f(n)
        JOIN reservations AS r ON r.id = p_reservations[f.n]
        WHERE r.charged_at IS NOT NULL AND r.subject IS NOT NULL AND r.model IS NOT NULL
        GROUP BY 1, 2, 3, 4
    ) AS a
    WHERE u.day = a.day AND u.subject = a.subject AND u.team = a.team AND u.model = a.model;
    INSERT INTO usage AS u (day, subject, team, model, requests, prompt_tokens,
                            completion_tokens)
    SELECT (now() AT TIME ZONE 'UTC')::date, p_subjects[f.n], coalesce(p_teams[f.n], ''),
           p_models[f.n], count(*), sum(p_prompt[f.n]), sum(p_completion[f.n])
    FROM unnest(v_fresh) AS f(n)
    WHERE NOT EXISTS (
        SELECT 1 FROM reservations AS r
        WHERE r.id = p_reservations[f.n] AND f.n = ANY (v_found)
          AND r.charged_at IS NOT NULL AND r.subject IS NOT NULL AND r.model IS NOT NULL
    )
    GROUP BY 2, 3, 4
    ORDER BY 2, 3, 4
    ON CONFLICT (day, subject, team, model) DO UPDATE SET
        requests = u.requests + excluded.requests,
        prompt_tokens = u.prompt_tokens + excluded.prompt_tokens,
        completion_tokens = u.completion_tokens + excluded.completion_tokens;

    DELETE FROM reservations AS r
    WHERE r.id IN (SELECT p_reservations[n] FROM unnest(v_found) AS n);

    RETURN QUERY
    SELECT x.n::integer, NOT (x.n::integer = ANY (v_fresh)), x.n::integer = ANY (v_found)
    FROM generate_series(1, coalesce(array_length(p_ids, 1), 0)) AS x(n);
END
$$;

-- Charge the leases nobody gave back, or whose usage records did not all arrive, by their
-- `expires_at` (a holder that died or lost the contract service): what each still holds
-- becomes used in its window. A charged lease is kept until `p_keep_seconds` later, so
-- that its holder's late records correct it (contract_record_usage); then it is deleted.
-- Returns how many were charged. Under contract_charge_expired's lock: one run at a time.
CREATE OR REPLACE FUNCTION contract_charge_leases(p_keep_seconds double precision)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_ids uuid[];
    v_scopes text[];
    v_metrics text[];
    v_windows timestamptz[];
    charged integer;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('contract_charge_expired', 0));
    DELETE FROM leases WHERE charged_at IS NOT NULL AND expires_at < now();
    SELECT array_agg(d.id), array_agg(d.scope), array_agg(d.metric), array_agg(d.window_start),
           count(*)
    INTO v_ids, v_scopes, v_metrics, v_windows, charged
    FROM (
        SELECT l.id, l.scope, l.metric, l.window_start FROM leases AS l
        WHERE l.charged_at IS NULL AND l.expires_at < now()
        ORDER BY l.id FOR UPDATE
    ) AS d;
    IF charged = 0 THEN
        RETURN 0;
    END IF;
    PERFORM contract_lock(v_scopes, v_metrics, v_windows);
    WITH due AS (
        UPDATE leases AS l
        SET charged_at = now(), expires_at = now() + make_interval(secs => p_keep_seconds)
        WHERE l.id = ANY (v_ids)
        RETURNING l.scope, l.metric, l.window_start,
            greatest(coalesce(l.taken, l.granted) - l.settled, 0) AS held
    )
    UPDATE counters AS c
    SET used = c.used + t.held, reserved = greatest(c.reserved - t.held, 0)
    FROM (
        SELECT d.scope, d.metric, d.window_start, sum(d.held) AS held
        FROM due AS d GROUP BY 1, 2, 3
    ) AS t
    WHERE c.scope = t.scope AND c.metric = t.metric AND c.window_start = t.window_start;
    RETURN charged;
END
$$;
