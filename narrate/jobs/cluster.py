"""``narrate batch --ray ADDRESS``: a batch of documents narrated on a Ray cluster, chapter by chapter.

Who does what:
- The driver (the ``narrate batch --ray`` process) reads the documents, decides for each one what
  to do by the local batch's rules (skip, refuse, resume, start afresh), loads the model and the
  voice once and puts them in Ray's object store, hands out chapters, shows the progress and
  ends with the local batch's table. No audio passes through it.
- Workers (``ChapterWorker`` actors, one per CPU) take the model from the object store once and
  narrate the chapters handed to them as one batch, the next joining as one ends. The driver
  asks each busy worker for its reports (audio narrated, chapters done), and the worker answers
  as soon as it has one while narrating on in a thread (no streaming results, which Ray Client
  would not carry). Ray Client addresses (ray://) are refused: see ``refuse_ray_client``. A worker
  writes each chapter's samples (float32, as narrated) into the document's chapter store in
  OUT_DIR under a name of its own and renames the file into place when the chapter is complete.
- A document whose chapters are all in its store is assembled by a Ray task (``assemble``) on
  some node: the chapter files go through the loudness levelling, sink and chapter layout of the
  local batch (one file; m4b with chapter marks), then the store is removed. So OUT_DIR must be
  a path every node sees (a shared filesystem), or an fsspec URL (s3://bucket/audio,
  gs://..., file:///shared/audio) that every node can write to: chapter files and records are
  written through fsspec, a document is assembled in a temporary folder on the assembling node
  and uploaded, under a name of its own, then moved to its name (on object stores a copy: the
  name appears only complete).

Loudness is levelled by the assembly, over the whole document in order, as the local batch
levels it while narrating: one gain for the document, not one per chapter (a chapter's worker
sees only its chapter). The levelling's output depends on where the narrated chunks ended, so
each chapter's worker also records its chunks' lengths and sentence ends, and the assembly
replays them.

A worker or node that dies loses only its unfinished chapters: the driver hands them out again.
A chapter file exists only complete, and a document's file only once all its chapters do, so
nothing is lost or written twice. Every chapter starts from the seed, as in a one-file local
run, and a stream's samples do not depend on the streams beside it: the documents equal the
local batch's to the last bit.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import signal
import threading
import time
import uuid
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, Progress as RichProgress, TaskID, TextColumn, TimeRemainingColumn

from narrate.audio.resume import (ResumeRecord, check_compatible, clear_record, load_record, parse_record,
                                  record_json, save_record)
from narrate.errors import NarrateError, OutputError, one_line as _message

if TYPE_CHECKING:
    from narrate.runtime.narrator import NarrateSettings
    from narrate.runtime.pauses import Sentence

CHAPTERS_AT_ONCE = 8  # a worker's batch (as narrate.jobs.pipeline decodes chapter files)
CALL_CHAPTERS = 16  # chapters handed to a worker at once: its batch refills from them as chapters end
REPORT_EVERY = 0.5  # seconds between a worker's progress reports
STARVED_AFTER = 300.0  # seconds with chapters to narrate, no worker alive, one starting: give up
RECORD = "job"  # the chapter store's resume record: <store>/job.narrate.json
_BLOCK = 1 << 16  # samples per read when assembling


@dataclass(frozen=True)
class ChapterTask:
    """One chapter to narrate: where its file goes and its engine-ready sentences."""

    document: int  # the document's place in the batch
    chapter: int  # the chapter's place in the document
    store: str  # the document's chapter store (an absolute path every node sees, or an fsspec URL)
    sentences: tuple  # of str or narrate.runtime.pauses.Sentence (its text and the pause after it)

    @property
    def key(self) -> tuple[int, int]:
        return self.document, self.chapter


@dataclass(frozen=True)
class ChapterAudio:
    """A worker's report: audio narrated for a chapter since its last report."""

    key: tuple[int, int]  # ChapterTask.key
    samples: int
    sentences: int  # sentences ended


@dataclass(frozen=True)
class ChapterDone:
    """A worker's report: the chapter's file is in place."""

    key: tuple[int, int]
    samples: int  # all of the chapter's


@dataclass(frozen=True)
class Reports:
    """A worker's answer to the driver: its reports since the last answer, and whether its call
    is over (no more reports will come for the chapters it was handed)."""

    reports: list[ChapterAudio | ChapterDone]
    over: bool


# Places (the output folder, a document's output and chapter store, their files) are local
# paths or fsspec URLs; each helper below takes either, and gives a Path for a Path.
Place = Path | str


