"""narrate batch --ray on a real Ray cluster of two nodes on this machine (one CPU each).

The cluster is started once for the module (ray.cluster_utils.Cluster: a head node, with a Ray
Client server, and a second node, each a raylet of its own) and always stopped at the end, with
any process it left behind.
The documents are compared sample by sample with the local batch's, which the tests also run.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import psutil
import pytest
import soundfile as sf

from conftest import cli_env

REPO = Path(__file__).resolve().parent.parent
SEED = "3"


def _sentences(word: str, n: int) -> str:
    return " ".join(f"{word} {i} is here." for i in range(n))


@pytest.fixture(scope="module")
def docs(tmp_path_factory) -> list[Path]:
    """Six chapters of different lengths in three documents (Markdown headings, CHAPTER lines,
    a plain text without chapters)."""
    folder = tmp_path_factory.mktemp("docs")
    a, b, c = folder / "a.md", folder / "b.txt", folder / "c.txt"
    a.write_text(f"# First\n\n{_sentences('Lamp', 24)}\n\n# Second\n\n{_sentences('Rope', 3)}\n\n"
                 f"# Third\n\n{_sentences('Gull', 16)}\n", encoding="utf-8")
    b.write_text(f"CHAPTER I\n\n{_sentences('Tide', 20)}\n\nCHAPTER II\n\n{_sentences('Reef', 2)}\n",
                 encoding="utf-8")
    c.write_text(_sentences("Stone", 10) + "\n", encoding="utf-8")
    return [a, b, c]


@pytest.fixture(scope="module")
def local(tmp_path_factory, docs, narrate_cmd) -> Path:
    """The local batch's output folder: the reference (levelled to the default loudness, as
    the cluster's runs are)."""
    out = tmp_path_factory.mktemp("local")
    # A bundled voice: its embedding is stored (a recording's would be computed by every run).
    proc = narrate_cmd("batch", *docs, "--out-dir", out, "--seed", SEED, "--voice", "joe", voice=False)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="module")
def cluster():
    """(Cluster, its second node). Nodes and workers import narrate from
    this checkout."""
    from ray.cluster_utils import Cluster

    marker = f"narrate-test-{uuid.uuid4().hex}"  # in the environment of every process it starts
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        mp.setenv("RAY_USAGE_STATS_ENABLED", "0")
        mp.setenv("OMP_NUM_THREADS", "1")
        mp.setenv("NARRATE_TEST_CLUSTER", marker)
        # A raylet waits this long for its agents (Python processes) before giving up; the
        # default (about 20 s) is too short on a busy machine.
        mp.setenv("RAY_agent_register_timeout_ms", "180000")
        # Ray starts its workers 15 steps nicer than the raylet: on a busy machine they then
        # barely run (a worker still loading the model after minutes).
        mp.setenv("RAY_worker_niceness", "0")
        started = None
        try:
            started, second = _start_cluster(Cluster, marker)
            yield started, second
        finally:
            if started is not None:
                started.shutdown()
            _stop_marked(marker)


def _start_cluster(Cluster, marker: str, attempts: int = 3):
    """A head node and a second one, one CPU each. Ray gives a node 30 s to register, which a
    busy machine can miss: then it tries again, after stopping what it started."""
    for attempt in range(attempts):
        started = None
        try:
            started = Cluster(initialize_head=True, head_node_args={
                "num_cpus": 1, "include_dashboard": False,
                # A node that is gone is declared dead within a few seconds.
                "_system_config": {"health_check_period_ms": 1000, "health_check_failure_threshold": 4,
                                   "health_check_initial_delay_ms": 0}})
            second = started.add_node(num_cpus=1)
            started.wait_for_nodes()
            return started, second
        except Exception as e:
            if "timed out during startup" not in str(e) or attempt + 1 == attempts:
                raise
            if started is not None:
                started.shutdown()
            _stop_marked(marker)


def _marked(marker: str) -> list[psutil.Process]:
    """The processes the cluster started: they carry our marker in their environment."""
    found = []
    for p in psutil.process_iter():
        try:
            if p.pid != os.getpid() and p.environ().get("NARRATE_TEST_CLUSTER") == marker:
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return found


def _stop_marked(marker: str) -> None:
    """Kill whatever the cluster started and left running (never Ray processes by name, which
    may be someone else's)."""
    left = _marked(marker)
    for p in left:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(left, timeout=10)


