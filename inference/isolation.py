"""Running a function in a forked process, so that the process that dies is not this one.

A decoder that crashes in native code on a malformed file (SIGSEGV, SIGABRT), or the kernel killing a
process for memory on a huge image (SIGKILL), ends the process it runs in.  ``run_in_child`` runs one call
in a process of its own; ``ForkedRunner`` keeps one process for many calls and forks a new one after a
death.  Either raises ``ProcessDiedError`` (with the signal's name) here instead, and ``death_error`` is
what the file is refused with.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import multiprocessing.process
import signal
import threading
from collections.abc import Callable
from os import PathLike
from typing import Any

import torch
import torch.multiprocessing

from calcdx.errors import CalcdxError, CorruptDicomError, ImageTooLargeError


def how_it_ended(exitcode: int | None) -> str:
    """A process's end in words: the signal's name (``SIGSEGV``) or ``exit code N``."""
    if exitcode is not None and exitcode < 0:
        try:
            return signal.Signals(-exitcode).name
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit code {exitcode}"


class ProcessDiedError(RuntimeError):
    """The process that ran a function died (a signal, or exited) before it returned."""

    def __init__(self, how: str) -> None:
        super().__init__(f"the process died ({how})")
        self.how = how


def death_error(path: str | PathLike[str], how: str, *, again: bool = False) -> CalcdxError:
    """What a file whose reading process died (``how``: the signal's name) is refused with: ``E_TOO_LARGE``
    for SIGKILL (usually the system out of memory), else ``E_CORRUPT`` (a decoder crashed on it); ``again``:
    it died a second time, read alone."""
    alone = ", again when it was read alone" if again else ""
    if how == "SIGKILL":
        return ImageTooLargeError(f"the process reading it was killed (SIGKILL: usually the system out of memory)"
                                  f"{alone}", path=path)
    return CorruptDicomError(f"the process reading it died ({how}: a decoder crashed on it){alone}", path=path)


def _forget_signal_handlers() -> None:
    """In a forked child: SIGTERM ends it (not the parent's handler), SIGINT is the parent's to handle."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _answer(connection: multiprocessing.connection.Connection, function: Callable[..., Any],
            args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Run ``function`` and send ("returned", value) or ("raised", exception): the parent raises it again."""
    try:
        message: tuple[str, Any] = ("returned", function(*args, **kwargs))
    except Exception as exc:
        message = ("raised", exc)
    try:
        connection.send(message)
    except Exception as exc:  # not picklable
        connection.send(("raised", RuntimeError(f"{type(exc).__name__}: {exc}")))


def _child(connection: multiprocessing.connection.Connection, function: Callable[..., Any], args: tuple[Any, ...],
           kwargs: dict[str, Any]) -> None:
    """Answer one call (``_answer``), then stay until the parent has it (torch tensors travel as file
    descriptors of shared memory, which this process serves).  Signals as in ``_serve``."""
    _forget_signal_handlers()
    torch.set_num_threads(1)  # as in a DataLoader worker
    _answer(connection, function, args, kwargs)
    with contextlib.suppress(EOFError):
        connection.recv()


def run_in_child(function: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """``function(*args, **kwargs)`` in a forked process of its own, so that a crash in native code (a decoder
    on a malformed file) or the system killing it for memory leaves this process alive.

    Raises:
        ProcessDiedError: the process died before it returned (``how``: the signal's name).
        Exception: what ``function`` raised, raised again here.
    """
    context = torch.multiprocessing.get_context("fork")
    here, there = context.Pipe()
    process = context.Process(target=_child, args=(there, function, args, kwargs), daemon=True)
    process.start()
    there.close()
    message = None
    try:
        multiprocessing.connection.wait([here, process.sentinel])
        if here.poll():
            message = here.recv()
            here.send(True)
    except (EOFError, OSError):  # the process died before it sent anything
        message = None
    finally:
        process.join()
        here.close()
    if message is None:
        raise ProcessDiedError(how_it_ended(process.exitcode))
    kind, value = message
    if kind == "raised":
        raise value
    return value


def _serve(connection: multiprocessing.connection.Connection) -> None:
    """Child process of a ``ForkedRunner``: run each (function, args, kwargs) received, send the outcome.

    It forgets the signal handlers it was forked with (a server's SIGTERM handler would keep it alive, and
    its parent waiting, at shutdown) and ignores SIGINT: Ctrl-C reaches the parent, whose end of the pipe
    then closes, and this process returns."""
    _forget_signal_handlers()
    torch.set_num_threads(1)
    while True:
        try:
            function, args, kwargs = connection.recv()
        except EOFError:  # the parent closed its end
            return
        _answer(connection, function, args, kwargs)


class ForkedRunner:
    """Runs calls in one forked process that stays for the next call: a crash in native code (a decoder on a
    malformed file) or the system killing that process for memory raises ``ProcessDiedError`` here, and the
    next call forks a new one.  Forking once, not per call: per file, forking the DICOM node's process
    (model loaded) cost about 0.15 s (its load test, 200 instances, took 128 against 99 s).

    ``function`` and its arguments are pickled (a module-level function travels by name); thread-safe.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: multiprocessing.process.BaseProcess | None = None
        self._connection: multiprocessing.connection.Connection | None = None

    def __call__(self, function: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """``function(*args, **kwargs)`` in the runner's process.

        Raises:
            ProcessDiedError: the process died before it answered (``how``: the signal's name).
            Exception: what ``function`` raised, raised again here.
        """
        with self._lock:
            process, connection = self._started()
            try:
                connection.send((function, args, kwargs))
                multiprocessing.connection.wait([connection, process.sentinel])
                kind, value = connection.recv()
            except (EOFError, OSError):  # died before it answered
                process.join()
                self.close()
                raise ProcessDiedError(how_it_ended(process.exitcode)) from None
        if kind == "raised":
            raise value
        return value

    def _started(self) -> tuple[multiprocessing.process.BaseProcess, multiprocessing.connection.Connection]:
        if self._process is None or self._connection is None or not self._process.is_alive():
            self.close()
            context = multiprocessing.get_context("fork")
            here, there = context.Pipe()
            self._process = context.Process(target=_serve, args=(there,), daemon=True, name="calcdx-reader")
            self._process.start()
            there.close()
            self._connection = here
        return self._process, self._connection

    def close(self) -> None:
        """End the process (the next call forks a new one)."""
        if self._connection is not None:
            self._connection.close()  # the process's recv ends: it returns
        if self._process is not None:
            self._process.join(timeout=5)
            if self._process.is_alive():
                self._process.kill()
                self._process.join()
        self._process = self._connection = None
