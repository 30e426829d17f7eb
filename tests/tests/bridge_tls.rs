//! A bridge to a Mosquitto TLS listener that requires client certificates, with a CA,
//! server and client certificates made by the test; and the TLS mismatches a bridge must
//! report clearly (untrusted server, no client certificate).

use e2e_tests::GatewayHarness;
use e2e_tests::bridge::{bridge_config, counter, wait_status};
use e2e_tests::mosquitto::{Mosquitto, TlsFiles};
use e2e_tests::mqtt::{V4, v4_options};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rumqttc::QoS;
use std::path::{Path, PathBuf};
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(15);

/// PEM files written by [`pki`].
struct Pki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
    /// A CA that signed nothing here.
    other_ca: PathBuf,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(p, KeyPair::generate().expect("key")).expect("CA")
}

fn leaf(
    dir: &Path,
    name: &str,
    sans: &[&str],
    usage: ExtendedKeyUsagePurpose,
    issuer: &CertifiedIssuer<'static, KeyPair>,
) -> (PathBuf, PathBuf) {
    let mut p = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .expect("params");
    p.distinguished_name.push(DnType::CommonName, name);
    p.extended_key_usages = vec![usage];
    let key = KeyPair::generate().expect("key");
    let cert = p.signed_by(&key, issuer).expect("sign");
    let cert_path = dir.join(format!("{name}.pem"));
    let key_path = dir.join(format!("{name}-key.pem"));
    std::fs::write(&cert_path, cert.pem()).expect("write cert");
    std::fs::write(&key_path, key.serialize_pem()).expect("write key");
    (cert_path, key_path)
}

fn pki(dir: &Path) -> Pki {
    let ca_issuer = ca("bridge test CA");
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, ca_issuer.pem()).expect("write ca");
    let other = ca("somebody else's CA");
    let other_ca = dir.join("other-ca.pem");
    std::fs::write(&other_ca, other.pem()).expect("write other ca");
    let (server_cert, server_key) = leaf(
        dir,
        "mosquitto",
        &["localhost", "127.0.0.1"],
        ExtendedKeyUsagePurpose::ServerAuth,
        &ca_issuer,
    );
    let (client_cert, client_key) = leaf(
        dir,
        "gateway",
        &["gateway"],
        ExtendedKeyUsagePurpose::ClientAuth,
        &ca_issuer,
    );
    Pki {
        ca: ca_path,
        server_cert,
        server_key,
        client_cert,
        client_key,
        other_ca,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_over_mutual_tls_and_clear_tls_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = pki(dir.path());
    let m = Mosquitto::builder()
        .tls(TlsFiles {
            ca: pki.ca.clone(),
            cert: pki.server_cert.clone(),
            key: pki.server_key.clone(),
            require_client_cert: true,
        })
        .plain_listener()
        .start()
        .await;
    let section = |name: &str, tls: &str| {
        bridge_config(&format!(
            r#"
name = "{name}"
address = "{addr}"
client_id = "gw-{name}"
reconnect_min = "200ms"
reconnect_max = "1s"

[bridge.tls]
{tls}

[[bridge.out]]
local = "tls/#"
remote = "from-gw/{{1}}"
"#,
            addr = m.address()
        ))
    };
    let good = section(
        "good",
        &format!(
            "ca = {:?}\ncert = {:?}\nkey = {:?}",
            pki.ca, pki.client_cert, pki.client_key
        ),
    );
    let untrusted = section("untrusted", &format!("ca = {:?}", pki.other_ca));
    let no_cert = section("no-cert", &format!("ca = {:?}", pki.ca));
    let gw = GatewayHarness::new()
        .with_config(|c| c.bridge = vec![good, untrusted, no_cert])
        .start()
        .await;

    wait_status(gw.http_addr(), "good", PATIENCE, "connected", |s| {
        s["state"] == "connected" && s["tls"] == true
    })
    .await;
    let (mut remote, _) = V4::connect(v4_options(m.plain_addr(), "remote-sub")).await;
    remote.subscribe("from-gw/#", QoS::AtLeastOnce).await;
    let (publisher, _) = V4::connect(v4_options(gw.mqtt_addr(), "pub")).await;
    publisher
        .client
        .publish("tls/hello", QoS::AtLeastOnce, false, "over TLS")
        .await
        .expect("publish");
    let p = remote.next_publish().await;
    assert_eq!(p.topic, "from-gw/hello");
    assert_eq!(&p.payload[..], b"over TLS");
    wait_status(gw.http_addr(), "good", PATIENCE, "counted", |s| {
        counter(s, "forwarded_out") >= 1
    })
    .await;
    // Only the good bridge forwarded: the others never connected.
    assert!(
        remote
            .try_next_publish(Duration::from_millis(300))
            .await
            .is_none()
    );

    let s = wait_status(gw.http_addr(), "untrusted", PATIENCE, "a TLS error", |s| {
        s["last_error"].as_str().is_some_and(|e| !e.is_empty())
    })
    .await;
    assert_ne!(s["state"], "connected");
    let why = s["last_error"].as_str().unwrap_or_default();
    assert!(
        why.contains("TLS handshake") && why.contains("certificate"),
        "{why}"
    );

    let s = wait_status(gw.http_addr(), "no-cert", PATIENCE, "an error", |s| {
        s["last_error"].as_str().is_some_and(|e| !e.is_empty())
    })
    .await;
    assert_ne!(s["state"], "connected", "{s:#}");

    publisher.disconnect().await;
    remote.disconnect().await;
    gw.stop().await;
}
