//! Structured logging with `tracing`: JSON lines for collectors, readable text for terminals;
//! and, when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, OpenTelemetry traces over OTLP ([`otel`]),
//! with every JSON line inside a span carrying its `trace_id` and `span_id`.

pub mod http;
pub mod otel;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;

/// Filter used when `RUST_LOG` is not set.
pub const DEFAULT_FILTER: &str = "info,sqlx=warn,tower_http=info";

/// The `service.name` of the platform's spans unless `OTEL_SERVICE_NAME` says otherwise.
pub const SERVICE_NAME: &str = "tradeplane-platform";

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// A subscriber was already installed.
    #[error(transparent)]
    Subscriber(#[from] tracing_subscriber::util::TryInitError),
    /// The OTLP exporter could not be built from the `OTEL_*` variables.
    #[error("OpenTelemetry exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
}

/// Installs the global subscriber. `RUST_LOG` sets the filter; an invalid filter is reported and
/// the default is used, so a typo does not silence the logs. The returned guard flushes the
/// last spans when dropped; keep it until the process ends.
pub fn init(format: LogFormat) -> Result<otel::Guard, InitError> {
    let (filter, bad_filter) = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => match EnvFilter::try_new(&spec) {
            Ok(f) => (f, None),
            Err(e) => (
                EnvFilter::new(DEFAULT_FILTER),
                Some(format!("RUST_LOG={spec:?} is invalid ({e})")),
            ),
        },
        _ => (EnvFilter::new(DEFAULT_FILTER), None),
    };
    let (otel_layer, guard) = match otel::provider(SERVICE_NAME)? {
        Some(provider) => {
            let (layer, guard) = otel::layer(provider, SERVICE_NAME);
            (Some(layer), guard)
        }
        None => (None, otel::no_guard()),
    };
    let registry = tracing_subscriber::registry().with(filter).with(otel_layer);
    match format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
                    .event_format(WithTraceIds(
                        tracing_subscriber::fmt::format()
                            .json()
                            .with_current_span(true)
                            .with_span_list(false)
                            .flatten_event(true),
                    )),
            )
            .try_init()?,
        // Colours only for a person at a terminal (and not with NO_COLOR): a pipe, a file or a
        // container log would keep the escape codes.
        LogFormat::Text => registry
            .with(tracing_subscriber::fmt::layer().with_ansi(
                std::io::IsTerminal::is_terminal(&std::io::stdout())
                    && std::env::var_os("NO_COLOR").is_none(),
            ))
            .try_init()?,
    }
    if let Some(msg) = bad_filter {
        tracing::warn!("{msg}; using {DEFAULT_FILTER:?}");
    }
    if otel::enabled() {
        tracing::info!("exporting traces over OTLP/HTTP");
    }
    Ok(guard)
}

/// A JSON event format that adds `"trace_id"` and `"span_id"` to lines logged inside a traced
/// span. tracing-subscriber's JSON format has no hook for extra fields, so the line is formatted
/// into a buffer and the two fields are put before its closing brace.
struct WithTraceIds<F>(F);

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let Some((trace_id, span_id)) = otel::current_ids() else {
            return self.0.format_event(ctx, writer, event);
        };
        let mut line = String::with_capacity(256);
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        match line.rfind('}') {
            Some(end) => {
                writer.write_str(&line[..end])?;
                write!(
                    writer,
                    ",\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\""
                )?;
                writer.write_str(&line[end..])
            }
            None => writer.write_str(&line),
        }
    }
}
