//! The schema, as numbered migrations applied on start under an advisory
//! lock, so two servers starting at once apply each migration once. A
//! database migrated by a newer tidewright is refused rather than written with
//! an older idea of its tables.

use tidewright_store::Error;
use tokio_postgres::Client;

use crate::fault::Result;

/// Held while migrating: any value unique to this store does, and it is the
/// same since 0.1.0, so that a release and the one before it starting on one
/// database migrate in turn.
const MIGRATION_LOCK: i64 = 0x6f72_6361_5f73_6368;

/// The prefix of this store's own tables and functions, beside the tables
/// named for what they hold.
const PREFIX: &str = "tidewright";

/// The tables and functions named with [`PREFIX`] (functions with their
/// arguments): what [`adopt`] renames.
const PREFIXED_TABLES: [&str; 3] = ["schema", "leader", "replicas"];
const PREFIXED_FUNCTIONS: [(&str, &str); 4] = [
    ("ts", "bigint"),
    ("micros", "timestamptz"),
    ("fence", "bigint"),
    ("expiry", "timestamptz, bigint"),
];

/// `tidewright_fence`, which migration 2 creates and [`adopt`] makes again:
/// its body names the leader's table, so a renamed table needs a new body.
macro_rules! fence {
    () => {
        r#"
    CREATE OR REPLACE FUNCTION tidewright_fence(expected bigint) RETURNS void
        LANGUAGE plpgsql
        AS $$
        DECLARE
            current bigint;
        BEGIN
            SELECT epoch INTO current FROM tidewright_leader WHERE id = 1 FOR SHARE;
            IF current IS DISTINCT FROM expected THEN
                RAISE EXCEPTION 'this replica led at epoch %, and epoch % has begun', expected, current
                    USING ERRCODE = 'TW001';
            END IF;
        END $$;
    "#
    };
}

