"""Saga steps as they are measured and traced: each run and compensation of a step is a span
(`saga step <name>`, attributes: the saga, the step, its outcome) and a latency sample in
`syncmesh_saga_step_duration_seconds` by step kind and outcome; a failure also counts in
`syncmesh_exceptions_total{component="saga"}` by its reason.

The engine wraps the plan's steps (`observed`); a wrapped step behaves as the step (its name,
run, compensate and any other attribute are the step's).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from opentelemetry import trace

from services.orchestration.steps import Done, Outcome, SagaContext, Skip, Step, Wait
from services.platform import metrics

_tracer = trace.get_tracer("syncmesh.orchestration")


def _failure(exc: BaseException) -> tuple[str, str]:
    """(outcome, reason) of a step that raised: permanent when it has a stable reason and is
    not transient (VendorError.transient, PermanentStepError), else transient."""
    reason = getattr(exc, "reason", "") or type(exc).__name__
    permanent = hasattr(exc, "reason") and not getattr(exc, "transient", False)
    return ("permanent" if permanent else "transient"), reason


class ObservedStep:
    def __init__(self, step: Step) -> None:
        self.step = step
        self.name = step.name

    def __getattr__(self, name: str) -> Any:
        return getattr(self.step, name)

    async def run(self, ctx: SagaContext) -> Outcome:
        started = time.perf_counter()
        with _tracer.start_as_current_span(
            f"saga step {metrics.step_kind(self.name)}",
            attributes={"syncmesh.saga": ctx.saga, "syncmesh.saga.step": self.name},
            record_exception=True,
        ) as span:
            try:
                outcome = await self.step.run(ctx)
            except Exception as exc:
                kind, reason = _failure(exc)
                span.set_attribute("syncmesh.saga.outcome", kind)
                span.set_attribute("syncmesh.reason", reason)
                metrics.observe_step(self.name, kind, time.perf_counter() - started, reason)
                raise
            kind = {Done: "done", Wait: "wait", Skip: "skip"}.get(type(outcome), "other")
            span.set_attribute("syncmesh.saga.outcome", kind)
            if isinstance(outcome, Wait | Skip):
                span.set_attribute("syncmesh.reason", outcome.reason)
            metrics.observe_step(self.name, kind, time.perf_counter() - started)
            return outcome

    async def compensate(self, ctx: SagaContext) -> None:
        started = time.perf_counter()
        with _tracer.start_as_current_span(
            f"saga compensate {metrics.step_kind(self.name)}",
            attributes={"syncmesh.saga": ctx.saga, "syncmesh.saga.step": self.name},
        ):
            try:
                await self.step.compensate(ctx)
            except Exception as exc:
                kind, reason = _failure(exc)
                metrics.observe_step(self.name, f"compensate_{kind}", time.perf_counter() - started, reason)
                raise
            metrics.observe_step(self.name, "compensated", time.perf_counter() - started)


def observed(steps: Iterable[Step]) -> list[Step]:
    """The plan's steps, each measured and traced."""
    return [ObservedStep(s) for s in steps]
