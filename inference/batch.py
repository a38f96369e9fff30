"""Batch inference: discovery -> streaming DataLoader (decode in workers) -> model -> per-study outputs.

Three stages overlap: worker processes decode and resample (on the CPU they also run the model, measure
the findings and draw the overlays), the main thread runs the model beside a GPU, and one helper thread
measures the findings there, explains them and writes the files of the study before.  Memory stays flat: at
most two studies are held, and on the CPU no image crosses to the main process (only the findings and the
overlays' pictures).  Results are written per study, atomically, the study JSON last; a re-run skips every
study whose JSON exists for the same model weights (sha256, the heads' weights and cards too) and redoes the
rest, so a killed batch loses nothing and duplicates nothing.  Unreadable or refused files go to
``failures.csv`` (code and reason) and never stop the batch, not even one that kills the process decoding it
(``calcdx.inference.stream``).  Studies are analysed oldest first, so a
follow-up is written after its prior and carries the comparison in its JSON and SR.  Under ``torchrun`` (RANK
/ WORLD_SIZE set) studies are sharded by patient (every study of one patient on one rank); every rank writes
its own study files and ``failures-rank<R>.csv``, and rank 0 merges ``summary.csv`` and ``failures.csv`` once
all ranks are done.
"""

from __future__ import annotations

import csv
import gc
import json
import logging
import os
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from calcdx.datasets.discovery import Instance, Study, discover
from calcdx.datasets.radiograph import Radiograph
from calcdx.datasets.reader import read_radiographs
from calcdx.errors import CalcdxError, ConfigError
from calcdx.inference.followup import StudyDeposits, compare_studies, study_deposits, write_followup
from calcdx.inference.isolation import death_error
from calcdx.inference.overlay import RenderedOverlay, render
from calcdx.inference.predictor import HEAD_NAMES, ImageResult, Predictor, preprocessing_percentiles
from calcdx.inference.stream import WorkerDeathProof
from calcdx.inference.study import atomic_write_text, finalize_study, safe_name
from calcdx.models.apply import GridResult

logger = logging.getLogger(__name__)

FAILURE_COLUMNS = ("path", "study_instance_uid", "code", "reason")
SUMMARY_COLUMNS = ("study_instance_uid", "sop_instance_uid", "frame", "source", "status", "pattern", "probability",
                   "operating_point", "long_axis_mm", "short_axis_mm", "margin", "margin_probability",
                   "location_class", "site", "site_probability", "top_differential", "model_version", "reason")


@dataclass
class BatchReport:
    n_studies: int = 0
    n_studies_skipped: int = 0
    n_images: int = 0
    n_not_analyzed: int = 0
    n_low_confidence: int = 0
    n_failures: int = 0
    n_own_outputs: int = 0
    """calcdx's own SRs and overlays found among the inputs and passed over (no failure)."""
    n_duplicates: int = 0
    """Further copies of an instance (a SOP Instance UID already found) passed over (no failure)."""
    seconds: float = 0.0
    failures: list[dict[str, Any]] = field(default_factory=list)

    @property
    def images_per_second(self) -> float:
        return self.n_images / self.seconds if self.seconds > 0 else 0.0