/// Each entry is one version; never edit one that has shipped, add another.
const MIGRATIONS: &[&str] = &[
    // 1: the first schema. Times are timestamptz (NULL for "never"),
    // counts bigint. What tidewright queries inside (labels) or only reads back
    // whole (specs, event bodies: json since version 3) is jsonb; what users
    // read back byte for byte (a step's output, a plan, a shared-state
    // value) is json, which keeps the text as given. Steps and attempts are updated in place a few
    // times each: room left in their pages lets those be HOT updates, which
    // touch no index.
    r#"
    CREATE FUNCTION tidewright_ts(micros bigint) RETURNS timestamptz
        LANGUAGE sql STABLE PARALLEL SAFE
        AS $$ SELECT CASE WHEN micros = 0 THEN NULL
                          ELSE to_timestamp(0) + micros * interval '1 microsecond' END $$;
    CREATE FUNCTION tidewright_micros(at timestamptz) RETURNS bigint
        LANGUAGE sql STABLE PARALLEL SAFE
        AS $$ SELECT COALESCE((extract(epoch FROM at) * 1000000)::bigint, 0) $$;

    CREATE TABLE tasks (
        id              text PRIMARY KEY,
        tenant          text NOT NULL,
        name            text NOT NULL,
        priority        integer NOT NULL,
        state           text NOT NULL,
        idempotency_key text UNIQUE,
        spec            jsonb NOT NULL,
        labels          jsonb NOT NULL,
        message         text NOT NULL DEFAULT '',
        plan            json,
        trace_context   text NOT NULL DEFAULT '',
        created_at      timestamptz,
        started_at      timestamptz,
        finished_at     timestamptz
    );
    CREATE INDEX tasks_by_state ON tasks (state, id);
    CREATE INDEX tasks_by_tenant ON tasks (tenant, id);
    CREATE INDEX tasks_by_labels ON tasks USING gin (labels jsonb_path_ops);

    CREATE TABLE steps (
        task_id          text NOT NULL,
        step_id          text NOT NULL,
        position         integer NOT NULL,
        state            text NOT NULL,
        attempt          bigint NOT NULL DEFAULT 0,
        worker           text NOT NULL DEFAULT '',
        started_at       timestamptz,
        finished_at      timestamptz,
        progress         real NOT NULL DEFAULT 0,
        progress_message text NOT NULL DEFAULT '',
        output           json,
        error            text NOT NULL DEFAULT '',
        exit_code        integer,
        PRIMARY KEY (task_id, step_id)
    ) WITH (fillfactor = 80);

    CREATE TABLE attempts (
        task_id               text NOT NULL,
        step_id               text NOT NULL,
        attempt               bigint NOT NULL,
        worker                text NOT NULL DEFAULT '',
        started_at            timestamptz,
        finished_at           timestamptz,
        state                 text NOT NULL DEFAULT 'running',
        error                 text NOT NULL DEFAULT '',
        exit_code             integer,
        session_id            text NOT NULL DEFAULT '',
        model                 text NOT NULL DEFAULT '',
        cost_usd              double precision NOT NULL DEFAULT 0,
        input_tokens          bigint NOT NULL DEFAULT 0,
        output_tokens         bigint NOT NULL DEFAULT 0,
        cache_read_tokens     bigint NOT NULL DEFAULT 0,
        cache_creation_tokens bigint NOT NULL DEFAULT 0,
        PRIMARY KEY (task_id, step_id, attempt)
    ) WITH (fillfactor = 80);

    CREATE TABLE events (
        task_id text NOT NULL,
        seq     bigint NOT NULL,
        at      timestamptz,
        kind    text NOT NULL,
        body    jsonb NOT NULL,
        PRIMARY KEY (task_id, seq)
    );

    CREATE TABLE state (
        tenant     text NOT NULL,
        scope      text NOT NULL,
        key        text NOT NULL,
        value      json,
        version    bigint NOT NULL,
        updated_at timestamptz,
        expires_at timestamptz,
        PRIMARY KEY (tenant, scope, key)
    );

    CREATE TABLE audit (
        seq     bigint PRIMARY KEY,
        at      timestamptz,
        actor   text NOT NULL,
        role    text NOT NULL,
        action  text NOT NULL,
        tenant  text NOT NULL,
        target  text NOT NULL,
        outcome text NOT NULL,
        detail  text NOT NULL
    );
    CREATE INDEX audit_by_tenant ON audit (tenant, seq);
    "#,
    // 2: leadership among replicas. One row holds the lease: who leads, at
    // which epoch, until when (on the database's clock, the one clock all
    // replicas share). A takeover raises the epoch. Every transaction of
    // the leader's writer starts with tidewright_fence(its epoch), which reads
    // the row FOR SHARE: a takeover's UPDATE waits for those in flight
    // (or ends them, once the lease has expired), and after it commits
    // every transaction fenced with an older epoch fails. A deposed leader,
    // even one that was only paused, therefore commits nothing. A row
    // rather than an advisory lock: a paused process keeps its session and
    // with it the lock, so the lock alone would never pass on.
    concat!(
        r#"
    CREATE TABLE tidewright_leader (
        id         integer PRIMARY KEY CHECK (id = 1),
        epoch      bigint NOT NULL,
        holder     text NOT NULL,
        name       text NOT NULL,
        address    text NOT NULL,
        since      timestamptz,
        expires_at timestamptz NOT NULL
    );
    INSERT INTO tidewright_leader VALUES (1, 0, '', '', '', NULL, '-infinity');

    CREATE TABLE tidewright_replicas (
        id         text PRIMARY KEY,
        name       text NOT NULL,
        address    text NOT NULL,
        started_at timestamptz NOT NULL,
        seen_at    timestamptz NOT NULL,
        epoch      bigint NOT NULL DEFAULT 0
    );
    "#,
        fence!(),
    ),
    // 3: specs and event bodies are only ever read back whole, and a new
    // leader reads every unfinished task's spec before it serves: as json
    // (the text as written) they are read without jsonb's conversion back
    // to text (240 ms of the 870 ms it took to read 100,000 tasks) and
    // written without being parsed into its tree. Labels, which tidewright
    // queries inside, stay jsonb.
    r#"
    ALTER TABLE tasks ALTER COLUMN spec TYPE json USING spec::json;
    ALTER TABLE events ALTER COLUMN body TYPE json USING body::json;
    "#,
    // 4: the fleet's order (tidewright_store::fleet): one row per transaction
    // naming, in order, the events it stored (all but log lines), numbered
    // as the one writer commits them. One small row per transaction rather
    // than an index entry per event keeps the write path as it was.
    r#"
    CREATE TABLE fleet (
        commit_no bigint PRIMARY KEY,
        task_ids  text[] NOT NULL,
        seqs      bigint[] NOT NULL
    );
    "#,
    // 5: a step awaiting approval keeps when its wait times out, so the
    // deadline outlives a restart or a failover.
    r#"
    ALTER TABLE steps ADD COLUMN approval_deadline timestamptz;
    "#,
    // 6: tenants' budgets, as admins set them; read whole on start.
    r#"
    CREATE TABLE budgets (
        tenant text PRIMARY KEY,
        budget json NOT NULL
    );
    "#,
    // 7: agents' session checkpoints, the newest per step, for a retry on
    // any worker to resume; removed a while after their task finishes.
    r#"
    CREATE TABLE checkpoints (
        task_id    text NOT NULL,
        step_id    text NOT NULL,
        attempt    bigint NOT NULL,
        session_id text NOT NULL,
        workspace  text NOT NULL,
        archive    bytea NOT NULL,
        created_at timestamptz,
        PRIMARY KEY (task_id, step_id)
    );
    "#,
    // 8: webhooks: the endpoints tenants registered, each delivery of an
    // event to one, and how far the fleet's events have been turned into
    // deliveries. Records are kept whole as JSON text beside the columns
    // they are looked up by; pending deliveries are found by a partial
    // index, so delivered ones cost the lookup nothing.
    r#"
    CREATE TABLE webhooks (
        id     text PRIMARY KEY,
        record text NOT NULL
    );
    CREATE TABLE deliveries (
        id         text PRIMARY KEY,
        webhook_id text NOT NULL,
        tenant     text NOT NULL,
        pending    boolean NOT NULL,
        record     text NOT NULL
    );
    CREATE INDEX deliveries_pending ON deliveries (id) WHERE pending;
    CREATE INDEX deliveries_by_webhook ON deliveries (webhook_id, id);
    CREATE TABLE cursors (
        name     text PRIMARY KEY,
        position bigint NOT NULL
    );
    "#,
    // 9: what a step did to its task's repository (its branch, head commit
    // and diff stat), as JSON text; '' for nothing.
    r#"
    ALTER TABLE steps ADD COLUMN work text NOT NULL DEFAULT '';
    "#,
    // 10: steps' branches, as git bundles, for dependent steps on any
    // worker to start from; removed with their task's checkpoints.
    r#"
    CREATE TABLE branches (
        task_id     text NOT NULL,
        step_id     text NOT NULL,
        attempt     bigint NOT NULL,
        head_commit text NOT NULL,
        bundle      bytea NOT NULL,
        diff        text NOT NULL DEFAULT '',
        created_at  timestamptz,
        PRIMARY KEY (task_id, step_id)
    );
    "#,
    // 11: retention. A task's own window in microseconds (NULL: its
    // tenant's or the default; 0: forever); the finished tasks of each
    // tenant by when they finished, and those with windows of their own by
    // when they expire; what is kept of removed tasks; when each row of
    // the fleet's order was made (rows from before: at the upgrade, so
    // they are kept a window from it).
    r#"
    ALTER TABLE tasks ADD COLUMN keep_for bigint;
    CREATE FUNCTION tidewright_expiry(finished timestamptz, keep_for bigint) RETURNS bigint
        LANGUAGE sql IMMUTABLE PARALLEL SAFE
        AS $$ SELECT (extract(epoch FROM finished) * 1000000)::bigint + keep_for $$;
    CREATE INDEX tasks_finished ON tasks (tenant, finished_at)
        WHERE keep_for IS NULL AND finished_at IS NOT NULL;
    CREATE INDEX tasks_kept ON tasks (tidewright_expiry(finished_at, keep_for))
        WHERE keep_for > 0 AND finished_at IS NOT NULL;
    CREATE TABLE expired (
        id          text PRIMARY KEY,
        tenant      text NOT NULL,
        finished_at timestamptz,
        expired_at  timestamptz NOT NULL
    );
    CREATE INDEX expired_by_time ON expired (expired_at);
    ALTER TABLE fleet ADD COLUMN at timestamptz NOT NULL DEFAULT now();
    "#,
    // 12: the ids, tenants and states tidewright makes and looks rows up by are
    // compared byte-wise (COLLATE "C"), whatever the database's locale:
    // under any other collation (C.UTF-8, en_US.UTF-8) every comparison of
    // a key, in every index probe, range and sort, goes through the
    // locale's rules (strcoll), for ids whose order is their bytes'. The
    // indexes on them are rebuilt; the rows stay. A user's own text (names,
    // labels, shared-state keys) keeps the database's collation.
    r#"
    ALTER TABLE tasks
        ALTER COLUMN id TYPE text COLLATE "C",
        ALTER COLUMN tenant TYPE text COLLATE "C",
        ALTER COLUMN state TYPE text COLLATE "C",
        ALTER COLUMN idempotency_key TYPE text COLLATE "C";
    ALTER TABLE steps
        ALTER COLUMN task_id TYPE text COLLATE "C",
        ALTER COLUMN step_id TYPE text COLLATE "C";
    ALTER TABLE attempts
        ALTER COLUMN task_id TYPE text COLLATE "C",
        ALTER COLUMN step_id TYPE text COLLATE "C";
    ALTER TABLE events ALTER COLUMN task_id TYPE text COLLATE "C";
    ALTER TABLE checkpoints
        ALTER COLUMN task_id TYPE text COLLATE "C",
        ALTER COLUMN step_id TYPE text COLLATE "C";
    ALTER TABLE branches
        ALTER COLUMN task_id TYPE text COLLATE "C",
        ALTER COLUMN step_id TYPE text COLLATE "C";
    ALTER TABLE expired
        ALTER COLUMN id TYPE text COLLATE "C",
        ALTER COLUMN tenant TYPE text COLLATE "C";
    ALTER TABLE audit ALTER COLUMN tenant TYPE text COLLATE "C";
    ALTER TABLE budgets ALTER COLUMN tenant TYPE text COLLATE "C";
    ALTER TABLE webhooks ALTER COLUMN id TYPE text COLLATE "C";
    ALTER TABLE deliveries
        ALTER COLUMN id TYPE text COLLATE "C",
        ALTER COLUMN webhook_id TYPE text COLLATE "C",
        ALTER COLUMN tenant TYPE text COLLATE "C";
    "#,
    // 13: the events one task gains in one write are one row
    // (tidewright_store::event_groups): the first one's number and time in
    // microseconds, the last one's number, and the events as one JSON
    // array of [µs after the first, kind]. Each event already stored
    // becomes a group of one.
    r#"
    CREATE TABLE event_groups (
        task_id text COLLATE "C" NOT NULL,
        seq     bigint NOT NULL,
        last    bigint NOT NULL,
        at      bigint NOT NULL,
        body    json NOT NULL,
        PRIMARY KEY (task_id, seq)
    );
    INSERT INTO event_groups (task_id, seq, last, at, body)
        SELECT task_id, seq, seq, tidewright_micros(at), json_build_array(json_build_array(0, body))
        FROM events;
    DROP TABLE events;
    "#,
    // 14: a row of the fleet's order names runs of a task's numbers
    // (tidewright_store::fleet::runs): `seqs` holds each run's first, `lasts` its
    // last. Rows from before have no `lasts`: an entry each.
    r#"
    ALTER TABLE fleet ADD COLUMN lasts bigint[];
    "#,
    // 15: schedules (tidewright_store::schedules), each a JSON record by tenant
    // and name.
    r#"
    CREATE TABLE schedules (
        tenant text COLLATE "C" NOT NULL,
        name   text COLLATE "C" NOT NULL,
        record text NOT NULL,
        PRIMARY KEY (tenant, name)
    );
    "#,
    // 16: the release that applied each migration from here on, so that a
    // release older than the database can name the one that wrote it.
    r#"
    ALTER TABLE tidewright_schema ADD COLUMN written_by text;
    "#,
    // 17: a verified step's round (tidewright_core::verify), as JSON; '' for
    // none.
    r#"
    ALTER TABLE attempts ADD COLUMN verification text NOT NULL DEFAULT '';
    "#,
    // 18: triggers (tidewright_store::triggers), each a JSON record by tenant
    // and name, as schedules are.
    r#"
    CREATE TABLE triggers (
        tenant text COLLATE "C" NOT NULL,
        name   text COLLATE "C" NOT NULL,
        record text NOT NULL,
        PRIMARY KEY (tenant, name)
    );
    "#,
    // 19: what a step's repository's setup did on each attempt
    // (tidewright_core::setup::SetupReport), as JSON; '' for none.
    r#"
    ALTER TABLE attempts ADD COLUMN setup text NOT NULL DEFAULT '';
    "#,
    // 20: tenants' shares of the fleet (weight, cap on running steps), as
    // admins set them; read whole on start, as budgets are.
    r#"
    CREATE TABLE shares (
        tenant text COLLATE "C" PRIMARY KEY,
        share  json NOT NULL
    );
    "#,
    // 21: what attempts cost, summed by day (UTC), tenant, repository,
    // runtime, model and template (tidewright_core::cost_sums), kept 400
    // days whatever the tasks' retention.
    r#"
    CREATE TABLE cost_sums (
        day                   text COLLATE "C" NOT NULL,
        tenant                text COLLATE "C" NOT NULL,
        repo                  text COLLATE "C" NOT NULL,
        runtime               text COLLATE "C" NOT NULL,
        model                 text COLLATE "C" NOT NULL,
        template              text COLLATE "C" NOT NULL,
        usd                   double precision NOT NULL,
        input_tokens          bigint NOT NULL,
        output_tokens         bigint NOT NULL,
        cache_read_tokens     bigint NOT NULL,
        cache_creation_tokens bigint NOT NULL,
        attempts              bigint NOT NULL,
        PRIMARY KEY (day, tenant, repo, runtime, model, template)
    );
    "#,
];