def _command(tiny_model, voice_wav, docs, out, address, *extra) -> list[str]:
    return [sys.executable, "-m", "narrate", "batch", *map(str, docs), "--out-dir", str(out),
            "--ray", address, "--seed", SEED, "--model", str(tiny_model), "--voice", "joe",
            *extra]


def _run(command, timeout=600, **env) -> subprocess.CompletedProcess:
    proc = subprocess.run(command, capture_output=True, text=True, env=cli_env(**env), timeout=timeout)
    return proc


def _until_a_chapter_is_done(proc: subprocess.Popen, out: Path, begun: int = 1, timeout=600) -> None:
    """Wait until some chapter file of the run is complete (in a chapter store under out) and
    at least ``begun`` chapters have a file (complete, or being written)."""
    deadline = time.monotonic() + timeout

    def chapters(pattern: str) -> int:
        return len(list(out.glob(f".*.ray/{pattern}")))

    while not (chapters("*.f32") and chapters("*.f32") + chapters(".*.partial") >= begun):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no chapter was finished in time"
        time.sleep(0.02)


def _same_as_local(out: Path, local: Path, docs) -> None:
    for doc in docs:
        name = f"{doc.stem}.wav"
        ours, _ = sf.read(str(out / name), dtype="int16")
        theirs, _ = sf.read(str(local / name), dtype="int16")
        assert len(ours) == len(theirs), name
        assert np.array_equal(ours, theirs), f"{name}: {np.count_nonzero(ours != theirs)} samples differ"
        assert (out / name).read_bytes() == (local / name).read_bytes(), name


def _audio_seconds(table: str) -> list[float]:
    """The 'audio s' column of the batch table."""
    return [float(m) for m in re.findall(r"│\s*(?:done|resumed|interrupted)\s*│\s*([\d.]+)\s*│", table)]


def test_cluster_batch_equals_local_batch(tmp_path, cluster, local, docs, tiny_model, voice_wav):
    """Three documents, six chapters over two nodes: each document equals the local batch's,
    sample by sample and byte by byte, and no chapter store is left behind."""
    out = tmp_path / "out"
    proc = _run(_command(tiny_model, voice_wav, docs, out, cluster[0].address))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("done") == 3, proc.stdout
    _same_as_local(out, local, docs)
    assert sorted(p.name for p in out.iterdir()) == ["a.wav", "b.wav", "c.wav"]  # no store left


def test_a_cluster_batch_writes_to_an_fsspec_url(tmp_path, cluster, local, docs, tiny_model, voice_wav):
    """--out-dir file:///...: chapter files, records and documents go through fsspec (as they
    would to s3://): the same documents as the local batch, and no store left."""
    out = tmp_path / "out"
    proc = _run(_command(tiny_model, voice_wav, docs, out.as_uri(), cluster[0].address))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("done") == 3, proc.stdout
    _same_as_local(out, local, docs)
    assert sorted(p.name for p in out.iterdir()) == ["a.wav", "b.wav", "c.wav"]


def test_interrupted_run_resumes_its_chapters_and_skips_finished_documents(
        tmp_path, cluster, local, docs, tiny_model, voice_wav):
    """Ctrl-C mid-job keeps the finished chapters; the same command run again (as the local
    batch) narrates only the missing chapters, and the documents equal the local batch's; run
    once more, every document is skipped as finished."""
    out = tmp_path / "out"
    command = _command(tiny_model, voice_wav, docs, out, cluster[0].address)
    # Ctrl-C's default action, whatever this process inherited (a shell's background job
    # ignores SIGINT, and so would narrate).
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=cli_env(),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    _until_a_chapter_is_done(proc, out)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stdout and "--resume" in stderr, (stdout, stderr)
    assert list(out.glob(".*.ray/*.f32"))  # finished chapters, kept

    resumed = _run(command)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed" in resumed.stdout, resumed.stdout
    _same_as_local(out, local, docs)
    reference = _run_seconds(local)
    assert sum(_audio_seconds(resumed.stdout)) < reference - 0.1  # the kept chapters were not narrated again

    assert sorted(p.name for p in out.iterdir()) == ["a.wav", "b.wav", "c.wav"]  # nor any attempt's leftovers

    finished = _run(command, COLUMNS="400")  # the table's rows on one line each
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.count("finished earlier") == 3, finished.stdout
    _same_as_local(out, local, docs)


