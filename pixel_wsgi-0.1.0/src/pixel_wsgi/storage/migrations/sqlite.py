"""The SQLite schema, as a registry of migrations applied in order.

The registry's format is the PostgreSQL schema's too (:mod:`pixel_wsgi.storage.migrations`);
:func:`apply` runs it on a connection inside ``BEGIN IMMEDIATE``, which serialises
concurrent migrators. Files made before that registry recorded their migrations in
sqlite-utils' ``_sqlite_migrations`` table: that record is read as well, and copied
into ``pixel_wsgi_migrations`` on the next migration, so they upgrade cleanly.
Never edit a migration that has shipped: add a new one.
"""

from __future__ import annotations

import sqlite3

from ...clock import iso_utc, utc_now
from . import MIGRATIONS_TABLE, Migrations, Script

__all__ = ["applied", "apply", "migrations", "pending", "script_runner"]

migrations = Migrations()

# What sqlite-utils' registry (used until 0004) recorded, under our migration set's name.
_LEGACY_TABLE = "_sqlite_migrations"
_LEGACY_SET = "pixel_wsgi"


def script_runner(conn: sqlite3.Connection) -> Script:
    """Run a script's statements one by one on ``conn``: ``executescript()`` would
    COMMIT the surrounding migration transaction."""

    def script(sql: str) -> None:
        for statement in sql.split(";\n"):
            if statement.strip():
                conn.execute(statement)

    return script


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
    return conn.execute(sql, (name,)).fetchone() is not None


def applied(conn: sqlite3.Connection) -> list[str]:
    """The names of the migrations a file records, in either registry's table (a read)."""
    names: list[str] = []
    if _has_table(conn, MIGRATIONS_TABLE):
        names += [row[0] for row in conn.execute(f"SELECT name FROM {MIGRATIONS_TABLE}")]
    if _has_table(conn, _LEGACY_TABLE):
        sql = f"SELECT name FROM {_LEGACY_TABLE} WHERE migration_set = ?"
        names += [row[0] for row in conn.execute(sql, (_LEGACY_SET,))]
    return names


def pending(conn: sqlite3.Connection) -> list[str]:
    """The names of the migrations the file lacks (a read: nothing is written)."""
    return migrations.pending(applied(conn))


def apply(conn: sqlite3.Connection) -> list[str]:
    """Apply the pending migrations on ``conn`` inside its ``BEGIN IMMEDIATE``; their names."""
    if _has_table(conn, _LEGACY_TABLE):
        # Carry sqlite-utils' record over, once; its table stays for older versions.
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE}"
            " (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
        )
        conn.execute(
            f"INSERT INTO {MIGRATIONS_TABLE} (name, applied_at) SELECT name, applied_at"
            f" FROM {_LEGACY_TABLE} WHERE migration_set = ? ON CONFLICT (name) DO NOTHING",
            (_LEGACY_SET,),
        )
    return migrations.apply(conn.execute, script_runner(conn), iso_utc(utc_now()))