/// The first version whose row says its release.
const RELEASE_COLUMN: i64 = 16;

/// This build's release, as the schema table records it.
const RELEASE: &str = env!("CARGO_PKG_VERSION");

/// The schema version this build writes.
pub(crate) const VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database up to [`VERSION`], or refuses one that is newer.
pub(crate) async fn migrate(client: &Client) -> Result<()> {
    migrate_to(client, VERSION).await
}

/// Brings the database up to `version` (tests start from an older one).
pub(crate) async fn migrate_to(client: &Client, version: i64) -> Result<()> {
    // A session lock: held across the migrations' own transactions and
    // released below, or by the server if this process dies meanwhile.
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let outcome = apply(client, version).await;
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    outcome?;
    unlocked?;
    Ok(())
}

async fn apply(client: &Client, up_to: i64) -> Result<()> {
    adopt(client).await?;
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS tidewright_schema (
                 version    bigint PRIMARY KEY,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )",
        )
        .await?;
    let found: i64 = client
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM tidewright_schema",
            &[],
        )
        .await?
        .get(0);
    if found > VERSION {
        let release: Option<String> = client
            .query_one(
                "SELECT written_by FROM tidewright_schema WHERE version = $1",
                &[&found],
            )
            .await?
            .get(0);
        let by = release.map_or_else(
            || "a newer release".to_string(),
            |r| format!("tidewright {r}"),
        );
        return Err(Error::Corrupt(format!(
            "the database's schema is version {found}, written by {by}; this is tidewright {RELEASE}, which knows schema versions up to {VERSION}: upgrade tidewright, or point it at another database"
        ))
        .into());
    }
    for (index, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .take(up_to as usize)
        .skip(found as usize)
    {
        let version = index as i64 + 1;
        tracing::info!(version, "applying a schema migration");
        client.batch_execute("BEGIN").await?;
        let applied = async {
            client.batch_execute(sql).await?;
            if version >= RELEASE_COLUMN {
                client
                    .execute(
                        "INSERT INTO tidewright_schema (version, written_by) VALUES ($1, $2)",
                        &[&version, &RELEASE],
                    )
                    .await?;
            } else {
                client
                    .execute(
                        "INSERT INTO tidewright_schema (version) VALUES ($1)",
                        &[&version],
                    )
                    .await?;
            }
            client.batch_execute("COMMIT").await
        }
        .await;
        if let Err(e) = applied {
            let _ = client.batch_execute("ROLLBACK").await;
            return Err(e.into());
        }
    }
    Ok(())
}

