import BetterSqlite3 from 'better-sqlite3';

export type Database = BetterSqlite3.Database;

/**
 * Schema versions, applied in order inside one transaction each. A released migration is
 * never edited; a change is a new entry.
 */
const migrations: readonly string[] = [
  `
  CREATE TABLE vms (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    vcpus INTEGER NOT NULL,
    memory_bytes INTEGER NOT NULL,
    image TEXT NOT NULL,
    ip TEXT UNIQUE,
    mac TEXT NOT NULL,
    tap TEXT NOT NULL,
    pid INTEGER,
    ssh INTEGER NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
  );
  CREATE TABLE volumes (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL CHECK (type IN ('root', 'data')),
    size_bytes INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('ready', 'busy', 'error')),
    state_message TEXT,
    vm_id TEXT REFERENCES vms(id),
    role TEXT CHECK (role IN ('boot', 'data')),
    boot_image TEXT,
    ssh INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    CHECK ((vm_id IS NULL) = (role IS NULL))
  );
  -- A VM boots from exactly one volume; a volume belongs to at most one VM by construction.
  CREATE UNIQUE INDEX volumes_one_boot_per_vm ON volumes(vm_id) WHERE role = 'boot';
  CREATE TABLE operations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('running', 'done', 'rolled_back', 'failed')),
    step TEXT NOT NULL,
    vm_id TEXT,
    volume_id TEXT,
    data TEXT NOT NULL DEFAULT '{}',
    child_pid INTEGER,
    error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
  );
  CREATE INDEX operations_running ON operations(state) WHERE state = 'running';
  CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    result TEXT NOT NULL CHECK (result IN ('ok', 'failed')),
    details TEXT NOT NULL DEFAULT '{}',
    error TEXT
  );
  CREATE INDEX audit_time ON audit(time);
  `,
  `
  -- Named networks. The default network (bridge sistemo0, bridge_subnet) has no row: a VM
  -- without network_id is on it.
  CREATE TABLE networks (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    subnet TEXT NOT NULL UNIQUE,
    bridge TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL
  );
  ALTER TABLE vms ADD COLUMN network_id TEXT REFERENCES networks(id);
  -- Host ports forwarded to VMs. The primary key gives each host port to one VM only.
  CREATE TABLE exposures (
    protocol TEXT NOT NULL CHECK (protocol IN ('tcp', 'udp')),
    host_port INTEGER NOT NULL CHECK (host_port BETWEEN 1 AND 65535),
    vm_id TEXT NOT NULL REFERENCES vms(id) ON DELETE CASCADE,
    vm_port INTEGER NOT NULL CHECK (vm_port BETWEEN 1 AND 65535),
    created_at TEXT NOT NULL,
    PRIMARY KEY (protocol, host_port)
  );
  CREATE INDEX exposures_vm ON exposures(vm_id);
  `,
];

/**
 * Opens the state database and brings its schema up to date. WAL with synchronous=FULL makes
 * each committed intent survive a power loss, which crash recovery relies on.
 */
export function openDatabase(file: string): Database {
  const db = new BetterSqlite3(file);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.pragma('foreign_keys = ON');
  db.pragma('busy_timeout = 5000');
  migrate(db);
  return db;
}

export function migrate(db: Database): void {
  db.exec('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)');
  const row = db.prepare('SELECT MAX(version) AS version FROM schema_migrations').get() as { version: number | null };
  const current = row.version ?? 0;
  if (current > migrations.length) {
    throw new Error(`Database schema version ${current} is newer than this Sistemo (${migrations.length}): upgrade Sistemo`);
  }
  migrations.forEach((sql, index) => {
    const version = index + 1;
    if (version <= current) return;
    db.transaction(() => {
      db.exec(sql);
      db.prepare('INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)').run(version, new Date().toISOString());
    })();
  });
}
