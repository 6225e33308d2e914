from .shapes_scorer import (
    BenchmarkPrompt,
    ShapesReport,
    ShapesScorer,
    benchmark_prompts,
    parse_prompt,
    score_image,
)
from .emoji_eval import EmojiReport, evaluate_emoji
