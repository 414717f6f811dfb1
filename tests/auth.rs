//! Who may do what, over real gRPC with authentication on: every RPC of the role table refused to the roles it does
//! not name (`PERMISSION_DENIED`) and to a call without a credential (`UNAUTHENTICATED`); a source's records for
//! another enterprise refused and stored nowhere; the reviewer of record is the principal; an officer sees only its
//! regions; tokens revoked stop working; no read returns an HJ 212 password.

use crate::common::*;
use cems_sentinel::auth::policy::RPC_ROLES;
use cems_sentinel::auth::Role;
use cems_sentinel::pb;
use cems_sentinel::pb::admin_service_client::AdminServiceClient;
use cems_sentinel::pb::enforcement_service_client::EnforcementServiceClient;
use cems_sentinel::pb::ingest_service_client::IngestServiceClient;
use cems_sentinel::pb::registry_service_client::RegistryServiceClient;
use cems_sentinel::tools::feed::{connect_as, Conn};
use cems_sentinel::tools::principals::create;
use std::time::Duration;
use tonic::Code;

struct Secured {
    s: TestServer,
    addr: String,
    admin: Conn,
}

async fn secured() -> Secured {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start_with(dir, |d| {
        let mut c = test_config(d);
        c.require_auth = true;
        c
    })
    .await;
    let server = s.server.as_ref().expect("running");
    let addr = server.addr.to_string();
    let token = server
        .admin_token
        .clone()
        .expect("a new data dir gets an admin token");
    let admin = connect_as(&addr, Some(&token)).await.expect("connect");
    Secured { s, addr, admin }
}

/// The whole change audit, read as admin.
async fn audit_of(sec: &Secured) -> Vec<pb::AuditEntry> {
    AdminServiceClient::new(sec.admin.clone())
        .get_audit_log(pb::GetAuditLogRequest::default())
        .await
        .expect("audit")
        .into_inner()
        .entries
}

/// Registers enterprise `e` (region `region`) with the admin's credential.
async fn register(sec: &Secured, e: &str, region: &str) {
    let mut reg = RegistryServiceClient::new(sec.admin.clone());
    reg.upsert_enterprise(pb::Enterprise {
        id: e.into(),
        name: format!("{e} Power"),
        industry: "coal_power".into(),
        region: region.into(),
        performance_grade: "B".into(),
    })
    .await
    .expect("enterprise");
    reg.upsert_outlet(pb::Outlet {
        id: format!("{e}-s1"),
        enterprise_id: e.into(),
        name: "1# stack".into(),
        kind: pb::OutletKind::Stack as i32,
        reference_o2_pct: 6.0,
        limits_mg_m3: [("a21026".to_string(), 35.0)].into_iter().collect(),
        hj212_password: "secret-pw".into(),
        ..Default::default()
    })
    .await
    .expect("outlet");
    for (id, role, equipment, rated) in [
        ("p1", pb::MeterRole::Production, "boiler", 1000.0),
        ("t1", pb::MeterRole::Treatment, "desulfurization", 200.0),
    ] {
        reg.upsert_meter(pb::Meter {
            id: format!("{e}-{id}"),
            enterprise_id: e.into(),
            role: role as i32,
            equipment: equipment.into(),
            outlet_ids: vec![format!("{e}-s1")],
            rated_kw: rated,
            ..Default::default()
        })
        .await
        .expect("meter");
    }
}

async fn as_role(
    sec: &Secured,
    role: Role,
    enterprises: &[&str],
    regions: &[&str],
) -> (Conn, String) {
    let (p, token) = create(
        &sec.admin,
        role,
        &format!("{} tester", role.as_str()),
        enterprises.iter().map(|e| e.to_string()).collect(),
        regions.iter().map(|r| r.to_string()).collect(),
    )
    .await
    .expect("create principal");
    (
        connect_as(&sec.addr, Some(&token)).await.expect("connect"),
        p.id,
    )
}

/// Calls `path` with an empty message and returns the status code (`Ok` when admitted and answered or still
/// streaming after a second: a refusal is immediate, before the handler).
async fn code_of<T>(conn: T, path: &'static str) -> Code
where
    T: tonic::client::GrpcService<tonic::body::Body> + Send,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    <T::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    let mut grpc = tonic::client::Grpc::new(conn);
    assert!(grpc.ready().await.is_ok(), "connection not ready");
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    let call = grpc.unary(
        tonic::Request::new(()),
        http::uri::PathAndQuery::from_static(path),
        codec,
    );
    match tokio::time::timeout(Duration::from_secs(1), call).await {
        Ok(Ok(_)) | Err(_) => Code::Ok,
        Ok(Err(status)) => status.code(),
    }
}

