"""Forked child processes that talk to their parent over a pipe: the vocoder process
(narrate.runtime.vocoding) and the decoder processes (narrate.runtime.decoders).

Children are forked, not spawned: they start at once with the model already in memory.
Fork them before the parent starts threads (a lock another thread holds at the fork stays
held in the child).

Both kinds are driven by the parent through one class, ``ChildProcess``; in the child,
``ChildEnd`` reads the parent's messages and sends answers. Messages are dataclasses (each
module defines its own), never tuples read by position.

A signal (Ctrl-C, SIGTERM) raises wherever the parent is, also half-way through writing a
message, or just after reading one and before accounting for it. Then the pipe is out of step:
the child would take the middle of a message for a length, or the parent would wait for an
answer that never comes. So a message is marked torn from before it is written, or read, until
it is written or read whole and counted; a child whose pipe is torn is not talked to again, only
killed (``ChildProcess.torn``, ``ChildProcess.kill``).
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import pickle
import signal
import socket
import threading
from typing import Any, Callable, Iterator

from narrate.errors import NarrateError


def can_fork() -> bool:
    return "fork" in multiprocessing.get_all_start_methods()


class _Connection(multiprocessing.connection.Connection):
    """A pipe's end that is closed once. The base class's finalizer closes the descriptor but
    keeps its number: when another finalizer of the same garbage collection then closed the end
    (a dropped narration killing its child, ``ChildProcess.kill``), the number was closed again:
    "Bad file descriptor", or another file's by then."""

    def __del__(self) -> None:
        self.close()


def _pipe() -> tuple[_Connection, _Connection]:
    """Both ends of a duplex pipe, made as multiprocessing.Pipe makes them on POSIX."""
    a, b = socket.socketpair()
    a.setblocking(True)
    b.setblocking(True)
    return _Connection(a.detach()), _Connection(b.detach())


def fork_child(target: Callable, args: tuple, name: str):
    """Start ``target(*args, conn)`` in a forked daemon process; returns (process, the parent's
    end of the pipe)."""
    ctx = multiprocessing.get_context("fork")
    conn, child = _pipe()
    proc = ctx.Process(target=_child_main, args=(target, args, conn, child), daemon=True, name=name)
    proc.start()
    child.close()
    return proc, conn


def _child_main(target: Callable, args: tuple, parent_end, child_end) -> None:
    # The fork copied the parent's end of the pipe too: closed here, so that the child reads
    # EOF and ends when the parent dies without a word (SIGKILL), instead of living on.
    parent_end.close()
    target(*args, child_end)


def sendable(e: BaseException) -> BaseException:
    """An exception the child can send to the parent: itself if it survives pickling (some
    exception classes do not), else a NarrateError with its text."""
    try:
        pickle.loads(pickle.dumps(e))
        return e
    except Exception:
        return NarrateError(f"{type(e).__name__}: {e}")


class ChildProcess:
    """The parent's handle on a forked child: ``serve(*args, ChildEnd)`` runs in it. ``ended``
    is the one-line error raised when the child is found gone (killed, out of memory).

    ``send`` may be called from several threads (one at a time gets the pipe), ``receive`` from
    one. Each takes an optional ``counted``: the caller's accounting of the message, done before
    the pipe is marked whole again (see the module text)."""

    def __init__(self, serve: Callable, args: tuple, name: str, ended: str):
        self.proc, self.conn = fork_child(_child_serve, (serve, args), name)
        self.ended = ended
        self.lock = threading.Lock()
        self._writing = False  # set under the lock: one writer at a time
        self._reading = False

    @property
    def torn(self) -> bool:
        """A message was cut short, or not counted: the pipe is out of step."""
        return self._writing or self._reading

    def send(self, msg: Any, counted: Callable[[], None] | None = None) -> None:
        with self.lock:
            self._writing = True
            try:
                self.conn.send(msg)
            except OSError:
                raise NarrateError(self.ended) from None
            if counted is not None:
                counted()
            self._writing = False

    def receive(self, counted: Callable[[Any], None] | None = None) -> Any:
        self._reading = True
        try:
            msg = self.conn.recv()
        except (EOFError, OSError):
            raise NarrateError(self.ended) from None
        if counted is not None:
            counted(msg)
        self._reading = False
        return msg

    def poll(self) -> bool:
        try:
            return self.conn.poll()
        except OSError:  # (closed: the pipe was collected with a narration still holding the child)
            raise NarrateError(self.ended) from None

    def send_quietly(self, msg: Any) -> None:
        """``send``, where a child already gone changes nothing (nothing is lost then)."""
        try:
            self.send(msg)
        except NarrateError:
            pass

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the child to end (None on the pipe), wait for it, and kill it if it has not ended."""
        try:
            self.conn.send(None)
            self.conn.close()
        except OSError:  # it is gone already
            pass
        self.proc.join(timeout=timeout)
        if self.proc.is_alive():
            self.proc.kill()

    def kill(self) -> None:
        """End the child now, without a word on the pipe (it may be out of step), and close the
        parent's end."""
        self.proc.kill()
        self.proc.join()
        self.conn.close()


class ChildEnd:
    """The child's end of the pipe: the parent's messages in order until it says no more (None)
    or is gone, and ``send`` for answers, from any thread."""

    def __init__(self, conn):
        self.conn = conn
        self.lock = threading.Lock()

    def messages(self) -> Iterator[Any]:
        while True:
            try:
                msg = self.conn.recv()
            except (EOFError, OSError):  # the parent is gone
                return
            if msg is None:
                return
            yield msg

    def send(self, msg: Any) -> None:
        """OSError: the parent is gone."""
        with self.lock:
            self.conn.send(msg)


def _child_serve(serve: Callable, args: tuple, conn) -> None:
    # Ctrl-C is the parent's to handle, and SIGTERM just ends the child (not the parent's
    # handler, which it inherited).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    serve(*args, ChildEnd(conn))
