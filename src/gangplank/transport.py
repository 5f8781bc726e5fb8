"""Every exchange with the Pushgateway: push, retry, background delivery, errors.

A :class:`PushgatewaySender` owns one group on the gateway (``job`` plus a
grouping key). Callers hand it the latest state of a *part* (``"train"``,
``"test"``, ``"predict"``) with :meth:`~PushgatewaySender.submit`, which never
blocks: a daemon thread delivers it with an HTTP POST, as prometheus_client's
``pushadd_to_gateway`` does. POST replaces only the metrics with the same
names, so parts never wipe each other; every delivery carries the latest state of every
part, so a gateway that restarted empty is refilled by the next delivery.

Failures are retried with exponential backoff (``retry_initial`` doubling up
to ``retry_max``) for as long as something is undelivered; only the latest
state is kept, so memory stays bounded. A failure is logged once, as one
warning line on the ``gangplank`` logger naming the gateway and the error, and
once more when the gateway answers again. At interpreter exit every sender
gets a last try, bounded in total by ``GANGPLANK_EXIT_FLUSH_SECONDS``
(default 5 s).

Example:
    >>> from prometheus_client.core import GaugeMetricFamily
    >>> sender = PushgatewaySender("127.0.0.1:9091", "demo")  # doctest: +SKIP
    >>> sender.submit("train", [GaugeMetricFamily("demo_loss", "loss", value=0.5)])  # doctest: +SKIP
    >>> sender.flush(timeout=2.0)  # doctest: +SKIP
"""

from __future__ import annotations

import atexit
import base64
import http.client
import logging
import math
import os
import re
import ssl
import threading
import time
import urllib.error
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit, urlunsplit
from urllib.request import HTTPSHandler, Request, build_opener

from prometheus_client.exposition import CONTENT_TYPE_LATEST, default_handler, generate_latest
from prometheus_client.metrics_core import Metric

from .errors import PushError

logger = logging.getLogger("gangplank")

DEFAULT_TIMEOUT = 5.0
EXIT_FLUSH_ENV = "GANGPLANK_EXIT_FLUSH_SECONDS"
_live_senders: weakref.WeakSet[PushgatewaySender] = weakref.WeakSet()


def redact_address(address: str) -> str:
    """``address`` with any ``user:password@`` removed, for messages and logs.

    >>> redact_address("https://alice:s3cret@gw.example:9091/")
    'https://gw.example:9091/'
    """
    parts = urlsplit(address if "://" in address else f"http://{address}")
    if parts.username is None and parts.password is None:
        return address
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=host))


def address_credentials(address: str) -> tuple[str, str] | None:
    """The ``(user, password)`` written in ``address`` (percent-decoded), or ``None``.

    >>> address_credentials("http://alice:s3cret@gw.example:9091")
    ('alice', 's3cret')
    """
    parts = urlsplit(address if "://" in address else f"http://{address}")
    if parts.username is None and parts.password is None:
        return None
    return unquote(parts.username or ""), unquote(parts.password or "")


def with_basic_auth(handler: Callable, username: str, password: str) -> Callable:
    """``handler`` with an HTTP Basic ``Authorization`` header added to every push."""
    token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")

    def handle(url, method, timeout, headers, data):
        headers = list(headers) + [("Authorization", f"Basic {token}")]
        return handler(url=url, method=method, timeout=timeout, headers=headers, data=data)

    return handle


_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_PLAIN_VALUE = re.compile(r"[A-Za-z0-9_.:-]+")


def group_url(gateway: str, job: str, grouping_key: Mapping[str, str]) -> str:
    """The Pushgateway URL of a group, every awkward label value base64-encoded.

    prometheus_client encodes only values with ``/``; a value such as ``..``
    would reach the gateway as a path step and land in another group. Here
    any value that is not a plain token goes as ``name@base64/…``.

    >>> group_url("127.0.0.1:9091", "mnist", {"instance": ".."})
    'http://127.0.0.1:9091/metrics/job/mnist/instance@base64/Li4'
    """
    base = gateway if re.match(r"https?://", gateway) else f"http://{gateway}"
    path = "".join(_segment(name, value) for name, value in [("job", job), *sorted(grouping_key.items())])
    return base.rstrip("/") + "/metrics" + path


