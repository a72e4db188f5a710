"""Leader election through a coordination.k8s.io/v1 Lease (``--enable-leader-election``).

Several replicas accept workers and compute labels; only the holder of the Lease
``nfd-master.nfd.kubernetes.io`` writes Nodes. A leader that cannot renew within
the renew deadline stops writing and calls ``on_lost`` (the CLI exits, as upstream).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("nfd-master")

LEASE_NAME = "nfd-master.nfd.kubernetes.io"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class LeaderElector:
    def __init__(
        self,
        api_client: Any,
        namespace: str,
        identity: str,
        on_started: Callable[[], None],
        on_lost: Callable[[], None],
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
    ) -> None:
        from kubernetes import client

        self.api: Any = client.CoordinationV1Api(api_client)
        self.client = client
        self.namespace, self.identity = namespace, identity
        self.on_started, self.on_lost = on_started, on_lost
        self.lease_duration, self.renew_deadline = lease_duration, renew_deadline
        self.retry_period = retry_period
        self.is_leader = False
        self._stop = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._run, name="nfd-leader", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _try(self) -> bool:
        """Acquire or renew; True if we hold the lease afterwards."""
        from kubernetes.client.exceptions import ApiException

        c = self.client
        now = _now()
        try:
            lease = self.api.read_namespaced_lease(LEASE_NAME, self.namespace)
        except ApiException as err:
            if err.status != 404:
                raise
            body = c.V1Lease(
                metadata=c.V1ObjectMeta(name=LEASE_NAME, namespace=self.namespace),
                spec=c.V1LeaseSpec(
                    holder_identity=self.identity,
                    lease_duration_seconds=int(self.lease_duration),
                    acquire_time=now,
                    renew_time=now,
                    lease_transitions=0,
                ),
            )
            self.api.create_namespaced_lease(self.namespace, body)
            return True
        spec: Any = lease.spec
        holder = spec.holder_identity
        renewed = spec.renew_time
        duration = spec.lease_duration_seconds or int(self.lease_duration)
        expired = renewed is None or (now - renewed).total_seconds() > duration
        if holder != self.identity and holder and not expired:
            return False
        if holder != self.identity:
            spec.lease_transitions = (spec.lease_transitions or 0) + 1
            spec.acquire_time = now
        spec.holder_identity = self.identity
        spec.renew_time = now
        spec.lease_duration_seconds = int(self.lease_duration)
        # replace carries resourceVersion: a concurrent candidate gets 409 and loses.
        self.api.replace_namespaced_lease(LEASE_NAME, self.namespace, lease)
        return True

    def _run(self) -> None:
        last_renew = 0.0
        while not self._stop.is_set():
            try:
                held = self._try()
            except Exception as err:  # noqa: BLE001 - API hiccup: decided by the deadline
                log.debug("leader election: %s", err)
                held = False
            mono = time.monotonic()
            if held:
                last_renew = mono
                if not self.is_leader:
                    self.is_leader = True
                    log.info("became leader (lease %s/%s)", self.namespace, LEASE_NAME)
                    self.on_started()
            elif self.is_leader and mono - last_renew > self.renew_deadline:
                self.is_leader = False
                log.error("lost leadership (lease %s/%s)", self.namespace, LEASE_NAME)
                self.on_lost()
                return
            self._stop.wait(self.retry_period)