@dataclass
class _Item:
    index: int
    instance: Instance
    study_uid: str
    radiographs: list[Radiograph] | None
    grids: list[Any] | None
    error: dict[str, Any] | None
    results: list[ImageResult] | None = None
    """Each frame's findings, when the worker ran the model and measured them."""
    model_error: BaseException | None = None
    """What the model or the findings raised in the worker: the study then fails as if it had raised in the
    main process (no JSON, so a re-run tries it again), not the file as unreadable."""
    image_shapes: list[tuple[int, int]] | None = None
    """Set once the worker has dropped the pixels it measured the findings on (:meth:`without_pixels`): each
    frame's (rows, cols), which the main process's radiographs keep."""
    overlays: list[RenderedOverlay | None] | None = None
    """Each frame's overlay, drawn and encoded by the worker (None where the frame was not analysed)."""

    def without_pixels(self) -> _Item:
        """The item once the findings are measured (and the overlays drawn): the main process then only
        explains and writes, so it gets no image (4.7 MB per 1.2 MP image to copy into shared memory:
        5 ms of a worker's time per image, measured)."""
        return replace(self, radiographs=[replace(r, image=np.zeros((0, 0), np.float32))
                                          for r in self.radiographs or []] or None,
                       grids=None, image_shapes=[r.shape for r in self.radiographs or []])

    def as_tensors(self) -> _Item:
        """Images, grids and overlay pictures as torch tensors (no copy).  A worker returns the item like
        this: the DataLoader then hands the pixels over in shared memory instead of pickling them through
        a pipe (7 MB per 1.2 MP image, 21 ms to pickle).  :meth:`as_arrays` undoes it."""
        return replace(self, radiographs=[replace(r, image=_tensor(r.image)) for r in self.radiographs or []] or None,
                       grids=[_tensor(g) for g in self.grids or []] or None,
                       overlays=None if self.overlays is None else [
                           None if o is None else replace(o, rgb=_tensor(o.rgb)) for o in self.overlays])

    def as_arrays(self) -> _Item:
        """The item with numpy arrays again (views of the shared memory, no copy).  A radiograph whose
        pixels the worker dropped gets a read-only array of zeros of its shape that takes no memory."""
        def array(value: Any) -> Any:
            return value.numpy() if isinstance(value, torch.Tensor) else value

        def image(r: Radiograph, k: int) -> np.ndarray:
            pixels = array(r.image)
            if self.image_shapes is not None and pixels.size == 0:
                return np.broadcast_to(np.float32(0.0), self.image_shapes[k])
            return pixels

        return replace(self, radiographs=[replace(r, image=image(r, k)) for k, r in enumerate(self.radiographs or [])]
                       or None, grids=[array(g) for g in self.grids or []] or None,
                       overlays=None if self.overlays is None else [
                           None if o is None else replace(o, rgb=array(o.rgb)) for o in self.overlays])


SHARED_MEMORY_FROM_BYTES = 1 << 16
"""Arrays from this size on travel from a worker in shared memory (as torch tensors); smaller ones are
pickled: a file descriptor per array costs more than the copy."""


def _tensor(array: np.ndarray) -> torch.Tensor | np.ndarray:
    if array.nbytes < SHARED_MEMORY_FROM_BYTES:
        return array
    return torch.from_numpy(np.ascontiguousarray(array))


class _InstanceDataset(Dataset):
    """Reads and resamples one DICOM file per item (runs in DataLoader workers); with a ``predictor``, runs
    the detection model and measures the findings there too (DataLoader workers run torch on one thread)."""

    def __init__(self, items: list[tuple[Instance, str]], predictor_card_spacing: float,
                 percentiles: tuple[float, float] | None, default_spacing_mm: float | None,
                 decode_spacing_mm: float | None = None, predictor: Predictor | None = None,
                 overlays: bool = True) -> None:
        self.items = items
        self.predictor = predictor
        self.overlays = overlays
        """With a ``predictor``: whether the worker draws each analysed image's overlay too."""
        self.spacing = predictor_card_spacing
        self.percentiles = percentiles
        self.default_spacing_mm = default_spacing_mm
        self.decode_spacing_mm = decode_spacing_mm

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> _Item:
        from calcdx.datasets.transforms import to_model_grid

        instance, study_uid = self.items[index]
        try:
            frames = read_radiographs(instance.path, default_spacing_mm=self.default_spacing_mm,
                                      coarsest_spacing_mm=self.decode_spacing_mm)
            grids = [to_model_grid(r, self.spacing, percentiles=self.percentiles) for r in frames]
            item = _Item(index, instance, study_uid, frames, grids, None)
            if self.predictor is not None:
                try:
                    with torch.inference_mode():
                        item.results = [self.predictor.result(r, self.predictor.forward(g))
                                        for r, g in zip(frames, grids, strict=True)]
                    if self.overlays:
                        item.overlays = [render(r, result.findings) if result.status == "analyzed" else None
                                         for r, result in zip(frames, item.results, strict=True)]
                    item = item.without_pixels()
                except Exception as exc:  # e.g. out of memory on one huge image
                    item.model_error = _picklable(exc)
            return item.as_tensors()
        except CalcdxError as exc:
            return _Item(index, instance, study_uid, None, None, exc.as_dict())
        except Exception as exc:  # a worker must never die on one file
            return _Item(index, instance, study_uid, None, None,
                         {"code": "E_INTERNAL", "path": str(instance.path), "reason": f"{type(exc).__name__}: {exc}"})


