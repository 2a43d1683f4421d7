"""The FAISS collection's records held in memory, by column, indexed by slot.

A slot is a row number of the flat vector file and the label of the vector in the FAISS index.
Slots are handed out in order and never reused within an epoch; a replaced or deleted record's
slot is only marked dead. Per slot this keeps:

- ``ids``: the record id (a numpy object array, so hits are looked up with one fancy index);
- the filter columns of :func:`vecface.filters.filter_columns`: each string field (tag, path,
  person, camera) as int32 codes into a per-field vocabulary (-1: absent), and the range fields
  (taken, lat, lon) as one float64 array each (NaN: absent, so no comparison matches it);
- the metadata as the record's JSON text, decoded only when a hit's metadata is read (a dead
  slot keeps its text until the epoch ends, so a hit found before a delete still reads it).

:meth:`Columns.mask` turns a normalised filter into a boolean mask over the slots with numpy,
which the search passes to FAISS as a bitmap.
"""

from __future__ import annotations

import json
from json.encoder import c_make_encoder, encode_basestring_ascii
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from vecface.filters import FILTER_FIELDS, RANGE_FIELDS, Range, filter_columns


_ENCODER = json.JSONEncoder()  # json.dumps' defaults
# json's own C encoder built once with those defaults: JSONEncoder.encode builds one per call, which
# cost more than the encoding of a small record (3.7 vs 1.6 us). No circular check: the metadata
# was checked by clean_metadata_batch's json.dumps before it gets here.
_C_ENCODE = (c_make_encoder(None, _ENCODER.default, encode_basestring_ascii, None, ": ", ", ", False, False, True)
             if c_make_encoder is not None else None)


def encode_records(metadata: Sequence[Mapping[str, Any]]) -> list[str]:
    """One JSON text per record, as ``json.dumps`` writes it."""
    if _C_ENCODE is None:  # pragma: no cover - a Python without json's C accelerator
        return [_ENCODER.encode(m) for m in metadata]
    join = "".join
    return [join(_C_ENCODE(m, 0)) for m in metadata]


def _grow(arr: np.ndarray, need: int, fill: Any) -> np.ndarray:
    if need <= arr.shape[0]:
        return arr
    cap = max(need, 2 * arr.shape[0], 1024)
    out = np.full((cap,) + arr.shape[1:], fill, dtype=arr.dtype)
    out[: arr.shape[0]] = arr
    return out


class Batch:
    """One write's records in the columnar form the journal stores and :class:`Columns` applies."""

    __slots__ = ("ids", "meta", "strs", "nums")

    def __init__(self, ids: list[str], meta: list[str], strs: dict[str, list[str | None]], nums: np.ndarray | None):
        self.ids = ids          # record ids
        self.meta = meta        # one JSON text per record
        self.strs = strs        # field -> values (only fields some record has)
        self.nums = nums        # (n, len(RANGE_FIELDS)) float64, NaN where absent; None if all absent

    @classmethod
    def from_metadata(cls, ids: list[str], metadata: Sequence[Mapping[str, Any]]) -> "Batch":
        """The filter columns of :func:`vecface.filters.filter_columns`, a field at a time: a string field
        keeps str values; a range field's present values go through ``filter_columns`` itself."""
        keys = set().union(*metadata)  # one C-level pass: only the fields some record has are scanned
        strs: dict[str, list[str | None]] = {}
        for f in FILTER_FIELDS:
            if f not in keys:
                continue
            values = [m.get(f) for m in metadata]
            if values.count(None) < len(values):
                strs[f] = [v if isinstance(v, str) else None for v in values]
        nums = None
        for j, f in enumerate(RANGE_FIELDS):
            if f not in keys:
                continue
            present = [(i, m[f]) for i, m in enumerate(metadata) if m.get(f) is not None]
            if present:
                if nums is None:
                    nums = np.full((len(ids), len(RANGE_FIELDS)), np.nan)
                for i, v in present:
                    x = filter_columns({f: v})[f]
                    nums[i, j] = np.nan if x is None else x
        return cls(list(ids), encode_records(metadata), strs, nums)

    def __len__(self) -> int:
        return len(self.ids)

    # the journal form: text and bytes SQLite stores as they are
    def encode(self) -> tuple[str, str, str | None, bytes | None]:
        # json.dumps escapes control characters, so no record's JSON text holds a newline
        return (json.dumps(self.ids), "\n".join(self.meta),
                json.dumps(self.strs) if self.strs else None,
                self.nums.tobytes() if self.nums is not None else None)

    @classmethod
    def decode(cls, ids: str, meta: str, strs: str | None, nums: bytes | None) -> "Batch":
        id_list = json.loads(ids)
        arr = np.frombuffer(nums, dtype=np.float64).reshape(len(id_list), len(RANGE_FIELDS)) if nums else None
        return cls(id_list, meta.split("\n") if id_list else [], json.loads(strs) if strs else {}, arr)


