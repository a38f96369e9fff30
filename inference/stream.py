"""A dataset's items from DataLoader worker processes, in order, that outlive a worker's death.

A DataLoader ends the whole iteration when one of its worker processes dies: a decoder that crashes
on a malformed file (SIGSEGV, SIGABRT), or the kernel killing the process for memory on a huge image
(SIGKILL).  ``WorkerDeathProof`` then starts a new loader after the items delivered so far.  The
files the dead process may have held (the next ``workers x prefetch`` in order) are first read one by
one, each in a process of its own (``calcdx.inference.isolation.run_in_child``): the one whose process
dies again becomes a failed item (``died(index, how)``), and every other file is analysed as usual.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from torch.utils.data import DataLoader, Dataset, Subset

from calcdx.inference.isolation import ProcessDiedError, run_in_child

logger = logging.getLogger(__name__)

PREFETCH_FACTOR = 2
"""Items each worker process reads ahead: a dead process may have held this many."""
WORKER_DIED = "DataLoader worker (pid"
"""How torch's RuntimeError starts when a worker process dies ("exited unexpectedly", "killed by signal")."""


def _as_list(batch: list[Any]) -> list[Any]:
    return batch


class WorkerDeathProof:
    """Every item of ``dataset`` in index order, read by ``workers`` DataLoader processes (none: in this
    process); the loader starts (and its workers read ahead) as soon as this object is made.

    Args:
        dataset: a map-style dataset whose ``__getitem__`` never raises for a bad file.
        workers: DataLoader worker processes.
        died: makes the item of a file whose reading process died twice (index, how it ended).
    """

    def __init__(self, dataset: Dataset, workers: int, died: Callable[[int, str], Any]) -> None:
        self.dataset = dataset
        self.workers = max(0, workers)
        self.died = died
        self._remaining = list(range(len(dataset)))  # type: ignore[arg-type]
        self._batches: Iterator[list[Any]] = iter(self._loader(self._remaining))

    def _loader(self, indices: list[int]) -> DataLoader:
        return DataLoader(Subset(self.dataset, indices), batch_size=1, shuffle=False, num_workers=self.workers,
                          collate_fn=_as_list, prefetch_factor=PREFETCH_FACTOR if self.workers else None,
                          persistent_workers=False)

    def __iter__(self) -> Iterator[Any]:
        while True:
            delivered = 0
            try:
                for batch in self._batches:
                    for item in batch:
                        delivered += 1
                        yield item
                return
            except RuntimeError as exc:
                if not self.workers or not str(exc).startswith(WORKER_DIED):
                    raise
                logger.warning("a decoding process died (%s); the files it may have held are read one by one", exc)
            self._batches = iter(())  # the dead loader's other workers stop
            remaining = self._remaining[delivered:]
            held = self.workers * PREFETCH_FACTOR
            for index in remaining[:held]:
                yield self._alone(index)
            self._remaining = remaining[held:]
            if not self._remaining:
                return
            self._batches = iter(self._loader(self._remaining))

    def _alone(self, index: int) -> Any:
        """``dataset[index]`` read in a process of its own, or ``died(index, how)`` when that process dies."""
        try:
            return run_in_child(self.dataset.__getitem__, index)
        except ProcessDiedError as death:
            return self.died(index, death.how)
