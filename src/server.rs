//! Wiring: open the store, recover detection, start the writer, serve gRPC (with health and reflection), and shut
//! down in the order that loses nothing: stop accepting, finish in-flight batches, let detection checkpoint, flush.

use crate::api::{AdminApi, EnforcementApi, IngestApi, ModelApi, RegistryApi};
use crate::auth::audit::AuditLog;
use crate::auth::layer::{AuthLayer, Gate};
use crate::auth::{NewPrincipal, Principals, Role};
use crate::detect::DetectConfig;
use crate::domain::Language;
use crate::enforce::AnomalyBook;
use crate::ingest::hj212_gateway::{self, GatewayConfig, GatewayStats};
use crate::ingest::{system_now_ms, IngestConfig, Ingestor};
use crate::ledger::Signer;
use crate::models::ActiveModels;
use crate::pb::admin_service_server::AdminServiceServer;
use crate::pb::enforcement_service_server::EnforcementServiceServer;
use crate::pb::ingest_service_server::IngestServiceServer;
use crate::pb::model_service_server::ModelServiceServer;
use crate::pb::registry_service_server::RegistryServiceServer;
use crate::pipeline::task::{self, TaskConfig};
use crate::pipeline::EngineConfig;
use crate::registry::Registry;
use crate::store::Store;
pub use crate::training::RetrainSchedule;
use crate::training::{self, ModelCatalog};
use anyhow::Context as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::StreamExt as _;

/// Largest gRPC message accepted: a batch at the 100,000-measurement limit is about 2.5 MB encoded. A message is
/// decoded before its values can be counted, so this also bounds what one request can make the server allocate
/// outside the ingest memory budget.
const MAX_MESSAGE_BYTES: usize = 8 << 20;

/// Everything `sentinel serve` can be told.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Data directory of the embedded store.
    pub data_dir: PathBuf,
    /// sled page-cache budget in bytes (sled counts on-disk bytes, not RSS).
    pub cache_bytes: u64,
    /// Ingest limits.
    pub ingest: IngestConfig,
    /// Detector settings.
    pub detect: DetectConfig,
    /// Language of anomaly summaries for requests that do not ask for one (`accept-language`).
    pub language: Language,
    /// How far behind an outlet's watermark data still goes into detection.
    pub allowed_lateness: Duration,
    /// Time between detection checkpoints while data flows.
    pub checkpoint_interval: Duration,
    /// HJ 212 gateway settings (used when an HJ 212 listener is given).
    pub hj212: GatewayConfig,
    /// Scheduled retraining of every outlet's model, if wanted.
    pub retrain: Option<RetrainSchedule>,
    /// Every request needs a token (the default); `false` is `--insecure-no-auth`.
    pub require_auth: bool,
    /// TLS on the gRPC port; `None` is plain TCP (loopback, or behind a TLS-terminating proxy).
    pub tls: Option<TlsFiles>,
    /// TLS on the HJ 212 port too, with the same files (off by default: most field DAUs speak plain TCP).
    pub hj212_tls: bool,
}

/// PEM contents for TLS on the gRPC port.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The server's certificate chain.
    pub cert_pem: Vec<u8>,
    /// Its private key.
    pub key_pem: Vec<u8>,
    /// With it, clients must present a certificate signed by this CA (mTLS).
    pub client_ca_pem: Option<Vec<u8>>,
}

/// Commits waiting for detection (each holds its share of the memory budget).
const DETECT_QUEUE: usize = 1 << 16;

/// How long a stop waits for open gRPC requests before closing their connections.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Where a new data directory's first admin token is written.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";
/// The copy of record's signing key, in the data directory.
pub const LEDGER_KEY_FILE: &str = "ledger.key";

impl ServeConfig {
    /// Defaults for a data directory.
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            cache_bytes: 256 << 20,
            ingest: IngestConfig::default(),
            detect: DetectConfig::default(),
            language: Language::default(),
            allowed_lateness: Duration::from_secs(2 * 3600),
            checkpoint_interval: Duration::from_secs(2),
            hj212: GatewayConfig::default(),
            retrain: None,
            require_auth: true,
            tls: None,
            hj212_tls: false,
        }
    }
}

/// A running service.
pub struct RunningServer {
    /// The address it listens on (useful with port 0).
    pub addr: SocketAddr,
    /// The HJ 212 gateway's address, when it runs.
    pub hj212_addr: Option<SocketAddr>,
    /// The HJ 212 gateway's counters, when it runs.
    pub hj212_stats: Option<Arc<GatewayStats>>,
    /// The token in `<data-dir>/admin.token`, when authentication is on and the file is there (in-process tools
    /// use it to set up their own principals).
    pub admin_token: Option<String>,
    gateway: Option<(watch::Sender<bool>, tokio::task::JoinHandle<()>)>,
    retrain: Option<tokio::task::JoinHandle<()>>,
    shutdown: Option<oneshot::Sender<()>>,
    /// Tells open streams (Push, WatchAnomalies) to end, so a graceful stop never waits on a client.
    stopping: watch::Sender<bool>,
    serve: tokio::task::JoinHandle<anyhow::Result<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    store: Store,
}

