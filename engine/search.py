"""LIMIT without ORDER BY over model tests: a search the reference confirms, in a cheap proxy's order.

SQL's ``LIMIT n`` without ``ORDER BY`` asks for any n rows. Over model tests vql returns n frames
on which the reference itself found the WHERE clause true, so every row is right, and it stops as
soon as it has them instead of answering every frame of the scan (BlazeIt's LIMIT queries).
Which frames the reference sees, in order:

1. frames the label cache holds already: judged first, at no cost;
2. the scan is read in blocks of :data:`BLOCK` frames, blocks in a seeded random order; each frame
   is downscaled and scored by its blocked MSE against its block's median image (the background
   with passers-by removed): something in front of the background scores high;
3. after each block, the reference labels batches: part by the proxy's score among the frames
   scored and not yet labelled (highest first when the WHERE clause holds on busy frames, lowest
   first when it holds on empty ones), part drawn uniformly at random from every frame not yet
   labelled, so that a proxy that misleads cannot starve the search. The
   random part is a quarter until both parts have been tried, then follows how their hit rates
   compare (between a quarter and three quarters). Reference time is kept level with proxy
   time, at least one batch per block;
4. when every block is scored, the rest in the same order, until enough frames are found or the
   scan is exhausted (then every true frame that could be returned is: without ``gap``, every
   true frame of the scan, the exact answer).

With ``gap``, a true frame less than ``gap`` frames from one already returned is not returned,
and the frames around a returned one are not searched.

>>> order_key(np.array([3.0, 9.0, 1.0]), polarity=1).argsort().tolist()    # highest score first
[1, 0, 2]
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from vql.engine.difference import block_mse_gain
from vql.engine.executor import (LABEL_BATCH, Context, atom_models, judge_frames, label_with, labelled_by_all,
                                 where_truth)
from vql.engine.video import read_frames
from vql.engine.views import downscale
from vql.plan import EvaluatePredicates, LimitSearch
from vql.progress import Progress

BLOCK = 512  # frames per proxy block (51 s at 10 fps): one median background each
PROXY_SIZE = 64  # the proxy's image side, pixels
RANDOM_SHARE = 0.25  # of each reference batch, drawn uniformly at random from the unlabelled frames
UNSEEN, POOL, LABELLED, SPACED_OUT = 0, 1, 2, 3  # a frame's state in the search


BUSY = 1_000  # objects in a frame as busy as frames get, for a test's direction


def monotone(atom) -> bool:
    """Whether a test's truth moves one way as objects are added (``contains``, ``>= k``, ``< k``,
    ``= 0``), so that a busier frame is more (or less) likely true.

    >>> from vql.plan import Atom, ModelPredicate
    >>> p = ModelPredicate("object_count", "person", 0, 0.5, None, "centernet", "n")
    >>> monotone(Atom(p, ">=", 2)), monotone(Atom(p, "<=", 1)), monotone(Atom(p, "=", 0)), monotone(Atom(p, "=", 2))
    (True, True, True, False)
    """
    truth = [bool(atom.holds(k)) for k in range(0, max(atom.k, 0) + 3)] + [bool(atom.holds(BUSY))]
    return sum(a != b for a, b in zip(truth, truth[1:])) <= 1


def where_polarity(node: EvaluatePredicates, judge) -> int:
    """+1 when the WHERE clause holds more often on a busy frame (many objects) than on an empty
    one (high proxy scores first), -1 the other way, 0 when it cannot tell or a test is not
    monotone in its count (``= 2``, ``<> 1``): the proxy is then not used. ``judge``: the
    clause's truth per frame from atom values (``executor.where_truth``)."""
    busy, empty = {}, {}
    for a in node.atoms:
        busy[a.column], empty[a.column] = bool(a.holds(BUSY)), bool(a.holds(0))
        if not monotone(a):
            return 0
    first, n = node.scan.first, node.scan.frame_count
    if n <= 0:  # an empty scan: nothing to order
        return 0
    frames = np.unique(np.linspace(first, first + n - 1, min(n, 64)).astype(np.int64))
    yes = judge(frames, {c: np.full(len(frames), v) for c, v in busy.items()}).mean()
    no = judge(frames, {c: np.full(len(frames), v) for c, v in empty.items()}).mean()
    return int(np.sign(yes - no))