def _segment(name: str, value: str) -> str:
    if _PLAIN_VALUE.fullmatch(value) and set(value) != {"."}:
        return f"/{name}/{value}"
    encoded = base64.urlsafe_b64encode(value.encode()).decode().rstrip("=") or "="
    return f"/{name}@base64/{quote(encoded, safe='')}"


def tls_handler(ca_file: str | None = None) -> Callable:
    """A push handler that verifies the gateway's certificate against ``ca_file``.

    >>> handler = tls_handler("/etc/ssl/certs/ca-certificates.crt")  # doctest: +SKIP
    """
    context = ssl.create_default_context(cafile=ca_file)

    def handler(url, method, timeout, headers, data):
        def handle():
            request = Request(url, data=data, method=method)
            for name, value in headers:
                request.add_header(name, value)
            with build_opener(HTTPSHandler(context=context)).open(request, timeout=timeout):
                pass

        return handle

    return handler


def _check_tls(handler: Callable | None, ca_file: str | os.PathLike | None) -> None:
    """``TypeError`` for ``ca_file`` beside ``handler``: the handler connects, the CA file would go unused."""
    if handler is not None and ca_file is not None:
        raise TypeError("give ca_file or handler, not both: a handler makes its own connections (use tls_handler)")


def describe_failure(gateway: str, error: BaseException) -> PushError:
    """Turn whatever a push raised into a :class:`PushError`."""
    if isinstance(error, PushError):
        return error
    if isinstance(error, urllib.error.HTTPError):
        return PushError(gateway, error.code, str(error.reason))
    if isinstance(error, urllib.error.URLError):
        reason = error.reason
        detail = getattr(reason, "strerror", None) or str(reason)
        return PushError(gateway, None, detail)
    if isinstance(error, (TimeoutError, http.client.HTTPException, OSError)):
        detail = getattr(error, "strerror", None) or str(error) or type(error).__name__
        if isinstance(error, TimeoutError):
            detail = f"timed out ({detail})" if "timed out" not in detail else detail
        return PushError(gateway, None, detail)
    return PushError(gateway, None, f"{type(error).__name__}: {error}")


class _Snapshot:
    """A collector over a fixed list of metric families (what one push sends)."""

    def __init__(self, metrics: list[Metric]):
        self._metrics = metrics

    def collect(self) -> list[Metric]:
        return self._metrics


Families = Iterable[Metric] | Callable[[], Iterable[Metric]]


class LatestMetrics:
    """The latest metric families of each part (``"train"``, ``"test"``, ``"predict"``), and their version.

    The one store an exporter keeps: its :class:`Publisher` serves scrapes from
    it and its :class:`PushgatewaySender` pushes from it. A part may be a
    function returning the families: it is called at most once, when a push
    or a scrape first needs them, so a state replaced before that costs nothing.

    Example:
        >>> from prometheus_client.core import GaugeMetricFamily
        >>> store = LatestMetrics()
        >>> store.put("train", [GaugeMetricFamily("demo_loss", "loss", value=0.5)])
        >>> store.version, [m.name for m in store.metrics()]
        (1, ['demo_loss'])
    """

    def __init__(self):
        self._parts: dict[str, list[Metric] | _Once] = {}
        self._version = 0
        self._lock = threading.Lock()

    def put(self, part: str, metrics: Families) -> None:
        """Replace the latest state of ``part``."""
        latest = _Once(metrics) if callable(metrics) else list(metrics)
        with self._lock:
            self._parts[part] = latest
            self._version += 1

    def clear(self) -> None:
        with self._lock:
            self._parts.clear()
            self._version += 1

    @property
    def version(self) -> int:
        """How many times a part was replaced (or the store cleared)."""
        with self._lock:
            return self._version

    def snapshot(self) -> tuple[int, list[Metric]]:
        """The version and every part's families, flattened (built now if they were a function)."""
        with self._lock:
            version, parts = self._version, list(self._parts.values())
        return version, [m for part in parts for m in (part() if callable(part) else part)]

    def metrics(self) -> list[Metric]:
        return self.snapshot()[1]