def store_of(target: Place) -> Place:
    """The chapter store of the output ``target``: a hidden folder beside it."""
    return _beside(target, f".{_name(target)}.ray")


def chapter_file(store: Place, chapter: int) -> Place:
    """A finished chapter's samples: little-endian float32, mono, at the model's sample rate."""
    return _inside(store, f"{chapter:05d}.f32")


def chunks_file(store: Place, chapter: int) -> Place:
    """A finished chapter's chunks as narrated: little-endian int64 pairs (samples, 1 at a
    sentence's end else 0), in place before the chapter file is."""
    return _inside(store, f"{chapter:05d}.chunks")


def is_url(place: Place) -> bool:
    return isinstance(place, str) and "://" in place


def _inside(folder: Place, name: str) -> Place:
    return folder / name if isinstance(folder, Path) else f"{folder.rstrip('/')}/{name}"


def _name(place: Place) -> str:
    return place.name if isinstance(place, Path) else place.rstrip("/").rsplit("/", 1)[-1]


def _beside(place: Place, name: str) -> Place:
    return place.with_name(name) if isinstance(place, Path) else f"{place.rstrip('/').rsplit('/', 1)[0]}/{name}"


def _fs(place: Place):
    """(fsspec filesystem, path in it) of a place."""
    from fsspec.core import url_to_fs

    return url_to_fs(str(place))


def _local(place: Place) -> Path | None:
    """The place as a local path (a path, or a file:// URL); None on another filesystem."""
    from fsspec.implementations.local import LocalFileSystem

    fs, path = _fs(place)
    return Path(path) if isinstance(fs, LocalFileSystem) else None


def _exists(place: Place) -> bool:
    fs, path = _fs(place)
    return fs.exists(path)


def _open(place: Place, mode: str):
    fs, path = _fs(place)
    return fs.open(path, mode)


def _move(source: Place, place: Place) -> None:
    """Rename (on object stores: copy, then delete): ``place`` appears complete or not at all."""
    fs, path = _fs(place)
    fs.mv(_fs(source)[1], path)


def _durable(f) -> None:
    """Flushed and, on a local disk, synced (before the rename that makes it count)."""
    f.flush()
    try:
        os.fsync(f.fileno())
    except (AttributeError, OSError, ValueError):  # (io.UnsupportedOperation: not a local file)
        pass


def _load_record(output: Place) -> ResumeRecord | None:
    local = _local(output)
    if local is not None:
        return load_record(local)
    fs, path = _fs(output)
    path = f"{path}.narrate.json"
    if not fs.exists(path):
        return None
    try:
        return parse_record(fs.cat_file(path).decode("utf-8"), path)
    except (OSError, UnicodeDecodeError) as e:
        raise OutputError(f"cannot read resume record {path}: {_message(e)}") from None


def _save_record(output: Place, record: ResumeRecord) -> None:
    local = _local(output)
    if local is not None:
        return save_record(local, record)
    fs, path = _fs(output)
    temp = f"{path}.narrate.json.{uuid.uuid4().hex[:12]}.partial"
    try:
        with fs.open(temp, "w") as f:
            f.write(record_json(record))
        fs.mv(temp, f"{path}.narrate.json")
    except OSError as e:
        raise OutputError(f"cannot write resume record {path}.narrate.json: {_message(e)}") from None


def _clear_record(output: Place) -> None:
    local = _local(output)
    if local is not None:
        return clear_record(local)
    fs, path = _fs(output)
    if fs.exists(f"{path}.narrate.json"):
        fs.rm(f"{path}.narrate.json")


# --- worker side ------------------------------------------------------------------------------


class _ChapterFile:
    """A chapter's samples written as they come, under a name no other attempt uses, and
    renamed into place only once complete (fsynced first), after its chunks file."""

    def __init__(self, store: Place, chapter: int):
        self.path = chapter_file(store, chapter)
        self.chunks_path = chunks_file(store, chapter)
        self.temp = _attempt(self.path)
        self._file = _open(self.temp, "wb")
        self.samples = 0
        self.chunks: list[tuple[int, int]] = []

    def write(self, samples: np.ndarray, sentence_end: bool) -> None:
        self._file.write(np.asarray(samples, "<f4").tobytes())
        self.samples += len(samples)
        self.chunks.append((len(samples), int(sentence_end)))

    def finish(self) -> None:
        chunks = _attempt(self.chunks_path)
        with _open(chunks, "wb") as f:
            f.write(np.asarray(self.chunks, "<i8").reshape(-1, 2).tobytes())
            _durable(f)
        _move(chunks, self.chunks_path)
        _durable(self._file)
        self._file.close()
        _move(self.temp, self.path)

    def discard(self) -> None:
        if not self._file.closed:
            self._file.close()
            fs, path = _fs(self.temp)
            if fs.exists(path):
                fs.rm(path)