#[tokio::test]
async fn every_rpc_refuses_the_roles_its_row_does_not_name_and_calls_without_a_credential() {
    let sec = secured().await;
    register(&sec, "e1", "r1").await;
    let roles = [Role::Source, Role::Officer, Role::Analyst, Role::Admin];
    let mut conns = Vec::new();
    for role in roles {
        conns.push((role, as_role(&sec, role, &["e1"], &[]).await.0));
    }
    let anonymous = tonic::transport::Channel::from_shared(format!("http://{}", sec.addr))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let forged = connect_as(&sec.addr, Some("snt_0000"))
        .await
        .expect("connect");
    for (path, allowed) in RPC_ROLES {
        assert_eq!(
            code_of(anonymous.clone(), path).await,
            Code::Unauthenticated,
            "{path} without a credential"
        );
        assert_eq!(
            code_of(forged.clone(), path).await,
            Code::Unauthenticated,
            "{path} with an unknown token"
        );
        for (role, conn) in &conns {
            let code = code_of(conn.clone(), path).await;
            if allowed.contains(role) {
                assert!(
                    !matches!(code, Code::PermissionDenied | Code::Unauthenticated),
                    "{path} should admit {role:?}, got {code:?}"
                );
            } else {
                assert_eq!(code, Code::PermissionDenied, "{path} must refuse {role:?}");
            }
        }
    }
    // Health stays open for load balancers.
    assert_eq!(
        code_of(anonymous.clone(), "/grpc.health.v1.Health/Check").await,
        Code::Ok
    );
}

#[tokio::test]
async fn a_source_writes_only_for_its_own_enterprises_and_nothing_of_the_other_is_stored() {
    let sec = secured().await;
    register(&sec, "e1", "r1").await;
    register(&sec, "e2", "r1").await;
    let (source, source_id) = as_role(&sec, Role::Source, &["e1"], &[]).await;
    let source_again = source.clone();
    let ack = IngestServiceClient::new(source.clone())
        .write(pb::RecordBatch {
            seq: 1,
            records: vec![
                record("e1-s1", T0, vec![measurement("a21026", 20.0)]),
                record("e2-s1", T0, vec![measurement("a21026", 999.0)]),
                record("e1-p1", T0, vec![measurement("power_kw", 800.0)]),
            ],
        })
        .await
        .expect("write answered")
        .into_inner();
    assert_eq!(ack.accepted, 2, "{ack:?}");
    assert_eq!(ack.rejected.len(), 1, "{ack:?}");
    assert_eq!(ack.rejected[0].record_index, 1);
    assert!(
        ack.rejected[0].reason.starts_with("PERMISSION_DENIED"),
        "{ack:?}"
    );
    let read = |conn: Conn, source_id: &'static str| async move {
        let mut stream = IngestServiceClient::new(conn)
            .read_records(pb::ReadRecordsRequest {
                source_id: source_id.into(),
                ..Default::default()
            })
            .await?
            .into_inner();
        let mut n = 0;
        while stream.message().await?.is_some() {
            n += 1;
        }
        Ok::<usize, tonic::Status>(n)
    };
    assert_eq!(
        read(sec.admin.clone(), "e2-s1").await.expect("admin reads"),
        0
    );
    assert_eq!(
        read(sec.admin.clone(), "e1-s1").await.expect("admin reads"),
        1
    );
    // The source reads back its own records, not the neighbour's.
    assert_eq!(read(source.clone(), "e1-s1").await.expect("own"), 1);
    let denied = read(source.clone(), "e2-s1").await.expect_err("neighbour");
    assert_eq!(denied.code(), Code::PermissionDenied);
    // Nor may it declare an operating change for the neighbour, or finalize detection.
    let change = RegistryServiceClient::new(source.clone())
        .record_operating_change(pb::OperatingChange {
            enterprise_id: "e2".into(),
            kind: pb::OperatingChangeKind::Fuel as i32,
            effective_ms: T0,
            ..Default::default()
        })
        .await
        .expect_err("other enterprise");
    assert_eq!(change.code(), Code::PermissionDenied);
    let finalize = IngestServiceClient::new(source)
        .sync(pb::SyncRequest { finalize: true })
        .await
        .expect_err("finalize");
    assert_eq!(finalize.code(), Code::PermissionDenied);
    let audit = audit_of(&sec).await;
    assert!(
        audit
            .iter()
            .any(|e| e.action == "IngestService records" && e.outcome.contains("e2-s1")),
        "{audit:?}"
    );
    // A role refused at the gate is audited with the principal who tried.
    let gate = EnforcementServiceClient::new(source_again)
        .list_anomalies(pb::ListAnomaliesRequest::default())
        .await
        .expect_err("a source does not list anomalies");
    assert_eq!(gate.code(), Code::PermissionDenied);
    let audit = audit_of(&sec).await;
    assert!(
        audit.iter().any(|e| e.principal_id == source_id
            && e.action.ends_with("/ListAnomalies")
            && e.outcome.starts_with("refused")),
        "{audit:?}"
    );
}