def test_sigterm_mid_job_keeps_the_finished_chapters(tmp_path, cluster, docs, tiny_model, voice_wav):
    """SIGTERM (kill, a scheduler) ends the run as Ctrl-C does: status 143, the table, the
    finished chapters kept for --resume (Ray's own handler made it abort, status 134)."""
    out = tmp_path / "out"
    proc = subprocess.Popen(_command(tiny_model, voice_wav, docs, out, cluster[0].address),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env())
    _until_a_chapter_is_done(proc, out)
    proc.terminate()
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 143, stderr
    assert "interrupted" in stdout and "--resume" in stderr, (stdout, stderr)
    assert list(out.glob(".*.ray/*.f32"))


def _run_seconds(folder: Path) -> float:
    """Seconds of audio in the documents of a folder (all of it narrated, pauses included)."""
    return sum(sf.info(str(p)).duration for p in folder.glob("*.wav"))


def _kill_node(started, node) -> None:
    """The node's workers and then its raylet killed at once (SIGKILL). Killing the raylet alone
    (``remove_node``) left its worker running until it noticed, a second or more: time enough for
    a fast model to finish its chapters and report them, so that nothing was lost to test (2 runs
    in 8 here, on a busy machine)."""
    raylet = psutil.Process(node.all_processes["raylet"][0].process.pid)
    for child in raylet.children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    started.remove_node(node, allow_graceful=False)


def test_a_node_killed_mid_job_loses_nothing(tmp_path, cluster, local, docs, tiny_model, voice_wav):
    """The second node is removed (its raylet and worker killed) once the first chapter is done:
    its unfinished chapters run on the head node, and every document equals the local batch's."""
    started, second = cluster
    out = tmp_path / "out"
    proc = subprocess.Popen(_command(tiny_model, voice_wav, docs, out, started.address),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env())
    # Each worker is handed three of the six chapters and starts them at once: four begun
    # means both are narrating.
    _until_a_chapter_is_done(proc, out, begun=4)
    _kill_node(started, second)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    lost = re.search(r"a Ray worker was lost .*its (\d+) unfinished chapter", stderr)
    assert lost and int(lost.group(1)) >= 1, stderr
    assert stdout.count("done") == 3, stdout
    _same_as_local(out, local, docs)
    assert sorted(p.name for p in out.iterdir()) == ["a.wav", "b.wav", "c.wav"]


# --- without a cluster: the worker and the assembly in this process, the planning rules ---------


@pytest.mark.parametrize("fmt,loudness,where", [("wav", None, "path"), ("m4b", None, "path"), ("wav", -18.0, "path"),
                                                ("m4b", -18.0, "url")])
def test_worker_chapters_assembled_equal_the_local_one_file_run(tmp_path, docs, tiny_model, fmt, loudness, where):
    """ChapterWorker's code in this process narrates a document's chapters as one batch, in
    scrambled order; assemble() writes them: the same bytes as the local run of the document
    (wav: the samples; m4b: the encoded audio and its chapter marks), also when levelled to a
    loudness (over the whole document, replaying the chunks each worker narrated), also into
    an fsspec URL (memory://: chapter files through fsspec, the document uploaded)."""
    from narrate.jobs.cluster import ChapterDone, ChapterTask, ChapterWorker, assemble, store_of
    from narrate.runtime.narrator import NarrateSettings, Narrator, load_model_and_voice
    from dataclasses import replace

    from narrate.jobs.pipeline import Job, Target, book_tags, make_plan, read_chapters, run
    from narrate.cli.progress import Progress

    loaded, voice = load_model_and_voice(str(tiny_model), "joe")
    local = tmp_path / "local" / f"a.{fmt}"  # the same name: an m4b carries it as its title
    narrator = Narrator(loaded, voice, NarrateSettings(seed=int(SEED)))
    try:
        plan = make_plan(Job(str(docs[0]), str(local), fmt, "none", loudness=loudness), True)
        run(narrator, plan, Progress(False))
    finally:
        narrator.close()
    if where == "url":
        import fsspec

        memory = fsspec.filesystem("memory")
        target = f"memory://{uuid.uuid4().hex}/ours/a.{fmt}"
        store = store_of(target)
        memory.makedirs(memory._strip_protocol(store), exist_ok=True)
    else:
        target = tmp_path / "ours" / f"a.{fmt}"
        store = store_of(target)
        store.mkdir(parents=True)
    _, chapters, _ = read_chapters(Job(str(docs[0]), str(target), fmt, "none", loudness=loudness))
    worker = ChapterWorker(loaded, voice, NarrateSettings(seed=int(SEED)))
    tasks = [ChapterTask(0, c, str(store), tuple(chapters[c][1])) for c in (2, 0, 1)]
    events, answer = [], worker.begin(tasks)  # as the driver asks: the chapters narrated in a thread
    while True:
        events += answer.reports
        if answer.over:
            break
        answer = worker.reports()
    done = {e.key: e.samples for e in events if isinstance(e, ChapterDone)}
    assert sorted(done) == [(0, 0), (0, 1), (0, 2)]
    reported: dict = {}  # the progress reports add up to each chapter's samples, before it is done
    for e in events:
        if not isinstance(e, ChapterDone):
            assert e.key not in done or reported.get(e.key, 0) < done[e.key]
            reported[e.key] = reported.get(e.key, 0) + e.samples
    assert reported == done
    assemble(str(store), str(target), fmt, loaded.codec.sample_rate, [t for t, _ in chapters],
             book_tags(replace(plan, target=Target("file", Path(f"a.{fmt}"), fmt))), loudness)
    if where == "url":
        written, kept = memory._strip_protocol(target), memory._strip_protocol(store)
        assert memory.cat_file(written) == local.read_bytes()
        assert not memory.exists(kept)
        assert memory.ls(written.rsplit("/", 1)[0], detail=False) == [written]  # no upload left behind
    else:
        assert target.read_bytes() == local.read_bytes()
        assert not store.exists()


