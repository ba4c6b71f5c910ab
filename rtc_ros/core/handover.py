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
  POSIX shared memory: the writer marks the slot the reader is not directed to as being written
  (stamp -1), fills it, stamps it with its sequence and a CRC32 of the payload, then publishes
  the sequence. The reader loads the published sequence, copies that slot once, into a buffer
  of its own, and loads the slot's stamp again; if the writer overtook it, it falls back to the
  last good item, so it never blocks and never returns a torn item. The published sequence and
  the stamps are aligned 8-byte words, which x86-64 and aarch64 store and load atomically.

  Which check proves the copy whole depends on the CPU's memory ordering. x86-64 keeps stores
  in program order and loads in program order (total store order): a copy that saw any store of
  a newer write also lets the stamp load after it see that write's -1, so an unchanged stamp
  proves the copy whole, and the CRC is not computed (it would be the read's largest cost). On
  weaker orderings (aarch64, where stores and loads may be reordered and nothing here issues a
  barrier) the reader also checks the CRC of its copy. ``verify_checksum`` overrides the choice;
  the writer always writes the CRC, so that readers of either kind can attach. When nothing new
  was published the reader's cost is one 8-byte load and a comparison.

  The reader copies into preallocated buffers and hands out items that are views of them (a
  chunk's actions are not copied a second time). A buffer is reused only when nothing refers to
  it any more: no item decoded from it and no view of such an item is alive. So a returned
  item never changes, however long the caller keeps it, and in the steady state (the controller
  holds one or two chunks) no buffer is allocated per item. Each buffer has its own decoder,
  made once with it, so that what can be prepared (a chunk's (H, M) view, its header fields'
  view) is not rebuilt per item: decoding a chunk allocates only the :class:`Chunk` and one
  array view.
"""

from __future__ import annotations

import functools
import platform
import sys
import zlib
from collections.abc import Callable
from multiprocessing import shared_memory
from typing import Generic, TypeVar

import numpy as np

from rtc_ros.core.scheduler import Chunk, ControllerState, ExecutorSpec, TemporalEnsembling

Item = TypeVar("Item")

_HEADER_WORDS = 1  # published sequence
_SLOT_HEADER_WORDS = 2  # stamp, crc
_SLOTS = 2
_MAX_READ_ATTEMPTS = 3
_INITIAL_READ_BUFFERS = 3  # the cached item, the executing chunk's held action, the next read
TOTAL_STORE_ORDER = platform.machine().lower() in ("x86_64", "amd64")
"""Whether this CPU orders loads and stores as x86-64 does (see the module docstring)."""


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

    ``encode(item, out)`` writes an item as ``payload_words`` float64 values into ``out`` (the
    slot in shared memory, so the writer copies once too). ``decoder(payload)`` is called once
    per read buffer with its payload (read-only float64 values) and returns the function that
    builds an item from what the buffer holds at the time of the call; items may keep views of
    the payload (:func:`stateless` makes a decoder of a plain ``decode(payload)``). Create the
    slot in one process with ``create=True`` and attach from the other with the same name.
    ``verify_checksum``: the reader checks the CRC32 of each copy too (by default only where the
    CPU's memory ordering needs it). The slot has one writer, which follows the protocol.
    """

    def __init__(
        self,
        name: str,
        payload_words: int,
        encode: Callable[[Item, np.ndarray], None],
        decoder: Callable[[np.ndarray], Callable[[], Item]],
        create: bool = False,
        verify_checksum: bool = not TOTAL_STORE_ORDER,
    ) -> None:
        if payload_words < 1:
            raise ValueError(f"payload_words must be >= 1, got {payload_words}")
        slot_words = _SLOT_HEADER_WORDS + payload_words
        words = _HEADER_WORDS + _SLOTS * slot_words
        self._memory = shared_memory.SharedMemory(name=name, create=create, size=8 * words)
        self._owner = create
        self._words = np.ndarray((words,), dtype=np.int64, buffer=self._memory.buf)
        if create:
            self._words[:] = 0
        self._sequence = self._words[:1]
        self._slots = tuple(self._words[_HEADER_WORDS:].reshape(_SLOTS, slot_words))
        self._slot_payloads = tuple(
            slot[_SLOT_HEADER_WORDS:].view(np.float64) for slot in self._slots
        )
        self._payload_words = payload_words
        self._encode, self._decoder = encode, decoder
        self._verify_checksum = verify_checksum
        self._buffers: list[np.ndarray] = []
        self._buffer_payloads: list[memoryview] = []
        self._buffer_decoders: list[Callable[[], Item]] = []
        for _ in range(_INITIAL_READ_BUFFERS):
            self._add_buffer()
        # What sys.getrefcount reports for a buffer nothing outside this object refers to,
        # measured with the very expression _free_buffer uses (the count differs between Python
        # versions, but not between two evaluations of one expression).
        self._free_references = sys.getrefcount(self._buffers[0])
        self._read_sequence = 0
        self._cached: Item | None = None
        self.torn_reads = 0

    @property
    def name(self) -> str:
        return self._memory.name

    def publish(self, item: Item) -> None:
        sequence = self._sequence.item(0) + 1
        slot = sequence % _SLOTS
        header = self._slots[slot]
        header[0] = -1
        payload = self._slot_payloads[slot]
        self._encode(item, payload)
        header[1] = zlib.crc32(payload)
        header[0] = sequence
        self._sequence[0] = sequence

    def latest(self) -> Item | None:
        for _ in range(_MAX_READ_ATTEMPTS):
            sequence = self._sequence.item(0)
            if sequence == self._read_sequence:
                return self._cached
            slot = sequence % _SLOTS
            index = self._free_buffer()
            copy = self._buffers[index]
            np.copyto(copy, self._slots[slot])
            # The stamp loaded again after the copy: unchanged, the writer had not started to
            # overwrite the slot (proof enough under total store order; elsewhere the CRC of
            # the copy covers what the CPU may have reordered).
            if copy.item(0) == sequence == self._slots[slot].item(0) and (
                not self._verify_checksum
                or copy.item(1) == zlib.crc32(self._buffer_payloads[index])
            ):
                self._cached = self._buffer_decoders[index]()
                self._read_sequence = sequence
                return self._cached
            self.torn_reads += 1
        return self._cached

    def _free_buffer(self) -> int:
        """Index of a read buffer that no live item refers to; a new one if all are in use."""
        for index in range(len(self._buffers)):
            if sys.getrefcount(self._buffers[index]) == self._free_references:
                return index
        self._add_buffer()
        return len(self._buffers) - 1

    def _add_buffer(self) -> None:
        buffer = np.zeros(_SLOT_HEADER_WORDS + self._payload_words, dtype=np.int64)
        payload = buffer[_SLOT_HEADER_WORDS:].view(np.float64)
        payload.flags.writeable = False  # decoded items are views of it: read-only for them
        self._buffers.append(buffer)
        self._buffer_payloads.append(payload.data)
        self._buffer_decoders.append(self._decoder(payload))

    def close(self, unlink: bool | None = None) -> None:
        """Detach, and remove the segment if ``unlink`` (by default: on the creating side)."""
        del self._slots, self._slot_payloads, self._sequence, self._words  # views of the segment
        self._memory.close()
        if self._owner if unlink is None else unlink:
            self._memory.unlink()


def stateless(
    decode: Callable[[np.ndarray], Item],
) -> Callable[[np.ndarray], Callable[[], Item]]:
    """The decoder of a :class:`SharedMemorySlot` whose items need nothing prepared per buffer."""
    return lambda payload: functools.partial(decode, payload)


_CHUNK_INTEGERS = 6  # sequence, start_tick, inference_delay, execution_horizon, run_id, epoch
_CHUNK_FIELDS = _CHUNK_INTEGERS + 1  # and latency_s
_STATE_FIELDS = 7  # tick, sequence, start_tick, observed_delay, run_id, epoch, holding


def shared_chunk_slot(
    name: str,
    chunk_shape: tuple[int, ...],
    create: bool = False,
    verify_checksum: bool = not TOTAL_STORE_ORDER,
) -> SharedMemorySlot[Chunk]:
    """A :class:`SharedMemorySlot` carrying :class:`Chunk` objects of ``chunk_shape`` (H, M).

    The chunk's integer fields travel as int64 words (read back as Python ints, exact over the
    whole range of a run id), its latency as a float64 word, then the actions.
    """
    shape = tuple(chunk_shape)
    size = int(np.prod(shape))

    def encode(chunk: Chunk, out: np.ndarray) -> None:
        if chunk.actions.shape != shape:
            raise ValueError(f"chunk must have shape {shape}, got {chunk.actions.shape}")
        out[:_CHUNK_INTEGERS].view(np.int64)[:] = (
            chunk.sequence,
            chunk.start_tick,
            chunk.inference_delay,
            chunk.execution_horizon,
            chunk.run_id,
            chunk.epoch,
        )
        out[_CHUNK_INTEGERS] = chunk.latency_s
        out[_CHUNK_FIELDS:].reshape(shape)[...] = chunk.actions

    def decoder(payload: np.ndarray) -> Callable[[], Chunk]:
        integers = payload[:_CHUNK_INTEGERS].view(np.int64)
        actions = payload[_CHUNK_FIELDS:].reshape(shape)

        def decode() -> Chunk:
            sequence, start_tick, delay, horizon, run_id, epoch = integers.tolist()
            # A new read-only view per chunk, not a copy: it refers to the buffer, which is
            # therefore not rewritten while the chunk or any view of it lives.
            return Chunk.of_read_only_view(
                actions.view(),
                start_tick,
                sequence,
                delay,
                horizon,
                payload.item(_CHUNK_INTEGERS),
                run_id,
                epoch,
            )

        return decode

    return SharedMemorySlot(name, _CHUNK_FIELDS + size, encode, decoder, create, verify_checksum)


def shared_state_slot(name: str, create: bool = False) -> SharedMemorySlot[ControllerState]:
    """A :class:`SharedMemorySlot` carrying the controller's :class:`ControllerState`."""

    def encode(state: ControllerState, out: np.ndarray) -> None:
        # One element at a time: written every tick by the controller, and this allocates nothing.
        out[0] = state.tick
        out[1] = state.sequence
        out[2] = state.start_tick
        out[3] = state.observed_delay
        out[4] = state.run_id
        out[5] = state.epoch
        out[6] = state.holding

    def decode(payload: np.ndarray) -> ControllerState:
        tick, sequence, start_tick, observed_delay, run_id, epoch, holding = payload.tolist()
        return ControllerState(
            int(tick),
            int(sequence),
            int(start_tick),
            int(observed_delay),
            int(run_id),
            int(epoch),
            bool(holding),
        )

    return SharedMemorySlot(name, _STATE_FIELDS, encode, stateless(decode), create)


def shared_executor_spec_slot(name: str, create: bool = False) -> SharedMemorySlot[ExecutorSpec]:
    """A :class:`SharedMemorySlot` carrying an :class:`ExecutorSpec` to a control process."""

    def encode(spec: ExecutorSpec, out: np.ndarray) -> None:
        ensembling = spec.ensembling
        out[:] = (
            spec.pause_after or 0,
            ensembling.decay if ensembling else np.nan,
            ensembling.max_chunks if ensembling else 0,
        )

    def decode(payload: np.ndarray) -> ExecutorSpec:
        pause_after, decay, max_chunks = payload
        ensembling = None if np.isnan(decay) else TemporalEnsembling(float(decay), int(max_chunks))
        return ExecutorSpec(int(pause_after) or None, ensembling)

    return SharedMemorySlot(name, 3, encode, stateless(decode), create)