@migrations(name="0001_initial")
def initial(script: Script) -> None:
    script(
        """
        CREATE TABLE advertisers (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE TABLE publishers (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE TABLE campaigns (
            id INTEGER PRIMARY KEY,
            advertiser_id INTEGER NOT NULL REFERENCES advertisers(id),
            name TEXT NOT NULL,
            payout_kind TEXT NOT NULL CHECK (payout_kind IN ('fixed', 'percent')),
            payout_value TEXT NOT NULL,
            payout_currency TEXT NOT NULL,
            reason_codes TEXT NOT NULL DEFAULT '[]',
            created_at TEXT NOT NULL
        );
        CREATE TABLE links (
            id INTEGER PRIMARY KEY,
            campaign_id INTEGER NOT NULL REFERENCES campaigns(id),
            publisher_id INTEGER NOT NULL REFERENCES publishers(id),
            destination TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE TABLE visits (
            id INTEGER PRIMARY KEY,
            link_id INTEGER NOT NULL REFERENCES links(id),
            ip_prefix TEXT,
            user_agent TEXT,
            created_at TEXT NOT NULL
        );
        -- Rows are never deleted (see the triggers), so rowids only grow and are
        -- never reused, and a keyset cursor never skips a row, without the extra
        -- page write per commit that AUTOINCREMENT costs.
        CREATE TABLE transactions (
            id INTEGER PRIMARY KEY,
            advertiser_id INTEGER NOT NULL REFERENCES advertisers(id),
            campaign_id INTEGER NOT NULL REFERENCES campaigns(id),
            publisher_id INTEGER NOT NULL REFERENCES publishers(id),
            visit_id INTEGER REFERENCES visits(id),
            source TEXT NOT NULL,
            reference_id TEXT,
            corrects_transaction_id INTEGER REFERENCES transactions(id),
            original_transaction_id INTEGER REFERENCES transactions(id),
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
            created_at TEXT NOT NULL,
            CHECK ((corrects_transaction_id IS NULL) = (original_transaction_id IS NULL))
        );
        -- One conversion per (advertiser, reference_id): the idempotency key.
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
        CREATE TRIGGER transactions_no_update BEFORE UPDATE ON transactions
            BEGIN SELECT RAISE(ABORT, 'transactions are append-only'); END;
        CREATE TRIGGER transactions_no_delete BEFORE DELETE ON transactions
            BEGIN SELECT RAISE(ABORT, 'transactions are append-only'); END;
        CREATE TABLE personal_data (
            transaction_id INTEGER PRIMARY KEY REFERENCES transactions(id),
            advertiser_id INTEGER NOT NULL,
            data TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
        -- Trimmed oldest first, so the newest id, and so every next id, is never reused.
        CREATE TABLE rejections (
            id INTEGER PRIMARY KEY,
            advertiser_id INTEGER,
            source TEXT NOT NULL,
            reason TEXT NOT NULL,
            detail TEXT NOT NULL,
            visit_id INTEGER,
            reference_id TEXT,
            params TEXT NOT NULL,
            created_at TEXT NOT NULL
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
            id INTEGER PRIMARY KEY,
            advertiser_id INTEGER NOT NULL REFERENCES advertisers(id),
            label TEXT NOT NULL,
            secret_hash TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL,
            revoked_at TEXT
        );
        CREATE TABLE idempotency_keys (
            advertiser_id INTEGER NOT NULL REFERENCES advertisers(id),
            key TEXT NOT NULL,
            request_hash TEXT NOT NULL,
            status INTEGER NOT NULL,
            body TEXT NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (advertiser_id, key)
        );
        CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
        -- Spooled events applied by a replay: each is applied exactly once.
        CREATE TABLE applied_events (
            event_id TEXT PRIMARY KEY,
            applied_at TEXT NOT NULL
        )
        """,
    )


@migrations(name="0003_signing_and_filters")
def signing_and_filters(script: Script) -> None:
    script(
        """
        -- Refuse conversion pixels without a valid signature (pixel_wsgi.signing).
        ALTER TABLE advertisers ADD COLUMN require_signed_pixels INTEGER NOT NULL DEFAULT 0
            CHECK (require_signed_pixels IN (0, 1));
        -- At most this many browser-reported conversions per UTC day; NULL: no cap.
        -- Counted with transactions_campaign_created, which exists only while some
        -- campaign has a cap (SQLiteStorage.set_campaign_daily_cap).
        ALTER TABLE campaigns ADD COLUMN daily_cap INTEGER
            CHECK (daily_cap IS NULL OR daily_cap >= 0)
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
            advertiser_id INTEGER NOT NULL,
            reference_id TEXT NOT NULL,
            source TEXT NOT NULL,
            report_hash TEXT NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (advertiser_id, reference_id, source, report_hash)
        );
        -- Second browser claims of a reference_id from other visits: kept, never paid,
        -- until a server report decides which claim wins the attribution.
        CREATE TABLE reference_claims (
            id INTEGER PRIMARY KEY,
            advertiser_id INTEGER NOT NULL,
            reference_id TEXT NOT NULL,
            visit_id INTEGER NOT NULL,
            campaign_id INTEGER NOT NULL,
            publisher_id INTEGER NOT NULL,
            source TEXT NOT NULL,
            report TEXT NOT NULL,
            created_at TEXT NOT NULL,
            resolution TEXT CHECK (resolution IS NULL OR resolution IN ('won', 'lost')),
            resolved_at TEXT
        );
        CREATE INDEX reference_claims_reference ON reference_claims (advertiser_id, reference_id)
        """,
    )


