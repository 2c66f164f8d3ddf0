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
    return m
  }
}