def _picklable(exc: Exception) -> Exception:
    """``exc`` if it survives the trip back from a worker, else a RuntimeError saying what it was."""
    import pickle

    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def _died_reading(dataset: _InstanceDataset) -> Callable[[int, str], _Item]:
    """The failed item of a file whose reading process died, twice (``how``: the signal's name)."""
    def failed(index: int, how: str) -> _Item:
        instance, study_uid = dataset.items[index]
        return _Item(index, instance, study_uid, None, None, death_error(instance.path, how, again=True).as_dict())
    return failed


def _weights_key(identity: dict[str, Any]) -> tuple[str | None, ...]:
    """What makes a result stale: the detection model's weights, and the heads' weights and cards."""
    heads = [identity.get(name) for name in HEAD_NAMES]
    return (identity.get("weights_sha256"), *(
        f"{h.get('weights_sha256')}/{h.get('card_sha256')}" if isinstance(h, dict) else None for h in heads))


def _done_studies(out_dir: Path, identity: dict[str, Any]) -> set[str]:
    key = _weights_key(identity)
    done = set()
    for path in out_dir.glob("*.json"):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(data, dict) and isinstance(data.get("model"), dict) and _weights_key(data["model"]) == key:
            done.add(str(data.get("study_instance_uid")))
    return done