@migrations(name="0005_same_indexes_as_postgres")
def same_indexes_as_postgres(script: Script) -> None:
    script(
        """
        -- The indexes PostgreSQL's schema had from the start: both backends have the
        -- same ones now.
        CREATE INDEX IF NOT EXISTS campaigns_advertiser ON campaigns (advertiser_id);
        CREATE INDEX IF NOT EXISTS links_campaign_publisher ON links (campaign_id, publisher_id);
        CREATE INDEX IF NOT EXISTS api_credentials_advertiser ON api_credentials (advertiser_id)
        -- The indexes that bound reads by date are not here: each costs every pixel's
        -- INSERT, so a store gets them when a dashboard first asks (Storage.index_dates).
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
        ALTER TABLE advertisers ADD COLUMN keeps_conversion_context INTEGER NOT NULL DEFAULT 0
            CHECK (keeps_conversion_context IN (0, 1));
        -- Still append-only, but for one UPDATE: forgetting a conversion context. An
        -- UPDATE OF trigger fires when its SET names one of the columns, changed or not:
        -- the first refuses every UPDATE that sets anything else (a migration that adds
        -- a column to transactions adds it here), the second one that sets a context.
        DROP TRIGGER transactions_no_update;
        CREATE TRIGGER transactions_no_update BEFORE UPDATE OF
            id, advertiser_id, campaign_id, publisher_id, visit_id, source, reference_id,
            corrects_transaction_id, original_transaction_id, sale_amount, sale_currency,
            reason_code, sku_list, quantity_list, external_data, custom_data, payout,
            payout_currency, fingerprint, created_at, reversal_reason
            ON transactions
            BEGIN SELECT RAISE(ABORT, 'transactions are append-only'); END;
        CREATE TRIGGER transactions_context_only_forgotten
            BEFORE UPDATE OF delivery_context ON transactions
            WHEN NEW.delivery_context IS NOT NULL
            BEGIN SELECT RAISE(ABORT, 'transactions are append-only'); END
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
            id INTEGER PRIMARY KEY,
            advertiser_id INTEGER NOT NULL,
            kind TEXT NOT NULL,
            publisher_id INTEGER,
            settings TEXT NOT NULL,
            sealed_secrets TEXT NOT NULL,
            status TEXT NOT NULL CHECK
                (status IN ('active', 'paused', 'auth_failed', 'removed')),
            status_detail TEXT,
            ledger_cursor INTEGER NOT NULL CHECK (ledger_cursor >= 0),
            failures INTEGER NOT NULL DEFAULT 0,
            resume_at TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX delivery_targets_advertiser ON delivery_targets (advertiser_id);
        -- One ledger row with one target: pending until settled. A worker leases the
        -- rows it sends (lease_token, lease_until), so two workers never send one row.
        CREATE TABLE deliveries (
            target_id INTEGER NOT NULL,
            transaction_id INTEGER NOT NULL,
            original_transaction_id INTEGER NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'duplicate',
                'dead', 'unsupported', 'expired', 'skipped')),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT NOT NULL,
            lease_token TEXT,
            lease_until TEXT,
            detail TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (target_id, transaction_id)
        );
        CREATE INDEX deliveries_pending ON deliveries (target_id, transaction_id)
            WHERE status = 'pending';
        -- A correction's earlier rows with the same target (the claim's order check).
        CREATE INDEX deliveries_chain
            ON deliveries (target_id, original_transaction_id, transaction_id);
        -- Every request sent, redacted: the dashboard's last errors, outcomes per day.
        CREATE TABLE delivery_attempts (
            id INTEGER PRIMARY KEY,
            target_id INTEGER NOT NULL,
            transaction_ids TEXT NOT NULL,
            attempted_at TEXT NOT NULL,
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
        ALTER TABLE advertisers ADD COLUMN contexts_forgotten_through INTEGER NOT NULL DEFAULT 0
        """,
    )
