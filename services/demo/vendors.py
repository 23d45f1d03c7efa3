"""The vendor systems a demo runs against: a real trytond and localstripe when they are installed
(and the repository's test peers, which know how to start them, are importable: a source
checkout with the dev extras), else syncmesh's built-in loopback doubles (services/doubles/).

`open_vendors(mode, work)`: mode "auto" (real when possible, else doubles), "real" (fail when
not possible) or "doubles"; `doubles_at=(stripe_url, tryton_url)` uses doubles already serving
there (`python -m services.doubles`) instead of starting them.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.doubles import tryton as tryton_double
from services.doubles.stripe import StripeDouble
from services.doubles.tryton import TrytonDouble

DOUBLE_STRIPE_KEY = "sk_test_syncmesh_demo"


class VendorsUnavailable(Exception):
    """The real vendors were asked for and cannot be started here."""


@dataclass
class Vendors:
    kind: str  # "real" or "doubles"
    description: str  # said plainly to the user
    tryton: dict[str, Any]  # settings.connectors.tryton
    stripe: dict[str, Any]  # settings.connectors.stripe
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    @property
    def stripe_url(self) -> str:
        return str(self.stripe["api_base"])

    @property
    def stripe_key(self) -> str:
        return str(self.stripe["api_key"])

    async def close(self) -> None:
        for close in reversed(self.closers):
            with contextlib.suppress(Exception):
                await close()
        self.closers.clear()


def real_unavailable() -> str | None:
    """None when a real trytond and localstripe can be started here, else why not."""
    missing = [m for m in ("trytond", "proteus", "localstripe") if importlib.util.find_spec(m) is None]
    if missing:
        return f"{', '.join(missing)} not installed (dev extras)"
    try:
        found = importlib.util.find_spec("tests.peers.tryton")
    except ModuleNotFoundError:
        found = None
    if found is None:
        return (
            "the test peers that start them (tests/peers) are not importable: run it from a source "
            "checkout's root as `python -m services.platform.cli demo`"
        )
    return None


def _double_settings(stripe_url: str, tryton_url: str) -> tuple[dict[str, Any], dict[str, Any]]:
    tryton = {
        "url": tryton_url,
        "database": tryton_double.DATABASE,
        "user": tryton_double.USER,
        "password": tryton_double.PASSWORD,
        "company": tryton_double.COMPANY,
        "account": "demo-tryton",
        "payment_term": tryton_double.PAYMENT_TERM,
        "payment_method": tryton_double.PAYMENT_METHOD,
        "account_category": tryton_double.ACCOUNT_CATEGORY,
        "poll_interval_seconds": 0.5,
    }
    stripe = {"api_key": DOUBLE_STRIPE_KEY, "api_base": stripe_url, "account": "demo-stripe"}
    return tryton, stripe


async def start_doubles() -> tuple[StripeDouble, TrytonDouble]:
    stripe, tryton = StripeDouble(), TrytonDouble()
    await stripe.start()
    try:
        await tryton.start()
    except BaseException:
        await stripe.stop()
        raise
    return stripe, tryton


async def _doubles(doubles_at: tuple[str, str] | None) -> Vendors:
    if doubles_at is not None:
        tryton, stripe = _double_settings(*doubles_at)
        where = f"Stripe API at {doubles_at[0]}, Tryton JSON-RPC at {doubles_at[1]}"
        return Vendors(
            "doubles", f"syncmesh's built-in loopback doubles (already running: {where})", tryton, stripe
        )
    stripe_double, tryton_double_ = await start_doubles()
    tryton, stripe = _double_settings(stripe_double.url, tryton_double_.url)
    vendors = Vendors(
        "doubles",
        "syncmesh's built-in loopback doubles (services/doubles: in-memory Stripe API on "
        f"{stripe_double.url}, Tryton JSON-RPC on {tryton_double_.url}) — NOT a real Tryton or Stripe",
        tryton,
        stripe,
    )
    vendors.closers += [stripe_double.stop, tryton_double_.stop]
    return vendors


async def _real(work: Path) -> Vendors:
    from tests.peers.localstripe import start_localstripe
    from tests.peers.tryton import running_server

    stack = contextlib.ExitStack()
    (work / "localstripe").mkdir(parents=True, exist_ok=True)
    try:
        server = await asyncio.to_thread(stack.enter_context, running_server(work / "tryton"))
        local = await asyncio.to_thread(start_localstripe, work / "localstripe")
    except BaseException:
        await asyncio.to_thread(stack.close)
        raise
    stack.callback(local.stop)
    m = server.manifest
    tryton = {
        "url": server.url,
        "database": server.database,
        "user": server.user,
        "password": server.password,
        "company": m["company"],
        "account": "demo-tryton",
        "payment_term": m["payment_term_name"],
        "payment_method": m["payment_method_name"],
        "account_category": m["account_category_name"],
        "poll_interval_seconds": 0.5,
    }
    stripe = {"api_key": local.api_key, "api_base": local.url, "account": "demo-stripe"}
    vendors = Vendors(
        "real",
        f"a real trytond {_version('trytond')} on {server.url} and localstripe {_version('localstripe')} "
        f"on {local.url}, started for this demo",
        tryton,
        stripe,
    )

    async def close() -> None:
        await asyncio.to_thread(stack.close)

    vendors.closers.append(close)
    return vendors


def _version(distribution: str) -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "?"


async def open_vendors(mode: str, work: Path, doubles_at: tuple[str, str] | None = None) -> Vendors:
    if mode == "doubles" or doubles_at is not None:
        return await _doubles(doubles_at)
    why = real_unavailable()
    if why is None:
        return await _real(work)
    if mode == "real":
        raise VendorsUnavailable(f"cannot start a real Tryton and localstripe: {why}")
    vendors = await _doubles(None)
    vendors.description += f" — real vendors not used: {why}"
    return vendors
