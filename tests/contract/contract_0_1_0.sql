-- The schema that release 0.1.0 (commit 639496c) made for the contract service, before Alembic:
-- the 0.1.0 code's create_schema run on an empty schema named modelserve_010 of the test
-- bed's PostgreSQL 15, then
--   pg_dump --schema-only --no-owner --no-privileges --schema=modelserve_010 URL
-- The migration tests load it into a schema of their own (modelserve_010 renamed, psql's
-- backslash commands dropped).
--
-- PostgreSQL database dump
--

\restrict 4l2CsuYnbVnFI6QsWlaX6LHQdjoxYkdOGdM5MMj2dfcci1UCF0Zy8OD17fu0e19

-- Dumped from database version 15.18 (Debian 15.18-0+deb12u1)
-- Dumped by pg_dump version 15.18 (Debian 15.18-0+deb12u1)

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

--
-- Name: modelserve_010; Type: SCHEMA; Schema: -; Owner: -
--

CREATE SCHEMA modelserve_010;


--
-- Name: contract_charge_expired(double precision); Type: FUNCTION; Schema: modelserve_010; Owner: -
--

CREATE FUNCTION modelserve_010.contract_charge_expired(p_keep_seconds double precision) RETURNS integer
    LANGUAGE plpgsql
    AS $$
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


--
-- Name: contract_lock(text[], text[], timestamp with time zone[]); Type: FUNCTION; Schema: modelserve_010; Owner: -
--

CREATE FUNCTION modelserve_010.contract_lock(p_scopes text[], p_metrics text[], p_windows timestamp with time zone[]) RETURNS void
    LANGUAGE plpgsql
    AS $$
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


--
-- Name: contract_release_expired(); Type: FUNCTION; Schema: modelserve_010; Owner: -
--

CREATE FUNCTION modelserve_010.contract_release_expired() RETURNS integer
    LANGUAGE sql
    AS $$
    SELECT contract_charge_expired(7 * 86400)
$$;


--
-- Name: contract_reserve(text[], text[], text[], bigint[], bigint[], bigint[], uuid, double precision, text, text, text); Type: FUNCTION; Schema: modelserve_010; Owner: -
--

CREATE FUNCTION modelserve_010.contract_reserve(p_scopes text[], p_metrics text[], p_units text[], p_used bigint[], p_reserved bigint[], p_limits bigint[], p_reservation uuid, p_ttl_seconds double precision, p_subject text, p_team text, p_model text) RETURNS void
    LANGUAGE plpgsql
    AS $$
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


--
-- Name: contract_settle(uuid, bigint); Type: FUNCTION; Schema: modelserve_010; Owner: -
--

CREATE FUNCTION modelserve_010.contract_settle(p_reservation uuid, p_tokens bigint) RETURNS boolean
    LANGUAGE plpgsql
    AS $$
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


--
-- Name: contract_window(text); Type: FUNCTION; Schema: modelserve_010; Owner: -
--

