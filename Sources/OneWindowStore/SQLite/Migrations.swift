import GRDB

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
    return m
  }
}
