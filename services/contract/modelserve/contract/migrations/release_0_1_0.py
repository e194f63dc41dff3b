"""The contract service's schema as release 0.1.0 made it (`create_all` of its models, the
columns it added to older tables, and functions_0_1_0.sql), frozen here: revision 0001
makes it, and the adoption of a database from 0.1.0 or before brings one to it. Never
edit these; a change of schema is a new revision.

CREATE is what pg_dump --schema-only printed for a database that 0.1.0 made.
"""

from __future__ import annotations

from importlib.resources import files

TABLES = ("contracts", "counters", "reservations", "servers", "usage", "usage_receipts")

CREATE = (
    """
    CREATE TABLE contracts (
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
    )
    """,
    """
    CREATE SEQUENCE contracts_id_seq
        AS integer
        START WITH 1
        INCREMENT BY 1
        NO MINVALUE
        NO MAXVALUE
        CACHE 1
    """,
    """
    ALTER SEQUENCE contracts_id_seq OWNED BY contracts.id
    """,
    """
    CREATE TABLE counters (
        scope character varying NOT NULL,
        metric character varying NOT NULL,
        window_start timestamp with time zone NOT NULL,
        used bigint NOT NULL,
        reserved bigint NOT NULL
    )
    """,
    """
    CREATE TABLE reservations (
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
    )
    """,
    """
    CREATE TABLE servers (
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
    )
    """,
    """
    CREATE TABLE usage (
        day date NOT NULL,
        subject character varying NOT NULL,
        team character varying NOT NULL,
        model character varying NOT NULL,
        requests bigint NOT NULL,
        prompt_tokens bigint NOT NULL,
        completion_tokens bigint NOT NULL
    )
    """,
    """
    CREATE TABLE usage_receipts (
        id uuid NOT NULL,
        recorded_at timestamp with time zone DEFAULT now() NOT NULL
    )
    """,
    """
    ALTER TABLE ONLY contracts ALTER COLUMN id SET DEFAULT nextval('contracts_id_seq'::regclass)
    """,
    """
    ALTER TABLE ONLY contracts
        ADD CONSTRAINT contracts_kind_name_key UNIQUE (kind, name)
    """,
    """
    ALTER TABLE ONLY contracts
        ADD CONSTRAINT contracts_pkey PRIMARY KEY (id)
    """,
    """
    ALTER TABLE ONLY counters
        ADD CONSTRAINT counters_pkey PRIMARY KEY (scope, metric, window_start)
    """,
    """
    ALTER TABLE ONLY reservations
        ADD CONSTRAINT reservations_pkey PRIMARY KEY (id)
    """,
    """
    ALTER TABLE ONLY servers
        ADD CONSTRAINT servers_pkey PRIMARY KEY (namespace, name)
    """,
    """
    ALTER TABLE ONLY usage
        ADD CONSTRAINT usage_pkey PRIMARY KEY (day, subject, team, model)
    """,
    """
    ALTER TABLE ONLY usage_receipts
        ADD CONSTRAINT usage_receipts_pkey PRIMARY KEY (id)
    """,
    """
    CREATE INDEX ix_reservations_expires_at ON reservations USING btree (expires_at)
    """,
    """
    CREATE INDEX ix_servers_owner ON servers USING btree (owner)
    """,
    """
    CREATE INDEX ix_servers_team ON servers USING btree (team)
    """,
    """
    CREATE INDEX ix_usage_receipts_recorded_at ON usage_receipts USING btree (recorded_at)
    """,
)

# What 0.1.0 ran at every start: databases made before these columns existed get them.
ADDED_COLUMNS = (
    "ALTER TABLE contracts ADD COLUMN IF NOT EXISTS downloads boolean",
    "ALTER TABLE contracts ADD COLUMN IF NOT EXISTS rate_limit_exempt_own_servers boolean",
    "ALTER TABLE reservations ADD COLUMN IF NOT EXISTS subject varchar",
    "ALTER TABLE reservations ADD COLUMN IF NOT EXISTS team varchar",
    "ALTER TABLE reservations ADD COLUMN IF NOT EXISTS model varchar",
    "ALTER TABLE reservations ADD COLUMN IF NOT EXISTS charged_at timestamptz",
)


def functions() -> str:
    """The SQL functions of 0.1.0 (CREATE OR REPLACE: safe to run again)."""
    return files("modelserve.contract.migrations").joinpath("functions_0_1_0.sql").read_text()
