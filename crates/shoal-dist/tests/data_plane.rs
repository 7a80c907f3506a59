//! The data plane as a peer sees it on the wire: a raw TCP client that speaks the framing of
//! `data_plane.rs` by hand. The handshake refuses a wrong token, another layout or protocol
//! by name; a malformed call is answered with an error naming it (then the connection closes,
//! since the stream cannot be trusted); random bytes never stop the server; and a server with
//! TLS offers no data plane (tested in `tls.rs`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use shoal_dist::{
    spawn, ClientOptions, Encoding, GrpcStore, ParamServer, ParamStore, ServerHandle, ServiceConfig, ShardInfo, Token,
    UpdateMode,
};
use shoal_nn::Sgd;

const LAYOUT: u64 = 0xfeed_beef;
const SECRET: &str = "test-token-0123456789";
const PROTOCOL: u32 = shoal_dist::proto::PROTOCOL_VERSION;

fn server(len: usize) -> ServerHandle {
    let store = ParamServer::new(
        vec![0.5; len],
        Box::new(Sgd::new(len, 0.0, false)),
        1.0,
        UpdateMode::Async { max_staleness: None },
    );
    let config = ServiceConfig::new(Token::new(SECRET).unwrap(), LAYOUT, ShardInfo::WHOLE);
    spawn("127.0.0.1:0", Arc::new(store), None, config).unwrap()
}

/// The handshake's bytes: magic, protocol version, layout hash, shard, shard count, token.
fn hello(protocol: u32, layout: u64, token: &str) -> Vec<u8> {
    let mut bytes = b"SHOALDP1".to_vec();
    bytes.extend(protocol.to_le_bytes());
    bytes.extend(layout.to_le_bytes());
    bytes.extend(0u32.to_le_bytes());
    bytes.extend(1u32.to_le_bytes());
    bytes.extend((token.len() as u16).to_le_bytes());
    bytes.extend(token.as_bytes());
    bytes
}

/// Sends `bytes` on a new connection and reads the status byte and text that answer.
fn answer(server: &ServerHandle, bytes: &[u8]) -> (u8, String) {
    let mut stream = TcpStream::connect(server.addr()).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(bytes).unwrap();
    read_status(&mut stream)
}

fn read_status(stream: &mut TcpStream) -> (u8, String) {
    let mut head = [0u8; 5];
    stream.read_exact(&mut head).unwrap();
    let mut text = vec![0u8; u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize];
    stream.read_exact(&mut text).unwrap();
    (head[0], String::from_utf8(text).unwrap())
}

/// A call's 40-byte header: op, encoding, has-version flag, worker, base version, have, bytes.
fn call(op: u8, encoding: u8, worker: u32, bytes: u64) -> Vec<u8> {
    let mut head = vec![op, encoding, 0, 0];
    head.extend(worker.to_le_bytes());
    head.extend(0u64.to_le_bytes());
    head.extend(0u64.to_le_bytes());
    head.extend(bytes.to_le_bytes());
    head.extend([0u8; 8]);
    head
}

fn still_serves(server: &ServerHandle) {
    let options = ClientOptions {
        tls: None,
        token: Token::new(SECRET).unwrap(),
        encoding: Encoding::F32Le,
        retry_for: Duration::from_secs(5),
    };
    let store = GrpcStore::connect(&server.addr().to_string(), LAYOUT, 0, 1, options).unwrap();
    assert!(store.uses_data_plane());
    let mut got = vec![0.0; store.len()];
    assert_eq!(store.pull(None, &mut got).unwrap(), Some(0));
    assert!(got.iter().all(|&v| v == 0.5), "nothing malformed reached the parameters");
}

#[test]
fn the_handshake_refuses_by_name() {
    let server = server(8);
    let (status, text) = answer(&server, &hello(PROTOCOL, LAYOUT, "another-token-987654321"));
    assert_eq!((status, text.contains("wrong token")), (1, true), "{text}");
    let (status, text) = answer(&server, &hello(PROTOCOL, 0x1234, SECRET));
    assert_eq!(status, 1);
    assert!(text.contains("layout mismatch") && text.contains("0000000000001234"), "{text}");
    let (status, text) = answer(&server, &hello(99, LAYOUT, SECRET));
    assert!(status == 1 && text.contains("protocol version mismatch"), "{text}");
    let mut wrong_magic = hello(PROTOCOL, LAYOUT, SECRET);
    wrong_magic[7] = b'9';
    let (status, text) = answer(&server, &wrong_magic);
    assert!(status == 1 && text.contains("not a shoal data-plane client"), "{text}");
    assert_eq!(answer(&server, &hello(PROTOCOL, LAYOUT, SECRET)), (0, String::new()));
    still_serves(&server);
}

#[test]
fn malformed_calls_are_answered_by_name_and_the_server_keeps_serving() {
    let server = server(8);
    let cases: [(Vec<u8>, &str); 4] = [
        (call(9, 0, 0, 0), "unknown data-plane call 9"),
        (call(1, 7, 0, 32), "unknown tensor encoding 7"),
        (call(1, 0, 0, 31), "a tensor of 31 bytes where this shard (8 parameters, F32Le) takes 32"),
        // A push whose int8 tensor has a negative scale.
        ([call(1, 2, 0, 12), (-1.0f32).to_le_bytes().to_vec(), vec![1; 8]].concat(), "malformed tensor"),
    ];
    for (bytes, expected) in cases {
        let mut stream = TcpStream::connect(server.addr()).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream.write_all(&hello(PROTOCOL, LAYOUT, SECRET)).unwrap();
        assert_eq!(read_status(&mut stream), (0, String::new()));
        stream.write_all(&bytes).unwrap();
        let (status, text) = read_status(&mut stream);
        assert_eq!(status, 1);
        assert!(text.contains(expected), "{text:?} should say {expected:?}");
        let mut rest = Vec::new();
        assert_eq!(stream.read_to_end(&mut rest).unwrap(), 0, "the server closed the connection");
    }
    still_serves(&server);
}

#[test]
fn random_bytes_after_the_handshake_never_stop_the_server() {
    let server = server(16);
    let mut rng = Pcg64Mcg::seed_from_u64(17);
    for _ in 0..200 {
        let mut stream = TcpStream::connect(server.addr()).unwrap();
        stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let mut bytes = hello(PROTOCOL, LAYOUT, SECRET);
        // A header with a valid op and encoding half the time, so the fuzz reaches the tensor.
        let mut head: Vec<u8> = (0..40).map(|_| rng.random()).collect();
        if rng.random_bool(0.5) {
            head[0] = rng.random_range(1..=4);
            head[1] = rng.random_range(0..=2);
        }
        bytes.extend(head);
        bytes.extend((0..rng.random_range(0..200)).map(|_| rng.random::<u8>()));
        // Whatever it answers, or if it waits for more bytes, the server stays up.
        let _ = stream.write_all(&bytes);
        let _ = stream.read(&mut [0u8; 64]);
    }
    still_serves(&server);
}