def _batch(out: Path, docs, **kw):
    from narrate.jobs.cluster import ClusterBatch
    from narrate.runtime.narrator import NarrateSettings

    settings = {"model": "tiny", "seed": 3}
    return ClusterBatch("auto", list(docs), out, "wav", {**settings, **kw.pop("settings", {})},
                        NarrateSettings(seed=3), **kw)


@pytest.mark.parametrize("where", ["path", "url"])
def test_planning_follows_the_local_batch_rules(tmp_path, docs, where):
    """Finished outputs are refused without --force and skipped with --resume; an unfinished
    document (its chapter store) is refused without --resume, continued from its finished
    chapters with it, and refused if the settings changed; --force starts over. The same in a
    folder and at an fsspec URL (memory://, in this process)."""
    import fsspec

    from narrate.jobs.cluster import chapter_file, claim_stores, plan_documents, store_of

    out = tmp_path / "out" if where == "path" else f"memory://{uuid.uuid4().hex}/out"
    fs, root = fsspec.core.url_to_fs(str(out))

    def at(*names) -> str:  # a path in fs
        return "/".join([root, *names])

    rows = []
    documents = plan_documents(_batch(out, docs), rows)
    assert [r[1] for r in rows] == ["pending"] * 3 and len(documents) == 3
    assert not fs.exists(root)  # nothing is written before the cluster is reached
    claim_stores(documents)
    fs.pipe_file(at("c.wav"), b"finished earlier")
    fs.rm(at(".c.wav.ray", "job.narrate.json"))  # c finished: only its file is left (and an empty store)
    fs.pipe_file(at(".a.wav.ray", "00001.f32"), np.zeros(5, "<f4").tobytes())
    fs.pipe_file(at(".a.wav.ray", ".00002.f32.0123.partial"), b"")
    assert str(chapter_file(store_of(_join(out, "a.wav")), 1)).endswith(at(".a.wav.ray", "00001.f32"))

    rows = []
    assert plan_documents(_batch(out, docs), rows) == []
    assert [r[1] for r in rows] == ["failed"] * 3
    assert "--resume" in rows[0][3] and "use --force to overwrite" in rows[2][3]

    rows = []
    resumed = plan_documents(_batch(out, docs, resume=True), rows)
    assert [r[1] for r in rows] == ["pending", "pending", "done"] and "finished earlier" in rows[2][3]
    assert [sorted(d.done) for d in resumed] == [[1], []] and resumed[0].record is None
    assert not fs.glob(at(".a.wav.ray", ".*.partial"))  # an unfinished attempt's

    rows = []
    assert plan_documents(_batch(out, docs[:1], resume=True, settings={"seed": 4}), rows) == []
    assert "settings differ" in rows[0][3] and "seed: 3 then, 4 now" in rows[0][3]

    rows = []
    fresh = plan_documents(_batch(out, docs, force=True), rows)
    assert [sorted(d.done) for d in fresh] == [[], [], []]
    assert not fs.exists(at(".a.wav.ray"))


def _join(out, name):
    return out / name if isinstance(out, Path) else f"{out}/{name}"