class Columns:
    """Every slot's id, filter columns and metadata text; who is alive."""

    def __init__(self) -> None:
        self.n = 0                      # slots used: [0, n)
        self.alive_count = 0
        self.ids = np.empty(0, dtype=object)
        self.alive = np.zeros(0, dtype=bool)
        self.meta: list[str | None] = []
        self.codes = {f: np.full(0, -1, dtype=np.int32) for f in FILTER_FIELDS}
        self.vocab: dict[str, dict[str, int]] = {f: {} for f in FILTER_FIELDS}
        self.words: dict[str, list[str]] = {f: [] for f in FILTER_FIELDS}
        self.nums = np.full((0, len(RANGE_FIELDS)), np.nan)
        self.slot_of: dict[str, int] = {}

    # ------------------------------------------------------------------ changes
    def append(self, start: int, batch: Batch) -> None:
        """Records at slots [start, start + len(batch)); an id seen before moves to its new slot."""
        m = len(batch)
        if start != self.n:
            raise ValueError(f"batch starts at slot {start}, but {self.n} slots are used")
        stop = start + m
        self.ids = _grow(self.ids, stop, None)
        self.alive = _grow(self.alive, stop, False)
        self.ids[start:stop] = batch.ids
        self.alive[start:stop] = True
        self.meta.extend(batch.meta)
        for f in FILTER_FIELDS:
            self.codes[f] = _grow(self.codes[f], stop, -1)
            values = batch.strs.get(f)
            if values is not None:
                self.codes[f][start:stop] = self._encode(f, values)
        self.nums = _grow(self.nums, stop, np.nan)
        if batch.nums is not None:
            self.nums[start:stop] = batch.nums
        old = [s for s in map(self.slot_of.get, batch.ids) if s is not None]
        self.slot_of.update(zip(batch.ids, range(start, stop)))
        self.n = stop
        self.alive_count += m
        self._bury(old)

    def kill(self, slots: Sequence[int]) -> None:
        """Mark slots dead (their records were deleted or replaced)."""
        for s in slots:
            if s < self.n and self.alive[s]:
                i = self.ids[s]
                if self.slot_of.get(i) == s:
                    del self.slot_of[i]
        self._bury(slots)

    def _bury(self, slots: Sequence[int]) -> None:
        slots = [s for s in slots if s < self.n and self.alive[s]]
        if not slots:
            return
        idx = np.asarray(slots, dtype=np.int64)
        self.alive[idx] = False
        self.ids[idx] = None  # a dead slot's metadata text stays (until compaction): hits point at it
        self.alive_count -= len(slots)

    def _encode(self, field: str, values: list[str | None]) -> np.ndarray:
        vocab, words = self.vocab[field], self.words[field]
        out = np.empty(len(values), dtype=np.int32)
        for i, v in enumerate(values):
            if v is None:
                out[i] = -1
                continue
            c = vocab.get(v)
            if c is None:
                c = vocab[v] = len(words)
                words.append(v)
            out[i] = c
        return out

    # ------------------------------------------------------------------ reads
    @property
    def dead(self) -> int:
        return self.n - self.alive_count

    def slots_for(self, ids: Sequence[str]) -> dict[str, int]:
        return {i: s for i in ids if (s := self.slot_of.get(i)) is not None}

    def mask(self, flt: Mapping[str, list[str] | Range] | None) -> np.ndarray:
        """Slots that pass the filter (every slot when there is none) and are alive."""
        keep = self.alive[: self.n].copy()
        for field, cond in (flt or {}).items():
            if isinstance(cond, Range):
                col = self.nums[: self.n, RANGE_FIELDS.index(field)]
                with np.errstate(invalid="ignore"):
                    if cond.gte is not None:
                        keep &= col >= cond.gte
                    if cond.lte is not None:
                        keep &= col <= cond.lte
                    if cond.gte is None and cond.lte is None:
                        keep &= ~np.isnan(col)
            else:
                wanted = [c for v in cond if (c := self.vocab[field].get(v)) is not None]
                if not wanted:
                    keep[:] = False
                    break
                codes = self.codes[field][: self.n]
                keep &= (codes == wanted[0]) if len(wanted) == 1 else np.isin(codes, wanted)
        return keep

    def metadata(self, slots: Sequence[int]) -> list[dict[str, Any]]:
        """The decoded metadata of these (alive) slots, in one JSON parse."""
        if not slots:
            return []
        return json.loads("[" + ",".join([self.meta[s] for s in slots]) + "]")

    def chunks(self, size: int) -> Iterator[tuple[np.ndarray, Batch]]:
        """The alive records as (old slots, Batch) chunks in slot order, for a snapshot."""
        live = np.flatnonzero(self.alive[: self.n])
        for start in range(0, len(live), size):
            slots = live[start:start + size]
            strs: dict[str, list[str | None]] = {}
            for f in FILTER_FIELDS:
                codes = self.codes[f][slots]
                if (codes >= 0).any():
                    words = self.words[f]
                    strs[f] = [words[c] if c >= 0 else None for c in codes.tolist()]
            nums = self.nums[slots]
            yield slots, Batch(self.ids[slots].tolist(), [self.meta[s] for s in slots.tolist()], strs,
                               None if np.isnan(nums).all() else nums)
