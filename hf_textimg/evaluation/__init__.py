"""Evaluation tools: the concept space's retrieval and zero-shot tests (`concept_eval`), probes of what a diffusion
pipeline's text conditioning carries (`probes`), and, for convenience, the Shapes scorer (`hf_textimg.shapes`)."""

from ..shapes.benchmark import BenchmarkPrompt, benchmark_prompts
from ..shapes.evaluation import evaluate_shapes, evaluate_shapes_variety
from ..shapes.language import parse_prompt
from ..shapes.scorer import ShapesReport, ShapesScorer, score_image
from ..shapes.variety import ShapesVarietyReport
from .emoji_eval import EmojiReport, evaluate_emoji