def _rank_world() -> tuple[int, int]:
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def _write_csv(path: Path, columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> None:
    """``rows`` to ``path`` atomically (a temporary file, then renamed); ``rows`` may be a generator."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)


def _read_failures(path: Path) -> dict[str, dict[str, Any]]:
    """A failures file's rows by path (the last row of a path wins; a row a killed batch left unfinished,
    without its code, is skipped); empty when there is no file."""
    if not path.exists():
        return {}
    with open(path, newline="", encoding="utf-8") as fh:
        return {row["path"]: row for row in csv.DictReader(fh) if row.get("path") and row.get("code")}


class _FailureLog:
    """A rank's failures by path, and its ``failures-rank<R>.csv`` kept up to date study by study, so that a
    killed batch loses none.  New rows are appended: rewriting the whole file after every study made a batch
    of many refused files (a folder with CT series) quadratic, 109 ms per study at 50,000 rows.  The file is
    rewritten, one row per path, at the start, when a path it holds must go (the file was read this time)
    and at the end."""

    def __init__(self, path: Path, failures: dict[str, dict[str, Any]]) -> None:
        self.path = path
        self.failures = failures
        self._new: dict[str, dict[str, Any]] = {}
        self._in_file: set[str] = set()
        self._stale = False
        self.rewrite()

    def add(self, record: dict[str, Any]) -> None:
        self.failures[record["path"]] = record
        self._new[record["path"]] = record

    def remove(self, path: str) -> None:
        if self.failures.pop(path, None) is not None:
            self._new.pop(path, None)
            self._stale = self._stale or path in self._in_file

    def flush(self) -> None:
        """Write what changed since the last flush (appended, or the whole file when a row must go)."""
        if self._stale:
            self.rewrite()
        elif self._new:
            with open(self.path, "a", newline="", encoding="utf-8") as fh:
                csv.DictWriter(fh, fieldnames=list(FAILURE_COLUMNS), extrasaction="ignore").writerows(
                    self._new.values())
            self._in_file.update(self._new)
            self._new.clear()

    def rewrite(self) -> None:
        _write_csv(self.path, FAILURE_COLUMNS, list(self.failures.values()))
        self._in_file = set(self.failures)
        self._new.clear()
        self._stale = False


def summary_rows(data: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """CSV rows (one per finding, or one per image without findings) of one study result."""
    version = data.get("model", {}).get("version")
    for image in data.get("images", []):
        base = {"study_instance_uid": data.get("study_instance_uid"), "sop_instance_uid": image["sop_instance_uid"],
                "frame": image["frame_index"], "source": image["source"], "status": image["status"],
                "model_version": version, "reason": image.get("reason") or ""}
        if not image["findings"]:
            yield {**base, "pattern": "none"}
        for f in image["findings"]:
            ranking = (f.get("differential") or {}).get("ranking") or [{}]
            yield {**base, "pattern": f["pattern"], "probability": f["probability"],
                   "operating_point": f["operating_point"], "long_axis_mm": f["long_axis_mm"],
                   "short_axis_mm": f["short_axis_mm"], "margin": f["margin"], "location_class": f["location_class"],
                   "site": f.get("site") or "", "top_differential": ranking[0].get("name", ""),
                   **{key: "" if f.get(key) is None else f[key] for key in ("margin_probability", "site_probability")}}


def merge_outputs(out_dir: Path) -> tuple[Path, Path]:
    """(Re)build ``summary.csv`` from every study JSON and ``failures.csv`` from the rank files; where
    the folder holds two dated studies of one patient, ``followup.json`` and ``followup.csv`` too
    (``calcdx.inference.followup``).

    One study JSON is held at a time: its rows go to the CSV and only its HADD deposits are kept for the
    follow-up comparison, so memory does not grow with the folder (holding every result took 0.26 MB per
    study at the end of a batch)."""
    deposits: list[StudyDeposits | None] = []

    def rows() -> Iterator[dict[str, Any]]:
        for path in sorted(out_dir.glob("*.json")):
            if path.name.startswith(".") or path.name == "followup.json":
                continue
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                study_rows = list(summary_rows(data))
            except (OSError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
                logger.warning("%s: not a study result (%s)", path, exc)
                continue
            deposits.append(study_deposits(data))
            yield from study_rows

    summary = out_dir / "summary.csv"
    _write_csv(summary, SUMMARY_COLUMNS, rows())
    changes = compare_studies(deposits)
    if changes:
        write_followup(changes, out_dir)
    failures: dict[str, dict[str, Any]] = {}
    for path in sorted(out_dir.glob("failures-rank*.csv")):
        failures.update(_read_failures(path))
    failures_csv = out_dir / "failures.csv"
    _write_csv(failures_csv, FAILURE_COLUMNS, list(failures.values()))
    return summary, failures_csv


def default_workers(device: str = "cpu") -> int:
    """Decoding processes by default: on the CPU two, or one on a single core; beside a GPU every core
    but the model's (decoding is then the cost).

    Measured on 2 cores (docs/inference.md): two workers and one model thread read JPEG 2000
    files 25-30 % faster than one worker, and uncompressed files as fast (within 3 %).  Beside an
    H200 with 16 cores, 14 workers read the bundled JPEG 2000 files 1.6 x faster than 8.
    """
    cores = len(os.sched_getaffinity(0))
    if str(device).startswith("cuda"):
        return max(1, cores - 1)
    return min(2, cores)


def run_batch(paths: Sequence[str | Path], out_dir: str | Path, predictor: Predictor, *, workers: int | None = None,
              context: Any = None, write_sr: bool = True, write_overlays: bool = True,
              default_spacing_mm: float | None = None, progress: bool = True,
              threads: int | None = None, model_in_workers: bool | None = None) -> BatchReport:
    """Analyse every study under ``paths`` into ``out_dir``; see the module docstring.

    ``model_in_workers``: run the detection model and measure the findings (crop heads included) in the
    decoding workers (one torch thread each) instead of the main process, which then only explains and
    writes; by default on the CPU whenever there are workers (never beside a GPU: a CUDA context cannot
    cross a fork).  On 2 cores the model there read uncompressed files 35-43 % faster and JPEG 2000 as
    fast, and the findings there 8 % more (docs/inference.md): they no longer take turns at the main
    process's interpreter lock.

    ``threads``: torch threads of the main process while the batch runs (the model's and the crop heads'
    when they run there); by default the cores left over by the ``workers`` decoding processes.  Measured
    on 2 cores (docs/inference.md) with the model in the main process, a second model thread beside two
    workers cost 25 % on JPEG 2000 and 15-25 % on uncompressed files: MobileNetV3-Small on one channel
    gains little from a second thread (26 ms per image alone with one, 20–26 ms with two) and loses more
    to the other stages.
    """
    workers = default_workers(predictor.device) if workers is None else workers
    on_cpu = torch.device(predictor.device).type == "cpu"
    if model_in_workers is None:
        model_in_workers = on_cpu and workers > 0
    elif model_in_workers and (not on_cpu or workers <= 0):
        raise ValueError("the model runs in the decoding workers only on the CPU and with at least one worker")
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads or model_threads(workers, previous_threads))
    # what is alive now (torch, the model, about 450,000 objects) stays out of the garbage collector's
    # full passes while the batch runs, and the forked workers do not touch it (copy-on-write): each
    # full pass over it took 0.2 s, twice in a batch of 100 (docs/inference.md)
    gc.freeze()
    try:
        return _run_batch(paths, out_dir, predictor, workers=workers, context=context, write_sr=write_sr,
                          write_overlays=write_overlays, default_spacing_mm=default_spacing_mm, progress=progress,
                          model_in_workers=model_in_workers)
    finally:
        gc.unfreeze()
        torch.set_num_threads(previous_threads)


def model_threads(workers: int, current: int) -> int:
    """Torch threads that leave one core to each decoding worker (``current`` without workers)."""
    if workers <= 0:
        return current
    return max(1, len(os.sched_getaffinity(0)) - workers)


def shard_studies(studies: Sequence[Study], rank: int, world: int) -> list[Study]:
    """The studies rank ``rank`` of ``world`` analyses, in the order it analyses them.

    Every study of one patient goes to the same rank (CRC-32 of the Patient ID; a study without
    one by its place in the list), and a rank takes its studies oldest first (undated ones first,
    otherwise in the order found), so a patient's follow-up is always written after its prior."""
    def owner(index: int, study: Study) -> int:
        return (zlib.crc32(study.patient_id.encode("utf-8")) if study.patient_id else index) % world

    mine = [s for i, s in enumerate(studies) if owner(i, s) == rank]
    return sorted(mine, key=lambda s: s.study_date or "")


