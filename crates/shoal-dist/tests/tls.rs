//! TLS on loopback (feature `tls`): a client that trusts the test CA talks to a TLS server; a
//! plain-text client, and a client expecting another server name, do not get through.
//! Certificates: `scripts/gen_test_certs.sh` (test material only).
#![cfg(feature = "tls")]

use std::sync::Arc;
use std::time::Duration;

use shoal_dist::{
    spawn, ClientOptions, ClientTls, DistError, Encoding, GrpcStore, Limits, ParamServer, ParamStore, ServerTls,
    ServiceConfig, ShardInfo, Token, UpdateMode,
};
use shoal_nn::Sgd;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls");

fn pem(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}")).unwrap()
}

fn options(tls: Option<ClientTls>) -> ClientOptions {
    ClientOptions {
        tls,
        token: Token::new("tls-test-token-0123456789").unwrap(),
        encoding: Encoding::F32Le,
        retry_for: Duration::from_millis(500),
    }
}

#[test]
fn tls_clients_connect_and_others_are_kept_out() {
    let store = Arc::new(ParamServer::new(
        vec![1.5; 8],
        Box::new(Sgd::new(8, 0.0, false)),
        0.1,
        UpdateMode::Async { max_staleness: None },
    ));
    let config = ServiceConfig {
        tls: Some(ServerTls { cert_pem: pem("cert.pem"), key_pem: pem("key.pem") }),
        token: Token::new("tls-test-token-0123456789").unwrap(),
        layout_hash: 7,
        shard: ShardInfo::WHOLE,
        limits: Limits::default(),
    };
    let server = spawn("127.0.0.1:0", store, None, config).unwrap();
    let addr = server.addr().to_string();

    let trusted = ClientTls { ca_pem: pem("ca.pem"), domain: "localhost".into() };
    let client = GrpcStore::connect(&addr, 7, 0, 1, options(Some(trusted))).unwrap();
    let mut got = vec![0.0; 8];
    assert_eq!(client.pull(None, &mut got).unwrap(), Some(0));
    assert_eq!(got, [1.5; 8]);
    assert!(!client.uses_data_plane(), "the data plane has no encryption: tensors stay inside TLS");
    // A data-plane client in clear text reaches only the TLS handshake, which fails.
    let mut raw = std::net::TcpStream::connect(&addr).unwrap();
    raw.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    std::io::Write::write_all(&mut raw, b"SHOALDP1\x01\0\0\0").unwrap();
    let mut status = [0u8; 5];
    let answered = std::io::Read::read_exact(&mut raw, &mut status);
    assert!(answered.is_err() || status[0] != 0, "no data plane behind TLS");

    let plain = GrpcStore::connect(&addr, 7, 0, 1, options(None)).err().expect("plain text must not get through");
    assert!(!matches!(plain, DistError::Setup(_)), "{plain}");

    let wrong_name = ClientTls { ca_pem: pem("ca.pem"), domain: "elsewhere.example".into() };
    let err = GrpcStore::connect(&addr, 7, 0, 1, options(Some(wrong_name))).err().expect("wrong name must fail");
    assert!(matches!(err, DistError::Unreachable { .. }), "{err}");
}
