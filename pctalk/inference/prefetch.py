"""Run a generator ahead in a worker thread, so that its work (the renderer's networks, which release the GIL)
overlaps the consumer's (paste-back and H.264 encoding)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

__all__ = ["prefetch"]

T = TypeVar("T")
_DONE = object()


def prefetch(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """``items``, produced up to ``depth`` ahead in a worker thread; its exceptions are raised here, in order, and
    closing this iterator early stops the worker."""
    out: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
        except BaseException as err:  # handed to the consumer
            put((_DONE, err))
            return
        put((_DONE, None))

    worker = threading.Thread(target=work, name="pctalk-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item, err = out.get()
            if item is _DONE:
                if err is not None:
                    raise err
                return
            yield item
    finally:
        stop.set()
        worker.join()