CREATE FUNCTION modelserve_010.contract_window(unit text) RETURNS timestamp with time zone
    LANGUAGE sql STABLE
    AS $$
    SELECT date_trunc(unit, now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
$$;


SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: contracts; Type: TABLE; Schema: modelserve_010; Owner: -
--

CREATE TABLE modelserve_010.contracts (
    models character varying[],
    runtimes character varying[],
    namespaces character varying[],
    max_replicas integer,
    max_gpus integer,
    max_servers integer,
    max_budget integer,
    requests_per_minute integer,
    tokens_per_minute bigint,
    token_budget bigint,
    budget_period character varying,
    downloads boolean,
    rate_limit_exempt_own_servers boolean,
    id integer NOT NULL,
    kind character varying NOT NULL,
    name character varying NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL
);


--
-- Name: contracts_id_seq; Type: SEQUENCE; Schema: modelserve_010; Owner: -
--

CREATE SEQUENCE modelserve_010.contracts_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: contracts_id_seq; Type: SEQUENCE OWNED BY; Schema: modelserve_010; Owner: -
--

ALTER SEQUENCE modelserve_010.contracts_id_seq OWNED BY modelserve_010.contracts.id;


--
-- Name: counters; Type: TABLE; Schema: modelserve_010; Owner: -
--

CREATE TABLE modelserve_010.counters (
    scope character varying NOT NULL,
    metric character varying NOT NULL,
    window_start timestamp with time zone NOT NULL,
    used bigint NOT NULL,
    reserved bigint NOT NULL
);


--
-- Name: reservations; Type: TABLE; Schema: modelserve_010; Owner: -
--

CREATE TABLE modelserve_010.reservations (
    id uuid NOT NULL,
    scopes character varying[] NOT NULL,
    metrics character varying[] NOT NULL,
    window_starts timestamp with time zone[] NOT NULL,
    tokens bigint NOT NULL,
    expires_at timestamp with time zone,
    subject character varying,
    team character varying,
    model character varying,
    charged_at timestamp with time zone
);


--
-- Name: servers; Type: TABLE; Schema: modelserve_010; Owner: -
--

CREATE TABLE modelserve_010.servers (
    namespace character varying NOT NULL,
    name character varying NOT NULL,
    owner character varying NOT NULL,
    team character varying NOT NULL,
    replicas integer NOT NULL,
    gpus integer NOT NULL,
    model character varying NOT NULL,
    runtime character varying NOT NULL,
    confirmed boolean NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL
);


--
-- Name: usage; Type: TABLE; Schema: modelserve_010; Owner: -
--

CREATE TABLE modelserve_010.usage (
    day date NOT NULL,
    subject character varying NOT NULL,
    team character varying NOT NULL,
    model character varying NOT NULL,
    requests bigint NOT NULL,
    prompt_tokens bigint NOT NULL,
    completion_tokens bigint NOT NULL
);


--
-- Name: usage_receipts; Type: TABLE; Schema: modelserve_010; Owner: -
--

CREATE TABLE modelserve_010.usage_receipts (
    id uuid NOT NULL,
    recorded_at timestamp with time zone DEFAULT now() NOT NULL
);


--
-- Name: contracts id; Type: DEFAULT; Schema: modelserve_010; Owner: -
--

ALTER TABLE ONLY modelserve_010.contracts ALTER COLUMN id SET DEFAULT nextval('modelserve_010.contracts_id_seq'::regclass);


--
-- Name: contracts contracts_kind_name_key; Type: CONSTRAINT; Schema: modelserve_010; Owner: -
--

ALTER TABLE ONLY modelserve_010.contracts
    ADD CONSTRAINT contracts_kind_name_key UNIQUE (kind, name);


--
-- Name: contracts contracts_pkey; Type: CONSTRAINT; Schema: modelserve_010; Owner: -
--

ALTER TABLE ONLY modelserve_010.contracts
    ADD CONSTRAINT contracts_pkey PRIMARY KEY (id);


--
-- Name: counters counters_pkey; Type: CONSTRAINT; Schema: modelserve_010; Owner: -
--

ALTER TABLE ONLY modelserve_010.counters
    ADD CONSTRAINT counters_pkey PRIMARY KEY (scope, metric, window_start);


--
-- Name: reservations reservations_pkey; Type: CONSTRAINT; Schema: modelserve_010; Owner: -
--

ALTER TABLE ONLY modelserve_010.reservations
    ADD CONSTRAINT reservations_pkey PRIMARY KEY (id);


--
-- Name: servers servers_pkey; Type: CONSTRAINT; Schema: modelserve_010; Owner: -
--

ALTER TABLE ONLY modelserve_010.servers
    ADD CONSTRAINT servers_pkey PRIMARY KEY (namespace, name);


--
-- Name: usage usage_pkey; Type: CONSTRAINT; Schema: modelserve_010; Owner: -
--

ALTER TABLE ONLY modelserve_010.usage
    ADD CONSTRAINT usage_pkey PRIMARY KEY (day, subject, team, model);


--
-- Name: usage_receipts usage_receipts_pkey; Type: CONSTRAINT; Schema: modelserve_010; Owner: -
--

ALTER TABLE ONLY modelserve_010.usage_receipts
    ADD CONSTRAINT usage_receipts_pkey PRIMARY KEY (id);


--
-- Name: ix_reservations_expires_at; Type: INDEX; Schema: modelserve_010; Owner: -
--

CREATE INDEX ix_reservations_expires_at ON modelserve_010.reservations USING btree (expires_at);


--
-- Name: ix_servers_owner; Type: INDEX; Schema: modelserve_010; Owner: -
--

CREATE INDEX ix_servers_owner ON modelserve_010.servers USING btree (owner);


--
-- Name: ix_servers_team; Type: INDEX; Schema: modelserve_010; Owner: -
--

CREATE INDEX ix_servers_team ON modelserve_010.servers USING btree (team);


--
-- Name: ix_usage_receipts_recorded_at; Type: INDEX; Schema: modelserve_010; Owner: -
--

CREATE INDEX ix_usage_receipts_recorded_at ON modelserve_010.usage_receipts USING btree (recorded_at);


--
-- PostgreSQL database dump complete
--

\unrestrict 4l2CsuYnbVnFI6QsWlaX6LHQdjoxYkdOGdM5MMj2dfcci1UCF0Zy8OD17fu0e19

