import OneWindowStore
import GRDB
import OneWindowCore

/// Versioned schema. Never edit a registered migration; add a new one. SQL is kept to the subset
/// PostgreSQL also accepts where that costs nothing (integer times, TEXT, explicit indexes).
enum Migrations {
  static var migrator: DatabaseMigrator {
    var m = DatabaseMigrator()
    m.registerMigration("v1-identity-catalog") { db in
      try db.execute(sql: """
        CREATE TABLE departments (
          code TEXT PRIMARY KEY,
          name TEXT NOT NULL,
          created_at INTEGER NOT NULL,
          updated_at INTEGER NOT NULL
        );

        CREATE TABLE accounts (
          id TEXT PRIMARY KEY,
          role TEXT NOT NULL CHECK (role IN ('citizen', 'enterprise', 'caseworker', 'admin')),
          display_name TEXT NOT NULL,
          trust_level INTEGER NOT NULL,
          phone TEXT UNIQUE,
          id_number TEXT UNIQUE,
          credit_code TEXT UNIQUE,
          legal_rep_id TEXT REFERENCES accounts(id),
          department_code TEXT REFERENCES departments(code),
          username TEXT UNIQUE,
          password_hash TEXT,
          failed_logins INTEGER NOT NULL DEFAULT 0,
          first_failure_at INTEGER,
          locked_until INTEGER,
          created_at INTEGER NOT NULL,
          updated_at INTEGER NOT NULL
        );

        CREATE TABLE token_families (
          id TEXT PRIMARY KEY,
          account_id TEXT NOT NULL REFERENCES accounts(id),
          created_at INTEGER NOT NULL,
          revoked_at INTEGER
        );
        CREATE INDEX token_families_account ON token_families(account_id);

        CREATE TABLE access_tokens (
          token_hash TEXT PRIMARY KEY,
          family_id TEXT NOT NULL REFERENCES token_families(id) ON DELETE CASCADE,
          expires_at INTEGER NOT NULL
        );
        CREATE INDEX access_tokens_family ON access_tokens(family_id);

        CREATE TABLE refresh_tokens (
          token_hash TEXT PRIMARY KEY,
          family_id TEXT NOT NULL REFERENCES token_families(id) ON DELETE CASCADE,
          expires_at INTEGER NOT NULL,
          used_at INTEGER
        );
        CREATE INDEX refresh_tokens_family ON refresh_tokens(family_id);

        CREATE TABLE login_codes (
          id INTEGER PRIMARY KEY AUTOINCREMENT,
          phone TEXT NOT NULL,
          code_hash TEXT NOT NULL,
          created_at INTEGER NOT NULL,
          expires_at INTEGER NOT NULL,
          attempts INTEGER NOT NULL DEFAULT 0,
          closed_at INTEGER
        );
        CREATE INDEX login_codes_phone ON login_codes(phone, created_at);

        CREATE TABLE outbox (
          id INTEGER PRIMARY KEY AUTOINCREMENT,
          channel TEXT NOT NULL,
          recipient TEXT NOT NULL,
          body TEXT NOT NULL,
          created_at INTEGER NOT NULL
        );
        CREATE INDEX outbox_recipient ON outbox(recipient, id);

        CREATE TABLE catalog_items (
          id INTEGER PRIMARY KEY AUTOINCREMENT,
          code TEXT NOT NULL UNIQUE,
          name TEXT NOT NULL,
          department_code TEXT NOT NULL REFERENCES departments(code),
          category TEXT NOT NULL,
          status TEXT NOT NULL CHECK (status IN ('draft', 'published', 'withdrawn')),
          version INTEGER NOT NULL,
          spec_json TEXT NOT NULL,
          created_at INTEGER NOT NULL,
          updated_at INTEGER NOT NULL,
          published_at INTEGER
        );
        CREATE INDEX catalog_items_status ON catalog_items(status, code);

        -- Full-text index of published items only; rowid = catalog_items.id.
        -- The trigram tokenizer makes every 3-character substring searchable (Chinese has no spaces).
        CREATE VIRTUAL TABLE catalog_fts USING fts5(name, body, tokenize = 'trigram');
        """)
    }
    m.registerMigration("v2-sync") { db in
      // sync_meta.sequence is the change-log counter every sync write increments in its own
      // transaction; epoch identifies this database's log in cursors.
      try db.execute(sql: """
        CREATE TABLE sync_meta (
          id INTEGER PRIMARY KEY CHECK (id = 1),
          epoch INTEGER NOT NULL,
          sequence INTEGER NOT NULL,
          horizon INTEGER NOT NULL,
          hlc_millis INTEGER NOT NULL,
          hlc_counter INTEGER NOT NULL
        );

        -- One row per record, holding its current state; seq is the sequence of its latest change,
        -- so the change log is this table ordered by seq (tombstones included until compacted).
        CREATE TABLE sync_records (
          collection TEXT NOT NULL,
          id TEXT NOT NULL,
          owner_id TEXT NOT NULL,
          audience TEXT NOT NULL,
          version INTEGER NOT NULL,
          deleted INTEGER NOT NULL,
          seq INTEGER NOT NULL,
          body BLOB NOT NULL,
          checksum INTEGER NOT NULL,
          updated_at INTEGER NOT NULL,
          PRIMARY KEY (collection, id)
        );
        CREATE INDEX sync_records_audience_seq ON sync_records(audience, seq);
        CREATE INDEX sync_records_tombstones ON sync_records(updated_at) WHERE deleted = 1;

        -- Devices: bound to one account; the last mutation id processed (Replicache's lastMutationID).
        CREATE TABLE sync_clients (
          client_id TEXT PRIMARY KEY,
          account_id TEXT NOT NULL REFERENCES accounts(id),
          last_mutation_id INTEGER NOT NULL,
          created_at INTEGER NOT NULL,
          updated_at INTEGER NOT NULL
        );

        -- The result of every processed mutation, so a replayed push gets the same answer.
        CREATE TABLE sync_results (
          client_id TEXT NOT NULL,
          mutation_id INTEGER NOT NULL,
          result TEXT NOT NULL,
          created_at INTEGER NOT NULL,
          PRIMARY KEY (client_id, mutation_id)
        );
        CREATE INDEX sync_results_created ON sync_results(created_at);
        """)
      try db.execute(
        sql: "INSERT INTO sync_meta (id, epoch, sequence, horizon, hlc_millis, hlc_counter) VALUES (1, ?, 0, 0, 0, 0)",
        arguments: [Int64(UInt32.random(in: 1...UInt32.max))])
    }
    m.registerMigration("v3-cases") { db in
      try db.execute(sql: """
        -- A case: the columns queues and lookups need, and the whole record (without its
        -- history) as JSON in body. version is the optimistic-concurrency counter.
        CREATE TABLE cases (
          id TEXT PRIMARY KEY,
          tracking_code TEXT NOT NULL UNIQUE,
          applicant_id TEXT NOT NULL REFERENCES accounts(id),
          draft_id TEXT NOT NULL,
          idempotency_key TEXT NOT NULL,
          item_code TEXT NOT NULL,
          state TEXT NOT NULL,
          version INTEGER NOT NULL,
          handling_department TEXT NOT NULL,
          due_day INTEGER,
          received_day INTEGER,
          body TEXT NOT NULL,
          submitted_at INTEGER NOT NULL,
          updated_at INTEGER NOT NULL,
          UNIQUE (applicant_id, idempotency_key),
          UNIQUE (applicant_id, draft_id)
        );
        CREATE INDEX cases_queue ON cases(handling_department, due_day);
        CREATE INDEX cases_applicant ON cases(applicant_id, submitted_at);
        CREATE INDEX cases_state ON cases(state, received_day);

        -- The status history: append-only (the triggers refuse updates and deletes).
        CREATE TABLE case_status_history (
          case_id TEXT NOT NULL REFERENCES cases(id),
          seq INTEGER NOT NULL,
          at INTEGER NOT NULL,
          body TEXT NOT NULL,
          PRIMARY KEY (case_id, seq)
        );
        CREATE TRIGGER case_status_history_no_update BEFORE UPDATE ON case_status_history
          BEGIN SELECT RAISE(ABORT, 'case status history is append-only'); END;
        CREATE TRIGGER case_status_history_no_delete BEFORE DELETE ON case_status_history
          BEGIN SELECT RAISE(ABORT, 'case status history is append-only'); END;

        -- Domain events written in the same transaction as the change (transactional outbox);
        -- the notifications issue consumes them.
        CREATE TABLE event_outbox (
          id INTEGER PRIMARY KEY AUTOINCREMENT,
          topic TEXT NOT NULL,
          aggregate_id TEXT NOT NULL,
          payload TEXT NOT NULL,
          created_at INTEGER NOT NULL,
          published_at INTEGER
        );
        CREATE INDEX event_outbox_unpublished ON event_outbox(id) WHERE published_at IS NULL;

        -- Uploaded materials; content lives in the data directory under its SHA-256.
        CREATE TABLE materials (
          id TEXT PRIMARY KEY,
          owner_id TEXT NOT NULL REFERENCES accounts(id),
          file_name TEXT NOT NULL,
          content_type TEXT NOT NULL,
          size INTEGER NOT NULL,
          sha256 TEXT NOT NULL,
          uploaded_at INTEGER NOT NULL
        );
        CREATE INDEX materials_sha256 ON materials(sha256);
        CREATE TABLE case_materials (
          case_id TEXT NOT NULL REFERENCES cases(id),
          material_id TEXT NOT NULL REFERENCES materials(id),
          PRIMARY KEY (case_id, material_id)
        );
        CREATE INDEX case_materials_material ON case_materials(material_id);

        CREATE TABLE certificates (
          number TEXT PRIMARY KEY,
          holder_id TEXT NOT NULL REFERENCES accounts(id),
          case_id TEXT NOT NULL REFERENCES cases(id),
          issuer_department TEXT NOT NULL,
          type TEXT NOT NULL,
          issued_day INTEGER NOT NULL,
          expires_day INTEGER,
          signed TEXT NOT NULL,
          key_id TEXT NOT NULL,
          revoked_at INTEGER,
          revocation_reason TEXT NOT NULL DEFAULT '',
          created_at INTEGER NOT NULL
        );
        CREATE INDEX certificates_holder ON certificates(holder_id, created_at);

        CREATE TABLE evaluations (
          case_id TEXT PRIMARY KEY REFERENCES cases(id),
          department_code TEXT NOT NULL,
          item_code TEXT NOT NULL,
          applicant_id TEXT NOT NULL,
          level INTEGER NOT NULL,
          status TEXT NOT NULL,
          version INTEGER NOT NULL,
          body TEXT NOT NULL,
          created_at INTEGER NOT NULL
        );
        CREATE INDEX evaluations_department ON evaluations(department_code, status);

        -- The hash-chained audit log (权力公开): each row carries the hash of its predecessor.
        CREATE TABLE audit_log (
          seq INTEGER PRIMARY KEY,
          at INTEGER NOT NULL,
          actor_id TEXT,
          actor_role TEXT NOT NULL,
          actor_department TEXT,
          action TEXT NOT NULL,
          target_type TEXT NOT NULL,
          target_id TEXT NOT NULL,
          subject_id TEXT,
          reason TEXT NOT NULL,
          prev_hash TEXT NOT NULL,
          hash TEXT NOT NULL
        );
        CREATE INDEX audit_log_subject ON audit_log(subject_id, seq);
        CREATE INDEX audit_log_target ON audit_log(target_id, seq);
        """)
    }
    m.registerMigration("v4-notifications") { db in
      try db.execute(sql: """
        -- Each account's inbox: its head (the last seq given out), its size, and its stream
        -- cursor (acknowledged up to acked_seq; sent up to sent_seq; rounds of redelivery).
        CREATE TABLE inbox_heads (
          account_id TEXT PRIMARY KEY REFERENCES accounts(id),
          last_seq INTEGER NOT NULL DEFAULT 0,
          message_count INTEGER NOT NULL DEFAULT 0,
          acked_seq INTEGER NOT NULL DEFAULT 0,
          sent_seq INTEGER NOT NULL DEFAULT 0,
          rounds INTEGER NOT NULL DEFAULT 0
        );

        -- content is the rendered MessageContent as JSON; state is pending, delivered, expired
        -- or replaced.
        CREATE TABLE inbox_messages (
          account_id TEXT NOT NULL REFERENCES accounts(id),
          seq INTEGER NOT NULL,
          event_id TEXT NOT NULL UNIQUE,
          publication_id TEXT,
          content TEXT NOT NULL,
          category TEXT NOT NULL,
          priority TEXT NOT NULL,
          collapse_key TEXT,
          replaces_event_id TEXT,
          state TEXT NOT NULL,
          sent_at INTEGER NOT NULL,
          expires_at INTEGER,
          read_at INTEGER,
          delivered_at INTEGER,
          PRIMARY KEY (account_id, seq)
        );
        CREATE INDEX inbox_messages_state ON inbox_messages(account_id, state, seq);
        CREATE INDEX inbox_messages_collapse ON inbox_messages(account_id, collapse_key) WHERE collapse_key IS NOT NULL;
        CREATE INDEX inbox_messages_expiry ON inbox_messages(expires_at) WHERE expires_at IS NOT NULL;

        CREATE TABLE topics (
          code TEXT PRIMARY KEY,
          title TEXT NOT NULL,
          description TEXT NOT NULL,
          last_seq INTEGER NOT NULL DEFAULT 0,
          created_at INTEGER NOT NULL
        );
        -- A topic message is stored once (fan-out on read); each subscriber reads the log through
        -- its own cursor (acked_seq, sent_seq, rounds) and read marker (read_seq).
        CREATE TABLE topic_messages (
          topic TEXT NOT NULL REFERENCES topics(code),
          seq INTEGER NOT NULL,
          event_id TEXT NOT NULL UNIQUE,
          publication_id TEXT,
          content TEXT NOT NULL,
          collapse_key TEXT,
          replaces_event_id TEXT,
          state TEXT NOT NULL,
          sent_at INTEGER NOT NULL,
          expires_at INTEGER,
          PRIMARY KEY (topic, seq)
        );
        CREATE INDEX topic_messages_collapse ON topic_messages(topic, collapse_key) WHERE collapse_key IS NOT NULL;
        CREATE TABLE topic_subscriptions (
          account_id TEXT NOT NULL REFERENCES accounts(id),
          topic TEXT NOT NULL REFERENCES topics(code),
          acked_seq INTEGER NOT NULL,
          sent_seq INTEGER NOT NULL,
          rounds INTEGER NOT NULL DEFAULT 0,
          read_seq INTEGER NOT NULL,
          subscribed_at INTEGER NOT NULL,
          PRIMARY KEY (account_id, topic)
        );
        CREATE INDEX topic_subscriptions_topic ON topic_subscriptions(topic);

        CREATE TABLE notification_templates (
          name TEXT NOT NULL,
          version INTEGER NOT NULL,
          title TEXT NOT NULL,
          body TEXT NOT NULL,
          category TEXT NOT NULL,
          system INTEGER NOT NULL,
          created_at INTEGER NOT NULL,
          PRIMARY KEY (name, version)
        );

        -- publisher_key is the publishing account's id, or 'system'; the idempotency key is
        -- unique per publisher. audience and content are JSON; webhook_event the queued
        -- notification.published event of a scheduled publication.
        CREATE TABLE publications (
          id TEXT PRIMARY KEY,
          publisher_key TEXT NOT NULL,
          idempotency_key TEXT NOT NULL,
          audience TEXT NOT NULL,
          content TEXT NOT NULL,
          ttl_ms INTEGER,
          status TEXT NOT NULL,
          send_at INTEGER,
          created_at INTEGER NOT NULL,
          sent_at INTEGER,
          recipient_count INTEGER NOT NULL DEFAULT 0,
          event_id TEXT NOT NULL DEFAULT '',
          webhook_event TEXT,
          UNIQUE (publisher_key, idempotency_key)
        );
        CREATE INDEX publications_due ON publications(send_at) WHERE status = 'scheduled';

        -- sealed_secret: the signing secret encrypted with the server's key (the server must
        -- sign with it, so a hash would not do).
        CREATE TABLE webhook_endpoints (
          id TEXT PRIMARY KEY,
          url TEXT NOT NULL,
          event_types TEXT NOT NULL,
          enabled INTEGER NOT NULL,
          description TEXT NOT NULL,
          sealed_secret BLOB NOT NULL,
          created_at INTEGER NOT NULL,
          updated_at INTEGER NOT NULL
        );

        -- One event on its way to one target of an outbound channel; every attempt is kept.
        CREATE TABLE deliveries (
          id TEXT PRIMARY KEY,
          channel TEXT NOT NULL,
          target TEXT NOT NULL,
          event_type TEXT NOT NULL,
          event_id TEXT NOT NULL,
          body BLOB NOT NULL,
          status TEXT NOT NULL,
          attempt_count INTEGER NOT NULL DEFAULT 0,
          next_attempt_at INTEGER,
          replay_of TEXT REFERENCES deliveries(id),
          created_at INTEGER NOT NULL,
          updated_at INTEGER NOT NULL
        );
        CREATE UNIQUE INDEX deliveries_once ON deliveries(channel, target, event_id) WHERE replay_of IS NULL;
        CREATE INDEX deliveries_due ON deliveries(next_attempt_at) WHERE status IN ('created', 'temporary-failure');
        CREATE INDEX deliveries_target ON deliveries(target, created_at);
        CREATE TABLE delivery_attempts (
          delivery_id TEXT NOT NULL REFERENCES deliveries(id),
          number INTEGER NOT NULL,
          at INTEGER NOT NULL,
          http_status INTEGER,
          error TEXT NOT NULL,
          duration_ms INTEGER NOT NULL,
          PRIMARY KEY (delivery_id, number)
        );
        """)
    }
    m.registerMigration("v5-payments") { db in
      try db.execute(
        sql: """
        CREATE TABLE payment_orders (
          id TEXT PRIMARY KEY,
          case_id TEXT NOT NULL UNIQUE REFERENCES cases(id),
          applicant_id TEXT NOT NULL,
          payer_name TEXT NOT NULL,
          department_code TEXT NOT NULL,
          tracking_code TEXT NOT NULL,
          item_name TEXT NOT NULL,
          fees TEXT NOT NULL,
          total INTEGER NOT NULL,
          state TEXT NOT NULL,
          version INTEGER NOT NULL,
          created_at INTEGER NOT NULL,
          updated_at INTEGER NOT NULL
        );
        CREATE INDEX payment_orders_applicant ON payment_orders(applicant_id, created_at, id);
        CREATE INDEX payment_orders_department ON payment_orders(department_code, created_at, id);
        CREATE INDEX payment_orders_created ON payment_orders(created_at, id);
        CREATE TABLE payments (
          id TEXT PRIMARY KEY,
          order_id TEXT NOT NULL REFERENCES payment_orders(id),
          case_id TEXT NOT NULL,
          applicant_id TEXT NOT NULL,
          department_code TEXT NOT NULL,
          amount INTEGER NOT NULL,
          state TEXT NOT NULL,
          code TEXT NOT NULL,
          provider TEXT NOT NULL,
          provider_reference TEXT NOT NULL,
          cashier_url TEXT NOT NULL,
          receipt_number TEXT,
          created_at INTEGER NOT NULL,
          updated_at INTEGER NOT NULL,
          expires_at INTEGER NOT NULL
        );
        CREATE INDEX payments_order ON payments(order_id, created_at);
        CREATE UNIQUE INDEX payments_one_unfinished ON payments(order_id) WHERE state IN ('created', 'started', 'submitted');
        CREATE INDEX payments_unfinished ON payments(created_at) WHERE state IN ('created', 'started', 'submitted');
        CREATE UNIQUE INDEX payments_provider_reference ON payments(provider, provider_reference) WHERE provider_reference <> '';
        CREATE TABLE payment_refunds (
          id TEXT PRIMARY KEY,
          payment_id TEXT NOT NULL REFERENCES payments(id),
          amount INTEGER NOT NULL,
          state TEXT NOT NULL,
          reason TEXT NOT NULL,
          requested_by TEXT,
          automatic INTEGER NOT NULL,
          created_at INTEGER NOT NULL,
          updated_at INTEGER NOT NULL
        );
        CREATE INDEX payment_refunds_payment ON payment_refunds(payment_id, created_at);
        CREATE INDEX payment_refunds_pending ON payment_refunds(created_at) WHERE state = 'submitted';
        CREATE UNIQUE INDEX payment_refunds_one_automatic ON payment_refunds(payment_id) WHERE automatic = 1 AND state <> 'error';
        CREATE TABLE ledger_postings (
          id INTEGER PRIMARY KEY AUTOINCREMENT,
          transaction_id TEXT NOT NULL,
          payment_id TEXT NOT NULL,
          kind TEXT NOT NULL,
          account TEXT NOT NULL,
          amount INTEGER NOT NULL,
          created_at INTEGER NOT NULL
        );
        CREATE INDEX ledger_postings_created ON ledger_postings(created_at);
        CREATE UNIQUE INDEX ledger_postings_once ON ledger_postings(transaction_id, account);
        CREATE UNIQUE INDEX ledger_one_capture ON ledger_postings(payment_id, account) WHERE kind = 'capture';
        CREATE TABLE payment_receipts (
          number TEXT PRIMARY KEY,
          payment_id TEXT NOT NULL UNIQUE REFERENCES payments(id),
          applicant_id TEXT NOT NULL,
          signed TEXT NOT NULL,
          created_at INTEGER NOT NULL
        );
        CREATE TABLE idempotency_keys (
          scope TEXT NOT NULL,
          owner_id TEXT NOT NULL,
          key TEXT NOT NULL,
          fingerprint TEXT NOT NULL,
          parameters TEXT NOT NULL,
          resource_id TEXT NOT NULL,
          created_at INTEGER NOT NULL,
          PRIMARY KEY (scope, owner_id, key)
        );
        CREATE INDEX idempotency_keys_created ON idempotency_keys(created_at);
        CREATE TABLE provider_notifications (
          provider TEXT NOT NULL,
          notification_id TEXT NOT NULL,
          payment_id TEXT NOT NULL,
          received_at INTEGER NOT NULL,
          PRIMARY KEY (provider, notification_id)
        );
        """)
    }
    // When each payment was last checked with the provider, so the repair pass asks about the
    // least recently checked first and a backlog cannot starve any payment. Existing payments
    // count as checked when they last changed.
    m.registerMigration("v6-payment-checks") { db in
      try db.execute(
        sql: """
        ALTER TABLE payments ADD COLUMN provider_checked_at INTEGER NOT NULL DEFAULT 0;
        UPDATE payments SET provider_checked_at = updated_at;
        CREATE INDEX payments_to_check ON payments(provider_checked_at, id) WHERE state IN ('started', 'submitted');
        """)
    }
    m.registerMigration("v7-case-phone-check") { db in
      // The public progress query checks the phone digits before it loads a case. The covering
      // index answers (tracking code → id, phone check) without reading the row, whose body may
      // span overflow pages, so an existing code costs what a missing one does. The value never
      // changes after submission; existing rows take it from their body.
      try db.execute(
        sql: """
        ALTER TABLE cases ADD COLUMN phone_check TEXT NOT NULL DEFAULT '';
        UPDATE cases SET phone_check = COALESCE(json_extract(body, '$.phoneCheck'), '');
        CREATE INDEX cases_tracking_check ON cases(tracking_code, id, phone_check);
        """)
    }
    m.registerMigration("v8-account-region") { db in
      // Segments by region match an account's administrative division, which the core derives
      // from its ID number or credit code (`Segment.regionCode`), instead of SQL string rules.
      try db.execute(sql: "ALTER TABLE accounts ADD COLUMN region_code TEXT")
      let rows = try Row.fetchAll(db, sql: "SELECT id, id_number, credit_code FROM accounts WHERE id_number IS NOT NULL OR credit_code IS NOT NULL")
      let update = try db.makeStatement(sql: "UPDATE accounts SET region_code = ? WHERE id = ?")
      for row in rows {
        let region = Segment.regionCode(idNumber: row["id_number"], creditCode: row["credit_code"])
        try update.execute(arguments: [region, row["id"] as String])
      }
      try db.execute(sql: "CREATE INDEX accounts_region ON accounts(region_code) WHERE region_code IS NOT NULL")
    }
    m.registerMigration("v9-audit-head") { _ in
      // PostgreSQL keeps the audit chain's head in a one-row table whose row lock serializes
      // appends (see PostgresMigrations). Here the single writer already serializes them and the
      // head is the last audit_log row, so there is nothing to create; the id keeps both
      // engines' migration lists the same.
    }
    m.registerMigration("v10-cluster") { db in
      // Singleton jobs' leases; expires_at is the database's clock (ms since 1970). PostgreSQL's
      // v10 also creates rate_counters and material_blobs; one process counts rate limits in
      // memory and keeps materials as files instead.
      try db.execute(sql: """
        CREATE TABLE leases (
          name TEXT PRIMARY KEY,
          holder TEXT NOT NULL,
          expires_at INTEGER NOT NULL
        )
        """)
    }
    m.registerMigration("v11-restore-epochs") { db in
      // The epoch under which each client's last mutation id was counted, and when the database
      // was last restored from a backup (restore-finish): together they tell a client the
      // restore set back (it may continue past acknowledged ids the restore lost) from one that
      // skipped ids.
      try db.execute(sql: """
        ALTER TABLE sync_clients ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;
        UPDATE sync_clients SET epoch = (SELECT epoch FROM sync_meta WHERE id = 1);
        ALTER TABLE sync_meta ADD COLUMN restored_at INTEGER;
        """)
    }
    m.registerMigration("v12-audit-address") { db in
      // Where each audited call came from (behind trusted proxies, the caller's address); NULL
      // for the system's own actions and older entries, which keep their hash format.
      try db.execute(sql: "ALTER TABLE audit_log ADD COLUMN client_address TEXT")
    }
    return m
  }
}