def _attempt(place: Place) -> Place:
    """A name for one attempt's unfinished ``place``."""
    return _beside(place, f".{_name(place)}.{uuid.uuid4().hex[:12]}.partial")


class ChapterWorker:
    """A Ray actor holding one CPU: the model loaded once, chapters narrated as one batch."""

    def __init__(self, loaded, voice, settings):
        from narrate.runtime.narrator import Narrator

        # Inline vocoding in this one process: the worker holds one CPU (more CPUs, more
        # workers), and nothing is forked inside Ray's worker. Same samples as the vocoder process.
        self.narrator = Narrator(loaded, voice, replace(settings, vocoder_process=False,
                                                        decoder_processes=1))

    def node(self) -> str:
        """The Ray node this worker runs on (answered once the model is loaded)."""
        import ray

        return ray.get_runtime_context().get_node_id()

    def begin(self, tasks: list[ChapterTask]) -> Reports:
        """Start narrating ``tasks`` (in a thread of this worker) and answer as ``reports`` does."""
        self._narration = _Narration(self.narrate(tasks))
        return self.reports()

    def reports(self) -> Reports:
        """The reports since the last answer, once there is one (or the call is over); raises
        what the narration raised."""
        return self._narration.answer()

    def narrate(self, tasks: list[ChapterTask]) -> Iterator[ChapterAudio | ChapterDone]:
        """Narrate the chapters into their files, yielding what happens: each chapter's audio
        since the last report, and when a chapter's file is in place."""
        todo = []
        for task in tasks:
            fs, path = _fs(chapter_file(task.store, task.chapter))
            if fs.exists(path):  # completed by an attempt whose worker died before saying so
                yield ChapterDone(task.key, fs.size(path) // 4)
            else:
                todo.append(task)
        files: dict[int, _ChapterFile] = {}
        ended: list[int] = []  # streams whose audio has all come (decode_streams' on_end)
        unreported: dict[tuple[int, int], list[int]] = {}
        last = time.monotonic()

        def report() -> Iterator[ChapterAudio]:
            for key, (samples, sentences) in unreported.items():
                yield ChapterAudio(key, samples, sentences)
            unreported.clear()

        def finish_ended() -> Iterator[ChapterAudio | ChapterDone]:
            while ended:
                i = ended.pop(0)
                yield from report()
                chapter = files.pop(i, None) or _ChapterFile(todo[i].store, todo[i].chapter)
                chapter.finish()
                yield ChapterDone(todo[i].key, chapter.samples)

        chunks = self.narrator.decode_streams(((i, task.sentences) for i, task in enumerate(todo)),
                                              width=CHAPTERS_AT_ONCE, on_end=ended.append,
                                              offset_seeds=False)
        try:
            for i, chunk in chunks:
                if i not in files:
                    files[i] = _ChapterFile(todo[i].store, todo[i].chapter)
                files[i].write(chunk.samples, chunk.final)
                counts = unreported.setdefault(todo[i].key, [0, 0])
                counts[0] += len(chunk.samples)
                counts[1] += int(chunk.final)
                yield from finish_ended()
                if time.monotonic() - last >= REPORT_EVERY:
                    yield from report()
                    last = time.monotonic()
            yield from finish_ended()
        finally:
            chunks.close()  # stopped early: the streams' text threads end now
            for chapter in files.values():
                chapter.discard()


class _Narration:
    """A worker's call narrated in a thread, its reports kept until the driver asks for them.

    The driver asks (``ChapterWorker.reports``) rather than the worker streaming its reports
    back: Ray Client (``--ray ray://...``) does not carry streaming results (ray-project/ray#43357),
    and asking works the same over every kind of address. The thread narrates on while an
    answer travels, so the worker does not wait for the driver."""

    def __init__(self, reports: Iterator[ChapterAudio | ChapterDone]):
        self._changed = threading.Condition()
        self._reports: list[ChapterAudio | ChapterDone] = []
        self._over = False
        self._error: Exception | None = None
        threading.Thread(target=self._run, args=(reports,), name="narrate-chapters", daemon=True).start()

    def _run(self, reports: Iterator[ChapterAudio | ChapterDone]) -> None:
        try:
            for report in reports:
                with self._changed:
                    self._reports.append(report)
                    self._changed.notify()
        except Exception as e:  # raised to the driver once it has the reports before it
            self._error = e
        finally:
            with self._changed:
                self._over = True
                self._changed.notify()

    def answer(self) -> Reports:
        with self._changed:
            self._changed.wait_for(lambda: self._reports or self._over)
            if not self._reports and self._error is not None:
                raise self._error
            reports, self._reports = self._reports, []
            return Reports(reports, self._over and self._error is None)


def assemble(store: str, target: str, fmt: str, sample_rate: int, titles: list[str], tags=None,
             loudness: float | None = None) -> int:
    """Write a document from its chapter store (every chapter in it) as the local batch writes
    it, brought to ``loudness`` LUFS (None: as narrated), then remove the store. Returns the
    samples written. Runs as a Ray task on any node. A target on another filesystem than this
    node's (an fsspec URL) is written in a temporary folder here, then uploaded."""
    local = _local(target)
    if local is not None:
        samples = _assemble(store, local, fmt, sample_rate, titles, tags, loudness)
    else:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="narrate-assemble-") as folder:
            written = Path(folder) / _name(target)  # (an m4b is named after it)
            samples = _assemble(store, written, fmt, sample_rate, titles, tags, loudness)
            fs, path = _fs(target)
            upload = _attempt(path)
            fs.put_file(str(written), upload)
            fs.mv(upload, path)
    remove_store(store)
    return samples


