-- The schema that release 0.1.0 (commit 639496c) made for the download service, before Alembic:
-- the 0.1.0 code's create_schema run on an empty schema named modelserve_010 of the test
-- bed's PostgreSQL 15, then
--   pg_dump --schema-only --no-owner --no-privileges --schema=modelserve_010 URL
-- The migration tests load it into a schema of their own (modelserve_010 renamed, psql's
-- backslash commands dropped).
--
-- PostgreSQL database dump
--

\restrict Za7GBDddX3fg7DM1FGt4A8O4CzTDpDBcm0kawHk9ggBU4Kp7C3ZV5QUfJCjX2nD

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


SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: download_requesters; Type: TABLE; Schema: modelserve_010; Owner: -
--

CREATE TABLE modelserve_010.download_requesters (
    model_id character varying NOT NULL,
    subject character varying NOT NULL
);


--
-- Name: downloads; Type: TABLE; Schema: modelserve_010; Owner: -
--

CREATE TABLE modelserve_010.downloads (
    model_id character varying NOT NULL,
    source_bucket character varying NOT NULL,
    source_key character varying,
    source_prefix character varying,
    name character varying,
    expected_sha256 character varying,
    state character varying NOT NULL,
    error_code character varying,
    error character varying,
    bytes_done bigint DEFAULT 0 NOT NULL,
    bytes_total bigint,
    files_done integer DEFAULT 0 NOT NULL,
    files_total integer,
    rate double precision,
    attempts integer DEFAULT 0 NOT NULL,
    requested_by character varying NOT NULL,
    kind character varying DEFAULT 'download'::character varying NOT NULL,
    tags jsonb,
    source_label character varying,
    name_checked_for character varying,
    claimed_by character varying,
    lease_until timestamp with time zone,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    started_at timestamp with time zone,
    finished_at timestamp with time zone
);


--
-- Name: model_active; Type: TABLE; Schema: modelserve_010; Owner: -
--

CREATE TABLE modelserve_010.model_active (
    name character varying NOT NULL,
    model_id character varying NOT NULL,
    set_by character varying NOT NULL,
    set_at timestamp with time zone DEFAULT now() NOT NULL,
    history_id bigint NOT NULL
);


--
-- Name: model_history; Type: TABLE; Schema: modelserve_010; Owner: -
--

CREATE TABLE modelserve_010.model_history (
    id bigint NOT NULL,
    name character varying NOT NULL,
    from_id character varying,
    to_id character varying,
    actor character varying NOT NULL,
    action character varying NOT NULL,
    reason character varying,
    message character varying,
    rollout_id bigint,
    server character varying,
    server_uid character varying,
    pointer_moved boolean,
    at timestamp with time zone DEFAULT now() NOT NULL
);


--
-- Name: model_history_id_seq; Type: SEQUENCE; Schema: modelserve_010; Owner: -
--

CREATE SEQUENCE modelserve_010.model_history_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: model_history_id_seq; Type: SEQUENCE OWNED BY; Schema: modelserve_010; Owner: -
--

ALTER SEQUENCE modelserve_010.model_history_id_seq OWNED BY modelserve_010.model_history.id;


--
-- Name: model_uploads; Type: TABLE; Schema: modelserve_010; Owner: -
--

CREATE TABLE modelserve_010.model_uploads (
    id character varying NOT NULL,
    filename character varying NOT NULL,
    size bigint NOT NULL,
    bucket character varying NOT NULL,
    key character varying NOT NULL,
    multipart_id character varying,
    part_size bigint,
    parts integer DEFAULT 1 NOT NULL,
    state character varying NOT NULL,
    created_by character varying NOT NULL,
    registered_as character varying,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    completed_at timestamp with time zone
);


--
-- Name: models; Type: TABLE; Schema: modelserve_010; Owner: -
--

CREATE TABLE modelserve_010.models (
    id character varying NOT NULL,
    name character varying NOT NULL,
    format character varying NOT NULL,
    size bigint NOT NULL,
    sha256 character varying NOT NULL,
    verified boolean NOT NULL,
    source character varying NOT NULL,
    bucket character varying NOT NULL,
    storage_key character varying NOT NULL,
    uri character varying NOT NULL,
    files jsonb NOT NULL,
    state character varying NOT NULL,
    architecture character varying,
    parameters bigint,
    quantization character varying,
    context_length integer,
    requested_by character varying NOT NULL,
    origin character varying DEFAULT 'download'::character varying NOT NULL,
    tags jsonb DEFAULT '[]'::jsonb NOT NULL,
    source_label character varying,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL
);


--
-- Name: model_history id; Type: DEFAULT; Schema: modelserve_010; Owner: -
--

ALTER TABLE ONLY modelserve_010.model_history ALTER COLUMN id SET DEFAULT nextval('modelserve_010.model_history_id_seq'::regclass);


--
-- Name: download_requesters download_requesters_pkey; Type: CONSTRAINT; Schema: modelserve_010; Owner: -
--

ALTER TABLE ONLY modelserve_010.download_requesters
    ADD CONSTRAINT download_requesters_pkey PRIMARY KEY (model_id, subject);


--
-- Name: downloads downloads_pkey; Type: CONSTRAINT; Schema: modelserve_010; Owner: -
--

ALTER TABLE ONLY modelserve_010.downloads
    ADD CONSTRAINT downloads_pkey PRIMARY KEY (model_id);


--
-- Name: model_active model_active_pkey; Type: CONSTRAINT; Schema: modelserve_010; Owner: -
--

ALTER TABLE ONLY modelserve_010.model_active
    ADD CONSTRAINT model_active_pkey PRIMARY KEY (name);


--
-- Name: model_history model_history_pkey; Type: CONSTRAINT; Schema: modelserve_010; Owner: -
--

ALTER TABLE ONLY modelserve_010.model_history
    ADD CONSTRAINT model_history_pkey PRIMARY KEY (id);


--
-- Name: model_uploads model_uploads_pkey; Type: CONSTRAINT; Schema: modelserve_010; Owner: -
--

ALTER TABLE ONLY modelserve_010.model_uploads
    ADD CONSTRAINT model_uploads_pkey PRIMARY KEY (id);


--
-- Name: models models_pkey; Type: CONSTRAINT; Schema: modelserve_010; Owner: -
--

ALTER TABLE ONLY modelserve_010.models
    ADD CONSTRAINT models_pkey PRIMARY KEY (id);


--
-- Name: downloads_claimable; Type: INDEX; Schema: modelserve_010; Owner: -
--

CREATE INDEX downloads_claimable ON modelserve_010.downloads USING btree (created_at) WHERE ((state)::text = ANY ((ARRAY['queued'::character varying, 'transferring'::character varying, 'verifying'::character varying])::text[]));


--
-- Name: model_history_name; Type: INDEX; Schema: modelserve_010; Owner: -
--

CREATE INDEX model_history_name ON modelserve_010.model_history USING btree (name, id);


--
-- Name: model_history_rollback; Type: INDEX; Schema: modelserve_010; Owner: -
--

CREATE UNIQUE INDEX model_history_rollback ON modelserve_010.model_history USING btree (rollout_id, server_uid) WHERE ((action)::text = 'automatic_rollback'::text);


--
-- Name: models_name_created; Type: INDEX; Schema: modelserve_010; Owner: -
--

CREATE INDEX models_name_created ON modelserve_010.models USING btree (name, created_at, id);


--
-- PostgreSQL database dump complete
--

\unrestrict Za7GBDddX3fg7DM1FGt4A8O4CzTDpDBcm0kawHk9ggBU4Kp7C3ZV5QUfJCjX2nD

