-- The schema that release 0.1.0 (commit 639496c) made for the jobs service, before Alembic:
-- the 0.1.0 code's create_schema run on an empty schema named modelserve_010 of the test
-- bed's PostgreSQL 15, then
--   pg_dump --schema-only --no-owner --no-privileges --schema=modelserve_010 URL
-- The migration tests load it into a schema of their own (modelserve_010 renamed, psql's
-- backslash commands dropped).
--
-- PostgreSQL database dump
--

\restrict LthViMil7E2yBHj87Ni1rwkkUbHzjoJkIRzHOAtl7meVTqNSJBHYJtMJfQoRHkK

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
-- Name: files; Type: TABLE; Schema: modelserve_010; Owner: -
--

CREATE TABLE modelserve_010.files (
    id text NOT NULL,
    owner text NOT NULL,
    team text,
    purpose text NOT NULL,
    filename text NOT NULL,
    bytes bigint NOT NULL,
    lines integer NOT NULL,
    status text DEFAULT 'processed'::text NOT NULL,
    key text NOT NULL,
    job_id text,
    created_at timestamp with time zone DEFAULT now() NOT NULL
);


--
-- Name: job_items; Type: TABLE; Schema: modelserve_010; Owner: -
--

CREATE TABLE modelserve_010.job_items (
    job_id text NOT NULL,
    index integer NOT NULL,
    state text DEFAULT 'pending'::text NOT NULL,
    attempts integer DEFAULT 0 NOT NULL,
    lease_owner text,
    lease_until timestamp with time zone,
    input jsonb NOT NULL,
    output jsonb,
    error jsonb,
    finished_at timestamp with time zone,
    CONSTRAINT job_items_state_check CHECK ((state = ANY (ARRAY['pending'::text, 'running'::text, 'done'::text, 'failed'::text])))
);


--
-- Name: jobs; Type: TABLE; Schema: modelserve_010; Owner: -
--

CREATE TABLE modelserve_010.jobs (
    id text NOT NULL,
    type text NOT NULL,
    owner text NOT NULL,
    team text,
    model text,
    status text DEFAULT 'pending'::text NOT NULL,
    total integer NOT NULL,
    done integer DEFAULT 0 NOT NULL,
    failed integer DEFAULT 0 NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    started_at timestamp with time zone,
    finished_at timestamp with time zone,
    error text,
    spec jsonb DEFAULT '{}'::jsonb NOT NULL,
    result jsonb,
    key_id text,
    CONSTRAINT jobs_status_check CHECK ((status = ANY (ARRAY['pending'::text, 'running'::text, 'done'::text, 'failed'::text, 'cancelled'::text]))),
    CONSTRAINT jobs_total_check CHECK ((total >= 0))
);


--
-- Name: files files_pkey; Type: CONSTRAINT; Schema: modelserve_010; Owner: -
--

ALTER TABLE ONLY modelserve_010.files
    ADD CONSTRAINT files_pkey PRIMARY KEY (id);


--
-- Name: job_items job_items_pkey; Type: CONSTRAINT; Schema: modelserve_010; Owner: -
--

ALTER TABLE ONLY modelserve_010.job_items
    ADD CONSTRAINT job_items_pkey PRIMARY KEY (job_id, index);


--
-- Name: jobs jobs_pkey; Type: CONSTRAINT; Schema: modelserve_010; Owner: -
--

ALTER TABLE ONLY modelserve_010.jobs
    ADD CONSTRAINT jobs_pkey PRIMARY KEY (id);


--
-- Name: files_owner_created; Type: INDEX; Schema: modelserve_010; Owner: -
--

CREATE INDEX files_owner_created ON modelserve_010.files USING btree (owner, created_at DESC, id);


--
-- Name: job_items_open; Type: INDEX; Schema: modelserve_010; Owner: -
--

CREATE INDEX job_items_open ON modelserve_010.job_items USING btree (job_id, index) WHERE (state = ANY (ARRAY['pending'::text, 'running'::text]));


--
-- Name: jobs_owner_created; Type: INDEX; Schema: modelserve_010; Owner: -
--

CREATE INDEX jobs_owner_created ON modelserve_010.jobs USING btree (owner, created_at DESC);


--
-- Name: jobs_status_created; Type: INDEX; Schema: modelserve_010; Owner: -
--

CREATE INDEX jobs_status_created ON modelserve_010.jobs USING btree (status, created_at);


--
-- Name: job_items job_items_job_id_fkey; Type: FK CONSTRAINT; Schema: modelserve_010; Owner: -
--

ALTER TABLE ONLY modelserve_010.job_items
    ADD CONSTRAINT job_items_job_id_fkey FOREIGN KEY (job_id) REFERENCES modelserve_010.jobs(id) ON DELETE CASCADE;


--
-- PostgreSQL database dump complete
--

\unrestrict LthViMil7E2yBHj87Ni1rwkkUbHzjoJkIRzHOAtl7meVTqNSJBHYJtMJfQoRHkK