def _assemble(store: Place, target: Path, fmt: str, sample_rate: int, titles: list[str], tags,
              loudness: float | None) -> int:
    from narrate.audio.sinks import open_sink

    normalizer = None
    if loudness is not None:
        from narrate.audio.loudness import LoudnessSettings, Normalizer

        normalizer = Normalizer(sample_rate, LoudnessSettings(target=loudness))
    # The driver applied the rules about existing outputs; a file here is this document's own,
    # assembled by an attempt that died before removing the store.
    with open_sink(target, fmt, sample_rate, force=True) as sink:
        for c, title in enumerate(titles):
            sink.mark_chapter(title)  # the pauses are in the chapters' audio, as in a local run
            with _open(chapter_file(store, c), "rb") as f:
                if normalizer is None:
                    for block in iter(lambda: f.read(4 * _BLOCK), b""):
                        sink.write(np.frombuffer(block, "<f4"))
                    continue
                # as narrate.jobs.pipeline levels a one-file run: chunk by chunk, flushed at the end
                with _open(chunks_file(store, c), "rb") as g:
                    chunks = np.frombuffer(g.read(), "<i8").reshape(-1, 2)
                for n, sentence_end in chunks.tolist():
                    sink.write(normalizer.level(np.frombuffer(f.read(4 * n), "<f4"), bool(sentence_end)))
                sink.write(normalizer.flush())
    if tags is not None:
        from narrate.audio.tags import write_tags

        write_tags(target, fmt, tags)  # as the local run tags its output
    return sink.samples_written


def remove_store(store: Place) -> None:
    """The record first: a store without one is leftovers, whatever else is still in it."""
    _clear_record(_inside(store, RECORD))
    local = _local(store)
    if local is not None:
        shutil.rmtree(local, ignore_errors=True)
        return
    fs, path = _fs(store)
    if fs.exists(path):
        fs.rm(path, recursive=True)


# --- the driver -------------------------------------------------------------------------------


@dataclass
class ClusterBatch:
    """A batch as the user asked for it (``narrate batch DOCS --out-dir DIR --ray ADDRESS``)."""

    address: str
    inputs: list[Path]
    out_dir: Place  # a folder every node sees, or an fsspec URL every node can write to
    fmt: str
    settings: dict  # what a resumed run must share with the first (see narrate.cli._run_settings)
    narrate: NarrateSettings
    model: str | None = None
    voice: str | None = None
    revision: str | None = None
    lexicon: object | None = None
    resume: bool = False
    force: bool = False
    job: dict = field(default_factory=dict)  # narrate.jobs.pipeline.Job's pauses and titles


@dataclass
class _Document:
    row: int  # its row in the table
    input: str
    target: Place
    store: Place
    titles: list[str]
    chapters: list[Sequence[str | Sentence]]
    record: ResumeRecord | None  # to save in a new store (None: the store exists already)
    tags: object  # narrate.audio.tags.Tags of the output, as the local run writes them
    done: set[int] = field(default_factory=set)
    narrated: int = 0  # samples narrated by this run
    final: bool = False


@dataclass
class _Call:
    """Chapters handed to one worker in one call, until each is done or handed out again."""

    worker: object
    tasks: dict[tuple[int, int], ChapterTask]
    reported: dict[tuple[int, int], list[int]] = field(default_factory=dict)  # shown so far


