import dataclasses
import multiprocessing
import threading
import uuid
import weakref
from multiprocessing import shared_memory

import numpy as np
import pytest

from rtc_ros.core import (
    AtomicSlot,
    Chunk,
    ControllerState,
    ExecutorSpec,
    TemporalEnsembling,
    shared_chunk_slot,
    shared_state_slot,
)
from rtc_ros.core.handover import shared_executor_spec_slot

H, M = 50, 14


def _chunk(sequence: int) -> Chunk:
    """Every value of chunk k is k: a torn or mixed read shows up as two different values."""
    return Chunk(np.full((H, M), float(sequence)), start_tick=sequence, sequence=sequence)


def _consistent(chunk: Chunk) -> bool:
    return bool(np.all(chunk.actions == chunk.sequence)) and chunk.start_tick == chunk.sequence


def _stress(slot_writer, slot_reader, count: int) -> tuple[int, int]:
    done = threading.Event()

    def write():
        for k in range(1, count + 1):
            slot_writer.publish(_chunk(k))
        done.set()

    writer = threading.Thread(target=write)
    writer.start()
    reads, last = 0, 0
    while not done.is_set() or last < count:
        chunk = slot_reader.latest()
        if chunk is None:
            continue
        assert _consistent(chunk), f"torn chunk {chunk.sequence}"
        assert chunk.sequence >= last, "went back to an older chunk"
        last = chunk.sequence
        reads += 1
    writer.join()
    return reads, last


def test_atomic_slot_never_shows_a_torn_or_older_chunk_under_a_fast_writer():
    slot = AtomicSlot()
    reads, last = _stress(slot, slot, 5000)
    assert last == 5000 and reads > 100


# Both ways of proving a copy whole: the stamps alone (the default under x86-64's total store
# order) and the stamps with the CRC32 of the copy (the default elsewhere).
checksum_or_not = pytest.mark.parametrize("verify_checksum", [False, True])


@checksum_or_not
def test_shared_memory_slot_never_shows_a_torn_or_older_chunk_under_a_fast_writer(
    verify_checksum,
):
    name = f"rtc_test_{uuid.uuid4().hex[:8]}"
    writer = shared_chunk_slot(name, (H, M), create=True)
    reader = shared_chunk_slot(name, (H, M), verify_checksum=verify_checksum)
    try:
        reads, last = _stress(writer, reader, 5000)
        assert last == 5000 and reads > 100
    finally:
        reader.close()
        writer.close()


def _write_chunks(name: str, count: int) -> None:
    writer = shared_chunk_slot(name, (H, M))
    for k in range(1, count + 1):
        writer.publish(_chunk(k))
    writer.close()


@checksum_or_not
def test_shared_memory_slot_hands_chunks_across_processes(verify_checksum):
    name = f"rtc_test_{uuid.uuid4().hex[:8]}"
    owner = shared_chunk_slot(name, (H, M), create=True)
    reader = shared_chunk_slot(name, (H, M), verify_checksum=verify_checksum)
    try:
        process = multiprocessing.get_context("spawn").Process(
            target=_write_chunks, args=(name, 3000)
        )
        process.start()
        seen = set()
        while process.is_alive() or (
            reader.latest() is not None and reader.latest().sequence < 3000
        ):
            chunk = reader.latest()
            if chunk is not None:
                assert _consistent(chunk)
                seen.add(chunk.sequence)
        process.join()
        assert process.exitcode == 0 and max(seen) == 3000
    finally:
        reader.close()
        owner.close()


def test_a_checksumming_reader_rejects_a_corrupted_slot_and_keeps_the_last_good_chunk():
    name = f"rtc_test_{uuid.uuid4().hex[:8]}"
    writer = shared_chunk_slot(name, (H, M), create=True)
    reader = shared_chunk_slot(name, (H, M), verify_checksum=True)
    try:
        writer.publish(_chunk(1))
        assert reader.latest().sequence == 1
        writer.publish(_chunk(2))
        # Another writer scribbling over slot 0 (chunk 2's) while the reader copies it:
        # header word, then slot 0's stamp and CRC, then its payload.
        raw = shared_memory.SharedMemory(name=name)
        np.ndarray((1,), dtype=np.float64, buffer=raw.buf, offset=8 * (1 + 2 + 10))[0] = -7.0
        raw.close()
        assert reader.latest().sequence == 1 and reader.torn_reads > 0
    finally:
        reader.close()
        writer.close()


@checksum_or_not
def test_a_reader_rejects_a_slot_the_writer_has_begun_to_overwrite(verify_checksum):
    name = f"rtc_test_{uuid.uuid4().hex[:8]}"
    writer = shared_chunk_slot(name, (H, M), create=True)
    reader = shared_chunk_slot(name, (H, M), verify_checksum=verify_checksum)
    try:
        writer.publish(_chunk(1))
        assert reader.latest().sequence == 1
        writer.publish(_chunk(2))  # slot 0, published
        # The writer starting chunk 4 in slot 0 after the reader loaded sequence 2: it marks the
        # slot (stamp -1) and writes part of the payload, as a reader in the middle of its copy
        # would see it. Layout: published sequence, then slot 0's stamp, CRC and payload.
        raw = shared_memory.SharedMemory(name=name)
        np.ndarray((1,), dtype=np.int64, buffer=raw.buf, offset=8 * 1)[0] = -1
        np.ndarray((50,), dtype=np.float64, buffer=raw.buf, offset=8 * (1 + 2 + 7))[:] = 4.0
        raw.close()
        assert reader.latest().sequence == 1 and reader.torn_reads > 0
        writer.publish(_chunk(3))  # the writer's next publish is read whole
        assert _consistent(reader.latest()) and reader.latest().sequence == 3
    finally:
        reader.close()
        writer.close()


