"""Settings: a TOML config file plus `SYNCMESH_*` environment variables.

Precedence, highest first: explicit overrides (CLI flags), environment,
config file, defaults. Nested settings use `__` in environment names, e.g.
`SYNCMESH_AUTH__TOKENS='{"s3cr3t": "crm"}'`.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

SYSTEM_IDENTITIES = ("crm", "billing", "erp", "ops")
SystemIdentity = Literal["crm", "billing", "erp", "ops"]
DOMAIN_SERVICES = ("customers", "catalog", "orders", "subscriptions", "invoices", "payments")


class ConfigError(Exception):
    """The configuration cannot be used. `str()` is one line fit for a user."""


class AuthSettings(BaseModel):
    # bearer token -> calling system identity
    tokens: dict[str, SystemIdentity] = Field(default_factory=dict)

    @field_validator("tokens")
    @classmethod
    def _tokens_long_enough(cls, tokens: dict[str, str]) -> dict[str, str]:
        for token in tokens:
            if len(token) < 16:
                raise ValueError("every token must be at least 16 characters long")
        return tokens

    def token_of(self, identity: str) -> str | None:
        """A bearer token bound to `identity` (the first in sorted order, so every caller and
        process picks the same one), or None when none is configured."""
        return min((t for t, who in self.tokens.items() if who == identity), default=None)


class RateLimit(BaseModel):
    """A token bucket: `burst` requests at once, refilled at `per_second` requests a second."""

    per_second: float = Field(default=50.0, gt=0)
    burst: int = Field(default=100, ge=1)


class TrytonConnectorSettings(BaseModel):
    """The ERP: one company of one Tryton database, reached over JSON-RPC."""

    url: str  # e.g. "https://erp.example.com"
    database: str
    user: str = "admin"
    password: SecretStr
    company: int = Field(default=1, ge=1)
    account: str = "default"  # names the budget/breaker/checkpoints of this connection
    # Names of Tryton records the connector uses for new documents.
    payment_term: str = ""
    payment_method: str = ""
    account_category: str = ""
    # How often ERP-owned changes (payment terms, tax ids) are polled back into syncmesh.
    poll_interval_seconds: float = Field(default=30.0, gt=0)


class HubSpotConnectorSettings(BaseModel):
    """CRM write-back to HubSpot deals (a private app's access token)."""

    access_token: SecretStr
    host: str = "https://api.hubapi.com"
    account: str = "default"


class SalesforceConnectorSettings(BaseModel):
    """CRM write-back to Salesforce opportunities (a session id / OAuth access token)."""

    instance_url: str
    session_id: SecretStr
    account: str = "default"


class StripeConnectorSettings(BaseModel):
    """The billing system: one Stripe account (subscriptions for recurring and usage lines)."""

    api_key: SecretStr
    api_base: str = "https://api.stripe.com"
    account: str = "default"  # names the budget/breaker of this account


class ConnectorsSettings(BaseModel):
    """Which vendor systems this deployment drives; unset ones are not used."""

    tryton: TrytonConnectorSettings | None = None
    stripe: StripeConnectorSettings | None = None
    hubspot: HubSpotConnectorSettings | None = None
    salesforce: SalesforceConnectorSettings | None = None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SYNCMESH_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    # Where the embedded hub keeps its SQLite files, NATS store and generated tokens.
    data_dir: Path = Path(".syncmesh")
    grpc_host: str = "127.0.0.1"
    grpc_port: int = Field(default=50051, ge=0, le=65535)
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=0, le=65535)
    # Behind a reverse proxy: take the URL a webhook vendor called (which HubSpot signs) from
    # X-Forwarded-Proto and X-Forwarded-Host. Only when the proxy sets (overwrites) them.
    http_trust_forwarded: bool = False
    # None: one SQLite file per service under data_dir. Otherwise a PostgreSQL URL;
    # each service then owns the schema `<db_schema_prefix><service>`.
    database_url: str | None = None
    db_schema_prefix: str = Field(default="syncmesh_", pattern=r"^[a-z_][a-z0-9_]*$")
    # None: the hub starts its own NATS server (JetStream, file storage under data_dir).
    # A cluster: its servers' URLs separated by commas (the client fails over between them).
    nats_url: str | None = None
    # Prefix of JetStream stream names, so several hubs can share one NATS.
    stream_prefix: str = Field(default="SYNCMESH", pattern=r"^[A-Za-z0-9_-]+$")
    # First token of every event subject: <subject_root>.<domain>.<object>.<verb>.
    subject_root: str = Field(default="syncmesh", pattern=r"^[A-Za-z0-9_-]+$")
    # Stream replicas: 1 on one server, 3 on a cluster.
    stream_replicas: int = Field(default=1, ge=1, le=5)
    # JetStream dedupes a re-published event (same Nats-Msg-Id) within this window. It must
    # outlast the relay's retry horizon: the longest a relay may be down between publishing
    # a batch and marking it published.
    duplicate_window_seconds: float = Field(default=600, gt=0)
    # Outbox relay: rows per batch and how long to sleep when the outbox is empty.
    relay_batch_size: int = Field(default=500, ge=1, le=10_000)
    relay_poll_seconds: float = Field(default=0.05, gt=0)
    # Whether `syncmesh up` runs the outbox relays in-process (else run `syncmesh relay`).
    run_relay: bool = True
    # Whether `up`/`serve` run the worker role in-process: the event consumers, the saga
    # runner and the connectors (false in the service processes of the production topology,
    # whose consumers run in `syncmesh worker` processes).
    run_consumers: bool = True
    # How many `syncmesh worker` processes `syncmesh up --processes` starts (saga and consumer
    # work is shared between them by leases and durable JetStream pull consumers).
    workers: int = Field(default=1, ge=1, le=64)
    # Event consumers (defaults; each Consumer may override): redelivery wait while a handler
    # runs silently, deliveries before an event is dead-lettered, retry backoff (exponential
    # with jitter) and how long an event may stay parked before it is dead-lettered.
    consumer_ack_wait_seconds: float = Field(default=30.0, gt=0)
    consumer_max_deliver: int = Field(default=5, ge=1)
    consumer_backoff_base_seconds: float = Field(default=0.5, gt=0)
    consumer_backoff_max_seconds: float = Field(default=60.0, gt=0)
    consumer_max_park_seconds: float = Field(default=3600.0, gt=0)
    # Sagas: how long a worker's claim on a saga lasts without renewal (a heartbeat renews it
    # every third of it while a step runs); a killed worker's sagas are taken over after it.
    saga_lease_seconds: float = Field(default=30.0, gt=0)
    # Sagas a worker runs at the same time (each with its own lease; one waiting on a vendor
    # holds up no other).
    saga_concurrency: int = Field(default=16, ge=1, le=256)
    # Renewal sagas (services/orchestration/contract_changes.py): the price uplift of a renewed
    # term, a decimal percentage such as "3.5" ("" for none).
    renewal_uplift_percent: str = Field(default="", pattern=r"^(\d{1,3}(\.\d{1,4})?)?$")
    # Scheduled jobs (subscription activation, scheduled cancellations, renewals, expiry):
    # how often each runs where the consumers run.
    job_interval_seconds: float = Field(default=60.0, gt=0)
    # Reconciliation (services/reconciliation, hosted with invoices): a scheduled run of every
    # object type when none ran within this many seconds (0: no schedule), healing if set.
    reconciliation_interval_seconds: float = Field(default=86400.0, ge=0)
    reconciliation_heal: bool = False
    # Where other domain services run when not in this process: service name -> host:port.
    peers: dict[str, str] = Field(default_factory=dict)
    # Which domain services this process hosts.
    services: list[str] = Field(default_factory=lambda: list(DOMAIN_SERVICES))
    # Deadline applied to calls whose caller set none.
    max_deadline_seconds: float = Field(default=30.0, gt=0)
    # How often health probes the databases and NATS.
    health_interval_seconds: float = Field(default=2.0, gt=0)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    # System-of-record policy (TOML); None: the shipped default, services/platform/ownership.toml.
    ownership_policy: Path | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Webhook signing secrets (never logged). During a rotation give the old and the new
    # secret separated by a comma: a request signed with either is accepted.
    stripe_webhook_secret: SecretStr | None = None  # SYNCMESH_STRIPE_WEBHOOK_SECRET
    hubspot_client_secret: SecretStr | None = None  # SYNCMESH_HUBSPOT_CLIENT_SECRET
    salesforce_webhook_secret: SecretStr | None = None  # SYNCMESH_SALESFORCE_WEBHOOK_SECRET
    # Our own client id in Salesforce: changes whose changeOrigin names it are our echoes.
    salesforce_client_id: str = "syncmesh"
    # Declared webhook sources (TOML files) beside the shipped ones in gateway/sources/,
    # and their secrets by source name (SYNCMESH_WEBHOOK_SECRETS__<NAME>).
    webhook_sources_dir: Path | None = None
    webhook_secrets: dict[str, SecretStr] = Field(default_factory=dict)
    # Connectors' outbound policy: hosts they may call although the host is (or resolves to) a
    # private, loopback, link-local or metadata address: names or addresses as written in the
    # URL, or "loopback" for every loopback address (tests: ["127.0.0.1"] or ["loopback"]).
    connector_allow_hosts: list[str] = Field(default_factory=list)
    # Request budget per vendor system (requests per second, shared by every worker process),
    # e.g. {"stripe": 24, "tryton": 50}; a system not named uses its connector's default.
    vendor_rate_limits: dict[str, float] = Field(default_factory=dict)
    # REST gateway: requests per calling identity (token bucket; 429 RATE_LIMITED past it),
    # the default and per identity, e.g. SYNCMESH_REST_RATE_LIMITS__ERP__PER_SECOND=50.
    rest_rate_limit: RateLimit = Field(default_factory=RateLimit)
    rest_rate_limits: dict[SystemIdentity, RateLimit] = Field(default_factory=dict)
    # The vendor systems the worker role drives (ERP polling, CRM write-back); see README.
    connectors: ConnectorsSettings = Field(default_factory=ConnectorsSettings)
    # Observability (docs/observability.md). /metrics needs the ops token unless public; a
    # process without the gateway serves /metrics on metrics_port when set (0: any free port).
    metrics_public: bool = False
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    # Traces: exported over OTLP/gRPC (e.g. "http://otel-collector:4317") when set, else none.
    otlp_endpoint: str | None = None
    trace_sample_ratio: float = Field(default=1.0, ge=0, le=1)
    trace_service_name: str = "syncmesh"

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, url: str | None) -> str | None:
        if url is None or url == "":
            return None
        scheme = url.split("://", 1)[0]
        if scheme not in ("postgresql", "postgres", "postgresql+psycopg"):
            raise ValueError("must be a postgresql:// URL (leave unset for embedded SQLite)")
        return "postgresql+psycopg://" + url.split("://", 1)[1]

    @field_validator("ownership_policy")
    @classmethod
    def _policy_exists(cls, path: Path | None) -> Path | None:
        if path is not None and not path.is_file():
            raise ValueError(f"ownership policy file {path} does not exist")
        return path

    @field_validator("services")
    @classmethod
    def _known_services(cls, names: list[str]) -> list[str]:
        unknown = sorted(set(names) - set(DOMAIN_SERVICES))
        if unknown:
            raise ValueError(f"unknown service(s) {', '.join(unknown)}; known: {', '.join(DOMAIN_SERVICES)}")
        return names

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML file comes from model_config["toml_file"], set by load_settings().
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))


def load_settings(config_file: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Load settings or raise ConfigError with one line that says what is wrong."""
    if config_file is None:
        config_file = os.environ.get("SYNCMESH_CONFIG") or None
    path = Path(config_file) if config_file is not None else None
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None

    class FileSettings(Settings):
        model_config = SettingsConfigDict(toml_file=path)

    try:
        return FileSettings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise ConfigError(_one_line(exc, path)) from None


def _one_line(exc: ValidationError, path: Path | None) -> str:
    problems = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "settings"
        env = "SYNCMESH_" + "__".join(str(p) for p in err["loc"][:2]).upper()
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown setting"
        problems.append(f"{field} ({env}): {message}")
    where = f" in {path} or the environment" if path else ""
    return f"invalid configuration{where}: " + "; ".join(problems)