#[tokio::test]
async fn the_reviewer_of_record_is_the_principal_and_officers_see_only_their_regions() {
    let sec = secured().await;
    register(&sec, "e1", "r1").await;
    let (source, source_id) = as_role(&sec, Role::Source, &["e1"], &[]).await;
    let mut ingest = IngestServiceClient::new(source);
    for batch in plant_batches("e1", 0..720, 300..420, 30) {
        let ack = ingest.write(batch).await.expect("write").into_inner();
        assert!(ack.rejected.is_empty(), "{ack:?}");
    }
    IngestServiceClient::new(sec.admin.clone())
        .sync(pb::SyncRequest { finalize: true })
        .await
        .expect("sync");
    let (here, here_id) = as_role(&sec, Role::Officer, &[], &["r1"]).await;
    let (elsewhere, _) = as_role(&sec, Role::Officer, &[], &["r2"]).await;
    let list = |conn: Conn| async move {
        EnforcementServiceClient::new(conn)
            .list_anomalies(pb::ListAnomaliesRequest::default())
            .await
            .expect("list")
            .into_inner()
            .anomalies
    };
    let seen = list(here.clone()).await;
    assert!(!seen.is_empty(), "the idle scrubber is on r1's list");
    assert!(
        list(elsewhere.clone()).await.is_empty(),
        "r2's officer sees none of r1's"
    );
    let id = seen[0].id.clone();
    let refused = EnforcementServiceClient::new(elsewhere.clone())
        .get_anomaly(pb::GetAnomalyRequest { id: id.clone() })
        .await
        .expect_err("another region");
    assert_eq!(refused.code(), Code::PermissionDenied);
    let refused = EnforcementServiceClient::new(elsewhere.clone())
        .get_review_history(pb::GetAnomalyRequest { id: id.clone() })
        .await
        .expect_err("another region's review history");
    assert_eq!(refused.code(), Code::PermissionDenied);
    // Evidence goes to the region's officer, and its receipts name the source that sent the data.
    let out = tempfile::tempdir().expect("tempdir");
    let refused = cems_sentinel::tools::evidence::export(&elsewhere, &id, out.path())
        .await
        .expect_err("another region's evidence");
    assert!(refused.to_string().contains("outside"), "{refused}");
    let files = cems_sentinel::tools::evidence::export(&here, &id, out.path())
        .await
        .expect("export");
    let leaves = String::from_utf8(files["leaves.jsonl"].clone()).expect("utf8");
    assert!(
        leaves.contains(&format!("source tester ({source_id})")),
        "{leaves}"
    );
    assert!(cems_sentinel::tools::evidence::verify_dir(out.path(), None)
        .expect("readable")
        .is_ok());

    let mut enforcement = EnforcementServiceClient::new(here.clone());
    enforcement
        .review_anomaly(pb::ReviewAnomalyRequest {
            id: id.clone(),
            status: pb::ReviewStatus::Dispatched as i32,
            note: "site visit".into(),
            reviewer: "somebody else".into(),
        })
        .await
        .expect("review");
    let history = enforcement
        .get_review_history(pb::GetAnomalyRequest { id })
        .await
        .expect("history")
        .into_inner();
    let reviewer = &history.entries.last().expect("an entry").reviewer;
    assert!(
        reviewer.contains(&here_id) && !reviewer.contains("somebody"),
        "{reviewer}"
    );

    // The audit names the real principals: the admin who registered, the officer who reviewed.
    let audit = audit_of(&sec).await;
    let find = |action: &str| audit.iter().find(|e| e.action == action);
    let registered = find("UpsertEnterprise").expect("registration audited");
    assert_eq!(registered.principal_id, "p-1");
    assert!(registered.after_json.contains("r1"), "{registered:?}");
    let review = find("ReviewAnomaly").expect("review audited");
    assert_eq!(review.principal_id, here_id);
    assert!(
        review.after_json.to_lowercase().contains("dispatched"),
        "{review:?}"
    );
    assert!(audit.iter().all(|e| e.seq > 0));
}