def test_the_display_counts_documents_chapters_audio_and_lost_work():
    """The driver's live line: workers, documents, chapters, audio, speed; a lost worker's
    reports are taken back (negative audio)."""
    import io

    from rich.console import Console

    from narrate.jobs import cluster

    screen = io.StringIO()
    progress = cluster.ClusterProgress(live=True, console=Console(file=screen, force_terminal=True,
                                                                  width=120))
    progress.begin(documents=3, chapters=6, chapters_done=1, sentences=40, sample_rate=100)
    progress._started -= 60  # a minute ago
    progress.workers(2)
    progress.audio(9000, 10)
    progress.audio(-3000, -4)  # a lost worker's chapter, narrated again elsewhere
    progress.chapter_done()
    progress.document_done()
    fields = progress._fields()
    progress.end()
    assert fields["workers"] == 2 and fields["documents"] == "1/3" and fields["chapters"] == "2/6"
    assert fields["audio"] == "0:01:00" and fields["speed"] == "1.0x"
    assert progress.audio_seconds() == 60.0
    assert "workers" in screen.getvalue() and "chapters" in screen.getvalue()


def test_without_ray_installed_the_option_says_what_to_install(tmp_path, narrate_cmd):
    """narrate imports Ray only for --ray: without it, batch --ray is a one-line error."""
    hide = tmp_path / "hide"
    (hide / "ray").mkdir(parents=True)
    (hide / "ray" / "__init__.py").write_text("raise ModuleNotFoundError('no ray', name='ray')\n")
    doc = tmp_path / "doc.txt"
    doc.write_text("A short text.", encoding="utf-8")
    env = cli_env(PYTHONPATH=os.pathsep.join([str(hide), str(REPO)]))
    proc = narrate_cmd("batch", doc, "--out-dir", tmp_path / "out", "--ray", "auto", env=env)
    assert proc.returncode == 1
    assert "narrate: error: --ray needs Ray: pip install 'narrate[ray]'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_ray_client_address_is_refused_in_one_line(tmp_path, narrate_cmd):
    """ray://HOST:PORT (Ray Client): said at once, in one line, before any model is loaded or
    folder made."""
    doc = tmp_path / "doc.txt"
    doc.write_text("A short text.", encoding="utf-8")
    proc = narrate_cmd("batch", doc, "--out-dir", tmp_path / "out", "--ray", "ray://127.0.0.1:10001",
                       timeout=120)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("narrate: error: --ray ray://127.0.0.1:10001: Ray Client"), proc.stderr
    assert "--ray auto" in lines[0]
    assert not (tmp_path / "out").exists()


def test_out_dir_urls_are_for_the_cluster_and_memory_is_refused_in_one_line(tmp_path, narrate_cmd):
    """An fsspec URL as --out-dir needs --ray; memory:// (each process's own) cannot be shared
    by the cluster's workers. Both said in one line, before any model is loaded."""
    doc = tmp_path / "doc.txt"
    doc.write_text("A short text.", encoding="utf-8")
    for extra, said in [([], "narrate: error: --out-dir s3://bucket/audio: a URL needs --ray"),
                        (["--ray", "auto"], "narrate: error: --out-dir memory://bucket/audio: a memory:// filesystem")]:
        url = "memory://bucket/audio" if extra else "s3://bucket/audio"
        proc = narrate_cmd("batch", doc, "--out-dir", url, *extra, timeout=120)
        assert proc.returncode == 1
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(said), proc.stderr


def test_a_workers_answers_give_its_reports_then_its_end_or_failure():
    """What the driver asks a worker for: every report in order, the last answer saying the call
    is over; a narration that fails after some reports answers those first (a chapter finished
    before the failure still counts), then raises the failure."""
    from narrate.jobs.cluster import ChapterAudio, ChapterDone, _Narration

    def answers(narration) -> tuple[list, list[bool]]:
        reports, overs = [], []
        while not overs or not overs[-1]:
            answer = narration.answer()
            reports += answer.reports
            overs.append(answer.over)
        return reports, overs

    sent = [ChapterAudio((0, 1), 10, 1), ChapterAudio((0, 1), 5, 0), ChapterDone((0, 1), 15)]
    reports, overs = answers(_Narration(iter(sent)))
    assert reports == sent and overs[-1] and not any(overs[:-1])

    def failing():
        yield ChapterDone((0, 0), 7)
        raise ValueError("a bad chapter")

    narration = _Narration(failing())
    answer = narration.answer()
    assert answer.reports == [ChapterDone((0, 0), 7)] and not answer.over
    with pytest.raises(ValueError, match="a bad chapter"):
        narration.answer()