/// Takes over a database written before the rename (0.2.0; see the
/// CHANGELOG), whose own tables and functions carry the project's former
/// name as their prefix: they are renamed to [`PREFIX`]'s, and the fence,
/// whose body names the leader's table, is made again. Such a database is
/// known by its shape, not by a name: where `tidewright_schema` is missing,
/// a version table `<p>_schema` beside `<p>_leader`, `<p>_replicas` and
/// this store's `tasks`. One transaction, under the migration lock: a
/// failure renames nothing.
async fn adopt(client: &Client) -> Result<()> {
    let former: Vec<String> = client
        .query(
            "SELECT left(t.relname, -7) FROM pg_class t
              WHERE t.relnamespace = current_schema()::regnamespace
                AND t.relkind = 'r'
                AND t.relname LIKE '%\\_schema'
                AND to_regclass(quote_ident($1 || '_schema')) IS NULL
                AND to_regclass('tasks') IS NOT NULL
                AND to_regclass(quote_ident(left(t.relname, -7) || '_leader')) IS NOT NULL
                AND to_regclass(quote_ident(left(t.relname, -7) || '_replicas')) IS NOT NULL",
            &[&PREFIX],
        )
        .await?
        .into_iter()
        .map(|row| row.get(0))
        .collect();
    let former = match former.as_slice() {
        [] => return Ok(()),
        [one] => one,
        many => {
            return Err(Error::Corrupt(format!(
                "the database holds the tables of more than one earlier release ({}): point tidewright at a database of its own",
                many.join(", ")
            ))
            .into());
        }
    };
    if !former
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(Error::Corrupt(format!(
            "an earlier release's tables are prefixed {former:?}, which is not a plain name"
        ))
        .into());
    }
    tracing::info!(
        former = %former,
        "renaming this store's own tables and functions, written before the rename"
    );
    let mut sql = String::from("BEGIN;\n");
    for table in PREFIXED_TABLES {
        sql.push_str(&format!(
            "ALTER TABLE {former}_{table} RENAME TO {PREFIX}_{table};\n\
             ALTER INDEX {former}_{table}_pkey RENAME TO {PREFIX}_{table}_pkey;\n"
        ));
    }
    sql.push_str(&format!(
        "ALTER TABLE {PREFIX}_leader RENAME CONSTRAINT {former}_leader_id_check TO {PREFIX}_leader_id_check;\n"
    ));
    for (function, arguments) in PREFIXED_FUNCTIONS {
        sql.push_str(&format!(
            "ALTER FUNCTION {former}_{function}({arguments}) RENAME TO {PREFIX}_{function};\n"
        ));
    }
    sql.push_str(fence!());
    sql.push_str("COMMIT;");
    if let Err(e) = client.batch_execute(&sql).await {
        let _ = client.batch_execute("ROLLBACK").await;
        return Err(e.into());
    }
    Ok(())
}
