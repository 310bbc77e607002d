//! A user's SQL on Postgres, inside the boundary of `crate::sandbox`: it runs on a connection of
//! its own, logged in as a role that may only SELECT the mirror's readable tables (and the
//! unsealed columns of `accounts`), in a read-only transaction with a statement timeout, read
//! through a cursor so that a huge answer stops at the row and byte limits.
//!
//! Why a login of its own: a session that logged in as a superuser can always take its rights
//! back (`set_config('role', …)` inside a SELECT), so `SET ROLE` is no boundary. The role's
//! password is derived from the master key by the engine, so every process of one mirror
//! computes the same one and nothing more is stored. The role is made (or its password set)
//! when the connecting user may create roles; otherwise the query is refused with the SQL an
//! administrator runs once.

use postgres::error::SqlState;
use postgres::{Client, SimpleQueryMessage};

use super::{PostgresStore, error_text, ident, literal};
use crate::sandbox::{BYTE_LIMIT, Limit, ROW_LIMIT, TIME_LIMIT};
use crate::{Result, StoreError, ValuesResult};

/// Rows fetched from the cursor at a time.
const FETCH: usize = 500;

/// The reader role of a mirror: one per database and schema (roles are the cluster's).
pub(super) fn role_name(database: &str, schema: &str) -> String {
    let plain = format!("stripe_mirror_reader_{database}_{schema}");
    if plain.len() <= 63 {
        return plain;
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{database}\0{schema}").as_bytes());
    let short: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("stripe_mirror_reader_{short}")
}

/// The SQL that makes (or updates) the reader role and its grants. `password` is `None` when
/// only the grants are renewed.
fn role_sql(role: &str, database: &str, schema: &str, password: Option<&str>) -> String {
    let r = ident(role);
    let mut sql = String::new();
    if let Some(password) = password {
        // Sent as a SCRAM verifier, so that a server logging statements logs no password.
        let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
        sql.push_str(&format!(
            "ALTER ROLE {r} LOGIN PASSWORD {} NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS CONNECTION LIMIT 8;\n",
            literal(&verifier)
        ));
        sql.push_str(&format!(
            "ALTER ROLE {r} SET default_transaction_read_only = on;\nALTER ROLE {r} SET statement_timeout = {};\n",
            TIME_LIMIT.as_millis()
        ));
    }
    sql.push_str(&format!(
        "GRANT CONNECT ON DATABASE {} TO {r};\nGRANT USAGE ON SCHEMA {} TO {r};\n",
        ident(database),
        ident(schema)
    ));
    for table in crate::sandbox::readable_tables().filter(|t| *t != "accounts") {
        sql.push_str(&format!(
            "GRANT SELECT ON {}.{} TO {r};\n",
            ident(schema),
            ident(table)
        ));
    }
    sql.push_str(&format!(
        "GRANT SELECT ({}) ON {}.accounts TO {r};\n",
        ACCOUNT_COLUMNS.join(", "),
        ident(schema)
    ));
    sql
}

/// The columns of `accounts` the reader may see: all but the sealed ones.
const ACCOUNT_COLUMNS: &[&str] = &[
    "account_id",
    "livemode",
    "name",
    "stripe_name",
    "icon_url",
    "key_kind",
    "key_masked",
    "permissions",
    "status",
    "status_message",
    "start_date",
    "webhook_endpoint_id",
    "api_base",
    "api_version",
    "logo_url",
    "created_at",
    "updated_at",
];

/// Why the reader role cannot be used, and what an administrator runs to make it.
fn no_role(role: &str, database: &str, schema: &str, why: &str) -> StoreError {
    StoreError::QueryRefused(format!(
        "SQL runs as the read-only role {role}, and {why}; a user who may create roles makes it \
         when it runs `stripe-mirror sql 'SELECT 1' --database <that user's URL>` once with this \
         mirror's master key (or an administrator runs: CREATE ROLE {} LOGIN; then grants as \
         `stripe-mirror` would: {})",
        ident(role),
        role_sql(role, database, schema, None).replace('\n', " ")
    ))
}

impl PostgresStore {
    /// The reader's connection: made on first use (creating or updating the role when the
    /// connecting user may), kept while it works.
    fn reader_client(&self, secret: &str) -> Result<Client> {
        let (database, may_manage, exists) = self.read(|client, _| {
            let row = client.query_one(
                "SELECT current_database(), (SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user)",
                &[],
            )?;
            let database: String = row.get(0);
            let may: Option<bool> = row.get(1);
            let role = role_name(&database, &self.schema);
            let exists = client
                .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role])?
                .is_some();
            Ok((database, may.unwrap_or(false), exists))
        })?;
        let role = role_name(&database, &self.schema);
        if may_manage {
            let sql = role_sql(&role, &database, &self.schema, Some(secret));
            let create = format!("CREATE ROLE {} NOLOGIN;\n", ident(&role));
            self.write(|tx, _| {
                // Two processes may make it at once: one at a time.
                tx.execute(
                    "SELECT pg_advisory_xact_lock(hashtext('stripe-mirror-reader'), hashtext($1))",
                    &[&role],
                )?;
                let exists = tx
                    .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role])?
                    .is_some();
                if !exists {
                    tx.batch_execute(&create)?;
                }
                tx.batch_execute(&sql)?;
                Ok(())
            })
            .map_err(|error| match error {
                StoreError::Database(detail) => no_role(
                    &role,
                    &database,
                    &self.schema,
                    &format!("it could not be made ({detail})"),
                ),
                other => other,
            })?;
        } else if !exists {
            return Err(no_role(
                &role,
                &database,
                &self.schema,
                "it does not exist and this user may not create roles",
            ));
        }
        let mut config = self.config.clone();
        config
            .user(&role)
            .password(secret)
            .dbname(&database)
            .application_name("stripe-mirror sql");
        let mut client = config
            .connect(self.tls.connector.clone())
            .map_err(|error| {
                no_role(
                    &role,
                    &database,
                    &self.schema,
                    &format!("logging in as it failed ({})", error_text(&error)),
                )
            })?;
        client
            .batch_execute(&format!("SET search_path TO {}", ident(&self.schema)))
            .map_err(|e| self.db_error(e))?;
        Ok(client)
    }

    /// Runs a user's query as the reader role (`Store::sandboxed_query`).
    pub(super) fn run_sandboxed(&self, sql: &str, secret: &str) -> Result<ValuesResult> {
        super::off_runtime(|| {
            let mut slot = self.sql_reader.lock();
            if slot.as_ref().is_none_or(|c| c.is_closed()) {
                *slot = Some(self.reader_client(secret)?);
            }
            let client = slot.as_mut().expect("connected above");
            let result = run(client, sql);
            // A lock the query took for the session would outlive it: let every one go. A
            // broken connection is made again next time.
            if client
                .batch_execute("SELECT pg_advisory_unlock_all()")
                .is_err()
            {
                *slot = None;
            }
            result
        })
    }
}

