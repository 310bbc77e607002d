//! Certificates for tests of TLS (Postgres, SMTP), made with the `openssl` program: a CA, and a
//! certificate for `localhost` that a CA signs. Every key is P-256 and valid for two days.

use std::path::Path;
use std::process::Command;

/// Whether the `openssl` program is there to make them.
pub fn openssl_present() -> bool {
    Command::new("openssl").arg("version").output().is_ok()
}

/// A CA in `dir`: `{name}.crt` and `{name}.key`.
pub fn make_ca(dir: &Path, name: &str) {
    run(
        "openssl makes a CA",
        Command::new("openssl")
            .current_dir(dir)
            .args(["req", "-x509"])
            .args(P256)
            .args(["-days", "2", "-subj", &format!("/CN={name}")])
            .args(["-addext", "basicConstraints=critical,CA:TRUE"])
            .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
            .args(["-keyout", &format!("{name}.key")])
            .args(["-out", &format!("{name}.crt")]),
    );
}

/// A certificate for `localhost` in `dir` (`server.crt`, `server.key`), signed by the CA
/// `make_ca` made there under the name `ca`.
pub fn make_server_cert(dir: &Path, ca: &str) {
    run(
        "openssl makes a server key",
        Command::new("openssl")
            .current_dir(dir)
            .arg("req")
            .args(P256)
            .args(["-subj", "/CN=localhost"])
            .args(["-keyout", "server.key", "-out", "server.csr"]),
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .expect("the certificate's extensions written");
    run(
        "openssl signs the server certificate",
        Command::new("openssl")
            .current_dir(dir)
            .args(["x509", "-req", "-in", "server.csr"])
            .args(["-CA", &format!("{ca}.crt"), "-CAkey", &format!("{ca}.key")])
            .args(["-CAcreateserial", "-days", "2", "-extfile", "server.ext"])
            .args(["-out", "server.crt"]),
    );
}

const P256: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

fn run(what: &str, command: &mut Command) {
    let out = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
