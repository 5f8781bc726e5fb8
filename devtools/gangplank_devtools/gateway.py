"""Reading what reached a real Pushgateway, and counting what a pusher sends.

Example:
    >>> samples = read_gateway("http://127.0.0.1:9091")  # doctest: +SKIP
    >>> value(samples, "gangplank_train_loss", job="mnist")  # doctest: +SKIP
    0.18
"""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def read_gateway(url: str, prefix: str = "gangplank_") -> dict[tuple[str, tuple], float]:
    """Every sample on the gateway whose name starts with ``prefix``, keyed by (name, sorted labels)."""
    with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith(prefix):
                samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name, **labels):
    """The one sample called ``name`` whose labels include ``labels``; ``KeyError`` if there are none or several."""
    hits = [
        v for (n, lab), v in samples.items() if n == name and all(dict(lab).get(k) == str(w) for k, w in labels.items())
    ]
    if len(hits) != 1:
        raise KeyError(f"{name}{labels}: {len(hits)} samples; names present: {sorted({n for n, _ in samples})}")
    return hits[0]


def counting_handler(calls: list, handler=None):
    """A push handler that records ``(method, url)`` of every push, then hands over to ``handler``."""
    from prometheus_client.exposition import default_handler

    inner = handler or default_handler

    def handle(url, method, timeout, headers, data):
        calls.append((method, url))
        return inner(url=url, method=method, timeout=timeout, headers=headers, data=data)

    return handle
