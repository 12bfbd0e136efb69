//! Start-up and shutdown of the lab server: open the store, build the
//! service, bind REST and gRPC, and on the shutdown signal stop accepting,
//! end every stream and flush every pending event before returning.
//!
//! Binding is separate from running so that tests can bind `127.0.0.1:0`
//! and learn the ports before they talk to the server.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;

use tokio::net::TcpListener;

use crate::service::{LabService, Limits};
use crate::store::Store;

/// Where the server listens and keeps its history.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// REST and the dashboard.
    pub http: SocketAddr,
    /// gRPC.
    pub grpc: SocketAddr,
    /// The SQLite file (created with its migrations when missing).
    pub db: PathBuf,
    /// Limits on sessions, hosts, connections, ...
    pub limits: Limits,
}

/// Why the server could not start or stopped badly.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A port could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The database could not be opened or migrated.
    #[error("database {path}: {source}{hint}", hint = db_hint(path))]
    Store {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: crate::store::StoreError,
    },
    /// The service could not start.
    #[error("service: {0}")]
    Service(#[from] crate::service::Error),
    /// Serving failed.
    #[error("serving: {0}")]
    Io(#[from] std::io::Error),
    /// gRPC serving failed.
    #[error("grpc: {0}")]
    Grpc(#[from] tonic::transport::Error),
}

/// A server whose ports are bound and whose store is open.
pub struct Server {
    http: TcpListener,
    grpc: TcpListener,
    service: LabService,
    /// Tokens and CORS origins; open (no token, no CORS) unless [`Server::with_access`] set them.
    access: std::sync::Arc<crate::auth::AccessConfig>,
}

impl Server {
    /// Opens the store, starts the service and binds both ports.
    ///
    /// # Errors
    /// [`ServerError`] naming what failed.
    pub async fn bind(config: ServerConfig) -> Result<Server, ServerError> {
        let store =
            Store::open(&config.db).await.map_err(|source| ServerError::Store { path: config.db.clone(), source })?;
        let service = LabService::new(store, config.limits).await?;
        let http =
            TcpListener::bind(config.http).await.map_err(|source| ServerError::Bind { addr: config.http, source })?;
        let grpc =
            TcpListener::bind(config.grpc).await.map_err(|source| ServerError::Bind { addr: config.grpc, source })?;
        Ok(Server { http, grpc, service, access: std::sync::Arc::default() })
    }

    /// Puts REST, the dashboard and gRPC behind `access` (tokens, CORS).
    pub fn with_access(mut self, access: crate::auth::AccessConfig) -> Server {
        self.access = std::sync::Arc::new(access);
        self
    }

    /// The bound REST address.
    pub fn http_addr(&self) -> std::io::Result<SocketAddr> {
        self.http.local_addr()
    }

    /// The bound gRPC address.
    pub fn grpc_addr(&self) -> std::io::Result<SocketAddr> {
        self.grpc.local_addr()
    }

    /// The service, for in-process use.
    pub fn service(&self) -> &LabService {
        &self.service
    }

    /// Serves until `shutdown` resolves, then shuts down gracefully: stop
    /// accepting, end sessions and their streams, flush the store.
    ///
    /// # Errors
    /// A serving or flushing failure.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), ServerError> {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let waiter = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let router =
            crate::api::rest::auth::protect(crate::api::rest::router(self.service.clone()), self.access.clone());
        // hyper's own answers to requests it cannot parse get the JSON error body too.
        let http = axum::serve(crate::api::rest::wire::JsonErrorListener(self.http), router.into_make_service())
            .with_graceful_shutdown(waiter(stop_rx.clone()));
        let grpc =
            crate::api::grpc::serve_with_access(self.service.clone(), self.access, self.grpc, waiter(stop_rx.clone()));
        let service = self.service.clone();
        let stopper = async move {
            shutdown.await;
            tracing::info!("shutting down: ending sessions and streams, flushing events");
            let _ = stop_tx.send(true);
            service.shutdown().await
        };
        let (http, grpc, stopped) = tokio::join!(http, grpc, stopper);
        http?;
        grpc?;
        stopped?;
        tracing::info!("shut down cleanly");
        Ok(())
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// What to do about a database that would not open, when the file system
/// says why: SQLite's own "unable to open database file" names neither the
/// missing folder nor the fix.
fn db_hint(path: &std::path::Path) -> String {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    if !parent.is_dir() {
        return format!(
            " (the folder {} does not exist: create it, or give --db a path in an existing folder)",
            parent.display()
        );
    }
    if path.is_dir() {
        return " (that is a folder: give --db a file path, e.g. data/tcplab.db)".to_string();
    }
    let readonly = |p: &std::path::Path| std::fs::metadata(p).is_ok_and(|m| m.permissions().readonly());
    if readonly(path) || (!path.exists() && readonly(parent)) {
        return " (not writable: check the permissions, or give --db another path)".to_string();
    }
    String::new()
}
