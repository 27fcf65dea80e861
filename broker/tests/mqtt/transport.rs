//! Transports: TLS (server and client certificates, CRL, reload), MQTT
//! over WebSocket (ws and wss) and the PROXY protocol, against the real
//! binary. Certificates are made here with rcgen.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType, IsCa, Issuer,
    KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams, SerialNumber, date_time_ymd,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::harness::{Broker, Raw, connect_v4, publish_raw, split_packets, subscribe_raw};

/// A test CA with server and client certificates, written as PEM files.
struct Pki {
    dir: tempfile::TempDir,
    ca: Issuer<'static, KeyPair>,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let (ca, pem) = ca("Starling Test CA");
        std::fs::write(dir.path().join("ca.crt"), pem).unwrap();
        let pki = Pki { dir, ca };
        pki.server("server-1", "tls.crt", "tls.key");
        pki
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A server certificate for 127.0.0.1/localhost, CN `cn`.
    fn server(&self, cn: &str, cert: &str, key: &str) {
        let (c, k) = leaf(&self.ca, cn, 1000, false);
        std::fs::write(self.path(cert), c).unwrap();
        std::fs::write(self.path(key), k).unwrap();
    }

    /// A client certificate (serial `serial`); `expired` makes it valid in 2000 only.
    fn client(&self, cn: &str, serial: u64, expired: bool) -> (String, String) {
        leaf(&self.ca, cn, serial, expired)
    }

    /// A CRL revoking `serials`, written to `crl.pem`.
    fn crl(&self, serials: &[u64]) {
        let params = CertificateRevocationListParams {
            this_update: date_time_ymd(2020, 1, 1),
            next_update: date_time_ymd(2099, 1, 1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from(*s),
                    revocation_time: date_time_ymd(2020, 1, 1),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.ca).unwrap();
        std::fs::write(self.path("crl.pem"), crl.pem().unwrap()).unwrap();
    }

    fn ca_pem(&self) -> String {
        std::fs::read_to_string(self.path("ca.crt")).unwrap()
    }

    /// `[listeners.tls]` TOML for these files.
    fn tls_toml(&self, client_auth: &str, crl: bool) -> String {
        let mut t = format!(
            "[listeners.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            self.path("tls.crt").display(),
            self.path("tls.key").display()
        );
        if client_auth != "none" {
            t += &format!(
                "client_ca = \"{}\"\nclient_auth = \"{client_auth}\"\n",
                self.path("ca.crt").display()
            );
        }
        if crl {
            t += &format!("crl = \"{}\"\n", self.path("crl.pem").display());
        }
        t
    }
}

fn ca(cn: &str) -> (Issuer<'static, KeyPair>, String) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, cn);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = p.self_signed(&key).unwrap();
    (Issuer::new(p, key), cert.pem())
}

fn leaf(ca: &Issuer<'static, KeyPair>, cn: &str, serial: u64, expired: bool) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut p =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.serial_number = Some(SerialNumber::from(serial));
    p.use_authority_key_identifier_extension = true;
    if expired {
        p.not_before = date_time_ymd(2000, 1, 1);
        p.not_after = date_time_ymd(2001, 1, 1);
    }
    let cert = p.signed_by(&key, ca).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn listener(name: &str, more: &str) -> String {
    format!("[[listeners]]\nname = \"{name}\"\nbind = \"127.0.0.1:0\"\n{more}\n")
}

fn client_config(ca_pem: &str, client: Option<&(String, String)>) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    Arc::new(match client {
        None => b.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
            b.with_client_auth_cert(chain, key).unwrap()
        }
    })
}

type TlsClient = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

async fn tls_connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsClient> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
}

/// Sends CONNECT and reads the CONNACK: Ok if the broker accepted it.
async fn mqtt_connect<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    id: &str,
) -> Result<(), String> {
    s.write_all(&connect_v4(id))
        .await
        .map_err(|e| e.to_string())?;
    let mut ack = [0u8; 4];
    match tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut ack)).await {
        Err(_) => Err("no CONNACK within 5 s".into()),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(_)) if ack == [0x20, 0x02, 0x00, 0x00] => Ok(()),
        Ok(Ok(_)) => Err(format!("unexpected CONNACK {ack:02x?}")),
    }
}

/// TLS handshake plus CONNECT/CONNACK with `client` credentials.
async fn tls_mqtt(
    addr: SocketAddr,
    pki: &Pki,
    client: Option<&(String, String)>,
) -> Result<(), String> {
    let mut s = tls_connect(addr, client_config(&pki.ca_pem(), client))
        .await
        .map_err(|e| e.to_string())?;
    mqtt_connect(&mut s, "tls-client").await
}

