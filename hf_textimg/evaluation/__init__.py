"""Evaluation tools: the concept space's retrieval and zero-shot tests (`concept_eval`), probes of what a diffusion
pipeline's text conditioning carries (`probes`), and, for convenience, the Shapes scorer (`hf_textimg.shapes`)."""

from ..shapes.benchmark import BenchmarkPrompt, benchmark_prompts
from ..shapes.evaluation import evaluate_shapes
from ..shapes.language import parse_prompt
from ..shapes.scorer import ShapesReport, ShapesScorer, score_image
from .emoji_eval import EmojiReport, evaluate_emoji