#[tokio::test]
async fn the_admin_token_is_private_revoked_tokens_stop_and_passwords_are_never_read_back() {
    let sec = secured().await;
    register(&sec, "e1", "r1").await;
    let path = sec
        .s
        .dir
        .path()
        .join(cems_sentinel::server::ADMIN_TOKEN_FILE);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path)
            .expect("admin.token")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
    let (officer, id) = as_role(&sec, Role::Officer, &[], &[]).await;
    let topology = RegistryServiceClient::new(officer.clone())
        .get_topology(pb::GetTopologyRequest {
            enterprise_id: "e1".into(),
        })
        .await
        .expect("topology")
        .into_inner();
    assert!(topology.outlets.iter().all(|o| o.hj212_password.is_empty()));
    let listed = AdminServiceClient::new(sec.admin.clone())
        .list_principals(pb::ListPrincipalsRequest {})
        .await
        .expect("list")
        .into_inner();
    assert!(listed.principals.iter().any(|p| p.id == id));
    AdminServiceClient::new(sec.admin.clone())
        .revoke_principal(pb::RevokePrincipalRequest { id })
        .await
        .expect("revoke");
    let after = EnforcementServiceClient::new(officer)
        .list_anomalies(pb::ListAnomaliesRequest::default())
        .await
        .expect_err("revoked");
    assert_eq!(after.code(), Code::Unauthenticated);
}

/// A CA (PEM), a server certificate for `localhost` with its key, and two client certificates it signed with theirs.
struct Certs {
    ca: String,
    cert: String,
    key: String,
    client: (String, String),
    other_client: (String, String),
}

fn certificates() -> Certs {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().expect("key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let signed = |name: &str| {
        let key = KeyPair::generate().expect("key");
        let cert = CertificateParams::new(vec![name.to_string()])
            .expect("params")
            .signed_by(&key, &ca, &ca_key)
            .expect("cert");
        (cert.pem(), key.serialize_pem())
    };
    let (cert, key) = signed("localhost");
    Certs {
        client: signed("platform-1"),
        other_client: signed("platform-2"),
        ca: ca.pem(),
        cert,
        key,
    }
}

async fn tls_server(
    dir: &std::path::Path,
    tls: cems_sentinel::server::TlsFiles,
) -> cems_sentinel::server::RunningServer {
    let mut config = test_config(dir);
    config.require_auth = true;
    config.tls = Some(tls);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    cems_sentinel::server::start(config, listener)
        .await
        .expect("starts with TLS")
}

async fn list_principals(conn: anyhow::Result<Conn>) -> Result<usize, String> {
    let conn = conn.map_err(|e| format!("{e:#}"))?;
    AdminServiceClient::new(conn)
        .list_principals(pb::ListPrincipalsRequest {})
        .await
        .map(|r| r.into_inner().principals.len())
        .map_err(|s| s.to_string())
}