/// The CN of the certificate the server presented.
fn served_cn(s: &TlsClient) -> String {
    let der = s.get_ref().1.peer_certificates().unwrap()[0].clone();
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
    cert.subject()
        .iter_common_name()
        .next()
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn tls_server_only() {
    let pki = Pki::new();
    let b = Broker::start_raw_config(&listener("mqtts", &pki.tls_toml("none", false)), "");
    tls_mqtt(b.addr, &pki, None).await.unwrap();
    // Plain MQTT on a TLS port never gets a CONNACK.
    let mut raw = Raw::connect(&b);
    raw.send(&connect_v4("plain"));
    let got = raw.read_to_close();
    assert!(!got.starts_with(&[0x20]), "{got:02x?}");
    // A client limited to TLS 1.3 and one limited to TLS 1.2 both work;
    // the broker never offers TLS 1.0/1.1 (rustls has no code for them).
    for v in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(pki.ca_pem().as_bytes()).unwrap())
            .unwrap();
        let cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[v])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut s = tls_connect(b.addr, Arc::new(cfg)).await.unwrap();
        assert_eq!(s.get_ref().1.protocol_version(), Some(v.version));
        mqtt_connect(&mut s, "versioned").await.unwrap();
    }
}

#[tokio::test]
async fn mtls_required_accepts_only_valid_client_certificates() {
    let pki = Pki::new();
    pki.crl(&[66]);
    let b = Broker::start_raw_config(&listener("mtls", &pki.tls_toml("required", true)), "");
    let good = pki.client("device-1", 10, false);
    tls_mqtt(b.addr, &pki, Some(&good)).await.unwrap();
    assert!(
        b.wait_log(
            &["client certificate verified", "cn=\"device-1\""],
            Duration::from_secs(5)
        ),
        "the verified identity is logged"
    );

    let (other_ca, _) = ca("Some Other CA");
    let cases = [
        ("cert_missing", None),
        (
            "cert_unknown_ca",
            Some(leaf(&other_ca, "intruder", 11, false)),
        ),
        ("cert_expired", Some(pki.client("old-device", 12, true))),
        ("cert_revoked", Some(pki.client("stolen-device", 66, false))),
    ];
    for (reason, client) in cases {
        let res = tls_mqtt(b.addr, &pki, client.as_ref()).await;
        assert!(res.is_err(), "{reason}: connected");
        assert!(
            b.wait_log(
                &[
                    "connection refused by the transport",
                    &format!("reason={reason}")
                ],
                Duration::from_secs(5)
            ),
            "{reason} not logged"
        );
    }
}

#[tokio::test]
async fn mtls_optional_accepts_clients_without_certificates() {
    let pki = Pki::new();
    let b = Broker::start_raw_config(&listener("mtls-opt", &pki.tls_toml("optional", false)), "");
    tls_mqtt(b.addr, &pki, None).await.unwrap();
    tls_mqtt(b.addr, &pki, Some(&pki.client("device-2", 20, false)))
        .await
        .unwrap();
    // A certificate that is presented must still verify.
    let (other_ca, _) = ca("Some Other CA");
    let bad = leaf(&other_ca, "intruder", 21, false);
    assert!(tls_mqtt(b.addr, &pki, Some(&bad)).await.is_err());
}