def plan_documents(batch: ClusterBatch, rows: list[list[str]]) -> list[_Document]:
    """The documents to narrate, by the local batch's rules; a row per input is added to ``rows``
    (the others' rows are filled in as they end)."""
    documents = []
    used: dict[Place, Path] = {}
    for path in batch.inputs:
        name = f"{path.stem}.{batch.fmt}"
        target = _inside(batch.out_dir, name) if is_url(batch.out_dir) else (Path(batch.out_dir) / name).absolute()
        rows.append([str(path), "pending", "", str(_inside(batch.out_dir, name))])
        if target in used:
            rows[-1][1:] = ["failed", "", f"same output name as {used[target]}"]
            continue
        used[target] = path
        try:
            document = _plan_document(batch, path, target, len(rows) - 1)
        except (NarrateError, OSError) as e:
            rows[-1][1:] = ["failed", "", _message(e)]
            continue
        if document is None:  # finished by an earlier run (as the local batch says it)
            rows[-1][1:] = ["done", "", f"{rows[-1][3]} (finished earlier: skipped; --force redoes it)"]
        else:
            documents.append(document)
    return documents


def _plan_document(batch: ClusterBatch, path: Path, target: Place, row: int) -> _Document | None:
    from narrate.jobs.pipeline import Job, Plan, Target, book_tags, read_chapters

    job = Job(str(path), str(target), batch.fmt, "none", lexicon=batch.lexicon, **batch.job)
    document, chapters, sha = read_chapters(job)
    tags = book_tags(Plan(job, Target("file", Path(_name(target)), batch.fmt), document, chapters, sha))
    settings = {**batch.settings, "format": batch.fmt, "split": "file"}  # as narrate.jobs.pipeline's
    store = store_of(target)
    if _load_record(target) is not None and not batch.force:
        raise OutputError(f"{_name(target)} is an unfinished narration of a run without --ray; "
                          f"continue it without --ray (--resume) or use --force to start over")
    record = None if batch.force else _load_record(_inside(store, RECORD))
    if batch.force:
        _clear_record(target)
    if record is None:
        remove_store(store)  # leftovers of a finished or abandoned run, if anything
        if _exists(target) and not batch.force:
            if batch.resume:
                return None
            raise OutputError(f"{target} exists; use --force to overwrite")
    elif not batch.resume:
        raise OutputError(f"{target} is an unfinished narration (its run was interrupted); use "
                          f"--resume to continue it or --force to start over")
    else:
        check_compatible(record, sha, settings)
    done = set()
    if record is not None:
        fs, folder = _fs(store)
        for file in fs.ls(folder, detail=False):
            name = file.rstrip("/").rsplit("/", 1)[-1]
            if name.endswith(".partial"):
                fs.rm(file)  # an attempt that never finished
            elif name.endswith(".f32"):
                done.add(int(name[: -len(".f32")]))
        if any(i >= len(chapters) for i in done):
            raise OutputError(f"the chapter store {store} does not match the input; use --force "
                              f"to start over")
    return _Document(row, str(path), target, store, [t for t, _ in chapters],
                     [s for _, s in chapters], ResumeRecord(sha, settings) if record is None else None,
                     tags, done)


def run_batch(batch: ClusterBatch, progress: "ClusterProgress", rows: list[list[str]]) -> None:
    """Narrate the batch on the cluster; ``rows`` (document, status, audio s, output or error)
    is filled in as documents end, also when interrupted (then Interrupted is raised)."""
    if is_url(batch.out_dir) and _fs(batch.out_dir)[0].protocol in ("memory", ("memory",)):
        raise NarrateError(f"--out-dir {batch.out_dir}: a memory:// filesystem is each process's own; "
                           f"the cluster's workers cannot share it (use a folder every node sees, or s3://...)")
    refuse_ray_client(batch.address)
    ray = _import_ray()
    documents = plan_documents(batch, rows)
    if not documents:
        return
    from narrate.runtime.narrator import load_model_and_voice

    loaded, voice = load_model_and_voice(batch.model, batch.voice, batch.narrate.speed,
                                         batch.revision, batch.narrate.vocoder)
    ours = signal.getsignal(signal.SIGTERM)
    try:
        with warnings.catch_warnings():  # Ray Client's warning on a timeout says what our error says
            warnings.simplefilter("ignore", UserWarning)
            ray.init(address=batch.address, logging_level=logging.WARNING, log_to_driver=False)
    except (ConnectionError, ValueError, RuntimeError) as e:
        raise NarrateError(f"cannot reach the Ray cluster at {batch.address}: {_message(e)}") from None
    finally:
        # ray.init puts sys.exit in SIGTERM's place: the run would die without keeping its
        # chapters' record of what was interrupted, and abort in Ray's threads (status 134)
        signal.signal(signal.SIGTERM, ours)
    try:
        claim_stores(documents)  # only now: a run that could not start leaves nothing to resume
        _Driver(ray, batch, documents, progress, rows, loaded, voice).run()
    finally:
        progress.end()
        ray.shutdown()


