//! The gRPC client of the Storage Write API's `BigQueryWrite` service: write streams
//! created, finalized, and appended to over one bidirectional `AppendRows` call per
//! stream, kept open between appends and opened again after an error.
//!
//! Every call carries the bearer token of [`GoogleAuth`] in `authorization` (none
//! for an emulator) and the routing header `x-goog-request-params` BigQuery wants
//! (the table or stream the call is about). `grpc_endpoint` is
//! `https://bigquerystorage.googleapis.com` by default; `http://` (an emulator) is
//! plain HTTP/2.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use googleapis_tonic_google_cloud_bigquery_storage_v1::google::cloud::bigquery::storage::v1 as pb;
use pb::big_query_write_client::BigQueryWriteClient;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Status};

use crate::gcp::GoogleAuth;

/// The Storage Write API's endpoint.
pub const DEFAULT_GRPC_ENDPOINT: &str = "https://bigquerystorage.googleapis.com";

/// An endpoint that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error(
    "grpc_endpoint {endpoint:?}: {reason}; give a URL such as https://bigquerystorage.googleapis.com or http://127.0.0.1:9060"
)]
pub struct EndpointError {
    /// The endpoint as configured.
    pub endpoint: String,
    /// Why it cannot be used.
    pub reason: String,
}

/// A connection to the `BigQueryWrite` service (the channel connects on first use,
/// and again after it breaks).
#[derive(Clone)]
pub struct WriteClient {
    client: BigQueryWriteClient<Channel>,
    endpoint: String,
    auth: Option<Arc<GoogleAuth>>,
    timeout: Duration,
}

impl std::fmt::Debug for WriteClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteClient")
            .field("endpoint", &self.endpoint)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl WriteClient {
    /// A client of `endpoint`, authorized by `auth`, whose calls time out after
    /// `timeout`.
    pub fn new(
        endpoint: &str,
        auth: Option<Arc<GoogleAuth>>,
        timeout: Duration,
    ) -> Result<WriteClient, EndpointError> {
        let error = |reason: String| EndpointError {
            endpoint: endpoint.to_string(),
            reason,
        };
        let mut channel = Endpoint::from_shared(endpoint.to_string())
            .map_err(|e| error(e.to_string()))?
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true);
        if endpoint.starts_with("https://") {
            let tls = ClientTlsConfig::new().with_native_roots();
            channel = channel.tls_config(tls).map_err(|e| error(e.to_string()))?;
        } else if !endpoint.starts_with("http://") {
            return Err(error("it needs http:// or https://".into()));
        }
        let client = BigQueryWriteClient::new(channel.connect_lazy())
            // Rows go up to the 10 MB append limit; answers are small.
            .max_decoding_message_size(32 << 20)
            .max_encoding_message_size(32 << 20);
        Ok(WriteClient {
            client,
            endpoint: endpoint.to_string(),
            auth,
            timeout,
        })
    }

    /// The endpoint, for the logs.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// `message` with the token and routing header.
    async fn request<T>(&self, message: T, route: &str) -> Result<tonic::Request<T>, Status> {
        let mut request = tonic::Request::new(message);
        self.authorize(&mut request, route).await?;
        request.set_timeout(self.timeout);
        Ok(request)
    }

    async fn authorize<T>(
        &self,
        request: &mut tonic::Request<T>,
        route: &str,
    ) -> Result<(), Status> {
        let headers = request.metadata_mut();
        let routing = MetadataValue::try_from(route)
            .map_err(|_| Status::invalid_argument(format!("{route:?} is not a header value")))?;
        headers.insert("x-goog-request-params", routing);
        let Some(auth) = &self.auth else {
            return Ok(());
        };
        match auth.token().await {
            Ok(Some(token)) => {
                let value = MetadataValue::try_from(format!("Bearer {}", token.expose())).map_err(
                    |_| Status::unauthenticated("the access token is not a header value"),
                )?;
                headers.insert("authorization", value);
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(e) => Err(Status::unauthenticated(format!("no access token: {e}"))),
        }
    }

    /// Creates a COMMITTED stream on `table` (`projects/P/datasets/D/tables/T`): rows
    /// are visible as soon as they are appended. Returns its name.
    pub async fn create_committed(&self, table: &str) -> Result<String, Status> {
        let message = pb::CreateWriteStreamRequest {
            parent: table.to_string(),
            write_stream: Some(pb::WriteStream {
                r#type: pb::write_stream::Type::Committed as i32,
                ..Default::default()
            }),
        };
        let request = self.request(message, &format!("parent={table}")).await?;
        let stream = self.client.clone().create_write_stream(request).await?;
        Ok(stream.into_inner().name)
    }

    /// Finalizes `stream` (no more appends) and returns how many rows it holds.
    pub async fn finalize(&self, stream: &str) -> Result<i64, Status> {
        let message = pb::FinalizeWriteStreamRequest {
            name: stream.to_string(),
        };
        let request = self.request(message, &format!("name={stream}")).await?;
        let answer = self.client.clone().finalize_write_stream(request).await?;
        Ok(answer.into_inner().row_count)
    }

    /// Opens an `AppendRows` call on `stream` (a stream's name, or
    /// `<table>/streams/_default`).
    pub async fn open(&self, stream: &str) -> Result<Appender, Status> {
        let (tx, rx) = mpsc::channel(4);
        let mut request = tonic::Request::new(ReceiverStream::new(rx));
        self.authorize(&mut request, &format!("write_stream={stream}"))
            .await?;
        // The call's answers come as the requests go: the request stream must be
        // open before the call is answered, so the first request is sent with it.
        let call = {
            let mut client = self.client.clone();
            tokio::spawn(async move { client.append_rows(request).await })
        };
        Ok(Appender {
            stream: stream.to_string(),
            tx,
            call: Some(call),
            answers: None,
            first: true,
            timeout: self.timeout,
        })
    }
}

