"""OpenTelemetry tracing: one trace from the gateway through gRPC and NATS to the consumers.

Where the context travels:
- gateway HTTP: a SERVER span per request, continuing an incoming W3C `traceparent`
  (gateway/observability.py);
- gRPC: client calls inject the current context into the metadata (the OpenTelemetry gRPC
  client interceptor, installed on every grpc.aio channel made after `configure`), servers
  continue it (services/platform/server.py);
- NATS: outbox events carry the current context as `traceparent`/`tracestate`
  (services/platform/events.py), consumers continue it in their CONSUMER span
  (services/platform/consumer.py); saga steps run in spans of their own
  (services/orchestration/observe.py).

Export is off by default: the OpenTelemetry API then makes no spans (the incoming trace
context is still passed on). With `otlp_endpoint` set, `configure` installs the SDK's tracer
provider with a batching OTLP/gRPC exporter (`trace_sample_ratio` of new traces sampled,
parents' decisions kept). Tests add an in-memory exporter with `add_exporter`.
"""

from __future__ import annotations

import logging
import threading

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from services.platform.settings import Settings

log = logging.getLogger(__name__)

_lock = threading.Lock()
_provider: TracerProvider | None = None
_otlp: str | None = None


class _Processors(SpanProcessor):
    """Span processors that can be added and removed while spans are being made."""

    def __init__(self) -> None:
        self.items: tuple[SpanProcessor, ...] = ()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        for p in self.items:
            p.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        for p in self.items:
            p.on_end(span)

    def shutdown(self) -> None:
        for p in self.items:
            p.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return all(p.force_flush(timeout_millis) for p in self.items)


_processors = _Processors()


def _install(settings: Settings) -> TracerProvider:
    """The process's SDK tracer provider, installed once (the API allows one per process)."""
    global _provider
    with _lock:
        if _provider is None:
            _provider = TracerProvider(
                resource=Resource.create({"service.name": settings.trace_service_name}),
                sampler=ParentBased(TraceIdRatioBased(settings.trace_sample_ratio)),
            )
            _provider.add_span_processor(_processors)
            trace.set_tracer_provider(_provider)
            _instrument_grpc_clients()
        return _provider


def _instrument_grpc_clients() -> None:
    from opentelemetry.instrumentation.grpc import GrpcAioInstrumentorClient

    instrumentor = GrpcAioInstrumentorClient()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument()


def enabled() -> bool:
    """Whether this process records spans (an exporter is configured)."""
    return bool(_processors.items)


def configure(settings: Settings) -> None:
    """Trace export as `settings` say: OTLP/gRPC to `otlp_endpoint`, or nothing (the default).
    Safe to call from every start of the process; the first endpoint configured stays."""
    global _otlp
    if settings.otlp_endpoint is None:
        return
    _install(settings)
    with _lock:
        if _otlp is not None:
            if _otlp != settings.otlp_endpoint:
                log.warning(
                    "traces already go to %s; otlp_endpoint %s ignored", _otlp, settings.otlp_endpoint
                )
            return
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        # A collector that does not answer holds an export (and the process's exit) 5 s at most.
        exporter = OTLPSpanExporter(
            endpoint=settings.otlp_endpoint, insecure=settings.otlp_endpoint.startswith("http://"), timeout=5
        )
        _processors.items = (*_processors.items, BatchSpanProcessor(exporter))
        _otlp = settings.otlp_endpoint
    log.info("exporting traces over OTLP to %s", settings.otlp_endpoint)


def add_exporter(settings: Settings, exporter: SpanExporter) -> SpanProcessor:
    """Send every span ended from now on to `exporter` as it ends (tests: an in-memory
    exporter). Returns its processor, for `remove`."""
    _install(settings)
    processor = SimpleSpanProcessor(exporter)
    with _lock:
        _processors.items = (*_processors.items, processor)
    return processor


def remove(processor: SpanProcessor) -> None:
    with _lock:
        _processors.items = tuple(p for p in _processors.items if p is not processor)
    processor.shutdown()
