"""Which webhook sources this gateway serves: the built-ins whose secret is configured and
every declared source (gateway/sources/*.toml, then settings.webhook_sources_dir) whose secret
is in settings.webhook_secrets. A source without a secret is not loaded (logged at INFO;
secrets are never logged)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from gateway.webhooks import common
from gateway.webhooks.declarative import definition_name, load_definition
from gateway.webhooks.hubspot import HubSpotSource
from gateway.webhooks.model import Source
from gateway.webhooks.salesforce import SalesforceSource
from gateway.webhooks.stripe import StripeSource
from services.platform.settings import ConfigError, Settings

log = logging.getLogger(__name__)

SHIPPED_SOURCES_DIR = Path(__file__).resolve().parents[1] / "sources"

# name -> (the setting holding its secret, the source's constructor)
BUILT_IN: dict[str, tuple[str, Callable[[Settings], Source]]] = {
    "stripe": ("stripe_webhook_secret", StripeSource),
    "hubspot": ("hubspot_client_secret", HubSpotSource),
    "salesforce": ("salesforce_webhook_secret", SalesforceSource),
}


def definition_files(settings: Settings) -> list[Path]:
    """The declared-source files, shipped ones first, each directory in name order."""
    directories = [SHIPPED_SOURCES_DIR]
    if settings.webhook_sources_dir is not None:
        if not settings.webhook_sources_dir.is_dir():
            raise ConfigError(
                f"webhook_sources_dir (SYNCMESH_WEBHOOK_SOURCES_DIR): {settings.webhook_sources_dir} is not a directory"
            )
        directories.append(settings.webhook_sources_dir)
    return [path for directory in directories for path in sorted(directory.glob("*.toml"))]


def load_sources(settings: Settings) -> dict[str, Source]:
    """name -> Source for every source that can verify requests. ConfigError for a bad
    definition, a name used twice, or a secret for a source that does not exist."""
    sources: dict[str, Source] = {}
    origin: dict[str, str] = {}
    for name, (setting, build) in BUILT_IN.items():
        origin[name] = "built in"  # reserved, loaded or not
        if common.secrets_of(getattr(settings, setting)):
            sources[name] = build(settings)
        else:
            log.info("webhook source %s not loaded: %s is not set", name, setting)
    for path in definition_files(settings):
        name = definition_name(path)
        if name in origin:
            raise ConfigError(f"webhook source {path}: name {name!r} is already used by {origin[name]}")
        origin[name] = str(path)
        secrets = common.secrets_of(settings.webhook_secrets.get(name))
        source = load_definition(path, secrets)  # checked even when unused: a bad file is an error
        if not secrets:
            log.info("webhook source %s (%s) not loaded: webhook_secrets.%s is not set", name, path, name)
            continue
        sources[name] = source
    unknown = sorted(set(settings.webhook_secrets) - set(origin))
    if unknown:
        raise ConfigError(f"webhook_secrets: no declared webhook source named {', '.join(unknown)}")
    for name, loaded in sources.items():
        log.info("webhook source %s loaded (%s), applied as %s", name, origin[name], loaded.identity)
    return sources