def claim_stores(documents: list[_Document]) -> None:
    """Each new document gets its chapter store, with the record of what it is narrating."""
    for doc in documents:
        if doc.record is not None:
            fs, folder = _fs(doc.store)
            fs.makedirs(folder, exist_ok=True)
            _save_record(_inside(doc.store, RECORD), doc.record)


class _Driver:
    """Hands chapters to workers, follows their reports, replaces lost workers, assembles."""

    def __init__(self, ray, batch: ClusterBatch, documents: list[_Document], progress, rows,
                 loaded, voice):
        self.ray, self.batch, self.rows, self.progress = ray, batch, rows, progress
        self.documents = documents
        self.rate = loaded.codec.sample_rate
        self.queue: list[ChapterTask] = []
        for d, doc in enumerate(documents):
            self.queue += [ChapterTask(d, c, str(doc.store), tuple(sents))
                           for c, sents in enumerate(doc.chapters) if c not in doc.done]
        # Longest first, so the last chapters to finish are short ones.
        self.queue.sort(key=lambda t: -sum(len(getattr(s, "text", s)) for s in t.sentences))
        self.worker_class = ray.remote(num_cpus=1, max_restarts=0, max_task_retries=0)(ChapterWorker)
        self.assembler = ray.remote(num_cpus=0, max_retries=3)(assemble)
        self.model = ray.put(loaded)
        self.voice = voice
        self.starting: dict = {}  # node() answer -> worker not ready yet
        self.idle: list = []
        self.calls: dict = {}  # ObjectRef of a worker's next answer (Reports) -> _Call
        self.assembling: dict = {}  # ObjectRef -> _Document
        self.workers = 0  # ready and alive
        self.failure = ""  # why workers could not start, if they could not
        self._starved: float | None = None  # since when no worker was alive, with chapters waiting

    def run(self) -> None:
        ray = self.ray
        cpus = int(ray.cluster_resources().get("CPU", 0))
        if cpus < 1:
            raise NarrateError(f"the Ray cluster at {self.batch.address} has no CPUs for workers")
        for _ in range(min(cpus, len(self.queue))):
            self._start_worker()
        for doc in self.documents:
            if len(doc.done) == len(doc.chapters):
                self._assemble(doc)  # all chapters narrated by an interrupted run
        self.progress.begin(len(self.documents), sum(len(d.chapters) for d in self.documents),
                            sum(len(d.done) for d in self.documents),
                            sum(len(t.sentences) for t in self.queue), self.rate)
        try:
            while not all(doc.final for doc in self.documents):
                self._dispatch()
                waiting = [*self.starting, *self.calls, *self.assembling]
                if not waiting or self._starving():
                    self._give_up()
                    break
                ready, _ = ray.wait(waiting, num_returns=1, timeout=REPORT_EVERY)
                for item in ready:
                    if item in self.starting:
                        self._started(item)
                    elif item in self.calls:
                        self._follow(item)
                    else:
                        self._assembled(item)
        except KeyboardInterrupt as e:
            self._interrupted(e)

    # workers

    def _start_worker(self) -> None:
        worker = self.worker_class.remote(self.model, self.voice, self.batch.narrate)
        self.starting[worker.node.remote()] = worker

    def _started(self, ref) -> None:
        worker = self.starting.pop(ref)
        try:
            self.ray.get(ref)
        except self.ray.exceptions.RayError as e:
            self.failure = _message(_cause(e))
            return
        self.workers += 1
        self.idle.append(worker)
        self.progress.workers(self.workers)

    def _lost(self, call: _Call, error) -> None:
        """A worker died (or its node did): its unfinished chapters go back in the queue."""
        _kill(self.ray, call.worker)  # if only unreachable, it must not go on writing
        self.workers -= 1
        for samples, sentences in call.reported.values():
            self.progress.audio(-samples, -sentences)  # they are narrated again
        self.queue[:0] = call.tasks.values()
        self.progress.workers(self.workers)
        self.progress.say(f"narrate: a Ray worker was lost ({type(error).__name__}); "
                          f"its {len(call.tasks)} unfinished chapter(s) go to the other workers")
        if self.ray.available_resources().get("CPU", 0) >= 1:
            self._start_worker()  # a replacement where a CPU is free

    def _starving(self) -> bool:
        """Chapters wait, and for STARVED_AFTER seconds no worker was alive (only starting ones,
        which may never find a CPU)."""
        if not self.queue or self.workers > 0:
            self._starved = None
            return False
        self._starved = self._starved or time.monotonic()
        return time.monotonic() - self._starved > STARVED_AFTER

    def _give_up(self) -> None:
        why = self.failure or "no Ray worker left (nodes lost)"
        for doc in self.documents:
            if not doc.final and doc not in self.assembling.values():
                self._end(doc, "failed", f"{why}; run again with --resume to continue")

    # chapters

    def _dispatch(self) -> None:
        """Deal the queue's next chapters to the idle workers, in snake order (the queue is
        longest first), each a fair share of what is left, at most CALL_CHAPTERS."""
        self.queue = [t for t in self.queue if not self.documents[t.document].final]
        if not self.idle or not self.queue:
            return
        expected = self.workers + len(self.starting)  # those starting will want their share
        share = max(1, min(CALL_CHAPTERS, math.ceil(len(self.queue) / max(1, expected))))
        idle, self.idle = self.idle, []
        hands: list[list[ChapterTask]] = [[] for _ in idle]
        take, self.queue = self.queue[:share * len(idle)], self.queue[share * len(idle):]
        for i, task in enumerate(take):
            lap, place = divmod(i, len(idle))
            hands[place if lap % 2 == 0 else len(idle) - 1 - place].append(task)
        for worker, tasks in zip(idle, hands):
            if not tasks:
                self.idle.append(worker)
                continue
            self.calls[worker.begin.remote(tasks)] = _Call(worker, {t.key: t for t in tasks})

    def _follow(self, ref) -> None:
        # (the call stays in self.calls until it is idle or asked again: an interruption in
        # between still finds its worker to stop)
        call = self.calls[ref]
        try:
            answer = self.ray.get(ref)
        except self.ray.exceptions.RayActorError as e:
            del self.calls[ref]
            self._lost(call, e)
            return
        except self.ray.exceptions.RayError as e:  # the narration itself failed
            self.idle.append(call.worker)
            del self.calls[ref]
            for key in call.tasks:
                doc = self.documents[key[0]]
                if not doc.final:
                    self._end(doc, "failed", _message(_cause(e)))
            return
        for event in answer.reports:
            self._report(call, event)
        if answer.over:
            self.queue[:0] = call.tasks.values()  # none normally
            self.idle.append(call.worker)
        else:
            self.calls[call.worker.reports.remote()] = call
        del self.calls[ref]

    def _report(self, call: _Call, event: ChapterAudio | ChapterDone) -> None:
        key = event.key
        shown = call.reported.setdefault(key, [0, 0])
        if isinstance(event, ChapterAudio):
            shown[0] += event.samples
            shown[1] += event.sentences
            self.progress.audio(event.samples, event.sentences)
            return
        task = call.tasks.pop(key)
        call.reported.pop(key)
        doc = self.documents[key[0]]
        # What the reports did not show (all of it for a chapter found already finished).
        self.progress.audio(event.samples - shown[0], len(task.sentences) - shown[1])
        self.progress.chapter_done()
        doc.narrated += event.samples
        doc.done.add(key[1])
        if len(doc.done) == len(doc.chapters) and not doc.final:
            self._assemble(doc)

    # documents

    def _assemble(self, doc: _Document) -> None:
        ref = self.assembler.remote(str(doc.store), str(doc.target), self.batch.fmt, self.rate,
                                    doc.titles, doc.tags, self.batch.job.get("loudness"))
        self.assembling[ref] = doc

    def _assembled(self, ref) -> None:
        doc = self.assembling.pop(ref)
        try:
            self.ray.get(ref)
        except self.ray.exceptions.RayError as e:
            self._end(doc, "failed", _message(_cause(e)))
            return
        # (a document without a record to save continues an interrupted run's store)
        self._end(doc, "done" if doc.record is not None else "resumed", str(_inside(self.batch.out_dir, _name(doc.target))))

    def _end(self, doc: _Document, status: str, detail: str) -> None:
        doc.final = True
        self.rows[doc.row][1:] = [status, f"{doc.narrated / self.rate:.1f}", detail]
        self.progress.document_done()

    def _interrupted(self, exc: KeyboardInterrupt) -> None:
        from narrate.jobs.pipeline import Interrupted, Terminated

        for worker in [*self.idle, *self.starting.values(), *(c.worker for c in self.calls.values())]:
            _kill(self.ray, worker)
        for doc in self.documents:
            if not doc.final:
                self._end(doc, "interrupted", str(_inside(self.batch.out_dir, _name(doc.target))))
        code = 143 if isinstance(exc, Terminated) else 130
        raise Interrupted(f"interrupted: finished chapters are kept in {self.batch.out_dir}; "
                          f"run again with --resume to continue", code) from exc


