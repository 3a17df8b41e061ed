"""The PostgreSQL schema, as a registry of migrations applied in order.

The same tables, columns, keys and triggers as the SQLite schema
(:mod:`pixel_wsgi.storage.migrations.sqlite`), in PostgreSQL's types:

- ids are ``BIGINT GENERATED ALWAYS AS IDENTITY``;
- money stays ``TEXT`` holding the decimal's exact string (``"10.00"``), as in
  SQLite, so a value reads back with its own scale and every backend's rows are
  byte-identical; lists and dicts are JSON ``TEXT`` for the same reason (``JSONB``
  would reorder keys and refuses ``\\u0000``);
- times are ISO 8601 UTC ``TEXT`` compared as text, so they are declared
  ``COLLATE "C"``: byte order, like SQLite's, whatever the database's locale.

Applied by :func:`apply` inside one transaction that holds an advisory lock, so
concurrent migrators queue and a failed migration leaves nothing behind (DDL is
transactional in PostgreSQL). The registry's format is SQLite's too
(:mod:`pixel_wsgi.storage.migrations`). Never edit a migration that has shipped: add one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..sql import dialect
from . import Migrations, Script

if TYPE_CHECKING:
    from psycopg import Cursor

__all__ = ["MIGRATE_LOCK_KEY", "apply", "migrations"]

#: ``pg_advisory_xact_lock`` key that serialises migrators ("pixlmigr").
MIGRATE_LOCK_KEY = 0x7069_786C_6D69_6772

migrations = Migrations()


def apply(cur: Cursor[Any], applied_at: str) -> list[str]:
    """Apply the pending migrations on a cursor inside a transaction; their names.

    The caller holds ``MIGRATE_LOCK_KEY`` for the transaction, so nobody else
    migrates meanwhile.
    """

    def execute(sql: str, params: tuple[Any, ...]) -> Cursor[Any]:
        return cur.execute(dialect(sql, "%s"), params)

    def script(sql: str) -> None:
        # Without parameters psycopg sends the script as one simple query, so its
        # statements (and $$-quoted function bodies) run in order, in the transaction.
        cur.execute(sql)

    return migrations.apply(execute, script, applied_at)


@migrations(name="0001_initial")
def initial(script: Script) -> None:
    script(
        """
        CREATE TABLE advertisers (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            name TEXT NOT NULL,
            created_at TEXT COLLATE "C" NOT NULL
        );
        CREATE TABLE publishers (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            name TEXT NOT NULL,
            created_at TEXT COLLATE "C" NOT NULL
        );
        CREATE TABLE campaigns (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            advertiser_id BIGINT NOT NULL REFERENCES advertisers(id),
            name TEXT NOT NULL,
            payout_kind TEXT NOT NULL CHECK (payout_kind IN ('fixed', 'percent')),
            payout_value TEXT NOT NULL,
            payout_currency TEXT NOT NULL,
            reason_codes TEXT NOT NULL DEFAULT '[]',
            created_at TEXT COLLATE "C" NOT NULL
        );
        CREATE INDEX campaigns_advertiser ON campaigns (advertiser_id);
        CREATE TABLE links (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            campaign_id BIGINT NOT NULL REFERENCES campaigns(id),
            publisher_id BIGINT NOT NULL REFERENCES publishers(id),
            destination TEXT NOT NULL,
            created_at TEXT COLLATE "C" NOT NULL
        );
        CREATE INDEX links_campaign_publisher ON links (campaign_id, publisher_id);
        CREATE TABLE visits (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            link_id BIGINT NOT NULL REFERENCES links(id),
            ip_prefix TEXT,
            user_agent TEXT,
            created_at TEXT COLLATE "C" NOT NULL
        );
        -- Ids come from a sequence, which hands them out in the order rows are
        -- *inserted*, not committed. Every insert takes the storage's write lock
        -- first (see postgres.py), so the two orders agree and a keyset cursor
        -- never skips a row. Rows are never deleted (see the triggers).
        CREATE TABLE transactions (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            advertiser_id BIGINT NOT NULL REFERENCES advertisers(id),
            campaign_id BIGINT NOT NULL REFERENCES campaigns(id),
            publisher_id BIGINT NOT NULL REFERENCES publishers(id),
            visit_id BIGINT REFERENCES visits(id),
            source TEXT NOT NULL,
            reference_id TEXT,
            corrects_transaction_id BIGINT REFERENCES transactions(id),
            original_transaction_id BIGINT REFERENCES transactions(id),
            sale_amount TEXT,
            sale_currency TEXT NOT NULL,
            reason_code TEXT,
            sku_list TEXT NOT NULL,
            quantity_list TEXT NOT NULL,
            external_data TEXT,
            custom_data TEXT NOT NULL,
            payout TEXT NOT NULL,
            payout_currency TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            created_at TEXT COLLATE "C" NOT NULL,
            CONSTRAINT transactions_chain_check
                CHECK ((corrects_transaction_id IS NULL) = (original_transaction_id IS NULL))
        );
        -- One conversion per (advertiser, reference_id): the idempotency key.
        -- A partial index, so ON CONFLICT infers it from its columns and predicate
        -- (ON CONFLICT ON CONSTRAINT can name only a constraint, never an index).
        CREATE UNIQUE INDEX transactions_reference_key
            ON transactions (advertiser_id, reference_id)
            WHERE corrects_transaction_id IS NULL AND reference_id IS NOT NULL;
        -- A row is corrected at most once, so every chain is a line and its
        -- end is the current state, even when two corrections race.
        CREATE UNIQUE INDEX transactions_corrects_key
            ON transactions (corrects_transaction_id)
            WHERE corrects_transaction_id IS NOT NULL;
        CREATE INDEX transactions_original
            ON transactions (original_transaction_id)
            WHERE original_transaction_id IS NOT NULL;
        CREATE INDEX transactions_reload
            ON transactions (visit_id, fingerprint)
            WHERE reference_id IS NULL AND corrects_transaction_id IS NULL;
        CREATE FUNCTION pixel_wsgi_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'transactions are append-only' USING ERRCODE = 'restrict_violation';
        END
        $$;
        CREATE TRIGGER transactions_no_update BEFORE UPDATE ON transactions
            FOR EACH ROW EXECUTE FUNCTION pixel_wsgi_append_only();
        CREATE TRIGGER transactions_no_delete BEFORE DELETE ON transactions
            FOR EACH ROW EXECUTE FUNCTION pixel_wsgi_append_only();
        -- Row triggers do not see TRUNCATE.
        CREATE TRIGGER transactions_no_truncate BEFORE TRUNCATE ON transactions
            FOR EACH STATEMENT EXECUTE FUNCTION pixel_wsgi_append_only();
        CREATE TABLE personal_data (
            transaction_id BIGINT PRIMARY KEY REFERENCES transactions(id),
            advertiser_id BIGINT NOT NULL,
            data TEXT NOT NULL,
            created_at TEXT COLLATE "C" NOT NULL
        );
        -- Trimmed oldest first; identity ids are never reused.
        CREATE TABLE rejections (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            advertiser_id BIGINT,
            source TEXT NOT NULL,
            reason TEXT NOT NULL,
            detail TEXT NOT NULL,
            visit_id BIGINT,
            reference_id TEXT,
            params TEXT NOT NULL,
            created_at TEXT COLLATE "C" NOT NULL
        );
        CREATE INDEX rejections_advertiser ON rejections (advertiser_id, id)
        """,
    )


@migrations(name="0002_server_side_reporting")
def server_side_reporting(script: Script) -> None:
    script(
        """
        -- A reversal is a correction that voids its conversion, with the reason.
        ALTER TABLE transactions ADD COLUMN reversal_reason TEXT;
        -- No index on advertiser or time: each index costs every pixel's INSERT
        -- some 5-10 us (measured). The Transactions API pages by id and filters the
        -- rows it reads; daily caps have an index of their own only while in use.
        CREATE TABLE api_credentials (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            advertiser_id BIGINT NOT NULL REFERENCES advertisers(id),
            label TEXT NOT NULL,
            secret_hash TEXT NOT NULL CONSTRAINT api_credentials_secret_hash_key UNIQUE,
            created_at TEXT COLLATE "C" NOT NULL,
            revoked_at TEXT COLLATE "C"
        );
        CREATE INDEX api_credentials_advertiser ON api_credentials (advertiser_id);
        CREATE TABLE idempotency_keys (
            advertiser_id BIGINT NOT NULL REFERENCES advertisers(id),
            key TEXT NOT NULL,
            request_hash TEXT NOT NULL,
            status INTEGER NOT NULL,
            body TEXT NOT NULL,
            created_at TEXT COLLATE "C" NOT NULL,
            CONSTRAINT idempotency_keys_pkey PRIMARY KEY (advertiser_id, key)
        );
        CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
        -- Spooled events applied by a replay: each is applied exactly once.
        CREATE TABLE applied_events (
            event_id TEXT CONSTRAINT applied_events_pkey PRIMARY KEY,
            applied_at TEXT COLLATE "C" NOT NULL
        )
        """,
    )


@migrations(name="0003_signing_and_filters")
def signing_and_filters(script: Script) -> None:
    script(
        """
        -- Refuse conversion pixels without a valid signature (pixel_wsgi.signing).
        ALTER TABLE advertisers ADD COLUMN require_signed_pixels BOOLEAN NOT NULL DEFAULT FALSE;
        -- At most this many browser-reported conversions per UTC day; NULL: no cap.
        -- Counted with transactions_campaign_created, which exists only while some
        -- campaign has a cap (PostgresStorage.set_campaign_daily_cap).
        ALTER TABLE campaigns ADD COLUMN daily_cap INTEGER
            CONSTRAINT campaigns_daily_cap_check CHECK (daily_cap IS NULL OR daily_cap >= 0)
        """,
    )


@migrations(name="0004_server_precedence_and_claims")
def server_precedence_and_claims(script: Script) -> None:
    script(
        """
        -- Every server-side report applied to a conversion, by source and digest: the
        -- server has spoken (browsers can no longer change it), and a report equal to
        -- an earlier one from the same source changes nothing.
        CREATE TABLE server_reports (
            advertiser_id BIGINT NOT NULL,
            reference_id TEXT NOT NULL,
            source TEXT NOT NULL,
            report_hash TEXT NOT NULL,
            created_at TEXT COLLATE "C" NOT NULL,
            CONSTRAINT server_reports_pkey
                PRIMARY KEY (advertiser_id, reference_id, source, report_hash)
        );
        -- Second browser claims of a reference_id from other visits: kept, never paid,
        -- until a server report decides which claim wins the attribution.
        CREATE TABLE reference_claims (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            advertiser_id BIGINT NOT NULL,
            reference_id TEXT NOT NULL,
            visit_id BIGINT NOT NULL,
            campaign_id BIGINT NOT NULL,
            publisher_id BIGINT NOT NULL,
            source TEXT NOT NULL,
            report TEXT NOT NULL,
            created_at TEXT COLLATE "C" NOT NULL,
            resolution TEXT CONSTRAINT reference_claims_resolution_check
                CHECK (resolution IS NULL OR resolution IN ('won', 'lost')),
            resolved_at TEXT COLLATE "C"
        );
        CREATE INDEX reference_claims_reference ON reference_claims (advertiser_id, reference_id)
        """,
    )


@migrations(name="0006_delivery_capture")
def delivery_capture(script: Script) -> None:
    script(
        """
        -- What a tracking link's query carried for delivery (sub ids, ad platforms'
        -- click ids, the click's time), as compact JSON; NULL when it carried nothing.
        ALTER TABLE visits ADD COLUMN click_data TEXT;
        -- A pixel conversion's request context (the _fbp and _ga cookies, User-Agent,
        -- truncated IP, page), as compact JSON, written by the row's own INSERT and only
        -- for an advertiser that keeps it; set to NULL once delivery no longer needs it.
        ALTER TABLE transactions ADD COLUMN delivery_context TEXT;
        ALTER TABLE advertisers ADD COLUMN keeps_conversion_context BOOLEAN NOT NULL
            DEFAULT FALSE;
        -- Still append-only, but for one UPDATE: forgetting a conversion context. An
        -- UPDATE OF trigger fires when its SET names one of the columns, changed or not:
        -- the first refuses every UPDATE that sets anything else (a migration that adds
        -- a column to transactions adds it here), the second one that sets a context.
        DROP TRIGGER transactions_no_update ON transactions;
        CREATE TRIGGER transactions_no_update BEFORE UPDATE OF
            id, advertiser_id, campaign_id, publisher_id, visit_id, source, reference_id,
            corrects_transaction_id, original_transaction_id, sale_amount, sale_currency,
            reason_code, sku_list, quantity_list, external_data, custom_data, payout,
            payout_currency, fingerprint, created_at, reversal_reason
            ON transactions
            FOR EACH ROW EXECUTE FUNCTION pixel_wsgi_append_only();
        CREATE TRIGGER transactions_context_only_forgotten
            BEFORE UPDATE OF delivery_context ON transactions
            FOR EACH ROW WHEN (NEW.delivery_context IS NOT NULL)
            EXECUTE FUNCTION pixel_wsgi_append_only()
        """,
    )


@migrations(name="0007_delivery_outbox")
def delivery_outbox(script: Script) -> None:
    script(
        """
        -- Where an advertiser's ledger rows go (pixel_wsgi.delivery): its settings in JSON,
        -- its credentials sealed with a key from secret_key (never in plain text here),
        -- and the last ledger row it looked at (ledger ids follow commit order).
        CREATE TABLE delivery_targets (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            advertiser_id BIGINT NOT NULL REFERENCES advertisers(id),
            kind TEXT NOT NULL,
            publisher_id BIGINT REFERENCES publishers(id),
            settings TEXT NOT NULL,
            sealed_secrets TEXT NOT NULL,
            status TEXT NOT NULL CONSTRAINT delivery_targets_status_check CHECK
                (status IN ('active', 'paused', 'auth_failed', 'removed')),
            status_detail TEXT,
            ledger_cursor BIGINT NOT NULL
                CONSTRAINT delivery_targets_cursor_check CHECK (ledger_cursor >= 0),
            failures INTEGER NOT NULL DEFAULT 0,
            resume_at TEXT COLLATE "C",
            created_at TEXT COLLATE "C" NOT NULL,
            updated_at TEXT COLLATE "C" NOT NULL
        );
        CREATE INDEX delivery_targets_advertiser ON delivery_targets (advertiser_id);
        -- One ledger row with one target: pending until settled. A worker claims the
        -- rows it sends (FOR UPDATE SKIP LOCKED, then a lease), so two never send one.
        CREATE TABLE deliveries (
            target_id BIGINT NOT NULL REFERENCES delivery_targets(id),
            transaction_id BIGINT NOT NULL REFERENCES transactions(id),
            original_transaction_id BIGINT NOT NULL REFERENCES transactions(id),
            status TEXT NOT NULL CONSTRAINT deliveries_status_check CHECK (status IN
                ('pending', 'delivered', 'duplicate', 'dead', 'unsupported', 'expired',
                 'skipped')),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT COLLATE "C" NOT NULL,
            lease_token TEXT,
            lease_until TEXT COLLATE "C",
            detail TEXT,
            created_at TEXT COLLATE "C" NOT NULL,
            updated_at TEXT COLLATE "C" NOT NULL,
            CONSTRAINT deliveries_pkey PRIMARY KEY (target_id, transaction_id)
        );
        CREATE INDEX deliveries_pending ON deliveries (target_id, transaction_id)
            WHERE status = 'pending';
        -- A correction's earlier rows with the same target (the claim's order check).
        CREATE INDEX deliveries_chain
            ON deliveries (target_id, original_transaction_id, transaction_id);
        -- Every request sent, redacted: the dashboard's last errors, outcomes per day.
        CREATE TABLE delivery_attempts (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            target_id BIGINT NOT NULL REFERENCES delivery_targets(id),
            transaction_ids TEXT NOT NULL,
            attempted_at TEXT COLLATE "C" NOT NULL,
            outcome TEXT NOT NULL,
            detail TEXT NOT NULL,
            request TEXT NOT NULL,
            response TEXT NOT NULL,
            duration_ms INTEGER NOT NULL
        );
        CREATE INDEX delivery_attempts_target ON delivery_attempts (target_id, id);
        -- The ledger id through which the advertiser's conversion contexts are forgotten:
        -- each forgetting scans only the ledger ids after it (no index on the pixel's
        -- INSERT for it).
        ALTER TABLE advertisers ADD COLUMN contexts_forgotten_through BIGINT NOT NULL DEFAULT 0
        """,
    )
