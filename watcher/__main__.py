"""python -m watcher: watch the cluster and publish CloudEvents until SIGTERM."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping
from types import FrameType

from watcher.settings import InvalidWatcherSettings, WatcherSettings, load_watcher_settings

log = logging.getLogger("watcher")


class Running:
    """A started watcher: its threads, its outbox, and a stop() that flushes what is waiting."""

    def __init__(self, settings: WatcherSettings) -> None:
        from azure.core.credentials import AzureKeyCredential
        from kubernetes import config

        from watcher.loop import ClusterWatcher
        from watcher.outbox import Outbox
        from watcher.publisher import TopicPublisher

        credential: object
        if settings.topic_key:
            credential = AzureKeyCredential(settings.topic_key)
        else:
            from azure.identity import DefaultAzureCredential

            credential = DefaultAzureCredential()
        if settings.kubeconfig:
            api_client = config.new_client_from_config(config_file=settings.kubeconfig)  # type: ignore[no-untyped-call]
        else:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
            from kubernetes import client

            api_client = client.ApiClient()
        self.stop_event = threading.Event()
        self.publisher = TopicPublisher(
            settings.topic_endpoint,
            credential,  # type: ignore[arg-type]
            cluster=settings.cluster_name,
            source=settings.source,
            ca_bundle=settings.ca_bundle,
        )
        self.outbox = Outbox(
            self.publisher,
            clock=time.monotonic,
            window_seconds=settings.coalesce_seconds,
            give_up_after_seconds=settings.give_up_after_seconds,
        )
        self.watcher = ClusterWatcher(api_client, settings, self.outbox, self.stop_event)
        # Whatever changed while no watcher ran is unknown: one resync event covers it.
        self.outbox.request_resync("the watcher started")
        self._threads = self.watcher.start()
        self._pump = threading.Thread(target=self._flush_until_stopped, name="outbox", daemon=True)
        self._pump.start()

    def _flush_until_stopped(self) -> None:
        while not self.stop_event.wait(0.1):
            self.outbox.flush()

    def stop(self, timeout: float = 5.0) -> None:
        self.stop_event.set()
        self._pump.join(timeout)
        self.outbox.flush(force=True)
        self.publisher.close()


def main(environ: Mapping[str, str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        settings = load_watcher_settings(os.environ if environ is None else environ)
    except InvalidWatcherSettings as error:
        log.error("invalid settings: %s", error)
        return 2
    running = Running(settings)
    stopped = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %s: stopping", signal.Signals(signum).name)
        stopped.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("watching cluster %s; publishing to the Event Grid topic", settings.cluster_name)
    stopped.wait()
    running.stop()
    log.info("stopped; %s events published, %s waiting", running.outbox.published, running.outbox.pending)
    return 0


if __name__ == "__main__":
    sys.exit(main())
