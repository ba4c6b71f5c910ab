"""Lock-free handover of chunks (inference -> controller) and of the controller's state back.

Two implementations of one small interface, ``publish(item)`` / ``latest()``:

* :class:`AtomicSlot`, for threads of one process. The writer builds an immutable object
  completely and then rebinds one attribute; the reader loads that attribute. Both are single
  bytecode operations on an object reference: under the GIL (CPython <= 3.12, and 3.13+ default
  builds) a reference load or store cannot interleave with another, and on free-threaded builds
  (3.13t+) attribute loads and stores of one object are still atomic (per-object critical
  sections inside the interpreter, not a lock taken by this code). The reader therefore sees
  either the old or the new object, never a mixture, and the objects themselves are read-only
  (frozen dataclasses holding read-only arrays). Neither side waits for the other.

* :class:`SharedMemorySlot`, for a controller in another process. A seqlock over two slots in
  POSIX shared memory: the writer fills the slot the reader is not directed to, stamps it with
  its sequence and a CRC32 of the payload, then publishes the sequence. The reader checks stamp
  and CRC after copying and falls back to the last good item if the writer overtook it, so it
  never blocks and never returns a torn item. The CRC makes this independent of the CPU's
  memory ordering (x86-64 and aarch64 alike); the published sequence is one aligned 8-byte
  word, which both architectures store and load atomically. When nothing new was published the
  reader's cost is one 8-byte load and a comparison.
"""
from __future__ import annotations

import zlib
from multiprocessing import shared_memory
from typing import Callable, Generic, TypeVar

import numpy as np

from rtc_ros.core.scheduler import Chunk, ControllerState

Item = TypeVar("Item")

_HEADER_WORDS = 1  # published sequence
_SLOT_HEADER_WORDS = 2  # stamp, crc
_SLOTS = 2
_MAX_READ_ATTEMPTS = 3


class AtomicSlot(Generic[Item]):
    """Single-slot, lock-free, in-process handover of immutable items (see module docstring)."""

    def __init__(self) -> None:
        self._item: Item | None = None

    def publish(self, item: Item) -> None:
        self._item = item

    def latest(self) -> Item | None:
        return self._item


class SharedMemorySlot(Generic[Item]):
    """Lock-free cross-process slot for fixed-size items (see module docstring).

    ``encode`` turns an item into ``payload_words`` float64 values and ``decode`` back. Create it
    in one process with ``create=True`` and attach from the other with the same name.
    """

    def __init__(
        self,
        name: str,
        payload_words: int,
        encode: Callable[[Item], np.ndarray],
        decode: Callable[[np.ndarray], Item],
        create: bool = False,
    ) -> None:
        if payload_words < 1:
            raise ValueError(f"payload_words must be >= 1, got {payload_words}")
        words = _HEADER_WORDS + _SLOTS * (_SLOT_HEADER_WORDS + payload_words)
        self._memory = shared_memory.SharedMemory(name=name, create=create, size=8 * words)
        self._owner = create
        self._words = np.ndarray((words,), dtype=np.int64, buffer=self._memory.buf)
        self._sequence = self._words[:1]
        slot_words = _SLOT_HEADER_WORDS + payload_words
        body = self._words[_HEADER_WORDS:].reshape(_SLOTS, slot_words)
        self._stamps = body[:, 0]
        self._crcs = body[:, 1]
        self._payloads = body[:, _SLOT_HEADER_WORDS:].view(np.float64)
        if create:
            self._words[:] = 0
        self._payload_words = payload_words
        self._encode, self._decode = encode, decode
        self._read_sequence = 0
        self._cached: Item | None = None
        self.torn_reads = 0

    @property
    def name(self) -> str:
        return self._memory.name

    def publish(self, item: Item) -> None:
        payload = np.asarray(self._encode(item), dtype=np.float64)
        if payload.shape != (self._payload_words,):
            raise ValueError(f"encoded item must have {self._payload_words} words, got shape {payload.shape}")
        sequence = int(self._sequence[0]) + 1
        slot = sequence % _SLOTS
        self._stamps[slot] = -1
        self._payloads[slot] = payload
        self._crcs[slot] = zlib.crc32(payload.tobytes())
        self._stamps[slot] = sequence
        self._sequence[0] = sequence

    def latest(self) -> Item | None:
        for _ in range(_MAX_READ_ATTEMPTS):
            sequence = int(self._sequence[0])
            if sequence == self._read_sequence:
                return self._cached
            slot = sequence % _SLOTS
            payload = self._payloads[slot].copy()
            if int(self._stamps[slot]) == sequence and int(self._crcs[slot]) == zlib.crc32(payload.tobytes()):
                self._cached = self._decode(payload)
                self._read_sequence = sequence
                return self._cached
            self.torn_reads += 1
        return self._cached

    def close(self) -> None:
        """Detach; the creating side also removes the segment."""
        self._stamps = self._crcs = self._payloads = self._sequence = self._words = None
        self._memory.close()
        if self._owner:
            self._memory.unlink()


_CHUNK_FIELDS = 5  # sequence, start_tick, inference_delay, execution_horizon, latency_s


def shared_chunk_slot(name: str, chunk_shape: tuple[int, ...], create: bool = False) -> SharedMemorySlot[Chunk]:
    """A :class:`SharedMemorySlot` carrying :class:`Chunk` objects of ``chunk_shape`` (H, M)."""
    size = int(np.prod(chunk_shape))

    def encode(chunk: Chunk) -> np.ndarray:
        if chunk.actions.shape != tuple(chunk_shape):
            raise ValueError(f"chunk must have shape {tuple(chunk_shape)}, got {chunk.actions.shape}")
        header = [chunk.sequence, chunk.start_tick, chunk.inference_delay, chunk.execution_horizon, chunk.latency_s]
        return np.concatenate([np.asarray(header, dtype=np.float64), chunk.actions.ravel()])

    def decode(payload: np.ndarray) -> Chunk:
        sequence, start_tick, delay, horizon, latency = payload[:_CHUNK_FIELDS]
        return Chunk(payload[_CHUNK_FIELDS:].reshape(chunk_shape), int(start_tick), int(sequence),
                     int(delay), int(horizon), float(latency))

    return SharedMemorySlot(name, _CHUNK_FIELDS + size, encode, decode, create)


def shared_state_slot(name: str, create: bool = False) -> SharedMemorySlot[ControllerState]:
    """A :class:`SharedMemorySlot` carrying the controller's :class:`ControllerState`."""

    def encode(state: ControllerState) -> np.ndarray:
        return np.array([state.tick, state.sequence, state.start_tick, state.observed_delay], dtype=np.float64)

    def decode(payload: np.ndarray) -> ControllerState:
        return ControllerState(*(int(v) for v in payload))

    return SharedMemorySlot(name, 4, encode, decode, create)