def order_key(scores: np.ndarray, polarity: int) -> np.ndarray:
    """Sort key (ascending = searched first) of proxy scores for a WHERE clause of this polarity."""
    return -polarity * scores


def spaced(ranked: np.ndarray, n: int, gap: int) -> np.ndarray:
    """The first ``n`` of ``ranked`` frames (in rank order) at least ``gap`` apart from each other.

    >>> spaced(np.array([10, 11, 40, 12, 90]), 3, gap=20).tolist()
    [10, 40, 90]
    """
    taken: list[int] = []
    for f in ranked.tolist():
        if all(abs(f - t) >= gap for t in taken):
            taken.append(f)
            if len(taken) == n:
                break
    return np.asarray(taken, np.int64)


def block_scores(info, first: int, count: int) -> np.ndarray:
    """The label-free proxy on ``count`` consecutive frames from ``first`` (one block): each frame
    downscaled to :data:`PROXY_SIZE` pixels and scored by its gain-compensated blocked MSE against
    the block's median image (the background with passers-by removed). Higher: more in front of
    the background."""
    frames = np.arange(first, first + count, dtype=np.int64)
    small = np.empty((len(frames), PROXY_SIZE, PROXY_SIZE, 3), np.uint8)
    k = 0
    for _, batch in read_frames(info, frames, 64):
        small[k:k + len(batch)] = downscale(batch, PROXY_SIZE)
        k += len(batch)
    background = np.median(small[::4], axis=0).astype(np.uint8)
    return block_mse_gain(small, background)


def scan_scores(scan) -> np.ndarray:
    """:func:`block_scores` over every block of a scan (one value per frame, from ``scan.first``):
    the proxy a top-k search, a count's strata and a recall selection read whole."""
    n = scan.frame_count
    parts = [block_scores(scan.info, scan.first + s, min(BLOCK, n - s)) for s in range(0, n, BLOCK)]
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def scan_rng(scan, *salt: int) -> np.random.Generator:
    """A random order seeded by the video's content and the scan (and ``salt``, one per use), so
    that the same query on the same video draws the same frames."""
    return np.random.default_rng([int(scan.info.fingerprint[:8], 16), scan.first, scan.last, *salt])


@dataclass
class SearchStats:
    """What a search did (``result.metadata["search"]``, EXPLAIN ANALYZE)."""

    wanted: int
    gap: int
    proxy: str = ""
    found: int = 0
    from_cache: int = 0  # labelled frames judged from the label cache
    scored: int = 0  # frames the proxy scored
    labelled: int = 0  # frames the reference labelled now
    labelled_true: int = 0  # of those, frames that became rows (true, and gap away from the others)
    proxy_picks: int = 0  # frames labelled for their proxy score
    proxy_true: int = 0
    random_picks: int = 0  # frames labelled as drawn uniformly at random
    random_true: int = 0
    proxy_seconds: float = 0.0
    reference_seconds: float = 0.0
    exhausted: bool = False  # the whole scan was judged: the answer is exact

    def row(self) -> dict:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


