# -*- coding: utf-8 -*-
# Copyright (c) hashistack.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Retries and long-running-operation waits (private API).

``PIPELINE_RETRY_OPTIONS``          client options of the SDK pipeline's per-request retry (layer 1 below).
``retry_after_seconds(exc)``        the wait the server asked for (Retry-After / x-ms-retry-after-ms), or None.
``RetryPolicy(attempts, deadline).call(fn, *args, **kwargs)``  operation-level retry (layer 2 below).
``wait_for_lro(poller, timeout, what)``  wait for an SDK ``LROPoller``; ``AzureOperationTimeout`` says what to do.

Retries
-------
Two layers, deliberately not multiplied blindly:

1. Per HTTP request, the SDK pipeline ``RetryPolicy`` (configured here with
   ``PIPELINE_RETRY_OPTIONS``: 3 retries, exponential backoff capped at 30 s, honouring
   ``Retry-After``/``x-ms-retry-after-ms``) re-sends 408/429/5xx and connection failures.
   This covers LRO status polls too, so a throttled poll does not restart the operation.
2. ``RetryPolicy`` here wraps a *whole* operation (a GET, or start + wait of a PUT/DELETE/POST,
   all idempotent in ARM). It only acts when layer 1 gave up or when an LRO *ended* in a
   transient failure (operation status ``Failed`` with a 5xx/throttling code), which layer 1
   cannot see. It makes at most ``attempts`` (3) tries, sleeps honouring ``Retry-After`` (falling
   back to exponential backoff), and never sleeps beyond a shared ``deadline`` (monotonic clock)
   for the whole module run. Worst case per operation is therefore
   ``(PIPELINE_RETRY_TOTAL + 1) * attempts`` = 12 HTTP attempts, all inside the deadline,
   instead of an unbounded product of retry loops.
"""

from __future__ import annotations

import email.utils
import time

from ansible_collections.hashistack.azure.plugins.module_utils._errors import AzureOperationTimeout, is_transient
from ansible_collections.hashistack.azure.plugins.module_utils._sdk import AzureError

PIPELINE_RETRY_TOTAL = 3
# Passed to every SDK client (and the inventory's REST client) by ``AzureSession.client``.
PIPELINE_RETRY_OPTIONS = dict(retry_total=PIPELINE_RETRY_TOTAL, retry_backoff_factor=1.0, retry_backoff_max=30)


def retry_after_seconds(exc, now=None):
    """Seconds the server asked us to wait (Retry-After / x-ms-retry-after-ms), or None."""
    response = getattr(exc, 'response', None)
    headers = getattr(response, 'headers', None) or {}
    try:
        value = headers.get('x-ms-retry-after-ms') or headers.get('retry-after-ms')
        if value:
            return max(0.0, float(value) / 1000.0)
        value = headers.get('Retry-After') or headers.get('retry-after')
    except AttributeError:
        return None
    if not value:
        return None
    value = str(value).strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


class RetryPolicy:
    """Retry a whole operation on transient errors, honouring Retry-After, bounded by attempts and a deadline."""

    def __init__(self, attempts=3, deadline=600.0, base_delay=2.0, max_delay=60.0, sleep=time.sleep, clock=time.monotonic):
        self.attempts = max(1, int(attempts))
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.sleep = sleep
        self.clock = clock
        self.deadline = clock() + deadline
        self.retries = 0

    def delay_for(self, exc, attempt):
        """Delay before the next attempt (attempt counts from 1)."""
        delay = retry_after_seconds(exc)
        if delay is None:
            delay = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return delay

    def call(self, fn, *args, **kwargs):
        attempt = 0
        while True:
            attempt += 1
            try:
                return fn(*args, **kwargs)
            except AzureError as exc:
                if attempt >= self.attempts or not is_transient(exc):
                    raise
                delay = self.delay_for(exc, attempt)
                if self.clock() + delay > self.deadline:
                    raise
                self.retries += 1
                self.sleep(delay)


def wait_for_lro(poller, timeout, what):
    """Wait for an SDK LROPoller and return its result; raise AzureOperationTimeout after ``timeout`` s."""
    poller.wait(timeout=timeout)
    if not poller.done():
        try:
            status = poller.status()
        except Exception:  # pylint: disable=broad-except
            status = 'unknown'
        raise AzureOperationTimeout(
            'Timed out after %ss waiting for %s (last status: %s). Azure keeps working on it: re-run the task to wait '
            'for it again, or raise the timeout option.' % (timeout, what, status))
    return poller.result()
