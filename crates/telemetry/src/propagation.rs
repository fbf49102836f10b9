//! W3C trace context across the mesh's hops: gRPC metadata, Kafka record
//! headers and the fan-out payload all carry one `traceparent` string.
//!
//! Every helper returns at once, after one atomic load, while this process
//! exports no traces: the hot path then pays only for `tracing`'s own span
//! macros, never for parsing or formatting trace context.

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TraceContextExt as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The header, metadata key and payload field name of W3C trace context.
pub const TRACEPARENT: &str = "traceparent";

// Set once by `init` when an OTLP endpoint is configured.
static EXPORTING: AtomicBool = AtomicBool::new(false);

pub(crate) fn set_exporting(on: bool) {
    EXPORTING.store(on, Ordering::Relaxed);
}

/// True when this process exports its spans.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// Writes the current span's W3C trace context (`traceparent`, and
/// `tracestate` when set) into outgoing gRPC metadata.
pub fn inject_trace_context(metadata: &mut tonic::metadata::MetadataMap) {
    struct Metadata<'a>(&'a mut tonic::metadata::MetadataMap);

    impl Injector for Metadata<'_> {
        fn set(&mut self, key: &str, value: String) {
            if let (Ok(key), Ok(value)) = (
                tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
                tonic::metadata::MetadataValue::try_from(value.as_str()),
            ) {
                self.0.insert(key, value);
            }
        }
    }

    if !exporting() {
        return;
    }
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&context, &mut Metadata(metadata))
    });
}

/// Makes `span` a child of the trace context in incoming gRPC metadata,
/// if it holds a valid one, unless the current span (a server span that
/// already continued the caller's trace) is in that trace: `span` then
/// stays its child. Call before `span` is first entered.
pub fn set_parent_from_metadata(span: &tracing::Span, metadata: &tonic::metadata::MetadataMap) {
    struct Metadata<'a>(&'a tonic::metadata::MetadataMap);

    impl Extractor for Metadata<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).and_then(|v| v.to_str().ok())
        }

        fn keys(&self) -> Vec<&str> {
            self.0
                .keys()
                .filter_map(|k| match k {
                    tonic::metadata::KeyRef::Ascii(k) => Some(k.as_str()),
                    tonic::metadata::KeyRef::Binary(_) => None,
                })
                .collect()
        }
    }

    if !exporting() {
        return;
    }
    let context =
        opentelemetry::global::get_text_map_propagator(|p| p.extract(&Metadata(metadata)));
    let remote = context.span().span_context().trace_id();
    let local = tracing::Span::current().context();
    if local.span().span_context().trace_id() != remote {
        set_parent(span, context);
    }
}

/// Makes `span` a child of the span `traceparent` names, if it is valid.
/// Call before the span is first entered.
pub fn set_parent_from_traceparent(span: &tracing::Span, traceparent: &str) {
    if exporting() {
        set_parent(span, extract(traceparent));
    }
}

/// Links `span` to the span `traceparent` names, if it is valid: the
/// relation of a span that handles many messages to each one's send.
pub fn link_traceparent(span: &tracing::Span, traceparent: &str) {
    if !exporting() {
        return;
    }
    let context = extract(traceparent);
    let linked = context.span().span_context().clone();
    if linked.is_valid() {
        span.add_link(linked);
    }
}

/// The W3C `traceparent` of `span` itself, for a hop that carries trace
/// context as one string (a Kafka header, the fan-out payload). `None`
/// while this process exports nothing.
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    struct One(Option<String>);

    impl Injector for One {
        fn set(&mut self, key: &str, value: String) {
            if key == TRACEPARENT {
                self.0 = Some(value);
            }
        }
    }

    if !exporting() {
        return None;
    }
    let context = span.context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut one = One(None);
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&context, &mut one));
    one.0
}

fn extract(traceparent: &str) -> Context {
    struct One<'a>(&'a str);

    impl Extractor for One<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            (key == TRACEPARENT).then_some(self.0)
        }

        fn keys(&self) -> Vec<&str> {
            vec![TRACEPARENT]
        }
    }

    opentelemetry::global::get_text_map_propagator(|p| p.extract(&One(traceparent)))
}

