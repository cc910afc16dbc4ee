//! Verification: registered so reflection and clients see the whole contract,
//! answering UNIMPLEMENTED until they are built on the workflow engine (`crates/provision`).
//! Callers are still authenticated first, so the role rules are visible now.

use std::pin::Pin;

use onboard_proto::v1 as pb;
use onboard_proto::v1::verification_server::Verification;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::App;
use crate::auth::Role;
use crate::error::ServerError;

/// A server stream of `T`.
pub type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The not-yet-built services.
#[derive(Debug, Clone)]
pub struct Pending {
    /// For authentication.
    app: App,
}

impl Pending {
    /// Stubs over `app`.
    pub fn new(app: App) -> Self {
        Self { app }
    }

    /// Authenticates (operators only), then says the RPC is not built yet.
    fn refuse<T, R>(&self, req: &Request<T>, service: &str, rpc: &str) -> Result<R, Status> {
        self.app.auth().authorize(req, &[Role::Operator])?;
        Err(ServerError::Unimplemented(format!(
            "{service}.{rpc} is not implemented yet (issue 4/5)"
        ))
        .into())
    }
}

/// Writes a whole service impl whose every method refuses. The impl (with its
/// `async_trait` attribute) is generated inside the macro so the attribute sees the methods.
macro_rules! refusing {
    ($trait:path, $service:literal;
     $(type $assoc:ident = $ty:ty;)*
     methods:
     $($method:ident : $rpc:literal ($req:ty) -> $resp:ty;)*) => {
        #[tonic::async_trait]
        impl $trait for Pending {
            $(type $assoc = $ty;)*
            $(
                async fn $method(
                    &self,
                    request: Request<$req>,
                ) -> Result<Response<$resp>, Status> {
                    self.refuse(&request, $service, $rpc)
                }
            )*
        }
    };
}

refusing! { Verification, "Verification";
    methods:
    verify: "Verify"(pb::VerifyRequest) -> pb::VerifyReport;
}