/// The error a failed step of a user's query answers.
fn refusal(error: &postgres::Error) -> StoreError {
    let text = error_text(error);
    match error.code() {
        Some(code) if *code == SqlState::INSUFFICIENT_PRIVILEGE => {
            let table = crate::sandbox::BOOKKEEPING
                .iter()
                .find(|t| text.contains(&format!("table {t}")));
            StoreError::QueryRefused(match table {
                Some(table) => crate::sandbox::refused_table(table),
                None if text.contains("accounts") => crate::sandbox::refused_sealed(),
                None => format!("{text}: only the mirror's tables can be read here"),
            })
        }
        Some(code) if *code == SqlState::QUERY_CANCELED => Limit::Time.error(),
        Some(code) if *code == SqlState::READ_ONLY_SQL_TRANSACTION => {
            StoreError::QueryRefused(format!("{text}: only reads are allowed here"))
        }
        Some(code) if *code == SqlState::PROGRAM_LIMIT_EXCEEDED => StoreError::QueryLimit(text),
        Some(_) => StoreError::BadQuery(text),
        None => StoreError::Database(text),
    }
}

/// One query on the reader's connection.
fn run(client: &mut Client, sql: &str) -> Result<ValuesResult> {
    if let Some(function) = crate::sandbox::postgres_refused_function(sql) {
        return Err(StoreError::QueryRefused(format!(
            "the function {function}() is not allowed here"
        )));
    }
    // Parsed first: the extended protocol takes a single statement, so nothing can follow it to
    // end the read-only transaction; and a statement without rows is no query.
    let statement = client.prepare(sql).map_err(|e| match e.code() {
        Some(_) if error_text(&e).contains("multiple commands") => {
            StoreError::QueryRefused("send one statement at a time".into())
        }
        _ => refusal(&e),
    })?;
    if statement.columns().is_empty() {
        return Err(StoreError::QueryRefused(
            "only read-only queries (SELECT …) may be run here".into(),
        ));
    }
    let names: Vec<String> = statement
        .columns()
        .iter()
        .map(|c| c.name().to_owned())
        .collect();
    let types: Vec<postgres::types::Type> = statement
        .columns()
        .iter()
        .map(|c| c.type_().clone())
        .collect();
    drop(statement);
    let mut tx = client
        .build_transaction()
        .read_only(true)
        .start()
        .map_err(|e| refusal(&e))?;
    tx.batch_execute(&format!(
        "SET LOCAL statement_timeout = {}",
        TIME_LIMIT.as_millis()
    ))
    .map_err(|e| refusal(&e))?;
    // A cursor, so that rows arrive a few hundred at a time and a huge answer stops at the
    // limits instead of filling memory. The newline ends a trailing `--` comment.
    tx.batch_execute(&format!(
        "DECLARE stripe_mirror_query NO SCROLL CURSOR FOR {}\n",
        sql.trim_end().trim_end_matches(';')
    ))
    .map_err(|e| refusal(&e))?;
    let (mut rows, mut bytes) = (Vec::new(), 0usize);
    loop {
        let messages = tx
            .simple_query(&format!("FETCH {FETCH} FROM stripe_mirror_query"))
            .map_err(|e| refusal(&e))?;
        let mut fetched = 0;
        for message in messages {
            if let SimpleQueryMessage::Row(row) = message {
                fetched += 1;
                if rows.len() == ROW_LIMIT {
                    return Err(Limit::Rows.error());
                }
                let values: Vec<serde_json::Value> = (0..row.len())
                    .map(|i| {
                        let text = row.get(i);
                        bytes += text.map_or(0, str::len);
                        super::typed_value(types.get(i), text)
                    })
                    .collect();
                if bytes > BYTE_LIMIT {
                    return Err(Limit::Bytes.error());
                }
                rows.push(values);
            }
        }
        if fetched < FETCH {
            break;
        }
    }
    tx.rollback().map_err(|e| refusal(&e))?;
    Ok((names, rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_fit_postgres() {
        assert_eq!(
            role_name("test", "stripe"),
            "stripe_mirror_reader_test_stripe"
        );
        let long = role_name(&"d".repeat(40), &"s".repeat(40));
        assert!(long.len() <= 63 && long.starts_with("stripe_mirror_reader_"));
    }
}