@dataclass
class Search:
    """One LIMIT search over one scan's model tests (see the module's docstring)."""

    node: EvaluatePredicates
    ctx: Context
    spec: LimitSearch
    stats: SearchStats = field(init=False)

    def __post_init__(self) -> None:
        scan = self.node.scan
        self.first, self.n = scan.first, scan.frame_count
        self.models = atom_models(self.ctx, self.node)
        self.state = np.zeros(self.n, np.int8)
        self.scores = np.zeros(self.n, np.float32)
        self.values = {a.column: np.zeros(self.n, bool) for a in self.node.atoms}
        self.truth = np.zeros(self.n, bool)
        self.hits: list[int] = []
        self.judge = where_truth(self.ctx, self.node)
        self.rng = scan_rng(scan)
        self.stats = SearchStats(self.spec.rows, self.spec.gap)

    @property
    def done(self) -> bool:
        return len(self.hits) >= self.spec.rows

    def polarity(self) -> int:
        return where_polarity(self.node, self.judge)

    def take(self, frames: np.ndarray) -> set[int]:
        """Judge labelled frames: their tests from the stored labels, WHERE by DuckDB; keep the
        true ones as rows (``gap`` apart) and take the frames near a row out of the search.
        The frames that became rows."""
        frames = np.sort(np.asarray(frames, np.int64))
        if not len(frames):
            return set()
        before = len(self.hits)
        values, true = judge_frames(self.ctx, self.node, frames)
        i = frames - self.first
        for column, v in values.items():
            self.values[column][i] = v
        self.truth[i] = true
        self.state[i] = LABELLED
        gap = self.spec.gap
        for f in frames[true]:
            if gap and any(abs(int(f) - h) < gap for h in self.hits):
                continue
            self.hits.append(int(f))
            if gap:
                lo, hi = max(0, f - self.first - gap + 1), min(self.n, f - self.first + gap)
                near = self.state[lo:hi]
                near[near == POOL] = SPACED_OUT
                near[near == UNSEEN] = SPACED_OUT
        return set(self.hits[before:])

    def from_cache(self) -> None:
        stored = labelled_by_all(self.ctx, self.node.scan, self.models)
        self.stats.from_cache = len(stored)
        self.ctx.count("frames_cached", len(stored))
        self.take(stored)

    def score_block(self, start: int, polarity: int) -> None:
        """Read one block, score its frames not yet labelled against the block's median image."""
        t0 = time.perf_counter()
        end = min(start + BLOCK, self.n)
        scores = block_scores(self.node.scan.info, self.first + start, end - start)
        part = self.state[start:end]
        open_ = part == UNSEEN
        self.scores[start:end][open_] = scores[open_]
        part[open_] = POOL
        self.stats.scored += int(open_.sum())
        self.stats.proxy_seconds += time.perf_counter() - t0

    def random_share(self, polarity: int) -> float:
        """The share of a batch drawn at random: :data:`RANDOM_SHARE` until both kinds of pick
        have been tried on 8 frames, then as the random picks' hit rate compares with the
        proxy's (between 1/4 and 3/4): a proxy that stops paying (near returned frames under
        ``gap``, or where nearly every frame is true) hands the search over to random order."""
        st = self.stats
        if not polarity:
            return 1.0
        if min(st.random_picks, st.proxy_picks) < 8:
            return RANDOM_SHARE
        r = (st.random_true + 1) / (st.random_picks + 2)
        p = (st.proxy_true + 1) / (st.proxy_picks + 2)
        return float(np.clip(r / (r + p), RANDOM_SHARE, 1 - RANDOM_SHARE))

    def pick(self, size: int, polarity: int) -> tuple[np.ndarray, np.ndarray]:
        """The next frames for the reference: the proxy's best among the scored frames, and a
        share drawn uniformly at random from every frame still searched (scored or not)."""
        pool = np.flatnonzero(self.state == POOL)
        left = np.flatnonzero((self.state == POOL) | (self.state == UNSEEN))
        n_random = min(int(round(size * self.random_share(polarity))), len(left))
        n_best = min(size - n_random, len(pool))
        if not n_best:
            best = pool[:0]
        elif self.spec.gap:  # the best frames at least gap apart: one true frame per event counts
            best = spaced(pool[np.argsort(order_key(self.scores[pool], polarity), kind="stable")], n_best,
                          self.spec.gap)
        else:
            best = pool[np.argpartition(order_key(self.scores[pool], polarity), n_best - 1)[:n_best]]
        rest = np.setdiff1d(left, best, assume_unique=True)
        n_random = min(max(n_random, size - len(best)), len(rest))
        randoms = self.rng.choice(rest, n_random, replace=False) if n_random else rest[:0]
        return best, randoms

    def label(self, best: np.ndarray, randoms: np.ndarray) -> None:
        """The reference on these frames (every model the tests use); labels stored, then judged."""
        frames = np.concatenate([best, randoms]) + self.first
        st = self.stats
        st.reference_seconds += label_with(self.ctx, self.node.scan.info, self.models, frames)
        st.labelled += len(frames)
        rows = self.take(frames)  # under gap a true frame near a row is not one: the picks are judged by rows
        st.proxy_picks += len(best)
        st.proxy_true += sum(int(f) + self.first in rows for f in best)
        st.random_picks += len(randoms)
        st.random_true += sum(int(f) + self.first in rows for f in randoms)
        st.labelled_true = st.proxy_true + st.random_true

    def label_batches(self, polarity: int, more: Callable[[int], bool]) -> None:
        """Label batches while rows are missing, frames are left and ``more(batches so far)``."""
        batches = 0
        while not self.done and more(batches):
            best, randoms = self.pick(self.batch_size(), polarity)
            if not len(best) + len(randoms):
                return
            self.label(best, randoms)
            batches += 1

    def batch_size(self) -> int:
        """Enough frames for the rows still missing at the share of true frames seen so far
        (a Laplace estimate: 1 before any), between 4 and one labelling batch."""
        rate = (self.stats.labelled_true + 1) / (self.stats.labelled + 1)
        return int(np.clip(np.ceil((self.spec.rows - len(self.hits)) / rate), 4, LABEL_BATCH))

    def run(self) -> None:
        if self.spec.rows <= 0 or not self.n:
            return
        self.from_cache()
        if self.done:
            return
        polarity = self.polarity()
        self.stats.proxy = ("blocked MSE vs block median, high first" if polarity > 0 else
                            "blocked MSE vs block median, low first" if polarity < 0 else
                            "none: WHERE is not monotone in its tests; uniform random order")
        starts = np.arange(0, self.n, BLOCK)
        if polarity == 0:  # no proxy to read: every frame is a candidate, in random order
            self.state[self.state == UNSEEN] = POOL
            starts = starts[:0]
        tests = ", ".join(a.short_text for a in self.node.atoms)
        with Progress(self.n, "frames", f"searching {self.node.scan.video} for {tests}",
                      enabled=self.ctx.progress) as bar:
            bar.update(int((self.state != UNSEEN).sum()))
            for start in self.rng.permutation(starts):
                before = int((self.state != UNSEEN).sum())
                if (self.state[start:start + BLOCK] == UNSEEN).any():
                    self.score_block(int(start), polarity)
                # at least one batch per block, then while the reference has had less time than the proxy
                self.label_batches(polarity, lambda batches: batches == 0 or
                                   self.stats.reference_seconds < self.stats.proxy_seconds)
                bar.update(int((self.state != UNSEEN).sum()) - before)
                if self.done:
                    break
            self.label_batches(polarity, lambda batches: True)
        self.stats.exhausted = not (self.state == POOL).any() and not (self.state == UNSEEN).any()

    def table(self) -> pa.Table:
        """The per-frame table the query's SQL reads: every frame the search labelled or took
        from the cache, with its tests' values, but true frames spaced out by ``gap``."""
        keep = self.state == LABELLED
        if self.spec.gap:
            keep &= ~self.truth
            keep[np.asarray(self.hits, np.int64) - self.first] = True
        idx = np.flatnonzero(keep)
        frames = idx + self.first
        fps = float(self.node.scan.info.fps)
        return pa.table({"frame": frames, "ts": frames / fps,
                         **{a.column: self.values[a.column][idx] for a in self.node.atoms}})


def run_search(spec: LimitSearch, node: EvaluatePredicates, ctx: Context) -> SearchStats:
    """Search the scan for ``spec.rows`` frames where WHERE holds; materialise the per-frame table."""
    search = Search(node, ctx, spec)
    search.run()
    search.stats.found = len(search.hits)
    ctx.store.materialise(node.table, search.table(), order_by="frame")
    ctx.stats.setdefault("search", {})[node.table] = search.stats.row()
    return search.stats


def analyze_line(s: dict) -> str:
    """What a search did, for EXPLAIN ANALYZE (``s``: :meth:`SearchStats.row`)."""
    return (f"-- LIMIT search: {s['found']} true frames found ({s['wanted']} wanted); proxy: {s['proxy'] or 'not needed'}; "
            f"{s['from_cache']} judged from the label cache, {s['scored']} scored by the proxy in "
            f"{s['proxy_seconds']:.3f} s, {s['labelled']} labelled by the reference ({s['random_picks']} drawn at "
            f"random) in {s['reference_seconds']:.3f} s, {s['labelled_true']} of them rows"
            + ("; every frame that could be returned was judged" if s["exhausted"] else ""))