type Call = tokio::task::JoinHandle<
    Result<tonic::Response<tonic::Streaming<pb::AppendRowsResponse>>, Status>,
>;

/// One open `AppendRows` call: appends go one at a time, each answered before the
/// next is sent.
#[derive(Debug)]
pub struct Appender {
    stream: String,
    tx: mpsc::Sender<pb::AppendRowsRequest>,
    call: Option<Call>,
    answers: Option<tonic::Streaming<pb::AppendRowsResponse>>,
    /// Whether the next request is the call's first, which names the stream and
    /// carries the writer schema.
    first: bool,
    timeout: Duration,
}

/// What an append came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Appended {
    /// The rows are in the stream.
    Ok,
    /// The stream refused the append with this status; `row_errors` lists the rows
    /// it found bad (by their index in the append) and why; none was appended.
    Refused {
        /// The status.
        code: Code,
        /// Its message.
        message: String,
        /// The bad rows: index and message.
        row_errors: Vec<(usize, String)>,
    },
}

impl Appender {
    /// The stream appended to.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// Appends `rows` at `offset` (none: wherever the stream ends, as on `_default`).
    /// An `Err` is a broken call (the appender is then to be dropped); a refusal is
    /// [`Appended::Refused`].
    pub async fn append(
        &mut self,
        schema: &prost_types::DescriptorProto,
        offset: Option<i64>,
        rows: Vec<Bytes>,
    ) -> Result<Appended, Status> {
        let first = std::mem::replace(&mut self.first, false);
        let request = pb::AppendRowsRequest {
            write_stream: if first {
                self.stream.clone()
            } else {
                String::new()
            },
            offset,
            rows: Some(pb::append_rows_request::Rows::ProtoRows(
                pb::append_rows_request::ProtoData {
                    writer_schema: first.then(|| pb::ProtoSchema {
                        proto_descriptor: Some(schema.clone()),
                    }),
                    rows: Some(pb::ProtoRows {
                        serialized_rows: rows,
                    }),
                },
            )),
            ..Default::default()
        };
        if self.tx.send(request).await.is_err() {
            return Err(self.broken().await);
        }
        let answer = tokio::time::timeout(self.timeout, self.next()).await;
        let answer = match answer {
            Ok(answer) => answer?,
            Err(_) => {
                return Err(Status::deadline_exceeded(format!(
                    "no answer to an append within {:?}",
                    self.timeout
                )));
            }
        };
        Ok(match answer.response {
            Some(pb::append_rows_response::Response::Error(status)) => Appended::Refused {
                code: Code::from_i32(status.code),
                message: status.message,
                row_errors: answer
                    .row_errors
                    .into_iter()
                    .map(|e| (usize::try_from(e.index).unwrap_or(usize::MAX), e.message))
                    .collect(),
            },
            Some(pb::append_rows_response::Response::AppendResult(_)) | None => Appended::Ok,
        })
    }

    async fn next(&mut self) -> Result<pb::AppendRowsResponse, Status> {
        if self.answers.is_none() {
            let Some(call) = self.call.take() else {
                return Err(Status::unavailable("the append call is closed"));
            };
            let response = call
                .await
                .map_err(|e| Status::internal(format!("the append call failed: {e}")))??;
            self.answers = Some(response.into_inner());
        }
        let Some(answers) = self.answers.as_mut() else {
            return Err(Status::unavailable("the append call is closed"));
        };
        match answers.message().await? {
            Some(answer) => Ok(answer),
            None => Err(Status::unavailable("the server closed the append call")),
        }
    }

    /// Why the call is gone, once its request stream is.
    async fn broken(&mut self) -> Status {
        match self.next().await {
            Err(status) => status,
            Ok(_) => Status::unavailable("the append call closed"),
        }
    }
}
