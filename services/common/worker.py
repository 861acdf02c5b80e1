"""nameko plumbing for the worker role: a tracing dependency that continues the trace carried in
the AMQP headers, and a dependency that builds the service's handlers once per process."""
import logging

from nameko.extensions import DependencyProvider

from services.common import telemetry


class Tracing(DependencyProvider):
    """One consumer span per handled event, child of the publisher's span."""

    def setup(self):
        telemetry.setup(f"{self.container.service_name}-worker")

    def worker_setup(self, worker_ctx):
        data = worker_ctx.context_data or {}
        if "traceparent" not in data:  # timers and calls from outside a trace
            return
        parent = telemetry.extract_context({k: v for k, v in data.items() if isinstance(v, str)})
        name = f"{worker_ctx.service_name}.{worker_ctx.entrypoint.method_name}"
        span = telemetry.tracer().start_span(name, context=parent, kind=telemetry.trace.SpanKind.CONSUMER)
        telemetry.mark_case(data.get("case_no"), span)
        token = telemetry.attach(telemetry.trace.set_span_in_context(span, parent))
        worker_ctx.__dict__["_otel"] = (span, token)

    def worker_result(self, worker_ctx, result=None, exc_info=None):
        if exc_info is not None:
            logging.getLogger(worker_ctx.service_name).error(
                "%s failed (case %s)", worker_ctx.entrypoint.method_name,
                (worker_ctx.context_data or {}).get("case_no", "-"), exc_info=exc_info)
        span, _ = worker_ctx.__dict__.get("_otel", (None, None))
        if span is not None and exc_info is not None:
            span.record_exception(exc_info[1])
            span.set_status(telemetry.trace.Status(telemetry.trace.StatusCode.ERROR, str(exc_info[1])))

    def worker_teardown(self, worker_ctx):
        span, token = worker_ctx.__dict__.pop("_otel", (None, None))
        if span is not None:
            span.end()
            telemetry.detach(token)


class Component(DependencyProvider):
    """Builds the service's handlers with `factory()` when the container starts and hands the
    same object to every worker."""

    def __init__(self, factory):
        self.factory = factory
        self.instance = None

    def setup(self):
        self.instance = self.factory()

    def stop(self):
        close = getattr(self.instance, "close", None)
        if close:
            close()

    def get_dependency(self, worker_ctx):
        return self.instance


def event_handler(source_service, event_type):
    """nameko's event handler, with the failure rules every worker follows:
    - a domain error (the event asks for something that can no longer happen: a decided task, a
      concluded case) is logged and the message acknowledged; trying again would change nothing;
    - any other error (a store or the broker away, a bug) puts the message back in its queue after
      a pause, so nothing is lost; the pause keeps a poison message from spinning."""
    import functools
    import time

    from nameko.events import event_handler as nameko_event_handler

    from services.common.errors import DomainError

    def decorate(method):
        @functools.wraps(method)
        def run(self, payload):
            try:
                return method(self, payload)
            except DomainError as exc:
                logging.getLogger(source_service).warning(
                    "%s event for case %s not applied: %s", event_type, (payload or {}).get("case_no", "-"), exc)
            except Exception:
                time.sleep(REQUEUE_PAUSE_SECONDS)  # green under eventlet
                raise
        return nameko_event_handler(source_service, event_type, requeue_on_error=True)(run)

    return decorate


REQUEUE_PAUSE_SECONDS = 1.0