fn set_parent(span: &tracing::Span, context: Context) {
    // An invalid context would make the span a root and cut it off from a
    // local parent it may have; it is ignored instead.
    if context.span().span_context().is_valid() {
        let _ = span.set_parent(context);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
    use opentelemetry_sdk::error::OTelSdkResult;
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    const REMOTE: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[derive(Debug, Clone, Default)]
    struct Collect(Arc<Mutex<Vec<SpanData>>>);

    impl SpanExporter for Collect {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            self.0.lock().unwrap().extend(batch);
            Ok(())
        }
    }

    /// Runs `f` under a subscriber that exports into the returned spans.
    fn traced(f: impl FnOnce()) -> Vec<SpanData> {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        set_exporting(true);
        let spans = Collect::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(spans.clone())
            .build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, f);
        drop(provider);
        spans.0.lock().unwrap().clone()
    }

    fn remote_trace() -> TraceId {
        TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap()
    }

    #[test]
    fn a_span_continues_a_traceparent_and_passes_on_its_own() {
        let mut own = None;
        let spans = traced(|| {
            let span = tracing::info_span!("child");
            set_parent_from_traceparent(&span, REMOTE);
            own = traceparent(&span);
        });
        let own = own.expect("a traceparent");
        assert!(
            own.starts_with("00-0af7651916cd43dd8448eb211c80319c-"),
            "{own}"
        );
        assert!(!own.contains("b7ad6b7169203331"), "{own} names the parent");
        let [span] = spans.as_slice() else {
            panic!("{spans:?}")
        };
        assert_eq!(span.span_context.trace_id(), remote_trace());
        assert_eq!(
            span.parent_span_id,
            SpanId::from_hex("b7ad6b7169203331").unwrap()
        );
        assert!(span.parent_span_is_remote);
    }

    #[test]
    fn grpc_metadata_carries_the_context_both_ways() {
        let spans = traced(|| {
            let sender = tracing::info_span!("sender");
            let mut metadata = tonic::metadata::MetadataMap::new();
            sender.in_scope(|| inject_trace_context(&mut metadata));
            assert!(metadata.get(TRACEPARENT).is_some());
            let receiver = tracing::info_span!(parent: None, "receiver");
            set_parent_from_metadata(&receiver, &metadata);
            drop(receiver);
            // Under a server span that continued the trace already, a
            // handler's span stays that span's child.
            let server = tracing::info_span!(parent: None, "server");
            set_parent_from_metadata(&server, &metadata);
            server.in_scope(|| {
                let handler = tracing::info_span!("handler");
                set_parent_from_metadata(&handler, &metadata);
            });
        });
        let sender = spans.iter().find(|s| s.name == "sender").unwrap();
        let receiver = spans.iter().find(|s| s.name == "receiver").unwrap();
        assert_eq!(
            receiver.span_context.trace_id(),
            sender.span_context.trace_id()
        );
        assert_eq!(receiver.parent_span_id, sender.span_context.span_id());
        let server = spans.iter().find(|s| s.name == "server").unwrap();
        let handler = spans.iter().find(|s| s.name == "handler").unwrap();
        assert_eq!(server.parent_span_id, sender.span_context.span_id());
        assert_eq!(handler.parent_span_id, server.span_context.span_id());
        assert_eq!(
            handler.span_context.trace_id(),
            sender.span_context.trace_id()
        );
    }

    #[test]
    fn a_batch_span_links_each_message() {
        let other = "00-11111111111111111111111111111111-2222222222222222-01";
        let spans = traced(|| {
            let span = tracing::info_span!("batch");
            link_traceparent(&span, REMOTE);
            link_traceparent(&span, other);
            link_traceparent(&span, "not a traceparent");
        });
        let [span] = spans.as_slice() else {
            panic!("{spans:?}")
        };
        let linked: Vec<TraceId> = span
            .links
            .iter()
            .map(|l| l.span_context.trace_id())
            .collect();
        assert_eq!(
            linked,
            [
                remote_trace(),
                TraceId::from_hex("11111111111111111111111111111111").unwrap()
            ]
        );
        assert_ne!(span.span_context.trace_id(), remote_trace());
    }

    #[test]
    fn a_malformed_traceparent_leaves_the_span_alone() {
        let spans = traced(|| {
            let span = tracing::info_span!("alone");
            set_parent_from_traceparent(&span, "00-zz-yy-01");
        });
        let [span] = spans.as_slice() else {
            panic!("{spans:?}")
        };
        assert_eq!(span.parent_span_id, SpanId::INVALID);
    }

    #[test]
    fn without_a_trace_layer_there_is_no_traceparent() {
        set_exporting(true);
        let span = tracing::info_span!("untraced");
        assert_eq!(traceparent(&span), None);
    }
}