# --- progress ---------------------------------------------------------------------------------


class ClusterProgress:
    """The driver's one live display (on a terminal): documents, chapters, audio, speed, ETA."""

    def __init__(self, live: bool, quiet: bool = False, console: Console | None = None):
        self.console = console or Console(stderr=True, highlight=False, soft_wrap=True)
        self.live = live
        self.quiet = quiet
        self._bar: RichProgress | None = None
        self._task: TaskID | None = None
        self._counts = {"documents": 0, "chapters": 0, "samples": 0, "workers": 0}
        self._totals = {"documents": 0, "chapters": 0}
        self._rate = 1
        self._started = 0.0

    def begin(self, documents: int, chapters: int, chapters_done: int, sentences: int,
              sample_rate: int) -> None:
        self._totals = {"documents": documents, "chapters": chapters}
        self._counts.update(chapters=chapters_done, samples=0)
        self._rate = int(sample_rate)
        self._started = time.monotonic()
        if not self.live:
            return
        self._bar = RichProgress(
            TextColumn("[bold]ray[/] {task.fields[workers]} workers"),
            BarColumn(bar_width=12),
            TextColumn("{task.fields[documents]} docs"),
            TextColumn("{task.fields[chapters]} chapters"),
            TextColumn("{task.fields[audio]} audio"),
            TextColumn("{task.fields[speed]}"),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,  # the table replaces it
        )
        self._bar.start()
        self._task = self._bar.add_task("", total=sentences, **self._fields())

    def workers(self, n: int) -> None:
        self._counts["workers"] = n
        self._show()

    def audio(self, samples: int, sentences: int) -> None:
        self._counts["samples"] += samples
        if self._bar is not None and self._task is not None:
            self._bar.advance(self._task, sentences)
        self._show()

    def chapter_done(self) -> None:
        self._counts["chapters"] += 1
        self._show()

    def document_done(self) -> None:
        self._counts["documents"] += 1
        self._show()

    def say(self, line: str) -> None:
        """A line on stderr above the display (unless --quiet)."""
        if not self.quiet:
            self.console.print(line, markup=False)

    def audio_seconds(self) -> float:
        return self._counts["samples"] / self._rate

    def end(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def _fields(self) -> dict:
        elapsed = time.monotonic() - self._started
        seconds = self.audio_seconds()
        return {"workers": self._counts["workers"],
                "documents": f"{self._counts['documents']}/{self._totals['documents']}",
                "chapters": f"{self._counts['chapters']}/{self._totals['chapters']}",
                "audio": _clock(seconds),
                "speed": f"{seconds / elapsed:.1f}x" if elapsed > 1 else ""}

    def _show(self) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, **self._fields())


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(max(0.0, seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


# --- helpers ----------------------------------------------------------------------------------


def refuse_ray_client(address: str) -> None:
    """A ray:// address (Ray Client) is refused in one line, before anything is loaded. The
    workers would run through it (they answer the driver's calls, no streaming), but on a clean
    install Ray's client server failed to start the per-client server it needs in 3 of 3 test
    runs (the server process exits at once, without a word in its log), and the run then ends
    with Ray's "Initialization failure from server"."""
    if address.startswith("ray://"):
        raise NarrateError(f"--ray {address}: Ray Client addresses are not supported; run narrate batch on a "
                           f"node of the cluster with --ray auto or --ray HEAD_IP:6379")


def _import_ray():
    """Ray, imported only when --ray is given: narrate works without it."""
    try:
        import ray
    except ModuleNotFoundError as e:
        if e.name != "ray":
            raise
        raise NarrateError("--ray needs Ray: pip install 'narrate[ray]' (make setup installs it)") from None
    return ray


def _cause(error: BaseException) -> BaseException:
    """The exception a Ray task raised, without Ray's wrapping."""
    return getattr(error, "cause", None) or error


def _kill(ray, worker) -> None:
    try:
        ray.kill(worker)
    except Exception:  # already gone, or its node is: nothing left to stop
        pass