/// A new data directory's first principal: an admin whose token goes to `<data-dir>/admin.token`, readable by the
/// owner only, so `sentinel serve` is secure from the first start and still needs no set-up step.
fn bootstrap_admin(principals: &Principals, data_dir: &std::path::Path) -> anyhow::Result<()> {
    let (admin, token) = principals.add(
        Role::Admin,
        NewPrincipal {
            name: "admin (created at first start)".into(),
            ..NewPrincipal::default()
        },
        system_now_ms(),
    )?;
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    write_secret(&path, &token)?;
    tracing::info!(id = %admin.id, path = %path.display(), "New data directory: admin token written (mode 0600); create other principals with `sentinel principals add`.");
    Ok(())
}

/// The server's signing key for the copy of record, in `<data-dir>/ledger.key` (hex PKCS#8, mode 0600), made on
/// first start. Whoever holds it can sign heads: back it up with the data, never hand it out.
fn signing_key(data_dir: &std::path::Path) -> anyhow::Result<Signer> {
    let path = data_dir.join(LEDGER_KEY_FILE);
    let pkcs8 = match std::fs::read_to_string(&path) {
        Ok(text) => crate::domain::secret::from_hex(text.trim())
            .with_context(|| format!("{} is not hex", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let pkcs8 = Signer::generate_pkcs8()?;
            write_secret(&path, &crate::domain::secret::hex(&pkcs8))?;
            tracing::info!(path = %path.display(), "New signing key for the copy of record written (mode 0600).");
            pkcs8
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let signer = Signer::from_pkcs8(&pkcs8).with_context(|| format!("{}", path.display()))?;
    tracing::info!(
        public_key = %crate::domain::secret::hex(&signer.public_key()),
        "Copy of record: heads and evidence bundles are signed with this key (publish it; `sentinel evidence head`)."
    );
    Ok(signer)
}

/// The HJ 212 port's TLS: the gRPC port's certificate and key, and its client CA when mTLS is on.
fn hj212_tls(files: &TlsFiles) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    use rustls::pki_types::{pem::PemObject as _, CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls;
    let certs = CertificateDer::pem_slice_iter(&files.cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .context("HJ 212 TLS: the certificate chain")?;
    let key = PrivateKeyDer::from_pem_slice(&files.key_pem).context("HJ 212 TLS: the key")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let config = match &files.client_ca_pem {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(ca) {
                roots.add(c.context("HJ 212 TLS: the client CA")?)?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()?;
            builder
                .with_client_cert_verifier(verifier)
                .with_single_cert(certs, key)?
        }
        None => builder.with_no_client_auth().with_single_cert(certs, key)?,
    };
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Writes a secret readable by the owner only.
///
/// # Errors
/// When the file cannot be written.
pub fn write_secret(path: &std::path::Path, secret: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut f = options
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(secret.as_bytes())?;
    f.write_all(b"\n")?;
    Ok(())
}

/// Opens everything and starts serving gRPC on `listener`.
///
/// # Errors
/// When the store cannot be opened or recovered, or a thread cannot start.
pub async fn start(config: ServeConfig, listener: TcpListener) -> anyhow::Result<RunningServer> {
    start_with(config, listener, None).await
}

/// As [`start`], with the HJ 212 gateway on `hj212` when given.
///
/// # Errors
/// When the store cannot be opened or recovered, or a thread cannot start.
pub async fn start_with(
    config: ServeConfig,
    listener: TcpListener,
    hj212: Option<TcpListener>,
) -> anyhow::Result<RunningServer> {
    let addr = listener.local_addr()?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    let dir = config.data_dir.clone();
    let cache = config.cache_bytes;
    let store = tokio::task::spawn_blocking(move || Store::open(&dir, cache))
        .await?
        .with_context(|| format!("opening store in {}", config.data_dir.display()))?;
    let registry = Arc::new(Registry::load(store.clone())?);
    let principals = Principals::load(store.clone())?;
    let gate = if config.require_auth {
        if principals.is_empty() {
            bootstrap_admin(&principals, &config.data_dir)?;
        }
        Gate::Tokens(principals.clone(), AuditLog::new(store.clone()))
    } else {
        tracing::warn!("Authentication is OFF (--insecure-no-auth): any client may write, read, review and activate as admin.");
        Gate::Disabled
    };
    let signer = Arc::new(signing_key(&config.data_dir)?);
    let book = Arc::new(AnomalyBook::load(store.clone())?);
    let active_models = Arc::new(ActiveModels::default());
    let catalog = Arc::new(ModelCatalog::open(
        store.clone(),
        registry.clone(),
        book.clone(),
        active_models.clone(),
        config.detect.clone(),
        system_now_ms,
    )?);
    // Deep enough that the writer never waits for detection (an ack must not wait for another sender's points to
    // be detected): what waits here is bounded by the ingest memory budget, which every commit's points hold until
    // detection has them.
    let (detect_tx, detect_rx) = mpsc::channel(DETECT_QUEUE);
    let task_config = TaskConfig {
        engine: EngineConfig {
            detect: config.detect.clone(),
            allowed_lateness_ms: i64::try_from(config.allowed_lateness.as_millis())
                .unwrap_or(i64::MAX),
            models: active_models,
        },
        checkpoint_interval: config.checkpoint_interval,
    };
    let detection = {
        let (store, registry, book) = (store.clone(), registry.clone(), book.clone());
        tokio::task::spawn_blocking(move || {
            task::spawn(store, registry, book, task_config, detect_rx)
        })
        .await??
    };
    let next_seq = store.last_log_seq()? + 1;
    let (ingestor, writer) = Ingestor::start(
        store.clone(),
        registry.clone(),
        config.ingest.clone(),
        detect_tx,
        next_seq,
        system_now_ms,
    )?;

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<IngestServiceServer<IngestApi>>()
        .await;
    health_reporter
        .set_serving::<RegistryServiceServer<RegistryApi>>()
        .await;
    health_reporter
        .set_serving::<EnforcementServiceServer<EnforcementApi>>()
        .await;
    health_reporter
        .set_serving::<ModelServiceServer<ModelApi>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;

    let (hj212_addr, hj212_stats, gateway) = match hj212 {
        Some(l) => {
            let hj_addr = l.local_addr()?;
            let tls = match (&config.tls, config.hj212_tls) {
                (Some(files), true) => Some(hj212_tls(files)?),
                (None, true) => anyhow::bail!("HJ 212 TLS needs the TLS certificate and key"),
                (_, false) => None,
            };
            match &tls {
                Some(_) => {
                    tracing::info!(addr = %hj_addr, mtls = config.tls.as_ref().is_some_and(|t| t.client_ca_pem.is_some()), "HJ 212 over TLS.")
                }
                None if hj_addr.ip().is_loopback() => {
                    tracing::info!(addr = %hj_addr, "HJ 212 is plain TCP on loopback.")
                }
                None => {
                    tracing::warn!(addr = %hj_addr, "HJ 212 is plain TCP: passwords and data travel in clear (for DAUs that cannot do TLS; --hj212-tls turns it on).")
                }
            }
            let stats = Arc::new(GatewayStats::default());
            let (tx, rx) = watch::channel(false);
            let handle = tokio::spawn(hj212_gateway::serve(
                l,
                ingestor.clone(),
                registry.clone(),
                config.hj212.clone(),
                stats.clone(),
                rx,
                tls,
            ));
            tracing::info!(addr = %hj_addr, "HJ 212 gateway listening.");
            (Some(hj_addr), Some(stats), Some((tx, handle)))
        }
        None => (None, None, None),
    };
    let audit = AuditLog::new(store.clone());
    let (stopping_tx, stopping) = watch::channel(false);
    let ingest_api = IngestServiceServer::new(IngestApi {
        ingestor,
        store: store.clone(),
        registry: registry.clone(),
        audit: audit.clone(),
        stopping: stopping.clone(),
    })
    .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let registry_api = RegistryServiceServer::new(RegistryApi {
        registry: registry.clone(),
        audit: audit.clone(),
    });
    let retrain = config
        .retrain
        .map(|schedule| tokio::spawn(training::schedule::run(catalog.clone(), schedule)));
    let model_api = ModelServiceServer::new(ModelApi {
        catalog,
        audit: audit.clone(),
        approvals: Default::default(),
    });
    let admin_api = AdminServiceServer::new(AdminApi {
        principals,
        audit: audit.clone(),
    });
    let enforcement_api = EnforcementServiceServer::new(EnforcementApi {
        book,
        registry: registry.clone(),
        language: config.language,
        store: store.clone(),
        equipment: config.detect.equipment,
        audit,
        signer,
        stopping,
    });

    let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
    let (enterprises, outlets, meters) = registry.counts();
    tracing::info!(%addr, enterprises, outlets, meters, data_dir = %config.data_dir.display(), "Serving.");
    // Replies are small and latency matters (acks, pages): no Nagle delay on accepted connections.
    let incoming = TcpListenerStream::new(listener).map(|conn| {
        conn.and_then(|s| {
            s.set_nodelay(true)?;
            Ok(s)
        })
    });
    let mut builder = tonic::transport::Server::builder();
    match &config.tls {
        Some(tls) => {
            let mut server_tls = tonic::transport::ServerTlsConfig::new().identity(
                tonic::transport::Identity::from_pem(&tls.cert_pem, &tls.key_pem),
            );
            if let Some(ca) = &tls.client_ca_pem {
                server_tls = server_tls.client_ca_root(tonic::transport::Certificate::from_pem(ca));
            }
            builder = builder
                .tls_config(server_tls)
                .context("TLS: the certificate or key cannot be used")?;
            tracing::info!(
                mtls = tls.client_ca_pem.is_some(),
                "gRPC over TLS{}.",
                if tls.client_ca_pem.is_some() {
                    ", client certificates required"
                } else {
                    ""
                }
            );
        }
        None if addr.ip().is_loopback() => {
            tracing::info!("gRPC is plain TCP on loopback (give --tls-cert/--tls-key for TLS).");
        }
        None => tracing::warn!(
            %addr,
            "gRPC is plain TCP on a non-loopback address: tokens and data travel in clear (give --tls-cert/--tls-key, or put a TLS proxy in front)."
        ),
    }
    let serve = tokio::spawn(async move {
        builder
            .layer(AuthLayer::new(gate))
            .add_service(health_service)
            .add_service(reflection)
            .add_service(registry_api)
            .add_service(ingest_api)
            .add_service(enforcement_api)
            .add_service(model_api)
            .add_service(admin_api)
            .serve_with_incoming_shutdown(incoming, async {
                let _ = shutdown_rx.await;
            })
            .await
            .context("gRPC server")
    });
    let admin_token = if config.require_auth {
        std::fs::read_to_string(config.data_dir.join(ADMIN_TOKEN_FILE))
            .ok()
            .map(|t| t.trim().to_string())
    } else {
        None
    };
    Ok(RunningServer {
        addr,
        hj212_addr,
        hj212_stats,
        admin_token,
        gateway,
        retrain,
        shutdown: Some(shutdown_tx),
        stopping: stopping_tx,
        serve,
        threads: vec![writer, detection],
        store,
    })
}

impl RunningServer {
    /// Graceful stop: stop accepting, let in-flight requests finish, let the writer drain and detection take its
    /// final checkpoint, flush the store.
    ///
    /// # Errors
    /// When the server task failed.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        let _ = self.stopping.send(true);
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.wait().await
    }

    /// Waits until the server stops (after [`RunningServer::shutdown`] or a fatal error), then stops the threads.
    ///
    /// # Errors
    /// When the server task failed.
    pub async fn wait(&mut self) -> anyhow::Result<()> {
        // The grace period runs from the stop, not from the wait: before a stop, serving may go on for ever.
        let grace = if self.shutdown.is_some() {
            Duration::MAX
        } else {
            STOP_GRACE
        };
        let served = match tokio::time::timeout(grace, &mut self.serve).await {
            Ok(served) => served,
            Err(_) => {
                // Streams were told to end; a connection that still holds on is not worth hanging the stop for.
                tracing::warn!(
                    grace_secs = STOP_GRACE.as_secs(),
                    "gRPC connections still open after the grace period: closing them."
                );
                self.serve.abort();
                Ok(Ok(()))
            }
        };
        // The gateway holds the ingest front door too: stop it before waiting for the writer to drain.
        if let Some((tx, handle)) = self.gateway.take() {
            let _ = tx.send(true);
            if let Err(e) = handle.await {
                tracing::error!(error = %e, "HJ 212 gateway task failed.");
            }
        }
        if let Some(r) = self.retrain.take() {
            r.abort();
        }
        // The services (and with them the last senders to the writer and detection) are dropped now; the threads
        // drain their queues and end.
        let threads = std::mem::take(&mut self.threads);
        let store = self.store.clone();
        let panicked = tokio::task::spawn_blocking(move || {
            let panicked = threads
                .into_iter()
                .map(std::thread::JoinHandle::join)
                .filter(Result::is_err)
                .count();
            store.flush().map(|()| panicked)
        })
        .await??;
        if panicked > 0 {
            tracing::error!(
                threads = panicked,
                "A writer or detection thread panicked; see above."
            );
            anyhow::bail!("{panicked} service thread(s) panicked");
        }
        tracing::info!("Stopped cleanly.");
        served?
    }

    /// Asks the server to stop without waiting.
    pub fn trigger_shutdown(&mut self) {
        let _ = self.stopping.send(true);
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