/// Replaces `name` atomically (write elsewhere, then rename), like a
/// Kubernetes secret update.
fn swap_file(dir: &Path, name: &str, contents: &str) {
    let tmp = dir.join(format!(".{name}.new"));
    let mut f = std::fs::File::create(&tmp).unwrap();
    f.write_all(contents.as_bytes()).unwrap();
    f.sync_all().unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

#[tokio::test]
async fn certificates_reload_without_dropping_connections() {
    let pki = Pki::new();
    let b = Broker::start_raw_config(&listener("reload", &pki.tls_toml("none", false)), "");
    let cfg = client_config(&pki.ca_pem(), None);
    let mut old = tls_connect(b.addr, cfg.clone()).await.unwrap();
    assert_eq!(served_cn(&old), "server-1");
    mqtt_connect(&mut old, "long-lived").await.unwrap();

    // A broken certificate is refused and the old one kept.
    swap_file(
        pki.dir.path(),
        "tls.crt",
        "-----BEGIN CERTIFICATE-----\nnope\n",
    );
    assert!(
        b.wait_log(&["TLS files not reloaded"], Duration::from_secs(10)),
        "bad file not reported"
    );
    let mut s = tls_connect(b.addr, cfg.clone()).await.unwrap();
    assert_eq!(served_cn(&s), "server-1");
    mqtt_connect(&mut s, "during-bad-file").await.unwrap();

    // A new certificate and key: new connections get them.
    pki.server("server-2", "new.crt", "new.key");
    let (c, k) = (
        std::fs::read_to_string(pki.path("new.crt")).unwrap(),
        std::fs::read_to_string(pki.path("new.key")).unwrap(),
    );
    swap_file(pki.dir.path(), "tls.key", &k);
    swap_file(pki.dir.path(), "tls.crt", &c);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let s = tls_connect(b.addr, cfg.clone()).await.unwrap();
        if served_cn(&s) == "server-2" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "new certificate not served"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The connection made before the reload is still served.
    old.write_all(&[0xC0, 0x00]).await.unwrap();
    let mut pong = [0u8; 2];
    tokio::time::timeout(Duration::from_secs(5), old.read_exact(&mut pong))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(pong, [0xD0, 0x00]);
}

#[test]
fn bad_tls_files_are_config_errors() {
    let pki = Pki::new();
    std::fs::write(pki.path("tls.key"), "garbage").unwrap();
    let cases = [
        (pki.tls_toml("none", false), "listeners.tls.key"),
        (
            pki.tls_toml("none", false).replace("tls.crt", "absent.crt"),
            "listeners.tls.cert",
        ),
        (
            format!(
                "{}client_auth = \"required\"\n",
                pki.tls_toml("none", false)
            ),
            "listeners.tls.client_auth",
        ),
    ];
    for (tls, key) in cases {
        let config = format!(
            "{}\n[admin]\nlisten = \"127.0.0.1:0\"\n[node]\ndata_dir = \"{}\"\n",
            listener("broken", &tls),
            pki.path("data").display()
        );
        std::fs::write(pki.path("bad.toml"), config).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_starling"))
            .args(["serve", "--config"])
            .arg(pki.path("bad.toml"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{err}");
        assert!(err.contains(key) && err.contains("broken"), "{key}: {err}");
    }
}

#[tokio::test]
async fn mosquitto_clients_over_mtls() {
    if !crate::harness::tool_available("mosquitto_pub", "mosquitto_clients_over_mtls") {
        return;
    }
    let pki = Pki::new();
    let b = Broker::start_raw_config(&listener("mtls", &pki.tls_toml("required", false)), "");
    // The open test policy knows certificates by their `device-` CN prefix;
    // any other CN is an unknown certificate and refused.
    let (c, k) = pki.client("device-mosquitto", 30, false);
    std::fs::write(pki.path("client.crt"), c).unwrap();
    std::fs::write(pki.path("client.key"), k).unwrap();
    let port = b.port().to_string();
    let tls_args = |with_cert: bool| {
        let mut a = vec![
            "-h".to_owned(),
            "127.0.0.1".to_owned(),
            "-p".to_owned(),
            port.clone(),
            "--cafile".to_owned(),
            pki.path("ca.crt").display().to_string(),
        ];
        if with_cert {
            a.extend([
                "--cert".to_owned(),
                pki.path("client.crt").display().to_string(),
                "--key".to_owned(),
                pki.path("client.key").display().to_string(),
            ]);
        }
        a
    };
    let publ = std::process::Command::new("mosquitto_pub")
        .args(tls_args(true))
        .args(["-t", "tls/retained", "-m", "over-tls", "-r", "-q", "1"])
        .output()
        .unwrap();
    assert!(publ.status.success(), "{publ:?}");
    let sub = std::process::Command::new("mosquitto_sub")
        .args(tls_args(true))
        .args(["-t", "tls/retained", "-C", "1", "-W", "10"])
        .output()
        .unwrap();
    assert!(sub.status.success(), "{sub:?}");
    assert_eq!(String::from_utf8_lossy(&sub.stdout).trim(), "over-tls");
    let anon = std::process::Command::new("mosquitto_pub")
        .args(tls_args(false))
        .args(["-t", "tls/anon", "-m", "x"])
        .output()
        .unwrap();
    assert!(
        !anon.status.success(),
        "published without a client certificate"
    );
}

/// Reads WebSocket messages until `n` MQTT packets arrived.
async fn ws_packets<S>(
    ws: &mut tokio_tungstenite::WebSocketStream<S>,
    n: usize,
) -> Vec<(u8, Vec<u8>)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut bytes = Vec::new();
    loop {
        let packets = split_packets(&bytes);
        if packets.len() >= n {
            return packets;
        }
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("no WebSocket message within 5 s")
            .expect("WebSocket closed")
            .unwrap();
        if let Message::Binary(b) = msg {
            bytes.extend_from_slice(&b);
        }
    }
}

async fn ws_round_trip<S>(io: S, host: &str)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut req = format!("{host}/mqtt").into_client_request().unwrap();
    req.headers_mut()
        .insert("sec-websocket-protocol", "mqtt".parse().unwrap());
    let (mut ws, resp) = tokio_tungstenite::client_async(req, io).await.unwrap();
    assert_eq!(resp.headers()["sec-websocket-protocol"], "mqtt");
    // CONNECT split across two frames.
    let connect = connect_v4("ws-client");
    let (a, rest) = connect.split_at(5);
    ws.send(Message::binary(a.to_vec())).await.unwrap();
    ws.send(Message::binary(rest.to_vec())).await.unwrap();
    let p = ws_packets(&mut ws, 1).await;
    assert_eq!(p[0], (0x20, vec![0, 0]));
    // SUBSCRIBE and PUBLISH in one frame: SUBACK, then our own message.
    let mut frame = subscribe_raw(false, 1, &[(b"ws/echo", 0)]);
    frame.extend(publish_raw(false, 0, b"ws/echo", 0, &[], b"hello"));
    ws.send(Message::binary(frame)).await.unwrap();
    let p = ws_packets(&mut ws, 2).await;
    assert_eq!(p[0].0, 0x90);
    assert_eq!(p[1].0 & 0xF0, 0x30);
    assert!(p[1].1.ends_with(b"hello"));
}

#[tokio::test]
async fn websocket_round_trip_and_wrong_path() {
    let b = Broker::start_raw_config(&listener("ws", "websocket = true"), "");
    let tcp = tokio::net::TcpStream::connect(b.addr).await.unwrap();
    ws_round_trip(tcp, &format!("ws://{}", b.addr)).await;

    let tcp = tokio::net::TcpStream::connect(b.addr).await.unwrap();
    let req = format!("ws://{}/other", b.addr)
        .into_client_request()
        .unwrap();
    assert!(tokio_tungstenite::client_async(req, tcp).await.is_err());
    // Text frames end the connection.
    let tcp = tokio::net::TcpStream::connect(b.addr).await.unwrap();
    let req = format!("ws://{}/mqtt", b.addr)
        .into_client_request()
        .unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(req, tcp).await.unwrap();
    ws.send(Message::text("CONNECT")).await.unwrap();
    let end = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap();
    assert!(!matches!(end, Some(Ok(Message::Binary(_)))), "{end:?}");
}

#[tokio::test]
async fn secure_websocket_round_trip() {
    let pki = Pki::new();
    let b = Broker::start_raw_config(
        &listener(
            "wss",
            &format!("websocket = true\n{}", pki.tls_toml("none", false)),
        ),
        "",
    );
    let tls = tls_connect(b.addr, client_config(&pki.ca_pem(), None))
        .await
        .unwrap();
    ws_round_trip(tls, "wss://localhost").await;
}

fn proxy_v2(src: &str) -> Vec<u8> {
    let src: SocketAddr = src.parse().unwrap();
    let dst: SocketAddr = if src.is_ipv4() {
        "10.0.0.1:1883".parse().unwrap()
    } else {
        "[2001:db8::1]:1883".parse().unwrap()
    };
    let h = proxy_header::ProxyHeader::with_address(proxy_header::ProxiedAddress::stream(src, dst));
    let mut buf = [0u8; 256];
    let n = h.encode_to_slice_v2(&mut buf).unwrap();
    buf[..n].to_vec()
}

fn raw_to(addr: SocketAddr) -> Raw {
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    Raw { stream }
}

#[test]
fn proxy_protocol_sets_the_client_address() {
    let listeners = format!(
        "{}{}",
        listener(
            "lb",
            "proxy_protocol = true\nproxy_trusted = [\"127.0.0.0/8\", \"::1/128\"]"
        ),
        listener(
            "untrusted-lb",
            "proxy_protocol = true\nproxy_trusted = [\"10.0.0.0/8\"]"
        ),
    );
    let b = Broker::start_raw_config(&listeners, "");
    let lb = b.listeners["lb"];

    let mut r = raw_to(lb);
    r.send(b"PROXY TCP4 203.0.113.7 10.0.0.1 4242 1883\r\n");
    r.send(&connect_v4("via-v1"));
    assert_eq!(r.packet().0, 0x20);
    assert!(
        b.wait_log(
            &["connected", "peer=203.0.113.7:4242"],
            Duration::from_secs(5)
        ),
        "v1 source address not used"
    );

    let mut r = raw_to(lb);
    let mut bytes = proxy_v2("[2001:db8::7]:31337");
    bytes.extend(connect_v4("via-v2"));
    r.send(&bytes);
    assert_eq!(r.packet().0, 0x20);
    assert!(
        b.wait_log(
            &["connected", "peer=[2001:db8::7]:31337"],
            Duration::from_secs(5)
        ),
        "v2 source address not used"
    );

    for (what, bytes, reason) in [
        (
            "malformed header",
            [
                &b"PROXY TCP4 not-an-ip 10.0.0.1 1 2\r\n"[..],
                &connect_v4("bad"),
            ]
            .concat(),
            "reason=proxy_malformed",
        ),
        ("no header", connect_v4("direct"), "reason=proxy_missing"),
    ] {
        let mut r = raw_to(lb);
        r.send(&bytes);
        let got = r.read_to_close();
        assert!(got.is_empty(), "{what}: {got:02x?}");
        assert!(
            b.wait_log(&[reason], Duration::from_secs(5)),
            "{what} not logged"
        );
    }

    let mut r = raw_to(b.listeners["untrusted-lb"]);
    r.send(&[&proxy_v2("203.0.113.9:1000")[..], &connect_v4("spoof")].concat());
    assert!(r.read_to_close().is_empty());
    assert!(b.wait_log(&["reason=proxy_untrusted"], Duration::from_secs(5)));
    assert!(!b.wait_log(&["peer=203.0.113.9"], Duration::from_millis(200)));
}

#[test]
fn listener_options_are_validated() {
    for (more, key) in [
        ("proxy_protocol = true", "listeners.proxy_trusted"),
        (
            "proxy_trusted = [\"10.0.0.0/8\"]",
            "listeners.proxy_trusted",
        ),
        (
            "websocket = true\nwebsocket_path = \"mqtt\"",
            "listeners.websocket_path",
        ),
        ("proxy_trusted = [\"not-a-net\"]", "proxy_trusted"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "{}\n[admin]\nlisten = \"127.0.0.1:0\"\n[node]\ndata_dir = \"{}\"\n",
            listener("checked", more),
            dir.path().join("data").display()
        );
        std::fs::write(dir.path().join("c.toml"), config).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_starling"))
            .args(["serve", "--config"])
            .arg(dir.path().join("c.toml"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{more}: {err}");
        assert!(err.contains(key), "{more}: {err}");
    }
}

/// Sends CONNECT as `id` over `s` and returns the 3.1.1 CONNACK return code.
async fn connack_code<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, id: &str) -> Option<u8> {
    s.write_all(&connect_v4(id)).await.ok()?;
    let mut ack = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut ack))
        .await
        .ok()?
        .ok()?;
    Some(ack[3])
}