def _run_batch(paths: Sequence[str | Path], out_dir: str | Path, predictor: Predictor, *, workers: int,
               context: Any, write_sr: bool, write_overlays: bool, default_spacing_mm: float | None,
               progress: bool, model_in_workers: bool = False) -> BatchReport:
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"the output folder {out} is a file: name a folder (created if missing)")
    out.mkdir(parents=True, exist_ok=True)
    rank, world = _rank_world()
    started = time.perf_counter()
    found = discover(paths)
    report = BatchReport(n_own_outputs=len(found.own_outputs), n_duplicates=len(found.duplicates))
    failures_file = out / f"failures-rank{rank}.csv"
    failures = _read_failures(failures_file)
    for path, error in found.skipped:
        failures[str(path)] = {"path": str(path), "study_instance_uid": "", "code": error.code, "reason": error.reason}
    studies = shard_studies(found.studies, rank, world)
    done = _done_studies(out, predictor.identity)
    todo = [s for s in studies if s.study_uid not in done]
    report.n_studies_skipped = len(studies) - len(todo)
    items = [(inst, s.study_uid) for s in todo for inst in s.instances]
    dataset = _InstanceDataset(items, predictor.card.input_spacing_mm,
                               preprocessing_percentiles(predictor.card.preprocessing), default_spacing_mm,
                               predictor.decode_spacing_mm,
                               predictor if model_in_workers else None, overlays=write_overlays)
    counts = {s.study_uid: len(s.instances) for s in todo}
    pending: dict[str, list[_Item]] = {}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(items), unit="img", desc=f"predict (rank {rank})" if world > 1 else "predict")
    n_done_studies = 0
    log = _FailureLog(failures_file, failures)  # the file holds what is known so far if the batch is killed
    # the model runs here; findings, rules and files of the previous study in one helper thread
    # meanwhile (numpy, scipy, OpenCV and file writes overlap the forward pass).  At most one
    # study waits there, so memory stays flat.
    in_flight: tuple[str, list[_Item], Future[_Outcome]] | None = None

    def collect() -> None:
        nonlocal n_done_studies, in_flight
        if in_flight is None:
            return
        study_uid, study_items, future = in_flight
        in_flight = None
        try:
            _record(future.result(), log, report)
        except Exception as exc:  # one study's failure never stops the batch
            logger.error("study %s failed", study_uid, exc_info=exc)
            for failed in study_items:
                path = str(failed.instance.path)
                log.add({"path": path, "study_instance_uid": study_uid,
                         "code": "E_INTERNAL", "reason": f"{type(exc).__name__}: {exc}"})
        n_done_studies += 1
        log.flush()
        if bar:
            bar.set_postfix(studies=f"{n_done_studies}/{len(todo)}",
                            img_s=f"{report.n_images / max(time.perf_counter() - started, 1e-6):.2f}")

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="calcdx-study") as post, torch.inference_mode():
        # the workers start; a file whose decoding process dies (a decoder crash, or the system out of
        # memory) fails alone and the batch goes on (calcdx.inference.stream)
        received = WorkerDeathProof(dataset, workers, _died_reading(dataset))
        _load_rules()
        for item in (one.as_arrays() for one in received):
            pending.setdefault(item.study_uid, []).append(item)
            if bar:
                bar.update(1)
            if len(pending[item.study_uid]) == counts[item.study_uid]:
                study_items = pending.pop(item.study_uid)
                try:
                    outputs = _forward(study_items, predictor)
                except Exception as exc:  # e.g. out of memory on one huge image
                    outputs = exc
                collect()
                future = post.submit(_finish, item.study_uid, study_items, outputs, predictor, out,
                                     context=context, write_sr=write_sr, write_overlays=write_overlays)
                in_flight = (item.study_uid, study_items, future)
        collect()
    if bar:
        bar.close()
    log.rewrite()  # one row per file again
    report.failures = list(log.failures.values())
    report.n_failures = len(log.failures)
    report.seconds = time.perf_counter() - started
    _barrier(world)
    if rank == 0:
        merge_outputs(out)
    return report