#[tokio::test]
async fn tls_and_mtls_with_certificates_the_test_made() {
    use cems_sentinel::server::TlsFiles;
    use cems_sentinel::tools::feed::{connect_with, ClientTls};
    let Certs {
        ca,
        cert,
        key,
        client: (client_cert, client_key),
        other_client,
    } = certificates();
    let trust = ClientTls {
        ca_pem: ca.clone().into_bytes(),
        domain: Some("localhost".into()),
        identity: None,
    };

    // TLS: a client trusting the CA gets through; a plain-text client does not.
    let dir = tempfile::tempdir().expect("tempdir");
    let server = tls_server(
        dir.path(),
        TlsFiles {
            cert_pem: cert.clone().into_bytes(),
            key_pem: key.clone().into_bytes(),
            client_ca_pem: None,
        },
    )
    .await;
    let addr = server.addr.to_string();
    let token = server.admin_token.clone().expect("admin token");
    assert_eq!(
        list_principals(connect_with(&addr, Some(&token), Some(&trust)).await).await,
        Ok(1)
    );
    assert!(
        list_principals(connect_with(&addr, Some(&token), None).await)
            .await
            .is_err()
    );
    // Another CA's client refuses the server's certificate.
    let distrust = ClientTls {
        ca_pem: certificates().ca.into_bytes(),
        ..trust.clone()
    };
    assert!(
        list_principals(connect_with(&addr, Some(&token), Some(&distrust)).await)
            .await
            .is_err()
    );
    server.shutdown().await.expect("stops");

    // mTLS: the server also demands a client certificate signed by its CA.
    let dir = tempfile::tempdir().expect("tempdir");
    let server = tls_server(
        dir.path(),
        TlsFiles {
            cert_pem: cert.into_bytes(),
            key_pem: key.into_bytes(),
            client_ca_pem: Some(ca.into_bytes()),
        },
    )
    .await;
    let addr = server.addr.to_string();
    let token = server.admin_token.clone().expect("admin token");
    assert!(
        list_principals(connect_with(&addr, Some(&token), Some(&trust)).await)
            .await
            .is_err(),
        "no client certificate"
    );
    let with_identity = ClientTls {
        identity: Some((client_cert.clone().into_bytes(), client_key.into_bytes())),
        ..trust.clone()
    };
    assert_eq!(
        list_principals(connect_with(&addr, Some(&token), Some(&with_identity)).await).await,
        Ok(1)
    );
    // A certificate the CA signed is the transport's proof, not a principal: without a token it is refused ...
    let refused = list_principals(connect_with(&addr, None, Some(&with_identity)).await).await;
    assert!(
        matches!(&refused, Err(e) if e.contains("Unauthenticated") || e.contains("credential")),
        "{refused:?}"
    );
    // ... until a principal is registered with it: then it authenticates alone, as that principal.
    let admin = connect_with(&addr, Some(&token), Some(&with_identity))
        .await
        .expect("connect");
    let created = AdminServiceClient::new(admin)
        .create_principal(pb::CreatePrincipalRequest {
            name: "platform-1 (mTLS)".into(),
            role: pb::Role::Admin as i32,
            client_cert_pem: client_cert,
            ..Default::default()
        })
        .await
        .expect("create")
        .into_inner();
    assert_eq!(
        created
            .principal
            .expect("principal")
            .client_cert_sha256
            .len(),
        64
    );
    assert_eq!(
        list_principals(connect_with(&addr, None, Some(&with_identity)).await).await,
        Ok(2)
    );
    // Another certificate of the same CA (same issuer, another key) is not that principal.
    let other = ClientTls {
        identity: Some((other_client.0.into_bytes(), other_client.1.into_bytes())),
        ..trust
    };
    assert!(
        list_principals(connect_with(&addr, None, Some(&other)).await)
            .await
            .is_err()
    );
    server.shutdown().await.expect("stops");
}