def test_chunk_fields_round_trip_exactly_through_shared_memory():
    name = f"rtc_test_{uuid.uuid4().hex[:8]}"
    writer = shared_chunk_slot(name, (H, M), create=True)
    reader = shared_chunk_slot(name, (H, M))
    try:
        actions = np.random.default_rng(0).standard_normal((H, M))
        sent = Chunk(actions, 2**62 + 1, 2**61 + 3, 7, 11, 0.0375, -(2**62), 5)
        writer.publish(sent)
        received = reader.latest()
        for field in dataclasses.fields(Chunk):
            assert np.array_equal(getattr(received, field.name), getattr(sent, field.name))
            assert type(getattr(received, field.name)) is type(getattr(sent, field.name))
    finally:
        reader.close()
        writer.close()


def test_reading_new_chunks_reuses_a_few_buffers_while_the_controller_keeps_two_chunks():
    name = f"rtc_test_{uuid.uuid4().hex[:8]}"
    writer = shared_chunk_slot(name, (H, M), create=True)
    reader = shared_chunk_slot(name, (H, M))
    try:
        kept: list[Chunk] = []
        memory = weakref.WeakValueDictionary()  # id -> the array holding a chunk's actions
        new_memory = 0
        for k in range(1, 200):
            writer.publish(_chunk(k))
            kept = [*kept, reader.latest()][-2:]  # e.g. the executing chunk and the one before
            actions = kept[-1].actions
            owner = actions if actions.base is None else actions.base
            if memory.get(id(owner)) is not owner:
                memory[id(owner)] = owner
                new_memory += 1
        assert all(_consistent(chunk) for chunk in kept) and kept[-1].sequence == 199
        assert new_memory <= 4  # not one per chunk
    finally:
        reader.close()
        writer.close()


def test_a_chunk_of_a_read_only_view_equals_the_chunk_built_by_the_dataclass():
    actions = np.arange(H * M, dtype=np.float64).reshape(H, M)
    actions.flags.writeable = False
    values = dict(
        start_tick=3,
        sequence=4,
        inference_delay=5,
        execution_horizon=6,
        latency_s=0.25,
        run_id=7,
        epoch=8,
    )
    fast, built = Chunk.of_read_only_view(actions, **values), Chunk(actions, **values)
    assert vars(fast).keys() == {field.name for field in dataclasses.fields(Chunk)}
    for field in dataclasses.fields(Chunk):
        assert getattr(fast, field.name) is getattr(built, field.name)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.sequence = 9


def test_shared_state_slot_round_trips_the_controller_state():
    name = f"rtc_test_{uuid.uuid4().hex[:8]}"
    writer = shared_state_slot(name, create=True)
    reader = shared_state_slot(name)
    try:
        assert reader.latest() is None
        state = ControllerState(
            tick=123456789,
            sequence=42,
            start_tick=123456700,
            observed_delay=7,
            run_id=2**53 - 1,
            epoch=3,
        )
        writer.publish(state)
        assert reader.latest() == state
    finally:
        reader.close()
        writer.close()


@pytest.mark.parametrize(
    "spec",
    [
        ExecutorSpec(),
        ExecutorSpec(pause_after=7),
        ExecutorSpec(ensembling=TemporalEnsembling(decay=0.25, max_chunks=9)),
    ],
)
def test_shared_executor_spec_slot_round_trips_the_spec(spec):
    name = f"rtc_test_{uuid.uuid4().hex[:8]}"
    writer = shared_executor_spec_slot(name, create=True)
    reader = shared_executor_spec_slot(name)
    try:
        writer.publish(spec)
        assert reader.latest() == spec
    finally:
        reader.close()
        writer.close()


def test_shared_chunk_slot_rejects_a_chunk_of_the_wrong_shape():
    name = f"rtc_test_{uuid.uuid4().hex[:8]}"
    writer = shared_chunk_slot(name, (H, M), create=True)
    try:
        with pytest.raises(ValueError, match="shape"):
            writer.publish(Chunk(np.zeros((H, M + 1)), 0, 0))
    finally:
        writer.close()


def test_chunks_and_actions_kept_by_the_controller_never_change_while_newer_chunks_arrive():
    name = f"rtc_test_{uuid.uuid4().hex[:8]}"
    writer = shared_chunk_slot(name, (H, M), create=True)
    reader = shared_chunk_slot(name, (H, M))
    try:
        writer.publish(_chunk(1))
        kept_chunk = reader.latest()
        writer.publish(_chunk(2))
        kept_action = reader.latest().actions[3]  # as the executor holds its last action
        for k in range(3, 40):
            writer.publish(_chunk(k))
            assert _consistent(reader.latest())
        assert _consistent(kept_chunk) and kept_chunk.sequence == 1
        assert np.all(kept_action == 2.0)
    finally:
        reader.close()
        writer.close()


def test_a_chunk_read_from_shared_memory_is_read_only():
    name = f"rtc_test_{uuid.uuid4().hex[:8]}"
    writer = shared_chunk_slot(name, (H, M), create=True)
    reader = shared_chunk_slot(name, (H, M))
    try:
        writer.publish(_chunk(1))
        with pytest.raises(ValueError, match="read-only"):
            reader.latest().actions[0, 0] = 5.0
    finally:
        reader.close()
        writer.close()
