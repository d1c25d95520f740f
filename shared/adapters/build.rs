//! Picks the roots AWS service endpoints chain to out of the Mozilla root program's set
//! (as the `webpki-root-certs` crate ships it) once, when the crate is built, and writes
//! them as PEM, the form the SDK's trust store takes. A cold start then neither searches
//! the set nor encodes anything, and the rest of the set is not in the binary.
#![allow(clippy::expect_used)] // A build that cannot produce the roots must stop.

use std::fmt::Write as _;
use std::path::PathBuf;

use base64::Engine;

/// Amazon Trust Services' four roots and the Starfield root that cross-signs them: every
/// AWS service endpoint (regional, FIPS, dual-stack and PrivateLink) chains to one of them.
const AWS_ROOT_NAMES: [&str; 5] = [
    "Amazon Root CA 1",
    "Amazon Root CA 2",
    "Amazon Root CA 3",
    "Amazon Root CA 4",
    "Starfield Services Root Certificate Authority - G2",
];

/// Whether a root certificate carries `name` as a string of its own: a root is its own
/// issuer, so the name appears in the issuer and the subject, and the byte before it is
/// its DER length, which rules out a longer name that merely starts with it.
fn names_subject(der: &[u8], name: &str) -> bool {
    der.windows(name.len())
        .enumerate()
        .any(|(at, window)| at > 0 && window == name.as_bytes() && usize::from(der[at - 1]) == name.len())
}

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    let mut out = String::from("/// The names of the roots the trust store holds.\n#[cfg(test)]\n");
    writeln!(
        out,
        "pub(crate) const AWS_ROOT_NAMES: [&str; {}] = {AWS_ROOT_NAMES:?};",
        AWS_ROOT_NAMES.len()
    )
    .expect("formatting into a String");
    out.push_str("/// Those roots, in the order of the names, as PEM.\n");
    writeln!(
        out,
        "pub(crate) const AWS_ROOTS_PEM: [&str; {}] = [",
        AWS_ROOT_NAMES.len()
    )
    .expect("formatting into a String");
    for name in AWS_ROOT_NAMES {
        let found: Vec<_> = webpki_root_certs::TLS_SERVER_ROOT_CERTS
            .iter()
            .filter(|der| names_subject(der, name))
            .collect();
        assert_eq!(found.len(), 1, "exactly one root of the Mozilla set is {name:?}");
        let body = base64::engine::general_purpose::STANDARD.encode(found[0].as_ref());
        let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
        for line in body.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
        writeln!(out, "    {pem:?},").expect("formatting into a String");
    }
    out.push_str("];\n");
    let path = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("aws_roots.rs");
    std::fs::write(path, out).expect("the generated roots are written");
}