#[tokio::test]
async fn hj212_over_tls_acknowledges_and_a_plain_client_gets_nothing() {
    use cems_sentinel::hj212::{frame::encode, Framer, Packet};
    use cems_sentinel::server::TlsFiles;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls;
    let certs = certificates();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    config.tls = Some(TlsFiles {
        cert_pem: certs.cert.clone().into_bytes(),
        key_pem: certs.key.clone().into_bytes(),
        client_ca_pem: None,
    });
    config.hj212_tls = true;
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let hj = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let server = cems_sentinel::server::start_with(config, grpc, Some(hj))
        .await
        .expect("starts");
    let trust = cems_sentinel::tools::feed::ClientTls {
        ca_pem: certs.ca.clone().into_bytes(),
        domain: Some("localhost".into()),
        identity: None,
    };
    let conn =
        cems_sentinel::tools::feed::connect_with(&server.addr.to_string(), None, Some(&trust))
            .await
            .expect("connect");
    let mut reg = RegistryServiceClient::new(conn);
    reg.upsert_enterprise(pb::Enterprise {
        id: "st".into(),
        name: "station".into(),
        ..Default::default()
    })
    .await
    .expect("enterprise");
    reg.upsert_outlet(pb::Outlet {
        id: "MN1".into(),
        enterprise_id: "st".into(),
        kind: pb::OutletKind::Stack as i32,
        hj212_password: "pw-1".into(),
        ..Default::default()
    })
    .await
    .expect("outlet");
    let hj_addr = server.hj212_addr.expect("gateway");
    let packet = encode("QN=20210107160000000;ST=22;CN=2011;PW=pw-1;MN=MN1;Flag=5;CP=&&DataTime=20210107160000;a21026-Rtd=9.9,a21026-Flag=N&&");

    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject as _;
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_slice(certs.ca.as_bytes()).expect("ca"))
        .expect("root");
    let client = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(hj_addr)
        .await
        .expect("connect");
    let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client))
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").expect("name"),
            tcp,
        )
        .await
        .expect("TLS handshake");
    tls.write_all(&packet).await.expect("send");
    let mut framer = Framer::new();
    let mut buf = [0u8; 4096];
    let ack = loop {
        if let Some(frame) = framer.next_frame() {
            break Packet::parse(&frame.expect("frame").segment).expect("ack");
        }
        let n = tokio::time::timeout(Duration::from_secs(10), tls.read(&mut buf))
            .await
            .expect("ack in time")
            .expect("read");
        assert!(n > 0, "closed before the ack");
        framer.push(&buf[..n]);
    };
    assert_eq!(ack.cn.as_deref(), Some("9014"));

    // A device speaking plain TCP to the TLS port is closed without an ack, and nothing of it is stored.
    let mut plain = tokio::net::TcpStream::connect(hj_addr)
        .await
        .expect("connect");
    plain.write_all(&packet).await.expect("send");
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), plain.read_to_end(&mut got)).await;
    assert!(
        !String::from_utf8_lossy(&got).contains("CN=9014"),
        "a plain client got an ack"
    );
    let stats = server.hj212_stats.clone().expect("stats");
    assert_eq!(
        stats
            .tls_handshakes_failed
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert_eq!(
        stats
            .packets_accepted
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    server.shutdown().await.expect("stops");
}

#[tokio::test]
async fn activating_a_model_takes_an_admin_or_two_principals() {
    use cems_sentinel::pb::model_service_client::ModelServiceClient;
    let sec = secured().await;
    register(&sec, "e1", "r1").await;
    let mut ingest = IngestServiceClient::new(sec.admin.clone());
    for batch in plant_batches("e1", 0..2 * 1440, 0..0, 120) {
        let ack = ingest.write(batch).await.expect("write").into_inner();
        assert!(ack.rejected.is_empty(), "{ack:?}");
    }
    ingest
        .sync(pb::SyncRequest { finalize: false })
        .await
        .expect("sync");
    let (first, first_id) = as_role(&sec, Role::Analyst, &[], &[]).await;
    let (second, second_id) = as_role(&sec, Role::Analyst, &[], &[]).await;
    let mut models = ModelServiceClient::new(first.clone());
    let job = models
        .train(pb::TrainRequest {
            outlet_ids: vec!["e1-s1".into()],
            ..Default::default()
        })
        .await
        .expect("train")
        .into_inner();
    let job = loop {
        let j = models
            .get_training_job(pb::GetTrainingJobRequest { id: job.id })
            .await
            .expect("job")
            .into_inner();
        if j.state != pb::JobState::Running as i32 {
            break j;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(job.state, pb::JobState::Done as i32, "{job:?}");
    let id = job.model_ids[0].clone();
    let activate = |conn: Conn, id: String| async move {
        ModelServiceClient::new(conn)
            .activate_model(pb::ActivateModelRequest { id })
            .await
            .expect("activate")
            .into_inner()
    };
    // The analyst who trained it asks; asking again does not make it two principals.
    for _ in 0..2 {
        let asked = activate(first.clone(), id.clone()).await;
        assert!(!asked.active, "one analyst activated a model alone");
        assert!(asked.awaiting_approval_of.contains(&first_id), "{asked:?}");
    }
    let done = activate(second.clone(), id.clone()).await;
    assert!(
        done.active && done.awaiting_approval_of.is_empty(),
        "{done:?}"
    );
    let audit = audit_of(&sec).await;
    let approved = audit
        .iter()
        .find(|e| e.action.starts_with("ActivateModel (approving"))
        .expect("the approval is audited");
    assert_eq!(approved.principal_id, second_id);
    assert!(approved.action.contains(&first_id), "{approved:?}");
    assert_eq!(
        audit
            .iter()
            .filter(
                |e| e.action.starts_with("ActivateModel (requested") && e.principal_id == first_id
            )
            .count(),
        2
    );
    // A source may not even ask.
    let (source, _) = as_role(&sec, Role::Source, &["e1"], &[]).await;
    let refused = ModelServiceClient::new(source)
        .activate_model(pb::ActivateModelRequest { id })
        .await
        .expect_err("a source");
    assert_eq!(refused.code(), Code::PermissionDenied);
}