#[tokio::test]
async fn certificate_identities_bind_the_client_id() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        r#"version = 1
[[identity]]
name = "devices"
class = "device"
cert_cn_prefix = "device-"

[[rule]]
id = "device-connect"
effect = "allow"
action = "connect"
who = "devices"
tls = true
client_id = "${cert_cn}"
"#,
    )
    .unwrap();
    let b = Broker::start_raw_config(
        &listener("mtls-opt", &pki.tls_toml("optional", false)),
        &format!("[auth]\npolicy_file = \"{}\"\n", policy.display()),
    );
    let cert = pki.client("device-9", 30, false);
    let cfg = client_config(&pki.ca_pem(), Some(&cert));
    // Its own CN as client id: accepted.
    let mut s = tls_connect(b.addr, cfg.clone()).await.unwrap();
    assert_eq!(connack_code(&mut s, "device-9").await, Some(0));
    // Another device's id with this certificate: not authorized (5).
    let mut s = tls_connect(b.addr, cfg).await.unwrap();
    assert_eq!(connack_code(&mut s, "device-1").await, Some(5));
    // No certificate, no password, anonymous disabled: not authorized.
    let mut s = tls_connect(b.addr, client_config(&pki.ca_pem(), None))
        .await
        .unwrap();
    assert_eq!(connack_code(&mut s, "device-9").await, Some(5));
    // A verified certificate that maps to no identity: not authorized.
    let stranger = pki.client("printer-1", 31, false);
    let mut s = tls_connect(b.addr, client_config(&pki.ca_pem(), Some(&stranger)))
        .await
        .unwrap();
    assert_eq!(connack_code(&mut s, "printer-1").await, Some(5));
}
