//! TLS to Postgres, against a Postgres of the test's own: a fresh cluster (`initdb`, run as the
//! `postgres` user when the test runs as root) serving a certificate for `localhost` signed by a
//! CA the test makes with `openssl`. `verify-full` accepts the right host name and refuses
//! another; `verify-ca` refuses a certificate from another CA; and once the server runs without
//! TLS, `require` refuses it while `prefer` goes on in plain text.
//!
//! Needs Postgres's server programs (`initdb`, `pg_ctl`: found under /usr/lib/postgresql or in
//! `STRIPE_MIRROR_TEST_POSTGRES_BIN`) and `openssl`; without them it says it was skipped, unless
//! `STRIPE_MIRROR_TEST_POSTGRES_TLS=required` (as CI sets), when it fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use sm_test_support::certificates::{make_ca, make_server_cert, openssl_present};

fn server_programs() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("STRIPE_MIRROR_TEST_POSTGRES_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists() && bin.join("pg_ctl").exists())
        .collect();
    found.sort();
    found.pop()
}

fn run(what: &str, command: &mut Command) {
    let out = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0")
}

/// A command run as the `postgres` user when this test runs as root (Postgres refuses root).
fn as_server_user(program: &Path) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
}

impl Cluster {
    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn start(&self, ssl: bool) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c ssl={} -c ssl_cert_file={} -c ssl_key_file={}",
            self.port,
            self.dir.display(),
            if ssl { "on" } else { "off" },
            self.dir.join("server.crt").display(),
            self.dir.join("server.key").display(),
        );
        run(
            "pg_ctl start",
            as_server_user(&self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(self.data())
                .arg("-l")
                .arg(self.dir.join("log"))
                .args(["-w", "-o", &options, "start"]),
        );
    }

    fn stop(&self) {
        let _ = as_server_user(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }

    fn url(&self, host: &str, params: &str) -> String {
        format!("postgres://postgres@{host}:{}/postgres?{params}", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether the store's own connection is encrypted, as the server sees it.
fn encrypted(store: &dyn sm_warehouse::Store) -> bool {
    let (_, rows) = store
        .query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .unwrap();
    rows[0][0].as_deref() == Some("true")
}

#[test]
fn sslmode_is_honoured_against_a_server_of_our_own() {
    let required = std::env::var("STRIPE_MIRROR_TEST_POSTGRES_TLS").as_deref() == Ok("required");
    let openssl = openssl_present();
    let Some(bin) = server_programs().filter(|_| openssl) else {
        assert!(
            !required,
            "STRIPE_MIRROR_TEST_POSTGRES_TLS=required, but initdb/pg_ctl (or openssl) were not found"
        );
        eprintln!(
            "skipped: no Postgres server programs or openssl here (set STRIPE_MIRROR_TEST_POSTGRES_BIN)"
        );
        return;
    };
    let dir = std::env::temp_dir().join(format!("sm-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cluster = Cluster { bin, dir, port };
    let dir = cluster.dir.clone();
    make_ca(&dir, "ca");
    make_ca(&dir, "other-ca");
    make_server_cert(&dir, "ca");
    if is_root() {
        run(
            "the test's folder goes to the postgres user",
            Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir),
        );
    }
    run(
        "chmod 600 server.key",
        Command::new("chmod").arg("600").arg(dir.join("server.key")),
    );
    run(
        "initdb",
        as_server_user(&cluster.bin.join("initdb"))
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "-D"])
            .arg(cluster.data()),
    );
    cluster.start(true);

    let ca = dir.join("ca.crt").display().to_string();
    let other_ca = dir.join("other-ca.crt").display().to_string();
    let open = |url: &str| sm_warehouse::open(url);

    let store = open(&cluster.url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ))
    .expect("verify-full with the right name and CA");
    assert!(encrypted(store.as_ref()));
    drop(store);

    let error = open(&cluster.url(
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ))
    .err()
    .expect("verify-full refuses a certificate for another name")
    .to_string();
    eprintln!("refused: {error}");
    assert!(error.contains("certificate"), "{error}");

    let store = open(&cluster.url("127.0.0.1", &format!("sslmode=verify-ca&sslrootcert={ca}")))
        .expect("verify-ca does not check the name");
    assert!(encrypted(store.as_ref()));
    drop(store);

    let error = open(&cluster.url(
        "localhost",
        &format!("sslmode=verify-ca&sslrootcert={other_ca}"),
    ))
    .err()
    .expect("verify-ca refuses a certificate from another CA")
    .to_string();
    eprintln!("refused: {error}");
    assert!(error.contains("certificate"), "{error}");

    // With no sslmode, a server on this machine gets `prefer`: TLS, since it offers it.
    let store = open(&cluster.url("127.0.0.1", "")).expect("prefer by default here");
    assert!(encrypted(store.as_ref()));
    drop(store);

    cluster.stop();
    cluster.start(false);
    let error = open(&cluster.url("127.0.0.1", "sslmode=require"))
        .err()
        .expect("require refuses a server without TLS")
        .to_string();
    eprintln!("refused: {error}");
    assert!(
        error.to_lowercase().contains("tls") || error.contains("SSL"),
        "{error}"
    );
    let store = open(&cluster.url("127.0.0.1", "sslmode=prefer")).expect("prefer goes on");
    assert!(!encrypted(store.as_ref()));
    let error = open(&cluster.url("127.0.0.1", "sslmode=allow"))
        .err()
        .expect("allow is refused")
        .to_string();
    assert!(error.contains("sslmode=allow"), "{error}");
}