class PushgatewaySender:
    """Delivers the latest metrics of one Pushgateway group, in the background.

    Args:
        pgw_addr: ``host:port``, ``http://…`` or ``https://…``.
        job: the ``job`` label of the group.
        grouping_key: further labels of the group, e.g. ``{"instance": "w0"}``.
        handler: a prometheus_client push handler (e.g. a wrapped
            ``basic_auth_handler``); the default speaks plain HTTP(S).
            Credentials written in the address (``http://user:pw@host:9091``)
            are taken out of the URL and sent as an HTTP Basic
            ``Authorization`` header through this handler; they never appear
            in a log line or an exception.
        timeout: seconds one push may take before it counts as failed.
        retry_initial, retry_max: the first and the largest delay between
            retries, in seconds.
        basic_auth: ``(user, password)`` for a gateway behind HTTP Basic auth.
        ca_file: a CA bundle to verify an ``https://`` gateway's certificate;
            not together with ``handler`` (``TypeError``: a handler does its own TLS).
        store: the :class:`LatestMetrics` to push from (its publisher's); default a store of its own.
        min_interval: seconds between the starts of two pushes at least (default 0: every new state
            at once). States submitted meanwhile are coalesced into the next push, which sends the
            latest; :meth:`flush` and :meth:`close` push at once.

    :meth:`close` is final: a closed sender refuses :meth:`submit` with ``RuntimeError``.
    """

    def __init__(
        self,
        pgw_addr: str,
        job: str,
        grouping_key: Mapping[str, str] | None = None,
        handler: Callable | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retry_initial: float = 0.5,
        retry_max: float = 10.0,
        *,
        basic_auth: tuple[str, str] | None = None,
        ca_file: str | os.PathLike | None = None,
        store: LatestMetrics | None = None,
        min_interval: float = 0.0,
    ):
        _check_tls(handler, ca_file)
        if not pgw_addr or not str(pgw_addr).strip():
            raise ValueError("Pushgateway address is empty; expected e.g. '127.0.0.1:9091' (or None for no push)")
        if not job:
            raise ValueError("job name is empty")
        if timeout is None or timeout <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self.pgw_addr = str(pgw_addr)
        self.display_address = redact_address(self.pgw_addr)
        self.job = str(job)
        self.grouping_key = {str(k): str(v) for k, v in (grouping_key or {}).items()}
        for name in self.grouping_key:
            if not _LABEL_NAME.fullmatch(name) or name == "job":
                raise ValueError(f"grouping key label {name!r} is not a valid Prometheus label name (or is 'job')")
        self.handler = handler or (tls_handler(os.fspath(ca_file)) if ca_file is not None else default_handler)
        # urllib would take "user:pw@host" for a host name: push to the address
        # without the credentials and send them as a Basic auth header instead.
        credentials = basic_auth or address_credentials(self.pgw_addr)
        self._url = group_url(self.display_address, self.job, self.grouping_key)
        self._push_handler = self.handler if credentials is None else with_basic_auth(self.handler, *credentials)
        self.timeout = float(timeout)
        self.retry_initial = float(retry_initial)
        self.retry_max = float(retry_max)
        if not min_interval >= 0:
            raise ValueError(f"min_interval must be 0 or more seconds, got {min_interval!r}")
        self.min_interval = float(min_interval)
        self._last_push = -math.inf  # monotonic start of the latest attempt

        self.store = LatestMetrics() if store is None else store
        self._delivered = self.store.version
        self._last_error: PushError | None = None
        self._failing = False
        self._retry_now = False
        self._closed = False
        self._cond = threading.Condition()
        self._io_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        _live_senders.add(self)

    # -- what callers use -------------------------------------------------
    def submit(self, part: str, metrics: Families) -> None:
        """Replace the latest state of ``part``; delivery happens in the background.

        ``metrics`` may be a function that returns the families: it is called
        only when a push needs them, so states that a newer one replaces
        before it is sent cost nothing.
        """
        with self._cond:
            self._refuse_if_closed()
        self.store.put(part, metrics)
        self.changed()

    def changed(self) -> None:
        """Deliver the store's latest state (it was replaced); ``RuntimeError`` once closed."""
        with self._cond:
            self._refuse_if_closed()
            self._ensure_thread()
            self._cond.notify_all()

    def push_now(self) -> None:
        """Deliver the latest state synchronously; raise :class:`PushError` on failure."""
        error = self._attempt()
        if error is not None:
            raise error

    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the latest state to be delivered.

        A sender that is backing off retries at once. Returns whether
        everything submitted so far has reached the gateway.
        """
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            if not self.pending or self._closed:
                return not self.pending
            self._retry_now = True
            self._ensure_thread()
            self._cond.notify_all()
            while self.pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def close(self, timeout: float = DEFAULT_TIMEOUT) -> bool:
        """Flush for at most ``timeout`` seconds, then stop the thread. Final.

        Returns whether everything reached the gateway. A closed sender is left
        out of the flush at interpreter exit and refuses :meth:`submit`.
        """
        delivered = self.flush(timeout)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        _live_senders.discard(self)
        return delivered

    def delete(self) -> None:
        """Remove the whole group from the gateway (synchronously) and stop delivering to it.

        For a retired deployment: its last values would otherwise stay on the
        gateway, and keep alerts firing, forever. Raises :class:`PushError`.
        """
        self.store.clear()
        with self._cond:
            self._delivered = self.store.version
            self._closed = True
            self._cond.notify_all()
        _live_senders.discard(self)
        with self._io_lock:
            try:
                self._push_handler(url=self._url, method="DELETE", timeout=self.timeout, headers=[], data=b"")()
            except Exception as exc:
                raise describe_failure(self.display_address, exc) from None

    @property
    def last_error(self) -> PushError | None:
        """The failure of the latest attempt, or ``None`` after a success."""
        return self._last_error

    @property
    def pending(self) -> bool:
        """Whether some submitted state has not reached the gateway yet."""
        return self._delivered < self.store.version

    # -- the work -----------------------------------------------------------
    def _refuse_if_closed(self) -> None:
        if self._closed:
            raise RuntimeError(f"the sender of job {self.job!r} is closed: close() is final")

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name=f"gangplank-push-{self.job}", daemon=True)
            self._thread.start()

    def _attempt(self) -> PushError | None:
        with self._io_lock:
            try:
                version, metrics = self.store.snapshot()
                self._push_handler(
                    url=self._url,
                    method="POST",
                    timeout=self.timeout,
                    headers=[("Content-Type", CONTENT_TYPE_LATEST)],
                    data=generate_latest(_Snapshot(metrics)),
                )()
            except Exception as exc:  # every failure becomes one PushError
                error = describe_failure(self.display_address, exc)
                self._record_failure(error)
                return error
            self._record_success(version)
            return None

    def _record_success(self, version: int) -> None:
        with self._cond:
            self._delivered = max(self._delivered, version)
            self._last_error = None
            if self._failing:
                self._failing = False
                logger.warning(
                    "gangplank: Pushgateway %s answers again; job %r delivered",
                    self.display_address,
                    self.job,
                )
            self._cond.notify_all()

    def _record_failure(self, error: PushError) -> None:
        # One warning per failure episode, however many retries fail (and
        # whatever they fail with); the next success logs the recovery.
        with self._cond:
            self._last_error = error
            if not self._failing:
                logger.warning(
                    "gangplank: %s (job %r); retrying in the background, keeping the latest state",
                    error,
                    self.job,
                )
            self._failing = True
            self._cond.notify_all()

    def _run(self) -> None:
        delay = self.retry_initial
        while True:
            with self._cond:
                while not self.pending and not self._closed:
                    self._cond.wait()
                if self._closed and not self.pending:
                    return
                self._wait_for_interval()
                self._retry_now = False
                self._last_push = time.monotonic()
            if self._attempt() is None:
                delay = self.retry_initial
                continue
            with self._cond:
                deadline = time.monotonic() + delay
                while not (self._retry_now or self._closed):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                if self._closed and not self._retry_now:
                    return
            delay = min(delay * 2, self.retry_max)

    def _wait_for_interval(self) -> None:
        """Hold the next push until ``min_interval`` after the last began (under ``_cond``); flush or close end it."""
        deadline = self._last_push + self.min_interval
        while not (self._retry_now or self._closed):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._cond.wait(remaining)


@dataclass(frozen=True)
class PushSettings:
    """Where and how an exporter pushes; ``pgw_addr=None`` means it does not push (scrape only).

    Example:
        >>> PushSettings(None).pushes
        False
    """

    pgw_addr: str | None
    handler: Callable | None = None
    timeout: float = DEFAULT_TIMEOUT
    basic_auth: tuple[str, str] | None = None
    ca_file: str | os.PathLike | None = None

    def __post_init__(self):
        _check_tls(self.handler, self.ca_file)

    @classmethod
    def of(
        cls,
        pgw_addr: str | PushSettings | None,
        *,
        handler: Callable | None = None,
        timeout: float | None = None,
        basic_auth: tuple[str, str] | None = None,
        ca_file: str | os.PathLike | None = None,
    ) -> PushSettings:
        """An exporter's ``pgw_addr`` and transport keywords as settings; ``pgw_addr`` may be settings already.

        ``None`` means "not given" for every keyword (``timeout``: the default,
        :data:`DEFAULT_TIMEOUT` seconds), so that an explicit ``timeout=5.0``
        beside a :class:`PushSettings` is refused like any other: the settings
        hold them all (``TypeError``).

        >>> PushSettings.of("127.0.0.1:9091", timeout=2).timeout
        2
        >>> PushSettings.of("127.0.0.1:9091").timeout
        5.0
        """
        if isinstance(pgw_addr, PushSettings):
            given = {"handler": handler, "timeout": timeout, "basic_auth": basic_auth, "ca_file": ca_file}
            named = [name for name, value in given.items() if value is not None]
            if named:
                raise TypeError(f"give {', '.join(named)} in the PushSettings, not beside it")
            return pgw_addr
        return cls(pgw_addr, handler, DEFAULT_TIMEOUT if timeout is None else timeout, basic_auth, ca_file)

    @property
    def pushes(self) -> bool:
        return self.pgw_addr is not None

    def sender(
        self,
        job: str,
        grouping_key: Mapping[str, str],
        store: LatestMetrics | None = None,
        min_interval: float = 0.0,
    ) -> PushgatewaySender:
        """A :class:`PushgatewaySender` of these settings for the group ``job`` + ``grouping_key``."""
        if self.pgw_addr is None:
            raise ValueError("these settings do not push (pgw_addr=None)")
        return PushgatewaySender(
            self.pgw_addr,
            job,
            grouping_key,
            self.handler,
            self.timeout,
            basic_auth=self.basic_auth,
            ca_file=self.ca_file,
            store=store,
            min_interval=min_interval,
        )


class Publisher:
    """The latest metric families of an exporter, pushed to a gateway and served to a scrape.

    :meth:`submit` replaces one part's families (``"train"``, ``"test"``,
    ``"predict"``); with a push address they go to the Pushgateway in the
    background (see :class:`PushgatewaySender`). A Publisher is also a
    prometheus_client collector: ``registry.register(publisher)`` serves the
    same families, each sample carrying the grouping labels except
    ``instance`` (the scrape sets ``job`` and ``instance``).

    Example:
        >>> from prometheus_client import CollectorRegistry, generate_latest
        >>> from prometheus_client.core import GaugeMetricFamily
        >>> publisher = Publisher(PushSettings(None), "demo", {"agent": "web"})
        >>> publisher.submit("predict", [GaugeMetricFamily("demo_up", "up", value=1)])
        >>> registry = CollectorRegistry(); registry.register(publisher)
        >>> 'demo_up{agent="web"} 1.0' in generate_latest(registry).decode()
        True
    """

    def __init__(
        self,
        settings: PushSettings,
        job: str,
        grouping_key: Mapping[str, str] | None = None,
        *,
        min_push_interval: float = 0.0,
    ):
        if not job:
            raise ValueError("job name is empty")
        self.settings = settings
        self.job = str(job)
        self.grouping_key = {str(k): str(v) for k, v in (grouping_key or {}).items()}
        self.store = LatestMetrics()
        self._sender = (
            settings.sender(self.job, self.grouping_key, self.store, min_push_interval) if settings.pushes else None
        )
        self._scrape_labels = {k: v for k, v in self.grouping_key.items() if k != "instance"}
        self._closed = False

    def submit(self, part: str, metrics: Families) -> None:
        """Replace the latest state of ``part``; never blocks. ``RuntimeError`` once closed.

        ``metrics`` may be a function returning the families: it is called at
        most once, when a push or a scrape first needs them.
        """
        if self._closed:
            raise RuntimeError(f"the publisher of job {self.job!r} is closed: close() is final")
        self.store.put(part, metrics)
        if self._sender is not None:
            self._sender.changed()

    def collect(self) -> list[Metric]:
        """The latest families of every part, labelled for a scrape."""
        return [_with_labels(m, self._scrape_labels) for m in self.store.metrics()]

    def describe(self) -> list[Metric]:
        return []  # registration must not call collect()

    # What a push-less publisher answers: nothing is ever pending or failing.
    def push_now(self) -> None:
        if self._sender is not None:
            self._sender.push_now()

    def flush(self, timeout: float) -> bool:
        return True if self._sender is None else self._sender.flush(timeout)

    def close(self, timeout: float = DEFAULT_TIMEOUT) -> bool:
        """Deliver what is pending (at most ``timeout`` seconds), then refuse :meth:`submit`. Final.

        A scrape still serves the last families.
        """
        self._closed = True
        return True if self._sender is None else self._sender.close(timeout)

    @property
    def closed(self) -> bool:
        return self._closed

    def delete(self) -> None:
        """Remove the group from the gateway (see :meth:`PushgatewaySender.delete`)."""
        if self._sender is not None:
            self._sender.delete()

    @property
    def timeout(self) -> float:
        return self.settings.timeout

    @property
    def last_error(self) -> PushError | None:
        return None if self._sender is None else self._sender.last_error

    @property
    def pending(self) -> bool:
        return False if self._sender is None else self._sender.pending


class _Once:
    """A family builder whose result is kept: pushes and scrapes of one state share one build."""

    def __init__(self, build: Callable[[], Iterable[Metric]]):
        self._build = build
        self._lock = threading.Lock()
        self._metrics: list[Metric] | None = None

    def __call__(self) -> list[Metric]:
        with self._lock:
            if self._metrics is None:
                self._metrics = list(self._build())
            return self._metrics


def _with_labels(metric: Metric, labels: Mapping[str, str]) -> Metric:
    if not labels:
        return metric
    labelled = Metric(metric.name, metric.documentation, metric.type, metric.unit)
    labelled.samples = [sample._replace(labels={**labels, **sample.labels}) for sample in metric.samples]
    return labelled


def flush_all(timeout: float) -> bool:
    """Give every live sender a last try, all within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    delivered = True
    for sender in list(_live_senders):
        if sender.pending:
            delivered &= sender.flush(max(0.0, deadline - time.monotonic()))
    return delivered


def _flush_at_exit() -> None:
    try:
        timeout = float(os.environ.get(EXIT_FLUSH_ENV, "5"))
    except ValueError:
        timeout = 5.0
    if not flush_all(timeout):
        logger.warning("gangplank: some metrics could not be delivered before exit")


atexit.register(_flush_at_exit)