def _load_rules() -> None:
    """Import the rule layer and load its knowledge base (once per process, about 0.1 s) while the workers
    read their first files: the first study no longer waits for it in the helper thread, where it held up
    the pipeline."""
    try:
        from calcdx.rules import load_knowledge_base

        load_knowledge_base()
    except Exception as exc:  # every study then fails with the reason, as it would without this
        logger.warning("the rule layer did not load: %s", exc)


@dataclass
class _Outcome:
    """What finishing one study changed: image counts, files refused, files that now succeeded."""

    images: list[ImageResult]
    refused: list[dict[str, Any]]
    succeeded: list[str]


def _forward(items: list[_Item], predictor: Predictor) -> list[list[GridResult]]:
    """The model's outputs for every decoded frame of a study's items (main thread: torch); none for items
    whose findings the workers measured."""
    for item in items:
        if item.model_error is not None:
            raise item.model_error
    return [[] if item.results is not None else [predictor.forward(grid) for grid in item.grids or []]
            for item in items]


def _finish(study_uid: str, items: list[_Item], outputs: list[list[GridResult]] | Exception, predictor: Predictor,
            out: Path, **kw: Any) -> _Outcome:
    """Findings, differential and files of one study (helper thread: no torch)."""
    if isinstance(outputs, Exception):
        raise outputs
    images: list[ImageResult] = []
    radiographs: dict[tuple[str, int], Radiograph] = {}
    sources: dict[str, Path] = {}
    drawn: dict[tuple[str, int], RenderedOverlay] = {}
    outcome = _Outcome(images, [], [])
    for item, item_outputs in sorted(zip(items, outputs, strict=True), key=lambda pair: pair[0].index):
        if item.error:
            outcome.refused.append({"path": str(item.instance.path), "study_instance_uid": study_uid,
                                    "code": item.error["code"], "reason": item.error["reason"]})
            continue
        results = item.results if item.results is not None else [
            predictor.result(r, grid_result) for r, grid_result in zip(item.radiographs or [], item_outputs,
                                                                         strict=False)]
        for k, (r, image) in enumerate(zip(item.radiographs or [], results, strict=False)):
            images.append(image)
            radiographs[(r.sop_instance_uid, r.frame_index)] = r
            sources[r.sop_instance_uid] = item.instance.path
            overlay = item.overlays[k] if item.overlays is not None else None
            if overlay is not None:
                drawn[(image.sop_instance_uid, image.frame_index)] = overlay
        outcome.succeeded.append(str(item.instance.path))
    finalize_study(study_uid, images, radiographs, sources, outcome.refused, predictor, out, overlays=drawn, **kw)
    return outcome


def _record(outcome: _Outcome, log: _FailureLog, report: BatchReport) -> None:
    for record in outcome.refused:
        log.add(record)
    for path in outcome.succeeded:
        log.remove(path)
    report.n_images += len(outcome.images)
    report.n_not_analyzed += sum(im.status != "analyzed" for im in outcome.images)
    report.n_low_confidence += sum(im.low_confidence for im in outcome.images)
    report.n_studies += 1


def _barrier(world: int) -> None:
    if world <= 1:
        return
    import torch.distributed as dist

    if not dist.is_available():
        return
    if not dist.is_initialized():
        dist.init_process_group("gloo")
    dist.barrier()


__all__ = ["BatchReport", "atomic_write_text", "merge_outputs", "run_batch", "safe_name", "summary_rows"]
