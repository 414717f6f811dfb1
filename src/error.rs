//! The one table from module errors to gRPC status codes. Every variant is matched explicitly (no `_` arm), so a
//! new error kind forces a decision here. Internal error text is logged, not sent: clients get a stable message.

use crate::enforce::BookError;
use crate::ingest::IngestError;
use crate::registry::RegistryError;
use crate::store::StoreError;
use crate::training::catalog::CatalogError;
use tonic::{Code, Status};

/// An internal failure: logged with its cause, sent as a bare `INTERNAL` that names only where it happened.
pub(crate) fn internal(context: &str, err: &dyn std::fmt::Display) -> Status {
    tracing::error!(error = %err, context, "Internal error.");
    Status::internal(format!("internal error in {context}; see server log"))
}

/// A blocking task behind an RPC panicked or was cancelled: logged with its cause, sent as a bare `INTERNAL`.
pub(crate) fn task_failed(e: tokio::task::JoinError) -> Status {
    internal("a worker task", &e)
}

impl From<StoreError> for Status {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Engine(_) | StoreError::Corrupt { .. } | StoreError::Encode { .. } => {
                internal("store", &e)
            }
        }
    }
}

impl From<RegistryError> for Status {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::Invalid { .. } => Status::invalid_argument(e.to_string()),
            RegistryError::NotFound { .. } => Status::failed_precondition(e.to_string()),
            RegistryError::Store(inner) => inner.into(),
        }
    }
}

impl From<IngestError> for Status {
    fn from(e: IngestError) -> Self {
        match e {
            IngestError::BatchTooLarge { .. } | IngestError::TooManyValues { .. } => {
                Status::invalid_argument(e.to_string())
            }
            // Over the sender's share or the whole budget: retry later (or split, as the reason says).
            IngestError::OverBudget(_) => Status::resource_exhausted(e.to_string()),
            IngestError::ShuttingDown => Status::unavailable(e.to_string()),
            IngestError::CommitFailed(_) => {
                tracing::error!(error = %e, "Commit failed.");
                Status::new(
                    Code::Unavailable,
                    "commit failed; nothing was acknowledged, re-send the batch",
                )
            }
            IngestError::Detection(_) => internal("detection", &e),
        }
    }
}

impl From<BookError> for Status {
    fn from(e: BookError) -> Self {
        match e {
            BookError::NotFound(_) => Status::not_found(e.to_string()),
            BookError::BadPageToken | BookError::Invalid { .. } => {
                Status::invalid_argument(e.to_string())
            }
            BookError::Transition(_) => Status::failed_precondition(e.to_string()),
            BookError::Store(inner) => inner.into(),
        }
    }
}

impl From<CatalogError> for Status {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::NotFound(_) => Status::not_found(e.to_string()),
            CatalogError::Invalid(_) => Status::invalid_argument(e.to_string()),
            CatalogError::Store(inner) => inner.into(),
        }
    }
}
