"""Continuous-batching generation engine.

One scheduler thread owns the model and the paged KV cache. Requests queue up
(``submit``); between two steps the scheduler admits waiting requests while
KV blocks allow, runs one batched forward step over every running request
(one token for decoding requests, a chunk of the prompt for prefilling ones:
chunked prefill keeps each step within ``max_step_tokens``, which bounds the
attention scratch memory and keeps long prompts from stalling the decodes),
samples, streams each new token to its request's queue, and retires finished
requests, returning their blocks to the pool. A request with
``SamplingParams.draft`` feeds its last token plus a drafted continuation
(speculative.py) and keeps what the model's own choice confirms; the rejected
positions are rolled back in its cache. A beam-search request
(``num_beams > 1``, beam.py) runs to completion when admitted, on the
scheduler thread (the running requests wait meanwhile), and streams its best
beam at the end. When the pool
runs dry mid-decode, the most recently admitted request is preempted: its
blocks are freed and it is re-queued to be recomputed from prompt + generated
tokens (vLLM's recompute preemption), so running requests never deadlock.
"""
from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections import deque
from contextlib import nullcontext
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ...engine.errors import FailedPreconditionError, InvalidArgumentError, ResourceExhaustedError, ShoalError
from ...engine.threads import single_threaded_blas
from ..models.kv_cache import SequenceCache
from ..models.llama import LlamaModel
from ..models.ops import to_numpy
from .sampling import sample_token
from .beam import beam_search
from .speculative import Drafter, PromptLookupDrafter, accept
from .types import GenerationResult, SamplingParams, TokenEvent

log = logging.getLogger("shoal.rag.generation")

_DONE = object()


class TextStream:
    """Incremental detokenisation with stop strings.

    Releases only text that is final: not ending in an incomplete UTF-8
    character (decoded as U+FFFD) and not a possible beginning of a stop string.
    """

    def __init__(self, decode: Callable[[Sequence[int]], str], stops: Sequence[str]) -> None:
        self.decode = decode
        self.stops = tuple(stops)
        self.released = 0
        self.text = ""

    def push(self, ids: Sequence[int], final: bool) -> tuple[str, bool]:
        """Text newly released for the token list ``ids``, and whether a stop string was hit."""
        full = self.decode(ids)
        hits = [i for i in (full.find(s) for s in self.stops) if i >= 0]
        if hits:
            limit, hit = min(hits), True
        else:
            limit, hit = len(full), False
            if not final:
                limit = len(full.rstrip("\ufffd"))
                for k in range(min(limit, max((len(s) for s in self.stops), default=1) - 1), 0, -1):
                    if any(s.startswith(full[limit - k : limit]) for s in self.stops):
                        limit -= k
                        break
        limit = max(limit, self.released)
        out = full[self.released : limit]
        self.released = limit
        self.text = full[:limit]
        return out, hit


class _Request:
    def __init__(self, rid: int, prompt: list[int], params: SamplingParams, decode: Callable[[Sequence[int]], str]) -> None:
        self.rid = rid
        self.prompt = prompt
        self.params = params
        self.generated: list[int] = []
        self.pending: list[int] = list(prompt)  # tokens the next step feeds in
        self.events: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.cancelled = False
        self.seq: SequenceCache | None = None
        self.rng = np.random.default_rng(params.seed)
        self.stream = TextStream(decode, params.stop)
        self.result: GenerationResult | None = None
        self.draft: list[int] = []  # drafted tokens at the end of ``pending``, being verified
        self.drafted = self.accepted = 0
        self.draft_len = params.num_draft_tokens  # adapted to how much of the last draft was kept
        self.t_submit = time.perf_counter()
        self.prefill_s = 0.0
        self.t_first = self.t_last = 0.0


class RequestHandle:
    """A submitted request: iterate for TokenEvents as they are produced; ``result`` once done.

    Leaving the iteration early (break, exception, garbage collection) cancels the request.
    """

    def __init__(self, request: _Request, engine: "GenerationEngine") -> None:
        self._req = request
        self._engine = engine

    def __iter__(self) -> Iterator[TokenEvent]:
        done = False
        try:
            while True:
                item = self._req.events.get()
                if item is _DONE:
                    done = True
                    return
                if isinstance(item, BaseException):
                    done = True
                    raise item
                yield item
        finally:
            if not done:
                self.cancel()

    def cancel(self) -> None:
        self._req.cancelled = True
        self._engine._wake()

    @property
    def result(self) -> GenerationResult | None:
        return self._req.result

    def wait(self) -> GenerationResult:
        """Consume the remaining events and return the result."""
        for _ in self:
            pass
        assert self._req.result is not None
        return self._req.result


