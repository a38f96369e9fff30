"""calcdx.inference: predictor, batch runner, findings, writers (JSON, CSV, SR, overlays), PACS front ends."""

from calcdx.inference.batch import BatchReport, run_batch
from calcdx.inference.predictor import ImageResult, Predictor
from calcdx.inference.study import StudyResult, analyze_study

__all__ = ["BatchReport", "ImageResult", "Predictor", "StudyResult", "analyze_study", "run_batch"]
