"""The download service's schema as release 0.1.0 made it (`create_all` of its models and
the columns and index it added to older tables), frozen here: revision 0001 makes it, and
the adoption of a database from 0.1.0 or before brings one to it. Never edit these; a
change of schema is a new revision.

CREATE is what pg_dump --schema-only printed for a database that 0.1.0 made.
"""

from __future__ import annotations

TABLES = (
    "download_requesters",
    "downloads",
    "model_active",
    "model_history",
    "model_uploads",
    "models",
)

CREATE = (
    """
    CREATE TABLE download_requesters (
        model_id character varying NOT NULL,
        subject character varying NOT NULL
    )
    """,
    """
    CREATE TABLE downloads (
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
    )
    """,
    """
    CREATE TABLE model_active (
        name character varying NOT NULL,
        model_id character varying NOT NULL,
        set_by character varying NOT NULL,
        set_at timestamp with time zone DEFAULT now() NOT NULL,
        history_id bigint NOT NULL
    )
    """,
    """
    CREATE TABLE model_history (
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
    )
    """,
    """
    CREATE SEQUENCE model_history_id_seq
        START WITH 1
        INCREMENT BY 1
        NO MINVALUE
        NO MAXVALUE
        CACHE 1
    """,
    """
    ALTER SEQUENCE model_history_id_seq OWNED BY model_history.id
    """,
    """
    CREATE TABLE model_uploads (
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
    )
    """,
    """
    CREATE TABLE models (
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
    )
    """,
    """
    ALTER TABLE ONLY model_history
        ALTER COLUMN id SET DEFAULT nextval('model_history_id_seq'::regclass)
    """,
    """
    ALTER TABLE ONLY download_requesters
        ADD CONSTRAINT download_requesters_pkey PRIMARY KEY (model_id, subject)
    """,
    """
    ALTER TABLE ONLY downloads
        ADD CONSTRAINT downloads_pkey PRIMARY KEY (model_id)
    """,
    """
    ALTER TABLE ONLY model_active
        ADD CONSTRAINT model_active_pkey PRIMARY KEY (name)
    """,
    """
    ALTER TABLE ONLY model_history
        ADD CONSTRAINT model_history_pkey PRIMARY KEY (id)
    """,
    """
    ALTER TABLE ONLY model_uploads
        ADD CONSTRAINT model_uploads_pkey PRIMARY KEY (id)
    """,
    """
    ALTER TABLE ONLY models
        ADD CONSTRAINT models_pkey PRIMARY KEY (id)
    """,
    """
    CREATE INDEX downloads_claimable ON downloads USING btree (created_at)
        WHERE ((state)::text = ANY ((ARRAY['queued'::character varying,
            'transferring'::character varying, 'verifying'::character varying])::text[]))
    """,
    """
    CREATE INDEX model_history_name ON model_history USING btree (name, id)
    """,
    """
    CREATE UNIQUE INDEX model_history_rollback ON model_history USING btree (rollout_id, server_uid)
        WHERE ((action)::text = 'automatic_rollback'::text)
    """,
    """
    CREATE INDEX models_name_created ON models USING btree (name, created_at, id)
    """,
)

# What 0.1.0 ran at every start: databases made before these existed get them.
ADDED = (
    "ALTER TABLE downloads ADD COLUMN IF NOT EXISTS kind varchar NOT NULL DEFAULT 'download'",
    "ALTER TABLE downloads ADD COLUMN IF NOT EXISTS tags jsonb",
    "ALTER TABLE downloads ADD COLUMN IF NOT EXISTS source_label varchar",
    "ALTER TABLE downloads ADD COLUMN IF NOT EXISTS name_checked_for varchar",
    "ALTER TABLE models ADD COLUMN IF NOT EXISTS origin varchar NOT NULL DEFAULT 'download'",
    "ALTER TABLE models ADD COLUMN IF NOT EXISTS tags jsonb NOT NULL DEFAULT '[]'::jsonb",
    "ALTER TABLE models ADD COLUMN IF NOT EXISTS source_label varchar",
    "CREATE INDEX IF NOT EXISTS models_name_created ON models (name, created_at, id)",
)