class TokenStream(Iterator[TokenEvent]):
    """What ``Generator.stream`` returns: an iterator of TokenEvents whose
    ``result`` (finish reason, token ids, speeds) is set once it is exhausted.
    Closing it (or dropping it) before the end cancels the request."""

    def __init__(self, handle: RequestHandle) -> None:
        self._handle = handle
        self._events = iter(handle)

    def __next__(self) -> TokenEvent:
        return next(self._events)

    def close(self) -> None:
        self._events.close()

    @property
    def result(self) -> GenerationResult | None:
        return self._handle.result


class GenerationEngine:
    """Scheduler thread + paged KV cache around a :class:`LlamaModel`."""

    def __init__(
        self,
        model: LlamaModel,
        decode: Callable[[Sequence[int]], str],
        end_ids: frozenset[int] | set[int],
        cache_tokens: int = 8192,
        block_size: int = 16,
        max_batch_size: int = 16,
        max_step_tokens: int = 512,
        draft_model: LlamaModel | None = None,
        num_threads: int = 1,
    ) -> None:
        """``num_threads``: Numba threads of the scheduler (the block-matvec kernels' ``prange``).
        One by default: a decode step enters ~120 parallel regions, and on a loaded machine each
        wake of the pool costs more than the kernel (SmolLM2 on 2 cores shared with ~30 other
        processes: 0.7 tok/s with 2 threads, 25-38 with one)."""
        if max_batch_size < 1 or max_step_tokens < 1 or num_threads < 1:
            raise InvalidArgumentError("max_batch_size, max_step_tokens and num_threads must be >= 1")
        self.num_threads = num_threads
        self.model = model
        self.decode = decode
        self.end_ids = frozenset(end_ids)
        self.cache = model.new_cache(-(-cache_tokens // block_size), block_size)
        self.max_batch_size = max_batch_size
        self.max_step_tokens = max_step_tokens
        self._waiting: deque[_Request] = deque()
        self._running: list[_Request] = []
        self._cv = threading.Condition()
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.stats = {"steps": 0, "tokens": 0, "max_batch": 0, "preemptions": 0, "drafted": 0, "accepted": 0}
        self.drafters: dict[str, Drafter] = {"prompt_lookup": PromptLookupDrafter()}
        if draft_model is not None:
            from .speculative import ModelDrafter

            if draft_model.config.vocab_size != model.config.vocab_size:
                raise InvalidArgumentError(
                    f"the draft model's vocabulary ({draft_model.config.vocab_size}) differs from the model's ({model.config.vocab_size})"
                )
            self.drafters["model"] = ModelDrafter(draft_model, cache_tokens, block_size)

    # -- public ----------------------------------------------------------

    def submit(self, prompt_ids: Sequence[int], params: SamplingParams) -> RequestHandle:
        params.validate()
        if params.draft is not None and params.draft not in self.drafters:
            raise InvalidArgumentError("draft='model' needs a draft model: load_generator(path, draft_model=PATH)")
        prompt = [int(t) for t in prompt_ids]
        ctx = self.model.config.context_length
        if not prompt:
            raise InvalidArgumentError("the prompt has no tokens")
        if len(prompt) >= ctx:
            raise InvalidArgumentError(f"prompt of {len(prompt)} tokens does not fit the model's context of {ctx}")
        if min(prompt) < 0 or max(prompt) >= self.model.config.vocab_size:
            raise InvalidArgumentError(f"token ids must be in [0, {self.model.config.vocab_size})")
        need = min(len(prompt) + params.max_new_tokens, ctx)
        if need > self.cache.capacity_tokens:
            raise ResourceExhaustedError(
                f"prompt + max_new_tokens = {need} tokens exceeds the KV cache of {self.cache.capacity_tokens} tokens"
            )
        if params.num_beams > 1 and self._beam_blocks(len(prompt), params) > self.cache.num_blocks:
            raise ResourceExhaustedError(
                f"{params.num_beams} beams of {params.max_new_tokens} tokens need {self._beam_blocks(len(prompt), params)} KV blocks,"
                f" the cache has {self.cache.num_blocks}: fewer beams or tokens, or a larger cache_tokens"
            )
        req = _Request(next(self._ids), prompt, params, self.decode)
        with self._cv:
            if self._closed:
                raise FailedPreconditionError("the generation engine is closed")
            self._waiting.append(req)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="shoal-generation", daemon=True)
                self._thread.start()
            self._cv.notify()
        return RequestHandle(req, self)

    def close(self) -> None:
        """Stop the scheduler; unfinished requests end with FailedPreconditionError."""
        with self._cv:
            self._closed = True
            self._cv.notify()
        if self._thread is not None:
            self._thread.join()

    # -- scheduler -------------------------------------------------------

    def _wake(self) -> None:
        with self._cv:
            self._cv.notify()

    def _loop(self) -> None:
        try:
            import numba

            numba.set_num_threads(min(self.num_threads, numba.config.NUMBA_NUM_THREADS))  # thread-local
        except ImportError:
            pass
        # On the numba backend the threads are Numba's, and BLAS (prefill GEMMs, small attention) stays on
        # one: with OpenBLAS's default two threads, a 128-token SmolLM2 prefill on the 2 shared cores
        # (load ~12) took 8-14 s wall, with one ~1 s (engine.threads: set from this thread, only one
        # OpenBLAS call limits it).
        blas = single_threaded_blas if self.model.backend.name == "numba" else nullcontext
        while True:
            with self._cv:
                while not self._closed and not self._waiting and not self._running:
                    self._cv.wait()
                if self._closed:
                    err = FailedPreconditionError("the generation engine was closed")
                    for r in list(self._waiting) + self._running:
                        self._finish(r, error=err)
                    self._waiting.clear()
                    self._running.clear()
                    return
                self._admit()
            try:
                with blas():
                    self._step()
            except Exception as exc:  # a failed step ends its requests, never the engine
                log.exception("generation step failed")
                err = exc if isinstance(exc, ShoalError) else ShoalError(f"generation failed: {exc}")
                for r in self._running:
                    self._finish(r, error=err)
                self._running.clear()

    def _admit(self) -> None:
        """Move waiting requests into the batch while slots and KV blocks allow (FIFO); a whole
        prompt's blocks are taken at admission so prefill chunks never run short."""
        spare = self.cache.free_blocks - len(self._running)  # keep a block per running request for growth
        while self._waiting and len(self._running) < self.max_batch_size:
            r = self._waiting[0]
            if r.cancelled:
                self._waiting.popleft()
                self._finish(r, error=None)
                continue
            blocks = self.cache.blocks_for(len(r.pending) + 1)
            if r.params.num_beams > 1:
                blocks = self._beam_blocks(len(r.prompt), r.params)
                if blocks > self.cache.free_blocks - len(self._running):
                    break
                self._waiting.popleft()
                self._run_beams(r)
                continue
            if blocks > (spare if self._running else self.cache.free_blocks):
                break  # alone, a request always fits: submit checked it against the empty pool
            self._waiting.popleft()
            r.seq = SequenceCache(self.cache)
            r.seq.reserve(len(r.pending))
            self._running.append(r)
            spare -= blocks

    def _reserve_all(self) -> None:
        """Give every running request room for its pending tokens, preempting the newest on shortage."""
        i = 0
        while i < len(self._running):
            r = self._running[i]
            try:
                r.seq.reserve(len(r.pending))
                i += 1
            except ResourceExhaustedError:
                victim = self._running.pop()
                victim.seq.free()
                victim.seq = None
                victim.pending = victim.prompt + victim.generated
                victim.draft = []
                self.stats["preemptions"] += 1
                with self._cv:
                    self._waiting.appendleft(victim)
                if victim is r:
                    continue

    def _step(self) -> None:
        for r in [r for r in self._running if r.cancelled]:
            self._running.remove(r)
            self._finish(r, error=None)
        if not self._running:
            return
        self._draft_all()
        self._reserve_all()
        # Decoding requests first (one token each, plus any draft), then prompt chunks in admission
        # order. At least one prompt token per step, so prefill progresses however many requests decode.
        decoding = [r for r in self._running if r.draft or len(r.pending) == 1]
        budget = max(self.max_step_tokens - sum(len(r.pending) for r in decoding), 1)
        feeds: dict[int, int] = {}
        for r in self._running:
            n = len(r.pending)
            if n > 1 and not r.draft:
                n = min(n, budget)
                budget -= n
            if n > 0:
                feeds[r.rid] = n
        batch = [r for r in self._running if r.rid in feeds]
        t0 = time.perf_counter()
        verify = [i for i, r in enumerate(batch) if r.draft]
        logits = self.model.forward([(r.seq, r.pending[: feeds[r.rid]]) for r in batch], verify=verify)
        host = to_numpy(self.model.xp.concatenate(logits, axis=0))
        t1 = time.perf_counter()
        bounds = np.cumsum([0] + [1 + len(r.draft) for r in batch])
        self.stats["steps"] += 1
        self.stats["tokens"] += sum(feeds.values())
        self.stats["max_batch"] = max(self.stats["max_batch"], len(batch))
        for i, r in enumerate(batch):
            rows = host[bounds[i] : bounds[i + 1]]
            if not r.generated:
                r.prefill_s += t1 - t0
            if feeds[r.rid] < len(r.pending):  # a prompt chunk: nothing to sample yet
                r.pending = r.pending[feeds[r.rid] :]
                continue
            p = r.params
            if r.draft:
                toks = accept(rows, r.draft, p, r.prompt + r.generated, r.rng)
                r.seq.truncate(r.seq.length - (len(r.draft) - (len(toks) - 1)))  # roll back the rejected
                r.drafted += len(r.draft)
                r.accepted += len(toks) - 1
                # all kept: draft one more next time; else as many as were kept, plus one
                full = len(toks) - 1 == len(r.draft)
                r.draft_len = min(p.num_draft_tokens, r.draft_len + 1) if full else len(toks)
                self.stats["drafted"] += len(r.draft)
                self.stats["accepted"] += len(toks) - 1
                r.draft = []
            else:
                toks = [sample_token(rows[0], itertools.chain(r.prompt, r.generated), p.temperature, p.top_k, p.top_p, p.repetition_penalty, r.rng)]
            for tok in toks:
                reason = self._emit(r, tok, t1)
                if reason is not None:
                    self._running.remove(r)
                    self._finish(r, reason=reason)
                    break
            else:
                r.pending = [toks[-1]]

    def _beam_blocks(self, prompt_tokens: int, p: SamplingParams) -> int:
        """Blocks a beam search can hold at once: the shared prompt, each beam's own tokens plus a copied block."""
        return self.cache.blocks_for(prompt_tokens) + 2 * p.num_beams * (self.cache.blocks_for(p.max_new_tokens) + 1)

    def _run_beams(self, r: _Request) -> None:
        p = r.params
        try:
            best = beam_search(self.model, self.cache, r.prompt, p.num_beams, p.max_new_tokens, self.end_ids, p.length_penalty, p.early_stopping)
        except ShoalError as exc:
            self._finish(r, error=exc)
            return
        now = time.perf_counter()
        r.prefill_s = now - r.t_submit
        reason = None
        for tok in best.tokens:
            reason = self._emit(r, tok, now)
            if reason is not None:
                break
        self._finish(r, reason=reason or "length")

    def _draft_all(self) -> None:
        """Append a draft to each speculating request that is decoding (bounded by its token budget and the context)."""
        ctx = self.model.config.context_length
        for r in self._running:
            p = r.params
            if p.draft is None or not r.generated or len(r.pending) != 1:
                continue
            room = min(r.draft_len, p.max_new_tokens - len(r.generated) - 1, ctx - r.seq.length - 2)
            if room > 0:
                r.draft = self.drafters[p.draft].propose(r.rid, r.prompt + r.generated, room)[:room]
                r.pending = r.pending + r.draft

    def _emit(self, r: _Request, tok: int, now: float) -> str | None:
        """Append one token to the request and stream it; the finish reason if it ends the request."""
        r.generated.append(tok)
        r.t_last = now
        if len(r.generated) == 1:
            r.t_first = now
        reason = None
        if tok in self.end_ids:
            reason = "stop"
        elif len(r.generated) >= r.params.max_new_tokens or len(r.prompt) + len(r.generated) - 1 >= self.model.config.context_length:
            reason = "length"
        text_ids = r.generated[:-1] if reason == "stop" else r.generated
        piece, hit = r.stream.push(text_ids, final=reason is not None)
        if hit:
            reason = "stop_string"
        r.events.put(TokenEvent(token_id=tok, text=piece))
        return reason

    def _finish(self, r: _Request, reason: str | None = None, error: BaseException | None = None) -> None:
        if r.params.draft is not None and r.params.draft in self.drafters:
            self.drafters[r.params.draft].release(r.rid)
        if r.seq is not None:
            r.seq.free()
            r.seq = None
        if reason is not None:
            n = len(r.generated)
            r.result = GenerationResult(
                text=r.stream.text,
                token_ids=list(r.generated),
                finish_reason=reason,
                prompt_tokens=len(r.prompt),
                prefill_tokens_per_s=len(r.prompt) / r.prefill_s if r.prefill_s > 0 else 0.0,
                decode_tokens_per_s=(n - 1) / (r.t_last - r.t_first) if n > 1 and r.t_last > r.t_first else 0.0,
                timings={"prefill_s": r.prefill_s, "total_s": r.t_last - r.t_submit},
                draft_tokens=r.drafted,
                accepted_tokens=r.accepted,
            )
        if error is not None:
            r.events.put(error)
        r.events.put(_DONE)
