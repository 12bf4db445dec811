//! A private certificate authority and a server certificate it signed, for
//! `127.0.0.1` and `localhost`, made with the `openssl` command in a
//! temporary directory: what a TLS test server presents and what its
//! clients are told to trust. A second authority made the same way stands
//! for a server nobody should trust.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct TestCertificates {
    dir: tempfile::TempDir,
}

impl TestCertificates {
    /// Makes a fresh authority and server certificate. Panics with the
    /// reason when `openssl` cannot be run.
    pub fn create() -> TestCertificates {
        let dir = tempfile::Builder::new()
            .prefix("chat-test-tls-")
            .tempdir()
            .expect("a temporary directory");
        let certificates = TestCertificates { dir };
        let names = "subjectAltName=IP:127.0.0.1,DNS:localhost\n";
        std::fs::write(certificates.path("server.ext"), names).expect("extension file");
        certificates.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=chat test authority",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ]);
        certificates.openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ]);
        certificates.openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ]);
        certificates
    }

    /// The authority's certificate (PEM): what a client trusts.
    pub fn authority(&self) -> PathBuf {
        self.path("ca.pem")
    }

    /// The server's certificate (PEM), signed by the authority.
    pub fn server_certificate(&self) -> PathBuf {
        self.path("server.pem")
    }

    /// The server's private key (PEM, unencrypted).
    pub fn server_key(&self) -> PathBuf {
        self.path("server.key")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn openssl(&self, args: &[&str]) {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run openssl ({e}); install it with: apt-get install openssl")
            });
        assert!(
            output.status.success(),
            "openssl {args:?} failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// Copies `from` to `to`, for servers that want their key beside their data.
pub(super) fn copy(from: &Path, to: &Path) {
    std::fs::copy(from, to).unwrap_or_else(|e| panic!("cannot copy {from:?} to {to:?}: {e}"));
}
